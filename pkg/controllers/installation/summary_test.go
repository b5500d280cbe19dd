package installation

import (
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation/field"

	v1alpha2 "github.com/meshkeeper/istio-operator/pkg/apis/operator/v1alpha2"
)

func cond(typ string, status metav1.ConditionStatus, reason string, gen int64) metav1.Condition {
	return metav1.Condition{Type: typ, Status: status, Reason: reason, Message: reason + " message", ObservedGeneration: gen}
}

func TestSummarize(t *testing.T) {
	cases := map[string]struct {
		conds      []metav1.Condition
		warnings   field.ErrorList
		wantState  v1alpha2.State
		wantReason string
		wantInMsg  string
	}{
		"installed, nothing else reported": {
			wantState: v1alpha2.StateReady, wantReason: v1alpha2.ReasonReconcileSucceeded,
		},
		"every controller succeeded": {
			conds: []metav1.Condition{
				cond(v1alpha2.ConditionProxySidecarRestartSucceeded, metav1.ConditionTrue, v1alpha2.ReasonProxySidecarRestartSucceeded, 2),
				cond(v1alpha2.ConditionIngressGatewayReady, metav1.ConditionTrue, v1alpha2.ReasonIngressGatewayRestartSucceeded, 2),
				cond(v1alpha2.ConditionIngressTargetingUserResourceFound, metav1.ConditionFalse, v1alpha2.ReasonIngressNoUserResourceFound, 2),
				cond(v1alpha2.ConditionPeerAuthenticationReady, metav1.ConditionTrue, v1alpha2.ReasonPeerAuthenticationApplied, 2),
			},
			wantState: v1alpha2.StateReady, wantReason: v1alpha2.ReasonReconcileSucceeded,
		},
		"restart in progress": {
			conds:     []metav1.Condition{cond(v1alpha2.ConditionProxySidecarRestartSucceeded, metav1.ConditionFalse, v1alpha2.ReasonProxySidecarRestartInProgress, 2)},
			wantState: v1alpha2.StateProcessing, wantReason: v1alpha2.ReasonWaitingForDependency, wantInMsg: "ProxySidecarRestartInProgress message",
		},
		"manual restart is a warning": {
			conds:     []metav1.Condition{cond(v1alpha2.ConditionProxySidecarRestartSucceeded, metav1.ConditionFalse, v1alpha2.ReasonProxySidecarManualRestartRequired, 2)},
			wantState: v1alpha2.StateWarning, wantReason: v1alpha2.ReasonWaitingForDependency,
		},
		"error beats warning": {
			conds: []metav1.Condition{
				cond(v1alpha2.ConditionProxySidecarRestartSucceeded, metav1.ConditionFalse, v1alpha2.ReasonProxySidecarManualRestartRequired, 2),
				cond(v1alpha2.ConditionIngressGatewayReady, metav1.ConditionFalse, v1alpha2.ReasonIngressGatewayMissing, 2),
			},
			wantState: v1alpha2.StateError, wantReason: v1alpha2.ReasonWaitingForDependency, wantInMsg: "IngressGatewayMissing message",
		},
		"user EnvoyFilter on the gateway is a warning": {
			conds:     []metav1.Condition{cond(v1alpha2.ConditionIngressTargetingUserResourceFound, metav1.ConditionTrue, v1alpha2.ReasonIngressTargetingUserResource, 2)},
			wantState: v1alpha2.StateWarning, wantReason: v1alpha2.ReasonWaitingForDependency,
		},
		"stale condition is pending": {
			conds:     []metav1.Condition{cond(v1alpha2.ConditionPeerAuthenticationReady, metav1.ConditionTrue, v1alpha2.ReasonPeerAuthenticationApplied, 1)},
			wantState: v1alpha2.StateProcessing, wantReason: v1alpha2.ReasonWaitingForDependency, wantInMsg: "not yet observed generation 2",
		},
		"spec warnings only": {
			warnings:  field.ErrorList{field.Duplicate(field.NewPath("spec", "config", "authorizers").Index(1).Child("name"), "a")},
			wantState: v1alpha2.StateWarning, wantReason: v1alpha2.ReasonIstioCustomResourceMisconfigured, wantInMsg: "spec.config.authorizers[1].name",
		},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			istio := &v1alpha2.Istio{ObjectMeta: metav1.ObjectMeta{Generation: 2}, Status: v1alpha2.IstioStatus{Conditions: tc.conds}}
			state, ready := Summarize(istio, tc.warnings)
			if state != tc.wantState || ready.Reason != tc.wantReason {
				t.Fatalf("state %s reason %s, want %s %s (message %q)", state, ready.Reason, tc.wantState, tc.wantReason, ready.Message)
			}
			wantStatus := metav1.ConditionFalse
			if tc.wantState == v1alpha2.StateReady {
				wantStatus = metav1.ConditionTrue
			}
			if ready.Status != wantStatus || ready.Type != v1alpha2.ConditionReady {
				t.Errorf("Ready condition %+v", ready)
			}
			if !strings.Contains(ready.Message, tc.wantInMsg) {
				t.Errorf("message %q does not contain %q", ready.Message, tc.wantInMsg)
			}
		})
	}
}

func TestRelevantChange(t *testing.T) {
	meta := func(gen int64, rv string, labels map[string]string) *metav1.ObjectMeta {
		return &metav1.ObjectMeta{Generation: gen, ResourceVersion: rv, Labels: labels}
	}
	if relevantChange(meta(3, "10", nil), meta(3, "11", nil)) {
		t.Error("a status-only update of a workload counted as drift")
	}
	if !relevantChange(meta(3, "10", nil), meta(4, "11", nil)) {
		t.Error("a spec change of a workload was missed")
	}
	if !relevantChange(meta(3, "10", map[string]string{"a": "1"}), meta(3, "11", nil)) {
		t.Error("a removed label was missed")
	}
	if !relevantChange(meta(0, "10", nil), meta(0, "11", nil)) {
		t.Error("an update of an object without generation (ConfigMap) was missed")
	}
}
