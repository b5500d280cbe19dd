// Package workload creates injected Deployments on a test cluster, in bulk,
// and watches them from the API server's side: each change of the
// operator's restart annotation, and whether every pod runs the sidecar a
// proxy change asked for. The benchmark and the reliability tests share it.
package workload

import (
	"context"
	"errors"
	"fmt"
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
	"github.com/meshkeeper/istio-operator/test/istiod"
)

const (
	// The annotations the operator writes into a restarted workload's pod
	// template.
	RestartedAtAnnotation  = "istio-operator.kyma-project.io/restartedAt"
	RestartedForAnnotation = "istio-operator.kyma-project.io/restarted-for"

	createWorkers = 20
)

// Restart is one restart patch of one Deployment, as the watcher saw it.
type Restart struct {
	Key  string // namespace/name
	Hash string // restarted-for
	Seen time.Time
}

// Set is a group of Deployments spread over injected namespaces, all
// labelled with Label, so that its informers see nothing else (Istio's own
// workloads included).
type Set struct {
	CS         kubernetes.Interface
	Label      string
	Namespaces []string
	Names      []string // namespace/name of every Deployment
	Replicas   int

	Factory     informers.SharedInformerFactory
	Deployments appslisters.DeploymentLister
	Pods        corelisters.PodLister

	mu       sync.Mutex
	restarts []Restart
}

// New describes count Deployments of replicas pods, named wl-NNNN, spread
// over namespaces namespaces named prefix-NN. It creates nothing yet.
func New(cs kubernetes.Interface, label, prefix string, count, replicas, namespaces int) *Set {
	s := &Set{CS: cs, Label: label, Replicas: replicas}
	for i := range namespaces {
		s.Namespaces = append(s.Namespaces, fmt.Sprintf("%s-%02d", prefix, i))
	}
	for i := range count {
		ns := s.Namespaces[i%namespaces]
		s.Names = append(s.Names, fmt.Sprintf("%s/wl-%04d", ns, i))
	}
	return s
}

// StartInformers starts the Deployment and pod informers, restricted to the
// set's label, and waits for their caches. Stop them with Factory.Shutdown
// after cancelling ctx.
func (s *Set) StartInformers(ctx context.Context) error {
	s.Factory = informers.NewSharedInformerFactoryWithOptions(s.CS, 0,
		informers.WithTweakListOptions(func(o *metav1.ListOptions) { o.LabelSelector = s.Label }))
	deployInformer := s.Factory.Apps().V1().Deployments()
	podInformer := s.Factory.Core().V1().Pods()
	s.Deployments, s.Pods = deployInformer.Lister(), podInformer.Lister()
	_, err := deployInformer.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		UpdateFunc: func(oldObj, newObj any) {
			old, ok1 := oldObj.(*appsv1.Deployment)
			cur, ok2 := newObj.(*appsv1.Deployment)
			if !ok1 || !ok2 {
				return
			}
			was := old.Spec.Template.Annotations[RestartedForAnnotation]
			now := cur.Spec.Template.Annotations[RestartedForAnnotation]
			if now != "" && now != was {
				s.recordRestart(cur.Namespace+"/"+cur.Name, now)
			}
		},
	})
	if err != nil {
		return err
	}
	s.Factory.Start(ctx.Done())
	for typ, ok := range s.Factory.WaitForCacheSync(ctx.Done()) {
		if !ok {
			return fmt.Errorf("syncing the %v informer: %w", typ, ctx.Err())
		}
	}
	return nil
}

func (s *Set) recordRestart(key, hash string) {
	now := time.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.restarts = append(s.restarts, Restart{Key: key, Hash: hash, Seen: now})
}

// RestartsSince returns the restart patches seen at or after t.
func (s *Set) RestartsSince(t time.Time) []Restart {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []Restart
	for _, r := range s.restarts {
		if !r.Seen.Before(t) {
			out = append(out, r)
		}
	}
	return out
}

// CreateNamespaces creates the injected namespaces (Istio's
// istio-injection=enabled) and waits until the real istiod injects the pods
// of each: pods created earlier would go without a sidecar.
func (s *Set) CreateNamespaces(ctx context.Context, timeout time.Duration) error {
	for _, name := range s.Namespaces {
		ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{
			Name:   name,
			Labels: map[string]string{"istio-injection": "enabled"},
		}}
		if _, err := s.CS.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{}); err != nil {
			return fmt.Errorf("creating namespace %s: %w", name, err)
		}
	}
	for _, name := range s.Namespaces {
		wctx, cancel := context.WithTimeout(ctx, timeout)
		err := istiod.WaitInjecting(wctx, s.CS, name)
		cancel()
		if err != nil {
			return err
		}
	}
	return nil
}

// CreateDeployments creates the Deployments with a few concurrent clients:
// one at a time, a thousand take minutes of round trips.
func (s *Set) CreateDeployments(ctx context.Context) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	keys := make(chan string)
	var wg sync.WaitGroup
	for range createWorkers {
		wg.Go(func() {
			for key := range keys {
				ns, name, _ := cache.SplitMetaNamespaceKey(key)
				d := cluster.NewDeployment(name, int32(s.Replicas))
				d.Labels = map[string]string{s.Label: "true"}
				// NewDeployment shares one map between the selector and the
				// template; only the pods get the extra label.
				d.Spec.Template.Labels = map[string]string{"app": name, s.Label: "true"}
				// Terminating pods leave at once: kwok does not honour the
				// grace period anyway, and nothing runs in them.
				d.Spec.Template.Spec.TerminationGracePeriodSeconds = new(int64)
				if _, err := s.CS.AppsV1().Deployments(ns).Create(ctx, d, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
					cancel(fmt.Errorf("creating Deployment %s: %w", key, err))
					return
				}
			}
		})
	}
feed:
	for _, key := range s.Names {
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

// PodState counts the set's pods that are not being deleted.
type PodState struct {
	Total   int // pods not being deleted
	Current int // of those: Running, Ready, injected, with the wanted proxy CPU request
	Sample  string
}

// PodsAt counts how many pods run the proxy with the given CPU request (any
// injected proxy when cpu is empty). It reads the informer cache.
func (s *Set) PodsAt(cpu string) (PodState, error) { return s.pods(cpu, "") }

// PodsOn counts how many pods run the proxy image (a canary upgrade's
// wave). It reads the informer cache.
func (s *Set) PodsOn(image string) (PodState, error) { return s.pods("", image) }

func (s *Set) pods(cpu, image string) (PodState, error) {
	var want resource.Quantity
	if cpu != "" {
		q, err := resource.ParseQuantity(cpu)
		if err != nil {
			return PodState{}, err
		}
		want = q
	}
	pods, err := s.Pods.List(labels.Everything())
	if err != nil {
		return PodState{}, err
	}
	var st PodState
	for _, p := range pods {
		if p.DeletionTimestamp != nil {
			continue
		}
		st.Total++
		reason := podMismatch(p, cpu, want)
		if got := ProxyImage(p); reason == "" && image != "" && got != image {
			reason = "istio-proxy image " + got
		}
		if reason == "" {
			st.Current++
		} else if st.Sample == "" {
			st.Sample = p.Namespace + "/" + p.Name + ": " + reason
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
	if !PodReady(p) {
		return "not Ready"
	}
	proxy := ProxyContainer(p)
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

// PodReady reports whether the pod's Ready condition is True.
func PodReady(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// ProxyImage is the image of the pod's istio-proxy, or "".
func ProxyImage(p *corev1.Pod) string {
	if c := ProxyContainer(p); c != nil {
		return c.Image
	}
	return ""
}

// ProxyContainer finds istio-proxy, a classic or a native sidecar.
func ProxyContainer(p *corev1.Pod) *corev1.Container { return cluster.Proxy(p) }

// ProxyCPU returns the CPU request of the sidecar of one of the pods.
func (s *Set) ProxyCPU() (resource.Quantity, error) {
	pods, err := s.Pods.List(labels.Everything())
	if err != nil {
		return resource.Quantity{}, err
	}
	for _, p := range pods {
		if c := ProxyContainer(p); c != nil {
			return c.Resources.Requests[corev1.ResourceCPU], nil
		}
	}
	return resource.Quantity{}, errors.New("no pod with an istio-proxy container")
}

// Summary condenses the restart patches of one wave.
type Summary struct {
	Patched      int // Deployments patched at least once
	PatchedTwice int // Deployments patched more than once
	Total        int // patches
	First, Last  time.Time
}

// Summarize condenses rs.
func Summarize(rs []Restart) Summary {
	s := Summary{Total: len(rs)}
	perKey := map[string]int{}
	for _, r := range rs {
		perKey[r.Key]++
		if s.First.IsZero() || r.Seen.Before(s.First) {
			s.First = r.Seen
		}
		if r.Seen.After(s.Last) {
			s.Last = r.Seen
		}
	}
	s.Patched = len(perKey)
	for _, n := range perKey {
		if n > 1 {
			s.PatchedTwice++
		}
	}
	return s
}
