package proxysidecar

import (
	"fmt"
	"sort"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	v1alpha2 "github.com/meshkeeper/istio-operator/pkg/apis/operator/v1alpha2"
	"github.com/meshkeeper/istio-operator/pkg/controllers/status"
	"github.com/meshkeeper/istio-operator/pkg/istioclient"
	"github.com/meshkeeper/istio-operator/pkg/metrics"
)

// Revisions. The operator's control plane is one revision, or two during a
// canary upgrade (status.upgrade, written by the installation controller).
// Pods that other control planes injected are theirs. During a canary
// upgrade every pod of the operator's revisions is to move to the revision
// the default tag points at (forward, or back with spec.canaryRollback):
// each workload is restarted once onto it, the platform's first, at the
// restart pacing, unless an istio.io/rev label pins it to the other one.

// revisions are the revisions a target judges pods by.
type revisions struct {
	// ours are the operator's revisions.
	ours map[string]bool
	// moveTo and moveFrom are set during a canary upgrade.
	moveTo, moveFrom string
}

// revisionsOf reads the operator's revisions from the resource's status,
// and, during a canary upgrade, where the pods move. A rollback moves them
// to the old revision's proxy: proxy is changed to its version.
func revisionsOf(istio *v1alpha2.Istio, proxy *istioclient.Proxy) revisions {
	rev := istio.Status.Revision
	if rev == "" {
		rev = operatorRevision
	}
	r := revisions{ours: map[string]bool{rev: true}}
	up := istio.Status.Upgrade
	if up == nil {
		return r
	}
	r.ours[up.From.Revision], r.ours[up.To.Revision] = true, true
	r.moveTo, r.moveFrom = up.To.Revision, up.From.Revision
	if istio.Spec.CanaryRollback {
		r.moveTo, r.moveFrom = up.From.Revision, up.To.Revision
		if i := strings.LastIndexByte(proxy.Image, ':'); i > strings.LastIndexByte(proxy.Image, '/') {
			proxy.Image = proxy.Image[:i+1] + up.From.Version
		}
	}
	return r
}

// removalRevisions are the revisions whose sidecars an uninstall takes
// away: the operator's, both of them when the uninstall came in the middle
// of a canary upgrade (the installation controller keeps status.upgrade
// until the resource is gone). Nothing moves between them any more.
func removalRevisions(istio *v1alpha2.Istio) revisions {
	r := revisionsOf(istio, &istioclient.Proxy{})
	r.moveTo, r.moveFrom = "", ""
	return r
}

// otherRevision reports whether another control plane than the operator's
// injected the pod: that control plane, not the operator, decides its
// proxy, so the pod is neither outdated nor counted.
func (t *target) otherRevision(pod *corev1.Pod) bool {
	if t.ours == nil {
		return podRevision(pod) != operatorRevision
	}
	return !t.ours[podRevision(pod)]
}

// outdated says why an injected pod of the operator's revisions needs a
// new proxy: it differs from the target's, or, during a canary upgrade, it
// is on the revision being left (and not pinned to it).
func (t *target) outdated(pod *corev1.Pod, ns *corev1.Namespace) string {
	if t.pinned(pod, ns) {
		return ""
	}
	if why := outdated(pod, &t.proxy); why != "" || t.moveTo == "" {
		return why
	}
	if rev := podRevision(pod); rev != t.moveTo {
		return fmt.Sprintf("on revision %s; the default revision tag points at revision %s", rev, t.moveTo)
	}
	return ""
}

// pinned reports whether a pod on a revision other than the one moved to
// stays there: an istio.io/rev label on the pod (its template) or its
// namespace names that revision, whose injector a restart would ask again.
// The default tag's name pins nothing: it follows the tag.
func (t *target) pinned(pod *corev1.Pod, ns *corev1.Namespace) bool {
	rev := podRevision(pod)
	if t.moveTo == "" || rev == t.moveTo || rev == operatorRevision {
		return false
	}
	if ns == nil {
		return pod.Labels[labelRevision] == rev
	}
	if _, injection := ns.Labels[labelInjection]; injection {
		return false // istio-injection wins over any revision label
	}
	if nsRev, ok := ns.Labels[labelRevision]; ok {
		return nsRev == rev
	}
	return pod.Labels[labelRevision] == rev
}

// revisionSelects reports whether an istio.io/rev label on the namespace,
// or on the pod in a namespace without injection labels, names one of the
// operator's revisions by its own name (1-31) rather than the default tag:
// that revision's injector selects the pod (selected covers the tag).
func (t *target) revisionSelects(ns *corev1.Namespace, pod *corev1.Pod) bool {
	if pod.Spec.HostNetwork || ignoredNamespaces[ns.Name] || pod.Labels[labelSidecarInject] == "false" {
		return false
	}
	if _, ok := ns.Labels[labelInjection]; ok {
		return false // istio-injection wins over a revision label
	}
	if _, ok := ns.Labels[labelRevision]; ok {
		return t.namespaceNamesRevision(ns)
	}
	rev := pod.Labels[labelRevision]
	return rev != "" && rev != operatorRevision && t.ours[rev]
}

// selectsNamespace reports whether an injector of the operator's revisions
// injects every pod of the namespace that does not opt out: the default
// tag's, or one the namespace names by its revision's name. A nil target
// (none set yet) knows only the default tag.
func (t *target) selectsNamespace(ns *corev1.Namespace) bool {
	return namespaceSelects(ns) || t != nil && t.namespaceNamesRevision(ns)
}

// namespaceNamesRevision reports whether a namespace selects one of the
// operator's revisions by its own name (istio.io/rev=1-31), without an
// istio-injection label, which would win over it.
func (t *target) namespaceNamesRevision(ns *corev1.Namespace) bool {
	if ignoredNamespaces[ns.Name] {
		return false
	}
	if _, ok := ns.Labels[labelInjection]; ok {
		return false
	}
	rev, ok := ns.Labels[labelRevision]
	return ok && rev != operatorRevision && t.ours[rev]
}

// revisionCensus counts the mesh by revision during a canary upgrade.
type revisionCensus struct {
	on, off map[Key]bool // workloads with a pod on the revision moved to, and not
	podsOff int          // live injected pods not on it
	pinned  map[Key]string
}

// note counts one live injected pod of workload k (or of a pod nothing
// restarts, by its own key).
func (r *revisionCensus) note(t *target, k Key, pod *corev1.Pod, ns *corev1.Namespace) {
	if t.moveTo == "" || !injected(pod) {
		return
	}
	if r.on == nil {
		r.on, r.off, r.pinned = map[Key]bool{}, map[Key]bool{}, map[Key]string{}
	}
	if podRevision(pod) == t.moveTo {
		r.on[k] = true
		return
	}
	r.off[k] = true
	r.podsOff++
	if t.pinned(pod, ns) {
		r.pinned[k] = describe(k, pod)
	}
}

// counts are the workloads moved, still to move (pinned ones included)
// and pinned, for the metrics.
func (r *revisionCensus) counts() map[string]int {
	moved := 0
	for k := range r.on {
		if !r.off[k] {
			moved++
		}
	}
	return map[string]int{metrics.CanaryMoved: moved, metrics.CanaryRemaining: len(r.off), metrics.CanaryPinned: len(r.pinned)}
}

// condition is ProxySidecarsOnRevision.
func (r *revisionCensus) condition(t *target) status.Condition {
	moved := 0
	for k := range r.on {
		if !r.off[k] {
			moved++
		}
	}
	total := moved + len(r.off)
	cond := status.Condition{Type: v1alpha2.ConditionProxySidecarsOnRevision}
	msg := fmt.Sprintf("%d of %d workloads on revision %s", moved, total, t.moveTo)
	switch {
	case r.podsOff == 0:
		cond.Status, cond.Reason = metav1.ConditionTrue, v1alpha2.ReasonProxySidecarsOnRevision
		cond.Message = msg + fmt.Sprintf("; no pod uses revision %s.", t.moveFrom)
	case len(r.pinned) > 0:
		names := make([]string, 0, len(r.pinned))
		for _, n := range r.pinned {
			names = append(names, n)
		}
		sort.Strings(names)
		cond.Status, cond.Reason = metav1.ConditionFalse, v1alpha2.ReasonProxySidecarsPinned
		cond.Message = msg + fmt.Sprintf("; %d pods still on revision %s. %d workloads are pinned to it by the %s label and are not moved: %s. "+
			"Change or remove the label to move them; the old control plane stays until no pod uses it.",
			r.podsOff, t.moveFrom, len(names), labelRevision, named(names))
	default:
		cond.Status, cond.Reason = metav1.ConditionFalse, v1alpha2.ReasonProxySidecarsMoving
		cond.Message = msg + fmt.Sprintf("; %d pods still on revision %s.", r.podsOff, t.moveFrom)
	}
	return cond
}
