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
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"

	v1alpha2 "github.com/meshkeeper/istio-operator/pkg/apis/operator/v1alpha2"
	"github.com/meshkeeper/istio-operator/pkg/controllers/proxysidecar"
	"github.com/meshkeeper/istio-operator/pkg/istioclient"
	"github.com/meshkeeper/istio-operator/test/cluster"
	"github.com/meshkeeper/istio-operator/test/operatortest"
	"github.com/meshkeeper/istio-operator/test/workload"
)

// evictionWorkload is a workload a template change does not roll.
type evictionWorkload struct {
	kind, name string
	pods       int
}

func createEvictionWorkload(t *testing.T, cs kubernetes.Interface, ns string, w evictionWorkload) {
	t.Helper()
	ctx := t.Context()
	sel := &metav1.LabelSelector{MatchLabels: map[string]string{"app": w.name}}
	meta := metav1.ObjectMeta{Name: w.name}
	var err error
	switch w.kind {
	case "StatefulSet":
		_, err = cs.AppsV1().StatefulSets(ns).Create(ctx, &appsv1.StatefulSet{ObjectMeta: meta, Spec: appsv1.StatefulSetSpec{
			Replicas: ptr.To(int32(w.pods)), Selector: sel, Template: podTemplate(w.name),
			UpdateStrategy: appsv1.StatefulSetUpdateStrategy{Type: appsv1.OnDeleteStatefulSetStrategyType},
		}}, metav1.CreateOptions{})
	case "DaemonSet":
		_, err = cs.AppsV1().DaemonSets(ns).Create(ctx, &appsv1.DaemonSet{ObjectMeta: meta, Spec: appsv1.DaemonSetSpec{
			Selector: sel, Template: podTemplate(w.name),
			UpdateStrategy: appsv1.DaemonSetUpdateStrategy{Type: appsv1.OnDeleteDaemonSetStrategyType},
		}}, metav1.CreateOptions{})
	case "ReplicaSet":
		_, err = cs.AppsV1().ReplicaSets(ns).Create(ctx, &appsv1.ReplicaSet{ObjectMeta: meta, Spec: appsv1.ReplicaSetSpec{
			Replicas: ptr.To(int32(w.pods)), Selector: sel, Template: podTemplate(w.name),
		}}, metav1.CreateOptions{})
	case "ReplicationController":
		tmpl := podTemplate(w.name)
		_, err = cs.CoreV1().ReplicationControllers(ns).Create(ctx, &corev1.ReplicationController{ObjectMeta: meta, Spec: corev1.ReplicationControllerSpec{
			Replicas: ptr.To(int32(w.pods)), Selector: map[string]string{"app": w.name}, Template: &tmpl,
		}}, metav1.CreateOptions{})
	default:
		t.Fatalf("no eviction kind %s", w.kind)
	}
	if err != nil {
		t.Fatal(err)
	}
}

// workloadAnnotation is the restarted-for annotation on the metadata of a
// workload restarted by eviction.
func workloadAnnotation(ctx context.Context, cs kubernetes.Interface, ns string, w evictionWorkload) (string, error) {
	var obj metav1.Object
	var err error
	switch w.kind {
	case "StatefulSet":
		obj, err = cs.AppsV1().StatefulSets(ns).Get(ctx, w.name, metav1.GetOptions{})
	case "DaemonSet":
		obj, err = cs.AppsV1().DaemonSets(ns).Get(ctx, w.name, metav1.GetOptions{})
	case "ReplicaSet":
		obj, err = cs.AppsV1().ReplicaSets(ns).Get(ctx, w.name, metav1.GetOptions{})
	case "ReplicationController":
		obj, err = cs.CoreV1().ReplicationControllers(ns).Get(ctx, w.name, metav1.GetOptions{})
	}
	if err != nil {
		return "", err
	}
	return obj.GetAnnotations()[proxysidecar.AnnotationRestartedFor], nil
}

// evictions watches the pods of a namespace and checks, at the first sign
// of each old-proxy pod going away (its deletion timestamp, or its deletion),
// that every other pod of its workload was there, ready and not going away:
// pods are evicted one at a time, the next once the replacement is ready.
type evictions struct {
	mu         sync.Mutex
	pods       map[string]*corev1.Pod
	replicas   map[string]int // owner name -> pods
	evicted    map[string]int // owner name -> old-proxy pods gone
	violations []string
}

func watchEvictions(t *testing.T, cs kubernetes.Interface, ns string, replicas map[string]int) *evictions {
	t.Helper()
	e := &evictions{pods: map[string]*corev1.Pod{}, replicas: replicas, evicted: map[string]int{}}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	list, err := cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for i := range list.Items {
		e.pods[list.Items[i].Name] = &list.Items[i]
	}
	w, err := cs.CoreV1().Pods(ns).Watch(ctx, metav1.ListOptions{ResourceVersion: list.ResourceVersion})
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		for ev := range w.ResultChan() {
			if pod, ok := ev.Object.(*corev1.Pod); ok {
				e.observe(ev.Type, pod)
			}
		}
	}()
	return e
}

func ownerName(p *corev1.Pod) string {
	if ref := metav1.GetControllerOf(p); ref != nil {
		return ref.Name
	}
	return ""
}

func (e *evictions) observe(typ watch.EventType, pod *corev1.Pod) {
	e.mu.Lock()
	defer e.mu.Unlock()
	prev := e.pods[pod.Name]
	if prev != nil && prev.UID != pod.UID {
		prev = nil // a StatefulSet's new pod of the same name
	}
	goingAway := (typ == watch.Deleted && (prev == nil || prev.DeletionTimestamp == nil)) ||
		(typ != watch.Deleted && pod.DeletionTimestamp != nil && (prev == nil || prev.DeletionTimestamp == nil))
	owner := ownerName(pod)
	if goingAway && workload.ProxyImage(pod) == oldProxy && e.replicas[owner] > 0 {
		e.evicted[owner]++
		others := 0
		for name, p := range e.pods {
			if name == pod.Name || ownerName(p) != owner {
				continue
			}
			if p.DeletionTimestamp != nil || !workload.PodReady(p) {
				e.violations = append(e.violations, fmt.Sprintf("%s went while %s was not ready or going away too", pod.Name, name))
				continue
			}
			others++
		}
		if others < e.replicas[owner]-1 {
			e.violations = append(e.violations, fmt.Sprintf("%s went while only %d other pods of %s were ready", pod.Name, others, owner))
		}
	}
	if typ == watch.Deleted {
		delete(e.pods, pod.Name)
		return
	}
	e.pods[pod.Name] = pod
}

func (e *evictions) snapshot() (map[string]int, []string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := map[string]int{}
	for k, v := range e.evicted {
		out[k] = v
	}
	return out, append([]string(nil), e.violations...)
}

// TestEvictionPath: workloads a template change does not roll (an OnDelete
// StatefulSet, an OnDelete DaemonSet, an owner-less ReplicaSet and a
// ReplicationController) are restarted by evicting their outdated pods one
// at a time. A ReplicaSet whose PodDisruptionBudget allows no disruption is
// reported blocked once its eviction has been refused for
// EvictionBlockedAfter, while the rest of the wave completes; once the
// budget allows, it finishes. A namespace opted out by annotation is left
// alone.
func TestEvictionPath(t *testing.T) {
	cluster.InstallIstioCRD(t)
	cs := cluster.Current().Clientset()
	olderIstio(t)
	opNS := cluster.Namespace(t, nil)

	mesh := cluster.MeshNamespace(t)
	workloads := []evictionWorkload{
		{"StatefulSet", "sts", 2}, {"DaemonSet", "ds", nodes}, {"ReplicaSet", "rs", 2}, {"ReplicationController", "rc", 2},
	}
	replicas := map[string]int{}
	meshPods := 0
	for _, w := range workloads {
		createEvictionWorkload(t, cs, mesh, w)
		replicas[w.name] = w.pods
		meshPods += w.pods
	}
	// A ReplicaSet whose budget allows no disruption, in its own namespace
	// so that the others' pods can be counted apart.
	guardedNS := cluster.MeshNamespace(t)
	guarded := evictionWorkload{"ReplicaSet", "guarded", 1}
	createEvictionWorkload(t, cs, guardedNS, guarded)
	if _, err := cs.PolicyV1().PodDisruptionBudgets(guardedNS).Create(t.Context(), &policyv1.PodDisruptionBudget{
		ObjectMeta: metav1.ObjectMeta{Name: "no-disruption"},
		Spec: policyv1.PodDisruptionBudgetSpec{MinAvailable: ptr.To(intstr.FromInt32(1)),
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": guarded.name}}},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	// An opted-out namespace.
	optOut := cluster.MeshNamespace(t)
	if _, err := cs.CoreV1().Namespaces().Patch(t.Context(), optOut, types.MergePatchType,
		[]byte(fmt.Sprintf(`{"metadata":{"annotations":{%q:"true"}}}`, proxysidecar.AnnotationExclude)), metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	excluded := evictionWorkload{"StatefulSet", "sts-out", 1}
	createEvictionWorkload(t, cs, optOut, excluded)

	waitAllOn(t, cs, mesh, oldProxy, meshPods)
	waitAllOn(t, cs, guardedNS, oldProxy, 1)
	waitAllOn(t, cs, optOut, oldProxy, 1)
	watched := watchEvictions(t, cs, mesh, replicas)

	operatortest.Start(t, opNS)
	t.Cleanup(func() { operatortest.WaitUninstalled(t, timeout) })
	operatortest.CreateIstio(t, opNS, "default", v1alpha2.IstioSpec{})
	t.Cleanup(func() { operatortest.DeleteIstio(t, timeout, opNS, "default") })

	// The guarded ReplicaSet is restarted (its annotation written) just
	// before its first eviction is refused.
	var guardedRestarted time.Time
	cluster.WaitFor(t, timeout, "the guarded ReplicaSet restarted", func(ctx context.Context) (bool, error) {
		v, err := workloadAnnotation(ctx, cs, guardedNS, guarded)
		if err != nil || v == "" {
			return false, err
		}
		guardedRestarted = time.Now()
		return true, nil
	})

	blockedWhy := guardedNS + "/guarded (eviction of pod guarded-"
	var blockedAt time.Time
	var istio *v1alpha2.Istio
	cluster.WaitFor(t, proxysidecar.EvictionBlockedAfter+timeout, "the guarded ReplicaSet reported blocked", func(ctx context.Context) (bool, error) {
		i, err := operatortest.Client(t).OperatorV1alpha2().Istios(opNS).Get(ctx, "default", metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		c := meta.FindStatusCondition(i.Status.Conditions, v1alpha2.ConditionProxySidecarRestartSucceeded)
		if c == nil || c.Reason != v1alpha2.ReasonProxySidecarRestartPartiallySucceeded || !strings.Contains(c.Message, blockedWhy) {
			return false, fmt.Errorf("condition is %+v", c)
		}
		blockedAt, istio = time.Now(), i
		return true, nil
	})
	took := blockedAt.Sub(guardedRestarted)
	t.Logf("guarded ReplicaSet reported blocked %v after its restart (bound %v)", took.Round(time.Second), proxysidecar.EvictionBlockedAfter)
	// Both ends are seen by polling; the first refusal follows the restart
	// within moments.
	if took < proxysidecar.EvictionBlockedAfter-5*time.Second || took > proxysidecar.EvictionBlockedAfter+time.Minute {
		t.Errorf("reported blocked %v after the restart, want within a minute after %v", took, proxysidecar.EvictionBlockedAfter)
	}
	want, err := istioclient.DesiredProxy(&istio.Spec)
	if err != nil {
		t.Fatal(err)
	}

	t.Run("the rest of the wave completed, one pod at a time", func(t *testing.T) {
		// A blocked workload is reported only when nothing else waits or rolls.
		got, err := proxyImages(t.Context(), cs, mesh)
		if err != nil {
			t.Fatal(err)
		}
		if got[want.Image] != meshPods || len(got) != 1 {
			t.Errorf("pods by proxy image %v, want all %d on %s", got, meshPods, want.Image)
		}
		for _, w := range workloads {
			if v, err := workloadAnnotation(t.Context(), cs, mesh, w); err != nil || v != want.Hash() {
				t.Errorf("%s %s restarted for %q (%v), want %q", w.kind, w.name, v, err, want.Hash())
			}
		}
		evicted, violations := watched.snapshot()
		for _, w := range workloads {
			if evicted[w.name] != w.pods {
				t.Errorf("%s %s: %d old pods went, want %d", w.kind, w.name, evicted[w.name], w.pods)
			}
		}
		for _, v := range violations {
			t.Errorf("not one at a time: %s", v)
		}
		if !operatortest.HasEventOn(t, "ReplicaSet", guardedNS, guarded.name, "ProxySidecarEvictionBlocked") {
			t.Error("no ProxySidecarEvictionBlocked Event on the guarded ReplicaSet")
		}
		if got, _ := proxyImages(t.Context(), cs, guardedNS); got[oldProxy] != 1 {
			t.Errorf("guarded pods by proxy image %v, want its pod untouched", got)
		}
	})

	t.Run("the opted-out namespace is left alone", func(t *testing.T) {
		got, err := proxyImages(t.Context(), cs, optOut)
		if err != nil {
			t.Fatal(err)
		}
		if got[oldProxy] != 1 || len(got) != 1 {
			t.Errorf("opted-out pods by proxy image %v, want its pod on %s", got, oldProxy)
		}
		if v, err := workloadAnnotation(t.Context(), cs, optOut, excluded); err != nil || v != "" {
			t.Errorf("opted-out StatefulSet restarted for %q (%v)", v, err)
		}
		c := meta.FindStatusCondition(istio.Status.Conditions, v1alpha2.ConditionProxySidecarRestartSucceeded)
		if !strings.Contains(c.Message, "1 excluded") {
			t.Errorf("condition message %q does not count the excluded workload", c.Message)
		}
	})

	t.Run("once the budget allows, the blocked workload finishes", func(t *testing.T) {
		if err := cs.PolicyV1().PodDisruptionBudgets(guardedNS).Delete(t.Context(), "no-disruption", metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		waitCondition(t, opNS, v1alpha2.ReasonProxySidecarRestartSucceeded, nil)
		waitAllOn(t, cs, guardedNS, want.Image, 1)
	})
}

// TestRateChangeAppliesAtOnce: with the slowest rate the schema allows,
// workloads wait for their turn without holding any worker; changing the
// rate to a fast one restarts the waiting ones within a second of the
// change being installed, not when the slow rate would have let them go.
func TestRateChangeAppliesAtOnce(t *testing.T) {
	cluster.InstallIstioCRD(t)
	cs := cluster.Current().Clientset()
	olderIstio(t)
	opNS := cluster.Namespace(t, nil)
	mesh := cluster.MeshNamespace(t)
	const n = 4
	for i := range n {
		createDeployment(t, cs, mesh, cluster.NewDeployment(fmt.Sprintf("slow-%d", i), 1))
	}
	waitAllOn(t, cs, mesh, oldProxy, n)
	watched := watchRestarts(t, cs, mesh)

	// The schema refuses a rate below the minimum, naming the field.
	_, err := operatortest.Client(t).OperatorV1alpha2().Istios(opNS).Create(t.Context(), &v1alpha2.Istio{
		ObjectMeta: metav1.ObjectMeta{Name: "too-slow"},
		Spec:       v1alpha2.IstioSpec{ProxyRestart: &v1alpha2.ProxyRestart{RestartsPerSecond: v1alpha2.NewQuantity("1m")}},
	}, metav1.CreateOptions{})
	if err == nil || !strings.Contains(err.Error(), "spec.proxyRestart.restartsPerSecond") {
		t.Fatalf("a rate of 1m: %v, want rejected naming spec.proxyRestart.restartsPerSecond", err)
	}

	operatortest.Start(t, opNS)
	t.Cleanup(func() { operatortest.WaitUninstalled(t, timeout) })
	// One restart every 10 s: the first goes at once, the others wait.
	operatortest.CreateIstio(t, opNS, "default", v1alpha2.IstioSpec{
		ProxyRestart: &v1alpha2.ProxyRestart{RestartsPerSecond: v1alpha2.NewQuantity("100m")}})
	t.Cleanup(func() { operatortest.DeleteIstio(t, timeout, opNS, "default") })
	cluster.WaitFor(t, timeout, "the first restart", func(context.Context) (bool, error) {
		seen, _, _ := watched.snapshot()
		return len(seen) >= 1, nil
	})
	seen, _, _ := watched.snapshot()
	if len(seen) != 1 {
		t.Fatalf("%d workloads restarted at once at 0.1/s, want 1", len(seen))
	}

	patchSpec(t, opNS, `{"proxyRestart":{"restartsPerSecond":"50"}}`)
	// The new rate applies once the installation is current at the new
	// generation; from then on the waiting workloads go at once.
	var installed time.Time
	cluster.WaitFor(t, timeout, "Installed at the new generation", func(ctx context.Context) (bool, error) {
		i, err := operatortest.Client(t).OperatorV1alpha2().Istios(opNS).Get(ctx, "default", metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		c := meta.FindStatusCondition(i.Status.Conditions, v1alpha2.ConditionInstalled)
		if c == nil || c.Status != metav1.ConditionTrue || c.ObservedGeneration != i.Generation {
			return false, fmt.Errorf("Installed is %+v", c)
		}
		installed = time.Now()
		return true, nil
	})
	cluster.WaitFor(t, timeout, "every workload restarted", func(context.Context) (bool, error) {
		seen, _, _ := watched.snapshot()
		return len(seen) == n, nil
	})
	_, times, _ := watched.snapshot()
	last := times[len(times)-1]
	t.Logf("the last of %d restarts %v after the new rate was installed", n, last.Sub(installed).Round(10*time.Millisecond))
	// At 0.1/s the last of the three waiting would go 30 s after the first.
	if d := last.Sub(installed); d > time.Second {
		t.Errorf("the waiting workloads restarted %v after the new rate was installed, want within a second", d)
	}
	waitCondition(t, opNS, v1alpha2.ReasonProxySidecarRestartSucceeded, nil)
}
