package cluster_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"

	"github.com/meshkeeper/istio-operator/test/cluster"
	"github.com/meshkeeper/istio-operator/test/workload"
)

const rolloutTimeout = 60 * time.Second

// deploymentComplete reports whether the controller has rolled the current
// template out to every replica and they are all available.
func deploymentComplete(d *appsv1.Deployment) bool {
	want := ptr.Deref(d.Spec.Replicas, 1)
	s := d.Status
	return s.ObservedGeneration >= d.Generation &&
		s.Replicas == want && s.UpdatedReplicas == want &&
		s.ReadyReplicas == want && s.AvailableReplicas == want && s.UnavailableReplicas == 0
}

func waitDeploymentComplete(t *testing.T, cs kubernetes.Interface, ns, name string) *appsv1.Deployment {
	t.Helper()
	var d *appsv1.Deployment
	cluster.WaitFor(t, rolloutTimeout, fmt.Sprintf("Deployment %s/%s to be complete", ns, name), func(ctx context.Context) (bool, error) {
		var err error
		d, err = cs.AppsV1().Deployments(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		return deploymentComplete(d), nil
	})
	return d
}

// checkPodsRunning fails unless exactly want pods match the Deployment, each
// Running and Ready on a kwok node.
func checkPodsRunning(t *testing.T, ctx context.Context, cs kubernetes.Interface, d *appsv1.Deployment, want int) []corev1.Pod {
	t.Helper()
	pods, err := cs.CoreV1().Pods(d.Namespace).List(ctx, metav1.ListOptions{
		LabelSelector: labels.SelectorFromSet(d.Spec.Selector.MatchLabels).String(),
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(pods.Items) != want {
		t.Fatalf("Deployment %s has %d pods, want %d", d.Name, len(pods.Items), want)
	}
	for _, pod := range pods.Items {
		if pod.Status.Phase != corev1.PodRunning || !workload.PodReady(&pod) {
			t.Errorf("pod %s: phase %s, ready %v; want Running and Ready", pod.Name, pod.Status.Phase, workload.PodReady(&pod))
		}
		node, err := cs.CoreV1().Nodes().Get(ctx, pod.Spec.NodeName, metav1.GetOptions{})
		if err != nil {
			t.Errorf("pod %s: node %q: %v", pod.Name, pod.Spec.NodeName, err)
			continue
		}
		if node.Annotations[cluster.NodeAnnotation] != "fake" {
			t.Errorf("pod %s runs on %s, which is not a kwok node", pod.Name, node.Name)
		}
	}
	return pods.Items
}

func TestDeploymentBecomesReady(t *testing.T) {
	cs := cluster.Current().Clientset()
	ns := cluster.Namespace(t, nil)

	d, err := cs.AppsV1().Deployments(ns).Create(t.Context(), cluster.NewDeployment("web", 3), metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	d = waitDeploymentComplete(t, cs, ns, d.Name)
	if d.Status.ReadyReplicas != 3 {
		t.Fatalf("ready replicas %d, want 3", d.Status.ReadyReplicas)
	}
	for _, pod := range checkPodsRunning(t, t.Context(), cs, d, 3) {
		if !strings.HasPrefix(pod.Spec.NodeName, cluster.NodeNamePrefix) {
			t.Errorf("pod %s on node %q, want a %s* node", pod.Name, pod.Spec.NodeName, cluster.NodeNamePrefix)
		}
	}
}

func TestTemplateChangeRollsDeployment(t *testing.T) {
	ctx := t.Context()
	cs := cluster.Current().Clientset()
	ns := cluster.Namespace(t, nil)

	d, err := cs.AppsV1().Deployments(ns).Create(ctx, cluster.NewDeployment("roll", 3), metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	d = waitDeploymentComplete(t, cs, ns, d.Name)
	oldRS := activeReplicaSet(t, ctx, cs, d)
	oldPods := map[types.UID]string{}
	for _, pod := range checkPodsRunning(t, ctx, cs, d, 3) {
		oldPods[pod.UID] = pod.Name
	}

	patch := []byte(`{"spec":{"template":{"metadata":{"annotations":{"example.com/revision":"2"}}}}}`)
	if _, err := cs.AppsV1().Deployments(ns).Patch(ctx, d.Name, types.StrategicMergePatchType, patch, metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}

	d = waitDeploymentComplete(t, cs, ns, d.Name)
	// The old pods terminate after the Deployment counts as complete.
	cluster.WaitFor(t, rolloutTimeout, "the old pods to be gone", func(ctx context.Context) (bool, error) {
		pods, err := cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{
			LabelSelector: labels.SelectorFromSet(d.Spec.Selector.MatchLabels).String(),
		})
		if err != nil {
			return false, err
		}
		for _, pod := range pods.Items {
			if _, old := oldPods[pod.UID]; old {
				return false, nil
			}
		}
		return len(pods.Items) == 3, nil
	})

	newRS := activeReplicaSet(t, ctx, cs, d)
	if newRS.UID == oldRS.UID {
		t.Fatalf("the template change did not create a new ReplicaSet (still %s)", newRS.Name)
	}
	if got := newRS.Spec.Template.Annotations["example.com/revision"]; got != "2" {
		t.Errorf("new ReplicaSet %s template annotation = %q, want \"2\"", newRS.Name, got)
	}
	old, err := cs.AppsV1().ReplicaSets(ns).Get(ctx, oldRS.Name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if r := ptr.Deref(old.Spec.Replicas, -1); r != 0 {
		t.Errorf("old ReplicaSet %s has %d replicas, want 0", old.Name, r)
	}
	for _, pod := range checkPodsRunning(t, ctx, cs, d, 3) {
		owner := metav1.GetControllerOf(&pod)
		if owner == nil || owner.UID != newRS.UID {
			t.Errorf("pod %s is not owned by the new ReplicaSet %s", pod.Name, newRS.Name)
		}
	}
}

// activeReplicaSet returns the Deployment's only ReplicaSet with replicas.
func activeReplicaSet(t *testing.T, ctx context.Context, cs kubernetes.Interface, d *appsv1.Deployment) *appsv1.ReplicaSet {
	t.Helper()
	list, err := cs.AppsV1().ReplicaSets(d.Namespace).List(ctx, metav1.ListOptions{
		LabelSelector: labels.SelectorFromSet(d.Spec.Selector.MatchLabels).String(),
	})
	if err != nil {
		t.Fatal(err)
	}
	var active []*appsv1.ReplicaSet
	for i := range list.Items {
		rs := &list.Items[i]
		if owner := metav1.GetControllerOf(rs); owner != nil && owner.UID == d.UID && ptr.Deref(rs.Spec.Replicas, 0) > 0 {
			active = append(active, rs)
		}
	}
	if len(active) != 1 {
		t.Fatalf("Deployment %s has %d ReplicaSets with replicas, want 1", d.Name, len(active))
	}
	return active[0]
}
