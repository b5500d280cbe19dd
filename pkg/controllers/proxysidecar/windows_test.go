package proxysidecar

import (
	"reflect"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	v1alpha2 "github.com/meshkeeper/istio-operator/pkg/apis/operator/v1alpha2"
	"github.com/meshkeeper/istio-operator/pkg/controllers/controllertest"
	"github.com/meshkeeper/istio-operator/pkg/istioclient"
	"github.com/meshkeeper/istio-operator/pkg/maintenance"
)

// The fixture's clock starts on Tuesday 2026-12-01 at 10:00 UTC.

// maintenanceWindow opens at start (HH:MM) on the days (every day when
// none) for d, in zone ("" for UTC).
func maintenanceWindow(start string, d time.Duration, zone string, days ...v1alpha2.Weekday) v1alpha2.MaintenanceWindow {
	return v1alpha2.MaintenanceWindow{Days: days, Start: start, Duration: metav1.Duration{Duration: d}, TimeZone: zone}
}

// windowed is the installed default Istio resource with proxy restarts
// confined to the windows.
func windowed(upgrades v1alpha2.VersionUpgradeRestarts, windows ...v1alpha2.MaintenanceWindow) *v1alpha2.Istio {
	istio := installedIstio()
	istio.Spec.ProxyRestart = &v1alpha2.ProxyRestart{MaintenanceWindows: windows, VersionUpgrades: upgrades}
	return istio
}

// configOnly is the desired proxy under an older configuration: the same
// version, another configuration hash.
func (f *fixture) configOnly() istioclient.Proxy {
	p := f.want
	p.ConfigHash = "configuration-before"
	return p
}

// nextWindow is status.nextMaintenanceWindow as the client holds it.
func (f *fixture) nextWindow() *metav1.Time {
	f.t.Helper()
	return f.istios.Get(controllertest.Key).Status.NextMaintenanceWindow
}

func (f *fixture) wantNextWindow(want string) {
	f.t.Helper()
	got := f.nextWindow()
	switch {
	case want == "" && got != nil:
		f.t.Errorf("status.nextMaintenanceWindow %s, want none", got.UTC().Format(time.RFC3339))
	case want != "" && (got == nil || !got.Equal(&metav1.Time{Time: mustParse(f.t, want)})):
		f.t.Errorf("status.nextMaintenanceWindow %v, want %s", got, want)
	}
}

func mustParse(t *testing.T, s string) time.Time {
	t.Helper()
	v, err := time.Parse(time.RFC3339, s)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// Outside a window nothing is restarted: the condition says how many wait
// and when the window opens, the status names the opening, and the summary
// comes back then. Once it is open, the workloads are restarted.
func TestWindowHoldsRestartsUntilItOpens(t *testing.T) {
	f := newFixture(t, v1alpha2.RestartPacing{})
	f.serve(windowed("", maintenanceWindow("10:05", time.Hour, "")))
	cfg := f.configOnly()
	a := f.deploy("ns", "a", nil, cfg, cfg)
	b := f.deploy("ns", "b", nil, f.old)
	f.deploy("ns", "current", nil, f.want)

	res := f.summary()
	if res.RequeueAfter != 5*time.Minute {
		t.Errorf("requeue after %v, want the 5m until the window opens", res.RequeueAfter)
	}
	c := f.condition()
	wantMsg := "Restarts onto proxy " + f.want.Image + " wait for a maintenance window: 0 of 2 workloads restarted, 2 waiting, " +
		"0 need manual restart (2 wait for the maintenance window that opens at 2026-12-01T10:05:00Z)."
	if c.Status != metav1.ConditionFalse || c.Reason != v1alpha2.ReasonProxySidecarRestartWaitingForWindow || c.Message != wantMsg {
		t.Errorf("condition %s/%s %q, want False/%s %q", c.Status, c.Reason, c.Message, v1alpha2.ReasonProxySidecarRestartWaitingForWindow, wantMsg)
	}
	f.wantNextWindow("2026-12-01T10:05:00Z")
	if q := f.queued(); len(q) != 0 {
		t.Errorf("enqueued %v outside the window", q)
	}
	if e := f.eventReasons(); len(e) != 0 {
		t.Errorf("events %v while waiting for the window", e)
	}

	// A workload's own sync (a resync, an event) restarts nothing either,
	// and holds no slot.
	for _, k := range []Key{a, b} {
		if res := f.sync(k); res.RequeueAfter != 0 {
			t.Errorf("%v outside the window: requeue after %v, want none (the summary wakes it)", k, res.RequeueAfter)
		}
		if f.c.pacer.waiting(k) {
			t.Errorf("%v holds a slot outside the window", k)
		}
	}
	if patched, _ := f.counts(); len(patched) != 0 {
		t.Fatalf("restarted %v outside the window", patched)
	}

	// Counted again a minute later: nothing to write.
	f.clock.Step(time.Minute)
	if res := f.summary(); res.RequeueAfter != 4*time.Minute {
		t.Errorf("a minute later: requeue after %v, want 4m", res.RequeueAfter)
	}
	if n := f.istios.StatusWrites(); n != 1 {
		t.Errorf("%d status writes, want 1", n)
	}

	// The window opens: both are restarted, and the opening is cleared.
	f.clock.Step(4 * time.Minute)
	if res := f.summary(); res.RequeueAfter != RollingInterval {
		t.Errorf("in the window: requeue after %v, want %v", res.RequeueAfter, RollingInterval)
	}
	if c := f.condition(); c.Reason != v1alpha2.ReasonProxySidecarRestartInProgress || strings.Contains(c.Message, "maintenance window") {
		t.Errorf("condition %s %q, want restarts in progress", c.Reason, c.Message)
	}
	f.wantNextWindow("")
	if q := f.queued(); !reflect.DeepEqual(q, map[Key]bool{a: true, b: true}) {
		t.Errorf("enqueued %v, want %v and %v", q, a, b)
	}
	f.sync(a)
	f.sync(b)
	if patched, _ := f.counts(); !reflect.DeepEqual(patched, []string{"deployments/a", "deployments/b"}) {
		t.Errorf("restarted %v, want a and b", patched)
	}
}

// The next opening is reported in the zone of its window, and a far one is
// counted again after WindowWaitInterval at the latest.
func TestWindowOpeningInItsZone(t *testing.T) {
	f := newFixture(t, v1alpha2.RestartPacing{})
	// Saturday 02:00 in Berlin is 01:00 UTC in December; the Sunday window
	// in Tokyo opens at 2026-12-05T15:00Z, later.
	f.serve(windowed("", maintenanceWindow("00:00", 2*time.Hour, "Asia/Tokyo", "Sun"),
		maintenanceWindow("02:00", 4*time.Hour, "Europe/Berlin", "Sat")))
	f.deploy("ns", "a", nil, f.configOnly())
	if res := f.summary(); res.RequeueAfter != WindowWaitInterval {
		t.Errorf("requeue after %v, want %v", res.RequeueAfter, WindowWaitInterval)
	}
	if c := f.condition(); !strings.Contains(c.Message, "1 wait for the maintenance window that opens at 2026-12-05T02:00:00+01:00)") {
		t.Errorf("message %q does not name Saturday 02:00 in Berlin", c.Message)
	}
	f.wantNextWindow("2026-12-05T01:00:00Z")
}

// With versionUpgrades Immediate, workloads whose pods run another proxy
// version are restarted outside the windows; those outdated only by
// configuration (a changed registry included) still wait. InWindow, the
// default, holds both.
func TestWindowVersionUpgrades(t *testing.T) {
	// Another repository, the same version.
	mirrored := func(f *fixture) istioclient.Proxy {
		p := f.want
		p.Image = "registry.example.com/team/proxyv2:" + strings.SplitN(f.want.Image, ":", 2)[1]
		return p
	}
	for name, tc := range map[string]struct {
		upgrades  v1alpha2.VersionUpgradeRestarts
		restarted []string
		reason    string
		inMsg     string
	}{
		"Immediate": {v1alpha2.VersionUpgradesImmediate, []string{"deployments/upgrade"}, v1alpha2.ReasonProxySidecarRestartInProgress,
			"0 of 3 workloads restarted, 3 waiting, 0 need manual restart (2 wait for the maintenance window that opens at 2026-12-02T02:00:00Z)"},
		"InWindow": {v1alpha2.VersionUpgradesInWindow, nil, v1alpha2.ReasonProxySidecarRestartWaitingForWindow,
			"0 of 3 workloads restarted, 3 waiting, 0 need manual restart (3 wait for the maintenance window that opens at 2026-12-02T02:00:00Z)"},
		"unset is InWindow": {"", nil, v1alpha2.ReasonProxySidecarRestartWaitingForWindow,
			"(3 wait for the maintenance window"},
	} {
		t.Run(name, func(t *testing.T) {
			f := newFixture(t, v1alpha2.RestartPacing{})
			f.serve(windowed(tc.upgrades, maintenanceWindow("02:00", time.Hour, "")))
			// The upgrade's pods: one current, one on the older version.
			upgrade := f.deploy("ns", "upgrade", nil, f.want, f.old)
			config := f.deploy("ns", "config", nil, f.configOnly())
			registry := f.deploy("ns", "registry", nil, mirrored(f))
			f.summary()
			if c := f.condition(); c.Reason != tc.reason || !strings.Contains(c.Message, tc.inMsg) {
				t.Errorf("condition %s %q, want %s saying %q", c.Reason, c.Message, tc.reason, tc.inMsg)
			}
			f.wantNextWindow("2026-12-02T02:00:00Z")
			for _, k := range []Key{upgrade, config, registry} {
				f.sync(k)
			}
			if patched, _ := f.counts(); !reflect.DeepEqual(patched, tc.restarted) {
				t.Errorf("restarted %v, want %v", patched, tc.restarted)
			}
		})
	}
}

// When a window closes in the middle of a wave, no new restart starts, a
// restart under way finishes, and the rest wait for the next window.
func TestWindowClosesMidWave(t *testing.T) {
	f := newFixture(t, v1alpha2.RestartPacing{})
	istio := windowed("", maintenanceWindow("09:30", time.Hour, ""))
	istio.Spec.ProxyRestart.MaxConcurrentRollouts = ptr.To[int32](2)
	istio.Spec.ProxyRestart.RestartsPerSecond = v1alpha2.NewQuantity("100m")
	f.serve(istio)
	cfg := f.configOnly()
	a := f.deploy("ns", "a", nil, cfg)
	b := f.deploy("ns", "b", nil, cfg)
	c := f.deploy("ns", "c", nil, cfg)
	// An OnDelete StatefulSet restarted earlier in the window, still being
	// evicted pod by pod.
	sts := f.workloadWithPods(KindStatefulSet, true, restartedFor(f.want.Hash(), f.clock.Now().Add(-time.Minute)), cfg, f.want)

	f.clock.Step(29 * time.Minute) // 10:29, the window closes at 10:30
	f.summary()
	f.queued()
	f.sync(a) // restarted: takes the second slot (the StatefulSet holds the first) and the token
	if res := f.sync(b); res.RequeueAfter != 0 || !f.c.pacer.waiting(b) {
		t.Fatalf("b: requeue %v, waiting %v; want it in line for a slot", res.RequeueAfter, f.c.pacer.waiting(b))
	}
	if patched, _ := f.counts(); !reflect.DeepEqual(patched, []string{"deployments/a"}) {
		t.Fatalf("restarted %v, want a alone", patched)
	}

	// a's rollout finishes after the window closed: its slot goes to b,
	// which the closed window holds back, freeing the slot again.
	f.clock.Step(2 * time.Minute) // 10:31
	f.changeDeployment("a", func(d *appsv1.Deployment) { d.Spec.Template.Annotations = restartedFor(f.want.Hash(), f.clock.Now()) })
	for _, name := range []string{"a-0"} {
		obj, _, _ := f.pods.GetByKey("ns/" + name)
		if err := f.pods.Delete(obj); err != nil {
			t.Fatal(err)
		}
	}
	f.podIn("ns", "a-1", controllertest.Owned("ReplicaSet", "apps/v1", "a-1"), f.want)
	f.sync(a)
	if q := f.queued(); !q[b] {
		t.Fatalf("enqueued %v, want b woken for the freed slot", q)
	}
	f.sync(b)
	f.sync(c)
	if patched, _ := f.counts(); !reflect.DeepEqual(patched, []string{"deployments/a"}) {
		t.Errorf("restarted %v after the window closed, want a alone", patched)
	}
	if f.c.pacer.waiting(b) || f.c.pacer.waiting(c) {
		t.Error("a workload held by the closed window keeps its place with the pacer")
	}

	// The restart under way goes on: the StatefulSet's next pod is evicted.
	f.sync(sts)
	if _, evicted := f.counts(); !reflect.DeepEqual(evicted, []string{"w-0"}) {
		t.Errorf("evicted %v, want the StatefulSet's outdated pod w-0", evicted)
	}

	f.summary()
	cond := f.condition()
	if cond.Reason != v1alpha2.ReasonProxySidecarRestartInProgress ||
		!strings.Contains(cond.Message, "1 of 4 workloads restarted, 2 waiting, 0 need manual restart (1 rolling out; 2 wait for the maintenance window that opens at 2026-12-02T09:30:00Z)") {
		t.Errorf("condition %s %q, want the StatefulSet rolling, b and c waiting for tomorrow's window", cond.Reason, cond.Message)
	}
	f.wantNextWindow("2026-12-02T09:30:00Z")
	if q := f.queued(); q[b] || q[c] {
		t.Errorf("enqueued %v while the window is closed", q)
	}
}

// A restart whose token the pacer reserved in the window does not start
// once the window closed while it waited for it.
func TestWindowClosesDuringTheTokenWait(t *testing.T) {
	f := newFixture(t, v1alpha2.RestartPacing{})
	istio := windowed("", maintenanceWindow("09:00", 61*time.Minute, ""))
	istio.Spec.ProxyRestart.RestartsPerSecond = v1alpha2.NewQuantity("100m")
	f.serve(istio)
	cfg := f.configOnly()
	a := f.deploy("ns", "a", nil, cfg)
	b := f.deploy("ns", "b", nil, cfg)
	f.clock.Step(55 * time.Second) // 10:00:55, the window closes at 10:01
	f.summary()
	f.sync(a)
	res := f.sync(b)
	if res.RequeueAfter != 10*time.Second {
		t.Fatalf("b: requeue after %v, want the 10s wait for its token", res.RequeueAfter)
	}
	f.clock.Step(res.RequeueAfter) // 10:01:05
	f.sync(b)
	if patched, _ := f.counts(); !reflect.DeepEqual(patched, []string{"deployments/a"}) {
		t.Errorf("restarted %v, want a alone", patched)
	}
	if f.c.pacer.waiting(b) {
		t.Error("b keeps its place with the pacer after the window closed")
	}
}

// An unknown time zone stops every restart, version upgrades under
// Immediate too: an Error naming the window, a Warning Event, no opening.
// Corrected, the restarts start.
func TestWindowWithAnUnknownTimeZone(t *testing.T) {
	f := newFixture(t, v1alpha2.RestartPacing{})
	f.serve(windowed(v1alpha2.VersionUpgradesImmediate, maintenanceWindow("02:00", time.Hour, ""),
		maintenanceWindow("02:00", time.Hour, "Mars/Olympus_Mons")))
	upgrade := f.deploy("ns", "upgrade", nil, f.old)
	if res := f.summary(); res.RequeueAfter != AttentionInterval {
		t.Errorf("requeue after %v, want %v", res.RequeueAfter, AttentionInterval)
	}
	c := f.condition()
	wantMsg := "No workload is restarted onto proxy " + f.want.Image + " until the maintenance windows are corrected: " +
		`spec.proxyRestart.maintenanceWindows[1]: unknown time zone "Mars/Olympus_Mons" (0 of 1 workloads restarted, 1 waiting, 0 need manual restart).`
	if c.Status != metav1.ConditionFalse || c.Reason != v1alpha2.ReasonProxySidecarMaintenanceWindowInvalid || c.Message != wantMsg {
		t.Errorf("condition %s/%s %q, want False/%s %q", c.Status, c.Reason, c.Message, v1alpha2.ReasonProxySidecarMaintenanceWindowInvalid, wantMsg)
	}
	if e := f.eventReasons(); !reflect.DeepEqual(e, []string{"Warning " + v1alpha2.ReasonProxySidecarMaintenanceWindowInvalid}) {
		t.Errorf("events %v, want one Warning %s", e, v1alpha2.ReasonProxySidecarMaintenanceWindowInvalid)
	}
	f.wantNextWindow("")
	if q := f.queued(); len(q) != 0 {
		t.Errorf("enqueued %v", q)
	}
	f.sync(upgrade)
	if patched, _ := f.counts(); len(patched) != 0 {
		t.Fatalf("restarted %v with an invalid window", patched)
	}

	// Corrected (a new generation, installed): the upgrade restarts at once.
	istio := f.istios.Get(controllertest.Key)
	istio.Generation = 2
	istio.Spec.ProxyRestart.MaintenanceWindows[1].TimeZone = "Europe/Berlin"
	meta.SetStatusCondition(&istio.Status.Conditions, controllertest.InstalledCurrent(2))
	f.istios.Set(istio)
	f.summary()
	if c := f.condition(); c.Reason != v1alpha2.ReasonProxySidecarRestartInProgress {
		t.Errorf("condition %s %q after the correction, want in progress", c.Reason, c.Message)
	}
	f.sync(upgrade)
	if patched, _ := f.counts(); !reflect.DeepEqual(patched, []string{"deployments/upgrade"}) {
		t.Errorf("restarted %v, want the upgrade", patched)
	}
}

// Without windows nothing waits: windows removed, the held workloads go,
// and the opening is cleared from the status.
func TestWindowsRemoved(t *testing.T) {
	f := newFixture(t, v1alpha2.RestartPacing{})
	f.serve(windowed("", maintenanceWindow("02:00", time.Hour, "")))
	a := f.deploy("ns", "a", nil, f.configOnly())
	f.summary()
	f.wantNextWindow("2026-12-02T02:00:00Z")

	istio := f.istios.Get(controllertest.Key)
	istio.Generation = 2
	istio.Spec.ProxyRestart = nil
	meta.SetStatusCondition(&istio.Status.Conditions, controllertest.InstalledCurrent(2))
	f.istios.Set(istio)
	f.summary()
	if c := f.condition(); c.Reason != v1alpha2.ReasonProxySidecarRestartInProgress {
		t.Errorf("condition %s %q, want in progress", c.Reason, c.Message)
	}
	f.wantNextWindow("")
	if q := f.queued(); !q[a] {
		t.Errorf("enqueued %v, want %v", q, a)
	}
	f.sync(a)
	if patched, _ := f.counts(); len(patched) != 1 {
		t.Errorf("restarted %v, want a", patched)
	}
}

// While Istio is being changed, the gate's waiting condition clears the
// opening: no restart waits for a window then.
func TestWindowClearedWhileWaitingForInstallation(t *testing.T) {
	f := newFixture(t, v1alpha2.RestartPacing{})
	f.serve(windowed("", maintenanceWindow("02:00", time.Hour, "")))
	f.deploy("ns", "a", nil, f.configOnly())
	f.summary()
	f.wantNextWindow("2026-12-02T02:00:00Z")

	istio := f.istios.Get(controllertest.Key)
	istio.Generation = 2
	f.istios.Set(istio)
	f.summary()
	if c := f.condition(); c.Reason != v1alpha2.ReasonWaitingForInstallation {
		t.Fatalf("condition %s, want %s", c.Reason, v1alpha2.ReasonWaitingForInstallation)
	}
	f.wantNextWindow("")
}

// Workloads waiting for a window give way to every reason that needs the
// user, and to restarts in progress; every reason counts them, names the
// opening and comes back for it.
func TestWindowConditionPrecedence(t *testing.T) {
	tg := &target{proxy: desired(t, v1alpha2.IstioSpec{})}
	opens := time.Date(2026, 12, 5, 2, 0, 0, 0, time.UTC)
	held := func(n census, until time.Duration) census {
		n.held, n.opens, n.untilOpens = []Key{key("h1"), key("h2")}, opens, until
		return n
	}
	const waitingFor = "2 wait for the maintenance window that opens at 2026-12-05T02:00:00Z"
	for name, tc := range map[string]struct {
		n      census
		reason string
		after  time.Duration
		inMsg  string
	}{
		"waiting alone": {held(census{restarted: 1}, time.Minute), v1alpha2.ReasonProxySidecarRestartWaitingForWindow, time.Minute,
			"wait for a maintenance window: 1 of 3 workloads restarted, 2 waiting, 0 need manual restart (" + waitingFor + ")."},
		"waiting, the window a day away": {held(census{}, 24*time.Hour), v1alpha2.ReasonProxySidecarRestartWaitingForWindow, WindowWaitInterval, waitingFor},
		"rolling beats waiting": {held(census{rolling: []Key{key("r")}}, time.Hour), v1alpha2.ReasonProxySidecarRestartInProgress, RollingInterval,
			"0 of 3 workloads restarted, 2 waiting, 0 need manual restart (1 rolling out; " + waitingFor + ")"},
		"a blocked platform workload is an Error, waiting or not": {held(census{platformBlocked: []string{"kyma-system/api (paused: resume it to restart its proxies)"}}, time.Hour),
			v1alpha2.ReasonProxySidecarRestartFailed, AttentionInterval, waitingFor + "; platform workloads blocked: kyma-system/api"},
		"a blocked customer workload beats waiting": {held(census{blocked: []string{"ns/b (paused: resume it to restart its proxies)"}}, time.Hour),
			v1alpha2.ReasonProxySidecarRestartPartiallySucceeded, AttentionInterval, waitingFor},
		"a manual restart beats waiting": {held(census{manual: []string{"ns/p"}}, time.Hour),
			v1alpha2.ReasonProxySidecarManualRestartRequired, AttentionInterval, waitingFor},
		"the window opening first sets the requeue": {held(census{manual: []string{"ns/p"}}, 10*time.Second),
			v1alpha2.ReasonProxySidecarManualRestartRequired, 10 * time.Second, waitingFor},
		"unreadable windows beat everything": {census{rolling: []Key{key("r")}, held: []Key{key("h")}, windowsErr: errTest("bad window")},
			v1alpha2.ReasonProxySidecarMaintenanceWindowInvalid, AttentionInterval, "until the maintenance windows are corrected: bad window (0 of 2 workloads restarted, 1 waiting"},
	} {
		t.Run(name, func(t *testing.T) {
			c, after := tc.n.condition(tg)
			if c.Reason != tc.reason || after != tc.after || c.Status != metav1.ConditionFalse {
				t.Errorf("%s/%s, requeue %v; want False/%s, %v", c.Status, c.Reason, after, tc.reason, tc.after)
			}
			if !strings.Contains(c.Message, tc.inMsg) {
				t.Errorf("message %q lacks %q", c.Message, tc.inMsg)
			}
		})
	}
}

type errTest string

func (e errTest) Error() string { return string(e) }

// mayRestart: without windows always; in a window always; outside it only
// a new version under Immediate; never while the windows cannot be read.
func TestMayRestart(t *testing.T) {
	want := desired(t, v1alpha2.IstioSpec{})
	old := want
	old.Image = "docker.io/istio/proxyv2:1.30.2"
	cfg := want
	cfg.ConfigHash = "before"
	untagged := want
	untagged.Image = "docker.io/istio/proxyv2"
	upgrade, config, latest := []*corev1.Pod{injectedPod(old)}, []*corev1.Pod{injectedPod(cfg)}, []*corev1.Pod{injectedPod(untagged)}
	sched, err := maintenance.New([]v1alpha2.MaintenanceWindow{maintenanceWindow("02:00", time.Hour, "")})
	if err != nil {
		t.Fatal(err)
	}
	for name, tc := range map[string]struct {
		t        target
		inWindow bool
		stale    []*corev1.Pod
		want     bool
	}{
		"no windows":                        {target{proxy: want}, true, config, true},
		"in a window":                       {target{proxy: want, windows: sched}, true, config, true},
		"outside, configuration":            {target{proxy: want, windows: sched}, false, config, false},
		"outside, version, InWindow":        {target{proxy: want, windows: sched}, false, upgrade, false},
		"outside, version, Immediate":       {target{proxy: want, windows: sched, upgradesNow: true}, false, upgrade, true},
		"outside, untagged is a version":    {target{proxy: want, windows: sched, upgradesNow: true}, false, latest, true},
		"outside, configuration, Immediate": {target{proxy: want, windows: sched, upgradesNow: true}, false, config, false},
		"unreadable windows, Immediate":     {target{proxy: want, windowsErr: errTest("x"), upgradesNow: true}, false, upgrade, false},
	} {
		t.Run(name, func(t *testing.T) {
			if got := tc.t.mayRestart(tc.inWindow, tc.stale); got != tc.want {
				t.Errorf("mayRestart = %v, want %v", got, tc.want)
			}
		})
	}
	at := time.Date(2026, 12, 1, 2, 30, 0, 0, time.UTC)
	for name, tc := range map[string]struct {
		t    target
		want bool
	}{
		"no windows":         {target{}, true},
		"open":               {target{windows: sched}, true},
		"unreadable windows": {target{windowsErr: errTest("x")}, false},
	} {
		if got := tc.t.inWindow(at); got != tc.want {
			t.Errorf("%s: inWindow = %v, want %v", name, got, tc.want)
		}
	}
	if (&target{windows: sched}).inWindow(at.Add(time.Hour)) {
		t.Error("inWindow after the window closed")
	}
}
