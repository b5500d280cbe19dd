package installation

import (
	"errors"
	"testing"

	v1alpha2 "github.com/meshkeeper/istio-operator/pkg/apis/operator/v1alpha2"
	"github.com/meshkeeper/istio-operator/pkg/istioclient"
)

// The adapters' paths that neither render nor reach a cluster.

func TestChartsRefuseBeforeRendering(t *testing.T) {
	released := 0
	h := charts{namespace: "kyma-system", release: func() { released++ }}
	spec := &v1alpha2.IstioSpec{Config: v1alpha2.Config{Authorizers: []*v1alpha2.Authorizer{{Name: "a", Service: "ext\x7f.ns", Port: 1}}}}
	r, err := h.Render(spec, istioclient.Revision{Name: istioclient.DefaultRevision})
	var invalid *istioclient.InvalidSpecError
	if !errors.As(err, &invalid) || r != nil {
		t.Fatalf("Render = %v, %v; want an InvalidSpecError", r, err)
	}
	// Released only before a rendering: nothing was mapped.
	if released != 0 {
		t.Errorf("memory released %d times", released)
	}
}

func TestInstallerAppliesWithItsOwnProgress(t *testing.T) {
	shared := &istioclient.Installer{}
	err := installer{shared}.Apply(t.Context(), &istioclient.Rendered{}, &istioclient.Plan{Foreign: []string{"Deployment istio-system/istiod (installed by Helm)"}},
		func(string) {})
	var foreign *istioclient.ForeignObjectsError
	if !errors.As(err, &foreign) {
		t.Fatalf("Apply error %v, want the plan refused", err)
	}
	// Syncs must not share the callback.
	if shared.Progress != nil {
		t.Error("the progress callback was set on the shared installer")
	}
}
