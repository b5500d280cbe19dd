package status

import (
	"context"
	"fmt"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/tools/cache"

	v1alpha2 "github.com/meshkeeper/istio-operator/pkg/apis/operator/v1alpha2"
	listers "github.com/meshkeeper/istio-operator/pkg/generated/listers/operator/v1alpha2"
)

// Installation is what a dependent controller needs to know of the
// installation controller's verdict on a resource.
type Installation struct {
	// Served is true when the installation controller serves the resource:
	// only a served resource carries the Installed condition.
	Served bool
	// Current is true when Istio is installed with the configuration of the
	// resource's current generation; dependents act only then.
	Current bool
}

// InstallationOf reads the Installed condition of a resource.
func InstallationOf(istio *v1alpha2.Istio) Installation {
	c := meta.FindStatusCondition(istio.Status.Conditions, v1alpha2.ConditionInstalled)
	if c == nil {
		return Installation{}
	}
	return Installation{
		Served:  true,
		Current: c.Status == metav1.ConditionTrue && c.ObservedGeneration == istio.Generation,
	}
}

// Verdict is what a dependent controller may do with a resource.
type Verdict int

const (
	// Proceed: the resource is served and Istio is installed with its
	// current configuration.
	Proceed Verdict = iota
	// Gone: the resource no longer exists; the writer has forgotten it.
	Gone
	// NotServed: the installation controller does not serve the resource
	// (yet, or another one): nothing to report on it.
	NotServed
	// Deleting: the served resource is being deleted, and Istio with it.
	Deleting
	// Waiting: Istio is not installed with the current configuration (yet);
	// the controller's conditions now say so.
	Waiting
)

func (v Verdict) String() string {
	return [...]string{"Proceed", "Gone", "NotServed", "Deleting", "Waiting"}[v]
}

// Gate is the check at the start of every dependent controller's sync:
// may it act on the resource yet? Dependents act only on the served
// resource, only while it is not being deleted, and only once Istio is
// installed with its current generation; until then their conditions say
// that they wait.
type Gate struct {
	Istios listers.IstioLister
	Writer *Writer
	// Conditions are the controller's condition types, reported as waiting.
	Conditions []string
	// Then says what the controller does once Istio is installed, for the
	// waiting message.
	Then string
}

// Check reads the resource (the writer's own last write of it while the
// cache lags) and decides. For Waiting it writes the waiting conditions.
// The resource is returned for Proceed, Deleting and Waiting.
func (g *Gate) Check(ctx context.Context, key cache.ObjectName) (Verdict, *v1alpha2.Istio, error) {
	cached, err := g.Istios.Istios(key.Namespace).Get(key.Name)
	if apierrors.IsNotFound(err) {
		g.Writer.Forget(key)
		return Gone, nil, nil
	}
	if err != nil {
		return NotServed, nil, err
	}
	istio := g.Writer.Newest(cached)
	in := InstallationOf(istio)
	switch {
	case !in.Served:
		return NotServed, istio, nil
	case istio.DeletionTimestamp != nil:
		return Deleting, istio, nil
	case !in.Current:
		conds := make([]Condition, len(g.Conditions))
		for i, t := range g.Conditions {
			conds[i] = WaitingCondition(t, istio, g.Then)
		}
		_, _, err := g.Writer.Apply(ctx, istio, Update{Conditions: conds})
		return Waiting, istio, err
	}
	return Proceed, istio, nil
}

// WaitingCondition is the condition a dependent controller reports while
// Istio is not installed with the resource's current configuration. It
// names the Installed condition's status and reason but not its message:
// that changes with every progress step of an install, and carrying it
// would rewrite the waiting condition each time.
func WaitingCondition(condType string, istio *v1alpha2.Istio, then string) Condition {
	var why string
	switch installed := meta.FindStatusCondition(istio.Status.Conditions, v1alpha2.ConditionInstalled); {
	case installed == nil:
		why = "the Installed condition is not set"
	case installed.ObservedGeneration != istio.Generation:
		why = fmt.Sprintf("the Installed condition describes generation %d of the Istio resource, which is at generation %d",
			installed.ObservedGeneration, istio.Generation)
	default:
		why = fmt.Sprintf("the Installed condition is %s (%s)", installed.Status, installed.Reason)
	}
	msg := "Waiting for Istio to be installed with the current configuration: " + why + "."
	if then != "" {
		msg += " " + then
	}
	return Condition{Type: condType, Status: metav1.ConditionUnknown, Reason: v1alpha2.ReasonWaitingForInstallation, Message: msg}
}

// ServingCandidates are the keys of the Istio resources in the operator's
// namespace, one of which the installation controller serves. A change of
// an object Istio installed concerns the served one; each candidate's sync
// decides whether it is that one.
func ServingCandidates(istios listers.IstioLister, namespace string) []cache.ObjectName {
	all, err := istios.Istios(namespace).List(labels.Everything())
	if err != nil {
		return nil
	}
	return KeysOf(all)
}

// KeysOf are the keys of the resources.
func KeysOf(istios []*v1alpha2.Istio) []cache.ObjectName {
	keys := make([]cache.ObjectName, 0, len(istios))
	for _, i := range istios {
		keys = append(keys, cache.MetaObjectToName(i))
	}
	return keys
}
