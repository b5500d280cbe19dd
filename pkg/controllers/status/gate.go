package status

import (
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	v1alpha2 "github.com/meshkeeper/istio-operator/pkg/apis/operator/v1alpha2"
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
