package proxysidecar

import (
	"sync"
	"time"

	"golang.org/x/time/rate"

	v1alpha2 "github.com/meshkeeper/istio-operator/pkg/apis/operator/v1alpha2"
)

// pacer limits restarts: a token bucket for the rate at which workloads are
// restarted, and a cap on the workloads rolling at once. A workload that
// finds no free slot waits in line and is woken, in order, when one frees.
//
// No worker ever waits on the bucket: a workload reserves its token and is
// requeued for the time the reservation names, so a slow rate holds back
// only the workloads it paces, never the queue's workers, and a new rate
// drops the reservations made at the old one.
type pacer struct {
	mu       sync.Mutex
	pacing   v1alpha2.RestartPacing
	limiter  *rate.Limiter // nil when unpaced
	reserved map[Key]*rate.Reservation
	inFlight map[Key]struct{}
	line     []Key
	inLine   map[Key]bool
}

func newPacer() *pacer {
	return &pacer{inFlight: map[Key]struct{}{}, inLine: map[Key]bool{}, reserved: map[Key]*rate.Reservation{}}
}

// configure sets the pacing; it keeps the bucket when nothing changed. A
// changed rate replaces the bucket and returns the workloads that held a
// reservation on the old one: their syncs must run now, to reserve again
// at the new rate, rather than when the old rate would have let them go.
func (p *pacer) configure(pc v1alpha2.RestartPacing) []Key {
	p.mu.Lock()
	defer p.mu.Unlock()
	if pc == p.pacing && (p.limiter != nil) == (pc.RestartsPerSecond > 0) {
		return nil
	}
	rateChanged := pc.RestartsPerSecond != p.pacing.RestartsPerSecond || (p.limiter != nil) != (pc.RestartsPerSecond > 0)
	p.pacing = pc
	if !rateChanged {
		return nil
	}
	p.limiter = nil
	if pc.RestartsPerSecond > 0 {
		p.limiter = rate.NewLimiter(rate.Limit(pc.RestartsPerSecond), burst(pc.RestartsPerSecond))
	}
	wake := make([]Key, 0, len(p.reserved))
	for k := range p.reserved {
		wake = append(wake, k)
	}
	clear(p.reserved)
	return wake
}

// burst is a fifth of a second of restarts. When the API server stalls,
// every worker waits on a patch and none on the bucket; with a burst of 1
// the restarts the stall held up would be lost to the rate for good. A
// wave starts with at most this many at once, and over any longer span the
// rate holds.
func burst(perSecond float64) int { return max(1, int(perSecond/5)) }

// acquire takes a rollout slot for k, or puts k in line and returns false.
func (p *pacer) acquire(k Key) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if _, ok := p.inFlight[k]; ok {
		return true
	}
	if max := int(p.pacing.MaxConcurrentRollouts); max > 0 && len(p.inFlight) >= max {
		if !p.inLine[k] {
			p.inLine[k] = true
			p.line = append(p.line, k)
		}
		return false
	}
	p.removeFromLine(k)
	p.inFlight[k] = struct{}{}
	return true
}

// reserve takes k's token for a restart at now, or returns how long k must
// wait for it. The token stays reserved for k across the wait, so the
// workloads the bucket holds back go in the order they asked, each after
// its own delay; calling again before the delay is over reserves nothing
// more.
func (p *pacer) reserve(k Key, now time.Time) time.Duration {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.limiter == nil {
		delete(p.reserved, k)
		return 0
	}
	r := p.reserved[k]
	if r == nil {
		r = p.limiter.ReserveN(now, 1)
		if !r.OK() { // cannot happen with a burst of at least 1
			return time.Second
		}
	}
	if d := r.DelayFrom(now); d > 0 {
		p.reserved[k] = r
		return d
	}
	delete(p.reserved, k)
	return 0
}

// cancelLocked returns k's unused reservation to the bucket.
func (p *pacer) cancelLocked(k Key, now time.Time) {
	if r := p.reserved[k]; r != nil {
		r.CancelAt(now)
		delete(p.reserved, k)
	}
}

// rolling records that k is rolling out, e.g. when the operator finds a
// restart of an earlier run of it in progress.
func (p *pacer) rolling(k Key) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.removeFromLine(k)
	p.inFlight[k] = struct{}{}
}

// done frees k's slot (its place in line, its reserved token) and returns
// the workloads that may go now.
func (p *pacer) done(k Key, now time.Time) []Key {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cancelLocked(k, now)
	delete(p.inFlight, k)
	p.removeFromLine(k)
	return p.nextLocked()
}

// next returns the workloads in line that free slots would let go.
func (p *pacer) next() []Key {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.nextLocked()
}

func (p *pacer) nextLocked() []Key {
	free := len(p.line)
	if max := int(p.pacing.MaxConcurrentRollouts); max > 0 {
		free = min(free, max-len(p.inFlight))
	}
	if free <= 0 {
		return nil
	}
	return append([]Key(nil), p.line[:free]...)
}

// waiting reports whether k is in line or rolling; the summary leaves such
// workloads to the pacer.
func (p *pacer) waiting(k Key) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	_, rolling := p.inFlight[k]
	return rolling || p.inLine[k]
}

func (p *pacer) removeFromLine(k Key) {
	if !p.inLine[k] {
		return
	}
	delete(p.inLine, k)
	for i, x := range p.line {
		if x == k {
			p.line = append(p.line[:i], p.line[i+1:]...)
			break
		}
	}
}
