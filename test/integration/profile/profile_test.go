// Package profile tests how the operator sizes Istio from the cluster's
// allocatable resources, on a cluster whose nodes the test resizes: the
// evaluation profile below the thresholds, the promotion to production
// only when the cluster stays large, never a flap, and the override.
package profile

import (
	"context"
	"fmt"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	v1alpha2 "github.com/meshkeeper/istio-operator/pkg/apis/operator/v1alpha2"
	"github.com/meshkeeper/istio-operator/pkg/istioclient"
	"github.com/meshkeeper/istio-operator/pkg/operator"
	"github.com/meshkeeper/istio-operator/test/cluster"
	"github.com/meshkeeper/istio-operator/test/operatortest"
)

const (
	timeout = 2 * time.Minute
	// delay is the operator's profile promotion delay in this test.
	delay = 6 * time.Second
)

func TestMain(m *testing.M) {
	cluster.Main(m, cluster.Options{Nodes: 1})
}

func TestProfileFollowsTheClusterWithoutFlapping(t *testing.T) {
	ctx := t.Context()
	cs := cluster.Current().Clientset()
	nodes, err := cs.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil || len(nodes.Items) != 1 {
		t.Fatalf("nodes %v, %v: want the one the cluster started with", nodes, err)
	}
	// 3 CPUs and 6 Gi: below both thresholds; with a second such node,
	// 6 CPUs and 12 Gi, above both.
	resize(t, &nodes.Items[0], "3", "6Gi")

	cluster.InstallIstioCRD(t)
	ns := cluster.Namespace(t, nil)
	operatortest.StartWith(t, ns, operatortest.Options{Configure: func(o *operator.Options) {
		o.ProfilePromotionDelay = delay
	}})
	operatortest.CreateIstio(t, ns, "default", v1alpha2.IstioSpec{})
	t.Cleanup(func() { operatortest.DeleteIstio(t, timeout, ns, "default") })
	istio := operatortest.WaitForState(t, timeout, ns, "default", v1alpha2.StateReady,
		v1alpha2.ConditionInstalled, metav1.ConditionTrue, v1alpha2.ReasonIstioInstallSucceeded)
	if istio.Status.Profile != v1alpha2.ProfileEvaluation {
		t.Fatalf("status.profile %q on a cluster of 3 CPUs and 6Gi, want Evaluation", istio.Status.Profile)
	}
	waitSized(t, "istiod", 1, 1, "50m")

	// A node that joins and leaves within the delay changes nothing.
	extra := addNode(t, "kwok-extra", "3", "6Gi")
	time.Sleep(delay / 3) // the node stays a while; shorter than the delay
	deleteNode(t, extra)
	holds(t, ns, v1alpha2.ProfileEvaluation, delay+3*time.Second)

	// A node that stays promotes the installation once.
	addNode(t, "kwok-extra", "3", "6Gi")
	joined := time.Now()
	waitProfile(t, ns, v1alpha2.ProfileProduction)
	if took := time.Since(joined); took < delay {
		t.Errorf("promoted %s after the node joined, before the delay of %s", took, delay)
	}
	waitSized(t, "istiod", 2, 5, "100m")
	if !operatortest.HasEventWith(t, ns, "default", v1alpha2.EventProfileChanged, "from Evaluation to Production") {
		t.Error("no ProfileChanged Event from Evaluation to Production")
	}

	// Production is never lowered by a shrinking cluster.
	deleteNode(t, "kwok-extra")
	holds(t, ns, v1alpha2.ProfileProduction, delay+3*time.Second)

	// The resource's profile wins.
	p := []byte(`{"spec":{"profile":"Evaluation"}}`)
	if _, err := operatortest.Client(t).OperatorV1alpha2().Istios(ns).Patch(ctx, "default", types.MergePatchType, p, metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	waitProfile(t, ns, v1alpha2.ProfileEvaluation)
	waitSized(t, "istiod", 1, 1, "50m")
}

// resize sets a node's capacity and allocatable CPU and memory, with a
// merge patch: kwok writes the node's status (its heartbeat) meanwhile.
func resize(t *testing.T, n *corev1.Node, cpu, memory string) {
	t.Helper()
	size := fmt.Sprintf(`{"cpu":%q,"memory":%q}`, cpu, memory)
	p := []byte(`{"status":{"capacity":` + size + `,"allocatable":` + size + `}}`)
	if _, err := cluster.Current().Clientset().CoreV1().Nodes().Patch(t.Context(), n.Name, types.MergePatchType, p, metav1.PatchOptions{}, "status"); err != nil {
		t.Fatal(err)
	}
}

// addNode creates a kwok node of the size and returns its name.
func addNode(t *testing.T, name, cpu, memory string) string {
	t.Helper()
	n := cluster.NewNode(name)
	for _, l := range []corev1.ResourceList{n.Status.Capacity, n.Status.Allocatable} {
		l[corev1.ResourceCPU] = resource.MustParse(cpu)
		l[corev1.ResourceMemory] = resource.MustParse(memory)
	}
	if _, err := cluster.Current().Clientset().CoreV1().Nodes().Create(t.Context(), n, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cluster.Current().Clientset().CoreV1().Nodes().Delete(context.Background(), name, metav1.DeleteOptions{})
	})
	return name
}

func deleteNode(t *testing.T, name string) {
	t.Helper()
	cs := cluster.Current().Clientset()
	if err := cs.CoreV1().Nodes().Delete(t.Context(), name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	cluster.WaitFor(t, timeout, "node "+name+" gone", func(ctx context.Context) (bool, error) {
		_, err := cs.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
		return err != nil, nil
	})
}

func waitProfile(t *testing.T, ns string, want v1alpha2.Profile) {
	t.Helper()
	cluster.WaitFor(t, timeout, "status.profile "+string(want), func(ctx context.Context) (bool, error) {
		istio, err := operatortest.Client(t).OperatorV1alpha2().Istios(ns).Get(ctx, "default", metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		if istio.Status.Profile != want || istio.Status.State != v1alpha2.StateReady {
			return false, fmt.Errorf("status.profile %q, state %s", istio.Status.Profile, istio.Status.State)
		}
		return true, nil
	})
}

// holds checks, for the whole window, that the profile stays: the
// property is that nothing happens, so it is watched for a fixed time.
func holds(t *testing.T, ns string, want v1alpha2.Profile, window time.Duration) {
	t.Helper()
	end := time.Now().Add(window)
	for time.Now().Before(end) {
		istio, err := operatortest.Client(t).OperatorV1alpha2().Istios(ns).Get(t.Context(), "default", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if istio.Status.Profile != want {
			t.Fatalf("status.profile changed to %q, want it to stay %s", istio.Status.Profile, want)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// waitSized waits until the Deployment's autoscaler and its first
// container's CPU request are the profile's.
func waitSized(t *testing.T, name string, minReplicas, maxReplicas int32, cpu string) {
	t.Helper()
	cs := cluster.Current().Clientset()
	cluster.WaitFor(t, timeout, fmt.Sprintf("%s sized %d-%d, %s CPU", name, minReplicas, maxReplicas, cpu), func(ctx context.Context) (bool, error) {
		hpa, err := cs.AutoscalingV2().HorizontalPodAutoscalers(istioclient.Namespace).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		if hpa.Spec.MinReplicas == nil || *hpa.Spec.MinReplicas != minReplicas || hpa.Spec.MaxReplicas != maxReplicas {
			return false, fmt.Errorf("autoscaler %v-%d", hpa.Spec.MinReplicas, hpa.Spec.MaxReplicas)
		}
		d, err := cs.AppsV1().Deployments(istioclient.Namespace).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		got := d.Spec.Template.Spec.Containers[0].Resources.Requests[corev1.ResourceCPU]
		if want := resource.MustParse(cpu); got.Cmp(want) != 0 {
			return false, fmt.Errorf("CPU request %s", got.String())
		}
		return true, nil
	})
}
