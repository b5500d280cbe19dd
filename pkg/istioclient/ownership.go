package istioclient

import (
	"fmt"
	"sort"

	"istio.io/istio/operator/pkg/component"
	"istio.io/istio/operator/pkg/manifest"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/meshkeeper/istio-operator/pkg/message"
)

// The ownership rule: the operator creates, changes, prunes and deletes
// only objects it applied itself, and every object it applies carries
// ConfigHashAnnotation, which nothing else writes. Istio's installer
// labels (operator.istio.io/component, install.operator.istio.io/owning-
// resource) say which component an object belongs to, not who installed it:
// Helm and istioctl set them as well. Everything else is read and reported.
//
// Owns is that rule; plan, prune, uninstall and the namespace decision all
// ask it.
func Owns(obj metav1.Object) bool {
	return obj.GetAnnotations()[ConfigHashAnnotation] != ""
}

// createdNamespace reports whether the operator created the namespace:
// it carries the annotation, or, from earlier operator builds, only the
// managed-by label.
func createdNamespace(ns metav1.Object) bool {
	return Owns(ns) || ns.GetLabels()[ManagedByLabel] == ManagedByValue
}

// shared reports whether a rendered object is one every Istio revision in
// a cluster shares: the base chart's (Istio's CRDs, the reader
// ServiceAccount), which Istio installs once per cluster. One someone else
// applied is used as it is (its kinds and rights serve every control
// plane), never changed or deleted; the operator's own stay on uninstall
// while another control plane runs.
func shared(u *unstructured.Unstructured) bool {
	return u.GetLabels()[manifest.IstioComponentLabel] == string(component.BaseComponentName) || u.GroupVersionKind() == crdGVK
}

var crdGVK = schema.GroupVersionKind{Group: "apiextensions.k8s.io", Version: "v1", Kind: "CustomResourceDefinition"}

// ForeignObjectsError is an installation refused because objects the
// rendering needs exist and were not applied by the operator: another
// installation of Istio (Helm, istioctl, another operator) or a user's.
type ForeignObjectsError struct {
	Objects []string
}

// Error names the control plane first: the first objects named are the
// ones a user recognises.
func (e *ForeignObjectsError) Error() string {
	return fmt.Sprintf("%d objects Istio needs exist and were not installed by this operator: %s; they are left untouched. "+
		"Uninstall the Istio they belong to, or remove them, and the operator installs Istio",
		len(e.Objects), message.Named(e.Objects, 3))
}

// describeForeign names a foreign object with the installer that left it.
func describeForeign(u *unstructured.Unstructured) string {
	return fmt.Sprintf("%s %s (%s)", u.GetKind(), objectName(u), installerOf(u))
}

// installerOf guesses who installed an object from its labels.
func installerOf(u *unstructured.Unstructured) string {
	l := u.GetLabels()
	// istioctl renders the same charts, so its objects carry Helm's
	// labels too; only istioctl adds operator.istio.io/managed.
	switch {
	case l[manifest.OperatorManagedLabel] != "" && l[manifest.OwningResourceName] != "":
		return "installed by istioctl"
	case l["app.kubernetes.io/managed-by"] == "Helm" || l[manifest.OwningResourceName] == "unknown":
		return "installed by Helm"
	case l[manifest.IstioComponentLabel] != "":
		return "installed by another Istio installer"
	}
	return "created by a user"
}

// ControlPlane is an istiod found in the cluster.
type ControlPlane struct {
	Namespace, Name, Revision, Version, Installer string
	// Ours is set for the control plane this operator installed.
	Ours bool
}

func (c ControlPlane) String() string {
	return fmt.Sprintf("Deployment %s/%s (revision %s, Istio %s, %s)", c.Namespace, c.Name, c.Revision, c.Version, c.Installer)
}

// ForeignControlPlanes lists the istiod Deployments this operator did not
// install, sorted: they are reported, never touched.
func ForeignControlPlanes(live LiveObjects) []ControlPlane {
	var out []ControlPlane
	for _, d := range live.Labelled(deploymentGVK) {
		if Owns(d) || d.GetLabels()[manifest.IstioComponentLabel] != "Pilot" || d.GetDeletionTimestamp() != nil {
			continue
		}
		rev := d.GetLabels()["istio.io/rev"]
		if rev == "" {
			rev = "default"
		}
		version := "unknown"
		if v, err := versionOf(d); err == nil {
			version = v.String()
		}
		out = append(out, ControlPlane{Namespace: d.GetNamespace(), Name: d.GetName(), Revision: rev, Version: version, Installer: installerOf(d)})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].String() < out[j].String() })
	return out
}

var deploymentGVK = schema.GroupVersionKind{Group: "apps", Version: "v1", Kind: "Deployment"}
