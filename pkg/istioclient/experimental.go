package istioclient

import (
	v1alpha2 "github.com/meshkeeper/istio-operator/pkg/apis/operator/v1alpha2"
)

// mergeExperimental sets what the Istio resource's experimental features
// render to. Only the experimental build accepts a resource that sets them
// (ExperimentalBuild); their rendering is the same in every build, so that
// the regular build's tests cover it. A feature left off sets nothing: a
// spec without experimental features renders as if they did not exist.
func mergeExperimental(s map[string]any, e *v1alpha2.Experimental) {
	if e == nil {
		return
	}
	if p := e.Pilot; p != nil {
		if p.EnableAlphaGatewayAPI {
			setIstiodEnv(s, "PILOT_ENABLE_ALPHA_GATEWAY_API")
		}
		// Istio 1.31 already discovers them by default; set, as Kyma sets
		// it, the feature stays on whatever a later Istio's default.
		if p.EnableMultiNetworkDiscoverGatewayAPI {
			setIstiodEnv(s, "PILOT_MULTI_NETWORK_DISCOVER_GATEWAY_API")
		}
	}
	if dualStack(e) {
		setIstiodEnv(s, "ISTIO_DUAL_STACK")
		setProxyMetadata(s, "ISTIO_DUAL_STACK")
		obj(s, "values", "gateways", IngressGatewayName)["ipFamilyPolicy"] = "PreferDualStack"
	}
	if ambient(e) {
		mergeAmbient(s)
	}
}

// mergeAmbient sets what Istio's ambient profile sets for ambient mode
// (manifests/profiles/ambient.yaml and the charts' profile-ambient.yaml):
// ztunnel, the CNI agent's ambient redirection, istiod's ambient
// controllers and HBONE for the proxies. Not the profile itself: it also
// removes the ingress gateway, which the operator keeps, and switches every
// image to its distroless variant, a new tag for every proxy in the mesh.
func mergeAmbient(s map[string]any) {
	comps := obj(s, "components")
	obj(comps, "ztunnel")["enabled"] = true
	obj(comps, "cni")["enabled"] = true
	obj(s, "values", "cni", "ambient")["enabled"] = true
	setIstiodEnv(s, "PILOT_ENABLE_AMBIENT")
	setProxyMetadata(s, "ISTIO_META_ENABLE_HBONE")
}

func dualStack(e *v1alpha2.Experimental) bool {
	return e != nil && e.EnableDualStack != nil && *e.EnableDualStack
}

func ambient(e *v1alpha2.Experimental) bool {
	return e != nil && e.EnableAmbient != nil && *e.EnableAmbient
}

// setIstiodEnv turns on one of istiod's feature variables.
func setIstiodEnv(s map[string]any, name string) {
	obj(s, "values", "pilot", "env")[name] = "true"
}

// setProxyMetadata turns on a variable of every proxy's agent, sidecars
// and gateways, through the mesh's default proxy configuration.
func setProxyMetadata(s map[string]any, name string) {
	obj(s, "meshConfig", "defaultConfig", "proxyMetadata")[name] = "true"
}
