package installation

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/tools/cache"
	"k8s.io/klog/v2"

	v1alpha2 "github.com/meshkeeper/istio-operator/pkg/apis/operator/v1alpha2"
	"github.com/meshkeeper/istio-operator/pkg/controllers/queue"
	"github.com/meshkeeper/istio-operator/pkg/controllers/status"
	"github.com/meshkeeper/istio-operator/pkg/istioclient"
)

var everything = labels.Everything()

func (c *Controller) sync(ctx context.Context, key cache.ObjectName) (queue.Result, error) {
	istio, err := c.istios.Istios(key.Namespace).Get(key.Name)
	if apierrors.IsNotFound(err) {
		return queue.Result{}, nil
	}
	if err != nil {
		return queue.Result{}, err
	}
	istio = c.status.Newest(istio)

	if istio.Namespace != c.namespace {
		return c.notServed(ctx, istio, v1alpha2.StateError, v1alpha2.ReasonWrongNamespace, fmt.Sprintf(
			"The operator serves only the Istio resource in namespace %s; this one in %s is ignored. Create it in %s.",
			c.namespace, istio.Namespace, c.namespace))
	}
	if oldest := c.oldest(); oldest != nil && oldest.UID != istio.UID {
		return c.notServed(ctx, istio, v1alpha2.StateWarning, v1alpha2.ReasonOlderCRExists, fmt.Sprintf(
			"Only the oldest Istio resource is served, %s/%s; this one is ignored. Delete it, or change %s/%s instead.",
			oldest.Namespace, oldest.Name, oldest.Namespace, oldest.Name))
	}
	if istio.DeletionTimestamp != nil {
		return c.delete(ctx, istio)
	}
	if !slices.Contains(istio.Finalizers, Finalizer) {
		istio.Finalizers = append(istio.Finalizers, Finalizer)
		updated, err := c.client.OperatorV1alpha2().Istios(istio.Namespace).Update(ctx, istio, metav1.UpdateOptions{FieldManager: status.FieldManagerPrefix + Name})
		if err != nil {
			return queue.Result{}, fmt.Errorf("adding the finalizer: %w", err)
		}
		c.status.Remember(updated)
		istio = updated
	}
	return c.reconcile(ctx, istio)
}

// namespaceTerminating reports whether Istio's namespace is being deleted.
func (c *Controller) namespaceTerminating() bool {
	ns := c.live.Get(namespaceGVK, "", istioclient.Namespace)
	return ns != nil && ns.GetDeletionTimestamp() != nil
}

// oldest is the served resource: the oldest in the operator's namespace.
func (c *Controller) oldest() *v1alpha2.Istio {
	all, err := c.istios.Istios(c.namespace).List(everything)
	if err != nil {
		return nil
	}
	return v1alpha2.Served(all)
}

// notServed reports why a resource is ignored and lets go of it when it is
// deleted: the operator never acted on it.
func (c *Controller) notServed(ctx context.Context, istio *v1alpha2.Istio, state v1alpha2.State, reason, msg string) (queue.Result, error) {
	if istio.DeletionTimestamp != nil {
		return queue.Result{}, c.removeFinalizer(ctx, istio)
	}
	_, err := c.report(ctx, istio, state, reason, msg, nil)
	return queue.Result{}, err
}

func (c *Controller) reconcile(ctx context.Context, istio *v1alpha2.Istio) (queue.Result, error) {
	logger := klog.FromContext(ctx)

	if errs := v1alpha2.ValidateSpec(&istio.Spec); len(errs) > 0 {
		return c.failed(ctx, istio, v1alpha2.StateError, v1alpha2.ReasonValidationFailed,
			"The Istio resource is invalid: "+errs.ToAggregate().Error()+".")
	}
	if exp := v1alpha2.ExperimentalFields(&istio.Spec); len(exp) > 0 && !istioclient.ExperimentalBuild {
		return c.failed(ctx, istio, v1alpha2.StateError, v1alpha2.ReasonExperimentalFeatureNotAvailable,
			"Experimental features are available only in an experimental build of the operator; unset "+strings.Join(exp, ", ")+".")
	}

	target := istioclient.MustParseVersion(istioclient.Version)
	installed, found, err := istioclient.InstalledVersion(c.live)
	if err != nil {
		return c.refuse(ctx, istio, v1alpha2.ReasonIstioVersionUpdateNotAllowed,
			fmt.Sprintf("The installed Istio's version cannot be determined (%v); the operator leaves it untouched.", err))
	}
	if found {
		if err := istioclient.CheckUpgrade(installed, target); err != nil {
			return c.refuse(ctx, istio, v1alpha2.ReasonIstioVersionUpdateNotAllowed, err.Error()+". The installation is left untouched.")
		}
	}

	choice, err := c.profile(istio)
	if err != nil {
		return queue.Result{}, err
	}
	if choice.profile != choice.installed {
		logger.Info("Choosing Istio's profile", "profile", choice.profile, "installed", choice.installed, "why", choice.why)
	} else if choice.recheck > 0 {
		logger.V(2).Info("Profile promotion pending", "why", choice.why)
	}
	spec := istio.Spec.Resolved(c.images, choice.profile)

	revs := istioclient.Revisions(c.live)
	switch {
	case len(revs) > 2:
		names := make([]string, len(revs))
		for i, r := range revs {
			names[i] = fmt.Sprintf("%s (Istio %s)", r.Name, r.Version)
		}
		return c.refuse(ctx, istio, v1alpha2.ReasonIstioVersionUpdateNotAllowed, fmt.Sprintf(
			"This operator's control planes run as %d revisions, %s; a canary upgrade runs two at most. The installation is left untouched.",
			len(revs), strings.Join(names, ", ")))
	case len(revs) == 2:
		return c.canary(ctx, istio, spec, choice, revs[0], revs[1])
	case len(revs) == 1 && canaryUpgrade(&istio.Spec, revs[0], target):
		if istio.Spec.CanaryRollback {
			return c.heldBack(ctx, istio, spec, revs[0])
		}
		return c.canary(ctx, istio, spec, choice, revs[0], istioclient.Revision{Name: istioclient.RevisionName(target), Version: target})
	}
	// One control plane, upgraded in place: it keeps its revision.
	as := istioclient.Revision{Name: istioclient.DefaultRevision, Version: target}
	if len(revs) == 1 {
		as.Name = revs[0].Name
	}
	r, res, err := c.renderAs(ctx, istio, spec, as)
	if r == nil {
		return res, err
	}
	plan := c.planner.PlanRevisions(r, c.live, as)
	if ok, res, err := c.checkPlan(ctx, istio, plan); !ok {
		return res, err
	}
	if !plan.Empty() {
		action := c.action(found, installed, target, r)
		plan.SameRevision = action == actionUpdate || action == actionRepair
		if len(c.otherRevisions(as.Name)) > 0 {
			// An operator stopped while it removed the revision a canary
			// upgrade left: this plan prunes the rest.
			c.setRemoving(v1alpha2.UpgradePhaseRemovingRevision)
		}
		var current bool
		istio, current, err = c.applyPlan(ctx, istio, r, plan, action)
		c.setRemoving("")
		if err != nil || !current {
			return queue.Result{}, err
		}
	}
	return c.installed(ctx, istio, choice)
}

// otherRevisions are the revisions of the operator's objects other than
// rev: what a removal stopped half-way left of them.
func (c *Controller) otherRevisions(rev string) []string {
	seen := map[string]bool{}
	for gvk := range ownedKinds {
		for _, u := range c.live.Labelled(gvk) {
			if r := u.GetLabels()[istioclient.RevisionLabel]; istioclient.Owns(u) && r != "" && r != rev {
				seen[r] = true
			}
		}
	}
	return slices.Sorted(maps.Keys(seen))
}

// installed reports Istio installed with the resource's current spec.
func (c *Controller) installed(ctx context.Context, istio *v1alpha2.Istio, choice profileChoice) (queue.Result, error) {
	if prev := istio.Status.Profile; prev != choice.profile && prev != "" {
		c.recorder.Eventf(istio, corev1.EventTypeNormal, v1alpha2.EventProfileChanged,
			"Istio's profile changed from %s to %s: %s.", prev, choice.profile, choice.why)
	}
	if _, err := c.writeSummary(ctx, istio, v1alpha2.SpecWarnings(&istio.Spec), choice.profile); err != nil {
		return queue.Result{}, err
	}
	after := ResyncInterval
	if choice.recheck > 0 && choice.recheck < after {
		after = choice.recheck
	}
	return queue.Result{RequeueAfter: after}, nil
}

// renderAs renders the spec as a revision; a nil rendering comes with the
// result to return, the failure reported.
func (c *Controller) renderAs(ctx context.Context, istio *v1alpha2.Istio, spec *v1alpha2.IstioSpec, as istioclient.Revision) (*istioclient.Rendered, queue.Result, error) {
	r, err := c.render(spec, as)
	var invalid *istioclient.InvalidSpecError
	if errors.As(err, &invalid) {
		res, err := c.failed(ctx, istio, v1alpha2.StateError, v1alpha2.ReasonValidationFailed,
			fmt.Sprintf("The Istio resource is invalid: %v.", err))
		return nil, res, err
	}
	if err != nil {
		// Not the user's doing (the API server refusing the render's
		// reads, say): reported, and retried with backoff.
		if _, werr := c.failed(ctx, istio, v1alpha2.StateError, v1alpha2.ReasonIstioInstallUninstallFailed,
			fmt.Sprintf("Rendering Istio %s failed and is retried: %v.", as.Version, err)); werr != nil {
			klog.FromContext(ctx).Error(werr, "Writing the status")
		}
		return nil, queue.Result{}, fmt.Errorf("rendering Istio: %w", err)
	}
	return r, queue.Result{}, nil
}

// checkPlan looks up the objects a plan would create and refuses one that
// would take over objects the operator did not apply, or that must wait
// for istio-system to be gone; ok is false with the result to return.
func (c *Controller) checkPlan(ctx context.Context, istio *v1alpha2.Istio, plan *istioclient.Plan) (ok bool, res queue.Result, err error) {
	if !plan.Empty() {
		if err := c.planner.CheckMissing(ctx, plan, c.applier.Lookup); err != nil {
			return false, queue.Result{}, err
		}
	}
	if err := plan.Refused(); err != nil {
		res, err := c.refuse(ctx, istio, v1alpha2.ReasonForeignIstioFound, err.Error()+".")
		return false, res, err
	}
	if !plan.Empty() && c.namespaceTerminating() {
		// The previous installation's uninstall is still removing it;
		// nothing can be created in it until it is gone.
		_, err := c.progress(ctx, istio, fmt.Sprintf("Waiting for namespace %s, still being deleted, to be gone before installing Istio %s.",
			istioclient.Namespace, istioclient.Version))
		return false, queue.Result{RequeueAfter: TerminatingNamespaceInterval}, err
	}
	return true, queue.Result{}, nil
}

// applyPlan applies a plan that is not empty, with its Events and
// progress. current is false when the spec changed during the apply: Istio
// runs an older generation's configuration, and Installed=True at the new
// one would let the other controllers act on it (roll the gateway before
// its new mesh config exists). The watch has queued the resource again;
// that sync installs and reports the new spec.
func (c *Controller) applyPlan(ctx context.Context, istio *v1alpha2.Istio, r *istioclient.Rendered, plan *istioclient.Plan, action string) (_ *v1alpha2.Istio, current bool, err error) {
	logger := klog.FromContext(ctx)
	rendered := istio.Generation
	logger.Info("Applying Istio", "action", action, "revision", r.Revision, "plan", plan.Summary(), "hash", r.Hash)
	if action != actionRepair {
		c.recorder.Eventf(istio, corev1.EventTypeNormal, actionEvents[action].started, "%s Istio %s: %s.", actionVerb[action], r.Version, plan.Summary())
	}
	istio, err = c.progress(ctx, istio, fmt.Sprintf("%s Istio %s.", actionVerb[action], r.Version))
	if err != nil {
		return istio, false, err
	}
	start := c.clock.Now()
	istio, err = c.apply(ctx, istio, r, plan, action)
	if err != nil {
		c.recorder.Eventf(istio, corev1.EventTypeWarning, actionEvents[action].failed, "%s Istio %s failed: %v", actionVerb[action], r.Version, err)
		// Installed is reported False as well: leaving it out of the
		// apply would remove it, and without it the other controllers
		// take the resource for one the operator does not serve.
		msg := fmt.Sprintf("%s Istio %s failed and is retried: %v.", actionVerb[action], r.Version, err)
		if _, werr := c.report(ctx, c.latest(istio), v1alpha2.StateError, v1alpha2.ReasonIstioInstallUninstallFailed, msg, &status.Condition{
			Type: v1alpha2.ConditionInstalled, Status: metav1.ConditionFalse, Reason: v1alpha2.ReasonIstioInstallUninstallFailed, Message: msg,
		}); werr != nil {
			logger.Error(werr, "Writing the status")
		}
		return istio, false, err
	}
	took := c.clock.Since(start).Round(10 * time.Millisecond)
	logger.Info("Applied Istio", "action", action, "duration", took)
	c.release()
	c.recorder.Eventf(istio, corev1.EventTypeNormal, actionEvents[action].succeeded, "%s Istio %s in %s: %s.",
		actionDone[action], r.Version, took, plan.Summary())
	istio = c.latest(istio)
	return istio, istio.Generation == rendered, nil
}

// apply runs the installer, writing its progress to the Installed
// condition at most once per ProgressInterval. It returns the resource as
// last written.
func (c *Controller) apply(ctx context.Context, istio *v1alpha2.Istio, r *istioclient.Rendered, plan *istioclient.Plan, action string) (*v1alpha2.Istio, error) {
	logger := klog.FromContext(ctx)
	var last time.Time
	err := c.applier.Apply(ctx, r, plan, func(msg string) {
		if c.clock.Since(last) < ProgressInterval {
			return
		}
		last = c.clock.Now()
		updated, err := c.progress(ctx, istio, fmt.Sprintf("%s Istio %s: %s.", actionVerb[action], istioclient.Version, msg))
		if err != nil {
			logger.V(2).Info("Writing progress failed", "err", err.Error())
			return
		}
		istio = updated
	})
	return istio, err
}

// latest is the resource as the controller last wrote it, or as cached
// once the watch has delivered that write or something newer.
func (c *Controller) latest(istio *v1alpha2.Istio) *v1alpha2.Istio {
	cached, err := c.istios.Istios(istio.Namespace).Get(istio.Name)
	if err != nil || cached.UID != istio.UID {
		return istio
	}
	return c.status.Newest(cached)
}

const (
	actionInstall = "Install"
	actionUpgrade = "Upgrade"
	actionUpdate  = "Update"
	actionRepair  = "Repair"
	// actionRemoveRevision removes the revision a canary upgrade, or its
	// rollback, moved away from; Istio of the rendering stays.
	actionRemoveRevision = "RemoveRevision"
)

var actionVerb = map[string]string{
	actionInstall: "Installing", actionUpgrade: "Upgrading", actionUpdate: "Reconfiguring", actionRepair: "Repairing",
	actionRemoveRevision: "Removing the other revision beside",
}

var actionDone = map[string]string{
	actionInstall: "Installed", actionUpgrade: "Upgraded", actionUpdate: "Reconfigured", actionRepair: "Repaired",
	actionRemoveRevision: "Removed the other revision beside",
}

// actionEvents are the Events of each action; a repair records no Started.
var actionEvents = map[string]struct{ started, succeeded, failed string }{
	actionInstall:        {v1alpha2.EventInstallStarted, v1alpha2.EventInstallSucceeded, v1alpha2.EventInstallFailed},
	actionUpgrade:        {v1alpha2.EventUpgradeStarted, v1alpha2.EventUpgradeSucceeded, v1alpha2.EventUpgradeFailed},
	actionUpdate:         {v1alpha2.EventUpdateStarted, v1alpha2.EventUpdateSucceeded, v1alpha2.EventUpdateFailed},
	actionRepair:         {"", v1alpha2.EventRepairSucceeded, v1alpha2.EventRepairFailed},
	actionRemoveRevision: {v1alpha2.EventRevisionRemovalStarted, v1alpha2.EventRevisionRemovalSucceeded, v1alpha2.EventRevisionRemovalFailed},
}

// action names what a non-empty plan does: a first install, an upgrade, a
// new configuration, or the repair of objects someone changed or deleted.
func (c *Controller) action(found bool, installed, target istioclient.SemVer, r *istioclient.Rendered) string {
	switch {
	case !found && !c.anyOwned():
		return actionInstall
	case found && installed.Compare(target) != 0:
		return actionUpgrade
	}
	istiod := c.live.Get(deploymentGVK, istioclient.Namespace, istioclient.IstiodName(r.Revision))
	if istiod != nil && istiod.GetAnnotations()[istioclient.InstallationHashAnnotation] != r.Hash {
		return actionUpdate
	}
	return actionRepair
}

// anyOwned reports whether any object the operator applied exists.
func (c *Controller) anyOwned() bool {
	for gvk := range ownedKinds {
		for _, u := range c.live.Labelled(gvk) {
			if istioclient.Owns(u) {
				return true
			}
		}
	}
	return false
}

// render renders a resolved spec's IstioOperator, reusing the last rendering
// while the spec is unchanged: a rendering costs far more CPU than the rest
// of a sync (BenchmarkRender in pkg/istioclient).
func (c *Controller) render(spec *v1alpha2.IstioSpec, as istioclient.Revision) (*istioclient.Rendered, error) {
	data, err := json.Marshal(spec)
	if err != nil {
		return nil, err
	}
	data = fmt.Appendf(data, "\n%s %s", as.Name, as.Version)
	sum := sha256.Sum256(data)
	key := hex.EncodeToString(sum[:])
	c.mu.Lock()
	r, ok := c.rendered[key]
	c.mu.Unlock()
	if ok {
		return r, nil
	}
	r, err = c.renderer.Render(spec, as)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	c.rendered = map[string]*istioclient.Rendered{key: r}
	c.mu.Unlock()
	return r, nil
}
