package ingressgateway

import (
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	v1alpha2 "github.com/meshkeeper/istio-operator/pkg/apis/operator/v1alpha2"
	"github.com/meshkeeper/istio-operator/pkg/istioclient"
)

func TestRolledOut(t *testing.T) {
	d := func(gen, observed int64, replicas, updated, available, total int32) *appsv1.Deployment {
		return &appsv1.Deployment{
			ObjectMeta: metav1.ObjectMeta{Generation: gen},
			Spec:       appsv1.DeploymentSpec{Replicas: ptr.To(replicas)},
			Status: appsv1.DeploymentStatus{ObservedGeneration: observed, UpdatedReplicas: updated,
				AvailableReplicas: available, Replicas: total},
		}
	}
	cases := map[string]struct {
		d    *appsv1.Deployment
		want bool
	}{
		"rolled out":               {d(2, 2, 3, 3, 3, 3), true},
		"new template not seen":    {d(3, 2, 3, 3, 3, 3), false},
		"old pods still running":   {d(2, 2, 3, 3, 3, 5), false},
		"new pods not available":   {d(2, 2, 3, 3, 1, 3), false},
		"not all pods updated yet": {d(2, 2, 3, 1, 3, 3), false},
	}
	for name, tc := range cases {
		if _, _, got := rolledOut(tc.d); got != tc.want {
			t.Errorf("%s: rolledOut = %v, want %v", name, got, tc.want)
		}
	}
}

// Only settings Envoy reads at start move the gateway's configuration hash.
func TestGatewayConfigHash(t *testing.T) {
	base := v1alpha2.IstioSpec{}
	h := istioclient.GatewayConfigHash(&base)
	unrelated := []v1alpha2.IstioSpec{
		{Config: v1alpha2.Config{Telemetry: v1alpha2.Telemetry{Metrics: v1alpha2.Metrics{PrometheusMerge: true}}}},
		{Components: &v1alpha2.Components{Pilot: &v1alpha2.IstioComponent{K8s: &v1alpha2.KubernetesResourcesConfig{
			HPASpec: &v1alpha2.HPASpec{MinReplicas: ptr.To[int32](3)}}}}},
		{Config: v1alpha2.Config{EnableDNSProxying: ptr.To(false)}},
		{CompatibilityMode: true},
	}
	for i, s := range unrelated {
		if got := istioclient.GatewayConfigHash(&s); got != h {
			t.Errorf("unrelated change %d moved the hash", i)
		}
	}
	xfcc := v1alpha2.XFCCSanitize
	related := []v1alpha2.IstioSpec{
		{Config: v1alpha2.Config{NumTrustedProxies: ptr.To[int64](1)}},
		{Config: v1alpha2.Config{ForwardClientCertDetails: &xfcc}},
		{Config: v1alpha2.Config{TrustDomain: ptr.To("example.org")}},
		{Config: v1alpha2.Config{ProxyStatsMatcher: &v1alpha2.ProxyStatsMatcher{InclusionRegexps: []string{".*"}}}},
		{Config: v1alpha2.Config{EnableDNSProxying: ptr.To(true)}},
	}
	seen := map[string]bool{h: true}
	for i, s := range related {
		got := istioclient.GatewayConfigHash(&s)
		if seen[got] {
			t.Errorf("start-time change %d did not give a new hash", i)
		}
		seen[got] = true
	}
}

func TestProgressFailure(t *testing.T) {
	d := &appsv1.Deployment{}
	if progressFailure(d) != "" {
		t.Error("a Deployment without conditions counted as failed")
	}
	d.Status.Conditions = []appsv1.DeploymentCondition{{Type: appsv1.DeploymentProgressing, Status: "False",
		Reason: "ProgressDeadlineExceeded", Message: `ReplicaSet "gw-1" has timed out progressing.`}}
	if got := progressFailure(d); got == "" {
		t.Error("a stuck rollout was not reported")
	}
}
