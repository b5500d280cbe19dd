package cluster

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// KillComponent kills one of the cluster's components (kube-apiserver,
// etcd, ...) with SIGKILL, as a crash or a lost machine would, and waits
// until it is gone. Components that depend on it may exit in turn:
// kube-controller-manager and kube-scheduler give up their leader lease
// and exit once the API server has been away for their renew deadline.
//
// Until StartComponents has them listening again, it holds the host-wide
// creation lock: a cluster created meanwhile (another test package) would
// take the freed ports, which kwokctl chooses by probing for free ones.
func (c *Cluster) KillComponent(ctx context.Context, name string) error {
	pid, err := c.componentPID(name)
	if err != nil {
		return err
	}
	if !alive(pid) {
		return fmt.Errorf("%s (pid %d) is not running", name, pid)
	}
	if err := c.holdPorts(ctx); err != nil {
		return err
	}
	return killAll(ctx, c.clusterDir(), []int{pid})
}

// holdPorts takes the creation lock for an outage, once.
func (c *Cluster) holdPorts(ctx context.Context) error {
	c.outageMu.Lock()
	defer c.outageMu.Unlock()
	if c.releasePorts != nil {
		return nil
	}
	unlock, err := lockPorts(ctx)
	if err != nil {
		return err
	}
	c.releasePorts = unlock
	return nil
}

// returnPorts gives the creation lock back, if an outage holds it.
func (c *Cluster) returnPorts() {
	c.outageMu.Lock()
	defer c.outageMu.Unlock()
	if c.releasePorts != nil {
		c.releasePorts()
		c.releasePorts = nil
	}
}

// StartComponents starts every component that is not running, as a
// kubelet restarts a static pod that exited, with `kwokctl start cluster`
// (which leaves running components alone), and waits until the API server
// is ready. It returns the components it started.
func (c *Cluster) StartComponents(ctx context.Context) ([]string, error) {
	stopped, err := c.stoppedComponents()
	if err != nil {
		return nil, err
	}
	// kwokctl takes a pid that answers signal 0 for a running component;
	// an unreaped zombie does. Without its pid file it starts it again.
	for _, name := range stopped {
		if err := os.Remove(c.pidFile(name)); err != nil && !os.IsNotExist(err) {
			return nil, err
		}
	}
	if out, err := c.kwokctl(ctx, "--name", c.Name, "start", "cluster"); err != nil {
		return stopped, fmt.Errorf("kwokctl start cluster: %w\n%s\n%s", err, out, c.Logs())
	}
	if err := c.waitReadyz(ctx); err != nil {
		return stopped, fmt.Errorf("starting %s again: %w\n%s", strings.Join(stopped, ", "), err, c.Logs())
	}
	c.returnPorts()
	return stopped, nil
}

func (c *Cluster) pidFile(name string) string {
	return filepath.Join(c.clusterDir(), "pids", name+".pid")
}

func (c *Cluster) componentPID(name string) (int, error) {
	path := c.pidFile(name)
	raw, err := os.ReadFile(path)
	if err != nil {
		return 0, fmt.Errorf("no component %s: %w", name, err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(raw)))
	if err != nil {
		return 0, fmt.Errorf("%s: %w", path, err)
	}
	return pid, nil
}

func (c *Cluster) stoppedComponents() ([]string, error) {
	files, err := filepath.Glob(filepath.Join(c.clusterDir(), "pids", "*.pid"))
	if err != nil {
		return nil, err
	}
	var stopped []string
	for _, f := range files {
		name := strings.TrimSuffix(filepath.Base(f), ".pid")
		pid, err := c.componentPID(name)
		if err != nil {
			return nil, err
		}
		if !alive(pid) {
			stopped = append(stopped, name)
		}
	}
	return stopped, nil
}
