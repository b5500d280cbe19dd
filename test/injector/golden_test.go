package injector

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"
)

// istioTestdata is the directory of Istio's own injection golden files in
// the istio.io/istio module the operator builds against, or "" when that
// module is not in the module cache.
func istioTestdata(t *testing.T) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	// go mod download fetches the module if this machine has not yet.
	out, err := exec.CommandContext(ctx, "go", "mod", "download", "-json", "istio.io/istio").Output()
	if err != nil {
		t.Logf("go mod download istio.io/istio: %v", err)
		return ""
	}
	var mod struct{ Dir string }
	if err := json.Unmarshal(out, &mod); err != nil {
		return ""
	}
	dir := mod.Dir
	if dir == "" {
		return ""
	}
	dir = filepath.Join(dir, "pkg", "kube", "inject", "testdata", "inject")
	if _, err := os.Stat(dir); err != nil {
		return ""
	}
	return dir
}

// readPod reads a Pod, or a Deployment's pod template, from a golden file.
func readPod(t *testing.T, path string) *corev1.Pod {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var meta metav1.TypeMeta
	if err := yaml.Unmarshal(b, &meta); err != nil {
		t.Fatal(err)
	}
	switch meta.Kind {
	case "Pod":
		var p corev1.Pod
		if err := yaml.Unmarshal(b, &p); err != nil {
			t.Fatal(err)
		}
		return &p
	case "Deployment":
		var d appsv1.Deployment
		if err := yaml.Unmarshal(b, &d); err != nil {
			t.Fatal(err)
		}
		// Istio's kube-inject names the workload after the Deployment.
		return &corev1.Pod{ObjectMeta: d.Spec.Template.ObjectMeta, Spec: d.Spec.Template.Spec}
	}
	t.Fatalf("%s: unexpected kind %q", path, meta.Kind)
	return nil
}

// TestMatchesIstioGoldenFiles runs Istio 1.31's own injection test inputs
// through the stand-in and compares with Istio's expected output, less what
// the stand-in does not reproduce (environment, probes, lifecycle hooks, and
// volume sources the API server defaults). Istio's tests run with native
// sidecars auto-detected on 1.33+ nodes, that is enabled, and the test
// image registry.istio.io/testing/proxyv2:latest.
func TestMatchesIstioGoldenFiles(t *testing.T) {
	dir := istioTestdata(t)
	if dir == "" {
		t.Fatal("istio.io/istio is a dependency of this module but is not in the module cache; run go mod download")
	}
	tests := []struct {
		in, want string
		cni      bool
	}{
		{in: "hello.yaml", want: "hello.yaml.injected"},
		{in: "hello.yaml", want: "hello.yaml.cni.injected", cni: true},
		{in: "native-sidecar.yaml", want: "native-sidecar.yaml.injected"},
		{in: "native-sidecar-opt-in.yaml", want: "native-sidecar-opt-in.yaml.injected"},
		{in: "native-sidecar-opt-out.yaml", want: "native-sidecar-opt-out.yaml.injected"},
		{in: "resource_annotations.yaml", want: "resource_annotations.yaml.injected"},
		{in: "traffic-annotations.yaml", want: "traffic-annotations.yaml.injected"},
		{in: "init-no-intercept-no-native-sidecar.yaml", want: "init-no-intercept-no-native-sidecar.yaml.injected"},
	}
	for _, tc := range tests {
		t.Run(tc.want, func(t *testing.T) {
			in := readPod(t, filepath.Join(dir, tc.in))
			want := readPod(t, filepath.Join(dir, tc.want))
			cfg := DefaultConfig("registry.istio.io/testing/proxyv2:latest")
			cfg.NativeSidecar = true
			cfg.CNI = tc.cni
			got, err := inject(in, cfg)
			if err != nil {
				t.Fatal(err)
			}
			normalise(got)
			normalise(want)
			if diff := yamlDiff(t, want.ObjectMeta, got.ObjectMeta); diff != "" {
				t.Errorf("metadata differs from Istio's (-istio +stand-in):\n%s", diff)
			}
			if diff := yamlDiff(t, want.Spec, got.Spec); diff != "" {
				t.Errorf("spec differs from Istio's (-istio +stand-in):\n%s", diff)
			}
		})
	}
}

// yamlDiff renders both values as YAML and lists the lines only one has, in
// order; empty means equal.
func yamlDiff(t *testing.T, want, got any) string {
	t.Helper()
	w, err := yaml.Marshal(want)
	if err != nil {
		t.Fatal(err)
	}
	g, err := yaml.Marshal(got)
	if err != nil {
		t.Fatal(err)
	}
	if string(w) == string(g) {
		return ""
	}
	wl, gl := strings.Split(string(w), "\n"), strings.Split(string(g), "\n")
	// Longest common subsequence, fine for files of a few hundred lines.
	lcs := make([][]int, len(wl)+1)
	for i := range lcs {
		lcs[i] = make([]int, len(gl)+1)
	}
	for i := len(wl) - 1; i >= 0; i-- {
		for j := len(gl) - 1; j >= 0; j-- {
			if wl[i] == gl[j] {
				lcs[i][j] = lcs[i+1][j+1] + 1
			} else {
				lcs[i][j] = max(lcs[i+1][j], lcs[i][j+1])
			}
		}
	}
	var b strings.Builder
	i, j := 0, 0
	for i < len(wl) || j < len(gl) {
		switch {
		case i < len(wl) && j < len(gl) && wl[i] == gl[j]:
			i, j = i+1, j+1
		case j < len(gl) && (i == len(wl) || lcs[i][j+1] >= lcs[i+1][j]):
			b.WriteString("+" + gl[j] + "\n")
			j++
		default:
			b.WriteString("-" + wl[i] + "\n")
			i++
		}
	}
	return b.String()
}

// normalise drops what the stand-in does not reproduce.
func normalise(p *corev1.Pod) {
	for _, cs := range [][]corev1.Container{p.Spec.Containers, p.Spec.InitContainers} {
		for i := range cs {
			if cs[i].Name != ProxyContainerName && cs[i].Name != InitContainerName && cs[i].Name != ValidationContainerName {
				continue
			}
			cs[i].Env = nil
			cs[i].ReadinessProbe = nil
			cs[i].StartupProbe = nil
			cs[i].Lifecycle = nil
		}
	}
	for i := range p.Spec.Volumes {
		if p.Spec.Volumes[i].VolumeSource == (corev1.VolumeSource{}) {
			p.Spec.Volumes[i].EmptyDir = &corev1.EmptyDirVolumeSource{}
		}
	}
	// Set by Istio's test setup (values.global.network), not by injection.
	delete(p.Labels, "topology.istio.io/network")
	if p.Labels != nil && len(p.Labels) == 0 {
		p.Labels = nil
	}
}
