package operatortest

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"

	"istio.io/istio/operator/pkg/values"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/restmapper"

	"github.com/meshkeeper/istio-operator/pkg/istioclient"
	"github.com/meshkeeper/istio-operator/test/cluster"
)

// ForeignIstio is an Istio another tool installed: rendered from Istio's
// own charts, labelled as that tool labels, applied under its field
// manager, and never stamped with the operator's ownership annotation.
type ForeignIstio struct {
	Name    string
	Objects []*unstructured.Unstructured

	mapper *restmapper.DeferredDiscoveryRESTMapper
	client dynamic.Interface
	// createdNamespaces are the namespaces the install created.
	createdNamespaces []string
}

// HelmLabels labels an object as Istio's Helm charts do: managed by Helm,
// owning resource "unknown", no istioctl reconcile label.
func HelmLabels(u *unstructured.Unstructured) {
	l := u.GetLabels()
	if l == nil {
		l = map[string]string{}
	}
	l["app.kubernetes.io/managed-by"] = "Helm"
	l["install.operator.istio.io/owning-resource"] = "unknown"
	delete(l, "operator.istio.io/managed")
	u.SetLabels(l)
}

// IstioctlLabels labels an object as istioctl install does (its
// getOwnerLabels): reconciled by the installer, owned by the named
// IstioOperator, at the Istio version installed.
func IstioctlLabels(owner string) func(*unstructured.Unstructured) {
	return func(u *unstructured.Unstructured) {
		l := u.GetLabels()
		if l == nil {
			l = map[string]string{}
		}
		l["operator.istio.io/managed"] = "Reconcile"
		l["operator.istio.io/version"] = istioclient.Version
		l["install.operator.istio.io/owning-resource"] = owner
		l["install.operator.istio.io/owning-resource-namespace"] = istioclient.Namespace
		u.SetLabels(l)
	}
}

// InstallForeign renders iopYAML (an IstioOperator) with Istio's charts,
// passes each object through relabel (nil keeps the charts' labels), and
// applies them as fieldManager: CRDs and namespaces first.
func InstallForeign(t *testing.T, name, iopYAML, fieldManager string, relabel func(*unstructured.Unstructured)) *ForeignIstio {
	t.Helper()
	iop, err := values.MapFromYaml([]byte(iopYAML))
	if err != nil {
		t.Fatalf("parsing the IstioOperator of %s: %v", name, err)
	}
	r, err := istioclient.Render(iop, nil)
	if err != nil {
		t.Fatalf("rendering %s: %v", name, err)
	}
	c := cluster.Current()
	f := &ForeignIstio{
		Name:   name,
		mapper: restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(c.Clientset().Discovery())),
		client: c.Dynamic(),
	}
	namespaces := map[string]bool{}
	for _, m := range r.Objects() {
		u := m.Unstructured.DeepCopy()
		if relabel != nil {
			relabel(u)
		}
		if u.GetAnnotations()[istioclient.ConfigHashAnnotation] != "" {
			t.Fatalf("%s: rendered %s %s carries the operator's ownership annotation", name, u.GetKind(), u.GetName())
		}
		if ns := u.GetNamespace(); ns != "" {
			namespaces[ns] = true
		}
		f.Objects = append(f.Objects, u)
	}
	// CRDs first: the other kinds' mappings need them only for discovery,
	// but an apply order that fails half way helps nobody.
	sort.SliceStable(f.Objects, func(i, j int) bool {
		return f.Objects[i].GetKind() == "CustomResourceDefinition" && f.Objects[j].GetKind() != "CustomResourceDefinition"
	})
	ctx, cancel := context.WithTimeout(cluster.Context(t), 2*time.Minute)
	defer cancel()
	for ns := range namespaces {
		_, err := c.Clientset().CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}},
			metav1.CreateOptions{FieldManager: fieldManager})
		switch {
		case err == nil:
			f.createdNamespaces = append(f.createdNamespaces, ns)
		case !apierrors.IsAlreadyExists(err):
			t.Fatalf("%s: creating namespace %s: %v", name, ns, err)
		}
	}
	force := true
	for _, u := range f.Objects {
		data, err := json.Marshal(u.Object)
		if err != nil {
			t.Fatal(err)
		}
		res, err := f.resource(u)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if _, err := res.Patch(ctx, u.GetName(), types.ApplyPatchType, data, metav1.PatchOptions{FieldManager: fieldManager, Force: &force}); err != nil {
			t.Fatalf("%s: applying %s %s/%s: %v", name, u.GetKind(), u.GetNamespace(), u.GetName(), err)
		}
	}
	t.Logf("%s: applied %d objects as %s", name, len(f.Objects), fieldManager)
	return f
}

func (f *ForeignIstio) resource(u *unstructured.Unstructured) (dynamic.ResourceInterface, error) {
	gvk := u.GroupVersionKind()
	m, err := f.mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
	if err != nil {
		f.mapper.Reset()
		if m, err = f.mapper.RESTMapping(gvk.GroupKind(), gvk.Version); err != nil {
			return nil, fmt.Errorf("mapping %s: %w", gvk, err)
		}
	}
	if m.Scope.Name() == "namespace" {
		return f.client.Resource(m.Resource).Namespace(u.GetNamespace()), nil
	}
	return f.client.Resource(m.Resource), nil
}

func describe(u *unstructured.Unstructured) string {
	if u.GetNamespace() == "" {
		return u.GetKind() + " " + u.GetName()
	}
	return u.GetKind() + " " + u.GetNamespace() + "/" + u.GetName()
}

// WaitSettled waits until the foreign Deployments are ready, so that their
// status, and hence their resourceVersion, stops changing.
func (f *ForeignIstio) WaitSettled(t *testing.T, timeout time.Duration) {
	t.Helper()
	for _, u := range f.Objects {
		if u.GetKind() != "Deployment" {
			continue
		}
		res, err := f.resource(u)
		if err != nil {
			t.Fatal(err)
		}
		cluster.WaitFor(t, timeout, f.Name+" "+describe(u)+" ready", func(ctx context.Context) (bool, error) {
			cur, err := res.Get(ctx, u.GetName(), metav1.GetOptions{})
			if err != nil {
				return false, err
			}
			return istioclient.Ready(cur), nil
		})
	}
	f.waitIstiodWrites(t, timeout)
}

// waitIstiodWrites waits, when the real istiod stands behind this
// installation (its Deployment is istio-system/istiod), for the writes
// istiod makes to the installation's webhook configurations of its
// revision once it serves: the CA bundle of each webhook, and the
// validation webhook's failurePolicy turned to Fail.
func (f *ForeignIstio) waitIstiodWrites(t *testing.T, timeout time.Duration) {
	t.Helper()
	behind := false
	for _, u := range f.Objects {
		behind = behind || (u.GetKind() == "Deployment" && u.GetNamespace() == istioclient.Namespace && u.GetName() == "istiod")
	}
	if !behind {
		return
	}
	cluster.WaitIstiod(t, timeout)
	for _, u := range f.Objects {
		kind := u.GetKind()
		if (kind != "MutatingWebhookConfiguration" && kind != "ValidatingWebhookConfiguration") || u.GetLabels()["istio.io/rev"] != "default" {
			continue
		}
		res, err := f.resource(u)
		if err != nil {
			t.Fatal(err)
		}
		cluster.WaitFor(t, timeout, f.Name+" "+describe(u)+" patched by istiod", func(ctx context.Context) (bool, error) {
			cur, err := res.Get(ctx, u.GetName(), metav1.GetOptions{})
			if err != nil {
				return false, err
			}
			webhooks, _, _ := unstructured.NestedSlice(cur.Object, "webhooks")
			for _, w := range webhooks {
				wm, _ := w.(map[string]any)
				if ca, _, _ := unstructured.NestedString(wm, "clientConfig", "caBundle"); ca == "" {
					return false, fmt.Errorf("webhook %v has no caBundle yet", wm["name"])
				}
				if kind == "ValidatingWebhookConfiguration" && wm["failurePolicy"] != "Fail" {
					return false, fmt.Errorf("webhook %v has failurePolicy %v", wm["name"], wm["failurePolicy"])
				}
			}
			return true, nil
		})
	}
}

// Snapshot is every object of a foreign installation by UID and
// resourceVersion.
type Snapshot map[string]string

// Snapshot reads every object of the installation.
func (f *ForeignIstio) Snapshot(t *testing.T) Snapshot {
	t.Helper()
	out := Snapshot{}
	for _, u := range f.Objects {
		res, err := f.resource(u)
		if err != nil {
			t.Fatal(err)
		}
		cur, err := res.Get(cluster.Context(t), u.GetName(), metav1.GetOptions{})
		if err != nil {
			t.Fatalf("%s: reading %s: %v", f.Name, describe(u), err)
		}
		out[describe(u)] = string(cur.GetUID()) + "@" + cur.GetResourceVersion()
	}
	return out
}

// CheckUntouched fails the test for every object of the installation that
// was deleted or changed since before, naming who changed it.
func (f *ForeignIstio) CheckUntouched(t *testing.T, before Snapshot, after string) {
	t.Helper()
	var changed []string
	for _, u := range f.Objects {
		res, err := f.resource(u)
		if err != nil {
			t.Fatal(err)
		}
		key := describe(u)
		cur, err := res.Get(cluster.Context(t), u.GetName(), metav1.GetOptions{})
		if err != nil {
			changed = append(changed, fmt.Sprintf("%s: %v", key, err))
			continue
		}
		if now := string(cur.GetUID()) + "@" + cur.GetResourceVersion(); now != before[key] {
			var managers []string
			for _, m := range cur.GetManagedFields() {
				managers = append(managers, fmt.Sprintf("%s %s %s", m.Manager, m.Operation, m.Subresource))
			}
			changed = append(changed, fmt.Sprintf("%s: %s, was %s (managers: %s)", key, now, before[key], strings.Join(managers, "; ")))
		}
	}
	if len(changed) > 0 {
		t.Errorf("after %s, %d of the %d objects of %s changed:\n%s", after, len(changed), len(f.Objects), f.Name, strings.Join(changed, "\n"))
	}
}

// Remove deletes the installation's objects and the namespaces it
// created, and waits until they are gone.
func (f *ForeignIstio) Remove(t *testing.T) {
	t.Helper()
	ctx := cluster.Context(t)
	background := metav1.DeletePropagationBackground
	for _, u := range f.Objects {
		res, err := f.resource(u)
		if err != nil {
			t.Error(err)
			continue
		}
		if err := res.Delete(ctx, u.GetName(), metav1.DeleteOptions{PropagationPolicy: &background}); err != nil && !apierrors.IsNotFound(err) {
			t.Errorf("%s: deleting %s: %v", f.Name, describe(u), err)
		}
	}
	for _, u := range f.Objects {
		res, err := f.resource(u)
		if err != nil {
			continue
		}
		cluster.WaitFor(t, time.Minute, describe(u)+" gone", func(ctx context.Context) (bool, error) {
			_, err := res.Get(ctx, u.GetName(), metav1.GetOptions{})
			return apierrors.IsNotFound(err), nil
		})
	}
	namespaces := cluster.Current().Clientset().CoreV1().Namespaces()
	for _, ns := range f.createdNamespaces {
		if err := namespaces.Delete(ctx, ns, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
			t.Errorf("%s: deleting namespace %s: %v", f.Name, ns, err)
		}
		cluster.WaitFor(t, 2*time.Minute, "namespace "+ns+" gone", func(ctx context.Context) (bool, error) {
			_, err := namespaces.Get(ctx, ns, metav1.GetOptions{})
			return apierrors.IsNotFound(err), nil
		})
	}
}
