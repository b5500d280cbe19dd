// Package proxysidecar is the proxy sidecar controller. After an Istio
// upgrade or a change of the proxy configuration, injected pods keep their
// old sidecar until they are recreated. This controller finds those pods in
// its caches, restarts their workloads once per change, paced, and reports
// progress in the ProxySidecarRestartSucceeded condition.
//
// Work is keyed by workload. The summary key (the Istio resource) counts the
// mesh from the pod cache, enqueues the workloads that need a restart and
// writes the condition; a workload key restarts one workload and follows
// its rollout. A workload is restarted by a pod-template annotation that
// records the desired proxy's hash (AnnotationRestartedFor), so a workload
// is never restarted twice for the same change, across operator restarts
// and leader changes too. Workloads that a template change does not roll
// (OnDelete StatefulSets and DaemonSets, owner-less ReplicaSets and
// ReplicationControllers) get the annotation on their own metadata, and
// their outdated pods are evicted one at a time through the Eviction API,
// which honours PodDisruptionBudgets. Pods nothing can restart are reported,
// never deleted.
package proxysidecar

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	appslisters "k8s.io/client-go/listers/apps/v1"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"
	"k8s.io/utils/clock"

	v1alpha2 "github.com/meshkeeper/istio-operator/pkg/apis/operator/v1alpha2"
	"github.com/meshkeeper/istio-operator/pkg/controllers/controller"
	"github.com/meshkeeper/istio-operator/pkg/controllers/queue"
	"github.com/meshkeeper/istio-operator/pkg/controllers/status"
	listers "github.com/meshkeeper/istio-operator/pkg/generated/listers/operator/v1alpha2"
	"github.com/meshkeeper/istio-operator/pkg/istioclient"
	"github.com/meshkeeper/istio-operator/pkg/maintenance"
	"github.com/meshkeeper/istio-operator/pkg/metrics"
)

// Name is the controller's name.
const Name = "proxysidecar"

// Annotations the controller reads and writes on workloads and namespaces.
const (
	// AnnotationRestartedFor records the hash of the desired proxy a
	// workload was restarted for.
	AnnotationRestartedFor = "istio-operator.kyma-project.io/restarted-for"
	// AnnotationRestartedAt is the time of the restart (Kyma's name).
	AnnotationRestartedAt = "istio-operator.kyma-project.io/restartedAt"
	// AnnotationRestartedReason says why: what was outdated in its pods.
	AnnotationRestartedReason = "istio-operator.kyma-project.io/restarted-reason"
	// AnnotationExclude, "true" on a workload or a namespace, keeps the
	// controller from restarting it.
	AnnotationExclude = "istio-operator.kyma-project.io/exclude-from-proxy-restart"
)

// Requeue intervals of this controller.
const (
	// RollingInterval re-counts while restarts are waiting or rolling.
	RollingInterval = 5 * time.Second
	// ProgressWriteInterval is how often, at most, a wave's progress (the
	// counts in the condition message) is written; each write also moves
	// the Ready condition's message.
	ProgressWriteInterval = 10 * time.Second
	// ProgressWriteShare is how far the counts must move before they are
	// written again (the restarted or the rolling workloads, by this share
	// of the wave's), unless ProgressQuietInterval has passed: a wave that
	// rolls slowly, on a busy cluster or at a low pace, writes as often per
	// workload as a fast one instead of every ProgressWriteInterval.
	ProgressWriteShare = 0.05
	// ProgressQuietInterval is the longest moving counts stay unwritten.
	ProgressQuietInterval = time.Minute
	// AttentionInterval re-counts while something needs the user (manual
	// restarts, paused or stuck workloads).
	AttentionInterval = time.Minute
	// ConvergedInterval is the safety net once every proxy is current.
	ConvergedInterval = 10 * time.Minute
	// SummaryBatchInterval gathers the pod events of a rollout into one count. It
	// matches RollingInterval: while a wave rolls, counting more often than
	// the summary's own requeue only repeats work (a count walks every
	// injected pod), and progress is written at most every
	// ProgressWriteInterval.
	SummaryBatchInterval = RollingInterval
	// podCacheSyncWait is how soon a count is tried again while the pods
	// of a namespace that just started selecting the injector are being
	// listed.
	podCacheSyncWait = time.Second
	// minWorkers bounds the restarts in flight: a restart holds its worker
	// for the patch's round trip, which a busy API server stretches to
	// 300 ms (measured at 50,000 pods), so 16 workers capped a wave at about
	// 55 restarts a second, close to a 50/s pace. 64 keep 200 a second
	// in flight at that latency; an idle worker costs a parked goroutine.
	minWorkers = 64
	// WorkloadRecheckInterval is the safety net of a rolling workload; its own
	// status events normally come first.
	WorkloadRecheckInterval = 30 * time.Second
	// EvictionRetryInterval is how soon an eviction refused by a
	// PodDisruptionBudget is tried again.
	EvictionRetryInterval = 5 * time.Second
	// EvictionBlockedAfter bounds how long a workload restarted by eviction
	// may keep being refused by a PodDisruptionBudget before it is reported
	// blocked (named in the condition, a Warning Event on the workload) and
	// gives up its rollout slot, so that the rest of the wave goes on.
	EvictionBlockedAfter = 2 * time.Minute
	// EvictionBlockedInterval is how often the eviction of a workload reported
	// blocked is tried again, without a slot, so that it finishes on its own
	// once the budget allows a disruption.
	EvictionBlockedInterval = AttentionInterval
	// InjectorRecheckInterval is how soon a workload waiting for the
	// injector to serve the target proxy is looked at again.
	InjectorRecheckInterval = time.Second
	// WindowWaitInterval re-counts while restarts wait for a maintenance
	// window, which the summary requeues itself for; at most this long: the
	// windows are wall-clock times, the queue's delays monotonic, and a wall
	// clock that is set or jumps (a suspended machine) moves them apart.
	WindowWaitInterval = 10 * time.Minute
)

// Controller is the proxy sidecar controller.
type Controller struct {
	namespace string
	defaults  v1alpha2.RestartPacing
	// images are the operator's default registry and pull secrets.
	images v1alpha2.Images

	loop *queue.Loop[Key]

	istios listers.IstioLister
	pods   podIndex
	// followNamespaces sets the namespaces whose every pod is cached (pods.go).
	followNamespaces func(namespaces map[string]bool) (synced bool)
	replicaSets      appslisters.ReplicaSetLister
	rsIndex          cache.Indexer
	deployments      appslisters.DeploymentLister
	statefulSets     appslisters.StatefulSetLister
	daemonSets       appslisters.DaemonSetLister
	rcs              corelisters.ReplicationControllerLister
	namespaces       corelisters.NamespaceLister

	kube     kubernetes.Interface
	status   *status.Writer
	recorder record.EventRecorder
	clock    clock.PassiveClock
	metrics  *metrics.ProxyMetrics
	pacer    *pacer
	injector *injectorProbe
	target   atomic.Pointer[target]

	restartEvents *restartEvents
	// platform are the namespaces of the platform's own workloads.
	platform map[string]bool

	mu           sync.Mutex
	desired      map[types.UID]desiredAt // DesiredProxy per resource, generation and installed profile
	lastProgress map[Key]progressMark    // last condition write per resource
	refusals     map[Key]*refusal        // evictions a PodDisruptionBudget refuses
	lastEvicted  map[Key]types.UID       // the pod last evicted per workload
}

type desiredAt struct {
	generation int64
	profile    v1alpha2.Profile
	proxy      istioclient.Proxy
}

// target is what the served Istio resource wants of every sidecar.
type target struct {
	istio  Key
	proxy  istioclient.Proxy
	hash   string
	pacing v1alpha2.RestartPacing
	// windows, when set, confine the start of restarts to maintenance
	// windows (windows.go).
	windows *maintenance.Schedule
	// windowsErr says why the windows cannot be read: nothing is restarted.
	windowsErr error
	// upgradesNow restarts workloads whose pods run another proxy version
	// outside the windows too (versionUpgrades: Immediate).
	upgradesNow bool
	// removal is the target after an uninstall: no pod keeps a sidecar
	// (removal.go).
	removal bool
	// revisions are the operator's, and where a canary upgrade moves the
	// pods (revision.go).
	revisions
}

// New builds the controller and registers its informers.
func New(_ context.Context, d *controller.Deps) (controller.Controller, error) {
	kinf := d.KubeInformers
	pods := newPodCache(d.KubeClient)
	d.RegisterCache(Name+" pods", pods)
	rsInformer := kinf.Apps().V1().ReplicaSets().Informer()
	for example, shape := range cacheShapes {
		if err := d.ShapeCache(example, shape); err != nil {
			return nil, err
		}
	}
	if err := rsInformer.AddIndexers(cache.Indexers{ownerIndex: indexByOwner}); err != nil {
		return nil, err
	}
	c := &Controller{
		namespace:        d.Namespace,
		defaults:         d.RestartPacing,
		images:           d.Images,
		istios:           d.OperatorInformers.Operator().V1alpha2().Istios().Lister(),
		pods:             pods,
		followNamespaces: pods.Follow,
		replicaSets:      kinf.Apps().V1().ReplicaSets().Lister(),
		rsIndex:          rsInformer.GetIndexer(),
		deployments:      kinf.Apps().V1().Deployments().Lister(),
		statefulSets:     kinf.Apps().V1().StatefulSets().Lister(),
		daemonSets:       kinf.Apps().V1().DaemonSets().Lister(),
		rcs:              kinf.Core().V1().ReplicationControllers().Lister(),
		namespaces:       kinf.Core().V1().Namespaces().Lister(),
		kube:             d.KubeClient,
		status:           status.NewWriter(d.OperatorClient, Name, d.Clock),
		recorder:         d.Recorder(Name),
		clock:            d.Clock,
		metrics:          metrics.NewProxyMetrics(),
		pacer:            newPacer(),
		injector: newInjectorProbe(d.Namespace, func(ctx context.Context, pod *corev1.Pod) (*corev1.Pod, error) {
			return d.KubeClient.CoreV1().Pods(pod.Namespace).Create(ctx, pod, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
		}, d.Clock),
		restartEvents: newRestartEvents(d.RestartEvents),
		platform:      platformNamespaces(d.Namespace, d.PlatformNamespaces),
		desired:       map[types.UID]desiredAt{},
		lastProgress:  map[Key]progressMark{},
		refusals:      map[Key]*refusal{},
		lastEvicted:   map[Key]types.UID{},
	}
	c.loop = queue.New(queue.Config[Key]{Name: Name, Clock: d.Clock}, c.sync)
	c.metrics.PodCache(pods.Size)

	istioEvents := c.loop.Handler(func(obj any) []Key {
		name, err := cache.ObjectToName(obj)
		if err != nil {
			return nil
		}
		return []Key{{Kind: KindSummary, Namespace: name.Namespace, Name: name.Name}}
	})
	// Pod churn only moves the counts: one recount per SummaryBatchInterval.
	podEvents := c.loop.HandlerAfter(SummaryBatchInterval, func(obj any) []Key {
		if pod, ok := obj.(*corev1.Pod); ok && c.candidate(pod) {
			return c.summaryKeys()
		}
		return nil
	})
	// A workload's status tells when its rollout is done; only the
	// workloads the pacer follows are interesting.
	workloadEvents := func(kind Kind) cache.ResourceEventHandler {
		return c.loop.Handler(func(obj any) []Key {
			name, err := cache.ObjectToName(obj)
			if err != nil {
				return nil
			}
			k := Key{Kind: kind, Namespace: name.Namespace, Name: name.Name}
			if c.pacer.waiting(k) {
				return []Key{k}
			}
			return nil
		})
	}
	namespaceEvents := c.loop.HandlerAfter(SummaryBatchInterval, func(any) []Key { return c.summaryKeys() })

	for _, reg := range []struct {
		informer cache.SharedIndexInformer
		handler  cache.ResourceEventHandler
	}{
		{d.OperatorInformers.Operator().V1alpha2().Istios().Informer(), istioEvents},
		{kinf.Apps().V1().Deployments().Informer(), workloadEvents(KindDeployment)},
		{kinf.Apps().V1().StatefulSets().Informer(), workloadEvents(KindStatefulSet)},
		{kinf.Apps().V1().DaemonSets().Informer(), workloadEvents(KindDaemonSet)},
		{rsInformer, workloadEvents(KindReplicaSet)},
		{kinf.Core().V1().ReplicationControllers().Informer(), workloadEvents(KindReplicationController)},
		{kinf.Core().V1().Namespaces().Informer(), namespaceEvents},
	} {
		if _, err := reg.informer.AddEventHandler(reg.handler); err != nil {
			return nil, err
		}
	}
	if err := pods.AddEventHandler(podEvents); err != nil {
		return nil, err
	}
	return c, nil
}

// summaryKeys are the keys of the Istio resources in the operator's
// namespace; the sync of each decides whether it is the served one.
func (c *Controller) summaryKeys() []Key {
	names := status.ServingCandidates(c.istios, c.namespace)
	keys := make([]Key, len(names))
	for i, n := range names {
		keys[i] = Key{Kind: KindSummary, Namespace: n.Namespace, Name: n.Name}
	}
	return keys
}

// Name implements controller.Controller.
func (c *Controller) Name() string { return Name }

// Run implements controller.Controller.
func (c *Controller) Run(ctx context.Context, workers int) { c.loop.Run(ctx, max(workers, minWorkers)) }

// Loop exposes the work loop to tests.
func (c *Controller) Loop() *queue.Loop[Key] { return c.loop }

func (c *Controller) sync(ctx context.Context, k Key) (queue.Result, error) {
	if k.Kind == KindSummary {
		return c.syncSummary(ctx, k)
	}
	return c.syncWorkload(ctx, k)
}

// injectedIndex indexes the injected pods, so that a count never touches
// the others.
const injectedIndex = "injected"

func indexInjected(obj any) ([]string, error) {
	if pod, ok := obj.(*corev1.Pod); ok && injected(pod) {
		return []string{"true"}, nil
	}
	return nil, nil
}

// platformNamespaces is the set of the operator's namespace and the others
// named.
func platformNamespaces(own string, more []string) map[string]bool {
	set := map[string]bool{own: true}
	for _, ns := range more {
		if ns != "" {
			set[ns] = true
		}
	}
	return set
}
