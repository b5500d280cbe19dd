package peerauthentication

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	securityapi "istio.io/api/security/v1beta1"
	typeapi "istio.io/api/type/v1beta1"
	securityv1 "istio.io/client-go/pkg/apis/security/v1"
	securityfake "istio.io/client-go/pkg/clientset/versioned/fake"
	securitylisters "istio.io/client-go/pkg/listers/security/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	clientfeatures "k8s.io/client-go/features"
	clientfeaturestesting "k8s.io/client-go/features/testing"
	clienttesting "k8s.io/client-go/testing"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"

	v1alpha2 "github.com/meshkeeper/istio-operator/pkg/apis/operator/v1alpha2"
	"github.com/meshkeeper/istio-operator/pkg/controllers/controllertest"
	"github.com/meshkeeper/istio-operator/pkg/istioclient"
)

var key = controllertest.Key

// fixture is the controller over caches filled from objects and fake
// clients recording their actions (controllertest's, as the other
// controllers' tests use), in the manner of sample-controller: sync is
// called directly and the recorded actions and Events are asserted.
type fixture struct {
	t        *testing.T
	istios   *controllertest.Istios
	security *securityfake.Clientset
	recorder *record.FakeRecorder
	c        *Controller
	// applyErr, when set, fails every PeerAuthentication apply.
	applyErr error
	rv       int
}

func newFixture(t *testing.T, istio *v1alpha2.Istio) *fixture {
	t.Helper()
	f := &fixture{t: t, rv: 100, istios: controllertest.NewIstios(t, istio), recorder: controllertest.Recorder()}
	f.security = securityfake.NewSimpleClientset()
	// The simple tracker cannot create objects by server-side apply; this
	// reactor answers an apply as the API server would, with the object.
	f.security.PrependReactor("patch", "peerauthentications", func(a clienttesting.Action) (bool, runtime.Object, error) {
		p := a.(clienttesting.PatchAction)
		if p.GetPatchType() != types.ApplyPatchType {
			return false, nil, nil
		}
		if f.applyErr != nil {
			return true, nil, f.applyErr
		}
		pa := &securityv1.PeerAuthentication{}
		if err := json.Unmarshal(p.GetPatch(), pa); err != nil {
			return true, nil, err
		}
		f.rv++
		pa.ResourceVersion = fmt.Sprint(f.rv)
		return true, pa, nil
	})
	f.c = newController(controllertest.Namespace, f.istios.Client, f.istios.Lister, f.security, f.recorder, controllertest.Clock())
	t.Cleanup(f.c.loop.ShutDown)
	return f
}

// seed stands in for a started and synced PeerAuthentication informer
// holding the objects.
func (f *fixture) seed(pas ...*securityv1.PeerAuthentication) {
	f.t.Helper()
	objs := make([]runtime.Object, len(pas))
	for i, pa := range pas {
		objs[i] = pa
	}
	f.c.peerAuths.Seed(securitylisters.NewPeerAuthenticationLister(controllertest.Indexer(f.t, objs...)))
}

// catchUp lets the Istio informer deliver what the client holds now.
func (f *fixture) catchUp() { f.istios.CatchUp(key) }

func (f *fixture) sync() (time.Duration, error) {
	f.t.Helper()
	res, err := f.c.sync(context.Background(), key)
	return res.RequeueAfter, err
}

// applies are the PeerAuthentication applies sent.
func (f *fixture) applies() []clienttesting.PatchAction {
	return controllertest.Applies(f.security.Actions(), "peerauthentications")
}

// securityWrites are all writes to Istio's security API.
func (f *fixture) securityWrites() []clienttesting.Action {
	return controllertest.Writes(f.security.Actions())
}

// statusWrites are the status applies to the Istio resource.
func (f *fixture) statusWrites() int { return f.istios.StatusWrites() }

func (f *fixture) condition() *metav1.Condition {
	f.t.Helper()
	return f.istios.Condition(key, v1alpha2.ConditionPeerAuthenticationReady)
}

func (f *fixture) events() []string { return controllertest.Drain(f.recorder) }

func peerAuth(name string, mode securityapi.PeerAuthentication_MutualTLS_Mode, managed bool) *securityv1.PeerAuthentication {
	pa := &securityv1.PeerAuthentication{ObjectMeta: metav1.ObjectMeta{Namespace: istioclient.Namespace, Name: name, ResourceVersion: "50"}}
	if managed {
		pa.Labels = map[string]string{istioclient.ManagedByLabel: istioclient.ManagedByValue}
	}
	pa.Spec.Mtls = &securityapi.PeerAuthentication_MutualTLS{Mode: mode}
	return pa
}

func withSelector(pa *securityv1.PeerAuthentication, app string, ports map[uint32]securityapi.PeerAuthentication_MutualTLS_Mode) *securityv1.PeerAuthentication {
	pa.Spec.Selector = &typeapi.WorkloadSelector{MatchLabels: map[string]string{"app": app}}
	if len(ports) > 0 {
		pa.Spec.PortLevelMtls = map[uint32]*securityapi.PeerAuthentication_MutualTLS{}
		for p, m := range ports {
			pa.Spec.PortLevelMtls[p] = &securityapi.PeerAuthentication_MutualTLS{Mode: m}
		}
	}
	return pa
}

const (
	strict     = securityapi.PeerAuthentication_MutualTLS_STRICT
	permissive = securityapi.PeerAuthentication_MutualTLS_PERMISSIVE
	disable    = securityapi.PeerAuthentication_MutualTLS_DISABLE
	unset      = securityapi.PeerAuthentication_MutualTLS_UNSET
)

func TestWaitsForTheInstallation(t *testing.T) {
	for name, tc := range map[string]struct {
		installed metav1.Condition
		mention   string
	}{
		"installing": {
			installed: metav1.Condition{Type: v1alpha2.ConditionInstalled, Status: metav1.ConditionFalse,
				Reason: v1alpha2.ReasonIstioInstalling, Message: "Installing Istio 1.31.1: base.", ObservedGeneration: 2},
			mention: "the Installed condition is False (IstioInstalling)",
		},
		"invalid spec": {
			installed: metav1.Condition{Type: v1alpha2.ConditionInstalled, Status: metav1.ConditionFalse,
				Reason: v1alpha2.ReasonValidationFailed, Message: "The Istio resource is invalid.", ObservedGeneration: 2},
			mention: "the Installed condition is False (ValidationFailed)",
		},
		"installed at an older generation": {
			installed: controllertest.InstalledCurrent(1),
			mention:   "describes generation 1 of the Istio resource, which is at generation 2",
		},
	} {
		t.Run(name, func(t *testing.T) {
			f := newFixture(t, controllertest.Istio(2, tc.installed))
			after, err := f.sync()
			if err != nil || after != 0 {
				t.Fatalf("sync = %v, %v; want no error and no requeue (the Istio watch wakes it)", after, err)
			}
			c := f.condition()
			if c == nil || c.Status != metav1.ConditionUnknown || c.Reason != v1alpha2.ReasonWaitingForInstallation || c.ObservedGeneration != 2 {
				t.Fatalf("condition %+v, want Unknown/%s at generation 2", c, v1alpha2.ReasonWaitingForInstallation)
			}
			if !strings.Contains(c.Message, tc.mention) || !strings.Contains(c.Message, "istio-system/default") {
				t.Errorf("message %q does not say what it waits for (%q) and what follows", c.Message, tc.mention)
			}
			if a := f.security.Actions(); len(a) != 0 {
				t.Errorf("Istio's API was used before the installation: %v", a)
			}
			if f.c.peerAuths.Running() {
				t.Error("the PeerAuthentication informer started before the installation")
			}
			if e := f.events(); len(e) != 0 {
				t.Errorf("Events while waiting: %v", e)
			}
			// Again: nothing more is written.
			f.catchUp()
			if _, err := f.sync(); err != nil {
				t.Fatal(err)
			}
			if n := f.statusWrites(); n != 1 {
				t.Errorf("%d status writes, want 1", n)
			}
		})
	}
}

func TestIgnoresResourcesItDoesNotServe(t *testing.T) {
	for name, istio := range map[string]*v1alpha2.Istio{
		"not yet taken on": controllertest.Istio(1),
		"being deleted": func() *v1alpha2.Istio {
			i := controllertest.Istio(1, controllertest.InstalledCurrent(1))
			i.DeletionTimestamp = &metav1.Time{Time: time.Date(2026, 11, 22, 9, 0, 0, 0, time.UTC)}
			i.Finalizers = []string{"istios.operator.kyma-project.io/istio-installation"}
			return i
		}(),
	} {
		t.Run(name, func(t *testing.T) {
			f := newFixture(t, istio)
			f.seed()
			if _, err := f.sync(); err != nil {
				t.Fatal(err)
			}
			if n := f.statusWrites(); n != 0 {
				t.Errorf("%d status writes, want none", n)
			}
			if a := f.securityWrites(); len(a) != 0 {
				t.Errorf("writes to Istio's API: %v", a)
			}
			if deleting := istio.DeletionTimestamp != nil; deleting && f.c.peerAuths.Running() {
				t.Error("the PeerAuthentication informer still runs while Istio is uninstalled")
			}
		})
	}
}

func TestCreatesWhenMissing(t *testing.T) {
	f := newFixture(t, controllertest.Istio(2, controllertest.InstalledCurrent(2)))
	f.seed()
	after, err := f.sync()
	if err != nil {
		t.Fatal(err)
	}
	if after != ConvergedInterval {
		t.Errorf("requeue after %v, want %v", after, ConvergedInterval)
	}
	applies := f.applies()
	if len(applies) != 1 {
		t.Fatalf("%d applies, want 1", len(applies))
	}
	p := applies[0]
	if p.GetNamespace() != istioclient.Namespace || p.GetName() != DefaultName {
		t.Errorf("applied %s/%s", p.GetNamespace(), p.GetName())
	}
	// The fake client drops the apply options; the integration test checks
	// the field manager on the live object.
	var sent map[string]any
	if err := json.Unmarshal(p.GetPatch(), &sent); err != nil {
		t.Fatal(err)
	}
	body := string(p.GetPatch())
	if !strings.Contains(body, `"mtls":{"mode":"STRICT"}`) || !strings.Contains(body, `"app.kubernetes.io/managed-by":"istio-operator"`) {
		t.Errorf("applied %s", body)
	}
	if spec := sent["spec"].(map[string]any); len(spec) != 1 {
		t.Errorf("the apply owns spec fields beyond mtls: %v", spec)
	}
	c := f.condition()
	if c == nil || c.Status != metav1.ConditionTrue || c.Reason != v1alpha2.ReasonPeerAuthenticationApplied ||
		c.Message != "Mesh-wide mTLS is STRICT: PeerAuthentication istio-system/default." {
		t.Errorf("condition %+v", c)
	}
	if e := f.events(); len(e) != 1 || !strings.HasPrefix(e[0], "Normal "+v1alpha2.EventPeerAuthenticationCreated) {
		t.Errorf("events %v, want one %s", e, v1alpha2.EventPeerAuthenticationCreated)
	}

	// The informer has not delivered the new object yet: the controller's
	// own write counts, and nothing is written twice.
	if _, err := f.sync(); err != nil {
		t.Fatal(err)
	}
	if n := len(f.applies()); n != 1 {
		t.Errorf("%d applies after a sync before the cache caught up, want 1", n)
	}
	// A delete after that write is seen as missing again.
	created := &securityv1.PeerAuthentication{ObjectMeta: metav1.ObjectMeta{Namespace: istioclient.Namespace, Name: DefaultName, ResourceVersion: "101"}}
	f.c.peerAuths.forgetAppliedThen(cache.ResourceEventHandlerFuncs{}).OnDelete(created)
	if _, err := f.sync(); err != nil {
		t.Fatal(err)
	}
	if n := len(f.applies()); n != 2 {
		t.Errorf("%d applies after the PeerAuthentication was deleted, want 2", n)
	}
}

func TestNoWriteWhenRight(t *testing.T) {
	istio := controllertest.Istio(2, controllertest.InstalledCurrent(2))
	istio.Status.Conditions = append(istio.Status.Conditions, metav1.Condition{
		Type: v1alpha2.ConditionPeerAuthenticationReady, Status: metav1.ConditionTrue, Reason: v1alpha2.ReasonPeerAuthenticationApplied,
		Message: "Mesh-wide mTLS is STRICT: PeerAuthentication istio-system/default.", ObservedGeneration: 2,
	})
	f := newFixture(t, istio)
	f.seed(peerAuth(DefaultName, strict, true),
		withSelector(peerAuth("strict-app", unset, false), "app", map[uint32]securityapi.PeerAuthentication_MutualTLS_Mode{8080: strict}))
	for range 3 {
		after, err := f.sync()
		if err != nil || after != ConvergedInterval {
			t.Fatalf("sync = %v, %v", after, err)
		}
	}
	if a := f.securityWrites(); len(a) != 0 {
		t.Errorf("writes to Istio's API although everything is right: %v", a)
	}
	if n := f.statusWrites(); n != 0 {
		t.Errorf("%d status writes although the condition is right", n)
	}
	if e := f.events(); len(e) != 0 {
		t.Errorf("events %v", e)
	}
}

func TestRestoresDrift(t *testing.T) {
	for name, tc := range map[string]struct {
		live  *securityv1.PeerAuthentication
		drift string
	}{
		"edited mode": {peerAuth(DefaultName, permissive, true), "mode was PERMISSIVE"},
		"mtls removed": {func() *securityv1.PeerAuthentication {
			p := peerAuth(DefaultName, strict, true)
			p.Spec.Mtls = nil
			return p
		}(), "mode was UNSET"},
		"label removed": {peerAuth(DefaultName, strict, false), "label app.kubernetes.io/managed-by=istio-operator was missing"},
	} {
		t.Run(name, func(t *testing.T) {
			f := newFixture(t, controllertest.Istio(2, controllertest.InstalledCurrent(2)))
			f.seed(tc.live)
			if _, err := f.sync(); err != nil {
				t.Fatal(err)
			}
			applies := f.applies()
			if len(applies) != 1 || !strings.Contains(string(applies[0].GetPatch()), `"mode":"STRICT"`) {
				t.Fatalf("applies %v, want one restoring STRICT", applies)
			}
			e := f.events()
			if len(e) != 1 || !strings.HasPrefix(e[0], "Normal "+v1alpha2.EventPeerAuthenticationRestored) || !strings.Contains(e[0], tc.drift) {
				t.Errorf("events %v, want one %s naming %q", e, v1alpha2.EventPeerAuthenticationRestored, tc.drift)
			}
			if c := f.condition(); c == nil || c.Status != metav1.ConditionTrue {
				t.Errorf("condition %+v", c)
			}
		})
	}
}

func TestReportsWeakeningUserPeerAuthentications(t *testing.T) {
	f := newFixture(t, controllertest.Istio(2, controllertest.InstalledCurrent(2)))
	ports := map[uint32]securityapi.PeerAuthentication_MutualTLS_Mode{9090: disable, 8080: strict}
	f.seed(
		peerAuth(DefaultName, strict, true),
		peerAuth("allow-plaintext", permissive, false),
		withSelector(peerAuth("legacy-port", unset, false), "legacy", ports),
		withSelector(peerAuth("strict-app", strict, false), "app", nil),
		peerAuth("also-strict", strict, false),
	)
	after, err := f.sync()
	if err != nil {
		t.Fatal(err)
	}
	if after != ConvergedInterval {
		t.Errorf("requeue after %v", after)
	}
	if a := f.securityWrites(); len(a) != 0 {
		t.Errorf("writes to Istio's API (users' objects must be left alone): %v", a)
	}
	c := f.condition()
	if c == nil || c.Status != metav1.ConditionFalse || c.Reason != v1alpha2.ReasonPeerAuthenticationWeakened {
		t.Fatalf("condition %+v, want False/%s", c, v1alpha2.ReasonPeerAuthenticationWeakened)
	}
	for _, want := range []string{"2 PeerAuthentications", "istio-system/allow-plaintext (mesh-wide mode PERMISSIVE)",
		"istio-system/legacy-port (workloads app=legacy: port 9090 mode DISABLE)"} {
		if !strings.Contains(c.Message, want) {
			t.Errorf("message %q lacks %q", c.Message, want)
		}
	}
	for _, notWeak := range []string{"strict-app", "also-strict", "8080"} {
		if strings.Contains(c.Message, notWeak) {
			t.Errorf("message %q names %s, which does not weaken mTLS", c.Message, notWeak)
		}
	}
	e := f.events()
	if len(e) != 1 || !strings.HasPrefix(e[0], "Warning "+v1alpha2.ReasonPeerAuthenticationWeakened) {
		t.Errorf("events %v, want one Warning %s", e, v1alpha2.ReasonPeerAuthenticationWeakened)
	}
	// The periodic check repeats neither the write nor the Event.
	f.catchUp()
	f.istios.Client.ClearActions()
	if _, err := f.sync(); err != nil {
		t.Fatal(err)
	}
	if n := f.statusWrites(); n != 0 {
		t.Errorf("%d status writes on a periodic check", n)
	}
	if e := f.events(); len(e) != 0 {
		t.Errorf("events on a periodic check: %v", e)
	}
}

func TestNamesAtMostFiveWeakening(t *testing.T) {
	var weak []*securityv1.PeerAuthentication
	for i := range 7 {
		weak = append(weak, peerAuth(fmt.Sprintf("open-%d", i), disable, false))
	}
	c := weakenedCondition(weakening(weak))
	if !strings.Contains(c.Message, "7 PeerAuthentications") || !strings.Contains(c.Message, "open-4") ||
		strings.Contains(c.Message, "open-5") || !strings.Contains(c.Message, " and 2 more") {
		t.Errorf("message %q, want five named and the count", c.Message)
	}
}

func TestApplyFailureIsReportedAndRetried(t *testing.T) {
	f := newFixture(t, controllertest.Istio(2, controllertest.InstalledCurrent(2)))
	f.seed(peerAuth(DefaultName, permissive, true))
	f.applyErr = errors.New("admission webhook denied the request")
	if _, err := f.sync(); err == nil {
		t.Fatal("sync succeeded although the apply failed; the error must reach the queue for backoff")
	}
	c := f.condition()
	if c == nil || c.Status != metav1.ConditionFalse || c.Reason != v1alpha2.ReasonPeerAuthenticationFailed ||
		!strings.Contains(c.Message, "admission webhook denied the request") {
		t.Errorf("condition %+v", c)
	}
	if e := f.events(); len(e) != 1 || !strings.HasPrefix(e[0], "Warning "+v1alpha2.ReasonPeerAuthenticationFailed) {
		t.Errorf("events %v", e)
	}

	f.applyErr = nil
	if _, err := f.sync(); err != nil {
		t.Fatal(err)
	}
	if c := f.condition(); c == nil || c.Status != metav1.ConditionTrue {
		t.Errorf("condition after recovery %+v", c)
	}
}

func TestStartsTheInformerOnlyOnceInstalled(t *testing.T) {
	// The fake client cannot stream a watch list's initial events.
	clientfeaturestesting.SetFeatureDuringTest(t, clientfeatures.WatchListClient, false)
	f := newFixture(t, controllertest.Istio(2, controllertest.InstalledCurrent(2)))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if _, err := f.c.sync(ctx, key); err != nil {
		t.Fatal(err)
	}
	if !f.c.peerAuths.Running() {
		t.Fatal("the PeerAuthentication informer did not start once Istio was installed")
	}
	var listed bool
	for _, a := range f.security.Actions() {
		if a.GetVerb() == "list" && a.GetResource().Resource == "peerauthentications" && a.GetNamespace() == istioclient.Namespace {
			listed = true
		}
	}
	if !listed {
		t.Errorf("no list of PeerAuthentications in %s; actions %v", istioclient.Namespace, f.security.Actions())
	}
	if n := len(f.applies()); n != 1 {
		t.Errorf("%d applies, want 1", n)
	}
	f.c.peerAuths.stop()
	if f.c.peerAuths.Running() {
		t.Error("stop left the informer running")
	}
}
