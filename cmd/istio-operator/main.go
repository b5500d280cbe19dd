// Command istio-operator installs Istio from an Istio custom resource and
// keeps it, its ingress gateway, its mesh-wide mTLS policy and every sidecar
// proxy in the mesh on the desired version and configuration.
package main

import (
	"context"
	"flag"
	"fmt"
	"math"
	"os"
	"os/signal"
	"runtime"
	"runtime/debug"
	"strings"
	"syscall"
	"time"

	"go.uber.org/zap"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/klog/v2"

	v1alpha2 "github.com/meshkeeper/istio-operator/pkg/apis/operator/v1alpha2"
	"github.com/meshkeeper/istio-operator/pkg/controllers/installation"
	"github.com/meshkeeper/istio-operator/pkg/istioclient"
	"github.com/meshkeeper/istio-operator/pkg/logging"
	"github.com/meshkeeper/istio-operator/pkg/metrics"
	"github.com/meshkeeper/istio-operator/pkg/operator"
)

// commit is set at build time (-ldflags "-X main.commit=...").
var commit = "unknown"

// defaultGCPercent is the operator's GOGC unless the environment sets one.
// Its live heap is small (tens of MiB) and its CPU mostly idle, so it
// collects at half the default heap growth: resident memory about a
// quarter lower, for a few per cent more CPU during restart waves
// (docs/performance.md).
const defaultGCPercent = 50

func main() {
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(defaultGCPercent)
	}
	os.Exit(run(os.Args[1:]))
}

func run(args []string) int {
	fs := flag.NewFlagSet("istio-operator", flag.ContinueOnError)
	o := operator.Options{}
	var logOpts logging.Options
	var showVersion bool
	fs.StringVar(&o.Kubeconfig, "kubeconfig", "", "Path to a kubeconfig. Default: in-cluster configuration, or $KUBECONFIG.")
	fs.StringVar(&o.Namespace, "namespace", "kyma-system", "Namespace of the Istio resource the operator serves; resources elsewhere are reported as errors.")
	fs.Func("platform-namespaces", "Comma-separated namespaces of the platform's own workloads besides --namespace: their sidecars are restarted first, and a blocked restart among them is an Error, where a customer workload's is a Warning.", func(v string) error {
		for _, ns := range strings.Split(v, ",") {
			if ns = strings.TrimSpace(ns); ns != "" {
				if errs := validation.IsDNS1123Label(ns); len(errs) > 0 {
					return fmt.Errorf("namespace %q: %s", ns, strings.Join(errs, "; "))
				}
				o.PlatformNamespaces = append(o.PlatformNamespaces, ns)
			}
		}
		return nil
	})
	registry := os.Getenv(registryEnv)
	fs.StringVar(&registry, "istio-registry", registry, "Registry of every Istio image the operator installs and of the injected proxies, as host[:port][/path]; an Istio resource's spec.images.registry overrides it. Default: $"+registryEnv+", else Istio's own ("+istioclient.Hub+").")
	pullSecrets := os.Getenv(pullSecretsEnv)
	fs.StringVar(&pullSecrets, "image-pull-secrets", pullSecrets, "Comma-separated names of image pull Secrets for Istio's images and the injected pods; spec.images.pullSecrets overrides them. Default: $"+pullSecretsEnv+".")
	fs.DurationVar(&o.ProfilePromotionDelay, "profile-promotion-delay", installation.DefaultProfilePromotionDelay, "How long the cluster must stay at or above the production thresholds before an installation with the automatically chosen evaluation profile is promoted to production.")
	fs.StringVar(&o.MetricsBindAddress, "metrics-bind-address", ":8080", "Address of the Prometheus /metrics endpoint; 0 disables it.")
	fs.StringVar(&o.HealthProbeBindAddress, "health-probe-bind-address", ":8081", "Address of the /healthz and /readyz endpoints; 0 disables it.")
	fs.BoolVar(&o.Profiling, "enable-profiling", false, "Serve Go's profiler under /debug/pprof/ on the metrics address.")
	fs.BoolVar(&o.LeaderElect, "leader-elect", false, "Elect a leader through a Lease, so that several replicas can run and only one acts.")
	fs.StringVar(&o.LeaderElectionID, "leader-election-id", "istio-operator-leader", "Name of the leader election Lease.")
	fs.StringVar(&o.LeaderElectionNamespace, "leader-election-namespace", "", "Namespace of the leader election Lease. Default: --namespace.")
	fs.DurationVar(&o.LeaseDuration, "leader-election-lease-duration", 15*time.Second, "How long a lease is valid without renewal; a standby takes over after it.")
	fs.DurationVar(&o.RenewDeadline, "leader-election-renew-deadline", 10*time.Second, "How long the leader retries renewing before it gives up leadership.")
	fs.DurationVar(&o.RetryPeriod, "leader-election-retry-period", 2*time.Second, "Interval between leader election attempts.")
	fs.IntVar(&o.Workers, "workers", 4, "Workers per controller.")
	var qps float64
	fs.Float64Var(&qps, "kube-api-qps", 50, "Client-side limit of API requests per second.")
	fs.IntVar(&o.Burst, "kube-api-burst", 100, "Client-side burst of API requests.")
	fs.Float64Var(&o.RestartPacing.RestartsPerSecond, "proxy-restarts-per-second", 10,
		"Default rate of workload restarts for outdated sidecar proxies; 0 means unpaced. The Istio resource's spec.proxyRestart.restartsPerSecond overrides it.")
	var maxRollouts int
	fs.IntVar(&maxRollouts, "proxy-max-concurrent-rollouts", 50,
		"Default maximum of workloads rolling out at once for outdated sidecar proxies; 0 means unlimited. spec.proxyRestart.maxConcurrentRollouts overrides it.")
	fs.IntVar(&o.RestartEvents.Burst, "proxy-restart-events-burst", 50,
		"Events on restarted workloads recorded at once; beyond it, --proxy-restart-events-per-second. 0 records one on every restarted workload.")
	fs.Float64Var(&o.RestartEvents.PerSecond, "proxy-restart-events-per-second", 2,
		"Rate of Events on restarted workloads once the burst is spent. Every restart is also recorded in the workload's pod-template annotations.")
	fs.StringVar(&logOpts.Level, "log-level", "info", "Log level: debug, info, warn, error, or a verbosity 0-10.")
	fs.StringVar(&logOpts.Format, "log-format", logging.FormatJSON, "Log format: json or console.")
	fs.BoolVar(&showVersion, "version", false, "Print the version and exit.")
	if err := fs.Parse(args); err != nil {
		if err == flag.ErrHelp {
			return 0
		}
		return 2
	}
	o.QPS = float32(qps)
	images, err := imageDefaults(registry, pullSecrets)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	o.Images = images
	if maxRollouts < 0 || o.RestartPacing.RestartsPerSecond < 0 || o.RestartEvents.Burst < 0 || o.RestartEvents.PerSecond < 0 {
		fmt.Fprintln(os.Stderr, "--proxy-restarts-per-second, --proxy-max-concurrent-rollouts, --proxy-restart-events-burst and --proxy-restart-events-per-second must not be negative")
		return 2
	}
	if r := o.RestartPacing.RestartsPerSecond; r > 0 && r < v1alpha2.MinRestartsPerSecond {
		// The schema refuses such a rate in spec.proxyRestart: a wave
		// would take days.
		fmt.Fprintf(os.Stderr, "--proxy-restarts-per-second %g: must be 0 (unpaced) or at least %g\n", r, v1alpha2.MinRestartsPerSecond)
		return 2
	}
	o.RestartPacing.MaxConcurrentRollouts = int32(min(maxRollouts, math.MaxInt32))
	if showVersion {
		fmt.Printf("istio-operator %s (Istio %s, commit %s, %s)\n", istioclient.Version, istioclient.Version, commit, runtime.Version())
		return 0
	}

	z, logger, err := logging.New(logOpts)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	defer func() { _ = z.Sync() }()
	// Only the installation controller calls Istio's library, so Istio's
	// lines carry its name like the controller's own lines do.
	if err := istioclient.RouteLogs(z.With(zap.String("controller", installation.Name))); err != nil {
		logger.Error(err, "Routing Istio's logs")
		return 1
	}
	// Istio's log setup installs its own klog backend; ours wins.
	klog.SetLogger(logger)

	mem, err := decideMemoryLimit(os.Getenv)
	if err != nil {
		logger.Error(err, "Setting the Go memory limit")
		return 2
	}
	if limit := applyMemoryLimit(mem); limit == math.MaxInt64 {
		logger.Info("Go memory limit", "limit", "none", "source", mem.Source)
	} else {
		logger.Info("Go memory limit", "limitBytes", limit, "limitMiB", limit>>20, "containerLimitBytes", mem.Container, "source", mem.Source)
	}

	metrics.RegisterBuildInfo(metrics.Registry(), istioclient.Version, istioclient.Version, runtime.Version())

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	ctx = klog.NewContext(ctx, logger)
	logger.Info("Starting istio-operator", "version", istioclient.Version, "commit", commit,
		"namespace", o.Namespace, "leaderElect", o.LeaderElect)

	o.Controllers = controllers()
	if err := operator.Run(ctx, o); err != nil {
		logger.Error(err, "Operator failed")
		return 1
	}
	return 0
}
