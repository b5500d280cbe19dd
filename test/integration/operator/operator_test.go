// Package operator tests the operator binary as a process against a real
// API server: flags, health and metrics endpoints, leader election and a
// clean exit on SIGTERM.
package operator

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/meshkeeper/istio-operator/test/cluster"
	"github.com/meshkeeper/istio-operator/test/operatorproc"
)

var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "istio-operator-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binary = filepath.Join(dir, "istio-operator")
	build := exec.Command("go", "build", "-o", binary, "github.com/meshkeeper/istio-operator/cmd/istio-operator")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "building the operator:", err)
		os.Exit(1)
	}
	defer os.RemoveAll(dir)
	cluster.Main(m, cluster.Options{Nodes: 1})
}

// process is a running operator.
type process struct {
	cmd                *exec.Cmd
	out                *bytes.Buffer
	health, metricsURL string
	exited             chan error
}

func start(t *testing.T, args ...string) *process {
	t.Helper()
	health, metrics := operatorproc.MustFreeAddr(t), operatorproc.MustFreeAddr(t)
	args = append([]string{
		"--kubeconfig", cluster.Current().Kubeconfig,
		"--health-probe-bind-address", health,
		"--metrics-bind-address", metrics,
		"--log-format", "json",
	}, args...)
	p := &process{cmd: exec.Command(binary, args...), out: &bytes.Buffer{},
		health: "http://" + health, metricsURL: "http://" + metrics + "/metrics", exited: make(chan error, 1)}
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.exited <- p.cmd.Wait() }()
	t.Cleanup(func() {
		if p.cmd.ProcessState == nil {
			_ = p.cmd.Process.Kill()
			<-p.exited
		}
		if t.Failed() {
			t.Logf("operator output:\n%s", p.out.String())
		}
	})
	return p
}

func get(url string) (int, string) {
	resp, err := http.Get(url)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func (p *process) waitReady(t *testing.T) {
	t.Helper()
	cluster.WaitFor(t, 60*time.Second, "operator /readyz 200", func(context.Context) (bool, error) {
		select {
		case err := <-p.exited:
			return false, fmt.Errorf("operator exited early: %v", err)
		default:
		}
		code, _ := get(p.health + "/readyz")
		return code == http.StatusOK, nil
	})
}

func (p *process) stop(t *testing.T) {
	t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-p.exited:
		if err != nil {
			t.Fatalf("operator exited with %v after SIGTERM, want 0", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("operator did not exit within 20s of SIGTERM")
	}
}

func TestHelpListsFlags(t *testing.T) {
	out, err := exec.Command(binary, "--help").CombinedOutput()
	if err != nil {
		t.Fatalf("--help: %v\n%s", err, out)
	}
	for _, flag := range []string{"-kubeconfig", "-namespace", "-metrics-bind-address", "-health-probe-bind-address",
		"-leader-elect", "-log-level", "-log-format"} {
		if !strings.Contains(string(out), flag) {
			t.Errorf("--help does not list %s", flag)
		}
	}
}

func TestServesHealthAndMetricsAndStopsOnSIGTERM(t *testing.T) {
	cluster.InstallIstioCRD(t)
	p := start(t)
	p.waitReady(t)
	if code, body := get(p.health + "/healthz"); code != http.StatusOK {
		t.Fatalf("/healthz = %d %s", code, body)
	}
	code, body := get(p.metricsURL)
	if code != http.StatusOK {
		t.Fatalf("/metrics = %d", code)
	}
	for _, family := range []string{"istio_operator_build_info", "istio_operator_api_requests_total", "rest_client_requests_total", "go_goroutines", "process_resident_memory_bytes"} {
		if !strings.Contains(body, family) {
			t.Errorf("/metrics has no %s", family)
		}
	}
	if !strings.Contains(body, `istio_version="1.31.1"`) {
		t.Error("build info does not carry the Istio version")
	}
	p.stop(t)
}

func TestLeaderElection(t *testing.T) {
	cluster.InstallIstioCRD(t)
	kube := kubernetes.NewForConfigOrDie(cluster.Current().Config)
	ns := cluster.Namespace(t, nil)
	p := start(t, "--leader-elect", "--namespace", ns, "--leader-election-id", "lease-test")
	p.waitReady(t)
	cluster.WaitFor(t, 30*time.Second, "lease held", func(ctx context.Context) (bool, error) {
		l, err := kube.CoordinationV1().Leases(ns).Get(ctx, "lease-test", metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return false, nil
		}
		return err == nil && l.Spec.HolderIdentity != nil && *l.Spec.HolderIdentity != "", err
	})
	cluster.WaitFor(t, 30*time.Second, "leader metric 1", func(context.Context) (bool, error) {
		_, body := get(p.metricsURL)
		return strings.Contains(body, `leader_election_master_status{name="lease-test"} 1`), nil
	})
	p.stop(t)
	// ReleaseOnCancel: a clean stop hands the lease over at once.
	l, err := kube.CoordinationV1().Leases(ns).Get(context.Background(), "lease-test", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if l.Spec.HolderIdentity != nil && *l.Spec.HolderIdentity != "" {
		t.Errorf("lease still held by %q after a clean stop", *l.Spec.HolderIdentity)
	}
}
