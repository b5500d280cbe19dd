package ingressgateway

import (
	"context"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	appsac "k8s.io/client-go/applyconfigurations/apps/v1"
	coreac "k8s.io/client-go/applyconfigurations/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/klog/v2"

	v1alpha2 "github.com/meshkeeper/istio-operator/pkg/apis/operator/v1alpha2"
	"github.com/meshkeeper/istio-operator/pkg/controllers/istiowatch"
	"github.com/meshkeeper/istio-operator/pkg/controllers/queue"
	"github.com/meshkeeper/istio-operator/pkg/controllers/status"
	"github.com/meshkeeper/istio-operator/pkg/istioclient"
	"github.com/meshkeeper/istio-operator/pkg/rollout"
)

func (c *Controller) sync(ctx context.Context, key cache.ObjectName) (queue.Result, error) {
	verdict, istio, err := c.gate().Check(ctx, key)
	switch verdict {
	case status.Gone:
		if all, err := c.istios.Istios(c.namespace).List(labels.Everything()); err == nil && !istiowatch.Needed(all) {
			c.envoyFilters.Stop()
		}
		return queue.Result{}, nil
	case status.Deleting:
		// The uninstall removes the EnvoyFilter kind: stop watching it.
		c.envoyFilters.Stop()
		return queue.Result{}, nil
	case status.Proceed:
	default:
		return queue.Result{}, err
	}

	filters, err := c.envoyFilters.Start(ctx)
	if err != nil {
		return queue.Result{}, err
	}
	want := istioclient.GatewayConfigHash(&istio.Spec)
	d, err := c.deployments.Deployments(istioclient.Namespace).Get(istioclient.IngressGatewayName)
	if err != nil && !apierrors.IsNotFound(err) {
		return queue.Result{}, err
	}
	var gatewayLabels map[string]string
	if d != nil {
		gatewayLabels = d.Spec.Template.Labels
	}
	user, err := userResourceCondition(filters, gatewayLabels)
	if err != nil {
		return queue.Result{}, err
	}
	if d == nil {
		return c.report(ctx, istio, user, metav1.ConditionFalse, v1alpha2.ReasonIngressGatewayMissing, fmt.Sprintf(
			"The Deployment %s/%s does not exist; the installation controller recreates it.", istioclient.Namespace, istioclient.IngressGatewayName), RollingInterval)
	}

	if got := d.Spec.Template.Annotations[istioclient.GatewayConfigAnnotation]; got != want {
		// Someone changed or removed the annotation the installer set: the
		// pods may not run the configuration. Roll once, to the desired one.
		if err := c.roll(ctx, want); err != nil {
			c.recorder.Eventf(istio, corev1.EventTypeWarning, v1alpha2.ReasonIngressGatewayRestartFailed, "Restarting the ingress gateway failed: %v", err)
			return queue.Result{}, err
		}
		klog.FromContext(ctx).Info("Restarted the ingress gateway", "configuration", want, "was", got)
		c.recorder.Eventf(istio, corev1.EventTypeNormal, v1alpha2.EventIngressGatewayRestarted,
			"Restarted the ingress gateway so that it runs start-time configuration %s (its pods carried %q).", want, got)
		return c.report(ctx, istio, user, metav1.ConditionFalse, v1alpha2.ReasonIngressGatewayRestartInProgress, fmt.Sprintf(
			"Restarting the ingress gateway to start-time configuration %s.", want), RollingInterval)
	}

	ro := rollout.OfDeployment(d)
	if !ro.Observed {
		// The Deployment controller has not seen the latest spec (a new
		// template, or an autoscaler's replica count): its status is about
		// the previous one. Its next status update brings the verdict;
		// judging now would flap the condition on every scale.
		return queue.Result{RequeueAfter: RollingInterval}, nil
	}
	if ro.Failed != "" {
		return c.report(ctx, istio, user, metav1.ConditionFalse, v1alpha2.ReasonIngressGatewayRestartFailed, fmt.Sprintf(
			"The ingress gateway does not roll out: %s. Check its pods and events in %s.", ro.Failed, istioclient.Namespace), RollingInterval)
	}
	if !ro.Current {
		return c.report(ctx, istio, user, metav1.ConditionFalse, v1alpha2.ReasonIngressGatewayRestartInProgress, fmt.Sprintf(
			"The ingress gateway is rolling to start-time configuration %s: %d of %d pods updated and available.", want, ro.Updated, ro.Desired), RollingInterval)
	}
	// Every pod runs the configuration and the gateway serves. An
	// autoscaler adding or removing replicas changes neither, so the
	// message carries no replica count: scaling writes nothing.
	prev := meta.FindStatusCondition(istio.Status.Conditions, v1alpha2.ConditionIngressGatewayReady)
	res, err := c.report(ctx, istio, user, metav1.ConditionTrue, v1alpha2.ReasonIngressGatewayRestartSucceeded, fmt.Sprintf(
		"The ingress gateway runs start-time configuration %s on every pod and is available.", want), ConvergedInterval)
	if err == nil && prev != nil && prev.Reason == v1alpha2.ReasonIngressGatewayRestartInProgress {
		c.recorder.Eventf(istio, corev1.EventTypeNormal, v1alpha2.ReasonIngressGatewayRestartSucceeded,
			"The ingress gateway rolled out start-time configuration %s.", want)
	}
	return res, err
}

// report writes the controller's conditions, IngressGatewayReady as given
// and IngressTargetingUserResourceFound, and schedules the next check. A
// newly found or changed list of EnvoyFilters that target the gateway is
// also recorded as a Warning Event.
func (c *Controller) report(ctx context.Context, istio *v1alpha2.Istio, user status.Condition, s metav1.ConditionStatus, reason, msg string, after time.Duration) (queue.Result, error) {
	prev := meta.FindStatusCondition(istio.Status.Conditions, v1alpha2.ConditionIngressTargetingUserResourceFound)
	_, wrote, err := c.status.Apply(ctx, istio, status.Update{Conditions: []status.Condition{{
		Type: v1alpha2.ConditionIngressGatewayReady, Status: s, Reason: reason, Message: msg,
	}, user}})
	if err == nil && wrote && user.Status == metav1.ConditionTrue && (prev == nil || prev.Message != user.Message) {
		c.recorder.Event(istio, corev1.EventTypeWarning, user.Reason, user.Message)
	}
	return queue.Result{RequeueAfter: after}, err
}

// roll sets the pod-template annotation to the desired configuration hash,
// owning only that field (server-side apply): one new ReplicaSet.
func (c *Controller) roll(ctx context.Context, hash string) error {
	ac := appsac.Deployment(istioclient.IngressGatewayName, istioclient.Namespace).
		WithSpec(appsac.DeploymentSpec().WithTemplate(coreac.PodTemplateSpec().
			WithAnnotations(map[string]string{istioclient.GatewayConfigAnnotation: hash})))
	_, err := c.kube.AppsV1().Deployments(istioclient.Namespace).Apply(ctx, ac,
		metav1.ApplyOptions{FieldManager: status.FieldManagerPrefix + Name, Force: true})
	return err
}

// gate decides whether a sync may act on a resource yet.
func (c *Controller) gate() *status.Gate {
	return &status.Gate{Istios: c.istios, Writer: c.status, Conditions: []string{v1alpha2.ConditionIngressGatewayReady, v1alpha2.ConditionIngressTargetingUserResourceFound},
		Then: "The ingress gateway is checked, and restarted if its pods run an older start-time configuration, once Installed is True."}
}
