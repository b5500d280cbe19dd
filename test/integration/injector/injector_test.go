// Package injector_test checks the sidecar-injector stand-in (test/injector)
// against a real API server: that it injects pods created by workload
// controllers in labelled namespaces, leaves other namespaces alone, and that
// restarting a workload gives its pods the proxy of the configuration then in
// force, which is what the operator's upgrade tests rely on.
package injector_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"

	"github.com/meshkeeper/istio-operator/test/cluster"
	"github.com/meshkeeper/istio-operator/test/injector"
)

const (
	proxyImage     = "docker.io/istio/proxyv2:1.31.1"
	rolloutTimeout = 60 * time.Second
)

func TestMain(m *testing.M) {
	cluster.Main(m, cluster.Options{})
}

// startStandin serves the stand-in for the test and registers it with the
// cluster, undoing both when the test ends.
func startStandin(t *testing.T, source injector.ConfigSource) (*injector.Server, kubernetes.Interface) {
	t.Helper()
	cs := cluster.Current().Clientset()
	return injector.ServeForTest(t, cs, source), cs
}

// sidecarStatus is the sidecar.istio.io/status annotation.
type sidecarStatus struct {
	InitContainers []string `json:"initContainers"`
	Containers     []string `json:"containers"`
	Volumes        []string `json:"volumes"`
	Revision       string   `json:"revision"`
}

func proxyOf(pod *corev1.Pod) *corev1.Container {
	for i := range pod.Spec.Containers {
		if pod.Spec.Containers[i].Name == injector.ProxyContainerName {
			return &pod.Spec.Containers[i]
		}
	}
	return nil
}

// checkInjected fails unless pod carries the classic sidecar of image.
func checkInjected(t *testing.T, pod *corev1.Pod, image string) {
	t.Helper()
	proxy := proxyOf(pod)
	if proxy == nil {
		t.Fatalf("pod %s has no istio-proxy container: %v", pod.Name, containerNames(pod.Spec.Containers))
	}
	if proxy.Image != image {
		t.Errorf("pod %s: istio-proxy image = %q, want %q", pod.Name, proxy.Image, image)
	}
	if got := containerNames(pod.Spec.Containers); strings.Join(got, ",") != "app,istio-proxy" {
		t.Errorf("pod %s: containers = %v, want [app istio-proxy]", pod.Name, got)
	}
	if got := containerNames(pod.Spec.InitContainers); strings.Join(got, ",") != "istio-init" {
		t.Errorf("pod %s: init containers = %v, want [istio-init]", pod.Name, got)
	}
	if q := proxy.Resources.Requests[corev1.ResourceCPU]; q.String() != "100m" {
		t.Errorf("pod %s: istio-proxy CPU request = %s, want 100m", pod.Name, q.String())
	}
	raw, ok := pod.Annotations["sidecar.istio.io/status"]
	if !ok {
		t.Fatalf("pod %s has no sidecar.istio.io/status annotation", pod.Name)
	}
	var status sidecarStatus
	if err := json.Unmarshal([]byte(raw), &status); err != nil {
		t.Fatalf("pod %s: status annotation %q: %v", pod.Name, raw, err)
	}
	if strings.Join(status.Containers, ",") != "istio-proxy" || strings.Join(status.InitContainers, ",") != "istio-init" ||
		status.Revision != "default" || len(status.Volumes) == 0 {
		t.Errorf("pod %s: status annotation = %s", pod.Name, raw)
	}
	if pod.Labels["security.istio.io/tlsMode"] != "istio" {
		t.Errorf("pod %s: labels = %v, want security.istio.io/tlsMode=istio", pod.Name, pod.Labels)
	}
}

func containerNames(cs []corev1.Container) []string {
	var out []string
	for _, c := range cs {
		out = append(out, c.Name)
	}
	return out
}

// waitRolledOut waits until the Deployment is complete and has exactly its
// replicas as pods, all of whose istio-proxy containers run image, and
// returns those pods.
func waitRolledOut(t *testing.T, cs kubernetes.Interface, ns, name, image string) []corev1.Pod {
	t.Helper()
	var pods []corev1.Pod
	what := fmt.Sprintf("Deployment %s/%s to run only pods with proxy %s", ns, name, image)
	cluster.WaitFor(t, rolloutTimeout, what, func(ctx context.Context) (bool, error) {
		d, err := cs.AppsV1().Deployments(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		want := ptr.Deref(d.Spec.Replicas, 1)
		st := d.Status
		if st.ObservedGeneration < d.Generation || st.Replicas != want || st.UpdatedReplicas != want ||
			st.AvailableReplicas != want || st.UnavailableReplicas != 0 {
			return false, nil
		}
		list, err := cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{
			LabelSelector: labels.SelectorFromSet(d.Spec.Selector.MatchLabels).String(),
		})
		if err != nil {
			return false, err
		}
		if int32(len(list.Items)) != want {
			return false, nil
		}
		for i := range list.Items {
			if p := proxyOf(&list.Items[i]); p == nil || p.Image != image {
				return false, nil
			}
		}
		pods = list.Items
		return true, nil
	})
	return pods
}

func restart(t *testing.T, cs kubernetes.Interface, ns, name string) {
	t.Helper()
	patch := fmt.Sprintf(`{"spec":{"template":{"metadata":{"annotations":{"kubectl.kubernetes.io/restartedAt":%q}}}}}`,
		time.Now().Format(time.RFC3339Nano))
	if _, err := cs.AppsV1().Deployments(ns).Patch(t.Context(), name, types.StrategicMergePatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
}

func TestDeploymentPodsGetSidecar(t *testing.T) {
	s, cs := startStandin(t, injector.Static(injector.DefaultConfig(proxyImage)))
	ns := s.Namespace(t, cs)

	if _, err := cs.AppsV1().Deployments(ns).Create(t.Context(), cluster.NewDeployment("web", 2), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	// kwok runs injected pods (init containers included) like any other:
	// the Deployment completes.
	for _, pod := range waitRolledOut(t, cs, ns, "web", proxyImage) {
		checkInjected(t, &pod, proxyImage)
	}
}

// TestNativeSidecarWithCNI checks that the API server accepts, and kwok
// runs, pods with the proxy as a native sidecar (an init container with
// restartPolicy Always) behind istio-validation.
func TestNativeSidecarWithCNI(t *testing.T) {
	cfg := injector.DefaultConfig(proxyImage)
	cfg.NativeSidecar, cfg.CNI = true, true
	s, cs := startStandin(t, injector.Static(cfg))
	ns := s.Namespace(t, cs)
	if _, err := cs.AppsV1().Deployments(ns).Create(t.Context(), cluster.NewDeployment("web", 1), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	var pod corev1.Pod
	cluster.WaitFor(t, rolloutTimeout, "Deployment "+ns+"/web to be available", func(ctx context.Context) (bool, error) {
		d, err := cs.AppsV1().Deployments(ns).Get(ctx, "web", metav1.GetOptions{})
		if err != nil || d.Status.AvailableReplicas != 1 || d.Status.Replicas != 1 {
			return false, err
		}
		pods, err := cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "app=web"})
		if err != nil || len(pods.Items) != 1 {
			return false, err
		}
		pod = pods.Items[0]
		return true, nil
	})
	if got := containerNames(pod.Spec.InitContainers); strings.Join(got, ",") != "istio-validation,istio-proxy" {
		t.Errorf("init containers = %v, want [istio-validation istio-proxy]", got)
	}
	if got := containerNames(pod.Spec.Containers); strings.Join(got, ",") != "app" {
		t.Errorf("containers = %v, want [app]", got)
	}
	proxy := pod.Spec.InitContainers[len(pod.Spec.InitContainers)-1]
	if proxy.Image != proxyImage || ptr.Deref(proxy.RestartPolicy, "") != corev1.ContainerRestartPolicyAlways {
		t.Errorf("istio-proxy image %q, restartPolicy %v; want %q, Always", proxy.Image, proxy.RestartPolicy, proxyImage)
	}
	if pod.Status.Phase != corev1.PodRunning {
		t.Errorf("pod phase = %s, want Running", pod.Status.Phase)
	}
}

func TestOtherNamespacesUntouched(t *testing.T) {
	s, cs := startStandin(t, injector.Static(injector.DefaultConfig(proxyImage)))
	// Once the stand-in is live (it injects in a labelled namespace), it
	// still leaves pods elsewhere, and pods that opt out, alone.
	labelled := s.Namespace(t, cs)
	plain := cluster.Namespace(t, nil)
	for _, tc := range []struct{ ns, name string }{{plain, "plain"}, {labelled, "opted-out"}} {
		pod := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: tc.name},
			Spec: corev1.PodSpec{
				NodeSelector: map[string]string{cluster.NodeTypeLabel: "kwok"},
				Containers:   []corev1.Container{{Name: "app", Image: "registry.k8s.io/pause:3.10"}},
			},
		}
		if tc.name == "opted-out" {
			pod.Labels = map[string]string{"sidecar.istio.io/inject": "false"}
		}
		got, err := cs.CoreV1().Pods(tc.ns).Create(t.Context(), pod, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if names := containerNames(got.Spec.Containers); len(names) != 1 || len(got.Spec.InitContainers) != 0 {
			t.Errorf("%s pod: containers %v, init containers %v; want only app", tc.name, names, containerNames(got.Spec.InitContainers))
		}
		if _, ok := got.Annotations["sidecar.istio.io/status"]; ok {
			t.Errorf("%s pod carries sidecar.istio.io/status", tc.name)
		}
	}
}

func TestRestartGivesNewProxy(t *testing.T) {
	var image atomic.Pointer[string]
	image.Store(ptr.To(proxyImage))
	s, cs := startStandin(t, func(context.Context) (injector.Config, error) {
		return injector.DefaultConfig(*image.Load()), nil
	})
	ns := s.Namespace(t, cs)
	if _, err := cs.AppsV1().Deployments(ns).Create(t.Context(), cluster.NewDeployment("web", 2), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitRolledOut(t, cs, ns, "web", proxyImage)

	const upgraded = "docker.io/istio/proxyv2:1.31.2"
	image.Store(ptr.To(upgraded))
	restart(t, cs, ns, "web")
	for _, pod := range waitRolledOut(t, cs, ns, "web", upgraded) {
		checkInjected(t, &pod, upgraded)
	}
}

// TestFollowsInstalledIstio reads the injector configuration from the
// cluster, shaped as Istio 1.31 stores it, and follows an upgrade of it.
func TestFollowsInstalledIstio(t *testing.T) {
	s, cs := startStandin(t, injector.FromCluster(cluster.Current().Clientset()))
	createIstioConfig(t, cs, "1.31.1")
	ns := s.Namespace(t, cs)

	if _, err := cs.AppsV1().Deployments(ns).Create(t.Context(), cluster.NewDeployment("web", 2), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	for _, pod := range waitRolledOut(t, cs, ns, "web", proxyImage) {
		checkInjected(t, &pod, proxyImage)
	}

	cm := injectorConfigMap("1.31.2")
	if _, err := cs.CoreV1().ConfigMaps(injector.IstioNamespace).Update(t.Context(), cm, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	restart(t, cs, ns, "web")
	for _, pod := range waitRolledOut(t, cs, ns, "web", "docker.io/istio/proxyv2:1.31.2") {
		checkInjected(t, &pod, "docker.io/istio/proxyv2:1.31.2")
	}
}

// injectorConfigMap is istio-system/istio-sidecar-injector as the istiod
// chart writes it for a release install of the given tag, less the entries
// the stand-in does not read and the "config" key with the templates.
func injectorConfigMap(tag string) *corev1.ConfigMap {
	values := map[string]any{
		"global": map[string]any{
			"hub":     "docker.io/istio",
			"tag":     tag,
			"variant": "",
			"proxy": map[string]any{
				"image": "proxyv2",
				"resources": map[string]any{
					"requests": map[string]any{"cpu": "100m", "memory": "128Mi"},
					"limits":   map[string]any{"cpu": "2000m", "memory": "1024Mi"},
				},
			},
			"proxy_init": map[string]any{"image": "proxyv2"},
		},
		"pilot":                  map[string]any{"cni": map[string]any{"enabled": false, "provider": "default"}, "env": map[string]any{}},
		"revision":               "",
		"sidecarInjectorWebhook": map[string]any{"rewriteAppHTTPProbe": true},
	}
	js, err := json.MarshalIndent(values, "", "  ")
	if err != nil {
		panic(err)
	}
	return &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{
			Name: "istio-sidecar-injector", Namespace: injector.IstioNamespace,
			Labels: map[string]string{"istio.io/rev": "default"},
		},
		Data: map[string]string{"values": string(js)},
	}
}

func createIstioConfig(t *testing.T, cs kubernetes.Interface, tag string) {
	t.Helper()
	_, err := cs.CoreV1().Namespaces().Create(t.Context(), &corev1.Namespace{
		ObjectMeta: metav1.ObjectMeta{Name: injector.IstioNamespace},
	}, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		err := cs.CoreV1().Namespaces().Delete(ctx, injector.IstioNamespace, metav1.DeleteOptions{})
		if err != nil && !apierrors.IsNotFound(err) {
			t.Error(err)
		}
	})
	if _, err := cs.CoreV1().ConfigMaps(injector.IstioNamespace).Create(t.Context(), injectorConfigMap(tag), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
}
