package queue

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-logr/zapr"
	dto "github.com/prometheus/client_model/go"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/klog/v2"

	"github.com/meshkeeper/istio-operator/pkg/metrics"
)

// fastLimiter retries at once, so tests see retries without waiting.
func fastLimiter() workqueue.TypedRateLimiter[string] {
	return workqueue.NewTypedItemExponentialFailureRateLimiter[string](0, 0)
}

// next processes one key, failing the test if none arrives in time.
func next(t *testing.T, l *Loop[string]) {
	t.Helper()
	done := make(chan bool, 1)
	go func() { done <- l.ProcessNext(context.Background()) }()
	select {
	case ok := <-done:
		if !ok {
			t.Fatal("queue shut down")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no key arrived within 5s")
	}
}

func reconcileCount(t *testing.T, controller, result string) float64 {
	t.Helper()
	families, err := metrics.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() != "istio_operator_reconcile_total" {
			continue
		}
		for _, m := range f.GetMetric() {
			if label(m, "controller") == controller && label(m, "result") == result {
				return m.GetCounter().GetValue()
			}
		}
	}
	t.Fatalf("no reconcile_total series for %s/%s", controller, result)
	return 0
}

func label(m *dto.Metric, name string) string {
	for _, l := range m.GetLabel() {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}

func TestSuccessForgetsAndRequeuesAfter(t *testing.T) {
	var calls atomic.Int32
	l := New(Config[string]{Name: "test-success", RateLimiter: fastLimiter()},
		func(_ context.Context, key string) (Result, error) {
			if calls.Add(1) == 1 {
				return Result{RequeueAfter: 20 * time.Millisecond}, nil
			}
			return Result{}, nil
		})
	defer l.ShutDown()
	if got := reconcileCount(t, "test-success", metrics.ResultError); got != 0 {
		t.Fatalf("series not pre-initialised at 0: %v", got)
	}
	l.Add("a")
	next(t, l)
	if l.queue.NumRequeues("a") != 0 {
		t.Error("a success must reset the key's backoff")
	}
	next(t, l) // the delayed requeue
	if calls.Load() != 2 {
		t.Fatalf("sync called %d times, want 2", calls.Load())
	}
	if got := reconcileCount(t, "test-success", metrics.ResultSuccess); got != 2 {
		t.Errorf("success count %v, want 2", got)
	}
}

func TestErrorsRetryThenFallBackToSlowInterval(t *testing.T) {
	var calls atomic.Int32
	l := New(Config[string]{
		Name: "test-errors", RateLimiter: fastLimiter(),
		MaxRetries: 2, RetryBudgetExhaustedDelay: 30 * time.Millisecond,
	}, func(context.Context, string) (Result, error) {
		calls.Add(1)
		return Result{}, errors.New("boom")
	})
	defer l.ShutDown()
	l.Add("k")
	next(t, l) // fails, retry 1
	next(t, l) // fails, retry 2
	if n := l.queue.NumRequeues("k"); n != 2 {
		t.Fatalf("requeues %d, want 2", n)
	}
	next(t, l) // budget spent: forgotten, re-added after the slow interval
	if n := l.queue.NumRequeues("k"); n != 0 {
		t.Fatalf("requeues %d after the budget, want the key forgotten", n)
	}
	start := time.Now()
	next(t, l)
	if waited := time.Since(start); waited < 20*time.Millisecond {
		t.Errorf("key came back after %v, want the slow interval", waited)
	}
	if got := reconcileCount(t, "test-errors", metrics.ResultError); got != 4 {
		t.Errorf("error count %v, want 4", got)
	}
}

func TestConflictIsRetriedQuietly(t *testing.T) {
	var calls atomic.Int32
	l := New(Config[string]{Name: "test-conflict", RateLimiter: fastLimiter()},
		func(context.Context, string) (Result, error) {
			if calls.Add(1) == 1 {
				return Result{}, apierrors.NewConflict(schema.GroupResource{Resource: "istios"}, "default", errors.New("changed"))
			}
			return Result{}, nil
		})
	defer l.ShutDown()
	l.Add("k")
	next(t, l)
	next(t, l)
	if got := reconcileCount(t, "test-conflict", metrics.ResultConflict); got != 1 {
		t.Errorf("conflict count %v, want 1", got)
	}
	if got := reconcileCount(t, "test-conflict", metrics.ResultError); got != 0 {
		t.Errorf("a conflict was counted as an error")
	}
}

func TestPanicBecomesError(t *testing.T) {
	core, logs := observer.New(zapcore.DebugLevel)
	ctx := klog.NewContext(context.Background(), zapr.NewLogger(zap.New(core)))
	l := New(Config[string]{Name: "test-panic", RateLimiter: fastLimiter()},
		func(context.Context, string) (Result, error) { panic("bad object") })
	defer l.ShutDown()
	l.Add("k")
	if !l.ProcessNext(ctx) {
		t.Fatal("queue shut down")
	}
	if got := reconcileCount(t, "test-panic", metrics.ResultError); got != 1 {
		t.Errorf("error count %v, want 1", got)
	}
	// The panic is logged with the stack of the sync that panicked.
	var stack string
	for _, e := range logs.FilterMessage("Recovered a panic in a sync").All() {
		stack, _ = e.ContextMap()["stack"].(string)
	}
	if !strings.Contains(stack, "TestPanicBecomesError") {
		t.Errorf("no stack naming the panicking function was logged; got %q", stack)
	}
}

func TestRunStopsOnCancel(t *testing.T) {
	var calls atomic.Int32
	l := New(Config[string]{Name: "test-run"}, func(context.Context, string) (Result, error) {
		calls.Add(1)
		return Result{}, nil
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { l.Run(ctx, 2); close(done) }()
	l.Add("a")
	l.Add("b")
	deadline := time.Now().Add(5 * time.Second)
	for calls.Load() < 2 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if calls.Load() != 2 {
		t.Fatalf("workers synced %d keys, want 2", calls.Load())
	}
	cancel()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return after cancel")
	}
}

func TestHandler(t *testing.T) {
	l := New(Config[string]{Name: "test-handler"}, func(context.Context, string) (Result, error) { return Result{}, nil })
	defer l.ShutDown()
	h := l.Handler(func(obj any) []string {
		return []string{obj.(*corev1.Pod).Labels["app"]}
	})
	pod := func(app, rv string) *corev1.Pod {
		return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "p", Labels: map[string]string{"app": app}, ResourceVersion: rv}}
	}
	h.OnAdd(pod("a", "1"), false)
	if l.Len() != 1 {
		t.Fatalf("add: %d keys queued, want 1", l.Len())
	}
	h.OnUpdate(pod("a", "1"), pod("a", "1"))
	if l.Len() != 1 {
		t.Fatalf("a resync of an unchanged object queued work")
	}
	h.OnUpdate(pod("a", "1"), pod("b", "2"))
	if l.Len() != 2 {
		t.Fatalf("an update moving the object from a to b must queue both; %d queued", l.Len())
	}
	h.OnDelete(cache.DeletedFinalStateUnknown{Key: "ns/p", Obj: pod("c", "3")})
	if l.Len() != 3 {
		t.Fatalf("a tombstone was not unwrapped; %d queued", l.Len())
	}
}

func TestObjectNameKey(t *testing.T) {
	keys := ObjectNameKey(&corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "p"}})
	if len(keys) != 1 || keys[0] != (cache.ObjectName{Namespace: "ns", Name: "p"}) {
		t.Fatalf("keys %v", keys)
	}
	if keys := ObjectNameKey("not an object"); keys != nil {
		t.Fatalf("keys %v for a non-object", keys)
	}
}

// Every line a sync logs, its own and the loop's error report, names the
// controller and the key, so that one reconcile can be followed in the logs.
func TestLogLinesCarryControllerAndKey(t *testing.T) {
	core, logs := observer.New(zapcore.DebugLevel)
	ctx, cancel := context.WithCancel(klog.NewContext(context.Background(), zapr.NewLogger(zap.New(core))))
	defer cancel()

	synced := make(chan struct{}, 2)
	l := New(Config[string]{Name: "logging-test", RateLimiter: fastLimiter(), MaxRetries: 1},
		func(ctx context.Context, key string) (Result, error) {
			defer func() { synced <- struct{}{} }()
			klog.FromContext(ctx).Info("Syncing")
			if key == "ns/broken" {
				return Result{}, errors.New("boom")
			}
			return Result{}, nil
		})
	go l.Run(ctx, 1)
	l.Add("ns/fine")
	l.Add("ns/broken")
	for range 2 {
		select {
		case <-synced:
		case <-time.After(5 * time.Second):
			t.Fatal("the keys were not synced within 5s")
		}
	}
	// The error report follows the sync that failed.
	if err := wait.PollUntilContextTimeout(ctx, 10*time.Millisecond, 5*time.Second, true, func(context.Context) (bool, error) {
		return logs.FilterMessage("Reconcile failed, retrying with backoff").Len() > 0, nil
	}); err != nil {
		t.Fatal("the failed reconcile was not logged")
	}

	var checked int
	for _, entry := range logs.All() {
		if entry.Message == "Starting workers" || entry.Message == "Shutting down workers" {
			continue // not part of a reconcile
		}
		fields := entry.ContextMap()
		if fields["controller"] != "logging-test" || (fields["key"] != "ns/fine" && fields["key"] != "ns/broken") {
			t.Errorf("log line %q lacks the controller or the key: %v", entry.Message, fields)
		}
		checked++
	}
	if checked < 3 {
		t.Fatalf("checked %d reconcile log lines, want at least 3 (two syncs and an error)", checked)
	}
}

// HandlerAfter adds a key to the delaying queue once per pending
// reconcile, and an event after a worker picked the key up schedules
// another: no event goes unseen.
func TestHandlerAfterSchedulesOncePerPendingReconcile(t *testing.T) {
	var syncs atomic.Int32
	l := New(Config[string]{Name: "test-handler-after"}, func(context.Context, string) (Result, error) {
		syncs.Add(1)
		return Result{}, nil
	})
	defer l.ShutDown()
	h := l.HandlerAfter(50*time.Millisecond, func(any) []string { return []string{"k"} })
	pod := func(rv string) *corev1.Pod {
		return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "p", ResourceVersion: rv}}
	}
	h.OnAdd(pod("1"), false)
	first := l.due.keys["k"]
	for i := 2; i < 20; i++ {
		h.OnUpdate(pod("1"), pod(string(rune('0'+i))))
	}
	if got := l.due.keys["k"]; !got.Equal(first) {
		t.Fatalf("a burst moved the due time from %v to %v; the first event's reconcile covers it", first, got)
	}
	next(t, l)
	if n := syncs.Load(); n != 1 {
		t.Fatalf("%d reconciles for one burst, want 1", n)
	}
	if _, pending := l.due.keys["k"]; pending {
		t.Fatal("the key is still due after a worker picked it up")
	}
	h.OnDelete(pod("30"))
	next(t, l)
	if n := syncs.Load(); n != 2 {
		t.Fatalf("an event after the reconcile began was lost: %d reconciles, want 2", n)
	}
}

func TestDueSet(t *testing.T) {
	var d dueSet[string]
	now := time.Now()
	if !d.schedule("k", now.Add(time.Second)) {
		t.Fatal("the first event must schedule")
	}
	if d.schedule("k", now.Add(2*time.Second)) {
		t.Fatal("a later deadline is covered by the pending reconcile")
	}
	if !d.schedule("k", now.Add(500*time.Millisecond)) {
		t.Fatal("an earlier deadline must schedule")
	}
	d.picked("k")
	if !d.schedule("k", now.Add(2*time.Second)) {
		t.Fatal("after a pick-up the next event must schedule again")
	}
}
