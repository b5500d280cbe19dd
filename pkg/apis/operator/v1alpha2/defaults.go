package v1alpha2

import "k8s.io/apimachinery/pkg/api/resource"

// Defaults are applied in code rather than by the API server, so that a Kyma
// user's resources read back exactly as they were written.

// EffectiveDeletionStrategy is the deletion strategy, Blocking when unset.
func (s *IstioSpec) EffectiveDeletionStrategy() DeletionStrategy {
	if s.DeletionStrategy == "" {
		return DeletionStrategyBlocking
	}
	return s.DeletionStrategy
}

// NetworkPoliciesWanted reports whether either of the two names of the
// network policy switch is on.
func (s *IstioSpec) NetworkPoliciesWanted() bool {
	return s.NetworkPoliciesEnabled || s.EnableModuleNetworkPolicies
}

// RestartPacing is the resolved pacing of sidecar proxy restarts. It is
// not part of the API.
//
// +k8s:openapi-gen=false
// +k8s:deepcopy-gen=false
type RestartPacing struct {
	// RestartsPerSecond is the steady restart rate; 0 means unpaced.
	RestartsPerSecond float64
	// MaxConcurrentRollouts is the most workloads rolling at once; 0 means unlimited.
	MaxConcurrentRollouts int32
}

// MinRestartsPerSecond is the lowest restartsPerSecond the schema accepts
// (100m).
const MinRestartsPerSecond = 0.1

// EffectiveRestartPacing fills the fields the resource leaves unset with the
// operator's defaults. A rate below MinRestartsPerSecond, stored before the
// schema had the minimum, is raised to it.
func (s *IstioSpec) EffectiveRestartPacing(defaults RestartPacing) RestartPacing {
	p := defaults
	if s.ProxyRestart == nil {
		return p
	}
	if q := s.ProxyRestart.RestartsPerSecond; q != nil && q.Sign() > 0 {
		p.RestartsPerSecond = max(q.AsApproximateFloat64(), MinRestartsPerSecond)
	}
	if m := s.ProxyRestart.MaxConcurrentRollouts; m != nil && *m > 0 {
		p.MaxConcurrentRollouts = *m
	}
	return p
}

// NewQuantity is a helper for building a RestartsPerSecond value.
func NewQuantity(s string) *resource.Quantity {
	q := resource.MustParse(s)
	return &q
}
