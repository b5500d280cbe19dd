package proxysidecar

import (
	"context"
	"sync"

	"golang.org/x/time/rate"

	v1alpha2 "github.com/meshkeeper/istio-operator/pkg/apis/operator/v1alpha2"
)

// pacer limits restarts: a token bucket for the rate at which workloads are
// restarted, and a cap on the workloads rolling at once. A workload that
// finds no free slot waits in line and is woken, in order, when one frees.
type pacer struct {
	mu       sync.Mutex
	pacing   v1alpha2.RestartPacing
	limiter  *rate.Limiter // nil when unpaced
	inFlight map[Key]struct{}
	line     []Key
	inLine   map[Key]bool
}

func newPacer() *pacer {
	return &pacer{inFlight: map[Key]struct{}{}, inLine: map[Key]bool{}}
}

// configure sets the pacing; it keeps the bucket when nothing changed.
func (p *pacer) configure(pc v1alpha2.RestartPacing) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if pc == p.pacing && (p.limiter != nil) == (pc.RestartsPerSecond > 0) {
		return
	}
	p.pacing = pc
	p.limiter = nil
	if pc.RestartsPerSecond > 0 {
		p.limiter = rate.NewLimiter(rate.Limit(pc.RestartsPerSecond), burst(pc.RestartsPerSecond))
	}
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

// wait blocks until the token bucket allows the next restart.
func (p *pacer) wait(ctx context.Context) error {
	p.mu.Lock()
	l := p.limiter
	p.mu.Unlock()
	if l == nil {
		return nil
	}
	return l.Wait(ctx)
}

// rolling records that k is rolling out, e.g. when the operator finds a
// restart of an earlier run of it in progress.
func (p *pacer) rolling(k Key) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.removeFromLine(k)
	p.inFlight[k] = struct{}{}
}

// done frees k's slot (and its place in line) and returns the workloads
// that may go now.
func (p *pacer) done(k Key) []Key {
	p.mu.Lock()
	defer p.mu.Unlock()
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
