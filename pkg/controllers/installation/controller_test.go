package installation

import (
	corev1 "k8s.io/api/core/v1"
	"slices"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/informers"
	kubefake "k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"

	"github.com/meshkeeper/istio-operator/pkg/apis/operator/v1alpha2/apitest"
	"github.com/meshkeeper/istio-operator/pkg/controllers/controller"
	"github.com/meshkeeper/istio-operator/pkg/controllers/controllertest"
	"github.com/meshkeeper/istio-operator/pkg/controllers/queue"
	istioinformers "github.com/meshkeeper/istio-operator/pkg/generated/informers/externalversions"
	"github.com/meshkeeper/istio-operator/pkg/istioclient"
)

// TestNew checks the wiring: nothing connects or starts, the real
// renderer, planner and installer share the live-object caches, and the
// dynamic informers start with the shared ones.
func TestNew(t *testing.T) {
	istios := controllertest.NewIstios(t)
	released := 0
	d := &controller.Deps{
		Namespace:         controllertest.Namespace,
		RESTConfig:        &rest.Config{Host: "https://127.0.0.1:1"},
		KubeClient:        kubefake.NewClientset(),
		KubeInformers:     informers.NewSharedInformerFactory(kubefake.NewClientset(), 0),
		OperatorClient:    istios.Client,
		OperatorInformers: istioinformers.NewSharedInformerFactory(istios.Client, 0),
		Clock:             controllertest.Clock(),
		ReleaseMemory:     func() { released++ },
	}
	built, err := New(t.Context(), d)
	if err != nil {
		t.Fatal(err)
	}
	c := built.(*Controller)
	if c.Name() != Name || c.Loop() == nil || c.namespace != controllertest.Namespace {
		t.Errorf("controller %q, loop %v, namespace %q", c.Name(), c.Loop(), c.namespace)
	}
	if n := len(d.DynamicFactories()); n != 2 {
		t.Errorf("%d dynamic informer factories registered, want 2 (owned objects, istio-system)", n)
	}
	if n := len(c.live.informers); n != len(ownedKinds)+1 {
		t.Errorf("%d live-object informers, want one per owned kind and one for istio-system", n)
	}
	r, ok := c.renderer.(charts)
	if !ok || r.namespace != controllertest.Namespace || r.cluster == nil {
		t.Fatalf("renderer %#v", c.renderer)
	}
	r.release()
	c.release()
	if released != 2 {
		t.Errorf("renderer and controller release %d times, want both the process's", released)
	}
	if c.nodes == nil || c.promotionDelay != DefaultProfilePromotionDelay {
		t.Errorf("node lister %v, promotion delay %s, want a lister and the default delay", c.nodes, c.promotionDelay)
	}
	big := node("n", "4", "8Gi")
	big.Status.Images = []corev1.ContainerImage{{Names: []string{"a"}}}
	got, _ := d.Transform(big)
	if n := got.(*corev1.Node); len(n.Status.Images) != 0 || n.Status.Allocatable.Cpu().String() != "4" {
		t.Errorf("the node cache keeps %+v, want only the allocatable CPU and memory", n.Status)
	}
	if _, ok := c.planner.(*istioclient.Planner); !ok {
		t.Errorf("planner %T", c.planner)
	}
	in, ok := c.applier.(installer)
	if !ok || in.Live != c.live || in.Istio != r.cluster || in.Identity == nil || in.Dynamic == nil || in.Mapper == nil {
		t.Errorf("applier %#v", c.applier)
	}
}

func TestEnqueueServedAndAllKeys(t *testing.T) {
	f := newFixture(t, older(), newest(), inNamespace("other"))
	f.c.loop = queue.New(queue.Config[cache.ObjectName]{Name: Name, Clock: f.clock}, f.c.sync)
	t.Cleanup(f.c.loop.ShutDown)
	f.c.enqueueServed()
	if n := f.c.loop.Len(); n != 2 {
		t.Errorf("%d keys queued, want the 2 candidates of the operator's namespace", n)
	}
	var got []string
	for _, k := range f.c.allKeys() {
		got = append(got, k.String())
	}
	slices.Sort(got)
	if want := []string{"kyma-system/default", "kyma-system/old", "other/default"}; !slices.Equal(got, want) {
		t.Errorf("all keys %v, want %v", got, want)
	}
}

func TestLiveObjects(t *testing.T) {
	f := newFixture(t)
	ns := istioNamespace(false)
	cm := ownedObject("v1", "ConfigMap", istioclient.Namespace, "istio")
	f.live(ns, cm)
	l := f.c.live
	if got := l.Get(cm.GroupVersionKind(), istioclient.Namespace, "istio"); got != cm {
		t.Errorf("Get of a cached object: %v", got)
	}
	if got := l.Get(namespaceGVK, "", istioclient.Namespace); got != ns {
		t.Errorf("Get of istio-system: %v", got)
	}
	if got := l.Get(cm.GroupVersionKind(), istioclient.Namespace, "missing"); got != nil {
		t.Errorf("Get of a missing object: %v", got)
	}
	secret := schema.GroupVersionKind{Version: "v1", Kind: "Secret"}
	if got := l.Get(secret, istioclient.Namespace, "istio-ca-secret"); got != nil {
		t.Errorf("Get of a kind not watched: %v", got)
	}
	if got := l.Labelled(cm.GroupVersionKind()); len(got) != 1 || got[0] != cm {
		t.Errorf("Labelled ConfigMaps: %v", got)
	}
	// istio-system is no installed object: uninstall and prune never see it.
	if got := l.Labelled(namespaceGVK); got != nil {
		t.Errorf("Labelled namespaces: %v", got)
	}
	if got := l.Labelled(secret); got != nil {
		t.Errorf("Labelled Secrets: %v", got)
	}
}

// The plan reads every rendered object from the live-object caches: a kind
// no informer watches would never be found and would be applied on every
// sync. Rendered for every optional component and experimental feature.
func TestOwnedKindsCoverRenderings(t *testing.T) {
	for name, spec := range apitest.RenderingSpecs() {
		r, err := charts{namespace: controllertest.Namespace, release: func() {}}.Render(spec, istioclient.Revision{Name: istioclient.DefaultRevision, Version: istioclient.MustParseVersion(istioclient.Version)})
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		for _, o := range r.Desired() {
			if _, ok := ownedKinds[o.GroupVersionKind()]; !ok {
				t.Errorf("%s renders %s, a kind the installer does not watch", name, o)
			}
		}
	}
}

func TestInformerSelectors(t *testing.T) {
	var o metav1.ListOptions
	ownedTweak(&o)
	if o.LabelSelector != istioclient.OwnedSelector {
		t.Errorf("owned objects selected by %q", o.LabelSelector)
	}
	o = metav1.ListOptions{}
	namespaceTweak(&o)
	if o.FieldSelector != "metadata.name=istio-system" {
		t.Errorf("namespaces selected by %q", o.FieldSelector)
	}
}
