// Package installation tests the installation controller against a real
// API server: install, no writes when nothing changed, configuration
// changes and drift repair. The one-resource rule and invalid specs are
// bad input, tested in test/reliability/input.
package installation

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/tools/cache"

	v1alpha2 "github.com/meshkeeper/istio-operator/pkg/apis/operator/v1alpha2"
	"github.com/meshkeeper/istio-operator/pkg/controllers/installation"
	"github.com/meshkeeper/istio-operator/pkg/istioclient"
	"github.com/meshkeeper/istio-operator/test/cluster"
	"github.com/meshkeeper/istio-operator/test/operatortest"
)

const installTimeout = 2 * time.Minute

func TestMain(m *testing.M) {
	cluster.Main(m, cluster.Options{Nodes: 2})
}

// setup installs the CRD, starts the operator for a fresh namespace and
// creates the served Istio resource; the cleanup uninstalls.
func setup(t *testing.T, spec v1alpha2.IstioSpec) (string, *operatortest.Operator) {
	t.Helper()
	cluster.InstallIstioCRD(t)
	ns := cluster.Namespace(t, nil)
	op := operatortest.Start(t, ns)
	operatortest.CreateIstio(t, ns, "default", spec)
	t.Cleanup(func() { operatortest.DeleteIstio(t, installTimeout, ns, "default") })
	return ns, op
}

func TestInstallThenNoWritesWhenNothingChanged(t *testing.T) {
	ns, op := setup(t, v1alpha2.IstioSpec{})
	start := time.Now()
	istio := operatortest.WaitForState(t, installTimeout, ns, "default", v1alpha2.StateReady,
		v1alpha2.ConditionInstalled, metav1.ConditionTrue, v1alpha2.ReasonIstioInstallSucceeded)
	t.Logf("Istio installed and Ready in %s", time.Since(start).Round(time.Millisecond))

	if istio.Status.InstalledVersion != istioclient.Version {
		t.Errorf("status.installedVersion %q, want %s", istio.Status.InstalledVersion, istioclient.Version)
	}
	if c := meta.FindStatusCondition(istio.Status.Conditions, v1alpha2.ConditionReady); c == nil || c.Status != metav1.ConditionTrue {
		t.Errorf("Ready condition %+v", c)
	}
	for _, w := range []struct{ kind, name, container, image string }{
		{"Deployment", "istiod", "discovery", "docker.io/istio/pilot:" + istioclient.Version},
		{"Deployment", "istio-ingressgateway", "istio-proxy", "docker.io/istio/proxyv2:" + istioclient.Version},
		{"DaemonSet", "istio-cni-node", "install-cni", "docker.io/istio/install-cni:" + istioclient.Version},
	} {
		if got := operatortest.Image(t, w.kind, istioclient.Namespace, w.name, w.container); got != w.image {
			t.Errorf("%s %s container %s runs %q, want %s", w.kind, w.name, w.container, got, w.image)
		}
	}
	if !operatortest.HasEvent(t, ns, "default", "InstallSucceeded") {
		t.Errorf("no InstallSucceeded Event; events: %v", operatortest.Events(t, ns, "default"))
	}

	// Resync with nothing changed: the reconcile runs, and writes nothing.
	writes := operatortest.WriteCounts(t)
	for range 3 {
		before := operatortest.Reconciles(t, installation.Name)
		op.Installation.Loop().Add(cache.ObjectName{Namespace: ns, Name: "default"})
		cluster.WaitFor(t, 30*time.Second, "a resync reconcile", func(context.Context) (bool, error) {
			return operatortest.Reconciles(t, installation.Name) > before, nil
		})
	}
	if got := operatortest.NewWrites(t, writes); len(got) != 0 {
		t.Errorf("writes during resyncs with nothing changed: %v, want none", got)
	}
	if lists := operatortest.Requests(t, func(verb, _ string) bool { return verb == "list" }); lists > 0 {
		t.Logf("LIST requests since start: %v (informer start-up and Istio's webhook checks)", lists)
	}
}

func TestConfigChangeAndDriftRepair(t *testing.T) {
	ns, _ := setup(t, v1alpha2.IstioSpec{})
	operatortest.WaitForState(t, installTimeout, ns, "default", v1alpha2.StateReady, v1alpha2.ConditionInstalled, metav1.ConditionTrue, v1alpha2.ReasonIstioInstallSucceeded)
	kube := cluster.Current().Clientset()

	// A changed field reaches the mesh configuration.
	patch := []byte(`{"spec":{"config":{"numTrustedProxies":3}}}`)
	if _, err := operatortest.Client(t).OperatorV1alpha2().Istios(ns).Patch(t.Context(), "default", types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	cluster.WaitFor(t, 30*time.Second, "numTrustedProxies 3 in the mesh config", func(ctx context.Context) (bool, error) {
		cm, err := kube.CoreV1().ConfigMaps(istioclient.Namespace).Get(ctx, "istio", metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		return strings.Contains(cm.Data["mesh"], "numTrustedProxies: 3"), nil
	})
	operatortest.WaitForState(t, installTimeout, ns, "default", v1alpha2.StateReady, v1alpha2.ConditionInstalled, metav1.ConditionTrue, v1alpha2.ReasonIstioInstallSucceeded)

	// networkPoliciesEnabled adds the policies, and unsetting it prunes them.
	policies := func(ctx context.Context) (int, error) {
		n := 0
		for _, namespace := range []string{istioclient.Namespace, ns} {
			l, err := kube.NetworkingV1().NetworkPolicies(namespace).List(ctx, metav1.ListOptions{})
			if err != nil {
				return 0, err
			}
			n += len(l.Items)
		}
		return n, nil
	}
	for _, enabled := range []bool{true, false} {
		p := []byte(fmt.Sprintf(`{"spec":{"networkPoliciesEnabled":%t}}`, enabled))
		if _, err := operatortest.Client(t).OperatorV1alpha2().Istios(ns).Patch(t.Context(), "default", types.MergePatchType, p, metav1.PatchOptions{}); err != nil {
			t.Fatal(err)
		}
		want := 0
		if enabled {
			want = 4
		}
		cluster.WaitFor(t, 30*time.Second, fmt.Sprintf("%d NetworkPolicies", want), func(ctx context.Context) (bool, error) {
			n, err := policies(ctx)
			return n == want, err
		})
	}
	operatortest.WaitForState(t, installTimeout, ns, "default", v1alpha2.StateReady, v1alpha2.ConditionInstalled, metav1.ConditionTrue, v1alpha2.ReasonIstioInstallSucceeded)

	// A deleted Deployment comes back within seconds.
	old, err := kube.AppsV1().Deployments(istioclient.Namespace).Get(t.Context(), "istiod", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := kube.AppsV1().Deployments(istioclient.Namespace).Delete(t.Context(), "istiod", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	cluster.WaitFor(t, 15*time.Second, "istiod recreated", func(ctx context.Context) (bool, error) {
		d, err := kube.AppsV1().Deployments(istioclient.Namespace).Get(ctx, "istiod", metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return false, nil
		}
		return err == nil && d.UID != old.UID, err
	})
	t.Logf("deleted istiod recreated in %s", time.Since(start).Round(time.Millisecond))

	// A deleted revision tag webhook (created outside the charts) comes
	// back, with the operator's owner labels, so that uninstalling removes it.
	hooks := kube.AdmissionregistrationV1().MutatingWebhookConfigurations()
	if err := hooks.Delete(t.Context(), istioclient.TagWebhookName, metav1.DeleteOptions{}); err != nil {
		t.Fatalf("deleting the revision tag webhook: %v", err)
	}
	cluster.WaitFor(t, 15*time.Second, istioclient.TagWebhookName+" recreated", func(ctx context.Context) (bool, error) {
		h, err := hooks.Get(ctx, istioclient.TagWebhookName, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return false, nil
		}
		if err != nil {
			return false, err
		}
		if h.Labels["operator.istio.io/component"] == "" {
			return false, fmt.Errorf("%s has no component label: %v", istioclient.TagWebhookName, h.Labels)
		}
		return true, nil
	})

	// An edited image is restored.
	want := "docker.io/istio/pilot:" + istioclient.Version
	edit := []byte(`{"spec":{"template":{"spec":{"containers":[{"name":"discovery","image":"docker.io/istio/pilot:0.0.1"}]}}}}`)
	cluster.WaitFor(t, 15*time.Second, "istiod image edited", func(ctx context.Context) (bool, error) {
		_, err := kube.AppsV1().Deployments(istioclient.Namespace).Patch(ctx, "istiod", types.StrategicMergePatchType, edit, metav1.PatchOptions{})
		return err == nil, err
	})
	start = time.Now()
	cluster.WaitFor(t, 15*time.Second, "istiod image restored to "+want, func(context.Context) (bool, error) {
		return operatortest.Image(t, "Deployment", istioclient.Namespace, "istiod", "discovery") == want, nil
	})
	t.Logf("edited istiod image restored in %s", time.Since(start).Round(time.Millisecond))
	operatortest.WaitForState(t, installTimeout, ns, "default", v1alpha2.StateReady, v1alpha2.ConditionInstalled, metav1.ConditionTrue, v1alpha2.ReasonIstioInstallSucceeded)
	if !operatortest.HasEvent(t, ns, "default", "RepairSucceeded") {
		t.Errorf("no RepairSucceeded Event; events: %v", operatortest.Events(t, ns, "default"))
	}

	// Istio's own run-time change (istiod patching its webhook's CA bundle)
	// is not drift: no repair follows.
	writes := operatortest.WriteCounts(t)
	caPatch := []byte(`{"webhooks":[{"name":"rev.validation.istio.io","clientConfig":{"caBundle":"Y2E="}}]}`)
	if _, err := kube.AdmissionregistrationV1().ValidatingWebhookConfigurations().Patch(t.Context(), "istio-validator-istio-system",
		types.StrategicMergePatchType, caPatch, metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	// Give the watch time to deliver the change and a reconcile to run.
	before := operatortest.Reconciles(t, installation.Name)
	cluster.WaitFor(t, 30*time.Second, "a reconcile after the CA bundle patch", func(context.Context) (bool, error) {
		return operatortest.Reconciles(t, installation.Name) > before, nil
	})
	if got := operatortest.NewWrites(t, writes); len(got) != 0 {
		t.Errorf("writes after an istiod-style CA bundle patch: %v, want none", got)
	}
}

// An install right after an uninstall waits, saying so in its condition and
// without failing, until the previous installation's istio-system is gone.
func TestInstallWaitsForTerminatingNamespace(t *testing.T) {
	ns, _ := setup(t, v1alpha2.IstioSpec{})
	operatortest.WaitForState(t, installTimeout, ns, "default", v1alpha2.StateReady, v1alpha2.ConditionInstalled, metav1.ConditionTrue, v1alpha2.ReasonIstioInstallSucceeded)
	kube := cluster.Current().Clientset()

	// A finalizer on istiod's root certificate, an object of Istio's own,
	// lets the uninstall delete istio-system and keeps it terminating. The
	// real istiod may have written it already.
	const holdFinalizer = "test.meshkeeper.io/hold"
	hold := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "istio-ca-root-cert", Namespace: istioclient.Namespace, Finalizers: []string{holdFinalizer}}}
	_, err := kube.CoreV1().ConfigMaps(istioclient.Namespace).Create(t.Context(), hold, metav1.CreateOptions{})
	if apierrors.IsAlreadyExists(err) {
		_, err = kube.CoreV1().ConfigMaps(istioclient.Namespace).Patch(t.Context(), hold.Name, types.MergePatchType,
			[]byte(`{"metadata":{"finalizers":["`+holdFinalizer+`"]}}`), metav1.PatchOptions{})
	}
	if err != nil {
		t.Fatal(err)
	}
	release := func() {
		_, err := kube.CoreV1().ConfigMaps(istioclient.Namespace).Patch(cluster.Context(t), hold.Name, types.MergePatchType,
			[]byte(`{"metadata":{"finalizers":null}}`), metav1.PatchOptions{})
		if err != nil && !apierrors.IsNotFound(err) {
			t.Errorf("releasing istio-system: %v", err)
		}
	}
	t.Cleanup(release)

	operatortest.DeleteIstio(t, installTimeout, ns, "default")
	cluster.WaitFor(t, 30*time.Second, "istio-system terminating", func(ctx context.Context) (bool, error) {
		n, err := kube.CoreV1().Namespaces().Get(ctx, istioclient.Namespace, metav1.GetOptions{})
		return err == nil && n.DeletionTimestamp != nil, err
	})

	operatortest.CreateIstio(t, ns, "default", v1alpha2.IstioSpec{})
	cluster.WaitFor(t, 30*time.Second, "Installed=False waiting for istio-system", func(ctx context.Context) (bool, error) {
		istio, err := operatortest.Client(t).OperatorV1alpha2().Istios(ns).Get(ctx, "default", metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		c := meta.FindStatusCondition(istio.Status.Conditions, v1alpha2.ConditionInstalled)
		if c == nil || c.Status != metav1.ConditionFalse || c.Reason != v1alpha2.ReasonIstioInstalling ||
			!strings.Contains(c.Message, "Waiting for namespace "+istioclient.Namespace) {
			return false, fmt.Errorf("state %s, Installed %+v", istio.Status.State, c)
		}
		return istio.Status.State == v1alpha2.StateProcessing, nil
	})
	if operatortest.HasEvent(t, ns, "default", "InstallFailed") {
		t.Errorf("the install failed while istio-system terminated; events: %v", operatortest.Events(t, ns, "default"))
	}

	release()
	operatortest.WaitForState(t, installTimeout, ns, "default", v1alpha2.StateReady, v1alpha2.ConditionInstalled, metav1.ConditionTrue, v1alpha2.ReasonIstioInstallSucceeded)
}

// TestDependentsWaitWithoutRewritesDuringInstall: while Istio installs, the
// installation controller writes its progress to the Installed condition
// about once a second; the other controllers' waiting conditions follow
// only Installed's status, reason and generation, so they are written once
// per change of those, not once per progress step. Every write of the
// resource is seen through a watch opened before it exists.
func TestDependentsWaitWithoutRewritesDuringInstall(t *testing.T) {
	cluster.InstallIstioCRD(t)
	ns := cluster.Namespace(t, nil)
	client := operatortest.Client(t)
	w, err := client.OperatorV1alpha2().Istios(ns).Watch(t.Context(), metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	operatortest.Start(t, ns)
	operatortest.CreateIstio(t, ns, "default", v1alpha2.IstioSpec{})
	t.Cleanup(func() { operatortest.DeleteIstio(t, installTimeout, ns, "default") })

	dependents := []string{
		v1alpha2.ConditionIngressGatewayReady, v1alpha2.ConditionIngressTargetingUserResourceFound,
		v1alpha2.ConditionPeerAuthenticationReady, v1alpha2.ConditionProxySidecarRestartSucceeded,
	}
	progress := map[string]bool{}        // Installed messages while installing
	installedStates := map[string]bool{} // Installed status, reason and generation
	waitingWrites := map[string]int{}    // per dependent condition
	last := map[string]string{}
	timeout := time.After(installTimeout)
	for done := false; !done; {
		var ev watch.Event
		select {
		case ev = <-w.ResultChan():
		case <-timeout:
			t.Fatalf("Istio not installed within %s", installTimeout)
		}
		istio, ok := ev.Object.(*v1alpha2.Istio)
		if !ok {
			t.Fatalf("watch event %v: %v", ev.Type, ev.Object)
		}
		installed := meta.FindStatusCondition(istio.Status.Conditions, v1alpha2.ConditionInstalled)
		if installed != nil {
			installedStates[fmt.Sprintf("%s/%s/%d", installed.Status, installed.Reason, installed.ObservedGeneration)] = true
			if installed.Reason == v1alpha2.ReasonIstioInstalling {
				progress[installed.Message] = true
			}
			done = installed.Status == metav1.ConditionTrue && installed.ObservedGeneration == istio.Generation
		}
		for _, typ := range dependents {
			c := meta.FindStatusCondition(istio.Status.Conditions, typ)
			if c == nil || c.Reason != v1alpha2.ReasonWaitingForInstallation {
				continue
			}
			if v := c.Message + "|" + string(c.Status); v != last[typ] {
				last[typ] = v
				waitingWrites[typ]++
			}
		}
	}
	t.Logf("install progress messages: %d; Installed states: %d; waiting writes: %v", len(progress), len(installedStates), waitingWrites)
	if len(progress) < 2 {
		t.Fatalf("the install reported %d progress messages; the check needs at least 2", len(progress))
	}
	for _, typ := range dependents {
		if waitingWrites[typ] == 0 {
			t.Errorf("%s: never reported waiting during the install", typ)
		}
		if waitingWrites[typ] > len(installedStates) {
			t.Errorf("%s: waiting condition written %d times for %d states of Installed; it follows the progress messages", typ, waitingWrites[typ], len(installedStates))
		}
	}
}
