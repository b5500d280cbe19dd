package installation

import (
	"context"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/klog/v2"

	v1alpha2 "github.com/meshkeeper/istio-operator/pkg/apis/operator/v1alpha2"
	"github.com/meshkeeper/istio-operator/pkg/controllers/queue"
	"github.com/meshkeeper/istio-operator/pkg/controllers/status"
	"github.com/meshkeeper/istio-operator/pkg/istioclient"
)

// A canary upgrade keeps no state of its own: every sync reads where it
// stands from the cluster (which revisions of the operator's run, where the
// default revision tag points) and from the resource (spec.canaryRollback,
// and the proxy sidecar controller's ProxySidecarsOnRevision condition), and
// takes the next step. An operator stopped at any point resumes at the step
// it was taking; every step is one that may be repeated.
//
//	InstallingRevision  the new revision is applied beside the old one
//	                    (whose objects are kept), and waited for
//	MovingWorkloads     the tag points at the new revision; the proxy
//	                    sidecar controller restarts the workloads onto it
//	RemovingRevision    no pod uses the old revision: its objects are pruned
//	RollingBack         (spec.canaryRollback) the tag points at the old
//	                    revision; workloads are restarted back
//	RemovingNewRevision no pod uses the new revision: what it took over is
//	                    given back and the rest is pruned

// CanaryInterval re-checks a canary upgrade waiting for the workloads to
// move; the proxy sidecar controller's condition writes wake it first.
const CanaryInterval = 30 * time.Second

// canaryUpgrade reports whether the installed control plane is to be
// upgraded to the operator's version as a canary: asked for, and a newer
// minor version under a revision name of its own. A patch upgrade keeps
// the revision and is made in place.
func canaryUpgrade(spec *v1alpha2.IstioSpec, installed istioclient.Revision, target istioclient.SemVer) bool {
	return spec.UpgradeStrategy == v1alpha2.UpgradeStrategyCanary && installed.Err == nil &&
		installed.Version.Major == target.Major && installed.Version.Minor < target.Minor &&
		installed.Name != istioclient.RevisionName(target)
}

// canary takes the next step of the canary upgrade from one control plane
// to the other; to is this operator's version, not yet installed when
// the upgrade starts.
func (c *Controller) canary(ctx context.Context, istio *v1alpha2.Istio, spec *v1alpha2.IstioSpec, choice profileChoice, from, to istioclient.Revision) (queue.Result, error) {
	target := istioclient.MustParseVersion(istioclient.Version)
	if from.Err != nil || to.Err != nil || to.Version.Compare(target) != 0 || to.Name != istioclient.RevisionName(target) {
		return c.refuse(ctx, istio, v1alpha2.ReasonIstioVersionUpdateNotAllowed, fmt.Sprintf(
			"Two control planes of this operator run, revision %s (Istio %s) and revision %s (Istio %s), and this operator installs Istio %s as revision %s: "+
				"it continues only its own version's canary upgrade. The installation is left untouched.",
			from.Name, from.Version, to.Name, to.Version, istioclient.Version, istioclient.RevisionName(target)))
	}
	if istio.Spec.CanaryRollback {
		return c.rollBack(ctx, istio, spec, choice, from, to)
	}
	logger := klog.FromContext(ctx)
	r, res, err := c.renderAs(ctx, istio, spec, to)
	if r == nil {
		return res, err
	}
	tagged := istioclient.TagRevision(c.live) == to.Name
	tagOn := from
	if tagged {
		tagOn = to
	}
	plan := c.planner.PlanRevisions(r, c.live, tagOn, from.Name)
	if ok, res, err := c.checkPlan(ctx, istio, plan); !ok {
		return res, err
	}
	if !plan.Empty() {
		action := actionUpgrade
		if c.live.Get(deploymentGVK, istioclient.Namespace, istioclient.IstiodName(to.Name)) != nil {
			action = c.action(true, to.Version, target, r)
		}
		plan.SameRevision = action == actionUpdate || action == actionRepair
		var current bool
		if istio, current, err = c.applyPlan(ctx, istio, r, plan, action); err != nil || !current {
			return queue.Result{}, err
		}
	}
	if !tagged {
		// The apply waited for the new control plane to be ready.
		if err := c.applier.MoveTag(ctx, to.Name, to.Version.String(), r.AutoInject()); err != nil {
			return c.canaryFailed(ctx, istio, fmt.Errorf("moving the default revision tag to revision %s: %w", to.Name, err))
		}
		logger.Info("Moved the default revision tag", "revision", to.Name)
	}
	if !c.workloadsMoved(istio) {
		return c.waitForWorkloads(ctx, istio, choice)
	}

	// No pod uses the old revision: it goes, and only its objects.
	istio, done, res, err := c.removeRevision(ctx, istio, r, c.planner.PlanRevisions(r, c.live, to), v1alpha2.UpgradePhaseRemovingRevision)
	if !done {
		return res, err
	}
	c.setDone(canaryFinished(revisionVersion(from), revisionVersion(to), to.Name))
	return c.installed(ctx, istio, choice)
}

// waitForWorkloads reports Istio installed while the proxy sidecar
// controller moves the workloads, and looks again after CanaryInterval.
func (c *Controller) waitForWorkloads(ctx context.Context, istio *v1alpha2.Istio, choice profileChoice) (queue.Result, error) {
	res, err := c.installed(ctx, istio, choice)
	res.RequeueAfter = min(res.RequeueAfter, CanaryInterval)
	return res, err
}

// removeRevision applies the plan that removes the revision no pod uses
// any more, reporting phase meanwhile. done is false with the result to
// return when the plan is refused or its apply failed or was overtaken.
func (c *Controller) removeRevision(ctx context.Context, istio *v1alpha2.Istio, r *istioclient.Rendered, plan *istioclient.Plan, phase v1alpha2.UpgradePhase) (_ *v1alpha2.Istio, done bool, _ queue.Result, _ error) {
	if ok, res, err := c.checkPlan(ctx, istio, plan); !ok {
		return istio, false, res, err
	}
	if !plan.Empty() {
		c.setRemoving(phase)
		plan.SameRevision = true
		istio, current, err := c.applyPlan(ctx, istio, r, plan, actionRemoveRevision)
		c.setRemoving("")
		if err != nil || !current {
			return istio, false, queue.Result{}, err
		}
	}
	return c.latest(istio), true, queue.Result{}, nil
}

// rollBack moves back to the old control plane while it exists: the tag
// first, then the workloads (the proxy sidecar controller), then the new
// revision goes.
func (c *Controller) rollBack(ctx context.Context, istio *v1alpha2.Istio, spec *v1alpha2.IstioSpec, choice profileChoice, from, to istioclient.Revision) (queue.Result, error) {
	r, res, err := c.renderAs(ctx, istio, spec, from)
	if r == nil {
		return res, err
	}
	if istioclient.TagRevision(c.live) != from.Name {
		if err := c.applier.MoveTag(ctx, from.Name, from.Version.String(), r.AutoInject()); err != nil {
			return c.canaryFailed(ctx, istio, fmt.Errorf("moving the default revision tag back to revision %s: %w", from.Name, err))
		}
		klog.FromContext(ctx).Info("Moved the default revision tag back", "revision", from.Name)
	}
	if !c.workloadsMoved(istio) {
		return c.waitForWorkloads(ctx, istio, choice)
	}
	plan := c.planner.PlanRevisions(r, c.live, from)
	plan.TakeBack(c.live, to.Name)
	istio, done, res, err := c.removeRevision(ctx, istio, r, plan, v1alpha2.UpgradePhaseRemovingNewRevision)
	if !done {
		return res, err
	}
	c.setDone(canaryFinished(revisionVersion(from), revisionVersion(to), from.Name))
	return c.held(ctx, istio, from)
}

// heldBack keeps the old control plane of a rolled-back upgrade, after
// finishing the removal of the new revision when an operator stopped in
// the middle of it left some of its objects.
func (c *Controller) heldBack(ctx context.Context, istio *v1alpha2.Istio, spec *v1alpha2.IstioSpec, kept istioclient.Revision) (queue.Result, error) {
	if left := c.otherRevisions(kept.Name); len(left) > 0 {
		r, res, err := c.renderAs(ctx, istio, spec, kept)
		if r == nil {
			return res, err
		}
		plan := c.planner.PlanRevisions(r, c.live, kept)
		plan.TakeBack(c.live, left...)
		var done bool
		if istio, done, res, err = c.removeRevision(ctx, istio, r, plan, v1alpha2.UpgradePhaseRemovingNewRevision); !done {
			return res, err
		}
	}
	return c.held(ctx, istio, kept)
}

// held reports the old control plane kept while spec.canaryRollback is set.
func (c *Controller) held(ctx context.Context, istio *v1alpha2.Istio, kept istioclient.Revision) (queue.Result, error) {
	return c.refuse(ctx, istio, v1alpha2.ReasonCanaryRolledBack, fmt.Sprintf(
		"Istio %s (revision %s) is kept: spec.canaryRollback is set. Unset it to upgrade to Istio %s.",
		kept.Version, kept.Name, istioclient.Version))
}

// canaryFailed reports a step that failed; it is retried with backoff.
func (c *Controller) canaryFailed(ctx context.Context, istio *v1alpha2.Istio, err error) (queue.Result, error) {
	msg := fmt.Sprintf("The canary upgrade to Istio %s failed and is retried: %v.", istioclient.Version, err)
	c.recorder.Event(istio, corev1.EventTypeWarning, v1alpha2.EventUpgradeFailed, msg)
	if _, werr := c.report(ctx, c.latest(istio), v1alpha2.StateError, v1alpha2.ReasonIstioInstallUninstallFailed, msg, &status.Condition{
		Type: v1alpha2.ConditionInstalled, Status: metav1.ConditionFalse, Reason: v1alpha2.ReasonIstioInstallUninstallFailed, Message: msg,
	}); werr != nil {
		klog.FromContext(ctx).Error(werr, "Writing the status")
	}
	return queue.Result{}, err
}

// workloadsMoved reports whether the proxy sidecar controller found no pod
// on the revision being left, for the resource's current generation: the
// direction (forward, or back with spec.canaryRollback) is the spec's.
func (c *Controller) workloadsMoved(istio *v1alpha2.Istio) bool {
	cond := meta.FindStatusCondition(istio.Status.Conditions, v1alpha2.ConditionProxySidecarsOnRevision)
	return cond != nil && cond.Status == metav1.ConditionTrue && cond.ObservedGeneration == istio.Generation
}

func (c *Controller) setRemoving(phase v1alpha2.UpgradePhase) {
	c.mu.Lock()
	c.removing = phase
	c.mu.Unlock()
}

func (c *Controller) setDone(cond status.Condition) {
	c.mu.Lock()
	c.done = &cond
	c.mu.Unlock()
}

// upgradeStatus is the canary upgrade as the cluster shows it, for
// status.upgrade, and the revision the default tag points at, for
// status.revision.
func (c *Controller) upgradeStatus(istio *v1alpha2.Istio) (*v1alpha2.UpgradeStatus, string) {
	revs := istioclient.Revisions(c.live)
	tag := istioclient.TagRevision(c.live)
	switch {
	case tag == "" && len(revs) > 0:
		tag = revs[len(revs)-1].Name
	case tag == "":
		// Uninstalled (or not yet installed): the last revision known
		// stays, for the proxy sidecar controller's removal of its sidecars.
		tag = istio.Status.Revision
	}
	c.mu.Lock()
	removing := c.removing
	c.mu.Unlock()
	if last := istio.Status.Upgrade; len(revs) < 2 && removing != "" && last != nil {
		// Finishing a removal an operator stopped in the middle of.
		up := *last
		up.Phase = removing
		return &up, tag
	}
	if last := istio.Status.Upgrade; len(revs) < 2 && istio.DeletionTimestamp != nil && last != nil {
		// Uninstalling in the middle of an upgrade: both revisions stay
		// named until the resource is gone, for the proxy sidecar
		// controller's removal of the sidecars of each.
		return last, tag
	}
	if len(revs) != 2 {
		if len(revs) == 1 && canaryUpgrade(&istio.Spec, revs[0], istioclient.MustParseVersion(istioclient.Version)) &&
			!istio.Spec.CanaryRollback && istio.DeletionTimestamp == nil {
			// About to install the new revision.
			target := istioclient.MustParseVersion(istioclient.Version)
			return &v1alpha2.UpgradeStatus{
				Phase: v1alpha2.UpgradePhaseInstallingRevision,
				From:  revisionVersion(revs[0]),
				To:    v1alpha2.RevisionVersion{Revision: istioclient.RevisionName(target), Version: target.String()},
			}, tag
		}
		return nil, tag
	}
	up := &v1alpha2.UpgradeStatus{From: revisionVersion(revs[0]), To: revisionVersion(revs[1])}
	switch {
	case removing != "":
		up.Phase = removing
	case istio.Spec.CanaryRollback:
		up.Phase = v1alpha2.UpgradePhaseRollingBack
	case tag == up.To.Revision:
		up.Phase = v1alpha2.UpgradePhaseMovingWorkloads
	default:
		up.Phase = v1alpha2.UpgradePhaseInstallingRevision
	}
	return up, tag
}

func revisionVersion(r istioclient.Revision) v1alpha2.RevisionVersion {
	return v1alpha2.RevisionVersion{Revision: r.Name, Version: r.Version.String()}
}

// canaryCondition is the CanaryUpgrade condition for the upgrade, nil when
// there is none to report. A finished upgrade's condition stays as it was
// written.
func (c *Controller) canaryCondition(istio *v1alpha2.Istio, up *v1alpha2.UpgradeStatus) *status.Condition {
	c.mu.Lock()
	done := c.done
	c.mu.Unlock()
	if done != nil {
		return done // before the caches show the revision gone
	}
	revs := istioclient.Revisions(c.live)
	if istio.DeletionTimestamp != nil && len(revs) < 2 {
		// Uninstalling: the upgrade neither finished nor goes on.
		return previousCanaryCondition(istio)
	}
	if up == nil {
		// The last write saw an upgrade that has ended since, maybe in
		// another process: it ended on the revision that runs now.
		if last := istio.Status.Upgrade; last != nil {
			if len(revs) == 1 && (revs[0].Name == last.To.Revision || revs[0].Name == last.From.Revision) {
				cond := canaryFinished(last.From, last.To, revs[0].Name)
				return &cond
			}
		}
		return previousCanaryCondition(istio)
	}
	from := fmt.Sprintf("revision %s (Istio %s)", up.From.Revision, up.From.Version)
	to := fmt.Sprintf("revision %s (Istio %s)", up.To.Revision, up.To.Version)
	cond := &status.Condition{Type: v1alpha2.ConditionCanaryUpgrade, Status: metav1.ConditionFalse}
	switch up.Phase {
	case v1alpha2.UpgradePhaseInstallingRevision:
		cond.Reason = v1alpha2.ReasonCanaryInstallingRevision
		cond.Message = fmt.Sprintf("Installing %s beside %s; the default revision tag stays on %s until it is ready.", to, from, up.From.Revision)
	case v1alpha2.UpgradePhaseMovingWorkloads:
		cond.Reason = v1alpha2.ReasonCanaryMovingWorkloads
		cond.Message = fmt.Sprintf("The default revision tag points at %s; moving the workloads from %s.", to, from) + moveProgress(istio)
	case v1alpha2.UpgradePhaseRemovingRevision:
		cond.Reason = v1alpha2.ReasonCanaryRemovingRevision
		cond.Message = fmt.Sprintf("No pod uses %s any more; removing it.", from)
	case v1alpha2.UpgradePhaseRollingBack:
		cond.Reason = v1alpha2.ReasonCanaryRollingBack
		cond.Message = fmt.Sprintf("Rolling back (spec.canaryRollback): the default revision tag points at %s again; moving the workloads back from %s.", from, to) + moveProgress(istio)
	case v1alpha2.UpgradePhaseRemovingNewRevision:
		cond.Reason = v1alpha2.ReasonCanaryRemovingNewRevision
		cond.Message = fmt.Sprintf("No pod uses %s any more; removing it.", to)
	}
	return cond
}

// previousCanaryCondition is the CanaryUpgrade condition as last written,
// to write again unchanged; nil when there is none.
func previousCanaryCondition(istio *v1alpha2.Istio) *status.Condition {
	if prev := meta.FindStatusCondition(istio.Status.Conditions, v1alpha2.ConditionCanaryUpgrade); prev != nil {
		return &status.Condition{Type: prev.Type, Status: prev.Status, Reason: prev.Reason, Message: prev.Message}
	}
	return nil
}

// canaryFinished is the condition of an upgrade from one revision to the
// other that ended with only the revision left: succeeded when it is the
// new one, rolled back when it is the old one.
func canaryFinished(from, to v1alpha2.RevisionVersion, left string) status.Condition {
	if left == to.Revision {
		return status.Condition{
			Type: v1alpha2.ConditionCanaryUpgrade, Status: metav1.ConditionTrue, Reason: v1alpha2.ReasonCanaryUpgradeSucceeded,
			Message: fmt.Sprintf("Upgraded from Istio %s (revision %s) to Istio %s (revision %s); revision %s is removed.",
				from.Version, from.Revision, to.Version, to.Revision, from.Revision),
		}
	}
	return status.Condition{
		Type: v1alpha2.ConditionCanaryUpgrade, Status: metav1.ConditionTrue, Reason: v1alpha2.ReasonCanaryRolledBack,
		Message: fmt.Sprintf("Rolled back to Istio %s (revision %s); revision %s (Istio %s) is removed. Unset spec.canaryRollback to upgrade again.",
			from.Version, from.Revision, to.Revision, to.Version),
	}
}

// moveProgress is the proxy sidecar controller's count of the move, for
// the resource's current generation.
func moveProgress(istio *v1alpha2.Istio) string {
	cond := meta.FindStatusCondition(istio.Status.Conditions, v1alpha2.ConditionProxySidecarsOnRevision)
	if cond == nil || cond.ObservedGeneration != istio.Generation {
		return ""
	}
	return " " + cond.Message
}
