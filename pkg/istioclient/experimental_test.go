package istioclient

import (
	"testing"

	"k8s.io/utils/ptr"

	v1alpha2 "github.com/meshkeeper/istio-operator/pkg/apis/operator/v1alpha2"
)

// Dual stack and ambient add proxy metadata, which sidecars and the
// ingress gateway read only at start: both hashes move, so that injected
// workloads restart and the gateway rolls once. istiod's own variables
// move neither. Features left off must leave both hashes as they were, or
// every proxy would restart after an operator upgrade.
func TestExperimentalProxyHashes(t *testing.T) {
	hashes := func(e *v1alpha2.Experimental) [2]string {
		s := &v1alpha2.IstioSpec{Experimental: e}
		return [2]string{ProxyConfigHash(s), GatewayConfigHash(s)}
	}
	none := hashes(nil)
	for name, e := range map[string]*v1alpha2.Experimental{
		"empty":           {},
		"all off":         {Pilot: &v1alpha2.PilotFeatures{}, EnableAmbient: ptr.To(false), EnableDualStack: ptr.To(false)},
		"istiod features": {Pilot: &v1alpha2.PilotFeatures{EnableAlphaGatewayAPI: true, EnableMultiNetworkDiscoverGatewayAPI: true}},
	} {
		if got := hashes(e); got != none {
			t.Errorf("%s: hashes %v, want %v", name, got, none)
		}
	}
	seen := [2]map[string]string{{none[0]: "none"}, {none[1]: "none"}}
	for name, e := range map[string]*v1alpha2.Experimental{
		"dual stack": {EnableDualStack: ptr.To(true)},
		"ambient":    {EnableAmbient: ptr.To(true)},
		"both":       {EnableDualStack: ptr.To(true), EnableAmbient: ptr.To(true)},
	} {
		for i, h := range hashes(e) {
			if other, dup := seen[i][h]; dup {
				t.Errorf("%s: %s hash equals that of %s", name, [2]string{"proxy", "gateway"}[i], other)
			}
			seen[i][h] = name
		}
	}
}
