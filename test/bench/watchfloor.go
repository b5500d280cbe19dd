package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"runtime/debug"
	"strings"
	"syscall"
	"time"

	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/meshkeeper/istio-operator/pkg/controllers/controller"
	"github.com/meshkeeper/istio-operator/pkg/operator"
	"github.com/meshkeeper/istio-operator/test/operatorproc"
)

// The watch floor is what receiving the cluster's churn costs any client
// that caches the kinds the proxy sidecar controller must follow: pods,
// ReplicaSets, the workload kinds and namespaces, cluster-wide. A separate
// process of this program runs bare shared informers for them, decoding
// protobuf as the operator does, with no event handler and no work; its CPU
// time over a wave, or over the idle phase while pods outside the mesh
// churn, is the part of the operator's that no design with a cluster-wide
// pod informer can avoid.
const watchFloorCommand = "watch-floor"

// watchFloorMain is the floor process: it caches until SIGTERM.
func watchFloorMain(args []string) int {
	if len(args) != 1 {
		fmt.Fprintln(os.Stderr, "usage: bench watch-floor <kubeconfig>")
		return 2
	}
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(50) // as the operator
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", args[0])
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	cfg.QPS, cfg.Burst = 1000, 2000
	cs, err := kubernetes.NewForConfig(operator.Protobuf(cfg))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	f := informers.NewSharedInformerFactory(cs, 0)
	for _, inf := range []cache.SharedIndexInformer{
		f.Core().V1().Pods().Informer(),
		f.Apps().V1().ReplicaSets().Informer(),
		f.Apps().V1().Deployments().Informer(),
		f.Apps().V1().StatefulSets().Informer(),
		f.Apps().V1().DaemonSets().Informer(),
		f.Core().V1().ReplicationControllers().Informer(),
		f.Core().V1().Namespaces().Informer(),
	} {
		// The least any cache does: no managed fields.
		if err := inf.SetTransform(controller.StripManagedFields); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
	}
	f.Start(ctx.Done())
	for typ, ok := range f.WaitForCacheSync(ctx.Done()) {
		if !ok {
			fmt.Fprintf(os.Stderr, "%v did not sync\n", typ)
			return 1
		}
	}
	fmt.Println("synced")
	<-ctx.Done()
	f.Shutdown()
	return 0
}

// watchFloor is the running floor process, seen from the harness.
type watchFloor struct {
	cmd *exec.Cmd
}

// startWatchFloor starts the floor process against kubeconfig, with the
// operator's runtime settings in env, and waits until its caches synced.
func startWatchFloor(ctx context.Context, kubeconfig string, env []string) (*watchFloor, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(self, watchFloorCommand, kubeconfig)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting the watch floor: %w", err)
	}
	w := &watchFloor{cmd: cmd}
	synced := make(chan error, 1)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if strings.TrimSpace(sc.Text()) == "synced" {
				synced <- nil
				return
			}
		}
		synced <- errors.New("the watch floor exited before its caches synced")
	}()
	select {
	case err = <-synced:
	case <-time.After(5 * time.Minute):
		err = errors.New("the watch floor's caches did not sync within 5 minutes")
	case <-ctx.Done():
		err = ctx.Err()
	}
	if err != nil {
		_ = w.stop()
		return nil, err
	}
	return w, nil
}

// cpuSeconds is the floor process's CPU time so far.
func (w *watchFloor) cpuSeconds() (float64, error) {
	u, err := operatorproc.ReadUsage(w.cmd.Process.Pid)
	return u.CPUSeconds, err
}

func (w *watchFloor) stop() error {
	_ = w.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan error, 1)
	go func() { done <- w.cmd.Wait() }()
	select {
	case <-done:
		return nil
	case <-time.After(10 * time.Second):
		_ = w.cmd.Process.Kill()
		<-done
		return errors.New("the watch floor did not stop within 10 s; killed")
	}
}
