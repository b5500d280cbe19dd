package istioclient

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"

	v1alpha2 "github.com/meshkeeper/istio-operator/pkg/apis/operator/v1alpha2"
)

// GatewayConfigAnnotation is the ingress gateway's pod-template annotation
// recording the start-time configuration its pods run. Envoy reads the
// gateway topology, trust domain, stats matcher and proxy metadata only at
// start, so a change of any of them needs new pods; a change of the
// annotation is exactly that roll, once per change.
const GatewayConfigAnnotation = "istio-operator.kyma-project.io/ingress-gateway-configuration"

// GatewayStartConfig are the settings the ingress gateway reads only at
// start, as the operator maps them into meshConfig.defaultConfig.
type GatewayStartConfig struct {
	NumTrustedProxies        *int64                      `json:"numTrustedProxies,omitempty"`
	ForwardClientCertDetails *v1alpha2.XFCCStrategy      `json:"forwardClientCertDetails,omitempty"`
	TrustDomain              *string                     `json:"trustDomain,omitempty"`
	ProxyStatsMatcher        *v1alpha2.ProxyStatsMatcher `json:"proxyStatsMatcher,omitempty"`
	EnableDNSProxying        *bool                       `json:"enableDNSProxying,omitempty"`
	// The experimental features that add proxy metadata.
	DualStack bool `json:"dualStack,omitempty"`
	Ambient   bool `json:"ambient,omitempty"`
}

// GatewayConfigHash identifies the ingress gateway's start-time
// configuration of a spec; settings that do not reach the gateway's Envoy
// at start leave it unchanged.
func GatewayConfigHash(spec *v1alpha2.IstioSpec) string {
	c := spec.Config
	cfg := GatewayStartConfig{
		NumTrustedProxies:        c.NumTrustedProxies,
		ForwardClientCertDetails: c.ForwardClientCertDetails,
		TrustDomain:              c.TrustDomain,
		ProxyStatsMatcher:        c.ProxyStatsMatcher,
		DualStack:                dualStack(spec.Experimental),
		Ambient:                  ambient(spec.Experimental),
	}
	if c.EnableDNSProxying != nil && *c.EnableDNSProxying {
		cfg.EnableDNSProxying = c.EnableDNSProxying
	}
	b, _ := json.Marshal(cfg)
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])[:16]
}
