package proxysidecar

import (
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	v1alpha2 "github.com/meshkeeper/istio-operator/pkg/apis/operator/v1alpha2"
	"github.com/meshkeeper/istio-operator/pkg/istioclient"
)

func desired(t testing.TB, spec v1alpha2.IstioSpec) istioclient.Proxy {
	t.Helper()
	p, err := istioclient.DesiredProxy(&spec)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// injectedPod is a pod as the injector leaves it for proxy p.
func injectedPod(p istioclient.Proxy) *corev1.Pod {
	init := initContainer
	if p.CNI {
		init = validationContainer
	}
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "ns", Annotations: map[string]string{
			annotationSidecarStatus:           `{"containers":["istio-proxy"]}`,
			istioclient.ProxyConfigAnnotation: p.ConfigHash,
		}},
		Spec: corev1.PodSpec{
			InitContainers: []corev1.Container{{Name: init, Image: p.Image}},
			Containers: []corev1.Container{{Name: "app", Image: "app"},
				{Name: proxyContainer, Image: p.Image, Resources: *p.Resources.DeepCopy()}},
		},
	}
}

func TestDesiredProxy(t *testing.T) {
	p := desired(t, v1alpha2.IstioSpec{})
	if p.Image != "docker.io/istio/proxyv2:"+istioclient.Version {
		t.Errorf("image = %s", p.Image)
	}
	if !p.CNI {
		t.Error("the default installation enables CNI")
	}
	if q := p.Resources.Requests[corev1.ResourceMemory]; q.String() != "192Mi" {
		t.Errorf("default memory request = %s, want 192Mi", q.String())
	}
	spec := v1alpha2.IstioSpec{Components: &v1alpha2.Components{Proxy: &v1alpha2.ProxyComponent{K8s: &v1alpha2.ProxyK8sConfig{
		Resources: &v1alpha2.Resources{Requests: &v1alpha2.ResourceClaims{CPU: ptr.To("300m")}}}}}}
	q := desired(t, spec)
	if got := q.Resources.Requests[corev1.ResourceCPU]; got.String() != "300m" {
		t.Errorf("CPU request = %s, want 300m", got.String())
	}
	if p.Hash() == q.Hash() {
		t.Error("different resources gave the same hash")
	}
	if p.Hash() != desired(t, v1alpha2.IstioSpec{}).Hash() {
		t.Error("the hash is not stable")
	}
}

func TestOutdated(t *testing.T) {
	want := desired(t, v1alpha2.IstioSpec{})
	if why := outdated(injectedPod(want), &want); why != "" {
		t.Fatalf("a current pod counted as outdated: %s", why)
	}

	cases := map[string]struct {
		edit func(*corev1.Pod)
		want string // substring of the reason, "" for not outdated
	}{
		"old image": {func(p *corev1.Pod) { p.Spec.Containers[1].Image = "docker.io/istio/proxyv2:1.30.2" }, "proxy image"},
		"other resources": {func(p *corev1.Pod) {
			p.Spec.Containers[1].Resources.Requests[corev1.ResourceCPU] = resource.MustParse("50m")
		}, "resources"},
		"same resources spelled differently": {func(p *corev1.Pod) {
			p.Spec.Containers[1].Resources.Limits[corev1.ResourceCPU] = resource.MustParse("1000m")
		}, ""},
		"resources from annotations": {func(p *corev1.Pod) {
			p.Annotations[annotationProxyCPU] = "50m"
			p.Spec.Containers[1].Resources = corev1.ResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("50m")}}
		}, ""},
		"istio-init under CNI":  {func(p *corev1.Pod) { p.Spec.InitContainers[0].Name = initContainer }, "istio-init"},
		"configuration changed": {func(p *corev1.Pod) { p.Annotations[istioclient.ProxyConfigAnnotation] = "0123" }, "configuration"},
		"injected before the operator": {func(p *corev1.Pod) {
			delete(p.Annotations, istioclient.ProxyConfigAnnotation)
		}, ""},
		"pinned image": {func(p *corev1.Pod) {
			p.Spec.Containers[1].Image = "example.com/my-proxy:1"
			p.Annotations[annotationProxyImage] = "example.com/my-proxy:1"
		}, ""},
		"not injected": {func(p *corev1.Pod) {
			delete(p.Annotations, annotationSidecarStatus)
			p.Spec.Containers[1].Image = "old"
		}, ""},
		"registry mirror": {func(p *corev1.Pod) {
			p.Spec.Containers[1].Image = "mirror.example.com/istio/proxyv2:" + istioclient.Version
		}, ""},
		"registry mirror with a port and a path prefix": {func(p *corev1.Pod) {
			p.Spec.Containers[1].Image = "harbor.example.com:5000/dockerhub-proxy/istio/proxyv2:" + istioclient.Version
		}, ""},
		"registry mirror, old tag": {func(p *corev1.Pod) {
			p.Spec.Containers[1].Image = "mirror.example.com/istio/proxyv2:1.30.2"
		}, "proxy image"},
		"digest added beside the tag": {func(p *corev1.Pod) {
			p.Spec.Containers[1].Image = "docker.io/istio/proxyv2:" + istioclient.Version + "@sha256:0123456789abcdef"
		}, ""},
		"old tag with a digest": {func(p *corev1.Pod) {
			p.Spec.Containers[1].Image = "docker.io/istio/proxyv2:1.30.2@sha256:0123456789abcdef"
		}, "proxy image"},
		"digest only, same repository": {func(p *corev1.Pod) {
			p.Spec.Containers[1].Image = "mirror.example.com/istio/proxyv2@sha256:0123456789abcdef"
		}, ""},
		"digest only, other repository": {func(p *corev1.Pod) {
			p.Spec.Containers[1].Image = "docker.io/istio/pilot@sha256:0123456789abcdef"
		}, "proxy image"},
		"other repository, same tag": {func(p *corev1.Pod) {
			p.Spec.Containers[1].Image = "docker.io/example/envoy:" + istioclient.Version
		}, "proxy image"},
		"no tag": {func(p *corev1.Pod) { p.Spec.Containers[1].Image = "docker.io/istio/proxyv2" }, "proxy image"},
		"a limit the Istio resource sets, missing": {func(p *corev1.Pod) {
			delete(p.Spec.Containers[1].Resources.Limits, corev1.ResourceMemory)
		}, "resources"},
		"a resource the injector does not compare": {func(p *corev1.Pod) {
			p.Spec.Containers[1].Resources.Limits[corev1.ResourceEphemeralStorage] = resource.MustParse("1Gi")
		}, ""},
		"another revision, old image": {func(p *corev1.Pod) {
			p.Labels = map[string]string{labelRevision: "canary"}
			p.Spec.Containers[1].Image = "docker.io/istio/proxyv2:1.30.2"
		}, ""},
		"the default revision named, old image": {func(p *corev1.Pod) {
			p.Labels = map[string]string{labelRevision: "default"}
			p.Spec.Containers[1].Image = "docker.io/istio/proxyv2:1.30.2"
		}, "proxy image"},
		"an empty revision, old image": {func(p *corev1.Pod) {
			p.Labels = map[string]string{labelRevision: ""}
			p.Spec.Containers[1].Image = "docker.io/istio/proxyv2:1.30.2"
		}, "proxy image"},
		"native sidecar, old image": {func(p *corev1.Pod) {
			proxy := p.Spec.Containers[1]
			proxy.Image = "docker.io/istio/proxyv2:1.30.2"
			proxy.RestartPolicy = ptr.To(corev1.ContainerRestartPolicyAlways)
			p.Spec.Containers = p.Spec.Containers[:1]
			p.Spec.InitContainers = append(p.Spec.InitContainers, proxy)
		}, "proxy image"},
	}
	for name, tc := range cases {
		pod := injectedPod(want)
		tc.edit(pod)
		got := ""
		if t := (&target{proxy: want}); !t.otherRevision(pod) {
			got = t.outdated(pod, nil)
		}
		switch {
		case tc.want == "" && got != "":
			t.Errorf("%s: outdated = %q, want current", name, got)
		case tc.want != "" && !strings.Contains(got, tc.want):
			t.Errorf("%s: outdated = %q, want a reason with %q", name, got, tc.want)
		}
	}

	// A change of a setting baked in at injection outdates every pod.
	dns := desired(t, v1alpha2.IstioSpec{Config: v1alpha2.Config{EnableDNSProxying: ptr.To(true)}})
	if outdated(injectedPod(want), &dns) == "" {
		t.Error("enabling DNS proxying left the pods current")
	}
}

// Only the requests and limits the injector sets are compared: one the
// desired proxy does not set is not a difference when the LimitRanger
// admission plugin set it (its annotation says so) or when the API server
// copied the request from the limit; otherwise it is (the setting was
// removed from the Istio resource, and the injector would now leave it out).
func TestOutdatedResources(t *testing.T) {
	q := resource.MustParse
	list := func(cpu, mem string) corev1.ResourceList {
		l := corev1.ResourceList{}
		if cpu != "" {
			l[corev1.ResourceCPU] = q(cpu)
		}
		if mem != "" {
			l[corev1.ResourceMemory] = q(mem)
		}
		return l
	}
	const limitRangedLimits = "LimitRanger plugin set: cpu, memory limit for container istio-proxy"
	cases := map[string]struct {
		want, got   corev1.ResourceRequirements
		limitRanger string // the pod's kubernetes.io/limit-ranger annotation
		native      bool   // the proxy is a native sidecar
		outdated    bool
	}{
		"equal": {
			want: corev1.ResourceRequirements{Requests: list("10m", "64Mi"), Limits: list("1", "1Gi")},
			got:  corev1.ResourceRequirements{Requests: list("10m", "64Mi"), Limits: list("1000m", "1024Mi")},
		},
		"limits from a LimitRange": {
			want:        corev1.ResourceRequirements{Requests: list("10m", "64Mi")},
			got:         corev1.ResourceRequirements{Requests: list("10m", "64Mi"), Limits: list("2", "2Gi")},
			limitRanger: limitRangedLimits,
		},
		"limits from a LimitRange, native sidecar": {
			want:        corev1.ResourceRequirements{Requests: list("10m", "64Mi")},
			got:         corev1.ResourceRequirements{Requests: list("10m", "64Mi"), Limits: list("2", "")},
			limitRanger: "LimitRanger plugin set: cpu limit for init container istio-proxy",
			native:      true,
		},
		"a request and a limit from a LimitRange": {
			want:        corev1.ResourceRequirements{Requests: list("10m", "")},
			got:         corev1.ResourceRequirements{Requests: list("10m", "100Mi"), Limits: list("", "1Gi")},
			limitRanger: "LimitRanger plugin set: memory request for container istio-proxy; memory limit for container istio-proxy",
		},
		"the LimitRange set another container's limits": {
			want:        corev1.ResourceRequirements{Requests: list("10m", "64Mi")},
			got:         corev1.ResourceRequirements{Requests: list("10m", "64Mi"), Limits: list("2", "2Gi")},
			limitRanger: "LimitRanger plugin set: cpu, memory limit for container app",
			outdated:    true,
		},
		"a limit removed from the Istio resource": {
			want:     corev1.ResourceRequirements{Requests: list("10m", "64Mi")},
			got:      corev1.ResourceRequirements{Requests: list("10m", "64Mi"), Limits: list("2", "")},
			outdated: true,
		},
		"a request copied from the limit": {
			want: corev1.ResourceRequirements{Limits: list("500m", "")},
			got:  corev1.ResourceRequirements{Requests: list("500m", ""), Limits: list("500m", "")},
		},
		"a request other than the limit": {
			want:     corev1.ResourceRequirements{Limits: list("500m", "")},
			got:      corev1.ResourceRequirements{Requests: list("100m", ""), Limits: list("500m", "")},
			outdated: true,
		},
		"a value the Istio resource sets, missing": {
			want:        corev1.ResourceRequirements{Requests: list("10m", "64Mi"), Limits: list("1", "")},
			got:         corev1.ResourceRequirements{Requests: list("10m", "64Mi")},
			limitRanger: limitRangedLimits,
			outdated:    true,
		},
		"another value than the Istio resource's": {
			want:        corev1.ResourceRequirements{Requests: list("10m", "64Mi"), Limits: list("1", "")},
			got:         corev1.ResourceRequirements{Requests: list("10m", "64Mi"), Limits: list("2", "")},
			limitRanger: limitRangedLimits,
			outdated:    true,
		},
	}
	base := desired(t, v1alpha2.IstioSpec{})
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			want := base
			want.Resources = tc.want
			pod := injectedPod(want)
			pod.Spec.Containers[1].Resources = tc.got
			if tc.native {
				proxy := pod.Spec.Containers[1]
				proxy.RestartPolicy = ptr.To(corev1.ContainerRestartPolicyAlways)
				pod.Spec.Containers = pod.Spec.Containers[:1]
				pod.Spec.InitContainers = append(pod.Spec.InitContainers, proxy)
			}
			if tc.limitRanger != "" {
				pod.Annotations[annotationLimitRanger] = tc.limitRanger
			}
			// What the cache holds is what the controller judges.
			trimmed, err := trimPod(pod)
			if err != nil {
				t.Fatal(err)
			}
			if got := outdated(trimmed.(*corev1.Pod), &want) != ""; got != tc.outdated {
				t.Errorf("outdated = %q, want outdated %v", outdated(trimmed.(*corev1.Pod), &want), tc.outdated)
			}
		})
	}
}

func TestTrimPodKeepsWhatOutdatedReads(t *testing.T) {
	want := desired(t, v1alpha2.IstioSpec{})
	pod := injectedPod(want)
	pod.Spec.Containers[1].Image = "old"
	pod.ManagedFields = []metav1.ManagedFieldsEntry{{Manager: "x"}}
	pod.Spec.Volumes = []corev1.Volume{{Name: "v"}}
	pod.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue, Message: "long"}}
	got, err := trimPod(pod)
	if err != nil {
		t.Fatal(err)
	}
	trimmed := got.(*corev1.Pod)
	if outdated(trimmed, &want) == "" {
		t.Error("the trimmed pod lost what makes it outdated")
	}
	if len(trimmed.ManagedFields)+len(trimmed.Spec.Volumes) > 0 || len(trimmed.Spec.Containers) != 1 {
		t.Errorf("trimmed pod keeps too much: %+v", trimmed)
	}
	if trimmed.Annotations[annotationSidecarStatus] != "" {
		t.Error("the status annotation's value was kept")
	}
	rev := injectedPod(want)
	rev.Labels = map[string]string{labelRevision: "canary", "app": "x"}
	rev.Spec.Containers[1].Image = "old"
	if got, _ := trimPod(rev); podRevision(got.(*corev1.Pod)) != "canary" || len(got.(*corev1.Pod).Labels) != 1 {
		t.Errorf("the trimmed pod lost its revision label or kept others: %v", got.(*corev1.Pod).Labels)
	}
	again, _ := trimPod(trimmed)
	if outdated(again.(*corev1.Pod), &want) == "" {
		t.Error("trimming is not idempotent")
	}
}

// A restarted workload is stuck when a pod created after its restart still
// gets an outdated proxy; outdated pods from before the restart are only
// waiting to be replaced.
func TestStuck(t *testing.T) {
	want := desired(t, v1alpha2.IstioSpec{})
	old := want
	old.Image = "docker.io/istio/proxyv2:1.30.0"
	restart := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	w := &workload{key: Key{Kind: KindDeployment, Namespace: "ns", Name: "web"},
		template: map[string]string{AnnotationRestartedAt: restart.Format(time.RFC3339)}}
	t1 := &target{proxy: want}

	before := injectedPod(old)
	before.CreationTimestamp = metav1.NewTime(restart.Add(-time.Minute))
	if why := stuck(w, t1.judgePods(nil, nil, []*corev1.Pod{before})); why != "" {
		t.Errorf("an outdated pod from before the restart: stuck %q, want not", why)
	}
	after := injectedPod(old)
	after.Name = "after"
	after.CreationTimestamp = metav1.NewTime(restart.Add(time.Minute))
	if why := stuck(w, t1.judgePods(nil, nil, []*corev1.Pod{before, after})); !strings.Contains(why, "pod after, created after the restart") {
		t.Errorf("an outdated pod from after the restart: stuck %q, want it named", why)
	}
	// The same pod is named whatever order the cache lists them in: a
	// message that changed with it would be written on every count.
	other := after.DeepCopy()
	other.Name = "another"
	for _, pods := range [][]*corev1.Pod{{after, other}, {other, after}} {
		if why := stuck(w, t1.judgePods(nil, nil, pods)); !strings.Contains(why, "pod after, created after the restart") {
			t.Errorf("pods %s, %s: stuck %q, want the first by name", pods[0].Name, pods[1].Name, why)
		}
	}
	current := injectedPod(want)
	current.CreationTimestamp = after.CreationTimestamp
	if why := stuck(w, t1.judgePods(nil, nil, []*corev1.Pod{current})); why != "" {
		t.Errorf("a current pod from after the restart: stuck %q, want not", why)
	}
	w.rollout.Failed = "ProgressDeadlineExceeded"
	if why := stuck(w, judgement{}); !strings.HasPrefix(why, "rollout stuck") {
		t.Errorf("a failed rollout: stuck %q, want rollout stuck", why)
	}
}
