package istioclient

import (
	"context"
	"strings"
	"testing"

	"istio.io/istio/operator/pkg/manifest"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	v1alpha2 "github.com/meshkeeper/istio-operator/pkg/apis/operator/v1alpha2"
)

// foreignCopy is obj as another installer would have left it: no
// ownership annotation, its labels (an empty value removes the label).
func foreignCopy(obj *unstructured.Unstructured, labels map[string]string) *unstructured.Unstructured {
	u := obj.DeepCopy()
	u.SetAnnotations(nil)
	l := u.GetLabels()
	for k, v := range labels {
		if v == "" {
			delete(l, k)
		} else {
			l[k] = v
		}
	}
	u.SetLabels(l)
	return u
}

var (
	helmLabels     = map[string]string{"app.kubernetes.io/managed-by": "Helm", manifest.OwningResourceName: "unknown", manifest.OperatorManagedLabel: ""}
	istioctlLabels = map[string]string{manifest.OperatorManagedLabel: "Reconcile", manifest.OwningResourceName: "installed-state"}
	istiodKey      = liveKey(deploymentGVK, Namespace, "istiod")
)

// The plan applies, prunes and reports by the one rule: objects without
// the operator's annotation are never changed, pruned or taken over.
func TestPlanTouchesOnlyOwnedObjects(t *testing.T) {
	r := mustRender(t, &v1alpha2.IstioSpec{})

	t.Run("a foreign default revision refuses the plan", func(t *testing.T) {
		live := installed(r)
		live.put(foreignCopy(live[istiodKey], helmLabels))
		p := MakePlan(r, live)
		err := p.Refused()
		if err == nil {
			t.Fatalf("a Helm-installed istiod does not refuse the plan: %s", p.Summary())
		}
		if !strings.HasPrefix(err.Error(), "1 objects Istio needs exist and were not installed by this operator: Deployment istio-system/istiod (installed by Helm)") {
			t.Errorf("error %q", err)
		}
		for _, c := range p.Apply {
			if c.GetName() == "istiod" && c.GetKind() == "Deployment" {
				t.Errorf("the plan applies the foreign istiod: %s", c.Reason)
			}
		}
	})

	t.Run("the Deployments are named first", func(t *testing.T) {
		live := fakeLive{}
		for _, o := range r.Desired() {
			live.put(foreignCopy(o.Unstructured, istioctlLabels))
		}
		err := MakePlan(r, live).Refused()
		if err == nil || !strings.Contains(err.Error(), ": Deployment istio-system/istio-ingressgateway (installed by istioctl), Deployment istio-system/istiod (installed by istioctl), ") {
			t.Errorf("error %v", err)
		}
	})

	t.Run("foreign CRDs are shared, not refused", func(t *testing.T) {
		live := installed(r)
		crds := 0
		for k, u := range live {
			if u.GroupVersionKind() == crdGVK {
				live[k] = foreignCopy(u, helmLabels)
				crds++
			}
		}
		p := MakePlan(r, live)
		if err := p.Refused(); err != nil {
			t.Fatalf("foreign CRDs refuse the plan: %v", err)
		}
		if len(p.Shared) != crds || crds == 0 || !p.Empty() {
			t.Errorf("%d shared of %d foreign CRDs; plan %s", len(p.Shared), crds, p.Summary())
		}
	})

	t.Run("a foreign tag webhook refuses the plan", func(t *testing.T) {
		live := installed(r)
		key := liveKey(mutatingWebhookGVK, "", TagWebhookName)
		live.put(foreignCopy(live[key], nil))
		if err := MakePlan(r, live).Refused(); err == nil || !strings.Contains(err.Error(), "MutatingWebhookConfiguration "+TagWebhookName) {
			t.Errorf("error %v", err)
		}
	})

	t.Run("prune takes only the operator's objects", func(t *testing.T) {
		live := installed(r)
		canary := foreignCopy(live[istiodKey], istioctlLabels)
		canary.SetName("istiod-canary")
		live.put(canary)
		leftover := live[istiodKey].DeepCopy()
		leftover.SetName("istiod-old")
		live.put(leftover)
		p := MakePlan(r, live)
		if len(p.Prune) != 1 || p.Prune[0].GetName() != "istiod-old" {
			names := []string{}
			for _, u := range p.Prune {
				names = append(names, u.GetName())
			}
			t.Errorf("prunes %v, want istiod-old alone", names)
		}
	})

	t.Run("an empty rendering prunes nothing", func(t *testing.T) {
		p := MakePlan(&Rendered{Hash: "empty"}, installed(r))
		if len(p.Prune) != 0 {
			t.Errorf("an empty rendering prunes %d objects", len(p.Prune))
		}
	})
}

func TestForeignControlPlanes(t *testing.T) {
	r := mustRender(t, &v1alpha2.IstioSpec{})
	live := installed(r)
	ours := live[istiodKey]
	canary := foreignCopy(ours, istioctlLabels)
	canary.SetName("istiod-canary")
	canary.SetLabels(map[string]string{manifest.IstioComponentLabel: "Pilot", "istio.io/rev": "canary",
		manifest.OperatorManagedLabel: "Reconcile", manifest.OwningResourceName: "installed-state", manifest.OperatorVersionLabel: "1.30.2"})
	live.put(canary)
	helm := foreignCopy(ours, helmLabels)
	helm.SetNamespace("istio-helm")
	delete(helm.Object["metadata"].(map[string]any)["labels"].(map[string]any), manifest.OperatorVersionLabel)
	containers, _, _ := unstructured.NestedSlice(helm.Object, "spec", "template", "spec", "containers")
	containers[0].(map[string]any)["image"] = "docker.io/istio/pilot@sha256:0123"
	_ = unstructured.SetNestedSlice(helm.Object, containers, "spec", "template", "spec", "containers")
	live.put(helm)
	gateway := foreignCopy(ours, istioctlLabels)
	gateway.SetName("app-gateway")
	gateway.SetLabels(map[string]string{manifest.IstioComponentLabel: "IngressGateways"})
	live.put(gateway)

	got := ForeignControlPlanes(live)
	var names []string
	for _, c := range got {
		names = append(names, c.String())
	}
	want := []string{
		"Deployment istio-helm/istiod (revision default, Istio unknown, installed by Helm)",
		"Deployment istio-system/istiod-canary (revision canary, Istio 1.30.2, installed by istioctl)",
	}
	if strings.Join(names, "\n") != strings.Join(want, "\n") {
		t.Errorf("got\n%s\nwant\n%s", strings.Join(names, "\n"), strings.Join(want, "\n"))
	}
}

// InstalledVersion reads only the operator's istiod: a foreign one is not
// an installation to upgrade or uninstall.
func TestInstalledVersionReadsOnlyTheOperatorsIstiod(t *testing.T) {
	r := mustRender(t, &v1alpha2.IstioSpec{})
	live := installed(r)
	if v, found, err := InstalledVersion(live); !found || err != nil || v.String() != Version {
		t.Errorf("the operator's istiod: %v %v %v", v, found, err)
	}
	live.put(foreignCopy(live[istiodKey], helmLabels))
	if _, found, _ := InstalledVersion(live); found {
		t.Error("a Helm-installed istiod counts as the operator's installation")
	}
	digest := live[istiodKey].DeepCopy()
	stamp(digest)
	l := digest.GetLabels()
	delete(l, manifest.OperatorVersionLabel)
	digest.SetLabels(l)
	containers, _, _ := unstructured.NestedSlice(digest.Object, "spec", "template", "spec", "containers")
	containers[0].(map[string]any)["image"] = "docker.io/istio/pilot@sha256:0123"
	_ = unstructured.SetNestedSlice(digest.Object, containers, "spec", "template", "spec", "containers")
	live.put(digest)
	if _, found, err := InstalledVersion(live); !found || err == nil {
		t.Errorf("a digest-pinned istiod without a version label: found %v, error %v; want found and an error", found, err)
	}
}

// An object the caches cannot see (no component label) is looked up
// before it is created: someone else's is refused, a CRD is shared and not
// looked up again for a while, the operator's own (a lagging cache) stays.
func TestCheckMissing(t *testing.T) {
	r := mustRender(t, &v1alpha2.IstioSpec{})
	var pl Planner
	p := pl.Plan(r, fakeLive{})
	existing := map[string]*unstructured.Unstructured{}
	for _, c := range p.Apply {
		switch {
		case c.GetKind() == "CustomResourceDefinition":
			existing[c.Hash()] = foreignCopy(c.Unstructured, nil)
		case c.GetKind() == "ConfigMap" && c.GetName() == "istio":
			existing[c.Hash()] = foreignCopy(c.Unstructured, nil)
		case c.GetKind() == "Deployment" && c.GetName() == "istiod":
			existing[c.Hash()] = c.Unstructured.DeepCopy()
		}
	}
	lookups := 0
	lookup := func(_ context.Context, o Object) (*unstructured.Unstructured, error) {
		lookups++
		return existing[o.Hash()], nil
	}
	before := len(p.Apply)
	if err := pl.CheckMissing(t.Context(), p, lookup); err != nil {
		t.Fatal(err)
	}
	if lookups != before {
		t.Errorf("%d lookups for %d missing objects", lookups, before)
	}
	crds := len(existing) - 2
	if len(p.Foreign) != 1 || !strings.HasPrefix(p.Foreign[0], "ConfigMap istio-system/istio (") {
		t.Errorf("foreign %v, want the ConfigMap istio", p.Foreign)
	}
	if len(p.Shared) != crds || len(p.Apply) != before-crds-1 {
		t.Errorf("%d shared (want %d CRDs), %d to apply of %d", len(p.Shared), crds, len(p.Apply), before)
	}
	// The next plan counts the CRDs as present without asking again.
	if next := pl.Plan(r, fakeLive{}); len(next.Shared) != crds || len(next.Apply) != before-crds {
		t.Errorf("next plan: %d shared, %d to apply", len(next.Shared), len(next.Apply))
	}
}
