// Package deploy tests the deployment manifest (deploy/base, rendered as
// make manifest renders it) against a real API server: applying and
// deleting it leaves a pre-existing kyma-system namespace and what lives in
// it untouched, every object passes server-side dry-run and is applied, the
// operator's pod meets the "restricted" Pod Security Standard (the
// namespace of deploy/namespace enforces it; kwok runs the pod), and the
// operator, run in the test process with a token of the manifest's
// ServiceAccount, installs Istio, restarts an outdated sidecar, keeps the
// PeerAuthentication and the gateway, takes a configuration change and
// back, and uninstalls, without a single forbidden request; the API
// server's audit log then shows that every right the manifest grants was
// used. It also checks the kubectl experience of the CRD: printer columns
// and kubectl wait.
package deploy

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	authenticationv1 "k8s.io/api/authentication/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
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
	"k8s.io/client-go/util/retry"
	"k8s.io/utils/ptr"

	v1alpha2 "github.com/meshkeeper/istio-operator/pkg/apis/operator/v1alpha2"
	"github.com/meshkeeper/istio-operator/pkg/apis/operator/v1alpha2/apitest"
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

// auditPolicy has the API server log, at level Metadata, every request of
// the operator's ServiceAccount (and nothing else), and its writes of role
// bindings at level Request: the binding's roleRef says which role the
// API server checked the bind verb on.
const auditPolicy = `apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: ["RequestReceived"]
rules:
- level: Request
  users: ["` + saUser + `"]
  verbs: ["create", "update", "patch"]
  resources:
  - group: rbac.authorization.k8s.io
    resources: ["clusterrolebindings", "rolebindings"]
- level: Metadata
  users: ["` + saUser + `"]
- level: None
`

func TestMain(m *testing.M) {
	cluster.Main(m, cluster.Options{Nodes: 1, AuditPolicy: auditPolicy})
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
		{"NamespaceFileAndOverlay", checkNamespaceFiles},
		{"ApplyAndDeleteLeaveTheNamespaceAlone", checkNamespaceUntouched},
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

// renderRaw renders a kustomization of the repository as make manifest
// does, into YAML.
func renderRaw(t *testing.T, dir string) []byte {
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
	return out
}

// render renders a kustomization of the repository as make manifest does.
func render(t *testing.T, dir string) []*unstructured.Unstructured {
	t.Helper()
	out := renderRaw(t, dir)
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
	// The manifest must not change or delete a namespace it does not own:
	// kyma-system is created beforehand (deploy/namespace).
	for _, u := range objs {
		if u.GetKind() == "Namespace" {
			t.Errorf("the manifest holds Namespace %s: applying it relabels an existing namespace and deleting it deletes everything in it", u.GetName())
		}
	}
	for _, want := range []struct{ kind, name string }{
		{"CustomResourceDefinition", "istios.operator.kyma-project.io"},
		{"ServiceAccount", serviceAccount},
		{"ClusterRole", "istio-operator"},
		{"ClusterRole", istioclient.NamespaceReaderRole},
		{"ClusterRoleBinding", "istio-operator"},
		{"Role", "istio-operator-leader-election"},
		{"RoleBinding", "istio-operator-leader-election"},
		{"Role", "istio-operator-injection-probe"},
		{"RoleBinding", "istio-operator-injection-probe"},
		{"Deployment", "istio-operator"},
		{"Service", "istio-operator-metrics"},
	} {
		if find(objs, want.kind, want.name) == nil {
			t.Errorf("the manifest has no %s %s", want.kind, want.name)
		}
	}
	if len(objs) != 11 {
		t.Errorf("the manifest has %d objects, want 11", len(objs))
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
	memoryLimit := slices.IndexFunc(c.Env, func(e corev1.EnvVar) bool { return e.Name == "MEMORY_LIMIT" })
	if memoryLimit < 0 || c.Env[memoryLimit].ValueFrom == nil || c.Env[memoryLimit].ValueFrom.ResourceFieldRef == nil ||
		c.Env[memoryLimit].ValueFrom.ResourceFieldRef.Resource != "limits.memory" {
		t.Errorf("MEMORY_LIMIT is not taken from the memory limit: %+v", c.Env)
	}
	// GOMEMLIMIT at 100% of the limit leaves nothing outside the Go heap;
	// the operator sets 90% of MEMORY_LIMIT unless GOMEMLIMIT is set.
	if slices.ContainsFunc(c.Env, func(e corev1.EnvVar) bool { return e.Name == "GOMEMLIMIT" }) {
		t.Errorf("the manifest sets GOMEMLIMIT, which overrides the operator's 90%% of the memory limit: %+v", c.Env)
	}
}

// checkNamespaceFiles checks the optional namespace: deploy/namespace is
// the kyma-system Namespace alone, enforcing the restricted Pod Security
// Standard, and deploy/overlays/with-namespace is the base plus it.
func checkNamespaceFiles(t *testing.T) {
	nsObjs := render(t, "deploy/namespace")
	if len(nsObjs) != 1 || nsObjs[0].GetKind() != "Namespace" || nsObjs[0].GetName() != namespace {
		t.Fatalf("deploy/namespace renders %d objects, want the Namespace %s alone", len(nsObjs), namespace)
	}
	labels := nsObjs[0].GetLabels()
	for _, mode := range []string{"enforce", "warn", "audit"} {
		if labels["pod-security.kubernetes.io/"+mode] != "restricted" {
			t.Errorf("namespace %s does not %s the restricted Pod Security Standard: %v", namespace, mode, labels)
		}
	}
	base := render(t, "deploy/base")
	overlay := render(t, "deploy/overlays/with-namespace")
	if len(overlay) != len(base)+1 || find(overlay, "Namespace", namespace) == nil {
		t.Errorf("deploy/overlays/with-namespace renders %d objects, want the base's %d and the Namespace", len(overlay), len(base))
	}
	for _, u := range base {
		if find(overlay, u.GetKind(), u.GetName()) == nil {
			t.Errorf("deploy/overlays/with-namespace lacks the base's %s %s", u.GetKind(), u.GetName())
		}
	}
}

// namespaceSnapshot is what must not change in a namespace the manifest
// does not own: the namespace and the objects in it.
type namespaceSnapshot struct {
	uid, resourceVersion string
	labels, annotations  map[string]string
	phase                corev1.NamespacePhase
	objects              map[string]string // kind/name: uid@resourceVersion
}

func snapshotNamespace(t *testing.T, objects map[string]string) namespaceSnapshot {
	t.Helper()
	kube := cluster.Current().Clientset()
	ctx := cluster.Context(t)
	ns, err := kube.CoreV1().Namespaces().Get(ctx, namespace, metav1.GetOptions{})
	if err != nil {
		t.Fatalf("namespace %s: %v", namespace, err)
	}
	s := namespaceSnapshot{uid: string(ns.UID), resourceVersion: ns.ResourceVersion, labels: ns.Labels,
		annotations: ns.Annotations, phase: ns.Status.Phase, objects: map[string]string{}}
	for key := range objects {
		kind, name, _ := strings.Cut(key, "/")
		var m metav1.Object
		switch kind {
		case "ConfigMap":
			m, err = kube.CoreV1().ConfigMaps(namespace).Get(ctx, name, metav1.GetOptions{})
		case "Secret":
			m, err = kube.CoreV1().Secrets(namespace).Get(ctx, name, metav1.GetOptions{})
		default:
			t.Fatalf("no snapshot of %s", kind)
		}
		if err != nil {
			s.objects[key] = "error: " + err.Error()
			continue
		}
		s.objects[key] = string(m.GetUID()) + "@" + m.GetResourceVersion()
	}
	return s
}

// compare reports every difference between two snapshots.
func (s namespaceSnapshot) compare(t *testing.T, after namespaceSnapshot, when string) {
	t.Helper()
	if after.uid != s.uid {
		t.Errorf("%s: namespace %s was replaced (uid %s, was %s)", when, namespace, after.uid, s.uid)
	}
	if after.resourceVersion != s.resourceVersion {
		t.Errorf("%s: namespace %s was changed (resourceVersion %s, was %s)", when, namespace, after.resourceVersion, s.resourceVersion)
	}
	if !maps.Equal(after.labels, s.labels) {
		t.Errorf("%s: namespace %s labels %v, were %v", when, namespace, after.labels, s.labels)
	}
	if !maps.Equal(after.annotations, s.annotations) {
		t.Errorf("%s: namespace %s annotations %v, were %v", when, namespace, after.annotations, s.annotations)
	}
	if after.phase != corev1.NamespaceActive {
		t.Errorf("%s: namespace %s is %s", when, namespace, after.phase)
	}
	for key, was := range s.objects {
		if now := after.objects[key]; now != was {
			t.Errorf("%s: %s in %s is %s, was %s (uid@resourceVersion)", when, key, namespace, now, was)
		}
	}
}

// checkNamespaceUntouched creates kyma-system as a platform team would
// (from deploy/namespace, with a label and an annotation of its own, and
// a ConfigMap and a Secret in it), then applies the rendered manifest with
// kubectl apply --server-side -f and deletes it with kubectl delete -f:
// the namespace and its objects must come out unchanged. The namespace
// stays for the steps that follow.
func checkNamespaceUntouched(t *testing.T) {
	kube := cluster.Current().Clientset()
	ctx := cluster.Context(t)
	nsObjs := render(t, "deploy/namespace")
	if len(nsObjs) != 1 {
		t.Fatalf("deploy/namespace renders %d objects", len(nsObjs))
	}
	ns := toTyped[corev1.Namespace](t, nsObjs[0])
	ns.Labels["example.com/team"] = "platform"
	ns.Annotations = map[string]string{"example.com/owner": "platform-team"}
	if _, err := kube.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{}); err != nil {
		t.Fatalf("creating namespace %s: %v", namespace, err)
	}
	if _, err := kube.CoreV1().ConfigMaps(namespace).Create(ctx, &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Name: "shared-settings", Labels: map[string]string{"example.com/team": "platform"}},
		Data:       map[string]string{"key": "value"},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := kube.CoreV1().Secrets(namespace).Create(ctx, &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: "shared-credentials"},
		StringData: map[string]string{"token": "not-a-secret"},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	objects := map[string]string{"ConfigMap/shared-settings": "", "Secret/shared-credentials": ""}
	before := snapshotNamespace(t, objects)

	file := filepath.Join(t.TempDir(), "istio-operator.yaml")
	if err := os.WriteFile(file, renderRaw(t, "deploy/base"), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := kubectl(t, "apply", "--server-side", "-f", file); err != nil {
		t.Fatalf("kubectl apply --server-side -f: %v\n%s", err, out)
	}
	before.compare(t, snapshotNamespace(t, objects), "after kubectl apply --server-side -f")
	if out, err := kubectl(t, "delete", "-f", file, "--wait", "--timeout=2m"); err != nil {
		t.Fatalf("kubectl delete -f: %v\n%s", err, out)
	}
	before.compare(t, snapshotNamespace(t, objects), "after kubectl delete -f")
	// The delete did delete the manifest's objects.
	if _, err := kube.AppsV1().Deployments(namespace).Get(ctx, "istio-operator", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("Deployment istio-operator after kubectl delete -f: %v", err)
	}
	if _, err := kube.CoreV1().ServiceAccounts(namespace).Get(ctx, serviceAccount, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("ServiceAccount %s after kubectl delete -f: %v", serviceAccount, err)
	}
}

// checkServiceMonitorOverlay checks that the overlay is the base plus a
// ServiceMonitor that selects the metrics Service and its port, and the
// PrometheusRule of the operator's alerts.
func checkServiceMonitorOverlay(t *testing.T) {
	objs := render(t, "deploy/overlays/servicemonitor")
	if base := render(t, "deploy/base"); len(objs) != len(base)+2 {
		t.Errorf("the overlay renders %d objects, want the base's %d, a ServiceMonitor and a PrometheusRule", len(objs), len(base))
	}
	if find(objs, "PrometheusRule", "istio-operator") == nil {
		t.Error("the overlay renders no PrometheusRule istio-operator")
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
// real, into the namespace the previous step created (from
// deploy/namespace), as a user creates it before applying the manifest.
func dryRunThenApply(t *testing.T, objs []*unstructured.Unstructured) {
	a := newApplier(t)
	ctx := cluster.Context(t)
	if _, err := cluster.Current().Clientset().CoreV1().Namespaces().Get(ctx, namespace, metav1.GetOptions{}); err != nil {
		t.Fatalf("namespace %s, which the manifest needs and does not create: %v", namespace, err)
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

// checkRBACCoversRenderedIstio renders Istio for the default resource, for
// one with every optional component the API offers (egress gateway,
// NetworkPolicies) and for one with every experimental feature (ztunnel,
// the CNI agent's ambient role), and asks the authorizer whether the
// ServiceAccount may do to each rendered object what the installer does:
// watch its kind cluster-wide, apply (create and patch) and delete it,
// escalate the roles and bind the bindings' roles. Then the users' Istio kinds, which a
// deletion watches and may delete. The real run covers one configuration;
// this covers the kinds and names of the others.
func checkRBACCoversRenderedIstio(t *testing.T) {
	a := newApplier(t)
	specs := apitest.RenderingSpecs()
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
	// Every rendering as the default revision, and the default one also as
	// the revision a canary upgrade installs this version as.
	type rendering struct {
		name string
		spec *v1alpha2.IstioSpec
		as   istioclient.Revision
	}
	target := istioclient.MustParseVersion(istioclient.Version)
	var renderings []rendering
	for name, spec := range specs {
		renderings = append(renderings, rendering{name, spec, istioclient.Revision{}})
	}
	renderings = append(renderings, rendering{"canary revision", &v1alpha2.IstioSpec{},
		istioclient.Revision{Name: istioclient.RevisionName(target), Version: target}})
	for _, rd := range renderings {
		name, spec := rd.name, rd.spec
		iop, err := istioclient.DesiredIstioOperatorAs(spec, rd.as)
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
		// Secrets are read only in an istio-system the operator created,
		// through the RoleBinding it creates there.
		{Verb: "list", Resource: "secrets"},
		{Verb: "watch", Resource: "secrets"},
		{Verb: "list", Resource: "secrets", Namespace: "istio-system"},
		{Verb: "delete", Resource: "pods", Namespace: "default", Name: "app"},
		{Verb: "delete", Resource: "namespaces", Name: namespace},
		{Verb: "patch", Resource: "namespaces", Name: "default"},
		{Verb: "bind", Group: "rbac.authorization.k8s.io", Resource: "clusterroles", Name: "istio-operator"},
		{Verb: "create", Resource: "secrets", Namespace: "istio-system"},
		{Verb: "create", Resource: "pods", Namespace: "default"},
		{Verb: "update", Group: "apps", Resource: "deployments", Namespace: "default"},
		{Verb: "delete", Group: "apps", Resource: "statefulsets", Namespace: "default"},
		{Verb: "create", Group: "coordination.k8s.io", Resource: "leases", Namespace: "default"},
		{Verb: "delete", Group: "operator.kyma-project.io", Resource: "istios", Namespace: namespace},
		{Verb: "get", Group: "projectcalico.org", Resource: "felixconfigurations", Name: "other"},
		{Verb: "impersonate", Resource: "serviceaccounts"},
		// Writes are restricted to the names Istio's charts render.
		{Verb: "delete", Group: "apiextensions.k8s.io", Resource: "customresourcedefinitions", Name: "istios.operator.kyma-project.io"},
		{Verb: "patch", Group: "apiextensions.k8s.io", Resource: "customresourcedefinitions", Name: "servicemonitors.monitoring.coreos.com"},
		{Verb: "delete", Group: "rbac.authorization.k8s.io", Resource: "clusterroles", Name: "cluster-admin"},
		{Verb: "patch", Group: "rbac.authorization.k8s.io", Resource: "clusterrolebindings", Name: "cluster-admin"},
		{Verb: "delete", Group: "rbac.authorization.k8s.io", Resource: "clusterroles", Name: "istio-operator"},
		{Verb: "patch", Group: "admissionregistration.k8s.io", Resource: "mutatingwebhookconfigurations", Name: "another-injector"},
		{Verb: "update", Group: "admissionregistration.k8s.io", Resource: "mutatingwebhookconfigurations", Name: "istio-revision-tag-default"},
		{Verb: "delete", Group: "admissionregistration.k8s.io", Resource: "validatingwebhookconfigurations", Name: "another-validator"},
		{Verb: "get", Resource: "configmaps", Namespace: "kube-system", Name: "kubeadm-config"},
		{Verb: "patch", Resource: "configmaps", Namespace: namespace, Name: "shared-settings"},
		{Verb: "delete", Resource: "services", Namespace: "default", Name: "kubernetes"},
		{Verb: "delete", Group: "apps", Resource: "deployments", Namespace: namespace, Name: "istio-operator"},
		{Verb: "patch", Group: "security.istio.io", Resource: "peerauthentications", Namespace: "default", Name: "app"},
		{Verb: "patch", Group: "operator.kyma-project.io", Resource: "istios", Namespace: namespace},
		{Verb: "update", Group: "operator.kyma-project.io", Resource: "istios", Subresource: "status", Namespace: namespace},
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
// through it as the ServiceAccount: the proxy authenticates with a token
// of the ServiceAccount (TokenRequest), so the API server authenticates,
// authorizes and audits every request as the ServiceAccount, as it would
// the operator's pod.
func serviceAccountKubeconfig(t *testing.T) (string, *forbidden) {
	t.Helper()
	c := cluster.Current()
	token, err := c.Clientset().CoreV1().ServiceAccounts(namespace).CreateToken(cluster.Context(t), serviceAccount,
		&authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: ptr.To[int64](2 * 3600)}},
		metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("a token for ServiceAccount %s/%s: %v", namespace, serviceAccount, err)
	}
	saConfig := rest.AnonymousClientConfig(c.Config)
	saConfig.BearerToken = token.Status.Token
	rec := &forbidden{}
	proxy := cluster.NewProxy(t, saConfig, func(resp *http.Response) {
		if resp.StatusCode != http.StatusForbidden {
			return
		}
		req := resp.Request
		var status metav1.Status
		body, _ := io.ReadAll(resp.Body)
		resp.Body = io.NopCloser(bytes.NewReader(body))
		_ = json.Unmarshal(body, &status)
		rec.mu.Lock()
		rec.requests = append(rec.requests, fmt.Sprintf("%s %s: %s", req.Method, req.URL.RequestURI(), status.Message))
		rec.mu.Unlock()
	})
	path := proxy.Kubeconfig
	return path, rec
}

// runOperatorAsServiceAccount runs the operator with leader election as the
// ServiceAccount and takes an Istio resource through install, a sidecar
// restart, a configuration change (egress gateway and NetworkPolicies on,
// then off again: pruning) and a cascading uninstall that deletes the
// users' Istio resources; any 403 on the way fails the test, and so does a
// right the manifest grants that the API server's audit log shows unused.
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
	t.Run("configuration change", func(t *testing.T) { checkConfigurationChange(t) })

	userNamespace := createUserResources(t)
	setDeletionStrategy(t, v1alpha2.DeletionStrategyCascading)
	operatortest.DeleteIstio(t, installTimeout, namespace, "default")
	operatortest.WaitUninstalled(t, 2*time.Minute)
	for _, ur := range istioclient.UserResources {
		list, err := cluster.Current().Dynamic().Resource(ur.Resource).Namespace(userNamespace).List(cluster.Context(t), metav1.ListOptions{})
		if err == nil && len(list.Items) > 0 {
			t.Errorf("the users' %s survived a cascading deletion", ur.Kind)
		}
	}

	op.Stop()
	if f := rec.list(); len(f) > 0 {
		t.Errorf("%d requests of the operator were forbidden:\n%s", len(f), strings.Join(f, "\n"))
	}
	if n := operatortest.Counter(t, "rest_client_requests_total", map[string]string{"code": "403"}) - forbiddenBefore; n > 0 {
		t.Errorf("client-go counted %v responses 403", n)
	}
	t.Run("every granted right was used", checkEveryRuleUsed)
}

// updateSpec changes the Istio resource's spec, retrying on conflicts
// with the operator's own writes.
func updateSpec(t *testing.T, change func(*v1alpha2.IstioSpec)) {
	t.Helper()
	client := operatortest.Client(t).OperatorV1alpha2().Istios(namespace)
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		istio, err := client.Get(cluster.Context(t), "default", metav1.GetOptions{})
		if err != nil {
			return err
		}
		change(&istio.Spec)
		_, err = client.Update(cluster.Context(t), istio, metav1.UpdateOptions{})
		return err
	})
	if err != nil {
		t.Fatalf("updating Istio %s/default: %v", namespace, err)
	}
}

func setDeletionStrategy(t *testing.T, s v1alpha2.DeletionStrategy) {
	t.Helper()
	updateSpec(t, func(spec *v1alpha2.IstioSpec) { spec.DeletionStrategy = s })
	operatortest.WaitForState(t, installTimeout, namespace, "default", v1alpha2.StateReady,
		v1alpha2.ConditionInstalled, metav1.ConditionTrue, v1alpha2.ReasonIstioInstallSucceeded)
}

// checkConfigurationChange turns on the egress gateway and the
// NetworkPolicies, waits until they are installed, and turns them off
// again: the operator applies new objects of new kinds, and then prunes
// them.
func checkConfigurationChange(t *testing.T) {
	kube := cluster.Current().Clientset()
	updateSpec(t, func(spec *v1alpha2.IstioSpec) {
		spec.NetworkPoliciesEnabled = true
		spec.Components = &v1alpha2.Components{EgressGateway: &v1alpha2.EgressGateway{Enabled: ptr.To(true)}}
	})
	operatortest.WaitForState(t, installTimeout, namespace, "default", v1alpha2.StateReady,
		v1alpha2.ConditionInstalled, metav1.ConditionTrue, v1alpha2.ReasonIstioInstallSucceeded)
	if _, err := kube.AppsV1().Deployments(istioclient.Namespace).Get(cluster.Context(t), "istio-egressgateway", metav1.GetOptions{}); err != nil {
		t.Errorf("egress gateway: %v", err)
	}
	nps, err := kube.NetworkingV1().NetworkPolicies("").List(cluster.Context(t), metav1.ListOptions{})
	if err != nil || len(nps.Items) == 0 {
		t.Errorf("no NetworkPolicies installed: %v", err)
	}

	updateSpec(t, func(spec *v1alpha2.IstioSpec) {
		spec.NetworkPoliciesEnabled = false
		spec.Components = nil
	})
	operatortest.WaitForState(t, installTimeout, namespace, "default", v1alpha2.StateReady,
		v1alpha2.ConditionInstalled, metav1.ConditionTrue, v1alpha2.ReasonIstioInstallSucceeded)
	cluster.WaitFor(t, time.Minute, "the egress gateway and the NetworkPolicies pruned", func(ctx context.Context) (bool, error) {
		if _, err := kube.AppsV1().Deployments(istioclient.Namespace).Get(ctx, "istio-egressgateway", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
			return false, err
		}
		nps, err := kube.NetworkingV1().NetworkPolicies("").List(ctx, metav1.ListOptions{})
		if err != nil {
			return false, err
		}
		return len(nps.Items) == 0, nil
	})
}

// userResourceSpecs are valid specs of one object of each of the users'
// Istio kinds: istiod's validation webhook checks them.
var userResourceSpecs = map[string]map[string]any{
	"AuthorizationPolicy":   {},
	"DestinationRule":       {"host": "reviews.example.com"},
	"EnvoyFilter":           {},
	"Gateway":               {"selector": map[string]any{"istio": "ingressgateway"}, "servers": []any{map[string]any{"port": map[string]any{"number": int64(80), "name": "http", "protocol": "HTTP"}, "hosts": []any{"*"}}}},
	"PeerAuthentication":    {"mtls": map[string]any{"mode": "PERMISSIVE"}},
	"ProxyConfig":           {"concurrency": int64(2)},
	"RequestAuthentication": {},
	"ServiceEntry":          {"hosts": []any{"reviews.example.com"}, "ports": []any{map[string]any{"number": int64(80), "name": "http", "protocol": "HTTP"}}, "resolution": "DNS"},
	"Sidecar":               {"egress": []any{map[string]any{"hosts": []any{"./*", "istio-system/*"}}}},
	"Telemetry":             {},
	"VirtualService":        {"hosts": []any{"reviews.example.com"}, "http": []any{map[string]any{"route": []any{map[string]any{"destination": map[string]any{"host": "reviews.example.com"}}}}}},
	"WasmPlugin":            {"url": "oci://registry.example.com/plugin:1"},
	"WorkloadEntry":         {"address": "10.0.0.1"},
	"WorkloadGroup":         {"template": map[string]any{"serviceAccount": "reviews"}},
}

// createUserResources creates one of each of the users' Istio kinds in a
// namespace of their own, for a cascading deletion to delete.
func createUserResources(t *testing.T) string {
	t.Helper()
	ns := cluster.Namespace(t, nil)
	for _, ur := range istioclient.UserResources {
		spec, ok := userResourceSpecs[ur.Kind]
		if !ok {
			t.Fatalf("no spec for the users' %s in userResourceSpecs", ur.Kind)
		}
		u := &unstructured.Unstructured{Object: map[string]any{
			"apiVersion": ur.Resource.GroupVersion().String(), "kind": ur.Kind,
			"metadata": map[string]any{"name": "reviews", "namespace": ns},
			"spec":     spec,
		}}
		if _, err := cluster.Current().Dynamic().Resource(ur.Resource).Namespace(ns).Create(cluster.Context(t), u, metav1.CreateOptions{}); err != nil {
			t.Fatalf("creating the users' %s: %v", ur.Kind, err)
		}
	}
	return ns
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
	var wide []string // shown only with -o wide
	for _, c := range table.ColumnDefinitions {
		names = append(names, c.Name)
		if c.Priority > 0 {
			wide = append(wide, c.Name)
		}
	}
	if want := []string{"Name", "State", "Istio", "Ready", "Age", "Profile", "Next window"}; !slices.Equal(names, want) {
		t.Fatalf("columns %v, want %v", names, want)
	}
	if want := []string{"Profile", "Next window"}; !slices.Equal(wide, want) {
		t.Errorf("columns shown only with -o wide %v, want %v", wide, want)
	}
	if len(table.Rows) != 1 {
		t.Fatalf("%d rows, want 1", len(table.Rows))
	}
	cells := table.Rows[0].Cells
	// The kwok nodes are large: Production. No restart waits for a window.
	want := []any{"default", string(v1alpha2.StateReady), istioclient.Version, "True", nil, string(v1alpha2.ProfileProduction), nil}
	for i, w := range want {
		if i != 4 && cells[i] != w { // Age varies
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
	out, err = kubectl(t, "get", "istio", "-n", namespace, "-o", "wide")
	if err != nil {
		t.Fatalf("kubectl get istio -o wide: %v\n%s", err, out)
	}
	if header := strings.Fields(strings.SplitN(out, "\n", 2)[0]); !slices.Equal(header, []string{"NAME", "STATE", "ISTIO", "READY", "AGE", "PROFILE", "NEXT", "WINDOW"}) {
		t.Errorf("kubectl get istio -o wide shows\n%s", out)
	}
}

// checkSidecarRestart creates workloads whose pods carry an older proxy
// (as an injector would have put it there before the install) and waits
// until the proxy sidecar controller has restarted them: a Deployment,
// which it rolls with a patch of its template, and an OnDelete
// StatefulSet, an owner-less ReplicaSet and a ReplicationController,
// which it marks with a patch and whose pods it then evicts. Patches of
// workloads in another namespace, and Events there.
func checkSidecarRestart(t *testing.T) {
	ns := cluster.Namespace(t, nil)
	d := cluster.NewDeployment("app", 1)
	cluster.AsInjected(&d.Spec.Template.ObjectMeta, &d.Spec.Template.Spec, istioclient.Hub+"/proxyv2:1.30.0")
	kube := cluster.Current().Clientset()
	ctx := cluster.Context(t)
	if _, err := kube.AppsV1().Deployments(ns).Create(ctx, d, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	template := func(app string) corev1.PodTemplateSpec {
		tpl := *d.Spec.Template.DeepCopy()
		tpl.Labels["app"] = app // the injector's labels stay
		return tpl
	}
	selector := func(app string) *metav1.LabelSelector {
		return &metav1.LabelSelector{MatchLabels: map[string]string{"app": app}}
	}
	if _, err := kube.AppsV1().StatefulSets(ns).Create(ctx, &appsv1.StatefulSet{
		ObjectMeta: metav1.ObjectMeta{Name: "db"},
		Spec: appsv1.StatefulSetSpec{Replicas: ptr.To[int32](1), Selector: selector("db"), Template: template("db"),
			UpdateStrategy: appsv1.StatefulSetUpdateStrategy{Type: appsv1.OnDeleteStatefulSetStrategyType}},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := kube.AppsV1().ReplicaSets(ns).Create(ctx, &appsv1.ReplicaSet{
		ObjectMeta: metav1.ObjectMeta{Name: "batch"},
		Spec:       appsv1.ReplicaSetSpec{Replicas: ptr.To[int32](1), Selector: selector("batch"), Template: template("batch")},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	rcTemplate := template("legacy")
	if _, err := kube.CoreV1().ReplicationControllers(ns).Create(ctx, &corev1.ReplicationController{
		ObjectMeta: metav1.ObjectMeta{Name: "legacy"},
		Spec:       corev1.ReplicationControllerSpec{Replicas: ptr.To[int32](1), Selector: map[string]string{"app": "legacy"}, Template: &rcTemplate},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}

	const restartedFor = "istio-operator.kyma-project.io/restarted-for"
	cluster.WaitFor(t, 2*time.Minute, "the outdated Deployment restarted", func(ctx context.Context) (bool, error) {
		got, err := kube.AppsV1().Deployments(ns).Get(ctx, d.Name, metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		return got.Spec.Template.Annotations[restartedFor] != "", nil
	})
	if !operatortest.HasEventOn(t, "Deployment", ns, d.Name, "ProxySidecarRestarted") {
		t.Errorf("no ProxySidecarRestarted Event on Deployment %s/%s: %v", ns, d.Name, operatortest.EventsOn(t, "Deployment", ns, d.Name))
	}
	// The workloads restarted by eviction: marked with annotations on the
	// workload itself (a template change would roll nothing) and their
	// pods evicted one at a time; the audit check (every granted right
	// used) sees the evictions.
	for _, w := range []struct {
		kind, name string
		get        func(ctx context.Context) (metav1.Object, error)
	}{
		{"StatefulSet", "db", func(ctx context.Context) (metav1.Object, error) {
			return kube.AppsV1().StatefulSets(ns).Get(ctx, "db", metav1.GetOptions{})
		}},
		{"ReplicaSet", "batch", func(ctx context.Context) (metav1.Object, error) {
			return kube.AppsV1().ReplicaSets(ns).Get(ctx, "batch", metav1.GetOptions{})
		}},
		{"ReplicationController", "legacy", func(ctx context.Context) (metav1.Object, error) {
			return kube.CoreV1().ReplicationControllers(ns).Get(ctx, "legacy", metav1.GetOptions{})
		}},
	} {
		cluster.WaitFor(t, 2*time.Minute, fmt.Sprintf("the outdated %s %s restarted", w.kind, w.name), func(ctx context.Context) (bool, error) {
			o, err := w.get(ctx)
			if err != nil || o.GetAnnotations()[restartedFor] == "" {
				return false, err
			}
			return operatortest.HasEventOn(t, w.kind, ns, w.name, "ProxySidecarRestarted"), nil
		})
	}
	// Their evictions follow the marks, one pod at a time and only once a
	// workload is ready; the lifecycle does not wait for them (see
	// unexercised in audit_test.go).
}
