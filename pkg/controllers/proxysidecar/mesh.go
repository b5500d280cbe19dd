package proxysidecar

import (
	"fmt"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/tools/cache"
)

// Joining and leaving the mesh. Istio's injector decides once, when a pod
// is created: a pod created while Istio was absent, or before its namespace
// enabled injection, has no sidecar, and one created before its namespace
// disabled injection keeps its sidecar. The controller judges each pod by
// the rules of the injector of the operator's revision (its webhook's
// selectors, then its own checks) and restarts the workloads whose pods are
// on the wrong side, once per change. After an uninstall every sidecar is
// on the wrong side (a removal target).

// Labels and annotations the injector's decision reads.
const (
	// labelInjection on a namespace: "enabled" injects the operator's
	// revision; any value wins over the namespace's revision label.
	labelInjection = "istio-injection"
	// labelSidecarInject on a pod, "true" or "false"; the same name as an
	// annotation is the older form, which the label overrides.
	labelSidecarInject = "sidecar.istio.io/inject"
	// annotationRevision names the revision whose injector injected a pod.
	annotationRevision = "istio.io/rev"
)

// ignoredNamespaces are never injected (Istio's IgnoredNamespaces).
var ignoredNamespaces = map[string]bool{"kube-system": true, "kube-public": true, "kube-node-lease": true, "local-path-storage": true}

// noSidecar is what AnnotationRestartedFor records for a restart that takes
// a workload's sidecars away; a restart for a proxy records its hash. A
// workload that leaves and joins again is restarted each time, and never
// twice for the same move.
const noSidecar = "no-sidecar"

// change is what a pod needs.
type change int

const (
	changeNone  change = iota
	changeProxy        // its sidecar is outdated
	changeJoin         // it has no sidecar and should have one
	changeLeave        // it has a sidecar and should have none
)

func (c change) String() string {
	return [...]string{"none", "proxy", "join", "leave"}[c]
}

// namespaceSelects reports whether the injector of the operator's revision
// injects every pod of the namespace that does not opt out.
func namespaceSelects(ns *corev1.Namespace) bool {
	if ignoredNamespaces[ns.Name] {
		return false
	}
	if v, ok := ns.Labels[labelInjection]; ok {
		return v == "enabled"
	}
	return ns.Labels[labelRevision] == operatorRevision
}

// optsIn reports whether a pod selects the operator's revision by its own
// labels, which counts in a namespace without injection labels.
func optsIn(pod *corev1.Pod) bool {
	rev, hasRev := pod.Labels[labelRevision]
	inject := pod.Labels[labelSidecarInject]
	return (hasRev && rev == operatorRevision && inject != "false") || (!hasRev && inject == "true")
}

// selected reports whether the injector of the operator's revision would
// give a pod created now like pod, in namespace ns, a sidecar: one of its
// webhook's selectors matches (MutatingWebhookConfiguration
// istio-sidecar-injector), and the injector itself does not skip the pod
// (host network, a system namespace, the sidecar.istio.io/inject annotation
// "false" without the label).
func selected(ns *corev1.Namespace, pod *corev1.Pod) bool {
	if pod.Spec.HostNetwork || ignoredNamespaces[ns.Name] || pod.Labels[labelSidecarInject] == "false" {
		return false
	}
	_, nsInjection := ns.Labels[labelInjection]
	_, nsRevision := ns.Labels[labelRevision]
	if nsInjection || nsRevision {
		if !namespaceSelects(ns) {
			return false
		}
	} else if !optsIn(pod) {
		return false
	}
	if _, labelled := pod.Labels[labelSidecarInject]; !labelled && pod.Annotations[labelSidecarInject] == "false" {
		return false
	}
	return true
}

// judge says what a live pod needs for the target, and why; ns is the pod's
// namespace, nil when the cache does not know it (then only its proxy is
// judged: a namespace seen late must not move pods out of the mesh). A pod
// that another revision injected is not the operator's to judge.
func (t *target) judge(pod *corev1.Pod, ns *corev1.Namespace) (change, string) {
	has := injected(pod)
	if has && t.otherRevision(pod) {
		return changeNone, ""
	}
	switch {
	case t.removal:
		if has {
			return changeLeave, "Istio was uninstalled"
		}
		return changeNone, ""
	case ns == nil:
		if has {
			if why := t.outdated(pod, ns); why != "" {
				return changeProxy, why
			}
		}
		return changeNone, ""
	}
	want := selected(ns, pod) || t.revisionSelects(ns, pod)
	switch {
	case has && !want:
		return changeLeave, "the injector no longer selects its pods (" + injectionOf(ns) + ")"
	case !has && want:
		return changeJoin, "the injector selects its pods, which have no sidecar (" + injectionOf(ns) + ")"
	case has:
		if why := t.outdated(pod, ns); why != "" {
			return changeProxy, why
		}
	}
	return changeNone, ""
}

// injectionOf describes a namespace's injection labels for a message.
func injectionOf(ns *corev1.Namespace) string {
	if v, ok := ns.Labels[labelInjection]; ok {
		return fmt.Sprintf("namespace %s has %s=%s", ns.Name, labelInjection, v)
	}
	if v, ok := ns.Labels[labelRevision]; ok {
		return fmt.Sprintf("namespace %s has %s=%s", ns.Name, labelRevision, v)
	}
	return fmt.Sprintf("namespace %s has no injection label; the pod labels decide", ns.Name)
}

// mayOptIn reports whether a pod asks for a sidecar by its own labels: for
// the default tag (optsIn), or for a revision by its name, which only a
// target can tell is one of the operator's (revisionSelects).
func mayOptIn(pod *corev1.Pod) bool {
	if optsIn(pod) {
		return true
	}
	rev := pod.Labels[labelRevision]
	return rev != "" && rev != operatorRevision && pod.Labels[labelSidecarInject] != "false"
}

// candidate reports whether a pod may need a restart: it has a sidecar, or
// an injector of the operator's revisions may select it. Pod events of
// other pods do not wake the summary.
func (c *Controller) candidate(pod *corev1.Pod) bool {
	if injected(pod) || mayOptIn(pod) {
		return true
	}
	ns, err := c.namespaces.Get(pod.Namespace)
	return err == nil && c.target.Load().selectsNamespace(ns)
}

// meshPods calls visit with every pod a count must judge, and its
// namespace (nil when not cached): the injected pods, and, unless the
// target removes sidecars, the pods without one that the injector would
// select: every pod of a selecting namespace, and the pods that opt in by
// their labels. The cost follows the mesh: other pods are never visited.
func (c *Controller) meshPods(t *target, visit func(*corev1.Pod, *corev1.Namespace)) {
	namespaces := map[string]*corev1.Namespace{}
	nsOf := func(name string) *corev1.Namespace {
		ns, ok := namespaces[name]
		if !ok {
			ns, _ = c.namespaces.Get(name)
			namespaces[name] = ns
		}
		return ns
	}
	objs, _ := c.pods.ByIndex(injectedIndex, "true")
	for _, o := range objs {
		pod := o.(*corev1.Pod)
		visit(pod, nsOf(pod.Namespace))
	}
	if t.removal {
		return
	}
	all, _ := c.namespaces.List(labels.Everything())
	selecting := map[string]bool{}
	for _, ns := range all {
		namespaces[ns.Name] = ns
		if !t.selectsNamespace(ns) {
			continue
		}
		selecting[ns.Name] = true
		objs, _ := c.pods.ByIndex(cache.NamespaceIndex, ns.Name)
		for _, o := range objs {
			if pod := o.(*corev1.Pod); !injected(pod) {
				visit(pod, ns)
			}
		}
	}
	objs, _ = c.pods.ByIndex(optInIndex, "true")
	for _, o := range objs {
		if pod := o.(*corev1.Pod); !selecting[pod.Namespace] {
			visit(pod, nsOf(pod.Namespace))
		}
	}
}

// optInIndex indexes the pods without a sidecar that may opt in by their
// labels.
const optInIndex = "optIn"

func indexOptIn(obj any) ([]string, error) {
	if pod, ok := obj.(*corev1.Pod); ok && !injected(pod) && mayOptIn(pod) {
		return []string{"true"}, nil
	}
	return nil, nil
}

// judgement is what the live pods of one workload need.
type judgement struct {
	stale []*corev1.Pod // the pods that need a restart
	move  change        // what the first of them needs, and why
	why   string
	// token is what a restart towards the target records: the proxy's
	// hash while the workload's pods should have a sidecar, noSidecar
	// while they should not.
	token string
	ns    *corev1.Namespace
	// templated: pods keep a sidecar that their template carries, which
	// no restart takes away.
	templated bool
}

// judgePods judges the pods of one workload in namespace. A workload whose
// pod template carries the sidecar itself (istioctl kube-inject) keeps it
// whatever the injector selects: only its proxy is judged.
func (c *Controller) judgePods(t *target, namespace string, template map[string]string, pods []*corev1.Pod) judgement {
	ns, _ := c.namespaces.Get(namespace)
	return t.judgePods(ns, template, pods)
}

// judgePods judges pods of one workload in ns (nil when not cached).
func (t *target) judgePods(ns *corev1.Namespace, template map[string]string, pods []*corev1.Pod) judgement {
	j := judgement{token: t.hash, ns: ns}
	_, kubeInjected := template[annotationSidecarStatus]
	want, decided := !t.removal, false
	for _, pod := range pods {
		if !live(pod) || injected(pod) && t.otherRevision(pod) {
			continue
		}
		m, why := t.judge(pod, j.ns)
		if kubeInjected && (m == changeJoin || m == changeLeave) {
			// Its template carries the sidecar: only the proxy is judged.
			j.templated = j.templated || m == changeLeave
			m, why = changeNone, ""
			if injected(pod) && !t.removal {
				if why = t.outdated(pod, j.ns); why != "" {
					m = changeProxy
				}
			}
		}
		if !decided {
			// The pods of a workload share its template and namespace:
			// the first decides for all.
			want, decided = m == changeJoin || injected(pod) && m != changeLeave, true
		}
		if m == changeNone {
			continue
		}
		if len(j.stale) == 0 {
			j.move, j.why = m, why
		}
		j.stale = append(j.stale, pod)
	}
	if !want {
		j.token = noSidecar
	}
	return j
}
