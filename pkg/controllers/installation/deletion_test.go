package installation

import (
	"errors"
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
	"k8s.io/apimachinery/pkg/watch"
	metadatafake "k8s.io/client-go/metadata/fake"
	clienttesting "k8s.io/client-go/testing"
	"k8s.io/client-go/tools/cache"

	v1alpha2 "github.com/meshkeeper/istio-operator/pkg/apis/operator/v1alpha2"
	"github.com/meshkeeper/istio-operator/pkg/controllers/controllertest"
	"github.com/meshkeeper/istio-operator/pkg/istioclient"
)

// installedBefore is the Installed condition of the resource when deleted:
// every status write during the deletion keeps it.
var installedBefore = controllertest.InstalledCurrent(2)

func TestDeletion(t *testing.T) {
	users := []userObject{userObj("VirtualService", "default", "reviews", nil), userObj("Gateway", "shop", "gw", nil)}
	named := "Gateway shop/gw, VirtualService default/reviews"
	uninstalled := []string{
		"Normal UninstallStarted Uninstalling Istio: no user-created Istio resources remain.",
		"Normal UninstallSucceeded Uninstalled Istio in 2s.",
	}
	for name, tc := range map[string]struct {
		strategy v1alpha2.DeletionStrategy
		users    []userObject
		live     []*unstructured.Unstructured
		kept     string

		wantAfter     time.Duration
		wantState     v1alpha2.State
		reason        string
		message       string
		wantDeletes   []string
		wantEvents    []string
		wantUninstall bool
	}{
		"blocked by user resources": {
			users: users, wantAfter: BlockedInterval,
			wantState: v1alpha2.StateWarning, reason: v1alpha2.ReasonIstioCustomResourcesDangling,
			message: "Istio is not uninstalled while 2 Istio resources created by users exist: " + named +
				". Delete them, or set spec.deletionStrategy to Cascading to delete them with Istio.",
			wantEvents: []string{"Warning " + v1alpha2.ReasonIstioCustomResourcesDangling + " Istio is not uninstalled while 2 Istio resources created by users exist: " + named +
				". Delete them, or set spec.deletionStrategy to Cascading to delete them with Istio."},
		},
		"blocked, the first five named": {
			strategy: v1alpha2.DeletionStrategyBlocking,
			users: []userObject{
				userObj("Sidecar", "b", "s", nil), userObj("Sidecar", "a", "s", nil), userObj("Telemetry", "a", "t", nil),
				userObj("AuthorizationPolicy", "z", "p", nil), userObj("EnvoyFilter", "x", "f", nil), userObj("WasmPlugin", "a", "w", nil),
				userObj("ServiceEntry", "a", "e", nil),
			},
			wantAfter: BlockedInterval, wantState: v1alpha2.StateWarning, reason: v1alpha2.ReasonIstioCustomResourcesDangling,
			message: "Istio is not uninstalled while 7 Istio resources created by users exist: AuthorizationPolicy z/p, EnvoyFilter x/f, ServiceEntry a/e, " +
				"Sidecar a/s, Sidecar b/s and 2 more. Delete them, or set spec.deletionStrategy to Cascading to delete them with Istio.",
			wantEvents: []string{"Warning " + v1alpha2.ReasonIstioCustomResourcesDangling + " Istio is not uninstalled while 7 Istio resources created by users exist: " +
				"AuthorizationPolicy z/p, EnvoyFilter x/f, ServiceEntry a/e, Sidecar a/s, Sidecar b/s and 2 more. Delete them, or set spec.deletionStrategy to Cascading to delete them with Istio."},
		},
		"cascading": {
			strategy: v1alpha2.DeletionStrategyCascading, users: users, wantAfter: 5 * time.Second,
			wantState: v1alpha2.StateDeleting, reason: v1alpha2.ReasonIstioUninstalling,
			message:     "Deleting 2 Istio resources created by users (deletion strategy Cascading): " + named + ".",
			wantDeletes: []string{"gateways shop/gw", "virtualservices default/reviews"},
			wantEvents:  []string{"Normal DeletingUserResources Deleting 2 Istio resources created by users (deletion strategy Cascading): " + named + "."},
		},
		"no user resources": {
			wantState: v1alpha2.StateDeleting, reason: v1alpha2.ReasonIstioUninstalling, message: "Uninstalling Istio 1.31.1.",
			wantEvents: uninstalled, wantUninstall: true,
		},
		"only objects the operator or Istio's installers created, or being deleted": {
			users: []userObject{
				userObj("PeerAuthentication", istioclient.Namespace, "default", map[string]string{istioclient.ManagedByLabel: istioclient.ManagedByValue}),
				userObj("EnvoyFilter", istioclient.Namespace, "stats", map[string]string{"operator.istio.io/managed": "Reconcile"}),
				userObj("Gateway", istioclient.Namespace, "helm", map[string]string{"install.operator.istio.io/owning-resource": "unknown"}),
				func() userObject {
					u := userObj("VirtualService", "default", "going", nil)
					u.obj.DeletionTimestamp = &metav1.Time{Time: controllertest.Start}
					return u
				}(),
			},
			wantState: v1alpha2.StateDeleting, reason: v1alpha2.ReasonIstioUninstalling, message: "Uninstalling Istio 1.31.1.",
			wantEvents: uninstalled, wantUninstall: true,
		},
		"an older version the operator may upgrade from": {
			live:      []*unstructured.Unstructured{istiod("1.30.4", renderedHash)},
			wantState: v1alpha2.StateDeleting, reason: v1alpha2.ReasonIstioUninstalling, message: "Uninstalling Istio 1.31.1.",
			wantEvents: uninstalled, wantUninstall: true,
		},
		"istio-system kept": {
			kept:      "2 Pods of other applications run in it",
			wantState: v1alpha2.StateDeleting, reason: v1alpha2.ReasonIstioUninstalling, message: "Uninstalling Istio 1.31.1.",
			wantEvents:    append(slices.Clone(uninstalled), "Normal NamespaceKept Namespace istio-system is kept: 2 Pods of other applications run in it."),
			wantUninstall: true,
		},
	} {
		t.Run(name, func(t *testing.T) {
			istio := deleting(2, installedBefore)
			istio.Spec.DeletionStrategy = tc.strategy
			f := newFixture(t, istio)
			f.live(tc.live...)
			f.userResources(tc.users...)
			f.applier.kept = tc.kept
			f.applier.uninstalling = func() { f.clock.Step(2 * time.Second) }
			after, err := f.sync(key)
			if err != nil || after != tc.wantAfter {
				t.Fatalf("sync = %v, %v; want %v", after, err, tc.wantAfter)
			}
			if got := f.userDeletes(); !slices.Equal(got, tc.wantDeletes) {
				t.Errorf("deleted %v, want %v", got, tc.wantDeletes)
			}
			if uninstalled := f.applier.uninstalls == 1; uninstalled != tc.wantUninstall {
				t.Errorf("uninstalled %d times", f.applier.uninstalls)
			}
			// Once uninstalled, the resource may go.
			var wantFinalizers [][]string
			if tc.wantUninstall {
				wantFinalizers = [][]string{{}}
			}
			if got := f.finalizerUpdates(); !equalFinalizers(got, wantFinalizers) {
				t.Errorf("finalizer updates %v, want %v", got, wantFinalizers)
			}
			st := f.written()
			if len(st) != 1 {
				t.Fatalf("%d status writes, want 1", len(st))
			}
			if st[0].State != tc.wantState || st[0].Description != tc.message {
				t.Errorf("status %s %q, want %s %q", st[0].State, st[0].Description, tc.wantState, tc.message)
			}
			if c := meta.FindStatusCondition(st[0].Conditions, v1alpha2.ConditionReady); c == nil || c.Status != metav1.ConditionFalse || c.Reason != tc.reason {
				t.Errorf("Ready %+v, want False %s", c, tc.reason)
			}
			assertInstalledKept(t, st[0])
			if e := f.events(); !slices.Equal(e, tc.wantEvents) {
				t.Errorf("Events %q, want %q", e, tc.wantEvents)
			}
		})
	}
}

// assertInstalledKept checks that a status written during the deletion
// carries the Installed condition as it was.
func assertInstalledKept(t *testing.T, st v1alpha2.IstioStatus) {
	t.Helper()
	c := meta.FindStatusCondition(st.Conditions, v1alpha2.ConditionInstalled)
	if c == nil || c.Status != installedBefore.Status || c.Reason != installedBefore.Reason || c.Message != installedBefore.Message {
		t.Errorf("Installed %+v, want it kept as %+v", c, installedBefore)
	}
}

// TestDeletionBeforeInstalled: a resource deleted before it was ever
// reported installed gets no Installed condition while it is uninstalled.
func TestDeletionBeforeInstalled(t *testing.T) {
	f := newFixture(t, deleting(2))
	f.userResources()
	if _, err := f.sync(key); err != nil {
		t.Fatal(err)
	}
	st := f.written()
	if len(st) != 1 || st[0].State != v1alpha2.StateDeleting {
		t.Fatalf("statuses written %+v, want one Deleting", st)
	}
	if c := meta.FindStatusCondition(st[0].Conditions, v1alpha2.ConditionInstalled); c != nil {
		t.Errorf("Installed %+v written during the deletion", c)
	}
	if f.applier.uninstalls != 1 {
		t.Errorf("%d uninstalls", f.applier.uninstalls)
	}
}

func TestUninstallFailure(t *testing.T) {
	f := newFixture(t, deleting(2, installedBefore))
	f.userResources()
	f.applier.uninstallErr = errBoom
	if _, err := f.sync(key); !errors.Is(err, errBoom) {
		t.Fatalf("sync error %v, want the uninstall error, retried", err)
	}
	if u := f.finalizerUpdates(); len(u) != 0 {
		t.Errorf("finalizer updates %v after a failed uninstall", u)
	}
	msg := "Uninstalling Istio failed and is retried: boom."
	st := f.get(key).Status
	if st.State != v1alpha2.StateError || st.Description != msg {
		t.Errorf("status %s %q", st.State, st.Description)
	}
	if c := f.condition(key, v1alpha2.ConditionReady); c == nil || c.Reason != v1alpha2.ReasonIstioInstallUninstallFailed {
		t.Errorf("Ready %+v", c)
	}
	assertInstalledKept(t, st)
	want := []string{
		"Normal UninstallStarted Uninstalling Istio: no user-created Istio resources remain.",
		"Warning UninstallFailed Uninstalling Istio failed: boom",
		"Warning " + v1alpha2.ReasonIstioInstallUninstallFailed + " " + msg,
	}
	if e := f.events(); !slices.Equal(e, want) {
		t.Errorf("Events %q, want %q", e, want)
	}
}

// TestUninstallSkipped: an installation the version gate kept the operator
// away from is not the operator's to remove.
func TestUninstallSkipped(t *testing.T) {
	for name, tc := range map[string]struct {
		istiod *unstructured.Unstructured
		why    string
	}{
		"version gate": {
			istiod: istiod("1.29.0", renderedHash),
			why:    "Istio 1.29.0 is installed and this operator installs 1.31.1: upgrades may skip no minor version; upgrade one minor version at a time",
		},
		"version unreadable": {
			istiod: istiod("latest", renderedHash),
			why:    "its version cannot be read: istiod runs image docker.io/istio/pilot:latest, whose tag is not an Istio version",
		},
	} {
		t.Run(name, func(t *testing.T) {
			f := newFixture(t, deleting(2, installedBefore))
			f.live(tc.istiod)
			f.userResources(userObj("VirtualService", "default", "reviews", nil))
			after, err := f.sync(key)
			if err != nil || after != 0 {
				t.Fatalf("sync = %v, %v", after, err)
			}
			if f.applier.uninstalls != 0 || len(f.userDeletes()) != 0 {
				t.Errorf("uninstalled %d times, deleted %v", f.applier.uninstalls, f.userDeletes())
			}
			if got := f.finalizerUpdates(); !equalFinalizers(got, [][]string{{}}) {
				t.Errorf("finalizer updates %v, want the finalizer removed", got)
			}
			if n := f.istios.StatusWrites(); n != 0 {
				t.Errorf("%d status writes", n)
			}
			want := []string{"Normal UninstallSkipped The installed Istio was never managed by this operator (" + tc.why + "); it is left installed."}
			if e := f.events(); !slices.Equal(e, want) {
				t.Errorf("Events %q, want %q", e, want)
			}
		})
	}
}

func TestDeletionWithoutTheFinalizer(t *testing.T) {
	istio := deleting(2)
	istio.Finalizers = []string{"other/finalizer"}
	f := newFixture(t, istio)
	f.userResources(userObj("VirtualService", "default", "reviews", nil))
	after, err := f.sync(key)
	if err != nil || after != 0 {
		t.Fatalf("sync = %v, %v", after, err)
	}
	if a := controllertest.Writes(f.istios.Client.Actions()); len(a) != 0 || f.applier.uninstalls != 0 {
		t.Errorf("writes %v, %d uninstalls for a resource already let go of", a, f.applier.uninstalls)
	}
}

func TestDeletionWaitsForTheUserResourceCaches(t *testing.T) {
	f := newFixture(t, deleting(2, installedBefore))
	f.c.userResources.informers[istioclient.UserResources[0].Resource] = cache.NewSharedIndexInformer(
		&cache.ListWatch{}, &metav1.PartialObjectMetadata{}, 0, cache.Indexers{})
	after, err := f.sync(key)
	if err != nil || after != time.Second {
		t.Fatalf("sync = %v, %v; want a look again after 1s", after, err)
	}
	if a := controllertest.Writes(f.istios.Client.Actions()); len(a) != 0 || f.applier.uninstalls != 0 {
		t.Errorf("writes %v, %d uninstalls before the user resources are known", a, f.applier.uninstalls)
	}
}

func TestCascadingDeleteErrors(t *testing.T) {
	for name, tc := range map[string]struct {
		err       error
		wantAfter time.Duration
		wantErr   bool
		wantN     int
	}{
		"already gone": {err: apierrors.NewNotFound(schema.GroupResource{Resource: "virtualservices"}, "a"), wantAfter: 5 * time.Second, wantN: 2},
		"refused":      {err: apierrors.NewForbidden(schema.GroupResource{Resource: "virtualservices"}, "a", errBoom), wantErr: true, wantN: 1},
	} {
		t.Run(name, func(t *testing.T) {
			istio := deleting(2, installedBefore)
			istio.Spec.DeletionStrategy = v1alpha2.DeletionStrategyCascading
			f := newFixture(t, istio)
			f.userResources(userObj("VirtualService", "default", "a", nil), userObj("VirtualService", "default", "b", nil))
			f.meta.PrependReactor("delete", "*", func(clienttesting.Action) (bool, runtime.Object, error) { return true, nil, tc.err })
			after, err := f.sync(key)
			if (err != nil) != tc.wantErr || after != tc.wantAfter {
				t.Fatalf("sync = %v, %v; want %v, error %v", after, err, tc.wantAfter, tc.wantErr)
			}
			if tc.wantErr && err.Error() != "deleting VirtualService default/a: "+tc.err.Error() {
				t.Errorf("error %q does not name the resource", err)
			}
			if n := len(f.userDeletes()); n != tc.wantN {
				t.Errorf("%d deletes, want %d", n, tc.wantN)
			}
			if f.applier.uninstalls != 0 {
				t.Error("uninstalled before the user resources were gone")
			}
		})
	}
}

func TestDeletionStopsWhenTheStatusCannotBeWritten(t *testing.T) {
	for name, strategy := range map[string]v1alpha2.DeletionStrategy{
		"blocked":   v1alpha2.DeletionStrategyBlocking,
		"cascading": v1alpha2.DeletionStrategyCascading,
		"uninstall": "",
	} {
		t.Run(name, func(t *testing.T) {
			istio := deleting(2, installedBefore)
			istio.Spec.DeletionStrategy = strategy
			f := newFixture(t, istio)
			if name != "uninstall" {
				f.userResources(userObj("VirtualService", "default", "a", nil))
			} else {
				f.userResources()
			}
			f.istios.Client.PrependReactor("patch", "istios", func(clienttesting.Action) (bool, runtime.Object, error) {
				return true, nil, errBoom
			})
			if _, err := f.sync(key); !errors.Is(err, errBoom) {
				t.Fatalf("sync error %v, want the failed status write", err)
			}
			if len(f.userDeletes()) != 0 || f.applier.uninstalls != 0 || len(f.finalizerUpdates()) != 0 {
				t.Errorf("went on without reporting: deletes %v, %d uninstalls, finalizer updates %v",
					f.userDeletes(), f.applier.uninstalls, f.finalizerUpdates())
			}
		})
	}
}

func TestFinalizerRemovalOfAResourceAlreadyGone(t *testing.T) {
	f := newFixture(t, deleting(2, installedBefore))
	f.userResources()
	f.istios.Client.PrependReactor("update", "istios", func(clienttesting.Action) (bool, runtime.Object, error) {
		return true, nil, apierrors.NewNotFound(schema.GroupResource{Resource: "istios"}, "default")
	})
	if _, err := f.sync(key); err != nil {
		t.Fatalf("sync error %v, want none: the resource is gone", err)
	}
	if f.applier.uninstalls != 1 {
		t.Errorf("%d uninstalls", f.applier.uninstalls)
	}
}

func TestFinalizerRemovalFailureIsRetried(t *testing.T) {
	f := newFixture(t, deleting(2, installedBefore))
	f.userResources()
	f.istios.Client.PrependReactor("update", "istios", func(clienttesting.Action) (bool, runtime.Object, error) {
		return true, nil, errBoom
	})
	if _, err := f.sync(key); !errors.Is(err, errBoom) {
		t.Fatalf("sync error %v, want the failed update", err)
	}
}

// TestUserResourceInformers runs the real informers on a fake metadata
// client: started on the first deletion for the kinds whose CRD exists,
// not synced until their list returns, waking the key on changes, and
// stopped before the uninstall deletes the CRDs.
func TestUserResourceInformers(t *testing.T) {
	f := newFixture(t, deleting(2, installedBefore))
	f.live(crd("VirtualService"))
	vs := userObj("VirtualService", "default", "reviews", nil)
	if err := f.meta.Tracker().Create(vs.resource, vs.obj, "default"); err != nil {
		t.Fatal(err)
	}
	listed := make(chan struct{})
	f.meta.PrependReactor("list", "*", func(clienttesting.Action) (bool, runtime.Object, error) {
		<-listed
		return false, nil, nil
	})
	// The fake sends a watch only the events after it is registered.
	watching := make(chan struct{}, 10)
	f.meta.PrependWatchReactor("*", func(a clienttesting.Action) (bool, watch.Interface, error) {
		w, err := f.meta.Tracker().Watch(a.GetResource(), a.GetNamespace())
		watching <- struct{}{}
		return true, w, err
	})
	changed := make(chan struct{}, 10)
	f.c.userResources.onChange = func() { changed <- struct{}{} }

	after, err := f.sync(key)
	if err != nil || after != time.Second {
		t.Fatalf("sync = %v, %v; want a look again after 1s while the list is pending", after, err)
	}
	if got := watchedKinds(f.c.userResources); !slices.Equal(got, []string{"virtualservices"}) {
		t.Errorf("watching %v, want only the kind whose CRD exists", got)
	}
	close(listed)
	wait(t, changed, "the informer reported no change")
	// client-go can run the handler before the informer reports synced
	// (the controller's poll covers that gap): wait for both.
	var synced []cache.InformerSynced
	f.c.userResources.mu.Lock()
	for _, inf := range f.c.userResources.informers {
		synced = append(synced, inf.HasSynced)
	}
	f.c.userResources.mu.Unlock()
	stop := make(chan struct{})
	timer := time.AfterFunc(10*time.Second, func() { close(stop) })
	defer timer.Stop()
	if !cache.WaitForCacheSync(stop, synced...) {
		t.Fatal("the user resource informer did not sync")
	}
	after, err = f.sync(key)
	if err != nil || after != BlockedInterval {
		t.Fatalf("sync = %v, %v; want blocked by the VirtualService", after, err)
	}
	if d := f.get(key).Status.Description; d == "" || !strings.Contains(d, "VirtualService default/reviews") {
		t.Errorf("description %q does not name the VirtualService", d)
	}

	// Deleted: the uninstall stops the informers first.
	wait(t, watching, "the informer did not watch")
	if err := f.meta.Tracker().Delete(vs.resource, "default", "reviews"); err != nil {
		t.Fatal(err)
	}
	wait(t, changed, "the informer reported no delete")
	f.istios.CatchUp(key)
	if _, err := f.sync(key); err != nil {
		t.Fatal(err)
	}
	if f.applier.uninstalls != 1 {
		t.Fatalf("%d uninstalls, want 1", f.applier.uninstalls)
	}
	if got := watchedKinds(f.c.userResources); len(got) != 0 {
		t.Errorf("still watching %v after the uninstall", got)
	}
}

// wait receives from ch; the timeout only bounds a failing test.
func wait(t *testing.T, ch <-chan struct{}, failure string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(10 * time.Second):
		t.Fatal(failure)
	}
}

func TestUserResourcesShutdownTwice(t *testing.T) {
	u := newUserResources(metadatafake.NewSimpleMetadataClient(metadatafake.NewTestScheme()), func() {})
	u.reset()
	u.shutdown()
	u.shutdown() // Run's deferred shutdown after a sync's: no panic
}

func watchedKinds(u *userResources) []string {
	u.mu.Lock()
	defer u.mu.Unlock()
	var out []string
	for r := range u.informers {
		out = append(out, r.Resource)
	}
	slices.Sort(out)
	return out
}

func TestUserResourceString(t *testing.T) {
	for _, tc := range []struct {
		r    userResource
		want string
	}{
		{userResource{kind: "VirtualService", namespace: "default", name: "reviews"}, "VirtualService default/reviews"},
		{userResource{kind: "Telemetry", name: "mesh"}, "Telemetry mesh"},
	} {
		if got := tc.r.String(); got != tc.want {
			t.Errorf("%q, want %q", got, tc.want)
		}
	}
}

// TestDeletionAwaitsSidecarRemoval: after the uninstall the finalizer stays
// until the proxy sidecar controller reports the sidecars removed, or
// removed as far as it can; the uninstall is not repeated meanwhile, and
// the keep annotation lets the resource go at once.
func TestDeletionAwaitsSidecarRemoval(t *testing.T) {
	for name, tc := range map[string]struct {
		reason string // the proxy sidecar controller's, after the uninstall
		keep   bool
		goes   bool
	}{
		"in progress":               {reason: v1alpha2.ReasonProxySidecarRemovalInProgress},
		"the condition from before": {reason: v1alpha2.ReasonProxySidecarRestartSucceeded},
		"removed":                   {reason: v1alpha2.ReasonProxySidecarsRemoved, goes: true},
		"incomplete":                {reason: v1alpha2.ReasonProxySidecarRemovalIncomplete, goes: true},
		"keep annotation set later": {reason: v1alpha2.ReasonProxySidecarRemovalInProgress, keep: true, goes: true},
	} {
		t.Run(name, func(t *testing.T) {
			istio := deleting(2, installedBefore)
			istio.Annotations = nil
			f := newFixture(t, istio)
			f.userResources()
			after, err := f.sync(key)
			if err != nil || after != SidecarRemovalInterval {
				t.Fatalf("sync = %v, %v; want %v", after, err, SidecarRemovalInterval)
			}
			if f.applier.uninstalls != 1 || len(f.finalizerUpdates()) != 0 {
				t.Fatalf("%d uninstalls, finalizer updates %v; want 1 and none", f.applier.uninstalls, f.finalizerUpdates())
			}
			if c := f.condition(key, v1alpha2.ConditionInstalled); c == nil || c.Status != metav1.ConditionFalse || c.Reason != v1alpha2.ReasonIstioUninstallSucceeded {
				t.Fatalf("Installed %+v, want False %s", c, v1alpha2.ReasonIstioUninstallSucceeded)
			}
			ready := f.condition(key, v1alpha2.ConditionReady)
			if ready == nil || ready.Reason != v1alpha2.ReasonIstioUninstallSucceeded || !strings.Contains(ready.Message, v1alpha2.AnnotationKeepSidecars) {
				t.Fatalf("Ready %+v, want %s naming %s", ready, v1alpha2.ReasonIstioUninstallSucceeded, v1alpha2.AnnotationKeepSidecars)
			}

			now := f.get(key)
			meta.SetStatusCondition(&now.Status.Conditions, metav1.Condition{
				Type: v1alpha2.ConditionProxySidecarRestartSucceeded, Status: metav1.ConditionFalse, Reason: tc.reason, Message: "m",
			})
			if tc.keep {
				now.Annotations = map[string]string{v1alpha2.AnnotationKeepSidecars: "true"}
			}
			now.ResourceVersion = "9999"
			f.istios.Set(now)
			after, err = f.sync(key)
			if err != nil {
				t.Fatal(err)
			}
			if f.applier.uninstalls != 1 {
				t.Errorf("%d uninstalls, want the first only", f.applier.uninstalls)
			}
			gone := len(f.finalizerUpdates()) == 1
			if gone != tc.goes || (!gone && after != SidecarRemovalInterval) {
				t.Errorf("finalizer removed %v (requeue %v), want %v", gone, after, tc.goes)
			}
		})
	}
}
