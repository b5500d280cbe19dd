package main

import (
	"strings"
	"testing"
	"time"
)

func TestParseFlagsDerivesNodes(t *testing.T) {
	for _, tc := range []struct {
		args  []string
		nodes int
	}{
		// Without background pods the default stays where it was.
		{nil, defaultNodes},
		// 1000 x (5 + 2 surging) + 45000 + 2 x 250 churn pods + 100.
		{[]string{"--workloads", "1000", "--pods", "5", "--background-pods", "45000", "--churn", "50"}, 53},
		{[]string{"--workloads", "100", "--pods", "3", "--namespaces", "5", "--background-pods", "20000"}, 21},
		{[]string{"--workloads", "1000", "--pods", "5", "--background-pods", "45000", "--churn", "50", "--nodes", "60"}, 60},
	} {
		o, err := parseFlags(tc.args)
		if err != nil {
			t.Errorf("%v: %v", tc.args, err)
			continue
		}
		if o.Nodes != tc.nodes {
			t.Errorf("%v: %d nodes, want %d", tc.args, o.Nodes, tc.nodes)
		}
	}
}

func TestParseFlagsRejectsBigClusterMistakes(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--workloads", "1000", "--pods", "5", "--background-pods", "45000", "--churn", "50", "--nodes", "50"}, "raise --nodes to 53"},
		// The meshed pods count, with their surge during a wave.
		{[]string{"--workloads", "1000", "--pods", "10", "--nodes", "10"}, "raise --nodes to 14"},
		{[]string{"--background-pods", "-1"}, "--background-pods"},
		{[]string{"--background-pods", "10", "--background-namespaces", "0"}, "--background-namespaces"},
		{[]string{"--churn", "-5"}, "--churn"},
		{[]string{"--churn", "5", "--churn-lifetime", "0s"}, "--churn-lifetime"},
		{[]string{"--nodes", "-1"}, "--nodes"},
	} {
		_, err := parseFlags(tc.args)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: error %v, want one with %q", tc.args, err, tc.want)
		}
	}
}

// checkOf finds the row whose figure contains part.
func checkOf(t *testing.T, r *results, part string) check {
	t.Helper()
	for _, c := range r.Checks {
		if strings.Contains(c.Figure, part) {
			return c
		}
	}
	t.Fatalf("no row with %q in %+v", part, r.Checks)
	return check{}
}

func judged(t *testing.T, c check) bool {
	t.Helper()
	if c.Pass == nil {
		t.Fatalf("%q is not judged", c.Figure)
	}
	return *c.Pass
}

func idleWithChurn(opCPU, floorCPU, churnRate float64) *idleResult {
	i := &idleResult{Seconds: 600, CPUSeconds: opCPU, FloorCPUSeconds: floorCPU}
	i.CPUSecondsPerMinute, i.FloorCPUSecondsPerMinute = opCPU/10, floorCPU/10
	if floorCPU > 0 {
		i.FloorRatio = opCPU / floorCPU
	}
	i.Churn = &churnRates{Seconds: 600, CreatedPerSecond: churnRate, DeletedPerSecond: churnRate}
	return i
}

func TestEvaluateIdleAgainstTheWatchFloor(t *testing.T) {
	o := options{Pods: 3, Churn: 50, ChurnLifetime: 5 * time.Second}
	for _, tc := range []struct {
		name            string
		op, floor, rate float64
		ratioPass       bool
		churnPass       bool
	}{
		{"a tenth", 6, 60, 50, true, true},
		{"a fifth", 12, 60, 50, false, true},
		{"no floor measured", 1, 0, 50, false, true},
		{"churn behind", 1, 60, 40, true, false},
	} {
		r := newResults(100)
		r.Idle = idleWithChurn(tc.op, tc.floor, tc.rate)
		r.evaluate(o)
		if got := judged(t, checkOf(t, r, "operator CPU time / the watch floor's")); got != tc.ratioPass {
			t.Errorf("%s: ratio judged %v, want %v", tc.name, got, tc.ratioPass)
		}
		if got := judged(t, checkOf(t, r, "churn of pods outside the mesh achieved")); got != tc.churnPass {
			t.Errorf("%s: churn judged %v, want %v", tc.name, got, tc.churnPass)
		}
	}

	// Without churn the floor is shown, not judged.
	r := newResults(100)
	r.Idle = idleWithChurn(1, 2, 0)
	r.Idle.Churn = nil
	r.evaluate(options{Pods: 3})
	if c := checkOf(t, r, "operator CPU time / the watch floor's"); c.Pass != nil {
		t.Errorf("judged without churn: %+v", c)
	}
}

func TestEvaluateBigClusterPeakRSS(t *testing.T) {
	o := options{Pods: 5, BackgroundPods: 45000}
	r := newResults(1000)
	r.Baseline.PeakRSSBytes = 120 << 20
	r.Unpaced = &waveResult{Name: "unpaced", PeakRSSBytes: 140 << 20}
	r.Idle = &idleResult{PeakRSSBytes: 160 << 20}
	r.evaluate(o)
	c := checkOf(t, r, "Big cluster (50000 pods, 5000 meshed)")
	if judged(t, c) || !strings.Contains(c.Value, "160 MiB (idle)") {
		t.Errorf("peak of 160 MiB while idle: %+v", c)
	}

	r.Idle.PeakRSSBytes = 100 << 20
	r.evaluate(o)
	if c := checkOf(t, r, "Big cluster"); !judged(t, c) || !strings.Contains(c.Value, "140 MiB (unpaced wave)") {
		t.Errorf("peak of 140 MiB in the wave: %+v", c)
	}

	// Below 50,000 pods there is no such target.
	r.evaluate(options{Pods: 5, BackgroundPods: 40000})
	for _, c := range r.Checks {
		if strings.HasPrefix(c.Figure, "Big cluster") {
			t.Errorf("big cluster target at 45000 pods: %+v", c)
		}
	}
}

func TestChurnRates(t *testing.T) {
	t0 := time.Now()
	before := churnCounts{at: t0, Created: 100, Deleted: 50, Missed: 1}
	after := churnCounts{at: t0.Add(10 * time.Second), Created: 600, Deleted: 490, Missed: 3, DeleteErrors: 2}
	r := after.since(before)
	if r.CreatedPerSecond != 50 || r.DeletedPerSecond != 44 || r.Missed != 2 || r.DeleteErrors != 2 {
		t.Errorf("rates %+v", r)
	}
	if r.keptUp(50, 0.9) {
		t.Error("44 deletions/s of 50 kept up")
	}
	if !r.keptUp(50, 0.85) {
		t.Error("44 deletions/s of 50 with 85% did not keep up")
	}
	if s := churnText(r); !strings.Contains(s, "2 creations missed") {
		t.Errorf("churn text %q hides the missed creations", s)
	}
}

func TestBigClusterMarkdown(t *testing.T) {
	o := options{Pods: 5, BackgroundPods: 45000, Churn: 50, ChurnLifetime: 5 * time.Second, Sizes: []int{1000}}
	r := newResults(1000)
	r.Unpaced = &waveResult{Name: "unpaced", MeasuredSeconds: 60, CPUSeconds: 6, FloorCPUSeconds: 30, PeakRSSBytes: 100 << 20,
		Churn: &churnRates{Seconds: 60, CreatedPerSecond: 50, DeletedPerSecond: 50}}
	r.Idle = idleWithChurn(6, 60, 50)
	rep := &report{Options: o, Sizes: []*results{r}}
	r.evaluate(o)
	md := rep.markdown()
	for _, want := range []string{"### Big cluster", "| unpaced wave | 60.0 s | 6.000 s/min | 30.000 s/min | 0.200 |", "| Idle | 600.0 s | 0.600 s/min | 6.000 s/min | 0.100 |"} {
		if !strings.Contains(md, want) {
			t.Errorf("markdown lacks %q:\n%s", want, md)
		}
	}
}

func TestDerivedTimeouts(t *testing.T) {
	if got := waveTimeoutFor(100, 3); got != 20*time.Minute {
		t.Errorf("wave of 300 pods: %s, want 20m", got)
	}
	if got := waveTimeoutFor(1000, 5); got != 2500*time.Second {
		t.Errorf("wave of 5000 pods: %s, want 2500s", got)
	}
	o := options{SetupTimeout: 15 * time.Minute, BackgroundPods: 45000}
	if got := backgroundTimeout(o); got != 1350*time.Second {
		t.Errorf("45000 background pods: %s, want 1350s", got)
	}
	o.BackgroundPods = 5000
	if got := backgroundTimeout(o); got != 15*time.Minute {
		t.Errorf("5000 background pods: %s, want the setup timeout", got)
	}
}
