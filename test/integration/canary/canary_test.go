// Package canary tests canary upgrades (spec.upgradeStrategy: Canary)
// against a real API server with the real istiod behind each revision: the
// previous minor installed as the default revision, the operator's version
// installed beside it as revision 1-31, the workloads moved over and the old
// control plane removed, or, rolled back, moved back.
package canary

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"

	v1alpha2 "github.com/meshkeeper/istio-operator/pkg/apis/operator/v1alpha2"
	"github.com/meshkeeper/istio-operator/pkg/controllers/proxysidecar"
	"github.com/meshkeeper/istio-operator/pkg/istioclient"
	"github.com/meshkeeper/istio-operator/pkg/operator"
	"github.com/meshkeeper/istio-operator/test/cluster"
	"github.com/meshkeeper/istio-operator/test/operatortest"
)

const (
	timeout    = 3 * time.Minute
	oldVersion = "1.30.2"
	newRev     = "1-31"
	oldProxy   = "docker.io/istio/proxyv2:" + oldVersion
	newProxy   = "docker.io/istio/proxyv2:" + istioclient.Version
)

func TestMain(m *testing.M) {
	cluster.Main(m, cluster.Options{Nodes: 2})
}

// mesh is the workloads of a test: a platform namespace's and a
// customer's, injected by the old revision before the operator starts.
type mesh struct {
	cs             kubernetes.Interface
	platform, user string
	workloads      map[string]string // "namespace/name" -> namespace
	restarts       *restarts
	pods           int
	opNS           string

	// What the control plane watch saw.
	watchMu           sync.Mutex
	istiodNames       map[string]bool // the ready istiod Deployments
	bothRan           bool
	oldRemovedAt      time.Time
	oldPodsAtDeletion int
	// oldRemoved is closed when the old istiod is deleted.
	oldRemoved chan struct{}
}

// setUp installs the previous minor as the default revision with the real
// istiod behind it, stands a real istiod behind revision 1-31 for when it
// is installed, and creates injected workloads.
func setUp(t *testing.T, users int) *mesh {
	t.Helper()
	cluster.InstallIstioCRD(t)
	operatortest.InstallIstio(t, oldVersion)
	cluster.WaitIstiod(t, timeout)
	if _, err := cluster.Current().SuperviseRevision(newRev); err != nil {
		t.Fatal(err)
	}
	m := &mesh{cs: cluster.Current().Clientset(), workloads: map[string]string{}, istiodNames: map[string]bool{}, oldRemoved: make(chan struct{})}
	m.platform = cluster.MeshNamespace(t)
	m.user = cluster.MeshNamespace(t)
	create := func(ns, name string) {
		if _, err := m.cs.AppsV1().Deployments(ns).Create(t.Context(), cluster.NewDeployment(name, 1), metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		m.workloads[ns+"/"+name] = ns
		m.pods++
	}
	create(m.platform, "platform")
	for i := range users {
		create(m.user, fmt.Sprintf("app-%d", i))
	}
	m.waitAllOn(t, oldProxy, istioclient.DefaultRevision)
	m.restarts = watchRestarts(t, m.cs, m.platform, m.user)
	m.watchControlPlane(t)
	return m
}

// start runs the operator and creates the resource with spec.
func (m *mesh) start(t *testing.T, spec v1alpha2.IstioSpec) {
	t.Helper()
	m.opNS = cluster.Namespace(t, nil)
	operatortest.StartWith(t, m.opNS, operatortest.Options{Configure: func(o *operator.Options) {
		o.PlatformNamespaces = []string{m.platform}
	}})
	t.Cleanup(func() { operatortest.WaitUninstalled(t, timeout) })
	operatortest.CreateIstio(t, m.opNS, "default", spec)
	t.Cleanup(func() { operatortest.DeleteIstio(t, timeout, m.opNS, "default") })
}

// startSlowMove starts a canary upgrade whose move is slow enough to catch
// in its middle, and waits until moved workloads are restarted onto 1-31.
func (m *mesh) startSlowMove(t *testing.T, moved int) {
	t.Helper()
	rate := resource.MustParse("200m")
	m.start(t, v1alpha2.IstioSpec{UpgradeStrategy: v1alpha2.UpgradeStrategyCanary,
		ProxyRestart: &v1alpha2.ProxyRestart{RestartsPerSecond: &rate}})
	m.waitMoved(t, moved)
}

// waitMoved waits until n workloads were restarted for the upgrade (or its
// rollback).
func (m *mesh) waitMoved(t *testing.T, n int) {
	t.Helper()
	cluster.WaitFor(t, timeout, fmt.Sprintf("%d workloads restarted for the upgrade", n), func(context.Context) (bool, error) {
		return m.restarts.moved() >= n, nil
	})
}

// waitAllOn waits until every live pod of the workloads is ready, runs
// image and was injected by revision.
func (m *mesh) waitAllOn(t *testing.T, image, revision string) {
	t.Helper()
	waitPodsOn(t, m.cs, m.pods, image, revision, m.platform, m.user)
}

// waitPodsOn waits until the namespaces hold n live pods, each ready, with
// the proxy image ("" for none) injected by revision.
func waitPodsOn(t *testing.T, cs kubernetes.Interface, n int, image, revision string, namespaces ...string) {
	t.Helper()
	cluster.WaitFor(t, timeout, fmt.Sprintf("%d pods on %q from revision %q", n, image, revision), func(ctx context.Context) (bool, error) {
		got := map[string]int{}
		for _, ns := range namespaces {
			pods, err := cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
			if err != nil {
				return false, err
			}
			for _, p := range pods.Items {
				if p.DeletionTimestamp != nil {
					continue
				}
				image := ""
				if c := cluster.Proxy(&p); c != nil {
					image = c.Image
				}
				got[fmt.Sprintf("%s from %s ready %v", image, p.Annotations["istio.io/rev"], ready(&p))]++
			}
		}
		if want := fmt.Sprintf("%s from %s ready true", image, revision); got[want] != n || len(got) != 1 {
			return false, fmt.Errorf("pods: %v", got)
		}
		return true, nil
	})
}

func ready(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady && c.Status == corev1.ConditionTrue {
			return true
		}
	}
	return false
}

// watchControlPlane records whether both istiods ran at once, when the
// old one was deleted, and when the last pod of the old revision went.
func (m *mesh) watchControlPlane(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	deployments, err := m.cs.AppsV1().Deployments(istioclient.Namespace).Watch(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		for ev := range deployments.ResultChan() {
			d, ok := ev.Object.(*appsv1.Deployment)
			if !ok || !strings.HasPrefix(d.Name, "istiod") {
				continue
			}
			m.watchMu.Lock()
			switch ev.Type {
			case watch.Deleted:
				delete(m.istiodNames, d.Name)
				if d.Name == "istiod" && m.oldRemovedAt.IsZero() {
					m.oldRemovedAt = time.Now()
					close(m.oldRemoved)
					m.oldPodsAtDeletion = m.oldPods(ctx)
				}
			default:
				if d.Status.ReadyReplicas > 0 {
					m.istiodNames[d.Name] = true
				}
			}
			if m.istiodNames["istiod"] && m.istiodNames["istiod-"+newRev] {
				m.bothRan = true
			}
			m.watchMu.Unlock()
		}
	}()
}

// oldPods counts the live pods of the workloads the old revision injected.
func (m *mesh) oldPods(ctx context.Context) int {
	n := 0
	for _, ns := range []string{m.platform, m.user} {
		pods, err := m.cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			return -1
		}
		for _, p := range pods.Items {
			if p.DeletionTimestamp == nil && p.Annotations["istio.io/rev"] == istioclient.DefaultRevision {
				n++
			}
		}
	}
	return n
}

// restarts records each change of the workloads' restart annotation.
type restarts struct {
	mu   sync.Mutex
	seen map[string][]string // "namespace/name" -> restarted-for values, in order
}

func watchRestarts(t *testing.T, cs kubernetes.Interface, namespaces ...string) *restarts {
	t.Helper()
	r := &restarts{seen: map[string][]string{}}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	for _, ns := range namespaces {
		w, err := cs.AppsV1().Deployments(ns).Watch(ctx, metav1.ListOptions{})
		if err != nil {
			t.Fatal(err)
		}
		go func() {
			for ev := range w.ResultChan() {
				d, ok := ev.Object.(*appsv1.Deployment)
				if !ok {
					continue
				}
				v, ok := d.Spec.Template.Annotations[proxysidecar.AnnotationRestartedFor]
				if !ok {
					continue
				}
				k := d.Namespace + "/" + d.Name
				r.mu.Lock()
				if s := r.seen[k]; len(s) == 0 || s[len(s)-1] != v {
					r.seen[k] = append(s, v)
				}
				r.mu.Unlock()
			}
		}()
	}
	return r
}

func (r *restarts) of(k string) []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.seen[k]...)
}

func (r *restarts) moved() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.seen)
}

func canaryCondition(i *v1alpha2.Istio) *metav1.Condition {
	return meta.FindStatusCondition(i.Status.Conditions, v1alpha2.ConditionCanaryUpgrade)
}

func TestCanaryUpgrade(t *testing.T) {
	m := setUp(t, 4)
	m.start(t, v1alpha2.IstioSpec{UpgradeStrategy: v1alpha2.UpgradeStrategyCanary})

	i := operatortest.WaitCondition(t, timeout, m.opNS, "default", v1alpha2.ConditionCanaryUpgrade, v1alpha2.ReasonCanaryUpgradeSucceeded, nil)
	m.waitAllOn(t, newProxy, newRev)
	i = operatortest.WaitForState(t, timeout, m.opNS, "default", v1alpha2.StateReady, v1alpha2.ConditionReady, metav1.ConditionTrue, v1alpha2.ReasonReconcileSucceeded)

	if i.Status.InstalledVersion != istioclient.Version || i.Status.Revision != newRev || i.Status.Upgrade != nil {
		t.Errorf("status: installed %s, revision %q, upgrade %+v", i.Status.InstalledVersion, i.Status.Revision, i.Status.Upgrade)
	}
	if c := canaryCondition(i); c.Status != metav1.ConditionTrue || !strings.Contains(c.Message, "Upgraded from Istio 1.30.2 (revision default) to Istio 1.31.1 (revision 1-31)") {
		t.Errorf("CanaryUpgrade %+v", c)
	}
	for k := range m.workloads {
		if got := m.restarts.of(k); len(got) != 1 {
			t.Errorf("%s restarted for %v, want exactly once", k, got)
		}
	}
	m.watchMu.Lock()
	bothRan, removedAt, left := m.bothRan, m.oldRemovedAt, m.oldPodsAtDeletion
	m.watchMu.Unlock()
	if !bothRan {
		t.Error("the two control planes never ran side by side")
	}
	if removedAt.IsZero() || left != 0 {
		t.Errorf("old istiod removed at %v with %d pods of its revision live", removedAt, left)
	}
	if _, err := m.cs.AppsV1().Deployments(istioclient.Namespace).Get(t.Context(), "istiod", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("the old istiod is still there: %v", err)
	}
	tag, err := m.cs.AdmissionregistrationV1().MutatingWebhookConfigurations().Get(t.Context(), istioclient.TagWebhookName, metav1.GetOptions{})
	if err != nil || tag.Labels[istioclient.RevisionLabel] != newRev {
		t.Errorf("the default revision tag: %v, labels %v", err, tag.GetLabels())
	}
	events := strings.Join(operatortest.Events(t, m.opNS, "default"), "\n")
	for _, reason := range []string{v1alpha2.ReasonCanaryInstallingRevision, v1alpha2.ReasonCanaryMovingWorkloads,
		v1alpha2.ReasonCanaryRemovingRevision, v1alpha2.ReasonCanaryUpgradeSucceeded, v1alpha2.EventRevisionRemovalSucceeded} {
		if !strings.Contains(events, reason) {
			t.Errorf("no %s Event in\n%s", reason, events)
		}
	}

	// A namespace labelled with the new revision's own name joins the mesh:
	// its pods without a sidecar are restarted onto revision 1-31, once.
	late := cluster.Namespace(t, nil)
	joins := watchRestarts(t, m.cs, late)
	if _, err := m.cs.AppsV1().Deployments(late).Create(t.Context(), cluster.NewDeployment("joiner", 1), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitPodsOn(t, m.cs, 1, "", "", late)
	label := []byte(`{"metadata":{"labels":{"istio.io/rev":"` + newRev + `"}}}`)
	if _, err := m.cs.CoreV1().Namespaces().Patch(t.Context(), late, types.MergePatchType, label, metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	waitPodsOn(t, m.cs, 1, newProxy, newRev, late)
	if got := joins.of(late + "/joiner"); len(got) != 1 {
		t.Errorf("the joiner restarted for %v, want once", got)
	}
}

func TestCanaryRollback(t *testing.T) {
	m := setUp(t, 5)
	m.startSlowMove(t, 1)
	patch := []byte(`{"spec":{"canaryRollback":true}}`)
	if _, err := operatortest.Client(t).OperatorV1alpha2().Istios(m.opNS).Patch(t.Context(), "default", types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	forward := map[string][]string{}
	for k := range m.workloads {
		forward[k] = m.restarts.of(k)
	}

	i := operatortest.WaitCondition(t, timeout, m.opNS, "default", v1alpha2.ConditionCanaryUpgrade, v1alpha2.ReasonCanaryRolledBack, nil)
	m.waitAllOn(t, oldProxy, istioclient.DefaultRevision)
	if c := meta.FindStatusCondition(i.Status.Conditions, v1alpha2.ConditionReady); c == nil || c.Reason != v1alpha2.ReasonCanaryRolledBack {
		t.Errorf("Ready %+v, want the held rollback", c)
	}
	movedBack := 0
	for k := range m.workloads {
		got := m.restarts.of(k)
		switch {
		case len(forward[k]) == 0 && len(got) <= 1:
			// Not moved before the rollback (at most its forward restart
			// was in flight, and that one came back on the old revision).
		case len(forward[k]) == 1 && len(got) == 2 && got[0] != got[1]:
			movedBack++
		default:
			t.Errorf("%s restarted for %v (forward %v): a moved workload comes back exactly once", k, got, forward[k])
		}
	}
	if movedBack == 0 {
		t.Error("no workload was moved back")
	}
	if _, err := m.cs.AppsV1().Deployments(istioclient.Namespace).Get(t.Context(), "istiod-"+newRev, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("istiod-1-31 is still there: %v", err)
	}
	if _, err := m.cs.AppsV1().Deployments(istioclient.Namespace).Get(t.Context(), "istiod", metav1.GetOptions{}); err != nil {
		t.Errorf("the old istiod: %v", err)
	}
	gw := operatortest.Image(t, "Deployment", istioclient.Namespace, istioclient.IngressGatewayName, "istio-proxy")
	if gw != oldProxy {
		t.Errorf("the ingress gateway runs %s after the rollback, want %s", gw, oldProxy)
	}
	events := strings.Join(operatortest.Events(t, m.opNS, "default"), "\n")
	for _, reason := range []string{v1alpha2.ReasonCanaryRollingBack, v1alpha2.ReasonCanaryRemovingNewRevision, v1alpha2.ReasonCanaryRolledBack} {
		if !strings.Contains(events, reason) {
			t.Errorf("no %s Event in\n%s", reason, events)
		}
	}
}

// TestUninstallDuringCanaryUpgrade deletes the resource in the middle of
// the move: both control planes go, and the sidecars of both revisions are
// taken away, each workload restarted without them exactly once.
func TestUninstallDuringCanaryUpgrade(t *testing.T) {
	m := setUp(t, 5)
	m.startSlowMove(t, 2)
	if n := m.restarts.moved(); n == len(m.workloads) {
		t.Fatalf("all %d workloads moved before the deletion: the test needs some on each revision", n)
	}
	operatortest.DeleteIstio(t, timeout, m.opNS, "default")

	cluster.WaitFor(t, timeout, "every pod of the workloads without a sidecar", func(ctx context.Context) (bool, error) {
		for _, ns := range []string{m.platform, m.user} {
			pods, err := m.cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
			if err != nil {
				return false, err
			}
			for _, p := range pods.Items {
				if p.DeletionTimestamp == nil && cluster.Proxy(&p) != nil {
					return false, fmt.Errorf("%s/%s has a sidecar of revision %q", ns, p.Name, p.Annotations["istio.io/rev"])
				}
			}
		}
		return true, nil
	})
	removed := 0
	for k := range m.workloads {
		// A move in flight at the deletion may have ended without a
		// sidecar (the injector gone): then it needed no second restart.
		got := m.restarts.of(k)
		if len(got) > 2 || (len(got) == 2 && got[0] == got[1]) {
			t.Errorf("%s restarted for %v; want at most its move, then once without a sidecar", k, got)
		}
		if slices.Contains(got, "no-sidecar") {
			removed++
		}
	}
	if removed < 2 {
		t.Errorf("%d workloads restarted without their sidecars, want those of both revisions", removed)
	}
	for _, name := range []string{"istiod", "istiod-" + newRev} {
		if _, err := m.cs.AppsV1().Deployments(istioclient.Namespace).Get(t.Context(), name, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
			t.Errorf("%s after the uninstall: %v", name, err)
		}
	}
}
