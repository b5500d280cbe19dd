package proxysidecar

import (
	"fmt"
	"strings"

	corev1 "k8s.io/api/core/v1"

	"github.com/meshkeeper/istio-operator/pkg/istioclient"
)

// Names Istio's injector uses.
const (
	annotationSidecarStatus    = "sidecar.istio.io/status"
	annotationProxyImage       = "sidecar.istio.io/proxyImage"
	annotationProxyCPU         = "sidecar.istio.io/proxyCPU"
	annotationProxyCPULimit    = "sidecar.istio.io/proxyCPULimit"
	annotationProxyMemory      = "sidecar.istio.io/proxyMemory"
	annotationProxyMemoryLimit = "sidecar.istio.io/proxyMemoryLimit"
	proxyContainer             = "istio-proxy"
	initContainer              = "istio-init"
	validationContainer        = "istio-validation"
	// labelRevision names the control plane whose injector injected a pod.
	labelRevision = "istio.io/rev"
	// operatorRevision is the default revision tag, which the operator's
	// control plane carries; a pod without a revision belongs to it too.
	operatorRevision = istioclient.DefaultRevision
	// annotationLimitRanger is set by the API server's LimitRanger admission
	// plugin on a pod whose requests or limits it defaulted.
	annotationLimitRanger = "kubernetes.io/limit-ranger"
)

// injected reports whether Istio's injector injected the pod.
func injected(pod *corev1.Pod) bool {
	_, ok := pod.Annotations[annotationSidecarStatus]
	return ok
}

// podRevision is the revision whose injector injected the pod: the
// injector records it in an annotation; a pod without it is judged by its
// revision label, and a pod with neither by the default revision.
func podRevision(pod *corev1.Pod) string {
	rev, ok := pod.Annotations[annotationRevision]
	if !ok {
		rev = pod.Labels[labelRevision]
	}
	if rev == "" {
		return operatorRevision
	}
	return rev
}

// live reports whether a pod counts: not terminating and not finished.
func live(pod *corev1.Pod) bool {
	return pod.DeletionTimestamp == nil && pod.Status.Phase != corev1.PodSucceeded && pod.Status.Phase != corev1.PodFailed
}

// outdated says why an injected pod's sidecar differs from what the
// injector would give it now, or "" when it does not (or when the pod is not
// the operator's to judge: it is not injected, or it pins its own proxy
// image). Whether its revision is the operator's is the caller's question
// (target.otherRevision). What admission controllers do to a
// pod after the injector (a registry mirror or a digest in the image, a
// LimitRange's defaults) is not a difference: restarting would not undo it.
func outdated(pod *corev1.Pod, want *istioclient.Proxy) string {
	if !injected(pod) {
		return ""
	}
	if _, pinned := pod.Annotations[annotationProxyImage]; pinned {
		return ""
	}
	proxy := proxyOf(pod)
	if proxy == nil {
		return ""
	}
	if !sameImage(proxy.Image, want.Image) {
		return fmt.Sprintf("proxy image %s, want %s", proxy.Image, want.Image)
	}
	// With any of the resource annotations, Istio takes the proxy's resources
	// from the annotations alone: the Istio resource does not reach the pod.
	if !hasResourceAnnotations(pod) && !sameResources(proxy.Resources, want.Resources, limitRanged(pod, proxy)) {
		return "proxy resources differ from the Istio resource's"
	}
	for _, c := range pod.Spec.InitContainers {
		switch {
		case c.Name == initContainer && want.CNI:
			return "istio-init container, but Istio's CNI node agent is enabled"
		case c.Name == validationContainer && !want.CNI:
			return "istio-validation container, but Istio's CNI node agent is disabled"
		}
	}
	// Pods injected before the operator installed Istio carry no hash; their
	// injection-time settings cannot be judged, so they do not count.
	if got, ok := pod.Annotations[istioclient.ProxyConfigAnnotation]; ok && got != want.ConfigHash {
		return "proxy configuration (DNS proxying, stats matcher, metrics merging or compatibility mode) changed"
	}
	return ""
}

// newVersion reports whether any of the pods runs another proxy version than
// want: its proxy image's tag differs. An image that differs only in its
// registry or repository (a changed mirror) is a configuration change.
func newVersion(pods []*corev1.Pod, want *istioclient.Proxy) bool {
	wantTag := parseImage(want.Image).tag
	for _, pod := range pods {
		if proxy := proxyOf(pod); proxy != nil && !sameImage(proxy.Image, want.Image) && parseImage(proxy.Image).tag != wantTag {
			return true
		}
	}
	return false
}

// proxyOf is the pod's istio-proxy container: a regular container, or a
// native sidecar (an init container that keeps running).
func proxyOf(pod *corev1.Pod) *corev1.Container {
	for i := range pod.Spec.Containers {
		if pod.Spec.Containers[i].Name == proxyContainer {
			return &pod.Spec.Containers[i]
		}
	}
	for i := range pod.Spec.InitContainers {
		c := &pod.Spec.InitContainers[i]
		if c.Name == proxyContainer && c.RestartPolicy != nil && *c.RestartPolicy == corev1.ContainerRestartPolicyAlways {
			return c
		}
	}
	return nil
}

func hasResourceAnnotations(pod *corev1.Pod) bool {
	for _, a := range []string{annotationProxyCPU, annotationProxyCPULimit, annotationProxyMemory, annotationProxyMemoryLimit} {
		if _, ok := pod.Annotations[a]; ok {
			return true
		}
	}
	return false
}

// imageRef is an image reference split into the parts that say what runs.
type imageRef struct {
	path   []string // repository path without the registry host
	tag    string
	digest string
}

// parseImage splits [host[:port]/]path[:tag][@digest]. The first element is
// a registry host when it has a dot or a port or is "localhost", as in the
// container runtimes' own parsing.
func parseImage(s string) imageRef {
	var r imageRef
	if i := strings.IndexByte(s, '@'); i >= 0 {
		s, r.digest = s[:i], s[i+1:]
	}
	if i := strings.LastIndexByte(s, ':'); i > strings.LastIndexByte(s, '/') {
		s, r.tag = s[:i], s[i+1:]
	}
	r.path = strings.Split(s, "/")
	if first := r.path[0]; len(r.path) > 1 && (strings.ContainsAny(first, ".:") || first == "localhost") {
		r.path = r.path[1:]
	}
	return r
}

// sameImage reports whether a pod's proxy image is the wanted one, as far
// as what runs is concerned. A registry mirror that an admission controller
// or the runtime configuration substitutes changes the host and may prefix
// the path (mirror.example.com/dockerhub/istio/proxyv2), so repositories
// match when their trailing path elements agree. The tag decides; a digest
// added beside it (digest pinning) does not. An image pinned by digest
// alone, in the wanted repository, counts as the wanted one: its version
// cannot be read from the pod, and restarting would only pin it again. An
// image without tag or digest is "latest".
func sameImage(got, want string) bool {
	if got == want {
		return true
	}
	g, w := parseImage(got), parseImage(want)
	n := min(len(g.path), len(w.path))
	for i := 1; i <= n; i++ {
		if g.path[len(g.path)-i] != w.path[len(w.path)-i] {
			return false
		}
	}
	switch {
	case g.tag != "" && w.tag != "":
		return g.tag == w.tag
	case g.digest != "" && w.digest != "":
		return g.digest == w.digest
	case g.tag == "" && g.digest != "":
		return true
	case g.tag == "" && g.digest == "":
		return w.tag == "latest" || (w.tag == "" && w.digest == "")
	}
	return false
}

// limitRanged is the set of the proxy's requests and limits that the
// LimitRanger admission plugin set, from its annotation on the pod:
// "LimitRanger plugin set: cpu, memory request for container istio-proxy;
// cpu limit for init container istio-proxy".
func limitRanged(pod *corev1.Pod, proxy *corev1.Container) map[resourceEntry]bool {
	a, ok := pod.Annotations[annotationLimitRanger]
	if !ok {
		return nil
	}
	a = strings.TrimPrefix(a, "LimitRanger plugin set: ")
	out := map[resourceEntry]bool{}
	for _, part := range strings.Split(a, "; ") {
		var kind string
		var names, rest string
		if i := strings.Index(part, " request for "); i >= 0 {
			kind, names, rest = "request", part[:i], part[i+len(" request for "):]
		} else if i := strings.Index(part, " limit for "); i >= 0 {
			kind, names, rest = "limit", part[:i], part[i+len(" limit for "):]
		} else {
			continue
		}
		if rest != "container "+proxy.Name && rest != "init container "+proxy.Name {
			continue
		}
		for _, n := range strings.Split(names, ", ") {
			out[resourceEntry{kind: kind, name: corev1.ResourceName(n)}] = true
		}
	}
	return out
}

// resourceEntry is one request or limit of one resource.
type resourceEntry struct {
	kind string // "request" or "limit"
	name corev1.ResourceName
}

// sameResources compares the pod's CPU and memory requests and limits
// (got) with the desired ones by value ("1000m" equals "1"). An entry the
// desired proxy sets must be there with that value. One it does not set is
// a difference (the injector would now leave it out) unless the LimitRanger
// set it (setByLimitRange) or, for a request, the API server copied it from
// the limit the desired proxy sets.
func sameResources(got, want corev1.ResourceRequirements, setByLimitRange map[resourceEntry]bool) bool {
	for _, name := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
		for _, e := range []struct {
			kind      string
			got, want corev1.ResourceList
		}{{"request", got.Requests, want.Requests}, {"limit", got.Limits, want.Limits}} {
			qg, okG := e.got[name]
			qw, okW := e.want[name]
			switch {
			case okW:
				if !okG || qg.Cmp(qw) != 0 {
					return false
				}
			case !okG, setByLimitRange[resourceEntry{kind: e.kind, name: name}]:
			case e.kind == "request":
				// A container with a limit and no request gets the limit as
				// its request.
				if lw, ok := want.Limits[name]; !ok || qg.Cmp(lw) != 0 {
					return false
				}
			default:
				return false
			}
		}
	}
	return true
}
