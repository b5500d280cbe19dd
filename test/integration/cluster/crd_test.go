package cluster_test

import (
	"fmt"
	"reflect"
	"sort"
	"strings"
	"testing"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"

	"github.com/meshkeeper/istio-operator/test/cluster"
)

const (
	istioCRDFile = "deploy/crds/operator.kyma-project.io_istios.yaml"
	istioVersion = "v1alpha2"
	istioKind    = "Istio"
)

// installIstioCRD installs the operator's CRD and returns a client for
// Istio objects in namespace ns.
func installIstioCRD(t *testing.T, ns string) dynamic.ResourceInterface {
	t.Helper()
	crd := cluster.InstallIstioCRD(t)
	if crd.Spec.Names.Kind != istioKind || crd.Spec.Versions[0].Name != istioVersion || crd.Spec.Scope != apiextensionsv1.NamespaceScoped {
		t.Fatalf("%s defines %s %s (%s); want a namespaced %s at %s", cluster.IstioCRDFile,
			crd.Spec.Names.Kind, crd.Spec.Versions[0].Name, crd.Spec.Scope, istioKind, istioVersion)
	}
	gvr := schema.GroupVersionResource{Group: crd.Spec.Group, Version: istioVersion, Resource: crd.Spec.Names.Plural}
	return cluster.Current().Dynamic().Resource(gvr).Namespace(ns)
}

func newIstio(name string, spec map[string]any) *unstructured.Unstructured {
	return &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "operator.kyma-project.io/" + istioVersion,
		"kind":       istioKind,
		"metadata":   map[string]any{"name": name},
		"spec":       spec,
	}}
}

func resources() map[string]any {
	return map[string]any{
		"limits":   map[string]any{"cpu": "500m", "memory": "1Gi"},
		"requests": map[string]any{"cpu": "100m", "memory": "128Mi"},
	}
}

func deploymentSettings() map[string]any {
	return map[string]any{
		"hpaSpec": map[string]any{"minReplicas": int64(2), "maxReplicas": int64(5)},
		"strategy": map[string]any{"rollingUpdate": map[string]any{
			"maxSurge":       "50%",
			"maxUnavailable": int64(0),
		}},
		"resources": resources(),
	}
}

// fullSpec sets every field of the Istio spec that users commonly set.
func fullSpec() map[string]any {
	return map[string]any{
		"config": map[string]any{
			"numTrustedProxies":            int64(2),
			"forwardClientCertDetails":     "SANITIZE",
			"gatewayExternalTrafficPolicy": "Local",
			"trustDomain":                  "cluster.local",
			"authorizers": []any{map[string]any{
				"name":       "ext",
				"service":    "ext.ns.svc.cluster.local",
				"port":       int64(8080),
				"timeout":    "1s",
				"pathPrefix": "/x",
				"headers": map[string]any{
					"inCheck":      map[string]any{"include": []any{"a"}, "add": map[string]any{"b": "c"}},
					"toUpstream":   map[string]any{"onAllow": []any{"d"}},
					"toDownstream": map[string]any{"onAllow": []any{"e"}, "onDeny": []any{"f"}},
				},
			}},
			"telemetry":         map[string]any{"metrics": map[string]any{"prometheusMerge": true}},
			"enableDNSProxying": true,
			"proxyStatsMatcher": map[string]any{"inclusionRegexps": []any{".*"}},
		},
		"compatibilityMode":      true,
		"networkPoliciesEnabled": true,
		"components": map[string]any{
			"pilot":          map[string]any{"k8s": deploymentSettings()},
			"ingressGateway": map[string]any{"k8s": deploymentSettings()},
			"cni":            map[string]any{"k8s": map[string]any{"resources": resources()}},
			"proxy":          map[string]any{"k8s": map[string]any{"resources": resources()}},
			"egressGateway":  map[string]any{"enabled": true},
		},
	}
}

// TestIstioCRDKeepsEveryField creates a resource with every field set. The
// invalid resources the API server must reject are one table
// (pkg/apis/operator/v1alpha2/apitest), run against a real API server in
// test/reliability/input.
func TestIstioCRDKeepsEveryField(t *testing.T) {
	ns := cluster.Namespace(t, nil)
	istios := installIstioCRD(t, ns)

	want := fullSpec()
	created, err := istios.Create(t.Context(), newIstio("default", want), metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("a valid Istio was rejected: %v", err)
	}
	// A field the schema lacks would be pruned silently; every field set
	// must come back.
	got, _, _ := unstructured.NestedMap(created.Object, "spec")
	if diffs := missingFrom(got, want, "spec"); len(diffs) > 0 {
		t.Errorf("the API server dropped or changed fields:\n%s", strings.Join(diffs, "\n"))
	}
}

// missingFrom lists the leaves of want that got lacks or holds differently.
func missingFrom(got, want any, path string) []string {
	switch w := want.(type) {
	case map[string]any:
		g, ok := got.(map[string]any)
		if !ok {
			return []string{fmt.Sprintf("%s: got %#v, want an object", path, got)}
		}
		var diffs []string
		keys := make([]string, 0, len(w))
		for k := range w {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			diffs = append(diffs, missingFrom(g[k], w[k], path+"."+k)...)
		}
		return diffs
	case []any:
		g, ok := got.([]any)
		if !ok || len(g) != len(w) {
			return []string{fmt.Sprintf("%s: got %#v, want %#v", path, got, want)}
		}
		var diffs []string
		for i := range w {
			diffs = append(diffs, missingFrom(g[i], w[i], fmt.Sprintf("%s[%d]", path, i))...)
		}
		return diffs
	default:
		if !reflect.DeepEqual(got, want) {
			return []string{fmt.Sprintf("%s: got %#v, want %#v", path, got, want)}
		}
		return nil
	}
}
