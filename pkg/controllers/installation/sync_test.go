package installation

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	clienttesting "k8s.io/client-go/testing"
	"k8s.io/client-go/tools/cache"
	"k8s.io/utils/ptr"

	v1alpha2 "github.com/meshkeeper/istio-operator/pkg/apis/operator/v1alpha2"
	"github.com/meshkeeper/istio-operator/pkg/controllers/controllertest"
	listers "github.com/meshkeeper/istio-operator/pkg/generated/listers/operator/v1alpha2"
	"github.com/meshkeeper/istio-operator/pkg/istioclient"
)

var key = controllertest.Key

func TestInstalledWhenNothingToApply(t *testing.T) {
	f := newFixture(t, served(2))
	f.live(istiod(istioclient.Version, renderedHash))
	after, err := f.sync(key)
	if err != nil || after != ResyncInterval {
		t.Fatalf("sync = %v, %v; want the resync after %v", after, err, ResyncInterval)
	}
	if len(f.applier.applied) != 0 || f.planner.checked != 0 {
		t.Errorf("%d applies, %d lookups of missing objects for an empty plan", len(f.applier.applied), f.planner.checked)
	}
	installed := f.condition(key, v1alpha2.ConditionInstalled)
	if installed == nil || installed.Status != metav1.ConditionTrue || installed.Reason != v1alpha2.ReasonIstioInstallSucceeded ||
		installed.ObservedGeneration != 2 || installed.Message != "Istio 1.31.1 is installed with the configuration of generation 2." {
		t.Errorf("Installed %+v", installed)
	}
	st := f.get(key).Status
	if st.State != v1alpha2.StateReady || st.ObservedGeneration != 2 || st.InstalledVersion != istioclient.Version ||
		st.Description != "Istio 1.31.1 is installed and every controller reports success." {
		t.Errorf("status %+v", st)
	}
	if ready := f.condition(key, v1alpha2.ConditionReady); ready == nil || ready.Status != metav1.ConditionTrue || ready.Reason != v1alpha2.ReasonReconcileSucceeded {
		t.Errorf("Ready %+v", ready)
	}
	if e := f.events(); len(e) != 0 {
		t.Errorf("Events %v", e)
	}
	if f.releases != 0 {
		t.Errorf("memory released %d times without an apply", f.releases)
	}
}

// inNamespace is the default resource's twin in another namespace.
func inNamespace(ns string) *v1alpha2.Istio {
	i := controllertest.Istio(1)
	i.Namespace, i.UID = ns, "uid-other"
	return i
}

// older is a resource in the operator's namespace created before the
// default one: the served one.
func older() *v1alpha2.Istio {
	i := controllertest.Istio(1)
	i.Name, i.UID = "old", "uid-old"
	i.CreationTimestamp = metav1.Time{Time: controllertest.Start.Add(-time.Hour)}
	return i
}

// newest is the default resource, created after older.
func newest() *v1alpha2.Istio {
	i := served(1)
	i.CreationTimestamp = metav1.Time{Time: controllertest.Start}
	return i
}

func TestNotServed(t *testing.T) {
	otherKey := cache.ObjectName{Namespace: "other", Name: "default"}
	for name, tc := range map[string]struct {
		istios    []*v1alpha2.Istio
		key       cache.ObjectName
		wantState v1alpha2.State
		reason    string
		message   string
	}{
		"wrong namespace": {
			istios: []*v1alpha2.Istio{inNamespace("other")}, key: otherKey,
			wantState: v1alpha2.StateError, reason: v1alpha2.ReasonWrongNamespace,
			message: "The operator serves only the Istio resource in namespace kyma-system; this one in other is ignored. Create it in kyma-system.",
		},
		"wrong namespace while one is served": {
			istios: []*v1alpha2.Istio{served(1), inNamespace("other")}, key: otherKey,
			wantState: v1alpha2.StateError, reason: v1alpha2.ReasonWrongNamespace,
			message: "The operator serves only the Istio resource in namespace kyma-system; this one in other is ignored. Create it in kyma-system.",
		},
		"not the oldest": {
			istios: []*v1alpha2.Istio{older(), newest()}, key: key,
			wantState: v1alpha2.StateWarning, reason: v1alpha2.ReasonOlderCRExists,
			message: "Only the oldest Istio resource is served, kyma-system/old; this one is ignored. Delete it, or change kyma-system/old instead.",
		},
	} {
		t.Run(name, func(t *testing.T) {
			f := newFixture(t, tc.istios...)
			after, err := f.sync(tc.key)
			if err != nil || after != 0 {
				t.Fatalf("sync = %v, %v; want no requeue (the Istio watch wakes it)", after, err)
			}
			got := f.get(tc.key)
			st := got.Status
			if st.State != tc.wantState || st.Description != tc.message {
				t.Errorf("state %s %q, want %s %q", st.State, st.Description, tc.wantState, tc.message)
			}
			ready := f.condition(tc.key, v1alpha2.ConditionReady)
			if ready == nil || ready.Status != metav1.ConditionFalse || ready.Reason != tc.reason {
				t.Errorf("Ready %+v, want False %s", ready, tc.reason)
			}
			// Without Installed, the other controllers leave it alone.
			if c := f.condition(tc.key, v1alpha2.ConditionInstalled); c != nil {
				t.Errorf("Installed %+v on a resource not served", c)
			}
			if u := f.finalizerUpdates(); len(u) != 0 {
				t.Errorf("finalizer updates %v on a resource not served", u)
			}
			if f.renderer.calls != 0 {
				t.Error("rendered for a resource not served")
			}
			if e := f.events(); !slices.Equal(e, []string{"Warning " + tc.reason + " " + tc.message}) {
				t.Errorf("Events %v", e)
			}
			// Reported once: the same verdict writes and records nothing again.
			f.istios.CatchUp(tc.key)
			if _, err := f.sync(tc.key); err != nil {
				t.Fatal(err)
			}
			if n := f.istios.StatusWrites(); n != 1 {
				t.Errorf("%d status writes, want 1", n)
			}
			if e := f.events(); len(e) != 0 {
				t.Errorf("Events again: %v", e)
			}
		})
	}
}

func TestNotServedBeingDeleted(t *testing.T) {
	otherKey := cache.ObjectName{Namespace: "other", Name: "default"}
	withFinalizers := func(i *v1alpha2.Istio, finalizers ...string) *v1alpha2.Istio {
		i.DeletionTimestamp = &metav1.Time{Time: controllertest.Start}
		i.Finalizers = finalizers
		return i
	}
	for name, tc := range map[string]struct {
		istios []*v1alpha2.Istio
		key    cache.ObjectName
		want   [][]string
	}{
		"wrong namespace": {
			istios: []*v1alpha2.Istio{withFinalizers(inNamespace("other"), "other/finalizer", Finalizer)}, key: otherKey,
			want: [][]string{{"other/finalizer"}},
		},
		"not the oldest": {
			istios: []*v1alpha2.Istio{older(), withFinalizers(newest(), Finalizer)}, key: key,
			want: [][]string{{}},
		},
		"without the finalizer": {
			istios: []*v1alpha2.Istio{withFinalizers(inNamespace("other"), "other/finalizer")}, key: otherKey,
		},
	} {
		t.Run(name, func(t *testing.T) {
			f := newFixture(t, tc.istios...)
			f.live(istiod(istioclient.Version, renderedHash))
			after, err := f.sync(tc.key)
			if err != nil || after != 0 {
				t.Fatalf("sync = %v, %v", after, err)
			}
			// The operator never acted on it: it lets go without uninstalling.
			if got := f.finalizerUpdates(); !equalFinalizers(got, tc.want) {
				t.Errorf("finalizer updates %v, want %v", got, tc.want)
			}
			if f.applier.uninstalls != 0 {
				t.Error("uninstalled for a resource not served")
			}
			if n := f.istios.StatusWrites(); n != 0 {
				t.Errorf("%d status writes", n)
			}
		})
	}
}

func equalFinalizers(a, b [][]string) bool {
	return slices.EqualFunc(a, b, func(x, y []string) bool { return len(x) == len(y) && (len(x) == 0 || slices.Equal(x, y)) })
}

func TestGone(t *testing.T) {
	f := newFixture(t)
	after, err := f.sync(key)
	if err != nil || after != 0 {
		t.Fatalf("sync = %v, %v", after, err)
	}
	if a := f.istios.Client.Actions(); len(a) != 0 {
		t.Errorf("actions for a resource that is gone: %v", a)
	}
}

// brokenLister fails every read of a resource, as a cache never does but
// the code allows.
type brokenLister struct{ listers.IstioLister }

func (b brokenLister) Istios(ns string) listers.IstioNamespaceLister {
	return brokenNamespaceLister{b.IstioLister.Istios(ns)}
}

type brokenNamespaceLister struct{ listers.IstioNamespaceLister }

func (brokenNamespaceLister) Get(string) (*v1alpha2.Istio, error) { return nil, errBoom }

func TestCacheErrorIsRetried(t *testing.T) {
	f := newFixture(t, served(1))
	f.c.istios = brokenLister{f.istios.Lister}
	if _, err := f.sync(key); !errors.Is(err, errBoom) {
		t.Fatalf("sync error %v, want %v", err, errBoom)
	}
	if a := controllertest.Writes(f.istios.Client.Actions()); len(a) != 0 {
		t.Errorf("writes %v", a)
	}
}

func TestFinalizerAdded(t *testing.T) {
	f := newFixture(t, controllertest.Istio(1))
	f.live(istiod(istioclient.Version, renderedHash))
	if _, err := f.sync(key); err != nil {
		t.Fatal(err)
	}
	if got := f.finalizerUpdates(); !equalFinalizers(got, [][]string{{Finalizer}}) {
		t.Fatalf("finalizer updates %v", got)
	}
	got := f.get(key)
	if !slices.Contains(got.Finalizers, Finalizer) || meta.FindStatusCondition(got.Status.Conditions, v1alpha2.ConditionInstalled) == nil {
		t.Errorf("the resource holds finalizers %v, conditions %v; want the finalizer and the installation's status", got.Finalizers, got.Status.Conditions)
	}
}

// TestFinalizerWriteRemembered: the next sync, before the cache has the
// update, must not add the finalizer again. The status write fails here,
// so only the remembered finalizer write can tell it.
func TestFinalizerWriteRemembered(t *testing.T) {
	f := newFixture(t, controllertest.Istio(1))
	f.istios.Client.PrependReactor("patch", "istios", func(clienttesting.Action) (bool, runtime.Object, error) {
		return true, nil, errBoom
	})
	for range 2 {
		if _, err := f.sync(key); !errors.Is(err, errBoom) {
			t.Fatalf("sync error %v, want the failed status write", err)
		}
	}
	if got := f.finalizerUpdates(); len(got) != 1 {
		t.Errorf("%d finalizer updates, want 1", len(got))
	}
}

func TestFinalizerUpdateFails(t *testing.T) {
	f := newFixture(t, controllertest.Istio(1))
	f.istios.Client.PrependReactor("update", "istios", func(clienttesting.Action) (bool, runtime.Object, error) {
		return true, nil, apierrors.NewConflict(schema.GroupResource{Resource: "istios"}, "default", errBoom)
	})
	_, err := f.sync(key)
	if !apierrors.IsConflict(err) || !strings.Contains(err.Error(), "adding the finalizer") {
		t.Fatalf("sync error %v, want the conflict, retried", err)
	}
	if f.renderer.calls != 0 || f.istios.StatusWrites() != 0 {
		t.Errorf("went on without the finalizer: %d renders, %d status writes", f.renderer.calls, f.istios.StatusWrites())
	}
}

func TestRefusedBeforePlanning(t *testing.T) {
	for name, tc := range map[string]struct {
		spec      v1alpha2.IstioSpec
		live      []*unstructured.Unstructured
		renderErr error
		wantState v1alpha2.State
		reason    string
		message   string
		wantAfter time.Duration
		version   string
	}{
		"invalid spec": {
			spec:      v1alpha2.IstioSpec{Config: v1alpha2.Config{Authorizers: []*v1alpha2.Authorizer{{Name: "a", Port: 1}, nil}}},
			wantState: v1alpha2.StateError, reason: v1alpha2.ReasonValidationFailed,
			message: "The Istio resource is invalid: spec.config.authorizers[1]: Required value: an authorizer must not be null.",
		},
		"experimental fields in a regular build": {
			spec:      v1alpha2.IstioSpec{Experimental: &v1alpha2.Experimental{EnableAmbient: ptr.To(true), EnableDualStack: ptr.To(true)}},
			wantState: v1alpha2.StateError, reason: v1alpha2.ReasonExperimentalFeatureNotAvailable,
			message: "Experimental features are available only in an experimental build of the operator; unset spec.experimental.enableAmbient, spec.experimental.enableDualStack.",
		},
		"installed version unreadable": {
			live:      []*unstructured.Unstructured{istiod("latest", renderedHash)},
			wantState: v1alpha2.StateWarning, reason: v1alpha2.ReasonIstioVersionUpdateNotAllowed, wantAfter: ResyncInterval,
			message: "The installed Istio's version cannot be determined (istiod runs image docker.io/istio/pilot:latest, whose tag is not an Istio version); the operator leaves it untouched.",
		},
		"minor version skipped": {
			live:      []*unstructured.Unstructured{istiod("1.29.3", renderedHash)},
			wantState: v1alpha2.StateWarning, reason: v1alpha2.ReasonIstioVersionUpdateNotAllowed, wantAfter: ResyncInterval, version: "1.29.3",
			message: "Istio 1.29.3 is installed and this operator installs 1.31.1: upgrades may skip no minor version; upgrade one minor version at a time. The installation is left untouched.",
		},
		"downgrade": {
			live:      []*unstructured.Unstructured{istiod("1.32.0", renderedHash)},
			wantState: v1alpha2.StateWarning, reason: v1alpha2.ReasonIstioVersionUpdateNotAllowed, wantAfter: ResyncInterval, version: "1.32.0",
			message: "Istio 1.32.0 is installed and this operator installs 1.31.1: downgrades are not supported. The installation is left untouched.",
		},
		"major version change": {
			live:      []*unstructured.Unstructured{istiod("2.0.0", renderedHash)},
			wantState: v1alpha2.StateWarning, reason: v1alpha2.ReasonIstioVersionUpdateNotAllowed, wantAfter: ResyncInterval, version: "2.0.0",
			message: "Istio 2.0.0 is installed and this operator installs 1.31.1: a change of major version is not supported. The installation is left untouched.",
		},
		"invalid for the renderer": {
			renderErr: &istioclient.InvalidSpecError{Err: errors.New("istiod would reject the mesh configuration: bad")},
			wantState: v1alpha2.StateError, reason: v1alpha2.ReasonValidationFailed,
			message: "The Istio resource is invalid: istiod would reject the mesh configuration: bad.",
		},
	} {
		t.Run(name, func(t *testing.T) {
			if tc.reason == v1alpha2.ReasonExperimentalFeatureNotAvailable && istioclient.ExperimentalBuild {
				t.Skip("the experimental build installs experimental features (test/integration/experimental)")
			}
			istio := served(3)
			istio.Spec = tc.spec
			f := newFixture(t, istio)
			f.live(tc.live...)
			f.renderer.err = tc.renderErr
			after, err := f.sync(key)
			// The user's or the cluster's to fix: no retry with backoff.
			if err != nil || after != tc.wantAfter {
				t.Fatalf("sync = %v, %v; want %v, no error", after, err, tc.wantAfter)
			}
			if len(f.planner.planned) != 0 || len(f.applier.applied) != 0 {
				t.Errorf("planned %d, applied %d", len(f.planner.planned), len(f.applier.applied))
			}
			st := f.get(key).Status
			if st.State != tc.wantState || st.Description != tc.message || st.ObservedGeneration != 3 || st.InstalledVersion != tc.version {
				t.Errorf("status %+v, want %s %q, installed version %q", st, tc.wantState, tc.message, tc.version)
			}
			// Installed says so too: the other controllers wait.
			for _, typ := range []string{v1alpha2.ConditionReady, v1alpha2.ConditionInstalled} {
				c := f.condition(key, typ)
				if c == nil || c.Status != metav1.ConditionFalse || c.Reason != tc.reason || c.Message != tc.message || c.ObservedGeneration != 3 {
					t.Errorf("%s %+v", typ, c)
				}
			}
			if e := f.events(); !slices.Equal(e, []string{"Warning " + tc.reason + " " + tc.message}) {
				t.Errorf("Events %v", e)
			}
		})
	}
}

func TestRenderFailureIsRetried(t *testing.T) {
	f := newFixture(t, served(2))
	f.renderer.err = errBoom
	_, err := f.sync(key)
	if !errors.Is(err, errBoom) || !strings.HasPrefix(err.Error(), "rendering Istio: ") {
		t.Fatalf("sync error %v, want the render error, retried", err)
	}
	msg := "Rendering Istio 1.31.1 failed and is retried: boom."
	for _, typ := range []string{v1alpha2.ConditionReady, v1alpha2.ConditionInstalled} {
		if c := f.condition(key, typ); c == nil || c.Status != metav1.ConditionFalse || c.Reason != v1alpha2.ReasonIstioInstallUninstallFailed || c.Message != msg {
			t.Errorf("%s %+v", typ, c)
		}
	}
	if st := f.get(key).Status; st.State != v1alpha2.StateError {
		t.Errorf("state %s", st.State)
	}
	if len(f.planner.planned) != 0 || len(f.applier.applied) != 0 {
		t.Error("planned or applied without a rendering")
	}
	// A failed rendering is not kept: the retry renders again.
	f.renderer.err = nil
	if _, err := f.sync(key); err != nil {
		t.Fatal(err)
	}
	if f.renderer.calls != 2 {
		t.Errorf("%d renders, want 2", f.renderer.calls)
	}
}

func TestPlanOutcomes(t *testing.T) {
	foreign := "Deployment istio-system/istiod (installed by Helm)"
	for name, tc := range map[string]struct {
		plan        istioclient.Plan
		missingErr  error
		terminating bool
		wantAfter   time.Duration
		wantErr     error
		wantChecked int
		// wantState and reason are the status written; none when empty.
		wantState v1alpha2.State
		reason    string
		message   string
		wantEvent bool
	}{
		"missing objects cannot be looked up": {
			plan: pruning(), missingErr: errBoom, wantErr: errBoom, wantChecked: 1,
		},
		"foreign objects": {
			plan: istioclient.Plan{Foreign: []string{foreign}}, wantAfter: ResyncInterval,
			wantState: v1alpha2.StateWarning, reason: v1alpha2.ReasonForeignIstioFound, wantEvent: true,
			message: "1 objects Istio needs exist and were not installed by this operator: " + foreign + "; they are left untouched. " +
				"Uninstall the Istio they belong to, or remove them, and the operator installs Istio.",
		},
		"istio-system still terminating": {
			plan: pruning(), terminating: true, wantAfter: TerminatingNamespaceInterval, wantChecked: 1,
			wantState: v1alpha2.StateProcessing, reason: v1alpha2.ReasonIstioInstalling,
			message: "Waiting for namespace istio-system, still being deleted, to be gone before installing Istio 1.31.1.",
		},
		"istio-system terminating, nothing to apply": {
			terminating: true, wantAfter: ResyncInterval,
			wantState: v1alpha2.StateReady, reason: v1alpha2.ReasonReconcileSucceeded,
			message: "Istio 1.31.1 is installed and every controller reports success.",
		},
	} {
		t.Run(name, func(t *testing.T) {
			f := newFixture(t, served(2))
			f.live(istioNamespace(tc.terminating))
			f.planner.plan, f.planner.missingErr = tc.plan, tc.missingErr
			after, err := f.sync(key)
			if !errors.Is(err, tc.wantErr) || after != tc.wantAfter {
				t.Fatalf("sync = %v, %v; want %v, %v", after, err, tc.wantAfter, tc.wantErr)
			}
			if f.planner.checked != tc.wantChecked || f.applier.lookups != tc.wantChecked {
				t.Errorf("missing objects looked up %d times (%d reads), want %d", f.planner.checked, f.applier.lookups, tc.wantChecked)
			}
			if len(f.applier.applied) != 0 || f.releases != 0 {
				t.Errorf("applied %d, released %d", len(f.applier.applied), f.releases)
			}
			st := f.get(key).Status
			if st.State != tc.wantState || st.Description != tc.message {
				t.Errorf("status %s %q, want %s %q", st.State, st.Description, tc.wantState, tc.message)
			}
			if c := f.condition(key, v1alpha2.ConditionReady); tc.reason != "" && (c == nil || c.Reason != tc.reason) {
				t.Errorf("Ready %+v, want %s", c, tc.reason)
			}
			var want []string
			if tc.wantEvent {
				want = []string{"Warning " + tc.reason + " " + tc.message}
			}
			if e := f.events(); !slices.Equal(e, want) {
				t.Errorf("Events %v, want %v", e, want)
			}
		})
	}
}

func TestApplies(t *testing.T) {
	for name, tc := range map[string]struct {
		live         []*unstructured.Unstructured
		action       string
		sameRevision bool
		progress     string
		done         string
	}{
		"first install": {
			action: actionInstall, progress: "Installing Istio 1.31.1.", done: "Installed",
		},
		"upgrade": {
			live:   []*unstructured.Unstructured{istiod("1.30.4", renderedHash)},
			action: actionUpgrade, progress: "Upgrading Istio 1.31.1.", done: "Upgraded",
		},
		"patch upgrade": {
			live:   []*unstructured.Unstructured{istiod("1.31.0", renderedHash)},
			action: actionUpgrade, progress: "Upgrading Istio 1.31.1.", done: "Upgraded",
		},
		"new configuration": {
			live:   []*unstructured.Unstructured{istiod(istioclient.Version, "older-hash")},
			action: actionUpdate, sameRevision: true, progress: "Reconfiguring Istio 1.31.1.", done: "Reconfigured",
		},
		"repair": {
			live:   []*unstructured.Unstructured{istiod(istioclient.Version, renderedHash)},
			action: actionRepair, sameRevision: true, progress: "Repairing Istio 1.31.1.", done: "Repaired",
		},
		"repair of a deleted istiod": {
			live:   []*unstructured.Unstructured{ownedObject("v1", "ConfigMap", istioclient.Namespace, "istio")},
			action: actionRepair, sameRevision: true, progress: "Repairing Istio 1.31.1.", done: "Repaired",
		},
	} {
		t.Run(name, func(t *testing.T) {
			f := newFixture(t, served(2))
			f.live(tc.live...)
			f.planner.plan = pruning()
			f.applier.during = func(func(string)) {
				f.clock.Step(1500 * time.Millisecond)
				if f.releases != 0 {
					t.Error("memory released before the apply finished")
				}
			}
			after, err := f.sync(key)
			if err != nil || after != ResyncInterval {
				t.Fatalf("sync = %v, %v", after, err)
			}
			if len(f.applier.applied) != 1 {
				t.Fatalf("%d applies, want 1", len(f.applier.applied))
			}
			// Istio's webhook checks run only when a revision is installed.
			if p := f.applier.applied[0]; p.SameRevision != tc.sameRevision || len(p.Prune) != 1 {
				t.Errorf("applied plan %+v, want SameRevision %v", p, tc.sameRevision)
			}
			if f.releases != 1 {
				t.Errorf("memory released %d times, want once after the apply", f.releases)
			}
			want := []string{tc.progress, "Istio 1.31.1 is installed with the configuration of generation 2."}
			if got := f.installedMessages(); !slices.Equal(got, want) {
				t.Errorf("Installed messages %q, want %q", got, want)
			}
			if c := f.condition(key, v1alpha2.ConditionInstalled); c == nil || c.Status != metav1.ConditionTrue || c.ObservedGeneration != 2 {
				t.Errorf("Installed %+v", c)
			}
			wantEvents := []string{fmt.Sprintf("Normal %sSucceeded %s Istio 1.31.1 in 1.5s: %s.", tc.action, tc.done, pruneSummary)}
			// A repair is routine: it is reported when done, not when started.
			if tc.action != actionRepair {
				wantEvents = append([]string{fmt.Sprintf("Normal %sStarted %s Istio 1.31.1: %s.", tc.action, actionVerb[tc.action], pruneSummary)}, wantEvents...)
			}
			if e := f.events(); !slices.Equal(e, wantEvents) {
				t.Errorf("Events %q, want %q", e, wantEvents)
			}
		})
	}
}

func TestApplyFailure(t *testing.T) {
	f := newFixture(t, served(2, controllertest.InstalledCurrent(2)))
	f.live(istiod("1.30.4", renderedHash))
	f.planner.plan = pruning()
	f.applier.applyErr = errBoom
	after, err := f.sync(key)
	if !errors.Is(err, errBoom) || after != 0 {
		t.Fatalf("sync = %v, %v; want the apply error, retried", after, err)
	}
	msg := "Upgrading Istio 1.31.1 failed and is retried: boom."
	// Installed is False, not left out: without it the other controllers
	// would take the resource for one the operator does not serve.
	for _, typ := range []string{v1alpha2.ConditionReady, v1alpha2.ConditionInstalled} {
		if c := f.condition(key, typ); c == nil || c.Status != metav1.ConditionFalse || c.Reason != v1alpha2.ReasonIstioInstallUninstallFailed || c.Message != msg {
			t.Errorf("%s %+v", typ, c)
		}
	}
	if st := f.get(key).Status; st.State != v1alpha2.StateError || st.Description != msg {
		t.Errorf("status %+v", st)
	}
	want := []string{
		"Normal UpgradeStarted Upgrading Istio 1.31.1: " + pruneSummary + ".",
		"Warning UpgradeFailed Upgrading Istio 1.31.1 failed: boom",
		"Warning " + v1alpha2.ReasonIstioInstallUninstallFailed + " " + msg,
	}
	if e := f.events(); !slices.Equal(e, want) {
		t.Errorf("Events %q, want %q", e, want)
	}
	if f.releases != 0 {
		t.Errorf("memory released %d times after a failed apply", f.releases)
	}
}

// TestFailureReturnedWhenItsReportFails: the cause is retried, not the
// status write that could not report it.
func TestFailureReturnedWhenItsReportFails(t *testing.T) {
	for name, tc := range map[string]struct {
		istio *v1alpha2.Istio
		setup func(f *fixture, failWrites func())
	}{
		"render": {
			istio: served(2),
			setup: func(f *fixture, failWrites func()) {
				f.renderer.err = errBoom
				failWrites()
			},
		},
		"apply": {
			istio: served(2),
			setup: func(f *fixture, failWrites func()) {
				f.planner.plan = pruning()
				f.applier.applyErr = errBoom
				f.applier.during = func(func(string)) { failWrites() }
			},
		},
		"uninstall": {
			istio: deleting(2),
			setup: func(f *fixture, failWrites func()) {
				f.userResources()
				f.applier.uninstallErr = errBoom
				f.applier.uninstalling = failWrites
			},
		},
	} {
		t.Run(name, func(t *testing.T) {
			f := newFixture(t, tc.istio)
			errStatus := errors.New("status write refused")
			fail := false
			f.istios.Client.PrependReactor("patch", "istios", func(clienttesting.Action) (bool, runtime.Object, error) {
				return fail, nil, errStatus
			})
			tc.setup(f, func() { fail = true })
			if _, err := f.sync(key); !errors.Is(err, errBoom) || errors.Is(err, errStatus) {
				t.Errorf("sync error %v, want the %s error", err, name)
			}
		})
	}
}

func TestSpecChangedDuringApply(t *testing.T) {
	f := newFixture(t, served(2))
	f.planner.plan = pruning()
	f.applier.during = func(func(string)) {
		changed := f.get(key)
		changed.Generation, changed.ResourceVersion = 3, "500"
		changed.Spec.CompatibilityMode = true
		f.istios.Set(changed)
	}
	after, err := f.sync(key)
	if err != nil || after != 0 {
		t.Fatalf("sync = %v, %v; want no requeue (the watch has queued the new generation)", after, err)
	}
	for _, s := range f.written() {
		if c := meta.FindStatusCondition(s.Conditions, v1alpha2.ConditionInstalled); c != nil && c.Status == metav1.ConditionTrue {
			t.Errorf("Installed=True written although Istio runs generation 2's configuration: %+v", c)
		}
	}
	if got := f.installedMessages(); !slices.Equal(got, []string{"Installing Istio 1.31.1."}) {
		t.Errorf("Installed messages %q", got)
	}
	if f.releases != 1 {
		t.Errorf("memory released %d times, want 1", f.releases)
	}
	// The next sync installs the new generation's configuration.
	f.applier.during = nil
	if _, err := f.sync(key); err != nil {
		t.Fatal(err)
	}
	if c := f.condition(key, v1alpha2.ConditionInstalled); c == nil || c.Status != metav1.ConditionTrue || c.ObservedGeneration != 3 {
		t.Errorf("Installed %+v after the next sync, want True at generation 3", c)
	}
	if f.renderer.calls != 2 {
		t.Errorf("%d renders, want one per spec", f.renderer.calls)
	}
}

// TestResourceRecreatedDuringApply: what is written after the apply goes
// to the resource the apply was for, never to its successor of the same
// name (the status apply carries the UID).
func TestResourceRecreatedDuringApply(t *testing.T) {
	f := newFixture(t, served(2))
	f.planner.plan = pruning()
	f.applier.during = func(func(string)) {
		successor := controllertest.Istio(1)
		successor.UID, successor.ResourceVersion = "uid-2", "500"
		f.istios.Set(successor)
	}
	if _, err := f.sync(key); err != nil {
		t.Fatal(err)
	}
	var uids []types.UID
	for _, a := range controllertest.Actions(f.istios.Client.Actions(), "patch", "istios", "status") {
		var i v1alpha2.Istio
		if err := json.Unmarshal(a.(clienttesting.PatchAction).GetPatch(), &i); err != nil {
			t.Fatal(err)
		}
		uids = append(uids, i.UID)
	}
	if !slices.Equal(uids, []types.UID{"uid-1", "uid-1"}) {
		t.Errorf("status applies to UIDs %v, want the progress and the summary both to uid-1", uids)
	}
}

func TestProgressWrittenAtMostOncePerInterval(t *testing.T) {
	f := newFixture(t, served(2))
	f.planner.plan = pruning()
	f.applier.during = func(progress func(string)) {
		progress("Base: applying 3 objects")
		progress("Base: waiting for CRDs") // too soon
		f.clock.Step(ProgressInterval - time.Millisecond)
		progress("Pilot: applying 9 objects") // still too soon
		f.clock.Step(time.Millisecond)
		progress("Pilot: waiting for Deployment istio-system/istiod")
	}
	if _, err := f.sync(key); err != nil {
		t.Fatal(err)
	}
	want := []string{
		"Installing Istio 1.31.1.",
		"Installing Istio 1.31.1: Base: applying 3 objects.",
		"Installing Istio 1.31.1: Pilot: waiting for Deployment istio-system/istiod.",
		"Istio 1.31.1 is installed with the configuration of generation 2.",
	}
	if got := f.installedMessages(); !slices.Equal(got, want) {
		t.Errorf("Installed messages %q, want %q", got, want)
	}
}

func TestProgressWriteFailureDoesNotStopTheApply(t *testing.T) {
	f := newFixture(t, served(2))
	f.planner.plan = pruning()
	fail := false
	f.istios.Client.PrependReactor("patch", "istios", func(clienttesting.Action) (bool, runtime.Object, error) {
		return fail, nil, errBoom
	})
	f.applier.during = func(progress func(string)) {
		fail = true
		progress("Base: applying 3 objects")
		fail = false
	}
	after, err := f.sync(key)
	if err != nil || after != ResyncInterval {
		t.Fatalf("sync = %v, %v", after, err)
	}
	if c := f.condition(key, v1alpha2.ConditionInstalled); c == nil || c.Status != metav1.ConditionTrue {
		t.Errorf("Installed %+v", c)
	}
}

func TestProgressWriteFailureBeforeTheApply(t *testing.T) {
	f := newFixture(t, served(2))
	f.planner.plan = pruning()
	f.istios.Client.PrependReactor("patch", "istios", func(clienttesting.Action) (bool, runtime.Object, error) {
		return true, nil, errBoom
	})
	if _, err := f.sync(key); !errors.Is(err, errBoom) {
		t.Fatalf("sync error %v, want the failed status write", err)
	}
	if len(f.applier.applied) != 0 {
		t.Error("applied without reporting the install")
	}
}

func TestRenderingReusedWhileTheSpecIsUnchanged(t *testing.T) {
	f := newFixture(t, served(1))
	first := f.get(key)
	syncWith := func(spec v1alpha2.IstioSpec) {
		t.Helper()
		i := f.get(key)
		i.Spec = spec
		f.istios.Set(i)
		if _, err := f.sync(key); err != nil {
			t.Fatal(err)
		}
	}
	syncWith(first.Spec)
	syncWith(first.Spec)
	if f.renderer.calls != 1 {
		t.Fatalf("%d renders of one spec, want 1", f.renderer.calls)
	}
	if p := f.planner.planned; len(p) != 2 || p[0] != p[1] {
		t.Errorf("the second plan is not made from the first rendering")
	}
	compat := first.Spec
	compat.CompatibilityMode = true
	syncWith(compat)
	if f.renderer.calls != 2 {
		t.Errorf("%d renders after a spec change, want 2", f.renderer.calls)
	}
	// Only the last rendering is kept.
	syncWith(first.Spec)
	if f.renderer.calls != 3 {
		t.Errorf("%d renders after changing the spec back, want 3", f.renderer.calls)
	}
}

// TestWithIstioclientPlanner runs the real planner on an empty rendering:
// its only object is the default revision tag webhook, which Istio's
// installer creates beside the charts.
func TestWithIstioclientPlanner(t *testing.T) {
	tag := func(owned bool) *unstructured.Unstructured {
		if owned {
			return ownedObject("admissionregistration.k8s.io/v1", "MutatingWebhookConfiguration", "", istioclient.TagWebhookName)
		}
		return object("admissionregistration.k8s.io/v1", "MutatingWebhookConfiguration", "", istioclient.TagWebhookName)
	}
	for name, tc := range map[string]struct {
		live      []*unstructured.Unstructured
		wantApply bool
		reason    string
	}{
		"tag webhook in place": {live: []*unstructured.Unstructured{tag(true)}, reason: v1alpha2.ReasonReconcileSucceeded},
		"tag webhook missing":  {wantApply: true, reason: v1alpha2.ReasonReconcileSucceeded},
		"someone else's tag webhook": {
			live: []*unstructured.Unstructured{tag(false)}, reason: v1alpha2.ReasonForeignIstioFound,
		},
	} {
		t.Run(name, func(t *testing.T) {
			f := newFixture(t, served(1))
			f.c.planner = new(istioclient.Planner)
			f.live(tc.live...)
			if _, err := f.sync(key); err != nil {
				t.Fatal(err)
			}
			if applied := len(f.applier.applied) == 1; applied != tc.wantApply {
				t.Fatalf("applied %v, want %v", applied, tc.wantApply)
			}
			if tc.wantApply && !f.applier.applied[0].TagWebhookMissing {
				t.Errorf("applied %+v, want the tag webhook created", f.applier.applied[0])
			}
			if c := f.condition(key, v1alpha2.ConditionReady); c == nil || c.Reason != tc.reason {
				t.Errorf("Ready %+v, want %s", c, tc.reason)
			}
		})
	}
}
