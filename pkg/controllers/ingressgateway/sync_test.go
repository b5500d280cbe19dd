package ingressgateway

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	networkingv1alpha3 "istio.io/client-go/pkg/apis/networking/v1alpha3"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	clientfeatures "k8s.io/client-go/features"
	clientfeaturestesting "k8s.io/client-go/features/testing"
	"k8s.io/utils/ptr"

	v1alpha2 "github.com/meshkeeper/istio-operator/pkg/apis/operator/v1alpha2"
	"github.com/meshkeeper/istio-operator/pkg/controllers/controllertest"
	"github.com/meshkeeper/istio-operator/pkg/istioclient"
)

// wantCond is an expected condition: its status and reason, and what its
// message says.
type wantCond struct {
	status  metav1.ConditionStatus
	reason  string
	mention []string
}

func (w *wantCond) check(t *testing.T, name string, got *metav1.Condition) {
	t.Helper()
	if w == nil {
		if got != nil {
			t.Errorf("%s written: %+v; want none", name, got)
		}
		return
	}
	if got == nil || got.Status != w.status || got.Reason != w.reason || got.ObservedGeneration != 2 {
		t.Errorf("%s %+v; want %s/%s at generation 2", name, got, w.status, w.reason)
		return
	}
	for _, m := range w.mention {
		if !strings.Contains(got.Message, m) {
			t.Errorf("%s message %q lacks %q", name, got.Message, m)
		}
	}
}

func withDeletion(i *v1alpha2.Istio) *v1alpha2.Istio {
	i.DeletionTimestamp = &metav1.Time{Time: controllertest.Start.Add(-time.Hour)}
	i.Finalizers = []string{"istios.operator.kyma-project.io/istio-installation"}
	return i
}

func otherIstio() *v1alpha2.Istio {
	i := controllertest.Istio(1, controllertest.InstalledCurrent(1))
	i.Name, i.UID = "other", "uid-2"
	return i
}

func readyWas(reason string) metav1.Condition {
	return metav1.Condition{Type: v1alpha2.ConditionIngressGatewayReady, Status: metav1.ConditionFalse, Reason: reason,
		Message: "Before: " + reason + ".", ObservedGeneration: 2}
}

// Every branch of sync, one sync each, from caches holding the objects.
func TestSync(t *testing.T) {
	noUserFilters := &wantCond{metav1.ConditionFalse, v1alpha2.ReasonIngressNoUserResourceFound, []string{"No EnvoyFilter created by users in istio-system"}}
	waiting := func(mention string) *wantCond {
		return &wantCond{metav1.ConditionUnknown, v1alpha2.ReasonWaitingForInstallation, []string{mention, "restarted if its pods run an older start-time configuration"}}
	}
	for _, tc := range []struct {
		name    string
		objs    []runtime.Object
		seed    []*networkingv1alpha3.EnvoyFilter
		unseed  bool   // the EnvoyFilter watch does not run before the sync
		rollErr string // every roll fails with it

		wantErr      bool
		after        time.Duration
		ready, user  *wantCond
		statusWrites int
		rolls        int
		events       []string // "Type Reason" of each, in order
		eventMention string   // in the first Event's message
		watching     bool     // the EnvoyFilter watch runs after the sync
	}{
		{
			name: "resource gone, none left installed: the watch stops",
			objs: []runtime.Object{gateway(wantHash)},
		},
		{
			name: "resource gone, another one installed: the watch stays",
			objs: []runtime.Object{otherIstio(), gateway(wantHash)}, watching: true,
		},
		{
			name: "not served: nothing read or written", unseed: true,
			objs: []runtime.Object{controllertest.Istio(2), gateway("stale")},
		},
		{
			name: "being deleted: the watch stops, nothing written",
			objs: []runtime.Object{withDeletion(installed()), gateway("stale")},
		},
		{
			name: "installing: both conditions wait", unseed: true,
			objs:  []runtime.Object{controllertest.Istio(2, controllertest.Installed(metav1.ConditionFalse, v1alpha2.ReasonIstioInstalling, 2)), gateway("stale")},
			ready: waiting("the Installed condition is False (IstioInstalling)"), user: waiting("the Installed condition is False (IstioInstalling)"),
			statusWrites: 1,
		},
		{
			name: "installed at an older generation: both conditions wait", unseed: true,
			objs:         []runtime.Object{controllertest.Istio(2, controllertest.InstalledCurrent(1)), gateway("stale")},
			ready:        waiting("describes generation 1 of the Istio resource, which is at generation 2"),
			user:         waiting("describes generation 1"),
			statusWrites: 1,
		},
		{
			name:  "Deployment missing",
			objs:  []runtime.Object{installed()},
			after: RollingInterval, watching: true, statusWrites: 1,
			ready: &wantCond{metav1.ConditionFalse, v1alpha2.ReasonIngressGatewayMissing, []string{"istio-system/istio-ingressgateway does not exist"}},
			user:  noUserFilters,
		},
		{
			name:  "annotation changed: one roll",
			objs:  []runtime.Object{installed(), gateway("stale")},
			after: RollingInterval, watching: true, statusWrites: 1, rolls: 1,
			ready:  &wantCond{metav1.ConditionFalse, v1alpha2.ReasonIngressGatewayRestartInProgress, []string{"Restarting the ingress gateway to start-time configuration " + wantHash}},
			user:   noUserFilters,
			events: []string{"Normal " + v1alpha2.EventIngressGatewayRestarted}, eventMention: `its pods carried "stale"`,
		},
		{
			name:  "annotation removed: one roll",
			objs:  []runtime.Object{installed(), gateway("")},
			after: RollingInterval, watching: true, statusWrites: 1, rolls: 1,
			ready:  &wantCond{metav1.ConditionFalse, v1alpha2.ReasonIngressGatewayRestartInProgress, []string{wantHash}},
			user:   noUserFilters,
			events: []string{"Normal " + v1alpha2.EventIngressGatewayRestarted}, eventMention: `its pods carried ""`,
		},
		{
			name: "roll fails: a Warning Event and the error, no status", rollErr: "admission webhook denied the request",
			objs:    []runtime.Object{installed(), gateway("stale")},
			wantErr: true, watching: true, rolls: 1,
			events: []string{"Warning " + v1alpha2.ReasonIngressGatewayRestartFailed}, eventMention: "admission webhook denied the request",
		},
		{
			name:  "rollout not observed yet: recheck without a write",
			objs:  []runtime.Object{installed(), controllertest.Unobserved(controllertest.Rolling(gateway(wantHash), 1, 1, 3))},
			after: RollingInterval, watching: true,
		},
		{
			name: "rollout failed",
			objs: []runtime.Object{installed(), controllertest.ProgressDeadlineExceeded(controllertest.Rolling(gateway(wantHash), 1, 2, 4),
				`ReplicaSet "istio-ingressgateway-7c9" has timed out progressing.`)},
			after: RollingInterval, watching: true, statusWrites: 1,
			ready: &wantCond{metav1.ConditionFalse, v1alpha2.ReasonIngressGatewayRestartFailed,
				[]string{`does not roll out: ReplicaSet "istio-ingressgateway-7c9" has timed out progressing.`, "in istio-system"}},
			user: noUserFilters,
		},
		{
			name:  "rollout in progress: the counts",
			objs:  []runtime.Object{installed(), controllertest.Rolling(gateway(wantHash), 1, 2, 4)},
			after: RollingInterval, watching: true, statusWrites: 1,
			ready: &wantCond{metav1.ConditionFalse, v1alpha2.ReasonIngressGatewayRestartInProgress,
				[]string{"rolling to start-time configuration " + wantHash + ": 1 of 3 pods updated and available"}},
			user: noUserFilters,
		},
		{
			name:  "rollout current, first report: no Event",
			objs:  []runtime.Object{installed(), gateway(wantHash)},
			after: ConvergedInterval, watching: true, statusWrites: 1,
			ready: &wantCond{metav1.ConditionTrue, v1alpha2.ReasonIngressGatewayRestartSucceeded, []string{"runs start-time configuration " + wantHash + " on every pod"}},
			user:  noUserFilters,
		},
		{
			name:  "rollout current after a rollout in progress: RestartSucceeded Event",
			objs:  []runtime.Object{installed(readyWas(v1alpha2.ReasonIngressGatewayRestartInProgress)), gateway(wantHash)},
			after: ConvergedInterval, watching: true, statusWrites: 1,
			ready:  &wantCond{metav1.ConditionTrue, v1alpha2.ReasonIngressGatewayRestartSucceeded, nil},
			user:   noUserFilters,
			events: []string{"Normal " + v1alpha2.ReasonIngressGatewayRestartSucceeded}, eventMention: "rolled out start-time configuration " + wantHash,
		},
		{
			name:  "rollout current after a failed one: no Event",
			objs:  []runtime.Object{installed(readyWas(v1alpha2.ReasonIngressGatewayRestartFailed)), gateway(wantHash)},
			after: ConvergedInterval, watching: true, statusWrites: 1,
			ready: &wantCond{metav1.ConditionTrue, v1alpha2.ReasonIngressGatewayRestartSucceeded, nil},
			user:  noUserFilters,
		},
		{
			name: "EnvoyFilters target the gateway",
			objs: []runtime.Object{installed(), gateway(wantHash)},
			seed: []*networkingv1alpha3.EnvoyFilter{
				envoyFilter("mesh-wide", nil),
				envoyFilter("gateway-lua", selecting(map[string]string{"istio": "ingressgateway"})),
				envoyFilter("other-workload", selecting(map[string]string{"app": "istiod"})),
			},
			after: ConvergedInterval, watching: true, statusWrites: 1,
			ready: &wantCond{metav1.ConditionTrue, v1alpha2.ReasonIngressGatewayRestartSucceeded, nil},
			user: &wantCond{metav1.ConditionTrue, v1alpha2.ReasonIngressTargetingUserResource,
				[]string{"2 EnvoyFilters", "istio-system/gateway-lua, istio-system/mesh-wide"}},
			events: []string{"Warning " + v1alpha2.ReasonIngressTargetingUserResource}, eventMention: "istio-system/gateway-lua, istio-system/mesh-wide",
		},
		{
			name: "EnvoyFilters with the gateway missing: only mesh-wide ones are known to apply",
			objs: []runtime.Object{installed()},
			seed: []*networkingv1alpha3.EnvoyFilter{
				envoyFilter("mesh-wide", nil),
				envoyFilter("gateway-lua", selecting(map[string]string{"istio": "ingressgateway"})),
			},
			after: RollingInterval, watching: true, statusWrites: 1,
			ready:  &wantCond{metav1.ConditionFalse, v1alpha2.ReasonIngressGatewayMissing, nil},
			user:   &wantCond{metav1.ConditionTrue, v1alpha2.ReasonIngressTargetingUserResource, []string{"1 EnvoyFilters", "istio-system/mesh-wide."}},
			events: []string{"Warning " + v1alpha2.ReasonIngressTargetingUserResource},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, tc.objs...)
			if !tc.unseed {
				f.seed(tc.seed...)
			}
			if tc.rollErr != "" {
				f.failRolls(tc.rollErr)
			}
			res, err := f.sync()
			if (err != nil) != tc.wantErr {
				t.Fatalf("sync error %v, want error %v", err, tc.wantErr)
			}
			if tc.wantErr && !strings.Contains(err.Error(), tc.rollErr) {
				t.Errorf("error %v does not carry the cause", err)
			}
			if res.RequeueAfter != tc.after {
				t.Errorf("requeue after %v, want %v", res.RequeueAfter, tc.after)
			}
			if n := f.istios.StatusWrites(); n != tc.statusWrites {
				t.Errorf("%d status writes, want %d", n, tc.statusWrites)
			}
			if _, err := f.istios.Lister.Istios(controllertest.Namespace).Get("default"); err == nil {
				tc.ready.check(t, "IngressGatewayReady", f.ready())
				tc.user.check(t, "IngressTargetingUserResourceFound", f.userResource())
			}
			if n := len(f.rolls()); n != tc.rolls {
				t.Errorf("%d rolls of the gateway, want %d", n, tc.rolls)
			}
			if w := controllertest.Writes(f.kube.Client.Actions()); len(w) != tc.rolls {
				t.Errorf("Kubernetes writes %v, want only the %d rolls", w, tc.rolls)
			}
			events := controllertest.Drain(f.recorder)
			var got []string
			for _, e := range events {
				got = append(got, strings.Join(strings.Fields(e)[:2], " "))
			}
			if !slices.Equal(got, tc.events) {
				t.Errorf("events %q, want %q", events, tc.events)
			} else if tc.eventMention != "" && !strings.Contains(events[0], tc.eventMention) {
				t.Errorf("event %q lacks %q", events[0], tc.eventMention)
			}
			if running := f.c.envoyFilters.Running(); running != tc.watching {
				t.Errorf("EnvoyFilter watch running %v, want %v", running, tc.watching)
			}
			if tc.unseed {
				if a := f.istio.Actions(); len(a) != 0 {
					t.Errorf("Istio's API used: %v", a)
				}
			}
		})
	}
}

// The roll is a server-side apply of the pod-template annotation alone,
// so that it owns no other field of the installer's Deployment.
func TestRollAppliesOnlyTheAnnotation(t *testing.T) {
	f := newFixture(t, installed(), gateway("stale"))
	f.seed()
	f.syncOK()
	rolls := f.rolls()
	if len(rolls) != 1 {
		t.Fatalf("%d rolls, want 1", len(rolls))
	}
	p := rolls[0]
	if p.GetNamespace() != istioclient.Namespace || p.GetName() != istioclient.IngressGatewayName {
		t.Errorf("applied %s/%s", p.GetNamespace(), p.GetName())
	}
	var sent struct {
		Spec map[string]struct {
			Metadata map[string]map[string]string `json:"metadata"`
		} `json:"spec"`
	}
	if err := json.Unmarshal(p.GetPatch(), &sent); err != nil {
		t.Fatal(err)
	}
	if len(sent.Spec) != 1 || len(sent.Spec["template"].Metadata) != 1 ||
		!maps1(sent.Spec["template"].Metadata["annotations"], istioclient.GatewayConfigAnnotation, wantHash) {
		t.Errorf("applied %s; want only spec.template.metadata.annotations[%s]=%s", p.GetPatch(), istioclient.GatewayConfigAnnotation, wantHash)
	}
	// The fake client drops the apply options; the integration test checks
	// the field manager on the live object.
	if got := f.kube.Deployment(istioclient.Namespace, istioclient.IngressGatewayName).Spec.Template.Annotations[istioclient.GatewayConfigAnnotation]; got != wantHash {
		t.Errorf("the Deployment carries %q after the roll, want %s", got, wantHash)
	}
}

// maps1 reports whether m holds exactly k=v.
func maps1(m map[string]string, k, v string) bool { return len(m) == 1 && m[k] == v }

// A change rolls the gateway once; the rollout is followed as the
// Deployment controller reports it, and its end is reported once.
func TestFollowsTheRollout(t *testing.T) {
	f := newFixture(t, installed(), gateway("stale"))
	f.seed()
	if res := f.syncOK(); res.RequeueAfter != RollingInterval {
		t.Fatalf("roll: requeue after %v", res.RequeueAfter)
	}
	if e := controllertest.Drain(f.recorder); len(e) != 1 || !strings.HasPrefix(e[0], "Normal "+v1alpha2.EventIngressGatewayRestarted) {
		t.Fatalf("events %v, want one IngressGatewayRestarted", e)
	}
	rolled := f.kube.Deployment(istioclient.Namespace, istioclient.IngressGatewayName)
	rolled.Generation = 2 // the template changed

	// The Deployment controller has not seen the new template: its status
	// is about the old one; nothing is judged, nothing written.
	f.kube.Set(rolled.DeepCopy())
	writes := f.istios.StatusWrites()
	if res := f.syncOK(); res.RequeueAfter != RollingInterval {
		t.Errorf("unobserved: requeue after %v", res.RequeueAfter)
	}
	if n := f.istios.StatusWrites(); n != writes {
		t.Errorf("%d status writes while the rollout was not observed", n-writes)
	}

	// Rolling: the counts are reported.
	rolled.Status.ObservedGeneration = 2
	f.kube.Set(controllertest.Rolling(rolled.DeepCopy(), 1, 3, 4))
	f.syncOK()
	if c := f.ready(); c.Reason != v1alpha2.ReasonIngressGatewayRestartInProgress || !strings.Contains(c.Message, "1 of 3 pods") {
		t.Errorf("rolling: %+v", c)
	}
	f.kube.Set(controllertest.Rolling(rolled.DeepCopy(), 2, 3, 4))
	f.syncOK()
	if c := f.ready(); !strings.Contains(c.Message, "2 of 3 pods") {
		t.Errorf("rolling on: %+v", c)
	}
	if e := controllertest.Drain(f.recorder); len(e) != 0 {
		t.Errorf("events while rolling: %v", e)
	}

	// Done: True, and one Event.
	f.kube.Set(controllertest.Rolling(rolled.DeepCopy(), 3, 3, 3))
	if res := f.syncOK(); res.RequeueAfter != ConvergedInterval {
		t.Errorf("done: requeue after %v", res.RequeueAfter)
	}
	if c := f.ready(); c.Status != metav1.ConditionTrue || c.Reason != v1alpha2.ReasonIngressGatewayRestartSucceeded {
		t.Errorf("done: %+v", c)
	}
	if e := controllertest.Drain(f.recorder); len(e) != 1 || !strings.HasPrefix(e[0], "Normal "+v1alpha2.ReasonIngressGatewayRestartSucceeded) {
		t.Errorf("events %v, want one %s", e, v1alpha2.ReasonIngressGatewayRestartSucceeded)
	}

	// The periodic check, and an autoscaler adding replicas, write nothing
	// and repeat no Event.
	writes = f.istios.StatusWrites()
	f.syncOK()
	scaled := controllertest.Rolling(rolled.DeepCopy(), 5, 3, 5)
	scaled.Spec.Replicas = ptr.To[int32](5)
	f.kube.Set(scaled)
	f.syncOK()
	if n := f.istios.StatusWrites(); n != writes {
		t.Errorf("%d status writes on a periodic check and a scale-up", n-writes)
	}
	if e := controllertest.Drain(f.recorder); len(e) != 0 {
		t.Errorf("events %v", e)
	}
	if n := len(f.rolls()); n != 1 {
		t.Errorf("%d rolls, want 1", n)
	}
}

// A Warning Event goes out when EnvoyFilters that target the gateway are
// found, and again only when their list changes.
func TestUserResourceEvents(t *testing.T) {
	f := newFixture(t, installed(), gateway(wantHash))
	f.seed(envoyFilter("mesh-wide", nil))
	f.syncOK()
	if e := controllertest.Drain(f.recorder); len(e) != 1 || !strings.Contains(e[0], "1 EnvoyFilters") {
		t.Fatalf("events %v, want one Warning naming the filter", e)
	}
	writes := f.istios.StatusWrites()
	f.syncOK()
	if n := f.istios.StatusWrites(); n != writes {
		t.Errorf("%d status writes although nothing changed", n-writes)
	}
	if e := controllertest.Drain(f.recorder); len(e) != 0 {
		t.Errorf("the Warning repeated: %v", e)
	}
	// The gateway's own condition changes; the filters do not: a write,
	// but no repeated Warning.
	f.kube.Set(controllertest.Rolling(gateway(wantHash), 2, 3, 4))
	f.syncOK()
	if n := f.istios.StatusWrites(); n != writes+1 {
		t.Errorf("%d status writes for the rollout, want 1", n-writes)
	}
	if e := controllertest.Drain(f.recorder); len(e) != 0 {
		t.Errorf("the Warning repeated with another condition's change: %v", e)
	}

	if err := f.filters.Add(envoyFilter("gateway-lua", selecting(gatewayLabels))); err != nil {
		t.Fatal(err)
	}
	f.syncOK()
	e := controllertest.Drain(f.recorder)
	if len(e) != 1 || !strings.HasPrefix(e[0], "Warning "+v1alpha2.ReasonIngressTargetingUserResource) || !strings.Contains(e[0], "2 EnvoyFilters") {
		t.Errorf("events %v, want one Warning naming both filters", e)
	}

	f.filters.Replace(nil, "")
	f.syncOK()
	if c := f.userResource(); c.Status != metav1.ConditionFalse || c.Reason != v1alpha2.ReasonIngressNoUserResourceFound {
		t.Errorf("filters removed: %+v", c)
	}
	if e := controllertest.Drain(f.recorder); len(e) != 0 {
		t.Errorf("events when the filters went: %v", e)
	}
}

// The EnvoyFilter informer starts once Istio is installed with the current
// generation, and lists Istio's namespace only.
func TestStartsTheEnvoyFilterWatchOnlyOnceInstalled(t *testing.T) {
	// The fake client cannot stream a watch list's initial events.
	clientfeaturestesting.SetFeatureDuringTest(t, clientfeatures.WatchListClient, false)
	f := newFixture(t, controllertest.Istio(2, controllertest.InstalledCurrent(1)), gateway(wantHash))
	f.syncOK()
	if f.c.envoyFilters.Running() || len(f.istio.Actions()) != 0 {
		t.Fatalf("waiting: watch running %v, Istio API actions %v", f.c.envoyFilters.Running(), f.istio.Actions())
	}
	f.istios.Set(controllertest.Istio(2, controllertest.InstalledCurrent(2)))
	f.syncOK()
	if !f.c.envoyFilters.Running() {
		t.Fatal("the EnvoyFilter informer did not start once Istio was installed")
	}
	defer f.c.envoyFilters.Stop()
	lists := controllertest.Actions(f.istio.Actions(), "list", "envoyfilters", "")
	if len(lists) == 0 || lists[0].GetNamespace() != istioclient.Namespace {
		t.Errorf("no list of EnvoyFilters in %s; actions %v", istioclient.Namespace, f.istio.Actions())
	}
	if c := f.ready(); c == nil || c.Reason != v1alpha2.ReasonIngressGatewayRestartSucceeded {
		t.Errorf("after the start: %+v", c)
	}
}

// Only settings Envoy reads at start move the gateway's configuration hash.
func TestGatewayConfigHash(t *testing.T) {
	base := v1alpha2.IstioSpec{}
	h := istioclient.GatewayConfigHash(&base)
	unrelated := []v1alpha2.IstioSpec{
		{Config: v1alpha2.Config{Telemetry: v1alpha2.Telemetry{Metrics: v1alpha2.Metrics{PrometheusMerge: true}}}},
		{Components: &v1alpha2.Components{Pilot: &v1alpha2.IstioComponent{K8s: &v1alpha2.KubernetesResourcesConfig{
			HPASpec: &v1alpha2.HPASpec{MinReplicas: ptr.To[int32](3)}}}}},
		{Config: v1alpha2.Config{EnableDNSProxying: ptr.To(false)}},
		{CompatibilityMode: true},
	}
	for i, s := range unrelated {
		if got := istioclient.GatewayConfigHash(&s); got != h {
			t.Errorf("unrelated change %d moved the hash", i)
		}
	}
	xfcc := v1alpha2.XFCCSanitize
	related := []v1alpha2.IstioSpec{
		{Config: v1alpha2.Config{NumTrustedProxies: ptr.To[int64](1)}},
		{Config: v1alpha2.Config{ForwardClientCertDetails: &xfcc}},
		{Config: v1alpha2.Config{TrustDomain: ptr.To("example.org")}},
		{Config: v1alpha2.Config{ProxyStatsMatcher: &v1alpha2.ProxyStatsMatcher{InclusionRegexps: []string{".*"}}}},
		{Config: v1alpha2.Config{EnableDNSProxying: ptr.To(true)}},
	}
	seen := map[string]bool{h: true}
	for i, s := range related {
		got := istioclient.GatewayConfigHash(&s)
		if seen[got] {
			t.Errorf("start-time change %d did not give a new hash", i)
		}
		seen[got] = true
	}
}
