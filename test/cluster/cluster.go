// Package cluster runs a real Kubernetes control plane (etcd, kube-apiserver,
// kube-controller-manager, kube-scheduler) with kwok-simulated nodes for the
// operator's integration tests. It drives kwokctl's binary runtime with the
// binaries that `make tools` builds into bin/tools, so it needs neither Docker
// nor downloads. Pods scheduled to the kwok nodes become Running and Ready
// without running any container: tests can check what the operator does to
// the cluster's objects, never data-plane behaviour.
//
// A test package uses it from TestMain:
//
//	func TestMain(m *testing.M) { cluster.Main(m, cluster.Options{}) }
//
// and then Current(), Namespace and WaitFor in its tests.
package cluster

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/yaml"

	"github.com/meshkeeper/istio-operator/pkg/reconnect"
	"github.com/meshkeeper/istio-operator/test/istiod"
)

const (
	// ToolsEnv overrides the directory holding the cluster binaries.
	ToolsEnv = "ISTIO_OPERATOR_TOOLS"

	modulePath = "github.com/meshkeeper/istio-operator"

	// NodeAnnotation marks a Node as one kwok simulates.
	NodeAnnotation = "kwok.x-k8s.io/node"
	// NodeTypeLabel is set to "kwok" on every node this package creates, so
	// tests can select them.
	NodeTypeLabel = "type"
	// NodeNamePrefix is the prefix of the nodes' names: kwok-node-0, -1, ...
	NodeNamePrefix = "kwok-node-"

	defaultQPS   = 200
	defaultBurst = 400

	// logTailLines is how much of each component log failure messages carry.
	logTailLines = 40
	logTailBytes = 6 << 10
)

// requiredTools are the binaries kwokctl's binary runtime runs.
var requiredTools = []string{
	"etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubectl", "kwok", "kwokctl",
	istiodBinary,
}

// istiodBinary is the real istiod, run behind the simulated istiod pod.
const istiodBinary = "pilot-discovery"

// Options configure a cluster. The zero value is usable.
type Options struct {
	// Name of the kwokctl cluster; it must be unique among clusters running
	// at the same time in WorkDir. Default: "istio-operator-<random>".
	Name string
	// Nodes is the number of kwok nodes to create. Default 1.
	Nodes int
	// DisableQPSLimits removes API throttling from the control plane
	// components (kwokctl --disable-qps-limits), for load tests.
	DisableQPSLimits bool
	// ToolsDir holds the binaries. Default: $ISTIO_OPERATOR_TOOLS, else
	// <repository root>/bin/tools.
	ToolsDir string
	// WorkDir is kwokctl's work directory (KWOK_WORKDIR); the cluster lives
	// in WorkDir/clusters/Name. Default: a new temporary directory, removed
	// by Stop. A caller-supplied WorkDir is kept; only the cluster's own
	// directory inside it is removed.
	WorkDir string
	// QPS and Burst of the returned rest.Config. Default 200 and 400.
	QPS   float32
	Burst int
	// StartTimeout bounds Start when the context has no earlier deadline.
	// Default 3 minutes.
	StartTimeout time.Duration
	// AuditPolicy, when set, is an audit.k8s.io/v1 Policy (YAML) the API
	// server logs requests by (kwokctl --kube-audit-policy); the log, one
	// JSON event a line, is at AuditLog().
	AuditPolicy string
}

// Cluster is a running kwokctl cluster.
type Cluster struct {
	// Name is the kwokctl cluster name.
	Name string
	// WorkDir is kwokctl's work directory (KWOK_WORKDIR).
	WorkDir string
	// Kubeconfig is the path of the admin kubeconfig.
	Kubeconfig string
	// Config is an admin client configuration for the cluster.
	Config *rest.Config

	toolsDir    string
	ownsWorkDir bool
	clientset   kubernetes.Interface

	// router carries the API server's calls to Services (webhooks) to host
	// processes; istiod is the real istiod behind the installed one.
	router *istiod.Router
	istiod *istiod.Supervisor
	// supervisors stop the real istiods, the default revision's and those
	// of the revisions SuperviseRevision added.
	supervisorsMu sync.Mutex
	supervisors   []func()
	revisions     map[string]*istiod.Supervisor

	// releasePorts ends an outage's hold on the creation lock (KillComponent).
	outageMu     sync.Mutex
	releasePorts func()

	nodesMu  sync.Mutex
	stopOnce sync.Once
	stopErr  error
}

// Start creates a cluster with kwokctl, creates its kwok nodes and waits until
// the API server is ready, the nodes are Ready and the default ServiceAccount
// exists. On failure nothing is left running, and the error carries the tail
// of every component log.
func Start(ctx context.Context, opts Options) (*Cluster, error) {
	if opts.StartTimeout <= 0 {
		opts.StartTimeout = 3 * time.Minute
	}
	ctx, cancel := context.WithTimeout(ctx, opts.StartTimeout)
	defer cancel()

	toolsDir, err := resolveToolsDir(opts.ToolsDir)
	if err != nil {
		return nil, err
	}
	if err := checkTools(toolsDir); err != nil {
		return nil, err
	}
	if opts.Name == "" {
		opts.Name = "istio-operator-" + randomSuffix()
	}
	if !validName.MatchString(opts.Name) {
		return nil, fmt.Errorf("cluster name %q: use lowercase letters, digits and '-', at most 40 characters", opts.Name)
	}
	if opts.Nodes <= 0 {
		opts.Nodes = 1
	}

	c := &Cluster{Name: opts.Name, toolsDir: toolsDir}
	if opts.WorkDir == "" {
		dir, err := os.MkdirTemp("", "istio-operator-kwok-")
		if err != nil {
			return nil, fmt.Errorf("creating the cluster work dir: %w", err)
		}
		c.WorkDir, c.ownsWorkDir = dir, true
	} else {
		dir, err := filepath.Abs(opts.WorkDir)
		if err != nil {
			return nil, err
		}
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return nil, fmt.Errorf("creating the cluster work dir: %w", err)
		}
		c.WorkDir = dir
	}
	c.Kubeconfig = filepath.Join(c.clusterDir(), "kubeconfig.yaml")
	if _, err := os.Stat(c.clusterDir()); err == nil {
		return nil, fmt.Errorf("%s already exists: another cluster of that name is running, or a run was interrupted (delete it with: KWOK_WORKDIR=%s %s --name %s delete cluster)",
			c.clusterDir(), c.WorkDir, filepath.Join(c.toolsDir, "kwokctl"), c.Name)
	}

	if err := c.start(ctx, opts); err != nil {
		logs := c.Logs()
		if stopErr := c.Stop(); stopErr != nil {
			err = errors.Join(err, fmt.Errorf("cleaning up: %w", stopErr))
		}
		return nil, fmt.Errorf("starting cluster %q: %w\n%s", c.Name, err, logs)
	}
	return c, nil
}

var validName = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,38}[a-z0-9])?$`)

func (c *Cluster) start(ctx context.Context, opts Options) error {
	router, err := istiod.NewRouter(c.routerSocketPath())
	if err != nil {
		return err
	}
	c.router = router
	if err := os.WriteFile(c.egressSelectorPath(), []byte(istiod.EgressSelectorConfiguration(c.routerSocketPath())), 0o644); err != nil {
		return err
	}
	configPath := c.configPath()
	if err := os.WriteFile(configPath, []byte(kwokctlConfig(c.egressSelectorPath())), 0o644); err != nil {
		return err
	}

	var auditPolicy string
	if opts.AuditPolicy != "" {
		auditPolicy = c.auditPolicyPath()
		if err := os.WriteFile(auditPolicy, []byte(opts.AuditPolicy), 0o644); err != nil {
			return err
		}
	}

	if err := c.create(ctx, configPath, opts.DisableQPSLimits, auditPolicy); err != nil {
		return err
	}

	cfg, err := clientcmd.BuildConfigFromFlags("", c.Kubeconfig)
	if err != nil {
		return fmt.Errorf("reading kubeconfig: %w", err)
	}
	cfg.QPS, cfg.Burst = defaultQPS, defaultBurst
	if opts.QPS > 0 {
		cfg.QPS = opts.QPS
	}
	if opts.Burst > 0 {
		cfg.Burst = opts.Burst
	}
	// Tests restart the API server: hold requests while it is away rather
	// than leave the tests' informers in client-go's reflector backoff.
	reconnect.Wrap(cfg, logr.Discard())
	c.Config = cfg
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return err
	}
	c.clientset = cs

	if err := c.waitReadyz(ctx); err != nil {
		return err
	}
	if err := c.superviseIstiod(); err != nil {
		return err
	}
	if err := c.CreateNodes(ctx, opts.Nodes); err != nil {
		return err
	}
	return c.waitServiceAccount(ctx, metav1.NamespaceDefault)
}

// kwokctlConfig makes every component listen on loopback only (kwokctl binds
// to 0.0.0.0 by default and has no flag for it), and has the API server dial
// Services through the router (egressSelector, an EgressSelectorConfiguration).
func kwokctlConfig(egressSelector string) string {
	return `apiVersion: config.kwok.x-k8s.io/v1alpha1
kind: KwokctlConfiguration
options:
  bindAddress: 127.0.0.1
componentsPatches:
- name: kube-apiserver
  extraArgs:
  - key: egress-selector-config-file
    value: ` + egressSelector + `
`
}

// superviseIstiod stands the real istiod behind the cluster's istiod
// Deployment whenever one is installed, until the cluster stops.
func (c *Cluster) superviseIstiod() error {
	c.router.SetClient(c.clientset)
	s, err := c.supervise("")
	c.istiod = s
	return err
}

// SuperviseRevision stands a real istiod behind a control plane revision's
// Deployment (istiod-<revision>) whenever one is installed, beside the
// default revision's, until the cluster stops; a canary upgrade runs two.
func (c *Cluster) SuperviseRevision(revision string) (*istiod.Supervisor, error) {
	c.supervisorsMu.Lock()
	s, ok := c.revisions[revision]
	c.supervisorsMu.Unlock()
	if ok {
		return s, nil
	}
	s, err := c.supervise(revision)
	if err != nil {
		return nil, err
	}
	c.supervisorsMu.Lock()
	if c.revisions == nil {
		c.revisions = map[string]*istiod.Supervisor{}
	}
	c.revisions[revision] = s
	c.supervisorsMu.Unlock()
	return s, nil
}

func (c *Cluster) supervise(revision string) (*istiod.Supervisor, error) {
	suffix := ""
	if revision != "" {
		suffix = "-" + revision
	}
	logs := filepath.Join(c.clusterDir(), "logs")
	if err := os.MkdirAll(logs, 0o755); err != nil {
		return nil, err
	}
	log, err := os.OpenFile(filepath.Join(logs, "istiod"+suffix+".log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	s, err := istiod.NewSupervisor(istiod.Options{
		Binary:     filepath.Join(c.toolsDir, istiodBinary),
		Kubeconfig: c.Kubeconfig,
		Client:     c.clientset,
		Router:     c.router,
		Dir:        filepath.Join(c.clusterDir(), "istiod"+suffix),
		Log:        log,
		Revision:   revision,
	})
	if err != nil {
		_ = log.Close()
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	exited := make(chan struct{})
	go func() {
		defer close(exited)
		defer log.Close()
		s.Run(ctx)
	}()
	c.supervisorsMu.Lock()
	c.supervisors = append(c.supervisors, func() { cancel(); <-exited })
	c.supervisorsMu.Unlock()
	return s, nil
}

// Istiod is the supervisor of the real istiod behind this cluster.
func (c *Cluster) Istiod() *istiod.Supervisor { return c.istiod }

// routerSocketPath is the Unix socket the API server reaches Services by.
func (c *Cluster) routerSocketPath() string { return filepath.Join(c.WorkDir, c.Name+".router.sock") }

// egressSelectorPath is the API server's egress selector configuration.
func (c *Cluster) egressSelectorPath() string {
	return filepath.Join(c.WorkDir, c.Name+".egress-selector.yaml")
}

// create runs `kwokctl create cluster`. kwokctl picks each component's port
// by probing downwards from 32767 for one nobody listens on, so two creations
// running at once would choose the same ports. A host-wide file lock
// serialises creations (hack/cluster.sh takes the same lock). It is held
// until every port kwokctl chose is listening, so the next creation sees
// them taken, and released then, while kwokctl still waits for the API server.
func (c *Cluster) create(ctx context.Context, configPath string, disableQPSLimits bool, auditPolicy string) error {
	unlock, err := lockPorts(ctx)
	if err != nil {
		return err
	}
	var unlockOnce sync.Once
	release := func() { unlockOnce.Do(unlock) }
	defer release()

	args := []string{"--name", c.Name, "create", "cluster",
		"--config", configPath,
		// Keep the user's ~/.kube/config untouched.
		"--kubeconfig", "",
		"--runtime", "binary",
	}
	if disableQPSLimits {
		args = append(args, "--disable-qps-limits")
	}
	if auditPolicy != "" {
		args = append(args, "--kube-audit-policy", auditPolicy)
	}
	cmd, out := c.kwokctlCommand(ctx, args...)
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("kwokctl create cluster: %w", err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	exited, released := false, false
	// fail stops kwokctl if it still runs, so that its output is complete
	// and it is not left running or unreaped.
	fail := func(err error) error {
		if !exited {
			_ = cmd.Cancel()
			<-done
		}
		return fmt.Errorf("kwokctl create cluster: %w\n%s", err, out)
	}

	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	var pending []int
	for !exited || !released {
		select {
		case err := <-done:
			exited = true
			if err != nil {
				return fail(err)
			}
		case <-tick.C:
		case <-ctx.Done():
			return fail(fmt.Errorf("%w (ports not listening yet: %v)", ctx.Err(), pending))
		}
		if err := c.componentsAlive(); err != nil {
			return fail(err)
		}
		if !released {
			if pending = c.portsNotListening(); pending == nil {
				release()
				released = true
			}
		}
	}
	return nil
}

// kwokctlCommand returns a kwokctl command with the environment that points
// it at the tools dir and the work dir, and the buffer collecting its output.
func (c *Cluster) kwokctlCommand(ctx context.Context, args ...string) (*exec.Cmd, *bytes.Buffer) {
	cmd := exec.CommandContext(ctx, filepath.Join(c.toolsDir, "kwokctl"), args...)
	cmd.Env = append(os.Environ(),
		"KWOK_WORKDIR="+c.WorkDir,
		"KWOK_RUNTIME=binary",
		"KWOK_KUBE_BINARY_PREFIX="+c.toolsDir,
		"KWOK_KUBE_APISERVER_BINARY="+filepath.Join(c.toolsDir, "kube-apiserver"),
		"KWOK_KUBE_CONTROLLER_MANAGER_BINARY="+filepath.Join(c.toolsDir, "kube-controller-manager"),
		"KWOK_KUBE_SCHEDULER_BINARY="+filepath.Join(c.toolsDir, "kube-scheduler"),
		"KWOK_KUBECTL_BINARY="+filepath.Join(c.toolsDir, "kubectl"),
		"KWOK_ETCD_BINARY="+filepath.Join(c.toolsDir, "etcd"),
		"KWOK_CONTROLLER_BINARY="+filepath.Join(c.toolsDir, "kwok"),
		// kwokctl prefers a kubectl on PATH to KWOK_KUBECTL_BINARY.
		"PATH="+c.toolsDir+string(filepath.ListSeparator)+os.Getenv("PATH"),
	)
	// Its own process group: a Ctrl-C in the terminal reaches the test
	// process, which cancels ctx and cleans up, instead of killing kwokctl
	// halfway through; and stopping kwokctl also stops the kubectl it polls
	// the API server with. The components it starts have sessions of their own.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	out := &bytes.Buffer{}
	cmd.Stdout, cmd.Stderr = out, out
	return cmd, out
}

// kwokctl runs kwokctl and returns its combined output.
func (c *Cluster) kwokctl(ctx context.Context, args ...string) (string, error) {
	cmd, out := c.kwokctlCommand(ctx, args...)
	err := cmd.Run()
	return out.String(), err
}

// portsNotListening returns nil once kwokctl has recorded the cluster's
// components and every port it chose for them accepts connections; else the
// ports still waited for (empty while the configuration is incomplete).
func (c *Cluster) portsNotListening() []int {
	ports, err := c.ports()
	if err != nil {
		return []int{}
	}
	var pending []int
	for _, p := range ports {
		if !listening(p) {
			pending = append(pending, p)
		}
	}
	return pending
}

// ports reads the ports kwokctl chose from the cluster's saved configuration.
// kwokctl saves it twice: before choosing ports, and with the ports and the
// components once it has set the cluster up; only the second counts.
func (c *Cluster) ports() ([]int, error) {
	path := filepath.Join(c.clusterDir(), "kwok.yaml")
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	for _, doc := range strings.Split(string(raw), "\n---") {
		var conf struct {
			Kind       string `json:"kind"`
			Components []struct {
				Name string `json:"name"`
			} `json:"components"`
			Options struct {
				EtcdPort                  int `json:"etcdPort"`
				EtcdPeerPort              int `json:"etcdPeerPort"`
				KubeApiserverPort         int `json:"kubeApiserverPort"`
				KubeControllerManagerPort int `json:"kubeControllerManagerPort"`
				KubeSchedulerPort         int `json:"kubeSchedulerPort"`
				KwokControllerPort        int `json:"kwokControllerPort"`
			} `json:"options"`
		}
		if err := yaml.Unmarshal([]byte(doc), &conf); err != nil || conf.Kind != "KwokctlConfiguration" {
			continue
		}
		o := conf.Options
		portsOf := map[string][]int{
			"etcd":                    {o.EtcdPort, o.EtcdPeerPort},
			"kube-apiserver":          {o.KubeApiserverPort},
			"kube-controller-manager": {o.KubeControllerManagerPort},
			"kube-scheduler":          {o.KubeSchedulerPort},
			"kwok-controller":         {o.KwokControllerPort},
		}
		var ports []int
		for _, comp := range conf.Components {
			for _, p := range portsOf[comp.Name] {
				if p <= 0 {
					return nil, fmt.Errorf("%s: no port for %s yet", path, comp.Name)
				}
				ports = append(ports, p)
			}
		}
		if len(ports) == 0 {
			return nil, fmt.Errorf("%s lists no components yet", path)
		}
		return ports, nil
	}
	return nil, fmt.Errorf("no KwokctlConfiguration in %s", path)
}

func (c *Cluster) waitReadyz(ctx context.Context) error {
	var lastErr error
	err := wait.PollUntilContextCancel(ctx, 100*time.Millisecond, true, func(ctx context.Context) (bool, error) {
		if err := c.componentsAlive(); err != nil {
			return false, err
		}
		_, lastErr = c.clientset.Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(ctx)
		return lastErr == nil, nil
	})
	if err != nil {
		return fmt.Errorf("waiting for kube-apiserver /readyz: %w (last error: %v)", err, lastErr)
	}
	return nil
}

func (c *Cluster) waitServiceAccount(ctx context.Context, namespace string) error {
	var lastErr error
	err := wait.PollUntilContextCancel(ctx, 100*time.Millisecond, true, func(ctx context.Context) (bool, error) {
		if err := c.componentsAlive(); err != nil {
			return false, err
		}
		_, lastErr = c.clientset.CoreV1().ServiceAccounts(namespace).Get(ctx, "default", metav1.GetOptions{})
		return lastErr == nil, nil
	})
	if err != nil {
		return fmt.Errorf("waiting for ServiceAccount %s/default: %w (last error: %v)", namespace, err, lastErr)
	}
	return nil
}

// componentsAlive fails when a component kwokctl started has exited: kwokctl
// does not restart it, so waiting on would only run into the timeout.
func (c *Cluster) componentsAlive() error {
	files, _ := filepath.Glob(filepath.Join(c.clusterDir(), "pids", "*.pid"))
	var dead []string
	for _, f := range files {
		raw, err := os.ReadFile(f)
		if err != nil {
			continue // kwokctl is writing or removing it
		}
		pid, err := strconv.Atoi(strings.TrimSpace(string(raw)))
		if err != nil {
			continue
		}
		if !alive(pid) {
			dead = append(dead, strings.TrimSuffix(filepath.Base(f), ".pid"))
		}
	}
	if len(dead) > 0 {
		return fmt.Errorf("cluster components exited: %s", strings.Join(dead, ", "))
	}
	return nil
}

// Clientset returns a typed client for the cluster.
func (c *Cluster) Clientset() kubernetes.Interface { return c.clientset }

// Dynamic returns a dynamic client for the cluster.
func (c *Cluster) Dynamic() dynamic.Interface { return dynamic.NewForConfigOrDie(c.Config) }

// CreateNodes adds n kwok nodes, named with the lowest free kwok-node-<i>
// names, and waits until kwok reports them Ready.
func (c *Cluster) CreateNodes(ctx context.Context, n int) error {
	c.nodesMu.Lock()
	defer c.nodesMu.Unlock()

	existing, err := c.clientset.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil {
		return fmt.Errorf("listing nodes: %w", err)
	}
	taken := map[string]bool{}
	for _, node := range existing.Items {
		taken[node.Name] = true
	}
	var names []string
	for i := 0; len(names) < n; i++ {
		if name := fmt.Sprintf("%s%d", NodeNamePrefix, i); !taken[name] {
			names = append(names, name)
		}
	}
	for _, name := range names {
		if _, err := c.clientset.CoreV1().Nodes().Create(ctx, NewNode(name), metav1.CreateOptions{}); err != nil {
			return fmt.Errorf("creating node %s: %w", name, err)
		}
	}

	notReady := names
	err = wait.PollUntilContextCancel(ctx, 100*time.Millisecond, true, func(ctx context.Context) (bool, error) {
		if err := c.componentsAlive(); err != nil {
			return false, err
		}
		var still []string
		for _, name := range notReady {
			node, err := c.clientset.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
			if err != nil || !nodeReady(node) {
				still = append(still, name)
			}
		}
		notReady = still
		return len(notReady) == 0, nil
	})
	if err != nil {
		return fmt.Errorf("waiting for nodes %v to become Ready: %w", notReady, err)
	}
	return nil
}

// NewNode returns a Node kwok simulates: kwok manages nodes annotated
// kwok.x-k8s.io/node=fake, marks them Ready and runs their pods. The node has
// no taint, so ordinary pods schedule onto it.
func NewNode(name string) *corev1.Node {
	capacity := corev1.ResourceList{
		corev1.ResourceCPU:    resource.MustParse("32"),
		corev1.ResourceMemory: resource.MustParse("256Gi"),
		corev1.ResourcePods:   resource.MustParse("1000"),
	}
	return &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{
			Name:        name,
			Annotations: map[string]string{NodeAnnotation: "fake"},
			Labels: map[string]string{
				NodeTypeLabel:          "kwok",
				corev1.LabelHostname:   name,
				corev1.LabelOSStable:   "linux",
				corev1.LabelArchStable: "amd64",
			},
		},
		Status: corev1.NodeStatus{
			Capacity:    capacity,
			Allocatable: capacity.DeepCopy(),
		},
	}
}

func nodeReady(node *corev1.Node) bool {
	for _, cond := range node.Status.Conditions {
		if cond.Type == corev1.NodeReady {
			return cond.Status == corev1.ConditionTrue
		}
	}
	return false
}

// Stop deletes the cluster, kills any component process kwokctl left behind
// and removes the cluster's files. It is safe to call more than once and from
// several goroutines.
func (c *Cluster) Stop() error {
	c.stopOnce.Do(func() { c.stopErr = c.stop() })
	return c.stopErr
}

func (c *Cluster) stop() error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	var errs []error
	defer c.returnPorts()
	c.supervisorsMu.Lock()
	stops := c.supervisors
	c.supervisors = nil
	c.supervisorsMu.Unlock()
	for _, stop := range stops {
		stop()
	}
	if c.router != nil {
		_ = c.router.Close()
	}
	// Remember the processes before kwokctl forgets them with their pid files.
	procs := componentProcesses(c.clusterDir())
	if _, err := os.Stat(c.clusterDir()); err == nil {
		// kwokctl delete insists on a kubeconfig to remove the cluster's
		// context from; give it the cluster's own, which goes away anyway.
		if out, err := c.kwokctl(ctx, "--name", c.Name, "delete", "cluster", "--kubeconfig", c.Kubeconfig); err != nil {
			errs = append(errs, fmt.Errorf("kwokctl delete cluster: %w\n%s", err, out))
		}
	}
	procs = append(procs, componentProcesses(c.clusterDir())...)
	if err := killAll(ctx, c.clusterDir(), procs); err != nil {
		errs = append(errs, err)
	}

	remove := []string{c.WorkDir}
	if !c.ownsWorkDir {
		remove = []string{c.clusterDir(), c.configPath(), c.auditPolicyPath(), c.egressSelectorPath(), c.routerSocketPath()}
	}
	for _, path := range remove {
		if err := os.RemoveAll(path); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// AuditLog is the path of the API server's audit log (Options.AuditPolicy),
// one JSON audit.k8s.io/v1 Event a line.
func (c *Cluster) AuditLog() string { return filepath.Join(c.clusterDir(), "logs", auditLogName) }

// auditLogName is the file kwokctl has the API server write its audit log to.
const auditLogName = "audit.log"

// componentLogs are the components' log files: the audit log is not one.
func (c *Cluster) componentLogs() []string {
	files, _ := filepath.Glob(filepath.Join(c.clusterDir(), "logs", "*.log"))
	return slices.DeleteFunc(files, func(f string) bool { return filepath.Base(f) == auditLogName })
}

// Logs returns the tail of each component log, for failure messages.
func (c *Cluster) Logs() string {
	files := c.componentLogs()
	sort.Strings(files)
	if len(files) == 0 {
		return fmt.Sprintf("(no component logs in %s)\n", filepath.Join(c.clusterDir(), "logs"))
	}
	var b strings.Builder
	for _, f := range files {
		fmt.Fprintf(&b, "==> %s (last %d lines) <==\n%s\n", filepath.Base(f), logTailLines, tail(f))
	}
	return b.String()
}

// ErrorLogs returns the last error lines (klog severity E) of each
// component log, for a failed package's output.
func (c *Cluster) ErrorLogs() string {
	files := c.componentLogs()
	sort.Strings(files)
	var b strings.Builder
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		var errs []string
		for line := range strings.SplitSeq(string(data), "\n") {
			if klogError.MatchString(line) {
				errs = append(errs, line)
			}
		}
		if len(errs) == 0 {
			continue
		}
		fmt.Fprintf(&b, "==> %s: last %d of %d error lines <==\n%s\n", filepath.Base(f),
			min(len(errs), logTailLines), len(errs), strings.Join(errs[max(len(errs)-logTailLines, 0):], "\n"))
	}
	return b.String()
}

// klogError matches a klog line of severity E ("E1202 00:29:11.222065 ...").
var klogError = regexp.MustCompile(`^E\d{4} \d`)

func tail(path string) string {
	f, err := os.Open(path)
	if err != nil {
		return err.Error()
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil {
		return err.Error()
	}
	offset := max(info.Size()-logTailBytes, 0)
	buf := make([]byte, info.Size()-offset)
	if _, err := f.ReadAt(buf, offset); err != nil {
		return err.Error()
	}
	lines := strings.Split(strings.TrimRight(string(buf), "\n"), "\n")
	if offset > 0 && len(lines) > 1 {
		lines = lines[1:] // the first line is cut
	}
	if len(lines) > logTailLines {
		lines = lines[len(lines)-logTailLines:]
	}
	return strings.Join(lines, "\n")
}

func (c *Cluster) clusterDir() string { return filepath.Join(c.WorkDir, "clusters", c.Name) }

// configPath is the kwokctl configuration the cluster is created with.
func (c *Cluster) configPath() string { return filepath.Join(c.WorkDir, c.Name+".kwokctl.yaml") }

// auditPolicyPath is the audit policy (Options.AuditPolicy) kwokctl copies.
func (c *Cluster) auditPolicyPath() string {
	return filepath.Join(c.WorkDir, c.Name+".audit-policy.yaml")
}

// resolveToolsDir finds the binaries: the explicit directory, else
// $ISTIO_OPERATOR_TOOLS, else bin/tools in the repository holding the
// working directory.
// Tool is the path of a binary `make tools` builds (prometheus, promtool,
// pilot-discovery, kubectl, ...), or an error naming the command that
// builds it.
func Tool(name string) (string, error) {
	dir, err := resolveToolsDir("")
	if err != nil {
		return "", err
	}
	path := filepath.Join(dir, name)
	if info, err := os.Stat(path); err != nil || info.IsDir() || info.Mode()&0o111 == 0 {
		return "", fmt.Errorf("%s is not built in %s; run `make tools`", name, dir)
	}
	return path, nil
}

func resolveToolsDir(dir string) (string, error) {
	if dir == "" {
		dir = os.Getenv(ToolsEnv)
	}
	if dir == "" {
		root, err := RepoRoot()
		if err != nil {
			return "", fmt.Errorf("finding the cluster binaries: %w (set %s to their directory)", err, ToolsEnv)
		}
		dir = filepath.Join(root, "bin", "tools")
	}
	return filepath.Abs(dir)
}

func checkTools(dir string) error {
	var missing []string
	for _, t := range requiredTools {
		info, err := os.Stat(filepath.Join(dir, t))
		if err != nil || info.IsDir() || info.Mode()&0o111 == 0 {
			missing = append(missing, t)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("cluster binaries missing from %s: %s; run `make tools` to build them", dir, strings.Join(missing, ", "))
	}
	return nil
}

// RepoRoot returns the directory holding the operator's go.mod, found by
// walking up from the working directory.
func RepoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if raw, err := os.ReadFile(filepath.Join(dir, "go.mod")); err == nil && declaresModule(raw, modulePath) {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("no go.mod of module %s above the working directory", modulePath)
		}
		dir = parent
	}
}

func declaresModule(gomod []byte, module string) bool {
	for _, line := range strings.Split(string(gomod), "\n") {
		fields := strings.Fields(line)
		if len(fields) >= 2 && fields[0] == "module" && strings.Trim(fields[1], `"`) == module {
			return true
		}
	}
	return false
}

func randomSuffix() string {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
