package proxysidecar

import (
	"fmt"

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
)

// injected reports whether Istio's injector injected the pod.
func injected(pod *corev1.Pod) bool {
	_, ok := pod.Annotations[annotationSidecarStatus]
	return ok
}

// live reports whether a pod counts: not terminating and not finished.
func live(pod *corev1.Pod) bool {
	return pod.DeletionTimestamp == nil && pod.Status.Phase != corev1.PodSucceeded && pod.Status.Phase != corev1.PodFailed
}

// outdated says why an injected pod's sidecar differs from the desired
// proxy, or "" when it does not (or when the pod is not the operator's to
// judge: it is not injected, or it pins its own proxy image).
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
	if proxy.Image != want.Image {
		return fmt.Sprintf("proxy image %s, want %s", proxy.Image, want.Image)
	}
	// With any of the resource annotations, Istio takes the proxy's resources
	// from the annotations alone: the Istio resource does not reach the pod.
	if !hasResourceAnnotations(pod) && !sameResources(proxy.Resources, want.Resources) {
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

// sameResources compares CPU and memory requests and limits by value
// ("1000m" equals "1"); an absent entry equals an absent entry only.
func sameResources(a, b corev1.ResourceRequirements) bool {
	return sameList(a.Requests, b.Requests) && sameList(a.Limits, b.Limits)
}

func sameList(a, b corev1.ResourceList) bool {
	for _, name := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
		qa, okA := a[name]
		qb, okB := b[name]
		if okA != okB || (okA && qa.Cmp(qb) != 0) {
			return false
		}
	}
	return true
}
