package status

import (
	"context"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	clienttesting "k8s.io/client-go/testing"
	clocktesting "k8s.io/utils/clock/testing"
	"k8s.io/utils/ptr"

	v1alpha2 "github.com/meshkeeper/istio-operator/pkg/apis/operator/v1alpha2"
	"github.com/meshkeeper/istio-operator/pkg/generated/clientset/versioned/fake"
)

func newIstio() *v1alpha2.Istio {
	return &v1alpha2.Istio{ObjectMeta: metav1.ObjectMeta{
		Name: "default", Namespace: "kyma-system", Generation: 3, UID: "uid-1",
	}}
}

func get(t *testing.T, c *fake.Clientset) *v1alpha2.Istio {
	t.Helper()
	i, err := c.OperatorV1alpha2().Istios("kyma-system").Get(context.Background(), "default", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return i
}

func applies(c *fake.Clientset) int {
	n := 0
	for _, a := range c.Actions() {
		if a.GetVerb() == "patch" && a.GetSubresource() == "status" {
			if p, ok := a.(clienttesting.PatchAction); ok && string(p.GetPatchType()) == "application/apply-patch+yaml" {
				n++
			}
		}
	}
	return n
}

func TestApplyWritesOnlyChanges(t *testing.T) {
	client := fake.NewClientset(newIstio())
	clk := clocktesting.NewFakePassiveClock(time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC))
	w := NewWriter(client, "installation", clk)
	ctx := context.Background()

	installed := Condition{Type: v1alpha2.ConditionInstalled, Status: metav1.ConditionTrue,
		Reason: v1alpha2.ReasonIstioInstallSucceeded, Message: "Istio 1.31.1 is installed."}
	_, wrote, err := w.Apply(ctx, get(t, client), Update{
		Conditions:         []Condition{installed},
		State:              ptr.To(v1alpha2.StateReady),
		Description:        ptr.To("Istio is installed."),
		InstalledVersion:   ptr.To("1.31.1"),
		ObservedGeneration: true,
	})
	if err != nil || !wrote {
		t.Fatalf("first apply: wrote=%v err=%v", wrote, err)
	}
	got := get(t, client)
	c := meta.FindStatusCondition(got.Status.Conditions, v1alpha2.ConditionInstalled)
	if c == nil || c.Status != metav1.ConditionTrue || c.ObservedGeneration != 3 || !c.LastTransitionTime.Time.Equal(clk.Now()) {
		t.Fatalf("condition %+v", c)
	}
	if got.Status.State != v1alpha2.StateReady || got.Status.InstalledVersion != "1.31.1" || got.Status.ObservedGeneration != 3 {
		t.Fatalf("status %+v", got.Status)
	}

	// The same update again writes nothing.
	_, wrote, err = w.Apply(ctx, got, Update{Conditions: []Condition{installed}, State: ptr.To(v1alpha2.StateReady),
		Description: ptr.To("Istio is installed."), InstalledVersion: ptr.To("1.31.1"), ObservedGeneration: true})
	if err != nil || wrote {
		t.Fatalf("unchanged apply: wrote=%v err=%v", wrote, err)
	}
	if n := applies(client); n != 1 {
		t.Fatalf("%d status applies, want 1", n)
	}

	// A new message with the same status keeps the transition time.
	clk.SetTime(clk.Now().Add(time.Hour))
	installed.Message = "Istio 1.31.1 is installed and up to date."
	if _, _, err := w.Apply(ctx, get(t, client), Update{Conditions: []Condition{installed}, State: ptr.To(v1alpha2.StateReady),
		Description: ptr.To("Istio is installed."), InstalledVersion: ptr.To("1.31.1"), ObservedGeneration: true}); err != nil {
		t.Fatal(err)
	}
	c = meta.FindStatusCondition(get(t, client).Status.Conditions, v1alpha2.ConditionInstalled)
	if c.Message != installed.Message || c.LastTransitionTime.Time.Equal(clk.Now()) {
		t.Fatalf("message not updated or transition time moved: %+v", c)
	}

	// A status change moves it.
	installed.Status, installed.Reason = metav1.ConditionFalse, v1alpha2.ReasonIstioInstallUninstallFailed
	if _, _, err := w.Apply(ctx, get(t, client), Update{Conditions: []Condition{installed}, State: ptr.To(v1alpha2.StateError),
		Description: ptr.To("Installing Istio failed."), InstalledVersion: ptr.To("1.31.1"), ObservedGeneration: true}); err != nil {
		t.Fatal(err)
	}
	c = meta.FindStatusCondition(get(t, client).Status.Conditions, v1alpha2.ConditionInstalled)
	if c.Status != metav1.ConditionFalse || !c.LastTransitionTime.Time.Equal(clk.Now()) {
		t.Fatalf("status change not recorded: %+v", c)
	}
}

func TestApplyAgainWhenGenerationMoves(t *testing.T) {
	istio := newIstio()
	client := fake.NewClientset(istio)
	w := NewWriter(client, "peerauthentication", clocktesting.NewFakePassiveClock(time.Now()))
	cond := Condition{Type: v1alpha2.ConditionPeerAuthenticationReady, Status: metav1.ConditionTrue,
		Reason: v1alpha2.ReasonPeerAuthenticationApplied, Message: "mTLS is STRICT mesh-wide."}
	if _, _, err := w.Apply(context.Background(), get(t, client), Update{Conditions: []Condition{cond}}); err != nil {
		t.Fatal(err)
	}
	current := get(t, client)
	if !UpToDate(current, Update{Conditions: []Condition{cond}}) {
		t.Fatal("not up to date right after the apply")
	}
	current.Generation++
	if UpToDate(current, Update{Conditions: []Condition{cond}}) {
		t.Fatal("a condition observed at an older generation counts as up to date")
	}
}

// Each controller applies only its own condition; the others stay.
func TestOwnersDoNotOverwriteEachOther(t *testing.T) {
	client := fake.NewClientset(newIstio())
	clk := clocktesting.NewFakePassiveClock(time.Now())
	ctx := context.Background()
	owners := map[string]string{
		"installation":       v1alpha2.ConditionInstalled,
		"proxysidecar":       v1alpha2.ConditionProxySidecarRestartSucceeded,
		"ingressgateway":     v1alpha2.ConditionIngressGatewayReady,
		"peerauthentication": v1alpha2.ConditionPeerAuthenticationReady,
	}
	for controller, typ := range owners {
		w := NewWriter(client, controller, clk)
		if _, _, err := w.Apply(ctx, get(t, client), Update{Conditions: []Condition{{
			Type: typ, Status: metav1.ConditionTrue, Reason: "Done", Message: controller + " is done.",
		}}}); err != nil {
			t.Fatalf("%s: %v", controller, err)
		}
	}
	// One owner changes its condition; the others must survive.
	w := NewWriter(client, "ingressgateway", clk)
	if _, _, err := w.Apply(ctx, get(t, client), Update{Conditions: []Condition{{
		Type: v1alpha2.ConditionIngressGatewayReady, Status: metav1.ConditionFalse, Reason: "Rolling", Message: "Rolling.",
	}}}); err != nil {
		t.Fatal(err)
	}
	got := get(t, client).Status.Conditions
	if len(got) != len(owners) {
		t.Fatalf("%d conditions after the owners applied, want %d: %+v", len(got), len(owners), got)
	}
	for controller, typ := range owners {
		c := meta.FindStatusCondition(got, typ)
		if c == nil {
			t.Errorf("%s's condition %s is gone", controller, typ)
		}
	}
	if c := meta.FindStatusCondition(got, v1alpha2.ConditionIngressGatewayReady); c.Status != metav1.ConditionFalse {
		t.Errorf("ingress gateway condition not updated: %+v", c)
	}
	if w.FieldManager() != "istio-operator-ingressgateway" {
		t.Errorf("field manager %s", w.FieldManager())
	}
}

// A sync right after its own write sees the write, not the stale cache.
func TestNewestPrefersOwnWriteUntilTheCacheCatchesUp(t *testing.T) {
	stale := newIstio()
	stale.ResourceVersion = "5"
	client := fake.NewClientset(stale)
	w := NewWriter(client, "installation", clocktesting.NewFakePassiveClock(time.Now()))
	written, wrote, err := w.Apply(context.Background(), get(t, client), Update{State: ptr.To(v1alpha2.StateReady)})
	if err != nil || !wrote {
		t.Fatalf("apply: %v %v", wrote, err)
	}
	written.ResourceVersion = "6" // the fake tracker does not bump versions on apply
	w.Remember(written)
	if got := w.Newest(stale); got.Status.State != v1alpha2.StateReady {
		t.Fatalf("Newest returned the stale cache (state %q)", got.Status.State)
	}
	caughtUp := written.DeepCopy()
	caughtUp.ResourceVersion = "7"
	caughtUp.Status.State = v1alpha2.StateWarning
	if got := w.Newest(caughtUp); got.Status.State != v1alpha2.StateWarning {
		t.Fatalf("Newest ignored a newer cache (state %q)", got.Status.State)
	}
	if !newer("12", "9") || newer("9", "12") || newer("x", "1") || newer("10", "9") == newer("9", "10") {
		t.Error("resource versions compared wrongly")
	}
}
