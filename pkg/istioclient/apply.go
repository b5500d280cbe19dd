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
	"istio.io/istio/operator/pkg/webhook"
	appsv1 "k8s.io/api/apps/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/dynamic"
	"k8s.io/klog/v2"

	"github.com/meshkeeper/istio-operator/pkg/rollout"
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
	revision                   = "default"
)

// OwnedSelector selects every object the installer owns.
const OwnedSelector = manifest.IstioComponentLabel

// ownerLabels are the labels Istio's installer sets (see its getOwnerLabels);
// version is the Istio version installed.
func ownerLabels(comp component.Name, version string) map[string]string {
	l := map[string]string{
		manifest.OperatorManagedLabel:    "Reconcile",
		manifest.OperatorVersionLabel:    version,
		manifest.OwningResourceName:      ownerName,
		manifest.OwningResourceNamespace: Namespace,
		"istio.io/rev":                   revision,
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
	// which is not part of the charts, is not in the cluster: the apply
	// creates it, also in a repair.
	TagWebhookMissing bool
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

// tagWebhookExpected reports whether Istio's installer would create the
// default revision tag's webhook for this rendering: for the default
// revision, unless Istio is told to manage its webhooks itself.
func tagWebhookExpected(r *Rendered) bool {
	return r.Merged.GetPathString("spec.values.revision") == "" && !r.Merged.GetPathBool("spec.values.global.operatorManageWebhooks")
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
		s += "; create MutatingWebhookConfiguration " + TagWebhookName + " (missing)"
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
			for k, v := range ownerLabels(set.Component, r.Version) {
				labels[k] = v
			}
			u.SetLabels(labels)
			ann := u.GetAnnotations()
			if ann == nil {
				ann = map[string]string{}
			}
			ann[ConfigHashAnnotation] = objectHash(r.Version, u)
			if isIstiod(u) {
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

// isIstiod reports whether u is istiod's Deployment.
func isIstiod(u *unstructured.Unstructured) bool {
	return u.GetKind() == "Deployment" && u.GetNamespace() == Namespace && u.GetName() == "istiod"
}

// MakePlan compares a rendering with the live objects.
func MakePlan(r *Rendered, live LiveObjects) *Plan {
	return new(Planner).Plan(r, live)
}

// Planner makes plans and remembers which live objects matched their
// rendering. The installation controller plans on every sync, and every
// condition another controller writes is a sync; comparing a whole
// rendering costs about 4 ms and 3 MB of garbage, while the objects rarely
// change. A live object is compared again only when its resourceVersion or
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

// Plan compares a rendering with the live objects.
func (pl *Planner) Plan(r *Rendered, live LiveObjects) *Plan {
	pl.mu.Lock()
	defer pl.mu.Unlock()
	last := pl.matched
	pl.matched = map[matchKey]bool{}
	p := &Plan{}
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
		}
	}
	if len(wanted) == 0 {
		// A rendering with nothing in it is a broken one: pruning against
		// it would delete the whole installation.
		return p
	}
	for _, gvk := range append(uninstall.PrunedResourcesSchemas(), NetworkPolicyGVK) {
		for _, cur := range live.Labelled(gvk) {
			if !Owns(cur) || cur.GetLabels()[manifest.OwningResourceNotPruned] == "true" {
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

// Installer applies plans. It is safe to stop it at any point: the next
// plan, made from the cluster as it is, picks up where it stopped.
type Installer struct {
	Dynamic dynamic.Interface
	Mapper  meta.RESTMapper
	// Istio is Istio's client, for its webhook checks; optional in tests.
	Istio *Cluster
	Live  LiveObjects
	// Identity, when set, is asked for the operator's ServiceAccount, which
	// is granted NamespaceReaderRole in an istio-system the operator creates.
	Identity *Identity
	// WaitTimeout bounds the wait for one component to become ready.
	WaitTimeout time.Duration
	// Progress receives one sentence whenever the installer moves on.
	Progress func(string)
}

// componentDependencies are Istio's install order: a component is applied
// once everything it depends on is applied and ready.
var componentDependencies = map[component.Name][]component.Name{
	component.CNIComponentName:     {component.BaseComponentName},
	component.PilotComponentName:   {component.BaseComponentName},
	component.IngressComponentName: {component.PilotComponentName},
	component.EgressComponentName:  {component.PilotComponentName},
	component.ZtunnelComponentName: {component.CNIComponentName},
}

// Apply applies the plan: components in Istio's dependency order, in
// parallel where Istio allows it, each waited for until its workloads are
// ready; then the objects no longer rendered are deleted. r is the
// rendering the plan was made from.
func (i *Installer) Apply(ctx context.Context, r *Rendered, p *Plan) error {
	logger := klog.FromContext(ctx)
	if err := p.Refused(); err != nil {
		return err
	}
	if err := i.ensureNamespace(ctx); err != nil {
		return err
	}
	if i.Istio != nil && !p.SameRevision && planTouches(p, "MutatingWebhookConfiguration") {
		// Refuse to install an injector that would conflict with another
		// revision's webhooks, as Istio's installer does.
		if err := webhook.CheckWebhooks(r.Sets, r.Merged, i.Istio.client, nil); err != nil {
			return fmt.Errorf("checking for conflicting sidecar injector webhooks: %w", err)
		}
	}

	byComponent := map[component.Name][]Change{}
	workloads := map[component.Name][]Object{}
	for _, c := range p.Apply {
		byComponent[c.Component] = append(byComponent[c.Component], c)
	}
	for _, o := range r.Desired() {
		if isWorkload(o.GetKind()) && !p.shared[o.Hash()] {
			workloads[o.Component] = append(workloads[o.Component], o)
		}
	}

	progress := newProgress(i.Progress)
	done := map[component.Name]chan struct{}{}
	for _, set := range r.Sets {
		done[set.Component] = make(chan struct{})
	}
	var wg sync.WaitGroup
	errs := make(chan error, len(r.Sets))
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	for _, set := range r.Sets {
		comp := set.Component
		wg.Go(func() {
			defer close(done[comp])
			for _, dep := range componentDependencies[comp] {
				if ch, ok := done[dep]; ok {
					select {
					case <-ch:
					case <-ctx.Done():
						return
					}
				}
			}
			if ctx.Err() != nil {
				return
			}
			objs := byComponent[comp]
			if len(objs) > 0 {
				progress.set(comp, fmt.Sprintf("applying %d objects", len(objs)))
				for _, c := range objs {
					if err := i.applyChange(ctx, c); err != nil {
						errs <- fmt.Errorf("%s: %w", userFacing(comp), err)
						cancel()
						return
					}
				}
				logger.V(2).Info("Applied component", "component", comp, "objects", len(objs))
			}
			if err := i.waitReady(ctx, comp, workloads[comp], progress); err != nil {
				errs <- fmt.Errorf("%s: %w", userFacing(comp), err)
				cancel()
				return
			}
			progress.done(comp)
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}

	if i.Istio != nil && (!p.SameRevision || p.TagWebhookMissing) {
		// The default revision tag webhook is created outside the charts
		// (as Istio's installer does): on install and upgrade, and when it
		// is missing. It carries the pilot component's labels, so that the
		// operator's cache sees it: a repair recreates it, an uninstall
		// deletes it.
		hooks, err := webhook.WebhooksToDeploy(r.Merged, i.Istio.client, ownerLabels(component.PilotComponentName, r.Version), false)
		if err != nil {
			return fmt.Errorf("generating the revision tag webhook: %w", err)
		}
		for _, h := range hooks {
			stamp(h.Unstructured)
			if err := i.applyChange(ctx, Change{Object{Manifest: h}, reasonMissing}); err != nil {
				return err
			}
		}
	}

	if len(p.Prune) > 0 {
		i.progress("pruning %d objects no longer rendered", len(p.Prune))
		for _, u := range p.Prune {
			if err := i.delete(ctx, u); err != nil {
				return err
			}
		}
	}
	return nil
}

func (i *Installer) progress(format string, args ...any) {
	if i.Progress != nil {
		i.Progress(fmt.Sprintf(format, args...))
	}
}

func planTouches(p *Plan, kind string) bool {
	for _, c := range p.Apply {
		if c.GetKind() == kind {
			return true
		}
	}
	return false
}

func (i *Installer) resource(gvk schema.GroupVersionKind, namespace string) (dynamic.ResourceInterface, error) {
	m, err := i.Mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
	if err != nil {
		return nil, fmt.Errorf("mapping %s: %w", gvk, err)
	}
	if m.Scope.Name() == meta.RESTScopeNameNamespace {
		return i.Dynamic.Resource(m.Resource).Namespace(namespace), nil
	}
	return i.Dynamic.Resource(m.Resource), nil
}

// applyChange applies one change.
func (i *Installer) applyChange(ctx context.Context, c Change) error {
	return i.apply(ctx, c.Object)
}

// Lookup reads an object from the API server: nil when it does not exist.
func (i *Installer) Lookup(ctx context.Context, o Object) (*unstructured.Unstructured, error) {
	res, err := i.resource(o.GroupVersionKind(), o.GetNamespace())
	if err != nil {
		return nil, err
	}
	cur, err := res.Get(ctx, o.GetName(), metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", o, err)
	}
	return cur, nil
}

// apply server-side applies one object with the installer's field manager,
// taking over fields others changed (that is the repair).
func (i *Installer) apply(ctx context.Context, o Object) error {
	res, err := i.resource(o.GroupVersionKind(), o.GetNamespace())
	if err != nil {
		return err
	}
	data, err := json.Marshal(o.Unstructured.Object)
	if err != nil {
		return err
	}
	force := true
	if _, err := res.Patch(ctx, o.GetName(), types.ApplyPatchType, data,
		metav1.PatchOptions{FieldManager: fieldManager, Force: &force}); err != nil {
		return fmt.Errorf("applying %s: %w", o, err)
	}
	return nil
}

// delete removes one object with background propagation: the object goes
// at once and the garbage collector removes its dependents (ReplicaSets,
// Pods) afterwards. Foreground propagation would make an uninstall wait on
// the garbage collector, which can hold a CRD's foregroundDeletion finalizer
// for minutes while it resyncs after Istio's CRDs disappear.
func (i *Installer) delete(ctx context.Context, u *unstructured.Unstructured) error {
	res, err := i.resource(u.GroupVersionKind(), u.GetNamespace())
	if err != nil {
		return err
	}
	policy := metav1.DeletePropagationBackground
	err = res.Delete(ctx, u.GetName(), metav1.DeleteOptions{PropagationPolicy: &policy})
	if err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("deleting %s %s: %w", u.GetKind(), objectName(u), err)
	}
	return nil
}

func isWorkload(kind string) bool {
	return kind == "Deployment" || kind == "DaemonSet" || kind == "CustomResourceDefinition"
}

// waitReady polls the caches (cheap) until every workload of the component
// is ready: Deployments and DaemonSets rolled out, CRDs established.
func (i *Installer) waitReady(ctx context.Context, comp component.Name, objs []Object, progress *progressLog) error {
	timeout := i.WaitTimeout
	if timeout <= 0 {
		timeout = 150 * time.Second
	}
	var pending, waitedFor []string
	start := time.Now()
	err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, timeout, true, func(context.Context) (bool, error) {
		pending = pending[:0]
		for _, o := range objs {
			cur := i.Live.Get(o.GroupVersionKind(), o.GetNamespace(), o.GetName())
			if cur == nil || !Ready(cur) {
				pending = append(pending, o.String())
			}
		}
		if len(pending) > 0 {
			progress.set(comp, "waiting for "+strings.Join(pending, ", "))
			if waitedFor == nil {
				waitedFor = slices.Clone(pending)
			}
		}
		return len(pending) == 0, nil
	})
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return fmt.Errorf("not ready after %s: %s", timeout, strings.Join(pending, ", "))
	}
	if waited := time.Since(start); waited >= slowReady {
		klog.FromContext(ctx).Info("Waited for Istio workloads to become ready", "component", comp,
			"waited", waited.Round(10*time.Millisecond), "workloads", waitedFor)
	}
	return nil
}

// slowReady is a wait for readiness long enough to log: it explains a slow
// install or update.
const slowReady = time.Second

// Ready reports whether a live workload is ready: a Deployment whose
// current generation is rolled out (no pod of an older template left) and
// serving (a replica available), a DaemonSet updated and ready on every
// node, an Established CRD.
//
// A Deployment scaling up is ready: the HorizontalPodAutoscalers of istiod
// and the gateway add replicas whenever they like, and a replica the
// cluster is slow to start, or has no room for, must not hold up an install
// or a configuration change (and with it every sidecar restart).
func Ready(u *unstructured.Unstructured) bool {
	gen := u.GetGeneration()
	observed, _, _ := unstructured.NestedInt64(u.Object, "status", "observedGeneration")
	switch u.GetKind() {
	case "Deployment":
		// The ingress gateway controller judges its Deployment by the same
		// rule, from its typed cache.
		var d appsv1.Deployment
		if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, &d); err != nil {
			return false
		}
		return rollout.OfDeployment(&d).Current
	case "DaemonSet":
		desired, _, _ := unstructured.NestedInt64(u.Object, "status", "desiredNumberScheduled")
		updated, _, _ := unstructured.NestedInt64(u.Object, "status", "updatedNumberScheduled")
		ready, _, _ := unstructured.NestedInt64(u.Object, "status", "numberReady")
		return observed >= gen && updated == desired && ready == desired
	case "CustomResourceDefinition":
		conds, _, _ := unstructured.NestedSlice(u.Object, "status", "conditions")
		for _, c := range conds {
			m, _ := c.(map[string]any)
			if m["type"] == "Established" && m["status"] == "True" {
				return true
			}
		}
		return false
	}
	return true
}

func userFacing(c component.Name) string {
	return component.UserFacingComponentName(c)
}

// progressLog turns per-component progress into one sentence.
type progressLog struct {
	mu    sync.Mutex
	state map[component.Name]string
	send  func(string)
	last  string
}

func newProgress(send func(string)) *progressLog {
	return &progressLog{state: map[component.Name]string{}, send: send}
}

func (p *progressLog) set(c component.Name, s string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.state[c] = s
	p.emit()
}

func (p *progressLog) done(c component.Name) {
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.state, c)
	p.emit()
}

func (p *progressLog) emit() {
	if p.send == nil {
		return
	}
	var parts []string
	for c, s := range p.state {
		parts = append(parts, userFacing(c)+": "+s)
	}
	if len(parts) == 0 {
		return
	}
	sort.Strings(parts)
	msg := strings.Join(parts, "; ")
	if msg != p.last {
		p.last = msg
		p.send(msg)
	}
}
