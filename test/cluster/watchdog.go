package cluster

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"time"
)

// kwokctl starts the components detached from the test process, so they
// outlive it when it dies without running Stop: a `go test -timeout` panic,
// SIGKILL, a crash. The watchdog is a copy of the test binary, started in
// its own session, that waits for the test process to go away and then kills
// whatever still runs from the cluster's directory and removes the files.
// Stop runs first on every orderly exit, and then the watchdog is killed.
const (
	watchdogDirEnv    = "ISTIO_OPERATOR_CLUSTER_WATCHDOG_DIR"
	watchdogParentEnv = "ISTIO_OPERATOR_CLUSTER_WATCHDOG_PARENT"
	watchdogRemoveEnv = "ISTIO_OPERATOR_CLUSTER_WATCHDOG_REMOVE"
)

func init() {
	if dir := os.Getenv(watchdogDirEnv); dir != "" {
		runWatchdog(dir, os.Getenv(watchdogParentEnv), os.Getenv(watchdogRemoveEnv))
		os.Exit(0)
	}
}

type watchdog struct{ cmd *exec.Cmd }

func startWatchdog(c *Cluster) *watchdog {
	exe, err := os.Executable()
	if err != nil {
		fmt.Fprintf(os.Stderr, "cluster: no watchdog for %s: %v\n", c.Name, err)
		return nil
	}
	remove := c.WorkDir
	if !c.ownsWorkDir {
		remove = c.clusterDir() + string(filepath.ListSeparator) + c.configPath()
	}
	cmd := exec.Command(exe)
	cmd.Env = append(os.Environ(),
		watchdogDirEnv+"="+c.clusterDir(),
		watchdogParentEnv+"="+strconv.Itoa(os.Getpid()),
		watchdogRemoveEnv+"="+remove,
	)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		fmt.Fprintf(os.Stderr, "cluster: no watchdog for %s: %v\n", c.Name, err)
		return nil
	}
	return &watchdog{cmd: cmd}
}

func (w *watchdog) stop() {
	if w == nil {
		return
	}
	_ = w.cmd.Process.Kill()
	_ = w.cmd.Wait()
}

func runWatchdog(dir, parent, remove string) {
	ppid, err := strconv.Atoi(parent)
	if err != nil {
		return
	}
	for os.Getppid() == ppid {
		time.Sleep(500 * time.Millisecond)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	_ = killAll(ctx, dir, componentProcesses(dir))
	for _, path := range filepath.SplitList(remove) {
		_ = os.RemoveAll(path)
	}
}
