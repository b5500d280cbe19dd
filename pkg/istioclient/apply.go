package istioclient

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"time"

	"istio.io/istio/operator/pkg/component"
	"istio.io/istio/operator/pkg/webhook"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic"
	"k8s.io/klog/v2"
)

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
		// is missing or on another revision. It carries the pilot
		// component's labels, so that the operator's cache sees it: a
		// repair recreates it, an uninstall deletes it.
		tagVersion := r.Version
		if p.TagRevision != r.Revision {
			tagVersion = p.TagVersion
		}
		if err := i.MoveTag(ctx, p.TagRevision, tagVersion, r.AutoInject()); err != nil {
			return err
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
