// Package operator runs the operator process: HTTP endpoints for health and
// metrics, leader election, the shared informers, and the controllers. The
// start order follows the in-tree controller managers: serve health and
// metrics first, then elect, then build controllers, start and sync the
// informers, and only then start workers.
package operator

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/go-logr/logr"
	"golang.org/x/sync/errgroup"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/client-go/tools/leaderelection"
	"k8s.io/client-go/tools/leaderelection/resourcelock"
	"k8s.io/client-go/tools/record"
	"k8s.io/klog/v2"
	"k8s.io/utils/clock"

	v1alpha2 "github.com/meshkeeper/istio-operator/pkg/apis/operator/v1alpha2"
	"github.com/meshkeeper/istio-operator/pkg/controllers/controller"
	"github.com/meshkeeper/istio-operator/pkg/exepages"
	"github.com/meshkeeper/istio-operator/pkg/generated/clientset/versioned"
	istioinformers "github.com/meshkeeper/istio-operator/pkg/generated/informers/externalversions"
	"github.com/meshkeeper/istio-operator/pkg/metrics"
	"github.com/meshkeeper/istio-operator/pkg/reconnect"
	"github.com/meshkeeper/istio-operator/pkg/watchtimeout"
)

// Component is the operator's name in Events, leases and user agents.
const Component = "istio-operator"

var scheme = runtime.NewScheme()

func init() {
	utilruntime.Must(clientgoscheme.AddToScheme(scheme))
	utilruntime.Must(v1alpha2.Install(scheme))
}

// Options configure the process.
type Options struct {
	Kubeconfig string
	Namespace  string
	// PlatformNamespaces hold the platform's own workloads besides
	// Namespace (controller.Deps.PlatformNamespaces).
	PlatformNamespaces []string
	MetricsBindAddress string
	// Profiling serves Go's /debug/pprof on the metrics address.
	Profiling              bool
	HealthProbeBindAddress string

	LeaderElect             bool
	LeaderElectionID        string
	LeaderElectionNamespace string
	LeaseDuration           time.Duration
	RenewDeadline           time.Duration
	RetryPeriod             time.Duration

	// Workers per controller.
	Workers int
	// ResyncPeriod of the shared informers; 0 disables periodic resyncs
	// (controllers requeue on their own intervals instead).
	ResyncPeriod time.Duration
	// QPS and Burst of the API client.
	QPS   float32
	Burst int

	// RestartPacing is the default pacing of sidecar proxy restarts.
	RestartPacing v1alpha2.RestartPacing
	// Images are the default registry and pull secrets of Istio's images
	// (controller.Deps.Images).
	Images v1alpha2.Images
	// ProfilePromotionDelay is how long a cluster must stay above the
	// production thresholds before an evaluation installation is promoted
	// (controller.Deps.ProfilePromotionDelay).
	ProfilePromotionDelay time.Duration
	// RestartEvents bounds the Events recorded on restarted workloads.
	RestartEvents controller.EventBudget

	Controllers []controller.Constructor
	Clock       clock.WithTicker
}

// Run runs the operator until ctx is cancelled (SIGTERM) or leadership is
// lost, and returns after everything stopped.
func Run(ctx context.Context, o Options) error {
	logger := klog.FromContext(ctx)
	if o.Clock == nil {
		o.Clock = clock.RealClock{}
	}
	if o.LeaderElectionNamespace == "" {
		o.LeaderElectionNamespace = o.Namespace
	}

	// client-go's hooks apply to clients and queues built afterwards.
	metrics.InstallRESTClientMetrics()
	metrics.InstallWorkqueueProvider()
	metrics.InstallLeaderElectionMetrics(o.LeaderElectionID)
	metrics.InstallIstioStatusMetrics()

	cfg, err := restConfig(o, logger)
	if err != nil {
		return err
	}
	kube, err := kubernetes.NewForConfig(Protobuf(cfg))
	if err != nil {
		return err
	}

	srv := newServers(o.MetricsBindAddress, o.HealthProbeBindAddress, o.LeaderElect, o.Profiling)
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return srv.serve(gctx) })

	run := func(ctx context.Context) error {
		return runControllers(ctx, o, cfg, kube, srv)
	}

	if !o.LeaderElect {
		g.Go(func() error { return run(gctx) })
		return wait(g, logger)
	}

	id, err := os.Hostname()
	if err != nil {
		return fmt.Errorf("getting hostname for the leader election identity: %w", err)
	}
	id = fmt.Sprintf("%s_%d", id, os.Getpid())
	lock, err := resourcelock.New(resourcelock.LeasesResourceLock, o.LeaderElectionNamespace, o.LeaderElectionID,
		kube.CoreV1(), kube.CoordinationV1(), resourcelock.ResourceLockConfig{Identity: id})
	if err != nil {
		return err
	}
	ectx, stopElector := context.WithCancel(gctx)
	defer stopElector()
	runErr := make(chan error, 1)
	elector, err := leaderelection.NewLeaderElector(leaderelection.LeaderElectionConfig{
		Lock:            lock,
		Name:            o.LeaderElectionID,
		LeaseDuration:   o.LeaseDuration,
		RenewDeadline:   o.RenewDeadline,
		RetryPeriod:     o.RetryPeriod,
		ReleaseOnCancel: true,
		WatchDog:        srv.leaderHealth,
		Callbacks: leaderelection.LeaderCallbacks{
			OnStartedLeading: func(ctx context.Context) {
				logger.Info("Became leader, starting controllers", "identity", id)
				srv.setLeading(true)
				if err := run(ctx); err != nil {
					runErr <- err
					stopElector()
				}
			},
			OnStoppedLeading: func() {
				srv.setLeading(false)
				logger.Info("Leadership released", "identity", id)
			},
			OnNewLeader: func(identity string) {
				if identity != id {
					logger.Info("Another replica leads", "leader", identity)
				}
			},
		},
	})
	if err != nil {
		return err
	}
	srv.leaderHealth.SetLeaderElection(elector)
	g.Go(func() error {
		elector.Run(ectx)
		// Run returns when the context ends or the lease is lost. Losing it
		// while still wanted means another replica may act now: stop.
		select {
		case err := <-runErr:
			if err != nil {
				return err
			}
		default:
		}
		if gctx.Err() == nil {
			return errors.New("lost the leader election lease; exiting so that only the new leader acts")
		}
		return nil
	})
	return wait(g, logger)
}

func wait(g *errgroup.Group, logger logr.Logger) error {
	err := g.Wait()
	if err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	logger.Info("Stopped")
	return nil
}

// runControllers builds the controllers, starts and syncs the informers and
// runs the controllers' workers until ctx ends.
func runControllers(ctx context.Context, o Options, cfg *rest.Config, kube kubernetes.Interface, srv *servers) error {
	logger := klog.FromContext(ctx)
	opClient, err := versioned.NewForConfig(cfg)
	if err != nil {
		return err
	}
	broadcaster := record.NewBroadcaster(record.WithContext(ctx))
	broadcaster.StartStructuredLogging(3)
	broadcaster.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: kube.CoreV1().Events("")})
	defer broadcaster.Shutdown()

	d := &controller.Deps{
		Namespace:          o.Namespace,
		PlatformNamespaces: o.PlatformNamespaces,
		RESTConfig:         cfg,
		KubeClient:         kube,
		OperatorClient:     opClient,
		// Istio resources are read cluster-wide: the operator must see, and
		// report, resources created outside its namespace.
		OperatorInformers:     istioinformers.NewSharedInformerFactory(opClient, o.ResyncPeriod),
		Clock:                 o.Clock,
		RestartPacing:         o.RestartPacing,
		Images:                o.Images,
		ProfilePromotionDelay: o.ProfilePromotionDelay,
		RestartEvents:         o.RestartEvents,
		Events: func(name string) record.EventRecorder {
			return broadcaster.NewRecorder(scheme, eventSource(name))
		},
		// Rendering and applying touch the Helm engine, the charts and
		// Istio's clients, which the next change needs at the earliest.
		ReleaseMemory: func() { exepages.Release(logger) },
	}
	// The controllers declare the shapes of the shared caches as they are
	// built; the factory applies them (and drops managed fields).
	d.KubeInformers = informers.NewSharedInformerFactoryWithOptions(kube, o.ResyncPeriod,
		informers.WithTransform(d.Transform))
	// The Istio informer is always there: readiness means the operator has
	// seen the resources it serves.
	d.OperatorInformers.Operator().V1alpha2().Istios().Informer()
	// /metrics reports the served resource's state and conditions from the
	// same cache, while this replica runs the controllers.
	stopStatus := metrics.ServeIstioStatus(d.OperatorInformers.Operator().V1alpha2().Istios().Lister(), o.Namespace)
	defer stopStatus()

	controllers := make([]controller.Controller, 0, len(o.Controllers))
	for _, build := range o.Controllers {
		c, err := build(ctx, d)
		if err != nil {
			return fmt.Errorf("building controller: %w", err)
		}
		controllers = append(controllers, c)
	}

	d.KubeInformers.Start(ctx.Done())
	d.OperatorInformers.Start(ctx.Done())
	defer d.KubeInformers.Shutdown()
	defer d.OperatorInformers.Shutdown()
	for _, f := range d.DynamicFactories() {
		f.Start(ctx.Done())
		defer f.Shutdown()
	}
	for _, c := range d.Caches() {
		c.Start(ctx.Done())
	}
	var unsynced []string
	for typ, ok := range d.KubeInformers.WaitForCacheSync(ctx.Done()) {
		if !ok {
			unsynced = append(unsynced, typ.String())
		}
	}
	for typ, ok := range d.OperatorInformers.WaitForCacheSync(ctx.Done()) {
		if !ok {
			unsynced = append(unsynced, typ.String())
		}
	}
	for _, f := range d.DynamicFactories() {
		for res, ok := range f.WaitForCacheSync(ctx.Done()) {
			if !ok {
				unsynced = append(unsynced, res.String())
			}
		}
	}
	for name, c := range d.Caches() {
		if !c.WaitForCacheSync(ctx.Done()) {
			unsynced = append(unsynced, name)
		}
	}
	if ctx.Err() != nil {
		// Stopped (SIGTERM, lost leadership) before the caches synced: a
		// clean stop, not a failure.
		return nil
	}
	if len(unsynced) > 0 {
		return fmt.Errorf("caches did not sync: %s", strings.Join(unsynced, ", "))
	}
	logger.Info("Caches synced, starting controllers", "controllers", len(controllers))
	srv.markSynced()
	// Package initialisation is done: most of the binary it touched is not
	// needed again.
	exepages.Release(logger)

	g, gctx := errgroup.WithContext(ctx)
	for _, c := range controllers {
		g.Go(func() error {
			c.Run(klog.NewContext(gctx, logger.WithName(c.Name())), o.Workers)
			return nil
		})
	}
	<-ctx.Done()
	return g.Wait()
}

func restConfig(o Options, logger klog.Logger) (*rest.Config, error) {
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	if o.Kubeconfig != "" {
		rules.ExplicitPath = o.Kubeconfig
	}
	cfg, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, &clientcmd.ConfigOverrides{}).ClientConfig()
	if err != nil {
		return nil, fmt.Errorf("loading the cluster configuration (in-cluster, --kubeconfig or KUBECONFIG): %w", err)
	}
	cfg.UserAgent = Component
	// Held requests count once: reconnect sits beneath the counting.
	reconnect.Wrap(cfg, logger.WithName("reconnect"))
	watchtimeout.Wrap(cfg, watchtimeout.Min)
	metrics.InstrumentConfig(cfg)
	if o.QPS > 0 {
		cfg.QPS = o.QPS
	}
	if o.Burst > 0 {
		cfg.Burst = o.Burst
	}
	return cfg, nil
}

func eventSource(controller string) corev1.EventSource {
	return corev1.EventSource{Component: Component + "/" + controller}
}

// Protobuf is cfg speaking protobuf, which built-in kinds support: decoding
// the pod and workload watch streams costs a fraction of JSON's CPU. Clients
// of custom resources keep JSON.
func Protobuf(cfg *rest.Config) *rest.Config {
	c := rest.CopyConfig(cfg)
	c.ContentType = "application/vnd.kubernetes.protobuf"
	c.AcceptContentTypes = "application/vnd.kubernetes.protobuf,application/json"
	return c
}
