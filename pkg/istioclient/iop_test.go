package istioclient

import (
	"testing"

	"istio.io/istio/operator/pkg/manifest"
	"sigs.k8s.io/yaml"

	v1alpha2 "github.com/meshkeeper/istio-operator/pkg/apis/operator/v1alpha2"
)

func TestRenderDefault(t *testing.T) {
	r := mustRender(t, &v1alpha2.IstioSpec{})
	for _, want := range []string{"Deployment/istio-system/istiod", "Deployment/istio-system/istio-ingressgateway", "DaemonSet/istio-system/istio-cni-node"} {
		if find(r, want) == nil {
			t.Errorf("default render has no %s", want)
		}
	}
	img := mustGet[string](t, find(r, "Deployment/istio-system/istiod").Object, "spec", "template", "spec", "containers", "0", "image")
	if img != "docker.io/istio/pilot:"+Version {
		t.Errorf("istiod image %s", img)
	}
}

func mustRender(t *testing.T, spec *v1alpha2.IstioSpec) *Rendered {
	t.Helper()
	iop, err := DesiredIstioOperator(spec)
	if err != nil {
		t.Fatal(err)
	}
	r, err := Render(iop, nil)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func find(r *Rendered, kindNsName string) *manifest.Manifest {
	for _, o := range r.Objects() {
		if o.GetKind()+"/"+o.GetNamespace()+"/"+o.GetName() == kindNsName {
			return &o
		}
	}
	return nil
}

func mustGet[T any](t *testing.T, m map[string]any, path ...string) T {
	t.Helper()
	var cur any = m
	for _, p := range path {
		switch c := cur.(type) {
		case map[string]any:
			cur = c[p]
		case []any:
			var i int
			for _, ch := range p {
				i = i*10 + int(ch-'0')
			}
			if i >= len(c) {
				t.Fatalf("%v: index %d out of range", path, i)
			}
			cur = c[i]
		default:
			t.Fatalf("%v: %s not found", path, p)
		}
	}
	v, ok := cur.(T)
	if !ok {
		t.Fatalf("%v = %#v, not a %T", path, cur, v)
	}
	return v
}

var _ = yaml.Marshal
