// Package ingressgateway tests the ingress gateway controller against a
// real API server: a start-time setting rolls the gateway exactly once,
// nothing else does, and nothing rolls it twice.
package ingressgateway

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	networkingapi "istio.io/api/networking/v1alpha3"
	networkingv1alpha3 "istio.io/client-go/pkg/apis/networking/v1alpha3"
	istioclientset "istio.io/client-go/pkg/clientset/versioned"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/cache"

	v1alpha2 "github.com/meshkeeper/istio-operator/pkg/apis/operator/v1alpha2"
	"github.com/meshkeeper/istio-operator/pkg/controllers/ingressgateway"
	"github.com/meshkeeper/istio-operator/pkg/istioclient"
	"github.com/meshkeeper/istio-operator/test/cluster"
	"github.com/meshkeeper/istio-operator/test/operatortest"
)

const installTimeout = 2 * time.Minute

func TestMain(m *testing.M) {
	cluster.Main(m, cluster.Options{Nodes: 2})
}

// replicaSets counts the ingress gateway's ReplicaSets: one per roll.
func replicaSets(t *testing.T) int {
	t.Helper()
	l, err := cluster.Current().Clientset().AppsV1().ReplicaSets(istioclient.Namespace).List(cluster.Context(t),
		metav1.ListOptions{LabelSelector: "app=istio-ingressgateway"})
	if err != nil {
		t.Fatal(err)
	}
	return len(l.Items)
}

func gatewayReady(t *testing.T, ns string) *v1alpha2.Istio {
	t.Helper()
	return operatortest.WaitForState(t, installTimeout, ns, "default", v1alpha2.StateReady,
		v1alpha2.ConditionIngressGatewayReady, metav1.ConditionTrue, v1alpha2.ReasonIngressGatewayRestartSucceeded)
}

func patchSpec(t *testing.T, ns, spec string) {
	t.Helper()
	p := []byte(fmt.Sprintf(`{"spec":%s}`, spec))
	if _, err := operatortest.Client(t).OperatorV1alpha2().Istios(ns).Patch(t.Context(), "default", types.MergePatchType, p, metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
}

func TestStartTimeSettingRollsTheGatewayOnce(t *testing.T) {
	cluster.InstallIstioCRD(t)
	ns := cluster.Namespace(t, nil)
	op := operatortest.Start(t, ns)
	// Cleanups run last-registered first: delete the resource while the
	// operator runs, then wait until it has uninstalled Istio.
	t.Cleanup(func() { operatortest.WaitUninstalled(t, installTimeout) })
	operatortest.CreateIstio(t, ns, "default", v1alpha2.IstioSpec{})
	t.Cleanup(func() { operatortest.DeleteIstio(t, installTimeout, ns, "default") })
	gatewayReady(t, ns)
	if n := replicaSets(t); n != 1 {
		t.Fatalf("%d gateway ReplicaSets after install, want 1", n)
	}

	patchSpec(t, ns, `{"config":{"numTrustedProxies":2}}`)
	i := gatewayReady(t, ns)
	want := istioclient.GatewayConfigHash(&i.Spec)
	cluster.WaitFor(t, 30*time.Second, "two gateway ReplicaSets", func(context.Context) (bool, error) {
		return replicaSets(t) == 2, nil
	})
	if got := operatortest.Image(t, "Deployment", istioclient.Namespace, istioclient.IngressGatewayName, "istio-proxy"); got == "" {
		t.Fatal("the gateway has no istio-proxy container")
	}
	c := meta.FindStatusCondition(i.Status.Conditions, v1alpha2.ConditionIngressGatewayReady)
	if c.ObservedGeneration != i.Generation {
		t.Errorf("condition observed generation %d, want %d", c.ObservedGeneration, i.Generation)
	}
	d, err := cluster.Current().Clientset().AppsV1().Deployments(istioclient.Namespace).Get(t.Context(), istioclient.IngressGatewayName, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got := d.Spec.Template.Annotations[istioclient.GatewayConfigAnnotation]; got != want {
		t.Errorf("gateway pods carry configuration %q, want %q", got, want)
	}

	// Resyncs and an operator restart roll nothing.
	writes := operatortest.WriteCounts(t)
	for range 3 {
		op.IngressGateway.Loop().Add(cache.ObjectName{Namespace: ns, Name: "default"})
		op.Installation.Loop().Add(cache.ObjectName{Namespace: ns, Name: "default"})
	}
	op.Stop()
	op = operatortest.Start(t, ns)
	// Delete (and so uninstall) while this operator still runs.
	t.Cleanup(func() { operatortest.DeleteIstio(t, installTimeout, ns, "default") })
	gatewayReady(t, ns)
	before := operatortest.Reconciles(t, ingressgateway.Name)
	cluster.WaitFor(t, 30*time.Second, "a gateway reconcile after the restart", func(context.Context) (bool, error) {
		op.IngressGateway.Loop().Add(cache.ObjectName{Namespace: ns, Name: "default"})
		return operatortest.Reconciles(t, ingressgateway.Name) > before, nil
	})
	if n := replicaSets(t); n != 2 {
		t.Errorf("%d gateway ReplicaSets after resyncs and a restart, want 2", n)
	}
	if got := operatortest.NewWrites(t, writes); got["apply deployments"] != 0 || got["patch deployments"] != 0 {
		t.Errorf("Deployments written during resyncs and a restart: %v", got)
	}

	// A setting the gateway does not read at start rolls nothing.
	patchSpec(t, ns, `{"components":{"pilot":{"k8s":{"resources":{"requests":{"cpu":"150m"}}}}}}`)
	operatortest.WaitForState(t, installTimeout, ns, "default", v1alpha2.StateReady,
		v1alpha2.ConditionInstalled, metav1.ConditionTrue, v1alpha2.ReasonIstioInstallSucceeded)
	gatewayReady(t, ns)
	if n := replicaSets(t); n != 2 {
		t.Errorf("%d gateway ReplicaSets after an unrelated change, want 2", n)
	}

	// A removed annotation is repaired with one roll.
	rm := []byte(fmt.Sprintf(`[{"op":"remove","path":"/spec/template/metadata/annotations/%s"}]`,
		jsonPointerEscape(istioclient.GatewayConfigAnnotation)))
	if _, err := cluster.Current().Clientset().AppsV1().Deployments(istioclient.Namespace).Patch(t.Context(), istioclient.IngressGatewayName,
		types.JSONPatchType, rm, metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	cluster.WaitFor(t, 30*time.Second, "the annotation restored", func(ctx context.Context) (bool, error) {
		d, err := cluster.Current().Clientset().AppsV1().Deployments(istioclient.Namespace).Get(ctx, istioclient.IngressGatewayName, metav1.GetOptions{})
		return err == nil && d.Spec.Template.Annotations[istioclient.GatewayConfigAnnotation] == want, err
	})
	gatewayReady(t, ns)

	scaleUpKeepsTheGatewayReady(t, op, ns)
}

// scaleUpKeepsTheGatewayReady adds two gateway replicas, as an autoscaler
// would: every pod still runs the configuration, so IngressGatewayReady
// must stay exactly as it was, not flip to rolling and back.
func scaleUpKeepsTheGatewayReady(t *testing.T, op *operatortest.Operator, ns string) {
	t.Helper()
	before := meta.FindStatusCondition(gatewayReady(t, ns).Status.Conditions, v1alpha2.ConditionIngressGatewayReady)
	deployments := cluster.Current().Clientset().AppsV1().Deployments(istioclient.Namespace)
	scale, err := deployments.GetScale(t.Context(), istioclient.IngressGatewayName, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	scale.Spec.Replicas += 2
	want := scale.Spec.Replicas
	if _, err := deployments.UpdateScale(t.Context(), istioclient.IngressGatewayName, scale, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	cluster.WaitFor(t, time.Minute, fmt.Sprintf("%d gateway replicas available", want), func(ctx context.Context) (bool, error) {
		d, err := deployments.Get(ctx, istioclient.IngressGatewayName, metav1.GetOptions{})
		return err == nil && d.Status.ObservedGeneration >= d.Generation && d.Status.AvailableReplicas == want, err
	})
	// The controller has seen the scaled Deployment once it reconciles
	// after the last replica became available.
	reconciles := operatortest.Reconciles(t, ingressgateway.Name)
	cluster.WaitFor(t, 30*time.Second, "a gateway reconcile after the scale-up", func(context.Context) (bool, error) {
		op.IngressGateway.Loop().Add(cache.ObjectName{Namespace: ns, Name: "default"})
		return operatortest.Reconciles(t, ingressgateway.Name) > reconciles, nil
	})
	i, err := operatortest.Client(t).OperatorV1alpha2().Istios(ns).Get(t.Context(), "default", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	after := meta.FindStatusCondition(i.Status.Conditions, v1alpha2.ConditionIngressGatewayReady)
	if after.Status != before.Status || after.Reason != before.Reason || after.Message != before.Message ||
		!after.LastTransitionTime.Equal(&before.LastTransitionTime) {
		t.Errorf("IngressGatewayReady changed with a scale-up from %d to %d replicas:\nbefore %+v\nafter  %+v",
			want-2, want, *before, *after)
	}
}

func TestWaitsForTheInstallation(t *testing.T) {
	cluster.InstallIstioCRD(t)
	ns := cluster.Namespace(t, nil)
	operatortest.Start(t, ns)
	// An invalid spec keeps Installed False: the gateway controller waits.
	operatortest.CreateIstio(t, ns, "default", v1alpha2.IstioSpec{Config: v1alpha2.Config{
		ProxyStatsMatcher: &v1alpha2.ProxyStatsMatcher{InclusionRegexps: []string{"("}},
	}})
	t.Cleanup(func() { operatortest.DeleteIstio(t, installTimeout, ns, "default") })
	i := operatortest.WaitForState(t, 30*time.Second, ns, "default", v1alpha2.StateError,
		v1alpha2.ConditionIngressGatewayReady, metav1.ConditionUnknown, v1alpha2.ReasonWaitingForInstallation)
	if c := meta.FindStatusCondition(i.Status.Conditions, v1alpha2.ConditionIngressGatewayReady); c == nil || c.Message == "" {
		t.Errorf("waiting condition without a message: %+v", c)
	}
	if n := replicaSets(t); n != 0 {
		t.Errorf("%d gateway ReplicaSets before installation", n)
	}
}

// A user's EnvoyFilter that applies to the gateway is reported (state
// Warning, an Event), never changed or deleted; removing it clears the
// warning. One for another workload is not reported.
func TestUserEnvoyFilterTargetingTheGatewayIsReported(t *testing.T) {
	cluster.InstallIstioCRD(t)
	ns := cluster.Namespace(t, nil)
	operatortest.Start(t, ns)
	t.Cleanup(func() { operatortest.WaitUninstalled(t, installTimeout) })
	operatortest.CreateIstio(t, ns, "default", v1alpha2.IstioSpec{})
	t.Cleanup(func() { operatortest.DeleteIstio(t, installTimeout, ns, "default") })
	operatortest.WaitForState(t, installTimeout, ns, "default", v1alpha2.StateReady,
		v1alpha2.ConditionIngressTargetingUserResourceFound, metav1.ConditionFalse, v1alpha2.ReasonIngressNoUserResourceFound)

	istio, err := istioclientset.NewForConfig(cluster.Current().Config)
	if err != nil {
		t.Fatal(err)
	}
	filters := istio.NetworkingV1alpha3().EnvoyFilters(istioclient.Namespace)
	create := func(name string, selector map[string]string) *networkingv1alpha3.EnvoyFilter {
		t.Helper()
		f, err := filters.Create(t.Context(), &networkingv1alpha3.EnvoyFilter{
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: istioclient.Namespace},
			Spec:       networkingapi.EnvoyFilter{WorkloadSelector: &networkingapi.WorkloadSelector{Labels: selector}},
		}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return f
	}
	targeting := create("gateway-tweak", map[string]string{"istio": "ingressgateway"})
	create("istiod-tweak", map[string]string{"app": "istiod"})
	t.Cleanup(func() {
		for _, name := range []string{"gateway-tweak", "istiod-tweak"} {
			if err := filters.Delete(context.Background(), name, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
				t.Error(err)
			}
		}
	})

	i := operatortest.WaitForState(t, 30*time.Second, ns, "default", v1alpha2.StateWarning,
		v1alpha2.ConditionIngressTargetingUserResourceFound, metav1.ConditionTrue, v1alpha2.ReasonIngressTargetingUserResource)
	c := meta.FindStatusCondition(i.Status.Conditions, v1alpha2.ConditionIngressTargetingUserResourceFound)
	if !strings.Contains(c.Message, "istio-system/gateway-tweak") || strings.Contains(c.Message, "istiod-tweak") {
		t.Errorf("condition message %q: want the gateway's filter named, and only it", c.Message)
	}
	if ready := meta.FindStatusCondition(i.Status.Conditions, v1alpha2.ConditionReady); ready.Status != metav1.ConditionFalse ||
		!strings.Contains(ready.Message, "gateway-tweak") {
		t.Errorf("Ready is %+v, want False naming the filter", ready)
	}
	cluster.WaitFor(t, 10*time.Second, "an Event naming the filter", func(context.Context) (bool, error) {
		return operatortest.HasEventWith(t, ns, "default", v1alpha2.ReasonIngressTargetingUserResource, "gateway-tweak"), nil
	})
	if got, err := filters.Get(t.Context(), "gateway-tweak", metav1.GetOptions{}); err != nil || got.ResourceVersion != targeting.ResourceVersion {
		t.Errorf("the user's EnvoyFilter was changed or deleted: %v", err)
	}

	if err := filters.Delete(t.Context(), "gateway-tweak", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	operatortest.WaitForState(t, 30*time.Second, ns, "default", v1alpha2.StateReady,
		v1alpha2.ConditionIngressTargetingUserResourceFound, metav1.ConditionFalse, v1alpha2.ReasonIngressNoUserResourceFound)
	// The filter for istiod is a user resource too: remove it, or the
	// default deletion strategy (Blocking) keeps Istio installed.
	if err := filters.Delete(t.Context(), "istiod-tweak", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
}

func jsonPointerEscape(s string) string {
	out := ""
	for _, r := range s {
		switch r {
		case '~':
			out += "~0"
		case '/':
			out += "~1"
		default:
			out += string(r)
		}
	}
	return out
}
