package v1alpha2

import (
	"encoding/json"
	"fmt"
	"regexp"
	"sort"
	"strings"

	"k8s.io/apimachinery/pkg/util/validation/field"
)

// The API server validates everything its schema can express. These checks
// cover what it cannot; the installation controller reports their results in
// the Ready condition and as Events.

// ValidateSpec returns the errors that make a spec impossible to install.
func ValidateSpec(spec *IstioSpec) field.ErrorList {
	var errs field.ErrorList
	cfg := field.NewPath("spec", "config")
	for i, a := range spec.Config.Authorizers {
		if a == nil {
			errs = append(errs, field.Required(cfg.Child("authorizers").Index(i), "an authorizer must not be null"))
		}
	}
	errs = append(errs, unreadableStrings(spec)...)
	if m := spec.Config.ProxyStatsMatcher; m != nil {
		p := cfg.Child("proxyStatsMatcher", "inclusionRegexps")
		for i, re := range m.InclusionRegexps {
			if _, err := regexp.Compile(re); err != nil {
				errs = append(errs, field.Invalid(p.Index(i), re, fmt.Sprintf("not a valid RE2 regular expression: %v", err)))
			}
		}
	}
	return errs
}

// SpecWarnings returns problems the operator works around but the user
// should fix. Duplicate authorizer names are a warning, as in Kyma: the
// first authorizer of a name is used, the others are ignored.
func SpecWarnings(spec *IstioSpec) field.ErrorList {
	var warns field.ErrorList
	p := field.NewPath("spec", "config", "authorizers")
	seen := map[string]int{}
	for i, a := range spec.Config.Authorizers {
		if a == nil {
			continue
		}
		if first, dup := seen[a.Name]; dup {
			warns = append(warns, field.Duplicate(p.Index(i).Child("name"), fmt.Sprintf("%s (first defined at index %d; this one is ignored)", a.Name, first)))
			continue
		}
		seen[a.Name] = i
	}
	return warns
}

// ExperimentalFields lists the experimental fields a spec sets, for builds
// that do not accept them.
func ExperimentalFields(spec *IstioSpec) []string {
	e := spec.Experimental
	if e == nil {
		return nil
	}
	var set []string
	if e.Pilot != nil && e.Pilot.EnableAlphaGatewayAPI {
		set = append(set, "spec.experimental.pilot.enableAlphaGatewayAPI")
	}
	if e.Pilot != nil && e.Pilot.EnableMultiNetworkDiscoverGatewayAPI {
		set = append(set, "spec.experimental.pilot.enableMultiNetworkDiscoverGatewayAPI")
	}
	if e.EnableAmbient != nil && *e.EnableAmbient {
		set = append(set, "spec.experimental.enableAmbient")
	}
	if e.EnableDualStack != nil && *e.EnableDualStack {
		set = append(set, "spec.experimental.enableDualStack")
	}
	return set
}

// unreadableStrings names the strings holding a character that JSON, and so
// the API server, carries but YAML does not: DEL, the C1 controls but NEL,
// U+FFFE and U+FFFF. Istio's installer reads the IstioOperator as YAML.
func unreadableStrings(spec *IstioSpec) field.ErrorList {
	data, err := json.Marshal(spec)
	if err != nil {
		return field.ErrorList{field.InternalError(field.NewPath("spec"), err)}
	}
	var v any
	if err := json.Unmarshal(data, &v); err != nil {
		return field.ErrorList{field.InternalError(field.NewPath("spec"), err)}
	}
	var errs field.ErrorList
	var walk func(p *field.Path, v any)
	walk = func(p *field.Path, v any) {
		switch v := v.(type) {
		case map[string]any:
			keys := make([]string, 0, len(v))
			for k := range v {
				keys = append(keys, k)
			}
			sort.Strings(keys)
			for _, k := range keys {
				walk(p.Child(k), k)
				walk(p.Child(k), v[k])
			}
		case []any:
			for i, x := range v {
				walk(p.Index(i), x)
			}
		case string:
			if i := strings.IndexFunc(v, yamlUnreadable); i >= 0 {
				errs = append(errs, field.Invalid(p, v, fmt.Sprintf("holds %U, which Istio's installer cannot read", []rune(v[i:])[0])))
			}
		}
	}
	walk(field.NewPath("spec"), v)
	return errs
}

func yamlUnreadable(r rune) bool {
	return r == 0x7f || (r >= 0x80 && r <= 0x9f && r != 0x85) || r == 0xfffe || r == 0xffff
}
