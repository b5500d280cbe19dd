package proxysidecar

import (
	"reflect"
	"runtime"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	v1alpha2 "github.com/meshkeeper/istio-operator/pkg/apis/operator/v1alpha2"
)

func trimmed(t testing.TB, pod *corev1.Pod) *corev1.Pod {
	t.Helper()
	got, err := trimPod(pod)
	if err != nil {
		t.Fatal(err)
	}
	return got.(*corev1.Pod)
}

func TestTrimPodSharesResourcesBetweenPods(t *testing.T) {
	want := desired(t, v1alpha2.IstioSpec{})
	a, b := trimmed(t, injectedPod(want)), trimmed(t, injectedPod(want))
	ra, rb := proxyOf(a).Resources, proxyOf(b).Resources
	if reflect.ValueOf(ra.Requests).UnsafePointer() != reflect.ValueOf(rb.Requests).UnsafePointer() ||
		reflect.ValueOf(ra.Limits).UnsafePointer() != reflect.ValueOf(rb.Limits).UnsafePointer() {
		t.Error("two pods with the same proxy resources hold separate copies")
	}
	if outdated(a, &want) != "" {
		t.Errorf("a current pod is outdated after trimming: %s", outdated(a, &want))
	}

	// A different size is kept apart and still judged.
	other := injectedPod(want)
	other.Spec.Containers[1].Resources.Requests[corev1.ResourceCPU] = resource.MustParse("250m")
	c := trimmed(t, other)
	if q := proxyOf(c).Resources.Requests[corev1.ResourceCPU]; q.String() != "250m" {
		t.Errorf("CPU request after trimming = %s, want 250m", q.String())
	}
	if outdated(c, &want) == "" {
		t.Error("a pod with other proxy resources is current after trimming")
	}
	if q := proxyOf(a).Resources.Requests[corev1.ResourceCPU]; q.Cmp(resource.MustParse("250m")) == 0 {
		t.Error("trimming one pod changed another's resources")
	}
}

func TestTrimPodKeepsNativeSidecarAndCNIMode(t *testing.T) {
	want := desired(t, v1alpha2.IstioSpec{})
	pod := injectedPod(want)
	proxy := pod.Spec.Containers[1]
	proxy.RestartPolicy = ptr.To(corev1.ContainerRestartPolicyAlways)
	pod.Spec.Containers = pod.Spec.Containers[:1]
	pod.Spec.InitContainers = []corev1.Container{{Name: initContainer, Image: "x", Args: []string{"long"}}, proxy}
	got := trimmed(t, pod)
	if proxyOf(got) == nil {
		t.Fatal("the native sidecar is not found after trimming")
	}
	if got.Spec.InitContainers[0].Name != initContainer || got.Spec.InitContainers[0].Image != "" {
		t.Errorf("init container after trimming = %+v, want its name only", got.Spec.InitContainers[0])
	}
	if want.CNI && outdated(got, &want) == "" {
		t.Error("istio-init with CNI enabled is current after trimming")
	}
}

// BenchmarkTrimmedPodRetained reports the heap a cached injected pod costs.
func BenchmarkTrimmedPodRetained(b *testing.B) {
	want := desired(b, v1alpha2.IstioSpec{})
	const n = 4000
	src := make([]*corev1.Pod, n)
	for i := range src {
		p := injectedPod(want)
		p.OwnerReferences = []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: "rs", UID: "u", Controller: ptr.To(true)}}
		src[i] = p
	}
	b.ResetTimer()
	for range b.N {
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		kept := make([]*corev1.Pod, n)
		for i, p := range src {
			kept[i] = trimmed(b, p.DeepCopy())
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/n, "B/pod")
		runtime.KeepAlive(kept)
	}
}
