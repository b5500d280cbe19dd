// Package rollout reads the workload controllers' verdict on a rollout from
// a workload's status: done, still rolling, or stuck. The ingress gateway
// and proxy sidecar controllers both restart workloads and wait for them,
// and the installer (istioclient.Ready) waits for Istio's Deployments by
// the same rule as the gateway controller.
package rollout

import (
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/utils/ptr"
)

// Status is a workload's rollout.
type Status struct {
	// Done is true when the current template runs on every replica and
	// the replicas are available.
	Done bool
	// Current is true when every pod runs the current template and, unless
	// scaled to zero, at least one is available, also while new replicas
	// of that template start. A scale-up (an autoscaler's) leaves a
	// workload Current but not Done until its new replicas are available.
	// Deployments only; Done implies it.
	Current bool
	// Observed is false while the workload controller has not yet seen
	// the latest spec: its status then describes the previous one.
	Observed bool
	// Updated and Desired count the replicas, for messages.
	Updated, Desired int32
	// Failed is the workload controller's reason the rollout does not
	// progress, or "".
	Failed string
}

// OfDeployment reads a Deployment's rollout. A stuck rollout is the
// Deployment controller's ProgressDeadlineExceeded.
func OfDeployment(d *appsv1.Deployment) Status {
	want := ptr.Deref(d.Spec.Replicas, 1)
	s := d.Status
	observed := s.ObservedGeneration >= d.Generation
	st := Status{
		Updated: s.UpdatedReplicas, Desired: want, Observed: observed,
		Done: observed && s.UpdatedReplicas >= want && s.AvailableReplicas >= want && s.Replicas == s.UpdatedReplicas,
		// No pod of an older template is left (they count in Replicas,
		// not in UpdatedReplicas), and the current one serves.
		Current: observed && s.Replicas == s.UpdatedReplicas && s.AvailableReplicas >= min(want, 1),
	}
	for _, c := range s.Conditions {
		if c.Type == appsv1.DeploymentProgressing && c.Status == corev1.ConditionFalse && c.Reason == "ProgressDeadlineExceeded" {
			st.Failed = c.Message
		}
	}
	return st
}

// OfStatefulSet reads a StatefulSet's rollout: every replica at the update
// revision and ready.
func OfStatefulSet(s *appsv1.StatefulSet) Status {
	want := ptr.Deref(s.Spec.Replicas, 1)
	st := s.Status
	return Status{
		Updated: st.UpdatedReplicas, Desired: want,
		Done: st.ObservedGeneration >= s.Generation && st.UpdateRevision == st.CurrentRevision &&
			st.ReadyReplicas >= want && st.Replicas == want,
	}
}

// OfDaemonSet reads a DaemonSet's rollout: every scheduled pod updated and
// available.
func OfDaemonSet(d *appsv1.DaemonSet) Status {
	s := d.Status
	return Status{
		Updated: s.UpdatedNumberScheduled, Desired: s.DesiredNumberScheduled,
		Done: s.ObservedGeneration >= d.Generation && s.UpdatedNumberScheduled >= s.DesiredNumberScheduled &&
			s.NumberAvailable >= s.DesiredNumberScheduled,
	}
}
