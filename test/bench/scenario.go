package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apiextensionsclient "k8s.io/apiextensions-apiserver/pkg/client/clientset/clientset"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/yaml"

	operatorv1alpha2 "github.com/meshkeeper/istio-operator/pkg/apis/operator/v1alpha2"
	"github.com/meshkeeper/istio-operator/pkg/generated/clientset/versioned"
	"github.com/meshkeeper/istio-operator/pkg/istioclient"
	"github.com/meshkeeper/istio-operator/pkg/rollout"
	"github.com/meshkeeper/istio-operator/test/cluster"
	"github.com/meshkeeper/istio-operator/test/operatorproc"
	"github.com/meshkeeper/istio-operator/test/workload"
)

const (
	istioNamespace = "kyma-system"
	istioName      = "default"

	// The harness's own client: the cluster has no API limits, and a
	// thousand Deployments should not queue behind a client-side limiter.
	harnessQPS   = 2000
	harnessBurst = 4000

	// conditionTimeout bounds waits for a status condition once the work it
	// reports on is done.
	conditionTimeout = 2 * time.Minute
	// settleTimeout bounds the wait for the cluster to settle before a wave.
	settleTimeout = 3 * time.Minute
)

// scenario is one benchmark run: the cluster, the operator and what it has
// measured so far.
type scenario struct {
	opts   options
	root   string
	res    *results
	cs     kubernetes.Interface
	istios versioned.Interface
	op     *operatorproc.Process
	wl     *workloads
	floor  *watchFloor
	churn  *churn
	// pacingFlags is false for an operator built before the pacing flags.
	pacingFlags bool
}

// run measures every size, each on a fresh cluster, and writes the
// report, also the partial one of a run that failed after Istio was
// installed.
func run(ctx context.Context, o options) (err error) {
	root, err := cluster.RepoRoot()
	if err != nil {
		return err
	}
	rep := newReport(o, root)
	defer func() {
		if werr := rep.write(o.OutDir, root); werr != nil {
			err = errors.Join(err, werr)
		}
	}()
	if o.Binary == "" {
		o.Binary = filepath.Join(root, "bin", "istio-operator")
		progress("building %s", o.Binary)
		if err := operatorproc.Build(ctx, root, o.Binary); err != nil {
			return err
		}
	}
	flags, err := operatorproc.SupportedFlags(ctx, o.Binary)
	if err != nil {
		return err
	}
	o.pacingFlags = flags["proxy-restarts-per-second"] && flags["proxy-max-concurrent-rollouts"]
	if !o.pacingFlags {
		rep.note("The operator binary has no --proxy-restarts-per-second/--proxy-max-concurrent-rollouts flags; it ran with its built-in pacing defaults.")
	}
	for _, n := range o.Sizes {
		so := o
		so.Workloads = n
		if so.WaveTimeout == 0 {
			so.WaveTimeout = waveTimeoutFor(n, o.Pods)
		}
		res := newResults(n)
		progress("=== %d Deployments x %d pods", n, o.Pods)
		err := runSize(ctx, so, root, res)
		if res.InstallSeconds > 0 {
			rep.Sizes = append(rep.Sizes, res)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// runSize executes the scenario at one size into res. Everything it
// started is stopped before it returns, also on error or interrupt.
func runSize(ctx context.Context, o options, root string, res *results) (err error) {
	s := &scenario{opts: o, root: root, res: res, pacingFlags: o.pacingFlags}

	// cleanups run last-in first-out: the operator stops before the
	// cluster (and istiod with it).
	var cleanups []func() error
	defer func() {
		for i := len(cleanups) - 1; i >= 0; i-- {
			if cerr := cleanups[i](); cerr != nil {
				err = errors.Join(err, cerr)
			}
		}
		progress("cleaned up")
	}()

	progress("starting a cluster with %d kwok nodes", o.Nodes)
	c, err := cluster.Start(ctx, cluster.Options{
		Nodes:            o.Nodes,
		DisableQPSLimits: true,
		QPS:              harnessQPS,
		Burst:            harnessBurst,
	})
	if err != nil {
		return err
	}
	cleanups = append(cleanups, func() error {
		progress("stopping cluster %s", c.Name)
		return c.Stop()
	})
	s.cs = c.Clientset()
	if s.istios, err = versioned.NewForConfig(c.Config); err != nil {
		return err
	}
	progress("cluster %s ready", c.Name)

	// Before anything else touches the cluster: the baseline install.
	progress("installing Istio with Istio's library alone (the baseline)")
	took, err := libraryInstall(ctx, c.Config)
	if err != nil {
		return err
	}
	s.res.LibraryInstallSeconds = took.Seconds()
	progress("Istio's library installed Istio in %.1fs; removed it again", took.Seconds())

	// The real istiod behind the installed one injects the workloads' pods
	// (test/istiod): it runs with the cluster, on the same machine.

	if err := installCRD(ctx, c); err != nil {
		return err
	}
	if _, err := s.cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: istioNamespace}}, metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("creating namespace %s: %w", istioNamespace, err)
	}

	args := []string{
		"--kubeconfig", c.Kubeconfig,
		"--namespace", istioNamespace,
		"--workers", fmt.Sprint(o.Workers),
		"--kube-api-qps", fmt.Sprint(o.APIQPS),
		"--kube-api-burst", fmt.Sprint(o.APIBurst),
	}
	if o.CPUProfile > 0 {
		args = append(args, "--enable-profiling")
	}
	if o.Canary {
		if err := s.installPrevious(ctx, c); err != nil {
			return err
		}
	}
	if s.pacingFlags {
		// Unpaced unless the resource says otherwise: the paced wave sets its
		// rate in the resource.
		args = append(args, "--proxy-restarts-per-second=0", "--proxy-max-concurrent-rollouts=0")
	}
	logPath := filepath.Join(root, ".cache", "bench", "operator.log")
	progress("starting the operator (log: %s)", logPath)
	if s.op, err = operatorproc.Start(o.Binary, logPath, args, o.operatorEnv()); err != nil {
		return err
	}
	cleanups = append(cleanups, func() error {
		progress("stopping the operator")
		return s.op.Stop(30 * time.Second)
	})
	s.res.OperatorLog = logPath
	if err := s.op.WaitReady(ctx, 2*time.Minute); err != nil {
		return err
	}

	if !o.Canary {
		if err := s.install(ctx); err != nil {
			return err
		}
	}
	// From here on there is something to report, also when a later step
	// fails.
	defer func() {
		if err != nil {
			s.res.note("The run failed: " + err.Error())
		}
	}()
	if !o.Canary {
		if err := s.gatewayChange(ctx); err != nil {
			return err
		}
	}

	s.wl = newWorkloads(s.cs, o.Workloads, o.Pods, o.Namespaces)
	// The informers stop before the cluster does, or they would log its
	// disappearance.
	informerCtx, stopInformers := context.WithCancel(ctx)
	cleanups = append(cleanups, func() error {
		stopInformers()
		s.wl.factory.Shutdown()
		return nil
	})
	if err := s.wl.startInformers(informerCtx); err != nil {
		return err
	}
	if o.BackgroundPods > 0 {
		if s.res.Background, err = createBackground(ctx, s.cs, o, backgroundTimeout(o), s.op.Alive); err != nil {
			return err
		}
	}
	if err := s.setupWorkloads(ctx); err != nil {
		return err
	}
	if o.Churn > 0 {
		progress("churn: %g pods created and %g deleted per second, each living %s, in namespace %s", o.Churn, o.Churn, o.ChurnLifetime, churnNamespace)
		if s.churn, err = startChurn(ctx, s.cs, o.Churn, o.ChurnLifetime); err != nil {
			return err
		}
		// Stopped before the operator and the cluster, also on error.
		cleanups = append(cleanups, func() error {
			s.res.Churn = s.churn.stop()
			return nil
		})
	}
	converged := o.Canary // the canary's own resource is created by its wave
	if !o.Canary {
		if converged, err = s.waitSteady(ctx); err != nil {
			return err
		}
	}
	if err := s.snapshot(ctx, &s.res.Baseline); err != nil {
		return err
	}
	progress("starting the watch floor: bare informers of the kinds the operator follows")
	if s.floor, err = startWatchFloor(ctx, c.Kubeconfig, o.operatorEnv()); err != nil {
		return err
	}
	cleanups = append(cleanups, s.floor.stop)

	if o.Canary {
		if s.res.Canary, err = s.wave(ctx, s.canaryWave()); err != nil {
			return err
		}
		s.res.InstallSeconds = s.res.Canary.ConditionTrueSeconds
	}
	if converged && !o.Canary {
		unpaced := fmt.Sprintf(`{"spec":{"components":{"proxy":{"k8s":{"resources":{"requests":{"cpu":%q}}}}}}}`, o.UnpacedCPU)
		if s.res.Unpaced, err = s.wave(ctx, s.cpuWave("unpaced", []byte(unpaced), o.UnpacedCPU, 0)); err != nil {
			return err
		}
	}
	if converged && !o.Canary && s.res.Unpaced.Failure == "" {
		rate := resource.MustParse(o.PacedRate)
		paced := fmt.Sprintf(`{"spec":{"proxyRestart":{"restartsPerSecond":%q},"components":{"proxy":{"k8s":{"resources":{"requests":{"cpu":%q}}}}}}}`,
			o.PacedRate, o.PacedCPU)
		if s.res.Paced, err = s.wave(ctx, s.cpuWave("paced", []byte(paced), o.PacedCPU, rate.AsApproximateFloat64())); err != nil {
			return err
		}
	}
	if err := s.idle(ctx); err != nil {
		return err
	}
	if s.churn != nil {
		s.res.Churn = s.churn.stop()
	}
	final, err := s.op.Scrape(ctx)
	if err != nil {
		return err
	}
	s.res.Reconcile = reconcileQuantiles(final, nil)
	return nil
}

// installCRD creates the operator's CRD from deploy/crds and waits until the
// API server serves it (cluster.InstallIstioCRD does the same for tests).
func installCRD(ctx context.Context, c *cluster.Cluster) error {
	root, err := cluster.RepoRoot()
	if err != nil {
		return err
	}
	raw, err := os.ReadFile(filepath.Join(root, cluster.IstioCRDFile))
	if err != nil {
		return fmt.Errorf("reading the CRD: %w", err)
	}
	crd := &apiextensionsv1.CustomResourceDefinition{}
	if err := yaml.UnmarshalStrict(raw, crd); err != nil {
		return fmt.Errorf("decoding %s: %w", cluster.IstioCRDFile, err)
	}
	client, err := apiextensionsclient.NewForConfig(c.Config)
	if err != nil {
		return err
	}
	crds := client.ApiextensionsV1().CustomResourceDefinitions()
	if _, err := crds.Create(ctx, crd, metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("creating CRD %s: %w", crd.Name, err)
	}
	path := fmt.Sprintf("/apis/%s/%s/%s", crd.Spec.Group, crd.Spec.Versions[0].Name, crd.Spec.Names.Plural)
	// Established can precede the first successful request by a moment, so
	// wait for a request to succeed.
	return poll(ctx, 30*time.Second, 100*time.Millisecond, "the API server to serve "+path, func(ctx context.Context) (bool, error) {
		return c.Clientset().Discovery().RESTClient().Get().AbsPath(path).Do(ctx).Error() == nil, nil
	})
}

// install creates the Istio resource and times it to Ready=True.
func (s *scenario) install(ctx context.Context) error {
	progress("creating Istio %s/%s", istioNamespace, istioName)
	start := time.Now()
	cr := &operatorv1alpha2.Istio{ObjectMeta: metav1.ObjectMeta{Name: istioName, Namespace: istioNamespace}}
	created, err := s.istios.OperatorV1alpha2().Istios(istioNamespace).Create(ctx, cr, metav1.CreateOptions{})
	if err != nil {
		return fmt.Errorf("creating the Istio resource: %w", err)
	}
	if _, err := s.waitCondition(ctx, operatorv1alpha2.ConditionReady, created.Generation, s.opts.InstallTimeout); err != nil {
		return fmt.Errorf("installing Istio: %w", err)
	}
	s.res.InstallSeconds = time.Since(start).Seconds()
	progress("Istio installed: Ready after %.1fs", s.res.InstallSeconds)
	return nil
}

// gatewayChange changes spec.config.numTrustedProxies, which only the
// ingress gateway's pods read, and measures until the gateway has rolled
// and IngressGatewayReady is True again; then it checks that the gateway
// rolled exactly once.
func (s *scenario) gatewayChange(ctx context.Context) error {
	progress("gateway change: numTrustedProxies to %s", s.opts.TrustedProxies)
	gateways := s.cs.AppsV1().Deployments(istioclient.Namespace)
	before, err := gateways.Get(ctx, istioclient.IngressGatewayName, metav1.GetOptions{})
	if err != nil {
		return fmt.Errorf("reading the ingress gateway: %w", err)
	}
	start := time.Now()
	patch := fmt.Sprintf(`{"spec":{"config":{"numTrustedProxies":%s}}}`, s.opts.TrustedProxies)
	cr, err := s.istios.OperatorV1alpha2().Istios(istioNamespace).Patch(ctx, istioName, types.MergePatchType, []byte(patch), metav1.PatchOptions{})
	if err != nil {
		return fmt.Errorf("changing the Istio resource: %w", err)
	}
	g := &gatewayResult{TrustedProxies: s.opts.TrustedProxies}
	s.res.GatewayChange = g
	var last *appsv1.Deployment
	err = poll(ctx, s.opts.WaveTimeout, 100*time.Millisecond, "the ingress gateway to roll out", func(ctx context.Context) (bool, error) {
		if err := s.op.Alive(); err != nil {
			return false, err
		}
		d, err := gateways.Get(ctx, istioclient.IngressGatewayName, metav1.GetOptions{})
		if err != nil {
			return false, nil // retried: a busy API server may time out
		}
		last = d
		return revision(d) > revision(before) && rollout.OfDeployment(d).Done, nil
	})
	if err != nil {
		g.Failure = err.Error()
		return nil
	}
	g.RolledSeconds = time.Since(start).Seconds()
	if _, err := s.waitCondition(ctx, operatorv1alpha2.ConditionIngressGatewayReady, cr.Generation, conditionTimeout); err != nil {
		g.Failure = err.Error()
		return nil
	}
	g.ConditionTrueSeconds = time.Since(start).Seconds()
	if err := sleep(ctx, s.opts.Settle); err != nil {
		return err
	}
	after, err := gateways.Get(ctx, istioclient.IngressGatewayName, metav1.GetOptions{})
	if err != nil {
		return err
	}
	// The Deployment controller counts pod templates in its revision; the
	// generation also counts the autoscaler's replica changes.
	g.Rollouts = int(revision(after) - revision(before))
	progress("gateway change: rolled after %.1fs, IngressGatewayReady=True after %.1fs, %d rollout(s) (revision %d -> %d)",
		g.RolledSeconds, g.ConditionTrueSeconds, g.Rollouts, revision(before), revision(last))
	return nil
}

// revision is the Deployment controller's count of the pod templates a
// Deployment has had; 0 before it has seen the Deployment.
func revision(d *appsv1.Deployment) int64 {
	n, _ := strconv.ParseInt(d.Annotations["deployment.kubernetes.io/revision"], 10, 64)
	return n
}

// setupWorkloads creates the namespaces and Deployments and waits until
// every pod runs with a sidecar.
func (s *scenario) setupWorkloads(ctx context.Context) error {
	o := s.opts
	start := time.Now()
	progress("creating %d namespaces", o.Namespaces)
	if err := s.wl.createNamespaces(ctx, time.Minute); err != nil {
		return err
	}
	progress("creating %d Deployments of %d pods", o.Workloads, o.Pods)
	if err := s.wl.createDeployments(ctx); err != nil {
		return err
	}
	progress("created the Deployments in %.1fs; waiting for %d pods", time.Since(start).Seconds(), o.Workloads*o.Pods)
	if _, err := s.wl.waitPods(ctx, "every pod running with a sidecar", "", o.SetupTimeout-time.Since(start), s.op.Alive); err != nil {
		return err
	}
	s.res.Setup.Seconds = time.Since(start).Seconds()
	s.res.Setup.setupStart = start
	progress("%d pods running with a sidecar after %.1fs", o.Workloads*o.Pods, s.res.Setup.Seconds)

	// A wave to the CPU request the sidecars already have would change
	// nothing and wait for restarts that never come.
	cpu, err := s.wl.proxyCPU()
	if err != nil {
		return err
	}
	s.res.Setup.ProxyCPU = cpu.String()
	if cpu.Cmp(resource.MustParse(o.UnpacedCPU)) == 0 {
		return fmt.Errorf("the installed sidecars already request %s CPU: choose another --unpaced-cpu", cpu.String())
	}
	return nil
}

// waitSettled waits until every Deployment in the cluster has its status
// caught up with its spec: observed, and every replica (as many as the
// HorizontalPodAutoscalers asked for) available. Creating the workloads
// leaves kube-controller-manager behind (istiod's second replica, the
// Deployments' status); a wave started then would measure the cluster
// catching up, and the operator rightly leaves alone a Deployment whose
// status says it is still rolling.
func (s *scenario) waitSettled(ctx context.Context) error {
	start := time.Now()
	var pending []string
	err := poll(ctx, settleTimeout, time.Second, "every Deployment's status caught up", func(ctx context.Context) (bool, error) {
		list, err := s.cs.AppsV1().Deployments("").List(ctx, metav1.ListOptions{ResourceVersion: "0"})
		if err != nil {
			return false, nil // retried: a busy API server may time out
		}
		pending = pending[:0]
		for _, d := range list.Items {
			want := ptr.Deref(d.Spec.Replicas, 1)
			if st := d.Status; st.ObservedGeneration < d.Generation || st.AvailableReplicas < want || st.Replicas != want {
				pending = append(pending, fmt.Sprintf("%s/%s %d/%d", d.Namespace, d.Name, st.AvailableReplicas, want))
			}
		}
		return len(pending) == 0, nil
	})
	if err != nil {
		return fmt.Errorf("%w (still pending: %d, among them %v)", err, len(pending), pending[:min(len(pending), 5)])
	}
	if d := time.Since(start); d > time.Second {
		progress("every Deployment's status caught up after %.1fs", d.Seconds())
	}
	return nil
}

// waitSteady waits until the operator reports that every workload runs the
// desired proxy, which for fresh workloads needs no restart. It returns
// false, with a note in the results, when the operator does not get there:
// without that there is no wave to measure.
func (s *scenario) waitSteady(ctx context.Context) (bool, error) {
	progress("waiting for %s=True", operatorv1alpha2.ConditionProxySidecarRestartSucceeded)
	cr, err := s.istios.OperatorV1alpha2().Istios(istioNamespace).Get(ctx, istioName, metav1.GetOptions{})
	if err != nil {
		return false, err
	}
	_, err = s.waitCondition(ctx, operatorv1alpha2.ConditionProxySidecarRestartSucceeded, cr.Generation, conditionTimeout)
	var timeout *timeoutError
	if errors.As(err, &timeout) {
		cur, gerr := s.istios.OperatorV1alpha2().Istios(istioNamespace).Get(ctx, istioName, metav1.GetOptions{})
		if gerr != nil {
			return false, gerr
		}
		if c := meta.FindStatusCondition(cur.Status.Conditions, operatorv1alpha2.ConditionProxySidecarRestartSucceeded); c == nil {
			s.res.note("The operator never reported " + operatorv1alpha2.ConditionProxySidecarRestartSucceeded +
				": it runs no proxysidecar controller (cmd/istio-operator/controllers.go), so no restart wave was measured.")
		} else {
			s.res.note(fmt.Sprintf("%s did not become True for the fresh workloads within %s (status %s, reason %s: %s), so no restart wave was measured.",
				c.Type, conditionTimeout, c.Status, c.Reason, c.Message))
		}
		progress("WARNING: %s; skipping the restart waves", err)
		return false, nil
	}
	if err != nil {
		return false, err
	}
	// Fresh workloads run the desired proxy already: any restart is waste.
	s.res.Setup.FreshRestarts = workload.Summarize(s.wl.restartsSince(s.res.Setup.setupStart)).Patched
	return true, nil
}

// waitCondition waits until the condition is True and observes at least
// generation gen: right after a change the condition still reports the old
// generation's state. It reads the resource with the harness's own client,
// so its requests do not count as the operator's.
func (s *scenario) waitCondition(ctx context.Context, typ string, gen int64, timeout time.Duration) (*metav1.Condition, error) {
	var last, found *metav1.Condition
	var lastErr error
	err := poll(ctx, timeout, 100*time.Millisecond, fmt.Sprintf("%s=True at generation %d", typ, gen), func(ctx context.Context) (bool, error) {
		if err := s.op.Alive(); err != nil {
			return false, err
		}
		// A failed read is retried: an API server busy with a thousand
		// rollouts may time out a request now and then.
		cr, err := s.istios.OperatorV1alpha2().Istios(istioNamespace).Get(ctx, istioName, metav1.GetOptions{})
		if err != nil {
			lastErr = err
			return false, nil
		}
		last = meta.FindStatusCondition(cr.Status.Conditions, typ)
		if last != nil && last.Status == metav1.ConditionTrue && last.ObservedGeneration >= gen {
			found = last
			return true, nil
		}
		return false, nil
	})
	var timedOut *timeoutError
	if errors.As(err, &timedOut) {
		switch {
		case last != nil:
			timedOut.what += fmt.Sprintf(" (last: %s, reason %s, generation %d: %s)", last.Status, last.Reason, last.ObservedGeneration, last.Message)
		case lastErr != nil:
			timedOut.what += fmt.Sprintf(" (last error: %v)", lastErr)
		}
	}
	return found, err
}

// snapshot records the operator's cumulative counters and current memory.
func (s *scenario) snapshot(ctx context.Context, into *snapshot) error {
	m, err := s.op.Scrape(ctx)
	if err != nil {
		return err
	}
	u, err := operatorproc.ReadUsage(s.op.PID())
	if err != nil {
		return err
	}
	*into = snapshot{
		CPUSeconds:     u.CPUSeconds,
		RSSBytes:       u.RSSBytes,
		PeakRSSBytes:   u.PeakRSSBytes,
		HeapInuseBytes: int64(m.Sum("go_memstats_heap_inuse_bytes", nil)),
		Requests:       m.Requests(),
		metrics:        m,
	}
	return nil
}

// wave changes the resource with patch and measures the restart wave that
// follows: when each Deployment is patched, when every pod runs the new
// proxy, when the operator reports success, and what it cost. An operator
// that misses a wait is reported in the result's Failure, not as an error.
// waveSpec is one wave: the change that starts it, and what ends it.
type waveSpec struct {
	name string
	// proxyCPU is the sidecar CPU request the wave changes to, for the
	// report ("" when the wave changes the proxy's version instead).
	proxyCPU string
	// rate is the configured restartsPerSecond; 0 is unpaced.
	rate float64
	// change starts the wave and returns the resource's new generation.
	change func(ctx context.Context) (int64, error)
	// current counts the pods the wave has made current; what says what
	// that means.
	current func() (workload.PodState, error)
	what    string
	// condition is the condition that is True at the new generation once
	// the wave is done.
	condition string
}

// cpuWave changes the sidecars' CPU request with a merge patch.
func (s *scenario) cpuWave(name string, patch []byte, cpu string, rate float64) waveSpec {
	return waveSpec{
		name: name, proxyCPU: cpu, rate: rate,
		change: func(ctx context.Context) (int64, error) {
			cr, err := s.istios.OperatorV1alpha2().Istios(istioNamespace).Patch(ctx, istioName, types.MergePatchType, patch, metav1.PatchOptions{})
			if err != nil {
				return 0, fmt.Errorf("changing the Istio resource: %w", err)
			}
			return cr.Generation, nil
		},
		current:   func() (workload.PodState, error) { return s.wl.PodsAt(cpu) },
		what:      "every pod running the proxy with CPU request " + cpu + " and no old pod left",
		condition: operatorv1alpha2.ConditionProxySidecarRestartSucceeded,
	}
}

func (s *scenario) wave(ctx context.Context, spec waveSpec) (*waveResult, error) {
	name, cpu, rate := spec.name, spec.proxyCPU, spec.rate
	if err := s.waitSettled(ctx); err != nil {
		return nil, err
	}
	progress("%s wave: %s", name, spec.what)
	var before snapshot
	if err := s.snapshot(ctx, &before); err != nil {
		return nil, err
	}
	w := &waveResult{Name: name, Condition: spec.condition, ProxyCPU: cpu, ConfiguredRate: rate, Workloads: len(s.wl.names)}
	floorBefore, err := s.floor.cpuSeconds()
	if err != nil {
		return nil, err
	}
	if err := operatorproc.ResetPeakRSS(s.op.PID()); err != nil {
		s.res.note("Could not reset the operator's peak RSS (" + err.Error() + "): peak RSS figures are since the process started.")
	}
	heap := &heapSampler{}
	stopSampling := heap.start(ctx, s.op)
	var churnBefore churnCounts
	if s.churn != nil {
		churnBefore = s.churn.counts()
	}

	if rate == 0 && s.opts.CPUProfile > 0 {
		path := filepath.Join(s.root, ".cache", "bench", fmt.Sprintf("%d-%s-cpu.pprof", s.opts.Workloads, name))
		go func() {
			if err := s.op.CPUProfile(ctx, s.opts.CPUProfile, path); err != nil {
				progress("WARNING: %v", err)
				return
			}
			progress("%s wave: the operator's CPU profile of its first %s is in %s", name, s.opts.CPUProfile, path)
		}()
	}
	start := time.Now()
	generation, err := spec.change(ctx)
	if err != nil {
		stopSampling()
		return nil, err
	}

	missed := func(err error) (*waveResult, error) {
		stopSampling()
		var timeout *timeoutError
		if !errors.As(err, &timeout) {
			return nil, err
		}
		w.Failure = err.Error()
		progress("WARNING: %s wave: %s", name, err)
		w.fill(s.wl.restartsSince(start), start)
		return w, nil
	}
	if err := s.wl.waitRestarts(ctx, start, s.opts.WaveTimeout, s.op.Alive); err != nil {
		return missed(err)
	}
	var patched snapshot
	if err := s.snapshot(ctx, &patched); err != nil {
		stopSampling()
		return nil, err
	}
	w.PatchPhaseRequests = patched.Requests.Minus(before.Requests).Total
	w.PatchPhaseCPUSeconds = patched.CPUSeconds - before.CPUSeconds
	if floor, err := s.floor.cpuSeconds(); err == nil {
		w.FloorPatchPhaseCPUSeconds = floor - floorBefore
	}
	sum := workload.Summarize(s.wl.restartsSince(start))
	progress("%s wave: every Deployment patched %.1fs after the change (first after %.1fs)", name,
		sum.Last.Sub(start).Seconds(), sum.First.Sub(start).Seconds())
	if rate == 0 && s.opts.CPUProfile > 0 {
		// The pods of a whole wave are in the caches now: near the peak.
		path := filepath.Join(s.root, ".cache", "bench", fmt.Sprintf("%d-%s-heap.pprof", s.opts.Workloads, name))
		if err := s.op.HeapProfile(ctx, path); err != nil {
			progress("WARNING: %v", err)
		} else {
			progress("%s wave: the operator's heap profile after the last patch is in %s", name, path)
		}
	}
	allCurrent, err := s.wl.waitCurrent(ctx, spec.what, spec.current, s.opts.WaveTimeout-time.Since(start), s.op.Alive)
	if !allCurrent.IsZero() {
		w.NewPodsReadySeconds = allCurrent.Sub(start).Seconds()
	}
	if err != nil {
		return missed(err)
	}
	w.RolledOutSeconds = time.Since(start).Seconds()
	progress("%s wave: every new pod Ready after %.1fs, old pods gone after %.1fs", name, w.NewPodsReadySeconds, w.RolledOutSeconds)
	if _, err := s.waitCondition(ctx, spec.condition, generation, conditionTimeout); err != nil {
		return missed(err)
	}
	w.ConditionTrueSeconds = time.Since(start).Seconds()
	progress("%s wave: %s=True after %.1fs; watching %s for late patches", name,
		spec.condition, w.ConditionTrueSeconds, s.opts.Settle)
	if err := sleep(ctx, s.opts.Settle); err != nil {
		stopSampling()
		return nil, err
	}
	stopSampling()

	var after snapshot
	if err := s.snapshot(ctx, &after); err != nil {
		return nil, err
	}
	w.fill(s.wl.restartsSince(start), start)
	w.Requests = after.Requests.Minus(before.Requests)
	w.RequestsPerWorkload = w.Requests.Total / float64(w.Workloads)
	w.CPUSeconds = after.CPUSeconds - before.CPUSeconds
	floorAfter, err := s.floor.cpuSeconds()
	if err != nil {
		return nil, err
	}
	w.FloorCPUSeconds = floorAfter - floorBefore
	w.MeasuredSeconds = time.Since(start).Seconds()
	if s.churn != nil {
		c := s.churn.counts().since(churnBefore)
		w.Churn = &c
	}
	w.PeakRSSBytes = after.PeakRSSBytes
	w.PeakHeapInuseBytes = max(heap.peak(), after.HeapInuseBytes)
	w.PeakAnonRSSBytes, w.PeakFileRSSBytes = heap.peakRSS()
	w.Reconcile = reconcileQuantiles(after.metrics, before.metrics)
	progress("%s wave: %d Deployments patched (%d more than once), %.0f API requests (%.2f per workload), %.2f CPU s, peak RSS %.0f MiB",
		name, w.Patched, w.PatchedMoreThanOnce, w.Requests.Total, w.RequestsPerWorkload, w.CPUSeconds, mib(w.PeakRSSBytes))
	return w, nil
}

// idle measures the operator while nothing it manages changes; the churn
// of pods outside the mesh, if any, goes on, and the watch floor receives
// it over the same interval.
func (s *scenario) idle(ctx context.Context) error {
	if s.opts.Idle == 0 {
		return nil
	}
	progress("idle: measuring for %s", s.opts.Idle)
	var before, after snapshot
	if err := s.snapshot(ctx, &before); err != nil {
		return err
	}
	resetPeak := operatorproc.ResetPeakRSS(s.op.PID())
	var floorBefore float64
	if s.floor != nil {
		var err error
		if floorBefore, err = s.floor.cpuSeconds(); err != nil {
			return err
		}
	}
	var churnBefore churnCounts
	if s.churn != nil {
		churnBefore = s.churn.counts()
	}
	start := time.Now()
	if s.opts.CPUProfile > 0 {
		path := filepath.Join(s.root, ".cache", "bench", fmt.Sprintf("%d-idle-cpu.pprof", s.opts.Workloads))
		go func() {
			if err := s.op.CPUProfile(ctx, s.opts.Idle, path); err != nil {
				progress("WARNING: %v", err)
				return
			}
			progress("idle: the operator's CPU profile is in %s", path)
		}()
	}
	if err := sleep(ctx, s.opts.Idle); err != nil {
		return err
	}
	if err := s.op.Alive(); err != nil {
		return err
	}
	if err := s.snapshot(ctx, &after); err != nil {
		return err
	}
	elapsed := time.Since(start).Seconds()
	req := after.Requests.Minus(before.Requests)
	i := &idleResult{
		Seconds:    elapsed,
		Requests:   req,
		Writes:     req.Writes(),
		Lists:      req.ByVerb["list"],
		CPUSeconds: after.CPUSeconds - before.CPUSeconds,
		RSSBytes:   after.RSSBytes,
		Restarts:   len(s.wl.restartsSince(start)),
	}
	i.CPUSecondsPerMinute = 60 * i.CPUSeconds / elapsed
	if resetPeak == nil {
		i.PeakRSSBytes = after.PeakRSSBytes
	} else {
		s.res.note("Could not reset the operator's peak RSS before the idle phase (" + resetPeak.Error() + "): no idle peak RSS.")
	}
	if s.floor != nil {
		floorAfter, err := s.floor.cpuSeconds()
		if err != nil {
			return err
		}
		i.FloorCPUSeconds = floorAfter - floorBefore
		i.FloorCPUSecondsPerMinute = 60 * i.FloorCPUSeconds / elapsed
		if i.FloorCPUSeconds > 0 {
			i.FloorRatio = i.CPUSeconds / i.FloorCPUSeconds
		}
	}
	if s.churn != nil {
		c := s.churn.counts().since(churnBefore)
		i.Churn = &c
	}
	s.res.Idle = i
	progress("idle: %.0f requests (%.0f writes, %.0f lists), %.2f CPU s (%.3f/min), watch floor %.2f CPU s (%.3f/min), ratio %.3f, peak RSS %.0f MiB",
		req.Total, i.Writes, i.Lists, i.CPUSeconds, i.CPUSecondsPerMinute, i.FloorCPUSeconds, i.FloorCPUSecondsPerMinute, i.FloorRatio, mib(i.PeakRSSBytes))
	if i.Churn != nil {
		progress("idle: churn achieved %.1f creations/s, %.1f deletions/s (%d missed, %d errors)",
			i.Churn.CreatedPerSecond, i.Churn.DeletedPerSecond, i.Churn.Missed, i.Churn.CreateErrors+i.Churn.DeleteErrors)
	}
	return nil
}

// heapSampler keeps the largest heap the operator reported during a wave;
// the heap shrinks again after a wave, so one scrape at the end misses it.
// heapSampler records the peaks of the operator's heap in use and of its
// anonymous and file-backed resident memory.
type heapSampler struct {
	mu   sync.Mutex
	max  int64
	anon int64
	file int64
}

func (h *heapSampler) start(ctx context.Context, op *operatorproc.Process) (stop func()) {
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		// Every 2 s: each scrape costs the operator a little CPU.
		tick := time.NewTicker(2 * time.Second)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			if m, err := op.Scrape(ctx); err == nil {
				h.mu.Lock()
				h.max = max(h.max, int64(m.Sum("go_memstats_heap_inuse_bytes", nil)))
				h.mu.Unlock()
			}
			if u, err := operatorproc.ReadUsage(op.PID()); err == nil {
				h.mu.Lock()
				h.anon, h.file = max(h.anon, u.AnonRSSBytes), max(h.file, u.FileRSSBytes)
				h.mu.Unlock()
			}
		}
	}()
	return func() { cancel(); <-done }
}

func (h *heapSampler) peak() int64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.max
}

// peakRSS returns the peaks of anonymous and of file-backed resident memory.
func (h *heapSampler) peakRSS() (anon, file int64) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.anon, h.file
}

func sleep(ctx context.Context, d time.Duration) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(d):
		return nil
	}
}

func mib(b int64) float64 { return float64(b) / (1 << 20) }

// trimLines shortens a multi-line error for a table cell.
func trimLines(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i] + " ..."
	}
	return s
}
