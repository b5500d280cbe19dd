// Package istiod runs the real istiod (pilot-discovery, built from the pinned
// istio.io/istio module by `make tools`) as a host process behind a local kwok
// cluster. kwok simulates the istiod pod the operator installs but runs no
// container; the supervisor here stands the real process behind it: it runs
// while the istiod Deployment and its injector ConfigMap exist, takes its
// arguments and environment from that Deployment, reads its mesh
// configuration and injection templates from the ConfigMaps the operator
// installed (as the in-cluster istiod does when no files are mounted), and
// stops when the Deployment goes.
//
// The API server reaches it through the Router: its webhook configurations
// stay exactly as installed, pointing at Service istiod.istio-system:443.
package istiod

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
)

const (
	// Namespace is where the operator installs istiod.
	Namespace = "istio-system"
	// Name is the default revision's Deployment and Service.
	Name = "istiod"
	// InjectorConfigMap holds the injection templates; istiod disables
	// injection for good when it is missing at start, so the supervisor
	// waits for it.
	InjectorConfigMap = "istio-sidecar-injector"
	// container is the Deployment's istiod container.
	container = "discovery"

	// Service ports of istiod, as the chart declares them.
	PortWebhook    = 443
	PortGRPC       = 15010
	PortSecureGRPC = 15012
	PortMonitoring = 15014
)

// Options configure a Supervisor.
type Options struct {
	// Binary is the pilot-discovery executable.
	Binary string
	// Kubeconfig is an admin kubeconfig of the cluster.
	Kubeconfig string
	// Client reads the istiod Deployment and its ConfigMap.
	Client kubernetes.Interface
	// Router carries the API server's calls to istiod's Service.
	Router *Router
	// Dir is istiod's working directory (kept empty of the files a pod
	// would mount, so that it reads its configuration from the cluster).
	Dir string
	// Log receives istiod's output.
	Log io.Writer
	// Revision is the control plane revision to stand behind: its istiod is
	// Deployment and Service istiod-<revision>, its injection templates
	// ConfigMap istio-sidecar-injector-<revision>. Empty for the default
	// revision.
	Revision string
}

// Addresses are where a running istiod listens, all on 127.0.0.1.
type Addresses struct {
	// HTTP serves /ready and the /debug endpoints.
	HTTP string
	// Webhook serves injection and validation over TLS.
	Webhook string
	// GRPC serves plaintext xDS.
	GRPC string
	// SecureGRPC serves xDS over mTLS.
	SecureGRPC string
	// Monitoring serves /metrics.
	Monitoring string
	ctrlz      int
}

// Supervisor keeps the real istiod in step with the istiod Deployment.
type Supervisor struct {
	opts    Options
	trigger chan struct{}

	deployments cache.Store
	configMaps  cache.Store

	// name is the revision's Deployment and Service, injector its
	// injection templates' ConfigMap.
	name, injector string

	mu      sync.Mutex
	proc    *process
	started int
	ready   chan struct{} // closed while a started istiod answers /ready
}

type process struct {
	cmd   *exec.Cmd
	hash  string
	addrs Addresses
	done  chan struct{}
	err   error
}

// NewSupervisor checks the options; Run starts supervising.
func NewSupervisor(opts Options) (*Supervisor, error) {
	if opts.Binary == "" || opts.Kubeconfig == "" || opts.Client == nil || opts.Router == nil || opts.Dir == "" {
		return nil, errors.New("istiod: Binary, Kubeconfig, Client, Router and Dir are required")
	}
	if _, err := os.Stat(opts.Binary); err != nil {
		return nil, fmt.Errorf("istiod binary (built by make tools): %w", err)
	}
	if opts.Log == nil {
		opts.Log = io.Discard
	}
	if err := os.MkdirAll(opts.Dir, 0o755); err != nil {
		return nil, err
	}
	s := &Supervisor{opts: opts, trigger: make(chan struct{}, 1), ready: make(chan struct{}), name: Name, injector: InjectorConfigMap}
	if opts.Revision != "" && opts.Revision != "default" {
		s.name, s.injector = Name+"-"+opts.Revision, InjectorConfigMap+"-"+opts.Revision
	}
	return s, nil
}

// Run supervises until ctx ends, then stops istiod and returns.
func (s *Supervisor) Run(ctx context.Context) {
	notify := cache.ResourceEventHandlerFuncs{
		AddFunc:    func(any) { s.kick() },
		UpdateFunc: func(any, any) { s.kick() },
		DeleteFunc: func(any) { s.kick() },
	}
	byName := func(name string) func(*metav1.ListOptions) {
		return func(o *metav1.ListOptions) {
			o.FieldSelector = fields.OneTermEqualSelector("metadata.name", name).String()
		}
	}
	var deployInformer, cmInformer cache.Controller
	s.deployments, deployInformer = cache.NewInformerWithOptions(cache.InformerOptions{
		ListerWatcher: cache.NewFilteredListWatchFromClient(s.opts.Client.AppsV1().RESTClient(), "deployments", Namespace, byName(s.name)),
		ObjectType:    &appsv1.Deployment{},
		Handler:       notify,
	})
	s.configMaps, cmInformer = cache.NewInformerWithOptions(cache.InformerOptions{
		ListerWatcher: cache.NewFilteredListWatchFromClient(s.opts.Client.CoreV1().RESTClient(), "configmaps", Namespace, byName(s.injector)),
		ObjectType:    &corev1.ConfigMap{},
		Handler:       notify,
	})
	go deployInformer.RunWithContext(ctx)
	go cmInformer.RunWithContext(ctx)

	retry := time.NewTimer(time.Hour)
	retry.Stop()
	backoff := time.Second
	for {
		var exited <-chan struct{}
		s.mu.Lock()
		if s.proc != nil {
			exited = s.proc.done
		}
		s.mu.Unlock()
		select {
		case <-ctx.Done():
			s.stop()
			return
		case <-s.trigger:
		case <-exited:
			fmt.Fprintf(s.opts.Log, "istiod-supervisor: istiod exited: %v; starting it again in %s\n", s.exitErr(), backoff)
			s.stop()
			retry.Reset(backoff)
			backoff = min(2*backoff, 30*time.Second)
			continue
		case <-retry.C:
		}
		if deployInformer.HasSynced() && cmInformer.HasSynced() {
			if err := s.sync(ctx); err != nil {
				fmt.Fprintf(s.opts.Log, "istiod-supervisor: %v\n", err)
				retry.Reset(backoff)
				backoff = min(2*backoff, 30*time.Second)
			}
		}
	}
}

func (s *Supervisor) kick() {
	select {
	case s.trigger <- struct{}{}:
	default:
	}
}

func (s *Supervisor) exitErr() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.proc == nil {
		return nil
	}
	return s.proc.err
}

// sync starts, restarts or stops istiod to match the Deployment.
func (s *Supervisor) sync(ctx context.Context) error {
	d := s.deployment()
	_, hasInjector, _ := s.configMaps.GetByKey(Namespace + "/" + s.injector)
	if d == nil || d.DeletionTimestamp != nil || !hasInjector {
		s.stop()
		return nil
	}
	spec, err := containerOf(d)
	if err != nil {
		return err
	}
	hash := specHash(spec)
	s.mu.Lock()
	running := s.proc != nil && s.proc.hash == hash
	s.mu.Unlock()
	if running {
		return nil
	}
	s.stop()
	return s.start(ctx, spec, hash)
}

func (s *Supervisor) deployment() *appsv1.Deployment {
	obj, ok, _ := s.deployments.GetByKey(Namespace + "/" + s.name)
	if !ok {
		return nil
	}
	return obj.(*appsv1.Deployment)
}

func containerOf(d *appsv1.Deployment) (*corev1.Container, error) {
	for i := range d.Spec.Template.Spec.Containers {
		if c := &d.Spec.Template.Spec.Containers[i]; c.Name == container {
			return c, nil
		}
	}
	return nil, fmt.Errorf("deployment %s/%s has no %q container", d.Namespace, d.Name, container)
}

// specHash changes when the Deployment changes what istiod runs with, as a
// rollout would replace the pod.
func specHash(c *corev1.Container) string {
	h := sha256.New()
	for _, a := range c.Args {
		fmt.Fprintf(h, "arg %q\n", a)
	}
	for _, e := range c.Env {
		fmt.Fprintf(h, "env %q=%q %v\n", e.Name, e.Value, e.ValueFrom)
	}
	return hex.EncodeToString(h.Sum(nil))[:16]
}

func (s *Supervisor) start(ctx context.Context, c *corev1.Container, hash string) error {
	addrs, err := freeAddresses()
	if err != nil {
		return err
	}
	args := append([]string(nil), c.Args...)
	if len(args) == 0 || args[0] != "discovery" {
		args = append([]string{"discovery"}, args...)
	}
	// Later flags win: listen on loopback only, on this cluster's ports.
	args = append(args,
		"--kubeconfig="+s.opts.Kubeconfig,
		"--httpAddr="+addrs.HTTP,
		"--httpsAddr="+addrs.Webhook,
		"--grpcAddr="+addrs.GRPC,
		"--secureGRPCAddr="+addrs.SecureGRPC,
		"--monitoringAddr="+addrs.Monitoring,
		"--ctrlz_address=127.0.0.1",
		"--ctrlz_port="+strconv.Itoa(addrs.ctrlz),
		"--shutdownDuration=1s",
	)
	cmd := exec.Command(s.opts.Binary, args...)
	cmd.Dir = s.opts.Dir
	cmd.Env = append(environment(c), "KUBECONFIG="+s.opts.Kubeconfig, "HOME="+s.opts.Dir, "PATH="+os.Getenv("PATH"))
	cmd.Stdout, cmd.Stderr = s.opts.Log, s.opts.Log
	// The process must not outlive its supervisor, whatever ends it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
	fmt.Fprintf(s.opts.Log, "istiod-supervisor: starting %s %s\n", s.opts.Binary, strings.Join(args, " "))
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("starting istiod: %w", err)
	}
	p := &process{cmd: cmd, hash: hash, addrs: addrs, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	s.mu.Lock()
	s.proc = p
	s.started++
	s.mu.Unlock()

	s.route(addrs)
	go s.waitReady(ctx, p)
	return nil
}

func (s *Supervisor) route(a Addresses) {
	r := s.opts.Router
	r.Route(Namespace, s.name, PortWebhook, a.Webhook)
	r.Route(Namespace, s.name, PortGRPC, a.GRPC)
	r.Route(Namespace, s.name, PortSecureGRPC, a.SecureGRPC)
	r.Route(Namespace, s.name, PortMonitoring, a.Monitoring)
}

// waitReady closes the ready channel once istiod answers /ready.
func (s *Supervisor) waitReady(ctx context.Context, p *process) {
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-p.done:
			return
		case <-tick.C:
		}
		if probeReady(ctx, p.addrs.HTTP) {
			s.mu.Lock()
			if s.proc == p {
				close(s.ready)
			}
			s.mu.Unlock()
			return
		}
	}
}

// stop ends istiod, if it runs, and waits for it.
func (s *Supervisor) stop() {
	s.mu.Lock()
	p := s.proc
	s.proc = nil
	select {
	case <-s.ready:
		s.ready = make(chan struct{})
	default:
	}
	s.mu.Unlock()
	if p == nil {
		return
	}
	s.opts.Router.Unroute(Namespace, s.name)
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(15 * time.Second):
		_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
		<-p.done
	}
}

// Ready returns a channel closed while a started istiod serves.
func (s *Supervisor) Ready() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.ready
}

// Running returns the addresses of the running istiod.
func (s *Supervisor) Running() (Addresses, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.proc == nil {
		return Addresses{}, false
	}
	return s.proc.addrs, true
}

// Environ is the environment the running istiod process was started with,
// read from the kernel rather than from what the supervisor meant to pass:
// istiod reads its feature flags (compatibility mode among them) from it.
func (s *Supervisor) Environ() ([]string, error) {
	s.mu.Lock()
	p := s.proc
	s.mu.Unlock()
	if p == nil {
		return nil, errors.New("istiod is not running")
	}
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/environ", p.cmd.Process.Pid))
	if err != nil {
		return nil, err
	}
	return strings.Split(strings.TrimRight(string(raw), "\x00"), "\x00"), nil
}

// Starts counts the processes started so far.
func (s *Supervisor) Starts() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.started
}

// environment is the container's environment as the kubelet would resolve
// it for a pod on this host; references to resources (GOMAXPROCS from the CPU
// limit) and to other objects are left out.
func environment(c *corev1.Container) []string {
	var env []string
	for _, e := range c.Env {
		switch {
		case e.ValueFrom == nil:
			env = append(env, e.Name+"="+e.Value)
		case e.ValueFrom.FieldRef != nil:
			switch e.ValueFrom.FieldRef.FieldPath {
			case "metadata.name":
				env = append(env, e.Name+"="+Name+"-host")
			case "metadata.namespace":
				env = append(env, e.Name+"="+Namespace)
			case "spec.serviceAccountName":
				env = append(env, e.Name+"="+Name)
			case "status.podIP", "status.hostIP":
				env = append(env, e.Name+"=127.0.0.1")
			}
		}
	}
	return env
}

// freeAddresses picks a free loopback port for each listener. All are held
// open until every one is chosen, so none is picked twice.
func freeAddresses() (Addresses, error) {
	var lns []net.Listener
	defer func() {
		for _, ln := range lns {
			_ = ln.Close()
		}
	}()
	next := func() (string, error) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return "", err
		}
		lns = append(lns, ln)
		return ln.Addr().String(), nil
	}
	var a Addresses
	for _, p := range []*string{&a.HTTP, &a.Webhook, &a.GRPC, &a.SecureGRPC, &a.Monitoring} {
		addr, err := next()
		if err != nil {
			return a, err
		}
		*p = addr
	}
	ctrlz, err := next()
	if err != nil {
		return a, err
	}
	_, port, _ := net.SplitHostPort(ctrlz)
	a.ctrlz, _ = strconv.Atoi(port)
	return a, nil
}

// probeReady reports whether istiod's /ready answers 200.
func probeReady(ctx context.Context, addr string) bool {
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/ready", nil)
	if err != nil {
		return false
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return false
	}
	_ = resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

// WaitInjecting waits until a pod created in namespace would be injected: a
// dry-run creation comes back with istiod's sidecar.istio.io/status. The API
// server learns a new namespace's labels from its cache, so pods created in
// the first moments of a namespace can go without a sidecar.
func WaitInjecting(ctx context.Context, client kubernetes.Interface, namespace string) error {
	probe := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{GenerateName: "injection-probe-", Namespace: namespace},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "probe", Image: "registry.invalid/probe:0"}}},
	}
	var lastErr error
	err := wait.PollUntilContextCancel(ctx, 100*time.Millisecond, true, func(ctx context.Context) (bool, error) {
		// A fresh namespace may not have its default ServiceAccount yet.
		got, err := client.CoreV1().Pods(namespace).Create(ctx, probe, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
		if err != nil {
			lastErr = err
			return false, nil
		}
		_, injected := got.Annotations["sidecar.istio.io/status"]
		return injected, nil
	})
	if err != nil {
		if lastErr != nil {
			err = fmt.Errorf("%w (last probe: %v)", err, lastErr)
		}
		return fmt.Errorf("waiting for istiod to inject pods of namespace %s: %w", namespace, err)
	}
	return nil
}
