package proxysidecar

import (
	"fmt"
	"reflect"
	"sort"
	"strings"
	"testing"
	"time"

	v1alpha2 "github.com/meshkeeper/istio-operator/pkg/apis/operator/v1alpha2"
	"github.com/meshkeeper/istio-operator/pkg/istioclient"
)

func key(name string) Key { return Key{Kind: KindDeployment, Namespace: "ns", Name: name} }

func TestPacerSlotsAndLine(t *testing.T) {
	p := newPacer()
	p.configure(v1alpha2.RestartPacing{MaxConcurrentRollouts: 2})
	for _, n := range []string{"a", "b"} {
		if !p.acquire(key(n)) {
			t.Fatalf("%s found no free slot", n)
		}
	}
	if p.acquire(key("c")) || p.acquire(key("d")) {
		t.Fatal("a third rollout got a slot, limit 2")
	}
	if !p.acquire(key("a")) {
		t.Error("a rolling workload lost its slot")
	}
	for _, n := range []string{"a", "b", "c", "d"} {
		if !p.waiting(key(n)) {
			t.Errorf("%s is neither rolling nor in line", n)
		}
	}
	if p.waiting(key("e")) {
		t.Error("e, never seen, counts as waiting")
	}
	if got := p.done(key("a"), time.Time{}); !reflect.DeepEqual(got, []Key{key("c")}) {
		t.Errorf("after a finished, woken %v, want [c]", got)
	}
	if !p.acquire(key("c")) || p.waiting(key("a")) {
		t.Error("c did not take a's slot")
	}
	// Lifting the limit lets the whole line go.
	p.configure(v1alpha2.RestartPacing{})
	if got := p.next(); !reflect.DeepEqual(got, []Key{key("d")}) {
		t.Errorf("unlimited: woken %v, want [d]", got)
	}
}

func TestPacerRate(t *testing.T) {
	now := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	p := newPacer()
	p.configure(v1alpha2.RestartPacing{RestartsPerSecond: 20})
	// Burst 20/5 = 4: four go at once, the fifth after 1/20 s.
	for i := range 4 {
		if d := p.reserve(key(fmt.Sprint(i)), now); d != 0 {
			t.Fatalf("restart %d of the burst waits %v", i, d)
		}
	}
	if d := p.reserve(key("4"), now); d != 50*time.Millisecond {
		t.Errorf("the fifth restart waits %v, want 50ms", d)
	}
	// Asking again before the delay is over reserves nothing more.
	if d := p.reserve(key("4"), now.Add(20*time.Millisecond)); d != 30*time.Millisecond {
		t.Errorf("the fifth restart, asking again, waits %v, want the remaining 30ms", d)
	}
	if d := p.reserve(key("4"), now.Add(50*time.Millisecond)); d != 0 {
		t.Errorf("the fifth restart, at its time, waits %v", d)
	}
	// A stall banks no more than the burst: after a second without
	// restarts, four go at once and the fifth waits.
	later := now.Add(time.Second)
	if !p.limiter.AllowN(later, 4) || p.limiter.AllowN(later, 1) {
		t.Errorf("after a second's pause the bucket holds %.1f restarts, want 4", p.limiter.TokensAt(later))
	}
	if b := burst(4); b != 1 {
		t.Errorf("burst at 4/s = %d, want 1", b)
	}
	p.configure(v1alpha2.RestartPacing{})
	for i := range 100 {
		if d := p.reserve(key(fmt.Sprint(i)), later); d != 0 {
			t.Fatalf("unpaced restart waits %v", d)
		}
	}
}

// A slow rate holds back the workloads it paces, never the caller, and a
// faster rate applies at once: the workloads that reserved at the slow rate
// are handed back to be synced again, and go.
func TestPacerSlowRateChangedToFast(t *testing.T) {
	now := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	p := newPacer()
	p.configure(v1alpha2.RestartPacing{RestartsPerSecond: 0.001}) // "1m": one restart every 1000 s
	if d := p.reserve(key("a"), now); d != 0 {
		t.Fatalf("the first restart waits %v", d)
	}
	if d := p.reserve(key("b"), now); d < 999*time.Second {
		t.Fatalf("at 0.001/s the second restart waits %v, want about 1000s", d)
	}
	if d := p.reserve(key("c"), now); d < 1999*time.Second {
		t.Fatalf("at 0.001/s the third restart waits %v, want about 2000s", d)
	}
	// Changing only the in-flight cap keeps the reservations.
	if woken := p.configure(v1alpha2.RestartPacing{RestartsPerSecond: 0.001, MaxConcurrentRollouts: 5}); len(woken) != 0 {
		t.Errorf("a change of the in-flight cap woke %v", woken)
	}
	woken := p.configure(v1alpha2.RestartPacing{RestartsPerSecond: 20, MaxConcurrentRollouts: 5})
	sort.Slice(woken, func(i, j int) bool { return woken[i].Name < woken[j].Name })
	if !reflect.DeepEqual(woken, []Key{key("b"), key("c")}) {
		t.Fatalf("the new rate woke %v, want [b c]", woken)
	}
	later := now.Add(100 * time.Millisecond)
	for _, n := range []string{"b", "c"} {
		if d := p.reserve(key(n), later); d != 0 {
			t.Errorf("%s, woken by the new rate, waits %v", n, d)
		}
	}
	// A released workload gives its reserved token back.
	p.configure(v1alpha2.RestartPacing{RestartsPerSecond: 1})
	if d := p.reserve(key("d"), later); d != 0 {
		t.Fatalf("d waits %v", d)
	}
	if d := p.reserve(key("e"), later); d != time.Second {
		t.Fatalf("e waits %v, want 1s", d)
	}
	p.done(key("e"), later)
	if d := p.reserve(key("f"), later); d != time.Second {
		t.Errorf("after e gave its token back, f waits %v, want 1s", d)
	}
}

func TestConditionMessages(t *testing.T) {
	tg := &target{proxy: istioclient.Proxy{Image: "docker.io/istio/proxyv2:" + istioclient.Version}}
	cases := []struct {
		n      census
		reason string
		text   []string
	}{
		{census{restarted: 3, waiting: []Key{key("a")}, rolling: []Key{key("b")}, manual: []string{"x/p"}},
			v1alpha2.ReasonProxySidecarRestartInProgress, []string{"3 of 5 workloads restarted, 1 waiting, 1 need manual restart", "1 rolling out"}},
		{census{restarted: 2, blocked: []string{"ns/d (paused: resume it to restart its proxies)"}, excluded: 1},
			v1alpha2.ReasonProxySidecarRestartPartiallySucceeded, []string{"2 of 3 workloads restarted", "ns/d (paused", "1 excluded"}},
		{census{restarted: 2, platformBlocked: []string{"kyma-system/d (paused: resume it to restart its proxies)"}},
			v1alpha2.ReasonProxySidecarRestartFailed, []string{"2 of 3 workloads restarted", "platform workloads blocked: kyma-system/d (paused"}},
		{census{manual: []string{"a/1", "a/2", "a/3", "a/4", "a/5", "a/6", "a/7"}},
			v1alpha2.ReasonProxySidecarManualRestartRequired, []string{"a/1, a/2, a/3, a/4, a/5 and 2 additional workload(s)"}},
		{census{restarted: 4}, v1alpha2.ReasonProxySidecarRestartSucceeded, []string{"4 of 4 workloads restarted"}},
	}
	for _, tc := range cases {
		c, after := tc.n.condition(tg)
		if c.Reason != tc.reason {
			t.Errorf("reason %s, want %s (%s)", c.Reason, tc.reason, c.Message)
		}
		for _, s := range tc.text {
			if !strings.Contains(c.Message, s) {
				t.Errorf("%s: message %q lacks %q", tc.reason, c.Message, s)
			}
		}
		if (tc.reason == v1alpha2.ReasonProxySidecarRestartInProgress) != (after == RollingInterval) {
			t.Errorf("%s: requeue after %v", tc.reason, after)
		}
	}
}
