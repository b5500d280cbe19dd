package istioclient

import (
	"errors"
	"io/fs"
	"reflect"
	"regexp"
	"sort"
	"strings"
	"testing"

	"istio.io/istio/manifests"
	"istio.io/istio/operator/pkg/component"
	"istio.io/istio/operator/pkg/manifest"

	"github.com/meshkeeper/istio-operator/pkg/apis/operator/v1alpha2"
)

// Render takes the base chart's CRDs as they are and relabels them; the
// result must be what Istio's own rendering gives. The CRD template reads
// no value of the spec but the three TestCRDTemplateInputs names, so a few
// specs stand for all: the default, one that changes global and mesh
// values, one that changes component settings, and one with an optional
// component enabled.
func TestRenderFastCRDs(t *testing.T) {
	cases := fieldCases()
	specs := map[string]v1alpha2.IstioSpec{"default": {}}
	for _, name := range []string{"compatibilityMode", "trustDomain", "pilot resources", "egressGateway enabled"} {
		tc, ok := cases[name]
		if !ok {
			t.Fatalf("no field case %q", name)
		}
		specs[name] = tc.spec
	}
	for name, spec := range specs {
		t.Run(name, func(t *testing.T) {
			iop, err := DesiredIstioOperator(&spec)
			if err != nil {
				t.Fatal(err)
			}
			if !crdLabelsReplaceable(iop) {
				t.Fatal("the operator's IstioOperator does not take the fast path")
			}
			got := cachedRender(t, &spec)
			wantSets, wantMerged, err := generate(iop, nil)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got.Merged, wantMerged) {
				t.Error("the merged IstioOperator differs from Istio's")
			}
			gotObjs, wantObjs := byComponentAndHash(got.Sets), byComponentAndHash(wantSets)
			for key, want := range wantObjs {
				g, ok := gotObjs[key]
				switch {
				case !ok:
					t.Errorf("%s is missing", key)
				case !reflect.DeepEqual(g.Object, want.Object):
					t.Errorf("%s differs from Istio's rendering: labels %v, want %v", key, g.GetLabels(), want.GetLabels())
				}
			}
			for key := range gotObjs {
				if _, ok := wantObjs[key]; !ok {
					t.Errorf("%s is not in Istio's rendering", key)
				}
			}
			if n := len(manifest.ExtractComponent(wantSets, component.BaseComponentName)); n < 10 {
				t.Errorf("Istio's rendering has %d base objects, expected its CRDs", n)
			}
		})
	}
}

// The fast path's premise: the base chart's CRD template depends on the
// chart and the release alone, and on three values, each of which
// crdLabelsReplaceable or the chart itself handles (resourceScope wraps
// both of the template's branches). A new Istio whose template reads more
// fails here, before the fast path can silently differ.
func TestCRDTemplateInputs(t *testing.T) {
	charts := manifests.BuiltinOrDir("")
	read := func(path string) string {
		data, err := fs.ReadFile(charts, path)
		if err != nil {
			t.Fatal(err)
		}
		return string(data)
	}
	crds := read("charts/base/templates/crds.yaml")
	got := map[string]bool{}
	for _, m := range valuesRef.FindAllString(crds, -1) {
		got[m] = true
	}
	want := map[string]bool{".Values.global.resourceScope": true, ".Values.base.enableCRDTemplates": true, ".Values.base.excludedCRDs": true}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("the base chart's CRD template reads %v, want only %v", keys(got), keys(want))
	}
	if inc := includeRef.FindAllStringSubmatch(crds, -1); len(inc) != 1 || inc[0][1] != "istio.labels" {
		t.Errorf("the CRD template includes %v, want istio.labels alone", inc)
	}
	profile := read("charts/base/templates/zzz_profile.yaml")
	start := strings.Index(profile, `{{- define "istio.labels" -}}`)
	if start < 0 {
		t.Fatal("the base chart defines no istio.labels")
	}
	labels := profile[start:]
	labels = labels[:strings.Index(labels, "{{- end -}}")]
	if refs := valuesRef.FindAllString(labels, -1); len(refs) != 0 {
		t.Errorf("istio.labels reads values %v; baseChartLabels reproduces it from the chart and release alone", refs)
	}
}

var (
	valuesRef  = regexp.MustCompile(`\.Values(\.[A-Za-z0-9_]+)+`)
	includeRef = regexp.MustCompile(`include "([^"]+)"`)
)

func keys(m map[string]bool) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// The fast path is only for what it reproduces: a spec that sets the CRD
// templating or excludes CRDs is rendered by Istio alone.
func TestRenderFastCRDsOnlyWhenEquivalent(t *testing.T) {
	iop, err := DesiredIstioOperator(&v1alpha2.IstioSpec{})
	if err != nil {
		t.Fatal(err)
	}
	for path, value := range map[string]any{
		"spec.values.base.excludedCRDs":       []any{"wasmplugins.extensions.istio.io"},
		"spec.values.base.enableCRDTemplates": true,
		"spec.components.base.enabled":        false,
	} {
		changed := iop.DeepClone()
		if err := changed.SetPath(path, value); err != nil {
			t.Fatal(err)
		}
		if crdLabelsReplaceable(changed) {
			t.Errorf("with %s set, the CRDs are not only relabelled", path)
		}
	}
	excluded := iop.DeepClone()
	if err := excluded.SetPath("spec.values.base.excludedCRDs", []any{"wasmplugins.extensions.istio.io"}); err != nil {
		t.Fatal(err)
	}
	r, err := Render(excluded, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range r.Objects() {
		if o.GetKind() == "CustomResourceDefinition" && o.GetName() == "wasmplugins.extensions.istio.io" {
			t.Error("an excluded CRD was rendered")
		}
	}
}

func byComponentAndHash(sets []manifest.ManifestSet) map[string]manifest.Manifest {
	out := map[string]manifest.Manifest{}
	for _, s := range sets {
		for _, m := range s.Manifests {
			out[string(s.Component)+" "+m.Hash()] = m
		}
	}
	return out
}

// BenchmarkRender renders the default Istio resource, the work of every
// change to its spec: as the operator does, and as Istio alone does.
func BenchmarkRender(b *testing.B) {
	iop, err := DesiredIstioOperator(&v1alpha2.IstioSpec{})
	if err != nil {
		b.Fatal(err)
	}
	for name, render := range map[string]func() error{
		"operator": func() error { _, err := Render(iop, nil); return err },
		"istio":    func() error { _, _, err := generate(iop, nil); return err },
	} {
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if err := render(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// A spec whose mesh configuration istiod would refuse on load is an invalid
// spec, caught before anything is applied. The schema's trust domain pattern
// (Kyma's) lets through names Istio's DNS-label check refuses. What istiod
// only warns about (an extension provider it would not use) is accepted, as
// istiod accepts it.
func TestRenderRefusesMeshConfigIstiodRejects(t *testing.T) {
	authorizer := func(pathPrefix string) []*v1alpha2.Authorizer {
		return []*v1alpha2.Authorizer{{Name: "authz", Service: "authz.auth.svc.cluster.local", Port: 8080, PathPrefix: ptrTo(pathPrefix)}}
	}
	cases := map[string]struct {
		config  v1alpha2.Config
		wantErr string
	}{
		"trust domain with an underscore":   {v1alpha2.Config{TrustDomain: ptrTo("mesh_domain.local")}, `trustDomain: trust domain name "mesh_domain.local" invalid`},
		"trust domain label with a hyphen":  {v1alpha2.Config{TrustDomain: ptrTo("-mesh.local")}, "trustDomain"},
		"valid trust domain":                {v1alpha2.Config{TrustDomain: ptrTo("mesh.example.com")}, ""},
		"extension provider istiod ignores": {v1alpha2.Config{Authorizers: authorizer("check")}, ""},
		"valid extension provider":          {v1alpha2.Config{Authorizers: authorizer("/check")}, ""},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			spec := v1alpha2.IstioSpec{Config: tc.config}
			iop, err := DesiredIstioOperator(&spec)
			if err != nil {
				t.Fatal(err)
			}
			_, err = Render(iop, nil)
			var invalid *InvalidSpecError
			switch {
			case tc.wantErr == "" && err != nil:
				t.Fatalf("Render: %v", err)
			case tc.wantErr != "" && (!errors.As(err, &invalid) || !strings.Contains(err.Error(), tc.wantErr)):
				t.Fatalf("Render: %v, want an InvalidSpecError naming %q", err, tc.wantErr)
			}
		})
	}
}
