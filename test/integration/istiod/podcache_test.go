package istiod

import (
	"context"
	"fmt"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"

	v1alpha2 "github.com/meshkeeper/istio-operator/pkg/apis/operator/v1alpha2"
	"github.com/meshkeeper/istio-operator/test/cluster"
	"github.com/meshkeeper/istio-operator/test/operatortest"
)

// TestPodsOutsideTheMeshAreNotCached: the operator's pod cache holds
// exactly the pods the mesh rule names (injected, opting in by label, or in
// a namespace that selects the injector), never the others: pods of a
// namespace without injection are not sent to it until the namespace is
// labelled for injection, and are dropped again when the label goes.
func TestPodsOutsideTheMeshAreNotCached(t *testing.T) {
	install(t, v1alpha2.IstioSpec{})
	cs := cluster.Current().Clientset()

	batch := cluster.Namespace(t, nil)
	const plain = 30
	for i := range plain {
		if _, err := cs.CoreV1().Pods(batch).Create(t.Context(), barePod(fmt.Sprintf("job-%02d", i), nil), metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	waitLivePods(t, cs, batch, plain, "the batch pods running", func(p *corev1.Pod) error {
		if p.Status.Phase != corev1.PodRunning {
			return fmt.Errorf("pod %s is %s", p.Name, p.Status.Phase)
		}
		return nil
	})
	// A pod that opts in, created after the others: by the time the cache
	// holds it, a cache of every pod would hold the others too.
	optIn := barePod("opts-in", map[string]string{"sidecar.istio.io/inject": "true"})
	if _, err := cs.CoreV1().Pods(batch).Create(t.Context(), optIn, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitCacheMatches(t, cs, "the opting-in pod cached, the batch pods not")

	label := func(patch string) {
		t.Helper()
		if _, err := cs.CoreV1().Namespaces().Patch(t.Context(), batch, types.MergePatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	label(`{"metadata":{"labels":{"istio-injection":"enabled"}}}`)
	waitCacheMatches(t, cs, "the batch pods cached once their namespace selects the injector")
	label(`{"metadata":{"labels":{"istio-injection":null}}}`)
	waitCacheMatches(t, cs, "the batch pods dropped once their namespace no longer selects the injector")
}

// barePod is a pod without an owner on the kwok node.
func barePod(name string, labels map[string]string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels},
		Spec: corev1.PodSpec{
			NodeSelector: map[string]string{cluster.NodeTypeLabel: "kwok"},
			Containers:   []corev1.Container{{Name: "app", Image: "registry.k8s.io/pause:3.10"}},
		},
	}
}

// waitCacheMatches waits until the operator's pod cache gauges show what
// the mesh rule, applied to the cluster's pods and namespaces, expects.
func waitCacheMatches(t *testing.T, cs kubernetes.Interface, what string) {
	t.Helper()
	cluster.WaitFor(t, timeout, what, func(ctx context.Context) (bool, error) {
		pods, namespaces, all, err := meshRule(ctx, cs)
		if err != nil {
			return false, err
		}
		gotPods := operatortest.Gauge(t, "istio_operator_pod_cache_pods", nil)
		gotNamespaces := operatortest.Gauge(t, "istio_operator_pod_cache_namespaces", nil)
		if gotPods != float64(pods) || gotNamespaces != float64(namespaces) {
			return false, fmt.Errorf("cache holds %v pods of %v namespaces, the rule names %d pods (of %d in the cluster) and %d namespaces",
				gotPods, gotNamespaces, pods, all, namespaces)
		}
		return true, nil
	})
}

// meshRule counts the pods the operator must see (docs/architecture.md,
// "Which pods the operator sees") and the namespaces that select the
// injector, from the API server.
func meshRule(ctx context.Context, cs kubernetes.Interface) (pods, namespaces, all int, err error) {
	nsList, err := cs.CoreV1().Namespaces().List(ctx, metav1.ListOptions{})
	if err != nil {
		return 0, 0, 0, err
	}
	selecting := map[string]bool{}
	for _, ns := range nsList.Items {
		switch ns.Name {
		case "kube-system", "kube-public", "kube-node-lease", "local-path-storage":
			continue
		}
		injection, labelled := ns.Labels["istio-injection"]
		if labelled && injection == "enabled" || !labelled && ns.Labels["istio.io/rev"] == "default" {
			selecting[ns.Name] = true
		}
	}
	podList, err := cs.CoreV1().Pods(metav1.NamespaceAll).List(ctx, metav1.ListOptions{})
	if err != nil {
		return 0, 0, 0, err
	}
	for _, p := range podList.Items {
		_, canonical := p.Labels["service.istio.io/canonical-name"]
		_, revision := p.Labels["istio.io/rev"]
		if canonical || revision || p.Labels["sidecar.istio.io/inject"] == "true" || selecting[p.Namespace] {
			pods++
		}
	}
	return pods, len(selecting), len(podList.Items), nil
}
