// Package installation is the installation controller: from the one Istio
// resource it serves to an installed, correctly configured Istio, kept that
// way. It installs and upgrades only when the rendered objects differ from
// the live ones, repairs drift of any object it installed within seconds,
// and uninstalls on deletion, guarded by the deletion strategy.
//
// It owns the Installed condition and the summary of the resource (Ready,
// state, description, observedGeneration, installedVersion).
package installation

import (
	"context"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/dynamic/dynamicinformer"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/metadata"
	"k8s.io/client-go/restmapper"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"
	"k8s.io/utils/clock"

	v1alpha2 "github.com/meshkeeper/istio-operator/pkg/apis/operator/v1alpha2"
	"github.com/meshkeeper/istio-operator/pkg/controllers/controller"
	"github.com/meshkeeper/istio-operator/pkg/controllers/queue"
	"github.com/meshkeeper/istio-operator/pkg/controllers/status"
	"github.com/meshkeeper/istio-operator/pkg/generated/clientset/versioned"
	listers "github.com/meshkeeper/istio-operator/pkg/generated/listers/operator/v1alpha2"
	"github.com/meshkeeper/istio-operator/pkg/istioclient"
)

// Name is the controller's name: queue, field manager, logger, Event source
// and metrics label.
const Name = "installation"

// Finalizer holds the resource until Istio is uninstalled; the same name as
// Kyma's, so resources Kyma's operator created are handled alike.
const Finalizer = "istios.operator.kyma-project.io/istio-installation"

// Requeue intervals of this controller.
const (
	// ResyncInterval is the safety net: a full comparison of the rendered
	// and the live objects even when no event arrived.
	ResyncInterval = 5 * time.Minute
	// BlockedInterval re-checks a deletion blocked by user resources (their
	// informers also wake it).
	BlockedInterval = time.Minute
	// ProgressInterval bounds how often install progress is written.
	ProgressInterval = time.Second
	// TerminatingNamespaceInterval re-checks an install waiting for the
	// previous installation's istio-system to be gone.
	TerminatingNamespaceInterval = 2 * time.Second
	// UserResourcesSyncInterval re-checks a deletion waiting for the user
	// resource informers' first sync (which also wakes it).
	UserResourcesSyncInterval = time.Second
	// CascadeInterval re-checks a Cascading deletion after deleting users'
	// Istio resources; their delete events wake it first.
	CascadeInterval = 5 * time.Second
	// SidecarRemovalInterval re-checks a deletion waiting for the proxy
	// sidecar controller to restart the workloads with sidecars; its
	// condition writes wake it first.
	SidecarRemovalInterval = 30 * time.Second
)

// Controller is the installation controller.
type Controller struct {
	namespace string
	loop      *queue.Loop[cache.ObjectName]
	istios    listers.IstioLister
	client    versioned.Interface
	status    *status.Writer
	recorder  record.EventRecorder
	clock     clock.PassiveClock

	live     *liveObjects
	renderer renderer
	planner  planner
	applier  applier

	userResources *userResources

	// nodes, images and promotionDelay feed the profile and image
	// settings (profile.go, v1alpha2.IstioSpec.Resolved).
	nodes          corelisters.NodeLister
	images         v1alpha2.Images
	promotionDelay time.Duration

	// release hands the memory of rendering and applying back (the
	// process decides how).
	release func()

	mu       sync.Mutex
	rendered map[string]*istioclient.Rendered // by spec hash; the last one only
	// removing is the canary upgrade phase that removes a revision, while
	// it runs; done is a finished canary upgrade's condition, until
	// written (canary.go).
	removing v1alpha2.UpgradePhase
	done     *status.Condition
	// aboveSince is when the cluster was last seen crossing the production
	// thresholds upwards; zero while below them.
	aboveSince time.Time
}

// New builds the controller and registers its informers.
func New(_ context.Context, d *controller.Deps) (controller.Controller, error) {
	dyn, err := dynamic.NewForConfig(d.RESTConfig)
	if err != nil {
		return nil, err
	}
	meta, err := metadata.NewForConfig(d.RESTConfig)
	if err != nil {
		return nil, err
	}
	istioCluster, err := istioclient.NewCluster(d.RESTConfig)
	if err != nil {
		return nil, err
	}
	if err := d.ShapeCache(&corev1.Node{}, nodeCapacity); err != nil {
		return nil, err
	}
	nodeInformer := d.KubeInformers.Core().V1().Nodes()
	delay := d.ProfilePromotionDelay
	if delay <= 0 {
		delay = DefaultProfilePromotionDelay
	}
	owned := dynamicinformer.NewFilteredDynamicSharedInformerFactory(dyn, 0, "", ownedTweak)
	nsFactory := dynamicinformer.NewFilteredDynamicSharedInformerFactory(dyn, 0, "", namespaceTweak)
	d.Register(owned)
	d.Register(nsFactory)

	c := &Controller{
		namespace: d.Namespace,
		istios:    d.OperatorInformers.Operator().V1alpha2().Istios().Lister(),
		client:    d.OperatorClient,
		status:    status.NewWriter(d.OperatorClient, Name, d.Clock),
		recorder:  d.Recorder(Name),
		clock:     d.Clock,
		live:      newLiveObjects(dyn, owned, nsFactory),
		renderer:  charts{cluster: istioCluster, namespace: d.Namespace, release: d.Release},
		planner:   new(istioclient.Planner),
		release:   d.Release,
		rendered:  map[string]*istioclient.Rendered{},

		nodes:          nodeInformer.Lister(),
		images:         d.Images,
		promotionDelay: delay,
	}
	c.applier = installer{&istioclient.Installer{
		Dynamic: dyn,
		Mapper:  restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(d.KubeClient.Discovery())),
		Istio:   istioCluster,
		Live:    c.live,
		// Binds the namespace reader role to whoever the operator runs as,
		// in the istio-system it creates.
		Identity: istioclient.NewIdentity(d.KubeClient),
	}}
	c.loop = queue.New(queue.Config[cache.ObjectName]{Name: Name, Clock: d.Clock}, c.sync)
	c.userResources = newUserResources(meta, c.enqueueServed)

	istioInformer := d.OperatorInformers.Operator().V1alpha2().Istios().Informer()
	// Which resource is served depends on all of them: any change may
	// change the answer for the others.
	if _, err := istioInformer.AddEventHandler(c.loop.Handler(func(any) []cache.ObjectName { return c.allKeys() })); err != nil {
		return nil, err
	}
	drift := cache.ResourceEventHandlerFuncs{
		AddFunc: func(any) { c.enqueueServed() },
		UpdateFunc: func(o, n any) {
			if relevantChange(o, n) {
				c.enqueueServed()
			}
		},
		DeleteFunc: func(any) { c.enqueueServed() },
	}
	// Nodes change the cluster's capacity, and with it the profile.
	if _, err := nodeInformer.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: func(any) { c.enqueueServed() },
		UpdateFunc: func(o, n any) {
			if allocatableChanged(o, n) {
				c.enqueueServed()
			}
		},
		DeleteFunc: func(any) { c.enqueueServed() },
	}); err != nil {
		return nil, err
	}
	for _, inf := range c.live.informers {
		if _, err := inf.AddEventHandler(drift); err != nil {
			return nil, err
		}
	}
	return c, nil
}

// Name implements controller.Controller.
func (c *Controller) Name() string { return Name }

// Run implements controller.Controller. The installation is one long sync
// of one key, so one worker is all it needs; other controllers have their
// own queues and are never blocked by it.
func (c *Controller) Run(ctx context.Context, _ int) {
	defer c.userResources.shutdown()
	c.loop.Run(ctx, 1)
}

// Loop exposes the work loop to tests.
func (c *Controller) Loop() *queue.Loop[cache.ObjectName] { return c.loop }

// allKeys are every Istio resource, in any namespace: which one is served,
// and what the others are told, depends on all of them.
func (c *Controller) allKeys() []cache.ObjectName {
	all, err := c.istios.List(everything)
	if err != nil {
		return nil
	}
	return status.KeysOf(all)
}

// enqueueServed wakes the served resource (and its fellow candidates, whose
// syncs decide nothing changes for them) after a change of Istio's objects.
func (c *Controller) enqueueServed() {
	for _, k := range status.ServingCandidates(c.istios, c.namespace) {
		c.loop.Add(k)
	}
}
