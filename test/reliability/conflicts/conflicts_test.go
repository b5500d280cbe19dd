// Package conflicts edits the Istio resource the way users and their tools
// do, several at once, while the operator's four controllers install Istio
// and write their conditions, then drops the operator's finalizer while the
// resource is written without pause. It checks that no write is lost on
// either side: every controller's condition ends True for the final spec, no
// Error or Warning is left, the final spec is what Istio runs, every user's
// last edit is kept, and conflicts were met on both sides.
package conflicts

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"

	v1alpha2 "github.com/meshkeeper/istio-operator/pkg/apis/operator/v1alpha2"
	"github.com/meshkeeper/istio-operator/pkg/controllers/installation"
	istioac "github.com/meshkeeper/istio-operator/pkg/generated/applyconfiguration/operator/v1alpha2"
	"github.com/meshkeeper/istio-operator/pkg/istioclient"
	"github.com/meshkeeper/istio-operator/test/cluster"
	"github.com/meshkeeper/istio-operator/test/operatortest"
)

const (
	timeout = 3 * time.Minute
	// editFor is how long the users edit: through the install and the
	// reconfigurations their edits cause.
	editFor = 20 * time.Second
	// finalizerRounds is how often the finalizer is dropped.
	finalizerRounds = 10
)

func TestMain(m *testing.M) {
	cluster.Main(m, cluster.Options{Nodes: 2})
}

// user is one user, or tool, editing the resource in a loop.
type user struct {
	name  string
	every time.Duration
	// edit makes the i-th edit; a conflict is retried at once.
	edit func(ctx context.Context, i int) error

	writes, conflicts atomic.Int64
	last              atomic.Int64 // i of the last successful edit
}

// run edits until stop is done. An edit under way when it stops completes,
// so that the last edit that succeeded is known.
func (u *user) run(stop context.Context) error {
	ctx := context.WithoutCancel(stop)
	tick := time.NewTicker(u.every)
	defer tick.Stop()
	for i := 1; ; i++ {
		for {
			err := u.edit(ctx, i)
			if apierrors.IsConflict(err) {
				u.conflicts.Add(1)
				if stop.Err() != nil {
					return nil
				}
				continue
			}
			if err != nil {
				return fmt.Errorf("%s, edit %d: %w", u.name, i, err)
			}
			break
		}
		u.writes.Add(1)
		u.last.Store(int64(i))
		select {
		case <-stop.Done():
			return nil
		case <-tick.C:
		}
	}
}

func TestConcurrentEditsLoseNothing(t *testing.T) {
	cluster.InstallIstioCRD(t)
	ns := cluster.Namespace(t, nil)
	operatortest.Start(t, ns)
	istios := operatortest.Client(t).OperatorV1alpha2().Istios(ns)
	conflictsBefore := operatorConflicts(t)

	// Each user's i-th edit writes values derived from i, so that the last
	// edit of each can be told from the others.
	trafficPolicy := func(i int) string { return []string{"Cluster", "Local"}[i%2] }
	xfcc := func(i int) v1alpha2.XFCCStrategy {
		return []v1alpha2.XFCCStrategy{v1alpha2.XFCCSanitize, v1alpha2.XFCCAppendForward, v1alpha2.XFCCForwardOnly}[i%3]
	}
	getUpdate := func(ctx context.Context, change func(*v1alpha2.Istio)) error {
		i, err := istios.Get(ctx, "default", metav1.GetOptions{})
		if err != nil {
			return err
		}
		change(i)
		_, err = istios.Update(ctx, i, metav1.UpdateOptions{FieldManager: "kubectl-edit"})
		return err
	}
	users := []*user{
		{name: "spec by get and update (kubectl edit)", every: 250 * time.Millisecond, edit: func(ctx context.Context, i int) error {
			return getUpdate(ctx, func(is *v1alpha2.Istio) {
				is.Spec.Config.NumTrustedProxies = ptr.To(int64(i))
				is.Spec.Config.GatewayExternalTrafficPolicy = ptr.To(trafficPolicy(i))
			})
		}},
		{name: "spec by server-side apply (a GitOps tool)", every: 700 * time.Millisecond, edit: func(ctx context.Context, i int) error {
			ac := istioac.Istio("default", ns).WithSpec(istioac.IstioSpec().WithConfig(istioac.Config().WithForwardClientCertDetails(xfcc(i))))
			_, err := istios.Apply(ctx, ac, metav1.ApplyOptions{FieldManager: "gitops"})
			return err
		}},
		{name: "label by merge patch", every: 200 * time.Millisecond, edit: func(ctx context.Context, i int) error {
			p := fmt.Sprintf(`{"metadata":{"labels":{"edit":"l%d"}}}`, i)
			_, err := istios.Patch(ctx, "default", types.MergePatchType, []byte(p), metav1.PatchOptions{})
			return err
		}},
		{name: "annotation by JSON patch", every: 300 * time.Millisecond, edit: func(ctx context.Context, i int) error {
			p := fmt.Sprintf(`[{"op":"add","path":"/metadata/annotations/note","value":"a%d"}]`, i)
			_, err := istios.Patch(ctx, "default", types.JSONPatchType, []byte(p), metav1.PatchOptions{})
			return err
		}},
	}

	operatortest.CreateIstio(t, ns, "default", v1alpha2.IstioSpec{})
	t.Cleanup(func() { operatortest.DeleteIstio(t, timeout, ns, "default") })
	if _, err := istios.Patch(t.Context(), "default", types.MergePatchType, []byte(`{"metadata":{"annotations":{"note":"a0"}}}`), metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	stop, cancel := context.WithTimeout(t.Context(), editFor)
	defer cancel()
	var wg sync.WaitGroup
	errs := make([]error, len(users))
	for n, u := range users {
		wg.Go(func() { errs[n] = u.run(stop) })
	}
	wg.Wait()
	var userConflicts int64
	for n, u := range users {
		if errs[n] != nil {
			t.Error(errs[n])
		}
		t.Logf("%s: %d writes, %d conflicts", u.name, u.writes.Load(), u.conflicts.Load())
		userConflicts += u.conflicts.Load()
		if u.writes.Load() == 0 {
			t.Errorf("%s never got a write through", u.name)
		}
	}
	if t.Failed() {
		t.FailNow()
	}

	istio := operatortest.WaitForState(t, timeout, ns, "default", v1alpha2.StateReady,
		v1alpha2.ConditionReady, metav1.ConditionTrue, v1alpha2.ReasonReconcileSucceeded)
	t.Logf("Ready at generation %d, %s after the first edit", istio.Generation, time.Since(start).Round(time.Millisecond))
	conflictsOfEdits := operatorConflicts(t) - conflictsBefore
	// What the resource says the moment it is Ready must already be true:
	// no waiting from here on.
	spec := istio.Spec

	t.Run("every condition of every controller is there, True for the final spec", func(t *testing.T) {
		for _, want := range []struct{ typ, reason string }{
			{v1alpha2.ConditionReady, v1alpha2.ReasonReconcileSucceeded},
			{v1alpha2.ConditionInstalled, v1alpha2.ReasonIstioInstallSucceeded},
			{v1alpha2.ConditionProxySidecarRestartSucceeded, v1alpha2.ReasonProxySidecarRestartSucceeded},
			{v1alpha2.ConditionIngressGatewayReady, v1alpha2.ReasonIngressGatewayRestartSucceeded},
			{v1alpha2.ConditionPeerAuthenticationReady, v1alpha2.ReasonPeerAuthenticationApplied},
		} {
			c := meta.FindStatusCondition(istio.Status.Conditions, want.typ)
			if c == nil || c.Status != metav1.ConditionTrue || c.Reason != want.reason || c.ObservedGeneration != istio.Generation {
				t.Errorf("%s is %+v, want True (%s) at generation %d", want.typ, c, want.reason, istio.Generation)
			}
		}
		// The one condition whose healthy status is False.
		c := meta.FindStatusCondition(istio.Status.Conditions, v1alpha2.ConditionIngressTargetingUserResourceFound)
		if c == nil || c.Status != metav1.ConditionFalse || c.Reason != v1alpha2.ReasonIngressNoUserResourceFound || c.ObservedGeneration != istio.Generation {
			t.Errorf("%s is %+v, want False (%s) at generation %d", v1alpha2.ConditionIngressTargetingUserResourceFound, c,
				v1alpha2.ReasonIngressNoUserResourceFound, istio.Generation)
		}
		if istio.Status.ObservedGeneration != istio.Generation || istio.Status.InstalledVersion != istioclient.Version {
			t.Errorf("status observed generation %d of %d, installed version %q", istio.Status.ObservedGeneration, istio.Generation, istio.Status.InstalledVersion)
		}
		if t.Failed() {
			logRollouts(t, ns)
		}
	})

	t.Run("every user's last edit is kept", func(t *testing.T) {
		last := func(n int) int { return int(users[n].last.Load()) }
		if got, want := ptr.Deref(spec.Config.NumTrustedProxies, -1), int64(last(0)); got != want {
			t.Errorf("numTrustedProxies %d, want the last edit's %d", got, want)
		}
		if got, want := ptr.Deref(spec.Config.GatewayExternalTrafficPolicy, ""), trafficPolicy(last(0)); got != want {
			t.Errorf("gatewayExternalTrafficPolicy %q, want the last edit's %q", got, want)
		}
		if got, want := ptr.Deref(spec.Config.ForwardClientCertDetails, ""), xfcc(last(1)); got != want {
			t.Errorf("forwardClientCertDetails %q, want the last apply's %q", got, want)
		}
		if got, want := istio.Labels["edit"], fmt.Sprintf("l%d", last(2)); got != want {
			t.Errorf("label %q, want the last patch's %q", got, want)
		}
		if got, want := istio.Annotations["note"], fmt.Sprintf("a%d", last(3)); got != want {
			t.Errorf("annotation %q, want the last patch's %q", got, want)
		}
		if !slices.Contains(istio.Finalizers, installation.Finalizer) {
			t.Errorf("finalizers %v: the operator did not put its own back", istio.Finalizers)
		}
	})

	t.Run("the final spec is what Istio runs", func(t *testing.T) {
		kube := cluster.Current().Clientset()
		cm, err := kube.CoreV1().ConfigMaps(istioclient.Namespace).Get(t.Context(), "istio", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		for _, want := range []string{
			fmt.Sprintf("numTrustedProxies: %d", *spec.Config.NumTrustedProxies),
			fmt.Sprintf("forwardClientCertDetails: %s", *spec.Config.ForwardClientCertDetails),
		} {
			if !strings.Contains(cm.Data["mesh"], want) {
				t.Errorf("mesh config lacks %q:\n%s", want, cm.Data["mesh"])
			}
		}
		svc, err := kube.CoreV1().Services(istioclient.Namespace).Get(t.Context(), istioclient.IngressGatewayName, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if got := string(svc.Spec.ExternalTrafficPolicy); got != *spec.Config.GatewayExternalTrafficPolicy {
			t.Errorf("gateway Service externalTrafficPolicy %s, want %s", got, *spec.Config.GatewayExternalTrafficPolicy)
		}
		gw, err := kube.AppsV1().Deployments(istioclient.Namespace).Get(t.Context(), istioclient.IngressGatewayName, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if got, want := gw.Spec.Template.Annotations[istioclient.GatewayConfigAnnotation], istioclient.GatewayConfigHash(&spec); got != want {
			t.Errorf("gateway pods run start-time configuration %s, want %s", got, want)
		}
	})

	// The operator writes its status with server-side apply; its one write
	// with optimistic concurrency is the finalizer. Dropped (as by kubectl
	// replace from a manifest, or a merge patch setting them to null) while
	// the resource is written without pause, the finalizer must come back by
	// an update that races those writes and overwrites none of them.
	t.Run("the operator's finalizer update races users' writes", func(t *testing.T) {
		for round := range finalizerRounds {
			if _, err := istios.Patch(t.Context(), "default", types.MergePatchType, []byte(`{"metadata":{"finalizers":null}}`), metav1.PatchOptions{}); err != nil {
				t.Fatal(err)
			}
			deadline := time.Now().Add(30 * time.Second)
			for k := 0; ; k++ {
				p := fmt.Sprintf(`{"metadata":{"annotations":{"touched":"%d.%d"}}}`, round, k)
				got, err := istios.Patch(t.Context(), "default", types.MergePatchType, []byte(p), metav1.PatchOptions{})
				if err != nil {
					t.Fatal(err)
				}
				if slices.Contains(got.Finalizers, installation.Finalizer) {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("round %d: the operator did not put its finalizer back within 30s", round)
				}
			}
		}
		after := operatortest.WaitForState(t, timeout, ns, "default", v1alpha2.StateReady,
			v1alpha2.ConditionReady, metav1.ConditionTrue, v1alpha2.ReasonReconcileSucceeded)
		if after.Labels["edit"] != istio.Labels["edit"] || after.Annotations["note"] != istio.Annotations["note"] || after.Generation != istio.Generation {
			t.Errorf("labels %v, annotations %v, generation %d; the finalizer updates changed what users wrote (was %v, %v, %d)",
				after.Labels, after.Annotations, after.Generation, istio.Labels, istio.Annotations, istio.Generation)
		}
	})

	t.Run("conflicts were provoked", func(t *testing.T) {
		got := operatorConflicts(t) - conflictsBefore
		t.Logf("operator syncs ended by a conflict: %v (%v while users edited, %v while the finalizer was dropped); user updates refused with a conflict: %d",
			got, conflictsOfEdits, got-conflictsOfEdits, userConflicts)
		if got == 0 {
			t.Error("no operator sync met a conflict: the test provoked none")
		}
		if userConflicts == 0 {
			t.Error("no user update met a conflict: the writers never interleaved")
		}
	})

	// Nobody but the installer touches the gateway here, so the gateway
	// controller must never have had to roll it: had it, it would have acted
	// on an Installed condition claiming a spec Istio did not run yet, and
	// restarted the gateway before the mesh config it reads at start.
	t.Run("the gateway was rolled by the installer only", func(t *testing.T) {
		events, err := cluster.Current().Clientset().CoreV1().Events(ns).List(t.Context(), metav1.ListOptions{
			FieldSelector: "involvedObject.name=default",
		})
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range events.Items {
			if e.Reason == "IngressGatewayRestarted" {
				t.Errorf("the gateway controller rolled the gateway: %s", e.Message)
			}
		}
		if t.Failed() {
			for _, e := range events.Items {
				t.Logf("Event %s %s (x%d): %.200s", e.Type, e.Reason, e.Count, e.Message)
			}
		}
	})
}

// operatorConflicts counts the operator's syncs that ended in a conflict
// (and were retried).
func operatorConflicts(t *testing.T) float64 {
	return operatortest.Counter(t, "istio_operator_reconcile_total", map[string]string{"result": "conflict"})
}

// logRollouts prints what explains a condition that is not True: the
// ingress gateway's ReplicaSets (one per roll) and the operator's Events.
func logRollouts(t *testing.T, ns string) {
	kube := cluster.Current().Clientset()
	rss, err := kube.AppsV1().ReplicaSets(istioclient.Namespace).List(t.Context(), metav1.ListOptions{})
	if err != nil {
		t.Log(err)
		return
	}
	for _, rs := range rss.Items {
		if strings.HasPrefix(rs.Name, istioclient.IngressGatewayName) {
			t.Logf("ReplicaSet %s: revision %s, created %s, %d replicas, template annotations %v", rs.Name,
				rs.Annotations["deployment.kubernetes.io/revision"], rs.CreationTimestamp.Format(time.RFC3339), rs.Status.Replicas,
				rs.Spec.Template.Annotations)
		}
	}
	events, err := kube.CoreV1().Events(ns).List(t.Context(), metav1.ListOptions{})
	if err != nil {
		t.Log(err)
		return
	}
	for _, e := range events.Items {
		t.Logf("Event %s %s (x%d): %s", e.LastTimestamp.Format(time.RFC3339), e.Reason, e.Count, e.Message)
	}
}
