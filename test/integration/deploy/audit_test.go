package deploy

import (
	"encoding/json"
	"fmt"
	"slices"
	"sort"
	"strings"
	"testing"

	rbacv1 "k8s.io/api/rbac/v1"

	"github.com/meshkeeper/istio-operator/test/cluster"
)

// permission is one right: a verb on a resource (with its subresource,
// "pods/eviction") of an API group, for one object name or, with name "",
// for any.
type permission struct {
	group, resource, verb, name string
}

func (p permission) String() string {
	s := p.verb + " " + p.resource
	if p.group != "" {
		s += " (" + p.group + ")"
	}
	if p.name != "" {
		s += " named " + p.name
	}
	return s
}

// exception is a right the lifecycle this test runs cannot be relied on to
// use: the path that needs it and why the test cannot take it.
type exception struct {
	why string
	// sometimes: the lifecycle may use it or not (timing); without it, an
	// exception the lifecycle did use fails the test, so the list only
	// shrinks.
	sometimes bool
}

// unexercised are the rights of deploy/base/rbac.yaml the lifecycle this
// test runs cannot be relied on to use. Keep it in step with the comments
// in rbac.yaml: the test fails on an entry no rule grants.
var unexercised = map[permission]exception{
	{resource: "rolebindings", group: "rbac.authorization.k8s.io", verb: "delete", name: "istio-operator-namespace-reader"}: {
		why: "the uninstall deletes the namespace reader's RoleBinding on its own only when it keeps istio-system for users' " +
			"objects; this lifecycle leaves none there, so the binding goes with the namespace (the kept case: " +
			"TestUserObjectsKeepIstioSystem in test/integration/coexistence)",
	},
	{resource: "pods/eviction", verb: "create"}: {
		why: "the proxy sidecar controller evicts the pods of an OnDelete StatefulSet, an owner-less ReplicaSet or a " +
			"ReplicationController one at a time once the workload is ready; the test creates such workloads and waits until " +
			"they are marked for restart, but the first eviction comes minutes later on this cluster, and the eviction path " +
			"has its own tests (issue 17, point 5)",
		sometimes: true,
	},
}

// namedRights are verbs on one object of a resource.
type namedRights struct {
	group, resource, name string
	verbs                 []string
}

// experimentalOnly are the rights only the objects of experimental features
// need (spec.experimental.enableAmbient: ztunnel, the CNI agent's ambient
// role). This regular build refuses those features, so its lifecycle never
// uses them; checkRBACCoversRenderedIstio holds the rules to their
// rendering, and test/integration/experimental installs them.
var experimentalOnly = []namedRights{
	{"", "serviceaccounts", "ztunnel", []string{"get", "create", "patch", "delete"}},
	{"apps", "daemonsets", "ztunnel", []string{"get", "create", "delete"}},
	{"rbac.authorization.k8s.io", "clusterroles", "istio-cni-ambient", []string{"get", "create", "patch", "delete", "escalate", "bind"}},
	{"rbac.authorization.k8s.io", "clusterrolebindings", "istio-cni-ambient", []string{"get", "create", "patch", "delete"}},
}

// canaryOnly are the rights only a canary upgrade's revision (1-31) needs:
// this lifecycle installs the default revision. checkRBACCoversRenderedIstio
// holds the rules to the revision's rendering, and test/integration/canary
// runs the upgrade.
var canaryOnly = []namedRights{
	{"", "services", "istiod-1-31", []string{"get", "create", "patch", "delete"}},
	{"", "serviceaccounts", "istiod-1-31", []string{"get", "create", "patch", "delete"}},
	{"", "configmaps", "istio-1-31", []string{"get", "create", "patch", "delete"}},
	{"", "configmaps", "istio-sidecar-injector-1-31", []string{"get", "create", "patch", "delete"}},
	{"", "configmaps", "values-1-31", []string{"get", "create", "patch", "delete"}},
	{"apps", "deployments", "istiod-1-31", []string{"get", "create", "delete"}},
	{"policy", "poddisruptionbudgets", "istiod-1-31", []string{"get", "create", "patch", "delete"}},
	{"autoscaling", "horizontalpodautoscalers", "istiod-1-31", []string{"get", "create", "patch", "delete"}},
	{"admissionregistration.k8s.io", "mutatingwebhookconfigurations", "istio-sidecar-injector-1-31", []string{"get", "create", "patch", "delete"}},
	{"admissionregistration.k8s.io", "validatingwebhookconfigurations", "istio-validator-1-31-istio-system", []string{"get", "create", "patch", "delete"}},
	{"rbac.authorization.k8s.io", "roles", "istiod-1-31", []string{"get", "create", "patch", "delete", "escalate", "bind"}},
	{"rbac.authorization.k8s.io", "rolebindings", "istiod-1-31", []string{"get", "create", "patch", "delete"}},
}

func init() {
	for _, role := range []string{"istio-reader-clusterrole-1-31-istio-system", "istiod-clusterrole-1-31-istio-system", "istiod-gateway-controller-1-31-istio-system"} {
		canaryOnly = append(canaryOnly,
			namedRights{"rbac.authorization.k8s.io", "clusterroles", role, []string{"get", "create", "patch", "delete", "escalate", "bind"}},
			namedRights{"rbac.authorization.k8s.io", "clusterrolebindings", role, []string{"get", "create", "patch", "delete"}})
	}
	for _, r := range canaryOnly {
		for _, v := range r.verbs {
			unexercised[permission{group: r.group, resource: r.resource, verb: v, name: r.name}] = exception{
				why: "only a canary upgrade's revision 1-31 renders " + r.resource + " " + r.name + " (test/integration/canary)",
			}
		}
	}
	for _, r := range experimentalOnly {
		for _, v := range r.verbs {
			unexercised[permission{group: r.group, resource: r.resource, verb: v, name: r.name}] = exception{
				why: "only an experimental feature renders " + r.resource + " " + r.name + ", and the regular build refuses it",
			}
		}
	}
}

// grantedRights lists every right the manifest's ClusterRoles and Roles
// grant, each with the rule it comes from. A wildcard fails the test: no
// rule may grant more than what is listed.
func grantedRights(t *testing.T) map[permission]string {
	t.Helper()
	out := map[permission]string{}
	for _, u := range render(t, "deploy/base") {
		var rules []rbacv1.PolicyRule
		switch u.GetKind() {
		case "ClusterRole":
			rules = toTyped[rbacv1.ClusterRole](t, u).Rules
		case "Role":
			rules = toTyped[rbacv1.Role](t, u).Rules
		default:
			continue
		}
		role := u.GetKind() + " " + u.GetName()
		for i, r := range rules {
			if len(r.NonResourceURLs) > 0 {
				t.Errorf("%s rule %d grants non-resource URLs %v", role, i, r.NonResourceURLs)
			}
			names := r.ResourceNames
			if len(names) == 0 {
				names = []string{""}
			}
			for _, g := range r.APIGroups {
				for _, res := range r.Resources {
					for _, v := range r.Verbs {
						if g == "*" || res == "*" || v == "*" || strings.HasSuffix(res, "/*") {
							t.Errorf("%s rule %d has a wildcard: groups %v resources %v verbs %v", role, i, r.APIGroups, r.Resources, r.Verbs)
						}
						for _, n := range names {
							out[permission{group: g, resource: res, verb: v, name: n}] = fmt.Sprintf("%s rule %d (groups %v, resources %v, verbs %v, names %v)",
								role, i, r.APIGroups, r.Resources, r.Verbs, r.ResourceNames)
						}
					}
				}
			}
		}
	}
	return out
}

// usedRights reads the audit log and returns every right the
// ServiceAccount's requests needed, with how often, and the requests the
// API server refused. Besides each request's own verb, the API server
// authorizes, within the request, create for a patch or update that
// creates the object (the response is 201), escalate on a role that is
// created or changed, and bind on the role a created or changed binding
// refers to (its roleRef, which the audit policy logs at level Request).
func usedRights(t *testing.T) (map[permission]int, []string) {
	t.Helper()
	used := map[permission]int{}
	var forbidden []string
	lines := 0
	cluster.Current().AuditEvents(t, func(line int, ev *cluster.AuditEvent) {
		lines = line
		if ev.User.Username != saUser || ev.ObjectRef == nil || ev.ResponseStatus == nil {
			return
		}
		// A watch is logged when it starts and when it ends; count it once.
		if ev.Verb == "watch" && ev.Stage != "ResponseStarted" {
			return
		}
		ref := ev.ObjectRef
		res := ref.Resource
		if ref.Subresource != "" {
			res += "/" + ref.Subresource
		}
		p := permission{group: ref.APIGroup, resource: res, verb: ev.Verb, name: ref.Name}
		code := ev.ResponseStatus.Code
		if code == 403 {
			forbidden = append(forbidden, fmt.Sprintf("%s: %s in %q", p, ev.RequestURI, ref.Namespace))
			return
		}
		used[p]++
		// client-go's informers list through a streaming watch
		// (sendInitialEvents=true) where the API server offers it, and
		// fall back to a LIST where it does not: such a watch does the
		// list's work, and the list right is what the fallback needs.
		if ev.Verb == "watch" && strings.Contains(ev.RequestURI, "sendInitialEvents=true") {
			used[permission{group: ref.APIGroup, resource: res, verb: "list", name: ref.Name}]++
		}
		write := ev.Verb == "create" || ev.Verb == "update" || ev.Verb == "patch"
		if (ev.Verb == "update" || ev.Verb == "patch") && code == 201 {
			used[permission{group: ref.APIGroup, resource: res, verb: "create", name: ref.Name}]++
		}
		if ref.APIGroup != "rbac.authorization.k8s.io" || !write || code >= 300 || ref.Subresource != "" {
			return
		}
		switch ref.Resource {
		case "clusterroles", "roles":
			used[permission{group: ref.APIGroup, resource: ref.Resource, verb: "escalate", name: ref.Name}]++
		case "clusterrolebindings", "rolebindings":
			var binding struct {
				RoleRef struct {
					Kind string `json:"kind"`
					Name string `json:"name"`
				} `json:"roleRef"`
			}
			if len(ev.RequestObject) == 0 || json.Unmarshal(ev.RequestObject, &binding) != nil || binding.RoleRef.Name == "" {
				t.Errorf("the audit log has no roleRef for the %s of %s %s (line %d)", ev.Verb, ref.Resource, ref.Name, lines)
				return
			}
			roles := "clusterroles"
			if binding.RoleRef.Kind == "Role" {
				roles = "roles"
			}
			used[permission{group: ref.APIGroup, resource: roles, verb: "bind", name: binding.RoleRef.Name}]++
		}
	})
	if len(used) == 0 {
		t.Fatalf("the audit log (%d lines) has no request of %s: is the audit policy in force?", lines, saUser)
	}
	t.Logf("audit log: %d lines, %d distinct rights used by %s", lines, len(used), saUser)
	return used, forbidden
}

// covers reports whether a right granted covers a right used: same group,
// resource and verb, and the name granted, if any, is the one used.
func covers(granted, used permission) bool {
	return granted.group == used.group && granted.resource == used.resource && granted.verb == used.verb &&
		(granted.name == "" || granted.name == used.name)
}

// checkEveryRuleUsed is the converse of the 403 check: every right the
// manifest grants was needed by a request of the lifecycle the operator
// just ran (install, sidecar restart, configuration change and back,
// cascading uninstall), per the API server's audit log, or is listed in
// unexercised with the reason the test cannot use it.
func checkEveryRuleUsed(t *testing.T) {
	granted := grantedRights(t)
	used, forbidden := usedRights(t)
	if len(forbidden) > 0 {
		t.Errorf("the audit log shows %d requests of the operator the API server refused (a rule is missing in deploy/base/rbac.yaml):\n%s",
			len(forbidden), strings.Join(forbidden, "\n"))
	}
	var unused, staleExceptions []string
	for g, rule := range granted {
		n := 0
		for u, count := range used {
			if covers(g, u) {
				n += count
			}
		}
		exc, excepted := unexercised[g]
		switch {
		case n == 0 && !excepted:
			unused = append(unused, fmt.Sprintf("%s, granted by %s", g, rule))
		case n == 0:
			t.Logf("not used, as expected: %s (%s)", g, exc.why)
		case excepted && !exc.sometimes:
			staleExceptions = append(staleExceptions, fmt.Sprintf("%s was used %d times, but is listed as unexercised (%s)", g, n, exc.why))
		}
	}
	for g := range unexercised {
		if _, ok := granted[g]; !ok {
			staleExceptions = append(staleExceptions, fmt.Sprintf("%s is listed as unexercised, but no rule grants it", g))
		}
	}
	sort.Strings(unused)
	sort.Strings(staleExceptions)
	if len(unused) > 0 {
		t.Errorf("%d rights granted in deploy/base/rbac.yaml were never used by the operator (remove them, or list them in unexercised with the reason):\n%s",
			len(unused), strings.Join(unused, "\n"))
	}
	if len(staleExceptions) > 0 {
		t.Errorf("the unexercised list is out of date:\n%s", strings.Join(staleExceptions, "\n"))
	}
	// What was used and is allowed by a default role (discovery, self
	// reviews) rather than the manifest, for the log.
	var others []string
	for u := range used {
		if !slices.ContainsFunc(mapsKeys(granted), func(g permission) bool { return covers(g, u) }) {
			others = append(others, u.String())
		}
	}
	sort.Strings(others)
	if len(others) > 0 {
		t.Logf("rights used that the manifest does not grant (allowed by the cluster's default roles): %s", strings.Join(others, "; "))
	}
}

func mapsKeys[K comparable, V any](m map[K]V) []K {
	out := make([]K, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
}
