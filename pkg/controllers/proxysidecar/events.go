package proxysidecar

import (
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/meshkeeper/istio-operator/pkg/controllers/controller"
)

// restartEvents is the budget of Events on restarted workloads. A wave of
// thousands of restarts would otherwise write thousands of Events, one API
// request each, as many as the restarts themselves. Like the kubelet's event
// QPS, the budget lets a burst through and then a trickle; the restart
// itself is always recorded on the workload (its pod-template annotations)
// and in the log, and the Istio resource gets one Event saying that the
// wave went over the budget.
type restartEvents struct {
	budget  controller.EventBudget
	limiter *rate.Limiter // nil: no limit

	mu         sync.Mutex
	limitedFor string // the target hash whose wave went over the budget
}

func newRestartEvents(b controller.EventBudget) *restartEvents {
	e := &restartEvents{budget: b}
	if b.Burst > 0 {
		e.limiter = rate.NewLimiter(rate.Limit(b.PerSecond), b.Burst)
	}
	return e
}

// allow reports whether the restart of one workload for the target hash
// gets its own Event, and, when it does not, whether it is the wave's first
// over the budget (the one to tell the Istio resource about).
func (e *restartEvents) allow(now time.Time, hash string) (ok, firstOver bool) {
	if e.limiter == nil || e.limiter.AllowN(now, 1) {
		return true, false
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.limitedFor == hash {
		return false, false
	}
	e.limitedFor = hash
	return false, true
}
