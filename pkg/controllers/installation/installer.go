package installation

import (
	"context"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	v1alpha2 "github.com/meshkeeper/istio-operator/pkg/apis/operator/v1alpha2"
	"github.com/meshkeeper/istio-operator/pkg/istioclient"
)

// What the controller needs of istioclient, in three small interfaces: the
// unit tests fake them, so a sync neither renders Helm charts nor touches a
// cluster, and every decision around them is tested in milliseconds.

// renderer renders the objects of a spec as a control plane revision of
// an Istio version.
type renderer interface {
	Render(spec *v1alpha2.IstioSpec, as istioclient.Revision) (*istioclient.Rendered, error)
}

// planner compares a rendering with the live objects. *istioclient.Planner
// is the real one. A test could not build a rendering holding objects
// without importing Istio's manifest package, so planning is faked too.
type planner interface {
	PlanRevisions(r *istioclient.Rendered, live istioclient.LiveObjects, tag istioclient.Revision, keep ...string) *istioclient.Plan
	CheckMissing(ctx context.Context, p *istioclient.Plan, lookup func(context.Context, istioclient.Object) (*unstructured.Unstructured, error)) error
}

// applier changes the cluster.
type applier interface {
	// Apply applies the plan made from r, sending progress sentences.
	Apply(ctx context.Context, r *istioclient.Rendered, p *istioclient.Plan, progress func(string)) error
	// Uninstall deletes what the operator installed; kept says why
	// istio-system stayed, when it did.
	Uninstall(ctx context.Context) (kept string, err error)
	// Lookup reads an object from the API server: nil when it does not exist.
	Lookup(ctx context.Context, o istioclient.Object) (*unstructured.Unstructured, error)
	// MoveTag points the default revision tag at a revision.
	MoveTag(ctx context.Context, revision, version string, autoInject bool) error
}

// charts renders with the Helm charts compiled into the operator.
type charts struct {
	cluster *istioclient.Cluster
	// namespace is the operator's, which the network policies admit.
	namespace string
	release   func()
}

func (h charts) Render(spec *v1alpha2.IstioSpec, as istioclient.Revision) (*istioclient.Rendered, error) {
	iop, err := istioclient.DesiredIstioOperatorAs(spec, as)
	if err != nil {
		return nil, err
	}
	// Rendering maps the Helm engine and the charts; what the last restart
	// wave ran need not stay mapped beside them.
	h.release()
	r, err := istioclient.Render(iop, h.cluster)
	if err != nil {
		return nil, err
	}
	if spec.NetworkPoliciesWanted() {
		return r.WithNetworkPolicies(h.namespace)
	}
	return r, nil
}

// installer applies with istioclient's Installer; Uninstall and Lookup are
// its own.
type installer struct{ *istioclient.Installer }

// Apply runs a copy of the installer with the progress callback: syncs of
// different resources must not share it.
func (i installer) Apply(ctx context.Context, r *istioclient.Rendered, p *istioclient.Plan, progress func(string)) error {
	in := *i.Installer
	in.Progress = progress
	return in.Apply(ctx, r, p)
}
