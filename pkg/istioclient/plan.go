package istioclient

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"istio.io/istio/operator/pkg/component"
	"istio.io/istio/operator/pkg/manifest"
	"istio.io/istio/operator/pkg/uninstall"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
)

// Labels and annotations the installer puts on every object, as Istio's own
// installer does, so that Istio's tooling (istioctl, pruning) recognises
// them; plus the hash of what was rendered for the object.
const (
	// ConfigHashAnnotation is the hash of the object as rendered (and of the
	// operator build), on every object. A configuration change re-applies
	// exactly the objects whose rendering changed, fields removed from the
	// rendering included, which a comparison with the live object cannot see.
	ConfigHashAnnotation = "operator.kyma-project.io/applied-configuration-hash"
	// InstallationHashAnnotation is the hash of the whole rendering, on
	// istiod only: it tells a new configuration from a repair.
	InstallationHashAnnotation = "operator.kyma-project.io/installation-hash"
	ownerName                  = "installed-state"
	fieldManager               = "istio-operator"
)

// OwnedSelector selects every object the installer owns.
const OwnedSelector = manifest.IstioComponentLabel

// ownerLabels are the labels Istio's installer sets (see its getOwnerLabels);
// version is the Istio version installed, revision its control plane's.
func ownerLabels(comp component.Name, version, revision string) map[string]string {
	l := map[string]string{
		manifest.OperatorManagedLabel:    "Reconcile",
		manifest.OperatorVersionLabel:    version,
		manifest.OwningResourceName:      ownerName,
		manifest.OwningResourceNamespace: Namespace,
		RevisionLabel:                    revision,
	}
	if comp != "" {
		l[manifest.IstioComponentLabel] = string(comp)
	}
	return l
}

// LiveObjects reads the installer's objects from the operator's caches.
type LiveObjects interface {
	// Get returns the live object, or nil.
	Get(gvk schema.GroupVersionKind, namespace, name string) *unstructured.Unstructured
	// Owned returns every live object of the kind that carries the
	// installer's component label.
	Labelled(gvk schema.GroupVersionKind) []*unstructured.Unstructured
}

// Object is a rendered object with the component it belongs to.
type Object struct {
	Component component.Name
	manifest.Manifest
}

func (o Object) String() string {
	return fmt.Sprintf("%s %s", o.GetKind(), objectName(o.Unstructured))
}

func objectName(u *unstructured.Unstructured) string {
	if u.GetNamespace() == "" {
		return u.GetName()
	}
	return u.GetNamespace() + "/" + u.GetName()
}

// Plan is what it takes to make the cluster match a rendering.
type Plan struct {
	// Apply are the rendered objects that are missing or drifted, with the reason.
	Apply []Change
	// Prune are installer-owned objects the rendering no longer contains.
	Prune []*unstructured.Unstructured
	// SameRevision is set for a plan that neither installs nor upgrades
	// Istio (a new configuration, a repair): the webhook checks of Istio's
	// installer, which list the cluster's webhooks and services, are only
	// needed when a revision is installed.
	SameRevision bool
	// TagWebhookMissing is set when the default revision tag's webhook,
	// which is not part of the charts, is not in the cluster, or points at
	// another revision than TagRevision: the apply creates or moves it,
	// also in a repair.
	TagWebhookMissing bool
	// TagRevision is the revision the default revision tag points at once
	// the plan is applied, and TagVersion its Istio version.
	TagRevision, TagVersion string
	// Foreign are live objects the rendering needs that the operator did
	// not apply (Owns): a plan with any is refused, and they are reported.
	Foreign []string
	// Shared are objects of Istio's base chart (its CRDs, the reader
	// ServiceAccount) that another installation applied: used as they
	// are, never changed or deleted.
	Shared []string
	// shared are the Shared objects' hashes: nothing the operator applied
	// to wait for.
	shared map[string]bool
}

// share records a shared object someone else applied.
func (p *Plan) share(o Object, live *unstructured.Unstructured) {
	if p.shared == nil {
		p.shared = map[string]bool{}
	}
	p.shared[o.Hash()] = true
	if live != nil {
		p.Shared = append(p.Shared, describeForeign(live))
	} else {
		p.Shared = append(p.Shared, o.String())
	}
}

// Refused returns the error that stops a plan with foreign objects.
func (p *Plan) Refused() error {
	if len(p.Foreign) == 0 {
		return nil
	}
	sort.SliceStable(p.Foreign, func(i, j int) bool {
		di, dj := strings.HasPrefix(p.Foreign[i], "Deployment "), strings.HasPrefix(p.Foreign[j], "Deployment ")
		if di != dj {
			return di
		}
		return p.Foreign[i] < p.Foreign[j]
	})
	return &ForeignObjectsError{Objects: p.Foreign}
}

// TagWebhookName is the default revision tag's MutatingWebhookConfiguration,
// which Istio's installer creates outside the charts.
const TagWebhookName = "istio-revision-tag-default"

var mutatingWebhookGVK = schema.GroupVersionKind{Group: "admissionregistration.k8s.io", Version: "v1", Kind: "MutatingWebhookConfiguration"}

// tagWebhookExpected reports whether the default revision tag's webhook
// belongs to this rendering: unless Istio is told to manage its webhooks
// itself. The operator's control plane always carries the default tag, as
// Istio's installer gives it to the default revision; a canary revision
// gets it when the upgrade moves it there.
func tagWebhookExpected(r *Rendered) bool {
	return !r.Merged.GetPathBool("spec.values.global.operatorManageWebhooks")
}

// AutoInject is the rendering's sidecarInjectorWebhook.enableNamespacesByDefault,
// which the default revision tag's webhook follows.
func (r *Rendered) AutoInject() bool {
	return r.Merged.GetPathBool("spec.values.sidecarInjectorWebhook.enableNamespacesByDefault")
}

// Change is one object to apply and why.
type Change struct {
	Object
	Reason string
}

// Empty reports whether the cluster already matches.
func (p *Plan) Empty() bool { return len(p.Apply) == 0 && len(p.Prune) == 0 && !p.TagWebhookMissing }

// Summary describes the plan in one sentence for logs and Events.
func (p *Plan) Summary() string {
	var parts []string
	for i, c := range p.Apply {
		if i == 3 {
			parts = append(parts, fmt.Sprintf("and %d more", len(p.Apply)-3))
			break
		}
		parts = append(parts, fmt.Sprintf("%s (%s)", c.Object, c.Reason))
	}
	s := "apply " + strings.Join(parts, ", ")
	if len(p.Apply) == 0 {
		s = "apply nothing"
	}
	if len(p.Prune) > 0 {
		s += fmt.Sprintf("; prune %d objects no longer rendered", len(p.Prune))
	}
	if p.TagWebhookMissing {
		s += "; point MutatingWebhookConfiguration " + TagWebhookName + " at revision " + p.TagRevision
	}
	return s
}

// Desired returns the rendered objects as they will be applied: with owner
// labels and the configuration hash. Built once per rendering; callers must
// not modify the objects.
func (r *Rendered) Desired() []Object {
	r.desiredMu.Lock()
	defer r.desiredMu.Unlock()
	if r.desired == nil {
		r.desired = r.buildDesired()
	}
	return r.desired
}

// buildDesired labels and annotates the rendered objects in place, and the
// sets then hold the same manifests as the result: a rendering is kept
// while its spec is unchanged, and a second copy of Istio's CRDs would cost
// megabytes for nothing.
func (r *Rendered) buildDesired() []Object {
	var out []Object
	for i, set := range r.Sets {
		for j, m := range set.Manifests {
			u := m.Unstructured
			labels := u.GetLabels()
			if labels == nil {
				labels = map[string]string{}
			}
			for k, v := range ownerLabels(set.Component, r.Version, r.Revision) {
				labels[k] = v
			}
			u.SetLabels(labels)
			ann := u.GetAnnotations()
			if ann == nil {
				ann = map[string]string{}
			}
			ann[ConfigHashAnnotation] = objectHash(r.Version, u)
			if isIstiod(u, r.Revision) {
				ann[InstallationHashAnnotation] = r.Hash
			}
			u.SetAnnotations(ann)
			// Of the objects' YAML, only Istio's webhook checks read any:
			// the webhooks'. Istio's CRDs alone are a megabyte of it.
			mf := manifest.Manifest{Unstructured: u}
			if u.GetKind() == mutatingWebhookGVK.Kind {
				var err error
				if mf, err = manifest.FromObject(u); err != nil {
					// FromObject only marshals an object that was just parsed.
					panic(err)
				}
			}
			r.Sets[i].Manifests[j] = mf
			out = append(out, Object{Component: set.Component, Manifest: mf})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Hash() < out[j].Hash() })
	return out
}

// objectHash identifies an object as rendered by this operator build.
func objectHash(version string, u *unstructured.Unstructured) string {
	data, err := json.Marshal(u.Object) // map keys are sorted: stable
	if err != nil {
		// The object was just parsed from JSON.
		panic(err)
	}
	h := sha256.New()
	fmt.Fprintf(h, "istio-operator %s %s\n", Version, version)
	h.Write(data)
	return hex.EncodeToString(h.Sum(nil))[:16]
}

// isIstiod reports whether u is the istiod Deployment of a revision.
func isIstiod(u *unstructured.Unstructured, revision string) bool {
	return u.GetKind() == "Deployment" && u.GetNamespace() == Namespace && u.GetName() == IstiodName(revision)
}

// MakePlan compares a rendering with the live objects.
func MakePlan(r *Rendered, live LiveObjects) *Plan {
	return new(Planner).Plan(r, live)
}

// Planner makes plans and remembers which live objects matched their
// rendering. The installation controller plans on every sync, and every
// condition another controller writes is a sync; comparing a whole
// rendering costs far more than remembering the match (docs/performance.md,
// BenchmarkMakePlan against BenchmarkPlannerUnchanged), while the objects
// rarely change. A live object is compared again only when its resourceVersion or
// its rendering changes.
type Planner struct {
	mu      sync.Mutex
	matched map[matchKey]bool
	// unlabelledShared are shared objects CheckMissing found applied by
	// someone else without Istio's component label, which the caches
	// filter on (Istio's base chart sets none on its CRDs), by object
	// hash, with when they were found: used as they are, and looked up
	// again after SharedRecheckInterval.
	unlabelledShared map[string]time.Time
}

// SharedRecheckInterval is how long a CRD found by CheckMissing counts as
// present without another look.
const SharedRecheckInterval = 5 * time.Minute

// CheckMissing looks up, on the API server, each object the plan would
// create: the caches hold only objects with Istio's component label, and
// an object of the same name that someone else created without it must
// not be taken over. Such an object moves from Apply to Foreign (Shared
// for a CRD). One the operator applied (the cache has not caught up yet)
// stays. Called only for a plan that is not empty: a steady state makes no
// request.
func (pl *Planner) CheckMissing(ctx context.Context, p *Plan, lookup func(context.Context, Object) (*unstructured.Unstructured, error)) error {
	kept := p.Apply[:0:0]
	for _, c := range p.Apply {
		if c.Reason != reasonMissing {
			kept = append(kept, c)
			continue
		}
		cur, err := lookup(ctx, c.Object)
		switch {
		case err != nil:
			return err
		case cur == nil || Owns(cur):
			kept = append(kept, c)
		case shared(c.Unstructured):
			p.share(c.Object, cur)
			pl.mu.Lock()
			if pl.unlabelledShared == nil {
				pl.unlabelledShared = map[string]time.Time{}
			}
			pl.unlabelledShared[c.Hash()] = time.Now()
			pl.mu.Unlock()
		default:
			p.Foreign = append(p.Foreign, describeForeign(cur))
		}
	}
	p.Apply = kept
	return nil
}

// matchKey identifies a comparison: the rendering (its hash covers every
// object's content), the object, and the live object's version.
type matchKey struct {
	rendering, object string
	uid               types.UID
	resourceVersion   string
}

// Plan compares a rendering with the live objects: the cluster is to hold
// the rendering's control plane and no other, with the default revision
// tag on it.
func (pl *Planner) Plan(r *Rendered, live LiveObjects) *Plan {
	v, _ := ParseVersion(r.Version) // Apply tags with r.Version itself
	return pl.PlanRevisions(r, live, Revision{Name: r.Revision, Version: v})
}

// PlanRevisions compares a rendering with the live objects while other
// revisions of the operator's stay installed beside it (a canary upgrade):
// their objects, by revision label, are not pruned, and the default
// revision tag points at tag.
func (pl *Planner) PlanRevisions(r *Rendered, live LiveObjects, tag Revision, keep ...string) *Plan {
	pl.mu.Lock()
	defer pl.mu.Unlock()
	last := pl.matched
	pl.matched = map[matchKey]bool{}
	p := &Plan{TagRevision: tag.Name, TagVersion: tag.Version.String()}
	wanted := map[string]bool{}
	for _, o := range r.Desired() {
		wanted[o.Hash()] = true
		cur := live.Get(o.GroupVersionKind(), o.GetNamespace(), o.GetName())
		if cur == nil {
			if found, ok := pl.unlabelledShared[o.Hash()]; ok && time.Since(found) < SharedRecheckInterval {
				p.share(o, nil)
				continue
			}
			p.Apply = append(p.Apply, Change{o, reasonMissing})
			continue
		}
		if !Owns(cur) {
			if shared(o.Unstructured) {
				p.share(o, cur)
			} else {
				p.Foreign = append(p.Foreign, describeForeign(cur))
			}
			continue
		}
		k := matchKey{rendering: r.Hash, object: o.Hash(), uid: cur.GetUID(), resourceVersion: cur.GetResourceVersion()}
		if k.resourceVersion != "" && last[k] {
			pl.matched[k] = true
			continue
		}
		if d := Drift(o.Unstructured, cur); d != "" {
			p.Apply = append(p.Apply, Change{o, d})
		} else if k.resourceVersion != "" {
			pl.matched[k] = true
		}
	}
	if tagWebhookExpected(r) {
		switch tag := live.Get(mutatingWebhookGVK, "", TagWebhookName); {
		case tag == nil:
			p.TagWebhookMissing = true
		case !Owns(tag):
			p.Foreign = append(p.Foreign, describeForeign(tag))
		case revisionOf(tag) != p.TagRevision:
			p.TagWebhookMissing = true
		}
	}
	if len(wanted) == 0 {
		// A rendering with nothing in it is a broken one: pruning against
		// it would delete the whole installation.
		return p
	}
	for _, gvk := range append(uninstall.PrunedResourcesSchemas(), NetworkPolicyGVK) {
		for _, cur := range live.Labelled(gvk) {
			if !Owns(cur) || cur.GetLabels()[manifest.OwningResourceNotPruned] == "true" || slices.Contains(keep, revisionOf(cur)) {
				continue
			}
			if !wanted[manifest.ObjectHash(cur)] {
				p.Prune = append(p.Prune, cur)
			}
		}
	}
	return p
}

// reasonMissing is the reason of a change that creates an object.
const reasonMissing = "missing"
