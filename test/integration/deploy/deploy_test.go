// Package deploy tests the deployment manifest (deploy/base, rendered as
// make manifest renders it) against a real API server: every object passes
// server-side dry-run and is applied, the operator's pod meets the
// "restricted" Pod Security Standard (kyma-system enforces it; kwok runs the
// pod), and the operator, run in the test process as the manifest's
// ServiceAccount, installs Istio, restarts an outdated sidecar, keeps the
// PeerAuthentication and the gateway, and uninstalls, without a single
// forbidden request. It also checks the kubectl experience of the CRD:
// printer columns and kubectl wait.
package deploy

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/restmapper"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"k8s.io/utils/ptr"

	v1alpha2 "github.com/meshkeeper/istio-operator/pkg/apis/operator/v1alpha2"
	"github.com/meshkeeper/istio-operator/pkg/istioclient"
	"github.com/meshkeeper/istio-operator/pkg/operator"
	"github.com/meshkeeper/istio-operator/test/cluster"
	"github.com/meshkeeper/istio-operator/test/operatortest"
)

const (
	namespace      = "kyma-system"
	serviceAccount = "istio-operator"
	saUser         = "system:serviceaccount:" + namespace + ":" + serviceAccount
	leaseName      = "istio-operator-leader"
	installTimeout = 4 * time.Minute
)

// saGroups are the groups the API server gives the ServiceAccount (and an
// impersonation of it).
var saGroups = []string{"system:serviceaccounts", "system:serviceaccounts:" + namespace, "system:authenticated"}

func TestMain(m *testing.M) {
	cluster.Main(m, cluster.Options{Nodes: 1})
}

// TestDeploymentManifest is one story in steps: each needs the one before.
func TestDeploymentManifest(t *testing.T) {
	objs := render(t, "deploy/base")
	steps := []struct {
		name string
		run  func(t *testing.T)
	}{
		{"ManifestContents", func(t *testing.T) { checkContents(t, objs) }},
		{"ServiceMonitorOverlay", checkServiceMonitorOverlay},
		{"DryRunThenApply", func(t *testing.T) { dryRunThenApply(t, objs) }},
		{"OperatorPodRunsUnderRestrictedPodSecurity", waitOperatorDeployment},
		{"RBACCoversWhatIstioRenders", checkRBACCoversRenderedIstio},
		{"RBACDeniesWhatTheOperatorDoesNotUse", checkRBACDenies},
		{"OperatorDoesItsJobAsTheServiceAccount", runOperatorAsServiceAccount},
	}
	for _, s := range steps {
		if !t.Run(s.name, s.run) {
			return
		}
	}
}

// kubectlPath is the kubectl the tools build (make tools).
func kubectlPath(t *testing.T) string {
	t.Helper()
	dir := os.Getenv(cluster.ToolsEnv)
	if dir == "" {
		root, err := cluster.RepoRoot()
		if err != nil {
			t.Fatal(err)
		}
		dir = filepath.Join(root, "bin", "tools")
	}
	return filepath.Join(dir, "kubectl")
}

// kubectl runs kubectl against the test cluster.
func kubectl(t *testing.T, args ...string) (string, error) {
	t.Helper()
	cmd := exec.CommandContext(cluster.Context(t), kubectlPath(t), append([]string{"--kubeconfig", cluster.Current().Kubeconfig}, args...)...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// render renders a kustomization of the repository as make manifest does.
func render(t *testing.T, dir string) []*unstructured.Unstructured {
	t.Helper()
	root, err := cluster.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(kubectlPath(t), "kustomize", filepath.Join(root, dir))
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("kubectl kustomize %s: %v\n%s", dir, err, stderr.String())
	}
	dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(out), 4096)
	var objs []*unstructured.Unstructured
	for {
		u := &unstructured.Unstructured{}
		if err := dec.Decode(&u.Object); err != nil {
			if errors.Is(err, io.EOF) {
				break
			}
			t.Fatalf("decoding the rendered %s: %v", dir, err)
		}
		if len(u.Object) > 0 {
			objs = append(objs, u)
		}
	}
	return objs
}

func find(objs []*unstructured.Unstructured, kind, name string) *unstructured.Unstructured {
	for _, u := range objs {
		if u.GetKind() == kind && u.GetName() == name {
			return u
		}
	}
	return nil
}

func toTyped[T any](t *testing.T, u *unstructured.Unstructured) *T {
	t.Helper()
	out := new(T)
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, out); err != nil {
		t.Fatalf("converting %s %s: %v", u.GetKind(), u.GetName(), err)
	}
	return out
}

// checkContents checks what the cluster would not reject but the
// deployment needs: the objects, the operator's arguments, probes,
// resources and the container's security context.
func checkContents(t *testing.T, objs []*unstructured.Unstructured) {
	for _, want := range []struct{ kind, name string }{
		{"Namespace", namespace},
		{"CustomResourceDefinition", "istios.operator.kyma-project.io"},
		{"ServiceAccount", serviceAccount},
		{"ClusterRole", "istio-operator"},
		{"ClusterRoleBinding", "istio-operator"},
		{"Role", "istio-operator-leader-election"},
		{"RoleBinding", "istio-operator-leader-election"},
		{"Deployment", "istio-operator"},
		{"Service", "istio-operator-metrics"},
	} {
		if find(objs, want.kind, want.name) == nil {
			t.Errorf("the manifest has no %s %s", want.kind, want.name)
		}
	}
	if len(objs) != 9 {
		t.Errorf("the manifest has %d objects, want 9", len(objs))
	}
	u := find(objs, "Deployment", "istio-operator")
	if u == nil {
		return
	}
	d := toTyped[appsv1.Deployment](t, u)
	if d.Namespace != namespace || d.Spec.Template.Spec.ServiceAccountName != serviceAccount {
		t.Errorf("Deployment runs in %q as %q", d.Namespace, d.Spec.Template.Spec.ServiceAccountName)
	}
	if len(d.Spec.Template.Spec.Containers) != 1 {
		t.Fatalf("Deployment has %d containers, want 1", len(d.Spec.Template.Spec.Containers))
	}
	c := d.Spec.Template.Spec.Containers[0]
	if !strings.HasSuffix(c.Image, ":"+istioclient.Version) {
		t.Errorf("image %s is not tagged with the Istio version %s", c.Image, istioclient.Version)
	}
	for _, arg := range []string{"--leader-elect", "--log-format=json"} {
		if !slices.Contains(c.Args, arg) {
			t.Errorf("args %v lack %s", c.Args, arg)
		}
	}
	for name, p := range map[string]*corev1.Probe{"/healthz": c.LivenessProbe, "/readyz": c.ReadinessProbe} {
		if p == nil || p.HTTPGet == nil || p.HTTPGet.Path != name {
			t.Errorf("no probe on %s: %+v", name, p)
			continue
		}
		if port := p.HTTPGet.Port; port.IntValue() != 8081 && !slices.ContainsFunc(c.Ports, func(cp corev1.ContainerPort) bool {
			return cp.Name == port.String() && cp.ContainerPort == 8081
		}) {
			t.Errorf("probe %s targets port %s, not 8081", name, port.String())
		}
	}
	for _, r := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
		if _, ok := c.Resources.Requests[r]; !ok {
			t.Errorf("no %s request", r)
		}
		if _, ok := c.Resources.Limits[r]; !ok {
			t.Errorf("no %s limit", r)
		}
	}
	sc := c.SecurityContext
	if sc == nil || !ptr.Deref(sc.ReadOnlyRootFilesystem, false) || ptr.Deref(sc.AllowPrivilegeEscalation, true) ||
		sc.Capabilities == nil || !slices.Contains(sc.Capabilities.Drop, "ALL") {
		t.Errorf("container security context %+v is not hardened", sc)
	}
	psc := d.Spec.Template.Spec.SecurityContext
	if psc == nil || !ptr.Deref(psc.RunAsNonRoot, false) || ptr.Deref(psc.RunAsUser, 0) != 65532 ||
		psc.SeccompProfile == nil || psc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
		t.Errorf("pod security context %+v is not hardened", psc)
	}
	if ns := find(objs, "Namespace", namespace); ns != nil && ns.GetLabels()["pod-security.kubernetes.io/enforce"] != "restricted" {
		t.Errorf("namespace %s does not enforce the restricted Pod Security Standard: %v", namespace, ns.GetLabels())
	}
}

// checkServiceMonitorOverlay checks that the overlay is the base plus a
// ServiceMonitor that selects the metrics Service and its port.
func checkServiceMonitorOverlay(t *testing.T) {
	objs := render(t, "deploy/overlays/servicemonitor")
	if len(objs) != 10 {
		t.Errorf("the overlay renders %d objects, want the base's 9 and a ServiceMonitor", len(objs))
	}
	sm := find(objs, "ServiceMonitor", "istio-operator")
	svc := find(objs, "Service", "istio-operator-metrics")
	if sm == nil || svc == nil {
		t.Fatalf("ServiceMonitor %v, Service %v", sm != nil, svc != nil)
	}
	if sm.GetAPIVersion() != "monitoring.coreos.com/v1" || sm.GetNamespace() != namespace {
		t.Errorf("ServiceMonitor is %s in %q", sm.GetAPIVersion(), sm.GetNamespace())
	}
	selector, _, _ := unstructured.NestedStringMap(sm.Object, "spec", "selector", "matchLabels")
	if len(selector) == 0 {
		t.Error("ServiceMonitor selects nothing")
	}
	for k, v := range selector {
		if svc.GetLabels()[k] != v {
			t.Errorf("ServiceMonitor selects %s=%s, the Service has %q", k, v, svc.GetLabels()[k])
		}
	}
	names, _, _ := unstructured.NestedStringSlice(sm.Object, "spec", "namespaceSelector", "matchNames")
	if !slices.Contains(names, namespace) {
		t.Errorf("ServiceMonitor looks in namespaces %v, not %s", names, namespace)
	}
	endpoints, _, _ := unstructured.NestedSlice(sm.Object, "spec", "endpoints")
	s := toTyped[corev1.Service](t, svc)
	if len(endpoints) != 1 || len(s.Spec.Ports) != 1 {
		t.Fatalf("ServiceMonitor endpoints %v, Service ports %v", endpoints, s.Spec.Ports)
	}
	ep, _ := endpoints[0].(map[string]any)
	if ep["port"] != s.Spec.Ports[0].Name || s.Spec.Ports[0].Name != "http-metrics" || s.Spec.Ports[0].Port != 8080 {
		t.Errorf("ServiceMonitor scrapes port %v, the Service serves %s:%d", ep["port"], s.Spec.Ports[0].Name, s.Spec.Ports[0].Port)
	}
}

// warnings records the API server's warnings (Pod Security warnings on the
// Deployment among them).
type warnings struct {
	mu   sync.Mutex
	text []string
}

func (w *warnings) HandleWarningHeader(_ int, _ string, text string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.text = append(w.text, text)
}

func (w *warnings) take() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := w.text
	w.text = nil
	return out
}

type applier struct {
	dyn    dynamic.Interface
	mapper meta.RESTMapper
	warn   *warnings
}

func newApplier(t *testing.T) *applier {
	t.Helper()
	w := &warnings{}
	cfg := rest.CopyConfig(cluster.Current().Config)
	cfg.WarningHandler = w
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	mapper := restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(cluster.Current().Clientset().Discovery()))
	return &applier{dyn: dyn, mapper: mapper, warn: w}
}

func (a *applier) mapping(gvk schema.GroupVersionKind) (*meta.RESTMapping, error) {
	return a.mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
}

// apply server-side applies the object, as kubectl apply --server-side does.
func (a *applier) apply(ctx context.Context, u *unstructured.Unstructured, dryRun bool) error {
	m, err := a.mapping(u.GroupVersionKind())
	if err != nil {
		return err
	}
	var ri dynamic.ResourceInterface = a.dyn.Resource(m.Resource)
	if m.Scope.Name() == meta.RESTScopeNameNamespace {
		ri = a.dyn.Resource(m.Resource).Namespace(u.GetNamespace())
	}
	data, err := json.Marshal(u.Object)
	if err != nil {
		return err
	}
	opts := metav1.PatchOptions{FieldManager: "kubectl", Force: ptr.To(true)}
	if dryRun {
		opts.DryRun = []string{metav1.DryRunAll}
	}
	_, err = ri.Patch(ctx, u.GetName(), types.ApplyPatchType, data, opts)
	return err
}

// dryRunThenApply applies every object with server-side dry-run, then for
// real. A namespaced object can be dry-run only once its namespace exists,
// so the cluster-scoped objects are dry-run first and the namespace is
// created before the rest is dry-run.
func dryRunThenApply(t *testing.T, objs []*unstructured.Unstructured) {
	a := newApplier(t)
	ctx := cluster.Context(t)
	clusterScoped := func(u *unstructured.Unstructured) bool { return u.GetNamespace() == "" }
	for _, u := range objs {
		if clusterScoped(u) {
			if err := a.apply(ctx, u, true); err != nil {
				t.Errorf("dry-run of %s %s: %v", u.GetKind(), u.GetName(), err)
			}
		}
	}
	if t.Failed() {
		return
	}
	if err := a.apply(ctx, find(objs, "Namespace", namespace), false); err != nil {
		t.Fatalf("creating namespace %s: %v", namespace, err)
	}
	for _, u := range objs {
		if err := a.apply(ctx, u, true); err != nil {
			t.Errorf("dry-run of %s %s/%s: %v", u.GetKind(), u.GetNamespace(), u.GetName(), err)
		}
	}
	if w := a.warn.take(); len(w) > 0 {
		t.Errorf("dry-run warnings: %q", w)
	}
	if t.Failed() {
		return
	}
	for _, u := range objs {
		if err := a.apply(ctx, u, false); err != nil {
			t.Errorf("applying %s %s/%s: %v", u.GetKind(), u.GetNamespace(), u.GetName(), err)
		}
	}
	if w := a.warn.take(); len(w) > 0 {
		t.Errorf("apply warnings: %q", w)
	}
	cluster.WaitFor(t, 30*time.Second, "the API server to serve istios", func(ctx context.Context) (bool, error) {
		_, err := operatortest.Client(t).OperatorV1alpha2().Istios(namespace).List(ctx, metav1.ListOptions{})
		return err == nil, err
	})
}

// waitOperatorDeployment waits until the operator's Deployment is
// available: its pod (run by kwok) was admitted by the namespace's
// "restricted" Pod Security enforcement and is ready.
func waitOperatorDeployment(t *testing.T) {
	kube := cluster.Current().Clientset()
	cluster.WaitFor(t, 2*time.Minute, "Deployment istio-operator available", func(ctx context.Context) (bool, error) {
		d, err := kube.AppsV1().Deployments(namespace).Get(ctx, "istio-operator", metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		for _, c := range d.Status.Conditions {
			if c.Type == appsv1.DeploymentReplicaFailure && c.Status == corev1.ConditionTrue {
				return false, fmt.Errorf("replica failure: %s", c.Message)
			}
		}
		// The ReplicaSet reports pods the admission refused.
		rss, err := kube.AppsV1().ReplicaSets(namespace).List(ctx, metav1.ListOptions{LabelSelector: "app.kubernetes.io/name=istio-operator"})
		if err == nil {
			for _, rs := range rss.Items {
				for _, c := range rs.Status.Conditions {
					if c.Type == appsv1.ReplicaSetReplicaFailure && c.Status == corev1.ConditionTrue {
						return false, fmt.Errorf("ReplicaSet %s: %s", rs.Name, c.Message)
					}
				}
			}
		}
		return d.Status.ObservedGeneration == d.Generation && d.Status.AvailableReplicas == ptr.Deref(d.Spec.Replicas, 1), nil
	})
	// The admission that let the operator's pod in does refuse others.
	_, err := kube.CoreV1().Pods(namespace).Create(cluster.Context(t), &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "not-restricted"},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "registry.k8s.io/pause:3.10"}}},
	}, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
	if err == nil || !strings.Contains(err.Error(), "violates PodSecurity") {
		t.Errorf("a pod without a hardened security context was not refused in %s: %v", namespace, err)
	}
}

// can asks the API server's authorizer whether the ServiceAccount may do
// what attrs say.
func can(t *testing.T, attrs authorizationv1.ResourceAttributes) bool {
	t.Helper()
	sar, err := cluster.Current().Clientset().AuthorizationV1().SubjectAccessReviews().Create(cluster.Context(t),
		&authorizationv1.SubjectAccessReview{Spec: authorizationv1.SubjectAccessReviewSpec{
			User: saUser, Groups: saGroups, ResourceAttributes: &attrs,
		}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return sar.Status.Allowed
}

func describe(a authorizationv1.ResourceAttributes) string {
	s := a.Verb + " " + a.Resource
	if a.Group != "" {
		s += "." + a.Group
	}
	if a.Subresource != "" {
		s += "/" + a.Subresource
	}
	if a.Name != "" {
		s += " " + a.Name
	}
	if a.Namespace != "" {
		s += " in " + a.Namespace
	}
	return s
}

// checkRBACCoversRenderedIstio renders Istio for the default resource and
// for one with every optional component the API offers (egress gateway,
// NetworkPolicies), and asks the authorizer whether the ServiceAccount may
// do to each rendered object what the installer does: watch its kind
// cluster-wide, apply (create and patch) and delete it, escalate the roles
// and bind the bindings' roles. Then the users' Istio kinds, which a
// deletion watches and may delete. The real run covers one configuration;
// this covers the kinds and names of the others.
func checkRBACCoversRenderedIstio(t *testing.T) {
	a := newApplier(t)
	specs := map[string]*v1alpha2.IstioSpec{
		"default": {},
		"egress gateway and NetworkPolicies": {
			NetworkPoliciesEnabled: true,
			Components:             &v1alpha2.Components{EgressGateway: &v1alpha2.EgressGateway{Enabled: ptr.To(true)}},
		},
	}
	checked := map[string]bool{}
	check := func(what string, attrs authorizationv1.ResourceAttributes) {
		d := describe(attrs)
		if checked[d] {
			return
		}
		checked[d] = true
		if !can(t, attrs) {
			t.Errorf("the ServiceAccount may not %s (%s)", d, what)
		}
	}
	for name, spec := range specs {
		iop, err := istioclient.DesiredIstioOperator(spec)
		if err != nil {
			t.Fatal(err)
		}
		r, err := istioclient.Render(iop, nil)
		if err != nil {
			t.Fatal(err)
		}
		if spec.NetworkPoliciesWanted() {
			if r, err = r.WithNetworkPolicies(namespace); err != nil {
				t.Fatal(err)
			}
		}
		for _, o := range r.Desired() {
			what := fmt.Sprintf("%s %s of the %s rendering", o.GetKind(), o.GetName(), name)
			m, err := a.mapping(o.GroupVersionKind())
			if err != nil {
				t.Errorf("%s: %v", what, err)
				continue
			}
			res := m.Resource
			for _, verb := range []string{"list", "watch"} {
				check(what, authorizationv1.ResourceAttributes{Verb: verb, Group: res.Group, Resource: res.Resource})
			}
			for _, verb := range []string{"create", "patch", "delete"} {
				check(what, authorizationv1.ResourceAttributes{Verb: verb, Group: res.Group, Resource: res.Resource,
					Namespace: o.GetNamespace(), Name: o.GetName()})
			}
			switch o.GetKind() {
			case "ClusterRole", "Role":
				check(what, authorizationv1.ResourceAttributes{Verb: "escalate", Group: res.Group, Resource: res.Resource,
					Namespace: o.GetNamespace(), Name: o.GetName()})
			case "ClusterRoleBinding", "RoleBinding":
				kind, _, _ := unstructured.NestedString(o.Object, "roleRef", "kind")
				role, _, _ := unstructured.NestedString(o.Object, "roleRef", "name")
				roleRes := "clusterroles"
				if kind == "Role" {
					roleRes = "roles"
				}
				check(what, authorizationv1.ResourceAttributes{Verb: "bind", Group: "rbac.authorization.k8s.io", Resource: roleRes,
					Namespace: o.GetNamespace(), Name: role})
			}
		}
	}
	for _, ur := range istioclient.UserResources {
		for _, verb := range []string{"list", "watch", "delete"} {
			check("users' "+ur.Kind, authorizationv1.ResourceAttributes{Verb: verb, Group: ur.Resource.Group, Resource: ur.Resource.Resource})
		}
	}
	t.Logf("%d distinct permissions checked", len(checked))
}

// checkRBACDenies spot-checks that the rules are not broader than used.
func checkRBACDenies(t *testing.T) {
	for _, attrs := range []authorizationv1.ResourceAttributes{
		{Verb: "escalate", Group: "rbac.authorization.k8s.io", Resource: "clusterroles", Name: "cluster-admin"},
		{Verb: "bind", Group: "rbac.authorization.k8s.io", Resource: "clusterroles", Name: "cluster-admin"},
		{Verb: "escalate", Group: "rbac.authorization.k8s.io", Resource: "roles", Namespace: "kube-system", Name: "extension-apiserver-authentication-reader"},
		{Verb: "get", Resource: "secrets", Namespace: "kube-system", Name: "any"},
		{Verb: "create", Resource: "secrets", Namespace: "istio-system"},
		{Verb: "create", Resource: "pods", Namespace: "default"},
		{Verb: "update", Group: "apps", Resource: "deployments", Namespace: "default"},
		{Verb: "delete", Group: "apps", Resource: "statefulsets", Namespace: "default"},
		{Verb: "create", Group: "coordination.k8s.io", Resource: "leases", Namespace: "default"},
		{Verb: "delete", Group: "operator.kyma-project.io", Resource: "istios", Namespace: namespace},
		{Verb: "get", Group: "projectcalico.org", Resource: "felixconfigurations", Name: "other"},
		{Verb: "impersonate", Resource: "serviceaccounts"},
	} {
		if can(t, attrs) {
			t.Errorf("the ServiceAccount may %s, which the operator never does", describe(attrs))
		}
	}
}

// forbidden records every request the API server refused with 403.
type forbidden struct {
	mu       sync.Mutex
	requests []string
}

func (f *forbidden) list() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.requests)
}

// serviceAccountKubeconfig starts a loopback proxy to the API server that
// records every 403, and writes a kubeconfig that reaches the API server
// through it as the ServiceAccount (impersonated: the proxy authenticates
// as the cluster's admin, which may impersonate; the API server then
// authorizes every request as the ServiceAccount alone).
func serviceAccountKubeconfig(t *testing.T) (string, *forbidden) {
	t.Helper()
	c := cluster.Current()
	target, err := url.Parse(c.Config.Host)
	if err != nil {
		t.Fatal(err)
	}
	transport, err := rest.TransportFor(c.Config)
	if err != nil {
		t.Fatal(err)
	}
	rec := &forbidden{}
	proxy := &httputil.ReverseProxy{
		Rewrite:       func(r *httputil.ProxyRequest) { r.SetURL(target) },
		Transport:     transport,
		FlushInterval: -1, // watches stream
		ModifyResponse: func(resp *http.Response) error {
			if resp.StatusCode == http.StatusForbidden {
				req := resp.Request
				var status metav1.Status
				body, _ := io.ReadAll(resp.Body)
				resp.Body = io.NopCloser(bytes.NewReader(body))
				_ = json.Unmarshal(body, &status)
				rec.mu.Lock()
				rec.requests = append(rec.requests, fmt.Sprintf("%s %s as %s: %s", req.Method, req.URL.RequestURI(),
					req.Header.Get("Impersonate-User"), status.Message))
				rec.mu.Unlock()
			}
			return nil
		},
	}
	srv := httptest.NewServer(proxy)
	t.Cleanup(func() {
		srv.CloseClientConnections()
		srv.Close()
	})
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["proxy"] = &clientcmdapi.Cluster{Server: srv.URL}
	cfg.AuthInfos[serviceAccount] = &clientcmdapi.AuthInfo{Impersonate: saUser}
	cfg.Contexts["sa"] = &clientcmdapi.Context{Cluster: "proxy", AuthInfo: serviceAccount}
	cfg.CurrentContext = "sa"
	path := filepath.Join(t.TempDir(), "kubeconfig.yaml")
	if err := clientcmd.WriteToFile(*cfg, path); err != nil {
		t.Fatal(err)
	}
	return path, rec
}

// runOperatorAsServiceAccount runs the operator with leader election as the
// ServiceAccount and takes an Istio resource through install, a sidecar
// restart and uninstall; any 403 on the way fails the test.
func runOperatorAsServiceAccount(t *testing.T) {
	kubeconfig, rec := serviceAccountKubeconfig(t)
	forbiddenBefore := operatortest.Counter(t, "rest_client_requests_total", map[string]string{"code": "403"})
	op := operatortest.StartWith(t, namespace, operatortest.Options{Configure: func(o *operator.Options) {
		o.Kubeconfig = kubeconfig
		o.LeaderElect = true
		o.LeaderElectionID = leaseName
		o.LeaseDuration, o.RenewDeadline, o.RetryPeriod = 15*time.Second, 10*time.Second, 2*time.Second
	}})
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("forbidden requests: %q", rec.list())
		}
	})
	kube := cluster.Current().Clientset()
	lease, err := kube.CoordinationV1().Leases(namespace).Get(cluster.Context(t), leaseName, metav1.GetOptions{})
	if err != nil || ptr.Deref(lease.Spec.HolderIdentity, "") == "" {
		t.Fatalf("the operator leads without holding Lease %s/%s: %v %+v", namespace, leaseName, err, lease)
	}

	operatortest.CreateIstio(t, namespace, "default", v1alpha2.IstioSpec{})
	istio := operatortest.WaitForState(t, installTimeout, namespace, "default", v1alpha2.StateReady,
		v1alpha2.ConditionInstalled, metav1.ConditionTrue, v1alpha2.ReasonIstioInstallSucceeded)
	if c := meta.FindStatusCondition(istio.Status.Conditions, v1alpha2.ConditionReady); c == nil || c.Status != metav1.ConditionTrue {
		t.Errorf("Ready condition %+v", c)
	}
	if _, err := cluster.Current().Dynamic().Resource(schema.GroupVersionResource{Group: "security.istio.io", Version: "v1", Resource: "peerauthentications"}).
		Namespace(istioclient.Namespace).Get(cluster.Context(t), "default", metav1.GetOptions{}); err != nil {
		t.Errorf("PeerAuthentication %s/default: %v", istioclient.Namespace, err)
	}

	t.Run("kubectl wait", func(t *testing.T) {
		out, err := kubectl(t, "wait", "--for=condition=Ready", "istio/default", "-n", namespace, "--timeout=60s")
		if err != nil {
			t.Fatalf("kubectl wait: %v\n%s", err, out)
		}
	})
	t.Run("printer columns", func(t *testing.T) { checkPrinterColumns(t) })
	t.Run("sidecar restart", func(t *testing.T) { checkSidecarRestart(t) })

	operatortest.DeleteIstio(t, installTimeout, namespace, "default")
	operatortest.WaitUninstalled(t, 2*time.Minute)

	op.Stop()
	if f := rec.list(); len(f) > 0 {
		t.Errorf("%d requests of the operator were forbidden:\n%s", len(f), strings.Join(f, "\n"))
	}
	if n := operatortest.Counter(t, "rest_client_requests_total", map[string]string{"code": "403"}) - forbiddenBefore; n > 0 {
		t.Errorf("client-go counted %v responses 403", n)
	}
}

// checkPrinterColumns reads the Istio resources as kubectl get does (as a
// Table) and checks the CRD's columns and their values.
func checkPrinterColumns(t *testing.T) {
	raw, err := operatortest.Client(t).OperatorV1alpha2().RESTClient().Get().Namespace(namespace).Resource("istios").
		SetHeader("Accept", "application/json;as=Table;v=v1;g=meta.k8s.io").DoRaw(cluster.Context(t))
	if err != nil {
		t.Fatal(err)
	}
	var table metav1.Table
	if err := json.Unmarshal(raw, &table); err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, c := range table.ColumnDefinitions {
		names = append(names, c.Name)
	}
	if want := []string{"Name", "State", "Istio", "Ready", "Age"}; !slices.Equal(names, want) {
		t.Fatalf("columns %v, want %v", names, want)
	}
	if len(table.Rows) != 1 {
		t.Fatalf("%d rows, want 1", len(table.Rows))
	}
	cells := table.Rows[0].Cells
	want := []any{"default", string(v1alpha2.StateReady), istioclient.Version, "True"}
	for i, w := range want {
		if cells[i] != w {
			t.Errorf("column %s is %v, want %v", names[i], cells[i], w)
		}
	}
	out, err := kubectl(t, "get", "istio", "-n", namespace)
	if err != nil {
		t.Fatalf("kubectl get istio: %v\n%s", err, out)
	}
	if header := strings.Fields(strings.SplitN(out, "\n", 2)[0]); !slices.Equal(header, []string{"NAME", "STATE", "ISTIO", "READY", "AGE"}) {
		t.Errorf("kubectl get istio shows\n%s", out)
	}
}

// checkSidecarRestart creates a workload whose pods carry an older proxy
// (as an injector would have put it there before the install) and waits
// until the proxy sidecar controller has restarted it: a patch of a
// Deployment in another namespace and an Event there.
func checkSidecarRestart(t *testing.T) {
	ns := cluster.Namespace(t, nil)
	d := cluster.NewDeployment("app", 1)
	d.Spec.Template.Annotations = map[string]string{"sidecar.istio.io/status": `{"containers":["istio-proxy"]}`}
	d.Spec.Template.Spec.Containers = append(d.Spec.Template.Spec.Containers,
		corev1.Container{Name: "istio-proxy", Image: istioclient.Hub + "/proxyv2:1.30.0"})
	kube := cluster.Current().Clientset()
	if _, err := kube.AppsV1().Deployments(ns).Create(cluster.Context(t), d, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	cluster.WaitFor(t, 2*time.Minute, "the outdated workload restarted", func(ctx context.Context) (bool, error) {
		got, err := kube.AppsV1().Deployments(ns).Get(ctx, d.Name, metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		return got.Spec.Template.Annotations["istio-operator.kyma-project.io/restarted-for"] != "", nil
	})
	if !operatortest.HasEventOn(t, "Deployment", ns, d.Name, "ProxySidecarRestarted") {
		t.Errorf("no ProxySidecarRestarted Event on Deployment %s/%s: %v", ns, d.Name, operatortest.EventsOn(t, "Deployment", ns, d.Name))
	}
}
