package main

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"sync"
	"time"

	"istio.io/api/annotation"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	appslisters "k8s.io/client-go/listers/apps/v1"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"

	"github.com/meshkeeper/istio-operator/test/cluster"
	"github.com/meshkeeper/istio-operator/test/injector"
)

const (
	// workloadLabel marks the benchmark's Deployments and their pods, so the
	// harness's informers see nothing else (Istio's own workloads included).
	workloadLabel = "bench.meshkeeper.io/workload"

	// The annotations the operator writes into a restarted workload's pod
	// template.
	restartedAtAnnotation  = "istio-operator.kyma-project.io/restartedAt"
	restartedForAnnotation = "istio-operator.kyma-project.io/restarted-for"

	createWorkers = 20

	// progressEvery is how often long waits report how far they got.
	progressEvery = 10 * time.Second
)

// restart is one restart patch of one Deployment, as the harness saw it.
type restart struct {
	key  string // namespace/name
	hash string // restarted-for
	seen time.Time
}

// workloads creates the benchmark's namespaces and Deployments and watches
// them: Deployments to time the operator's restart patches, pods to tell
// when a wave has rolled out.
type workloads struct {
	cs         kubernetes.Interface
	namespaces []string
	names      []string // namespace/name of every Deployment
	replicas   int

	factory informers.SharedInformerFactory
	deploys appslisters.DeploymentLister
	pods    corelisters.PodLister

	mu       sync.Mutex
	restarts []restart
}

func newWorkloads(cs kubernetes.Interface, count, replicas, namespaces int) *workloads {
	w := &workloads{cs: cs, replicas: replicas}
	for i := range namespaces {
		w.namespaces = append(w.namespaces, fmt.Sprintf("bench-%02d", i))
	}
	for i := range count {
		ns := w.namespaces[i%namespaces]
		w.names = append(w.names, fmt.Sprintf("%s/wl-%04d", ns, i))
	}
	return w
}

// startInformers starts the Deployment and pod informers, restricted to the
// benchmark's label, and waits for their caches.
func (w *workloads) startInformers(ctx context.Context) error {
	w.factory = informers.NewSharedInformerFactoryWithOptions(w.cs, 0,
		informers.WithTweakListOptions(func(o *metav1.ListOptions) { o.LabelSelector = workloadLabel }))
	deployInformer := w.factory.Apps().V1().Deployments()
	podInformer := w.factory.Core().V1().Pods()
	w.deploys, w.pods = deployInformer.Lister(), podInformer.Lister()
	_, err := deployInformer.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		UpdateFunc: func(oldObj, newObj any) {
			old, ok1 := oldObj.(*appsv1.Deployment)
			cur, ok2 := newObj.(*appsv1.Deployment)
			if !ok1 || !ok2 {
				return
			}
			was := old.Spec.Template.Annotations[restartedForAnnotation]
			now := cur.Spec.Template.Annotations[restartedForAnnotation]
			if now != "" && now != was {
				w.recordRestart(cur.Namespace+"/"+cur.Name, now)
			}
		},
	})
	if err != nil {
		return err
	}
	w.factory.Start(ctx.Done())
	for typ, ok := range w.factory.WaitForCacheSync(ctx.Done()) {
		if !ok {
			return fmt.Errorf("syncing the %v informer: %w", typ, ctx.Err())
		}
	}
	return nil
}

func (w *workloads) recordRestart(key, hash string) {
	now := time.Now()
	w.mu.Lock()
	defer w.mu.Unlock()
	w.restarts = append(w.restarts, restart{key: key, hash: hash, seen: now})
}

// restartsSince returns the restart patches seen at or after t.
func (w *workloads) restartsSince(t time.Time) []restart {
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []restart
	for _, r := range w.restarts {
		if !r.seen.Before(t) {
			out = append(out, r)
		}
	}
	return out
}

// createNamespaces creates the injected namespaces and waits until the API
// server calls the injector stand-in for each: pods created earlier would
// go without a sidecar.
func (w *workloads) createNamespaces(ctx context.Context, inj *injector.Server, timeout time.Duration) error {
	for _, name := range w.namespaces {
		ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{
			Name:   name,
			Labels: map[string]string{injector.NamespaceLabelKey: injector.NamespaceLabelValue},
		}}
		if _, err := w.cs.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{}); err != nil {
			return fmt.Errorf("creating namespace %s: %w", name, err)
		}
	}
	for _, name := range w.namespaces {
		wctx, cancel := context.WithTimeout(ctx, timeout)
		err := inj.WaitUntilActive(wctx, w.cs, name)
		cancel()
		if err != nil {
			return err
		}
	}
	return nil
}

// createDeployments creates the Deployments with a few concurrent clients:
// one at a time, a thousand take minutes of round trips.
func (w *workloads) createDeployments(ctx context.Context) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	keys := make(chan string)
	var wg sync.WaitGroup
	for range createWorkers {
		wg.Go(func() {
			for key := range keys {
				ns, name, _ := cache.SplitMetaNamespaceKey(key)
				d := cluster.NewDeployment(name, int32(w.replicas))
				d.Labels = map[string]string{workloadLabel: "true"}
				// NewDeployment shares one map between the selector and the
				// template; only the pods get the extra label.
				d.Spec.Template.Labels = map[string]string{"app": name, workloadLabel: "true"}
				// Terminating pods leave at once: kwok does not honour the
				// grace period anyway, and nothing runs in them.
				d.Spec.Template.Spec.TerminationGracePeriodSeconds = new(int64)
				if _, err := w.cs.AppsV1().Deployments(ns).Create(ctx, d, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
					cancel(fmt.Errorf("creating Deployment %s: %w", key, err))
					return
				}
			}
		})
	}
feed:
	for _, key := range w.names {
		select {
		case keys <- key:
		case <-ctx.Done():
			break feed
		}
	}
	close(keys)
	wg.Wait()
	if err := context.Cause(ctx); err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	return ctx.Err()
}

// podState counts the benchmark's pods that are not being deleted.
type podState struct {
	total   int // pods not being deleted
	current int // of those: Running, Ready, injected, with the wanted proxy CPU request
	sample  string
}

// podsAt counts how many pods run the proxy with the given CPU request (any
// injected proxy when cpu is empty). It reads the informer cache.
func (w *workloads) podsAt(cpu string) (podState, error) {
	var want resource.Quantity
	if cpu != "" {
		q, err := resource.ParseQuantity(cpu)
		if err != nil {
			return podState{}, err
		}
		want = q
	}
	pods, err := w.pods.List(labels.Everything())
	if err != nil {
		return podState{}, err
	}
	var st podState
	for _, p := range pods {
		if p.DeletionTimestamp != nil {
			continue
		}
		st.total++
		reason := podMismatch(p, cpu, want)
		if reason == "" {
			st.current++
		} else if st.sample == "" {
			st.sample = p.Namespace + "/" + p.Name + ": " + reason
		}
	}
	return st, nil
}

// podMismatch says why pod is not yet what a finished wave leaves, or "".
func podMismatch(p *corev1.Pod, cpu string, want resource.Quantity) string {
	if _, ok := p.Annotations[annotation.SidecarStatus.Name]; !ok {
		return "not injected"
	}
	if p.Status.Phase != corev1.PodRunning {
		return "phase " + string(p.Status.Phase)
	}
	if !podReady(p) {
		return "not Ready"
	}
	proxy := proxyContainer(p)
	if proxy == nil {
		return "no istio-proxy container"
	}
	if cpu != "" {
		got := proxy.Resources.Requests[corev1.ResourceCPU]
		if got.Cmp(want) != 0 {
			return "istio-proxy CPU request " + got.String()
		}
	}
	return ""
}

func podReady(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// proxyContainer finds istio-proxy, a classic or a native sidecar.
func proxyContainer(p *corev1.Pod) *corev1.Container {
	for _, list := range [][]corev1.Container{p.Spec.Containers, p.Spec.InitContainers} {
		for i := range list {
			if list[i].Name == injector.ProxyContainerName {
				return &list[i]
			}
		}
	}
	return nil
}

// waitPods waits until exactly the expected pods exist (pods being deleted
// aside) and all of them are current for cpu. It returns when the last
// missing current pod became Ready, which precedes the end: the Deployment
// controller scales the old pods down after that.
func (w *workloads) waitPods(ctx context.Context, what, cpu string, timeout time.Duration, alive func() error) (allCurrent time.Time, err error) {
	want := len(w.names) * w.replicas
	var last podState
	lastReport := time.Now()
	err = poll(ctx, timeout, 200*time.Millisecond, what, func(context.Context) (bool, error) {
		if err := alive(); err != nil {
			return false, err
		}
		st, err := w.podsAt(cpu)
		if err != nil {
			return false, err
		}
		last = st
		if st.current >= want && allCurrent.IsZero() {
			allCurrent = time.Now()
		}
		if time.Since(lastReport) >= progressEvery {
			progress("  %d of %d pods current, %d pods in all", st.current, want, st.total)
			lastReport = time.Now()
		}
		return st.total == want && st.current == want, nil
	})
	if err != nil {
		return allCurrent, fmt.Errorf("%w (%d pods, %d of %d wanted current; e.g. %s)", err, last.total, last.current, want, last.sample)
	}
	return allCurrent, nil
}

// proxyCPU returns the CPU request of the sidecar of one of the pods.
func (w *workloads) proxyCPU() (resource.Quantity, error) {
	pods, err := w.pods.List(labels.Everything())
	if err != nil {
		return resource.Quantity{}, err
	}
	for _, p := range pods {
		if c := proxyContainer(p); c != nil {
			return c.Resources.Requests[corev1.ResourceCPU], nil
		}
	}
	return resource.Quantity{}, errors.New("no pod with an istio-proxy container")
}

// restartSummary condenses the restart patches of one wave.
type restartSummary struct {
	patched      int // Deployments patched at least once
	patchedTwice int // Deployments patched more than once
	total        int // patches
	first, last  time.Time
	times        []time.Time // sorted
}

func summarize(rs []restart) restartSummary {
	var s restartSummary
	perKey := map[string]int{}
	for _, r := range rs {
		perKey[r.key]++
		s.times = append(s.times, r.seen)
	}
	sort.Slice(s.times, func(i, j int) bool { return s.times[i].Before(s.times[j]) })
	s.total = len(rs)
	s.patched = len(perKey)
	for _, n := range perKey {
		if n > 1 {
			s.patchedTwice++
		}
	}
	if len(s.times) > 0 {
		s.first, s.last = s.times[0], s.times[len(s.times)-1]
	}
	return s
}

// waitRestarts waits until every Deployment has been patched since t.
func (w *workloads) waitRestarts(ctx context.Context, since time.Time, timeout time.Duration, alive func() error) error {
	var patched int
	lastReport := time.Now()
	err := poll(ctx, timeout, 100*time.Millisecond, "every Deployment's restart patch", func(context.Context) (bool, error) {
		if err := alive(); err != nil {
			return false, err
		}
		patched = summarize(w.restartsSince(since)).patched
		if time.Since(lastReport) >= progressEvery {
			progress("  %d of %d Deployments patched", patched, len(w.names))
			lastReport = time.Now()
		}
		return patched >= len(w.names), nil
	})
	if err != nil {
		return fmt.Errorf("%w (%d of %d Deployments patched)", err, patched, len(w.names))
	}
	return nil
}
