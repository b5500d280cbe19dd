package installation

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
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

	rendered := istio.Generation
	r, err := c.render(spec)
	var invalid *istioclient.InvalidSpecError
	if errors.As(err, &invalid) {
		return c.failed(ctx, istio, v1alpha2.StateError, v1alpha2.ReasonValidationFailed,
			fmt.Sprintf("The Istio resource is invalid: %v.", err))
	}
	if err != nil {
		// Not the user's doing (the API server refusing the render's
		// reads, say): reported, and retried with backoff.
		if _, werr := c.failed(ctx, istio, v1alpha2.StateError, v1alpha2.ReasonIstioInstallUninstallFailed,
			fmt.Sprintf("Rendering Istio %s failed and is retried: %v.", istioclient.Version, err)); werr != nil {
			logger.Error(werr, "Writing the status")
		}
		return queue.Result{}, fmt.Errorf("rendering Istio: %w", err)
	}

	plan := c.planner.Plan(r, c.live)
	if !plan.Empty() {
		if err := c.planner.CheckMissing(ctx, plan, c.applier.Lookup); err != nil {
			return queue.Result{}, err
		}
	}
	if err := plan.Refused(); err != nil {
		return c.refuse(ctx, istio, v1alpha2.ReasonForeignIstioFound, err.Error()+".")
	}
	if !plan.Empty() {
		if c.namespaceTerminating() {
			// The previous installation's uninstall is still removing it;
			// nothing can be created in it until it is gone.
			_, err := c.progress(ctx, istio, fmt.Sprintf("Waiting for namespace %s, still being deleted, to be gone before installing Istio %s.",
				istioclient.Namespace, istioclient.Version))
			return queue.Result{RequeueAfter: TerminatingNamespaceInterval}, err
		}
		action := c.action(found, installed, target, r.Hash)
		plan.SameRevision = action == actionUpdate || action == actionRepair
		logger.Info("Applying Istio", "action", action, "plan", plan.Summary(), "hash", r.Hash)
		if action != actionRepair {
			c.recorder.Eventf(istio, corev1.EventTypeNormal, actionEvents[action].started, "%s Istio %s: %s.", actionVerb[action], istioclient.Version, plan.Summary())
		}
		istio, err = c.progress(ctx, istio, fmt.Sprintf("%s Istio %s.", actionVerb[action], istioclient.Version))
		if err != nil {
			return queue.Result{}, err
		}
		start := c.clock.Now()
		istio, err = c.apply(ctx, istio, r, plan, action)
		if err != nil {
			c.recorder.Eventf(istio, corev1.EventTypeWarning, actionEvents[action].failed, "%s Istio %s failed: %v", actionVerb[action], istioclient.Version, err)
			// Installed is reported False as well: leaving it out of the
			// apply would remove it, and without it the other controllers
			// take the resource for one the operator does not serve.
			msg := fmt.Sprintf("%s Istio %s failed and is retried: %v.", actionVerb[action], istioclient.Version, err)
			if _, werr := c.report(ctx, c.latest(istio), v1alpha2.StateError, v1alpha2.ReasonIstioInstallUninstallFailed, msg, &status.Condition{
				Type: v1alpha2.ConditionInstalled, Status: metav1.ConditionFalse, Reason: v1alpha2.ReasonIstioInstallUninstallFailed, Message: msg,
			}); werr != nil {
				logger.Error(werr, "Writing the status")
			}
			return queue.Result{}, err
		}
		took := c.clock.Since(start).Round(10 * time.Millisecond)
		logger.Info("Applied Istio", "action", action, "duration", took)
		c.release()
		c.recorder.Eventf(istio, corev1.EventTypeNormal, actionEvents[action].succeeded, "%s Istio %s in %s: %s.",
			actionDone[action], istioclient.Version, took, plan.Summary())
		istio = c.latest(istio)
		if istio.Generation != rendered {
			// The spec changed during the apply: Istio runs an older
			// generation's configuration, and Installed=True at the new one
			// would let the other controllers act on it (roll the gateway
			// before its new mesh config exists). The watch has queued the
			// resource again; that sync installs and reports the new spec.
			return queue.Result{}, nil
		}
	}

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
)

var actionVerb = map[string]string{
	actionInstall: "Installing", actionUpgrade: "Upgrading", actionUpdate: "Reconfiguring", actionRepair: "Repairing",
}

var actionDone = map[string]string{
	actionInstall: "Installed", actionUpgrade: "Upgraded", actionUpdate: "Reconfigured", actionRepair: "Repaired",
}

// actionEvents are the Events of each action; a repair records no Started.
var actionEvents = map[string]struct{ started, succeeded, failed string }{
	actionInstall: {v1alpha2.EventInstallStarted, v1alpha2.EventInstallSucceeded, v1alpha2.EventInstallFailed},
	actionUpgrade: {v1alpha2.EventUpgradeStarted, v1alpha2.EventUpgradeSucceeded, v1alpha2.EventUpgradeFailed},
	actionUpdate:  {v1alpha2.EventUpdateStarted, v1alpha2.EventUpdateSucceeded, v1alpha2.EventUpdateFailed},
	actionRepair:  {"", v1alpha2.EventRepairSucceeded, v1alpha2.EventRepairFailed},
}

// action names what a non-empty plan does: a first install, an upgrade, a
// new configuration, or the repair of objects someone changed or deleted.
func (c *Controller) action(found bool, installed, target istioclient.SemVer, hash string) string {
	switch {
	case !found && !c.anyOwned():
		return actionInstall
	case found && installed.Compare(target) != 0:
		return actionUpgrade
	}
	istiod := c.live.Get(deploymentGVK, istioclient.Namespace, "istiod")
	if istiod != nil && istiod.GetAnnotations()[istioclient.InstallationHashAnnotation] != hash {
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
func (c *Controller) render(spec *v1alpha2.IstioSpec) (*istioclient.Rendered, error) {
	data, err := json.Marshal(spec)
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256(data)
	key := hex.EncodeToString(sum[:])
	c.mu.Lock()
	r, ok := c.rendered[key]
	c.mu.Unlock()
	if ok {
		return r, nil
	}
	r, err = c.renderer.Render(spec)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	c.rendered = map[string]*istioclient.Rendered{key: r}
	c.mu.Unlock()
	return r, nil
}
