package installation

import (
	"context"
	"fmt"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"k8s.io/utils/ptr"

	v1alpha2 "github.com/meshkeeper/istio-operator/pkg/apis/operator/v1alpha2"
	"github.com/meshkeeper/istio-operator/pkg/controllers/queue"
	"github.com/meshkeeper/istio-operator/pkg/controllers/status"
	"github.com/meshkeeper/istio-operator/pkg/istioclient"
	"github.com/meshkeeper/istio-operator/pkg/message"
)

var deploymentGVK = schema.GroupVersionKind{Group: "apps", Version: "v1", Kind: "Deployment"}

// write applies everything this controller owns in the status. Server-side
// apply drops owned fields an apply leaves out, so every write carries the
// full set: Ready, Installed (for the served resource), state, description,
// observed generation, the installed version and profile. A Warning or Error that
// is new is also recorded as an Event.
//
// derived marks a Ready computed from the other controllers' conditions: it
// is written only to the version of the resource it was computed from.
func (c *Controller) write(ctx context.Context, istio *v1alpha2.Istio, state v1alpha2.State, ready status.Condition, installed *status.Condition, profile v1alpha2.Profile, derived bool) (*v1alpha2.Istio, error) {
	conds := []status.Condition{ready}
	if installed != nil {
		conds = append(conds, *installed)
	}
	up, revision := c.upgradeStatus(istio)
	canary := c.canaryCondition(istio, up)
	if canary != nil {
		conds = append(conds, *canary)
	}
	u := status.Update{
		Revision:           &revision,
		Upgrade:            &status.Upgrade{Status: up},
		Conditions:         conds,
		State:              &state,
		Description:        &ready.Message,
		ObservedGeneration: true,
		DerivedFromCurrent: derived,
		Profile:            &profile,
	}
	if v, found, err := istioclient.InstalledVersion(c.live); found && err == nil {
		u.InstalledVersion = ptr.To(v.String())
	} else {
		u.InstalledVersion = ptr.To("")
	}
	updated, wrote, err := c.status.Apply(ctx, istio, u)
	if err != nil {
		return istio, err
	}
	if wrote && (state == v1alpha2.StateWarning || state == v1alpha2.StateError) {
		c.recorder.Event(istio, corev1.EventTypeWarning, ready.Reason, ready.Message)
	}
	if canary != nil {
		c.mu.Lock()
		c.done = nil
		c.mu.Unlock()
		// Every phase of a canary upgrade is an Event when it begins.
		if prev := meta.FindStatusCondition(istio.Status.Conditions, v1alpha2.ConditionCanaryUpgrade); wrote && (prev == nil || prev.Reason != canary.Reason) {
			c.recorder.Event(istio, corev1.EventTypeNormal, canary.Reason, canary.Message)
		}
	}
	return updated, nil
}

// report writes a Ready condition that is False for the given reason, and
// the Installed condition when one is given.
func (c *Controller) report(ctx context.Context, istio *v1alpha2.Istio, state v1alpha2.State, reason, msg string, installed *status.Condition) (*v1alpha2.Istio, error) {
	return c.write(ctx, istio, state, status.Condition{
		Type: v1alpha2.ConditionReady, Status: metav1.ConditionFalse, Reason: reason, Message: msg,
	}, installed, istio.Status.Profile, false)
}

// failed reports a problem that stops the installation: both Ready and
// Installed are False with the reason. User errors return no error (no hot
// retry loop); the watch brings the fix.
func (c *Controller) failed(ctx context.Context, istio *v1alpha2.Istio, state v1alpha2.State, reason, msg string) (queue.Result, error) {
	_, err := c.report(ctx, istio, state, reason, msg, &status.Condition{
		Type: v1alpha2.ConditionInstalled, Status: metav1.ConditionFalse, Reason: reason, Message: msg,
	})
	return queue.Result{}, err
}

// refuse reports an installation the operator will not touch, as a
// Warning (an Event comes with a new one): it waits for the cluster to
// change, which the informers report, and looks again every
// ResyncInterval.
func (c *Controller) refuse(ctx context.Context, istio *v1alpha2.Istio, reason, msg string) (queue.Result, error) {
	res, err := c.failed(ctx, istio, v1alpha2.StateWarning, reason, msg)
	res.RequeueAfter = ResyncInterval
	return res, err
}

// progress reports an install, upgrade or repair under way.
func (c *Controller) progress(ctx context.Context, istio *v1alpha2.Istio, msg string) (*v1alpha2.Istio, error) {
	return c.report(ctx, istio, v1alpha2.StateProcessing, v1alpha2.ReasonIstioInstalling, msg, &status.Condition{
		Type: v1alpha2.ConditionInstalled, Status: metav1.ConditionFalse, Reason: v1alpha2.ReasonIstioInstalling, Message: msg,
	})
}

// writeSummary reports an installed Istio and derives Ready and the state
// from the other controllers' conditions.
// profile is the profile now installed.
func (c *Controller) writeSummary(ctx context.Context, istio *v1alpha2.Istio, warnings field.ErrorList, profile v1alpha2.Profile) (*v1alpha2.Istio, error) {
	installed := status.Condition{
		Type: v1alpha2.ConditionInstalled, Status: metav1.ConditionTrue, Reason: v1alpha2.ReasonIstioInstallSucceeded,
		Message: fmt.Sprintf("Istio %s is installed with the configuration of generation %d.", istioclient.Version, istio.Generation),
	}
	if up, tag := c.upgradeStatus(istio); up != nil {
		serving, beside := up.To, up.From
		if tag == up.From.Revision {
			serving, beside = up.From, up.To
		}
		installed.Message = fmt.Sprintf("Istio %s (revision %s) is installed with the configuration of generation %d and injects new pods; "+
			"revision %s (Istio %s) runs beside it during the canary upgrade.", serving.Version, serving.Revision, istio.Generation, beside.Revision, beside.Version)
	}
	if others := istioclient.ForeignControlPlanes(c.live); len(others) > 0 {
		// Installed beside them (other revisions): they are reported, and
		// left to whoever installed them.
		names := make([]string, len(others))
		for i, o := range others {
			names[i] = o.String()
		}
		installed.Message += fmt.Sprintf(" Control planes this operator did not install run beside it and are left untouched: %s.", message.Named(names, listedUserResources))
	}
	state, ready := Summarize(istio, warnings)
	return c.write(ctx, istio, state, ready, &installed, profile, true)
}

// dependent describes how a condition of another controller counts for
// the summary.
type dependent struct {
	// healthy is the status that means all is well.
	healthy metav1.ConditionStatus
	// warning and error reasons; any other unhealthy reason means in progress.
	warnings, errors []string
	// planned reasons are work that waits for its time, not a fault: in
	// progress, described by what they wait for.
	planned map[string]string
}

var dependents = map[string]dependent{
	v1alpha2.ConditionProxySidecarRestartSucceeded: {
		healthy:  metav1.ConditionTrue,
		warnings: []string{v1alpha2.ReasonProxySidecarManualRestartRequired, v1alpha2.ReasonProxySidecarRestartPartiallySucceeded},
		errors:   []string{v1alpha2.ReasonProxySidecarRestartFailed, v1alpha2.ReasonProxySidecarMaintenanceWindowInvalid},
		planned: map[string]string{
			v1alpha2.ReasonProxySidecarRestartWaitingForWindow: "sidecar proxy restarts wait for the maintenance window",
		},
	},
	v1alpha2.ConditionIngressGatewayReady: {
		healthy: metav1.ConditionTrue,
		errors:  []string{v1alpha2.ReasonIngressGatewayRestartFailed, v1alpha2.ReasonIngressGatewayMissing},
	},
	v1alpha2.ConditionIngressTargetingUserResourceFound: {
		healthy:  metav1.ConditionFalse,
		warnings: []string{v1alpha2.ReasonIngressTargetingUserResource},
	},
	v1alpha2.ConditionPeerAuthenticationReady: {
		healthy:  metav1.ConditionTrue,
		warnings: []string{v1alpha2.ReasonPeerAuthenticationWeakened},
		errors:   []string{v1alpha2.ReasonPeerAuthenticationFailed},
	},
}

// Summarize derives the state and the Ready condition of an installed
// Istio from the other controllers' conditions and the spec's warnings: the
// worst of them wins (Error, then Warning, then Processing).
func Summarize(istio *v1alpha2.Istio, warnings field.ErrorList) (v1alpha2.State, status.Condition) {
	rank := map[v1alpha2.State]int{v1alpha2.StateReady: 0, v1alpha2.StateProcessing: 1, v1alpha2.StateWarning: 2, v1alpha2.StateError: 3}
	state := v1alpha2.StateReady
	var problems []string
	note := func(s v1alpha2.State, msg string) {
		if rank[s] > rank[state] {
			state = s
		}
		problems = append(problems, msg)
	}
	for _, typ := range []string{
		v1alpha2.ConditionProxySidecarRestartSucceeded, v1alpha2.ConditionIngressGatewayReady,
		v1alpha2.ConditionIngressTargetingUserResourceFound, v1alpha2.ConditionPeerAuthenticationReady,
	} {
		cond := meta.FindStatusCondition(istio.Status.Conditions, typ)
		if cond == nil {
			continue
		}
		d := dependents[typ]
		switch {
		case cond.ObservedGeneration < istio.Generation:
			note(v1alpha2.StateProcessing, fmt.Sprintf("%s has not yet observed generation %d", typ, istio.Generation))
		case cond.Status == d.healthy:
		case contains(d.errors, cond.Reason):
			note(v1alpha2.StateError, fmt.Sprintf("%s: %s", typ, cond.Message))
		case contains(d.warnings, cond.Reason):
			note(v1alpha2.StateWarning, fmt.Sprintf("%s: %s", typ, cond.Message))
		case d.planned[cond.Reason] != "":
			note(v1alpha2.StateProcessing, fmt.Sprintf("%s (%s: %s)", d.planned[cond.Reason], typ, cond.Message))
		default:
			note(v1alpha2.StateProcessing, fmt.Sprintf("%s: %s", typ, cond.Message))
		}
	}
	if len(warnings) > 0 {
		msgs := make([]string, len(warnings))
		for i, w := range warnings {
			msgs[i] = w.Error()
		}
		note(v1alpha2.StateWarning, "the Istio resource is misconfigured: "+strings.Join(msgs, "; "))
	}
	if state == v1alpha2.StateReady {
		return state, status.Condition{
			Type: v1alpha2.ConditionReady, Status: metav1.ConditionTrue, Reason: v1alpha2.ReasonReconcileSucceeded,
			Message: fmt.Sprintf("Istio %s is installed and every controller reports success.", istioclient.Version),
		}
	}
	reason := v1alpha2.ReasonWaitingForDependency
	if len(warnings) > 0 && len(problems) == 1 {
		reason = v1alpha2.ReasonIstioCustomResourceMisconfigured
	}
	return state, status.Condition{
		Type: v1alpha2.ConditionReady, Status: metav1.ConditionFalse, Reason: reason,
		Message: fmt.Sprintf("Istio %s is installed, but %s.", istioclient.Version, strings.Join(problems, "; ")),
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
