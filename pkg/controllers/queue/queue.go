// Package queue is the work loop every controller of the operator runs: a
// named, typed, rate-limited client-go workqueue, workers that call the
// controller's sync function, and the bookkeeping around each call (retry
// budget, delayed requeues, metrics, contextual logging). Controllers only
// write event handlers that enqueue keys and a sync function.
package queue

import (
	"context"
	"fmt"
	"runtime/debug"
	"sync"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/klog/v2"
	"k8s.io/utils/clock"

	"github.com/meshkeeper/istio-operator/pkg/metrics"
)

// Result tells the loop when to look at a key again after a successful sync.
type Result struct {
	// RequeueAfter > 0 schedules the key again after this delay. Periodic
	// rechecks are expressed this way, never as errors.
	RequeueAfter time.Duration
}

// SyncFunc reconciles one key. An error retries the key with backoff.
type SyncFunc[K comparable] func(ctx context.Context, key K) (Result, error)

// Config configures a Loop.
type Config[K comparable] struct {
	// Name is the controller's name: queue name, logger name and metrics label.
	Name string
	// MaxRetries is the number of consecutive failures retried with backoff.
	// After that the key is retried every RetryBudgetExhaustedDelay instead,
	// so a persistent failure neither spins nor is forgotten.
	MaxRetries int
	// RetryBudgetExhaustedDelay is the retry interval once MaxRetries is spent.
	RetryBudgetExhaustedDelay time.Duration
	// RateLimiter overrides the default: per-key exponential backoff from
	// 100ms to 5 minutes, combined with an overall 50/s (burst 300) bucket.
	RateLimiter workqueue.TypedRateLimiter[K]
	// Clock is used for measuring durations; the real clock by default.
	Clock clock.PassiveClock
}

// Default retry settings.
const (
	DefaultMaxRetries                = 15
	DefaultRetryBudgetExhaustedDelay = 5 * time.Minute
)

// Loop runs a controller's sync function over its queue.
type Loop[K comparable] struct {
	name           string
	queue          workqueue.TypedRateLimitingInterface[K]
	sync           SyncFunc[K]
	metrics        *metrics.ReconcileMetrics
	maxRetries     int
	exhaustedDelay time.Duration
	clock          clock.PassiveClock
	due            dueSet[K]
}

// New builds a Loop. Install the workqueue metrics provider before calling
// it (metrics.InstallWorkqueueProvider), or the queue reports nothing.
func New[K comparable](cfg Config[K], sync SyncFunc[K]) *Loop[K] {
	if cfg.Name == "" {
		panic("queue: a loop needs a name")
	}
	limiter := cfg.RateLimiter
	if limiter == nil {
		limiter = DefaultRateLimiter[K]()
	}
	l := &Loop[K]{
		name: cfg.Name,
		queue: workqueue.NewTypedRateLimitingQueueWithConfig(limiter,
			workqueue.TypedRateLimitingQueueConfig[K]{Name: cfg.Name}),
		sync:           sync,
		metrics:        metrics.NewReconcileMetrics(cfg.Name),
		maxRetries:     cfg.MaxRetries,
		exhaustedDelay: cfg.RetryBudgetExhaustedDelay,
		clock:          cfg.Clock,
	}
	if l.maxRetries <= 0 {
		l.maxRetries = DefaultMaxRetries
	}
	if l.exhaustedDelay <= 0 {
		l.exhaustedDelay = DefaultRetryBudgetExhaustedDelay
	}
	if l.clock == nil {
		l.clock = clock.RealClock{}
	}
	return l
}

// DefaultRateLimiter is the limiter of sample-controller with a lower
// ceiling: per-key exponential backoff (100ms..5m) and an overall bucket.
func DefaultRateLimiter[K comparable]() workqueue.TypedRateLimiter[K] {
	return workqueue.NewTypedMaxOfRateLimiter(
		workqueue.NewTypedItemExponentialFailureRateLimiter[K](100*time.Millisecond, 5*time.Minute),
		&workqueue.TypedBucketRateLimiter[K]{Limiter: newBucket(50, 300)},
	)
}

// Name is the controller's name.
func (l *Loop[K]) Name() string { return l.name }

// Add enqueues a key now.
func (l *Loop[K]) Add(key K) { l.queue.Add(key) }

// AddAfter enqueues a key after a delay.
func (l *Loop[K]) AddAfter(key K, d time.Duration) { l.queue.AddAfter(key, d) }

// Len is the number of keys waiting.
func (l *Loop[K]) Len() int { return l.queue.Len() }

// ShutDown stops the queue; Run returns once the workers are done.
func (l *Loop[K]) ShutDown() { l.queue.ShutDown() }

// Run starts workers and blocks until ctx is cancelled, then drains them.
func (l *Loop[K]) Run(ctx context.Context, workers int) {
	defer utilruntime.HandleCrashWithContext(ctx)
	logger := klog.FromContext(ctx).WithValues("controller", l.name)
	ctx = klog.NewContext(ctx, logger)
	logger.Info("Starting workers", "count", workers)

	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for l.ProcessNext(ctx) {
			}
		})
	}
	<-ctx.Done()
	logger.Info("Shutting down workers")
	l.queue.ShutDown()
	wg.Wait()
}

// ProcessNext handles one key; it returns false when the queue is shut down.
// Exported so that tests can drive a controller step by step.
func (l *Loop[K]) ProcessNext(ctx context.Context) bool {
	key, quit := l.queue.Get()
	if quit {
		return false
	}
	defer l.queue.Done(key)
	l.due.picked(key)

	logger := klog.FromContext(ctx).WithValues("key", key)
	ctx = klog.NewContext(ctx, logger)

	start := l.clock.Now()
	res, err := l.safeSync(ctx, key)
	elapsed := l.clock.Since(start)

	switch {
	case err == nil:
		l.metrics.Observe(metrics.ResultSuccess, elapsed)
		l.queue.Forget(key)
		if res.RequeueAfter > 0 {
			l.queue.AddAfter(key, res.RequeueAfter)
		}
	case apierrors.IsConflict(err):
		// Someone wrote the object since our cache saw it; the watch brings
		// the new version and the retry works on it. Not an error.
		l.metrics.Observe(metrics.ResultConflict, elapsed)
		logger.V(4).Info("Conflict, retrying", "err", err.Error())
		l.queue.AddRateLimited(key)
	default:
		l.metrics.Observe(metrics.ResultError, elapsed)
		if l.queue.NumRequeues(key) < l.maxRetries {
			utilruntime.HandleErrorWithContext(ctx, err, "Reconcile failed, retrying with backoff", "controller", l.name)
			l.queue.AddRateLimited(key)
			return true
		}
		utilruntime.HandleErrorWithContext(ctx, err, "Reconcile keeps failing, retrying at the slow interval",
			"controller", l.name, "retries", l.queue.NumRequeues(key), "interval", l.exhaustedDelay)
		l.queue.Forget(key)
		l.queue.AddAfter(key, l.exhaustedDelay)
	}
	return true
}

// safeSync turns a panic in sync into an error, so one bad object cannot
// take the operator down. The stack is logged: the error alone does not
// say where the panic happened.
func (l *Loop[K]) safeSync(ctx context.Context, key K) (res Result, err error) {
	defer func() {
		if r := recover(); r != nil {
			klog.FromContext(ctx).Error(nil, "Recovered a panic in a sync", "controller", l.name, "panic", fmt.Sprint(r), "stack", string(debug.Stack()))
			err = fmt.Errorf("panic in %s sync: %v", l.name, r)
		}
	}()
	return l.sync(ctx, key)
}
