package ingressgateway

import (
	"context"
	"errors"
	"testing"

	networkingv1alpha3 "istio.io/client-go/pkg/apis/networking/v1alpha3"
	istiofake "istio.io/client-go/pkg/clientset/versioned/fake"
	networkinglisters "istio.io/client-go/pkg/listers/networking/v1alpha3"
	appsv1 "k8s.io/api/apps/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	clienttesting "k8s.io/client-go/testing"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"

	v1alpha2 "github.com/meshkeeper/istio-operator/pkg/apis/operator/v1alpha2"
	"github.com/meshkeeper/istio-operator/pkg/controllers/controllertest"
	"github.com/meshkeeper/istio-operator/pkg/controllers/queue"
	"github.com/meshkeeper/istio-operator/pkg/istioclient"
)

// fixture is the controller over caches filled from objects, fake clients
// that record their actions, a fake clock and a recorder; the EnvoyFilter
// watch is seeded by seed, as a started and synced informer would be.
type fixture struct {
	t        *testing.T
	istios   *controllertest.Istios
	kube     *controllertest.Kube
	istio    *istiofake.Clientset
	filters  cache.Indexer
	recorder *record.FakeRecorder
	c        *Controller
}

// newFixture holds the Istio resources among objs in the operator's client
// and cache, the other objects in the Kubernetes client and caches.
func newFixture(t *testing.T, objs ...runtime.Object) *fixture {
	t.Helper()
	var istios []*v1alpha2.Istio
	var kube []runtime.Object
	for _, o := range objs {
		if i, ok := o.(*v1alpha2.Istio); ok {
			istios = append(istios, i)
		} else {
			kube = append(kube, o)
		}
	}
	f := &fixture{t: t, istios: controllertest.NewIstios(t, istios...), kube: controllertest.NewKube(t, kube...),
		istio: istiofake.NewSimpleClientset(), filters: controllertest.Indexer(t), recorder: controllertest.Recorder()}
	f.c = newController(controllertest.Namespace, f.istios.Client, f.istios.Lister,
		f.kube.Informers.Apps().V1().Deployments().Lister(), f.kube.Client, f.istio, f.recorder, controllertest.Clock())
	t.Cleanup(f.c.loop.ShutDown)
	return f
}

// seed stands in for a started and synced EnvoyFilter informer holding the
// filters (and those added to f.filters later).
func (f *fixture) seed(filters ...*networkingv1alpha3.EnvoyFilter) {
	f.t.Helper()
	for _, ef := range filters {
		if err := f.filters.Add(ef); err != nil {
			f.t.Fatal(err)
		}
	}
	f.c.envoyFilters.Seed(networkinglisters.NewEnvoyFilterLister(f.filters))
}

// failRolls makes every apply of the gateway's Deployment fail.
func (f *fixture) failRolls(msg string) {
	f.kube.Client.PrependReactor("patch", "deployments", func(clienttesting.Action) (bool, runtime.Object, error) {
		return true, nil, errors.New(msg)
	})
}

func (f *fixture) sync() (queue.Result, error) {
	f.t.Helper()
	return f.c.sync(context.Background(), controllertest.Key)
}

// syncOK syncs, fails the test on an error, and lets the cache deliver what
// the sync wrote.
func (f *fixture) syncOK() queue.Result {
	f.t.Helper()
	res, err := f.sync()
	if err != nil {
		f.t.Fatal(err)
	}
	f.istios.CatchUp(controllertest.Key)
	return res
}

func (f *fixture) ready() *metav1.Condition {
	f.t.Helper()
	return f.istios.Condition(controllertest.Key, v1alpha2.ConditionIngressGatewayReady)
}

func (f *fixture) userResource() *metav1.Condition {
	f.t.Helper()
	return f.istios.Condition(controllertest.Key, v1alpha2.ConditionIngressTargetingUserResourceFound)
}

// rolls are the applies of the gateway's Deployment sent.
func (f *fixture) rolls() []clienttesting.PatchAction {
	return controllertest.Applies(f.kube.Client.Actions(), "deployments")
}

// wantHash is the gateway configuration of the default Istio spec.
var wantHash = istioclient.GatewayConfigHash(&v1alpha2.IstioSpec{})

// gateway is the ingress gateway's Deployment of three replicas, rolled out
// with the configuration annotation hash ("" for none).
func gateway(hash string) *appsv1.Deployment {
	d := controllertest.Deployment(istioclient.Namespace, istioclient.IngressGatewayName, 3)
	d.Spec.Template.Labels = gatewayLabels
	if hash != "" {
		d.Spec.Template.Annotations = map[string]string{istioclient.GatewayConfigAnnotation: hash}
	}
	return d
}

// installed is the default Istio resource at generation 2, installed with
// it, with further conditions.
func installed(conds ...metav1.Condition) *v1alpha2.Istio {
	return controllertest.Istio(2, append([]metav1.Condition{controllertest.InstalledCurrent(2)}, conds...)...)
}
