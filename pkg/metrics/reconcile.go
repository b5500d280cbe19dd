package metrics

import (
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Reconcile results, the values of the "result" label.
const (
	ResultSuccess  = "success"  // done; the key may come back after its RequeueAfter
	ResultError    = "error"    // failed; retried with backoff
	ResultConflict = "conflict" // optimistic-lock conflict; retried quietly
)

// Results lists every result, to pre-initialise series.
var Results = []string{ResultSuccess, ResultError, ResultConflict}

var (
	reconcileDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: Namespace,
		Name:      "reconcile_duration_seconds",
		Help:      "Duration of one reconcile of one key, by controller and result.",
		Buckets:   []float64{0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300},
	}, []string{"controller", "result"})
	reconcileTotal = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: Namespace,
		Name:      "reconcile_total",
		Help:      "Reconciles by controller and result.",
	}, []string{"controller", "result"})

	reconcileOnce sync.Once
)

// ReconcileMetrics records the reconciles of one controller.
type ReconcileMetrics struct {
	controller string
}

// NewReconcileMetrics returns the recorder for a controller and creates its
// series for every result, so they exist from the start.
func NewReconcileMetrics(controller string) *ReconcileMetrics {
	reconcileOnce.Do(func() {
		Registry().MustRegister(reconcileDuration, reconcileTotal)
	})
	for _, r := range Results {
		reconcileDuration.WithLabelValues(controller, r)
		reconcileTotal.WithLabelValues(controller, r)
	}
	return &ReconcileMetrics{controller: controller}
}

// Observe records one reconcile.
func (m *ReconcileMetrics) Observe(result string, d time.Duration) {
	reconcileDuration.WithLabelValues(m.controller, result).Observe(d.Seconds())
	reconcileTotal.WithLabelValues(m.controller, result).Inc()
}
