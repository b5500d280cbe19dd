package istioclient

import (
	_ "embed"
	"encoding/json"
	"fmt"

	"istio.io/istio/operator/pkg/values"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/yaml"

	v1alpha2 "github.com/meshkeeper/istio-operator/pkg/apis/operator/v1alpha2"
)

//go:embed default-istio-operator.yaml
var defaultIstioOperator []byte

//go:embed evaluation.yaml
var evaluationProfile []byte

// Registry is where a resolved spec's images come from: its
// spec.images.registry, or Istio's own Hub.
func Registry(spec *v1alpha2.IstioSpec) string {
	if spec.Images != nil && spec.Images.Registry != "" {
		return spec.Images.Registry
	}
	return Hub
}

// mergeEvaluation overlays the evaluation profile's sizes onto the
// production defaults, before the resource's own settings are merged.
func mergeEvaluation(spec map[string]any) error {
	eval, err := values.MapFromYaml(evaluationProfile)
	if err != nil {
		return fmt.Errorf("parsing the evaluation profile: %w", err)
	}
	overlay := obj(eval, "spec")
	comps := obj(spec, "components")
	for _, name := range []string{"pilot", "cni"} {
		mergeMap(obj(comps, name, "k8s"), obj(overlay, "components", name, "k8s"))
	}
	for _, list := range []string{"ingressGateways", "egressGateways"} {
		items, _ := overlay["components"].(map[string]any)[list].([]any)
		for _, it := range items {
			g := it.(map[string]any)
			mergeMap(obj(gateway(comps, list, g["name"].(string)), "k8s"), obj(g, "k8s"))
		}
	}
	mergeMap(obj(spec, "values"), obj(overlay, "values"))
	return nil
}

// mergeMap sets every leaf of src in dst, replacing what dst has there.
func mergeMap(dst, src map[string]any) {
	for k, v := range src {
		if m, ok := asMap(v); ok {
			mergeMap(obj(dst, k), m)
			continue
		}
		dst[k] = v
	}
}

func asMap(v any) (map[string]any, bool) {
	switch m := v.(type) {
	case map[string]any:
		return m, true
	case values.Map:
		return m, true
	}
	return nil, false
}

// Names of the installed gateways and of the IstioOperator the owner labels
// refer to.
const (
	IngressGatewayName = "istio-ingressgateway"
	EgressGatewayName  = "istio-egressgateway"
	Namespace          = "istio-system"
)

// DesiredIstioOperator merges the operator's default IstioOperator with a
// resolved Istio resource's spec (v1alpha2.IstioSpec.Resolved): the
// profile's sizes first, then every field of the resource overrides them
// at the place Kyma maps it to. The result is what Render takes.
// DesiredIstioOperatorAs is DesiredIstioOperator for a control plane
// revision of a version: a canary upgrade's new revision, or, for a
// rollback, the old one's objects the new revision took over (rendered
// with the charts compiled in, at the old version's images).
func DesiredIstioOperatorAs(spec *v1alpha2.IstioSpec, as Revision) (values.Map, error) {
	iop, err := DesiredIstioOperator(spec)
	if err != nil {
		return nil, err
	}
	s := obj(iop, "spec")
	if as.Name != "" && as.Name != DefaultRevision {
		s["revision"] = as.Name
	}
	if v := as.Version.String(); as.Version != (SemVer{}) && v != Version {
		s["tag"] = v
	}
	return iop, nil
}

func DesiredIstioOperator(spec *v1alpha2.IstioSpec) (values.Map, error) {
	iop, err := values.MapFromYaml(defaultIstioOperator)
	if err != nil {
		return nil, fmt.Errorf("parsing the default IstioOperator: %w", err)
	}
	s := obj(iop, "spec")
	s["hub"] = Registry(spec)
	s["tag"] = Version
	if spec.Profile == v1alpha2.ProfileEvaluation {
		if err := mergeEvaluation(s); err != nil {
			return nil, err
		}
	}
	if spec.Images != nil && len(spec.Images.PullSecrets) > 0 {
		setStrings(obj(s, "values", "global"), "imagePullSecrets", spec.Images.PullSecrets)
	}

	mergeMeshConfig(obj(s, "meshConfig"), &spec.Config)
	mergeExperimental(s, spec.Experimental)

	if p := spec.Config.GatewayExternalTrafficPolicy; p != nil {
		obj(s, "values", "gateways", IngressGatewayName)["externalTrafficPolicy"] = *p
	}
	if spec.CompatibilityMode {
		v := MustParseVersion(Version)
		s["compatibilityVersion"] = fmt.Sprintf("%d.%d", v.Major, v.Minor-1)
	}

	// The ingress gateway's pods carry the hash of the start-time settings
	// they run: a change of those settings rolls the gateway in the same
	// apply that changes the mesh configuration, after it (gateways are
	// applied after istiod), and exactly once.
	obj(gateway(obj(s, "components"), "ingressGateways", IngressGatewayName), "k8s", "podAnnotations")[GatewayConfigAnnotation] = GatewayConfigHash(spec)

	// Every injected pod carries the hash of the injection-time proxy
	// settings, so that the proxy sidecar controller can tell which pods
	// predate a change of them.
	obj(s, "values", "sidecarInjectorWebhook", "injectedAnnotations")[ProxyConfigAnnotation] = ProxyConfigHash(spec)

	if c := spec.Components; c != nil {
		comps := obj(s, "components")
		if c.Pilot != nil {
			mergeK8s(obj(comps, "pilot", "k8s"), c.Pilot.K8s)
		}
		if c.IngressGateway != nil {
			mergeK8s(obj(gateway(comps, "ingressGateways", IngressGatewayName), "k8s"), c.IngressGateway.K8s)
		}
		if c.EgressGateway != nil {
			eg := gateway(comps, "egressGateways", EgressGatewayName)
			if c.EgressGateway.Enabled != nil {
				eg["enabled"] = *c.EgressGateway.Enabled
			}
			mergeK8s(obj(eg, "k8s"), c.EgressGateway.K8s)
		}
		if c.Cni != nil && c.Cni.K8s != nil {
			k8s := obj(comps, "cni", "k8s")
			if c.Cni.K8s.Affinity != nil {
				a, err := toMap(c.Cni.K8s.Affinity)
				if err != nil {
					return nil, err
				}
				k8s["affinity"] = a
			}
			mergeResources(k8s, c.Cni.K8s.Resources)
		}
		if c.Proxy != nil && c.Proxy.K8s != nil {
			mergeResources(obj(s, "values", "global", "proxy"), c.Proxy.K8s.Resources)
		}
	}
	// Istio's renderer reads the IstioOperator back as YAML, which refuses
	// some characters JSON (and so the API server) accepts.
	if _, err := yaml.Marshal(iop); err != nil {
		return nil, &InvalidSpecError{Err: fmt.Errorf("the Istio resource holds a character Istio's installer cannot read: %w", err)}
	}
	return iop, nil
}

// InvalidSpecError is an Istio resource the installer cannot take; the
// user must change it.
type InvalidSpecError struct{ Err error }

func (e *InvalidSpecError) Error() string { return e.Err.Error() }
func (e *InvalidSpecError) Unwrap() error { return e.Err }

func mergeMeshConfig(mesh map[string]any, c *v1alpha2.Config) {
	if c.NumTrustedProxies != nil {
		obj(mesh, "defaultConfig", "gatewayTopology")["numTrustedProxies"] = *c.NumTrustedProxies
	}
	if c.ForwardClientCertDetails != nil {
		obj(mesh, "defaultConfig", "gatewayTopology")["forwardClientCertDetails"] = string(*c.ForwardClientCertDetails)
	}
	if c.Telemetry.Metrics.PrometheusMerge {
		mesh["enablePrometheusMerge"] = true
	}
	if c.TrustDomain != nil {
		mesh["trustDomain"] = *c.TrustDomain
	}
	if c.EnableDNSProxying != nil && *c.EnableDNSProxying {
		obj(mesh, "defaultConfig", "proxyMetadata")["ISTIO_META_DNS_CAPTURE"] = "true"
	}
	if m := c.ProxyStatsMatcher; m != nil {
		psm := obj(mesh, "defaultConfig", "proxyStatsMatcher")
		setStrings(psm, "inclusionRegexps", m.InclusionRegexps)
		setStrings(psm, "inclusionPrefixes", m.InclusionPrefixes)
		setStrings(psm, "inclusionSuffixes", m.InclusionSuffixes)
	}
	if providers := extensionProviders(c.Authorizers); len(providers) > 0 {
		existing, _ := mesh["extensionProviders"].([]any)
		mesh["extensionProviders"] = append(existing, providers...)
	}
}

// extensionProviders turns authorizers into envoyExtAuthzHttp providers.
// Of authorizers sharing a name the first wins (the duplicates are reported
// as a warning).
func extensionProviders(authorizers []*v1alpha2.Authorizer) []any {
	var out []any
	seen := map[string]bool{}
	for _, a := range authorizers {
		if a == nil || seen[a.Name] {
			continue
		}
		seen[a.Name] = true
		http := map[string]any{
			"service": a.Service,
			"port":    int64(a.Port),
		}
		if a.PathPrefix != nil {
			http["pathPrefix"] = *a.PathPrefix
		}
		if a.Timeout != nil {
			http["timeout"] = a.Timeout.Duration.String()
		}
		if h := a.Headers; h != nil {
			if h.InCheck != nil {
				setStrings(http, "includeRequestHeadersInCheck", h.InCheck.Include)
				if len(h.InCheck.Add) > 0 {
					add := map[string]any{}
					for k, v := range h.InCheck.Add {
						add[k] = v
					}
					http["includeAdditionalHeadersInCheck"] = add
				}
			}
			if h.ToUpstream != nil {
				setStrings(http, "headersToUpstreamOnAllow", h.ToUpstream.OnAllow)
			}
			if h.ToDownstream != nil {
				setStrings(http, "headersToDownstreamOnAllow", h.ToDownstream.OnAllow)
				setStrings(http, "headersToDownstreamOnDeny", h.ToDownstream.OnDeny)
			}
		}
		out = append(out, map[string]any{"name": a.Name, "envoyExtAuthzHttp": http})
	}
	return out
}

// mergeK8s overlays a component's Kubernetes settings onto the defaults,
// field by field: a resource that sets only limits.cpu keeps the default
// limits.memory.
func mergeK8s(k8s map[string]any, c *v1alpha2.KubernetesResourcesConfig) {
	if c == nil {
		return
	}
	if h := c.HPASpec; h != nil {
		hpa := obj(k8s, "hpaSpec")
		// A bound set alone moves the default other bound with it where
		// they would cross: an autoscaler with minReplicas above
		// maxReplicas is refused by the API server.
		if h.MinReplicas != nil {
			hpa["minReplicas"] = int64(*h.MinReplicas)
			if h.MaxReplicas == nil && intValue(hpa["maxReplicas"]) < int64(*h.MinReplicas) {
				hpa["maxReplicas"] = int64(*h.MinReplicas)
			}
		}
		if h.MaxReplicas != nil {
			hpa["maxReplicas"] = int64(*h.MaxReplicas)
			if h.MinReplicas == nil && intValue(hpa["minReplicas"]) > int64(*h.MaxReplicas) {
				hpa["minReplicas"] = int64(*h.MaxReplicas)
			}
		}
	}
	if st := c.Strategy; st != nil && st.RollingUpdate != nil {
		ru := obj(k8s, "strategy", "rollingUpdate")
		if v := st.RollingUpdate.MaxSurge; v != nil {
			ru["maxSurge"] = intOrString(v)
		}
		if v := st.RollingUpdate.MaxUnavailable; v != nil {
			ru["maxUnavailable"] = intOrString(v)
		}
	}
	mergeResources(k8s, c.Resources)
}

func mergeResources(parent map[string]any, r *v1alpha2.Resources) {
	if r == nil {
		return
	}
	for name, claims := range map[string]*v1alpha2.ResourceClaims{"limits": r.Limits, "requests": r.Requests} {
		if claims == nil {
			continue
		}
		m := obj(parent, "resources", name)
		if claims.CPU != nil {
			m["cpu"] = *claims.CPU
		}
		if claims.Memory != nil {
			m["memory"] = *claims.Memory
		}
	}
}

// intValue reads an integer of the parsed IstioOperator; absent is 0.
func intValue(v any) int64 {
	switch n := v.(type) {
	case int:
		return int64(n)
	case int64:
		return n
	case float64:
		return int64(n)
	}
	return 0
}

func intOrString(v *intstr.IntOrString) any {
	if v.Type == intstr.Int {
		return int64(v.IntVal)
	}
	return v.StrVal
}

func setStrings(m map[string]any, key string, vals []string) {
	if len(vals) == 0 {
		return
	}
	l := make([]any, len(vals))
	for i, v := range vals {
		l[i] = v
	}
	m[key] = l
}

// obj returns the map at path below m, creating maps on the way.
func obj(m map[string]any, path ...string) map[string]any {
	for _, p := range path {
		next, ok := m[p].(map[string]any)
		if !ok {
			if vm, isValues := m[p].(values.Map); isValues {
				next = vm
			} else {
				next = map[string]any{}
				m[p] = next
			}
		}
		m = next
	}
	return m
}

// gateway returns the named entry of a gateway list, adding it if missing.
func gateway(components map[string]any, list, name string) map[string]any {
	items, _ := components[list].([]any)
	for _, it := range items {
		if g, ok := it.(map[string]any); ok && g["name"] == name {
			return g
		}
	}
	g := map[string]any{"name": name}
	components[list] = append(items, g)
	return g
}

func toMap(v any) (map[string]any, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	var m map[string]any
	return m, json.Unmarshal(b, &m)
}
