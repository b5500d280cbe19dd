package istioclient

import (
	"sort"
	"strings"
	"sync"

	"istio.io/istio/operator/pkg/component"
)

func userFacing(c component.Name) string {
	return component.UserFacingComponentName(c)
}

// progressLog turns per-component progress into one sentence.
type progressLog struct {
	mu    sync.Mutex
	state map[component.Name]string
	send  func(string)
	last  string
}

func newProgress(send func(string)) *progressLog {
	return &progressLog{state: map[component.Name]string{}, send: send}
}

func (p *progressLog) set(c component.Name, s string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.state[c] = s
	p.emit()
}

func (p *progressLog) done(c component.Name) {
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.state, c)
	p.emit()
}

func (p *progressLog) emit() {
	if p.send == nil {
		return
	}
	var parts []string
	for c, s := range p.state {
		parts = append(parts, userFacing(c)+": "+s)
	}
	if len(parts) == 0 {
		return
	}
	sort.Strings(parts)
	msg := strings.Join(parts, "; ")
	if msg != p.last {
		p.last = msg
		p.send(msg)
	}
}
