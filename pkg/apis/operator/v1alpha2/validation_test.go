package v1alpha2

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"k8s.io/utils/ptr"
	"sigs.k8s.io/yaml"
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
		"DEL in an authorizer service": {spec: IstioSpec{Config: Config{Authorizers: []*Authorizer{{Name: "a", Service: "ext\x7f.ns", Port: 1}}}},
			wantField: "spec.config.authorizers[0].service"},
		"C1 control in a header name": {spec: IstioSpec{Config: Config{Authorizers: []*Authorizer{{Name: "a", Port: 1,
			Headers: &Headers{InCheck: &InCheck{Add: map[string]string{"x\u0090": "v"}}}}}}},
			wantField: "spec.config.authorizers[0].headers.inCheck.add.x\u0090"},
		"U+FFFF in a stats prefix": {spec: IstioSpec{Config: Config{ProxyStatsMatcher: &ProxyStatsMatcher{
			InclusionPrefixes: []string{"a\uffff"}}}}, wantField: "spec.config.proxyStatsMatcher.inclusionPrefixes[0]"},
		"NEL, tab and other C0 controls": {spec: IstioSpec{Config: Config{Authorizers: []*Authorizer{{Name: "a\u0085\t\x01", Port: 1}}}}},
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

// TestYAMLUnreadableMatchesYAML keeps the character rule in step with the
// YAML library the installer reads with. Runes go through the library in
// blocks of 256: a block that round-trips and that the rule accepts whole
// agrees; any other block is checked rune by rune.
func TestYAMLUnreadableMatchesYAML(t *testing.T) {
	var runes []rune
	for r := rune(0); r <= 0x10ffff; r++ {
		if r == 0x10000 {
			r = 0x10ffff - 0xff // the astral planes behave alike; check their end
		}
		if r >= 0xd800 && r <= 0xdfff {
			continue // not in the UTF-8 the API server sends
		}
		runes = append(runes, r)
	}
	roundTrips := func(rs ...rune) error {
		doc := map[string]string{}
		for _, r := range rs {
			doc[fmt.Sprint(r)] = "a" + string(r)
		}
		out, err := yaml.Marshal(doc)
		if err == nil {
			var back map[string]string
			err = yaml.Unmarshal(out, &back)
		}
		return err
	}
	for block := range slices.Chunk(runes, 256) {
		if !slices.ContainsFunc(block, yamlUnreadable) && roundTrips(block...) == nil {
			continue
		}
		for _, r := range block {
			err := roundTrips(r)
			if got := yamlUnreadable(r); got != (err != nil) {
				t.Errorf("%U: yamlUnreadable %t, YAML round trip error %v", r, got, err)
			}
		}
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
	// A rate stored before the schema's minimum existed is raised to it.
	s.ProxyRestart = &ProxyRestart{RestartsPerSecond: NewQuantity("1m")}
	if got := s.EffectiveRestartPacing(defaults); got.RestartsPerSecond != MinRestartsPerSecond {
		t.Errorf("rate below the minimum: %+v, want %v", got, MinRestartsPerSecond)
	}
	s.ProxyRestart = &ProxyRestart{MaxConcurrentRollouts: ptr.To[int32](3)}
	if got := s.EffectiveRestartPacing(defaults); got.RestartsPerSecond != 5 || got.MaxConcurrentRollouts != 3 {
		t.Errorf("rollouts only: %+v", got)
	}
}
