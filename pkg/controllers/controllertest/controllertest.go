// Package controllertest is the fixture for controller unit tests, in the
// manner of sample-controller's: caches filled from objects instead of
// started informers, fake clientsets whose recorded actions the test
// asserts, a fake clock and a recorder whose Events the test reads. A test
// calls the controller's sync directly; nothing runs in the background.
package controllertest

import (
	"context"
	"strconv"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	clienttesting "k8s.io/client-go/testing"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"
	clocktesting "k8s.io/utils/clock/testing"

	v1alpha2 "github.com/meshkeeper/istio-operator/pkg/apis/operator/v1alpha2"
	"github.com/meshkeeper/istio-operator/pkg/generated/clientset/versioned/fake"
	listers "github.com/meshkeeper/istio-operator/pkg/generated/listers/operator/v1alpha2"
)

// Namespace is the operator's namespace in the fixtures.
const Namespace = "kyma-system"

// Start is the fake clock's starting time.
var Start = time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)

// Key is the key of the default Istio resource.
var Key = cache.ObjectName{Namespace: Namespace, Name: "default"}

// Clock is a fake clock at Start.
func Clock() *clocktesting.FakeClock { return clocktesting.NewFakeClock(Start) }

// Istio is the default Istio resource at a generation, with conditions.
func Istio(gen int64, conds ...metav1.Condition) *v1alpha2.Istio {
	return &v1alpha2.Istio{
		ObjectMeta: metav1.ObjectMeta{Namespace: Namespace, Name: "default", Generation: gen, UID: "uid-1", ResourceVersion: "10"},
		Status:     v1alpha2.IstioStatus{Conditions: conds},
	}
}

// Installed is the installation controller's Installed condition.
func Installed(status metav1.ConditionStatus, reason string, gen int64) metav1.Condition {
	return metav1.Condition{Type: v1alpha2.ConditionInstalled, Status: status, Reason: reason,
		Message: "Installed condition: " + reason + ".", ObservedGeneration: gen}
}

// InstalledCurrent is Installed=True at the generation: dependents act.
func InstalledCurrent(gen int64) metav1.Condition {
	return Installed(metav1.ConditionTrue, v1alpha2.ReasonIstioInstallSucceeded, gen)
}

// Indexer is a cache holding the objects, as a synced informer would.
func Indexer(t testing.TB, objs ...runtime.Object) cache.Indexer {
	t.Helper()
	i := cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{cache.NamespaceIndex: cache.MetaNamespaceIndexFunc})
	for _, o := range objs {
		if err := i.Add(o); err != nil {
			t.Fatal(err)
		}
	}
	return i
}

// Istios are a fake operator clientset and a lister over a cache, both
// holding the resources. CatchUp moves what the client holds into the
// cache, as the watch would.
type Istios struct {
	t       testing.TB
	Client  *fake.Clientset
	Indexer cache.Indexer
	Lister  listers.IstioLister
}

// NewIstios holds the resources in a fake client and its cache.
func NewIstios(t testing.TB, istios ...*v1alpha2.Istio) *Istios {
	t.Helper()
	objs := make([]runtime.Object, len(istios))
	for i, o := range istios {
		objs[i] = o
	}
	idx := Indexer(t, objs...)
	return &Istios{t: t, Client: fake.NewClientset(objs...), Indexer: idx, Lister: listers.NewIstioLister(idx)}
}

// Get is the resource as the client holds it now.
func (s *Istios) Get(key cache.ObjectName) *v1alpha2.Istio {
	s.t.Helper()
	i, err := s.Client.OperatorV1alpha2().Istios(key.Namespace).Get(context.Background(), key.Name, metav1.GetOptions{})
	if err != nil {
		s.t.Fatal(err)
	}
	return i
}

// Condition is a condition of the resource as the client holds it.
func (s *Istios) Condition(key cache.ObjectName, condType string) *metav1.Condition {
	s.t.Helper()
	return meta.FindStatusCondition(s.Get(key).Status.Conditions, condType)
}

// CatchUp lets the cache deliver what the client holds now.
func (s *Istios) CatchUp(key cache.ObjectName) {
	s.t.Helper()
	if err := s.Indexer.Update(s.Get(key)); err != nil {
		s.t.Fatal(err)
	}
}

// Set replaces the resource in the client and the cache (a user's change,
// or another controller's write, both delivered).
func (s *Istios) Set(istio *v1alpha2.Istio) {
	s.t.Helper()
	if err := s.Client.Tracker().Update(schema.GroupVersionResource{Group: v1alpha2.GroupName, Version: "v1alpha2", Resource: "istios"}, istio, istio.Namespace); err != nil {
		s.t.Fatal(err)
	}
	if err := s.Indexer.Update(istio); err != nil {
		s.t.Fatal(err)
	}
}

// BumpResourceVersions makes every update and patch of the resources give
// them a new resourceVersion, as the API server does; the fake keeps the one
// sent. A controller tells its own last write (status.LastWrites) from a
// stale cache only by a newer version.
func (s *Istios) BumpResourceVersions() {
	react := clienttesting.ObjectReaction(s.Client.Tracker())
	rv := 100
	s.Client.PrependReactor("*", "istios", func(a clienttesting.Action) (bool, runtime.Object, error) {
		if a.GetVerb() != "update" && a.GetVerb() != "patch" {
			return false, nil, nil
		}
		handled, obj, err := react(a)
		if err != nil || obj == nil {
			return handled, obj, err
		}
		m, err := meta.Accessor(obj)
		if err != nil {
			return true, nil, err
		}
		rv++
		m.SetResourceVersion(strconv.Itoa(rv))
		if err := s.Client.Tracker().Update(a.GetResource(), obj, m.GetNamespace()); err != nil {
			return true, nil, err
		}
		return true, obj, nil
	})
}

// StatusWrites counts the status writes (applies to the status subresource).
func (s *Istios) StatusWrites() int {
	return len(Actions(s.Client.Actions(), "patch", "istios", "status"))
}

// Actions are the recorded actions with the verb, on the resource and
// subresource ("" for the object itself; "*" for any).
func Actions(all []clienttesting.Action, verb, resource, subresource string) []clienttesting.Action {
	var out []clienttesting.Action
	for _, a := range all {
		if a.GetVerb() == verb && a.GetResource().Resource == resource && (subresource == "*" || a.GetSubresource() == subresource) {
			out = append(out, a)
		}
	}
	return out
}

// Writes are the recorded actions that change something.
func Writes(all []clienttesting.Action) []clienttesting.Action {
	var out []clienttesting.Action
	for _, a := range all {
		switch a.GetVerb() {
		case "get", "list", "watch":
		default:
			out = append(out, a)
		}
	}
	return out
}

// Recorder records Events for Drain.
func Recorder() *record.FakeRecorder { return record.NewFakeRecorder(100) }

// Drain returns the Events recorded since the last Drain ("Type Reason
// Message" each).
func Drain(r *record.FakeRecorder) []string {
	var out []string
	for {
		select {
		case e := <-r.Events:
			out = append(out, e)
		default:
			return out
		}
	}
}
