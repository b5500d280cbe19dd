package metrics

import (
	"sync"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"

	v1alpha2 "github.com/meshkeeper/istio-operator/pkg/apis/operator/v1alpha2"
	listers "github.com/meshkeeper/istio-operator/pkg/generated/listers/operator/v1alpha2"
)

// ConditionTypes are the condition types whose series exist from the start.
var ConditionTypes = []string{
	v1alpha2.ConditionReady,
	v1alpha2.ConditionInstalled,
	v1alpha2.ConditionProxySidecarRestartSucceeded,
	v1alpha2.ConditionIngressGatewayReady,
	v1alpha2.ConditionIngressTargetingUserResourceFound,
	v1alpha2.ConditionPeerAuthenticationReady,
	v1alpha2.ConditionCanaryUpgrade,
	v1alpha2.ConditionProxySidecarsOnRevision,
}

// UpgradePhases are the canary upgrade phases whose series exist from the
// start.
var UpgradePhases = []v1alpha2.UpgradePhase{
	v1alpha2.UpgradePhaseInstallingRevision, v1alpha2.UpgradePhaseMovingWorkloads, v1alpha2.UpgradePhaseRemovingRevision,
	v1alpha2.UpgradePhaseRollingBack, v1alpha2.UpgradePhaseRemovingNewRevision,
}

// States are the states whose series exist from the start.
var States = []v1alpha2.State{
	v1alpha2.StateReady, v1alpha2.StateProcessing, v1alpha2.StateError, v1alpha2.StateDeleting, v1alpha2.StateWarning,
}

var conditionStatuses = []metav1.ConditionStatus{metav1.ConditionTrue, metav1.ConditionFalse, metav1.ConditionUnknown}

var (
	stateDesc = prometheus.NewDesc(Namespace+"_state",
		"State of the served Istio resource: 1 for its current state, 0 for the others; all 0 while none is served.",
		[]string{"state"}, nil)
	conditionDesc = prometheus.NewDesc(Namespace+"_condition",
		"Conditions of the served Istio resource: 1 for the current status of each type, 0 for the other statuses.",
		[]string{"type", "status"}, nil)
	upgradeDesc = prometheus.NewDesc(Namespace+"_canary_upgrade_phase",
		"Phase of the canary upgrade in progress (status.upgrade.phase): 1 for the current phase, 0 for the others; all 0 while none runs or the resource is deleted.",
		[]string{"phase"}, nil)

	istioStatus     = &istioStatusCollector{}
	istioStatusOnce sync.Once
)

// istioStatusCollector reports the served Istio resource's status as the
// informer cache holds it, read at scrape time: nothing is recorded on the
// controllers' paths, and the gauges cannot drift from the status.
type istioStatusCollector struct {
	source atomic.Pointer[istioSource]
}

type istioSource struct {
	lister    listers.IstioLister
	namespace string
}

// InstallIstioStatusMetrics registers the state and condition gauges, all 0
// until ServeIstioStatus gives them a resource to report: a standby replica
// reports zeros.
func InstallIstioStatusMetrics() {
	istioStatusOnce.Do(func() { Registry().MustRegister(istioStatus) })
}

// ServeIstioStatus makes the gauges report the Istio resource the operator
// serves in namespace, as lister sees it, until stop is called.
func ServeIstioStatus(lister listers.IstioLister, namespace string) (stop func()) {
	src := &istioSource{lister: lister, namespace: namespace}
	istioStatus.source.Store(src)
	// A later caller (a new leader term) has replaced src: leave it.
	return func() { istioStatus.source.CompareAndSwap(src, nil) }
}

func (c *istioStatusCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- stateDesc
	ch <- conditionDesc
	ch <- upgradeDesc
}

func (c *istioStatusCollector) Collect(ch chan<- prometheus.Metric) {
	var status v1alpha2.IstioStatus
	deleting := false
	if src := c.source.Load(); src != nil {
		if istio := src.served(); istio != nil {
			status, deleting = istio.Status, istio.DeletionTimestamp != nil
		}
	}
	for _, s := range States {
		ch <- prometheus.MustNewConstMetric(stateDesc, prometheus.GaugeValue, oneIf(status.State == s), string(s))
	}
	current := make(map[string]metav1.ConditionStatus, len(status.Conditions))
	for _, cond := range status.Conditions {
		current[cond.Type] = cond.Status
	}
	for _, t := range ConditionTypes {
		for _, s := range conditionStatuses {
			ch <- prometheus.MustNewConstMetric(conditionDesc, prometheus.GaugeValue, oneIf(current[t] == s), t, string(s))
		}
	}
	for _, p := range UpgradePhases {
		ch <- prometheus.MustNewConstMetric(upgradeDesc, prometheus.GaugeValue, oneIf(!deleting && status.Upgrade != nil && status.Upgrade.Phase == p), string(p))
	}
}

// served is the resource the installation controller serves.
func (s *istioSource) served() *v1alpha2.Istio {
	all, err := s.lister.Istios(s.namespace).List(labels.Everything())
	if err != nil {
		return nil
	}
	return v1alpha2.Served(all)
}

func oneIf(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
