package injector

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"

	jsonpatch "gopkg.in/evanphx/json-patch.v4"
	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/klog/v2/ktesting"
	"k8s.io/utils/ptr"
)

const (
	testImage = "docker.io/istio/proxyv2:1.31.1"

	// What Istio 1.31 writes for the default template and values, from its
	// own golden files (pkg/kube/inject/testdata/inject).
	statusClassic = `{"initContainers":["istio-init"],"containers":["istio-proxy"],` +
		`"volumes":["workload-socket","credential-socket","workload-certs","istio-envoy","istio-data","istio-podinfo","istio-token","istiod-ca-cert","istio-ca-crl"],` +
		`"imagePullSecrets":null,"revision":"default"}`
	statusNative = `{"initContainers":["istio-init","istio-proxy"],"containers":null,` +
		`"volumes":["workload-socket","credential-socket","workload-certs","istio-envoy","istio-data","istio-podinfo","istio-token","istiod-ca-cert","istio-ca-crl"],` +
		`"imagePullSecrets":null,"revision":"default"}`
	statusCNINative = `{"initContainers":["istio-validation","istio-proxy"],"containers":null,` +
		`"volumes":["workload-socket","credential-socket","workload-certs","istio-envoy","istio-data","istio-podinfo","istio-token","istiod-ca-cert","istio-ca-crl"],` +
		`"imagePullSecrets":null,"revision":"default"}`
)

// deploymentPod is a pod as a Deployment's ReplicaSet submits it.
func deploymentPod(mutate ...func(*corev1.Pod)) *corev1.Pod {
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			GenerateName: "web-7d9f8c6b5-",
			Namespace:    "apps",
			Labels:       map[string]string{"app": "web", "pod-template-hash": "7d9f8c6b5"},
			OwnerReferences: []metav1.OwnerReference{{
				APIVersion: "apps/v1", Kind: "ReplicaSet", Name: "web-7d9f8c6b5",
				UID: "rs-uid", Controller: ptr.To(true),
			}},
		},
		Spec: corev1.PodSpec{
			InitContainers: []corev1.Container{{Name: "migrate", Image: "registry.example/migrate:1"}},
			Containers:     []corev1.Container{{Name: "web", Image: "registry.example/web:1"}},
		},
	}
	for _, m := range mutate {
		m(pod)
	}
	return pod
}

func withAnnotations(kv ...string) func(*corev1.Pod) {
	return func(p *corev1.Pod) {
		if p.Annotations == nil {
			p.Annotations = map[string]string{}
		}
		for i := 0; i < len(kv); i += 2 {
			p.Annotations[kv[i]] = kv[i+1]
		}
	}
}

func withLabels(kv ...string) func(*corev1.Pod) {
	return func(p *corev1.Pod) {
		for i := 0; i < len(kv); i += 2 {
			p.Labels[kv[i]] = kv[i+1]
		}
	}
}

func resources(requests, limits map[corev1.ResourceName]string) corev1.ResourceRequirements {
	var r corev1.ResourceRequirements
	for n, v := range requests {
		if r.Requests == nil {
			r.Requests = corev1.ResourceList{}
		}
		r.Requests[n] = resource.MustParse(v)
	}
	for n, v := range limits {
		if r.Limits == nil {
			r.Limits = corev1.ResourceList{}
		}
		r.Limits[n] = resource.MustParse(v)
	}
	return r
}

var defaultResources = resources(
	map[corev1.ResourceName]string{corev1.ResourceCPU: "100m", corev1.ResourceMemory: "128Mi"},
	map[corev1.ResourceName]string{corev1.ResourceCPU: "2", corev1.ResourceMemory: "1Gi"},
)

// admitPod sends pod through the webhook's admission logic and applies the
// JSON patch it returns, as the API server would.
func admitPod(t *testing.T, cfg Config, pod *corev1.Pod) (*corev1.Pod, *admissionv1.AdmissionResponse) {
	t.Helper()
	logger, ctx := ktesting.NewTestContext(t)
	raw, err := json.Marshal(pod)
	if err != nil {
		t.Fatal(err)
	}
	s := &Server{source: Static(cfg)}
	resp := s.admit(ctx, logger, &admissionv1.AdmissionRequest{
		UID:       types.UID("req"),
		Kind:      metav1.GroupVersionKind{Version: "v1", Kind: "Pod"},
		Resource:  metav1.GroupVersionResource{Version: "v1", Resource: "pods"},
		Namespace: pod.Namespace,
		Operation: admissionv1.Create,
		Object:    runtime.RawExtension{Raw: raw},
	})
	if !resp.Allowed || resp.Patch == nil {
		return pod, resp
	}
	if resp.PatchType == nil || *resp.PatchType != admissionv1.PatchTypeJSONPatch {
		t.Fatalf("patch type = %v, want JSONPatch", resp.PatchType)
	}
	patch, err := jsonpatch.DecodePatch(resp.Patch)
	if err != nil {
		t.Fatalf("decoding patch %s: %v", resp.Patch, err)
	}
	patched, err := patch.Apply(raw)
	if err != nil {
		t.Fatalf("applying patch %s: %v", resp.Patch, err)
	}
	var out corev1.Pod
	if err := json.Unmarshal(patched, &out); err != nil {
		t.Fatal(err)
	}
	return &out, resp
}

func containerNames(cs []corev1.Container) []string {
	out := []string{}
	for _, c := range cs {
		out = append(out, c.Name)
	}
	return out
}

func TestMutation(t *testing.T) {
	type want struct {
		initContainers []string
		containers     []string
		proxyImage     string
		initImage      string
		resources      corev1.ResourceRequirements
		initResources  *corev1.ResourceRequirements // nil: resources
		status         string
		annotations    map[string]string // subset
		labels         map[string]string // subset
		initArgs       []string          // subsequence of the init container's args
	}
	classic := want{
		initContainers: []string{"migrate", "istio-init"},
		containers:     []string{"web", "istio-proxy"},
		proxyImage:     testImage,
		initImage:      testImage,
		resources:      defaultResources,
		status:         statusClassic,
	}
	tests := map[string]struct {
		cfg  Config
		pod  *corev1.Pod
		want want
	}{
		"plain pod": {
			cfg: DefaultConfig(testImage),
			pod: deploymentPod(),
			want: func() want {
				w := classic
				w.annotations = map[string]string{
					"istio.io/rev": "default",
					"kubectl.kubernetes.io/default-container":      "web",
					"kubectl.kubernetes.io/default-logs-container": "web",
					"prometheus.io/port":                           "15020",
					"prometheus.io/path":                           "/stats/prometheus",
					"prometheus.io/scrape":                         "true",
				}
				w.labels = map[string]string{
					"app":                                 "web",
					"security.istio.io/tlsMode":           "istio",
					"service.istio.io/canonical-name":     "web",
					"service.istio.io/canonical-revision": "latest",
				}
				w.initArgs = []string{"istio-iptables", "-m", "REDIRECT", "-d", "15090,15021,15020"}
				return w
			}(),
		},
		"canonical labels from the deployment name and version label": {
			cfg: DefaultConfig(testImage),
			pod: deploymentPod(func(p *corev1.Pod) {
				delete(p.Labels, "app")
				p.Labels["version"] = "v2"
			}),
			want: func() want {
				w := classic
				w.labels = map[string]string{
					"service.istio.io/canonical-name":     "web",
					"service.istio.io/canonical-revision": "v2",
				}
				return w
			}(),
		},
		"resource annotations replace the configured resources": {
			cfg: DefaultConfig(testImage),
			pod: deploymentPod(withAnnotations(
				"sidecar.istio.io/proxyCPU", "50m",
				"sidecar.istio.io/proxyMemoryLimit", "256Mi",
			)),
			want: func() want {
				w := classic
				w.resources = resources(
					map[corev1.ResourceName]string{corev1.ResourceCPU: "50m"},
					map[corev1.ResourceName]string{corev1.ResourceMemory: "256Mi"},
				)
				return w
			}(),
		},
		"all four resource annotations": {
			cfg: DefaultConfig(testImage),
			pod: deploymentPod(withAnnotations(
				"sidecar.istio.io/proxyCPU", "10m",
				"sidecar.istio.io/proxyCPULimit", "1",
				"sidecar.istio.io/proxyMemory", "64Mi",
				"sidecar.istio.io/proxyMemoryLimit", "512Mi",
			)),
			want: func() want {
				w := classic
				w.resources = resources(
					map[corev1.ResourceName]string{corev1.ResourceCPU: "10m", corev1.ResourceMemory: "64Mi"},
					map[corev1.ResourceName]string{corev1.ResourceCPU: "1", corev1.ResourceMemory: "512Mi"},
				)
				return w
			}(),
		},
		"proxyImage annotation with a registry overrides both images": {
			cfg: DefaultConfig(testImage),
			pod: deploymentPod(withAnnotations("sidecar.istio.io/proxyImage", "my.registry/istio/proxyv2:custom")),
			want: func() want {
				w := classic
				w.proxyImage = "my.registry/istio/proxyv2:custom"
				w.initImage = "my.registry/istio/proxyv2:custom"
				return w
			}(),
		},
		"proxyImage annotation without a slash is ignored, as by Istio": {
			cfg:  DefaultConfig(testImage),
			pod:  deploymentPod(withAnnotations("sidecar.istio.io/proxyImage", "proxyv2:custom")),
			want: classic,
		},
		"separate init image": {
			cfg: func() Config {
				c := DefaultConfig(testImage)
				c.ProxyInitImage = "docker.io/istio/proxyv2:1.31.1-distroless"
				return c
			}(),
			pod: deploymentPod(),
			want: func() want {
				w := classic
				w.initImage = "docker.io/istio/proxyv2:1.31.1-distroless"
				return w
			}(),
		},
		"native sidecar": {
			cfg: func() Config { c := DefaultConfig(testImage); c.NativeSidecar = true; return c }(),
			pod: deploymentPod(),
			want: func() want {
				w := classic
				w.initContainers = []string{"istio-init", "istio-proxy", "migrate"}
				w.containers = []string{"web"}
				w.status = statusNative
				return w
			}(),
		},
		"native sidecar by annotation": {
			cfg: DefaultConfig(testImage),
			pod: deploymentPod(withAnnotations("sidecar.istio.io/nativeSidecar", "true")),
			want: func() want {
				w := classic
				w.initContainers = []string{"istio-init", "istio-proxy", "migrate"}
				w.containers = []string{"web"}
				w.status = statusNative
				return w
			}(),
		},
		"native sidecar disabled by annotation": {
			cfg:  func() Config { c := DefaultConfig(testImage); c.NativeSidecar = true; return c }(),
			pod:  deploymentPod(withAnnotations("sidecar.istio.io/nativeSidecar", "false")),
			want: classic,
		},
		"CNI": {
			cfg: func() Config { c := DefaultConfig(testImage); c.CNI = true; return c }(),
			pod: deploymentPod(),
			want: func() want {
				w := classic
				w.initContainers = []string{"istio-validation", "migrate"}
				w.status = strings.Replace(statusClassic, `"istio-init"`, `"istio-validation"`, 1)
				w.annotations = map[string]string{
					"sidecar.istio.io/interceptionMode":            "REDIRECT",
					"traffic.sidecar.istio.io/includeInboundPorts": "*",
					"traffic.sidecar.istio.io/excludeInboundPorts": "15020",
				}
				w.initArgs = []string{"istio-iptables", "--run-validation", "--skip-rule-apply"}
				return w
			}(),
		},
		"CNI with native sidecar": {
			cfg: func() Config {
				c := DefaultConfig(testImage)
				c.CNI, c.NativeSidecar = true, true
				return c
			}(),
			pod: deploymentPod(),
			want: func() want {
				w := classic
				w.initContainers = []string{"istio-validation", "istio-proxy", "migrate"}
				w.containers = []string{"web"}
				w.status = statusCNINative
				return w
			}(),
		},
		"interception mode NONE has no init container": {
			cfg: DefaultConfig(testImage),
			pod: deploymentPod(withAnnotations("sidecar.istio.io/interceptionMode", "NONE")),
			want: func() want {
				w := classic
				w.initContainers = []string{"migrate"}
				w.initImage = ""
				w.status = strings.Replace(statusClassic, `["istio-init"]`, `null`, 1)
				return w
			}(),
		},
		"revision": {
			cfg: func() Config { c := DefaultConfig(testImage); c.Revision = "canary"; return c }(),
			pod: deploymentPod(),
			want: func() want {
				w := classic
				w.status = strings.Replace(statusClassic, `"revision":"default"`, `"revision":"canary"`, 1)
				w.annotations = map[string]string{"istio.io/rev": "canary"}
				return w
			}(),
		},
		"existing scrape annotations are taken over": {
			cfg: DefaultConfig(testImage),
			pod: deploymentPod(withAnnotations("prometheus.io/scrape", "true", "prometheus.io/port", "9090")),
			want: func() want {
				w := classic
				w.annotations = map[string]string{"prometheus.io/port": "15020", "prometheus.io/scrape": "true"}
				return w
			}(),
		},
		"pod not scraped keeps its annotations": {
			cfg: DefaultConfig(testImage),
			pod: deploymentPod(withAnnotations("prometheus.io/scrape", "false")),
			want: func() want {
				w := classic
				w.annotations = map[string]string{"prometheus.io/scrape": "false"}
				return w
			}(),
		},
		"pod's own istio-proxy container customises the injected one": {
			cfg: DefaultConfig(testImage),
			pod: deploymentPod(func(p *corev1.Pod) {
				p.Spec.Containers = append([]corev1.Container{{
					Name:      "istio-proxy",
					Image:     "auto",
					Resources: resources(map[corev1.ResourceName]string{corev1.ResourceMemory: "40Mi"}, nil),
				}}, p.Spec.Containers...)
			}),
			want: func() want {
				w := classic
				w.resources = resources(
					map[corev1.ResourceName]string{corev1.ResourceCPU: "100m", corev1.ResourceMemory: "40Mi"},
					map[corev1.ResourceName]string{corev1.ResourceCPU: "2", corev1.ResourceMemory: "1Gi"},
				)
				w.initResources = &defaultResources // only istio-proxy is customised
				return w
			}(),
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			got, resp := admitPod(t, tc.cfg, tc.pod)
			if !resp.Allowed {
				t.Fatalf("pod refused: %v", resp.Result)
			}
			if g := containerNames(got.Spec.InitContainers); !reflect.DeepEqual(g, tc.want.initContainers) {
				t.Errorf("init containers = %v, want %v", g, tc.want.initContainers)
			}
			if g := containerNames(got.Spec.Containers); !reflect.DeepEqual(g, tc.want.containers) {
				t.Errorf("containers = %v, want %v", g, tc.want.containers)
			}
			if s := got.Annotations["sidecar.istio.io/status"]; s != tc.want.status {
				t.Errorf("status annotation =\n%s\nwant\n%s", s, tc.want.status)
			}

			proxy := findContainer(got.Spec.Containers, ProxyContainerName)
			if proxy == nil {
				proxy = findContainer(got.Spec.InitContainers, ProxyContainerName)
				if proxy == nil {
					t.Fatal("no istio-proxy container")
				}
				if proxy.RestartPolicy == nil || *proxy.RestartPolicy != corev1.ContainerRestartPolicyAlways {
					t.Errorf("native istio-proxy restartPolicy = %v, want Always", proxy.RestartPolicy)
				}
			} else if proxy.RestartPolicy != nil {
				t.Errorf("classic istio-proxy has restartPolicy %v", *proxy.RestartPolicy)
			}
			if proxy.Image != tc.want.proxyImage {
				t.Errorf("proxy image = %q, want %q", proxy.Image, tc.want.proxyImage)
			}
			assertResources(t, "istio-proxy", proxy.Resources, tc.want.resources)

			initC := findContainer(got.Spec.InitContainers, InitContainerName)
			if initC == nil {
				initC = findContainer(got.Spec.InitContainers, ValidationContainerName)
			}
			switch {
			case tc.want.initImage == "" && initC != nil:
				t.Errorf("unexpected init container %s", initC.Name)
			case tc.want.initImage != "" && initC == nil:
				t.Error("no istio-init or istio-validation container")
			case initC != nil:
				if initC.Image != tc.want.initImage {
					t.Errorf("init image = %q, want %q", initC.Image, tc.want.initImage)
				}
				wantInit := tc.want.resources
				if tc.want.initResources != nil {
					wantInit = *tc.want.initResources
				}
				assertResources(t, initC.Name, initC.Resources, wantInit)
				if !isSubsequence(tc.want.initArgs, initC.Args) {
					t.Errorf("init args %q lack %q", initC.Args, tc.want.initArgs)
				}
			}

			for k, v := range tc.want.annotations {
				if got.Annotations[k] != v {
					t.Errorf("annotation %s = %q, want %q", k, got.Annotations[k], v)
				}
			}
			for k, v := range tc.want.labels {
				if got.Labels[k] != v {
					t.Errorf("label %s = %q, want %q", k, got.Labels[k], v)
				}
			}
			// Every volume the status annotation lists is in the pod, and
			// every mount of the proxy names a volume.
			vols := map[string]bool{}
			for _, v := range got.Spec.Volumes {
				vols[v.Name] = true
			}
			for _, m := range proxy.VolumeMounts {
				if !vols[m.Name] {
					t.Errorf("istio-proxy mounts missing volume %s", m.Name)
				}
			}
		})
	}
}

func assertResources(t *testing.T, container string, got, want corev1.ResourceRequirements) {
	t.Helper()
	check := func(kind string, g, w corev1.ResourceList) {
		if len(g) != len(w) {
			t.Errorf("%s %s = %v, want %v", container, kind, g, w)
			return
		}
		for n, q := range w {
			if gq, ok := g[n]; !ok || gq.Cmp(q) != 0 {
				t.Errorf("%s %s = %v, want %v", container, kind, g, w)
				return
			}
		}
	}
	check("requests", got.Requests, want.Requests)
	check("limits", got.Limits, want.Limits)
}

func isSubsequence(want, got []string) bool {
	i := 0
	for _, g := range got {
		if i < len(want) && g == want[i] {
			i++
		}
	}
	return i == len(want)
}

func TestProbeRewrite(t *testing.T) {
	withProbes := func(p *corev1.Pod) {
		c := &p.Spec.Containers[0]
		c.ReadinessProbe = &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{
			Path: "/ready", Port: intstr.FromString("http"), Scheme: corev1.URISchemeHTTPS,
		}}}
		c.LivenessProbe = &corev1.Probe{ProbeHandler: corev1.ProbeHandler{TCPSocket: &corev1.TCPSocketAction{
			Port: intstr.FromInt32(8080),
		}}}
		c.StartupProbe = &corev1.Probe{ProbeHandler: corev1.ProbeHandler{Exec: &corev1.ExecAction{Command: []string{"true"}}}}
	}
	agent := func(path string) *corev1.HTTPGetAction {
		return &corev1.HTTPGetAction{Path: path, Port: intstr.FromInt32(15020), Scheme: corev1.URISchemeHTTP}
	}

	got, _ := admitPod(t, DefaultConfig(testImage), deploymentPod(withProbes))
	web := findContainer(got.Spec.Containers, "web")
	if h := web.ReadinessProbe.HTTPGet; !reflect.DeepEqual(h, agent("/app-health/web/readyz")) {
		t.Errorf("readiness probe = %+v", h)
	}
	if h := web.LivenessProbe; h.TCPSocket != nil || h.HTTPGet == nil || h.HTTPGet.Path != "/app-health/web/livez" || h.HTTPGet.Port.IntVal != 15020 {
		t.Errorf("liveness probe = %+v", h.ProbeHandler)
	}
	if web.StartupProbe.Exec == nil || web.StartupProbe.HTTPGet != nil {
		t.Errorf("exec startup probe rewritten: %+v", web.StartupProbe.ProbeHandler)
	}

	kept, _ := admitPod(t, DefaultConfig(testImage), deploymentPod(withProbes,
		withAnnotations("sidecar.istio.io/rewriteAppHTTPProbers", "false")))
	if h := findContainer(kept.Spec.Containers, "web").ReadinessProbe.HTTPGet; h.Path != "/ready" {
		t.Errorf("readiness probe rewritten despite the annotation: %+v", h)
	}
	cfg := DefaultConfig(testImage)
	cfg.KeepAppProbes = true
	kept, _ = admitPod(t, cfg, deploymentPod(withProbes))
	if h := findContainer(kept.Spec.Containers, "web").ReadinessProbe.HTTPGet; h.Path != "/ready" {
		t.Errorf("readiness probe rewritten with KeepAppProbes: %+v", h)
	}
}

func TestPodsLeftAlone(t *testing.T) {
	tests := map[string]*corev1.Pod{
		"already injected":        deploymentPod(withAnnotations("sidecar.istio.io/status", statusClassic)),
		"inject annotation false": deploymentPod(withAnnotations("sidecar.istio.io/inject", "false")),
		"inject label false":      deploymentPod(withLabels("sidecar.istio.io/inject", "false")),
		"host network":            deploymentPod(func(p *corev1.Pod) { p.Spec.HostNetwork = true }),
	}
	for name, pod := range tests {
		t.Run(name, func(t *testing.T) {
			got, resp := admitPod(t, DefaultConfig(testImage), pod)
			if !resp.Allowed || resp.Patch != nil {
				t.Fatalf("response = allowed %v, patch %s; want allowed without patch", resp.Allowed, resp.Patch)
			}
			if !reflect.DeepEqual(got, pod) {
				t.Errorf("pod changed")
			}
		})
	}

	t.Run("inject label true wins over annotation false", func(t *testing.T) {
		pod := deploymentPod(withLabels("sidecar.istio.io/inject", "true"), withAnnotations("sidecar.istio.io/inject", "false"))
		got, _ := admitPod(t, DefaultConfig(testImage), pod)
		if findContainer(got.Spec.Containers, ProxyContainerName) == nil {
			t.Error("pod not injected")
		}
	})
}

func TestInvalidResourceAnnotationRefused(t *testing.T) {
	_, resp := admitPod(t, DefaultConfig(testImage), deploymentPod(withAnnotations("sidecar.istio.io/proxyCPU", "lots")))
	if resp.Allowed {
		t.Fatal("pod with an invalid proxyCPU annotation was allowed")
	}
	if !strings.Contains(resp.Result.Message, "sidecar.istio.io/proxyCPU") {
		t.Errorf("message %q does not name the annotation", resp.Result.Message)
	}
}

func TestWorkloadName(t *testing.T) {
	owned := func(kind, name string, labels map[string]string) *corev1.Pod {
		return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{
			GenerateName: name + "-",
			Labels:       labels,
			OwnerReferences: []metav1.OwnerReference{{
				Kind: kind, Name: name, Controller: ptr.To(true),
			}},
		}}
	}
	tests := map[string]struct {
		pod  *corev1.Pod
		want string
	}{
		"named pod":   {&corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "solo"}}, "solo"},
		"deployment":  {owned("ReplicaSet", "web-abc12", map[string]string{"pod-template-hash": "abc12"}), "web"},
		"replicaset":  {owned("ReplicaSet", "web-abc12", nil), "web-abc12"},
		"cronjob":     {owned("Job", "nightly-28734560", nil), "nightly"},
		"job":         {owned("Job", "once", nil), "once"},
		"statefulset": {owned("StatefulSet", "db", nil), "db"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			if got := workloadName(tc.pod); got != tc.want {
				t.Errorf("workloadName = %q, want %q", got, tc.want)
			}
		})
	}
}
