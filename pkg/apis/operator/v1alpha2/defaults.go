package v1alpha2

import (
	"slices"

	"k8s.io/apimachinery/pkg/api/resource"
)

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

// Resolved returns a copy of the spec as the operator installs it: the
// image settings the resource leaves unset filled from the operator's
// defaults (its --istio-registry and --image-pull-secrets), and Profile
// set to the profile decided for the cluster. Everything that derives
// Istio's configuration from a spec takes a resolved one, so that the
// installation and the proxy sidecar controllers derive the same.
func (s *IstioSpec) Resolved(defaults Images, profile Profile) *IstioSpec {
	r := s.DeepCopy()
	var img Images
	if r.Images != nil {
		img = *r.Images
	}
	if img.Registry == "" {
		img.Registry = defaults.Registry
	}
	if len(img.PullSecrets) == 0 {
		img.PullSecrets = slices.Clone(defaults.PullSecrets)
	}
	r.Images = nil
	if img.Registry != "" || len(img.PullSecrets) > 0 {
		r.Images = &img
	}
	r.Profile = profile
	return r
}

// RegistryPattern is the schema's pattern of spec.images.registry, for the
// operator's flag of the same meaning.
const RegistryPattern = `^[a-z0-9]+([._-][a-z0-9]+)*(:[0-9]+)?(/[a-z0-9]+([._-][a-z0-9]+)*)*$`

// PullSecretPattern is the schema's pattern of spec.images.pullSecrets items.
const PullSecretPattern = `^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`
