// Package coexistence tests the ownership rule against a real API server:
// Istio installed by Helm and by istioctl before the operator starts, and
// users' objects in istio-system, are never changed or deleted by an
// install, a configuration change, pruning or an uninstall of the
// operator's Istio (docs/architecture.md, "Ownership and coexistence").
package coexistence

import (
	"context"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/utils/ptr"

	v1alpha2 "github.com/meshkeeper/istio-operator/pkg/apis/operator/v1alpha2"
	"github.com/meshkeeper/istio-operator/pkg/istioclient"
	"github.com/meshkeeper/istio-operator/test/cluster"
	"github.com/meshkeeper/istio-operator/test/operatortest"
)

const installTimeout = 3 * time.Minute

func TestMain(m *testing.M) {
	cluster.Main(m, cluster.Options{Nodes: 2})
}

// helmRevision is a Helm install of Istio's base and istiod charts with
// revision "helm", as `helm install istio-base` and `helm install istiod
// --set revision=helm` leave it. No HPA: its status would change with
// every metrics poll, and the test compares resourceVersions.
const helmRevision = `
apiVersion: install.istio.io/v1alpha1
kind: IstioOperator
metadata:
  name: helm
  namespace: istio-system
spec:
  profile: minimal
  hub: docker.io/istio
  tag: TAG
  revision: helm
  values:
    pilot:
      autoscaleEnabled: false
`

// istioctlCanary is `istioctl install --revision canary` of istiod and an
// ingress gateway in an application namespace, with the CRDs left to the
// Helm install.
const istioctlCanary = `
apiVersion: install.istio.io/v1alpha1
kind: IstioOperator
metadata:
  name: canary
  namespace: istio-system
spec:
  profile: minimal
  hub: docker.io/istio
  tag: TAG
  revision: canary
  components:
    base:
      enabled: false
    ingressGateways:
    - name: app-gateway
      namespace: app-gateways
      enabled: true
  values:
    pilot:
      autoscaleEnabled: false
    gateways:
      istio-ingressgateway:
        autoscaleEnabled: false
`

// helmDefaultDigest is a Helm install of the default revision whose istiod
// image an admission controller pinned to a digest: its version cannot be
// read from the image, and its labels carry none.
const helmDefaultDigest = `
apiVersion: install.istio.io/v1alpha1
kind: IstioOperator
metadata:
  name: helm-default
  namespace: istio-system
spec:
  profile: minimal
  hub: docker.io/istio
  tag: TAG
  values:
    pilot:
      autoscaleEnabled: false
      image: docker.io/istio/pilot@sha256:4c6e2a9b1f0d3e5a7c8b9d0e1f2a3b4c5d6e7f8a9b0c1d2e3f4a5b6c7d8e9f0a
`

// iop fills in the Istio version the operator runs: the foreign
// installations are of the same release.
func iop(yaml string) string { return strings.ReplaceAll(yaml, "TAG", istioclient.Version) }

func start(t *testing.T, spec v1alpha2.IstioSpec) string {
	t.Helper()
	cluster.InstallIstioCRD(t)
	ns := cluster.Namespace(t, nil)
	operatortest.Start(t, ns)
	operatortest.CreateIstio(t, ns, "default", spec)
	return ns
}

func setSpec(t *testing.T, ns string, change func(*v1alpha2.IstioSpec)) {
	t.Helper()
	client := operatortest.Client(t).OperatorV1alpha2().Istios(ns)
	cluster.WaitFor(t, 30*time.Second, "the spec updated", func(ctx context.Context) (bool, error) {
		istio, err := client.Get(ctx, "default", metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		change(&istio.Spec)
		_, err = client.Update(ctx, istio, metav1.UpdateOptions{})
		return err == nil, err
	})
}

func waitInstalled(t *testing.T, ns string) *v1alpha2.Istio {
	t.Helper()
	return operatortest.WaitForState(t, installTimeout, ns, "default", v1alpha2.StateReady,
		v1alpha2.ConditionInstalled, metav1.ConditionTrue, v1alpha2.ReasonIstioInstallSucceeded)
}

func exists(t *testing.T, kind, namespace, name string) bool {
	t.Helper()
	kube := cluster.Current().Clientset()
	ctx := cluster.Context(t)
	var err error
	switch kind {
	case "Deployment":
		_, err = kube.AppsV1().Deployments(namespace).Get(ctx, name, metav1.GetOptions{})
	case "Namespace":
		var ns *corev1.Namespace
		ns, err = kube.CoreV1().Namespaces().Get(ctx, name, metav1.GetOptions{})
		if err == nil && ns.DeletionTimestamp != nil {
			return false
		}
	case "CustomResourceDefinition":
		_, err = cluster.Current().Dynamic().Resource(crdResource).Get(ctx, name, metav1.GetOptions{})
	default:
		t.Fatalf("exists: kind %s", kind)
	}
	if err != nil && !apierrors.IsNotFound(err) {
		t.Fatalf("reading %s %s/%s: %v", kind, namespace, name, err)
	}
	return err == nil
}

var crdResource = schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"}

// TestBesideHelmAndIstioctl: the operator installs its Istio beside a
// Helm-installed revision and an istioctl-installed canary with a gateway
// in an application namespace, reports them, and through a configuration
// change, pruning and an uninstall leaves every one of their objects as it
// was: same UID, same resourceVersion.
func TestBesideHelmAndIstioctl(t *testing.T) {
	helm := operatortest.InstallForeign(t, "helm-istio", iop(helmRevision), "helm", operatortest.HelmLabels)
	canary := operatortest.InstallForeign(t, "istioctl-canary", iop(istioctlCanary), "istioctl", operatortest.IstioctlLabels("canary"))
	t.Cleanup(func() {
		canary.Remove(t)
		helm.Remove(t)
	})
	helm.WaitSettled(t, time.Minute)
	canary.WaitSettled(t, time.Minute)
	helmBefore, canaryBefore := helm.Snapshot(t), canary.Snapshot(t)
	check := func(after string) {
		t.Helper()
		helm.CheckUntouched(t, helmBefore, after)
		canary.CheckUntouched(t, canaryBefore, after)
	}

	ns := start(t, v1alpha2.IstioSpec{})
	istio := waitInstalled(t, ns)
	installed := meta.FindStatusCondition(istio.Status.Conditions, v1alpha2.ConditionInstalled)
	for _, want := range []string{
		"Deployment istio-system/istiod-canary (revision canary, Istio " + istioclient.Version + ", installed by istioctl)",
		"Deployment istio-system/istiod-helm (revision helm, Istio " + istioclient.Version + ", installed by Helm)",
	} {
		if !strings.Contains(installed.Message, want) {
			t.Errorf("the Installed condition does not report %q: %q", want, installed.Message)
		}
	}
	if !exists(t, "Deployment", istioclient.Namespace, "istiod") {
		t.Fatal("the operator's istiod is not installed")
	}
	check("the install")

	setSpec(t, ns, func(s *v1alpha2.IstioSpec) {
		s.Components = &v1alpha2.Components{EgressGateway: &v1alpha2.EgressGateway{Enabled: ptr.To(true)}}
	})
	waitInstalled(t, ns)
	if !exists(t, "Deployment", istioclient.Namespace, "istio-egressgateway") {
		t.Fatal("the configuration change did not install the egress gateway")
	}
	check("a configuration change")

	setSpec(t, ns, func(s *v1alpha2.IstioSpec) { s.Components = nil })
	waitInstalled(t, ns)
	cluster.WaitFor(t, time.Minute, "the egress gateway pruned", func(context.Context) (bool, error) {
		return !exists(t, "Deployment", istioclient.Namespace, "istio-egressgateway"), nil
	})
	check("pruning")

	operatortest.DeleteIstio(t, installTimeout, ns, "default")
	if exists(t, "Deployment", istioclient.Namespace, "istiod") {
		t.Error("the operator's istiod survived the uninstall")
	}
	check("the uninstall")
	// The other control planes serve Istio's kinds: the CRDs stay.
	if !exists(t, "CustomResourceDefinition", "", "virtualservices.networking.istio.io") {
		t.Error("the uninstall deleted Istio's CRDs, which the other control planes use")
	}
	if !exists(t, "Namespace", "", istioclient.Namespace) {
		t.Error("the uninstall deleted istio-system, which the operator did not create")
	}
	if !operatortest.HasEventWith(t, ns, "default", "NamespaceKept", "was not created by the operator") {
		t.Errorf("no NamespaceKept Event; events: %v", operatortest.Events(t, ns, "default"))
	}
}

// TestForeignDefaultRevisionIsRefused: a Helm-installed default revision,
// its istiod pinned to a digest, is the control plane the operator would
// install: it refuses with a Warning that names it, touches none of its
// objects, and deleting the Istio resource uninstalls none of them.
func TestForeignDefaultRevisionIsRefused(t *testing.T) {
	helm := operatortest.InstallForeign(t, "helm-default", iop(helmDefaultDigest), "helm", func(u *unstructured.Unstructured) {
		operatortest.HelmLabels(u)
		l := u.GetLabels()
		delete(l, "operator.istio.io/version")
		u.SetLabels(l)
	})
	t.Cleanup(func() { helm.Remove(t) })
	helm.WaitSettled(t, time.Minute)
	before := helm.Snapshot(t)

	ns := start(t, v1alpha2.IstioSpec{})
	istio := operatortest.WaitForState(t, installTimeout, ns, "default", v1alpha2.StateWarning,
		v1alpha2.ConditionInstalled, metav1.ConditionFalse, v1alpha2.ReasonForeignIstioFound)
	installed := meta.FindStatusCondition(istio.Status.Conditions, v1alpha2.ConditionInstalled)
	if want := "Deployment istio-system/istiod (installed by Helm)"; !strings.Contains(installed.Message, want) {
		t.Errorf("the Installed condition does not name %q: %q", want, installed.Message)
	}
	if !operatortest.HasEventWith(t, ns, "default", v1alpha2.ReasonForeignIstioFound, "istiod (installed by Helm)") {
		t.Errorf("no %s Event; events: %v", v1alpha2.ReasonForeignIstioFound, operatortest.Events(t, ns, "default"))
	}
	helm.CheckUntouched(t, before, "the refused install")

	operatortest.DeleteIstio(t, installTimeout, ns, "default")
	helm.CheckUntouched(t, before, "deleting the Istio resource")
	if !exists(t, "Namespace", "", istioclient.Namespace) {
		t.Error("deleting the Istio resource deleted istio-system")
	}
}

// TestUserObjectsKeepIstioSystem: users keep a TLS Secret and a ConfigMap
// in the istio-system the operator created; the uninstall removes Istio
// and keeps the namespace and both objects, saying why in an Event.
func TestUserObjectsKeepIstioSystem(t *testing.T) {
	ns := start(t, v1alpha2.IstioSpec{})
	waitInstalled(t, ns)
	kube := cluster.Current().Clientset()
	ctx := cluster.Context(t)
	secret, err := kube.CoreV1().Secrets(istioclient.Namespace).Create(ctx, &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: "gateway-tls"},
		Type:       corev1.SecretTypeOpaque,
		Data:       map[string][]byte{"tls.key": []byte("key")},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	cm, err := kube.CoreV1().ConfigMaps(istioclient.Namespace).Create(ctx, &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Name: "team-settings"},
		Data:       map[string]string{"owner": "platform"},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx := cluster.Context(t)
		if err := kube.CoreV1().Namespaces().Delete(ctx, istioclient.Namespace, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
			t.Errorf("deleting istio-system: %v", err)
		}
		operatortest.WaitUninstalled(t, 2*time.Minute)
	})

	operatortest.DeleteIstio(t, installTimeout, ns, "default")
	if exists(t, "Deployment", istioclient.Namespace, "istiod") {
		t.Error("istiod survived the uninstall")
	}
	if !exists(t, "Namespace", "", istioclient.Namespace) {
		t.Fatal("the uninstall deleted istio-system with the users' objects in it")
	}
	if got, err := kube.CoreV1().Secrets(istioclient.Namespace).Get(ctx, secret.Name, metav1.GetOptions{}); err != nil || got.UID != secret.UID {
		t.Errorf("the users' Secret after the uninstall: %v", err)
	}
	if got, err := kube.CoreV1().ConfigMaps(istioclient.Namespace).Get(ctx, cm.Name, metav1.GetOptions{}); err != nil || got.UID != cm.UID {
		t.Errorf("the users' ConfigMap after the uninstall: %v", err)
	}
	if !operatortest.HasEventWith(t, ns, "default", "NamespaceKept", "ConfigMap team-settings, Secret gateway-tls") {
		t.Errorf("no NamespaceKept Event naming the users' objects; events: %v", operatortest.Events(t, ns, "default"))
	}
}
