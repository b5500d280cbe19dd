package peerauthentication

import (
	"context"
	"fmt"
	"sort"
	"strings"

	securityapi "istio.io/api/security/v1beta1"
	securityv1 "istio.io/client-go/pkg/apis/security/v1"
	securityac "istio.io/client-go/pkg/applyconfiguration/security/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/tools/cache"
	"k8s.io/klog/v2"

	v1alpha2 "github.com/meshkeeper/istio-operator/pkg/apis/operator/v1alpha2"
	"github.com/meshkeeper/istio-operator/pkg/controllers/istiowatch"
	"github.com/meshkeeper/istio-operator/pkg/controllers/queue"
	"github.com/meshkeeper/istio-operator/pkg/controllers/status"
	"github.com/meshkeeper/istio-operator/pkg/istioclient"
	"github.com/meshkeeper/istio-operator/pkg/message"
)

// listedWeakening is how many weakening PeerAuthentications the condition
// names; the count covers the rest.
const listedWeakening = 5

var desiredMode = securityapi.PeerAuthentication_MutualTLS_STRICT

func defaultRef() string { return istioclient.Namespace + "/" + DefaultName }

func (c *Controller) sync(ctx context.Context, key cache.ObjectName) (queue.Result, error) {
	verdict, istio, err := c.gate().Check(ctx, key)
	switch verdict {
	case status.Gone:
		if !c.anyInstalled() {
			c.peerAuths.stop()
		}
		return queue.Result{}, nil
	case status.Deleting:
		// Uninstalling removes Istio's CRDs and with them the
		// PeerAuthentication: stop watching a kind about to disappear, and
		// never recreate what the uninstall deletes.
		c.peerAuths.stop()
		return queue.Result{}, nil
	case status.Proceed:
	default:
		return queue.Result{}, err
	}

	peerAuths, err := c.peerAuths.Start(ctx)
	if err != nil {
		return queue.Result{}, err
	}
	current, err := peerAuths.PeerAuthentications(istioclient.Namespace).Get(DefaultName)
	if apierrors.IsNotFound(err) {
		current = nil
	} else if err != nil {
		return queue.Result{}, err
	}
	current = c.peerAuths.newest(current)

	if drift := driftOf(current); drift != "" {
		applied, err := c.apply(ctx)
		if err != nil {
			msg := fmt.Sprintf("Applying PeerAuthentication %s (mTLS %s) failed and is retried: %v.", defaultRef(), desiredMode, err)
			if _, werr := c.write(ctx, istio, status.Condition{
				Type: v1alpha2.ConditionPeerAuthenticationReady, Status: metav1.ConditionFalse,
				Reason: v1alpha2.ReasonPeerAuthenticationFailed, Message: msg,
			}); werr != nil {
				klog.FromContext(ctx).Error(werr, "Writing the status")
			}
			return queue.Result{}, err
		}
		c.peerAuths.wrote(applied)
		if current == nil {
			klog.FromContext(ctx).Info("Created the mesh-wide PeerAuthentication", "peerAuthentication", defaultRef())
			c.recorder.Eventf(istio, corev1.EventTypeNormal, v1alpha2.EventPeerAuthenticationCreated,
				"Created PeerAuthentication %s: mesh-wide mTLS %s.", defaultRef(), desiredMode)
		} else {
			klog.FromContext(ctx).Info("Restored the mesh-wide PeerAuthentication", "peerAuthentication", defaultRef(), "drift", drift)
			c.recorder.Eventf(istio, corev1.EventTypeNormal, v1alpha2.EventPeerAuthenticationRestored,
				"Restored PeerAuthentication %s to mesh-wide mTLS %s (%s).", defaultRef(), desiredMode, drift)
		}
	}

	all, err := peerAuths.PeerAuthentications(istioclient.Namespace).List(everything)
	if err != nil {
		return queue.Result{}, err
	}
	cond := status.Condition{
		Type: v1alpha2.ConditionPeerAuthenticationReady, Status: metav1.ConditionTrue,
		Reason:  v1alpha2.ReasonPeerAuthenticationApplied,
		Message: fmt.Sprintf("Mesh-wide mTLS is %s: PeerAuthentication %s.", desiredMode, defaultRef()),
	}
	if weak := weakening(all); len(weak) > 0 {
		cond = weakenedCondition(weak)
	}
	_, err = c.write(ctx, istio, cond)
	return queue.Result{RequeueAfter: ConvergedInterval}, err
}

// driftOf says how the live PeerAuthentication differs from the desired
// one, or "" when it is right. Fields others set and the desired object
// leaves alone do not count.
func driftOf(live *securityv1.PeerAuthentication) string {
	if live == nil {
		return "it was missing"
	}
	var diffs []string
	if mode := live.Spec.GetMtls().GetMode(); mode != desiredMode {
		diffs = append(diffs, fmt.Sprintf("mode was %s", mode))
	}
	if live.Labels[istioclient.ManagedByLabel] != istioclient.ManagedByValue {
		diffs = append(diffs, fmt.Sprintf("label %s=%s was missing", istioclient.ManagedByLabel, istioclient.ManagedByValue))
	}
	return strings.Join(diffs, ", ")
}

// apply writes the desired PeerAuthentication with server-side apply. The
// managed-by label tells the installation controller's deletion check that
// the object is the operator's, not a user's.
func (c *Controller) apply(ctx context.Context) (*securityv1.PeerAuthentication, error) {
	ac := securityac.PeerAuthentication(DefaultName, istioclient.Namespace).
		WithLabels(map[string]string{istioclient.ManagedByLabel: istioclient.ManagedByValue})
	// Set directly: WithSpec takes the generated message by value, which
	// copies its internal state.
	ac.Spec = &securityapi.PeerAuthentication{
		Mtls: &securityapi.PeerAuthentication_MutualTLS{Mode: desiredMode},
	}
	pa, err := c.security.SecurityV1().PeerAuthentications(istioclient.Namespace).Apply(ctx, ac,
		metav1.ApplyOptions{FieldManager: status.FieldManagerPrefix + Name, Force: true})
	if err != nil {
		return nil, fmt.Errorf("applying PeerAuthentication %s: %w", defaultRef(), err)
	}
	return pa, nil
}

// weakeningPolicy is a user's PeerAuthentication in the root namespace that
// lowers mTLS below STRICT for some traffic, and how.
type weakeningPolicy struct {
	ref, how string
}

// weakening lists, sorted, the users' PeerAuthentications in the root
// namespace that weaken mesh-wide STRICT mTLS: a mesh-wide one (no
// selector) with any mode but STRICT (UNSET means PERMISSIVE at the root),
// and a workload one (selector) with DISABLE or PERMISSIVE for the
// workload or one of its ports (UNSET inherits STRICT there).
func weakening(all []*securityv1.PeerAuthentication) []weakeningPolicy {
	var out []weakeningPolicy
	for _, pa := range all {
		if pa.Name == DefaultName || pa.DeletionTimestamp != nil {
			continue
		}
		ref := pa.Namespace + "/" + pa.Name
		mode := pa.Spec.GetMtls().GetMode()
		if len(pa.Spec.GetSelector().GetMatchLabels()) == 0 {
			if mode != desiredMode {
				out = append(out, weakeningPolicy{ref: ref, how: fmt.Sprintf("mesh-wide mode %s", mode)})
			}
			continue
		}
		var hows []string
		if lowers(mode) {
			hows = append(hows, fmt.Sprintf("mode %s", mode))
		}
		ports := make([]uint32, 0, len(pa.Spec.GetPortLevelMtls()))
		for p, m := range pa.Spec.GetPortLevelMtls() {
			if lowers(m.GetMode()) {
				ports = append(ports, p)
			}
		}
		sort.Slice(ports, func(i, j int) bool { return ports[i] < ports[j] })
		for _, p := range ports {
			hows = append(hows, fmt.Sprintf("port %d mode %s", p, pa.Spec.GetPortLevelMtls()[p].GetMode()))
		}
		if len(hows) > 0 {
			out = append(out, weakeningPolicy{ref: ref, how: "workloads " + labels.Set(pa.Spec.GetSelector().GetMatchLabels()).String() + ": " + strings.Join(hows, ", ")})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ref < out[j].ref })
	return out
}

func lowers(m securityapi.PeerAuthentication_MutualTLS_Mode) bool {
	return m == securityapi.PeerAuthentication_MutualTLS_DISABLE || m == securityapi.PeerAuthentication_MutualTLS_PERMISSIVE
}

func weakenedCondition(weak []weakeningPolicy) status.Condition {
	named := make([]string, len(weak))
	for i, w := range weak {
		named[i] = fmt.Sprintf("%s (%s)", w.ref, w.how)
	}
	return status.Condition{
		Type: v1alpha2.ConditionPeerAuthenticationReady, Status: metav1.ConditionFalse,
		Reason: v1alpha2.ReasonPeerAuthenticationWeakened,
		Message: fmt.Sprintf("PeerAuthentication %s sets mesh-wide mTLS %s, but %d PeerAuthentications created by users in %s weaken it: %s. "+
			"The operator does not delete them; delete them or set their mode to %s.",
			defaultRef(), desiredMode, len(weak), istioclient.Namespace, message.Named(named, listedWeakening), desiredMode),
	}
}

// write applies the controller's condition; a new Warning is also recorded
// as an Event (only when the condition changed, so a periodic check does
// not repeat it).
func (c *Controller) write(ctx context.Context, istio *v1alpha2.Istio, cond status.Condition) (*v1alpha2.Istio, error) {
	updated, wrote, err := c.status.Apply(ctx, istio, status.Update{Conditions: []status.Condition{cond}})
	if err != nil {
		return istio, err
	}
	if !wrote {
		return updated, nil
	}
	if cond.Status == metav1.ConditionFalse {
		c.recorder.Event(istio, corev1.EventTypeWarning, cond.Reason, cond.Message)
	}
	return updated, nil
}

// anyInstalled reports whether a resource in the operator's namespace is
// installed and not being deleted, i.e. whether Istio's CRDs stay.
func (c *Controller) anyInstalled() bool {
	all, err := c.istios.Istios(c.namespace).List(everything)
	return err != nil || istiowatch.Needed(all)
}

// gate decides whether a sync may act on a resource yet.
func (c *Controller) gate() *status.Gate {
	return &status.Gate{Istios: c.istios, Writer: c.status, Conditions: []string{v1alpha2.ConditionPeerAuthenticationReady},
		Then: fmt.Sprintf("PeerAuthentication %s (mesh-wide mTLS %s) is applied once Installed is True; if Installed reports an error, fix what its message names.", defaultRef(), desiredMode)}
}
