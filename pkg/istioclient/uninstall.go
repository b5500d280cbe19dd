package istioclient

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"istio.io/istio/operator/pkg/manifest"
	"istio.io/istio/operator/pkg/uninstall"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/klog/v2"
)

// ManagedByLabel marks objects the operator created outside the charts
// (the istio-system namespace, the PeerAuthentication), beside the
// ownership annotation.
const (
	ManagedByLabel = "app.kubernetes.io/managed-by"
	ManagedByValue = "istio-operator"
)

// UninstallKinds are the kinds uninstall deletes, in order: the installer's
// namespaced and cluster-scoped objects, then Istio's CRDs (which takes the
// remaining Istio resources with them; the deletion strategy decides
// beforehand whether any user resources may go). Pods are not among them:
// the garbage collector removes them with their Deployments.
func UninstallKinds() []schema.GroupVersionKind {
	kinds := slices.DeleteFunc(uninstall.PrunedResourcesSchemas(), func(gvk schema.GroupVersionKind) bool { return gvk.Kind == "Pod" })
	return append(kinds, NetworkPolicyGVK, crdGVK)
}

// Uninstall deletes every object the operator applied (Owns), waits until
// they are gone, then deletes istio-system if the operator created it and
// nothing but Istio's run-time objects live there. kept says why the
// namespace stayed, when it did.
func (i *Installer) Uninstall(ctx context.Context) (kept string, err error) {
	// The base chart's objects stay while another control plane uses
	// them: deleting Istio's CRDs would delete every Istio resource in the
	// cluster with them.
	foreign := ForeignControlPlanes(i.Live)
	if len(foreign) > 0 {
		i.progress("keeping Istio's CRDs, which %s uses", foreign[0])
	}
	owned := func() []*unstructured.Unstructured {
		var out []*unstructured.Unstructured
		for _, gvk := range UninstallKinds() {
			for _, u := range i.Live.Labelled(gvk) {
				if Owns(u) && (len(foreign) == 0 || !shared(u)) {
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
			return "", err
		}
	}
	if err := i.waitDeleted(ctx, owned); err != nil {
		return "", err
	}
	return i.removeNamespace(ctx)
}

// waitDeleted waits until owned returns nothing.
func (i *Installer) waitDeleted(ctx context.Context, owned func() []*unstructured.Unstructured) error {
	timeout := i.WaitTimeout
	if timeout <= 0 {
		timeout = 150 * time.Second
	}
	var left []*unstructured.Unstructured
	gone := map[types.UID]bool{}
	lastCheck := time.Now()
	err := wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, timeout, true, func(ctx context.Context) (bool, error) {
		left = slices.DeleteFunc(owned(), func(u *unstructured.Unstructured) bool { return gone[u.GetUID()] })
		if len(left) > 0 && time.Since(lastCheck) >= slowDeletionCheck {
			lastCheck = time.Now()
			for _, u := range left {
				if i.checkSlowDeletion(ctx, u) {
					gone[u.GetUID()] = true
				}
			}
			left = slices.DeleteFunc(left, func(u *unstructured.Unstructured) bool { return gone[u.GetUID()] })
		}
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
			names = append(names, describeDeletion(u))
		}
		return fmt.Errorf("%d Istio objects still exist after %s, among them %s", len(left), timeout, strings.Join(names, "; "))
	}
	return nil
}

// slowDeletionCheck is how long an uninstall waits on the caches before it
// checks the CRDs still there with the API server.
const slowDeletionCheck = 15 * time.Second

// deletionCheckAnnotation is set on a CRD whose deletion is slow.
const deletionCheckAnnotation = "operator.kyma-project.io/deletion-check"

// checkSlowDeletion annotates a CRD the uninstall has waited on for a
// while, and reports whether it is gone (the cache lags). The API server's
// instance clean-up, which must finish before a CRD goes, is a controller
// that retries a failed pass with a backoff growing to minutes, and that
// drops a pass whose status write conflicts until the CRD changes again; a
// change to the CRD queues it again at once. Other kinds have no such
// step and are left to the garbage collector.
func (i *Installer) checkSlowDeletion(ctx context.Context, u *unstructured.Unstructured) bool {
	if u.GetKind() != "CustomResourceDefinition" {
		return false
	}
	res, err := i.resource(u.GroupVersionKind(), "")
	if err != nil {
		return false
	}
	patch := fmt.Appendf(nil, `{"metadata":{"annotations":{%q:%q}}}`, deletionCheckAnnotation, time.Now().UTC().Format(time.RFC3339))
	cur, err := res.Patch(ctx, u.GetName(), types.MergePatchType, patch, metav1.PatchOptions{})
	switch {
	case apierrors.IsNotFound(err):
		return true
	case err != nil:
		klog.FromContext(ctx).Info("Checking a deleted CRD failed", "crd", u.GetName(), "err", err.Error())
		return false
	case cur.GetUID() != u.GetUID():
		return true // deleted and created again, by someone else
	}
	klog.FromContext(ctx).Info("Asked the API server to check a deleted CRD's instances again", "crd", describeDeletion(cur))
	return false
}

// describeDeletion names an object with what holds its deletion: its
// finalizers and, for a CRD, the API server's own account of its instance
// clean-up (the Terminating condition).
func describeDeletion(u *unstructured.Unstructured) string {
	name := u.GetKind() + " " + objectName(u)
	ts := u.GetDeletionTimestamp()
	if ts == nil {
		return name + " (not being deleted)"
	}
	detail := fmt.Sprintf("deleting for %s, finalizers %v", time.Since(ts.Time).Round(time.Second), u.GetFinalizers())
	conditions, _, _ := unstructured.NestedSlice(u.Object, "status", "conditions")
	for _, c := range conditions {
		if m, _ := c.(map[string]any); m["type"] == "Terminating" {
			detail += fmt.Sprintf(", Terminating=%v %v: %v", m["status"], m["reason"], m["message"])
		}
	}
	return name + " (" + detail + ")"
}

// InstalledVersion reads the version of the Istio this operator installed
// from its istiod: the version label Istio's installer (and this operator)
// set, or, failing that, the image tag. An edited image is drift to
// repair, not a different installation. found is false when the operator's
// istiod does not exist; an istiod someone else installed is not read here
// (ForeignControlPlanes reports it). During a canary upgrade two run: the
// older one's version is the installed one until it is removed.
func InstalledVersion(live LiveObjects) (v SemVer, found bool, err error) {
	revs := Revisions(live)
	if len(revs) == 0 {
		return SemVer{}, false, nil
	}
	return revs[0].Version, true, revs[0].Err
}

// versionOf reads an istiod Deployment's Istio version.
func versionOf(d *unstructured.Unstructured) (SemVer, error) {
	if v, err := ParseVersion(d.GetLabels()[manifest.OperatorVersionLabel]); err == nil {
		return v, nil
	}
	containers, _, _ := unstructured.NestedSlice(d.Object, "spec", "template", "spec", "containers")
	for _, c := range containers {
		m, _ := c.(map[string]any)
		if m["name"] != "discovery" {
			continue
		}
		image, _ := m["image"].(string)
		if at := strings.Index(image, "@"); at >= 0 {
			image = image[:at]
		}
		tag := image[strings.LastIndex(image, ":")+1:]
		v, err := ParseVersion(tag)
		if err != nil {
			return SemVer{}, fmt.Errorf("istiod runs image %s, whose tag is not an Istio version", m["image"])
		}
		return v, nil
	}
	return SemVer{}, fmt.Errorf("istiod has no discovery container")
}

// CreatedByUser reports whether an object with these labels in one of
// Istio's kinds was created by a user: neither the operator nor Istio's
// installer created it.
func CreatedByUser(labels map[string]string) bool {
	return labels[ManagedByLabel] != ManagedByValue && labels[manifest.OperatorManagedLabel] == "" && labels[manifest.OwningResourceName] == ""
}
