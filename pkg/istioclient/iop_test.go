package istioclient

import (
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	meshconfig "istio.io/api/mesh/v1alpha1"
	"istio.io/istio/operator/pkg/manifest"
	"istio.io/istio/pkg/config/mesh"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/yaml"

	v1alpha2 "github.com/meshkeeper/istio-operator/pkg/apis/operator/v1alpha2"
)

func TestRenderDefault(t *testing.T) {
	r := mustRender(t, &v1alpha2.IstioSpec{})
	for _, want := range []string{"Deployment/istio-system/istiod", "Deployment/istio-system/istio-ingressgateway", "DaemonSet/istio-system/istio-cni-node"} {
		if find(r, want) == nil {
			t.Errorf("default render has no %s", want)
		}
	}
	img := mustGet[string](t, find(r, "Deployment/istio-system/istiod").Object, "spec", "template", "spec", "containers", "0", "image")
	if img != "docker.io/istio/pilot:"+Version {
		t.Errorf("istiod image %s", img)
	}
}

// fieldCase sets one field of the Istio resource and checks the rendered
// object that Istio reads the setting from, so a mapping into the wrong
// IstioOperator path fails here rather than silently in a cluster.
type fieldCase struct {
	spec v1alpha2.IstioSpec
	// sameAsDefault marks a spec that asks for what the defaults already
	// install: its render must not differ from the default one.
	sameAsDefault bool
	check         func(t *testing.T, r *Rendered)
}

// Specs several cases share: each case asserts one of their fields, and
// the spec renders once.
var (
	authorizersSpec = v1alpha2.IstioSpec{Config: v1alpha2.Config{Authorizers: []*v1alpha2.Authorizer{
		{
			Name:       "ext-authz",
			Service:    "ext-authz.auth.svc.cluster.local",
			Port:       8080,
			PathPrefix: ptr.To("/check"),
			Headers: &v1alpha2.Headers{
				InCheck:      &v1alpha2.InCheck{Include: []string{"authorization", "cookie"}, Add: map[string]string{"x-ext-authz": "allow", "x-tenant": "t1"}},
				ToUpstream:   &v1alpha2.ToUpstream{OnAllow: []string{"x-user"}},
				ToDownstream: &v1alpha2.ToDownstream{OnAllow: []string{"x-trace"}, OnDeny: []string{"x-reason", "www-authenticate"}},
			},
		},
		{Name: "ext-authz", Service: "shadow.auth.svc.cluster.local", Port: 9090},
		{Name: "oauth2-proxy", Service: "oauth2-proxy.auth.svc.cluster.local", Port: 4180},
	}}}
	statsMatcherSpec = v1alpha2.IstioSpec{Config: v1alpha2.Config{ProxyStatsMatcher: &v1alpha2.ProxyStatsMatcher{
		InclusionRegexps:  []string{".*outlier_detection.*", ".*upstream_rq_retry.*"},
		InclusionPrefixes: []string{"cluster.outbound"},
		InclusionSuffixes: []string{"upstream_rq_timeout", "upstream_cx_active"},
	}}}
	cniSpec = v1alpha2.IstioSpec{Components: &v1alpha2.Components{Cni: &v1alpha2.CniComponent{K8s: &v1alpha2.CniK8sConfig{
		Affinity: &corev1.Affinity{NodeAffinity: &corev1.NodeAffinity{
			RequiredDuringSchedulingIgnoredDuringExecution: &corev1.NodeSelector{NodeSelectorTerms: []corev1.NodeSelectorTerm{{
				MatchExpressions: []corev1.NodeSelectorRequirement{{Key: "node-role.kubernetes.io/worker", Operator: corev1.NodeSelectorOpExists}},
			}}},
		}},
		Resources: &v1alpha2.Resources{Limits: &v1alpha2.ResourceClaims{Memory: ptr.To("1Gi")}},
	}}}}
)

var registrySpec = v1alpha2.IstioSpec{Images: &v1alpha2.Images{
	Registry:    "registry.example.com:5000/mirror/istio",
	PullSecrets: []string{"mirror-pull", "backup-pull"},
}}

// names are the name fields of a list of references.
func names(t *testing.T, refs any) []any {
	t.Helper()
	l, _ := refs.([]any)
	out := make([]any, len(l))
	for i, ref := range l {
		out[i] = mustGet[string](t, ref.(map[string]any), "name")
	}
	return out
}

func k8sSpec(c v1alpha2.KubernetesResourcesConfig) *v1alpha2.KubernetesResourcesConfig { return &c }

func pilotSpec(c v1alpha2.KubernetesResourcesConfig) v1alpha2.IstioSpec {
	return v1alpha2.IstioSpec{Components: &v1alpha2.Components{Pilot: &v1alpha2.IstioComponent{K8s: k8sSpec(c)}}}
}

func ingressSpec(c v1alpha2.KubernetesResourcesConfig) v1alpha2.IstioSpec {
	return v1alpha2.IstioSpec{Components: &v1alpha2.Components{IngressGateway: &v1alpha2.IstioComponent{K8s: k8sSpec(c)}}}
}

func egressSpec(c v1alpha2.KubernetesResourcesConfig) v1alpha2.IstioSpec {
	return v1alpha2.IstioSpec{Components: &v1alpha2.Components{EgressGateway: &v1alpha2.EgressGateway{Enabled: ptr.To(true), K8s: k8sSpec(c)}}}
}

func rollingUpdate(surge, unavailable intstr.IntOrString) *v1alpha2.Strategy {
	return &v1alpha2.Strategy{RollingUpdate: &v1alpha2.RollingUpdate{MaxSurge: &surge, MaxUnavailable: &unavailable}}
}

func fieldCases() map[string]fieldCase {
	return map[string]fieldCase{
		"numTrustedProxies": {
			spec: v1alpha2.IstioSpec{Config: v1alpha2.Config{NumTrustedProxies: ptr.To[int64](3)}},
			check: func(t *testing.T, r *Rendered) {
				m, mc := meshConfig(t, r)
				if got := mustGet[float64](t, m, "defaultConfig", "gatewayTopology", "numTrustedProxies"); got != 3 {
					t.Errorf("mesh numTrustedProxies = %v, want 3", got)
				}
				if got := mc.GetDefaultConfig().GetGatewayTopology().GetNumTrustedProxies(); got != 3 {
					t.Errorf("istiod reads numTrustedProxies %d, want 3", got)
				}
			},
		},
		"forwardClientCertDetails": {
			spec: v1alpha2.IstioSpec{Config: v1alpha2.Config{ForwardClientCertDetails: ptr.To(v1alpha2.XFCCAlwaysForwardOnly)}},
			check: func(t *testing.T, r *Rendered) {
				m, mc := meshConfig(t, r)
				if got := mustGet[string](t, m, "defaultConfig", "gatewayTopology", "forwardClientCertDetails"); got != "ALWAYS_FORWARD_ONLY" {
					t.Errorf("mesh forwardClientCertDetails = %q", got)
				}
				if got := mc.GetDefaultConfig().GetGatewayTopology().GetForwardClientCertDetails(); got != meshconfig.ForwardClientCertDetails_ALWAYS_FORWARD_ONLY {
					t.Errorf("istiod reads forwardClientCertDetails %v", got)
				}
			},
		},
		"authorizers service and port": {
			spec: authorizersSpec,
			check: func(t *testing.T, r *Rendered) {
				p := extAuthzHTTP(t, r, "ext-authz")
				if got := mustGet[string](t, p, "service"); got != "ext-authz.auth.svc.cluster.local" {
					t.Errorf("service = %q", got)
				}
				if got := mustGet[float64](t, p, "port"); got != 8080 {
					t.Errorf("port = %v", got)
				}
				o := extAuthzHTTP(t, r, "oauth2-proxy")
				if mustGet[string](t, o, "service") != "oauth2-proxy.auth.svc.cluster.local" || mustGet[float64](t, o, "port") != 4180 {
					t.Errorf("second authorizer = %v", o)
				}
			},
		},
		"authorizers pathPrefix": {
			spec: authorizersSpec,
			check: func(t *testing.T, r *Rendered) {
				if got := mustGet[string](t, extAuthzHTTP(t, r, "ext-authz"), "pathPrefix"); got != "/check" {
					t.Errorf("pathPrefix = %q", got)
				}
				if _, set := extAuthzHTTP(t, r, "oauth2-proxy")["pathPrefix"]; set {
					t.Error("pathPrefix set on an authorizer without one")
				}
			},
		},
		"authorizers headers inCheck include": {
			spec: authorizersSpec,
			check: func(t *testing.T, r *Rendered) {
				assertStrings(t, extAuthzHTTP(t, r, "ext-authz")["includeRequestHeadersInCheck"], "authorization", "cookie")
			},
		},
		"authorizers headers inCheck add": {
			spec: authorizersSpec,
			check: func(t *testing.T, r *Rendered) {
				add := mustGet[map[string]any](t, extAuthzHTTP(t, r, "ext-authz"), "includeAdditionalHeadersInCheck")
				if len(add) != 2 || add["x-ext-authz"] != "allow" || add["x-tenant"] != "t1" {
					t.Errorf("includeAdditionalHeadersInCheck = %v", add)
				}
			},
		},
		"authorizers headers toUpstream onAllow": {
			spec: authorizersSpec,
			check: func(t *testing.T, r *Rendered) {
				assertStrings(t, extAuthzHTTP(t, r, "ext-authz")["headersToUpstreamOnAllow"], "x-user")
			},
		},
		"authorizers headers toDownstream onAllow": {
			spec: authorizersSpec,
			check: func(t *testing.T, r *Rendered) {
				assertStrings(t, extAuthzHTTP(t, r, "ext-authz")["headersToDownstreamOnAllow"], "x-trace")
			},
		},
		"authorizers headers toDownstream onDeny": {
			spec: authorizersSpec,
			check: func(t *testing.T, r *Rendered) {
				assertStrings(t, extAuthzHTTP(t, r, "ext-authz")["headersToDownstreamOnDeny"], "x-reason", "www-authenticate")
			},
		},
		"authorizers duplicate names: the first wins": {
			spec: authorizersSpec,
			check: func(t *testing.T, r *Rendered) {
				_, mc := meshConfig(t, r)
				var names []string
				for _, p := range mc.GetExtensionProviders() {
					if p.GetEnvoyExtAuthzHttp() != nil {
						names = append(names, p.GetName())
					}
				}
				if fmt.Sprint(names) != "[ext-authz oauth2-proxy]" {
					t.Errorf("ext_authz providers %v, want [ext-authz oauth2-proxy]", names)
				}
				if got := mustGet[string](t, extAuthzHTTP(t, r, "ext-authz"), "service"); got != "ext-authz.auth.svc.cluster.local" {
					t.Errorf("ext-authz service %q: a later duplicate replaced the first", got)
				}
			},
		},
		// The resource takes any Go duration; istiod must read back the same
		// duration, sub-second and minute values included.
		"authorizers timeout": {
			spec: v1alpha2.IstioSpec{Config: v1alpha2.Config{Authorizers: []*v1alpha2.Authorizer{
				{Name: "fast", Service: "fast.auth.svc.cluster.local", Port: 8000, Timeout: &metav1.Duration{Duration: 250 * time.Millisecond}},
				{Name: "slow", Service: "slow.auth.svc.cluster.local", Port: 8000, Timeout: &metav1.Duration{Duration: 2 * time.Minute}},
				{Name: "plain", Service: "plain.auth.svc.cluster.local", Port: 8000, Timeout: &metav1.Duration{Duration: 3 * time.Second}},
			}}},
			check: func(t *testing.T, r *Rendered) {
				_, mc := meshConfig(t, r)
				want := map[string]time.Duration{"fast": 250 * time.Millisecond, "slow": 2 * time.Minute, "plain": 3 * time.Second}
				for _, p := range mc.GetExtensionProviders() {
					if got := p.GetEnvoyExtAuthzHttp().GetTimeout().AsDuration(); got != want[p.GetName()] {
						t.Errorf("istiod reads timeout %v for %s, want %v", got, p.GetName(), want[p.GetName()])
					}
					delete(want, p.GetName())
				}
				if len(want) > 0 {
					t.Errorf("authorizers %v missing from the mesh config", want)
				}
			},
		},
		"gatewayExternalTrafficPolicy Local": {
			spec: v1alpha2.IstioSpec{Config: v1alpha2.Config{GatewayExternalTrafficPolicy: ptr.To("Local")}},
			check: func(t *testing.T, r *Rendered) {
				if got := mustGet[string](t, object(t, r, "Service/istio-system/istio-ingressgateway"), "spec", "externalTrafficPolicy"); got != "Local" {
					t.Errorf("externalTrafficPolicy = %q", got)
				}
			},
		},
		"gatewayExternalTrafficPolicy Cluster": {
			spec: v1alpha2.IstioSpec{Config: v1alpha2.Config{GatewayExternalTrafficPolicy: ptr.To("Cluster")}},
			check: func(t *testing.T, r *Rendered) {
				if got := mustGet[string](t, object(t, r, "Service/istio-system/istio-ingressgateway"), "spec", "externalTrafficPolicy"); got != "Cluster" {
					t.Errorf("externalTrafficPolicy = %q", got)
				}
			},
		},
		"prometheusMerge": {
			spec: v1alpha2.IstioSpec{Config: v1alpha2.Config{Telemetry: v1alpha2.Telemetry{Metrics: v1alpha2.Metrics{PrometheusMerge: true}}}},
			check: func(t *testing.T, r *Rendered) {
				m, mc := meshConfig(t, r)
				if !mustGet[bool](t, m, "enablePrometheusMerge") || !mc.GetEnablePrometheusMerge().GetValue() {
					t.Error("enablePrometheusMerge not true")
				}
			},
		},
		"trustDomain": {
			spec: v1alpha2.IstioSpec{Config: v1alpha2.Config{TrustDomain: ptr.To("mesh.example.org")}},
			check: func(t *testing.T, r *Rendered) {
				m, mc := meshConfig(t, r)
				if got := mustGet[string](t, m, "trustDomain"); got != "mesh.example.org" || mc.GetTrustDomain() != got {
					t.Errorf("trustDomain = %q", got)
				}
			},
		},
		"enableDNSProxying": {
			spec: v1alpha2.IstioSpec{Config: v1alpha2.Config{EnableDNSProxying: ptr.To(true)}},
			check: func(t *testing.T, r *Rendered) {
				m, mc := meshConfig(t, r)
				if got := mustGet[string](t, m, "defaultConfig", "proxyMetadata", "ISTIO_META_DNS_CAPTURE"); got != "true" {
					t.Errorf("ISTIO_META_DNS_CAPTURE = %q", got)
				}
				if got := mc.GetDefaultConfig().GetProxyMetadata()["ISTIO_META_DNS_CAPTURE"]; got != "true" {
					t.Errorf("istiod reads ISTIO_META_DNS_CAPTURE %q", got)
				}
			},
		},
		"enableDNSProxying false": {
			spec:          v1alpha2.IstioSpec{Config: v1alpha2.Config{EnableDNSProxying: ptr.To(false)}},
			sameAsDefault: true,
			check: func(t *testing.T, r *Rendered) {
				_, mc := meshConfig(t, r)
				if got, set := mc.GetDefaultConfig().GetProxyMetadata()["ISTIO_META_DNS_CAPTURE"]; set && got != "false" {
					t.Errorf("ISTIO_META_DNS_CAPTURE = %q", got)
				}
			},
		},
		"proxyStatsMatcher inclusionRegexps": {
			spec: statsMatcherSpec,
			check: func(t *testing.T, r *Rendered) {
				m, _ := meshConfig(t, r)
				assertStrings(t, mustGet[any](t, m, "defaultConfig", "proxyStatsMatcher", "inclusionRegexps"), ".*outlier_detection.*", ".*upstream_rq_retry.*")
			},
		},
		"proxyStatsMatcher inclusionPrefixes": {
			spec: statsMatcherSpec,
			check: func(t *testing.T, r *Rendered) {
				m, _ := meshConfig(t, r)
				assertStrings(t, mustGet[any](t, m, "defaultConfig", "proxyStatsMatcher", "inclusionPrefixes"), "cluster.outbound")
			},
		},
		"proxyStatsMatcher inclusionSuffixes": {
			spec: statsMatcherSpec,
			check: func(t *testing.T, r *Rendered) {
				m, mc := meshConfig(t, r)
				assertStrings(t, mustGet[any](t, m, "defaultConfig", "proxyStatsMatcher", "inclusionSuffixes"), "upstream_rq_timeout", "upstream_cx_active")
				if got := mc.GetDefaultConfig().GetProxyStatsMatcher().GetInclusionSuffixes(); len(got) != 2 {
					t.Errorf("istiod reads inclusionSuffixes %v", got)
				}
			},
		},

		"pilot hpaSpec": {
			spec: pilotSpec(v1alpha2.KubernetesResourcesConfig{HPASpec: &v1alpha2.HPASpec{MinReplicas: ptr.To[int32](3), MaxReplicas: ptr.To[int32](7)}}),
			check: func(t *testing.T, r *Rendered) {
				assertHPA(t, r, "istiod", 3, 7)
			},
		},
		"pilot strategy": {
			spec: pilotSpec(v1alpha2.KubernetesResourcesConfig{Strategy: rollingUpdate(intstr.FromInt32(3), intstr.FromString("10%"))}),
			check: func(t *testing.T, r *Rendered) {
				assertRollingUpdate(t, r, "istiod", int64(3), "10%")
			},
		},
		"pilot resources": {
			spec: pilotSpec(v1alpha2.KubernetesResourcesConfig{Resources: &v1alpha2.Resources{Limits: &v1alpha2.ResourceClaims{CPU: ptr.To("3")}}}),
			check: func(t *testing.T, r *Rendered) {
				assertResources(t, containerResources(t, r, "Deployment/istio-system/istiod", "discovery"),
					map[string]string{"limits.cpu": "3", "limits.memory": "2Gi", "requests.cpu": "100m", "requests.memory": "256Mi"})
			},
		},
		"ingressGateway hpaSpec": {
			spec: ingressSpec(v1alpha2.KubernetesResourcesConfig{HPASpec: &v1alpha2.HPASpec{MinReplicas: ptr.To[int32](4), MaxReplicas: ptr.To[int32](12)}}),
			check: func(t *testing.T, r *Rendered) {
				assertHPA(t, r, IngressGatewayName, 4, 12)
			},
		},
		"ingressGateway strategy": {
			spec: ingressSpec(v1alpha2.KubernetesResourcesConfig{Strategy: rollingUpdate(intstr.FromString("50%"), intstr.FromInt32(1))}),
			check: func(t *testing.T, r *Rendered) {
				assertRollingUpdate(t, r, IngressGatewayName, "50%", int64(1))
			},
		},
		"ingressGateway resources": {
			spec: ingressSpec(v1alpha2.KubernetesResourcesConfig{Resources: &v1alpha2.Resources{Requests: &v1alpha2.ResourceClaims{Memory: ptr.To("256Mi")}}}),
			check: func(t *testing.T, r *Rendered) {
				assertResources(t, containerResources(t, r, "Deployment/istio-system/istio-ingressgateway", "istio-proxy"),
					map[string]string{"limits.cpu": "2", "limits.memory": "1Gi", "requests.cpu": "100m", "requests.memory": "256Mi"})
			},
		},
		"egressGateway enabled": {
			spec: v1alpha2.IstioSpec{Components: &v1alpha2.Components{EgressGateway: &v1alpha2.EgressGateway{Enabled: ptr.To(true)}}},
			check: func(t *testing.T, r *Rendered) {
				object(t, r, "Deployment/istio-system/istio-egressgateway")
			},
		},
		"egressGateway disabled": {
			spec:          v1alpha2.IstioSpec{Components: &v1alpha2.Components{EgressGateway: &v1alpha2.EgressGateway{Enabled: ptr.To(false)}}},
			sameAsDefault: true,
			check: func(t *testing.T, r *Rendered) {
				for _, o := range r.Objects() {
					if o.GetName() == EgressGatewayName {
						t.Errorf("disabled egress gateway renders %s", o.Hash())
					}
				}
			},
		},
		"egressGateway hpaSpec": {
			spec: egressSpec(v1alpha2.KubernetesResourcesConfig{HPASpec: &v1alpha2.HPASpec{MinReplicas: ptr.To[int32](2), MaxReplicas: ptr.To[int32](6)}}),
			check: func(t *testing.T, r *Rendered) {
				assertHPA(t, r, EgressGatewayName, 2, 6)
			},
		},
		"egressGateway strategy": {
			spec: egressSpec(v1alpha2.KubernetesResourcesConfig{Strategy: rollingUpdate(intstr.FromInt32(2), intstr.FromString("0%"))}),
			check: func(t *testing.T, r *Rendered) {
				assertRollingUpdate(t, r, EgressGatewayName, int64(2), "0%")
			},
		},
		"egressGateway resources": {
			spec: egressSpec(v1alpha2.KubernetesResourcesConfig{Resources: &v1alpha2.Resources{Limits: &v1alpha2.ResourceClaims{Memory: ptr.To("2Gi")}}}),
			check: func(t *testing.T, r *Rendered) {
				assertResources(t, containerResources(t, r, "Deployment/istio-system/istio-egressgateway", "istio-proxy"),
					map[string]string{"limits.cpu": "2", "limits.memory": "2Gi", "requests.cpu": "10m", "requests.memory": "120Mi"})
			},
		},
		"cni affinity": {
			spec: cniSpec,
			check: func(t *testing.T, r *Rendered) {
				term := mustGet[map[string]any](t, object(t, r, "DaemonSet/istio-system/istio-cni-node"),
					"spec", "template", "spec", "affinity", "nodeAffinity", "requiredDuringSchedulingIgnoredDuringExecution", "nodeSelectorTerms", "0", "matchExpressions", "0")
				if term["key"] != "node-role.kubernetes.io/worker" || term["operator"] != "Exists" {
					t.Errorf("CNI node affinity term %v", term)
				}
			},
		},
		"cni resources": {
			spec: cniSpec,
			check: func(t *testing.T, r *Rendered) {
				assertResources(t, containerResources(t, r, "DaemonSet/istio-system/istio-cni-node", "install-cni"),
					map[string]string{"limits.cpu": "500m", "limits.memory": "1Gi", "requests.cpu": "10m", "requests.memory": "64Mi"})
			},
		},
		"proxy resources": {
			spec: v1alpha2.IstioSpec{Components: &v1alpha2.Components{Proxy: &v1alpha2.ProxyComponent{K8s: &v1alpha2.ProxyK8sConfig{
				Resources: &v1alpha2.Resources{Requests: &v1alpha2.ResourceClaims{CPU: ptr.To("50m")}, Limits: &v1alpha2.ResourceClaims{Memory: ptr.To("512Mi")}},
			}}}},
			check: func(t *testing.T, r *Rendered) {
				res := mustGet[map[string]any](t, injectorValues(t, r), "global", "proxy", "resources")
				assertResources(t, res, map[string]string{"limits.cpu": "1", "limits.memory": "512Mi", "requests.cpu": "50m", "requests.memory": "192Mi"})
			},
		},
		"images registry": {
			spec: registrySpec,
			check: func(t *testing.T, r *Rendered) {
				for kindNsName, c := range map[string]string{
					"Deployment/istio-system/istiod":               "discovery",
					"Deployment/istio-system/istio-ingressgateway": "istio-proxy",
					"DaemonSet/istio-system/istio-cni-node":        "install-cni",
				} {
					img := mustGet[string](t, container(t, object(t, r, kindNsName), c), "image")
					if !strings.HasPrefix(img, "registry.example.com:5000/mirror/istio/") || !strings.HasSuffix(img, ":"+Version) {
						t.Errorf("%s image %s, want it from registry.example.com:5000/mirror/istio at %s", kindNsName, img, Version)
					}
				}
				if got := mustGet[string](t, injectorValues(t, r), "global", "hub"); got != "registry.example.com:5000/mirror/istio" {
					t.Errorf("injector hub %s", got)
				}
			},
		},
		"images pullSecrets": {
			spec: registrySpec,
			check: func(t *testing.T, r *Rendered) {
				for _, sa := range []string{"istiod", "istio-ingressgateway-service-account", "istio-cni"} {
					assertStrings(t, names(t, object(t, r, "ServiceAccount/istio-system/"+sa)["imagePullSecrets"]), "mirror-pull", "backup-pull")
				}
				assertStrings(t, injectorValues(t, r)["global"].(map[string]any)["imagePullSecrets"], "mirror-pull", "backup-pull")
			},
		},
		"evaluation profile": {
			spec: v1alpha2.IstioSpec{Profile: v1alpha2.ProfileEvaluation},
			check: func(t *testing.T, r *Rendered) {
				assertHPA(t, r, "istiod", 1, 1)
				assertHPA(t, r, IngressGatewayName, 1, 1)
				assertResources(t, containerResources(t, r, "Deployment/istio-system/istiod", "discovery"),
					map[string]string{"limits.cpu": "1", "limits.memory": "1Gi", "requests.cpu": "50m", "requests.memory": "128Mi"})
				assertResources(t, containerResources(t, r, "Deployment/istio-system/istio-ingressgateway", "istio-proxy"),
					map[string]string{"limits.cpu": "1", "limits.memory": "1Gi", "requests.cpu": "10m", "requests.memory": "32Mi"})
				assertResources(t, containerResources(t, r, "DaemonSet/istio-system/istio-cni-node", "install-cni"),
					map[string]string{"limits.cpu": "250m", "limits.memory": "384Mi", "requests.cpu": "10m", "requests.memory": "128Mi"})
				assertResources(t, mustGet[map[string]any](t, injectorValues(t, r), "global", "proxy", "resources"),
					map[string]string{"limits.cpu": "250m", "limits.memory": "254Mi", "requests.cpu": "10m", "requests.memory": "32Mi"})
			},
		},
		"evaluation profile under the resource's settings": {
			spec: v1alpha2.IstioSpec{Profile: v1alpha2.ProfileEvaluation, Components: &v1alpha2.Components{
				Pilot: &v1alpha2.IstioComponent{K8s: k8sSpec(v1alpha2.KubernetesResourcesConfig{
					HPASpec:   &v1alpha2.HPASpec{MaxReplicas: ptr.To[int32](3)},
					Resources: &v1alpha2.Resources{Requests: &v1alpha2.ResourceClaims{Memory: ptr.To("200Mi")}},
				})},
				EgressGateway: &v1alpha2.EgressGateway{Enabled: ptr.To(true)},
			}},
			check: func(t *testing.T, r *Rendered) {
				assertHPA(t, r, "istiod", 1, 3)
				assertHPA(t, r, EgressGatewayName, 1, 1)
				assertResources(t, containerResources(t, r, "Deployment/istio-system/istiod", "discovery"),
					map[string]string{"limits.cpu": "1", "limits.memory": "1Gi", "requests.cpu": "50m", "requests.memory": "200Mi"})
				assertResources(t, containerResources(t, r, "Deployment/istio-system/istio-egressgateway", "istio-proxy"),
					map[string]string{"limits.cpu": "1", "limits.memory": "1Gi", "requests.cpu": "10m", "requests.memory": "32Mi"})
			},
		},
		"production profile asked for": {
			spec:          v1alpha2.IstioSpec{Profile: v1alpha2.ProfileProduction},
			sameAsDefault: true,
			check: func(t *testing.T, r *Rendered) {
				assertHPA(t, r, "istiod", 2, 5)
			},
		},
		"minReplicas alone above the default maximum": {
			spec: pilotSpec(v1alpha2.KubernetesResourcesConfig{HPASpec: &v1alpha2.HPASpec{MinReplicas: ptr.To[int32](7)}}),
			check: func(t *testing.T, r *Rendered) {
				assertHPA(t, r, "istiod", 7, 7)
			},
		},
		"maxReplicas alone below the default minimum": {
			spec: ingressSpec(v1alpha2.KubernetesResourcesConfig{HPASpec: &v1alpha2.HPASpec{MaxReplicas: ptr.To[int32](1)}}),
			check: func(t *testing.T, r *Rendered) {
				assertHPA(t, r, IngressGatewayName, 1, 1)
			},
		},
		// Istio 1.31 applies the previous minor's compatibility profile to
		// istiod's environment, reverting the 1.31 behaviour changes.
		"compatibilityMode": {
			spec: v1alpha2.IstioSpec{CompatibilityMode: true},
			check: func(t *testing.T, r *Rendered) {
				v := MustParseVersion(Version)
				var values map[string]any
				if err := json.Unmarshal([]byte(mustGet[string](t, object(t, r, "ConfigMap/istio-system/values"), "data", "original-values")), &values); err != nil {
					t.Fatal(err)
				}
				if got := mustGet[string](t, values, "compatibilityVersion"); got != fmt.Sprintf("%d.%d", v.Major, v.Minor-1) {
					t.Errorf("compatibilityVersion = %q, want the previous minor", got)
				}
				discovery := container(t, object(t, r, "Deployment/istio-system/istiod"), "discovery")
				for _, env := range compatibilityEnv {
					if got, _ := envValue(discovery, env); got != "false" {
						t.Errorf("istiod %s = %q, want false", env, got)
					}
				}
			},
		},

		// The experimental features: rendered in every build, installed
		// only by the experimental one.
		"experimental pilot enableAlphaGatewayAPI": {
			spec: experimentalSpec(v1alpha2.Experimental{Pilot: &v1alpha2.PilotFeatures{EnableAlphaGatewayAPI: true}}),
			check: func(t *testing.T, r *Rendered) {
				assertIstiodEnv(t, r, "PILOT_ENABLE_ALPHA_GATEWAY_API", "true")
			},
		},
		"experimental pilot enableMultiNetworkDiscoverGatewayAPI": {
			spec: experimentalSpec(v1alpha2.Experimental{Pilot: &v1alpha2.PilotFeatures{EnableMultiNetworkDiscoverGatewayAPI: true}}),
			check: func(t *testing.T, r *Rendered) {
				assertIstiodEnv(t, r, "PILOT_MULTI_NETWORK_DISCOVER_GATEWAY_API", "true")
			},
		},
		"experimental enableDualStack": {
			spec: experimentalSpec(v1alpha2.Experimental{EnableDualStack: ptr.To(true)}),
			check: func(t *testing.T, r *Rendered) {
				assertIstiodEnv(t, r, "ISTIO_DUAL_STACK", "true")
				assertProxyMetadata(t, r, "ISTIO_DUAL_STACK", "true")
				if got := mustGet[string](t, object(t, r, "Service/istio-system/istio-ingressgateway"), "spec", "ipFamilyPolicy"); got != "PreferDualStack" {
					t.Errorf("ingress gateway Service ipFamilyPolicy = %q, want PreferDualStack", got)
				}
			},
		},
		"experimental enableAmbient": {
			spec: experimentalSpec(v1alpha2.Experimental{EnableAmbient: ptr.To(true)}),
			check: func(t *testing.T, r *Rendered) {
				img := mustGet[string](t, container(t, object(t, r, "DaemonSet/istio-system/ztunnel"), "istio-proxy"), "image")
				if img != "docker.io/istio/ztunnel:"+Version {
					t.Errorf("ztunnel image %s", img)
				}
				object(t, r, "ServiceAccount/istio-system/ztunnel")
				if got := mustGet[string](t, object(t, r, "ConfigMap/istio-system/istio-cni-config"), "data", "AMBIENT_ENABLED"); got != "true" {
					t.Errorf("CNI agent AMBIENT_ENABLED = %q, want true", got)
				}
				assertIstiodEnv(t, r, "PILOT_ENABLE_AMBIENT", "true")
				assertProxyMetadata(t, r, "ISTIO_META_ENABLE_HBONE", "true")
				// Unlike Istio's ambient profile: the gateway stays, and
				// the images keep their variant.
				object(t, r, "Deployment/istio-system/istio-ingressgateway")
				if got := mustGet[string](t, injectorValues(t, r), "global", "variant"); got != "" {
					t.Errorf("injected proxies' image variant %q, want the default", got)
				}
			},
		},
		"experimental enableAmbient images": {
			spec: v1alpha2.IstioSpec{Images: registrySpec.Images, Experimental: &v1alpha2.Experimental{EnableAmbient: ptr.To(true)}},
			check: func(t *testing.T, r *Rendered) {
				img := mustGet[string](t, container(t, object(t, r, "DaemonSet/istio-system/ztunnel"), "istio-proxy"), "image")
				if img != "registry.example.com:5000/mirror/istio/ztunnel:"+Version {
					t.Errorf("ztunnel image %s, want it from the registry", img)
				}
				assertStrings(t, names(t, object(t, r, "ServiceAccount/istio-system/ztunnel")["imagePullSecrets"]), "mirror-pull", "backup-pull")
			},
		},
		"experimental features off": {
			spec:          experimentalSpec(v1alpha2.Experimental{Pilot: &v1alpha2.PilotFeatures{}, EnableAmbient: ptr.To(false), EnableDualStack: ptr.To(false)}),
			sameAsDefault: true,
			check: func(t *testing.T, r *Rendered) {
				if find(r, "DaemonSet/istio-system/ztunnel") != nil {
					t.Error("ztunnel rendered with ambient off")
				}
			},
		},
	}
}

// experimentalVariables are the istiod variables and proxy metadata the
// experimental features set.
var (
	experimentalEnv      = []string{"PILOT_ENABLE_ALPHA_GATEWAY_API", "PILOT_MULTI_NETWORK_DISCOVER_GATEWAY_API", "ISTIO_DUAL_STACK", "PILOT_ENABLE_AMBIENT"}
	experimentalMetadata = []string{"ISTIO_DUAL_STACK", "ISTIO_META_ENABLE_HBONE"}
)

func experimentalSpec(e v1alpha2.Experimental) v1alpha2.IstioSpec {
	return v1alpha2.IstioSpec{Experimental: &e}
}

func assertIstiodEnv(t *testing.T, r *Rendered, name, want string) {
	t.Helper()
	if got, _ := envValue(container(t, object(t, r, "Deployment/istio-system/istiod"), "discovery"), name); got != want {
		t.Errorf("istiod %s = %q, want %q", name, got, want)
	}
}

// assertProxyMetadata checks a variable of the mesh's default proxy
// metadata, as rendered and as istiod reads it.
func assertProxyMetadata(t *testing.T, r *Rendered, name, want string) {
	t.Helper()
	m, mc := meshConfig(t, r)
	if got := mustGet[string](t, m, "defaultConfig", "proxyMetadata", name); got != want {
		t.Errorf("mesh proxyMetadata %s = %q, want %q", name, got, want)
	}
	if got := mc.GetDefaultConfig().GetProxyMetadata()[name]; got != want {
		t.Errorf("istiod reads proxyMetadata %s = %q, want %q", name, got, want)
	}
}

// compatibilityEnv are the istiod variables the 1.30 compatibility profile
// turns off.
var compatibilityEnv = []string{"PILOT_ENABLE_STRICT_GATEWAY_MERGING", "PILOT_SPAWN_UPSTREAM_SPAN_FOR_GATEWAY", "PILOT_AUTO_SEND_UNHEALTHY_ENDPOINTS"}

func TestDesiredIstioOperatorFields(t *testing.T) {
	base := cachedRender(t, &v1alpha2.IstioSpec{})
	// The default must not already carry what the cases look for.
	for _, env := range compatibilityEnv {
		if _, set := envValue(container(t, object(t, base, "Deployment/istio-system/istiod"), "discovery"), env); set {
			t.Errorf("default istiod already sets %s", env)
		}
	}
	if _, set := object(t, base, "Service/istio-system/istio-ingressgateway")["spec"].(map[string]any)["externalTrafficPolicy"]; set {
		t.Error("default ingress Service already sets externalTrafficPolicy")
	}
	if _, set := object(t, base, "Service/istio-system/istio-ingressgateway")["spec"].(map[string]any)["ipFamilyPolicy"]; set {
		t.Error("default ingress Service already sets ipFamilyPolicy")
	}
	for _, env := range experimentalEnv {
		if _, set := envValue(container(t, object(t, base, "Deployment/istio-system/istiod"), "discovery"), env); set {
			t.Errorf("default istiod already sets %s", env)
		}
	}
	_, mc := meshConfig(t, base)
	for _, name := range experimentalMetadata {
		if _, set := mc.GetDefaultConfig().GetProxyMetadata()[name]; set {
			t.Errorf("default proxy metadata already sets %s", name)
		}
	}
	for name, tc := range fieldCases() {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			tc.check(t, cachedRender(t, &tc.spec))
		})
	}
}

// The hash is how the installer decides whether anything needs applying:
// a changed field must change it, and an unchanged spec must not.
func TestRenderHash(t *testing.T) {
	first := mustRender(t, &v1alpha2.IstioSpec{})
	second := mustRender(t, &v1alpha2.IstioSpec{})
	if first.Hash == "" || first.Hash != second.Hash {
		t.Errorf("default hash unstable: %q, %q", first.Hash, second.Hash)
	}
	again := mustRender(t, &authorizersSpec)
	if again.Hash != cachedRender(t, &authorizersSpec).Hash {
		t.Errorf("hash unstable for the same spec")
	}

	seen := map[string]string{}
	for name, tc := range fieldCases() {
		t.Run(name, func(t *testing.T) {
			r := cachedRender(t, &tc.spec)
			if tc.sameAsDefault {
				if r.Hash != first.Hash {
					t.Errorf("hash %s differs from the default %s for a spec asking for the defaults", r.Hash, first.Hash)
				}
				return
			}
			if r.Hash == first.Hash {
				t.Errorf("hash equals the default's")
			}
			key, _ := json.Marshal(tc.spec)
			if other, dup := seen[r.Hash]; dup && other != string(key) {
				t.Errorf("hash %s shared with a different spec %s", r.Hash, other)
			}
			seen[r.Hash] = string(key)
		})
	}
}

// Renders take a tenth of a second or more; cases sharing a spec share its
// render, and cases of different specs render in parallel.
var renders = struct {
	sync.Mutex
	m map[string]*renderResult
}{m: map[string]*renderResult{}}

type renderResult struct {
	once sync.Once
	r    *Rendered
	err  error
}

func cachedRender(t testing.TB, spec *v1alpha2.IstioSpec) *Rendered {
	t.Helper()
	key, err := json.Marshal(spec)
	if err != nil {
		t.Fatal(err)
	}
	renders.Lock()
	res, ok := renders.m[string(key)]
	if !ok {
		res = &renderResult{}
		renders.m[string(key)] = res
	}
	renders.Unlock()
	res.once.Do(func() {
		iop, err := DesiredIstioOperator(spec)
		if err != nil {
			res.err = err
			return
		}
		res.r, res.err = Render(iop, nil)
	})
	if res.err != nil {
		t.Fatal(res.err)
	}
	return res.r
}

func mustRender(t *testing.T, spec *v1alpha2.IstioSpec) *Rendered {
	t.Helper()
	return mustRenderAs(t, spec, Revision{})
}

// mustRenderAs renders spec as a revision of a version; the zero Revision
// is the default revision of the operator's version.
func mustRenderAs(t *testing.T, spec *v1alpha2.IstioSpec, as Revision) *Rendered {
	t.Helper()
	iop, err := DesiredIstioOperatorAs(spec, as)
	if err != nil {
		t.Fatal(err)
	}
	r, err := Render(iop, nil)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func find(r *Rendered, kindNsName string) *manifest.Manifest {
	for _, o := range r.Objects() {
		if o.GetKind()+"/"+o.GetNamespace()+"/"+o.GetName() == kindNsName {
			return &o
		}
	}
	return nil
}

// object is the rendered object, failing the test when there is none.
func object(t *testing.T, r *Rendered, kindNsName string) map[string]any {
	t.Helper()
	m := find(r, kindNsName)
	if m == nil {
		t.Fatalf("nothing rendered as %s", kindNsName)
	}
	return m.Object
}

// meshConfig is the mesh config istiod reads (ConfigMap istio-system/istio,
// key mesh), as plain YAML and as Istio itself parses it; a mesh config
// Istio rejects fails the test.
func meshConfig(t *testing.T, r *Rendered) (map[string]any, *meshconfig.MeshConfig) {
	t.Helper()
	data := mustGet[string](t, object(t, r, "ConfigMap/istio-system/istio"), "data", "mesh")
	var m map[string]any
	if err := yaml.Unmarshal([]byte(data), &m); err != nil {
		t.Fatalf("mesh config is not YAML: %v", err)
	}
	mc, err := mesh.ApplyMeshConfigDefaults(data)
	if err != nil {
		t.Fatalf("istiod rejects the rendered mesh config: %v\n%s", err, data)
	}
	return m, mc
}

// extAuthzHTTP is the envoyExtAuthzHttp of the named extension provider.
func extAuthzHTTP(t *testing.T, r *Rendered, name string) map[string]any {
	t.Helper()
	m, _ := meshConfig(t, r)
	for _, p := range mustGet[[]any](t, m, "extensionProviders") {
		if pm, ok := p.(map[string]any); ok && pm["name"] == name {
			return mustGet[map[string]any](t, pm, "envoyExtAuthzHttp")
		}
	}
	t.Fatalf("no extension provider %s", name)
	return nil
}

// injectorValues are the Helm values the sidecar injector renders proxies
// with (ConfigMap istio-system/istio-sidecar-injector, key values).
func injectorValues(t *testing.T, r *Rendered) map[string]any {
	t.Helper()
	data := mustGet[string](t, object(t, r, "ConfigMap/istio-system/istio-sidecar-injector"), "data", "values")
	var v map[string]any
	if err := json.Unmarshal([]byte(data), &v); err != nil {
		t.Fatalf("injector values: %v", err)
	}
	return v
}

func container(t *testing.T, workload map[string]any, name string) map[string]any {
	t.Helper()
	for _, c := range mustGet[[]any](t, workload, "spec", "template", "spec", "containers") {
		if cm, ok := c.(map[string]any); ok && cm["name"] == name {
			return cm
		}
	}
	t.Fatalf("no container %s", name)
	return nil
}

func containerResources(t *testing.T, r *Rendered, kindNsName, name string) map[string]any {
	t.Helper()
	return mustGet[map[string]any](t, container(t, object(t, r, kindNsName), name), "resources")
}

func envValue(c map[string]any, name string) (string, bool) {
	env, _ := c["env"].([]any)
	for _, e := range env {
		if em, ok := e.(map[string]any); ok && em["name"] == name {
			v, _ := em["value"].(string)
			return v, true
		}
	}
	return "", false
}

// assertResources compares "limits.cpu"-style keys by quantity value.
func assertResources(t *testing.T, res map[string]any, want map[string]string) {
	t.Helper()
	for key, w := range want {
		var kind, name string
		for i := range key {
			if key[i] == '.' {
				kind, name = key[:i], key[i+1:]
			}
		}
		got, ok := res[kind].(map[string]any)[name].(string)
		if !ok {
			t.Errorf("resources %s missing in %v", key, res)
			continue
		}
		g, wq := resource.MustParse(got), resource.MustParse(w)
		if g.Cmp(wq) != 0 {
			t.Errorf("resources %s = %s, want %s", key, got, w)
		}
	}
}

func assertHPA(t *testing.T, r *Rendered, name string, lo, hi int64) {
	t.Helper()
	hpa := object(t, r, "HorizontalPodAutoscaler/istio-system/"+name)
	if got := mustGet[int64](t, hpa, "spec", "minReplicas"); got != lo {
		t.Errorf("%s minReplicas = %d, want %d", name, got, lo)
	}
	if got := mustGet[int64](t, hpa, "spec", "maxReplicas"); got != hi {
		t.Errorf("%s maxReplicas = %d, want %d", name, got, hi)
	}
}

func assertRollingUpdate(t *testing.T, r *Rendered, name string, surge, unavailable any) {
	t.Helper()
	ru := mustGet[map[string]any](t, object(t, r, "Deployment/istio-system/"+name), "spec", "strategy", "rollingUpdate")
	if ru["maxSurge"] != surge || ru["maxUnavailable"] != unavailable {
		t.Errorf("%s rollingUpdate = %v, want maxSurge %#v maxUnavailable %#v", name, ru, surge, unavailable)
	}
}

func assertStrings(t *testing.T, got any, want ...string) {
	t.Helper()
	l, _ := got.([]any)
	if fmt.Sprint(l) != fmt.Sprint(want) {
		t.Errorf("got %#v, want %q", got, want)
	}
}

func mustGet[T any](t *testing.T, m map[string]any, path ...string) T {
	t.Helper()
	var cur any = m
	for _, p := range path {
		switch c := cur.(type) {
		case map[string]any:
			cur = c[p]
		case []any:
			var i int
			for _, ch := range p {
				i = i*10 + int(ch-'0')
			}
			if i >= len(c) {
				t.Fatalf("%v: index %d out of range", path, i)
			}
			cur = c[i]
		default:
			t.Fatalf("%v: %s not found", path, p)
		}
	}
	v, ok := cur.(T)
	if !ok {
		t.Fatalf("%v = %#v, not a %T", path, cur, v)
	}
	return v
}
