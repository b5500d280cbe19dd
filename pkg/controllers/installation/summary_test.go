package installation

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/validation/field"
	clienttesting "k8s.io/client-go/testing"

	v1alpha2 "github.com/meshkeeper/istio-operator/pkg/apis/operator/v1alpha2"
	"github.com/meshkeeper/istio-operator/pkg/controllers/controllertest"
	"github.com/meshkeeper/istio-operator/pkg/istioclient"
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
		"a platform workload's failed restart is an error": {
			conds:     []metav1.Condition{cond(v1alpha2.ConditionProxySidecarRestartSucceeded, metav1.ConditionFalse, v1alpha2.ReasonProxySidecarRestartFailed, 2)},
			wantState: v1alpha2.StateError, wantReason: v1alpha2.ReasonWaitingForDependency, wantInMsg: "ProxySidecarRestartSucceeded: ProxySidecarRestartFailed message",
		},
		"a customer workload's failed restart is a warning": {
			conds:     []metav1.Condition{cond(v1alpha2.ConditionProxySidecarRestartSucceeded, metav1.ConditionFalse, v1alpha2.ReasonProxySidecarRestartPartiallySucceeded, 2)},
			wantState: v1alpha2.StateWarning, wantReason: v1alpha2.ReasonWaitingForDependency, wantInMsg: "ProxySidecarRestartSucceeded: ProxySidecarRestartPartiallySucceeded message",
		},
		"restarts waiting for a maintenance window are planned work": {
			conds:     []metav1.Condition{cond(v1alpha2.ConditionProxySidecarRestartSucceeded, metav1.ConditionFalse, v1alpha2.ReasonProxySidecarRestartWaitingForWindow, 2)},
			wantState: v1alpha2.StateProcessing, wantReason: v1alpha2.ReasonWaitingForDependency,
			wantInMsg: "is installed, but sidecar proxy restarts wait for the maintenance window (ProxySidecarRestartSucceeded: ProxySidecarRestartWaitingForWindow message)",
		},
		"a warning beats restarts waiting for a maintenance window": {
			conds: []metav1.Condition{
				cond(v1alpha2.ConditionProxySidecarRestartSucceeded, metav1.ConditionFalse, v1alpha2.ReasonProxySidecarRestartWaitingForWindow, 2),
				cond(v1alpha2.ConditionPeerAuthenticationReady, metav1.ConditionFalse, v1alpha2.ReasonPeerAuthenticationWeakened, 2),
			},
			wantState: v1alpha2.StateWarning, wantReason: v1alpha2.ReasonWaitingForDependency, wantInMsg: "wait for the maintenance window",
		},
		"an invalid maintenance window is an error": {
			conds:     []metav1.Condition{cond(v1alpha2.ConditionProxySidecarRestartSucceeded, metav1.ConditionFalse, v1alpha2.ReasonProxySidecarMaintenanceWindowInvalid, 2)},
			wantState: v1alpha2.StateError, wantReason: v1alpha2.ReasonWaitingForDependency, wantInMsg: "ProxySidecarRestartSucceeded: ProxySidecarMaintenanceWindowInvalid message",
		},
		"gateway restart in progress": {
			conds:     []metav1.Condition{cond(v1alpha2.ConditionIngressGatewayReady, metav1.ConditionFalse, v1alpha2.ReasonIngressGatewayRestartInProgress, 2)},
			wantState: v1alpha2.StateProcessing, wantReason: v1alpha2.ReasonWaitingForDependency,
		},
		"gateway restart failed": {
			conds:     []metav1.Condition{cond(v1alpha2.ConditionIngressGatewayReady, metav1.ConditionFalse, v1alpha2.ReasonIngressGatewayRestartFailed, 2)},
			wantState: v1alpha2.StateError, wantReason: v1alpha2.ReasonWaitingForDependency,
		},
		"weakened mTLS is a warning": {
			conds:     []metav1.Condition{cond(v1alpha2.ConditionPeerAuthenticationReady, metav1.ConditionFalse, v1alpha2.ReasonPeerAuthenticationWeakened, 2)},
			wantState: v1alpha2.StateWarning, wantReason: v1alpha2.ReasonWaitingForDependency,
		},
		"PeerAuthentication failed": {
			conds:     []metav1.Condition{cond(v1alpha2.ConditionPeerAuthenticationReady, metav1.ConditionFalse, v1alpha2.ReasonPeerAuthenticationFailed, 2)},
			wantState: v1alpha2.StateError, wantReason: v1alpha2.ReasonWaitingForDependency,
		},
		"waiting conditions are pending": {
			conds:     []metav1.Condition{cond(v1alpha2.ConditionPeerAuthenticationReady, metav1.ConditionUnknown, v1alpha2.ReasonWaitingForInstallation, 2)},
			wantState: v1alpha2.StateProcessing, wantReason: v1alpha2.ReasonWaitingForDependency, wantInMsg: "PeerAuthenticationReady: WaitingForInstallation message",
		},
		"a stale failure is pending, not an error": {
			conds:     []metav1.Condition{cond(v1alpha2.ConditionIngressGatewayReady, metav1.ConditionFalse, v1alpha2.ReasonIngressGatewayMissing, 1)},
			wantState: v1alpha2.StateProcessing, wantReason: v1alpha2.ReasonWaitingForDependency, wantInMsg: "IngressGatewayReady has not yet observed generation 2",
		},
		"conditions of other types are not read": {
			conds:     []metav1.Condition{cond("SomethingElse", metav1.ConditionFalse, "Broken", 2)},
			wantState: v1alpha2.StateReady, wantReason: v1alpha2.ReasonReconcileSucceeded,
		},
		"spec warnings beside a waiting dependency": {
			conds:     []metav1.Condition{cond(v1alpha2.ConditionProxySidecarRestartSucceeded, metav1.ConditionFalse, v1alpha2.ReasonProxySidecarRestartInProgress, 2)},
			warnings:  field.ErrorList{field.Duplicate(field.NewPath("spec", "config", "authorizers").Index(1).Child("name"), "a")},
			wantState: v1alpha2.StateWarning, wantReason: v1alpha2.ReasonWaitingForDependency,
			wantInMsg: "ProxySidecarRestartInProgress message; the Istio resource is misconfigured: spec.config.authorizers[1].name",
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
	if !relevantChange(meta(3, "10", map[string]string{"a": "1"}), meta(3, "11", map[string]string{"a": "2"})) {
		t.Error("a changed label was missed")
	}
	annotated := meta(3, "11", nil)
	annotated.Annotations = map[string]string{"kubectl.kubernetes.io/restartedAt": "now"}
	if !relevantChange(meta(3, "10", nil), annotated) {
		t.Error("an added annotation was missed")
	}
	if relevantChange(meta(0, "10", nil), meta(0, "10", nil)) {
		t.Error("a resync of an unchanged object counted as drift")
	}
	// Whatever it is, it is looked at.
	if !relevantChange("not an object", meta(3, "10", nil)) {
		t.Error("an update the controller cannot read was dropped")
	}
}

// TestSummaryWrite: with nothing to apply, the summary of the other
// controllers' conditions is written, an Event comes with a new Warning or
// Error, and nothing is written again while it holds.
func TestSummaryWrite(t *testing.T) {
	for name, tc := range map[string]struct {
		conds       []metav1.Condition
		spec        v1alpha2.IstioSpec
		live        []*unstructured.Unstructured
		wantState   v1alpha2.State
		reason      string
		description string
		installed   string
		version     string
		wantEvent   bool
	}{
		"nothing installed by the operator": {
			wantState: v1alpha2.StateReady, reason: v1alpha2.ReasonReconcileSucceeded,
			description: "Istio 1.31.1 is installed and every controller reports success.",
		},
		"dependents in progress": {
			conds: []metav1.Condition{cond(v1alpha2.ConditionIngressGatewayReady, metav1.ConditionFalse, v1alpha2.ReasonIngressGatewayRestartInProgress, 2)},
			live:  []*unstructured.Unstructured{istiod(istioclient.Version, renderedHash)}, version: istioclient.Version,
			wantState: v1alpha2.StateProcessing, reason: v1alpha2.ReasonWaitingForDependency,
			description: "Istio 1.31.1 is installed, but IngressGatewayReady: IngressGatewayRestartInProgress message.",
		},
		"a dependent failed": {
			conds: []metav1.Condition{cond(v1alpha2.ConditionPeerAuthenticationReady, metav1.ConditionFalse, v1alpha2.ReasonPeerAuthenticationFailed, 2)},
			live:  []*unstructured.Unstructured{istiod(istioclient.Version, renderedHash)}, version: istioclient.Version,
			wantState: v1alpha2.StateError, reason: v1alpha2.ReasonWaitingForDependency, wantEvent: true,
			description: "Istio 1.31.1 is installed, but PeerAuthenticationReady: PeerAuthenticationFailed message.",
		},
		"spec warnings": {
			spec: v1alpha2.IstioSpec{Config: v1alpha2.Config{Authorizers: []*v1alpha2.Authorizer{{Name: "a", Port: 1}, {Name: "a", Port: 2}}}},
			live: []*unstructured.Unstructured{istiod(istioclient.Version, renderedHash)}, version: istioclient.Version,
			wantState: v1alpha2.StateWarning, reason: v1alpha2.ReasonIstioCustomResourceMisconfigured, wantEvent: true,
			description: "Istio 1.31.1 is installed, but the Istio resource is misconfigured: spec.config.authorizers[1].name: " +
				"Duplicate value: \"a (first defined at index 0; this one is ignored)\".",
		},
		"foreign control planes beside": {
			live:      []*unstructured.Unstructured{istiod(istioclient.Version, renderedHash), foreignIstiod("istio-canary"), foreignIstiod("istio-blue")},
			version:   istioclient.Version,
			wantState: v1alpha2.StateReady, reason: v1alpha2.ReasonReconcileSucceeded,
			description: "Istio 1.31.1 is installed and every controller reports success.",
			installed: "Istio 1.31.1 is installed with the configuration of generation 2. Control planes this operator did not install run beside it and are left untouched: " +
				"Deployment istio-blue/istiod (revision default, Istio 1.30.2, installed by Helm), Deployment istio-canary/istiod (revision default, Istio 1.30.2, installed by Helm).",
		},
	} {
		t.Run(name, func(t *testing.T) {
			istio := served(2, tc.conds...)
			istio.Spec = tc.spec
			f := newFixture(t, istio)
			f.live(tc.live...)
			after, err := f.sync(key)
			if err != nil || after != ResyncInterval {
				t.Fatalf("sync = %v, %v", after, err)
			}
			st := f.get(key).Status
			if st.State != tc.wantState || st.Description != tc.description || st.InstalledVersion != tc.version || st.ObservedGeneration != 2 {
				t.Errorf("status %s %q, version %q, observed %d; want %s %q, version %q", st.State, st.Description, st.InstalledVersion,
					st.ObservedGeneration, tc.wantState, tc.description, tc.version)
			}
			ready := f.condition(key, v1alpha2.ConditionReady)
			if ready == nil || ready.Reason != tc.reason || ready.Message != tc.description {
				t.Errorf("Ready %+v", ready)
			}
			if tc.installed == "" {
				tc.installed = "Istio 1.31.1 is installed with the configuration of generation 2."
			}
			if c := f.condition(key, v1alpha2.ConditionInstalled); c == nil || c.Status != metav1.ConditionTrue || c.Message != tc.installed {
				t.Errorf("Installed %+v, want message %q", c, tc.installed)
			}
			var want []string
			if tc.wantEvent {
				want = []string{"Warning " + tc.reason + " " + tc.description}
			}
			if e := f.events(); !slices.Equal(e, want) {
				t.Errorf("Events %q, want %q", e, want)
			}

			f.istios.CatchUp(key)
			if _, err := f.sync(key); err != nil {
				t.Fatal(err)
			}
			if n := f.istios.StatusWrites(); n != 1 {
				t.Errorf("%d status writes, want 1", n)
			}
			if e := f.events(); len(e) != 0 {
				t.Errorf("Events again: %q", e)
			}
		})
	}
}

// TestSummaryWrittenToTheVersionItDescribes: the summary of the other
// controllers' conditions is applied with the resourceVersion it was
// computed from, the controller's own reports without one.
func TestSummaryWrittenToTheVersionItDescribes(t *testing.T) {
	f := newFixture(t, served(2))
	f.planner.plan = pruning()
	if _, err := f.sync(key); err != nil {
		t.Fatal(err)
	}
	var versions []string
	for _, a := range controllertest.Actions(f.istios.Client.Actions(), "patch", "istios", "status") {
		var i v1alpha2.Istio
		if err := json.Unmarshal(a.(clienttesting.PatchAction).GetPatch(), &i); err != nil {
			t.Fatal(err)
		}
		versions = append(versions, i.ResourceVersion)
	}
	// The progress write (the fake numbers writes from 101) before the summary.
	if !slices.Equal(versions, []string{"", "101"}) {
		t.Errorf("status applies with resourceVersions %q, want none for the progress, then the progress write's", versions)
	}
}

func TestSummaryWriteFailureIsRetried(t *testing.T) {
	f := newFixture(t, served(2))
	f.istios.Client.PrependReactor("patch", "istios", func(clienttesting.Action) (bool, runtime.Object, error) {
		return true, nil, apierrors.NewConflict(schema.GroupResource{Resource: "istios"}, "default", errBoom)
	})
	after, err := f.sync(key)
	if !apierrors.IsConflict(err) || after != 0 {
		t.Fatalf("sync = %v, %v; want the conflict, retried", after, err)
	}
	if e := f.events(); len(e) != 0 {
		t.Errorf("Events for a status not written: %q", e)
	}
}
