package status

import (
	"fmt"
	"strings"

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
	// Reason and Message of the Installed condition, to tell the user what
	// a dependent is waiting for.
	Reason, Message string
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
		Reason:  c.Reason,
		Message: c.Message,
	}
}

// Waiting is the condition a dependent controller reports while the
// installation is not current.
func Waiting(condType string, in Installation) Condition {
	msg := "Waiting for Istio to be installed with the current configuration"
	if in.Message != "" {
		msg += " (" + in.Reason + ": " + in.Message + ")"
	}
	return Condition{Type: condType, Status: metav1.ConditionUnknown, Reason: v1alpha2.ReasonWaitingForInstallation, Message: msg + "."}
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

// Named lists the first limit names and counts the rest: "a, b and 3 more".
func Named(names []string, limit int) string {
	if len(names) <= limit {
		return strings.Join(names, ", ")
	}
	return fmt.Sprintf("%s and %d more", strings.Join(names[:limit], ", "), len(names)-limit)
}
