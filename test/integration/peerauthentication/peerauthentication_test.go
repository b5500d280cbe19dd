// Package peerauthentication tests the PeerAuthentication controller against
// a real API server: it waits for the installation without touching Istio's
// API, then keeps PeerAuthentication istio-system/default at STRICT
// (recreated when deleted, restored when edited, untouched when right) and
// reports users' PeerAuthentications that weaken it.
package peerauthentication

import (
	"context"
	"strings"
	"testing"
	"time"

	securityapi "istio.io/api/security/v1beta1"
	securityv1 "istio.io/client-go/pkg/apis/security/v1"
	securityclient "istio.io/client-go/pkg/clientset/versioned"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/cache"

	v1alpha2 "github.com/meshkeeper/istio-operator/pkg/apis/operator/v1alpha2"
	"github.com/meshkeeper/istio-operator/pkg/controllers/peerauthentication"
	"github.com/meshkeeper/istio-operator/pkg/controllers/status"
	"github.com/meshkeeper/istio-operator/pkg/istioclient"
	"github.com/meshkeeper/istio-operator/test/cluster"
	"github.com/meshkeeper/istio-operator/test/operatortest"
)

const (
	installTimeout = 2 * time.Minute
	// repairTimeout is how fast a deleted or edited PeerAuthentication must
	// be back.
	repairTimeout = 5 * time.Second
	fieldManager  = status.FieldManagerPrefix + peerauthentication.Name
)

func TestMain(m *testing.M) {
	cluster.Main(m, cluster.Options{Nodes: 1})
}

func security(t *testing.T) securityclient.Interface {
	t.Helper()
	c, err := securityclient.NewForConfig(cluster.Current().Config)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func peerAuthRequests(t *testing.T) float64 {
	return operatortest.Requests(t, func(_, resource string) bool {
		return strings.HasPrefix(resource, "peerauthentications")
	})
}

// controllerEvents lists the Events this controller recorded on the resource.
func controllerEvents(t *testing.T, ns string) []corev1.Event {
	t.Helper()
	list, err := cluster.Current().Clientset().CoreV1().Events(ns).List(cluster.Context(t), metav1.ListOptions{
		FieldSelector: "involvedObject.kind=Istio,involvedObject.name=default",
	})
	if err != nil {
		t.Fatal(err)
	}
	var out []corev1.Event
	for _, e := range list.Items {
		if strings.HasSuffix(e.Source.Component, "/"+peerauthentication.Name) {
			out = append(out, e)
		}
	}
	return out
}

// TestWaitsForTheInstallation runs first: Istio's CRDs do not exist yet, so
// any watch on PeerAuthentications would fail.
func TestWaitsForTheInstallation(t *testing.T) {
	cluster.InstallIstioCRD(t)
	ns := cluster.Namespace(t, nil)
	requestsBefore := peerAuthRequests(t)
	op := operatortest.Start(t, ns)
	// An invalid spec keeps Installed False.
	operatortest.CreateIstio(t, ns, "default", v1alpha2.IstioSpec{Config: v1alpha2.Config{
		ProxyStatsMatcher: &v1alpha2.ProxyStatsMatcher{InclusionRegexps: []string{"("}},
	}})
	t.Cleanup(func() { operatortest.DeleteIstio(t, installTimeout, ns, "default") })

	i := operatortest.WaitForState(t, 30*time.Second, ns, "default", v1alpha2.StateError,
		v1alpha2.ConditionPeerAuthenticationReady, metav1.ConditionUnknown, v1alpha2.ReasonWaitingForInstallation)
	c := meta.FindStatusCondition(i.Status.Conditions, v1alpha2.ConditionPeerAuthenticationReady)
	if !strings.Contains(c.Message, v1alpha2.ReasonValidationFailed) || !strings.Contains(c.Message, "istio-system/default") {
		t.Errorf("waiting message %q does not say what it waits for and what follows", c.Message)
	}

	// A resync while waiting changes nothing either.
	before := operatortest.Reconciles(t, peerauthentication.Name)
	cluster.WaitFor(t, 30*time.Second, "a resync reconcile", func(context.Context) (bool, error) {
		op.PeerAuthentication.Loop().Add(cache.ObjectName{Namespace: ns, Name: "default"})
		return operatortest.Reconciles(t, peerauthentication.Name) > before, nil
	})

	if n := peerAuthRequests(t) - requestsBefore; n != 0 {
		t.Errorf("%v requests for PeerAuthentications before Istio was installed, want none (no watch on a kind that does not exist)", n)
	}
	if _, err := security(t).SecurityV1().PeerAuthentications(istioclient.Namespace).Get(t.Context(), peerauthentication.DefaultName, metav1.GetOptions{}); err == nil {
		t.Error("PeerAuthentication istio-system/default exists before Istio was installed")
	}
	// What this controller wrote is its condition and nothing else.
	latest, err := operatortest.Client(t).OperatorV1alpha2().Istios(ns).Get(t.Context(), "default", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	owned := 0
	for _, mf := range latest.ManagedFields {
		if mf.Manager != fieldManager {
			continue
		}
		owned++
		fields := mf.FieldsV1.GetRawString()
		if mf.Subresource != "status" || strings.Count(fields, `k:{\"type\":`) != 1 ||
			!strings.Contains(fields, `k:{\"type\":\"`+v1alpha2.ConditionPeerAuthenticationReady+`\"}`) {
			t.Errorf("%s owns %s %s, want only the %s condition", fieldManager, mf.Subresource, fields, v1alpha2.ConditionPeerAuthenticationReady)
		}
	}
	if owned != 1 {
		t.Errorf("%d managed-field entries of %s, want 1 (the status condition)", owned, fieldManager)
	}
	if e := controllerEvents(t, ns); len(e) != 0 {
		t.Errorf("Events by the controller while waiting: %v", e)
	}
}

func TestKeepsMeshMTLSStrict(t *testing.T) {
	cluster.InstallIstioCRD(t)
	ns := cluster.Namespace(t, nil)
	op := operatortest.Start(t, ns)
	operatortest.CreateIstio(t, ns, "default", v1alpha2.IstioSpec{})
	t.Cleanup(func() { operatortest.DeleteIstio(t, installTimeout, ns, "default") })
	key := cache.ObjectName{Namespace: ns, Name: "default"}
	pas := security(t).SecurityV1().PeerAuthentications(istioclient.Namespace)

	start := time.Now()
	i := operatortest.WaitForState(t, installTimeout, ns, "default", v1alpha2.StateReady,
		v1alpha2.ConditionPeerAuthenticationReady, metav1.ConditionTrue, v1alpha2.ReasonPeerAuthenticationApplied)
	t.Logf("Istio installed and Ready with mesh-wide STRICT mTLS in %s", time.Since(start).Round(time.Millisecond))
	if c := meta.FindStatusCondition(i.Status.Conditions, v1alpha2.ConditionPeerAuthenticationReady); c.Message != "Mesh-wide mTLS is STRICT: PeerAuthentication istio-system/default." {
		t.Errorf("message %q", c.Message)
	}

	pa, err := pas.Get(t.Context(), peerauthentication.DefaultName, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if mode := pa.Spec.GetMtls().GetMode(); mode != securityapi.PeerAuthentication_MutualTLS_STRICT {
		t.Errorf("mode %s, want STRICT", mode)
	}
	if pa.Labels[istioclient.ManagedByLabel] != istioclient.ManagedByValue {
		t.Errorf("labels %v, want %s=%s", pa.Labels, istioclient.ManagedByLabel, istioclient.ManagedByValue)
	}
	applied := false
	for _, mf := range pa.ManagedFields {
		applied = applied || (mf.Manager == fieldManager && mf.Operation == metav1.ManagedFieldsOperationApply)
	}
	if !applied {
		t.Errorf("not server-side applied by %s: %+v", fieldManager, pa.ManagedFields)
	}
	if !operatortest.HasEvent(t, ns, "default", v1alpha2.EventPeerAuthenticationCreated) {
		t.Errorf("no %s Event; events: %v", v1alpha2.EventPeerAuthenticationCreated, operatortest.Events(t, ns, "default"))
	}

	// Resyncs with everything right write nothing.
	writes := operatortest.WriteCounts(t)
	for range 3 {
		before := operatortest.Reconciles(t, peerauthentication.Name)
		op.PeerAuthentication.Loop().Add(key)
		cluster.WaitFor(t, 30*time.Second, "a resync reconcile", func(context.Context) (bool, error) {
			return operatortest.Reconciles(t, peerauthentication.Name) > before, nil
		})
	}
	if got := operatortest.NewWrites(t, writes); len(got) != 0 {
		t.Errorf("writes during resyncs with everything right: %v, want none", got)
	}

	// Deleted: back within seconds.
	if err := pas.Delete(t.Context(), peerauthentication.DefaultName, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	start = time.Now()
	cluster.WaitFor(t, repairTimeout, "PeerAuthentication istio-system/default recreated", func(ctx context.Context) (bool, error) {
		got, err := pas.Get(ctx, peerauthentication.DefaultName, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return false, nil
		}
		return err == nil && got.UID != pa.UID && got.Spec.GetMtls().GetMode() == securityapi.PeerAuthentication_MutualTLS_STRICT, err
	})
	t.Logf("deleted PeerAuthentication recreated in %s", time.Since(start).Round(time.Millisecond))

	// Edited to PERMISSIVE: STRICT again within seconds.
	edit := []byte(`{"spec":{"mtls":{"mode":"PERMISSIVE"}}}`)
	edited, err := pas.Patch(t.Context(), peerauthentication.DefaultName, types.MergePatchType, edit, metav1.PatchOptions{FieldManager: "kubectl-edit"})
	if err != nil {
		t.Fatal(err)
	}
	if mode := edited.Spec.GetMtls().GetMode(); mode != securityapi.PeerAuthentication_MutualTLS_PERMISSIVE {
		t.Fatalf("the edit left mode %s", mode)
	}
	start = time.Now()
	cluster.WaitFor(t, repairTimeout, "mode STRICT restored", func(ctx context.Context) (bool, error) {
		got, err := pas.Get(ctx, peerauthentication.DefaultName, metav1.GetOptions{})
		return err == nil && got.Spec.GetMtls().GetMode() == securityapi.PeerAuthentication_MutualTLS_STRICT, err
	})
	t.Logf("edited PeerAuthentication restored in %s", time.Since(start).Round(time.Millisecond))
	if !operatortest.HasEvent(t, ns, "default", v1alpha2.EventPeerAuthenticationRestored) {
		t.Errorf("no %s Event; events: %v", v1alpha2.EventPeerAuthenticationRestored, operatortest.Events(t, ns, "default"))
	}

	// A user's mesh-wide PERMISSIVE policy is reported, named and left alone.
	user := &securityv1.PeerAuthentication{ObjectMeta: metav1.ObjectMeta{Namespace: istioclient.Namespace, Name: "allow-plaintext"}}
	user.Spec.Mtls = &securityapi.PeerAuthentication_MutualTLS{Mode: securityapi.PeerAuthentication_MutualTLS_PERMISSIVE}
	if _, err := pas.Create(t.Context(), user, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	// Runs before the Istio resource's deletion: a user resource would block it.
	t.Cleanup(func() {
		if err := pas.Delete(context.Background(), user.Name, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
			t.Errorf("deleting %s: %v", user.Name, err)
		}
	})
	i = operatortest.WaitForState(t, 30*time.Second, ns, "default", v1alpha2.StateWarning,
		v1alpha2.ConditionPeerAuthenticationReady, metav1.ConditionFalse, v1alpha2.ReasonPeerAuthenticationWeakened)
	if c := meta.FindStatusCondition(i.Status.Conditions, v1alpha2.ConditionPeerAuthenticationReady); !strings.Contains(c.Message, "istio-system/allow-plaintext") {
		t.Errorf("message %q does not name the user's PeerAuthentication", c.Message)
	}
	if !strings.Contains(i.Status.Description, v1alpha2.ConditionPeerAuthenticationReady) {
		t.Errorf("description %q does not carry the warning", i.Status.Description)
	}
	if !operatortest.HasEvent(t, ns, "default", v1alpha2.ReasonPeerAuthenticationWeakened) {
		t.Errorf("no %s Event; events: %v", v1alpha2.ReasonPeerAuthenticationWeakened, operatortest.Events(t, ns, "default"))
	}
	if _, err := pas.Get(t.Context(), user.Name, metav1.GetOptions{}); err != nil {
		t.Errorf("the user's PeerAuthentication is gone: %v", err)
	}
	if err := pas.Delete(t.Context(), user.Name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	operatortest.WaitForState(t, 30*time.Second, ns, "default", v1alpha2.StateReady,
		v1alpha2.ConditionPeerAuthenticationReady, metav1.ConditionTrue, v1alpha2.ReasonPeerAuthenticationApplied)
}
