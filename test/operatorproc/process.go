// Package operatorproc runs the operator binary as a child process of a test
// or a harness: its CPU time and memory are its own, it can be killed and
// restarted like a real deployment, and its /metrics and /readyz are read
// over HTTP as Prometheus and the kubelet would.
package operatorproc

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/util/wait"
)

// Process is the operator binary running as a child process.
type Process struct {
	cmd        *exec.Cmd
	logPath    string
	logFile    *os.File
	metricsURL string
	readyzURL  string
	exited     chan struct{}
	waitErr    error
	http       *http.Client
}

// Build compiles the operator into out, as `make build` does.
func Build(ctx context.Context, root, out string) error {
	return BuildAs(ctx, root, out, GitCommit(root))
}

// BuildAs compiles the operator into out stamped with commit: a build of
// another version of the operator, as far as its version output and logs
// tell.
func BuildAs(ctx context.Context, root, out, commit string) error {
	goTool := os.Getenv("GO")
	if goTool == "" {
		goTool = "go"
	}
	ldflags := "-X main.commit=" + commit
	cmd := exec.CommandContext(ctx, goTool, "build", "-ldflags", ldflags, "-o", out, "./cmd/istio-operator")
	cmd.Dir = root
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("building the operator: %w", err)
	}
	return nil
}

// SupportedFlags returns the flag names the binary's usage text lists, so
// that a harness can run against an operator built before a flag existed.
func SupportedFlags(ctx context.Context, binary string) (map[string]bool, error) {
	cmd := exec.CommandContext(ctx, binary, "-h")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	// -h exits 0 with ContinueOnError; any exit code still printed the usage.
	if err := cmd.Run(); err != nil && out.Len() == 0 {
		return nil, fmt.Errorf("%s -h: %w", binary, err)
	}
	flags := map[string]bool{}
	for _, line := range strings.Split(out.String(), "\n") {
		line = strings.TrimSpace(line)
		if !strings.HasPrefix(line, "-") {
			continue
		}
		name := strings.TrimLeft(strings.Fields(line)[0], "-")
		flags[name] = true
	}
	return flags, nil
}

// Start starts binary with args plus free loopback ports for metrics and
// health, logging to logPath. The child gets its own process group, so a
// Ctrl-C reaches only the harness, which then stops the operator first and
// the cluster after it; and it gets SIGTERM should the harness die. env
// (KEY=value) is added to the harness's own environment.
func Start(binary, logPath string, args, env []string) (*Process, error) {
	metricsAddr, err := FreeAddr()
	if err != nil {
		return nil, err
	}
	healthAddr, err := FreeAddr()
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Dir(logPath), 0o755); err != nil {
		return nil, err
	}
	logFile, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	args = append([]string{
		"--metrics-bind-address", metricsAddr,
		"--health-probe-bind-address", healthAddr,
		"--log-format", "console",
	}, args...)
	cmd := exec.Command(binary, args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
	if err := cmd.Start(); err != nil {
		logFile.Close()
		return nil, fmt.Errorf("starting the operator: %w", err)
	}
	p := &Process{
		cmd:        cmd,
		logPath:    logPath,
		logFile:    logFile,
		metricsURL: "http://" + metricsAddr + "/metrics",
		readyzURL:  "http://" + healthAddr + "/readyz",
		exited:     make(chan struct{}),
		http:       &http.Client{Timeout: 10 * time.Second},
	}
	go func() {
		p.waitErr = cmd.Wait()
		close(p.exited)
	}()
	return p, nil
}

// FreeAddr is a loopback address with a port nothing listens on now.
func FreeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("finding a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().String(), nil
}

// MustFreeAddr is FreeAddr for tests: a failure ends the test.
func MustFreeAddr(t testing.TB) string {
	t.Helper()
	addr, err := FreeAddr()
	if err != nil {
		t.Fatal(err)
	}
	return addr
}

// PID is the operator's process id.
func (p *Process) PID() int { return p.cmd.Process.Pid }

// LogPath is the file the operator logs to.
func (p *Process) LogPath() string { return p.logPath }

// Exited is closed once the process has exited.
func (p *Process) Exited() <-chan struct{} { return p.exited }

// Alive returns an error, with the tail of the operator's log, once the
// process has exited: every wait checks it, so that a crash fails the run at
// once instead of running into a timeout.
func (p *Process) Alive() error {
	select {
	case <-p.exited:
		return fmt.Errorf("the operator exited (%v); last lines of %s:\n%s", p.waitErr, p.logPath, TailFile(p.logPath, 30))
	default:
		return nil
	}
}

// WaitReady waits until /readyz answers 200: every cache has synced and the
// workers run.
func (p *Process) WaitReady(ctx context.Context, timeout time.Duration) error {
	err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, timeout, true, func(ctx context.Context) (bool, error) {
		if err := p.Alive(); err != nil {
			return false, err
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, p.readyzURL, nil)
		if err != nil {
			return false, err
		}
		resp, err := p.http.Do(req)
		if err != nil {
			return false, nil // not listening yet
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK, nil
	})
	if err != nil {
		return fmt.Errorf("waiting up to %s for the operator's /readyz: %w", timeout, err)
	}
	return nil
}

// Stop sends SIGTERM (a clean stop: workers drain, the process exits 0) and
// kills the process if it has not exited within grace.
func (p *Process) Stop(grace time.Duration) error {
	defer p.logFile.Close()
	select {
	case <-p.exited:
		return nil
	default:
	}
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("stopping the operator: %w", err)
	}
	select {
	case <-p.exited:
		if p.waitErr != nil {
			return fmt.Errorf("the operator exited with %v after SIGTERM (log: %s)", p.waitErr, p.logPath)
		}
		return nil
	case <-time.After(grace):
		_ = p.cmd.Process.Kill()
		<-p.exited
		return fmt.Errorf("the operator did not exit within %s of SIGTERM; killed it (log: %s)", grace, p.logPath)
	}
}

// Kill sends SIGKILL, as a node failure or the OOM killer would: nothing is
// drained or released. It returns once the process is gone.
func (p *Process) Kill() error {
	defer p.logFile.Close()
	select {
	case <-p.exited:
		return fmt.Errorf("the operator had already exited (%v) before it was killed (log: %s)", p.waitErr, p.logPath)
	default:
	}
	if err := p.cmd.Process.Kill(); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("killing the operator: %w", err)
	}
	<-p.exited
	return nil
}

// TailFile returns the last lines of the file at path, or why it could not
// be read.
func TailFile(path string, lines int) string {
	raw, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	all := strings.Split(strings.TrimRight(string(raw), "\n"), "\n")
	if len(all) > lines {
		all = all[len(all)-lines:]
	}
	return strings.Join(all, "\n")
}

// GitCommit is the short commit of the repository at root, or "unknown".
func GitCommit(root string) string {
	cmd := exec.Command("git", "rev-parse", "--short", "HEAD")
	cmd.Dir = root
	out, err := cmd.Output()
	if err != nil {
		return "unknown"
	}
	return strings.TrimSpace(string(out))
}
