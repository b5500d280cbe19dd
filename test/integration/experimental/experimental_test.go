//go:build experimental

// Package experimental tests the experimental build (go test -tags
// experimental) against a real API server and the real istiod: an Istio
// resource with every experimental feature becomes Ready and Installed,
// each feature reaches what Istio reads it from (istiod's Deployment and
// running process, the mesh configuration, the sidecars the real injector
// injects, the ingress gateway's Service, ztunnel and the CNI agent), and
// turning the features off prunes what they added. The regular build's
// refusal of these features is tested in test/reliability/input.
package experimental

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/yaml"

	v1alpha2 "github.com/meshkeeper/istio-operator/pkg/apis/operator/v1alpha2"
	"github.com/meshkeeper/istio-operator/pkg/apis/operator/v1alpha2/apitest"
	"github.com/meshkeeper/istio-operator/pkg/istioclient"
	"github.com/meshkeeper/istio-operator/test/cluster"
	"github.com/meshkeeper/istio-operator/test/operatortest"
)

const timeout = 2 * time.Minute

// The istiod variables and the proxy metadata the features set.
const (
	alphaGatewayAPI     = "PILOT_ENABLE_ALPHA_GATEWAY_API"
	multiNetworkGateway = "PILOT_MULTI_NETWORK_DISCOVER_GATEWAY_API"
	dualStack           = "ISTIO_DUAL_STACK"
	ambient             = "PILOT_ENABLE_AMBIENT"
	hbone               = "ISTIO_META_ENABLE_HBONE"
)

var (
	istiodVariables = []string{alphaGatewayAPI, multiNetworkGateway, dualStack, ambient}
	proxyMetadata   = []string{dualStack, hbone}
)

// everything turns on every experimental feature.
var everything = v1alpha2.IstioSpec{Experimental: apitest.Experimental()}

func TestMain(m *testing.M) {
	cluster.Main(m, cluster.Options{Nodes: 1})
}

// TestExperimentalFeatures installs Istio once with every experimental
// feature; the subtests share that installation and check one feature
// each, and the last turns them all off again.
func TestExperimentalFeatures(t *testing.T) {
	if !istioclient.ExperimentalBuild {
		t.Fatal("the operator under test is not the experimental build")
	}
	cluster.InstallIstioCRD(t)
	ns := cluster.Namespace(t, nil)
	operatortest.Start(t, ns)
	operatortest.CreateIstio(t, ns, "default", everything)
	t.Cleanup(func() { operatortest.DeleteIstio(t, timeout, ns, "default") })
	start := time.Now()
	waitInstalled(t, ns)
	t.Logf("Istio with every experimental feature installed and Ready in %s", time.Since(start).Round(time.Millisecond))
	cluster.WaitIstiod(t, timeout)

	steps := []struct {
		name string
		run  func(t *testing.T)
	}{
		{"AlphaGatewayAPI", func(t *testing.T) { waitIstiodVariables(t, alphaGatewayAPI) }},
		{"MultiNetworkDiscoverGatewayAPI", func(t *testing.T) { waitIstiodVariables(t, multiNetworkGateway) }},
		{"DualStack", checkDualStack},
		{"Ambient", checkAmbient},
		{"InjectedSidecar", checkInjectedSidecar},
		{"TurnedOff", func(t *testing.T) { checkTurnedOff(t, ns) }},
	}
	for _, s := range steps {
		t.Run(s.name, s.run)
	}
}

// waitInstalled waits for Ready and Installed=True at the current
// generation.
func waitInstalled(t *testing.T, ns string) {
	t.Helper()
	istio := operatortest.WaitForState(t, timeout, ns, "default", v1alpha2.StateReady,
		v1alpha2.ConditionInstalled, metav1.ConditionTrue, v1alpha2.ReasonIstioInstallSucceeded)
	if c := meta.FindStatusCondition(istio.Status.Conditions, v1alpha2.ConditionReady); c == nil || c.Status != metav1.ConditionTrue {
		t.Errorf("Ready condition %+v", c)
	}
}

func checkDualStack(t *testing.T) {
	waitIstiodVariables(t, dualStack)
	waitProxyMetadata(t, dualStack)
	kube := cluster.Current().Clientset()
	svc, err := kube.CoreV1().Services(istioclient.Namespace).Get(t.Context(), istioclient.IngressGatewayName, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	// A single-stack cluster accepts PreferDualStack and allocates the one
	// family it has.
	if p := svc.Spec.IPFamilyPolicy; p == nil || *p != corev1.IPFamilyPolicyPreferDualStack || len(svc.Spec.IPFamilies) == 0 {
		t.Errorf("ingress gateway Service ipFamilyPolicy %v, ipFamilies %v; want PreferDualStack", ptr.Deref(p, ""), svc.Spec.IPFamilies)
	}
	t.Logf("ingress gateway Service: ipFamilyPolicy %s, ipFamilies %v", ptr.Deref(svc.Spec.IPFamilyPolicy, ""), svc.Spec.IPFamilies)
	// The gateway reads proxy metadata only at start: its pods carry the
	// configuration hash that includes dual stack.
	gw, err := kube.AppsV1().Deployments(istioclient.Namespace).Get(t.Context(), istioclient.IngressGatewayName, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := gw.Spec.Template.Annotations[istioclient.GatewayConfigAnnotation], istioclient.GatewayConfigHash(&everything); got != want {
		t.Errorf("gateway configuration hash %q, want %q", got, want)
	}
}

func checkAmbient(t *testing.T) {
	waitIstiodVariables(t, ambient)
	waitProxyMetadata(t, hbone)
	kube := cluster.Current().Clientset()
	ds, err := kube.AppsV1().DaemonSets(istioclient.Namespace).Get(t.Context(), "ztunnel", metav1.GetOptions{})
	if err != nil {
		t.Fatalf("ztunnel: %v", err)
	}
	st := ds.Status
	if st.DesiredNumberScheduled == 0 || st.NumberReady != st.DesiredNumberScheduled || st.UpdatedNumberScheduled != st.DesiredNumberScheduled {
		t.Errorf("ztunnel not ready on every node: %+v", st)
	}
	if got, want := operatortest.Image(t, "DaemonSet", istioclient.Namespace, "ztunnel", "istio-proxy"), "docker.io/istio/ztunnel:"+istioclient.Version; got != want {
		t.Errorf("ztunnel runs %q, want %s", got, want)
	}
	cni, err := kube.CoreV1().ConfigMaps(istioclient.Namespace).Get(t.Context(), "istio-cni-config", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got := cni.Data["AMBIENT_ENABLED"]; got != "true" {
		t.Errorf("CNI agent AMBIENT_ENABLED %q, want true", got)
	}
	if _, err := kube.RbacV1().ClusterRoles().Get(t.Context(), "istio-cni-ambient", metav1.GetOptions{}); err != nil {
		t.Errorf("the CNI agent's ambient role: %v", err)
	}
	// Unlike Istio's ambient profile, the operator keeps the ingress gateway.
	if _, err := kube.AppsV1().Deployments(istioclient.Namespace).Get(t.Context(), istioclient.IngressGatewayName, metav1.GetOptions{}); err != nil {
		t.Errorf("ingress gateway: %v", err)
	}
}

// checkInjectedSidecar asks the real injector for a sidecar (a dry-run
// pod: stored nowhere, restarted by no one): it carries the proxy metadata
// and the configuration hash that includes dual stack and ambient.
func checkInjectedSidecar(t *testing.T) {
	mesh := cluster.MeshNamespace(t)
	pod, err := cluster.Current().Clientset().CoreV1().Pods(mesh).Create(t.Context(), &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{GenerateName: "probe-", Namespace: mesh},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "registry.invalid/app:0"}}},
	}, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
	if err != nil {
		t.Fatal(err)
	}
	proxy := cluster.Proxy(pod)
	if proxy == nil {
		t.Fatalf("no sidecar injected: %v", pod.Annotations)
	}
	for _, name := range proxyMetadata {
		if got := env(proxy.Env, name); got != "true" {
			t.Errorf("sidecar %s=%q, want true", name, got)
		}
	}
	if got, want := pod.Annotations[istioclient.ProxyConfigAnnotation], istioclient.ProxyConfigHash(&everything); got != want {
		t.Errorf("sidecar configuration hash %q, want %q", got, want)
	}
}

// checkTurnedOff unsets every feature: the installation goes back to the
// regular one, ztunnel and the CNI agent's ambient role are pruned.
func checkTurnedOff(t *testing.T, ns string) {
	patch := []byte(`{"spec":{"experimental":null}}`)
	if _, err := operatortest.Client(t).OperatorV1alpha2().Istios(ns).Patch(t.Context(), "default", types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	waitInstalled(t, ns)
	kube := cluster.Current().Clientset()
	cluster.WaitFor(t, timeout, "ztunnel and the CNI agent's ambient role pruned", func(ctx context.Context) (bool, error) {
		if _, err := kube.AppsV1().DaemonSets(istioclient.Namespace).Get(ctx, "ztunnel", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
			return false, fmt.Errorf("ztunnel: %v", err)
		}
		if _, err := kube.RbacV1().ClusterRoles().Get(ctx, "istio-cni-ambient", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
			return false, fmt.Errorf("ClusterRole istio-cni-ambient: %v", err)
		}
		return true, nil
	})
	cluster.WaitFor(t, timeout, "no experimental variable in istiod or the mesh configuration", func(ctx context.Context) (bool, error) {
		deployed, running, err := istiodEnv(ctx)
		if err != nil {
			return false, err
		}
		metadata, err := meshProxyMetadata(ctx)
		if err != nil {
			return false, err
		}
		var left []string
		for _, name := range istiodVariables {
			if _, set := deployed[name]; set {
				left = append(left, "istiod Deployment "+name)
			}
			if _, set := running[name]; set {
				left = append(left, "running istiod "+name)
			}
		}
		for _, name := range proxyMetadata {
			if _, set := metadata[name]; set {
				left = append(left, "proxyMetadata "+name)
			}
		}
		if len(left) > 0 {
			return false, fmt.Errorf("still set: %s", strings.Join(left, ", "))
		}
		return true, nil
	})
}

// waitIstiodVariables waits until istiod's Deployment and the running
// istiod both have the variables set to "true".
func waitIstiodVariables(t *testing.T, names ...string) {
	t.Helper()
	cluster.WaitFor(t, timeout, fmt.Sprintf("istiod with %v", names), func(ctx context.Context) (bool, error) {
		deployed, running, err := istiodEnv(ctx)
		if err != nil {
			return false, err
		}
		for _, name := range names {
			if deployed[name] != "true" || running[name] != "true" {
				return false, fmt.Errorf("%s: %q in the Deployment, %q in the running istiod", name, deployed[name], running[name])
			}
		}
		return true, nil
	})
}

// waitProxyMetadata waits until the mesh configuration the operator
// installed sets the proxy metadata variable to "true".
func waitProxyMetadata(t *testing.T, name string) {
	t.Helper()
	cluster.WaitFor(t, timeout, "proxyMetadata "+name+" in the mesh configuration", func(ctx context.Context) (bool, error) {
		metadata, err := meshProxyMetadata(ctx)
		if err != nil {
			return false, err
		}
		if got := metadata[name]; got != "true" {
			return false, fmt.Errorf("%s=%q in %v", name, got, metadata)
		}
		return true, nil
	})
}

// istiodEnv is the environment of istiod's container in its Deployment,
// and of the real istiod process running behind it.
func istiodEnv(ctx context.Context) (deployed, running map[string]string, err error) {
	d, err := cluster.Current().Clientset().AppsV1().Deployments(istioclient.Namespace).Get(ctx, "istiod", metav1.GetOptions{})
	if err != nil {
		return nil, nil, err
	}
	deployed = map[string]string{}
	for _, c := range d.Spec.Template.Spec.Containers {
		if c.Name != "discovery" {
			continue
		}
		for _, e := range c.Env {
			deployed[e.Name] = e.Value
		}
	}
	environ, err := cluster.Current().Istiod().Environ()
	if err != nil {
		return nil, nil, err
	}
	running = map[string]string{}
	for _, kv := range environ {
		k, v, _ := strings.Cut(kv, "=")
		running[k] = v
	}
	return deployed, running, nil
}

// meshProxyMetadata is the default proxy metadata of the mesh
// configuration istiod reads (ConfigMap istio-system/istio).
func meshProxyMetadata(ctx context.Context) (map[string]string, error) {
	cm, err := cluster.Current().Clientset().CoreV1().ConfigMaps(istioclient.Namespace).Get(ctx, "istio", metav1.GetOptions{})
	if err != nil {
		return nil, err
	}
	var mesh struct {
		DefaultConfig struct {
			ProxyMetadata map[string]string `json:"proxyMetadata"`
		} `json:"defaultConfig"`
	}
	if err := yaml.Unmarshal([]byte(cm.Data["mesh"]), &mesh); err != nil {
		return nil, fmt.Errorf("the mesh configuration: %w", err)
	}
	return mesh.DefaultConfig.ProxyMetadata, nil
}

func env(vars []corev1.EnvVar, name string) string {
	i := slices.IndexFunc(vars, func(e corev1.EnvVar) bool { return e.Name == name })
	if i < 0 {
		return ""
	}
	return vars[i].Value
}
