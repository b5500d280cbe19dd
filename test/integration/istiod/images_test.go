package istiod

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	v1alpha2 "github.com/meshkeeper/istio-operator/pkg/apis/operator/v1alpha2"
	"github.com/meshkeeper/istio-operator/pkg/istioclient"
	"github.com/meshkeeper/istio-operator/pkg/operator"
	"github.com/meshkeeper/istio-operator/test/cluster"
	"github.com/meshkeeper/istio-operator/test/operatortest"
)

// TestRegistryAndPullSecrets: the operator's image defaults (its flags)
// reach every image it installs and every proxy the real istiod injects,
// with the pull secrets; the resource's spec.images then overrides them,
// which restarts each injected workload exactly once onto the new registry.
func TestRegistryAndPullSecrets(t *testing.T) {
	cluster.InstallIstioCRD(t)
	ns := cluster.Namespace(t, nil)
	operatortest.StartWith(t, ns, operatortest.Options{Configure: func(o *operator.Options) {
		o.Images = v1alpha2.Images{Registry: "flag.example.com/istio", PullSecrets: []string{"flag-pull"}}
	}})
	operatortest.CreateIstio(t, ns, "default", v1alpha2.IstioSpec{})
	t.Cleanup(func() { operatortest.DeleteIstio(t, timeout, ns, "default") })
	operatortest.WaitForState(t, timeout, ns, "default", v1alpha2.StateReady,
		v1alpha2.ConditionInstalled, metav1.ConditionTrue, v1alpha2.ReasonIstioInstallSucceeded)
	cluster.WaitIstiod(t, timeout)
	cs := cluster.Current().Clientset()

	checkInstalled(t, cs, "flag.example.com/istio", "flag-pull")
	mesh := cluster.MeshNamespace(t)
	const workloads, replicas = 3, 2
	for i := range workloads {
		if _, err := cs.AppsV1().Deployments(mesh).Create(t.Context(), cluster.NewDeployment(fmt.Sprintf("app-%d", i), replicas), metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	for _, p := range injectedPods(t, cs, mesh, workloads*replicas) {
		if err := injectedFrom(&p, "flag.example.com/istio", "flag-pull"); err != nil {
			t.Error(err)
		}
	}
	operatortest.WaitForState(t, timeout, ns, "default", v1alpha2.StateReady,
		v1alpha2.ConditionProxySidecarRestartSucceeded, metav1.ConditionTrue, v1alpha2.ReasonProxySidecarRestartSucceeded)
	issued := func() float64 {
		return operatortest.Counter(t, "istio_operator_proxy_restarts_total", map[string]string{"result": "issued"})
	}
	issuedBefore := issued()

	p := []byte(`{"spec":{"images":{"registry":"mirror.example.com:5000/istio","pullSecrets":["own-pull"]}}}`)
	if _, err := operatortest.Client(t).OperatorV1alpha2().Istios(ns).Patch(t.Context(), "default", "application/merge-patch+json", p, metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	waitLivePods(t, cs, mesh, workloads*replicas, "every pod re-injected from the resource's registry", func(p *corev1.Pod) error {
		return injectedFrom(p, "mirror.example.com:5000/istio", "own-pull")
	})
	operatortest.WaitForState(t, timeout, ns, "default", v1alpha2.StateReady,
		v1alpha2.ConditionProxySidecarRestartSucceeded, metav1.ConditionTrue, v1alpha2.ReasonProxySidecarRestartSucceeded)
	checkInstalled(t, cs, "mirror.example.com:5000/istio", "own-pull")
	if got := issued() - issuedBefore; got != workloads {
		t.Errorf("%v restarts issued, want exactly one per workload (%d)", got, workloads)
	}
}

// checkInstalled checks that Istio's workloads run images of the registry
// and that its ServiceAccounts carry the pull secret.
func checkInstalled(t *testing.T, cs kubernetes.Interface, registry, secret string) {
	t.Helper()
	cluster.WaitFor(t, timeout, "Istio's images from "+registry, func(ctx context.Context) (bool, error) {
		var specs []corev1.PodSpec
		for _, name := range []string{"istiod", istioclient.IngressGatewayName} {
			d, err := cs.AppsV1().Deployments(istioclient.Namespace).Get(ctx, name, metav1.GetOptions{})
			if err != nil {
				return false, err
			}
			specs = append(specs, d.Spec.Template.Spec)
		}
		cni, err := cs.AppsV1().DaemonSets(istioclient.Namespace).Get(ctx, "istio-cni-node", metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		specs = append(specs, cni.Spec.Template.Spec)
		for _, s := range specs {
			for _, c := range append(s.InitContainers, s.Containers...) {
				if !strings.HasPrefix(c.Image, registry+"/") {
					return false, fmt.Errorf("container %s runs %s", c.Name, c.Image)
				}
			}
		}
		for _, name := range []string{"istiod", "istio-ingressgateway-service-account", "istio-cni"} {
			sa, err := cs.CoreV1().ServiceAccounts(istioclient.Namespace).Get(ctx, name, metav1.GetOptions{})
			if err != nil {
				return false, err
			}
			if !slices.Contains(secretNames(sa.ImagePullSecrets), secret) {
				return false, fmt.Errorf("ServiceAccount %s pull secrets %v", name, sa.ImagePullSecrets)
			}
		}
		return true, nil
	})
}

// injectedFrom says how an injected pod differs from one injected from
// the registry with the pull secret, or nil.
func injectedFrom(p *corev1.Pod, registry, secret string) error {
	proxy := cluster.Proxy(p)
	if proxy == nil {
		return fmt.Errorf("pod %s has no istio-proxy", p.Name)
	}
	if want := registry + "/proxyv2:" + istioclient.Version; proxy.Image != want {
		return fmt.Errorf("pod %s: proxy image %s, want %s", p.Name, proxy.Image, want)
	}
	for _, c := range p.Spec.InitContainers {
		if strings.HasPrefix(c.Name, "istio-") && !strings.HasPrefix(c.Image, registry+"/") {
			return fmt.Errorf("pod %s: init container %s runs %s", p.Name, c.Name, c.Image)
		}
	}
	if !slices.Contains(secretNames(p.Spec.ImagePullSecrets), secret) {
		return fmt.Errorf("pod %s: pull secrets %v, want %s", p.Name, p.Spec.ImagePullSecrets, secret)
	}
	return nil
}

func secretNames(refs []corev1.LocalObjectReference) []string {
	names := make([]string, len(refs))
	for i, r := range refs {
		names[i] = r.Name
	}
	return names
}
