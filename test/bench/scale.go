package main

import (
	"fmt"
	"strings"
)

// Defaults of the deployed operator (cmd/istio-operator): restarts per
// second and the client-side API rate limit.
const (
	defaultRestartsPerSecond = 10
	defaultClientQPS         = 50
)

// scaleSizes are the meshes the model estimates.
var scaleSizes = []int{10000, 50000}

// scaleModel extrapolates the unpaced waves of the measured sizes to larger
// meshes. Requests, CPU and peak RSS are fitted as a fixed part plus a part
// per workload through the smallest and the largest size (with one size,
// requests and CPU are all per workload and RSS all fixed); patch and pod
// rates are those of the largest.
type scaleModel struct {
	BasedOn  []int `json:"basedOnWorkloads"`
	Pods     int   `json:"podsPerWorkload"`
	Requests fit   `json:"apiRequests"`
	CPU      fit   `json:"cpuSeconds"`
	PeakRSS  fit   `json:"peakRSSBytes"`
	// PatchesPerSecond is the unpaced patch rate after the first patch,
	// FirstPatchSeconds the delay before it (the new configuration is
	// installed first).
	PatchesPerSecond  float64 `json:"unpacedPatchesPerSecond"`
	FirstPatchSeconds float64 `json:"firstPatchSeconds"`
	// PodsRolledPerSecond is how fast the cluster replaced pods, from the
	// first patch until every old pod was gone.
	PodsRolledPerSecond float64 `json:"podsRolledPerSecond"`

	Rows []scaleRow `json:"estimates"`
}

// fit is fixed + perWorkload * workloads, never negative per workload.
type fit struct {
	Fixed       float64 `json:"fixed"`
	PerWorkload float64 `json:"perWorkload"`
}

func (f fit) at(workloads int) float64 { return f.Fixed + f.PerWorkload*float64(workloads) }

func fitOf(n1 int, y1 float64, n2 int, y2 float64) fit {
	if n1 == n2 {
		return fit{PerWorkload: y2 / float64(n2)}
	}
	per := max(0, (y2-y1)/float64(n2-n1))
	return fit{Fixed: y2 - per*float64(n2), PerWorkload: per}
}

type scaleRow struct {
	Workloads int `json:"workloads"`
	// Seconds until every restart patch is issued: unpaced, as the operator
	// did at the measured size; and with the deployed defaults (pacing and
	// client-side QPS).
	UnpacedPatchSeconds float64 `json:"unpacedPatchSeconds"`
	DefaultPatchSeconds float64 `json:"defaultPatchSeconds"`
	// ClusterRollSeconds is how long the cluster needs to replace every pod
	// at the measured rate.
	ClusterRollSeconds float64 `json:"clusterRollSeconds"`
	Requests           float64 `json:"apiRequests"`
	CPUSeconds         float64 `json:"cpuSeconds"`
	PeakRSSBytes       float64 `json:"peakRSSBytes"`
	Limit              string  `json:"limit"`
}

// newScaleModel builds the model from the largest size with a complete
// unpaced wave; nil without one.
func newScaleModel(o options, sizes []*results) *scaleModel {
	var small, large *results
	for _, r := range sizes {
		w := r.Unpaced
		if w == nil || w.Failure != "" || w.Patches < 2 {
			continue
		}
		if large == nil || r.Workloads > large.Workloads {
			large = r
		}
		if small == nil || r.Workloads < small.Workloads {
			small = r
		}
	}
	if large == nil {
		return nil
	}
	ws, wl := small.Unpaced, large.Unpaced
	m := &scaleModel{
		BasedOn:           []int{small.Workloads, large.Workloads},
		Pods:              o.Pods,
		Requests:          fitOf(small.Workloads, ws.Requests.Total, large.Workloads, wl.Requests.Total),
		CPU:               fitOf(small.Workloads, ws.CPUSeconds, large.Workloads, wl.CPUSeconds),
		PeakRSS:           fitOf(small.Workloads, float64(ws.PeakRSSBytes), large.Workloads, float64(wl.PeakRSSBytes)),
		PatchesPerSecond:  wl.AchievedRate,
		FirstPatchSeconds: wl.FirstPatchSeconds,
	}
	if small == large {
		// One size cannot tell memory per workload from the fixed part,
		// which dominates at these sizes: take it as fixed.
		m.BasedOn = m.BasedOn[1:]
		m.PeakRSS = fit{Fixed: float64(wl.PeakRSSBytes)}
	}
	if span := wl.RolledOutSeconds - wl.FirstPatchSeconds; span > 0 {
		m.PodsRolledPerSecond = float64(large.Workloads*o.Pods) / span
	}
	// With the deployed defaults, each restart's requests count against the
	// client-side limit, which caps restarts below the pacing when lower.
	defaultRate := float64(defaultRestartsPerSecond)
	if m.Requests.PerWorkload > 0 {
		defaultRate = min(defaultRate, defaultClientQPS/m.Requests.PerWorkload)
	}
	for _, n := range scaleSizes {
		row := scaleRow{
			Workloads:           n,
			UnpacedPatchSeconds: m.FirstPatchSeconds + float64(n-1)/m.PatchesPerSecond,
			DefaultPatchSeconds: m.FirstPatchSeconds + float64(n-1)/defaultRate,
			Requests:            m.Requests.at(n),
			CPUSeconds:          m.CPU.at(n),
			PeakRSSBytes:        m.PeakRSS.at(n),
		}
		if m.PodsRolledPerSecond > 0 {
			row.ClusterRollSeconds = m.FirstPatchSeconds + float64(n*o.Pods)/m.PodsRolledPerSecond
		}
		row.Limit = limitOf(row, defaultRate)
		m.Rows = append(m.Rows, row)
	}
	return m
}

// limitOf names what bounds a wave of that size: the slowest of issuing
// the patches and the cluster replacing the pods.
func limitOf(r scaleRow, defaultRate float64) string {
	unpaced := "the operator issuing patches"
	if r.ClusterRollSeconds >= r.UnpacedPatchSeconds {
		unpaced = "the cluster replacing pods (kube-controller-manager, scheduler, kubelets)"
	}
	paced := fmt.Sprintf("the pacing (%.1f restarts/s)", defaultRate)
	if r.ClusterRollSeconds >= r.DefaultPatchSeconds {
		paced = "the cluster replacing pods"
	}
	return "unpaced: " + unpaced + "; with the defaults: " + paced
}

func (m *scaleModel) markdown(b *strings.Builder) {
	fmt.Fprintf(b, "From the unpaced waves at %v Deployments x %d pods. Per wave: API requests %.0f + %.2f per workload; "+
		"operator CPU %.1f s + %.4f s per workload; peak RSS %.0f MiB + %.1f KiB per workload. "+
		"The operator issued %.1f restart patches/s, the first %.1f s after the change; the cluster replaced %.1f pods/s. "+
		"The deployed defaults pace restarts at %d/s under a client limit of %d requests/s.\n\n",
		m.BasedOn, m.Pods, m.Requests.Fixed, m.Requests.PerWorkload, m.CPU.Fixed, m.CPU.PerWorkload,
		m.PeakRSS.Fixed/(1<<20), m.PeakRSS.PerWorkload/1024, m.PatchesPerSecond, m.FirstPatchSeconds, m.PodsRolledPerSecond,
		defaultRestartsPerSecond, defaultClientQPS)
	b.WriteString("| Workloads | Patches issued, unpaced | Patches issued, defaults | Cluster replaces every pod | API requests | Operator CPU | Peak RSS | Bound by |\n")
	b.WriteString("| --- | --- | --- | --- | --- | --- | --- | --- |\n")
	for _, r := range m.Rows {
		fmt.Fprintf(b, "| %d | %s | %s | %s | %.0f | %.0f s | %.0f MiB | %s |\n", r.Workloads, seconds(r.UnpacedPatchSeconds),
			seconds(r.DefaultPatchSeconds), seconds(r.ClusterRollSeconds), r.Requests, r.CPUSeconds, r.PeakRSSBytes/(1<<20), r.Limit)
	}
}
