package istioclient

import (
	"context"
	"fmt"
	"slices"
	"sort"

	"istio.io/istio/istioctl/pkg/tag"
	"istio.io/istio/operator/pkg/component"
	"istio.io/istio/operator/pkg/manifest"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// DefaultRevision is the revision of a control plane installed without a
// revision name, and the name of the default revision tag.
const DefaultRevision = "default"

// RevisionLabel names an object's control plane revision. The installer
// sets it on every object it applies; the injector writes it as an
// annotation on every pod it injects.
const RevisionLabel = "istio.io/rev"

// RevisionName is the revision a canary upgrade installs a version as:
// "1-31" for 1.31.x. Patch releases of one minor share it, so a patch
// upgrade is made in place.
func RevisionName(v SemVer) string { return fmt.Sprintf("%d-%d", v.Major, v.Minor) }

// IstiodName is the name of a revision's istiod Deployment and Service.
func IstiodName(revision string) string {
	if revision == "" || revision == DefaultRevision {
		return "istiod"
	}
	return "istiod-" + revision
}

// Revision is a control plane the operator installed.
type Revision struct {
	Name    string
	Version SemVer
	// Err says why the version could not be read.
	Err error
}

// Revisions lists the control planes the operator installed, by their
// istiod Deployments, oldest version first.
func Revisions(live LiveObjects) []Revision {
	var out []Revision
	for _, d := range live.Labelled(deploymentGVK) {
		if d.GetNamespace() != Namespace || !Owns(d) || d.GetDeletionTimestamp() != nil ||
			d.GetLabels()[manifest.IstioComponentLabel] != string(component.PilotComponentName) {
			continue
		}
		rev := revisionOf(d)
		if d.GetName() != IstiodName(rev) {
			continue
		}
		v, err := versionOf(d)
		out = append(out, Revision{Name: rev, Version: v, Err: err})
	}
	sort.Slice(out, func(i, j int) bool {
		if c := out[i].Version.Compare(out[j].Version); c != 0 {
			return c < 0
		}
		return out[i].Name < out[j].Name
	})
	return out
}

// revisionOf is an object's revision label, DefaultRevision when unset.
func revisionOf(u *unstructured.Unstructured) string {
	if rev := u.GetLabels()[RevisionLabel]; rev != "" {
		return rev
	}
	return DefaultRevision
}

// TagRevision is the revision the default revision tag's webhook points
// at, "" when there is no such webhook.
func TagRevision(live LiveObjects) string {
	tag := live.Get(mutatingWebhookGVK, "", TagWebhookName)
	if tag == nil {
		return ""
	}
	return revisionOf(tag)
}

// tagWebhooks renders the default revision tag for a revision, as Istio's
// installer and `istioctl tag set default` do: the tag's mutating webhook
// (a copy of the revision's injector webhook that also answers the
// default selectors), the default validator and the tag's Service. It
// makes the default revision's own injector webhook match nothing, as
// Istio does: the tag injects in its stead, so that it can move.
func (i *Installer) tagWebhooks(ctx context.Context, revision, version string, autoInject bool) ([]manifest.Manifest, error) {
	labels := ownerLabels(component.PilotComponentName, version, revision)
	labels[manifest.OwningResourceNotPruned] = "true"
	yaml, err := tag.Generate(ctx, i.Istio.client, &tag.GenerateOptions{
		Tag:                  tag.DefaultRevisionName,
		Revision:             revision,
		Overwrite:            true,
		CustomLabels:         labels,
		IstioNamespace:       Namespace,
		AutoInjectNamespaces: autoInject,
	})
	if err != nil {
		return nil, fmt.Errorf("generating the default revision tag for revision %s: %w", revision, err)
	}
	return manifest.ParseMultiple(yaml)
}

// MoveTag points the default revision tag at a revision of the given
// Istio version: new pods get that revision's proxy. autoInject is the
// rendering's sidecarInjectorWebhook.enableNamespacesByDefault.
func (i *Installer) MoveTag(ctx context.Context, revision, version string, autoInject bool) error {
	if i.Istio == nil {
		return fmt.Errorf("moving the default revision tag needs Istio's client")
	}
	hooks, err := i.tagWebhooks(ctx, revision, version, autoInject)
	if err != nil {
		return err
	}
	for _, h := range hooks {
		stamp(h.Unstructured)
		if err := i.apply(ctx, Object{Manifest: h}); err != nil {
			return err
		}
	}
	return nil
}

// TakeBack narrows a plan made from an older revision's rendering to what
// a newer revision took over from it, for a rollback: the objects both
// revisions render under one name (the gateways, the base chart's), now
// labelled with the newer revision, are applied back, and the newer
// revision's own objects are pruned. The older revision's own objects are
// left as they run: they were never changed.
func (p *Plan) TakeBack(live LiveObjects, newer ...string) {
	apply := p.Apply[:0:0]
	for _, c := range p.Apply {
		if cur := live.Get(c.GroupVersionKind(), c.GetNamespace(), c.GetName()); cur != nil && Owns(cur) && slices.Contains(newer, revisionOf(cur)) {
			apply = append(apply, c)
		}
	}
	p.Apply = apply
	prune := p.Prune[:0:0]
	for _, u := range p.Prune {
		if slices.Contains(newer, revisionOf(u)) {
			prune = append(prune, u)
		}
	}
	p.Prune = prune
	p.TagWebhookMissing = false
}
