package istiod

import (
	"context"
	"fmt"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"

	v1alpha2 "github.com/meshkeeper/istio-operator/pkg/apis/operator/v1alpha2"
	"github.com/meshkeeper/istio-operator/pkg/controllers/proxysidecar"
	"github.com/meshkeeper/istio-operator/test/cluster"
	"github.com/meshkeeper/istio-operator/test/operatortest"
)

// TestJoiningAndLeavingTheMesh, with the real injector: a Deployment
// created in an injection-enabled namespace before Istio was installed is
// restarted once after the install and its new pods carry sidecars; a
// namespace whose injection is switched off gets its pods restarted once
// without sidecars; an operator restart restarts neither again; deleting
// the Istio resource uninstalls Istio and restarts the workloads with
// sidecars before the resource goes, so that no pod keeps one.
func TestJoiningAndLeavingTheMesh(t *testing.T) {
	cluster.InstallIstioCRD(t)
	cs := cluster.Current().Clientset()
	issued := func() float64 {
		return operatortest.Counter(t, "istio_operator_proxy_restarts_total", map[string]string{"result": "issued"})
	}
	start := issued()

	early := cluster.Namespace(t, map[string]string{"istio-injection": "enabled"})
	if _, err := cs.AppsV1().Deployments(early).Create(t.Context(), cluster.NewDeployment("early", 2), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitLivePods(t, cs, early, 2, "pods without sidecars before Istio is installed", withoutSidecar)

	opNS := cluster.Namespace(t, nil)
	op := operatortest.Start(t, opNS)
	operatortest.CreateIstio(t, opNS, "default", v1alpha2.IstioSpec{})
	t.Cleanup(func() { operatortest.DeleteIstio(t, timeout, opNS, "default") })
	operatortest.WaitForState(t, timeout, opNS, "default", v1alpha2.StateReady,
		v1alpha2.ConditionInstalled, metav1.ConditionTrue, v1alpha2.ReasonIstioInstallSucceeded)
	cluster.WaitIstiod(t, timeout)

	waitLivePods(t, cs, early, 2, "the early pods re-created with sidecars", withSidecar)
	joined := restartedFor(t, cs, early, "early")
	if joined == "" || joined == "no-sidecar" {
		t.Errorf("early restarted for %q, want the proxy's hash", joined)
	}
	operatortest.WaitCondition(t, timeout, opNS, "default", v1alpha2.ConditionProxySidecarRestartSucceeded, v1alpha2.ReasonProxySidecarRestartSucceeded, nil)

	leaving := cluster.MeshNamespace(t)
	if _, err := cs.AppsV1().Deployments(leaving).Create(t.Context(), cluster.NewDeployment("leaver", 2), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	injectedPods(t, cs, leaving, 2)
	label := []byte(`{"metadata":{"labels":{"istio-injection":"disabled"}}}`)
	if _, err := cs.CoreV1().Namespaces().Patch(t.Context(), leaving, types.MergePatchType, label, metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	waitLivePods(t, cs, leaving, 2, "the pods of a namespace whose injection is off re-created without sidecars", withoutSidecar)
	if got := restartedFor(t, cs, leaving, "leaver"); got != "no-sidecar" {
		t.Errorf("leaver restarted for %q, want no-sidecar", got)
	}
	operatortest.WaitCondition(t, timeout, opNS, "default", v1alpha2.ConditionProxySidecarRestartSucceeded, v1alpha2.ReasonProxySidecarRestartSucceeded, nil)
	if got := issued() - start; got != 2 {
		t.Errorf("%v restarts issued for one joining and one leaving workload, want 2", got)
	}

	// An operator restart restarts neither again.
	generations := map[string]int64{early: generation(t, cs, early, "early"), leaving: generation(t, cs, leaving, "leaver")}
	op.Stop()
	before := issued()
	reconciles := operatortest.Reconciles(t, proxysidecar.Name)
	op2 := operatortest.Start(t, opNS)
	t.Cleanup(func() { operatortest.DeleteIstio(t, timeout, opNS, "default") }) // while op2 runs
	for _, k := range []proxysidecar.Key{
		{Kind: proxysidecar.KindSummary, Namespace: opNS, Name: "default"},
		{Kind: proxysidecar.KindDeployment, Namespace: early, Name: "early"},
		{Kind: proxysidecar.KindDeployment, Namespace: leaving, Name: "leaver"},
	} {
		op2.ProxySidecar.Loop().Add(k)
	}
	cluster.WaitFor(t, 30*time.Second, "the new operator's count and workload syncs", func(context.Context) (bool, error) {
		return operatortest.Reconciles(t, proxysidecar.Name) >= reconciles+3 && op2.ProxySidecar.Loop().Len() == 0, nil
	})
	if got := issued() - before; got != 0 {
		t.Errorf("%v restarts after an operator restart, want 0", got)
	}
	for ns, gen := range generations {
		name := map[string]string{early: "early", leaving: "leaver"}[ns]
		if got := generation(t, cs, ns, name); got != gen {
			t.Errorf("Deployment %s/%s at generation %d after the operator restart, was %d", ns, name, got, gen)
		}
	}

	// Uninstall: the resource goes only after the sidecars.
	before = issued()
	operatortest.DeleteIstio(t, timeout, opNS, "default")
	pods, err := cs.CoreV1().Pods(early).List(t.Context(), metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for i := range pods.Items {
		if p := &pods.Items[i]; p.DeletionTimestamp == nil && cluster.Proxy(p) != nil {
			t.Errorf("pod %s keeps its sidecar after the Istio resource is gone", p.Name)
		}
	}
	if got := restartedFor(t, cs, early, "early"); got != "no-sidecar" {
		t.Errorf("early restarted for %q after the uninstall, want no-sidecar", got)
	}
	if got := issued() - before; got != 1 {
		t.Errorf("%v restarts for the uninstall, want 1 (only early has sidecars)", got)
	}
	if !operatortest.HasEvent(t, opNS, "default", v1alpha2.ReasonProxySidecarsRemoved) {
		t.Errorf("no %s Event on the deleted resource", v1alpha2.ReasonProxySidecarsRemoved)
	}
}

func withSidecar(p *corev1.Pod) error {
	if cluster.Proxy(p) == nil {
		return fmt.Errorf("pod %s has no sidecar", p.Name)
	}
	return nil
}

func withoutSidecar(p *corev1.Pod) error {
	if cluster.Proxy(p) != nil {
		return fmt.Errorf("pod %s has a sidecar", p.Name)
	}
	return nil
}

func deployment(t *testing.T, cs kubernetes.Interface, ns, name string) *appsv1.Deployment {
	t.Helper()
	d, err := cs.AppsV1().Deployments(ns).Get(t.Context(), name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// restartedFor is what the operator's last restart of a Deployment was for.
func restartedFor(t *testing.T, cs kubernetes.Interface, ns, name string) string {
	t.Helper()
	return deployment(t, cs, ns, name).Spec.Template.Annotations[proxysidecar.AnnotationRestartedFor]
}

func generation(t *testing.T, cs kubernetes.Interface, ns, name string) int64 {
	t.Helper()
	return deployment(t, cs, ns, name).Generation
}

// TestSidecarRemovalAcrossOperatorRestart: an operator stopped in the
// middle of removing the sidecars after an uninstall, and started again,
// finishes the removal without restarting any workload a second time, and
// only then lets the resource go.
func TestSidecarRemovalAcrossOperatorRestart(t *testing.T) {
	cluster.InstallIstioCRD(t)
	cs := cluster.Current().Clientset()
	opNS := cluster.Namespace(t, nil)
	op := operatortest.Start(t, opNS)
	// One restart every 10 s: the removal takes long enough to stop the
	// operator in its middle.
	operatortest.CreateIstio(t, opNS, "default", v1alpha2.IstioSpec{
		ProxyRestart: &v1alpha2.ProxyRestart{RestartsPerSecond: v1alpha2.NewQuantity("100m")}})
	t.Cleanup(func() { operatortest.DeleteIstio(t, timeout, opNS, "default") })
	operatortest.WaitForState(t, timeout, opNS, "default", v1alpha2.StateReady,
		v1alpha2.ConditionInstalled, metav1.ConditionTrue, v1alpha2.ReasonIstioInstallSucceeded)
	cluster.WaitIstiod(t, timeout)

	mesh := cluster.MeshNamespace(t)
	names := []string{"a", "b", "c"}
	for _, name := range names {
		if _, err := cs.AppsV1().Deployments(mesh).Create(t.Context(), cluster.NewDeployment(name, 1), metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	injectedPods(t, cs, mesh, len(names))
	generations := map[string]int64{}
	for _, name := range names {
		generations[name] = generation(t, cs, mesh, name)
	}

	if err := operatortest.Client(t).OperatorV1alpha2().Istios(opNS).Delete(t.Context(), "default", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	removed := func() int {
		n := 0
		for _, name := range names {
			if restartedFor(t, cs, mesh, name) == "no-sidecar" {
				n++
			}
		}
		return n
	}
	cluster.WaitFor(t, timeout, "the first workload restarted without its sidecar", func(context.Context) (bool, error) {
		return removed() >= 1, nil
	})
	op.Stop()
	if n := removed(); n == len(names) {
		t.Fatalf("all %d workloads restarted before the operator stopped: the removal was not interrupted", n)
	}
	if _, err := operatortest.Client(t).OperatorV1alpha2().Istios(opNS).Get(t.Context(), "default", metav1.GetOptions{}); err != nil {
		t.Fatalf("the resource went before its sidecars: %v", err)
	}

	operatortest.Start(t, opNS)
	operatortest.DeleteIstio(t, 2*timeout, opNS, "default")
	for _, name := range names {
		if got := restartedFor(t, cs, mesh, name); got != "no-sidecar" {
			t.Errorf("%s restarted for %q, want no-sidecar", name, got)
		}
		// One restart is one template change: one generation.
		if got, was := generation(t, cs, mesh, name), generations[name]; got != was+1 {
			t.Errorf("Deployment %s at generation %d, was %d before the uninstall: want exactly one restart", name, got, was)
		}
	}
}
