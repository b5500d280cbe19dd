package cluster

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"regexp"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
)

var current atomic.Pointer[Cluster]

// Current returns the cluster Main started, or nil outside Main.
func Current() *Cluster { return current.Load() }

// Main is the body of a test package's TestMain: it starts one cluster for
// the package, runs the tests and always stops the cluster, also when the
// process is interrupted (SIGINT, SIGTERM) or dies (a test timeout panics the
// binary; a watchdog process then kills the components). A cluster that fails
// to start fails the package: the error and the component logs are printed
// and the binary exits 1. Tests never skip for want of a cluster.
//
// Unless opts.Name is set, the cluster is named after the test binary plus a
// random suffix, and lives in its own temporary work directory, so packages
// can run in parallel. KUBECONFIG is pointed at the cluster for the run.
// Main owns SIGINT and SIGTERM of the test binary: a test must not signal its
// own process (signal a child process instead).
func Main(m *testing.M, opts Options) {
	os.Exit(runMain(m, opts))
}

func runMain(m *testing.M, opts Options) int {
	if !flag.Parsed() {
		flag.Parse()
	}
	if opts.Name == "" {
		opts.Name = defaultName()
	}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	// started is closed once Start has returned, so an interrupt during Start
	// waits for Start's own cleanup instead of exiting under it.
	started := make(chan struct{})
	var reaper *watchdog
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	defer signal.Stop(sigs)
	go func() {
		sig := <-sigs
		fmt.Fprintf(os.Stderr, "cluster: %v: stopping cluster %s (again to exit at once)\n", sig, opts.Name)
		go func() {
			<-sigs
			os.Exit(1) // the watchdog still cleans up
		}()
		cancel()
		<-started
		if c := Current(); c != nil {
			if err := c.Stop(); err != nil {
				fmt.Fprintf(os.Stderr, "cluster: stopping %s: %v\n", c.Name, err)
			}
		}
		reaper.stop()
		os.Exit(1)
	}()

	begin := time.Now()
	c, err := Start(ctx, opts)
	if err != nil {
		close(started)
		fmt.Fprintf(os.Stderr, "cluster: %v\n", err)
		return 1
	}
	current.Store(c)
	reaper = startWatchdog(c)
	close(started)
	_ = os.Setenv("KUBECONFIG", c.Kubeconfig)
	if testing.Verbose() {
		fmt.Printf("cluster: %s ready in %s (kubeconfig %s)\n", c.Name, time.Since(begin).Round(10*time.Millisecond), c.Kubeconfig)
	}

	code := m.Run()
	if code != 0 {
		// What the control plane complained about is often why a wait
		// timed out; the cluster and its logs are gone after Stop.
		fmt.Fprint(os.Stderr, c.ErrorLogs())
	}

	if err := c.Stop(); err != nil {
		fmt.Fprintf(os.Stderr, "cluster: stopping %s: %v\n", c.Name, err)
		if code == 0 {
			code = 1
		}
	}
	reaper.stop()
	return code
}

var nameUnsafe = regexp.MustCompile(`[^a-z0-9]+`)

// defaultName names a package's cluster after its test binary ("foo.test").
func defaultName() string {
	base := strings.TrimSuffix(filepath.Base(os.Args[0]), ".test")
	base = strings.Trim(nameUnsafe.ReplaceAllString(strings.ToLower(base), "-"), "-")
	if len(base) > 22 {
		base = strings.TrimRight(base[:22], "-")
	}
	if base == "" {
		base = "test"
	}
	return "it-" + base + "-" + randomSuffix()
}

// Namespace creates a namespace with a unique name derived from the test's
// name in Current(), waits until its default ServiceAccount exists (pods
// cannot be created before), and deletes it when the test ends.
func Namespace(t *testing.T, labels map[string]string) string {
	t.Helper()
	c := Current()
	if c == nil {
		t.Fatal("cluster.Namespace: no cluster is running; call cluster.Main from TestMain")
	}
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()

	prefix := strings.Trim(nameUnsafe.ReplaceAllString(strings.ToLower(t.Name()), "-"), "-")
	if len(prefix) > 40 {
		prefix = strings.TrimRight(prefix[:40], "-")
	}
	ns, err := c.Clientset().CoreV1().Namespaces().Create(ctx, &corev1.Namespace{
		ObjectMeta: metav1.ObjectMeta{GenerateName: prefix + "-", Labels: labels},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("creating namespace for %s: %v", t.Name(), err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		err := c.Clientset().CoreV1().Namespaces().Delete(ctx, ns.Name, metav1.DeleteOptions{})
		if err != nil && !apierrors.IsNotFound(err) {
			t.Errorf("deleting namespace %s: %v", ns.Name, err)
		}
	})
	if err := c.waitServiceAccount(ctx, ns.Name); err != nil {
		t.Fatal(err)
	}
	return ns.Name
}

// Context is the test's context, or, in a cleanup function (where the
// test's context is already cancelled), a background one.
func Context(t *testing.T) context.Context {
	if ctx := t.Context(); ctx.Err() == nil {
		return ctx
	}
	return context.Background()
}

// WaitFor polls cond every 200ms until it returns true, and fails the test
// naming what it waited for when timeout passes first. An error from cond
// counts as "not yet" (API calls fail transiently while things settle); the
// last one is reported on timeout. Call it from the test's goroutine.
func WaitFor(t *testing.T, timeout time.Duration, what string, cond func(ctx context.Context) (bool, error)) {
	t.Helper()
	ctx, cancel := context.WithTimeout(Context(t), timeout)
	defer cancel()
	var lastErr error
	err := wait.PollUntilContextCancel(ctx, 200*time.Millisecond, true, func(ctx context.Context) (bool, error) {
		ok, err := cond(ctx)
		if err != nil {
			// An error caused by the deadline says nothing about the
			// condition; client-go's rate limiter reports one early.
			if ctx.Err() == nil && !strings.Contains(err.Error(), "would exceed context deadline") {
				lastErr = err
			}
			return false, nil
		}
		return ok, nil
	})
	if err == nil {
		return
	}
	if lastErr != nil {
		t.Fatalf("timed out after %s waiting for %s (last error: %v)", timeout, what, lastErr)
	}
	t.Fatalf("timed out after %s waiting for %s", timeout, what)
}
