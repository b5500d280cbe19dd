package istioclient

import (
	"encoding/json"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	v1alpha2 "github.com/meshkeeper/istio-operator/pkg/apis/operator/v1alpha2"
)

// deployment is a rendered istiod Deployment cut down to the fields the
// cases touch; each call returns a fresh copy to mutate.
func deployment() map[string]any {
	return map[string]any{
		"apiVersion": "apps/v1",
		"kind":       "Deployment",
		"metadata": map[string]any{
			"name":      "istiod",
			"namespace": "istio-system",
			"labels":    map[string]any{"app": "istiod", "istio.io/rev": "default"},
		},
		"spec": map[string]any{
			"replicas": int64(2),
			"template": map[string]any{
				"spec": map[string]any{
					"containers": []any{
						map[string]any{
							"name":  "discovery",
							"image": "docker.io/istio/pilot:1.31.1",
							"ports": []any{
								map[string]any{"containerPort": int64(8080), "protocol": "TCP"},
								map[string]any{"containerPort": int64(15010), "protocol": "TCP"},
							},
							"resources": map[string]any{
								"limits":   map[string]any{"cpu": "1", "memory": "1Gi"},
								"requests": map[string]any{"cpu": "100m", "memory": "256Mi"},
							},
						},
					},
				},
			},
		},
	}
}

// webhookConfig is a rendered webhook configuration of the injector, of the given
// kind.
func webhookConfig(kind string) map[string]any {
	return map[string]any{
		"apiVersion": "admissionregistration.k8s.io/v1",
		"kind":       kind,
		"metadata":   map[string]any{"name": "istio-sidecar-injector"},
		"webhooks": []any{
			map[string]any{
				"name": "rev.namespace.sidecar-injector.istio.io",
				"clientConfig": map[string]any{
					"service": map[string]any{"name": "istiod", "namespace": "istio-system", "path": "/inject", "port": int64(443)},
				},
				"failurePolicy": "Fail",
			},
		},
	}
}

// at returns the map at path below m, for a case to change a field in place.
func at(m map[string]any, path ...any) map[string]any {
	var cur any = m
	for _, p := range path {
		switch k := p.(type) {
		case string:
			cur = cur.(map[string]any)[k]
		case int:
			cur = cur.([]any)[k]
		}
	}
	return cur.(map[string]any)
}

func TestDrift(t *testing.T) {
	tests := map[string]struct {
		desired map[string]any
		// live starts as a copy of desired (another fresh call of the same
		// builder) and is changed by mutate.
		live   map[string]any
		mutate func(live map[string]any)
		// wantPath is the path the report must name; "" means no drift.
		wantPath string
	}{
		"equal objects": {
			desired: deployment(), live: deployment(),
		},
		"changed container image": {
			desired: deployment(), live: deployment(),
			mutate: func(l map[string]any) {
				at(l, "spec", "template", "spec", "containers", 0)["image"] = "docker.io/istio/pilot:1.30.2"
			},
			wantPath: ".spec.template.spec.containers.0.image",
		},
		"deleted label": {
			desired: deployment(), live: deployment(),
			mutate:   func(l map[string]any) { delete(at(l, "metadata", "labels"), "istio.io/rev") },
			wantPath: ".metadata.labels.istio.io/rev",
		},
		"all labels deleted": {
			desired: deployment(), live: deployment(),
			mutate:   func(l map[string]any) { delete(at(l, "metadata"), "labels") },
			wantPath: ".metadata.labels.",
		},
		"extra live fields and API server defaults": {
			desired: deployment(), live: deployment(),
			mutate: func(l map[string]any) {
				at(l, "metadata")["resourceVersion"] = "4711"
				at(l, "metadata")["uid"] = "0b6c6f0e-5d5e-4c7e-9d7e-2b4a8b1f3c11"
				at(l, "metadata", "labels")["added-by-user"] = "yes"
				at(l, "spec")["revisionHistoryLimit"] = int64(10)
				at(l, "spec")["strategy"] = map[string]any{"type": "RollingUpdate"}
				c := at(l, "spec", "template", "spec", "containers", 0)
				c["imagePullPolicy"] = "IfNotPresent"
				c["terminationMessagePath"] = "/dev/termination-log"
				at(l, "spec", "template", "spec")["dnsPolicy"] = "ClusterFirst"
				l["status"] = map[string]any{"replicas": int64(2), "readyReplicas": int64(2)}
			},
		},
		"desired status is not compared": {
			desired: func() map[string]any {
				d := deployment()
				d["status"] = map[string]any{"replicas": int64(0)}
				return d
			}(),
			live: deployment(),
			mutate: func(l map[string]any) {
				l["status"] = map[string]any{"replicas": int64(3)}
			},
		},
		"Deployment spec.replicas changed by an autoscaler": {
			desired: deployment(), live: deployment(),
			mutate: func(l map[string]any) { at(l, "spec")["replicas"] = int64(5) },
		},
		"spec.replicas of another kind is compared": {
			desired: func() map[string]any { d := deployment(); d["kind"] = "StatefulSet"; return d }(),
			live:    func() map[string]any { d := deployment(); d["kind"] = "StatefulSet"; return d }(),
			mutate: func(l map[string]any) {
				at(l, "spec")["replicas"] = int64(5)
			},
			wantPath: ".spec.replicas",
		},
		"webhook caBundle patched by istiod": {
			desired: webhookConfig("MutatingWebhookConfiguration"), live: webhookConfig("MutatingWebhookConfiguration"),
			mutate: func(l map[string]any) {
				at(l, "webhooks", 0, "clientConfig")["caBundle"] = "LS0tLS1CRUdJTi..."
			},
		},
		"webhook failurePolicy flipped by istiod": {
			desired: webhookConfig("ValidatingWebhookConfiguration"), live: webhookConfig("ValidatingWebhookConfiguration"),
			mutate: func(l map[string]any) {
				at(l, "webhooks", 0)["failurePolicy"] = "Ignore"
			},
		},
		"rendered webhook caBundle differs from the patched one": {
			desired: func() map[string]any {
				d := webhookConfig("MutatingWebhookConfiguration")
				at(d, "webhooks", 0, "clientConfig")["caBundle"] = ""
				return d
			}(),
			live: webhookConfig("MutatingWebhookConfiguration"),
			mutate: func(l map[string]any) {
				at(l, "webhooks", 0, "clientConfig")["caBundle"] = "LS0tLS1CRUdJTi..."
			},
		},
		"webhook service path changed": {
			desired: webhookConfig("MutatingWebhookConfiguration"), live: webhookConfig("MutatingWebhookConfiguration"),
			mutate: func(l map[string]any) {
				at(l, "webhooks", 0, "clientConfig", "service")["path"] = "/inject/cluster/x"
			},
			wantPath: ".webhooks.0.clientConfig.service.path",
		},
		"failurePolicy of another kind is compared": {
			desired: webhookConfig("ExampleWebhookConfiguration"), live: webhookConfig("ExampleWebhookConfiguration"),
			mutate: func(l map[string]any) {
				at(l, "webhooks", 0)["failurePolicy"] = "Ignore"
			},
			wantPath: ".webhooks.0.failurePolicy",
		},
		"cpu 1000m equals 1": {
			desired: deployment(), live: deployment(),
			mutate: func(l map[string]any) {
				at(l, "spec", "template", "spec", "containers", 0, "resources", "limits")["cpu"] = "1000m"
			},
		},
		"memory 1Gi equals 1073741824": {
			desired: deployment(), live: deployment(),
			mutate: func(l map[string]any) {
				at(l, "spec", "template", "spec", "containers", 0, "resources", "limits")["memory"] = "1073741824"
			},
		},
		"memory 1G differs from 1Gi": {
			desired: deployment(), live: deployment(),
			mutate: func(l map[string]any) {
				at(l, "spec", "template", "spec", "containers", 0, "resources", "limits")["memory"] = "1G"
			},
			wantPath: ".spec.template.spec.containers.0.resources.limits.memory",
		},
		"changed quantity": {
			desired: deployment(), live: deployment(),
			mutate: func(l map[string]any) {
				at(l, "spec", "template", "spec", "containers", 0, "resources", "requests")["cpu"] = "200m"
			},
			wantPath: ".spec.template.spec.containers.0.resources.requests.cpu",
		},
		"zero-valued desired scalars match absent live fields": {
			desired: func() map[string]any {
				d := deployment()
				s := at(d, "spec", "template", "spec")
				s["hostNetwork"] = false
				s["priority"] = int64(0)
				s["schedulerName"] = ""
				s["terminationGracePeriodSeconds"] = float64(0)
				s["tolerations"] = []any{}
				s["nodeSelector"] = map[string]any{}
				s["affinity"] = nil
				return d
			}(),
			live: deployment(),
		},
		"non-zero desired scalar absent live": {
			desired: func() map[string]any {
				d := deployment()
				at(d, "spec", "template", "spec")["hostNetwork"] = true
				return d
			}(),
			live:     deployment(),
			wantPath: ".spec.template.spec.hostNetwork",
		},
		"non-empty desired string absent live": {
			desired: func() map[string]any {
				d := deployment()
				at(d, "spec", "template", "spec")["priorityClassName"] = "system-cluster-critical"
				return d
			}(),
			live:     deployment(),
			wantPath: ".spec.template.spec.priorityClassName",
		},
		"list item removed": {
			desired: deployment(), live: deployment(),
			mutate: func(l map[string]any) {
				c := at(l, "spec", "template", "spec", "containers", 0)
				c["ports"] = c["ports"].([]any)[:1]
			},
			wantPath: ".spec.template.spec.containers.0.ports has 1 items, want 2",
		},
		"list item added": {
			desired: deployment(), live: deployment(),
			mutate: func(l map[string]any) {
				s := at(l, "spec", "template", "spec")
				s["containers"] = append(s["containers"].([]any), map[string]any{"name": "debug", "image": "busybox"})
			},
			wantPath: ".spec.template.spec.containers has 2 items, want 1",
		},
		"list item changed": {
			desired: deployment(), live: deployment(),
			mutate: func(l map[string]any) {
				at(l, "spec", "template", "spec", "containers", 0, "ports", 1)["containerPort"] = int64(15011)
			},
			wantPath: ".spec.template.spec.containers.0.ports.1.containerPort",
		},
		"int64 desired, float64 live": {
			desired: deployment(), live: deployment(),
			mutate: func(l map[string]any) {
				at(l, "spec", "template", "spec", "containers", 0, "ports", 1)["containerPort"] = float64(15010)
			},
		},
		"float64 desired, int64 live": {
			desired: func() map[string]any {
				d := deployment()
				at(d, "spec", "template", "spec", "containers", 0, "ports", 0)["containerPort"] = float64(8080)
				return d
			}(),
			live: deployment(),
		},
		"a number is not its string": {
			desired: deployment(), live: deployment(),
			mutate: func(l map[string]any) {
				at(l, "spec", "template", "spec", "containers", 0, "ports", 0)["containerPort"] = "8080"
			},
			wantPath: ".spec.template.spec.containers.0.ports.0.containerPort",
		},
		"map replaced by a scalar": {
			desired: deployment(), live: deployment(),
			mutate: func(l map[string]any) {
				at(l, "spec", "template", "spec", "containers", 0)["resources"] = "none"
			},
			wantPath: ".spec.template.spec.containers.0.resources.",
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			if tc.mutate != nil {
				tc.mutate(tc.live)
			}
			got := Drift(&unstructured.Unstructured{Object: tc.desired}, &unstructured.Unstructured{Object: tc.live})
			switch {
			case tc.wantPath == "" && got != "":
				t.Errorf("Drift = %q, want none", got)
			case tc.wantPath != "" && !strings.HasPrefix(got, tc.wantPath):
				t.Errorf("Drift = %q, want a report starting with %q", got, tc.wantPath)
			}
		})
	}
}

// Drift runs on every resync of every installed object: it must not
// change either object.
func TestDriftLeavesObjectsAlone(t *testing.T) {
	desired, live := deployment(), deployment()
	at(live, "spec", "template", "spec", "containers", 0)["image"] = "other"
	Drift(&unstructured.Unstructured{Object: desired}, &unstructured.Unstructured{Object: live})
	if img := at(desired, "spec", "template", "spec", "containers", 0)["image"]; img != "docker.io/istio/pilot:1.31.1" {
		t.Errorf("desired image became %v", img)
	}
	if img := at(live, "spec", "template", "spec", "containers", 0)["image"]; img != "other" {
		t.Errorf("live image became %v", img)
	}
	if _, set := at(live, "spec", "template", "spec")["hostNetwork"]; set {
		t.Error("live object gained fields")
	}
}

// What the API server returns for an applied object decodes from JSON, so
// its numbers arrive as float64 where the render has int64: a freshly
// applied installation must show no drift.
func TestDriftOfRenderedObjectsReadBack(t *testing.T) {
	for _, o := range cachedRender(t, &v1alpha2.IstioSpec{}).Objects() {
		b, err := json.Marshal(o.Object)
		if err != nil {
			t.Fatal(err)
		}
		var live map[string]any
		if err := json.Unmarshal(b, &live); err != nil {
			t.Fatal(err)
		}
		if d := Drift(o.Unstructured, &unstructured.Unstructured{Object: live}); d != "" {
			t.Errorf("%s: %s", o.Hash(), d)
		}
	}
}

// Drift reasons go into logs and conditions: long values are named by size.
func TestBriefValues(t *testing.T) {
	for _, tc := range []struct {
		v    any
		want string
	}{
		{"10m", "10m"},
		{int64(3), "3"},
		{strings.Repeat("x", 65), "a string of 65 bytes"},
		{"{\n}", "a string of 3 bytes"},
	} {
		if got := brief(tc.v); got != tc.want {
			t.Errorf("brief(%q) = %q, want %q", tc.v, got, tc.want)
		}
	}
}
