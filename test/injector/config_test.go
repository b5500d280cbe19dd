package injector

import (
	"encoding/json"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/klog/v2/ktesting"
)

// istioValues returns the "values" JSON of the istio-sidecar-injector
// ConfigMap as the istiod chart of Istio 1.31 renders it for a release
// install (hub docker.io/istio, tag 1.31.1), trimmed of entries the stand-in
// does not read, after edit has changed the decoded values.
func istioValues(t *testing.T, edit func(v map[string]any)) string {
	t.Helper()
	const base = `{
    "gateways": {"securityContext": {}, "seccompProfile": {}},
    "global": {
      "caAddress": "",
      "caName": "",
      "hub": "docker.io/istio",
      "imagePullPolicy": "",
      "imagePullSecrets": [],
      "istioNamespace": "istio-system",
      "logAsJson": false,
      "logging": {"level": "default:info"},
      "meshID": "",
      "multiCluster": {"clusterName": "", "enabled": false},
      "network": "",
      "pilotCertProvider": "istiod",
      "proxy": {
        "autoInject": "enabled",
        "clusterDomain": "cluster.local",
        "componentLogLevel": "misc:error",
        "excludeIPRanges": "",
        "excludeInboundPorts": "",
        "excludeOutboundPorts": "",
        "image": "proxyv2",
        "includeIPRanges": "*",
        "includeInboundPorts": "*",
        "includeOutboundPorts": "",
        "logLevel": "warning",
        "outlierLogPath": "",
        "privileged": false,
        "readinessFailureThreshold": 4,
        "readinessInitialDelaySeconds": 0,
        "readinessPeriodSeconds": 15,
        "resources": {
          "limits": {"cpu": "2000m", "memory": "1024Mi"},
          "requests": {"cpu": "100m", "memory": "128Mi"}
        },
        "seccompProfile": {},
        "startupProbe": {"enabled": true, "failureThreshold": 600},
        "statusPort": 15020,
        "tracer": "none"
      },
      "proxy_init": {"forceApplyIptables": false, "image": "proxyv2"},
      "remotePilotAddress": "",
      "sds": {"token": {"aud": "istio-ca"}},
      "sts": {"servicePort": 0},
      "tag": "1.31.1",
      "variant": ""
    },
    "pilot": {
      "cni": {"enabled": false, "provider": "default"},
      "env": {}
    },
    "revision": "",
    "sidecarInjectorWebhook": {
      "alwaysInjectSelector": [],
      "defaultTemplates": [],
      "enableNamespacesByDefault": false,
      "injectedAnnotations": {},
      "neverInjectSelector": [],
      "reinvocationPolicy": "Never",
      "rewriteAppHTTPProbe": true,
      "templates": {}
    }
  }`
	var v map[string]any
	if err := json.Unmarshal([]byte(base), &v); err != nil {
		t.Fatal(err)
	}
	if edit != nil {
		edit(v)
	}
	out, err := json.MarshalIndent(v, "    ", "  ")
	if err != nil {
		t.Fatal(err)
	}
	return string(out)
}

func set(path string, value any) func(map[string]any) {
	return func(v map[string]any) {
		keys := strings.Split(path, ".")
		m := v
		for _, k := range keys[:len(keys)-1] {
			next, ok := m[k].(map[string]any)
			if !ok {
				next = map[string]any{}
				m[k] = next
			}
			m = next
		}
		m[keys[len(keys)-1]] = value
	}
}

func all(edits ...func(map[string]any)) func(map[string]any) {
	return func(v map[string]any) {
		for _, e := range edits {
			e(v)
		}
	}
}

func injectorConfigMap(name, values string) *corev1.ConfigMap {
	return &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{
			Name: name, Namespace: "istio-system",
			Labels: map[string]string{"istio.io/rev": "default", "operator.istio.io/component": "Pilot"},
		},
		// The real ConfigMap also has "config" with the templates; the
		// stand-in does not read it.
		Data: map[string]string{"values": values, "config": "policy: enabled\n"},
	}
}

func meshConfigMap(name, mesh string) *corev1.ConfigMap {
	return &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "istio-system"},
		Data:       map[string]string{"mesh": mesh, "meshNetworks": "networks: {}"},
	}
}

func node(name, kubeletVersion string) *corev1.Node {
	return &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Status:     corev1.NodeStatus{NodeInfo: corev1.NodeSystemInfo{KubeletVersion: kubeletVersion}},
	}
}

func TestConfigFromCluster(t *testing.T) {
	const defaultMesh = "defaultConfig:\n  discoveryAddress: istiod.istio-system.svc:15012\ndefaultProviders:\n  metrics:\n  - prometheus\nenablePrometheusMerge: true\nrootNamespace: istio-system\ntrustDomain: cluster.local\n"
	tests := map[string]struct {
		revision string
		objects  []runtime.Object // a kwok node is added unless there is a node or noNodes
		noNodes  bool
		want     Config
		wantErr  string
	}{
		"release install on kwok nodes": {
			objects: []runtime.Object{
				injectorConfigMap("istio-sidecar-injector", istioValues(t, nil)),
				meshConfigMap("istio", defaultMesh),
				node("kwok-0", "kwok-v0.8.0"),
			},
			want: DefaultConfig("docker.io/istio/proxyv2:1.31.1"),
		},
		"native sidecars auto with 1.33+ kubelets": {
			objects: []runtime.Object{
				injectorConfigMap("istio-sidecar-injector", istioValues(t, nil)),
				node("a", "v1.36.3"), node("b", "v1.33.0+k3s1"),
			},
			want: func() Config { c := DefaultConfig("docker.io/istio/proxyv2:1.31.1"); c.NativeSidecar = true; return c }(),
		},
		"native sidecars auto without nodes": {
			objects: []runtime.Object{injectorConfigMap("istio-sidecar-injector", istioValues(t, nil))},
			noNodes: true,
			want:    func() Config { c := DefaultConfig("docker.io/istio/proxyv2:1.31.1"); c.NativeSidecar = true; return c }(),
		},
		"native sidecars auto with one old kubelet": {
			objects: []runtime.Object{
				injectorConfigMap("istio-sidecar-injector", istioValues(t, nil)),
				node("a", "v1.36.3"), node("b", "v1.32.4"),
			},
			want: DefaultConfig("docker.io/istio/proxyv2:1.31.1"),
		},
		"native sidecars forced on": {
			objects: []runtime.Object{
				injectorConfigMap("istio-sidecar-injector", istioValues(t, set("pilot.env.ENABLE_NATIVE_SIDECARS", "true"))),
				node("kwok-0", "kwok-v0.8.0"),
			},
			want: func() Config { c := DefaultConfig("docker.io/istio/proxyv2:1.31.1"); c.NativeSidecar = true; return c }(),
		},
		"native sidecars forced on by a YAML boolean": {
			objects: []runtime.Object{
				injectorConfigMap("istio-sidecar-injector", istioValues(t, set("pilot.env.ENABLE_NATIVE_SIDECARS", true))),
			},
			want: func() Config { c := DefaultConfig("docker.io/istio/proxyv2:1.31.1"); c.NativeSidecar = true; return c }(),
		},
		"native sidecars forced off": {
			objects: []runtime.Object{
				injectorConfigMap("istio-sidecar-injector", istioValues(t, set("pilot.env.ENABLE_NATIVE_SIDECARS", "false"))),
				node("a", "v1.36.3"),
			},
			want: DefaultConfig("docker.io/istio/proxyv2:1.31.1"),
		},
		"CNI": {
			objects: []runtime.Object{
				injectorConfigMap("istio-sidecar-injector", istioValues(t, set("pilot.cni.enabled", true))),
				node("kwok-0", "kwok-v0.8.0"),
			},
			want: func() Config { c := DefaultConfig("docker.io/istio/proxyv2:1.31.1"); c.CNI = true; return c }(),
		},
		"probe rewriting off": {
			objects: []runtime.Object{
				injectorConfigMap("istio-sidecar-injector", istioValues(t, set("sidecarInjectorWebhook.rewriteAppHTTPProbe", false))),
			},
			want: func() Config { c := DefaultConfig("docker.io/istio/proxyv2:1.31.1"); c.KeepAppProbes = true; return c }(),
		},
		"distroless variant": {
			objects: []runtime.Object{
				injectorConfigMap("istio-sidecar-injector", istioValues(t, set("global.variant", "distroless"))),
				node("kwok-0", "kwok-v0.8.0"),
			},
			want: DefaultConfig("docker.io/istio/proxyv2:1.31.1-distroless"),
		},
		"mesh image type overrides the variant for the proxy only": {
			objects: []runtime.Object{
				injectorConfigMap("istio-sidecar-injector", istioValues(t, all(
					set("global.variant", "distroless"), set("global.tag", "1.31.1-distroless")))),
				meshConfigMap("istio", "defaultConfig:\n  image:\n    imageType: default\n"),
				node("kwok-0", "kwok-v0.8.0"),
			},
			want: func() Config {
				c := DefaultConfig("docker.io/istio/proxyv2:1.31.1")
				c.ProxyInitImage = "docker.io/istio/proxyv2:1.31.1-distroless"
				return c
			}(),
		},
		"full image reference": {
			objects: []runtime.Object{
				injectorConfigMap("istio-sidecar-injector", istioValues(t, all(
					set("global.proxy.image", "mirror.example/istio/proxyv2:1.31.1"),
					set("global.proxy_init.image", "mirror.example/istio/proxyv2:1.31.1")))),
				node("kwok-0", "kwok-v0.8.0"),
			},
			want: DefaultConfig("mirror.example/istio/proxyv2:1.31.1"),
		},
		"image with a tag but no registry is composed anyway, as by Istio": {
			objects: []runtime.Object{
				injectorConfigMap("istio-sidecar-injector", istioValues(t, set("global.proxy.image", "proxyv2:x"))),
			},
			want: func() Config {
				c := DefaultConfig("docker.io/istio/proxyv2:x:1.31.1")
				c.ProxyInitImage = "docker.io/istio/proxyv2:1.31.1"
				return c
			}(),
		},
		"numeric tag": {
			objects: []runtime.Object{
				injectorConfigMap("istio-sidecar-injector", istioValues(t, set("global.tag", 1.31))),
			},
			want: DefaultConfig("docker.io/istio/proxyv2:1.31"),
		},
		"custom resources with nulls": {
			objects: []runtime.Object{
				injectorConfigMap("istio-sidecar-injector", istioValues(t, set("global.proxy.resources",
					map[string]any{"requests": map[string]any{"cpu": "10m", "memory": nil}, "limits": nil}))),
			},
			want: func() Config {
				c := DefaultConfig("docker.io/istio/proxyv2:1.31.1")
				c.Resources = resources(map[corev1.ResourceName]string{corev1.ResourceCPU: "10m"}, nil)
				return c
			}(),
		},
		"revision": {
			revision: "canary",
			objects: []runtime.Object{
				injectorConfigMap("istio-sidecar-injector", istioValues(t, nil)),
				injectorConfigMap("istio-sidecar-injector-canary", istioValues(t, all(
					set("revision", "canary"), set("global.tag", "1.31.2")))),
			},
			want: func() Config {
				c := DefaultConfig("docker.io/istio/proxyv2:1.31.2")
				c.Revision = "canary"
				return c
			}(),
		},
		"no Istio installed": {
			wantErr: `"istio-sidecar-injector" not found`,
		},
		"ConfigMap without values": {
			objects: []runtime.Object{&corev1.ConfigMap{
				ObjectMeta: metav1.ObjectMeta{Name: "istio-sidecar-injector", Namespace: "istio-system"},
			}},
			wantErr: `no key "values"`,
		},
		"malformed mesh configuration": {
			objects: []runtime.Object{
				injectorConfigMap("istio-sidecar-injector", istioValues(t, nil)),
				meshConfigMap("istio", "defaultConfig: ["),
			},
			wantErr: "parsing mesh configuration",
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			_, ctx := ktesting.NewTestContext(t)
			objects := tc.objects
			if !tc.noNodes && !hasNode(objects) {
				objects = append(objects, node("kwok-0", "kwok-v0.8.0"))
			}
			client := fake.NewClientset(objects...)
			got, err := ConfigFromClusterRevision(ctx, client, tc.revision)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error = %v, want one containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			assertConfig(t, got, tc.want)
		})
	}
}

func hasNode(objects []runtime.Object) bool {
	for _, o := range objects {
		if _, ok := o.(*corev1.Node); ok {
			return true
		}
	}
	return false
}

func assertConfig(t *testing.T, got, want Config) {
	t.Helper()
	if got.ProxyImage != want.ProxyImage || got.ProxyInitImage != want.ProxyInitImage ||
		got.NativeSidecar != want.NativeSidecar || got.CNI != want.CNI || got.Revision != want.Revision ||
		got.KeepAppProbes != want.KeepAppProbes {
		t.Errorf("config = %+v\nwant %+v", got, want)
	}
	assertResources(t, "config", got.Resources, want.Resources)
}

func TestFromClusterFollowsUpgrades(t *testing.T) {
	_, ctx := ktesting.NewTestContext(t)
	client := fake.NewClientset(injectorConfigMap("istio-sidecar-injector", istioValues(t, nil)))
	source := FromCluster(client)
	before, err := source(ctx)
	if err != nil {
		t.Fatal(err)
	}
	upgraded := injectorConfigMap("istio-sidecar-injector", istioValues(t, set("global.tag", "1.31.2")))
	if _, err := client.CoreV1().ConfigMaps("istio-system").Update(ctx, upgraded, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	after, err := source(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if before.ProxyImage != "docker.io/istio/proxyv2:1.31.1" || after.ProxyImage != "docker.io/istio/proxyv2:1.31.2" {
		t.Errorf("images before/after upgrade = %q/%q", before.ProxyImage, after.ProxyImage)
	}
}

func TestKubeletSupportsNativeSidecars(t *testing.T) {
	for v, want := range map[string]bool{
		"v1.33.0":            true,
		"v1.36.3":            true,
		"1.34.1-gke.1000":    true,
		"v1.33.2+k3s1":       true,
		"v1.32.9":            false,
		"v1.36":              true,
		"v1":                 false,
		"kwok-v0.8.0":        false,
		"":                   false,
		"v1.36.3-eks-abcdef": true,
	} {
		if got := kubeletSupportsNativeSidecars(v); got != want {
			t.Errorf("kubeletSupportsNativeSidecars(%q) = %v, want %v", v, got, want)
		}
	}
}

func TestTagWithImageType(t *testing.T) {
	for _, tc := range []struct{ tag, imageType, want string }{
		{"1.31.1", "", "1.31.1"},
		{"1.31.1", "distroless", "1.31.1-distroless"},
		{"1.31.1-distroless", "debug", "1.31.1-debug"},
		{"1.31.1-distroless", "default", "1.31.1"},
		{"1.31.1", "default", "1.31.1"},
	} {
		if got := tagWithImageType(tc.tag, tc.imageType); got != tc.want {
			t.Errorf("tagWithImageType(%q, %q) = %q, want %q", tc.tag, tc.imageType, got, tc.want)
		}
	}
}
