package installation

import (
	"errors"
	"slices"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	v1alpha2 "github.com/meshkeeper/istio-operator/pkg/apis/operator/v1alpha2"
	"github.com/meshkeeper/istio-operator/pkg/istioclient"
)

// revisionIstiod is the operator's istiod of a revision at a version.
func revisionIstiod(revision, version string) *unstructured.Unstructured {
	u := istiod(version, "hash-"+revision)
	u.SetName(istioclient.IstiodName(revision))
	u.SetLabels(map[string]string{istioclient.OwnedSelector: "Pilot", istioclient.RevisionLabel: revision})
	return u
}

// tagOn is the operator's default revision tag webhook on a revision.
func tagOn(revision string) *unstructured.Unstructured {
	u := ownedObject("admissionregistration.k8s.io/v1", "MutatingWebhookConfiguration", "", istioclient.TagWebhookName)
	u.SetLabels(map[string]string{istioclient.OwnedSelector: "Pilot", istioclient.RevisionLabel: revision, "istio.io/tag": "default"})
	return u
}

// canarySpec is the served resource at a generation asking for canary
// upgrades, rolled back or not.
func canarySpec(gen int64, rollback bool) *v1alpha2.Istio {
	i := served(gen)
	i.Spec.UpgradeStrategy = v1alpha2.UpgradeStrategyCanary
	i.Spec.CanaryRollback = rollback
	return i
}

// onRevision records the proxy sidecar controller's ProxySidecarsOnRevision
// at a generation.
func (f *fixture) onRevision(gen int64, moved bool) {
	f.t.Helper()
	i := f.get(key).DeepCopy()
	cond := metav1.Condition{Type: v1alpha2.ConditionProxySidecarsOnRevision, Status: metav1.ConditionFalse,
		Reason: v1alpha2.ReasonProxySidecarsMoving, Message: "3 of 5 workloads on revision 1-31; 2 pods still on revision default.", ObservedGeneration: gen}
	if moved {
		cond.Status, cond.Reason, cond.Message = metav1.ConditionTrue, v1alpha2.ReasonProxySidecarsOnRevision, "5 of 5 workloads on revision 1-31; no pod uses revision default."
	}
	meta.SetStatusCondition(&i.Status.Conditions, cond)
	f.istios.Set(i)
}

func (f *fixture) unlive(objs ...*unstructured.Unstructured) {
	f.t.Helper()
	for _, o := range objs {
		if err := f.c.live.informers[o.GroupVersionKind()].GetIndexer().Delete(o); err != nil {
			f.t.Fatal(err)
		}
	}
}

func (f *fixture) canaryCondition() *metav1.Condition {
	f.t.Helper()
	return f.condition(key, v1alpha2.ConditionCanaryUpgrade)
}

var (
	oldRevision = istioclient.Revision{Name: istioclient.DefaultRevision, Version: istioclient.MustParseVersion("1.30.2")}
	newRevision = istioclient.Revision{Name: "1-31", Version: istioclient.MustParseVersion(istioclient.Version)}
)

// A canary upgrade from the previous minor, step by step as the cluster
// changes under it: the new revision beside the old one, the tag moved, the
// wait for the workloads, the old revision pruned, and each phase in the
// condition, the status and an Event.
func TestCanaryUpgradeRunsEveryPhase(t *testing.T) {
	f := newFixture(t, canarySpec(2, false))
	old := revisionIstiod("default", "1.30.2")
	f.live(old, tagOn("default"))
	f.planner.plan = pruning()

	// InstallingRevision: rendered as 1-31, the old revision kept, the tag
	// moved once the apply (which waits for readiness) returned.
	after, err := f.sync(key)
	if err != nil || after != CanaryInterval {
		t.Fatalf("sync = %v, %v; want a re-check after %v", after, err, CanaryInterval)
	}
	if f.renderer.lastAs != newRevision {
		t.Errorf("rendered as %+v, want %+v", f.renderer.lastAs, newRevision)
	}
	if len(f.planner.kept) != 1 || !slices.Equal(f.planner.kept[0], []string{"default"}) || f.applier.applied[0].TagRevision != "default" {
		t.Errorf("plans kept %v with the tag on %q; want the old revision kept and the tag on it", f.planner.kept, f.applier.applied[0].TagRevision)
	}
	if !slices.Equal(f.applier.tags, []string{"1-31"}) {
		t.Errorf("tag moved to %v, want [1-31]", f.applier.tags)
	}
	if c := f.canaryCondition(); c == nil || c.Reason != v1alpha2.ReasonCanaryInstallingRevision || c.Status != metav1.ConditionFalse {
		t.Errorf("CanaryUpgrade %+v while the new revision installs", c)
	}
	events := strings.Join(f.events(), "\n")
	for _, want := range []string{"Normal UpgradeStarted", "Normal CanaryInstallingRevision Installing revision 1-31 (Istio 1.31.1) beside revision default (Istio 1.30.2)"} {
		if !strings.Contains(events, want) {
			t.Errorf("Events %s\nwant %q", events, want)
		}
	}

	// MovingWorkloads: the cluster shows both revisions and the tag moved.
	f.unlive(tagOn("default"))
	f.live(revisionIstiod("1-31", istioclient.Version), tagOn("1-31"))
	f.planner.plan = istioclient.Plan{}
	f.onRevision(2, false)
	if after, err := f.sync(key); err != nil || after != CanaryInterval {
		t.Fatalf("sync = %v, %v", after, err)
	}
	st := f.get(key).Status
	want := &v1alpha2.UpgradeStatus{Phase: v1alpha2.UpgradePhaseMovingWorkloads,
		From: v1alpha2.RevisionVersion{Revision: "default", Version: "1.30.2"}, To: v1alpha2.RevisionVersion{Revision: "1-31", Version: "1.31.1"}}
	if st.Upgrade == nil || *st.Upgrade != *want || st.Revision != "1-31" {
		t.Errorf("status.upgrade %+v, revision %q; want %+v on 1-31", st.Upgrade, st.Revision, want)
	}
	c := f.canaryCondition()
	if c == nil || c.Reason != v1alpha2.ReasonCanaryMovingWorkloads || !strings.Contains(c.Message, "3 of 5 workloads on revision 1-31") {
		t.Errorf("CanaryUpgrade %+v; want the move with the proxy sidecar controller's counts", c)
	}
	if installed := f.condition(key, v1alpha2.ConditionInstalled); installed.Status != metav1.ConditionTrue {
		t.Errorf("Installed %+v while the workloads move: the proxy sidecar controller waits for it", installed)
	}
	if len(f.applier.tags) != 1 || len(f.planner.kept) != 2 || len(f.planner.kept[1]) != 1 {
		t.Errorf("tags %v, plans kept %v: the tag moves once, the old revision stays while pods use it", f.applier.tags, f.planner.kept)
	}
	if e := strings.Join(f.events(), "\n"); !strings.Contains(e, "Normal CanaryMovingWorkloads") {
		t.Errorf("Events %s, want CanaryMovingWorkloads", e)
	}

	// A True condition of an older generation is not this move's.
	f.onRevision(1, true)
	if _, err := f.sync(key); err != nil {
		t.Fatal(err)
	}
	if len(f.planner.kept) != 3 || len(f.planner.kept[2]) != 1 {
		t.Fatalf("plans kept %v: a stale condition let the old revision go", f.planner.kept)
	}

	// RemovingRevision: no pod uses the old revision.
	f.onRevision(2, true)
	f.planner.planFor = func(_ *istioclient.Rendered, _ istioclient.Revision, keep []string) istioclient.Plan {
		if len(keep) == 0 {
			return pruning() // the old revision's objects
		}
		return istioclient.Plan{}
	}
	if _, err := f.sync(key); err != nil {
		t.Fatal(err)
	}
	last := f.applier.applied[len(f.applier.applied)-1]
	if len(last.Prune) != 1 || last.TagRevision != "1-31" {
		t.Errorf("last plan %+v, want the old revision pruned with the tag on 1-31", last)
	}
	c = f.canaryCondition()
	if c == nil || c.Status != metav1.ConditionTrue || c.Reason != v1alpha2.ReasonCanaryUpgradeSucceeded {
		t.Errorf("CanaryUpgrade %+v after the old revision went", c)
	}
	events = strings.Join(f.events(), "\n")
	for _, want := range []string{"Normal RevisionRemovalStarted", "Normal RevisionRemovalSucceeded", "Normal CanaryUpgradeSucceeded Upgraded from Istio 1.30.2 (revision default) to Istio 1.31.1 (revision 1-31)"} {
		if !strings.Contains(events, want) {
			t.Errorf("Events %s\nwant %q", events, want)
		}
	}

	// Done: one revision, status.upgrade cleared, the condition kept.
	f.unlive(old)
	f.planner.planFor = nil
	if after, err := f.sync(key); err != nil || after != ResyncInterval {
		t.Fatalf("sync = %v, %v", after, err)
	}
	st = f.get(key).Status
	if st.Upgrade != nil || st.Revision != "1-31" || st.InstalledVersion != istioclient.Version {
		t.Errorf("status after the upgrade: upgrade %+v, revision %q, installed %s", st.Upgrade, st.Revision, st.InstalledVersion)
	}
	if c := f.canaryCondition(); c == nil || c.Reason != v1alpha2.ReasonCanaryUpgradeSucceeded {
		t.Errorf("CanaryUpgrade %+v, want the finished upgrade kept", c)
	}
	// Later syncs keep the revision: 1-31 is rendered, not the default.
	if f.renderer.lastAs != newRevision {
		t.Errorf("rendered as %+v after the upgrade, want %+v", f.renderer.lastAs, newRevision)
	}
}

// A rollback while both control planes run: the tag back first, the
// removal only once no pod uses the new revision, and then only what the
// new revision took over is given back.
func TestCanaryRollback(t *testing.T) {
	f := newFixture(t, canarySpec(3, true))
	f.live(revisionIstiod("default", "1.30.2"), revisionIstiod("1-31", istioclient.Version), tagOn("1-31"))
	f.onRevision(2, true) // the forward move's
	if after, err := f.sync(key); err != nil || after != CanaryInterval {
		t.Fatalf("sync = %v, %v", after, err)
	}
	if !slices.Equal(f.applier.tags, []string{"default"}) || len(f.applier.applied) != 0 {
		t.Errorf("tags %v, %d applies; want the tag moved back and nothing removed yet", f.applier.tags, len(f.applier.applied))
	}
	if f.renderer.lastAs != oldRevision {
		t.Errorf("rendered as %+v, want the old revision %+v", f.renderer.lastAs, oldRevision)
	}
	if c := f.canaryCondition(); c == nil || c.Reason != v1alpha2.ReasonCanaryRollingBack {
		t.Errorf("CanaryUpgrade %+v", c)
	}

	f.unlive(tagOn("1-31"))
	f.live(tagOn("default"))
	f.onRevision(3, true)
	newObject := ownedObject("v1", "ConfigMap", istioclient.Namespace, "istio-1-31")
	newObject.SetLabels(map[string]string{istioclient.OwnedSelector: "Pilot", istioclient.RevisionLabel: "1-31"})
	f.planner.plan = istioclient.Plan{Prune: []*unstructured.Unstructured{newObject, ownedObject("v1", "ConfigMap", istioclient.Namespace, "old")}}
	if _, err := f.sync(key); err != nil {
		t.Fatal(err)
	}
	if len(f.applier.applied) != 1 || len(f.applier.tags) != 1 {
		t.Fatalf("%d applies, tags %v; want the new revision removed once", len(f.applier.applied), f.applier.tags)
	}
	if p := f.applier.applied[0].Prune; len(p) != 1 || p[0].GetName() != "istio-1-31" {
		t.Errorf("pruned %v; want only the new revision's object", p)
	}
	c := f.canaryCondition()
	if c == nil || c.Status != metav1.ConditionTrue || c.Reason != v1alpha2.ReasonCanaryRolledBack {
		t.Errorf("CanaryUpgrade %+v after the rollback", c)
	}
	if ready := f.condition(key, v1alpha2.ConditionReady); ready.Reason != v1alpha2.ReasonCanaryRolledBack || f.get(key).Status.State != v1alpha2.StateWarning {
		t.Errorf("Ready %+v, state %s; want the held rollback reported", ready, f.get(key).Status.State)
	}

	// Held: one revision at the old version, nothing applied, nothing moved.
	f.unlive(revisionIstiod("1-31", istioclient.Version))
	applies := len(f.applier.applied)
	if _, err := f.sync(key); err != nil {
		t.Fatal(err)
	}
	if len(f.applier.applied) != applies || len(f.applier.tags) != 1 {
		t.Errorf("the held rollback applied or moved the tag")
	}
}

// A failed tag move is reported and retried; the retry moves it again (a
// repeatable step), with no second install of the revision.
func TestCanaryTagMoveFailureIsRetried(t *testing.T) {
	f := newFixture(t, canarySpec(2, false))
	f.live(revisionIstiod("default", "1.30.2"), revisionIstiod("1-31", istioclient.Version), tagOn("default"))
	f.applier.moveTag = func(string) error { return errBoom }
	if _, err := f.sync(key); !errors.Is(err, errBoom) {
		t.Fatalf("sync error %v, want the tag move's", err)
	}
	if installed := f.condition(key, v1alpha2.ConditionInstalled); installed.Status != metav1.ConditionFalse || !strings.Contains(installed.Message, "moving the default revision tag") {
		t.Errorf("Installed %+v", installed)
	}
	f.applier.moveTag = nil
	if _, err := f.sync(key); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(f.applier.tags, []string{"1-31", "1-31"}) || len(f.applier.applied) != 0 {
		t.Errorf("tags %v, %d applies", f.applier.tags, len(f.applier.applied))
	}
}

// InPlace (the default) upgrades the one control plane under its own
// revision; Canary only for a newer minor.
func TestCanaryUpgradeOnlyForANewerMinor(t *testing.T) {
	target := istioclient.MustParseVersion(istioclient.Version)
	canary := &v1alpha2.IstioSpec{UpgradeStrategy: v1alpha2.UpgradeStrategyCanary}
	for _, tc := range []struct {
		name      string
		spec      *v1alpha2.IstioSpec
		installed istioclient.Revision
		want      bool
	}{
		{"canary from the previous minor", canary, oldRevision, true},
		{"in place from the previous minor", &v1alpha2.IstioSpec{}, oldRevision, false},
		{"a patch upgrade", canary, istioclient.Revision{Name: "1-31", Version: istioclient.MustParseVersion("1.31.0")}, false},
		{"the same version", canary, newRevision, false},
		{"an unreadable version", canary, istioclient.Revision{Name: "default", Err: errBoom}, false},
	} {
		if got := canaryUpgrade(tc.spec, tc.installed, target); got != tc.want {
			t.Errorf("%s: canaryUpgrade = %v, want %v", tc.name, got, tc.want)
		}
	}

	f := newFixture(t, served(2))
	f.live(revisionIstiod("1-30", "1.30.2"), tagOn("1-30"))
	if _, err := f.sync(key); err != nil {
		t.Fatal(err)
	}
	if want := (istioclient.Revision{Name: "1-30", Version: target}); f.renderer.lastAs != want || len(f.applier.tags) != 0 {
		t.Errorf("in place: rendered as %+v, tags %v; want %+v and no tag move", f.renderer.lastAs, f.applier.tags, want)
	}
	if st := f.get(key).Status; st.Upgrade != nil || meta.FindStatusCondition(st.Conditions, v1alpha2.ConditionCanaryUpgrade) != nil {
		t.Errorf("an in-place upgrade reported a canary: %+v", st.Upgrade)
	}
}

// An operator killed while it removed the old revision finds it gone when
// it starts again: the upgrade is reported finished from what the last
// write recorded, once.
func TestCanaryFinishedByAnotherProcess(t *testing.T) {
	i := canarySpec(2, false)
	i.Status.Upgrade = &v1alpha2.UpgradeStatus{Phase: v1alpha2.UpgradePhaseRemovingRevision,
		From: v1alpha2.RevisionVersion{Revision: "default", Version: "1.30.2"}, To: v1alpha2.RevisionVersion{Revision: "1-31", Version: "1.31.1"}}
	i.Status.Conditions = []metav1.Condition{{Type: v1alpha2.ConditionCanaryUpgrade, Status: metav1.ConditionFalse,
		Reason: v1alpha2.ReasonCanaryRemovingRevision, ObservedGeneration: 2}}
	f := newFixture(t, i)
	f.live(revisionIstiod("1-31", istioclient.Version), tagOn("1-31"))
	f.planner.plan = pruning() // what the killed process left of the old revision
	if _, err := f.sync(key); err != nil {
		t.Fatal(err)
	}
	if len(f.applier.applied) != 1 || len(f.planner.kept[0]) != 0 {
		t.Errorf("%d applies keeping %v; want the leftovers pruned", len(f.applier.applied), f.planner.kept)
	}
	c := f.canaryCondition()
	// (status.upgrade stays here: the fixture wrote it with no field
	// manager, so no apply of the controller's removes it.)
	if c == nil || c.Status != metav1.ConditionTrue || c.Reason != v1alpha2.ReasonCanaryUpgradeSucceeded {
		t.Errorf("CanaryUpgrade %+v", c)
	}
	if _, err := f.sync(key); err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, e := range f.events() {
		if strings.Contains(e, v1alpha2.ReasonCanaryUpgradeSucceeded) {
			n++
		}
	}
	if n != 1 {
		t.Errorf("%d CanaryUpgradeSucceeded Events, want 1", n)
	}
}

// An operator stopped while it removed the new revision of a rollback
// finds the old one alone with some of the new one's objects: it removes
// them before it reports the rollback held.
func TestHeldRollbackRemovesWhatWasLeft(t *testing.T) {
	f := newFixture(t, canarySpec(3, true))
	left := ownedObject("v1", "ConfigMap", istioclient.Namespace, "istio-1-31")
	left.SetLabels(map[string]string{istioclient.OwnedSelector: "Pilot", istioclient.RevisionLabel: "1-31"})
	f.live(revisionIstiod("default", "1.30.2"), tagOn("default"), left)
	f.planner.plan = istioclient.Plan{Prune: []*unstructured.Unstructured{left, ownedObject("v1", "ConfigMap", istioclient.Namespace, "istio")}}
	if _, err := f.sync(key); err != nil {
		t.Fatal(err)
	}
	if len(f.applier.applied) != 1 || len(f.applier.applied[0].Prune) != 1 || f.applier.applied[0].Prune[0].GetName() != "istio-1-31" {
		t.Fatalf("applied %+v; want only the new revision's leftover pruned", f.applier.applied)
	}
	if f.renderer.lastAs != oldRevision {
		t.Errorf("rendered as %+v, want %+v", f.renderer.lastAs, oldRevision)
	}
	if ready := f.condition(key, v1alpha2.ConditionReady); ready == nil || ready.Reason != v1alpha2.ReasonCanaryRolledBack {
		t.Errorf("Ready %+v", ready)
	}

	// Nothing left: held, nothing applied.
	f.unlive(left)
	if _, err := f.sync(key); err != nil {
		t.Fatal(err)
	}
	if len(f.applier.applied) != 1 {
		t.Errorf("%d applies; the held rollback applies nothing once nothing is left", len(f.applier.applied))
	}
}

// A resource deleted in the middle of a canary upgrade: the uninstall
// removes both revisions, and status.upgrade keeps naming both until the
// resource is gone, for the proxy sidecar controller's removal of the
// sidecars of each; the CanaryUpgrade condition stays as it was.
func TestUninstallDuringACanaryUpgrade(t *testing.T) {
	f := newFixture(t, canarySpec(2, false))
	objs := []*unstructured.Unstructured{revisionIstiod("default", "1.30.2"), revisionIstiod("1-31", istioclient.Version), tagOn("1-31")}
	f.live(objs...)
	f.onRevision(2, false)
	if _, err := f.sync(key); err != nil {
		t.Fatal(err)
	}
	moving := f.get(key).Status.Upgrade
	if moving == nil || moving.Phase != v1alpha2.UpgradePhaseMovingWorkloads {
		t.Fatalf("status.upgrade %+v before the deletion, want the move", moving)
	}

	i := f.get(key).DeepCopy()
	i.DeletionTimestamp = &metav1.Time{Time: f.clock.Now()}
	i.Finalizers = []string{Finalizer}
	f.istios.Set(i)
	f.userResources()
	f.applier.uninstalling = func() { f.unlive(objs...) }
	for range 2 { // the uninstall, then the wait for the sidecars
		if after, err := f.sync(key); err != nil || after != SidecarRemovalInterval {
			t.Fatalf("sync = %v, %v; want the wait for the sidecars' removal", after, err)
		}
		st := f.get(key).Status
		if st.Upgrade == nil || *st.Upgrade != *moving || st.Revision != "1-31" {
			t.Errorf("status.upgrade %+v, revision %q after the uninstall; want %+v kept", st.Upgrade, st.Revision, moving)
		}
		if c := f.canaryCondition(); c == nil || c.Reason != v1alpha2.ReasonCanaryMovingWorkloads {
			t.Errorf("CanaryUpgrade %+v after the uninstall, want it as it was", c)
		}
	}
	if f.applier.uninstalls != 1 {
		t.Errorf("%d uninstalls, want 1", f.applier.uninstalls)
	}
}
