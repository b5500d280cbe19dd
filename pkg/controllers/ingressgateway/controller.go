// Package ingressgateway is the ingress gateway controller. Envoy in the
// istio-ingressgateway reads some settings only at start (trusted proxies,
// client certificate forwarding, trust domain, stats matcher, DNS capture),
// so a change of them needs new gateway pods. The installer renders the
// hash of those settings into the gateway's pod template (see
// istioclient.GatewayConfigAnnotation), which rolls the gateway exactly
// once per change, after the new mesh configuration is in place. This
// controller makes sure the gateway runs that configuration: it repairs the
// annotation if someone changed it (one roll), follows the rollout, and
// reports it in the IngressGatewayReady condition.
//
// It also reports, in IngressTargetingUserResourceFound, the EnvoyFilters
// users created in Istio's namespace that apply to the gateway: the
// operator cannot vouch for a gateway they change, and never touches them.
// The EnvoyFilter kind exists only while Istio's CRDs do, so its informer
// is an istiowatch.Watch, started once Istio is installed with the current
// generation and stopped when the resource is being deleted.
package ingressgateway

import (
	"context"
	"fmt"
	"time"

	istioclientset "istio.io/client-go/pkg/clientset/versioned"
	istioinformers "istio.io/client-go/pkg/informers/externalversions"
	networkinglisters "istio.io/client-go/pkg/listers/networking/v1alpha3"

	"k8s.io/client-go/kubernetes"
	appslisters "k8s.io/client-go/listers/apps/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"
	"k8s.io/utils/clock"

	"github.com/meshkeeper/istio-operator/pkg/controllers/controller"
	"github.com/meshkeeper/istio-operator/pkg/controllers/istiowatch"
	"github.com/meshkeeper/istio-operator/pkg/controllers/queue"
	"github.com/meshkeeper/istio-operator/pkg/controllers/status"
	"github.com/meshkeeper/istio-operator/pkg/generated/clientset/versioned"
	listers "github.com/meshkeeper/istio-operator/pkg/generated/listers/operator/v1alpha2"
	"github.com/meshkeeper/istio-operator/pkg/istioclient"
)

// Name is the controller's name.
const Name = "ingressgateway"

// Requeue intervals of this controller.
const (
	// RollingInterval re-checks a gateway while it rolls (its Deployment's
	// events also wake the controller).
	RollingInterval = 5 * time.Second
	// ConvergedInterval is the safety net once the gateway runs the
	// desired configuration.
	ConvergedInterval = 10 * time.Minute
)

// Controller is the ingress gateway controller.
type Controller struct {
	namespace   string
	loop        *queue.Loop[cache.ObjectName]
	istios      listers.IstioLister
	deployments appslisters.DeploymentLister
	kube        kubernetes.Interface
	status      *status.Writer
	recorder    record.EventRecorder
	clock       clock.PassiveClock

	envoyFilters *istiowatch.Watch[networkinglisters.EnvoyFilterLister]
}

// New builds the controller and registers its informers.
func New(_ context.Context, d *controller.Deps) (controller.Controller, error) {
	istio, err := istioclientset.NewForConfig(d.RESTConfig)
	if err != nil {
		return nil, fmt.Errorf("building Istio's client: %w", err)
	}
	c := newController(d.Namespace, d.OperatorClient, d.OperatorInformers.Operator().V1alpha2().Istios().Lister(),
		d.KubeInformers.Apps().V1().Deployments().Lister(), d.KubeClient, istio, d.Recorder(Name), d.Clock)
	if _, err := d.OperatorInformers.Operator().V1alpha2().Istios().Informer().AddEventHandler(c.loop.Handler(queue.ObjectNameKey)); err != nil {
		return nil, err
	}
	gatewayEvents := c.loop.Handler(func(obj any) []cache.ObjectName {
		name, err := cache.ObjectToName(obj)
		if err != nil || name.Namespace != istioclient.Namespace || name.Name != istioclient.IngressGatewayName {
			return nil
		}
		return status.ServingCandidates(c.istios, c.namespace)
	})
	if _, err := d.KubeInformers.Apps().V1().Deployments().Informer().AddEventHandler(gatewayEvents); err != nil {
		return nil, err
	}
	return c, nil
}

// newController builds the controller over the given clients and listers;
// the EnvoyFilter watch is built stopped. New registers its handlers on the
// shared informers; tests call it directly.
func newController(namespace string, client versioned.Interface, istios listers.IstioLister, deployments appslisters.DeploymentLister,
	kube kubernetes.Interface, istio istioclientset.Interface, recorder record.EventRecorder, clk clock.PassiveClock) *Controller {
	c := &Controller{
		namespace:   namespace,
		istios:      istios,
		deployments: deployments,
		kube:        kube,
		status:      status.NewWriter(client, Name, clk),
		recorder:    recorder,
		clock:       clk,
	}
	c.loop = queue.New(queue.Config[cache.ObjectName]{Name: Name, Clock: clk}, c.sync)
	c.envoyFilters = istiowatch.New(istio, "EnvoyFilter",
		func(f istioinformers.SharedInformerFactory) (cache.SharedIndexInformer, networkinglisters.EnvoyFilterLister) {
			i := f.Networking().V1alpha3().EnvoyFilters()
			return i.Informer(), i.Lister()
		},
		c.loop.Handler(func(any) []cache.ObjectName { return status.ServingCandidates(c.istios, c.namespace) }))
	return c
}

// Name implements controller.Controller.
func (c *Controller) Name() string { return Name }

// Run implements controller.Controller. The EnvoyFilter informer, if the
// sync started one, stops with the workers.
func (c *Controller) Run(ctx context.Context, workers int) {
	defer c.envoyFilters.Stop()
	c.loop.Run(ctx, workers)
}

// Loop exposes the work loop to tests.
func (c *Controller) Loop() *queue.Loop[cache.ObjectName] { return c.loop }
