package istioclient

import (
	"fmt"
	"reflect"
	"strconv"
	"strings"

	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// Drift reports the first place where a live object no longer carries what
// was rendered for it, or "" when it carries all of it. The comparison is
// "desired is a subset of live": fields the API server or controllers add
// (defaults, status, replicas set by an HPA) do not count, fields Istio
// itself rewrites at run time are ignored, and quantities compare by value
// in resources ("1000m" equals "1").
func Drift(desired, live *unstructured.Unstructured) string {
	ignore := ignoredPaths[desired.GetKind()]
	return subset(desired.Object, live.Object, "", ignore)
}

// ignoredPaths are fields that something other than the charts owns once
// Istio runs: istiod patches its webhooks' CA bundle and flips their failure
// policy; the default revision tag, created after the charts as Istio's
// installer does, deactivates the injector's own selectors so that the tag's
// webhook injects; and the HorizontalPodAutoscaler sets the replicas of
// istiod and the gateways. A path element "*" matches every list index.
var ignoredPaths = map[string][]string{
	"MutatingWebhookConfiguration": {".webhooks.*.clientConfig.caBundle", ".webhooks.*.failurePolicy",
		".webhooks.*.namespaceSelector", ".webhooks.*.objectSelector"},
	"ValidatingWebhookConfiguration": {".webhooks.*.clientConfig.caBundle", ".webhooks.*.failurePolicy"},
	"Deployment":                     {".spec.replicas"},
}

func ignored(path string, ignore []string) bool {
	for _, p := range ignore {
		if matchPath(p, path) {
			return true
		}
	}
	return false
}

func matchPath(pattern, path string) bool {
	pp, ps := strings.Split(pattern, "."), strings.Split(path, ".")
	if len(pp) != len(ps) {
		return false
	}
	for i := range pp {
		if pp[i] == "*" {
			if _, err := strconv.Atoi(ps[i]); err != nil {
				return false
			}
			continue
		}
		if pp[i] != ps[i] {
			return false
		}
	}
	return true
}

func subset(desired, live any, path string, ignore []string) string {
	if ignored(path, ignore) || desired == nil {
		return ""
	}
	switch d := desired.(type) {
	case map[string]any:
		l, _ := live.(map[string]any)
		for k, dv := range d {
			if path == "" && k == "status" {
				continue
			}
			if diff := subset(dv, l[k], path+"."+k, ignore); diff != "" {
				return diff
			}
		}
		return ""
	case []any:
		l, _ := live.([]any)
		if len(d) == 0 {
			return ""
		}
		if len(l) != len(d) {
			return fmt.Sprintf("%s has %d items, want %d", path, len(l), len(d))
		}
		if byName, ok := namedItems(d); ok {
			// A list of named items (containers, webhooks, ports) is a map
			// keyed by name to server-side apply, which keeps the live
			// order of existing items: compare by name, not position.
			liveByName, _ := namedItems(l)
			for name, di := range byName {
				li, found := liveByName[name]
				if !found {
					return fmt.Sprintf("%s has no item named %s", path, name)
				}
				if diff := subset(d[di], l[li], fmt.Sprintf("%s.%d", path, li), ignore); diff != "" {
					return diff
				}
			}
			return ""
		}
		for i := range d {
			if diff := subset(d[i], l[i], fmt.Sprintf("%s.%d", path, i), ignore); diff != "" {
				return diff
			}
		}
		return ""
	case string:
		if l, ok := live.(string); ok && (l == d || (strings.Contains(path, ".resources.") && sameQuantity(d, l))) {
			return ""
		}
		if live == nil && d == "" {
			return ""
		}
	default:
		// The API server drops zero values of optional fields.
		if scalarEqual(desired, live) || (live == nil && reflect.ValueOf(desired).IsZero()) {
			return ""
		}
	}
	return fmt.Sprintf("%s is %s, want %s", path, brief(live), brief(desired))
}

// brief prints a value for a drift reason, which goes into logs and
// conditions: a short scalar as it is, anything longer by its size.
func brief(v any) string {
	s := fmt.Sprint(v)
	if len(s) <= 64 && !strings.Contains(s, "\n") {
		return s
	}
	return fmt.Sprintf("a %T of %d bytes", v, len(s))
}

// namedItems indexes a list of maps by their unique "name" field; ok is
// false when an item has no name or a name repeats.
func namedItems(list []any) (map[string]int, bool) {
	idx := make(map[string]int, len(list))
	for i, it := range list {
		m, isMap := it.(map[string]any)
		if !isMap {
			return nil, false
		}
		name, isString := m["name"].(string)
		if !isString {
			return nil, false
		}
		if _, dup := idx[name]; dup {
			return nil, false
		}
		idx[name] = i
	}
	return idx, true
}

func sameQuantity(a, b string) bool {
	qa, errA := resource.ParseQuantity(a)
	qb, errB := resource.ParseQuantity(b)
	return errA == nil && errB == nil && qa.Cmp(qb) == 0
}

// scalarEqual compares numbers across the int64/float64 split of decoded
// JSON and YAML.
func scalarEqual(a, b any) bool {
	if fa, ok := number(a); ok {
		fb, ok := number(b)
		return ok && fa == fb
	}
	return reflect.DeepEqual(a, b)
}

func number(v any) (float64, bool) {
	switch n := v.(type) {
	case int64:
		return float64(n), true
	case int:
		return float64(n), true
	case int32:
		return float64(n), true
	case float64:
		return n, true
	}
	return 0, false
}
