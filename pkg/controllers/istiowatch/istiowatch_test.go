package istiowatch

import (
	"context"
	"testing"

	securityv1 "istio.io/client-go/pkg/apis/security/v1"
	"istio.io/client-go/pkg/clientset/versioned/fake"
	istioinformers "istio.io/client-go/pkg/informers/externalversions"
	securitylisters "istio.io/client-go/pkg/listers/security/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/tools/cache"

	v1alpha2 "github.com/meshkeeper/istio-operator/pkg/apis/operator/v1alpha2"
	"github.com/meshkeeper/istio-operator/pkg/istioclient"
)

func pickPeerAuthentications(f istioinformers.SharedInformerFactory) (cache.SharedIndexInformer, securitylisters.PeerAuthenticationLister) {
	i := f.Security().V1().PeerAuthentications()
	return i.Informer(), i.Lister()
}

// The watch lists only Istio's namespace, runs between Start and Stop, and
// begins anew after a Stop.
func TestWatchStartsSyncedAndStops(t *testing.T) {
	// Istio's generated fake does not announce that it lacks watch-list
	// streaming, so its informers would wait for a bookmark that never
	// comes; against it, list and watch the classic way.
	t.Setenv("KUBE_FEATURE_WatchListClient", "false")
	client := fake.NewSimpleClientset(
		&securityv1.PeerAuthentication{ObjectMeta: metav1.ObjectMeta{Name: "default", Namespace: istioclient.Namespace}},
		&securityv1.PeerAuthentication{ObjectMeta: metav1.ObjectMeta{Name: "app", Namespace: "default"}},
	)
	var added int
	w := New(client, "PeerAuthentication", pickPeerAuthentications, cache.ResourceEventHandlerFuncs{AddFunc: func(any) { added++ }})
	if w.Running() {
		t.Fatal("running before Start")
	}
	for round := range 2 {
		lister, err := w.Start(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if !w.Running() {
			t.Fatalf("round %d: not running after Start", round)
		}
		all, err := lister.List(labels.Everything())
		if err != nil {
			t.Fatal(err)
		}
		if len(all) != 1 || all[0].Namespace != istioclient.Namespace {
			t.Errorf("round %d: listed %d objects, want only the one in %s", round, len(all), istioclient.Namespace)
		}
		w.Stop()
		if w.Running() {
			t.Fatalf("round %d: running after Stop", round)
		}
	}
	if added != 2 {
		t.Errorf("handler saw %d adds over two runs, want 2", added)
	}
}

func TestNeeded(t *testing.T) {
	installed := func(s metav1.ConditionStatus, deleting bool) *v1alpha2.Istio {
		i := &v1alpha2.Istio{Status: v1alpha2.IstioStatus{Conditions: []metav1.Condition{{Type: v1alpha2.ConditionInstalled, Status: s}}}}
		if deleting {
			now := metav1.Now()
			i.DeletionTimestamp = &now
		}
		return i
	}
	for _, tc := range []struct {
		name   string
		istios []*v1alpha2.Istio
		want   bool
	}{
		{"none", nil, false},
		{"installed", []*v1alpha2.Istio{installed(metav1.ConditionTrue, false)}, true},
		{"installed but being deleted", []*v1alpha2.Istio{installed(metav1.ConditionTrue, true)}, false},
		{"not installed", []*v1alpha2.Istio{installed(metav1.ConditionFalse, false)}, false},
		{"one of two installed", []*v1alpha2.Istio{installed(metav1.ConditionFalse, false), installed(metav1.ConditionTrue, false)}, true},
	} {
		if got := Needed(tc.istios); got != tc.want {
			t.Errorf("%s: Needed %v, want %v", tc.name, got, tc.want)
		}
	}
}
