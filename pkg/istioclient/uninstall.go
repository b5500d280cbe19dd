package istioclient

import (
	"context"
	"fmt"
	"strings"
	"time"

	"istio.io/istio/operator/pkg/manifest"
	"istio.io/istio/operator/pkg/uninstall"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/wait"
)

// ManagedByLabel marks objects the operator created outside the charts
// (the istio-system namespace); uninstall removes them, and only them.
const (
	ManagedByLabel = "app.kubernetes.io/managed-by"
	ManagedByValue = "istio-operator"
)

// UninstallKinds are the kinds uninstall deletes, in order: the installer's
// namespaced and cluster-scoped objects, then Istio's CRDs (which takes the
// remaining Istio resources with them; the deletion strategy decides
// beforehand whether any user resources may go).
func UninstallKinds() []schema.GroupVersionKind {
	return append(uninstall.PrunedResourcesSchemas(), NetworkPolicyGVK,
		schema.GroupVersionKind{Group: "apiextensions.k8s.io", Version: "v1", Kind: "CustomResourceDefinition"})
}

// Uninstall deletes every object the installer owns, then the istio-system
// namespace if the operator created it, and waits until they are gone.
func (i *Installer) Uninstall(ctx context.Context) error {
	owned := func() []*unstructured.Unstructured {
		var out []*unstructured.Unstructured
		for _, gvk := range UninstallKinds() {
			for _, u := range i.Live.Owned(gvk) {
				if u.GetLabels()[manifest.OperatorManagedLabel] != "" || u.GetLabels()[manifest.OwningResourceName] != "" {
					out = append(out, u)
				}
			}
		}
		return out
	}
	objs := owned()
	i.progress("deleting %d Istio objects", len(objs))
	for _, u := range objs {
		if err := i.delete(ctx, u); err != nil {
			return err
		}
	}
	nsGVK := schema.GroupVersionKind{Version: "v1", Kind: "Namespace"}
	if ns := i.Live.Get(nsGVK, "", Namespace); ns != nil && ns.GetLabels()[ManagedByLabel] == ManagedByValue {
		if err := i.delete(ctx, ns); err != nil {
			return err
		}
	}
	timeout := i.WaitTimeout
	if timeout <= 0 {
		timeout = 150 * time.Second
	}
	var left []*unstructured.Unstructured
	err := wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, timeout, true, func(context.Context) (bool, error) {
		left = owned()
		if len(left) > 0 {
			i.progress("waiting for %d Istio objects to be deleted", len(left))
		}
		return len(left) == 0, nil
	})
	if err != nil {
		names := make([]string, 0, 3)
		for j, u := range left {
			if j == 3 {
				break
			}
			names = append(names, u.GetKind()+" "+objectName(u))
		}
		return fmt.Errorf("%d Istio objects still exist after %s, among them %s", len(left), timeout, strings.Join(names, ", "))
	}
	return nil
}

// InstalledVersion reads the version of the installed Istio from istiod:
// the version label Istio's installer (and this operator) set, or, for an
// installation made otherwise, the image tag. An edited image is drift to
// repair, not a different installation. found is false when no istiod exists.
func InstalledVersion(live LiveObjects) (v SemVer, found bool, err error) {
	d := live.Get(schema.GroupVersionKind{Group: "apps", Version: "v1", Kind: "Deployment"}, Namespace, "istiod")
	if d == nil {
		return SemVer{}, false, nil
	}
	if v, err := ParseVersion(d.GetLabels()[manifest.OperatorVersionLabel]); err == nil {
		return v, true, nil
	}
	containers, _, _ := unstructured.NestedSlice(d.Object, "spec", "template", "spec", "containers")
	for _, c := range containers {
		m, _ := c.(map[string]any)
		if m["name"] != "discovery" {
			continue
		}
		image, _ := m["image"].(string)
		tag := image[strings.LastIndex(image, ":")+1:]
		if at := strings.Index(tag, "@"); at >= 0 {
			tag = tag[:at]
		}
		v, err := ParseVersion(tag)
		if err != nil {
			return SemVer{}, true, fmt.Errorf("istiod runs image %s, whose tag is not an Istio version", image)
		}
		return v, true, nil
	}
	return SemVer{}, true, fmt.Errorf("istiod has no discovery container")
}

// CreatedByUser reports whether an object with these labels in one of
// Istio's kinds was created by a user: neither the operator nor Istio's
// installer created it.
func CreatedByUser(labels map[string]string) bool {
	return labels[ManagedByLabel] != ManagedByValue && labels[manifest.OperatorManagedLabel] == "" && labels[manifest.OwningResourceName] == ""
}
