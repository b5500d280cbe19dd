package main

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"

	"github.com/meshkeeper/istio-operator/test/cluster"
)

// The big cluster: besides the meshed workloads, pods no mesh concerns,
// which the harness creates itself as bare pods bound to the kwok nodes
// (nodeName set: neither the scheduler nor a controller has to act), in
// namespaces without an injection label. Background pods are created once
// and stay; churn pods are created and deleted at a steady rate until the
// end of the run, in a namespace of their own.
const (
	// roleLabel marks the harness's bare pods: roleBackground or roleChurn.
	roleLabel      = "bench.meshkeeper.io/role"
	roleBackground = "background"
	roleChurn      = "churn"

	backgroundNamespacePrefix = "bench-bg"
	churnNamespace            = "bench-churn"
	// bareImage is never pulled: kwok runs no container.
	bareImage = "registry.k8s.io/pause:3.10"

	// podsPerNode is the pod capacity of a kwok node (cluster.NewNode).
	podsPerNode = 1000
	// defaultNodes is the --nodes of the scenario without background pods.
	defaultNodes = 10
	// reservedPods is room for the pods that are not the benchmark's:
	// istiod, the ingress gateway and what their autoscalers add.
	reservedPods = 100

	// backgroundWorkers bounds the concurrent creations of background
	// pods; churnWorkers the concurrent creations, and separately the
	// deletions, of churn pods.
	backgroundWorkers = 32
	churnWorkers      = 32
	// createAttempts is how often a background pod's creation is tried
	// before the harness gives up: a busy API server may time out.
	createAttempts = 5
)

// surge is how many pods a Deployment of replicas pods may have beyond them
// during a rollout: the default maxSurge of 25%, rounded up.
func surge(replicas int) int { return (replicas + 3) / 4 }

// peakPods is the most pods the run at a size has at once: the meshed pods
// in the middle of a rollout, the background pods, the churn pods alive
// (twice the steady number, for deletions lagging behind) and the pods of
// Istio's own.
func peakPods(o options, workloads int) int {
	churnAlive := 2 * int(math.Ceil(o.Churn*o.ChurnLifetime.Seconds()))
	return workloads*(o.Pods+surge(o.Pods)) + o.BackgroundPods + churnAlive + reservedPods
}

// waveTimeoutFor is the default limit of a wave of workloads x pods: 20
// minutes, or half a second per pod when longer.
func waveTimeoutFor(workloads, pods int) time.Duration {
	return max(20*time.Minute, time.Duration(workloads*pods)*500*time.Millisecond)
}

// backgroundTimeout limits creating the background pods until they run:
// --setup-timeout, or 30 ms per pod when longer.
func backgroundTimeout(o options) time.Duration {
	return max(o.SetupTimeout, time.Duration(o.BackgroundPods)*30*time.Millisecond)
}

// nodesFor is how many kwok nodes hold peakPods.
func nodesFor(o options, workloads int) int {
	return (peakPods(o, workloads) + podsPerNode - 1) / podsPerNode
}

// bareNamespaces creates namespaces without any label (so no injection)
// and waits until each has its default ServiceAccount: the API server
// rejects pods in a namespace without one.
func bareNamespaces(ctx context.Context, cs kubernetes.Interface, names []string) error {
	for _, name := range names {
		ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}
		if _, err := cs.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("creating namespace %s: %w", name, err)
		}
	}
	for _, name := range names {
		err := poll(ctx, time.Minute, 100*time.Millisecond, "ServiceAccount "+name+"/default", func(ctx context.Context) (bool, error) {
			_, err := cs.CoreV1().ServiceAccounts(name).Get(ctx, "default", metav1.GetOptions{})
			return err == nil, nil
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// kwokNodes lists the names of the cluster's kwok nodes.
func kwokNodes(ctx context.Context, cs kubernetes.Interface) ([]string, error) {
	list, err := cs.CoreV1().Nodes().List(ctx, metav1.ListOptions{LabelSelector: cluster.NodeTypeLabel + "=kwok"})
	if err != nil {
		return nil, fmt.Errorf("listing the kwok nodes: %w", err)
	}
	var names []string
	for _, n := range list.Items {
		names = append(names, n.Name)
	}
	if len(names) == 0 {
		return nil, errors.New("the cluster has no kwok nodes")
	}
	sort.Strings(names)
	return names, nil
}

// barePod is the smallest pod kwok runs: one container, no service account
// token, no grace period, bound to node.
func barePod(namespace, name, role, node string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: namespace, Labels: map[string]string{roleLabel: role}},
		Spec: corev1.PodSpec{
			NodeName:                      node,
			AutomountServiceAccountToken:  ptr.To(false),
			TerminationGracePeriodSeconds: ptr.To[int64](0),
			EnableServiceLinks:            ptr.To(false),
			Containers:                    []corev1.Container{{Name: "app", Image: bareImage}},
		},
	}
}

// checkNotInjected fails when the injector added anything to a pod the
// benchmark means to be outside the mesh.
func checkNotInjected(p *corev1.Pod) error {
	if len(p.Spec.Containers) != 1 || len(p.Spec.InitContainers) != 0 {
		return fmt.Errorf("pod %s/%s was created with %d containers and %d init containers: it must stay outside the mesh (is its namespace injected?)",
			p.Namespace, p.Name, len(p.Spec.Containers), len(p.Spec.InitContainers))
	}
	return nil
}

// backgroundResult is the creation of the background pods.
type backgroundResult struct {
	Pods       int `json:"pods"`
	Namespaces int `json:"namespaces"`
	Nodes      int `json:"nodes"`
	// CreatedSeconds is from the first creation until every creation
	// returned; RunningSeconds until kwok reported every pod Running.
	CreatedSeconds   float64 `json:"createdSeconds"`
	CreatedPerSecond float64 `json:"createdPerSecond"`
	RunningSeconds   float64 `json:"runningSeconds"`
	RunningPerSecond float64 `json:"runningPerSecond"`
	// Retries counts creations repeated after a failed attempt.
	Retries int64 `json:"retries"`
}

// createBackground creates o.BackgroundPods bare pods over
// o.BackgroundNamespaces namespaces, bound round-robin to the kwok nodes,
// and waits until all of them run. alive fails when the operator died.
func createBackground(ctx context.Context, cs kubernetes.Interface, o options, timeout time.Duration, alive func() error) (*backgroundResult, error) {
	nodes, err := kwokNodes(ctx, cs)
	if err != nil {
		return nil, err
	}
	var namespaces []string
	for i := range o.BackgroundNamespaces {
		namespaces = append(namespaces, fmt.Sprintf("%s-%02d", backgroundNamespacePrefix, i))
	}
	progress("background: creating %d namespaces without injection", len(namespaces))
	if err := bareNamespaces(ctx, cs, namespaces); err != nil {
		return nil, err
	}
	res := &backgroundResult{Pods: o.BackgroundPods, Namespaces: len(namespaces), Nodes: len(nodes)}
	progress("background: creating %d bare pods on %d nodes with %d concurrent clients", o.BackgroundPods, len(nodes), backgroundWorkers)

	start := time.Now()
	ctx, cancel := context.WithTimeoutCause(ctx, timeout, &timeoutError{what: "the background pods' creation", after: timeout})
	defer cancel()
	ctx, fail := context.WithCancelCause(ctx)
	defer fail(nil)
	var created, retries atomic.Int64
	var checkOnce sync.Once
	jobs := make(chan int)
	var wg sync.WaitGroup
	for range backgroundWorkers {
		wg.Go(func() {
			for i := range jobs {
				pod := barePod(namespaces[i%len(namespaces)], fmt.Sprintf("bg-%06d", i), roleBackground, nodes[i%len(nodes)])
				var got *corev1.Pod
				var err error
				for attempt := range createAttempts {
					if attempt > 0 {
						retries.Add(1)
						if sleep(ctx, time.Duration(attempt)*time.Second) != nil {
							break
						}
					}
					got, err = cs.CoreV1().Pods(pod.Namespace).Create(ctx, pod, metav1.CreateOptions{})
					if err == nil || apierrors.IsAlreadyExists(err) || ctx.Err() != nil {
						break
					}
				}
				if err != nil && !apierrors.IsAlreadyExists(err) {
					fail(fmt.Errorf("creating background pod %s/%s: %w", pod.Namespace, pod.Name, err))
					return
				}
				if got != nil {
					checkOnce.Do(func() {
						if err := checkNotInjected(got); err != nil {
							fail(err)
						}
					})
				}
				created.Add(1)
			}
		})
	}
	stopReports := make(chan struct{})
	reported := make(chan struct{})
	go func() {
		defer close(reported)
		tick := time.NewTicker(progressEvery)
		defer tick.Stop()
		for {
			select {
			case <-stopReports:
				return
			case <-tick.C:
			}
			n := created.Load()
			progress("  background: %d of %d pods created (%.0f/s)", n, o.BackgroundPods, float64(n)/time.Since(start).Seconds())
			if err := alive(); err != nil {
				fail(err)
			}
		}
	}()
feed:
	for i := range o.BackgroundPods {
		select {
		case jobs <- i:
		case <-ctx.Done():
			break feed
		}
	}
	close(jobs)
	wg.Wait()
	close(stopReports)
	<-reported
	if ctx.Err() != nil {
		return nil, fmt.Errorf("%w (%d of %d pods created)", context.Cause(ctx), created.Load(), o.BackgroundPods)
	}
	res.CreatedSeconds = time.Since(start).Seconds()
	res.CreatedPerSecond = float64(o.BackgroundPods) / res.CreatedSeconds
	res.Retries = retries.Load()
	progress("background: created %d pods in %.1fs (%.0f/s, %d retries); waiting until kwok runs them",
		o.BackgroundPods, res.CreatedSeconds, res.CreatedPerSecond, res.Retries)

	// The pods not Running yet, from the API server's cache; filtering
	// there keeps the responses small once most pods run.
	pending := -1
	lastReport := time.Now()
	err = poll(ctx, timeout-time.Since(start), 2*time.Second, "every background pod Running", func(ctx context.Context) (bool, error) {
		if err := alive(); err != nil {
			return false, err
		}
		list, err := cs.CoreV1().Pods("").List(ctx, metav1.ListOptions{
			LabelSelector:   roleLabel + "=" + roleBackground,
			FieldSelector:   "status.phase!=Running",
			ResourceVersion: "0",
		})
		if err != nil {
			return false, nil // retried: a busy API server may time out
		}
		pending = len(list.Items)
		if time.Since(lastReport) >= progressEvery {
			progress("  background: %d of %d pods Running", o.BackgroundPods-pending, o.BackgroundPods)
			lastReport = time.Now()
		}
		return pending == 0, nil
	})
	if err != nil {
		return nil, fmt.Errorf("%w (%d of %d pods not Running)", err, pending, o.BackgroundPods)
	}
	res.RunningSeconds = time.Since(start).Seconds()
	res.RunningPerSecond = float64(o.BackgroundPods) / res.RunningSeconds
	progress("background: every pod Running %.1fs after the first creation (%.0f pods/s)", res.RunningSeconds, res.RunningPerSecond)
	return res, nil
}

// churnCounts are the churn's counters at one moment.
type churnCounts struct {
	at           time.Time
	Created      int64 `json:"created"`
	Deleted      int64 `json:"deleted"`
	CreateErrors int64 `json:"createErrors"`
	DeleteErrors int64 `json:"deleteErrors"`
	// Missed counts creations that were due while every creating client
	// was busy: the cluster did not keep up, and they were skipped.
	Missed int64 `json:"missedCreations"`
}

// churnRates is what the churn achieved over an interval.
type churnRates struct {
	Seconds          float64 `json:"seconds"`
	CreatedPerSecond float64 `json:"createdPerSecond"`
	DeletedPerSecond float64 `json:"deletedPerSecond"`
	churnCounts
}

// since is the churn between before and c.
func (c churnCounts) since(before churnCounts) churnRates {
	r := churnRates{Seconds: c.at.Sub(before.at).Seconds(), churnCounts: churnCounts{
		at:           c.at,
		Created:      c.Created - before.Created,
		Deleted:      c.Deleted - before.Deleted,
		CreateErrors: c.CreateErrors - before.CreateErrors,
		DeleteErrors: c.DeleteErrors - before.DeleteErrors,
		Missed:       c.Missed - before.Missed,
	}}
	if r.Seconds > 0 {
		r.CreatedPerSecond = float64(r.Created) / r.Seconds
		r.DeletedPerSecond = float64(r.Deleted) / r.Seconds
	}
	return r
}

// keptUp says whether the churn achieved at least share of rate, both
// creations and deletions.
func (r churnRates) keptUp(rate, share float64) bool {
	return r.CreatedPerSecond >= share*rate && r.DeletedPerSecond >= share*rate
}

// churnResult is the churn over the whole run.
type churnResult struct {
	PerSecond       float64 `json:"configuredPerSecond"`
	LifetimeSeconds float64 `json:"podLifetimeSeconds"`
	// Run is from the start of the churn to its end; deletions are rated
	// over it less one lifetime, before which none is due.
	Run       churnRates `json:"run"`
	LastError string     `json:"lastError,omitempty"`
	// Cleanup is what deleting the churn pods left at the end failed with.
	Cleanup string `json:"cleanupError,omitempty"`
}

// churn creates rate bare pods per second in churnNamespace, bound
// round-robin to the kwok nodes, and deletes each lifetime after its
// creation, until stopped. Failures are counted, never fatal.
type churn struct {
	cs       kubernetes.Interface
	rate     float64
	lifetime time.Duration
	nodes    []string
	start    time.Time

	created, deleted, createErrs, deleteErrs, missed atomic.Int64
	checkOnce                                        sync.Once
	mu                                               sync.Mutex
	lastErr                                          string

	cancel context.CancelFunc
	done   chan struct{}
	once   sync.Once
	result *churnResult
}

// startChurn creates the churn's namespace and starts the churn.
func startChurn(ctx context.Context, cs kubernetes.Interface, rate float64, lifetime time.Duration) (*churn, error) {
	nodes, err := kwokNodes(ctx, cs)
	if err != nil {
		return nil, err
	}
	if err := bareNamespaces(ctx, cs, []string{churnNamespace}); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(ctx)
	c := &churn{cs: cs, rate: rate, lifetime: lifetime, nodes: nodes, start: time.Now(), cancel: cancel, done: make(chan struct{})}
	go c.run(ctx)
	return c, nil
}

type scheduledDelete struct {
	name string
	due  time.Time
}

func (c *churn) fail(counter *atomic.Int64, err error) {
	counter.Add(1)
	c.mu.Lock()
	c.lastErr = err.Error()
	c.mu.Unlock()
}

func (c *churn) run(ctx context.Context) {
	defer close(c.done)
	pods := c.cs.CoreV1().Pods(churnNamespace)
	creates := make(chan int64, churnWorkers)
	deletes := make(chan string, churnWorkers)
	// Pods wait here for their deletion; at the steady state rate*lifetime
	// of them. A full queue holds back creations, which count as missed.
	scheduled := make(chan scheduledDelete, max(1024, 4*int(math.Ceil(c.rate*c.lifetime.Seconds()))))

	var creators, deleters sync.WaitGroup
	for range churnWorkers {
		creators.Go(func() {
			for seq := range creates {
				name := fmt.Sprintf("churn-%08d", seq)
				p, err := pods.Create(ctx, barePod(churnNamespace, name, roleChurn, c.nodes[int(seq)%len(c.nodes)]), metav1.CreateOptions{})
				if err != nil {
					if ctx.Err() == nil {
						c.fail(&c.createErrs, fmt.Errorf("creating %s: %w", name, err))
					}
					continue
				}
				c.checkOnce.Do(func() {
					if err := checkNotInjected(p); err != nil {
						c.fail(&c.createErrs, err)
					}
				})
				c.created.Add(1)
				select {
				case scheduled <- scheduledDelete{name: name, due: time.Now().Add(c.lifetime)}:
				case <-ctx.Done():
				}
			}
		})
		deleters.Go(func() {
			for name := range deletes {
				err := pods.Delete(ctx, name, metav1.DeleteOptions{GracePeriodSeconds: ptr.To[int64](0)})
				switch {
				case err == nil:
					c.deleted.Add(1)
				case ctx.Err() != nil:
				default:
					c.fail(&c.deleteErrs, fmt.Errorf("deleting %s: %w", name, err))
				}
			}
		})
	}
	// Deletions in order of creation: every pod lives the same time.
	go func() {
		defer close(deletes)
		for {
			select {
			case <-ctx.Done():
				return
			case d := <-scheduled:
				if sleep(ctx, time.Until(d.due)) != nil {
					return
				}
				select {
				case deletes <- d.name:
				case <-ctx.Done():
					return
				}
			}
		}
	}()

	// Creations on a steady clock: whatever is due is handed to an idle
	// client, or counted as missed; nothing is made up for later.
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	var issued int64
loop:
	for {
		select {
		case <-ctx.Done():
			break loop
		case <-tick.C:
		}
		due := int64(c.rate * time.Since(c.start).Seconds())
		for ; issued < due; issued++ {
			select {
			case creates <- issued:
			default:
				c.missed.Add(1)
			}
		}
	}
	close(creates)
	creators.Wait()
	deleters.Wait()
}

// counts reads the counters now.
func (c *churn) counts() churnCounts {
	return churnCounts{
		at:           time.Now(),
		Created:      c.created.Load(),
		Deleted:      c.deleted.Load(),
		CreateErrors: c.createErrs.Load(),
		DeleteErrors: c.deleteErrs.Load(),
		Missed:       c.missed.Load(),
	}
}

// stop ends the churn, deletes the churn pods still alive and returns
// what the churn achieved. Later calls return the same.
func (c *churn) stop() *churnResult {
	c.once.Do(func() {
		c.cancel()
		<-c.done
		end := c.counts()
		run := end.since(churnCounts{at: c.start})
		if span := run.Seconds - c.lifetime.Seconds(); span > 0 {
			run.DeletedPerSecond = float64(run.Deleted) / span
		}
		c.result = &churnResult{PerSecond: c.rate, LifetimeSeconds: c.lifetime.Seconds(), Run: run}
		c.mu.Lock()
		c.result.LastError = c.lastErr
		c.mu.Unlock()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		err := c.cs.CoreV1().Pods(churnNamespace).DeleteCollection(ctx,
			metav1.DeleteOptions{GracePeriodSeconds: ptr.To[int64](0)}, metav1.ListOptions{LabelSelector: roleLabel + "=" + roleChurn})
		if err != nil {
			c.result.Cleanup = err.Error()
		}
		progress("churn stopped after %.0fs: %d pods created (%.1f/s), %d deleted (%.1f/s), %d missed, %d create and %d delete errors",
			run.Seconds, run.Created, run.CreatedPerSecond, run.Deleted, run.DeletedPerSecond, run.Missed, run.CreateErrors, run.DeleteErrors)
	})
	return c.result
}
