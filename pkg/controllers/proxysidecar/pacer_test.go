package proxysidecar

import (
	"context"
	"reflect"
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
	if got := p.done(key("a")); !reflect.DeepEqual(got, []Key{key("c")}) {
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
	p := newPacer()
	p.configure(v1alpha2.RestartPacing{RestartsPerSecond: 20})
	start := time.Now()
	for range 5 {
		if err := p.wait(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	// Burst 20/5 = 4: four go at once, the fifth after 1/20 s.
	if d := time.Since(start); d < 45*time.Millisecond {
		t.Errorf("5 restarts at 20/s took %v, want at least 50ms", d)
	}
	// A stall banks no more than the burst: after a second without
	// restarts, four go at once and the fifth waits.
	later := time.Now().Add(time.Second)
	if !p.limiter.AllowN(later, 4) || p.limiter.AllowN(later, 1) {
		t.Errorf("after a second's pause the bucket holds %.1f restarts, want 4", p.limiter.TokensAt(later))
	}
	if b := burst(4); b != 1 {
		t.Errorf("burst at 4/s = %d, want 1", b)
	}
	p.configure(v1alpha2.RestartPacing{})
	start = time.Now()
	for range 100 {
		_ = p.wait(context.Background())
	}
	if d := time.Since(start); d > 50*time.Millisecond {
		t.Errorf("unpaced waits took %v", d)
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
			v1alpha2.ReasonProxySidecarRestartFailed, []string{"2 of 3 workloads restarted", "ns/d (paused", "1 excluded"}},
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
