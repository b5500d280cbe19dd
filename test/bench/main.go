// Command bench measures the operator on a real local cluster (kwokctl
// binary runtime, kwok-simulated nodes and pods), at each size given:
// installing Istio against Istio's own library on the same cluster, a
// gateway configuration change, how fast and how cheaply the operator
// restarts every injected workload after a proxy configuration change
// (unpaced and paced), and what it costs while idle. From the measured
// per-workload costs it estimates larger meshes. It writes
// bench-results.json and bench-results.md into the repository root and
// prints the Markdown. `make bench` runs it; see docs/performance.md.
//
// A big cluster, where the mesh is a small part: --background-pods adds
// pods outside the mesh (bare pods the harness binds to the kwok nodes
// itself, in --background-namespaces namespaces without injection), and
// --churn a steady creation and deletion of such pods, from the end of the
// setup to the end of the run, waves and idle phase included. The idle
// phase then compares the operator's CPU with the watch floor's, a bare
// cluster-wide pod informer on the same churn. 50,000 pods of which 10% are
// meshed, with 50 pod creations and 50 deletions a second:
//
//	make bench BENCH_FLAGS="--workloads 1000 --pods 5 --background-pods 45000 --churn 50"
//
// --nodes defaults to enough kwok nodes (1000 pods each) for the run's
// peak: 53 there, as every Deployment surges by a quarter during a wave.
// The limits grow with the sizes too: --wave-timeout to half a second per
// meshed pod (42 minutes there), the background pods' to 30 ms a pod.
//
// It exits non-zero only when the harness itself fails (the cluster does not
// start, a request of its own fails, the operator crashes or never installs
// Istio); a missed target is marked FAIL in the results.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"math"
	"os"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/util/wait"
)

// options are the benchmark's parameters; every size is a flag.
type options struct {
	// Sizes are the numbers of Deployments, one run each on a fresh cluster;
	// Workloads is the size of the current run.
	Sizes      []int  `json:"sizes"`
	Workloads  int    `json:"-"`
	Pods       int    `json:"podsPerWorkload"`
	Namespaces int    `json:"namespaces"`
	Nodes      int    `json:"nodes"`
	UnpacedCPU string `json:"unpacedWaveProxyCPU"`
	PacedCPU   string `json:"pacedWaveProxyCPU"`
	PacedRate  string `json:"pacedRestartsPerSecond"`
	// TrustedProxies is numTrustedProxies of the gateway change.
	TrustedProxies string        `json:"trustedProxies"`
	Idle           time.Duration `json:"-"`
	IdleText       string        `json:"idle"`
	Workers        int           `json:"operatorWorkers"`
	APIQPS         float64       `json:"operatorAPIQPS"`
	APIBurst       int           `json:"operatorAPIBurst"`
	// GOMAXPROCS of the operator; 0 leaves Go's default.
	GOMAXPROCS int `json:"operatorGOMAXPROCS"`
	// The big cluster: pods outside the mesh, and a churn of them in pods
	// created (and as many deleted) per second.
	BackgroundPods       int           `json:"backgroundPods"`
	BackgroundNamespaces int           `json:"backgroundNamespaces"`
	Churn                float64       `json:"churnPodsPerSecond"`
	ChurnLifetime        time.Duration `json:"-"`
	ChurnLifetimeText    string        `json:"churnPodLifetime"`
	// Canary measures a canary upgrade instead of the install and the two
	// waves (test/bench/canary.go).
	Canary bool `json:"canary,omitempty"`

	// Not part of the results.
	pacingFlags    bool          // the binary has the pacing flags
	Binary         string        `json:"-"`
	OutDir         string        `json:"-"`
	Settle         time.Duration `json:"-"`
	InstallTimeout time.Duration `json:"-"`
	SetupTimeout   time.Duration `json:"-"`
	WaveTimeout    time.Duration `json:"-"`
	// CPUProfile, when positive, records the operator's CPU profile for that
	// long from the start of the unpaced wave.
	CPUProfile time.Duration `json:"-"`
}

// deployedGOMAXPROCS is the operator's GOMAXPROCS as deployed:
// deploy/base/deployment.yaml sets it from the container's CPU limit of 1.
// The benchmark runs the operator the same way (TestDeployedGOMAXPROCS).
const deployedGOMAXPROCS = 1

// operatorEnv is the environment the operator (and the watch floor, to
// compare like with like) runs with, beyond the harness's own.
func (o options) operatorEnv() []string {
	if o.GOMAXPROCS > 0 {
		return []string{fmt.Sprintf("GOMAXPROCS=%d", o.GOMAXPROCS)}
	}
	return nil
}

func parseFlags(args []string) (options, error) {
	var o options
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	sizes := fs.String("workloads", "100,1000", "Injected Deployments: a comma-separated list of sizes, each measured on a fresh cluster.")
	fs.IntVar(&o.Pods, "pods", 3, "Replicas of each Deployment.")
	fs.IntVar(&o.Namespaces, "namespaces", 20, "Injected namespaces the Deployments are spread over.")
	fs.IntVar(&o.Nodes, "nodes", 0, "kwok nodes (1000 pods each). Default: enough for the largest size's peak (its pods with a wave's surge of a quarter more, the background pods, twice the churn pods alive, 100 for Istio), at least 10.")
	fs.StringVar(&o.UnpacedCPU, "unpaced-cpu", "20m", "Sidecar CPU request the unpaced wave changes to; it must differ from the installed default.")
	fs.StringVar(&o.PacedCPU, "paced-cpu", "30m", "Sidecar CPU request the paced wave changes to.")
	fs.StringVar(&o.PacedRate, "paced-rate", "50", "spec.proxyRestart.restartsPerSecond of the paced wave (a quantity).")
	fs.StringVar(&o.TrustedProxies, "trusted-proxies", "2", "spec.config.numTrustedProxies of the gateway configuration change; it must differ from the default (unset).")
	fs.DurationVar(&o.Idle, "idle", 10*time.Minute, "How long to measure the idle operator, at each size.")
	fs.IntVar(&o.Workers, "operator-workers", 4, "The operator's --workers.")
	fs.BoolVar(&o.Canary, "canary", false, "Measure a canary upgrade instead of the install and the two waves: Istio "+canaryFrom+" installed as the default revision before the operator starts, the workloads injected by it, then the Istio resource created with spec.upgradeStrategy Canary, unpaced.")
	fs.Float64Var(&o.APIQPS, "operator-qps", 1000, "The operator's --kube-api-qps (the cluster runs without limits).")
	fs.IntVar(&o.APIBurst, "operator-burst", 2000, "The operator's --kube-api-burst.")
	fs.IntVar(&o.GOMAXPROCS, "operator-gomaxprocs", deployedGOMAXPROCS, "The operator's GOMAXPROCS. The default is what the deploy manifest gives it (its CPU limit); 0 leaves Go's default, the machine's cores.")
	fs.IntVar(&o.BackgroundPods, "background-pods", 0, "Pods outside the mesh, created by the harness as bare pods bound to the kwok nodes, in --background-namespaces namespaces without injection. "+
		"A big cluster of 50,000 pods, 10% meshed: --workloads 1000 --pods 5 --background-pods 45000 (and --churn 50).")
	fs.IntVar(&o.BackgroundNamespaces, "background-namespaces", 10, "Namespaces the --background-pods are spread over.")
	fs.Float64Var(&o.Churn, "churn", 0, "Pods outside the mesh created, and as many deleted, per second, each living --churn-lifetime, in a namespace of their own without injection, from the end of the setup to the end of the run. "+
		"The idle phase then judges the operator's CPU against the watch floor's on the same churn.")
	fs.DurationVar(&o.ChurnLifetime, "churn-lifetime", 5*time.Second, "How long each churn pod lives before it is deleted.")
	fs.StringVar(&o.Binary, "operator-binary", "", "A built operator binary. Default: build bin/istio-operator.")
	fs.StringVar(&o.OutDir, "out", "", "Directory of bench-results.{json,md}. Default: the repository root.")
	fs.DurationVar(&o.Settle, "settle", 5*time.Second, "How long to keep watching after a wave has converged, to catch late or repeated patches.")
	fs.DurationVar(&o.InstallTimeout, "install-timeout", 5*time.Minute, "Limit of the Istio installation.")
	fs.DurationVar(&o.SetupTimeout, "setup-timeout", 15*time.Minute, "Limit of creating the workloads until all their pods run; the --background-pods have as long again, or 30 ms a pod when longer (kwok runs about 100 new pods a second on 2 cores).")
	fs.DurationVar(&o.CPUProfile, "cpu-profile", 0, "Record the operator's CPU profile for this long from the start of the unpaced wave, into .cache/bench/<size>-unpaced-cpu.pprof, its heap profile after the wave's last patch into <size>-unpaced-heap.pprof, and its CPU profile of the whole idle phase into <size>-idle-cpu.pprof (0: off).")
	fs.DurationVar(&o.WaveTimeout, "wave-timeout", 0, "Limit of one restart wave, from the change to every pod current (3000 pods take about 8 minutes on 2 cores; with --churn 50 the cluster replaces 3 to 4 pods a second). "+
		"Default: 20 minutes, or half a second per meshed pod when longer.")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected arguments: %v", fs.Args())
	}
	for _, f := range strings.Split(*sizes, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil {
			return o, fmt.Errorf("--workloads: %q is not a number", f)
		}
		o.Sizes = append(o.Sizes, n)
	}
	if n, err := strconv.Atoi(o.TrustedProxies); err != nil || n < 0 {
		return o, fmt.Errorf("--trusted-proxies: %q is not a non-negative number", o.TrustedProxies)
	}
	switch {
	case o.BackgroundPods < 0:
		return o, errors.New("--background-pods must not be negative")
	case o.BackgroundPods > 0 && o.BackgroundNamespaces < 1:
		return o, errors.New("--background-namespaces must be at least 1")
	case o.Churn < 0 || math.IsNaN(o.Churn) || math.IsInf(o.Churn, 0):
		return o, errors.New("--churn must be a non-negative number of pods per second")
	case o.Churn > 0 && o.ChurnLifetime <= 0:
		return o, errors.New("--churn-lifetime must be positive")
	case o.Nodes < 0:
		return o, errors.New("--nodes must not be negative")
	}
	need := 0
	for _, n := range o.Sizes {
		switch {
		case n < 1, o.Pods < 1, o.Namespaces < 1:
			return o, errors.New("--workloads, --pods and --namespaces must be at least 1")
		case o.Namespaces > n:
			return o, fmt.Errorf("--namespaces (%d) must not exceed a size of --workloads (%d)", o.Namespaces, n)
		}
		need = max(need, nodesFor(o, n))
	}
	if o.Nodes == 0 {
		o.Nodes = max(defaultNodes, need)
	} else if o.Nodes < need {
		largest := slices.Max(o.Sizes)
		return o, fmt.Errorf("up to %d pods (%d Deployments x %d pods with a wave's surge, %d background, twice the %.0f churn pods alive, %d for Istio) do not fit on %d nodes of %d pods: raise --nodes to %d, or leave it out",
			peakPods(o, largest), largest, o.Pods, o.BackgroundPods, o.Churn*o.ChurnLifetime.Seconds(), reservedPods, o.Nodes, podsPerNode, need)
	}
	if o.WaveTimeout < 0 || o.SetupTimeout <= 0 {
		return o, errors.New("--wave-timeout must not be negative, --setup-timeout must be positive")
	}
	if o.Idle < 0 {
		return o, errors.New("--idle must not be negative")
	}
	for _, q := range []string{o.UnpacedCPU, o.PacedCPU, o.PacedRate} {
		if _, err := resource.ParseQuantity(q); err != nil {
			return o, fmt.Errorf("%q: %w", q, err)
		}
	}
	if unpaced, paced := resource.MustParse(o.UnpacedCPU), resource.MustParse(o.PacedCPU); unpaced.Cmp(paced) == 0 {
		return o, errors.New("--unpaced-cpu and --paced-cpu must differ, or the paced wave changes nothing")
	}
	o.IdleText = o.Idle.String()
	if o.Churn > 0 {
		o.ChurnLifetimeText = o.ChurnLifetime.String()
	}
	return o, nil
}

func main() {
	if len(os.Args) > 1 && os.Args[1] == watchFloorCommand {
		os.Exit(watchFloorMain(os.Args[2:]))
	}
	opts, err := parseFlags(os.Args[1:])
	if errors.Is(err, flag.ErrHelp) {
		os.Exit(0)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(2)
	}

	// The first SIGINT/SIGTERM cancels the run, which then cleans up (the
	// operator, the injector's webhook, the cluster); a second one exits at
	// once and may leave the cluster running.
	ctx, cancel := context.WithCancel(context.Background())
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	go func() {
		sig := <-sigs
		progress("%v: stopping and cleaning up (again to exit at once)", sig)
		cancel()
		<-sigs
		os.Exit(130)
	}()

	err = run(ctx, opts)
	cancel()
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench: FAILED:", err)
		os.Exit(1)
	}
}

var begin = time.Now()

// progress writes a line to stderr with the time since the start.
func progress(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "[%7.1fs] %s\n", time.Since(begin).Seconds(), fmt.Sprintf(format, args...))
}

// poll calls cond every interval until it returns true, it fails, ctx ends
// or timeout passes; the error names what was awaited.
func poll(ctx context.Context, timeout, interval time.Duration, what string, cond wait.ConditionWithContextFunc) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	if err := wait.PollUntilContextCancel(ctx, interval, true, cond); err != nil {
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			return &timeoutError{what: what, after: timeout}
		}
		return fmt.Errorf("waiting for %s: %w", what, err)
	}
	return nil
}

// timeoutError is a wait that ran out of time. In a measured phase it means
// the operator missed the phase's goal, which the results report, rather
// than a failure of the harness.
type timeoutError struct {
	what  string
	after time.Duration
}

func (e *timeoutError) Error() string {
	return fmt.Sprintf("timed out after %s waiting for %s", e.after, e.what)
}
