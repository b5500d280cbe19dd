package istioclient

import (
	"testing"

	corev1 "k8s.io/api/core/v1"

	v1alpha2 "github.com/meshkeeper/istio-operator/pkg/apis/operator/v1alpha2"
)

// The hash predates the registry setting: Istio's own registry must leave
// it as it was, or every injected pod in every cluster would count as
// outdated after an operator upgrade.
func TestProxyConfigHashRegistry(t *testing.T) {
	none := ProxyConfigHash(&v1alpha2.IstioSpec{})
	if got := ProxyConfigHash(&v1alpha2.IstioSpec{Images: &v1alpha2.Images{Registry: Hub}}); got != none {
		t.Errorf("Istio's own registry named explicitly changed the hash: %s, want %s", got, none)
	}
	if got := ProxyConfigHash(&v1alpha2.IstioSpec{Images: &v1alpha2.Images{PullSecrets: []string{"pull"}}}); got != none {
		t.Errorf("pull secrets changed the hash (they do not change what runs): %s", got)
	}
	mirror := ProxyConfigHash(&v1alpha2.IstioSpec{Images: &v1alpha2.Images{Registry: "mirror.example.com/istio"}})
	other := ProxyConfigHash(&v1alpha2.IstioSpec{Images: &v1alpha2.Images{Registry: "other.example.com/istio"}})
	if mirror == none || other == none || mirror == other {
		t.Errorf("registries do not tell apart: default %s, mirror %s, other %s", none, mirror, other)
	}
}

func TestDesiredProxyFollowsImagesAndProfile(t *testing.T) {
	p, err := DesiredProxy(&v1alpha2.IstioSpec{Profile: v1alpha2.ProfileEvaluation, Images: &v1alpha2.Images{Registry: "mirror.example.com/istio"}})
	if err != nil {
		t.Fatal(err)
	}
	if want := "mirror.example.com/istio/proxyv2:" + Version; p.Image != want {
		t.Errorf("image %s, want %s", p.Image, want)
	}
	if q := p.Resources.Limits[corev1.ResourceMemory]; q.String() != "254Mi" {
		t.Errorf("evaluation memory limit %s, want 254Mi", q.String())
	}
	if p.ConfigHash != ProxyConfigHash(&v1alpha2.IstioSpec{Images: &v1alpha2.Images{Registry: "mirror.example.com/istio"}}) {
		t.Error("the config hash does not carry the registry")
	}
}
