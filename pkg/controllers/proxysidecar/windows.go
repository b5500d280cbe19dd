package proxysidecar

import (
	"time"

	corev1 "k8s.io/api/core/v1"

	v1alpha2 "github.com/meshkeeper/istio-operator/pkg/apis/operator/v1alpha2"
	"github.com/meshkeeper/istio-operator/pkg/maintenance"
)

// Maintenance windows (spec.proxyRestart.maintenanceWindows) decide when a
// restart may start; they never stop one that started. Outside them an
// outdated workload is held: the summary counts it, names the next opening
// and requeues itself for it, and the workload's own sync frees its slot
// without restarting it. With versionUpgrades Immediate, a workload whose
// pods run another proxy version is restarted outside them too.

// withWindows sets the target's maintenance windows from the spec. A window
// the operator cannot read (an unknown time zone) holds every restart back
// until the spec is corrected.
func (t *target) withWindows(spec *v1alpha2.IstioSpec) *target {
	if pr := spec.ProxyRestart; pr != nil {
		t.windows, t.windowsErr = maintenance.New(pr.MaintenanceWindows)
		t.upgradesNow = pr.VersionUpgrades == v1alpha2.VersionUpgradesImmediate
	}
	return t
}

// inWindow reports whether the windows let restarts start at now: always
// without windows, never while they cannot be read.
func (t *target) inWindow(now time.Time) bool {
	switch {
	case t.windowsErr != nil:
		return false
	case t.windows == nil:
		return true
	}
	return t.windows.At(now).Open
}

// mayRestart reports whether a workload with these outdated pods may be
// restarted, inside a window or not: outside, only for a new proxy version
// under versionUpgrades Immediate.
func (t *target) mayRestart(inWindow bool, stale []*corev1.Pod) bool {
	return inWindow || t.windowsErr == nil && t.upgradesNow && newVersion(stale, &t.proxy)
}

// nextWindow is when the next window opens after now; zero without windows.
func (t *target) nextWindow(now time.Time) time.Time {
	if t.windows == nil || t.windowsErr != nil {
		return time.Time{}
	}
	return t.windows.At(now).Next
}

// heldByWindow reports whether the windows hold k's restart back now, and
// then frees k's slot: the summary enqueues it again once a window opens.
func (c *Controller) heldByWindow(t *target, k Key, stale []*corev1.Pod) bool {
	if t.mayRestart(t.inWindow(c.clock.Now()), stale) {
		return false
	}
	c.release(k)
	return true
}
