package proxysidecar

import (
	"fmt"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	v1alpha2 "github.com/meshkeeper/istio-operator/pkg/apis/operator/v1alpha2"
	"github.com/meshkeeper/istio-operator/pkg/controllers/status"
)

// After an uninstall the injected pods keep sidecars whose control plane is
// gone: they get no configuration and, once their certificates expire, no
// new ones. While the Istio resource is deleted, the installation controller
// uninstalls Istio, sets Installed to False with IstioUninstallSucceeded and
// holds its finalizer; this controller then restarts every workload with a
// sidecar of the operator's revision, paced and at most once (noSidecar),
// and reports ProxySidecarsRemoved, or ProxySidecarRemovalIncomplete naming
// what it could not restart, upon which the resource goes. Maintenance
// windows do not hold the removal back: the user asked for the uninstall.
// AnnotationKeepSidecars on the resource skips it.

// removingSidecars reports whether the deleted resource's Istio is
// uninstalled and its sidecars are to go.
func removingSidecars(istio *v1alpha2.Istio) bool {
	return istio.Uninstalled() && !istio.KeepsSidecars()
}

// removalCondition is the condition while sidecars are removed after an
// uninstall; progress is the count's summary.
func (n *census) removalCondition(progress string) (status.Condition, time.Duration) {
	cond := status.Condition{Type: v1alpha2.ConditionProxySidecarRestartSucceeded}
	left := append(append(append([]string{}, n.platformBlocked...), n.blocked...), n.manual...)
	switch {
	case len(n.rolling)+len(n.waiting) > 0:
		cond.Status, cond.Reason = metav1.ConditionFalse, v1alpha2.ReasonProxySidecarRemovalInProgress
		cond.Message = fmt.Sprintf("Istio is uninstalled; restarting the workloads with sidecars without them: %s.", progress)
		return cond, RollingInterval
	case len(left) > 0:
		cond.Status, cond.Reason = metav1.ConditionFalse, v1alpha2.ReasonProxySidecarRemovalIncomplete
		cond.Message = fmt.Sprintf("Istio is uninstalled; these workloads keep their sidecars until they are restarted: %s (%s).",
			strings.TrimSpace(named(left)), progress)
		return cond, AttentionInterval
	}
	cond.Status, cond.Reason = metav1.ConditionTrue, v1alpha2.ReasonProxySidecarsRemoved
	cond.Message = "Istio is uninstalled and no workload keeps a sidecar."
	if n.excluded > 0 {
		cond.Message = fmt.Sprintf("Istio is uninstalled; no workload keeps a sidecar but the %d excluded by annotation %s.", n.excluded, AnnotationExclude)
	}
	return cond, ConvergedInterval
}
