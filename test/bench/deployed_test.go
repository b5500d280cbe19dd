package main

import (
	"os"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	"sigs.k8s.io/yaml"
)

// TestDeployedGOMAXPROCS holds the benchmark to the manifest: the operator
// runs with the GOMAXPROCS its Deployment gives it, the CPU limit rounded up.
func TestDeployedGOMAXPROCS(t *testing.T) {
	raw, err := os.ReadFile("../../deploy/base/deployment.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var d appsv1.Deployment
	if err := yaml.UnmarshalStrict(raw, &d); err != nil {
		t.Fatal(err)
	}
	for _, c := range d.Spec.Template.Spec.Containers {
		if c.Name != "istio-operator" {
			continue
		}
		for _, e := range c.Env {
			if e.Name != "GOMAXPROCS" {
				continue
			}
			if e.ValueFrom == nil || e.ValueFrom.ResourceFieldRef == nil {
				t.Fatalf("GOMAXPROCS is %q, want it taken from the CPU limit", e.Value)
			}
			ref := e.ValueFrom.ResourceFieldRef
			if ref.Resource != "limits.cpu" || !(ref.Divisor.IsZero() || ref.Divisor.MilliValue() == 1000) {
				t.Fatalf("GOMAXPROCS comes from %+v, want the CPU limit in cores", e.ValueFrom)
			}
			limit := c.Resources.Limits.Cpu().MilliValue()
			if got := int((limit + 999) / 1000); got != deployedGOMAXPROCS {
				t.Errorf("the manifest gives the operator GOMAXPROCS %d (CPU limit %dm), the benchmark runs it with %d", got, limit, deployedGOMAXPROCS)
			}
			return
		}
		t.Fatal("the operator's container sets no GOMAXPROCS")
	}
	t.Fatal("no istio-operator container in the manifest")
}
