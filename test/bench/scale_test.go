package main

import (
	"math"
	"strings"
	"testing"
)

func TestScaleModelFitsFixedAndPerWorkloadCosts(t *testing.T) {
	wave := func(n int, requests, cpu float64, rss int64) *results {
		r := newResults(n)
		r.Unpaced = &waveResult{Patches: n, AchievedRate: 100, FirstPatchSeconds: 5, RolledOutSeconds: 5 + float64(n*3)/60,
			CPUSeconds: cpu, PeakRSSBytes: rss}
		r.Unpaced.Requests.Total = requests
		return r
	}
	// 50 fixed requests + 2 per workload; 1 s + 0.01 s per workload; RSS
	// 100 MiB + 10 KiB per workload.
	small := wave(100, 250, 2, 100<<20+100*10<<10)
	large := wave(1000, 2050, 11, 100<<20+1000*10<<10)
	m := newScaleModel(options{Pods: 3}, []*results{large, small})
	if m == nil {
		t.Fatal("no model from two complete waves")
	}
	near := func(what string, got, want float64) {
		t.Helper()
		if math.Abs(got-want) > 1e-6*math.Max(1, math.Abs(want)) {
			t.Errorf("%s = %g, want %g", what, got, want)
		}
	}
	near("requests fixed", m.Requests.Fixed, 50)
	near("requests per workload", m.Requests.PerWorkload, 2)
	near("CPU per workload", m.CPU.PerWorkload, 0.01)
	near("RSS per workload", m.PeakRSS.PerWorkload, 10<<10)
	near("pods rolled per second", m.PodsRolledPerSecond, 60)

	row := m.Rows[0]
	if row.Workloads != 10000 {
		t.Fatalf("first estimate for %d workloads, want 10000", row.Workloads)
	}
	near("requests at 10000", row.Requests, 50+2*10000)
	near("unpaced patches at 10000", row.UnpacedPatchSeconds, 5+9999.0/100)
	// Defaults: 10 restarts/s, but 50 requests/s at 2 requests each caps it at 25/s: pacing binds.
	near("default patches at 10000", row.DefaultPatchSeconds, 5+9999.0/10)
	near("cluster roll at 10000", row.ClusterRollSeconds, 5+30000.0/60)
	if !strings.Contains(row.Limit, "unpaced: the cluster") || !strings.Contains(row.Limit, "defaults: the pacing") {
		t.Errorf("limit %q: want the cluster unpaced and the pacing with the defaults", row.Limit)
	}
}

func TestScaleModelNeedsACompleteWave(t *testing.T) {
	r := newResults(100)
	r.Unpaced = &waveResult{Failure: "timed out", Patches: 40}
	if m := newScaleModel(options{Pods: 3}, []*results{r}); m != nil {
		t.Fatalf("model from a failed wave: %+v", m)
	}
}

func TestScaleModelOfOneSizeTakesMemoryAsFixed(t *testing.T) {
	r := newResults(1000)
	r.Unpaced = &waveResult{Patches: 1000, AchievedRate: 50, RolledOutSeconds: 100, CPUSeconds: 20, PeakRSSBytes: 200 << 20}
	r.Unpaced.Requests.Total = 2000
	m := newScaleModel(options{Pods: 3}, []*results{r})
	if m.PeakRSS.PerWorkload != 0 || m.PeakRSS.Fixed != 200<<20 {
		t.Errorf("RSS fit %+v, want 200 MiB fixed", m.PeakRSS)
	}
	if m.Requests.PerWorkload != 2 || m.CPU.PerWorkload != 0.02 {
		t.Errorf("requests %+v, CPU %+v: want everything per workload", m.Requests, m.CPU)
	}
}
