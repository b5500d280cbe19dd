package istioclient

import (
	"strings"
	"testing"

	"istio.io/istio/operator/pkg/manifest"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"

	v1alpha2 "github.com/meshkeeper/istio-operator/pkg/apis/operator/v1alpha2"
)

// fakeLive is a LiveObjects over a map, as the caches would serve it.
type fakeLive map[string]*unstructured.Unstructured

func liveKey(gvk schema.GroupVersionKind, ns, name string) string {
	return gvk.Kind + "/" + ns + "/" + name
}

func (f fakeLive) Get(gvk schema.GroupVersionKind, ns, name string) *unstructured.Unstructured {
	return f[liveKey(gvk, ns, name)]
}

func (f fakeLive) Labelled(gvk schema.GroupVersionKind) []*unstructured.Unstructured {
	var out []*unstructured.Unstructured
	for _, u := range f {
		if u.GroupVersionKind() == gvk && u.GetLabels()[manifest.IstioComponentLabel] != "" {
			out = append(out, u)
		}
	}
	return out
}

func (f fakeLive) put(u *unstructured.Unstructured) {
	f[liveKey(u.GroupVersionKind(), u.GetNamespace(), u.GetName())] = u
}

// installed is a live state exactly as an apply of the rendering would
// leave it: its objects and the default revision tag's webhook.
func installed(r *Rendered) fakeLive {
	live := fakeLive{}
	for _, o := range r.Desired() {
		live.put(o.Unstructured.DeepCopy())
	}
	tag := &unstructured.Unstructured{}
	tag.SetGroupVersionKind(mutatingWebhookGVK)
	tag.SetName(TagWebhookName)
	tag.SetLabels(map[string]string{RevisionLabel: r.Revision})
	stamp(tag)
	live.put(tag)
	return live
}

func TestMakePlan(t *testing.T) {
	r := mustRender(t, &v1alpha2.IstioSpec{})

	empty := MakePlan(r, fakeLive{})
	if len(empty.Apply) != len(r.Desired()) || len(empty.Prune) != 0 {
		t.Fatalf("on an empty cluster: %d to apply of %d rendered, %d to prune", len(empty.Apply), len(r.Desired()), len(empty.Prune))
	}
	for _, c := range empty.Apply {
		if c.Reason != "missing" {
			t.Fatalf("%s: reason %q", c.Object, c.Reason)
		}
	}

	live := installed(r)
	if p := MakePlan(r, live); !p.Empty() {
		t.Fatalf("an up-to-date cluster needs %s", p.Summary())
	}

	// Drift: one edited image, one deleted object.
	editIstiodImage(t, live, "example.com/pilot:evil")
	delete(live, liveKey(schema.GroupVersionKind{Version: "v1", Kind: "ConfigMap"}, Namespace, "istio"))
	p := MakePlan(r, live)
	if len(p.Apply) != 2 || len(p.Prune) != 0 {
		t.Fatalf("after one edit and one delete: %s", p.Summary())
	}
	if s := p.Summary(); !strings.Contains(s, "Deployment istio-system/istiod (.spec.template.spec.containers.0.image is example.com/pilot:evil") ||
		!strings.Contains(s, "ConfigMap istio-system/istio (missing)") {
		t.Errorf("summary %q does not name both changes", s)
	}

	// A deleted revision tag webhook is recreated, also in a repair.
	live = installed(r)
	delete(live, liveKey(mutatingWebhookGVK, "", TagWebhookName))
	p = MakePlan(r, live)
	if !p.TagWebhookMissing || p.Empty() || len(p.Apply) != 0 {
		t.Fatalf("without the tag webhook: missing %v, empty %v, %s", p.TagWebhookMissing, p.Empty(), p.Summary())
	}
	if s := p.Summary(); !strings.Contains(s, "point MutatingWebhookConfiguration "+TagWebhookName+" at revision default") {
		t.Errorf("summary %q does not name the tag webhook", s)
	}

	// A component switched off: its objects are pruned, nothing else.
	withEgress := mustRender(t, &v1alpha2.IstioSpec{Components: &v1alpha2.Components{EgressGateway: &v1alpha2.EgressGateway{Enabled: ptrTo(true)}}})
	live = installed(withEgress)
	p = MakePlan(r, live)
	if len(p.Prune) == 0 {
		t.Fatal("disabling the egress gateway prunes nothing")
	}
	for _, u := range p.Prune {
		if !strings.Contains(u.GetName(), "egressgateway") {
			t.Errorf("prunes %s %s", u.GetKind(), u.GetName())
		}
	}
}

func TestDesiredCarriesOwnerLabelsAndHash(t *testing.T) {
	r := mustRender(t, &v1alpha2.IstioSpec{})
	for _, o := range r.Desired() {
		l := o.GetLabels()
		if l[manifest.IstioComponentLabel] == "" || l[manifest.OwningResourceName] != "installed-state" || l[manifest.OperatorVersionLabel] != Version {
			t.Fatalf("%s labels %v", o, l)
		}
		if len(o.GetAnnotations()[ConfigHashAnnotation]) != 16 {
			t.Fatalf("%s has no configuration hash", o)
		}
		if got := o.GetAnnotations()[InstallationHashAnnotation]; (got == r.Hash) != isIstiod(o.Unstructured, r.Revision) {
			t.Fatalf("%s has installation hash %q; only istiod carries it (%s)", o, got, r.Hash)
		}
	}
	np, err := r.WithNetworkPolicies("kyma-system")
	if err != nil {
		t.Fatal(err)
	}
	if np.Hash == r.Hash {
		t.Error("network policies do not change the hash")
	}
	n := 0
	for _, o := range np.Desired() {
		if o.GetKind() == "NetworkPolicy" {
			n++
		}
	}
	if n != 4 {
		t.Errorf("%d NetworkPolicies, want 4", n)
	}
}

// A new configuration re-applies the objects whose rendering changed, and
// istiod for its installation hash; the rest stays untouched.
func TestPlanOfANewConfigurationAppliesOnlyWhatChanged(t *testing.T) {
	before := mustRender(t, &v1alpha2.IstioSpec{})
	after := mustRender(t, &v1alpha2.IstioSpec{Config: v1alpha2.Config{NumTrustedProxies: ptrTo[int64](2)}})
	p := MakePlan(after, installed(before))
	if len(p.Prune) != 0 {
		t.Fatalf("prunes %d objects", len(p.Prune))
	}
	var names []string
	for _, c := range p.Apply {
		names = append(names, c.Object.GetKind()+" "+c.Object.GetName())
	}
	want := map[string]bool{"Deployment istiod": true, "Deployment istio-ingressgateway": true}
	for _, n := range names {
		delete(want, n)
	}
	t.Logf("applies %v", names)
	if len(want) > 0 || len(p.Apply) >= len(after.Desired())/4 {
		t.Fatalf("numTrustedProxies applies %d of %d objects: %v; want istiod, the gateway and few others", len(p.Apply), len(after.Desired()), names)
	}
}

func ptrTo[T any](v T) *T { return &v }

// A kept rendering holds each object once: the sets and Desired share them.
func TestDesiredSharesTheRenderedObjects(t *testing.T) {
	r := mustRender(t, &v1alpha2.IstioSpec{})
	desired := map[*unstructured.Unstructured]bool{}
	for _, o := range r.Desired() {
		desired[o.Unstructured] = true
	}
	n := 0
	for _, set := range r.Sets {
		for _, m := range set.Manifests {
			n++
			if !desired[m.Unstructured] {
				t.Fatalf("%s %s is held twice", m.GetKind(), m.GetName())
			}
			if m.GetAnnotations()[ConfigHashAnnotation] == "" {
				t.Fatalf("%s %s in the sets has no configuration hash", m.GetKind(), m.GetName())
			}
		}
	}
	if n != len(desired) {
		t.Errorf("the sets hold %d objects, Desired %d", n, len(desired))
	}
}

// A Planner compares a live object again only when its resourceVersion or
// the rendering changed: an edit of istiod's image shows once its version
// moves.
func TestPlannerComparesChangedObjectsOnly(t *testing.T) {
	r := mustRender(t, &v1alpha2.IstioSpec{})
	live := versioned(installed(r))
	var pl Planner
	if p := pl.Plan(r, live); !p.Empty() {
		t.Fatalf("an up-to-date cluster needs %s", p.Summary())
	}

	istiod := editIstiodImage(t, live, "example.com/pilot:evil")
	if p := pl.Plan(r, live); !p.Empty() {
		t.Fatalf("compared istiod again at the same resourceVersion: %s", p.Summary())
	}
	istiod.SetResourceVersion("2")
	p := pl.Plan(r, live)
	if len(p.Apply) != 1 || !strings.Contains(p.Summary(), "Deployment istio-system/istiod (.spec.template.spec.containers.0.image is example.com/pilot:evil") {
		t.Fatalf("after the edit: %s", p.Summary())
	}
	// Nothing is remembered for a drifted object: it is reported again.
	if p := pl.Plan(r, live); len(p.Apply) != 1 {
		t.Fatalf("the second plan after the edit: %s", p.Summary())
	}

	// Another rendering compares every object again.
	other := mustRender(t, &v1alpha2.IstioSpec{Config: v1alpha2.Config{NumTrustedProxies: ptrTo(int64(2))}})
	if p := pl.Plan(other, live); p.Empty() {
		t.Fatal("a new configuration needs nothing")
	}
}

// editIstiodImage changes the image of istiod's first container in place.
func editIstiodImage(t *testing.T, live fakeLive, image string) *unstructured.Unstructured {
	t.Helper()
	istiod := live.Get(schema.GroupVersionKind{Group: "apps", Version: "v1", Kind: "Deployment"}, Namespace, "istiod")
	containers, _, _ := unstructured.NestedSlice(istiod.Object, "spec", "template", "spec", "containers")
	containers[0].(map[string]any)["image"] = image
	if err := unstructured.SetNestedSlice(istiod.Object, containers, "spec", "template", "spec", "containers"); err != nil {
		t.Fatal(err)
	}
	return istiod
}

// versioned gives every live object a UID and a resourceVersion, as the API
// server does.
func versioned(live fakeLive) fakeLive {
	for k, u := range live {
		u.SetUID(types.UID("uid-" + k))
		u.SetResourceVersion("1")
	}
	return live
}

// BenchmarkPlannerUnchanged is the same check by the installation
// controller's Planner, which compared every object on an earlier sync.
func BenchmarkPlannerUnchanged(b *testing.B) {
	r := cachedRender(b, &v1alpha2.IstioSpec{})
	live := versioned(installed(r))
	var pl Planner
	pl.Plan(r, live)
	b.ReportAllocs()
	for b.Loop() {
		if p := pl.Plan(r, live); !p.Empty() {
			b.Fatalf("plan of an unchanged installation: %s", p.Summary())
		}
	}
}

// BenchmarkMakePlan is the drift check of an installation sync with nothing
// to do: the whole rendering against live objects that match it.
func BenchmarkMakePlan(b *testing.B) {
	r := cachedRender(b, &v1alpha2.IstioSpec{})
	live := installed(r)
	b.ReportAllocs()
	for b.Loop() {
		if p := MakePlan(r, live); !p.Empty() {
			b.Fatalf("plan of an unchanged installation: %s", p.Summary())
		}
	}
}
