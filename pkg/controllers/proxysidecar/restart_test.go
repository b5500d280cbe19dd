package proxysidecar

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"path"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/rest"
	k8stesting "k8s.io/client-go/testing"
	"k8s.io/client-go/tools/record"
	clocktesting "k8s.io/utils/clock/testing"
	"k8s.io/utils/ptr"

	v1alpha2 "github.com/meshkeeper/istio-operator/pkg/apis/operator/v1alpha2"
	"github.com/meshkeeper/istio-operator/pkg/controllers/controller"
	"github.com/meshkeeper/istio-operator/pkg/controllers/controllertest"
	"github.com/meshkeeper/istio-operator/pkg/controllers/queue"
)

// A restart patch must carry the resourceVersion the cache saw, so that the
// API server refuses it when the cache has not yet seen an earlier restart
// of the same workload; a repeated patch would roll the workload again.
func TestMarkRestartedRequiresCachedVersion(t *testing.T) {
	d := &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "ns", ResourceVersion: "7"}}
	kube := fake.NewClientset(d)
	var body []byte
	kube.PrependReactor("patch", "deployments", func(a k8stesting.Action) (bool, runtime.Object, error) {
		body = a.(k8stesting.PatchAction).GetPatch()
		return true, d, nil
	})
	c := &Controller{kube: kube, clock: clocktesting.NewFakePassiveClock(time.Now())}
	w := &workload{key: Key{Kind: KindDeployment, Namespace: "ns", Name: "web"}, obj: d}
	if err := c.markRestarted(t.Context(), w, "h1", "image proxyv2:1.30.0"); err != nil {
		t.Fatal(err)
	}
	var patch struct {
		Metadata struct {
			ResourceVersion string `json:"resourceVersion"`
		} `json:"metadata"`
		Spec struct {
			Template struct {
				Metadata struct {
					Annotations map[string]string `json:"annotations"`
				} `json:"metadata"`
			} `json:"template"`
		} `json:"spec"`
	}
	if err := json.Unmarshal(body, &patch); err != nil {
		t.Fatalf("patch %s: %v", body, err)
	}
	if patch.Metadata.ResourceVersion != "7" {
		t.Errorf("patch %s: metadata.resourceVersion %q, want the cached 7", body, patch.Metadata.ResourceVersion)
	}
	if got := patch.Spec.Template.Metadata.Annotations[AnnotationRestartedFor]; got != "h1" {
		t.Errorf("patch %s: restarted-for %q, want h1", body, got)
	}
	if got := patch.Spec.Template.Metadata.Annotations[AnnotationRestartedReason]; got != "image proxyv2:1.30.0" {
		t.Errorf("patch %s: restarted-reason %q, want the reason", body, got)
	}
}

// Each decision of a workload's sync, from the caches: whether it is
// restarted (one patch), requeued, woken or left alone, and whether it
// holds a rollout slot afterwards.
func TestRestartDecisions(t *testing.T) {
	outdatedDeployment := func(f *fixture) Key { return f.workloadWithPods(KindDeployment, false, nil, f.old, f.want) }
	changed := func(change func(f *fixture, d *appsv1.Deployment)) func(f *fixture) Key {
		return func(f *fixture) Key {
			k := outdatedDeployment(f)
			f.changeDeployment(k.Name, func(d *appsv1.Deployment) { change(f, d) })
			return k
		}
	}
	for name, tc := range map[string]struct {
		pacing   v1alpha2.RestartPacing
		setup    func(f *fixture) Key
		after    time.Duration
		restart  bool  // one patch of the workload
		woken    []Key // enqueued
		slot     bool  // holds a slot or waits in line afterwards
		events   []string
		noTarget bool
	}{
		"outdated Deployment: restarted": {
			setup: outdatedDeployment, after: WorkloadRecheckInterval, restart: true, slot: true,
			events: []string{"Normal " + v1alpha2.EventProxySidecarRestarted},
		},
		"no target (Istio not installed with its current configuration)": {
			setup: outdatedDeployment, noTarget: true,
		},
		"workload not in the cache": {
			setup: func(*fixture) Key { return Key{Kind: KindDeployment, Namespace: "ns", Name: "gone"} },
		},
		"a kind the operator cannot restart": {
			setup: func(f *fixture) Key {
				f.podIn("ns", "job-pod", controllertest.Owned("Job", "batch/v1", "batch"), f.old)
				return Key{Kind: "Job", Namespace: "ns", Name: "batch"}
			},
		},
		"a Deployment's ReplicaSet: the Deployment is woken": {
			setup: func(f *fixture) Key {
				outdatedDeployment(f)
				return Key{Kind: KindReplicaSet, Namespace: "ns", Name: "w-1"}
			},
			woken: []Key{{Kind: KindDeployment, Namespace: "ns", Name: "w"}},
		},
		"another controller's ReplicaSet": {
			setup: func(f *fixture) Key {
				f.add(f.rss, &appsv1.ReplicaSet{ObjectMeta: metav1.ObjectMeta{Name: "canary-1", Namespace: "ns",
					OwnerReferences: controllertest.Owned("Rollout", "argoproj.io/v1alpha1", "canary")}})
				f.podIn("ns", "canary-1-a", controllertest.Owned("ReplicaSet", "apps/v1", "canary-1"), f.old)
				return Key{Kind: KindReplicaSet, Namespace: "ns", Name: "canary-1"}
			},
		},
		"excluded by annotation": {
			setup: changed(func(_ *fixture, d *appsv1.Deployment) { d.Annotations = map[string]string{AnnotationExclude: "true"} }),
		},
		"excluded by annotation other than true": {
			setup: changed(func(_ *fixture, d *appsv1.Deployment) { d.Annotations = map[string]string{AnnotationExclude: "false"} }),
			after: WorkloadRecheckInterval, restart: true, slot: true,
			events: []string{"Normal " + v1alpha2.EventProxySidecarRestarted},
		},
		"being deleted": {
			setup: changed(func(f *fixture, d *appsv1.Deployment) { d.DeletionTimestamp = ptr.To(metav1.NewTime(f.clock.Now())) }),
		},
		"its namespace being deleted": {
			setup: func(f *fixture) Key {
				f.add(f.nss, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "ns", DeletionTimestamp: ptr.To(metav1.NewTime(f.clock.Now())),
					Finalizers: []string{"kubernetes"}}})
				return outdatedDeployment(f)
			},
		},
		"no outdated pod": {
			setup: func(f *fixture) Key { return f.workloadWithPods(KindDeployment, false, nil, f.want, f.want) },
		},
		"paused: left to the summary": {
			setup: changed(func(_ *fixture, d *appsv1.Deployment) { d.Spec.Paused = true }),
		},
		"rollout stuck: left to the summary": {
			setup: changed(func(_ *fixture, d *appsv1.Deployment) {
				controllertest.ProgressDeadlineExceeded(d, `ReplicaSet "w-1" has timed out progressing.`)
			}),
		},
		"someone else's rollout in progress": {
			setup: changed(func(_ *fixture, d *appsv1.Deployment) { d.Status.AvailableReplicas = 1 }),
			after: RollingInterval,
		},
		"the injector still serves the old proxy": {
			setup: func(f *fixture) Key {
				f.c.injector = newInjectorProbe("kyma-system", func(context.Context, *corev1.Pod) (*corev1.Pod, error) {
					return injectedPod(f.old), nil
				}, f.clock)
				return outdatedDeployment(f)
			},
			after: InjectorRecheckInterval,
		},
		"no free slot: in line": {
			pacing: v1alpha2.RestartPacing{MaxConcurrentRollouts: 1},
			setup: func(f *fixture) Key {
				f.c.pacer.acquire(Key{Kind: KindDeployment, Namespace: "ns", Name: "first"})
				return outdatedDeployment(f)
			},
			slot: true,
		},
		"restarted for this proxy, pods from before the restart: rolling, not again": {
			setup: func(f *fixture) Key {
				return f.workloadWithPods(KindDeployment, false, restartedFor(f.want.Hash(), f.clock.Now()), f.old, f.want)
			},
			after: WorkloadRecheckInterval, slot: true,
		},
		"restarted for this proxy, rolled out: done": {
			setup: func(f *fixture) Key {
				return f.workloadWithPods(KindDeployment, false, restartedFor(f.want.Hash(), f.clock.Now()), f.want, f.want)
			},
		},
		"restarted for this proxy, new pods still outdated: blocked, not again": {
			setup: func(f *fixture) Key {
				return f.workloadWithPods(KindDeployment, false, restartedFor(f.want.Hash(), f.clock.Now().Add(-2*time.Hour)), f.old, f.want)
			},
		},
		"restarted for an earlier proxy: restarted again": {
			setup: func(f *fixture) Key {
				return f.workloadWithPods(KindDeployment, false, restartedFor(f.old.Hash(), f.clock.Now().Add(-24*time.Hour)), f.old, f.want)
			},
			after: WorkloadRecheckInterval, restart: true, slot: true,
			events: []string{"Normal " + v1alpha2.EventProxySidecarRestarted},
		},
	} {
		t.Run(name, func(t *testing.T) {
			f := newFixture(t, tc.pacing)
			k := tc.setup(f)
			if tc.noTarget {
				f.c.target.Store(nil)
			}
			if res := f.sync(k); res.RequeueAfter != tc.after {
				t.Errorf("requeue after %v, want %v", res.RequeueAfter, tc.after)
			}
			patched, evicted := f.counts()
			want := 0
			if tc.restart {
				want = 1
			}
			if len(patched) != want || len(evicted) != 0 {
				t.Errorf("patches %v, evictions %v; want %d patch, no eviction", patched, evicted, want)
			}
			if tc.restart && patched[0] != "deployments/"+k.Name {
				t.Errorf("patched %s, want deployments/%s", patched[0], k.Name)
			}
			var woken []Key
			for w := range f.queued() {
				woken = append(woken, w)
			}
			if !reflect.DeepEqual(woken, tc.woken) {
				t.Errorf("woken %v, want %v", woken, tc.woken)
			}
			if got := f.c.pacer.waiting(k); got != tc.slot {
				t.Errorf("holds a slot or waits in line: %v, want %v", got, tc.slot)
			}
			var events []string
			for _, e := range controllertest.Drain(f.recorder) {
				events = append(events, strings.Join(strings.Fields(e)[:2], " "))
			}
			if !reflect.DeepEqual(events, tc.events) {
				t.Errorf("events %v, want %v", events, tc.events)
			}
		})
	}
}

// Every restartable kind is restarted by one merge patch of its own
// resource: the annotations go on the pod template of the kinds a template
// change rolls, on the workload's own metadata for the others.
func TestRestartPatchPerKind(t *testing.T) {
	for name, tc := range map[string]struct {
		kind     Kind
		onDelete bool
		resource string
		template bool
	}{
		"Deployment":                {KindDeployment, false, "deployments", true},
		"RollingUpdate StatefulSet": {KindStatefulSet, false, "statefulsets", true},
		"OnDelete StatefulSet":      {KindStatefulSet, true, "statefulsets", false},
		"RollingUpdate DaemonSet":   {KindDaemonSet, false, "daemonsets", true},
		"OnDelete DaemonSet":        {KindDaemonSet, true, "daemonsets", false},
		"owner-less ReplicaSet":     {KindReplicaSet, false, "replicasets", false},
		"ReplicationController":     {KindReplicationController, false, "replicationcontrollers", false},
	} {
		t.Run(name, func(t *testing.T) {
			f := newFixture(t, v1alpha2.RestartPacing{})
			k := f.workloadWithPods(tc.kind, tc.onDelete, nil, f.old, f.want)
			f.sync(k)
			var patches []k8stesting.Action
			for _, a := range f.kube.Actions() {
				if a.GetVerb() == "patch" {
					patches = append(patches, a)
				}
			}
			if len(patches) != 1 {
				t.Fatalf("patches %v, want one", patches)
			}
			p := patches[0].(k8stesting.PatchAction)
			if p.GetResource().Resource != tc.resource || p.GetNamespace() != "ns" || p.GetName() != "w" ||
				p.GetSubresource() != "" || p.GetPatchType() != types.MergePatchType {
				t.Fatalf("patched %s %s/%s (%s, %s), want a merge patch of %s ns/w", p.GetResource().Resource, p.GetNamespace(), p.GetName(),
					p.GetSubresource(), p.GetPatchType(), tc.resource)
			}
			var sent struct {
				Metadata struct {
					ResourceVersion string            `json:"resourceVersion"`
					Annotations     map[string]string `json:"annotations"`
				} `json:"metadata"`
				Spec *struct {
					Template struct {
						Metadata struct {
							Annotations map[string]string `json:"annotations"`
						} `json:"metadata"`
					} `json:"template"`
				} `json:"spec"`
			}
			if err := json.Unmarshal(p.GetPatch(), &sent); err != nil {
				t.Fatal(err)
			}
			ann := sent.Metadata.Annotations
			if tc.template {
				if sent.Spec == nil || len(ann) != 0 {
					t.Fatalf("patch %s: want the annotations on the pod template only", p.GetPatch())
				}
				ann = sent.Spec.Template.Metadata.Annotations
			} else if sent.Spec != nil {
				t.Fatalf("patch %s: a %s is not rolled by its template; want the annotations on its metadata only", p.GetPatch(), tc.kind)
			}
			if sent.Metadata.ResourceVersion != "1" || ann[AnnotationRestartedFor] != f.want.Hash() ||
				ann[AnnotationRestartedAt] != f.clock.Now().UTC().Format(time.RFC3339) ||
				ann[AnnotationRestartedReason] != "proxy image "+f.old.Image+", want "+f.want.Image {
				t.Errorf("patch %s: want the cached resourceVersion and the restart's hash, time and reason", p.GetPatch())
			}
		})
	}
}

// A refused restart patch: a conflict (the cache is behind the workload) is
// retried quietly; any other failure is a Warning Event on the workload.
// Either frees the slot and returns the error for backoff.
func TestRestartPatchFailures(t *testing.T) {
	for name, tc := range map[string]struct {
		err    error
		events []string
	}{
		"conflict": {apierrors.NewConflict(schema.GroupResource{Group: "apps", Resource: "deployments"}, "w", errors.New("the object has been modified")), nil},
		"refused":  {apierrors.NewForbidden(schema.GroupResource{Group: "apps", Resource: "deployments"}, "w", errors.New("denied by policy")), []string{"Warning " + v1alpha2.ReasonProxySidecarRestartFailed}},
	} {
		t.Run(name, func(t *testing.T) {
			f := newFixture(t, v1alpha2.RestartPacing{})
			f.kube.PrependReactor("patch", "deployments", func(k8stesting.Action) (bool, runtime.Object, error) { return true, nil, tc.err })
			k := f.workloadWithPods(KindDeployment, false, nil, f.old)
			if _, err := f.c.syncWorkload(t.Context(), k); !errors.Is(err, tc.err) && err != tc.err {
				t.Fatalf("sync error %v, want %v for backoff", err, tc.err)
			}
			if f.c.pacer.waiting(k) {
				t.Error("a failed restart keeps its slot")
			}
			e := controllertest.Drain(f.recorder)
			if len(e) != len(tc.events) {
				t.Fatalf("events %v, want %v", e, tc.events)
			}
			if len(e) == 1 && (!strings.HasPrefix(e[0], tc.events[0]) || !strings.Contains(e[0], "denied by policy")) {
				t.Errorf("event %q, want %s with the cause", e[0], tc.events[0])
			}
		})
	}
}

// Over the budget of Events on restarted workloads, the restarts go on
// without their Events, and the Istio resource is told once per wave.
func TestRestartEventsOverTheBudget(t *testing.T) {
	f := newFixture(t, v1alpha2.RestartPacing{})
	f.serve(controllertest.Istio(1, controllertest.InstalledCurrent(1)))
	f.c.restartEvents = newRestartEvents(controller.EventBudget{Burst: 1, PerSecond: 0.01})
	for _, n := range []string{"a", "b", "c"} {
		f.sync(f.deploy("ns", n, nil, f.old))
	}
	if patched, _ := f.counts(); len(patched) != 3 {
		t.Fatalf("patches %v, want all three restarted", patched)
	}
	e := controllertest.Drain(f.recorder)
	if len(e) != 2 || !strings.HasPrefix(e[0], "Normal "+v1alpha2.EventProxySidecarRestarted) ||
		!strings.HasPrefix(e[1], "Normal "+v1alpha2.EventProxySidecarRestartEventsLimited) || !strings.Contains(e[1], "More than 1 workloads restarted at once") {
		t.Errorf("events %q, want one restart Event and one saying the rest are limited", e)
	}
}

// A restart holds its worker for the patch's round trip. Whatever --workers
// says, the controller keeps enough patches in flight for 200 restarts a
// second at a 300 ms round trip (a busy API server's), so a slow API server
// does not hold a wave below its pace. The API server here answers no
// patch until that many are open at once; each workload is still patched
// exactly once.
func TestRestartsInFlight(t *testing.T) {
	const wantInFlight = 200 * 300 / 1000
	const workloads = wantInFlight + 16
	f := newFixture(t, v1alpha2.RestartPacing{})
	f.serve(controllertest.Istio(1, controllertest.InstalledCurrent(1)))
	f.c.recorder = record.NewFakeRecorder(2 * workloads)

	var (
		mu       sync.Mutex
		open     int
		peak     int
		answered int
		patched  = map[string]int{}
		released = make(chan struct{})
	)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPatch {
			http.Error(w, "unexpected "+r.Method, http.StatusMethodNotAllowed)
			return
		}
		name := path.Base(r.URL.Path)
		mu.Lock()
		open++
		peak = max(peak, open)
		patched[name]++
		mu.Unlock()
		<-released
		mu.Lock()
		open--
		answered++
		mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":%q,"namespace":"ns"}}`, name)
	}))
	defer srv.Close()
	kube, err := kubernetes.NewForConfig(&rest.Config{Host: srv.URL, QPS: -1})
	if err != nil {
		t.Fatal(err)
	}
	f.c.kube = kube

	f.c.loop = queue.New(queue.Config[Key]{Name: Name + "-inflight", Clock: f.clock}, f.c.sync)
	ctx, cancel := context.WithCancel(t.Context())
	stopped := make(chan struct{})
	go func() { defer close(stopped); f.c.Run(ctx, 1) }()
	defer func() { cancel(); f.c.loop.ShutDown(); <-stopped }()
	for i := range workloads {
		f.c.loop.Add(f.deploy("ns", fmt.Sprintf("w%03d", i), nil, f.old))
	}

	inFlight := func() (int, int) { mu.Lock(); defer mu.Unlock(); return open, answered }
	err = wait.PollUntilContextTimeout(t.Context(), 10*time.Millisecond, 10*time.Second, true, func(context.Context) (bool, error) {
		n, _ := inFlight()
		return n >= wantInFlight, nil
	})
	close(released)
	if err != nil {
		mu.Lock()
		defer mu.Unlock()
		t.Fatalf("%d restart patches in flight at most, want %d", peak, wantInFlight)
	}
	err = wait.PollUntilContextTimeout(t.Context(), 10*time.Millisecond, 10*time.Second, true, func(context.Context) (bool, error) {
		_, n := inFlight()
		return n == workloads, nil
	})
	mu.Lock()
	defer mu.Unlock()
	if err != nil {
		t.Fatalf("%d of %d restart patches answered", answered, workloads)
	}
	if len(patched) != workloads {
		t.Errorf("%d workloads patched, want %d", len(patched), workloads)
	}
	for name, n := range patched {
		if n != 1 {
			t.Errorf("%s patched %d times, want once", name, n)
		}
	}
	if peak > minWorkers {
		t.Errorf("%d patches in flight, want at most %d", peak, minWorkers)
	}
}
