package proxysidecar

import (
	"testing"
	"time"

	"github.com/meshkeeper/istio-operator/pkg/controllers/controller"
)

func TestRestartEventsBudget(t *testing.T) {
	now := time.Now()
	e := newRestartEvents(controller.EventBudget{Burst: 3, PerSecond: 2})
	for i := range 3 {
		if ok, _ := e.allow(now, "h1"); !ok {
			t.Fatalf("restart %d of the burst refused", i+1)
		}
	}
	if ok, first := e.allow(now, "h1"); ok || !first {
		t.Fatalf("4th restart at once: ok %v firstOver %v, want refused and first", ok, first)
	}
	if ok, first := e.allow(now, "h1"); ok || first {
		t.Fatalf("5th restart at once: ok %v firstOver %v, want refused, not first", ok, first)
	}
	if ok, _ := e.allow(now.Add(500*time.Millisecond), "h1"); !ok {
		t.Fatal("half a second later at 2 per second: refused")
	}
	if ok, first := e.allow(now.Add(500*time.Millisecond), "h2"); ok || !first {
		t.Fatalf("a new wave over the budget: ok %v firstOver %v, want refused and first", ok, first)
	}

	unlimited := newRestartEvents(controller.EventBudget{})
	for i := range 1000 {
		if ok, _ := unlimited.allow(now, "h1"); !ok {
			t.Fatalf("restart %d refused without a budget", i+1)
		}
	}
}
