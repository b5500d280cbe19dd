package proxysidecar

import (
	"maps"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	v1alpha2 "github.com/meshkeeper/istio-operator/pkg/apis/operator/v1alpha2"
	"github.com/meshkeeper/istio-operator/pkg/controllers/controllertest"
	"github.com/meshkeeper/istio-operator/pkg/controllers/status"
	"github.com/meshkeeper/istio-operator/pkg/istioclient"
)

// canaryIstio is the served resource during a canary upgrade from
// default (1.30.2) to 1-31.
func canaryIstio(rollback bool) *v1alpha2.Istio {
	i := controllertest.Istio(2)
	i.Spec.UpgradeStrategy, i.Spec.CanaryRollback = v1alpha2.UpgradeStrategyCanary, rollback
	i.Status.Revision = "1-31"
	i.Status.Upgrade = &v1alpha2.UpgradeStatus{Phase: v1alpha2.UpgradePhaseMovingWorkloads,
		From: v1alpha2.RevisionVersion{Revision: "default", Version: "1.30.2"},
		To:   v1alpha2.RevisionVersion{Revision: "1-31", Version: istioclient.Version}}
	return i
}

// onRevision is an injected pod of revision rev with rev's proxy.
func onRevision(t *testing.T, rev, version string) *corev1.Pod {
	want := desired(t, v1alpha2.IstioSpec{})
	pod := injectedPod(want)
	pod.Annotations[annotationRevision] = rev
	pod.Spec.Containers[1].Image = "docker.io/istio/proxyv2:" + version
	return pod
}

func TestRevisionsOfACanaryUpgrade(t *testing.T) {
	want := desired(t, v1alpha2.IstioSpec{})

	forward := want
	revs := revisionsOf(canaryIstio(false), &forward)
	if revs.moveTo != "1-31" || revs.moveFrom != "default" || !revs.ours["default"] || !revs.ours["1-31"] || forward.Image != want.Image {
		t.Errorf("forward: %+v, image %s", revs, forward.Image)
	}
	back := want
	revs = revisionsOf(canaryIstio(true), &back)
	if revs.moveTo != "default" || back.Image != "docker.io/istio/proxyv2:1.30.2" || back.Hash() == want.Hash() {
		t.Errorf("rollback: %+v, image %s: want the old revision's proxy, under a hash of its own", revs, back.Image)
	}
	plain := controllertest.Istio(2)
	plain.Status.Revision = "1-31"
	if revs := revisionsOf(plain, &forward); revs.moveTo != "" || !revs.ours["1-31"] || revs.ours["default"] {
		t.Errorf("no upgrade, revision 1-31: %+v", revs)
	}
}

func TestJudgeDuringACanaryUpgrade(t *testing.T) {
	want := desired(t, v1alpha2.IstioSpec{})
	tgt := &target{proxy: want, hash: want.Hash(), revisions: revisionsOf(canaryIstio(false), &want)}
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "ns", Labels: map[string]string{labelInjection: "enabled"}}}

	for _, tc := range []struct {
		name string
		pod  *corev1.Pod
		ns   *corev1.Namespace
		want change
		why  string
	}{
		{"on the old revision", onRevision(t, "default", "1.30.2"), ns, changeProxy, "proxy image"},
		{"moved", onRevision(t, "1-31", istioclient.Version), ns, changeNone, ""},
		{"another control plane's", onRevision(t, "canary", "1.29.0"), ns, changeNone, ""},
	} {
		got, why := tgt.judge(tc.pod, tc.ns)
		if got != tc.want || !strings.Contains(why, tc.why) {
			t.Errorf("%s: judge = %v %q, want %v %q", tc.name, got, why, tc.want, tc.why)
		}
	}

	// From a named revision, a label pins a pod to it; the default tag's
	// name does not.
	up := canaryIstio(false)
	up.Status.Upgrade.From.Revision = "1-30"
	named := desired(t, v1alpha2.IstioSpec{})
	tgt = &target{proxy: named, hash: named.Hash(), revisions: revisionsOf(up, &named)}
	pinned := onRevision(t, "1-30", "1.30.2")
	pinned.Labels = map[string]string{labelRevision: "1-30"}
	if got, why := tgt.judge(pinned, ns); got != changeProxy {
		t.Errorf("a pod labelled 1-30 in a namespace with istio-injection=enabled, which wins: judge = %v %q, want it moved", got, why)
	}
	unlabelledNS := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "ns"}}
	if got, why := tgt.judge(pinned, unlabelledNS); got != changeNone {
		t.Errorf("a pod pinned by its label: judge = %v %q", got, why)
	}
	pinnedNS := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "ns", Labels: map[string]string{labelRevision: "1-30"}}}
	if !tgt.pinned(onRevision(t, "1-30", "1.30.2"), pinnedNS) {
		t.Error("a pod of a namespace labelled istio.io/rev=1-30 is not pinned")
	}
	sameImage := onRevision(t, "1-30", istioclient.Version) // a revision of the same proxy still moves
	if got, why := tgt.judge(sameImage, ns); got != changeProxy || !strings.Contains(why, "on revision 1-30") {
		t.Errorf("same image, old revision: judge = %v %q", got, why)
	}

	// The count: workloads moved, pods left, the pinned named.
	var rc revisionCensus
	a, b, c := Key{Kind: KindDeployment, Namespace: "ns", Name: "a"}, Key{Kind: KindDeployment, Namespace: "ns", Name: "b"}, Key{Kind: KindDeployment, Namespace: "ns", Name: "c"}
	rc.note(tgt, a, onRevision(t, "1-31", istioclient.Version), ns)
	rc.note(tgt, b, onRevision(t, "1-31", istioclient.Version), ns)
	rc.note(tgt, b, onRevision(t, "1-30", "1.30.2"), ns)
	rc.note(tgt, c, pinned, unlabelledNS)
	cond := rc.condition(tgt)
	if cond.Status != metav1.ConditionFalse || cond.Reason != v1alpha2.ReasonProxySidecarsPinned ||
		!strings.HasPrefix(cond.Message, "1 of 3 workloads on revision 1-31; 2 pods still on revision 1-30. 1 workloads are pinned") {
		t.Errorf("condition %+v", cond)
	}
	var done revisionCensus
	done.note(tgt, a, onRevision(t, "1-31", istioclient.Version), ns)
	if cond := done.condition(tgt); cond.Status != metav1.ConditionTrue || cond.Message != "1 of 1 workloads on revision 1-31; no pod uses revision 1-30." {
		t.Errorf("condition %+v", cond)
	}
}

// A namespace labelled with one of the operator's revisions by name keeps
// its pods in the mesh: that revision's injector selects them. Pinned to
// the revision a canary upgrade leaves, they stay on it; labelled with the
// revision after an upgrade, they are current; after an uninstall they
// leave like any other.
func TestNamedRevisionLabels(t *testing.T) {
	up := canaryIstio(false)
	up.Status.Upgrade.From.Revision = "1-30"
	want := desired(t, v1alpha2.IstioSpec{})
	moving := &target{proxy: want, hash: want.Hash(), revisions: revisionsOf(up, &want)}
	pinnedNS := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "ns", Labels: map[string]string{labelRevision: "1-30"}}}
	if got, why := moving.judge(onRevision(t, "1-30", "1.30.2"), pinnedNS); got != changeNone {
		t.Errorf("a pod of a namespace pinned to 1-30: judge = %v %q, want it left alone", got, why)
	}
	unlabelled := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "ns"}}
	pod := onRevision(t, "1-30", "1.30.2")
	pod.Labels = map[string]string{labelRevision: "1-30"}
	if got, why := moving.judge(pod, unlabelled); got != changeNone {
		t.Errorf("a pod pinned by its own label in an unlabelled namespace: judge = %v %q", got, why)
	}

	after := controllertest.Istio(2)
	after.Status.Revision = "1-31"
	current := desired(t, v1alpha2.IstioSpec{})
	steady := &target{proxy: current, hash: current.Hash(), revisions: revisionsOf(after, &current)}
	byName := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "ns", Labels: map[string]string{labelRevision: "1-31"}}}
	if got, why := steady.judge(onRevision(t, "1-31", istioclient.Version), byName); got != changeNone {
		t.Errorf("after the upgrade, a pod of a namespace labelled 1-31: judge = %v %q", got, why)
	}
	other := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "ns", Labels: map[string]string{labelRevision: "canary"}}}
	if got, _ := steady.judge(onRevision(t, "1-31", istioclient.Version), other); got != changeLeave {
		t.Errorf("a namespace moved to another control plane's revision: judge = %v, want leave", got)
	}

	removal := &target{removal: true, hash: noSidecar, revisions: revisionsOf(after, &istioclient.Proxy{})}
	if got, _ := removal.judge(onRevision(t, "1-31", istioclient.Version), byName); got != changeLeave {
		t.Errorf("after an uninstall, a sidecar of revision 1-31: judge = %v, want leave", got)
	}
}

// The move's counts are written like the restarts': a change of counts
// alone waits for ProgressWriteInterval; a new reason is written at once.
func TestMoveCountsAreThrottled(t *testing.T) {
	clk := controllertest.Clock()
	c := &Controller{clock: clk, lastProgress: map[Key]progressMark{}}
	k := Key{Kind: "Istio", Namespace: "kyma-system", Name: "default"}
	istio := canaryIstio(false)
	moving := func(msg string) status.Condition {
		return status.Condition{Type: v1alpha2.ConditionProxySidecarsOnRevision, Status: metav1.ConditionFalse, Reason: v1alpha2.ReasonProxySidecarsMoving, Message: msg}
	}
	main := status.Condition{Type: v1alpha2.ConditionProxySidecarRestartSucceeded, Status: metav1.ConditionFalse,
		Reason: v1alpha2.ReasonProxySidecarRestartInProgress, Message: "10 of 10 workloads restarted"}
	istio.Status.Conditions = []metav1.Condition{
		{Type: main.Type, Status: main.Status, Reason: main.Reason, Message: main.Message, ObservedGeneration: istio.Generation},
		{Type: v1alpha2.ConditionProxySidecarsOnRevision, Status: metav1.ConditionFalse, Reason: v1alpha2.ReasonProxySidecarsMoving,
			Message: "1 of 10 workloads on revision 1-31; 27 pods still on revision default.", ObservedGeneration: istio.Generation},
	}
	n := &census{revisions: revisionCensus{podsOff: 27}}
	if w := c.progressWait(k, istio, []status.Condition{main, moving("1 of 10 workloads on revision 1-31; 26 pods still on revision default.")}, n); w != 0 {
		t.Fatalf("first write waits %v", w)
	}
	n.revisions.podsOff = 20
	if w := c.progressWait(k, istio, []status.Condition{main, moving("3 of 10 workloads on revision 1-31; 20 pods still on revision default.")}, n); w != ProgressWriteInterval {
		t.Errorf("a change of counts alone waits %v, want %v", w, ProgressWriteInterval)
	}
	done := status.Condition{Type: v1alpha2.ConditionProxySidecarsOnRevision, Status: metav1.ConditionTrue, Reason: v1alpha2.ReasonProxySidecarsOnRevision, Message: "10 of 10"}
	if w := c.progressWait(k, istio, []status.Condition{main, done}, n); w != 0 {
		t.Errorf("the move's end waits %v", w)
	}
	clk.Step(ProgressWriteInterval)
	n.revisions.podsOff = 15
	if w := c.progressWait(k, istio, []status.Condition{main, moving("5 of 10 workloads on revision 1-31; 15 pods still on revision default.")}, n); w != 0 {
		t.Errorf("counts that moved, after the interval, wait %v", w)
	}
}

// An uninstall in the middle of a canary upgrade takes away the sidecars of
// both of the operator's revisions (status.upgrade stays while the resource
// is deleted), and only theirs; nothing is counted as moving any more.
func TestRemovalAfterAnUninstallDuringAnUpgrade(t *testing.T) {
	f := newFixture(t, v1alpha2.RestartPacing{})
	f.namespace("mesh", map[string]string{"istio-injection": "enabled"})
	onRev := func(name, rev string) Key {
		k := f.deploy("mesh", name, nil, f.want)
		for _, o := range f.c.podsOf(k) {
			p := o.DeepCopy()
			p.Annotations[annotationRevision] = rev
			f.add(f.pods, p)
		}
		return k
	}
	moved, left := onRev("moved", "1-31"), onRev("left", "default")
	onRev("theirs", "canary")

	istio := canaryIstio(false)
	istio.DeletionTimestamp = &metav1.Time{Time: controllertest.Start}
	tg := &target{istio: summaryKey, removal: true, hash: noSidecar, revisions: removalRevisions(istio)}
	if tg.moveTo != "" || !tg.ours["default"] || !tg.ours["1-31"] {
		t.Fatalf("removal revisions %+v, want both of the operator's and no move", tg.revisions)
	}
	f.c.target.Store(tg)
	n := f.c.count(tg)
	if !sameKeys(n.waiting, []Key{moved, left}) || n.moves[changeLeave] != 2 {
		t.Errorf("waiting %v, moves %v; want the workloads of both revisions leaving, not the other control plane's", n.waiting, n.moves)
	}
	for state, v := range n.revisions.counts() {
		if v != 0 {
			t.Errorf("canary workloads %s = %d during the removal, want 0", state, v)
		}
	}
	if cond, _ := n.condition(tg); cond.Reason != v1alpha2.ReasonProxySidecarRemovalInProgress {
		t.Errorf("condition %s %q, want %s", cond.Reason, cond.Message, v1alpha2.ReasonProxySidecarRemovalInProgress)
	}
}

// The pod cache follows the namespaces that select an injector of the
// operator's revisions: by the default tag, or by a revision's own name
// (their pods without a sidecar join), not another control plane's.
func TestPodCacheFollowsNamespacesNamingARevision(t *testing.T) {
	f := newFixture(t, v1alpha2.RestartPacing{})
	f.namespace("tag", map[string]string{labelInjection: "enabled"})
	f.namespace("by-name", map[string]string{labelRevision: "1-31"})
	f.namespace("injection-wins", map[string]string{labelInjection: "disabled", labelRevision: "1-31"})
	f.namespace("other-plane", map[string]string{labelRevision: "canary"})
	f.namespace("plain", nil)
	var followed map[string]bool
	f.c.followNamespaces = func(ns map[string]bool) bool { followed = ns; return true }

	after := controllertest.Istio(2)
	after.Status.Revision = "1-31"
	current := desired(t, v1alpha2.IstioSpec{})
	tgt := &target{proxy: current, hash: current.Hash(), revisions: revisionsOf(after, &current)}
	if !f.c.followSelecting(tgt) {
		t.Fatal("not synced")
	}
	if want := map[string]bool{"tag": true, "by-name": true}; !maps.Equal(followed, want) {
		t.Errorf("followed %v, want %v", followed, want)
	}

	// Before any canary upgrade 1-31 is not the operator's: not followed.
	before := &target{proxy: current, hash: current.Hash(), revisions: revisionsOf(controllertest.Istio(2), &current)}
	f.c.followSelecting(before)
	if want := map[string]bool{"tag": true}; !maps.Equal(followed, want) {
		t.Errorf("without revision 1-31: followed %v, want %v", followed, want)
	}

	// Their pods without a sidecar join: a namespace's, a pod's own label
	// in a namespace without injection labels; not another plane's pods.
	bare := func(ns, name string, labels map[string]string) Key {
		k := f.deploy(ns, name, nil)
		pod := f.bare(ns, name+"-0", controllertest.Owned("ReplicaSet", "apps/v1", name+"-1"), labels)
		if !f.c.candidate(pod) {
			t.Errorf("%s/%s: its events do not wake the count", ns, pod.Name)
		}
		return k
	}
	f.c.target.Store(tgt)
	byNS := bare("by-name", "web", nil)
	byPod := bare("plain", "api", map[string]string{labelRevision: "1-31"})
	f.deploy("other-plane", "theirs", nil)
	f.bare("other-plane", "theirs-0", controllertest.Owned("ReplicaSet", "apps/v1", "theirs-1"), nil)
	f.deploy("plain", "canary", nil)
	f.bare("plain", "canary-0", controllertest.Owned("ReplicaSet", "apps/v1", "canary-1"), map[string]string{labelRevision: "canary"})
	n := f.c.count(tgt)
	if !sameKeys(n.waiting, []Key{byNS, byPod}) || n.moves[changeJoin] != 2 {
		t.Errorf("waiting %v, moves %v; want the two selected by revision 1-31's name joining", n.waiting, n.moves)
	}
}
