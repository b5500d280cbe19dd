package istioclient

import (
	"istio.io/istio/operator/pkg/component"
	"istio.io/istio/operator/pkg/manifest"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// NetworkPolicyGVK is the kind of the policies of spec.networkPoliciesEnabled.
var NetworkPolicyGVK = schema.GroupVersionKind{Group: "networking.k8s.io", Version: "v1", Kind: "NetworkPolicy"}

// operatorPodLabel selects the operator's own pods (deploy/).
const operatorPodLabel = "app.kubernetes.io/name"

// WithNetworkPolicies returns the rendering plus the NetworkPolicies that let
// Istio and the operator work in namespaces whose default policy denies all
// traffic: istiod's xDS, CA and webhook ports, the gateways' traffic, and
// the operator's metrics and probes. Egress stays open for them (the API
// server's address is not known in advance). They belong to the Base
// component, so they are applied, repaired and pruned like Istio's objects.
func (r *Rendered) WithNetworkPolicies(operatorNamespace string) (*Rendered, error) {
	policies := []*unstructured.Unstructured{
		networkPolicy(Namespace, "istio-operator-allow-istiod", map[string]any{"app": "istiod"},
			[]int64{15010, 15012, 15014, 15017, 443}),
		networkPolicy(Namespace, "istio-operator-allow-ingressgateway", map[string]any{"app": "istio-ingressgateway"}, nil),
		networkPolicy(Namespace, "istio-operator-allow-egressgateway", map[string]any{"app": "istio-egressgateway"}, nil),
		networkPolicy(operatorNamespace, "istio-operator-allow-operator", map[string]any{operatorPodLabel: "istio-operator"},
			[]int64{8080, 8081}),
	}
	out := &Rendered{Merged: r.Merged, Version: r.Version}
	for _, set := range r.Sets {
		// Desired labels a rendering's objects in place: the two renderings
		// share none.
		copied := manifest.ManifestSet{Component: set.Component}
		for _, m := range set.Manifests {
			copied.Manifests = append(copied.Manifests, manifest.Manifest{Unstructured: m.Unstructured.DeepCopy(), Content: m.Content})
		}
		if set.Component == component.BaseComponentName {
			for _, p := range policies {
				m, err := manifest.FromObject(p)
				if err != nil {
					return nil, err
				}
				copied.Manifests = append(copied.Manifests, m)
			}
		}
		out.Sets = append(out.Sets, copied)
	}
	out.Hash = hashOf(out)
	return out, nil
}

// networkPolicy allows ingress to the selected pods (on the ports, or on
// every port when none are given) and all their egress.
func networkPolicy(namespace, name string, podLabels map[string]any, ports []int64) *unstructured.Unstructured {
	ingress := map[string]any{}
	if len(ports) > 0 {
		var ps []any
		for _, p := range ports {
			ps = append(ps, map[string]any{"protocol": "TCP", "port": p})
		}
		ingress["ports"] = ps
	}
	return &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": NetworkPolicyGVK.GroupVersion().String(),
		"kind":       NetworkPolicyGVK.Kind,
		"metadata":   map[string]any{"name": name, "namespace": namespace},
		"spec": map[string]any{
			"podSelector": map[string]any{"matchLabels": podLabels},
			"policyTypes": []any{"Ingress", "Egress"},
			"ingress":     []any{ingress},
			"egress":      []any{map[string]any{}},
		},
	}}
}
