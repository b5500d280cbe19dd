package v1alpha2_test

import (
	"reflect"
	"testing"

	v1alpha2 "github.com/meshkeeper/istio-operator/pkg/apis/operator/v1alpha2"
)

func TestResolved(t *testing.T) {
	defaults := v1alpha2.Images{Registry: "mirror.example.com/istio", PullSecrets: []string{"mirror-pull"}}
	for name, tc := range map[string]struct {
		images *v1alpha2.Images
		want   *v1alpha2.Images
	}{
		"defaults fill an unset field":  {nil, &defaults},
		"the resource's registry wins":  {&v1alpha2.Images{Registry: "own.example.com"}, &v1alpha2.Images{Registry: "own.example.com", PullSecrets: []string{"mirror-pull"}}},
		"the resource's secrets win":    {&v1alpha2.Images{PullSecrets: []string{"a", "b"}}, &v1alpha2.Images{Registry: "mirror.example.com/istio", PullSecrets: []string{"a", "b"}}},
		"both set ignore the defaults":  {&v1alpha2.Images{Registry: "r.example.com", PullSecrets: []string{"s"}}, &v1alpha2.Images{Registry: "r.example.com", PullSecrets: []string{"s"}}},
		"an empty object is like unset": {&v1alpha2.Images{}, &defaults},
	} {
		t.Run(name, func(t *testing.T) {
			spec := &v1alpha2.IstioSpec{Images: tc.images}
			before := spec.DeepCopy()
			got := spec.Resolved(defaults, v1alpha2.ProfileEvaluation)
			if !reflect.DeepEqual(got.Images, tc.want) {
				t.Errorf("images %+v, want %+v", got.Images, tc.want)
			}
			if got.Profile != v1alpha2.ProfileEvaluation {
				t.Errorf("profile %q, want Evaluation", got.Profile)
			}
			if !reflect.DeepEqual(spec, before) {
				t.Error("Resolved changed the spec it was called on")
			}
		})
	}
	if got := (&v1alpha2.IstioSpec{}).Resolved(v1alpha2.Images{}, ""); got.Images != nil {
		t.Errorf("no defaults and nothing set: images %+v, want nil (Istio's own registry)", got.Images)
	}
}

// The operator's flags take the same values as the fields: the patterns in
// Go are the schema's.
func TestPatternsMatchTheSchema(t *testing.T) {
	images := readCRD(t).Spec.Versions[0].Schema.OpenAPIV3Schema.Properties["spec"].Properties["images"]
	if got := images.Properties["registry"].Pattern; got != v1alpha2.RegistryPattern {
		t.Errorf("schema's registry pattern %q, Go's %q", got, v1alpha2.RegistryPattern)
	}
	if got := images.Properties["pullSecrets"].Items.Schema.Pattern; got != v1alpha2.PullSecretPattern {
		t.Errorf("schema's pull secret pattern %q, Go's %q", got, v1alpha2.PullSecretPattern)
	}
}
