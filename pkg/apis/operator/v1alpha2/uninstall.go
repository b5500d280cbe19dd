package v1alpha2

import "k8s.io/apimachinery/pkg/api/meta"

// Uninstalled reports whether the deletion of the resource has uninstalled
// Istio: Installed is False with IstioUninstallSucceeded. The installation
// controller then waits for the sidecars' removal, which the proxy sidecar
// controller does.
func (i *Istio) Uninstalled() bool {
	c := meta.FindStatusCondition(i.Status.Conditions, ConditionInstalled)
	return c != nil && c.Reason == ReasonIstioUninstallSucceeded
}

// KeepsSidecars reports whether the user asked, with AnnotationKeepSidecars,
// to keep the workloads' sidecars when the resource goes.
func (i *Istio) KeepsSidecars() bool {
	return i.Annotations[AnnotationKeepSidecars] == "true"
}
