package status

import (
	"context"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/cache"
	clocktesting "k8s.io/utils/clock/testing"

	v1alpha2 "github.com/meshkeeper/istio-operator/pkg/apis/operator/v1alpha2"
	"github.com/meshkeeper/istio-operator/pkg/generated/clientset/versioned/fake"
	listers "github.com/meshkeeper/istio-operator/pkg/generated/listers/operator/v1alpha2"
)

func installed(status metav1.ConditionStatus, reason, msg string, gen int64) metav1.Condition {
	return metav1.Condition{Type: v1alpha2.ConditionInstalled, Status: status, Reason: reason, Message: msg, ObservedGeneration: gen}
}

// gateFor is a gate over a cache holding istio (none when nil) and a fake
// client holding the same.
func gateFor(t *testing.T, istio *v1alpha2.Istio) (*Gate, *fake.Clientset, cache.Indexer) {
	t.Helper()
	client := fake.NewClientset()
	indexer := cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{})
	if istio != nil {
		client = fake.NewClientset(istio)
		if err := indexer.Add(istio); err != nil {
			t.Fatal(err)
		}
	}
	w := NewWriter(client, "test", clocktesting.NewFakePassiveClock(time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)))
	return &Gate{Istios: listers.NewIstioLister(indexer), Writer: w, Conditions: []string{"DependentReady"}, Then: "It acts then."}, client, indexer
}

func TestGateVerdicts(t *testing.T) {
	key := cache.ObjectName{Namespace: "kyma-system", Name: "default"}
	now := metav1.Now()
	current := installed(metav1.ConditionTrue, v1alpha2.ReasonIstioInstallSucceeded, "Installed.", 3)
	for _, tc := range []struct {
		name  string
		istio *v1alpha2.Istio
		want  Verdict
	}{
		{"no resource", nil, Gone},
		{"no Installed condition", withConditions(newIstio()), NotServed},
		{"being deleted", func() *v1alpha2.Istio {
			i := withConditions(newIstio(), current)
			i.DeletionTimestamp = &now
			return i
		}(), Deleting},
		{"installing", withConditions(newIstio(), installed(metav1.ConditionFalse, v1alpha2.ReasonIstioInstalling, "Installing.", 3)), Waiting},
		{"installed at an older generation", withConditions(newIstio(), installed(metav1.ConditionTrue, v1alpha2.ReasonIstioInstallSucceeded, "Installed.", 2)), Waiting},
		{"installed at the current generation", withConditions(newIstio(), current), Proceed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g, client, _ := gateFor(t, tc.istio)
			got, _, err := g.Check(context.Background(), key)
			if err != nil {
				t.Fatal(err)
			}
			if got != tc.want {
				t.Fatalf("verdict %v, want %v", got, tc.want)
			}
			writes := 0
			for _, a := range client.Actions() {
				if a.GetVerb() == "patch" {
					writes++
				}
			}
			if wantWrites := map[bool]int{true: 1, false: 0}[tc.want == Waiting]; writes != wantWrites {
				t.Errorf("%d status writes, want %d", writes, wantWrites)
			}
		})
	}
}

func withConditions(i *v1alpha2.Istio, conds ...metav1.Condition) *v1alpha2.Istio {
	i.Status.Conditions = conds
	i.ResourceVersion = "10"
	return i
}

// An install reports progress in the Installed condition's message every
// second; the dependents' waiting conditions must not follow each step.
func TestWaitingIsNotRewrittenAsTheInstallProgresses(t *testing.T) {
	key := cache.ObjectName{Namespace: "kyma-system", Name: "default"}
	istio := withConditions(newIstio(), installed(metav1.ConditionFalse, v1alpha2.ReasonIstioInstalling, "Installing Istio 1.31.1: istiod.", 3))
	g, client, indexer := gateFor(t, istio)
	if v, _, err := g.Check(context.Background(), key); err != nil || v != Waiting {
		t.Fatalf("verdict %v, %v", v, err)
	}
	written, err := client.OperatorV1alpha2().Istios(key.Namespace).Get(context.Background(), key.Name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	cond := meta.FindStatusCondition(written.Status.Conditions, "DependentReady")
	if cond == nil || cond.Reason != v1alpha2.ReasonWaitingForInstallation || !strings.Contains(cond.Message, "IstioInstalling") ||
		!strings.HasSuffix(cond.Message, "It acts then.") {
		t.Fatalf("waiting condition %+v", cond)
	}

	// The next progress step: only the Installed message changes.
	next := written.DeepCopy()
	meta.SetStatusCondition(&next.Status.Conditions, installed(metav1.ConditionFalse, v1alpha2.ReasonIstioInstalling, "Installing Istio 1.31.1: ingress gateway.", 3))
	next.ResourceVersion = "999"
	if err := indexer.Update(next); err != nil {
		t.Fatal(err)
	}
	client.ClearActions()
	if v, _, err := g.Check(context.Background(), key); err != nil || v != Waiting {
		t.Fatalf("verdict %v, %v", v, err)
	}
	if n := len(client.Actions()); n != 0 {
		t.Errorf("%d writes for a progress step, want none: %v", n, client.Actions())
	}
}

func TestLastWrites(t *testing.T) {
	key := cache.ObjectName{Namespace: "kyma-system", Name: "default"}
	at := func(rv string, uid string) *v1alpha2.Istio {
		i := newIstio()
		i.ResourceVersion, i.UID = rv, types.UID("uid-"+uid)
		return i
	}
	m := NewLastWrites((*v1alpha2.Istio).DeepCopy)
	m.Wrote(at("12", "1"))

	if got := m.Newest(key, at("11", "1")); got.ResourceVersion != "12" {
		t.Errorf("older cache: got %s, want the write (12)", got.ResourceVersion)
	}
	if got := m.Newest(key, nil); got == nil || got.ResourceVersion != "12" {
		t.Errorf("empty cache: got %v, want the write", got)
	}
	if got := m.Newest(key, at("13", "2")); got.ResourceVersion != "13" {
		t.Errorf("a recreated resource: got %s, want the cached one", got.ResourceVersion)
	}
	// Newest let go of the write above: an older cache now reads as cached.
	if got := m.Newest(key, at("11", "1")); got.ResourceVersion != "11" {
		t.Errorf("after letting go: got %s, want the cache (11)", got.ResourceVersion)
	}

	m.Wrote(at("20", "1"))
	m.Seen(at("19", "1"), false)
	if got := m.Newest(key, at("19", "1")); got.ResourceVersion != "20" {
		t.Errorf("an older event must not let go of the write: got %s", got.ResourceVersion)
	}
	m.Seen(at("20", "1"), false)
	if got := m.Newest(key, at("19", "1")); got.ResourceVersion != "19" {
		t.Errorf("the delivered write is let go of: got %s", got.ResourceVersion)
	}
	m.Wrote(at("30", "1"))
	m.Seen(at("5", "1"), true)
	if got := m.Newest(key, nil); got != nil {
		t.Errorf("after a delete: got %v, want missing", got)
	}

	// Not comparable versions are never newer.
	m.Wrote(at("x", "1"))
	if got := m.Newest(key, at("7", "1")); got.ResourceVersion != "7" {
		t.Errorf("non-numeric version: got %s", got.ResourceVersion)
	}
}
