package proxysidecar

import (
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	v1alpha2 "github.com/meshkeeper/istio-operator/pkg/apis/operator/v1alpha2"
	"github.com/meshkeeper/istio-operator/pkg/controllers/controllertest"
	"github.com/meshkeeper/istio-operator/pkg/controllers/queue"
)

// summary runs the summary's sync for the default Istio resource and lets
// the cache deliver what it wrote.
func (f *fixture) summary() queue.Result {
	f.t.Helper()
	res, err := f.c.syncSummary(f.t.Context(), summaryKey)
	if err != nil {
		f.t.Fatalf("summary: %v", err)
	}
	f.istios.CatchUp(controllertest.Key)
	return res
}

func (f *fixture) condition() *metav1.Condition {
	f.t.Helper()
	return f.istios.Condition(controllertest.Key, v1alpha2.ConditionProxySidecarRestartSucceeded)
}

// eventReasons are the "Type Reason" of the Events recorded since the last
// call, in order.
func (f *fixture) eventReasons() []string {
	var out []string
	for _, e := range controllertest.Drain(f.recorder) {
		out = append(out, strings.Join(strings.Fields(e)[:2], " "))
	}
	return out
}

// installedIstio is the default Istio resource at generation 1, installed
// with it, with further conditions.
func installedIstio(conds ...metav1.Condition) *v1alpha2.Istio {
	return controllertest.Istio(1, append([]metav1.Condition{controllertest.InstalledCurrent(1)}, conds...)...)
}

func sidecarCondition(reason, msg string) metav1.Condition {
	return metav1.Condition{Type: v1alpha2.ConditionProxySidecarRestartSucceeded, Status: metav1.ConditionFalse,
		Reason: reason, Message: msg, ObservedGeneration: 1}
}

// Until Istio is installed with the resource's current configuration, the
// summary drops the target, so that no workload is restarted onto a proxy
// that may still change; only Waiting writes the condition.
func TestSummaryGateDropsTheTarget(t *testing.T) {
	deleting := installedIstio()
	deleting.DeletionTimestamp = ptr.To(metav1.NewTime(controllertest.Start.Add(-time.Minute)))
	deleting.Finalizers = []string{"istios.operator.kyma-project.io/istio-installation"}
	for name, tc := range map[string]struct {
		istios  []*v1alpha2.Istio
		key     Key
		waiting string // what the waiting condition names; "" when not waiting
		keeps   bool   // the target stays
	}{
		"gone":          {nil, summaryKey, "", false},
		"not served":    {[]*v1alpha2.Istio{controllertest.Istio(1)}, summaryKey, "", false},
		"being deleted": {[]*v1alpha2.Istio{deleting}, summaryKey, "", false},
		"installing": {[]*v1alpha2.Istio{controllertest.Istio(1, controllertest.Installed(metav1.ConditionFalse, v1alpha2.ReasonIstioInstalling, 1))},
			summaryKey, "the Installed condition is False (IstioInstalling)", false},
		"installed at an older generation": {[]*v1alpha2.Istio{controllertest.Istio(2, controllertest.InstalledCurrent(1))},
			summaryKey, "describes generation 1 of the Istio resource, which is at generation 2", false},
		"another resource, gone": {[]*v1alpha2.Istio{installedIstio()}, Key{Kind: KindSummary, Namespace: controllertest.Namespace, Name: "other"}, "", true},
	} {
		t.Run(name, func(t *testing.T) {
			f := newFixture(t, v1alpha2.RestartPacing{})
			f.serve(tc.istios...)
			k := f.workloadWithPods(KindDeployment, false, nil, f.old)
			res, err := f.c.syncSummary(t.Context(), tc.key)
			if err != nil || res.RequeueAfter != 0 {
				t.Fatalf("summary = %v, %v; want no error, no requeue (the Istio watch wakes it)", res, err)
			}
			if kept := f.c.target.Load() != nil; kept != tc.keeps {
				t.Fatalf("target kept %v, want %v", kept, tc.keeps)
			}
			if q := f.queued(); len(q) != 0 {
				t.Errorf("enqueued %v before Istio is installed", q)
			}
			wantWrites := 0
			if tc.waiting != "" {
				wantWrites = 1
				c := f.condition()
				if c == nil || c.Status != metav1.ConditionUnknown || c.Reason != v1alpha2.ReasonWaitingForInstallation ||
					!strings.Contains(c.Message, tc.waiting) || !strings.Contains(c.Message, "Sidecar proxies that need it are restarted once Installed is True.") {
					t.Errorf("condition %+v, want Unknown/%s naming %q", c, v1alpha2.ReasonWaitingForInstallation, tc.waiting)
				}
			}
			if n := f.istios.StatusWrites(); n != wantWrites {
				t.Errorf("%d status writes, want %d", n, wantWrites)
			}
			if e := f.eventReasons(); len(e) != 0 {
				t.Errorf("events %v", e)
			}
			// Without a target the workload's own sync restarts nothing.
			f.sync(k)
			if patched, _ := f.counts(); len(patched) != 0 && !tc.keeps {
				t.Errorf("restarted %v without a target", patched)
			}
		})
	}
}

// The condition for each outcome of a count, its requeue, and its Event.
func TestSummaryConditions(t *testing.T) {
	img := desired(t, v1alpha2.IstioSpec{}).Image
	for name, tc := range map[string]struct {
		prev    []metav1.Condition
		mesh    func(f *fixture)
		status  metav1.ConditionStatus
		reason  string
		message string
		after   time.Duration
		events  []string
		queued  []Key
	}{
		"every proxy current": {
			mesh:    func(f *fixture) { f.deploy("ns", "web", nil, f.want, f.want) },
			status:  metav1.ConditionTrue,
			reason:  v1alpha2.ReasonProxySidecarRestartSucceeded,
			message: "Every injected workload runs proxy " + img + ": 0 of 0 workloads restarted, 0 waiting, 0 need manual restart.",
			after:   ConvergedInterval,
		},
		"every proxy current after restarts in progress": {
			prev: []metav1.Condition{sidecarCondition(v1alpha2.ReasonProxySidecarRestartInProgress, "Restarting.")},
			mesh: func(f *fixture) {
				f.deploy("ns", "web", func(d *appsv1.Deployment) { d.Spec.Template.Annotations = restartedFor(f.want.Hash(), f.clock.Now()) }, f.want)
			},
			status:  metav1.ConditionTrue,
			reason:  v1alpha2.ReasonProxySidecarRestartSucceeded,
			message: "Every injected workload runs proxy " + img + ": 1 of 1 workloads restarted, 0 waiting, 0 need manual restart.",
			after:   ConvergedInterval,
			events:  []string{"Normal " + v1alpha2.ReasonProxySidecarRestartSucceeded},
		},
		"restarts in progress": {
			mesh: func(f *fixture) {
				restarted := func(d *appsv1.Deployment) { d.Spec.Template.Annotations = restartedFor(f.want.Hash(), f.clock.Now()) }
				f.deploy("ns", "waiting", nil, f.old, f.want)
				f.deploy("ns", "rolling", restarted, f.old, f.want)
				f.deploy("ns", "done", restarted, f.want)
			},
			status:  metav1.ConditionFalse,
			reason:  v1alpha2.ReasonProxySidecarRestartInProgress,
			message: "Restarting workloads onto proxy " + img + ": 1 of 3 workloads restarted, 1 waiting, 0 need manual restart (1 rolling out).",
			after:   RollingInterval,
			queued:  []Key{{KindDeployment, "ns", "waiting"}},
		},
		"blocked workloads": {
			mesh: func(f *fixture) {
				f.deploy("ns", "paused", func(d *appsv1.Deployment) { d.Spec.Paused = true }, f.old)
				f.deploy("ns", "current", nil, f.want)
			},
			status: metav1.ConditionFalse,
			reason: v1alpha2.ReasonProxySidecarRestartPartiallySucceeded,
			message: "Some customer workloads cannot be restarted onto proxy " + img + ": 0 of 1 workloads restarted, 0 waiting, 0 need manual restart " +
				"(blocked: ns/paused (paused: resume it to restart its proxies)). Resolve what blocks them; the operator then restarts them.",
			after:  AttentionInterval,
			events: []string{"Warning " + v1alpha2.ReasonProxySidecarRestartPartiallySucceeded},
		},
		"a blocked workload in the operator's namespace": {
			mesh: func(f *fixture) {
				f.deploy("kyma-system", "paused", func(d *appsv1.Deployment) { d.Spec.Paused = true }, f.old)
				f.deploy("ns", "held", func(d *appsv1.Deployment) { d.Spec.Paused = true }, f.old)
			},
			status: metav1.ConditionFalse,
			reason: v1alpha2.ReasonProxySidecarRestartFailed,
			message: "Workloads of the platform's own namespaces cannot be restarted onto proxy " + img + ": 0 of 2 workloads restarted, 0 waiting, 0 need manual restart " +
				"(platform workloads blocked: kyma-system/paused (paused: resume it to restart its proxies); blocked: ns/held (paused: resume it to restart its proxies)). " +
				"Resolve what blocks them; the operator then restarts them.",
			after:  AttentionInterval,
			events: []string{"Warning " + v1alpha2.ReasonProxySidecarRestartFailed},
		},
		"manual restarts": {
			mesh:   func(f *fixture) { f.podIn("ns", "bare", nil, f.old) },
			status: metav1.ConditionFalse,
			reason: v1alpha2.ReasonProxySidecarManualRestartRequired,
			message: "The sidecars of the following workloads could not be restarted: ns/bare. Recreate these pods to give them proxy " + img +
				" (0 of 0 workloads restarted, 0 waiting, 1 need manual restart).",
			after:  AttentionInterval,
			events: []string{"Warning " + v1alpha2.ReasonProxySidecarManualRestartRequired},
		},
		"manual restarts, already reported with other pods: no Event": {
			prev:   []metav1.Condition{sidecarCondition(v1alpha2.ReasonProxySidecarManualRestartRequired, "The sidecars of ns/other could not be restarted.")},
			mesh:   func(f *fixture) { f.podIn("ns", "bare", nil, f.old) },
			status: metav1.ConditionFalse,
			reason: v1alpha2.ReasonProxySidecarManualRestartRequired,
			after:  AttentionInterval,
		},
	} {
		t.Run(name, func(t *testing.T) {
			f := newFixture(t, v1alpha2.RestartPacing{})
			f.serve(installedIstio(tc.prev...))
			tc.mesh(f)
			res := f.summary()
			if res.RequeueAfter != tc.after {
				t.Errorf("requeue after %v, want %v", res.RequeueAfter, tc.after)
			}
			c := f.condition()
			if c == nil || c.Status != tc.status || c.Reason != tc.reason || c.ObservedGeneration != 1 {
				t.Fatalf("condition %+v, want %s/%s at generation 1", c, tc.status, tc.reason)
			}
			if tc.message != "" && c.Message != tc.message {
				t.Errorf("message\n%q, want\n%q", c.Message, tc.message)
			}
			if n := f.istios.StatusWrites(); n != 1 {
				t.Errorf("%d status writes, want 1", n)
			}
			if e := f.eventReasons(); !reflect.DeepEqual(e, tc.events) {
				t.Errorf("events %v, want %v", e, tc.events)
			}
			var queued []Key
			for k := range f.queued() {
				queued = append(queued, k)
			}
			if !reflect.DeepEqual(queued, tc.queued) {
				t.Errorf("enqueued %v, want %v", queued, tc.queued)
			}
			if tg := f.c.target.Load(); tg == nil || tg.hash != f.want.Hash() || tg.istio != summaryKey {
				t.Errorf("target %+v, want the default proxy for %v", tg, summaryKey)
			}

			// Counted again with nothing changed: no write, no Event.
			f.summary()
			if n := f.istios.StatusWrites(); n != 1 {
				t.Errorf("%d status writes after a second count, want 1", n)
			}
			if e := f.eventReasons(); len(e) != 0 {
				t.Errorf("events on a second count: %v", e)
			}
		})
	}
}

// Events follow the reason, not the message: more pods needing a manual
// restart write the condition again but record nothing new.
func TestSummaryEventsOnlyWhenTheReasonChanges(t *testing.T) {
	f := newFixture(t, v1alpha2.RestartPacing{})
	f.serve(installedIstio())
	f.podIn("ns", "bare-1", nil, f.old)
	f.summary()
	if e := f.eventReasons(); !reflect.DeepEqual(e, []string{"Warning " + v1alpha2.ReasonProxySidecarManualRestartRequired}) {
		t.Fatalf("events %v, want one Warning %s", e, v1alpha2.ReasonProxySidecarManualRestartRequired)
	}
	f.podIn("ns", "bare-2", nil, f.old)
	f.summary()
	if c := f.condition(); !strings.Contains(c.Message, "ns/bare-1, ns/bare-2") {
		t.Errorf("message %q does not name both pods", c.Message)
	}
	if n := f.istios.StatusWrites(); n != 2 {
		t.Errorf("%d status writes, want 2", n)
	}
	if e := f.eventReasons(); len(e) != 0 {
		t.Errorf("events %v for a changed message of the same reason", e)
	}

	// Both pods recreated by their owners: RestartSucceeded, and its Event
	// (the condition said something else before).
	for _, name := range []string{"bare-1", "bare-2"} {
		obj, _, _ := f.pods.GetByKey("ns/" + name)
		if err := f.pods.Delete(obj); err != nil {
			t.Fatal(err)
		}
	}
	f.summary()
	if c := f.condition(); c.Status != metav1.ConditionTrue {
		t.Errorf("condition %+v", c)
	}
	if e := f.eventReasons(); !reflect.DeepEqual(e, []string{"Normal " + v1alpha2.ReasonProxySidecarRestartSucceeded}) {
		t.Errorf("events %v, want one Normal %s", e, v1alpha2.ReasonProxySidecarRestartSucceeded)
	}
}

// While a wave rolls, the counts in the condition are written at most once
// per ProgressWriteInterval; a change of reason or generation is written at
// once.
func TestSummaryProgressWriteInterval(t *testing.T) {
	f := newFixture(t, v1alpha2.RestartPacing{})
	f.serve(installedIstio())
	for _, n := range []string{"a", "b", "c"} {
		f.deploy("ns", n, nil, f.old)
	}
	restart := func(name string) {
		f.deploy("ns", name, func(d *appsv1.Deployment) { d.Spec.Template.Annotations = restartedFor(f.want.Hash(), f.clock.Now()) }, f.want)
	}
	mentions := func(want string) {
		t.Helper()
		if c := f.condition(); c == nil || !strings.Contains(c.Message, want) {
			t.Errorf("condition %+v, want it to say %q", c, want)
		}
	}
	writes := func(want int) {
		t.Helper()
		if n := f.istios.StatusWrites(); n != want {
			t.Errorf("%d status writes, want %d", n, want)
		}
	}

	if res := f.summary(); res.RequeueAfter != RollingInterval {
		t.Errorf("first count: requeue after %v", res.RequeueAfter)
	}
	writes(1)
	mentions("0 of 3 workloads restarted, 3 waiting")

	restart("a")
	f.clock.Step(3 * time.Second)
	if res := f.summary(); res.RequeueAfter != ProgressWriteInterval-3*time.Second {
		t.Errorf("counts moved 3s after the last write: requeue after %v, want the rest of %v", res.RequeueAfter, ProgressWriteInterval)
	}
	writes(1)
	mentions("0 of 3 workloads restarted, 3 waiting")

	f.clock.Step(ProgressWriteInterval - 3*time.Second)
	if res := f.summary(); res.RequeueAfter != RollingInterval {
		t.Errorf("at the interval: requeue after %v", res.RequeueAfter)
	}
	writes(2)
	mentions("1 of 3 workloads restarted, 2 waiting")

	// A new generation is written at once, counts and all.
	f.clock.Step(time.Second)
	restart("b")
	istio := f.istios.Get(controllertest.Key)
	istio.Generation = 2
	meta.SetStatusCondition(&istio.Status.Conditions, controllertest.InstalledCurrent(2))
	f.istios.Set(istio)
	f.summary()
	writes(3)
	mentions("2 of 3 workloads restarted, 1 waiting")
	if c := f.condition(); c.ObservedGeneration != 2 {
		t.Errorf("condition at generation %d, want 2", c.ObservedGeneration)
	}

	// So is a new reason.
	f.clock.Step(time.Second)
	restart("c")
	if res := f.summary(); res.RequeueAfter != ConvergedInterval {
		t.Errorf("done: requeue after %v", res.RequeueAfter)
	}
	writes(4)
	if c := f.condition(); c.Reason != v1alpha2.ReasonProxySidecarRestartSucceeded {
		t.Errorf("condition %+v, want %s at once", c, v1alpha2.ReasonProxySidecarRestartSucceeded)
	}
}

// In a long wave the counts are written once they moved by
// ProgressWriteShare of the wave's workloads, or ProgressQuietInterval
// after the last write however little they moved.
func TestSummaryProgressWriteShare(t *testing.T) {
	f := newFixture(t, v1alpha2.RestartPacing{})
	f.serve(installedIstio())
	const workloads = 40 // a share of 5% is 2 workloads
	names := make([]string, workloads)
	for i := range names {
		names[i] = fmt.Sprintf("w%02d", i)
		f.deploy("ns", names[i], nil, f.old)
	}
	restarted := 0
	restart := func(count int) {
		for range count {
			f.deploy("ns", names[restarted], func(d *appsv1.Deployment) {
				d.Spec.Template.Annotations = restartedFor(f.want.Hash(), f.clock.Now())
			}, f.want)
			restarted++
		}
	}
	writes := func(want int) {
		t.Helper()
		if n := f.istios.StatusWrites(); n != want {
			t.Errorf("%d status writes, want %d", n, want)
		}
	}
	says := func(want string) {
		t.Helper()
		if c := f.condition(); c == nil || !strings.Contains(c.Message, want) {
			t.Errorf("condition %+v, want it to say %q", c, want)
		}
	}

	f.summary()
	writes(1)
	says("0 of 40 workloads restarted")

	// One workload is less than the share: held back past the interval.
	restart(1)
	f.clock.Step(ProgressWriteInterval)
	if res := f.summary(); res.RequeueAfter != RollingInterval {
		t.Errorf("moved by less than the share: requeue after %v, want %v", res.RequeueAfter, RollingInterval)
	}
	writes(1)

	// Two are the share: written.
	restart(1)
	f.clock.Step(RollingInterval)
	f.summary()
	writes(2)
	says("2 of 40 workloads restarted")

	// One more, then quiet: written once ProgressQuietInterval has passed.
	restart(1)
	f.clock.Step(ProgressQuietInterval - 5*time.Second)
	if res := f.summary(); res.RequeueAfter != 5*time.Second {
		t.Errorf("5s before the quiet interval ends: requeue after %v, want 5s", res.RequeueAfter)
	}
	writes(2)
	f.clock.Step(5 * time.Second)
	f.summary()
	writes(3)
	says("3 of 40 workloads restarted")

	// A big move still waits for ProgressWriteInterval.
	restart(10)
	f.clock.Step(time.Second)
	if res := f.summary(); res.RequeueAfter != ProgressWriteInterval-time.Second {
		t.Errorf("moved 1s after the last write: requeue after %v, want %v", res.RequeueAfter, ProgressWriteInterval-time.Second)
	}
	writes(3)
}

// The count sorts each workload into exactly one group: waiting (Kyma's
// namespace first), rolling, restarted, blocked (with why), manual (pods
// nothing can restart), excluded, or none (current, being deleted).
func TestCountClassifiesAndSorts(t *testing.T) {
	f := newFixture(t, v1alpha2.RestartPacing{})
	now := f.clock.Now()
	restartedAt := func(at time.Time) func(*appsv1.Deployment) {
		return func(d *appsv1.Deployment) { d.Spec.Template.Annotations = restartedFor(f.want.Hash(), at) }
	}
	zeta := f.deploy("kyma-system", "zeta", nil, f.old, f.want)
	alpha := f.deploy("ns-b", "alpha", nil, f.old)
	beta := f.deploy("ns-a", "beta", nil, f.old)
	f.deploy("ns-a", "current", nil, f.want, f.want)
	rolling := f.deploy("ns-a", "rolling", restartedAt(now), f.old, f.want)
	restarted := f.deploy("ns-a", "restarted", restartedAt(now), f.want)
	f.deploy("ns-a", "paused", func(d *appsv1.Deployment) { d.Spec.Paused = true }, f.old)
	f.deploy("ns-a", "stuck", func(d *appsv1.Deployment) {
		controllertest.ProgressDeadlineExceeded(d, `ReplicaSet "stuck-1" has timed out progressing.`)
	}, f.old)
	// Restarted two hours ago, its pod from an hour ago still outdated.
	f.deploy("ns-a", "again", restartedAt(now.Add(-2*time.Hour)), f.old)
	f.deploy("ns-a", "excluded", func(d *appsv1.Deployment) { d.Annotations = map[string]string{AnnotationExclude: "true"} }, f.old)
	f.deploy("ns-a", "deleting", func(d *appsv1.Deployment) { d.DeletionTimestamp = ptr.To(metav1.NewTime(now)) }, f.old)
	f.podIn("ns-c", "bare", nil, f.old)
	f.podIn("ns-c", "bare-current", nil, f.want)
	f.podIn("ns-c", "job-pod", controllertest.Owned("Job", "batch/v1", "batch"), f.old)
	// Owned by a ReplicaSet the cache has not seen yet.
	ghost := Key{Kind: KindReplicaSet, Namespace: "ns-d", Name: "ghost-1"}
	f.podIn("ns-d", "ghost-pod", controllertest.Owned("ReplicaSet", "apps/v1", "ghost-1"), f.old)

	// beta is in line already; restarted still holds its slot.
	f.c.pacer.acquire(beta)
	f.c.pacer.rolling(restarted)

	n := f.c.count(f.c.target.Load())
	if want := []Key{zeta, beta, alpha, ghost}; !reflect.DeepEqual(n.waiting, want) {
		t.Errorf("waiting %v, want %v", n.waiting, want)
	}
	if want := []Key{restarted, zeta, alpha, ghost}; !reflect.DeepEqual(n.toStart, want) {
		t.Errorf("to start %v, want %v (restarted to free its slot, the waiting ones the pacer does not know)", n.toStart, want)
	}
	if want := []Key{rolling}; !reflect.DeepEqual(n.rolling, want) {
		t.Errorf("rolling %v, want %v", n.rolling, want)
	}
	if !f.c.pacer.waiting(rolling) {
		t.Error("the rolling workload holds no slot after the count")
	}
	wantBlocked := []string{
		"ns-a/again (pod again-0, created after the restart, still runs an outdated proxy: proxy image " + f.old.Image + ", want " + f.want.Image + ")",
		"ns-a/paused (paused: resume it to restart its proxies)",
		`ns-a/stuck (rollout stuck: ReplicaSet "stuck-1" has timed out progressing.)`,
	}
	if !reflect.DeepEqual(n.blocked, wantBlocked) {
		t.Errorf("blocked\n%q, want\n%q", n.blocked, wantBlocked)
	}
	if want := []string{"ns-c/bare", "ns-c/job-pod (Job batch)"}; !reflect.DeepEqual(n.manual, want) {
		t.Errorf("manual %q, want %q", n.manual, want)
	}
	if n.restarted != 1 || n.excluded != 1 || n.outdatedPods != 12 {
		t.Errorf("restarted %d, excluded %d, outdated pods %d; want 1, 1, 12", n.restarted, n.excluded, n.outdatedPods)
	}

	c, after := n.condition(f.c.target.Load())
	if c.Reason != v1alpha2.ReasonProxySidecarRestartInProgress || after != RollingInterval {
		t.Errorf("condition %s, requeue %v; want in progress", c.Reason, after)
	}
	for _, want := range []string{
		": 1 of 9 workloads restarted, 4 waiting, 2 need manual restart (1 rolling out; blocked: ns-a/again (pod again-0",
		"ns-a/paused (paused: resume it to restart its proxies), ns-a/stuck (rollout stuck: ",
		"; 1 excluded by annotation " + AnnotationExclude + ").",
	} {
		if !strings.Contains(c.Message, want) {
			t.Errorf("message %q lacks %q", c.Message, want)
		}
	}
}

// The condition's precedence: restarts in progress over blocked workloads
// over manual restarts; its status and requeue for each, and at most
// maxNamed workloads named.
func TestConditionPrecedence(t *testing.T) {
	tg := &target{proxy: desired(t, v1alpha2.IstioSpec{})}
	blocked := func(n int) []string {
		var out []string
		for i := range n {
			out = append(out, "ns/b"+string(rune('0'+i))+" (paused: resume it to restart its proxies)")
		}
		return out
	}
	for name, tc := range map[string]struct {
		n       census
		status  metav1.ConditionStatus
		reason  string
		after   time.Duration
		mention []string
		absent  []string
	}{
		"rolling beats blocked and manual": {census{rolling: []Key{key("r")}, blocked: blocked(1), manual: []string{"ns/p"}},
			metav1.ConditionFalse, v1alpha2.ReasonProxySidecarRestartInProgress, RollingInterval,
			[]string{"0 of 2 workloads restarted, 0 waiting, 1 need manual restart (1 rolling out; blocked: ns/b0"}, []string{"ns/p"}},
		"blocked beats manual": {census{restarted: 1, blocked: blocked(1), manual: []string{"ns/p"}},
			metav1.ConditionFalse, v1alpha2.ReasonProxySidecarRestartPartiallySucceeded, AttentionInterval,
			[]string{"Some customer workloads cannot be restarted", "1 of 2 workloads restarted, 0 waiting, 1 need manual restart (blocked: ns/b0 (paused"}, []string{"ns/p"}},
		"blocked, named up to maxNamed": {census{blocked: blocked(maxNamed + 2)},
			metav1.ConditionFalse, v1alpha2.ReasonProxySidecarRestartPartiallySucceeded, AttentionInterval,
			[]string{"0 of 7 workloads restarted", "ns/b4 (paused: resume it to restart its proxies) and 2 additional workload(s)"}, []string{"ns/b5"}},
		"a blocked platform workload is an Error, and named apart": {census{restarted: 1, blocked: blocked(1), platformBlocked: []string{"kyma-system/api (paused: resume it to restart its proxies)"}},
			metav1.ConditionFalse, v1alpha2.ReasonProxySidecarRestartFailed, AttentionInterval,
			[]string{"Workloads of the platform's own namespaces cannot be restarted", "1 of 3 workloads restarted, 0 waiting, 0 need manual restart (platform workloads blocked: kyma-system/api (paused: resume it to restart its proxies); blocked: ns/b0 (paused"}, nil},
		"manual": {census{restarted: 2, manual: []string{"ns/p"}, excluded: 3},
			metav1.ConditionFalse, v1alpha2.ReasonProxySidecarManualRestartRequired, AttentionInterval,
			[]string{"could not be restarted: ns/p.", "(2 of 2 workloads restarted, 0 waiting, 1 need manual restart (3 excluded by annotation " + AnnotationExclude + "))"}, nil},
		"nothing outdated": {census{},
			metav1.ConditionTrue, v1alpha2.ReasonProxySidecarRestartSucceeded, ConvergedInterval,
			[]string{": 0 of 0 workloads restarted, 0 waiting, 0 need manual restart."}, []string{"("}},
		"only excluded ones outdated": {census{restarted: 1, excluded: 1},
			metav1.ConditionTrue, v1alpha2.ReasonProxySidecarRestartSucceeded, ConvergedInterval,
			[]string{"1 of 1 workloads restarted, 0 waiting, 0 need manual restart (1 excluded by annotation"}, nil},
	} {
		t.Run(name, func(t *testing.T) {
			c, after := tc.n.condition(tg)
			if c.Type != v1alpha2.ConditionProxySidecarRestartSucceeded || c.Status != tc.status || c.Reason != tc.reason || after != tc.after {
				t.Errorf("%s %s/%s, requeue %v; want %s/%s, %v", c.Type, c.Status, c.Reason, after, tc.status, tc.reason, tc.after)
			}
			for _, m := range tc.mention {
				if !strings.Contains(c.Message, m) {
					t.Errorf("message %q lacks %q", c.Message, m)
				}
			}
			for _, m := range tc.absent {
				if strings.Contains(c.Message, m) {
					t.Errorf("message %q names %q", c.Message, m)
				}
			}
			if !strings.Contains(c.Message, tg.proxy.Image) {
				t.Errorf("message %q does not name the proxy", c.Message)
			}
		})
	}
}
