// Package istiod tests the operator against the real istiod 1.31.1 that the
// harness runs behind the installed one: the API server calls its webhooks
// through the Services the operator installed, it injects real sidecars,
// validates Istio resources, serves the mesh configuration the Istio
// resource asked for, and its own run-time writes cause no repair.
package istiod

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"strings"
	"testing"
	"time"

	hcm "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/protobuf/types/known/structpb"
	"istio.io/istio/manifests"
	"istio.io/istio/pkg/adsc"
	istiomodel "istio.io/istio/pkg/model"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/yaml"

	v1alpha2 "github.com/meshkeeper/istio-operator/pkg/apis/operator/v1alpha2"
	"github.com/meshkeeper/istio-operator/pkg/istioclient"
	"github.com/meshkeeper/istio-operator/test/cluster"
	"github.com/meshkeeper/istio-operator/test/operatortest"
)

const timeout = 2 * time.Minute

func TestMain(m *testing.M) {
	cluster.Main(m, cluster.Options{Nodes: 1})
}

// install starts the operator for a fresh namespace, creates the Istio
// resource, waits until it is Ready and the real istiod serves, and
// uninstalls at the end.
func install(t *testing.T, spec v1alpha2.IstioSpec) string {
	t.Helper()
	cluster.InstallIstioCRD(t)
	ns := cluster.Namespace(t, nil)
	operatortest.Start(t, ns)
	operatortest.CreateIstio(t, ns, "default", spec)
	t.Cleanup(func() { operatortest.DeleteIstio(t, timeout, ns, "default") })
	operatortest.WaitForState(t, timeout, ns, "default", v1alpha2.StateReady,
		v1alpha2.ConditionInstalled, metav1.ConditionTrue, v1alpha2.ReasonIstioInstallSucceeded)
	cluster.WaitIstiod(t, timeout)
	return ns
}

// injectedPods waits for n live pods in ns, all with a proxy, and returns them.
func injectedPods(t *testing.T, cs kubernetes.Interface, ns string, n int) []corev1.Pod {
	t.Helper()
	var pods []corev1.Pod
	cluster.WaitFor(t, timeout, fmt.Sprintf("%d injected pods in %s", n, ns), func(ctx context.Context) (bool, error) {
		list, err := cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			return false, err
		}
		pods = pods[:0]
		for _, p := range list.Items {
			if p.DeletionTimestamp != nil {
				continue
			}
			if cluster.Proxy(&p) == nil {
				return false, fmt.Errorf("pod %s has no istio-proxy", p.Name)
			}
			pods = append(pods, p)
		}
		if len(pods) != n {
			return false, fmt.Errorf("%d pods", len(pods))
		}
		return true, nil
	})
	return pods
}

// waitLivePods waits until ns has n pods not being deleted and check
// accepts each of them.
func waitLivePods(t *testing.T, cs kubernetes.Interface, ns string, n int, what string, check func(*corev1.Pod) error) {
	t.Helper()
	cluster.WaitFor(t, timeout, what, func(ctx context.Context) (bool, error) {
		list, err := cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			return false, err
		}
		live := 0
		for i := range list.Items {
			p := &list.Items[i]
			if p.DeletionTimestamp != nil {
				continue
			}
			live++
			if err := check(p); err != nil {
				return false, err
			}
		}
		if live != n {
			return false, fmt.Errorf("%d live pods", live)
		}
		return true, nil
	})
}

// TestInjectionThroughInstalledWebhook: a pod created in a namespace with
// istio-injection=enabled gets the sidecar of Istio 1.31.1 from the real
// istiod, through the MutatingWebhookConfiguration the operator installed,
// unchanged, with the proxy-configuration annotation the operator asks for.
func TestInjectionThroughInstalledWebhook(t *testing.T) {
	install(t, v1alpha2.IstioSpec{})
	cs := cluster.Current().Clientset()

	mwc, err := cs.AdmissionregistrationV1().MutatingWebhookConfigurations().Get(t.Context(), "istio-sidecar-injector", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, w := range mwc.Webhooks {
		if w.ClientConfig.Service == nil || w.ClientConfig.Service.Name != "istiod" || w.ClientConfig.URL != nil {
			t.Errorf("webhook %s calls %+v, want Service istio-system/istiod as installed", w.Name, w.ClientConfig)
		}
	}

	ns := cluster.MeshNamespace(t)
	if _, err := cs.AppsV1().Deployments(ns).Create(t.Context(), cluster.NewDeployment("app", 2), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	for _, p := range injectedPods(t, cs, ns, 2) {
		proxy := cluster.Proxy(&p)
		if want := "docker.io/istio/proxyv2:" + istioclient.Version; proxy.Image != want {
			t.Errorf("pod %s: proxy image %s, want %s", p.Name, proxy.Image, want)
		}
		if p.Annotations["sidecar.istio.io/status"] == "" {
			t.Errorf("pod %s: no sidecar.istio.io/status annotation: not injected by istiod", p.Name)
		}
		if p.Annotations[istioclient.ProxyConfigAnnotation] == "" {
			t.Errorf("pod %s: no %s annotation (sidecarInjectorWebhook.injectedAnnotations)", p.Name, istioclient.ProxyConfigAnnotation)
		}
		if p.Labels["security.istio.io/tlsMode"] != "istio" {
			t.Errorf("pod %s: labels %v, want security.istio.io/tlsMode=istio", p.Name, p.Labels)
		}
	}
}

// TestValidationWebhookRejectsInvalidResources: once istiod serves its
// validation webhook, an invalid VirtualService is refused by the API
// server with istiod's message, and a valid one is accepted.
func TestValidationWebhookRejectsInvalidResources(t *testing.T) {
	install(t, v1alpha2.IstioSpec{})
	ns := cluster.Namespace(t, nil)
	dyn := dynamic.NewForConfigOrDie(cluster.Current().Config)
	vs := dyn.Resource(schema.GroupVersionResource{Group: "networking.istio.io", Version: "v1", Resource: "virtualservices"}).Namespace(ns)

	virtualService := func(name, regex string) *unstructured.Unstructured {
		return &unstructured.Unstructured{Object: map[string]any{
			"apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
			"metadata": map[string]any{"name": name},
			"spec": map[string]any{
				"hosts": []any{"reviews"},
				"http": []any{map[string]any{
					"match": []any{map[string]any{"uri": map[string]any{"regex": regex}}},
					"route": []any{map[string]any{"destination": map[string]any{"host": "reviews"}}},
				}},
			},
		}}
	}
	// istiod switches its webhook to failurePolicy Fail once it validates;
	// until then the API server may call it before it serves.
	cluster.WaitFor(t, timeout, "an invalid VirtualService refused by istiod", func(ctx context.Context) (bool, error) {
		_, err := vs.Create(ctx, virtualService("bad-regex", "[unclosed"), metav1.CreateOptions{})
		if err == nil {
			_ = vs.Delete(ctx, "bad-regex", metav1.DeleteOptions{})
			return false, fmt.Errorf("accepted")
		}
		if !strings.Contains(err.Error(), "validation.istio.io") || !strings.Contains(err.Error(), "regex") {
			return false, fmt.Errorf("refused, but not by istiod's validation: %v", err)
		}
		t.Logf("refused: %v", err)
		return true, nil
	})
	if _, err := vs.Create(t.Context(), virtualService("good-regex", "^/reviews/[0-9]+$"), metav1.CreateOptions{}); err != nil {
		t.Errorf("a valid VirtualService was refused: %v", err)
	}
}

// TestIstiodsOwnWritesCauseNoRepair: istiod patches the caBundle of both
// webhook configurations, turns its validation webhook's failurePolicy to
// Fail, creates its CA Secret and the istio-ca-root-cert ConfigMaps. None of
// that is drift: the operator writes nothing and restarts nothing for it.
func TestIstiodsOwnWritesCauseNoRepair(t *testing.T) {
	ns := install(t, v1alpha2.IstioSpec{})
	cs := cluster.Current().Clientset()
	var before map[string]float64
	restartsBefore := operatortest.Counter(t, "istio_operator_proxy_restarts_total", nil)

	cluster.WaitFor(t, timeout, "istiod's run-time writes", func(ctx context.Context) (bool, error) {
		mwc, err := cs.AdmissionregistrationV1().MutatingWebhookConfigurations().Get(ctx, "istio-sidecar-injector", metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		for _, w := range mwc.Webhooks {
			if len(w.ClientConfig.CABundle) == 0 {
				return false, fmt.Errorf("injection webhook %s has no caBundle yet", w.Name)
			}
		}
		vwc, err := cs.AdmissionregistrationV1().ValidatingWebhookConfigurations().Get(ctx, "istio-validator-istio-system", metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		for _, w := range vwc.Webhooks {
			if len(w.ClientConfig.CABundle) == 0 || w.FailurePolicy == nil || *w.FailurePolicy != admissionregistrationv1.Fail {
				return false, fmt.Errorf("validation webhook %s: caBundle %d bytes, failurePolicy %v", w.Name, len(w.ClientConfig.CABundle), ptr.Deref(w.FailurePolicy, ""))
			}
		}
		if _, err := cs.CoreV1().Secrets("istio-system").Get(ctx, "istio-ca-secret", metav1.GetOptions{}); err != nil {
			return false, err
		}
		if _, err := cs.CoreV1().ConfigMaps(ns).Get(ctx, "istio-ca-root-cert", metav1.GetOptions{}); err != nil {
			return false, err
		}
		before = operatortest.WriteCounts(t)
		return true, nil
	})

	// The operator's periodic reconcile and every watch event istiod's
	// writes caused have had a full drift interval to act.
	quiet := 20 * time.Second
	deadline := time.Now().Add(quiet)
	cluster.WaitFor(t, quiet+timeout, "a quiet window with no operator write", func(context.Context) (bool, error) {
		if w := operatortest.NewWrites(t, before); len(w) > 0 {
			return false, fmt.Errorf("operator wrote after istiod's writes: %v", w)
		}
		return time.Now().After(deadline), nil
	})
	if w := operatortest.NewWrites(t, before); len(w) > 0 {
		t.Errorf("the operator wrote after istiod's own writes: %v", w)
	}
	if got := operatortest.Counter(t, "istio_operator_proxy_restarts_total", nil); got != restartsBefore {
		t.Errorf("proxy restarts went from %v to %v", restartsBefore, got)
	}
}

// meshConfig is istiod's active mesh configuration, from /debug/mesh.
func meshConfig(ctx context.Context) (map[string]any, error) {
	addrs, ok := cluster.Current().Istiod().Running()
	if !ok {
		return nil, fmt.Errorf("istiod is not running")
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addrs.HTTP+"/debug/mesh", nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("/debug/mesh: %s: %s", resp.Status, raw)
	}
	var out map[string]any
	return out, json.Unmarshal(raw, &out)
}

func lookup(m map[string]any, path ...string) any {
	var v any = m
	for _, p := range path {
		mm, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = mm[p]
	}
	return v
}

// TestMeshConfigReachesIstiod: what the Istio resource sets is what istiod
// runs with, read from istiod's own /debug/mesh: trusted proxies, client
// certificate forwarding, trust domain, the ext-authz provider, and a change
// of them.
func TestMeshConfigReachesIstiod(t *testing.T) {
	xfcc := v1alpha2.XFCCStrategy("SANITIZE")
	ns := install(t, v1alpha2.IstioSpec{Config: v1alpha2.Config{
		NumTrustedProxies:        ptr.To[int64](2),
		ForwardClientCertDetails: &xfcc,
		TrustDomain:              ptr.To("mesh.example.com"),
		Authorizers: []*v1alpha2.Authorizer{{
			Name: "ext-authz", Service: "authz.auth.svc.cluster.local", Port: 9000,
		}},
	}})

	want := func(trusted float64) func(ctx context.Context) (bool, error) {
		return func(ctx context.Context) (bool, error) {
			mc, err := meshConfig(ctx)
			if err != nil {
				return false, err
			}
			var problems []string
			if got := lookup(mc, "defaultConfig", "gatewayTopology", "numTrustedProxies"); got != trusted {
				problems = append(problems, fmt.Sprintf("numTrustedProxies %v", got))
			}
			if got := lookup(mc, "defaultConfig", "gatewayTopology", "forwardClientCertDetails"); got != "SANITIZE" {
				problems = append(problems, fmt.Sprintf("forwardClientCertDetails %v", got))
			}
			if got := lookup(mc, "trustDomain"); got != "mesh.example.com" {
				problems = append(problems, fmt.Sprintf("trustDomain %v", got))
			}
			providers, _ := lookup(mc, "extensionProviders").([]any)
			found := false
			for _, p := range providers {
				pm, _ := p.(map[string]any)
				if pm["name"] == "ext-authz" && lookup(pm, "envoyExtAuthzHttp", "service") == "authz.auth.svc.cluster.local" {
					found = true
				}
			}
			if !found {
				problems = append(problems, fmt.Sprintf("no ext-authz provider in %v", providers))
			}
			if len(problems) > 0 {
				return false, fmt.Errorf("istiod's mesh config: %s", strings.Join(problems, "; "))
			}
			return true, nil
		}
	}
	cluster.WaitFor(t, timeout, "istiod's mesh config as the Istio resource sets it", want(2))
	starts := cluster.Current().Istiod().Starts()

	p := []byte(`{"spec":{"config":{"numTrustedProxies":3}}}`)
	if _, err := operatortest.Client(t).OperatorV1alpha2().Istios(ns).Patch(t.Context(), "default", "application/merge-patch+json", p, metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	cluster.WaitFor(t, timeout, "istiod's mesh config after the change", want(3))
	if got := cluster.Current().Istiod().Starts(); got != starts {
		t.Errorf("istiod started %d more times; a mesh config change reaches it without a restart", got-starts)
	}
}

// compatibilityEnv is what Istio's compatibility profile for the previous
// minor sets in istiod's environment, read from the charts of the pinned
// Istio module, so that the expectation follows the version compiled in.
func compatibilityEnv(t *testing.T) map[string]string {
	t.Helper()
	v := istioclient.MustParseVersion(istioclient.Version)
	name := fmt.Sprintf("charts/istio-control/istio-discovery/files/profile-compatibility-version-%d.%d.yaml", v.Major, v.Minor-1)
	raw, err := fs.ReadFile(manifests.BuiltinOrDir(""), name)
	if err != nil {
		t.Fatal(err)
	}
	var profile struct {
		Pilot struct {
			Env map[string]string `json:"env"`
		} `json:"pilot"`
	}
	if err := yaml.Unmarshal(raw, &profile); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	if len(profile.Pilot.Env) == 0 {
		t.Fatalf("%s sets no istiod environment; this test needs another property to check", name)
	}
	return profile.Pilot.Env
}

// istiodEnv is the environment of the running istiod process.
func istiodEnv() (map[string]string, error) {
	environ, err := cluster.Current().Istiod().Environ()
	if err != nil {
		return nil, err
	}
	env := make(map[string]string, len(environ))
	for _, kv := range environ {
		k, v, _ := strings.Cut(kv, "=")
		env[k] = v
	}
	return env, nil
}

// TestCompatibilityModeReachesIstiod: compatibilityMode puts the previous
// minor's behaviour flags into the environment of the running istiod, and
// turning it off takes them out again.
func TestCompatibilityModeReachesIstiod(t *testing.T) {
	want := compatibilityEnv(t)
	ns := install(t, v1alpha2.IstioSpec{CompatibilityMode: true})

	flags := func(on bool) func(ctx context.Context) (bool, error) {
		return func(ctx context.Context) (bool, error) {
			env, err := istiodEnv()
			if err != nil {
				return false, err
			}
			var problems []string
			for k, v := range want {
				got, set := env[k]
				switch {
				case on && got != v:
					problems = append(problems, fmt.Sprintf("%s=%q, want %q", k, got, v))
				case !on && set && got == v:
					problems = append(problems, fmt.Sprintf("%s=%q still set", k, got))
				}
			}
			if len(problems) > 0 {
				return false, fmt.Errorf("istiod's environment: %s", strings.Join(problems, "; "))
			}
			return true, nil
		}
	}
	cluster.WaitFor(t, timeout, "compatibility flags in the running istiod", flags(true))

	p := []byte(`{"spec":{"compatibilityMode":false}}`)
	if _, err := operatortest.Client(t).OperatorV1alpha2().Istios(ns).Patch(t.Context(), "default", "application/merge-patch+json", p, metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	cluster.WaitFor(t, timeout, "no compatibility flags in the running istiod", flags(false))
}

// proxyCPU is the CPU request of the pod's proxy, as istiod injected it.
func proxyCPU(p *corev1.Pod) string {
	if c := cluster.Proxy(p); c != nil {
		return c.Resources.Requests.Cpu().String()
	}
	return ""
}

func hasEnv(c *corev1.Container, name, value string) bool {
	for _, e := range c.Env {
		if e.Name == name && e.Value == value {
			return true
		}
	}
	return false
}

// TestProxyUpgradeThroughRealInjector: after a change of the proxies'
// resources and DNS proxying, each workload is restarted once, and the pods the real istiod
// injects then carry the new resources and the new proxy-configuration
// hash, so nothing is restarted again.
func TestProxyUpgradeThroughRealInjector(t *testing.T) {
	ns := install(t, v1alpha2.IstioSpec{})
	cs := cluster.Current().Clientset()
	mesh := cluster.MeshNamespace(t)
	const workloads, replicas = 3, 2
	for i := range workloads {
		if _, err := cs.AppsV1().Deployments(mesh).Create(t.Context(), cluster.NewDeployment(fmt.Sprintf("app-%d", i), replicas), metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	before := injectedPods(t, cs, mesh, workloads*replicas)
	oldHash := before[0].Annotations[istioclient.ProxyConfigAnnotation]
	if oldCPU := proxyCPU(&before[0]); oldCPU == "30m" {
		t.Fatalf("the default proxy already requests %s", oldCPU)
	}
	issued := func() float64 {
		return operatortest.Counter(t, "istio_operator_proxy_restarts_total", map[string]string{"result": "issued"})
	}
	issuedBefore := issued()

	// Resources show in the pod's spec; DNS proxying only in what the
	// injector wrote, which the proxy-configuration hash stands for.
	p := []byte(`{"spec":{"config":{"enableDNSProxying":true},"components":{"proxy":{"k8s":{"resources":{"requests":{"cpu":"30m"}}}}}}}`)
	if _, err := operatortest.Client(t).OperatorV1alpha2().Istios(ns).Patch(t.Context(), "default", "application/merge-patch+json", p, metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	var newHash string
	waitLivePods(t, cs, mesh, workloads*replicas, "every pod re-injected with the new proxy resources", func(p *corev1.Pod) error {
		if got := proxyCPU(p); got != "30m" {
			return fmt.Errorf("pod %s: proxy CPU %s", p.Name, got)
		}
		if !hasEnv(cluster.Proxy(p), "ISTIO_META_DNS_CAPTURE", "true") {
			return fmt.Errorf("pod %s: proxy without ISTIO_META_DNS_CAPTURE=true", p.Name)
		}
		h := p.Annotations[istioclient.ProxyConfigAnnotation]
		if h == "" || h == oldHash || (newHash != "" && h != newHash) {
			return fmt.Errorf("pod %s: proxy-configuration %q (before %q)", p.Name, h, oldHash)
		}
		newHash = h
		return nil
	})
	operatortest.WaitForState(t, timeout, ns, "default", v1alpha2.StateReady,
		v1alpha2.ConditionProxySidecarRestartSucceeded, metav1.ConditionTrue, v1alpha2.ReasonProxySidecarRestartSucceeded)
	if got := issued() - issuedBefore; got != workloads {
		t.Errorf("%v restarts issued, want exactly one per workload (%d)", got, workloads)
	}
}

// TestMeshConfigIstiodRejectsIsRefused: a trust domain the schema lets
// through (Kyma's pattern allows an underscore) but istiod refuses when it
// loads the mesh configuration is reported on the resource as invalid, with
// the field named, and nothing is installed: installed, istiod would have
// kept running on its previous configuration and only logged.
func TestMeshConfigIstiodRejectsIsRefused(t *testing.T) {
	cluster.InstallIstioCRD(t)
	ns := cluster.Namespace(t, nil)
	operatortest.Start(t, ns)
	operatortest.CreateIstio(t, ns, "default", v1alpha2.IstioSpec{Config: v1alpha2.Config{TrustDomain: ptr.To("mesh_domain.local")}})
	t.Cleanup(func() { operatortest.DeleteIstio(t, timeout, ns, "default") })
	istio := operatortest.WaitForState(t, timeout, ns, "default", v1alpha2.StateError,
		v1alpha2.ConditionInstalled, metav1.ConditionFalse, v1alpha2.ReasonValidationFailed)
	c := meta.FindStatusCondition(istio.Status.Conditions, v1alpha2.ConditionInstalled)
	if !strings.Contains(c.Message, `trustDomain: trust domain name "mesh_domain.local" invalid`) {
		t.Errorf("Installed condition message %q does not name the trust domain", c.Message)
	}
	if !operatortest.HasEvent(t, ns, "default", v1alpha2.ReasonValidationFailed) {
		t.Error("no ValidationFailed Event on the Istio resource")
	}
	if _, err := cluster.Current().Clientset().AppsV1().Deployments("istio-system").Get(t.Context(), "istiod", metav1.GetOptions{}); err == nil {
		t.Error("istiod was installed with a mesh configuration istiod refuses")
	}
}

// TestIstiodGoesWithItsDeployment: once the operator uninstalls Istio, the
// real istiod behind it stops; istio-system goes, istiod's run-time objects
// (its CA Secret, leader election and CRL ConfigMaps) being Istio's, not a
// user's.
func TestIstiodGoesWithItsDeployment(t *testing.T) {
	cluster.InstallIstioCRD(t)
	ns := cluster.Namespace(t, nil)
	operatortest.Start(t, ns)
	operatortest.CreateIstio(t, ns, "default", v1alpha2.IstioSpec{})
	operatortest.WaitForState(t, timeout, ns, "default", v1alpha2.StateReady,
		v1alpha2.ConditionInstalled, metav1.ConditionTrue, v1alpha2.ReasonIstioInstallSucceeded)
	cluster.WaitIstiod(t, timeout)
	addrs, _ := cluster.Current().Istiod().Running()
	// istiod has written its run-time objects by the time it serves.
	cluster.WaitFor(t, timeout, "istiod's CA Secret", func(ctx context.Context) (bool, error) {
		_, err := cluster.Current().Clientset().CoreV1().Secrets("istio-system").Get(ctx, "istio-ca-secret", metav1.GetOptions{})
		return err == nil, err
	})

	operatortest.DeleteIstio(t, timeout, ns, "default")
	operatortest.WaitUninstalled(t, timeout)
	if _, running := cluster.Current().Istiod().Running(); running {
		t.Error("istiod still runs after its Deployment was deleted")
	}
	if resp, err := http.Get("http://" + addrs.HTTP + "/ready"); err == nil {
		resp.Body.Close()
		t.Errorf("istiod still answers on %s after its Deployment was deleted", addrs.HTTP)
	}
}

// gatewayTrustedHops connects to istiod's xDS server as a pod of the
// ingress gateway would (node type router, its labels, no proxy
// configuration of its own, so istiod applies the mesh's default one) and
// returns xff_num_trusted_hops of each HTTP listener it is sent.
func gatewayTrustedHops(ctx context.Context) (map[string]uint32, error) {
	addrs, ok := cluster.Current().Istiod().Running()
	if !ok {
		return nil, fmt.Errorf("istiod is not running")
	}
	meta, err := structpb.NewStruct(map[string]any{
		"LABELS":     map[string]any{"app": "istio-ingressgateway", "istio": "ingressgateway"},
		"NAMESPACE":  "istio-system",
		"CLUSTER_ID": "Kubernetes",
	})
	if err != nil {
		return nil, err
	}
	client, err := adsc.New(addrs.GRPC, &adsc.ADSConfig{
		Config: adsc.Config{
			Namespace: "istio-system", Workload: "istio-ingressgateway-xds", NodeType: istiomodel.Router,
			IP: "10.244.0.250", Meta: meta,
		},
		InitialDiscoveryRequests: []*discovery.DiscoveryRequest{{TypeUrl: istiomodel.ListenerType}},
	})
	if err != nil {
		return nil, err
	}
	defer client.Close()
	if err := client.Run(); err != nil {
		return nil, err
	}
	wait := 10 * time.Second
	if d, ok := ctx.Deadline(); ok {
		wait = min(wait, time.Until(d))
	}
	if _, err := client.Wait(wait, istiomodel.ListenerType); err != nil {
		return nil, fmt.Errorf("no listeners from istiod: %w", err)
	}
	hops := map[string]uint32{}
	for name, l := range client.GetHTTPListeners() {
		for _, fc := range l.FilterChains {
			for _, f := range fc.Filters {
				if f.Name != "envoy.filters.network.http_connection_manager" {
					continue
				}
				var m hcm.HttpConnectionManager
				if err := f.GetTypedConfig().UnmarshalTo(&m); err != nil {
					return nil, fmt.Errorf("listener %s: %w", name, err)
				}
				hops[name] = m.XffNumTrustedHops
			}
		}
	}
	return hops, nil
}

// TestGatewayListenerTrustsTheConfiguredProxies: the ingress gateway's
// listener that istiod serves over xDS trusts as many proxies in front of it
// as the Istio resource's numTrustedProxies says, and follows a change.
func TestGatewayListenerTrustsTheConfiguredProxies(t *testing.T) {
	ns := install(t, v1alpha2.IstioSpec{Config: v1alpha2.Config{NumTrustedProxies: ptr.To[int64](2)}})
	dyn := dynamic.NewForConfigOrDie(cluster.Current().Config)
	gateways := dyn.Resource(schema.GroupVersionResource{Group: "networking.istio.io", Version: "v1", Resource: "gateways"}).Namespace(cluster.Namespace(t, nil))
	if _, err := gateways.Create(t.Context(), &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "networking.istio.io/v1", "kind": "Gateway",
		"metadata": map[string]any{"name": "web"},
		"spec": map[string]any{
			"selector": map[string]any{"istio": "ingressgateway"},
			"servers": []any{map[string]any{
				"port":  map[string]any{"number": int64(80), "name": "http", "protocol": "HTTP"},
				"hosts": []any{"*"},
			}},
		},
	}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	want := func(n uint32) func(ctx context.Context) (bool, error) {
		return func(ctx context.Context) (bool, error) {
			hops, err := gatewayTrustedHops(ctx)
			if err != nil {
				return false, err
			}
			if len(hops) == 0 {
				return false, fmt.Errorf("no HTTP listener for the gateway")
			}
			for name, h := range hops {
				if h != n {
					return false, fmt.Errorf("listener %s trusts %d hops", name, h)
				}
			}
			return true, nil
		}
	}
	cluster.WaitFor(t, timeout, "the gateway's listener trusting 2 proxies", want(2))

	p := []byte(`{"spec":{"config":{"numTrustedProxies":4}}}`)
	if _, err := operatortest.Client(t).OperatorV1alpha2().Istios(ns).Patch(t.Context(), "default", "application/merge-patch+json", p, metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	cluster.WaitFor(t, timeout, "the gateway's listener trusting 4 proxies", want(4))
}
