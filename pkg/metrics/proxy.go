package metrics

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Restart results, the values of the "result" label of the proxy restart
// counter.
const (
	RestartIssued = "issued" // a pod-template patch or an eviction was accepted
	RestartFailed = "failed" // the patch or eviction was refused or errored
)

// Workload states of the proxy sidecar controller, the values of the
// "state" label of the workloads gauge.
const (
	WorkloadWaiting = "waiting" // outdated, waiting for its turn (pacing, or a rollout already in progress)
	WorkloadRolling = "rolling" // restarted, rolling out
	WorkloadBlocked = "blocked" // paused, stuck, or still outdated after its restart
	WorkloadManual  = "manual"  // pods the operator cannot restart
	WorkloadWindow  = "window"  // outdated, waiting for a maintenance window
)

var workloadStates = []string{WorkloadWaiting, WorkloadRolling, WorkloadBlocked, WorkloadManual, WorkloadWindow}

// Mesh moves, the values of the "move" label of the mesh membership gauge.
const (
	MoveJoin  = "join"  // pods without a sidecar that the injector selects
	MoveLeave = "leave" // pods with a sidecar that the injector no longer selects, or after an uninstall
)

var meshMoves = []string{MoveJoin, MoveLeave}

// States of a workload during a canary upgrade (istio_operator_canary_workloads).
const (
	CanaryMoved     = "moved"
	CanaryRemaining = "remaining"
	CanaryPinned    = "pinned"
)

var canaryStates = []string{CanaryMoved, CanaryRemaining, CanaryPinned}

// WorkloadKinds are the kinds the proxy sidecar controller restarts, to
// pre-initialise series.
var WorkloadKinds = []string{"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "ReplicationController"}

var (
	proxyRestarts = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: Namespace,
		Name:      "proxy_restarts_total",
		Help:      "Workload restarts for an outdated sidecar proxy, by workload kind and result.",
	}, []string{"kind", "result"})
	proxyRestartDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: Namespace,
		Name:      "proxy_restart_duration_seconds",
		Help:      "Time from a workload's restart to every pod of it running the desired proxy, by workload kind.",
		Buckets:   []float64{1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600},
	}, []string{"kind"})
	outdatedProxies = prometheus.NewGauge(prometheus.GaugeOpts{
		Namespace: Namespace,
		Name:      "outdated_proxies",
		Help:      "Injected pods whose sidecar proxy differs from the desired one.",
	})
	proxyWorkloads = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Namespace: Namespace,
		Name:      "proxy_workloads",
		Help:      "Workloads with outdated sidecar proxies, by state (waiting, rolling, blocked, manual, window).",
	}, []string{"state"})
	canaryWorkloads = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Namespace: Namespace,
		Name:      "canary_workloads",
		Help:      "During a canary upgrade, the mesh's workloads by where they stand: moved to the revision the default tag points at, still on the other, or pinned to the other by an istio.io/rev label. All 0 while no upgrade runs.",
	}, []string{"state"})
	meshMembership = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Namespace: Namespace,
		Name:      "mesh_membership_workloads",
		Help:      "Workloads whose pods join or leave the mesh and are not yet restarted onto the right side, by move (join, leave).",
	}, []string{"move"})

	// podCacheSize reports the proxy sidecar controller's pod cache; the
	// controller built last (after each leader election) sets it.
	podCacheSize       atomic.Pointer[func() (pods, namespaces int)]
	podCachePods       = prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: Namespace, Name: "pod_cache_pods", Help: "Pods the proxy sidecar controller caches: those of the mesh, and of the namespaces that select the injector."}, func() float64 { p, _ := podCache(); return float64(p) })
	podCacheNamespaces = prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: Namespace, Name: "pod_cache_namespaces", Help: "Namespaces whose every pod the proxy sidecar controller caches: those that select the injector."}, func() float64 { _, n := podCache(); return float64(n) })

	proxyOnce sync.Once
)

func podCache() (pods, namespaces int) {
	if f := podCacheSize.Load(); f != nil {
		return (*f)()
	}
	return 0, 0
}

// ProxyMetrics records the proxy sidecar controller's work.
type ProxyMetrics struct{}

// NewProxyMetrics registers the proxy sidecar metrics and creates every
// series, so that they exist from the start.
func NewProxyMetrics() *ProxyMetrics {
	proxyOnce.Do(func() {
		Registry().MustRegister(proxyRestarts, proxyRestartDuration, outdatedProxies, proxyWorkloads, meshMembership,
			podCachePods, podCacheNamespaces, canaryWorkloads)
		for _, s := range canaryStates {
			canaryWorkloads.WithLabelValues(s)
		}
		for _, k := range WorkloadKinds {
			proxyRestarts.WithLabelValues(k, RestartIssued)
			proxyRestarts.WithLabelValues(k, RestartFailed)
			proxyRestartDuration.WithLabelValues(k)
		}
		for _, s := range workloadStates {
			proxyWorkloads.WithLabelValues(s)
		}
		for _, m := range meshMoves {
			meshMembership.WithLabelValues(m)
		}
	})
	return &ProxyMetrics{}
}

// PodCache makes the pod cache gauges report size, read at each scrape.
func (*ProxyMetrics) PodCache(size func() (pods, namespaces int)) { podCacheSize.Store(&size) }

// Restart counts one restart of a workload of kind.
func (*ProxyMetrics) Restart(kind, result string) { proxyRestarts.WithLabelValues(kind, result).Inc() }

// Restarted records how long a workload of kind took to run the desired proxy.
func (*ProxyMetrics) Restarted(kind string, d time.Duration) {
	proxyRestartDuration.WithLabelValues(kind).Observe(d.Seconds())
}

// Summary sets the gauges from a full count: workloads by state, and
// moves by mesh move.
func (*ProxyMetrics) Summary(outdatedPods int, workloads, moves map[string]int) {
	outdatedProxies.Set(float64(outdatedPods))
	for _, s := range workloadStates {
		proxyWorkloads.WithLabelValues(s).Set(float64(workloads[s]))
	}
	for _, m := range meshMoves {
		meshMembership.WithLabelValues(m).Set(float64(moves[m]))
	}
}

// Canary sets the canary upgrade's workload gauges; nil counts zero them.
func (*ProxyMetrics) Canary(counts map[string]int) {
	for _, s := range canaryStates {
		canaryWorkloads.WithLabelValues(s).Set(float64(counts[s]))
	}
}
