package cluster_test

import (
	"testing"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/clock"

	v1alpha2 "github.com/meshkeeper/istio-operator/pkg/apis/operator/v1alpha2"
	"github.com/meshkeeper/istio-operator/pkg/controllers/status"
	"github.com/meshkeeper/istio-operator/test/cluster"
	"github.com/meshkeeper/istio-operator/test/operatortest"
)

// The installation controller's Ready summarises the other controllers'
// conditions. The API server must refuse a summary computed from a version
// of the resource that another controller has written since; otherwise
// Ready=True could stand beside a condition that says otherwise.
func TestDerivedStatusLandsOnlyOnTheVersionItWasComputedFrom(t *testing.T) {
	cluster.InstallIstioCRD(t)
	ns := cluster.Namespace(t, nil)
	read := operatortest.CreateIstio(t, ns, "default", v1alpha2.IstioSpec{})
	ctx := cluster.Context(t)

	gateway := status.NewWriter(operatortest.Client(t), "ingressgateway", clock.RealClock{})
	if _, _, err := gateway.Apply(ctx, read, status.Update{Conditions: []status.Condition{{
		Type: v1alpha2.ConditionIngressGatewayReady, Status: metav1.ConditionFalse,
		Reason: v1alpha2.ReasonIngressGatewayRestartInProgress, Message: "Rolling.",
	}}}); err != nil {
		t.Fatal(err)
	}

	summary := status.Update{
		Conditions: []status.Condition{{Type: v1alpha2.ConditionReady, Status: metav1.ConditionTrue,
			Reason: v1alpha2.ReasonReconcileSucceeded, Message: "Every controller reports success."}},
		DerivedFromCurrent: true,
	}
	installation := status.NewWriter(operatortest.Client(t), "installation", clock.RealClock{})
	if _, wrote, err := installation.Apply(ctx, read, summary); !apierrors.IsConflict(err) || wrote {
		t.Fatalf("summary of a version another controller has written since: wrote=%v err=%v, want a Conflict", wrote, err)
	}

	current, err := operatortest.Client(t).OperatorV1alpha2().Istios(ns).Get(ctx, "default", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	updated, wrote, err := installation.Apply(ctx, current, summary)
	if err != nil || !wrote {
		t.Fatalf("summary of the current version: wrote=%v err=%v", wrote, err)
	}
	for _, typ := range []string{v1alpha2.ConditionReady, v1alpha2.ConditionIngressGatewayReady} {
		if meta.FindStatusCondition(updated.Status.Conditions, typ) == nil {
			t.Errorf("condition %s missing after the summary: %+v", typ, updated.Status.Conditions)
		}
	}
}
