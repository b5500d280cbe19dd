package istioclient

import (
	"slices"
	"testing"

	v1alpha2 "github.com/meshkeeper/istio-operator/pkg/apis/operator/v1alpha2"
)

func renderAs(t *testing.T, as Revision) *Rendered {
	t.Helper()
	return mustRenderAs(t, &v1alpha2.IstioSpec{}, as)
}

// A canary revision renders its own control plane (istiod-1-31 and its
// injector), and every object carries its revision label.
func TestRenderRevision(t *testing.T) {
	r := renderAs(t, Revision{Name: "1-31", Version: MustParseVersion(Version)})
	if r.Revision != "1-31" || r.Version != Version {
		t.Fatalf("rendered revision %q version %q", r.Revision, r.Version)
	}
	names := map[string]bool{}
	for _, o := range r.Desired() {
		names[o.String()] = true
		if got := o.GetLabels()[RevisionLabel]; got != "1-31" {
			t.Errorf("%s has revision label %q", o, got)
		}
		if isIstiod(o.Unstructured, r.Revision) != (o.GetAnnotations()[InstallationHashAnnotation] != "") {
			t.Errorf("%s: installation hash on the wrong object", o)
		}
	}
	for _, want := range []string{"Deployment istio-system/istiod-1-31", "MutatingWebhookConfiguration istio-sidecar-injector-1-31", "ConfigMap istio-system/istio-1-31"} {
		if !names[want] {
			t.Errorf("the 1-31 rendering has no %s", want)
		}
	}
	old := renderAs(t, Revision{Name: DefaultRevision, Version: MustParseVersion("1.30.2")})
	if old.Version != "1.30.2" || old.Revision != DefaultRevision {
		t.Errorf("old rendering: revision %q version %q", old.Revision, old.Version)
	}
}

// The plans of each phase, against a cluster that holds the old revision,
// then both.
func TestPlanRevisions(t *testing.T) {
	oldRev := Revision{Name: DefaultRevision, Version: MustParseVersion("1.30.2")}
	newRev := Revision{Name: "1-31", Version: MustParseVersion(Version)}
	old, canary := renderAs(t, oldRev), renderAs(t, newRev)
	live := installed(old)

	if revs := Revisions(live); len(revs) != 1 || revs[0].Name != DefaultRevision || revs[0].Version != oldRev.Version {
		t.Fatalf("Revisions = %+v", revs)
	}

	// InstallingRevision: the old revision's objects stay, the tag too.
	p := new(Planner).PlanRevisions(canary, live, oldRev, DefaultRevision)
	if len(p.Prune) != 0 || p.TagWebhookMissing {
		t.Errorf("installing beside the old revision prunes %d objects, tag missing %v", len(p.Prune), p.TagWebhookMissing)
	}
	if !slices.ContainsFunc(p.Apply, func(c Change) bool {
		return c.Object.String() == "Deployment istio-system/istiod-1-31" && c.Reason == reasonMissing
	}) {
		t.Errorf("plan %s does not install istiod-1-31", p.Summary())
	}
	// The tag is to move.
	if p := new(Planner).PlanRevisions(canary, live, newRev, DefaultRevision); !p.TagWebhookMissing || p.TagRevision != "1-31" {
		t.Errorf("tag on default, wanted on 1-31: missing %v, revision %q", p.TagWebhookMissing, p.TagRevision)
	}

	// Both installed, the new one took over the objects both render.
	both := installed(old)
	for k, u := range installed(canary) {
		both[k] = u
	}
	if revs := Revisions(both); len(revs) != 2 || revs[0].Name != DefaultRevision || revs[1].Name != "1-31" {
		t.Fatalf("Revisions = %+v", revs)
	}
	if got := TagRevision(both); got != "1-31" {
		t.Errorf("TagRevision = %q", got)
	}
	if v, found, err := InstalledVersion(both); !found || err != nil || v != oldRev.Version {
		t.Errorf("InstalledVersion = %v, %v, %v; want the older revision's until it goes", v, found, err)
	}

	// RemovingRevision: only the old revision's own objects go.
	p = new(Planner).PlanRevisions(canary, both, newRev)
	if len(p.Apply) != 0 || len(p.Prune) == 0 {
		t.Fatalf("removal plan: %s", p.Summary())
	}
	pruned := map[string]bool{}
	for _, u := range p.Prune {
		pruned[u.GetKind()+" "+objectName(u)] = true
		if revisionOf(u) != DefaultRevision {
			t.Errorf("prunes %s %s of revision %s", u.GetKind(), objectName(u), revisionOf(u))
		}
	}
	if !pruned["Deployment istio-system/istiod"] || pruned["Deployment istio-system/istio-ingressgateway"] {
		t.Errorf("pruned %v; want the old istiod and not the gateway the new revision took over", pruned)
	}

	// A rollback's removal: what 1-31 took over goes back, 1-31's own
	// objects go, the old revision's own are not touched.
	p = new(Planner).PlanRevisions(old, both, oldRev)
	p.TakeBack(both, "1-31")
	applied := map[string]bool{}
	for _, c := range p.Apply {
		applied[c.Object.String()] = true
		if cur := both.Get(c.GroupVersionKind(), c.GetNamespace(), c.GetName()); revisionOf(cur) != "1-31" {
			t.Errorf("the rollback applies %s, which the new revision did not take over", c.Object)
		}
	}
	if !applied["Deployment istio-system/istio-ingressgateway"] {
		t.Errorf("the rollback does not give the gateway back: %s", p.Summary())
	}
	pruned = map[string]bool{}
	for _, u := range p.Prune {
		pruned[u.GetKind()+" "+objectName(u)] = true
		if revisionOf(u) != "1-31" {
			t.Errorf("the rollback prunes %s %s of revision %s", u.GetKind(), objectName(u), revisionOf(u))
		}
	}
	if !pruned["Deployment istio-system/istiod-1-31"] {
		t.Errorf("the rollback keeps istiod-1-31: %v", pruned)
	}
}
