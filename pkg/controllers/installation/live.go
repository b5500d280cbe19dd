package installation

import (
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/dynamic/dynamicinformer"
	"k8s.io/client-go/tools/cache"

	"github.com/meshkeeper/istio-operator/pkg/istioclient"
)

// liveObjects serves the installer's objects from informers: one dynamic
// informer per kind the installer creates, restricted by label to the
// objects it owns, plus one for the istio-system namespace. Reads never go
// to the API server.
type liveObjects struct {
	informers map[schema.GroupVersionKind]cache.SharedIndexInformer
}

// ownedKinds are the kinds watched: everything the installer applies or
// prunes, with the resource names the dynamic client needs. Istio's charts
// render no other kinds for the components the operator installs; in
// particular no Secrets (istiod creates its CA Secret at run time) and no
// Pods, so the operator needs no cluster-wide read of either.
var ownedKinds = map[schema.GroupVersionKind]string{
	{Group: "apps", Version: "v1", Kind: "Deployment"}:                                             "deployments",
	{Group: "apps", Version: "v1", Kind: "DaemonSet"}:                                              "daemonsets",
	{Version: "v1", Kind: "Service"}:                                                               "services",
	{Version: "v1", Kind: "ConfigMap"}:                                                             "configmaps",
	{Version: "v1", Kind: "ServiceAccount"}:                                                        "serviceaccounts",
	{Group: "rbac.authorization.k8s.io", Version: "v1", Kind: "Role"}:                              "roles",
	{Group: "rbac.authorization.k8s.io", Version: "v1", Kind: "RoleBinding"}:                       "rolebindings",
	{Group: "rbac.authorization.k8s.io", Version: "v1", Kind: "ClusterRole"}:                       "clusterroles",
	{Group: "rbac.authorization.k8s.io", Version: "v1", Kind: "ClusterRoleBinding"}:                "clusterrolebindings",
	{Group: "policy", Version: "v1", Kind: "PodDisruptionBudget"}:                                  "poddisruptionbudgets",
	{Group: "autoscaling", Version: "v2", Kind: "HorizontalPodAutoscaler"}:                         "horizontalpodautoscalers",
	{Group: "admissionregistration.k8s.io", Version: "v1", Kind: "MutatingWebhookConfiguration"}:   "mutatingwebhookconfigurations",
	{Group: "admissionregistration.k8s.io", Version: "v1", Kind: "ValidatingWebhookConfiguration"}: "validatingwebhookconfigurations",
	{Group: "apiextensions.k8s.io", Version: "v1", Kind: "CustomResourceDefinition"}:               "customresourcedefinitions",
	istioclient.NetworkPolicyGVK:                                                                   "networkpolicies",
}

var namespaceGVK = schema.GroupVersionKind{Version: "v1", Kind: "Namespace"}

func newLiveObjects(client dynamic.Interface, owned, namespace dynamicinformer.DynamicSharedInformerFactory) *liveObjects {
	l := &liveObjects{informers: map[schema.GroupVersionKind]cache.SharedIndexInformer{}}
	for gvk, resource := range ownedKinds {
		l.informers[gvk] = owned.ForResource(gvk.GroupVersion().WithResource(resource)).Informer()
	}
	l.informers[namespaceGVK] = namespace.ForResource(schema.GroupVersionResource{Version: "v1", Resource: "namespaces"}).Informer()
	return l
}

// ownedTweak restricts the owned-object informers to the installer's objects.
func ownedTweak(o *metav1.ListOptions) { o.LabelSelector = istioclient.OwnedSelector }

// namespaceTweak restricts the namespace informer to istio-system.
func namespaceTweak(o *metav1.ListOptions) {
	o.FieldSelector = "metadata.name=" + istioclient.Namespace
}

func (l *liveObjects) Get(gvk schema.GroupVersionKind, namespace, name string) *unstructured.Unstructured {
	inf, ok := l.informers[gvk]
	if !ok {
		return nil
	}
	key := name
	if namespace != "" {
		key = namespace + "/" + name
	}
	obj, exists, err := inf.GetIndexer().GetByKey(key)
	if err != nil || !exists {
		return nil
	}
	u, _ := obj.(*unstructured.Unstructured)
	return u
}

func (l *liveObjects) Labelled(gvk schema.GroupVersionKind) []*unstructured.Unstructured {
	inf, ok := l.informers[gvk]
	if !ok || gvk == namespaceGVK {
		return nil
	}
	items := inf.GetIndexer().List()
	out := make([]*unstructured.Unstructured, 0, len(items))
	for _, it := range items {
		if u, ok := it.(*unstructured.Unstructured); ok {
			out = append(out, u)
		}
	}
	return out
}

// relevantChange filters informer updates down to the ones that can mean
// drift: workloads report status many times per rollout, which says
// nothing about their spec.
func relevantChange(oldObj, newObj any) bool {
	o, errO := meta.Accessor(oldObj)
	n, errN := meta.Accessor(newObj)
	if errO != nil || errN != nil {
		return true
	}
	if o.GetGeneration() != 0 || n.GetGeneration() != 0 {
		if o.GetGeneration() != n.GetGeneration() {
			return true
		}
		return !equalMaps(o.GetLabels(), n.GetLabels()) || !equalMaps(o.GetAnnotations(), n.GetAnnotations())
	}
	return o.GetResourceVersion() != n.GetResourceVersion()
}

func equalMaps(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if bv, ok := b[k]; !ok || bv != v {
			return false
		}
	}
	return true
}
