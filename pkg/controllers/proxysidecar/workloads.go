package proxysidecar

import (
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/utils/ptr"

	"github.com/meshkeeper/istio-operator/pkg/rollout"
)

// workload is what the controller needs of any restartable kind.
type workload struct {
	key Key
	obj interface {
		metav1.Object
		runtime.Object
	}
	// byEviction is true for workloads a template change does not roll:
	// their pods are evicted one by one, and the restart annotations go on
	// the workload's own metadata.
	byEviction bool
	// template holds the pod template's annotations (a ReplicaSet's only
	// the sidecar status, see trimReplicaSet).
	template map[string]string
	paused   bool
	rollout  rollout.Status
	// owner is the controlling owner of a ReplicaSet, if any.
	owner *metav1.OwnerReference
	// ready and desired count replicas (eviction kinds).
	ready, desired int32
}

// getWorkload reads a workload from the caches; nil when it does not exist.
func (c *Controller) getWorkload(k Key) (*workload, error) {
	w := &workload{key: k}
	var err error
	switch k.Kind {
	case KindDeployment:
		var d *appsv1.Deployment
		if d, err = c.deployments.Deployments(k.Namespace).Get(k.Name); err == nil {
			w.obj, w.template, w.paused, w.rollout = d, d.Spec.Template.Annotations, d.Spec.Paused, rollout.OfDeployment(d)
		}
	case KindStatefulSet:
		var s *appsv1.StatefulSet
		if s, err = c.statefulSets.StatefulSets(k.Namespace).Get(k.Name); err == nil {
			w.obj, w.template, w.rollout = s, s.Spec.Template.Annotations, rollout.OfStatefulSet(s)
			if s.Spec.UpdateStrategy.Type == appsv1.OnDeleteStatefulSetStrategyType {
				w.byEviction, w.ready, w.desired = true, s.Status.ReadyReplicas, ptr.Deref(s.Spec.Replicas, 1)
			}
		}
	case KindDaemonSet:
		var d *appsv1.DaemonSet
		if d, err = c.daemonSets.DaemonSets(k.Namespace).Get(k.Name); err == nil {
			w.obj, w.template, w.rollout = d, d.Spec.Template.Annotations, rollout.OfDaemonSet(d)
			if d.Spec.UpdateStrategy.Type == appsv1.OnDeleteDaemonSetStrategyType {
				w.byEviction, w.ready, w.desired = true, d.Status.NumberReady, d.Status.DesiredNumberScheduled
			}
		}
	case KindReplicaSet:
		var rs *appsv1.ReplicaSet
		if rs, err = c.replicaSets.ReplicaSets(k.Namespace).Get(k.Name); err == nil {
			w.obj, w.template, w.byEviction, w.owner = rs, rs.Spec.Template.Annotations, true, metav1.GetControllerOfNoCopy(rs)
			w.ready, w.desired = rs.Status.ReadyReplicas, ptr.Deref(rs.Spec.Replicas, 1)
		}
	case KindReplicationController:
		var rc *corev1.ReplicationController
		if rc, err = c.rcs.ReplicationControllers(k.Namespace).Get(k.Name); err == nil {
			w.obj, w.byEviction = rc, true
			if rc.Spec.Template != nil {
				w.template = rc.Spec.Template.Annotations
			}
			w.ready, w.desired = rc.Status.ReadyReplicas, ptr.Deref(rc.Spec.Replicas, 1)
		}
	default:
		return nil, nil
	}
	if apierrors.IsNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return w, nil
}

// restartAnnotations are where the workload records its restarts.
func (w *workload) restartAnnotations() map[string]string {
	if w.byEviction {
		return w.obj.GetAnnotations()
	}
	return w.template
}

// restartedFor is the hash of the proxy the workload was last restarted for.
func (w *workload) restartedFor() string { return w.restartAnnotations()[AnnotationRestartedFor] }

// restartedAt is when the workload was last restarted, zero if unknown.
func (w *workload) restartedAt() time.Time {
	t, err := time.Parse(time.RFC3339, w.restartAnnotations()[AnnotationRestartedAt])
	if err != nil {
		return time.Time{}
	}
	return t
}

// excluded reports whether the user opted the workload or its namespace out.
func (c *Controller) excluded(w *workload) bool {
	if w.obj.GetAnnotations()[AnnotationExclude] == "true" {
		return true
	}
	ns, err := c.namespaces.Get(w.key.Namespace)
	return err == nil && ns.Annotations[AnnotationExclude] == "true"
}

// deleting reports whether the workload or its namespace is being deleted:
// restarting it would only add churn.
func (c *Controller) deleting(w *workload) bool {
	if w.obj.GetDeletionTimestamp() != nil {
		return true
	}
	ns, err := c.namespaces.Get(w.key.Namespace)
	return err == nil && ns.DeletionTimestamp != nil
}

// podsOf are the cached pods of a workload (a Deployment's through its
// ReplicaSets).
func (c *Controller) podsOf(k Key) []*corev1.Pod {
	owners := []string{ownerIndexValue(string(k.Kind), k.Namespace, k.Name)}
	if k.Kind == KindDeployment {
		owners = owners[:0]
		rss, _ := c.rsIndex.ByIndex(ownerIndex, ownerIndexValue(string(KindDeployment), k.Namespace, k.Name))
		for _, o := range rss {
			rs := o.(*appsv1.ReplicaSet)
			owners = append(owners, ownerIndexValue(string(KindReplicaSet), rs.Namespace, rs.Name))
		}
	}
	var pods []*corev1.Pod
	for _, owner := range owners {
		objs, _ := c.pods.ByIndex(ownerIndex, owner)
		for _, o := range objs {
			pods = append(pods, o.(*corev1.Pod))
		}
	}
	return pods
}
