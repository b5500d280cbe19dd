package proxysidecar

import (
	"encoding/json"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
	clocktesting "k8s.io/utils/clock/testing"
)

// A restart patch must carry the resourceVersion the cache saw, so that the
// API server refuses it when the cache has not yet seen an earlier restart
// of the same workload; a repeated patch would roll the workload again.
func TestMarkRestartedRequiresCachedVersion(t *testing.T) {
	d := &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "ns", ResourceVersion: "7"}}
	kube := fake.NewClientset(d)
	var body []byte
	kube.PrependReactor("patch", "deployments", func(a k8stesting.Action) (bool, runtime.Object, error) {
		body = a.(k8stesting.PatchAction).GetPatch()
		return true, d, nil
	})
	c := &Controller{kube: kube, clock: clocktesting.NewFakePassiveClock(time.Now())}
	w := &workload{key: Key{Kind: KindDeployment, Namespace: "ns", Name: "web"}, obj: d}
	if err := c.markRestarted(t.Context(), w, "h1", "image proxyv2:1.30.0"); err != nil {
		t.Fatal(err)
	}
	var patch struct {
		Metadata struct {
			ResourceVersion string `json:"resourceVersion"`
		} `json:"metadata"`
		Spec struct {
			Template struct {
				Metadata struct {
					Annotations map[string]string `json:"annotations"`
				} `json:"metadata"`
			} `json:"template"`
		} `json:"spec"`
	}
	if err := json.Unmarshal(body, &patch); err != nil {
		t.Fatalf("patch %s: %v", body, err)
	}
	if patch.Metadata.ResourceVersion != "7" {
		t.Errorf("patch %s: metadata.resourceVersion %q, want the cached 7", body, patch.Metadata.ResourceVersion)
	}
	if got := patch.Spec.Template.Metadata.Annotations[AnnotationRestartedFor]; got != "h1" {
		t.Errorf("patch %s: restarted-for %q, want h1", body, got)
	}
	if got := patch.Spec.Template.Metadata.Annotations[AnnotationRestartedReason]; got != "image proxyv2:1.30.0" {
		t.Errorf("patch %s: restarted-reason %q, want the reason", body, got)
	}
}
