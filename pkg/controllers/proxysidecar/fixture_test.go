package proxysidecar

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes/fake"
	appslisters "k8s.io/client-go/listers/apps/v1"
	corelisters "k8s.io/client-go/listers/core/v1"
	k8stesting "k8s.io/client-go/testing"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"
	clocktesting "k8s.io/utils/clock/testing"
	"k8s.io/utils/ptr"

	v1alpha2 "github.com/meshkeeper/istio-operator/pkg/apis/operator/v1alpha2"
	"github.com/meshkeeper/istio-operator/pkg/controllers/controller"
	"github.com/meshkeeper/istio-operator/pkg/controllers/controllertest"
	"github.com/meshkeeper/istio-operator/pkg/controllers/queue"
	"github.com/meshkeeper/istio-operator/pkg/controllers/status"
	"github.com/meshkeeper/istio-operator/pkg/istioclient"
	"github.com/meshkeeper/istio-operator/pkg/metrics"
)

// fixture is a controller over indexers the test fills, a fake clientset
// that records restart patches and evictions, and a fake clock.
type fixture struct {
	t        *testing.T
	c        *Controller
	kube     *fake.Clientset
	clock    *clocktesting.FakeClock
	recorder *record.FakeRecorder
	want     istioclient.Proxy
	old      istioclient.Proxy
	// istios holds the Istio resource the summary counts for; see serve.
	istios *controllertest.Istios

	pods, rss, deploys, stss, dss, rcs, nss cache.Indexer

	mu       sync.Mutex
	patched  []string // "Kind/name"
	bodies   []string // the patches, in order
	evicted  []string // pod names, in order
	refuse   bool     // a PodDisruptionBudget refuses every eviction
	throttle bool     // the API server answers 429 without a budget cause
	woken    []Key
}

var summaryKey = Key{Kind: KindSummary, Namespace: controllertest.Key.Namespace, Name: controllertest.Key.Name}

func newFixture(t *testing.T, pacing v1alpha2.RestartPacing) *fixture {
	t.Helper()
	f := &fixture{t: t, clock: controllertest.Clock(), recorder: controllertest.Recorder(), want: desired(t, v1alpha2.IstioSpec{})}
	f.old = f.want
	f.old.Image = "docker.io/istio/proxyv2:1.30.2"
	idx := func(extra cache.Indexers) cache.Indexer {
		ix := cache.Indexers{cache.NamespaceIndex: cache.MetaNamespaceIndexFunc}
		for k, v := range extra {
			ix[k] = v
		}
		return cache.NewIndexer(cache.MetaNamespaceKeyFunc, ix)
	}
	f.pods = idx(cache.Indexers{ownerIndex: indexByOwner, injectedIndex: indexInjected, optInIndex: indexOptIn})
	f.rss = idx(cache.Indexers{ownerIndex: indexByOwner})
	f.deploys, f.stss, f.dss, f.rcs, f.nss = idx(nil), idx(nil), idx(nil), idx(nil), cache.NewIndexer(cache.MetaNamespaceKeyFunc, nil)
	f.kube = fake.NewClientset()
	f.kube.PrependReactor("patch", "*", func(a k8stesting.Action) (bool, runtime.Object, error) {
		f.mu.Lock()
		defer f.mu.Unlock()
		f.patched = append(f.patched, a.GetResource().Resource+"/"+a.(k8stesting.PatchAction).GetName())
		f.bodies = append(f.bodies, string(a.(k8stesting.PatchAction).GetPatch()))
		return true, nil, nil
	})
	f.kube.PrependReactor("create", "pods", func(a k8stesting.Action) (bool, runtime.Object, error) {
		if a.GetSubresource() != "eviction" {
			return false, nil, nil
		}
		f.mu.Lock()
		defer f.mu.Unlock()
		name := a.(k8stesting.CreateAction).GetObject().(*policyv1.Eviction).Name
		switch {
		case f.throttle:
			return true, nil, apierrors.NewTooManyRequests("slow down", 1)
		case f.refuse:
			err := apierrors.NewTooManyRequests("Cannot evict pod as it would violate the pod's disruption budget.", 0)
			err.ErrStatus.Details.Causes = append(err.ErrStatus.Details.Causes,
				metav1.StatusCause{Type: policyv1.DisruptionBudgetCause, Message: "The disruption budget pdb needs 1 healthy pods"})
			return true, nil, err
		}
		f.evicted = append(f.evicted, name)
		return true, nil, nil
	})
	c := &Controller{
		pods: f.pods, rsIndex: f.rss,
		replicaSets:  appslisters.NewReplicaSetLister(f.rss),
		deployments:  appslisters.NewDeploymentLister(f.deploys),
		statefulSets: appslisters.NewStatefulSetLister(f.stss),
		daemonSets:   appslisters.NewDaemonSetLister(f.dss),
		rcs:          corelisters.NewReplicationControllerLister(f.rcs),
		namespaces:   corelisters.NewNamespaceLister(f.nss),
		kube:         f.kube, recorder: f.recorder, clock: f.clock,
		metrics: metrics.NewProxyMetrics(), pacer: newPacer(),
		// The injector serves the desired proxy already.
		injector: newInjectorProbe("kyma-system", func(context.Context, *corev1.Pod) (*corev1.Pod, error) {
			return injectedPod(f.want), nil
		}, f.clock),
		restartEvents: newRestartEvents(controller.EventBudget{}),
		lastProgress:  map[Key]progressMark{}, refusals: map[Key]*refusal{},
		lastEvicted: map[Key]types.UID{},
		platform:    platformNamespaces("kyma-system", nil),
	}
	// The loop records the keys the controller enqueues instead of syncing them.
	c.loop = queue.New(queue.Config[Key]{Name: Name + "-test", Clock: f.clock}, func(_ context.Context, k Key) (queue.Result, error) {
		f.mu.Lock()
		defer f.mu.Unlock()
		f.woken = append(f.woken, k)
		return queue.Result{}, nil
	})
	t.Cleanup(c.loop.ShutDown)
	c.pacer.configure(pacing)
	c.target.Store(&target{istio: summaryKey, proxy: f.want, hash: f.want.Hash(), pacing: pacing})
	f.c = c
	return f
}

// serve holds the Istio resources in the operator's fake client and
// cache, for the summary's gate and status writer.
func (f *fixture) serve(istios ...*v1alpha2.Istio) {
	f.t.Helper()
	f.istios = controllertest.NewIstios(f.t, istios...)
	f.c.namespace = controllertest.Namespace
	f.c.istios = f.istios.Lister
	f.c.status = status.NewWriter(f.istios.Client, Name, f.clock)
}

func (f *fixture) add(ix cache.Indexer, obj any) {
	f.t.Helper()
	if err := ix.Add(obj); err != nil {
		f.t.Fatal(err)
	}
}

// pod adds an injected, ready pod with proxy p, owned by kind/owner,
// created at.
func (f *fixture) pod(name, kind, owner string, p istioclient.Proxy, at time.Time) *corev1.Pod {
	pod := injectedPod(p)
	pod.Name, pod.UID = name, types.UID(name)
	pod.CreationTimestamp = metav1.NewTime(at)
	pod.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}}
	if kind != "" {
		pod.OwnerReferences = owned(kind, apiVersionOf(Kind(kind)), owner)
	}
	f.add(f.pods, pod)
	return pod
}

func (f *fixture) sync(k Key) queue.Result {
	f.t.Helper()
	res, err := f.c.syncWorkload(f.t.Context(), k)
	if err != nil {
		f.t.Fatalf("sync %v: %v", k, err)
	}
	return res
}

func (f *fixture) counts() (patched, evicted []string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.patched...), append([]string(nil), f.evicted...)
}

// queued returns the keys the controller enqueued since the last call.
func (f *fixture) queued() map[Key]bool {
	for f.c.loop.Len() > 0 {
		f.c.loop.ProcessNext(f.t.Context())
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	out := map[Key]bool{}
	for _, k := range f.woken {
		out[k] = true
	}
	f.woken = nil
	return out
}

func doneDeployment(name string) *appsv1.Deployment {
	return &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "ns", ResourceVersion: "1"},
		Spec:       appsv1.DeploymentSpec{Replicas: ptr.To[int32](1)},
		Status:     appsv1.DeploymentStatus{Replicas: 1, UpdatedReplicas: 1, AvailableReplicas: 1, ReadyReplicas: 1},
	}
}

// workloadWithPods puts the workload ns/w of kind into the cache as
// setWorkload does, with one pod per proxy (a Deployment's through its
// ReplicaSet w-1), created an hour before now.
func (f *fixture) workloadWithPods(kind Kind, onDelete bool, ann map[string]string, proxies ...istioclient.Proxy) Key {
	f.t.Helper()
	ownerKind, owner := string(kind), "w"
	if kind == KindDeployment {
		f.add(f.rss, &appsv1.ReplicaSet{ObjectMeta: metav1.ObjectMeta{Name: "w-1", Namespace: "ns",
			OwnerReferences: controllertest.Owned("Deployment", "apps/v1", "w")}})
		ownerKind, owner = string(KindReplicaSet), "w-1"
	}
	for i, p := range proxies {
		f.pod(fmt.Sprintf("w-%d", i), ownerKind, owner, p, f.clock.Now().Add(-time.Hour))
	}
	f.setWorkload(kind, "w", onDelete, replicas, ann)
	return Key{Kind: kind, Namespace: "ns", Name: "w"}
}

// deploy puts a rolled-out Deployment ns/name into the cache, changed by
// change, with its ReplicaSet name-1 and one ready pod per proxy, created
// an hour before now.
func (f *fixture) deploy(ns, name string, change func(*appsv1.Deployment), proxies ...istioclient.Proxy) Key {
	f.t.Helper()
	d := controllertest.Deployment(ns, name, int32(len(proxies)))
	if change != nil {
		change(d)
	}
	f.add(f.deploys, d)
	f.add(f.rss, &appsv1.ReplicaSet{ObjectMeta: metav1.ObjectMeta{Name: name + "-1", Namespace: ns,
		OwnerReferences: controllertest.Owned("Deployment", "apps/v1", name)}})
	for i, p := range proxies {
		f.podIn(ns, fmt.Sprintf("%s-%d", name, i), controllertest.Owned("ReplicaSet", "apps/v1", name+"-1"), p)
	}
	return Key{Kind: KindDeployment, Namespace: ns, Name: name}
}

// podIn adds an injected, ready pod ns/name with proxy p and the owner
// references, created an hour before now.
func (f *fixture) podIn(ns, name string, owners []metav1.OwnerReference, p istioclient.Proxy) *corev1.Pod {
	f.t.Helper()
	pod := injectedPod(p)
	pod.Namespace, pod.Name, pod.UID, pod.OwnerReferences = ns, name, types.UID(ns+"/"+name), owners
	pod.CreationTimestamp = metav1.NewTime(f.clock.Now().Add(-time.Hour))
	pod.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}}
	f.add(f.pods, pod)
	return pod
}

// restartedFor are the annotations of a restart for hash at.
func restartedFor(hash string, at time.Time) map[string]string {
	return map[string]string{AnnotationRestartedFor: hash, AnnotationRestartedAt: at.UTC().Format(time.RFC3339)}
}

// changeDeployment replaces the cached Deployment ns/name by a changed copy.
func (f *fixture) changeDeployment(name string, change func(*appsv1.Deployment)) {
	f.t.Helper()
	f.changeDeploymentIn("ns", name, change)
}
