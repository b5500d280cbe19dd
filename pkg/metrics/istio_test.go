package metrics

import (
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/cache"

	v1alpha2 "github.com/meshkeeper/istio-operator/pkg/apis/operator/v1alpha2"
	listers "github.com/meshkeeper/istio-operator/pkg/generated/listers/operator/v1alpha2"
)

// istioStatusValues gathers the state and condition gauges through a
// pedantic registry (which also checks them against Describe), keyed
// "state/<state>" and "condition/<type>/<status>".
func istioStatusValues(t *testing.T) map[string]float64 {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(istioStatus)
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, f := range families {
		for _, m := range f.GetMetric() {
			l := map[string]string{}
			for _, p := range m.GetLabel() {
				l[p.GetName()] = p.GetValue()
			}
			switch f.GetName() {
			case "istio_operator_state":
				out["state/"+l["state"]] = m.GetGauge().GetValue()
			case "istio_operator_condition":
				out["condition/"+l["type"]+"/"+l["status"]] = m.GetGauge().GetValue()
			case "istio_operator_canary_upgrade_phase":
				out["upgrade/"+l["phase"]] = m.GetGauge().GetValue()
			default:
				t.Errorf("unexpected family %s", f.GetName())
			}
		}
	}
	return out
}

// checkIstioStatus checks that every series exists and exactly the wanted
// ones are 1.
func checkIstioStatus(t *testing.T, ones ...string) {
	t.Helper()
	got := istioStatusValues(t)
	if want := len(States) + 3*len(ConditionTypes) + len(UpgradePhases); len(got) != want {
		t.Errorf("%d series, want %d: %v", len(got), want, got)
	}
	want := map[string]bool{}
	for _, k := range ones {
		want[k] = true
		if _, ok := got[k]; !ok {
			t.Errorf("no series %s", k)
		}
	}
	for k, v := range got {
		if v != oneIf(want[k]) {
			t.Errorf("%s = %v, want %v", k, v, oneIf(want[k]))
		}
	}
}

func istioObject(ns, name string, created time.Time, state v1alpha2.State, conds map[string]metav1.ConditionStatus) *v1alpha2.Istio {
	i := &v1alpha2.Istio{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, CreationTimestamp: metav1.NewTime(created)}}
	i.Status.State = state
	for typ, s := range conds {
		i.Status.Conditions = append(i.Status.Conditions, metav1.Condition{Type: typ, Status: s})
	}
	return i
}

func TestIstioStatusReportsTheServedResource(t *testing.T) {
	InstallIstioStatusMetrics()
	t.Run("nothing served", func(t *testing.T) { checkIstioStatus(t) })

	indexer := cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{cache.NamespaceIndex: cache.MetaNamespaceIndexFunc})
	lister := listers.NewIstioLister(indexer)
	stop := ServeIstioStatus(lister, "kyma-system")
	defer stop()
	t.Run("no resource yet", func(t *testing.T) { checkIstioStatus(t) })

	now := time.Now()
	served := istioObject("kyma-system", "default", now.Add(-time.Hour), v1alpha2.StateProcessing, map[string]metav1.ConditionStatus{
		v1alpha2.ConditionReady:                        metav1.ConditionFalse,
		v1alpha2.ConditionInstalled:                    metav1.ConditionTrue,
		v1alpha2.ConditionProxySidecarRestartSucceeded: metav1.ConditionUnknown,
	})
	served.Status.Upgrade = &v1alpha2.UpgradeStatus{Phase: v1alpha2.UpgradePhaseMovingWorkloads}
	for _, i := range []*v1alpha2.Istio{
		// Served: the oldest in the namespace.
		served,
		// Same age, later name; and a younger one: both get OlderCRExists.
		istioObject("kyma-system", "second", now.Add(-time.Hour), v1alpha2.StateWarning, nil),
		istioObject("kyma-system", "newer", now, v1alpha2.StateWarning, nil),
		// Older, but outside the operator's namespace: not served.
		istioObject("other", "default", now.Add(-2*time.Hour), v1alpha2.StateError, nil),
	} {
		if err := indexer.Add(i); err != nil {
			t.Fatal(err)
		}
	}
	t.Run("the oldest in the namespace", func(t *testing.T) {
		checkIstioStatus(t, "state/Processing",
			"condition/Ready/False", "condition/Installed/True", "condition/ProxySidecarRestartSucceeded/Unknown", "upgrade/MovingWorkloads")
	})
	// Deleted during the upgrade: status.upgrade stays for the removal of
	// the sidecars, but no upgrade runs.
	deleted := served.DeepCopy()
	deleted.DeletionTimestamp = &metav1.Time{Time: now}
	if err := indexer.Update(deleted); err != nil {
		t.Fatal(err)
	}
	t.Run("deleted during an upgrade", func(t *testing.T) {
		checkIstioStatus(t, "state/Processing",
			"condition/Ready/False", "condition/Installed/True", "condition/ProxySidecarRestartSucceeded/Unknown")
	})

	// A new leader term replaces the source; the previous term's stop must
	// not clear it.
	next := listers.NewIstioLister(cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{cache.NamespaceIndex: cache.MetaNamespaceIndexFunc}))
	stopNext := ServeIstioStatus(next, "kyma-system")
	stop()
	if istioStatus.source.Load() == nil {
		t.Error("an earlier term's stop cleared the current source")
	}
	stopNext()
	t.Run("stopped", func(t *testing.T) { checkIstioStatus(t) })
}
