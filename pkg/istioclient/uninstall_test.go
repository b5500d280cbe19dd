package istioclient

import (
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	dynamicfake "k8s.io/client-go/dynamic/fake"
)

var crdGVR = schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"}

func terminatingCRD(name, uid string) *unstructured.Unstructured {
	u := &unstructured.Unstructured{}
	u.SetAPIVersion("apiextensions.k8s.io/v1")
	u.SetKind("CustomResourceDefinition")
	u.SetName(name)
	u.SetUID(types.UID(uid))
	ts := metav1.NewTime(time.Now().Add(-time.Minute))
	u.SetDeletionTimestamp(&ts)
	u.SetFinalizers([]string{"customresourcecleanup.apiextensions.k8s.io"})
	_ = unstructured.SetNestedSlice(u.Object, []any{map[string]any{
		"type": "Terminating", "status": "True", "reason": "InstanceDeletionFailed", "message": "could not list instances",
	}}, "status", "conditions")
	return u
}

func newUninstallInstaller(objs ...runtime.Object) (*Installer, *dynamicfake.FakeDynamicClient) {
	mapper := meta.NewDefaultRESTMapper(nil)
	mapper.Add(crdGVR.GroupVersion().WithKind("CustomResourceDefinition"), meta.RESTScopeRoot)
	client := dynamicfake.NewSimpleDynamicClientWithCustomListKinds(runtime.NewScheme(),
		map[schema.GroupVersionResource]string{crdGVR: "CustomResourceDefinitionList"}, objs...)
	return &Installer{Dynamic: client, Mapper: mapper}, client
}

// A CRD the uninstall has waited on is annotated, which queues it again in
// the API server's clean-up controller; one the cache still holds but the
// API server no longer has counts as gone.
func TestCheckSlowDeletion(t *testing.T) {
	stuck := terminatingCRD("trafficextensions.extensions.istio.io", "u1")
	i, client := newUninstallInstaller(stuck.DeepCopy())

	if gone := i.checkSlowDeletion(t.Context(), stuck); gone {
		t.Fatal("a CRD the API server still has counts as gone")
	}
	cur, err := client.Resource(crdGVR).Get(t.Context(), stuck.GetName(), metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if cur.GetAnnotations()[deletionCheckAnnotation] == "" {
		t.Errorf("stuck CRD not annotated; annotations %v", cur.GetAnnotations())
	}

	if gone := i.checkSlowDeletion(t.Context(), terminatingCRD("wasmplugins.extensions.istio.io", "u2")); !gone {
		t.Error("a CRD the API server no longer has does not count as gone")
	}
	if gone := i.checkSlowDeletion(t.Context(), terminatingCRD("trafficextensions.extensions.istio.io", "old-uid")); !gone {
		t.Error("a CRD recreated under the same name does not count as the old one gone")
	}
	cm := &unstructured.Unstructured{}
	cm.SetAPIVersion("v1")
	cm.SetKind("ConfigMap")
	cm.SetNamespace(Namespace)
	cm.SetName("istio")
	if gone := i.checkSlowDeletion(t.Context(), cm); gone {
		t.Error("a ConfigMap, which the check leaves to the garbage collector, counts as gone")
	}
	if n := len(client.Actions()); n != 4 {
		t.Errorf("%d requests, want 4 (the test's own GET, one patch per CRD check, none for the ConfigMap): %v", n, client.Actions())
	}
}

func TestDescribeDeletion(t *testing.T) {
	got := describeDeletion(terminatingCRD("trafficextensions.extensions.istio.io", "u1"))
	for _, want := range []string{"CustomResourceDefinition trafficextensions.extensions.istio.io", "deleting for 1m",
		"customresourcecleanup.apiextensions.k8s.io", "Terminating=True InstanceDeletionFailed: could not list instances"} {
		if !strings.Contains(got, want) {
			t.Errorf("describeDeletion = %q, want it to contain %q", got, want)
		}
	}
}
