// Package lifecycle tests the installation controller's version gate and
// uninstall against a real API server: upgrades it may make, versions it
// must leave alone, and deletion with user resources present.
package lifecycle

import (
	"context"
	"reflect"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"

	v1alpha2 "github.com/meshkeeper/istio-operator/pkg/apis/operator/v1alpha2"
	"github.com/meshkeeper/istio-operator/pkg/istioclient"
	"github.com/meshkeeper/istio-operator/test/cluster"
	"github.com/meshkeeper/istio-operator/test/operatortest"
)

const installTimeout = 2 * time.Minute

var virtualServices = schema.GroupVersionResource{Group: "networking.istio.io", Version: "v1", Resource: "virtualservices"}

func TestMain(m *testing.M) {
	cluster.Main(m, cluster.Options{Nodes: 2})
}

func istiodImage(t *testing.T) string {
	return operatortest.Image(t, "Deployment", istioclient.Namespace, "istiod", "discovery")
}

// uninstalled waits until istiod and the istio-system namespace are gone.
func uninstalled(t *testing.T) {
	t.Helper()
	operatortest.WaitUninstalled(t, installTimeout)
}

func TestUpgradeFromPreviousMinor(t *testing.T) {
	cluster.InstallIstioCRD(t)
	operatortest.InstallIstio(t, "1.30.2")
	if got := istiodImage(t); got != "docker.io/istio/pilot:1.30.2" {
		t.Fatalf("pre-installed istiod runs %s", got)
	}
	ns := cluster.Namespace(t, nil)
	operatortest.Start(t, ns)
	operatortest.CreateIstio(t, ns, "default", v1alpha2.IstioSpec{})
	t.Cleanup(func() { operatortest.DeleteIstio(t, installTimeout, ns, "default"); uninstalled(t) })

	i := operatortest.WaitForState(t, installTimeout, ns, "default", v1alpha2.StateReady,
		v1alpha2.ConditionInstalled, metav1.ConditionTrue, v1alpha2.ReasonIstioInstallSucceeded)
	if got, want := istiodImage(t), "docker.io/istio/pilot:"+istioclient.Version; got != want {
		t.Errorf("istiod runs %s after the upgrade, want %s", got, want)
	}
	if i.Status.InstalledVersion != istioclient.Version {
		t.Errorf("installedVersion %s", i.Status.InstalledVersion)
	}
	if !operatortest.HasEvent(t, ns, "default", "UpgradeSucceeded") {
		t.Errorf("no UpgradeSucceeded Event: %v", operatortest.Events(t, ns, "default"))
	}
}

func TestUnsupportedVersionsAreLeftUntouched(t *testing.T) {
	cluster.InstallIstioCRD(t)
	for _, tag := range []string{"1.29.3", "1.32.0"} {
		t.Run(tag, func(t *testing.T) {
			operatortest.InstallIstio(t, tag)
			before, err := cluster.Current().Clientset().AppsV1().Deployments(istioclient.Namespace).Get(t.Context(), "istiod", metav1.GetOptions{})
			if err != nil {
				t.Fatal(err)
			}
			ns := cluster.Namespace(t, nil)
			writes := operatortest.WriteCounts(t)
			op := operatortest.Start(t, ns)
			operatortest.CreateIstio(t, ns, "default", v1alpha2.IstioSpec{})
			i := operatortest.WaitForState(t, 30*time.Second, ns, "default", v1alpha2.StateWarning,
				v1alpha2.ConditionReady, metav1.ConditionFalse, v1alpha2.ReasonIstioVersionUpdateNotAllowed)
			msg := meta.FindStatusCondition(i.Status.Conditions, v1alpha2.ConditionReady).Message
			if !strings.Contains(msg, tag) || !strings.Contains(msg, istioclient.Version) {
				t.Errorf("message %q does not name both versions", msg)
			}
			after, err := cluster.Current().Clientset().AppsV1().Deployments(istioclient.Namespace).Get(t.Context(), "istiod", metav1.GetOptions{})
			if err != nil {
				t.Fatal(err)
			}
			// Status updates by the Deployment controller are expected, and
			// so is a new replica count from the installed Istio's
			// HorizontalPodAutoscaler (a new generation); a write by the
			// operator shows as another change of the spec, or a changed
			// label or annotation.
			beforeSpec, afterSpec := before.Spec.DeepCopy(), after.Spec.DeepCopy()
			beforeSpec.Replicas, afterSpec.Replicas = nil, nil
			if !equality.Semantic.DeepEqual(afterSpec, beforeSpec) || !reflect.DeepEqual(after.Labels, before.Labels) ||
				!reflect.DeepEqual(after.Annotations, before.Annotations) {
				t.Errorf("istiod was modified: generation %d -> %d, labels %v -> %v, annotations %v -> %v",
					before.Generation, after.Generation, before.Labels, after.Labels, before.Annotations, after.Annotations)
			}
			if got := operatortest.NewWrites(t, writes); len(got) > 0 && (got["apply deployments"] > 0 || got["patch deployments"] > 0) {
				t.Errorf("the operator wrote Deployments: %v", got)
			}
			// Deleting the resource lets it go without uninstalling an
			// installation the operator refused to manage.
			operatortest.DeleteIstio(t, 30*time.Second, ns, "default")
			if got := istiodImage(t); got != "docker.io/istio/pilot:"+tag {
				t.Errorf("istiod runs %q after the resource was deleted, want it untouched at %s", got, tag)
			}
			op.Stop()
			operatortest.UninstallIstio(t)
		})
	}
}

func createVirtualService(t *testing.T, ns, name string) {
	t.Helper()
	vs := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
		"metadata": map[string]any{"name": name, "namespace": ns},
		"spec":     map[string]any{"hosts": []any{"example.com"}, "http": []any{map[string]any{"route": []any{map[string]any{"destination": map[string]any{"host": "example.com"}}}}}},
	}}
	if _, err := cluster.Current().Dynamic().Resource(virtualServices).Namespace(ns).Create(t.Context(), vs, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
}

func TestDeletionBlockedByUserResources(t *testing.T) {
	cluster.InstallIstioCRD(t)
	ns := cluster.Namespace(t, nil)
	operatortest.Start(t, ns)
	operatortest.CreateIstio(t, ns, "default", v1alpha2.IstioSpec{})
	operatortest.WaitForState(t, installTimeout, ns, "default", v1alpha2.StateReady, v1alpha2.ConditionInstalled, metav1.ConditionTrue, v1alpha2.ReasonIstioInstallSucceeded)

	apps := cluster.Namespace(t, nil)
	createVirtualService(t, apps, "reviews")
	if err := operatortest.Client(t).OperatorV1alpha2().Istios(ns).Delete(t.Context(), "default", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	i := operatortest.WaitForState(t, 30*time.Second, ns, "default", v1alpha2.StateWarning,
		v1alpha2.ConditionReady, metav1.ConditionFalse, v1alpha2.ReasonIstioCustomResourcesDangling)
	msg := meta.FindStatusCondition(i.Status.Conditions, v1alpha2.ConditionReady).Message
	if !strings.Contains(msg, "VirtualService "+apps+"/reviews") {
		t.Errorf("message %q does not name the VirtualService", msg)
	}
	if !operatortest.HasEvent(t, ns, "default", v1alpha2.ReasonIstioCustomResourcesDangling) {
		t.Error("no IstioCustomResourcesDangling Event")
	}
	if _, err := cluster.Current().Clientset().AppsV1().Deployments(istioclient.Namespace).Get(t.Context(), "istiod", metav1.GetOptions{}); err != nil {
		t.Fatalf("istiod is gone although deletion is blocked: %v", err)
	}

	// Once the user's resource is gone, the deletion proceeds at once.
	if err := cluster.Current().Dynamic().Resource(virtualServices).Namespace(apps).Delete(t.Context(), "reviews", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	cluster.WaitFor(t, installTimeout, "the Istio resource gone", func(ctx context.Context) (bool, error) {
		_, err := operatortest.Client(t).OperatorV1alpha2().Istios(ns).Get(ctx, "default", metav1.GetOptions{})
		return apierrors.IsNotFound(err), nil
	})
	t.Logf("Istio uninstalled %s after the VirtualService was deleted", time.Since(start).Round(time.Millisecond))
	uninstalled(t)
}

func TestCascadingDeletion(t *testing.T) {
	cluster.InstallIstioCRD(t)
	ns := cluster.Namespace(t, nil)
	operatortest.Start(t, ns)
	operatortest.CreateIstio(t, ns, "default", v1alpha2.IstioSpec{DeletionStrategy: v1alpha2.DeletionStrategyCascading})
	operatortest.WaitForState(t, installTimeout, ns, "default", v1alpha2.StateReady, v1alpha2.ConditionInstalled, metav1.ConditionTrue, v1alpha2.ReasonIstioInstallSucceeded)
	apps := cluster.Namespace(t, nil)
	createVirtualService(t, apps, "ratings")

	operatortest.DeleteIstio(t, installTimeout, ns, "default")
	_, err := cluster.Current().Dynamic().Resource(virtualServices).Namespace(apps).Get(t.Context(), "ratings", metav1.GetOptions{})
	if !apierrors.IsNotFound(err) && !strings.Contains(err.Error(), "the server could not find the requested resource") {
		t.Errorf("the VirtualService survived a cascading deletion (err %v)", err)
	}
	uninstalled(t)
	for _, reason := range []string{"DeletingUserResources", "UninstallSucceeded"} {
		if !operatortest.HasEvent(t, ns, "default", reason) {
			t.Errorf("no %s Event; events: %v", reason, operatortest.Events(t, ns, "default"))
		}
	}
}
