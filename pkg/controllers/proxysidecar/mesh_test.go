package proxysidecar

import (
	"slices"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	v1alpha2 "github.com/meshkeeper/istio-operator/pkg/apis/operator/v1alpha2"
	"github.com/meshkeeper/istio-operator/pkg/controllers/controllertest"
)

// TestSelected follows the webhook selectors Istio 1.31 installs for the
// default revision (istio-sidecar-injector: rev.namespace, rev.object,
// namespace, object) and the injector's own checks.
func TestSelected(t *testing.T) {
	for _, tc := range []struct {
		name        string
		nsName      string
		ns, labels  map[string]string
		annotations map[string]string
		hostNetwork bool
		want        bool
	}{
		{name: "injection enabled", ns: map[string]string{"istio-injection": "enabled"}, want: true},
		{name: "injection disabled", ns: map[string]string{"istio-injection": "disabled"}},
		{name: "injection disabled, pod opts in", ns: map[string]string{"istio-injection": "disabled"}, labels: map[string]string{"sidecar.istio.io/inject": "true"}},
		{name: "injection enabled, pod opts out", ns: map[string]string{"istio-injection": "enabled"}, labels: map[string]string{"sidecar.istio.io/inject": "false"}},
		{name: "injection enabled wins over another revision", ns: map[string]string{"istio-injection": "enabled", "istio.io/rev": "canary"}, want: true},
		{name: "injection enabled, pod labelled for another revision", ns: map[string]string{"istio-injection": "enabled"}, labels: map[string]string{"istio.io/rev": "canary"}, want: true},
		{name: "namespace revision default", ns: map[string]string{"istio.io/rev": "default"}, want: true},
		{name: "namespace revision canary", ns: map[string]string{"istio.io/rev": "canary"}},
		{name: "namespace revision canary, pod opts in", ns: map[string]string{"istio.io/rev": "canary"}, labels: map[string]string{"sidecar.istio.io/inject": "true"}},
		{name: "no labels"},
		{name: "no labels, pod opts in", labels: map[string]string{"sidecar.istio.io/inject": "true"}, want: true},
		{name: "no labels, pod revision default", labels: map[string]string{"istio.io/rev": "default"}, want: true},
		{name: "no labels, pod revision default, opts out", labels: map[string]string{"istio.io/rev": "default", "sidecar.istio.io/inject": "false"}},
		{name: "no labels, pod opts in with another revision", labels: map[string]string{"istio.io/rev": "canary", "sidecar.istio.io/inject": "true"}},
		{name: "annotation opts out", ns: map[string]string{"istio-injection": "enabled"}, annotations: map[string]string{"sidecar.istio.io/inject": "false"}},
		{name: "label wins over annotation", ns: map[string]string{"istio-injection": "enabled"},
			labels: map[string]string{"sidecar.istio.io/inject": "true"}, annotations: map[string]string{"sidecar.istio.io/inject": "false"}, want: true},
		{name: "annotation alone does not select", annotations: map[string]string{"sidecar.istio.io/inject": "true"}},
		{name: "host network", ns: map[string]string{"istio-injection": "enabled"}, hostNetwork: true},
		{name: "kube-system", nsName: "kube-system", ns: map[string]string{"istio-injection": "enabled"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			name := tc.nsName
			if name == "" {
				name = "ns"
			}
			ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: tc.ns}}
			pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: name, Labels: tc.labels, Annotations: tc.annotations},
				Spec: corev1.PodSpec{HostNetwork: tc.hostNetwork}}
			if got := selected(ns, pod); got != tc.want {
				t.Errorf("selected = %v, want %v", got, tc.want)
			}
			// What the cache keeps decides alike.
			trimmed, _ := trimPod(pod)
			if got := selected(ns, trimmed.(*corev1.Pod)); got != tc.want {
				t.Errorf("selected after trimming = %v, want %v", got, tc.want)
			}
		})
	}
}

// bare adds a ready pod without a sidecar to the cache.
func (f *fixture) bare(ns, name string, owners []metav1.OwnerReference, labels map[string]string) *corev1.Pod {
	f.t.Helper()
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, UID: types.UID(ns + "/" + name),
		OwnerReferences: owners, Labels: labels, CreationTimestamp: metav1.NewTime(f.clock.Now().Add(-time.Hour))}}
	pod.Spec.Containers = []corev1.Container{{Name: "app", Image: "app"}}
	pod.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}}
	f.add(f.pods, pod)
	return pod
}

func (f *fixture) namespace(name string, labels map[string]string) {
	f.t.Helper()
	f.add(f.nss, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels}})
}

// TestJoinAndLeave: a workload without sidecars that the injector selects
// joins, one with sidecars it no longer selects leaves, each restarted once
// with its own record; a workload whose template carries the sidecar
// (kube-inject) is judged on its proxy only; one in a namespace the cache
// does not know, and pods nothing selects stay as they are.
func TestJoinAndLeave(t *testing.T) {
	f := newFixture(t, v1alpha2.RestartPacing{})
	f.namespace("mesh", map[string]string{"istio-injection": "enabled"})
	f.namespace("out", nil)
	f.namespace("plain", nil)
	join := f.deploy("mesh", "join", nil)
	f.bare("mesh", "join-0", controllertest.Owned("ReplicaSet", "apps/v1", "join-1"), nil)
	optIn := f.deploy("plain", "opt-in", nil)
	f.bare("plain", "opt-in-0", controllertest.Owned("ReplicaSet", "apps/v1", "opt-in-1"), map[string]string{"sidecar.istio.io/inject": "true"})
	leave := f.deploy("out", "leave", nil, f.want)
	kubeInjected := f.deploy("out", "kube-injected", func(d *appsv1.Deployment) {
		d.Spec.Template.Annotations = map[string]string{annotationSidecarStatus: "{}"}
	}, f.want)
	// An owner-less ReplicaSet whose template carries the sidecar, as the
	// cache keeps it.
	rs := &appsv1.ReplicaSet{ObjectMeta: metav1.ObjectMeta{Name: "kube-injected-rs", Namespace: "out", ResourceVersion: "1"}}
	rs.Spec.Template.Annotations = map[string]string{annotationSidecarStatus: `{"containers":["istio-proxy"]}`}
	trimmedRS, _ := trimReplicaSet(rs)
	f.add(f.rss, trimmedRS)
	f.podIn("out", "kube-injected-rs-0", controllertest.Owned("ReplicaSet", "apps/v1", "kube-injected-rs"), f.want)
	kubeInjectedRS := Key{Kind: KindReplicaSet, Namespace: "out", Name: "kube-injected-rs"}
	pinned := f.deploy("out", "pinned", func(d *appsv1.Deployment) {
		d.Spec.Template.Annotations = map[string]string{annotationSidecarStatus: "{}"}
	}, f.old)
	f.deploy("ghost", "unknown-namespace", nil, f.want)
	f.deploy("plain", "outside", nil)
	f.bare("plain", "outside-0", controllertest.Owned("ReplicaSet", "apps/v1", "outside-1"), nil)
	f.bare("mesh", "bare", nil, nil)

	tg := f.c.target.Load()
	n := f.c.count(tg)
	if got, want := n.waiting, []Key{join, leave, optIn, pinned}; !sameKeys(got, want) {
		t.Errorf("waiting %v, want %v", got, want)
	}
	if n.moves[changeJoin] != 2 || n.moves[changeLeave] != 1 || n.outdatedPods != 1 {
		t.Errorf("moves %v, outdated pods %d; want 2 joining, 1 leaving, the pinned one outdated", n.moves, n.outdatedPods)
	}
	if len(n.manual) != 1 || !strings.HasPrefix(n.manual[0], "mesh/bare") {
		t.Errorf("manual %v, want the bare pod", n.manual)
	}
	cond, _ := n.condition(tg)
	if !strings.Contains(cond.Message, "2 joining the mesh") || !strings.Contains(cond.Message, "1 leaving the mesh") {
		t.Errorf("condition message %q, want the moves counted", cond.Message)
	}

	for _, k := range []Key{join, optIn, leave, kubeInjected, kubeInjectedRS, pinned} {
		f.sync(k)
	}
	patched, _ := f.counts()
	if want := []string{"deployments/join", "deployments/opt-in", "deployments/leave", "deployments/pinned"}; strings.Join(patched, ",") != strings.Join(want, ",") {
		t.Fatalf("patched %v, want %v", patched, want)
	}
	for i, token := range []string{tg.hash, tg.hash, noSidecar, tg.hash} {
		if !strings.Contains(f.bodies[i], `"`+AnnotationRestartedFor+`":"`+token+`"`) {
			t.Errorf("restart of %s: %s, want restarted-for %s", patched[i], f.bodies[i], token)
		}
	}

	// Restarted, and seen so by the cache: never again for the same move.
	f.changeDeploymentIn("mesh", "join", func(d *appsv1.Deployment) { d.Spec.Template.Annotations = restartedFor(tg.hash, f.clock.Now()) })
	f.changeDeploymentIn("out", "leave", func(d *appsv1.Deployment) { d.Spec.Template.Annotations = restartedFor(noSidecar, f.clock.Now()) })
	f.sync(join)
	f.sync(leave)
	if again, _ := f.counts(); len(again) != len(patched) {
		t.Errorf("patched again: %v", again[len(patched):])
	}
	// Back in the mesh: a new move, one more restart.
	f.namespaceLabels("out", map[string]string{"istio-injection": "enabled"})
	f.sync(leave)
	if again, _ := f.counts(); len(again) != len(patched) {
		t.Errorf("a workload whose pods have current sidecars and belong in the mesh was restarted: %v", again[len(patched):])
	}
}

// TestRemovalAfterUninstall: the removal target takes every sidecar of the
// operator's revision away, whatever the namespace says, names the
// workloads whose template carries theirs, and leaves other revisions'
// pods alone.
func TestRemovalAfterUninstall(t *testing.T) {
	f := newFixture(t, v1alpha2.RestartPacing{})
	f.namespace("mesh", map[string]string{"istio-injection": "enabled"})
	web := f.deploy("mesh", "web", nil, f.want, f.old)
	f.deploy("mesh", "joins-not", nil)
	f.bare("mesh", "joins-not-0", controllertest.Owned("ReplicaSet", "apps/v1", "joins-not-1"), nil)
	f.deploy("mesh", "kube-injected", func(d *appsv1.Deployment) {
		d.Spec.Template.Annotations = map[string]string{annotationSidecarStatus: "{}"}
	}, f.want)
	canary := f.deploy("mesh", "canary", nil, f.want)
	for _, o := range f.c.podsOf(canary) {
		p := o.DeepCopy()
		p.Annotations[annotationRevision] = "canary"
		f.add(f.pods, p)
	}
	tg := &target{istio: summaryKey, removal: true, hash: noSidecar}
	f.c.target.Store(tg)
	n := f.c.count(tg)
	if !sameKeys(n.waiting, []Key{web}) || n.moves[changeLeave] != 2 {
		t.Fatalf("waiting %v, moves %v; want web leaving, and the kube-injected one", n.waiting, n.moves)
	}
	if len(n.blocked) != 1 || !strings.HasPrefix(n.blocked[0], "mesh/kube-injected (its pod template carries the sidecar") {
		t.Errorf("blocked %v, want the kube-injected workload named", n.blocked)
	}
	cond, _ := n.condition(tg)
	if cond.Reason != v1alpha2.ReasonProxySidecarRemovalInProgress {
		t.Errorf("condition %s %q, want %s", cond.Reason, cond.Message, v1alpha2.ReasonProxySidecarRemovalInProgress)
	}
	f.sync(web)
	if patched, _ := f.counts(); len(patched) != 1 || !strings.Contains(f.bodies[0], noSidecar) {
		t.Fatalf("patched %v %v, want web restarted for %s", patched, f.bodies, noSidecar)
	}
	// Its pods gone without sidecars: removed.
	for _, p := range f.c.podsOf(web) {
		if err := f.pods.Delete(p); err != nil {
			t.Fatal(err)
		}
	}
	f.changeDeploymentIn("mesh", "web", func(d *appsv1.Deployment) { d.Spec.Template.Annotations = restartedFor(noSidecar, f.clock.Now()) })
	f.bare("mesh", "web-new", controllertest.Owned("ReplicaSet", "apps/v1", "web-1"), nil)
	cond, _ = f.c.count(tg).condition(tg)
	if cond.Reason != v1alpha2.ReasonProxySidecarRemovalIncomplete || !strings.Contains(cond.Message, "mesh/kube-injected") {
		t.Errorf("condition %s %s %q, want %s naming the kube-injected workload", cond.Status, cond.Reason, cond.Message, v1alpha2.ReasonProxySidecarRemovalIncomplete)
	}
	// Its template fixed and its pods replaced: removed.
	for _, p := range f.c.podsOf(Key{Kind: KindDeployment, Namespace: "mesh", Name: "kube-injected"}) {
		if err := f.pods.Delete(p); err != nil {
			t.Fatal(err)
		}
	}
	if cond, _ := f.c.count(tg).condition(tg); cond.Reason != v1alpha2.ReasonProxySidecarsRemoved || cond.Status != metav1.ConditionTrue {
		t.Errorf("condition %s %s %q, want True %s", cond.Status, cond.Reason, cond.Message, v1alpha2.ReasonProxySidecarsRemoved)
	}
}

// sameKeys reports whether got and want hold the same keys, in any order.
func sameKeys(got, want []Key) bool {
	less := func(a, b Key) int { return strings.Compare(a.String(), b.String()) }
	got, want = slices.Clone(got), slices.Clone(want)
	slices.SortFunc(got, less)
	slices.SortFunc(want, less)
	return slices.Equal(got, want)
}

// changeDeploymentIn replaces the cached Deployment ns/name by a changed copy.
func (f *fixture) changeDeploymentIn(ns, name string, change func(*appsv1.Deployment)) {
	f.t.Helper()
	obj, ok, err := f.deploys.GetByKey(ns + "/" + name)
	if err != nil || !ok {
		f.t.Fatalf("no Deployment %s/%s in the cache (%v)", ns, name, err)
	}
	d := obj.(*appsv1.Deployment).DeepCopy()
	change(d)
	f.add(f.deploys, d)
}

// namespaceLabels replaces the cached namespace's labels.
func (f *fixture) namespaceLabels(name string, labels map[string]string) {
	f.t.Helper()
	if err := f.nss.Update(&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels}}); err != nil {
		f.t.Fatal(err)
	}
}
