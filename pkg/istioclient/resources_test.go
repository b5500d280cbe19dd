package istioclient

import "testing"

// Every listed kind must exist in Istio's API at the listed version, or the
// deletion check would look for objects under a resource nothing serves.
func TestUserResourcesAreIstioKinds(t *testing.T) {
	s, err := Scheme()
	if err != nil {
		t.Fatal(err)
	}
	if len(UserResources) != 14 {
		t.Errorf("%d user resource kinds, want the 14 Istio kinds users create", len(UserResources))
	}
	seen := map[string]bool{}
	for _, r := range UserResources {
		if seen[r.Kind] {
			t.Errorf("%s listed twice", r.Kind)
		}
		seen[r.Kind] = true
		gvk := r.Resource.GroupVersion().WithKind(r.Kind)
		if !s.Recognizes(gvk) {
			t.Errorf("%s is not an Istio API type", gvk)
		}
	}
}
