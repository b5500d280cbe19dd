package cluster

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestDeclaresModule(t *testing.T) {
	for gomod, want := range map[string]bool{
		"module github.com/meshkeeper/istio-operator\n\ngo 1.26\n":        true,
		"// x\nmodule \"github.com/meshkeeper/istio-operator\"\n":         true,
		"module github.com/meshkeeper/istio-operator/hack/tools\n":        false,
		"require github.com/meshkeeper/istio-operator v1.0.0\nmodule x\n": false,
	} {
		if got := declaresModule([]byte(gomod), modulePath); got != want {
			t.Errorf("declaresModule(%q) = %v, want %v", gomod, got, want)
		}
	}
}

func TestMissingToolsSayHowToBuildThem(t *testing.T) {
	_, err := Start(t.Context(), Options{ToolsDir: t.TempDir()})
	if err == nil || !strings.Contains(err.Error(), "make tools") || !strings.Contains(err.Error(), "kube-apiserver") {
		t.Fatalf("Start with an empty tools dir: %v; want an error naming kube-apiserver and `make tools`", err)
	}
}

func TestDefaultNameIsValid(t *testing.T) {
	if name := defaultName(); !validName.MatchString(name) {
		t.Fatalf("defaultName() = %q is not a valid cluster name", name)
	}
}

func TestTailKeepsTheEnd(t *testing.T) {
	path := filepath.Join(t.TempDir(), "x.log")
	var b strings.Builder
	for i := range 5000 {
		b.WriteString(strings.Repeat("x", i%50) + "\n")
	}
	b.WriteString("the last line\n")
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	got := tail(path)
	if lines := strings.Split(got, "\n"); len(lines) != logTailLines || lines[len(lines)-1] != "the last line" {
		t.Fatalf("tail returned %d lines ending %q; want %d ending with the last line", len(lines), lines[len(lines)-1], logTailLines)
	}
}

// requireTools returns the tools dir, failing the test when the cluster
// binaries are absent (the error says to run `make tools`).
func requireTools(t *testing.T) string {
	t.Helper()
	dir, err := resolveToolsDir("")
	if err != nil {
		t.Fatal(err)
	}
	if err := checkTools(dir); err != nil {
		t.Fatal(err)
	}
	return dir
}

// Two clusters started at once in one work dir get their own ports, and
// stopping them leaves no process and no files behind but the work dir.
func TestConcurrentClustersStopCleanly(t *testing.T) {
	requireTools(t)
	workDir := t.TempDir()
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()

	clusters := make([]*Cluster, 2)
	errs := make([]error, 2)
	var wg sync.WaitGroup
	for i := range clusters {
		wg.Go(func() {
			clusters[i], errs[i] = Start(ctx, Options{WorkDir: workDir})
		})
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			for _, c := range clusters {
				if c != nil {
					_ = c.Stop()
				}
			}
			t.Fatalf("cluster %d: %v", i, err)
		}
	}
	defer func() {
		for _, c := range clusters {
			_ = c.Stop()
		}
	}()

	if clusters[0].Config.Host == clusters[1].Config.Host {
		t.Fatalf("both clusters serve on %s", clusters[0].Config.Host)
	}
	for _, c := range clusters {
		if c.Config.QPS != defaultQPS || c.Config.Burst != defaultBurst {
			t.Errorf("%s: QPS %v burst %d, want %d and %d", c.Name, c.Config.QPS, c.Config.Burst, defaultQPS, defaultBurst)
		}
	}

	c := clusters[0]
	if err := c.CreateNodes(ctx, 2); err != nil {
		t.Fatal(err)
	}
	nodes, err := c.Clientset().CoreV1().Nodes().List(ctx, metav1.ListOptions{LabelSelector: NodeTypeLabel + "=kwok"})
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, n := range nodes.Items {
		names = append(names, n.Name)
	}
	if strings.Join(names, ",") != "kwok-node-0,kwok-node-1,kwok-node-2" {
		t.Errorf("nodes %v, want kwok-node-0..2", names)
	}

	for _, c := range clusters {
		if len(componentProcesses(c.clusterDir())) == 0 {
			t.Fatalf("%s: no component processes found while running", c.Name)
		}
		if err := c.Stop(); err != nil {
			t.Errorf("stopping %s: %v", c.Name, err)
		}
		if procs := componentProcesses(c.clusterDir()); len(procs) > 0 {
			t.Errorf("%s: processes %v left after Stop", c.Name, procs)
		}
		for _, path := range []string{c.clusterDir(), c.configPath()} {
			if _, err := os.Stat(path); !os.IsNotExist(err) {
				t.Errorf("%s: %s left after Stop (%v)", c.Name, path, err)
			}
		}
	}
	if _, err := os.Stat(workDir); err != nil {
		t.Errorf("Stop removed the caller's work dir: %v", err)
	}
}

// A component that dies at start fails Start at once, with its log in the
// error, and nothing is left behind.
func TestStartReportsComponentFailure(t *testing.T) {
	tools := requireTools(t)
	fake := t.TempDir()
	for _, name := range requiredTools {
		if err := os.Symlink(filepath.Join(tools, name), filepath.Join(fake, name)); err != nil {
			t.Fatal(err)
		}
	}
	// kwokctl asks the binary for its version before running it.
	script := "#!/bin/sh\ncase \"$*\" in *--version*) echo 'Kubernetes v1.36.3'; exit 0;; esac\necho 'broken on purpose' >&2\nexit 1\n"
	apiserver := filepath.Join(fake, "kube-apiserver")
	if err := os.Remove(apiserver); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(apiserver, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}

	workDir := t.TempDir()
	begin := time.Now()
	_, err := Start(t.Context(), Options{ToolsDir: fake, WorkDir: workDir, Name: "broken"})
	if err == nil {
		t.Fatal("Start succeeded with a kube-apiserver that exits")
	}
	for _, want := range []string{"kube-apiserver", "broken on purpose"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error does not mention %q:\n%v", want, err)
		}
	}
	if d := time.Since(begin); d > 30*time.Second {
		t.Errorf("Start took %s to notice the dead component", d)
	}
	dir := filepath.Join(workDir, "clusters", "broken")
	if procs := componentProcesses(dir); len(procs) > 0 {
		t.Errorf("processes %v left behind", procs)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("%s left behind (%v)", dir, err)
	}
}
