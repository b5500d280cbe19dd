package apitest

import (
	"k8s.io/utils/ptr"

	v1alpha2 "github.com/meshkeeper/istio-operator/pkg/apis/operator/v1alpha2"
)

// Experimental turns on every experimental feature.
func Experimental() *v1alpha2.Experimental {
	return &v1alpha2.Experimental{
		Pilot:         &v1alpha2.PilotFeatures{EnableAlphaGatewayAPI: true, EnableMultiNetworkDiscoverGatewayAPI: true},
		EnableAmbient: ptr.To(true), EnableDualStack: ptr.To(true),
	}
}

// RenderingSpecs are specs that together render every kind and name of
// object the operator can install: the defaults, the optional components
// and the experimental features.
func RenderingSpecs() map[string]*v1alpha2.IstioSpec {
	return map[string]*v1alpha2.IstioSpec{
		"default": {},
		"egress gateway and NetworkPolicies": {
			NetworkPoliciesEnabled: true,
			Components:             &v1alpha2.Components{EgressGateway: &v1alpha2.EgressGateway{Enabled: ptr.To(true)}},
		},
		"experimental features": {Experimental: Experimental()},
	}
}
