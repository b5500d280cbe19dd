package istioclient

import (
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

func deploymentStatus(generation, observed, specReplicas, replicas, updated, available int64) *unstructured.Unstructured {
	return &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "apps/v1", "kind": "Deployment",
		"metadata": map[string]any{"name": "istiod", "namespace": Namespace, "generation": generation},
		"spec":     map[string]any{"replicas": specReplicas},
		"status": map[string]any{"observedGeneration": observed, "replicas": replicas,
			"updatedReplicas": updated, "availableReplicas": available},
	}}
}

func TestReadyDeployment(t *testing.T) {
	for _, tc := range []struct {
		name string
		u    *unstructured.Unstructured
		want bool
	}{
		{"rolled out and available", deploymentStatus(3, 3, 2, 2, 2, 2), true},
		{"scaling up: the new replica not started yet", deploymentStatus(4, 4, 2, 1, 1, 1), true},
		{"scaling up: the new replica not ready yet", deploymentStatus(4, 4, 2, 2, 2, 1), true},
		{"new generation not observed yet", deploymentStatus(4, 3, 2, 2, 2, 2), false},
		{"rolling: a pod of the old template left", deploymentStatus(4, 4, 2, 3, 2, 2), false},
		{"rolling: no pod of the new template yet", deploymentStatus(4, 4, 1, 1, 0, 1), false},
		{"no replica available", deploymentStatus(1, 1, 1, 1, 1, 0), false},
		{"scaled to zero", deploymentStatus(2, 2, 0, 0, 0, 0), true},
	} {
		if got := Ready(tc.u); got != tc.want {
			t.Errorf("%s: Ready = %v, want %v", tc.name, got, tc.want)
		}
	}
}
