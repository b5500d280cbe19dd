package ingressgateway

import (
	"testing"

	"k8s.io/utils/ptr"

	v1alpha2 "github.com/meshkeeper/istio-operator/pkg/apis/operator/v1alpha2"
	"github.com/meshkeeper/istio-operator/pkg/istioclient"
)

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
