package v1alpha2

import (
	"strings"
	"testing"

	"k8s.io/utils/ptr"
)

func TestValidateSpec(t *testing.T) {
	cases := map[string]struct {
		spec      IstioSpec
		wantField string // empty: valid
	}{
		"empty": {},
		"valid regexps": {spec: IstioSpec{Config: Config{ProxyStatsMatcher: &ProxyStatsMatcher{
			InclusionRegexps: []string{".*upstream_rq.*", `^cluster\.outbound`}}}}},
		"invalid regexp": {spec: IstioSpec{Config: Config{ProxyStatsMatcher: &ProxyStatsMatcher{
			InclusionRegexps: []string{"ok", "(unclosed"}}}}, wantField: "spec.config.proxyStatsMatcher.inclusionRegexps[1]"},
		"lookahead is not RE2": {spec: IstioSpec{Config: Config{ProxyStatsMatcher: &ProxyStatsMatcher{
			InclusionRegexps: []string{"(?=x)"}}}}, wantField: "spec.config.proxyStatsMatcher.inclusionRegexps[0]"},
		"null authorizer": {spec: IstioSpec{Config: Config{Authorizers: []*Authorizer{{Name: "a", Port: 1}, nil}}},
			wantField: "spec.config.authorizers[1]"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			errs := ValidateSpec(&tc.spec)
			if tc.wantField == "" {
				if len(errs) > 0 {
					t.Fatalf("unexpected errors: %v", errs)
				}
				return
			}
			if len(errs) != 1 || errs[0].Field != tc.wantField {
				t.Fatalf("errors %v, want one for %s", errs, tc.wantField)
			}
		})
	}
}

func TestSpecWarningsDuplicateAuthorizers(t *testing.T) {
	spec := IstioSpec{Config: Config{Authorizers: []*Authorizer{
		{Name: "a", Port: 1}, {Name: "b", Port: 2}, {Name: "a", Port: 3}, nil, {Name: "a", Port: 4},
	}}}
	warns := SpecWarnings(&spec)
	if len(warns) != 2 {
		t.Fatalf("warnings %v, want two duplicates of a", warns)
	}
	if warns[0].Field != "spec.config.authorizers[2].name" || warns[1].Field != "spec.config.authorizers[4].name" {
		t.Errorf("warnings name %s and %s", warns[0].Field, warns[1].Field)
	}
	if !strings.Contains(warns[0].Error(), "first defined at index 0") {
		t.Errorf("warning %q does not say where the name was first defined", warns[0].Error())
	}
	if w := SpecWarnings(&IstioSpec{}); len(w) != 0 {
		t.Errorf("warnings for an empty spec: %v", w)
	}
}

func TestExperimentalFields(t *testing.T) {
	if got := ExperimentalFields(&IstioSpec{}); got != nil {
		t.Errorf("no experimental block: %v", got)
	}
	off := IstioSpec{Experimental: &Experimental{Pilot: &PilotFeatures{}, EnableAmbient: ptr.To(false)}}
	if got := ExperimentalFields(&off); got != nil {
		t.Errorf("all experimental switches off: %v", got)
	}
	on := IstioSpec{Experimental: &Experimental{
		Pilot:         &PilotFeatures{EnableAlphaGatewayAPI: true},
		EnableAmbient: ptr.To(true),
	}}
	got := strings.Join(ExperimentalFields(&on), ",")
	if got != "spec.experimental.pilot.enableAlphaGatewayAPI,spec.experimental.enableAmbient" {
		t.Errorf("got %s", got)
	}
}

func TestDefaults(t *testing.T) {
	var s IstioSpec
	if s.EffectiveDeletionStrategy() != DeletionStrategyBlocking {
		t.Error("deletion strategy does not default to Blocking")
	}
	s.DeletionStrategy = DeletionStrategyCascading
	if s.EffectiveDeletionStrategy() != DeletionStrategyCascading {
		t.Error("Cascading is not kept")
	}
	if s.NetworkPoliciesWanted() {
		t.Error("network policies wanted by default")
	}
	if !(&IstioSpec{EnableModuleNetworkPolicies: true}).NetworkPoliciesWanted() ||
		!(&IstioSpec{NetworkPoliciesEnabled: true}).NetworkPoliciesWanted() {
		t.Error("either name of the switch must enable network policies")
	}

	defaults := RestartPacing{RestartsPerSecond: 5, MaxConcurrentRollouts: 20}
	if got := s.EffectiveRestartPacing(defaults); got != defaults {
		t.Errorf("unset pacing: %+v, want the defaults %+v", got, defaults)
	}
	s.ProxyRestart = &ProxyRestart{RestartsPerSecond: NewQuantity("500m")}
	if got := s.EffectiveRestartPacing(defaults); got.RestartsPerSecond != 0.5 || got.MaxConcurrentRollouts != 20 {
		t.Errorf("rate only: %+v", got)
	}
	s.ProxyRestart = &ProxyRestart{MaxConcurrentRollouts: ptr.To[int32](3)}
	if got := s.EffectiveRestartPacing(defaults); got.RestartsPerSecond != 5 || got.MaxConcurrentRollouts != 3 {
		t.Errorf("rollouts only: %+v", got)
	}
}
