package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/meshkeeper/istio-operator/test/operatorproc"
	"github.com/meshkeeper/istio-operator/test/workload"
)

// Targets for the unpaced wave, set for targetWorkloads; smaller sizes show
// them without judging.
const (
	targetWorkloads           = 1000
	targetLastPatchSeconds    = 20
	targetRequestsPerWorkload = 1.2
	// targetRestartCPUSeconds holds the operator's restart work: its CPU
	// time from the change to the last restart patch. After that it only
	// follows the rollouts, whose watch events cost more than this for any
	// client that caches pods (the watch floor measures it).
	targetRestartCPUSeconds = 3
	targetPeakRSSMiB        = 150
	targetRateSlack         = 0.10
	// The operator's install may take at most 5% longer than Istio's
	// library alone.
	targetInstallRatio = 1.05

	// The big cluster: with a churn of pods outside the mesh, the idle
	// operator may spend at most a tenth of the CPU of the watch floor's
	// full pod informer on the same churn; from targetBigClusterPods pods
	// (meshed and not) its peak RSS is held to targetPeakRSSMiB.
	targetIdleFloorRatio = 0.1
	targetBigClusterPods = 50000
	// targetChurnShare is the share of --churn the churn must achieve for
	// the idle comparison to count.
	targetChurnShare = 0.9
)

// report is everything one invocation measured: a run per size and the
// scale model derived from the largest. It is written as JSON as is.
type report struct {
	Started time.Time   `json:"started"`
	Machine machine     `json:"machine"`
	Options options     `json:"options"`
	Commit  string      `json:"operatorCommit"`
	Sizes   []*results  `json:"sizes"`
	Scale   *scaleModel `json:"scaleModel,omitempty"`
	Notes   []string    `json:"notes,omitempty"`
}

func newReport(o options, root string) *report {
	return &report{Started: time.Now().UTC(), Machine: describeMachine(), Options: o, Commit: operatorproc.GitCommit(root)}
}

func (r *report) note(s string) { r.Notes = append(r.Notes, s) }

// results is what the run at one size measured.
type results struct {
	Workloads   int    `json:"workloads"`
	OperatorLog string `json:"operatorLog,omitempty"`

	// LibraryInstallSeconds is Istio's own library installing the same
	// configuration on the same cluster, before the operator ran.
	LibraryInstallSeconds float64 `json:"libraryInstallSeconds"`
	// InstallSeconds is the operator's: Istio resource created to Ready.
	InstallSeconds float64        `json:"installSeconds"`
	GatewayChange  *gatewayResult `json:"gatewayChange,omitempty"`
	Setup          struct {
		// Seconds from creating the namespaces until every pod runs.
		Seconds float64 `json:"seconds"`
		// ProxyCPU is the sidecar CPU request of the installed default.
		ProxyCPU string `json:"proxyCPU"`
		// FreshRestarts counts Deployments the operator patched although
		// they were created with the desired proxy.
		FreshRestarts int `json:"freshWorkloadsRestarted"`
		setupStart    time.Time
	} `json:"setup"`
	Baseline snapshot `json:"baseline"`
	// Background and Churn are the pods outside the mesh, if any.
	Background *backgroundResult `json:"background,omitempty"`
	Churn      *churnResult      `json:"churn,omitempty"`
	Unpaced    *waveResult       `json:"unpacedWave,omitempty"`
	Paced      *waveResult       `json:"pacedWave,omitempty"`
	// Canary is the canary upgrade (--canary), which replaces the install
	// and the two waves: the previous minor installed before the operator
	// started, its workloads moved to the operator's version.
	Canary    *waveResult        `json:"canaryWave,omitempty"`
	Idle      *idleResult        `json:"idle,omitempty"`
	Reconcile []reconcileSummary `json:"reconcileDurations,omitempty"`
	Checks    []check            `json:"checks"`
	Notes     []string           `json:"notes,omitempty"`
}

// gatewayResult is the numTrustedProxies change: the gateway must roll once.
type gatewayResult struct {
	TrustedProxies       string  `json:"numTrustedProxies"`
	Failure              string  `json:"failure,omitempty"`
	RolledSeconds        float64 `json:"rolledOutSeconds"`
	ConditionTrueSeconds float64 `json:"conditionTrueSeconds"`
	// Rollouts is how often the gateway's pod template changed.
	Rollouts int `json:"rollouts"`
}

type machine struct {
	CPUs      int    `json:"cpus"`
	CPUModel  string `json:"cpuModel"`
	MemoryMiB int64  `json:"memoryMiB"`
	Kernel    string `json:"kernel"`
	Go        string `json:"go"`
}

// snapshot is the operator's state at one moment.
type snapshot struct {
	CPUSeconds     float64                    `json:"cpuSeconds"`
	RSSBytes       int64                      `json:"rssBytes"`
	PeakRSSBytes   int64                      `json:"peakRSSBytes"`
	HeapInuseBytes int64                      `json:"heapInuseBytes"`
	Requests       operatorproc.RequestCounts `json:"apiRequests"`
	metrics        operatorproc.Metrics
}

type waveResult struct {
	Name string `json:"name"`
	// Condition is the condition whose turning True ends the wave.
	Condition string `json:"condition"`
	ProxyCPU  string `json:"proxyCPU"`
	Workloads int    `json:"workloads"`
	// ConfiguredRate is restartsPerSecond; 0 is unpaced.
	ConfiguredRate float64 `json:"configuredRate"`
	// Failure says what the operator did not achieve in time; the other
	// figures are then partial.
	Failure string `json:"failure,omitempty"`

	Patched             int     `json:"deploymentsPatched"`
	PatchedMoreThanOnce int     `json:"deploymentsPatchedMoreThanOnce"`
	Patches             int     `json:"patches"`
	FirstPatchSeconds   float64 `json:"firstPatchSeconds"`
	LastPatchSeconds    float64 `json:"lastPatchSeconds"`
	// AchievedRate is (patches-1)/(last-first); RateSlack is its relative
	// difference from ConfiguredRate.
	AchievedRate float64 `json:"achievedRate"`
	RateSlack    float64 `json:"rateSlack,omitempty"`
	// NewPodsReadySeconds is when the last pod with the new proxy became
	// Ready; RolledOutSeconds when, in addition, the last old pod was gone.
	NewPodsReadySeconds  float64 `json:"newPodsReadySeconds"`
	RolledOutSeconds     float64 `json:"rolledOutSeconds"`
	ConditionTrueSeconds float64 `json:"conditionTrueSeconds"`
	// MeasuredSeconds is the span of the whole-wave figures: the change
	// to the condition True, plus the settle time.
	MeasuredSeconds float64 `json:"measuredSeconds"`
	// Churn is what the churn of pods outside the mesh achieved meanwhile.
	Churn *churnRates `json:"churn,omitempty"`

	Requests            operatorproc.RequestCounts `json:"apiRequests"`
	RequestsPerWorkload float64                    `json:"apiRequestsPerWorkload"`
	CPUSeconds          float64                    `json:"cpuSeconds"`
	// PatchPhase* are the same figures from the change to the last
	// restart patch: the operator's own work, before it only follows the
	// rollouts the cluster carries out.
	PatchPhaseRequests   float64 `json:"patchPhaseApiRequests"`
	PatchPhaseCPUSeconds float64 `json:"patchPhaseCpuSeconds"`
	// Floor* are the CPU time of the watch floor process over the same
	// spans: receiving and caching the cluster's churn, nothing else.
	FloorCPUSeconds           float64 `json:"watchFloorCpuSeconds"`
	FloorPatchPhaseCPUSeconds float64 `json:"watchFloorPatchPhaseCpuSeconds"`
	PeakRSSBytes              int64   `json:"peakRSSBytes"`
	PeakHeapInuseBytes        int64   `json:"peakHeapInuseBytes"`
	// PeakAnonRSSBytes and PeakFileRSSBytes are sampled every 2 s: the
	// resident anonymous memory, and the resident pages of the binary.
	PeakAnonRSSBytes int64              `json:"peakAnonRSSBytes"`
	PeakFileRSSBytes int64              `json:"peakFileRSSBytes"`
	Reconcile        []reconcileSummary `json:"reconcileDurations,omitempty"`
}

// fill computes the patch figures from the restarts seen since start.
func (w *waveResult) fill(rs []restart, start time.Time) {
	sum := workload.Summarize(rs)
	w.Patched, w.PatchedMoreThanOnce, w.Patches = sum.Patched, sum.PatchedTwice, sum.Total
	if sum.Total == 0 {
		return
	}
	w.FirstPatchSeconds = sum.First.Sub(start).Seconds()
	w.LastPatchSeconds = sum.Last.Sub(start).Seconds()
	if span := sum.Last.Sub(sum.First).Seconds(); sum.Total > 1 && span > 0 {
		w.AchievedRate = float64(sum.Total-1) / span
		if w.ConfiguredRate > 0 {
			w.RateSlack = (w.AchievedRate - w.ConfiguredRate) / w.ConfiguredRate
		}
	}
}

type idleResult struct {
	Seconds    float64                    `json:"seconds"`
	Requests   operatorproc.RequestCounts `json:"apiRequests"`
	Writes     float64                    `json:"writes"`
	Lists      float64                    `json:"lists"`
	CPUSeconds float64                    `json:"cpuSeconds"`
	RSSBytes   int64                      `json:"rssBytes"`
	Restarts   int                        `json:"restartPatches"`
	// PeakRSSBytes is the operator's peak over the idle phase.
	PeakRSSBytes        int64   `json:"peakRSSBytes"`
	CPUSecondsPerMinute float64 `json:"cpuSecondsPerMinute"`
	// The watch floor over the same interval, and the operator's CPU time
	// as a share of it.
	FloorCPUSeconds          float64 `json:"watchFloorCpuSeconds"`
	FloorCPUSecondsPerMinute float64 `json:"watchFloorCpuSecondsPerMinute"`
	FloorRatio               float64 `json:"operatorToWatchFloorCpu"`
	// Churn is what the churn of pods outside the mesh achieved meanwhile.
	Churn *churnRates `json:"churn,omitempty"`
}

// check is one row of the results table; Pass is nil for a figure without
// a target.
type check struct {
	Figure string `json:"figure"`
	Value  string `json:"value"`
	Target string `json:"target,omitempty"`
	Pass   *bool  `json:"pass,omitempty"`
}

func newResults(workloads int) *results { return &results{Workloads: workloads} }

func (r *results) note(s string) { r.Notes = append(r.Notes, s) }

func describeMachine() machine {
	m := machine{CPUs: runtime.NumCPU(), Go: runtime.Version()}
	if raw, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = strings.TrimSpace(string(raw))
	}
	if f, err := os.Open("/proc/cpuinfo"); err == nil {
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			if k, v, ok := strings.Cut(sc.Text(), ":"); ok && strings.TrimSpace(k) == "model name" {
				m.CPUModel = strings.TrimSpace(v)
				break
			}
		}
		f.Close()
	}
	if f, err := os.Open("/proc/meminfo"); err == nil {
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			if k, v, ok := strings.Cut(sc.Text(), ":"); ok && k == "MemTotal" {
				kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
				m.MemoryMiB = kb >> 10
				break
			}
		}
		f.Close()
	}
	return m
}

// reconcileSummary estimates reconcile duration quantiles of one controller.
type reconcileSummary struct {
	Controller string  `json:"controller"`
	Count      float64 `json:"count"`
	P50Seconds float64 `json:"p50Seconds"`
	P99Seconds float64 `json:"p99Seconds"`
}

const reconcileBuckets = "istio_operator_reconcile_duration_seconds_bucket"

// reconcileQuantiles estimates p50 and p99 per controller from the
// histogram's cumulative buckets (all results together), as Prometheus'
// histogram_quantile does; with before, only the reconciles since then.
func reconcileQuantiles(after, before operatorproc.Metrics) []reconcileSummary {
	type key struct{ controller, le string }
	counts := map[key]float64{}
	add := func(m operatorproc.Metrics, sign float64) {
		for _, s := range m {
			if s.Name == reconcileBuckets {
				counts[key{s.Labels["controller"], s.Labels["le"]}] += sign * s.Value
			}
		}
	}
	add(after, 1)
	add(before, -1)

	type bucket struct{ le, count float64 }
	perController := map[string][]bucket{}
	for k, n := range counts {
		le, err := strconv.ParseFloat(k.le, 64) // "+Inf" parses as +Inf
		if err != nil {
			continue
		}
		perController[k.controller] = append(perController[k.controller], bucket{le, n})
	}
	var out []reconcileSummary
	for controller, bs := range perController {
		sort.Slice(bs, func(i, j int) bool { return bs[i].le < bs[j].le })
		total := bs[len(bs)-1].count
		if total <= 0 {
			continue
		}
		quantile := func(q float64) float64 {
			rank := q * total
			lower, below := 0.0, 0.0
			for _, b := range bs {
				if b.count >= rank {
					if math.IsInf(b.le, 1) {
						return lower // beyond the last bound: report the bound
					}
					if b.count == below {
						return b.le
					}
					return lower + (b.le-lower)*(rank-below)/(b.count-below)
				}
				lower, below = b.le, b.count
			}
			return lower
		}
		out = append(out, reconcileSummary{Controller: controller, Count: total, P50Seconds: quantile(0.5), P99Seconds: quantile(0.99)})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Controller < out[j].Controller })
	return out
}

// evaluate turns the figures into the table's rows.
func (r *results) evaluate(o options) {
	var rows []check
	info := func(figure, value string) { rows = append(rows, check{Figure: figure, Value: value}) }
	judge := func(figure, value, target string, pass bool) {
		rows = append(rows, check{Figure: figure, Value: value, Target: target, Pass: &pass})
	}
	// The proxy sidecar issue sets its figures for a wave of
	// targetWorkloads; a smaller wave is dominated by fixed costs (the
	// apply of Istio's objects, status writes), so there they are shown
	// next to the target, not judged.
	sized := func(figure, value, target string, pass bool) {
		if r.Workloads >= targetWorkloads {
			judge(figure, value, target, pass)
			return
		}
		rows = append(rows, check{Figure: figure, Value: value, Target: fmt.Sprintf("(%s at %d workloads)", target, targetWorkloads)})
	}
	info("Install with Istio's library alone (render, apply, readiness)", seconds(r.LibraryInstallSeconds))
	if r.Canary != nil {
		info(fmt.Sprintf("Canary upgrade from Istio %s: Istio resource created to %s=True", canaryFrom, r.Canary.Condition), seconds(r.InstallSeconds))
	} else if r.LibraryInstallSeconds > 0 {
		ratio := r.InstallSeconds / r.LibraryInstallSeconds
		judge("Install by the operator: Istio resource created to Ready=True", fmt.Sprintf("%s (%.2fx the library)", seconds(r.InstallSeconds), ratio),
			fmt.Sprintf("<= %.2fx the library", targetInstallRatio), ratio <= targetInstallRatio)
	}
	if g := r.GatewayChange; g != nil {
		label := "Gateway change (numTrustedProxies " + g.TrustedProxies + ")"
		if g.Failure != "" {
			judge(label+": completed", trimLines(g.Failure), "completed", false)
		} else {
			info(label+": gateway rolled out", seconds(g.RolledSeconds))
			info(label+": IngressGatewayReady=True", seconds(g.ConditionTrueSeconds))
			judge(label+": gateway rollouts", strconv.Itoa(g.Rollouts), "1", g.Rollouts == 1)
		}
	}
	if r.Setup.Seconds > 0 {
		info(fmt.Sprintf("Setup: %d Deployments x %d pods running with a sidecar (CPU request %s)", r.Workloads, o.Pods, r.Setup.ProxyCPU),
			seconds(r.Setup.Seconds))
		judge("Setup: fresh workloads restarted", strconv.Itoa(r.Setup.FreshRestarts), "0", r.Setup.FreshRestarts == 0)
	}
	if b := r.Background; b != nil {
		info(fmt.Sprintf("Background: %d pods outside the mesh in %d namespaces, bound to %d nodes by the harness: all created / all Running", b.Pods, b.Namespaces, b.Nodes),
			fmt.Sprintf("%s (%.0f pods/s, %d retries) / %s (%.0f pods/s)", seconds(b.CreatedSeconds), b.CreatedPerSecond, b.Retries, seconds(b.RunningSeconds), b.RunningPerSecond))
	}
	info("Operator RSS / heap in use after setup", fmt.Sprintf("%.0f MiB / %.0f MiB", mib(r.Baseline.RSSBytes), mib(r.Baseline.HeapInuseBytes)))

	wave := func(w *waveResult, label string, paced bool) {
		if w == nil {
			judge(label+": wave", "not measured", "measured", false)
			return
		}
		if w.Failure != "" {
			judge(label+": wave completed", trimLines(w.Failure), "completed", false)
		}
		judge(label+": Deployments patched", strconv.Itoa(w.Patched), strconv.Itoa(w.Workloads), w.Patched == w.Workloads)
		judge(label+": Deployments patched more than once", strconv.Itoa(w.PatchedMoreThanOnce), "0", w.PatchedMoreThanOnce == 0)
		info(label+": first restart patch after the change", seconds(w.FirstPatchSeconds))
		if !paced {
			sized(label+": last restart patch after the change", seconds(w.LastPatchSeconds),
				fmt.Sprintf("<= %d s", targetLastPatchSeconds), w.Failure == "" && w.LastPatchSeconds <= targetLastPatchSeconds)
		} else {
			info(label+": last restart patch after the change", seconds(w.LastPatchSeconds))
			// The token bucket's burst (a fifth of a second of restarts)
			// is a large share of a small wave's patches.
			sized(label+": achieved restart rate", fmt.Sprintf("%.1f/s (%+.1f%%)", w.AchievedRate, 100*w.RateSlack),
				fmt.Sprintf("%g/s +-%.0f%%", w.ConfiguredRate, 100*targetRateSlack),
				w.Patches > 1 && math.Abs(w.RateSlack) <= targetRateSlack)
		}
		if w.Failure != "" {
			return
		}
		info(label+": every pod Ready with the new proxy", seconds(w.NewPodsReadySeconds))
		info(label+": every old pod gone", seconds(w.RolledOutSeconds))
		info(label+": "+w.Condition+"=True", seconds(w.ConditionTrueSeconds))
		info(label+": operator API requests by verb", verbs(w.Requests))
		lists := w.Requests.ByVerb["list"]
		judge(label+": LIST requests", fmt.Sprintf("%.0f", lists), "0", lists == 0)
		if !paced {
			sized(label+": API requests per workload", fmt.Sprintf("%.2f", w.RequestsPerWorkload),
				fmt.Sprintf("<= %.1f", targetRequestsPerWorkload), w.RequestsPerWorkload <= targetRequestsPerWorkload)
			sized(label+": operator CPU time, change to last restart patch (the restart work)", fmt.Sprintf("%.2f s", w.PatchPhaseCPUSeconds),
				fmt.Sprintf("< %d s", targetRestartCPUSeconds), w.PatchPhaseCPUSeconds < targetRestartCPUSeconds)
			sized(label+": operator peak RSS", fmt.Sprintf("%.0f MiB", mib(w.PeakRSSBytes)),
				fmt.Sprintf("< %d MiB", targetPeakRSSMiB), mib(w.PeakRSSBytes) < targetPeakRSSMiB)
		} else {
			info(label+": API requests per workload", fmt.Sprintf("%.2f", w.RequestsPerWorkload))
			info(label+": operator CPU time, change to last restart patch", fmt.Sprintf("%.2f s", w.PatchPhaseCPUSeconds))
			info(label+": operator peak RSS", fmt.Sprintf("%.0f MiB", mib(w.PeakRSSBytes)))
		}
		info(label+": operator peak heap in use", fmt.Sprintf("%.0f MiB", mib(w.PeakHeapInuseBytes)))
		info(label+": operator peak resident memory, anonymous / file-backed (sampled every 2 s)",
			fmt.Sprintf("%.0f MiB / %.0f MiB", mib(w.PeakAnonRSSBytes), mib(w.PeakFileRSSBytes)))
		info(label+": operator CPU time over the whole wave (change to the condition True, plus the settle time)", fmt.Sprintf("%.2f s", w.CPUSeconds))
		info(label+": watch floor CPU time (bare informers of pods, ReplicaSets, workloads, namespaces): whole wave / until the last patch",
			fmt.Sprintf("%.2f s / %.2f s", w.FloorCPUSeconds, w.FloorPatchPhaseCPUSeconds))
		info(label+": API requests until the last restart patch", fmt.Sprintf("%.0f", w.PatchPhaseRequests))
		if w.Churn != nil {
			info(label+": churn of pods outside the mesh achieved meanwhile", churnText(*w.Churn))
		}
	}
	if r.Canary != nil {
		wave(r.Canary, "Canary", false)
	} else {
		wave(r.Unpaced, "Unpaced", false)
		wave(r.Paced, "Paced", true)
	}

	if i := r.Idle; i != nil {
		label := fmt.Sprintf("Idle (%.0f s)", i.Seconds)
		judge(label+": write requests", fmt.Sprintf("%.0f", i.Writes), "0", i.Writes == 0)
		judge(label+": LIST requests", fmt.Sprintf("%.0f", i.Lists), "0", i.Lists == 0)
		info(label+": operator API requests by verb", verbs(i.Requests))
		info(label+": operator CPU time", fmt.Sprintf("%.2f s (%.3f s/min)", i.CPUSeconds, i.CPUSecondsPerMinute))
		floor := fmt.Sprintf("%.2f s (%.3f s/min)", i.FloorCPUSeconds, i.FloorCPUSecondsPerMinute)
		ratio := fmt.Sprintf("%.3f (%.3f s/min against %.3f s/min)", i.FloorRatio, i.CPUSecondsPerMinute, i.FloorCPUSecondsPerMinute)
		if o.Churn > 0 {
			info(label+": watch floor CPU time over the same interval (bare informers of pods, ReplicaSets, workloads, namespaces)", floor)
			if i.Churn != nil {
				judge(label+": churn of pods outside the mesh achieved over the same interval", churnText(*i.Churn),
					fmt.Sprintf(">= %.0f%% of %g/s created and deleted", 100*targetChurnShare, o.Churn), i.Churn.keptUp(o.Churn, targetChurnShare))
			}
			judge(label+": operator CPU time / the watch floor's, on the same churn", ratio,
				fmt.Sprintf("<= %.2f", targetIdleFloorRatio), i.FloorCPUSeconds > 0 && i.FloorRatio <= targetIdleFloorRatio)
		} else if i.FloorCPUSeconds > 0 {
			info(label+": watch floor CPU time over the same interval (bare informers of pods, ReplicaSets, workloads, namespaces)", floor)
			info(label+": operator CPU time / the watch floor's", ratio)
		}
		if i.PeakRSSBytes > 0 {
			info(label+": operator peak RSS", fmt.Sprintf("%.0f MiB", mib(i.PeakRSSBytes)))
		}
	}
	if c := r.Churn; c != nil {
		info(fmt.Sprintf("Churn over the run (%g pods/s created and deleted, each living %s)", c.PerSecond, seconds(c.LifetimeSeconds)), churnText(c.Run))
		if c.LastError != "" {
			info("Churn: last error", c.LastError)
		}
		if c.Cleanup != "" {
			info("Churn: deleting the pods left at the end", c.Cleanup)
		}
	}
	if total := r.totalPods(o); total >= targetBigClusterPods {
		peak, where := r.peakRSS()
		judge(fmt.Sprintf("Big cluster (%d pods, %d meshed): operator peak RSS over the run", total, r.Workloads*o.Pods),
			fmt.Sprintf("%.0f MiB (%s)", mib(peak), where), fmt.Sprintf("<= %d MiB", targetPeakRSSMiB), peak > 0 && mib(peak) <= targetPeakRSSMiB)
	}
	r.Checks = rows
}

// totalPods is the pods of the benchmark: meshed and in the background.
func (r *results) totalPods(o options) int { return r.Workloads*o.Pods + o.BackgroundPods }

// peakRSS is the operator's largest peak RSS of the run's phases, and the
// phase: the setup (since the process started), the waves, the idle phase.
func (r *results) peakRSS() (int64, string) {
	peak, where := r.Baseline.PeakRSSBytes, "setup"
	for _, p := range []struct {
		name  string
		bytes int64
	}{
		{"unpaced wave", waveRSS(r.Unpaced)},
		{"paced wave", waveRSS(r.Paced)},
		{"canary wave", waveRSS(r.Canary)},
		{"idle", idleRSS(r.Idle)},
	} {
		if p.bytes > peak {
			peak, where = p.bytes, p.name
		}
	}
	return peak, where
}

func waveRSS(w *waveResult) int64 {
	if w == nil {
		return 0
	}
	return w.PeakRSSBytes
}

func idleRSS(i *idleResult) int64 {
	if i == nil {
		return 0
	}
	return i.PeakRSSBytes
}

// churnText renders what a churn achieved.
func churnText(c churnRates) string {
	t := fmt.Sprintf("%.1f created/s, %.1f deleted/s over %s", c.CreatedPerSecond, c.DeletedPerSecond, seconds(c.Seconds))
	if c.Missed > 0 || c.CreateErrors > 0 || c.DeleteErrors > 0 {
		t += fmt.Sprintf(" (%d creations missed, %d create and %d delete errors)", c.Missed, c.CreateErrors, c.DeleteErrors)
	}
	return t
}

func seconds(s float64) string { return fmt.Sprintf("%.1f s", s) }

// verbs renders request counts by verb, largest first.
func verbs(rc operatorproc.RequestCounts) string {
	if rc.Total == 0 {
		return "none"
	}
	keys := make([]string, 0, len(rc.ByVerb))
	for k := range rc.ByVerb {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		if rc.ByVerb[keys[i]] != rc.ByVerb[keys[j]] {
			return rc.ByVerb[keys[i]] > rc.ByVerb[keys[j]]
		}
		return keys[i] < keys[j]
	})
	parts := make([]string, 0, len(keys))
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%s %.0f", k, rc.ByVerb[k]))
	}
	return strings.Join(parts, ", ")
}

// markdown renders the report for people.
func (r *report) markdown() string {
	var b strings.Builder
	o, m := r.Options, r.Machine
	fmt.Fprintf(&b, "# Operator benchmark\n\n")
	fmt.Fprintf(&b, "Run %s, operator commit %s. Machine: %d CPUs (%s), %d MiB memory, Linux %s, %s.\n\n",
		r.Started.Format(time.RFC3339), r.Commit, m.CPUs, m.CPUModel, m.MemoryMiB, m.Kernel, m.Go)
	fmt.Fprintf(&b, "Scenario at each size: Deployments x %d pods in %d namespaces on %d kwok nodes; Istio installed by Istio's library, removed, "+
		"installed by the operator; numTrustedProxies changed to %s; unpaced wave to a sidecar CPU request of %s, "+
		"paced wave (restartsPerSecond %s) to %s; idle %s. Operator: --workers %d, --kube-api-qps %g, --kube-api-burst %d, GOMAXPROCS %s.\n",
		o.Pods, o.Namespaces, o.Nodes, o.TrustedProxies, o.UnpacedCPU, o.PacedRate, o.PacedCPU, o.IdleText, o.Workers, o.APIQPS, o.APIBurst, gomaxprocsText(o.GOMAXPROCS))
	if o.BackgroundPods > 0 || o.Churn > 0 {
		fmt.Fprintf(&b, "\nA big cluster: %d pods outside the mesh in %d namespaces without injection, created before the Deployments; "+
			"a churn of %g pods created and %g deleted per second (each living %s) in namespace %s, from the end of the setup to the end of the run.\n",
			o.BackgroundPods, o.BackgroundNamespaces, o.Churn, o.Churn, o.ChurnLifetime, churnNamespace)
	}
	for _, res := range r.Sizes {
		fmt.Fprintf(&b, "\n## %d Deployments x %d pods\n\n", res.Workloads, o.Pods)
		res.markdown(&b)
		if o.BackgroundPods > 0 || o.Churn > 0 {
			fmt.Fprintf(&b, "\n### Big cluster: %d Deployments x %d pods\n\n", res.Workloads, o.Pods)
			res.bigClusterMarkdown(&b, o)
		}
	}
	if r.Scale != nil {
		b.WriteString("\n## Scale model\n\n")
		r.Scale.markdown(&b)
	}
	if len(r.Notes) > 0 {
		b.WriteString("\nNotes:\n\n")
		for _, n := range r.Notes {
			fmt.Fprintf(&b, "- %s\n", cell(n))
		}
	}
	return b.String()
}

// markdown renders one size's results.
func (r *results) markdown(b *strings.Builder) {
	b.WriteString("| Figure | Value | Target | Result |\n| --- | --- | --- | --- |\n")
	for _, c := range r.Checks {
		result := ""
		if c.Pass != nil {
			result = "FAIL"
			if *c.Pass {
				result = "pass"
			}
		}
		fmt.Fprintf(b, "| %s | %s | %s | %s |\n", c.Figure, cell(c.Value), cell(c.Target), result)
	}

	for _, w := range []*waveResult{r.Unpaced, r.Paced, r.Canary} {
		if w == nil || w.Requests.Total == 0 {
			continue
		}
		fmt.Fprintf(b, "\n%s wave, operator API requests by verb and resource:\n\n", w.Name)
		b.WriteString(resourceTable(w.Requests))
	}
	if len(r.Reconcile) > 0 {
		b.WriteString("\nReconcile durations over the whole run (estimated from the histogram buckets):\n\n")
		b.WriteString(reconcileTable(r.Reconcile))
	}
	if r.Unpaced != nil && len(r.Unpaced.Reconcile) > 0 {
		b.WriteString("\nReconcile durations during the unpaced wave:\n\n")
		b.WriteString(reconcileTable(r.Unpaced.Reconcile))
	}
	if len(r.Notes) > 0 {
		b.WriteString("\nNotes:\n\n")
		for _, n := range r.Notes {
			fmt.Fprintf(b, "- %s\n", cell(n))
		}
	}
}

// bigClusterMarkdown sets the operator's costs in each phase beside the
// watch floor's and the churn the cluster achieved meanwhile.
func (r *results) bigClusterMarkdown(b *strings.Builder, o options) {
	fmt.Fprintf(b, "%d pods: %d meshed (%d Deployments x %d) and %d outside the mesh; churn of %g pods/s. "+
		"The watch floor is a separate process with bare cluster-wide informers of pods, ReplicaSets, the workload kinds and namespaces.\n\n",
		r.totalPods(o), r.Workloads*o.Pods, r.Workloads, o.Pods, o.BackgroundPods, o.Churn)
	b.WriteString("| Phase | Span | Operator CPU | Watch floor CPU | Operator / floor | Operator API requests | Operator peak RSS | Churn achieved |\n")
	b.WriteString("| --- | --- | --- | --- | --- | --- | --- | --- |\n")
	perMin := func(cpu, span float64) string {
		if span <= 0 {
			return "-"
		}
		return fmt.Sprintf("%.3f s/min", 60*cpu/span)
	}
	ratio := func(op, floor float64) string {
		if floor <= 0 {
			return "-"
		}
		return fmt.Sprintf("%.3f", op/floor)
	}
	churn := func(c *churnRates) string {
		if c == nil {
			return "-"
		}
		return churnText(*c)
	}
	fmt.Fprintf(b, "| Setup, until the first wave (peak since the operator started) | - | - | - | - | - | %.0f MiB | - |\n", mib(r.Baseline.PeakRSSBytes))
	for _, w := range []*waveResult{r.Unpaced, r.Paced} {
		if w == nil || w.Failure != "" || w.MeasuredSeconds <= 0 {
			continue
		}
		fmt.Fprintf(b, "| %s wave | %s | %s | %s | %s | %.0f | %.0f MiB | %s |\n", w.Name, seconds(w.MeasuredSeconds),
			perMin(w.CPUSeconds, w.MeasuredSeconds), perMin(w.FloorCPUSeconds, w.MeasuredSeconds), ratio(w.CPUSeconds, w.FloorCPUSeconds),
			w.Requests.Total, mib(w.PeakRSSBytes), cell(churn(w.Churn)))
	}
	if i := r.Idle; i != nil {
		fmt.Fprintf(b, "| Idle | %s | %.3f s/min | %.3f s/min | %s | %.0f | %.0f MiB | %s |\n", seconds(i.Seconds),
			i.CPUSecondsPerMinute, i.FloorCPUSecondsPerMinute, ratio(i.CPUSeconds, i.FloorCPUSeconds), i.Requests.Total, mib(i.PeakRSSBytes), cell(churn(i.Churn)))
	}
}

func reconcileTable(rs []reconcileSummary) string {
	var b strings.Builder
	b.WriteString("| Controller | Reconciles | p50 | p99 |\n| --- | --- | --- | --- |\n")
	for _, s := range rs {
		fmt.Fprintf(&b, "| %s | %.0f | %s | %s |\n", s.Controller, s.Count, duration(s.P50Seconds), duration(s.P99Seconds))
	}
	return b.String()
}

func resourceTable(rc operatorproc.RequestCounts) string {
	keys := make([]string, 0, len(rc.ByResource))
	for k := range rc.ByResource {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		if rc.ByResource[keys[i]] != rc.ByResource[keys[j]] {
			return rc.ByResource[keys[i]] > rc.ByResource[keys[j]]
		}
		return keys[i] < keys[j]
	})
	var b strings.Builder
	b.WriteString("| Verb | Resource | Requests |\n| --- | --- | --- |\n")
	for _, k := range keys {
		verb, res, _ := strings.Cut(k, " ")
		fmt.Fprintf(&b, "| %s | %s | %.0f |\n", verb, res, rc.ByResource[k])
	}
	return b.String()
}

func duration(s float64) string {
	return time.Duration(s * float64(time.Second)).Round(10 * time.Microsecond).String()
}

// cell keeps a value on one table line.
func cell(s string) string {
	s = strings.ReplaceAll(s, "|", `\|`)
	return strings.ReplaceAll(s, "\n", " ")
}

// write evaluates the figures, builds the scale model, writes
// bench-results.json and bench-results.md into dir (default root) and
// prints the Markdown.
func (r *report) write(dir, root string) error {
	if dir == "" {
		dir = root
	}
	failed := 0
	for _, res := range r.Sizes {
		res.evaluate(r.Options)
		for _, c := range res.Checks {
			if c.Pass != nil && !*c.Pass {
				failed++
			}
		}
	}
	r.Scale = newScaleModel(r.Options, r.Sizes)
	js, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	md := r.markdown()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	jsonPath, mdPath := filepath.Join(dir, "bench-results.json"), filepath.Join(dir, "bench-results.md")
	if err := os.WriteFile(jsonPath, append(js, '\n'), 0o644); err != nil {
		return err
	}
	if err := os.WriteFile(mdPath, []byte(md), 0o644); err != nil {
		return err
	}
	fmt.Println(md)
	progress("wrote %s and %s; %d of the targets missed", jsonPath, mdPath, failed)
	return nil
}

func gomaxprocsText(n int) string {
	if n > 0 {
		return fmt.Sprint(n)
	}
	return "Go's default"
}
