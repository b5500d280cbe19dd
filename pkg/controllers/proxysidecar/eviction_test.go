package proxysidecar

import (
	"context"
	"reflect"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	v1alpha2 "github.com/meshkeeper/istio-operator/pkg/apis/operator/v1alpha2"
	"github.com/meshkeeper/istio-operator/pkg/controllers/queue"
)

const replicas = 2

// setWorkload puts a workload of two replicas, ready of them ready, into
// the cache; annotations go where the controller records a restart.
func (f *fixture) setWorkload(kind Kind, name string, onDelete bool, ready int32, ann map[string]string) {
	f.t.Helper()
	meta := metav1.ObjectMeta{Name: name, Namespace: "ns", ResourceVersion: "1"}
	tmpl := corev1.PodTemplateSpec{}
	if onDelete || kind == KindReplicaSet || kind == KindReplicationController {
		meta.Annotations = ann
	} else {
		tmpl.Annotations = ann
	}
	switch kind {
	case KindDeployment:
		d := doneDeployment(name)
		d.ObjectMeta, d.Spec.Replicas, d.Spec.Template = meta, ptr.To[int32](replicas), tmpl
		d.Status = appsv1.DeploymentStatus{Replicas: replicas, UpdatedReplicas: replicas, AvailableReplicas: ready, ReadyReplicas: ready}
		f.add(f.deploys, d)
	case KindStatefulSet:
		s := &appsv1.StatefulSet{ObjectMeta: meta, Spec: appsv1.StatefulSetSpec{Replicas: ptr.To[int32](replicas), Template: tmpl},
			Status: appsv1.StatefulSetStatus{Replicas: replicas, ReadyReplicas: ready, UpdatedReplicas: replicas, CurrentRevision: "a", UpdateRevision: "a"}}
		if onDelete {
			s.Spec.UpdateStrategy.Type = appsv1.OnDeleteStatefulSetStrategyType
		}
		f.add(f.stss, s)
	case KindDaemonSet:
		d := &appsv1.DaemonSet{ObjectMeta: meta, Spec: appsv1.DaemonSetSpec{Template: tmpl},
			Status: appsv1.DaemonSetStatus{DesiredNumberScheduled: replicas, NumberReady: ready, NumberAvailable: ready, UpdatedNumberScheduled: replicas}}
		if onDelete {
			d.Spec.UpdateStrategy.Type = appsv1.OnDeleteDaemonSetStrategyType
		}
		f.add(f.dss, d)
	case KindReplicaSet:
		f.add(f.rss, &appsv1.ReplicaSet{ObjectMeta: meta, Spec: appsv1.ReplicaSetSpec{Replicas: ptr.To[int32](replicas)},
			Status: appsv1.ReplicaSetStatus{Replicas: replicas, ReadyReplicas: ready}})
	case KindReplicationController:
		f.add(f.rcs, &corev1.ReplicationController{ObjectMeta: meta, Spec: corev1.ReplicationControllerSpec{Replicas: ptr.To[int32](replicas)},
			Status: corev1.ReplicationControllerStatus{Replicas: replicas, ReadyReplicas: ready}})
	}
}

// restartedNow are the annotations of a restart for the fixture's target.
func (f *fixture) restartedNow() map[string]string {
	return map[string]string{AnnotationRestartedFor: f.want.Hash(), AnnotationRestartedAt: f.clock.Now().Format(time.RFC3339)}
}

// Workloads a template change does not roll (OnDelete StatefulSets and
// DaemonSets, owner-less ReplicaSets, ReplicationControllers) are restarted
// by evicting their outdated pods, oldest first, one at a time, the next
// only once every replica is ready again; the others roll with their own
// strategy and are never evicted.
func TestEvictionPath(t *testing.T) {
	cases := map[string]struct {
		kind       Kind
		onDelete   bool
		byEviction bool
	}{
		"Deployment":                {KindDeployment, false, false},
		"RollingUpdate StatefulSet": {KindStatefulSet, false, false},
		"RollingUpdate DaemonSet":   {KindDaemonSet, false, false},
		"OnDelete StatefulSet":      {KindStatefulSet, true, true},
		"OnDelete DaemonSet":        {KindDaemonSet, true, true},
		"owner-less ReplicaSet":     {KindReplicaSet, false, true},
		"ReplicationController":     {KindReplicationController, false, true},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			f := newFixture(t, v1alpha2.RestartPacing{})
			k := Key{Kind: tc.kind, Namespace: "ns", Name: "w"}
			ownerKind := string(tc.kind)
			if tc.kind == KindDeployment {
				f.add(f.rss, &appsv1.ReplicaSet{ObjectMeta: metav1.ObjectMeta{Name: "w-1", Namespace: "ns",
					OwnerReferences: owned("Deployment", "apps/v1", "w")}})
				ownerKind = string(KindReplicaSet)
			}
			owner := "w"
			if tc.kind == KindDeployment {
				owner = "w-1"
			}
			t0 := f.clock.Now()
			f.pod("young", ownerKind, owner, f.old, t0.Add(-time.Minute))
			f.pod("old", ownerKind, owner, f.old, t0.Add(-time.Hour))
			f.setWorkload(tc.kind, "w", tc.onDelete, replicas, nil)

			w, err := f.c.getWorkload(k)
			if err != nil || w == nil {
				t.Fatalf("getWorkload: %v, %v", w, err)
			}
			if w.byEviction != tc.byEviction {
				t.Fatalf("byEviction = %v, want %v", w.byEviction, tc.byEviction)
			}

			// The restart: one patch, no eviction yet.
			if res := f.sync(k); res.RequeueAfter != WorkloadRecheckInterval {
				t.Errorf("after the restart: requeue after %v, want %v", res.RequeueAfter, WorkloadRecheckInterval)
			}
			patched, evicted := f.counts()
			if len(patched) != 1 || len(evicted) != 0 {
				t.Fatalf("restart: patches %v, evictions %v; want one patch, no eviction", patched, evicted)
			}
			f.clock.Step(time.Second)
			f.setWorkload(tc.kind, "w", tc.onDelete, replicas, f.restartedNow())

			f.sync(k)
			if _, evicted = f.counts(); !tc.byEviction {
				if len(evicted) != 0 {
					t.Fatalf("a %s that rolls by itself got evictions %v", name, evicted)
				}
				return
			}
			if !reflect.DeepEqual(evicted, []string{"old"}) {
				t.Fatalf("evictions %v, want the oldest pod alone", evicted)
			}
			// The eviction went through: the pod terminates, then is gone
			// while its replacement is not ready.
			before := len(evicted)
			oldPod, _, _ := f.pods.GetByKey("ns/old")
			terminating := oldPod.(*corev1.Pod).DeepCopy()
			terminating.DeletionTimestamp = ptr.To(metav1.NewTime(f.clock.Now()))
			f.add(f.pods, terminating)
			f.sync(k)
			if err := f.pods.Delete(terminating); err != nil {
				t.Fatal(err)
			}
			// The workload's status has not caught up yet: it still counts
			// the evicted pod, while its replacement is not ready.
			replacement := f.pod("new-1", ownerKind, owner, f.want, f.clock.Now()).DeepCopy()
			replacement.Status.Conditions = nil
			f.add(f.pods, replacement)
			if res := f.sync(k); res.RequeueAfter != RollingInterval {
				t.Errorf("stale status, replacement not ready: requeue after %v, want %v", res.RequeueAfter, RollingInterval)
			}
			if _, evicted = f.counts(); len(evicted) != before {
				t.Fatalf("evicted %v while the replacement was not ready (the workload's status lagging)", evicted[before:])
			}
			f.setWorkload(tc.kind, "w", tc.onDelete, replicas-1, f.restartedNow())
			f.pod("new-1", ownerKind, owner, f.want, f.clock.Now())
			if res := f.sync(k); res.RequeueAfter != RollingInterval {
				t.Errorf("waiting for readiness: requeue after %v, want %v", res.RequeueAfter, RollingInterval)
			}
			if _, evicted = f.counts(); len(evicted) != before {
				t.Fatalf("evicted %v while a replica was not ready", evicted[before:])
			}
			// Ready again: the next pod goes.
			f.setWorkload(tc.kind, "w", tc.onDelete, replicas, f.restartedNow())
			f.sync(k)
			if _, evicted = f.counts(); len(evicted) != before+1 || evicted[before] != "young" {
				t.Fatalf("evictions %v, want young next", evicted)
			}
			if !f.c.pacer.waiting(k) {
				t.Error("a workload being evicted holds no rollout slot")
			}
			young, _, _ := f.pods.GetByKey("ns/young")
			if err := f.pods.Delete(young); err != nil {
				t.Fatal(err)
			}
			f.pod("new-2", ownerKind, owner, f.want, f.clock.Now())
			if res := f.sync(k); res.RequeueAfter != 0 {
				t.Errorf("done: requeue after %v", res.RequeueAfter)
			}
			if f.c.pacer.waiting(k) {
				t.Error("a finished workload keeps its rollout slot")
			}
		})
	}
}

// The cache can lag behind the controller's own eviction: the evicted pod
// is still there, neither terminating nor gone, and the workload's status
// still counts it ready. No second pod goes until the cache has seen the
// first one go; pods created in the same second go in name order.
func TestEvictionWaitsForTheCacheToSeeItsPodGo(t *testing.T) {
	f := newFixture(t, v1alpha2.RestartPacing{})
	k := Key{Kind: KindDaemonSet, Namespace: "ns", Name: "w"}
	created := f.clock.Now().Add(-time.Hour)
	f.pod("b", string(KindDaemonSet), "w", f.old, created)
	f.pod("a", string(KindDaemonSet), "w", f.old, created)
	f.setWorkload(KindDaemonSet, "w", true, replicas, f.restartedNow())

	f.sync(k)
	if _, evicted := f.counts(); !reflect.DeepEqual(evicted, []string{"a"}) {
		t.Fatalf("evictions %v, want a alone", evicted)
	}
	for i := range 3 {
		if res := f.sync(k); res.RequeueAfter != RollingInterval {
			t.Errorf("sync %d with the cache behind: requeue after %v, want %v", i, res.RequeueAfter, RollingInterval)
		}
	}
	if _, evicted := f.counts(); len(evicted) != 1 {
		t.Fatalf("evictions %v before the cache saw a go, want a alone", evicted)
	}

	// The cache catches up: a is gone and its replacement ready.
	a, _, _ := f.pods.GetByKey("ns/a")
	if err := f.pods.Delete(a); err != nil {
		t.Fatal(err)
	}
	f.pod("a2", string(KindDaemonSet), "w", f.want, f.clock.Now())
	f.sync(k)
	if _, evicted := f.counts(); !reflect.DeepEqual(evicted, []string{"a", "b"}) {
		t.Fatalf("evictions %v, want b once a was gone and replaced", evicted)
	}
}

// An eviction a PodDisruptionBudget keeps refusing is retried every
// EvictionRetryInterval while it holds its slot; after EvictionBlockedAfter the
// workload is reported blocked (named in the count, a Warning Event on it),
// gives its slot to the next in line, and is tried again now and then
// without one, finishing once the budget allows.
func TestEvictionBlockedByBudget(t *testing.T) {
	f := newFixture(t, v1alpha2.RestartPacing{MaxConcurrentRollouts: 1})
	db := Key{Kind: KindStatefulSet, Namespace: "ns", Name: "db"}
	web := Key{Kind: KindDeployment, Namespace: "ns", Name: "web"}
	t0 := f.clock.Now()
	f.pod("db-0", string(KindStatefulSet), "db", f.old, t0.Add(-time.Hour))
	f.pod("db-1", string(KindStatefulSet), "db", f.old, t0.Add(-time.Hour))
	f.setWorkload(KindStatefulSet, "db", true, replicas, f.restartedNow())
	f.refuse = true

	if res := f.sync(db); res.RequeueAfter != EvictionRetryInterval {
		t.Fatalf("a refused eviction: requeue after %v, want %v", res.RequeueAfter, EvictionRetryInterval)
	}
	if !f.c.pacer.waiting(db) {
		t.Fatal("db, being evicted, holds no slot")
	}
	// The wave's next workload waits in line for db's slot.
	if f.c.pacer.acquire(web) {
		t.Fatal("web got a slot beside db, limit 1")
	}
	f.queued()
	tg := f.c.target.Load()
	for _, step := range []time.Duration{time.Minute, EvictionBlockedAfter - time.Minute - time.Second} {
		f.clock.Step(step)
		if res := f.sync(db); res.RequeueAfter != EvictionRetryInterval {
			t.Fatalf("refused for %v: requeue after %v, want %v", f.clock.Since(t0), res.RequeueAfter, EvictionRetryInterval)
		}
		if why := f.c.evictionBlocked(db, tg.hash); why != "" {
			t.Fatalf("refused for %v: already blocked: %s", f.clock.Since(t0), why)
		}
	}
	if n := f.c.count(tg); len(n.blocked) != 0 || !reflect.DeepEqual(n.rolling, []Key{db}) {
		t.Fatalf("before the bound: blocked %v, rolling %v; want db rolling", n.blocked, n.rolling)
	}

	f.clock.Step(time.Second) // EvictionBlockedAfter since the first refusal
	if res := f.sync(db); res.RequeueAfter != EvictionBlockedInterval {
		t.Errorf("blocked: requeue after %v, want %v", res.RequeueAfter, EvictionBlockedInterval)
	}
	if f.c.pacer.waiting(db) {
		t.Error("blocked db still holds its slot")
	}
	if woken := f.queued(); !woken[web] || !woken[summaryKey] {
		t.Errorf("woken %v, want web (db's slot) and the summary", woken)
	}
	if !f.c.pacer.acquire(web) {
		t.Error("web found no slot after db was reported blocked")
	}
	select {
	case ev := <-f.recorder.Events:
		if !strings.HasPrefix(ev, "Warning "+v1alpha2.EventProxySidecarEvictionBlocked) || !strings.Contains(ev, "db-") {
			t.Errorf("event %q, want a Warning %s naming the pod", ev, v1alpha2.EventProxySidecarEvictionBlocked)
		}
	default:
		t.Error("no Event on the blocked workload")
	}
	n := f.c.count(tg)
	if len(n.blocked) != 1 || !strings.HasPrefix(n.blocked[0], "ns/db (eviction of pod db-") ||
		!strings.Contains(n.blocked[0], "PodDisruptionBudget for more than 2m0s") {
		t.Fatalf("count: blocked %v, want db named with the budget", n.blocked)
	}
	if len(n.rolling) != 0 || f.c.pacer.waiting(db) {
		t.Errorf("count: rolling %v; a blocked workload must not take its slot back", n.rolling)
	}
	cond, _ := n.condition(tg)
	if cond.Reason != v1alpha2.ReasonProxySidecarRestartPartiallySucceeded || !strings.Contains(cond.Message, "ns/db (eviction of pod") {
		t.Errorf("condition %s: %s; want RestartPartiallySucceeded naming db", cond.Reason, cond.Message)
	}
	again, _ := f.c.count(tg).condition(tg)
	if again.Message != cond.Message {
		t.Errorf("the condition changes while nothing does: %q, then %q", cond.Message, again.Message)
	}

	// Blocked, db is tried again only every EvictionBlockedInterval.
	_, evictedBefore := f.counts()
	f.clock.Step(10 * time.Second)
	if res := f.sync(db); res.RequeueAfter != EvictionBlockedInterval-10*time.Second {
		t.Errorf("blocked, 10s later: requeue after %v, want the rest of %v", res.RequeueAfter, EvictionBlockedInterval)
	}
	f.clock.Step(EvictionBlockedInterval)
	f.refuse = false
	if res := f.sync(db); res.RequeueAfter != RollingInterval {
		t.Errorf("allowed again: requeue after %v, want %v", res.RequeueAfter, RollingInterval)
	}
	if _, evicted := f.counts(); len(evicted) != len(evictedBefore)+1 {
		t.Fatalf("the budget allowed it, evictions %v", evicted)
	}
	if why := f.c.evictionBlocked(db, tg.hash); why != "" {
		t.Errorf("after an eviction went through, still blocked: %s", why)
	}
}

// Throttling by the API server (429 without a budget cause) is retried and
// never makes a workload blocked.
func TestEvictionThrottledIsNotBlocked(t *testing.T) {
	f := newFixture(t, v1alpha2.RestartPacing{})
	rc := Key{Kind: KindReplicationController, Namespace: "ns", Name: "rc"}
	f.pod("rc-0", string(KindReplicationController), "rc", f.old, f.clock.Now().Add(-time.Hour))
	f.setWorkload(KindReplicationController, "rc", false, replicas, f.restartedNow())
	f.throttle = true
	for range 3 {
		if res := f.sync(rc); res.RequeueAfter != EvictionRetryInterval {
			t.Fatalf("throttled: requeue after %v, want %v", res.RequeueAfter, EvictionRetryInterval)
		}
		f.clock.Step(EvictionBlockedAfter)
	}
	if why := f.c.evictionBlocked(rc, f.want.Hash()); why != "" || !f.c.pacer.waiting(rc) {
		t.Errorf("throttling made the workload blocked (%q) or freed its slot", why)
	}
}

// A workload in a namespace opted out by annotation is neither restarted
// nor evicted, and the count reports it excluded.
func TestNamespaceOptOut(t *testing.T) {
	f := newFixture(t, v1alpha2.RestartPacing{})
	f.add(f.nss, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "ns", Annotations: map[string]string{AnnotationExclude: "true"}}})
	f.pod("db-0", string(KindStatefulSet), "db", f.old, f.clock.Now().Add(-time.Hour))
	f.setWorkload(KindStatefulSet, "db", true, replicas, nil)
	f.pod("rc-0", string(KindReplicationController), "rc", f.old, f.clock.Now().Add(-time.Hour))
	f.setWorkload(KindReplicationController, "rc", false, replicas, f.restartedNow())
	for _, k := range []Key{{KindStatefulSet, "ns", "db"}, {KindReplicationController, "ns", "rc"}} {
		f.sync(k)
		if f.c.pacer.waiting(k) {
			t.Errorf("%v holds a slot in an opted-out namespace", k)
		}
	}
	if patched, evicted := f.counts(); len(patched)+len(evicted) != 0 {
		t.Errorf("opted-out namespace: patches %v, evictions %v", patched, evicted)
	}
	if n := f.c.count(f.c.target.Load()); n.excluded != 2 || len(n.waiting)+len(n.rolling)+len(n.blocked) != 0 {
		t.Errorf("count: excluded %d, waiting %v, rolling %v, blocked %v; want 2 excluded", n.excluded, n.waiting, n.rolling, n.blocked)
	}
}

// With a rate of one restart every 1000 s, no sync waits for the rate: the
// second workload is requeued for its reserved time and its worker moves
// on. Changing the rate to a fast one wakes it, and its next sync restarts
// it without any time passing.
func TestSlowRateChangedToFastNoWorkerBlocks(t *testing.T) {
	slow := v1alpha2.RestartPacing{RestartsPerSecond: 0.001}
	f := newFixture(t, slow)
	for _, n := range []string{"a", "b"} {
		f.add(f.deploys, doneDeployment(n))
		f.add(f.rss, &appsv1.ReplicaSet{ObjectMeta: metav1.ObjectMeta{Name: n + "-1", Namespace: "ns",
			OwnerReferences: owned("Deployment", "apps/v1", n)}})
		f.pod(n+"-p", string(KindReplicaSet), n+"-1", f.old, f.clock.Now().Add(-time.Hour))
	}
	a, b := Key{KindDeployment, "ns", "a"}, Key{KindDeployment, "ns", "b"}
	syncWithin := func(k Key) queue.Result {
		t.Helper()
		ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
		defer cancel()
		done := make(chan queue.Result, 1)
		go func() {
			res, err := f.c.syncWorkload(ctx, k)
			if err != nil {
				t.Errorf("sync %v: %v", k, err)
			}
			done <- res
		}()
		select {
		case res := <-done:
			return res
		case <-ctx.Done():
			t.Fatalf("the sync of %v blocked", k)
		}
		return queue.Result{}
	}
	syncWithin(a)
	res := syncWithin(b)
	if res.RequeueAfter < 999*time.Second {
		t.Fatalf("b at 0.001/s: requeue after %v, want about 1000s", res.RequeueAfter)
	}
	if patched, _ := f.counts(); len(patched) != 1 {
		t.Fatalf("patches %v, want only a restarted", patched)
	}
	f.queued()

	// The summary configures the new rate; b is woken at once.
	fast := v1alpha2.RestartPacing{RestartsPerSecond: 20}
	woken := f.c.pacer.configure(fast)
	if !reflect.DeepEqual(woken, []Key{b}) {
		t.Fatalf("the new rate woke %v, want [b]", woken)
	}
	f.clock.Step(100 * time.Millisecond)
	if res := syncWithin(b); res.RequeueAfter != WorkloadRecheckInterval {
		t.Errorf("b at the new rate: requeue after %v, want the restart's %v", res.RequeueAfter, WorkloadRecheckInterval)
	}
	if patched, _ := f.counts(); len(patched) != 2 {
		t.Errorf("patches %v, want a and b restarted", patched)
	}
}

// Pods of another Istio revision belong to its control plane: the count
// neither restarts them nor reports them, whatever their proxy.
func TestCountLeavesOtherRevisions(t *testing.T) {
	f := newFixture(t, v1alpha2.RestartPacing{})
	canary := func(p *corev1.Pod) {
		p.Labels = map[string]string{labelRevision: "canary"}
		f.add(f.pods, p)
	}
	f.setWorkload(KindReplicaSet, "solo", false, replicas, nil)
	canary(f.pod("solo-0", string(KindReplicaSet), "solo", f.old, f.clock.Now()))
	canary(f.pod("bare", "", "", f.old, f.clock.Now()))
	n := f.c.count(f.c.target.Load())
	if n.outdatedPods != 0 || len(n.waiting)+len(n.blocked)+len(n.manual)+len(n.rolling)+n.restarted != 0 {
		t.Errorf("another revision's pods counted: %+v", n)
	}
	f.sync(Key{KindReplicaSet, "ns", "solo"})
	if patched, evicted := f.counts(); len(patched)+len(evicted) != 0 {
		t.Errorf("another revision's workload: patches %v, evictions %v", patched, evicted)
	}
	// The same pods without the label are the operator's.
	for _, name := range []string{"solo-0", "bare"} {
		obj, _, _ := f.pods.GetByKey("ns/" + name)
		p := obj.(*corev1.Pod).DeepCopy()
		p.Labels = nil
		f.add(f.pods, p)
	}
	if n := f.c.count(f.c.target.Load()); n.outdatedPods != 2 || len(n.waiting) != 1 || len(n.manual) != 1 {
		t.Errorf("default revision: %d outdated, waiting %v, manual %v; want 2, solo, bare", n.outdatedPods, n.waiting, n.manual)
	}
}
