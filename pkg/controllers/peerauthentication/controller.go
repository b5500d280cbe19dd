// Package peerauthentication is the PeerAuthentication controller. Once
// Istio is installed it keeps the mesh-wide PeerAuthentication
// istio-system/default with mutual TLS STRICT: created when missing,
// recreated when deleted, restored when edited, and never written while it
// is right. It reports in the PeerAuthenticationReady condition whether
// mesh-wide STRICT mTLS holds, naming the users' PeerAuthentications in the
// root namespace that weaken it (it never deletes them).
//
// The PeerAuthentication kind exists only while Istio's CRDs are installed,
// so its informer is an istiowatch.Watch: started from the sync the first
// time the served Istio resource has Installed=True at its current
// generation, stopped as soon as that resource is being deleted. Until then
// the controller reads nothing of Istio's API and writes nothing but its
// waiting condition; the watch on the Istio resource wakes it when
// Installed changes.
//
// It owns the condition PeerAuthenticationReady.
package peerauthentication

import (
	"context"
	"fmt"
	"time"

	securityv1 "istio.io/client-go/pkg/apis/security/v1"
	securityclient "istio.io/client-go/pkg/clientset/versioned"
	securityinformers "istio.io/client-go/pkg/informers/externalversions"
	securitylisters "istio.io/client-go/pkg/listers/security/v1"
	"k8s.io/apimachinery/pkg/labels"
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

// Name is the controller's name: queue, field manager, logger, Event source
// and metrics label.
const Name = "peerauthentication"

// DefaultName is the name of the mesh-wide PeerAuthentication the operator
// keeps in Istio's root namespace.
const DefaultName = "default"

// ConvergedInterval is the safety net once mesh-wide mTLS is as desired;
// the PeerAuthentication informer reports every change before that.
const ConvergedInterval = 10 * time.Minute

var everything = labels.Everything()

// Controller is the PeerAuthentication controller.
type Controller struct {
	namespace string
	loop      *queue.Loop[cache.ObjectName]
	istios    listers.IstioLister
	status    *status.Writer
	security  securityclient.Interface
	recorder  record.EventRecorder
	clock     clock.PassiveClock

	peerAuths *peerAuthWatch
}

// New builds the controller and registers its handler on the Istio
// resources. The PeerAuthentication informer is started later, by the sync.
func New(_ context.Context, d *controller.Deps) (controller.Controller, error) {
	security, err := securityclient.NewForConfig(d.RESTConfig)
	if err != nil {
		return nil, fmt.Errorf("building Istio's security client: %w", err)
	}
	c := newController(d.Namespace, d.OperatorClient, d.OperatorInformers.Operator().V1alpha2().Istios().Lister(),
		security, d.Recorder(Name), d.Clock)
	if _, err := d.OperatorInformers.Operator().V1alpha2().Istios().Informer().AddEventHandler(c.loop.Handler(queue.ObjectNameKey)); err != nil {
		return nil, err
	}
	return c, nil
}

func newController(namespace string, client versioned.Interface, istios listers.IstioLister,
	security securityclient.Interface, recorder record.EventRecorder, clk clock.PassiveClock) *Controller {
	c := &Controller{
		namespace: namespace,
		istios:    istios,
		status:    status.NewWriter(client, Name, clk),
		security:  security,
		recorder:  recorder,
		clock:     clk,
	}
	c.loop = queue.New(queue.Config[cache.ObjectName]{Name: Name, Clock: clk}, c.sync)
	c.peerAuths = newPeerAuthWatch(security, c.loop.Handler(func(any) []cache.ObjectName { return status.ServingCandidates(c.istios, c.namespace) }))
	return c
}

// Name implements controller.Controller.
func (c *Controller) Name() string { return Name }

// Run implements controller.Controller. The PeerAuthentication informer, if
// the sync started one, stops with the workers.
func (c *Controller) Run(ctx context.Context, workers int) {
	defer c.peerAuths.stop()
	c.loop.Run(ctx, workers)
}

// Loop exposes the work loop to tests.
func (c *Controller) Loop() *queue.Loop[cache.ObjectName] { return c.loop }

// peerAuthWatch is the PeerAuthentication informer of istio-system. It
// also remembers the controller's last write of istio-system/default until
// the informer has seen it, so that a sync right after the write does not
// write again from a stale cache.
type peerAuthWatch struct {
	*istiowatch.Watch[securitylisters.PeerAuthenticationLister]

	// applied is the controller's own last write of istio-system/default.
	applied *status.LastWrites[*securityv1.PeerAuthentication]
}

func newPeerAuthWatch(client securityclient.Interface, handler cache.ResourceEventHandler) *peerAuthWatch {
	w := &peerAuthWatch{applied: status.NewLastWrites((*securityv1.PeerAuthentication).DeepCopy)}
	w.Watch = istiowatch.New(client, "PeerAuthentication",
		func(f securityinformers.SharedInformerFactory) (cache.SharedIndexInformer, securitylisters.PeerAuthenticationLister) {
			i := f.Security().V1().PeerAuthentications()
			return i.Informer(), i.Lister()
		}, w.forgetAppliedThen(handler))
	return w
}

// stop stops the informer and forgets the remembered write.
func (w *peerAuthWatch) stop() {
	w.Stop()
	w.applied.Reset()
}

// wrote remembers the controller's write of istio-system/default.
func (w *peerAuthWatch) wrote(pa *securityv1.PeerAuthentication) { w.applied.Wrote(pa) }

// newest is the controller's own last write while the informer has not
// delivered it yet, the cached object otherwise (nil when missing).
func (w *peerAuthWatch) newest(cached *securityv1.PeerAuthentication) *securityv1.PeerAuthentication {
	return w.applied.Newest(cache.ObjectName{Namespace: istioclient.Namespace, Name: DefaultName}, cached)
}

// forgetAppliedThen drops the remembered write once the informer has
// seen it or anything after it, and on any delete, and only then passes the
// event on: the sync the event causes reads the cache, not the remembered
// write. One handler does both because each handler is called from its own
// goroutine.
func (w *peerAuthWatch) forgetAppliedThen(next cache.ResourceEventHandler) cache.ResourceEventHandler {
	seen := func(obj any, deleted bool) {
		if t, ok := obj.(cache.DeletedFinalStateUnknown); ok {
			obj = t.Obj
		}
		if pa, ok := obj.(*securityv1.PeerAuthentication); ok {
			w.applied.Seen(pa, deleted)
		}
	}
	return cache.ResourceEventHandlerFuncs{
		AddFunc: func(obj any) {
			seen(obj, false)
			next.OnAdd(obj, false)
		},
		UpdateFunc: func(oldObj, newObj any) {
			seen(newObj, false)
			next.OnUpdate(oldObj, newObj)
		},
		DeleteFunc: func(obj any) {
			seen(obj, true)
			next.OnDelete(obj)
		},
	}
}
