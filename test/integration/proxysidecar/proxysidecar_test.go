// Package proxysidecar tests the proxy sidecar controller against a real API
// server, with the real istiod injecting new pods with the proxy of the
// installed Istio (an older one installed before the operator runs): outdated workloads of every kind are restarted once,
// paced, opted-out and paused workloads are left alone, and pods nothing can
// restart are reported and never deleted.
package proxysidecar

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"

	v1alpha2 "github.com/meshkeeper/istio-operator/pkg/apis/operator/v1alpha2"
	"github.com/meshkeeper/istio-operator/pkg/controllers/proxysidecar"
	"github.com/meshkeeper/istio-operator/pkg/istioclient"
	"github.com/meshkeeper/istio-operator/pkg/operator"
	"github.com/meshkeeper/istio-operator/pkg/rollout"
	"github.com/meshkeeper/istio-operator/test/cluster"
	"github.com/meshkeeper/istio-operator/test/operatortest"
)

const (
	oldTag     = "1.30.2"
	oldProxy   = "docker.io/istio/proxyv2:" + oldTag
	timeout    = 2 * time.Minute
	nodes      = 2
	deployKind = "Deployment"
)

func TestMain(m *testing.M) {
	cluster.Main(m, cluster.Options{Nodes: nodes})
}

// olderIstio installs Istio oldTag as another tool would, before the
// operator runs, and waits until the real istiod behind it serves: until the
// operator upgrades Istio, it injects the older proxy into new pods.
func olderIstio(t *testing.T) {
	t.Helper()
	operatortest.InstallIstio(t, oldTag)
	cluster.WaitIstiod(t, timeout)
}

func podTemplate(name string) corev1.PodTemplateSpec {
	return corev1.PodTemplateSpec{
		ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": name}},
		Spec: corev1.PodSpec{
			NodeSelector: map[string]string{cluster.NodeTypeLabel: "kwok"},
			Containers:   []corev1.Container{{Name: "app", Image: "registry.k8s.io/pause:3.10"}},
		},
	}
}

func createDeployment(t *testing.T, cs kubernetes.Interface, ns string, d *appsv1.Deployment) {
	t.Helper()
	if _, err := cs.AppsV1().Deployments(ns).Create(t.Context(), d, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
}

func createStatefulSet(t *testing.T, cs kubernetes.Interface, ns, name string) {
	t.Helper()
	s := &appsv1.StatefulSet{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: appsv1.StatefulSetSpec{
			Replicas: ptr.To[int32](1), Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": name}},
			Template: podTemplate(name),
		},
	}
	if _, err := cs.AppsV1().StatefulSets(ns).Create(t.Context(), s, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
}

func createDaemonSet(t *testing.T, cs kubernetes.Interface, ns, name string) {
	t.Helper()
	d := &appsv1.DaemonSet{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: appsv1.DaemonSetSpec{
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": name}},
			Template: podTemplate(name),
		},
	}
	if _, err := cs.AppsV1().DaemonSets(ns).Create(t.Context(), d, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
}

// proxyImages counts the live pods of the namespace by istio-proxy image
// ("" for a pod without one), with pods not yet Ready counted as "unready".
func proxyImages(ctx context.Context, cs kubernetes.Interface, ns string) (map[string]int, error) {
	pods, err := cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, err
	}
	out := map[string]int{}
	for _, p := range pods.Items {
		if p.DeletionTimestamp != nil {
			continue
		}
		ready := false
		for _, c := range p.Status.Conditions {
			ready = ready || (c.Type == corev1.PodReady && c.Status == corev1.ConditionTrue)
		}
		image := ""
		if c := cluster.Proxy(&p); c != nil {
			image = c.Image
		}
		if !ready {
			image = "unready"
		}
		out[image]++
	}
	return out, nil
}

func waitAllOn(t *testing.T, cs kubernetes.Interface, ns, image string, pods int) {
	t.Helper()
	cluster.WaitFor(t, timeout, fmt.Sprintf("%d ready pods in %s on %s", pods, ns, image), func(ctx context.Context) (bool, error) {
		got, err := proxyImages(ctx, cs, ns)
		if err != nil {
			return false, err
		}
		if got[image] != pods || len(got) != 1 {
			return false, fmt.Errorf("pods by proxy image: %v", got)
		}
		return true, nil
	})
}

// restarts watches the workloads of a namespace and records each change of
// their restart annotation, with the time it was seen, and how many were
// rolling at once.
type restarts struct {
	mu         sync.Mutex
	seen       map[string][]string // workload -> restarted-for values, in order
	times      []time.Time
	rolling    map[string]bool
	maxRolling int
}

func watchRestarts(t *testing.T, cs kubernetes.Interface, ns string) *restarts {
	t.Helper()
	r := &restarts{seen: map[string][]string{}, rolling: map[string]bool{}}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	w, err := cs.AppsV1().Deployments(ns).Watch(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		for ev := range w.ResultChan() {
			d, ok := ev.Object.(*appsv1.Deployment)
			if !ok || ev.Type == watch.Deleted {
				continue
			}
			r.observe(d, time.Now())
		}
	}()
	return r
}

func (r *restarts) observe(d *appsv1.Deployment, at time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	v, ok := d.Spec.Template.Annotations[proxysidecar.AnnotationRestartedFor]
	if !ok {
		return
	}
	hist := r.seen[d.Name]
	if len(hist) == 0 || hist[len(hist)-1] != v {
		r.seen[d.Name] = append(hist, v)
		r.times = append(r.times, at)
	}
	r.rolling[d.Name] = !rollout.OfDeployment(d).Done
	n := 0
	for _, rolling := range r.rolling {
		if rolling {
			n++
		}
	}
	r.maxRolling = max(r.maxRolling, n)
}

func (r *restarts) snapshot() (map[string][]string, []time.Time, int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	seen := map[string][]string{}
	for k, v := range r.seen {
		seen[k] = append([]string(nil), v...)
	}
	return seen, append([]time.Time(nil), r.times...), r.maxRolling
}

// restartAnnotation is a workload's restarted-for annotation.
func restartAnnotation(t *testing.T, cs kubernetes.Interface, kind, ns, name string) string {
	t.Helper()
	var tmpl corev1.PodTemplateSpec
	switch kind {
	case deployKind:
		d, err := cs.AppsV1().Deployments(ns).Get(t.Context(), name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		tmpl = d.Spec.Template
	case "StatefulSet":
		s, err := cs.AppsV1().StatefulSets(ns).Get(t.Context(), name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		tmpl = s.Spec.Template
	case "DaemonSet":
		d, err := cs.AppsV1().DaemonSets(ns).Get(t.Context(), name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		tmpl = d.Spec.Template
	}
	return tmpl.Annotations[proxysidecar.AnnotationRestartedFor]
}

func waitCondition(t *testing.T, ns, reason string, check func(c *metav1.Condition) error) *v1alpha2.Istio {
	t.Helper()
	return operatortest.WaitCondition(t, timeout, ns, "default", v1alpha2.ConditionProxySidecarRestartSucceeded, reason, check)
}

func patchSpec(t *testing.T, ns, spec string) {
	t.Helper()
	p := []byte(fmt.Sprintf(`{"spec":%s}`, spec))
	if _, err := operatortest.Client(t).OperatorV1alpha2().Istios(ns).Patch(t.Context(), "default", types.MergePatchType, p, metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
}

// reasons records every reason the condition takes, polling its resource.
func reasons(t *testing.T, ns string) func() []string {
	var mu sync.Mutex
	var seen []string
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	client := operatortest.Client(t)
	go func() {
		for ctx.Err() == nil {
			if i, err := client.OperatorV1alpha2().Istios(ns).Get(ctx, "default", metav1.GetOptions{}); err == nil {
				if c := meta.FindStatusCondition(i.Status.Conditions, v1alpha2.ConditionProxySidecarRestartSucceeded); c != nil {
					mu.Lock()
					if len(seen) == 0 || seen[len(seen)-1] != c.Reason {
						seen = append(seen, c.Reason)
					}
					mu.Unlock()
				}
			}
			time.Sleep(50 * time.Millisecond)
		}
	}()
	return func() []string {
		mu.Lock()
		defer mu.Unlock()
		return append([]string(nil), seen...)
	}
}

func restartsIssued(t *testing.T) float64 {
	return operatortest.Counter(t, "istio_operator_proxy_restarts_total", map[string]string{"result": "issued"})
}

func TestProxySidecarRestarts(t *testing.T) {
	cluster.InstallIstioCRD(t)
	cs := cluster.Current().Clientset()
	olderIstio(t)
	opNS := cluster.Namespace(t, nil)
	// A namespace of the platform's own workloads besides the operator's.
	platformNS := cluster.MeshNamespace(t)

	// 50 workloads injected with an older proxy: 35 Deployments, 10
	// StatefulSets, 5 DaemonSets (one pod per node).
	mesh := cluster.MeshNamespace(t)
	type wl struct{ kind, name string }
	var workloads []wl
	for i := range 35 {
		name := fmt.Sprintf("deploy-%02d", i)
		createDeployment(t, cs, mesh, cluster.NewDeployment(name, 1))
		workloads = append(workloads, wl{deployKind, name})
	}
	for i := range 10 {
		name := fmt.Sprintf("sts-%02d", i)
		createStatefulSet(t, cs, mesh, name)
		workloads = append(workloads, wl{"StatefulSet", name})
	}
	for i := range 5 {
		name := fmt.Sprintf("ds-%02d", i)
		createDaemonSet(t, cs, mesh, name)
		workloads = append(workloads, wl{"DaemonSet", name})
	}
	pods := 35 + 10 + 5*nodes
	waitAllOn(t, cs, mesh, oldProxy, pods)

	top := t
	opOptions := operatortest.Options{Configure: func(o *operator.Options) {
		o.PlatformNamespaces = []string{platformNS}
	}}
	op := operatortest.StartWith(t, opNS, opOptions)
	t.Cleanup(func() { operatortest.WaitUninstalled(t, timeout) })
	issuedBefore := restartsIssued(t)
	seenReasons := reasons(t, opNS)
	operatortest.CreateIstio(t, opNS, "default", v1alpha2.IstioSpec{})
	t.Cleanup(func() { operatortest.DeleteIstio(t, timeout, opNS, "default") })

	istio := waitCondition(t, opNS, v1alpha2.ReasonProxySidecarRestartSucceeded, nil)
	want, err := istioclient.DesiredProxy(&istio.Spec)
	if err != nil {
		t.Fatal(err)
	}
	waitAllOn(t, cs, mesh, want.Image, pods)

	t.Run("every workload restarted once", func(t *testing.T) {
		if got := restartsIssued(t) - issuedBefore; got != float64(len(workloads)) {
			t.Errorf("%v restarts issued, want %d", got, len(workloads))
		}
		for _, w := range workloads {
			if got := restartAnnotation(t, cs, w.kind, mesh, w.name); got != want.Hash() {
				t.Errorf("%s %s restarted for %q, want %q", w.kind, w.name, got, want.Hash())
			}
		}
		r := seenReasons()
		if !contains(r, v1alpha2.ReasonProxySidecarRestartInProgress) || r[len(r)-1] != v1alpha2.ReasonProxySidecarRestartSucceeded {
			t.Errorf("condition reasons went %v, want InProgress then Succeeded", r)
		}
		c := meta.FindStatusCondition(istio.Status.Conditions, v1alpha2.ConditionProxySidecarRestartSucceeded)
		if !strings.Contains(c.Message, fmt.Sprintf("%d of %d workloads restarted", len(workloads), len(workloads))) {
			t.Errorf("condition message %q does not count the restarts", c.Message)
		}
		if !operatortest.HasEventOn(t, deployKind, mesh, "deploy-00", "ProxySidecarRestarted") {
			t.Error("no ProxySidecarRestarted Event on a restarted Deployment")
		}
	})

	t.Run("resync and operator restart restart nothing", func(t *testing.T) {
		before, writes := restartsIssued(t), operatortest.WriteCounts(t)
		reconciles := operatortest.Reconciles(t, proxysidecar.Name)
		op.ProxySidecar.Loop().Add(proxysidecar.Key{Kind: proxysidecar.KindSummary, Namespace: opNS, Name: "default"})
		for _, w := range workloads {
			op.ProxySidecar.Loop().Add(proxysidecar.Key{Kind: proxysidecar.Kind(w.kind), Namespace: mesh, Name: w.name})
		}
		cluster.WaitFor(t, 30*time.Second, "a full resync", func(context.Context) (bool, error) {
			return operatortest.Reconciles(t, proxysidecar.Name) >= reconciles+float64(len(workloads)+1), nil
		})
		op.Stop()
		op2 := operatortest.StartWith(top, opNS, opOptions) // runs until the whole test ends
		// Cleanups run last-registered first: delete the resource while op2 runs.
		top.Cleanup(func() { operatortest.DeleteIstio(top, timeout, opNS, "default") })
		reconciles = operatortest.Reconciles(t, proxysidecar.Name)
		op2.ProxySidecar.Loop().Add(proxysidecar.Key{Kind: proxysidecar.KindSummary, Namespace: opNS, Name: "default"})
		cluster.WaitFor(t, 30*time.Second, "the new operator's count", func(context.Context) (bool, error) {
			return operatortest.Reconciles(t, proxysidecar.Name) > reconciles && op2.ProxySidecar.Loop().Len() == 0, nil
		})
		waitCondition(t, opNS, v1alpha2.ReasonProxySidecarRestartSucceeded, nil)
		if got := restartsIssued(t) - before; got != 0 {
			t.Errorf("%v restarts after a resync and an operator restart, want 0", got)
		}
		for k, n := range operatortest.NewWrites(t, writes) {
			if strings.Contains(k, "deployments") || strings.Contains(k, "statefulsets") || strings.Contains(k, "daemonsets") {
				t.Errorf("%v writes %q after a resync and an operator restart", n, k)
			}
		}
	})
	// The namespace is not needed any more; its workloads would only
	// restart again for the next changes.
	if err := cs.CoreV1().Namespaces().Delete(t.Context(), mesh, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}

	t.Run("a resource change restarts exactly the affected workloads", func(t *testing.T) {
		ns := cluster.MeshNamespace(t)
		plain := []string{"plain-0", "plain-1", "plain-2"}
		for _, n := range plain {
			createDeployment(t, cs, ns, cluster.NewDeployment(n, 1))
		}
		annotated := cluster.NewDeployment("annotated", 1)
		annotated.Spec.Template.Annotations = map[string]string{"sidecar.istio.io/proxyCPU": "50m"}
		createDeployment(t, cs, ns, annotated)
		excluded := cluster.NewDeployment("excluded", 1)
		excluded.Annotations = map[string]string{proxysidecar.AnnotationExclude: "true"}
		createDeployment(t, cs, ns, excluded)
		createDeployment(t, cs, ns, cluster.NewDeployment("paused", 1))
		createDeployment(t, cs, platformNS, cluster.NewDeployment("platform-paused", 1))
		waitAllOn(t, cs, ns, want.Image, 6)
		waitAllOn(t, cs, platformNS, want.Image, 1)
		pause := func(ns, name string, paused bool) {
			t.Helper()
			if _, err := cs.AppsV1().Deployments(ns).Patch(t.Context(), name, types.MergePatchType,
				[]byte(fmt.Sprintf(`{"spec":{"paused":%t}}`, paused)), metav1.PatchOptions{}); err != nil {
				t.Fatal(err)
			}
		}
		pause(ns, "paused", true)
		pause(platformNS, "platform-paused", true)
		waitCondition(t, opNS, v1alpha2.ReasonProxySidecarRestartSucceeded, nil)

		watched := watchRestarts(t, cs, ns)
		before := restartsIssued(t)
		patchSpec(t, opNS, `{"components":{"proxy":{"k8s":{"resources":{"requests":{"cpu":"20m"}}}}}}`)
		// A blocked platform workload is an Error, and the message tells
		// it from the customer's.
		waitCondition(t, opNS, v1alpha2.ReasonProxySidecarRestartFailed, func(c *metav1.Condition) error {
			if !strings.Contains(c.Message, "platform workloads blocked: "+platformNS+"/platform-paused (paused") ||
				!strings.Contains(c.Message, "; blocked: "+ns+"/paused (paused") || !strings.Contains(c.Message, "1 excluded") {
				return fmt.Errorf("message %q does not name the platform's and the customer's paused workloads apart, and the excluded one", c.Message)
			}
			return nil
		})
		operatortest.WaitForState(t, timeout, opNS, "default", v1alpha2.StateError,
			v1alpha2.ConditionProxySidecarRestartSucceeded, metav1.ConditionFalse, v1alpha2.ReasonProxySidecarRestartFailed)
		seen, _, _ := watched.snapshot()
		for _, n := range plain {
			if len(seen[n]) != 1 {
				t.Errorf("%s restarted %d times, want 1", n, len(seen[n]))
			}
		}
		for _, n := range []string{"annotated", "excluded", "paused"} {
			if len(seen[n]) != 0 {
				t.Errorf("%s restarted, want untouched", n)
			}
		}
		if got := restartsIssued(t) - before; got != float64(len(plain)) {
			t.Errorf("%v restarts issued, want %d", got, len(plain))
		}
		if !operatortest.HasEvent(t, opNS, "default", v1alpha2.ReasonProxySidecarRestartFailed) {
			t.Error("no Event on the Istio resource for the blocked workload")
		}

		// With the platform's workload resumed, only the customer's is
		// blocked: a Warning, not an Error.
		pause(platformNS, "platform-paused", false)
		waitCondition(t, opNS, v1alpha2.ReasonProxySidecarRestartPartiallySucceeded, func(c *metav1.Condition) error {
			if strings.Contains(c.Message, platformNS) || !strings.Contains(c.Message, "blocked: "+ns+"/paused (paused") {
				return fmt.Errorf("message %q, want the customer's paused workload alone", c.Message)
			}
			return nil
		})
		operatortest.WaitForState(t, timeout, opNS, "default", v1alpha2.StateWarning,
			v1alpha2.ConditionProxySidecarRestartSucceeded, metav1.ConditionFalse, v1alpha2.ReasonProxySidecarRestartPartiallySucceeded)
		if !operatortest.HasEvent(t, opNS, "default", v1alpha2.ReasonProxySidecarRestartPartiallySucceeded) {
			t.Error("no Event on the Istio resource for the blocked customer workload")
		}

		// Resumed, the paused Deployment is restarted like the others.
		pause(ns, "paused", false)
		waitCondition(t, opNS, v1alpha2.ReasonProxySidecarRestartSucceeded, nil)
		if seen, _, _ := watched.snapshot(); len(seen["paused"]) != 1 {
			t.Errorf("the resumed Deployment restarted %d times, want 1", len(seen["paused"]))
		}
	})

	t.Run("restarts keep to the rate and the in-flight limit", func(t *testing.T) {
		ns := cluster.MeshNamespace(t)
		const n, rate, inFlight = 12, 4.0, 2
		for i := range n {
			createDeployment(t, cs, ns, cluster.NewDeployment(fmt.Sprintf("paced-%02d", i), 1))
		}
		waitAllOn(t, cs, ns, want.Image, n)
		waitCondition(t, opNS, v1alpha2.ReasonProxySidecarRestartSucceeded, nil)
		watched := watchRestarts(t, cs, ns)
		patchSpec(t, opNS, fmt.Sprintf(`{"proxyRestart":{"restartsPerSecond":"%v","maxConcurrentRollouts":%d},`+
			`"components":{"proxy":{"k8s":{"resources":{"requests":{"cpu":"30m"}}}}}}`, rate, inFlight))
		waitCondition(t, opNS, v1alpha2.ReasonProxySidecarRestartSucceeded, nil)
		seen, times, maxRolling := watched.snapshot()
		if len(seen) != n || len(times) != n {
			t.Fatalf("%d workloads restarted (%d restarts), want %d once each", len(seen), len(times), n)
		}
		span := times[len(times)-1].Sub(times[0]).Seconds()
		achieved := float64(n-1) / span
		t.Logf("%d restarts in %.2fs: %.2f/s (limit %v/s), at most %d rolling at once (limit %d)", n, span, achieved, rate, maxRolling, inFlight)
		if achieved > rate*1.1 {
			t.Errorf("restarts at %.2f/s, above the limit of %v/s", achieved, rate)
		}
		if maxRolling > inFlight {
			t.Errorf("%d workloads rolled at once, limit %d", maxRolling, inFlight)
		}
	})

	t.Run("pods nothing can restart are reported, never deleted", func(t *testing.T) {
		ns := cluster.Namespace(t, nil)
		bare := oldInjectedPod("bare")
		if _, err := cs.CoreV1().Pods(ns).Create(t.Context(), bare, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		// A pod whose controller is a kind nothing restarts (kwok completes a
		// Job's pods within seconds, so a ConfigMap stands in for such an
		// owner here; the Job rule itself is unit-tested).
		owner, err := cs.CoreV1().ConfigMaps(ns).Create(t.Context(), &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "owner"}}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		owned := oldInjectedPod("owned")
		owned.OwnerReferences = []metav1.OwnerReference{{APIVersion: "v1", Kind: "ConfigMap", Name: owner.Name, UID: owner.UID, Controller: ptr.To(true)}}
		if _, err := cs.CoreV1().Pods(ns).Create(t.Context(), owned, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		waitCondition(t, opNS, v1alpha2.ReasonProxySidecarManualRestartRequired, func(c *metav1.Condition) error {
			if !strings.Contains(c.Message, ns+"/bare") || !strings.Contains(c.Message, ns+"/owned (ConfigMap owner)") {
				return fmt.Errorf("message %q does not name the bare pod and the owned pod", c.Message)
			}
			return nil
		})
		if !operatortest.HasEvent(t, opNS, "default", v1alpha2.ReasonProxySidecarManualRestartRequired) {
			t.Error("no ManualRestartRequired Event on the Istio resource")
		}
		live, err := proxyImages(t.Context(), cs, ns)
		if err != nil {
			t.Fatal(err)
		}
		if live[oldProxy]+live["unready"] != 2 {
			t.Errorf("pods by proxy image %v, want the bare pod and the owned pod untouched", live)
		}
	})
}

// oldInjectedPod is a pod as an older Istio injected it.
func oldInjectedPod(name string) *corev1.Pod {
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: corev1.PodSpec{
			NodeSelector: map[string]string{cluster.NodeTypeLabel: "kwok"},
			Containers:   []corev1.Container{{Name: "app", Image: "registry.k8s.io/pause:3.10"}},
		},
	}
	cluster.AsInjected(&pod.ObjectMeta, &pod.Spec, oldProxy)
	return pod
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
