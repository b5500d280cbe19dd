package cluster

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"k8s.io/apimachinery/pkg/util/wait"
)

// portLockName is the host-wide lock serialising cluster creation; see
// Cluster.create. hack/cluster.sh locks the same file.
const portLockName = "istio-operator-kwokctl.lock"

// lockPorts takes the host-wide creation lock, waiting for it as long as ctx
// allows. The lock belongs to the open file, so it also ends when the process
// dies.
func lockPorts(ctx context.Context) (unlock func(), err error) {
	path := filepath.Join(os.TempDir(), portLockName)
	// Ports are the host's, so every user locks the same file: created
	// writable for all (despite the umask), and opened read-only, which is
	// all flock needs, so a file another user created serves as well.
	if f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o666); err == nil {
		_ = f.Chmod(0o666)
		_ = f.Close()
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("opening lock %s: %w", path, err)
	}
	err = wait.PollUntilContextCancel(ctx, 100*time.Millisecond, true, func(context.Context) (bool, error) {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if errors.Is(err, syscall.EWOULDBLOCK) || errors.Is(err, syscall.EINTR) {
			return false, nil
		}
		return err == nil, err
	})
	if err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("waiting for lock %s (another cluster is being created): %w", path, err)
	}
	return func() { _ = f.Close() }, nil
}

func listening(port int) bool {
	conn, err := net.DialTimeout("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), 250*time.Millisecond)
	if err != nil {
		return false
	}
	_ = conn.Close()
	return true
}

// componentProcesses returns the live processes whose command line refers to
// a file under dir: every component kwokctl starts for a cluster names its
// data, certificate or kubeconfig paths there.
func componentProcesses(dir string) []int {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		if refersTo(pid, dir) && alive(pid) {
			pids = append(pids, pid)
		}
	}
	return pids
}

func refersTo(pid int, dir string) bool {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil {
		return false
	}
	return strings.Contains(string(raw), filepath.Clean(dir)+string(filepath.Separator))
}

// alive reports whether pid exists and is not a zombie. A killed component
// whose parent (often init, which here may reap late) has not reaped it yet
// is gone for our purposes.
func alive(pid int) bool {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	s := string(raw)
	i := strings.LastIndexByte(s, ')')
	if i < 0 || i+2 >= len(s) {
		return false
	}
	state := s[i+2]
	return state != 'Z' && state != 'X'
}

// killAll kills the processes of pids that still refer to dir and waits until
// they are gone.
func killAll(ctx context.Context, dir string, pids []int) error {
	seen := map[int]bool{}
	var live []int
	for _, pid := range pids {
		if seen[pid] {
			continue
		}
		seen[pid] = true
		if alive(pid) && refersTo(pid, dir) {
			_ = syscall.Kill(pid, syscall.SIGKILL)
			live = append(live, pid)
		}
	}
	err := wait.PollUntilContextCancel(ctx, 50*time.Millisecond, true, func(context.Context) (bool, error) {
		var still []int
		for _, pid := range live {
			// Reap it if it happens to be our child; harmless otherwise.
			var ws syscall.WaitStatus
			_, _ = syscall.Wait4(pid, &ws, syscall.WNOHANG, nil)
			if alive(pid) {
				still = append(still, pid)
			}
		}
		live = still
		return len(live) == 0, nil
	})
	if err != nil {
		return fmt.Errorf("processes %v of %s survived SIGKILL: %w", live, dir, err)
	}
	return nil
}
