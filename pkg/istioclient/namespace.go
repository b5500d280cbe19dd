package istioclient

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"sync"

	authenticationv1 "k8s.io/api/authentication/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/client-go/kubernetes"
	"k8s.io/klog/v2"

	"istio.io/istio/operator/pkg/manifest"

	"github.com/meshkeeper/istio-operator/pkg/message"
)

// NamespaceReaderRole is the ClusterRole (deploy/base/rbac.yaml) that lets
// the operator list what lives in istio-system, Secrets included, before
// it deletes the namespace. The operator binds it in istio-system only,
// when it creates the namespace, so it never reads Secrets elsewhere.
const NamespaceReaderRole = "istio-operator-namespace-reader"

// namespaceReaderBinding is the RoleBinding in istio-system that grants it.
const namespaceReaderBinding = "istio-operator-namespace-reader"

// namespaceKinds are what a user is likely to keep in istio-system: the
// namespace is deleted only when none of these holds anything of theirs.
var namespaceKinds = []schema.GroupVersionResource{
	{Version: "v1", Resource: "configmaps"},
	{Version: "v1", Resource: "secrets"},
	{Version: "v1", Resource: "services"},
	{Version: "v1", Resource: "serviceaccounts"},
	{Version: "v1", Resource: "pods"},
	{Version: "v1", Resource: "persistentvolumeclaims"},
	{Group: "apps", Version: "v1", Resource: "deployments"},
	{Group: "apps", Version: "v1", Resource: "statefulsets"},
	{Group: "apps", Version: "v1", Resource: "daemonsets"},
	{Group: "batch", Version: "v1", Resource: "jobs"},
	{Group: "batch", Version: "v1", Resource: "cronjobs"},
	{Group: "rbac.authorization.k8s.io", Version: "v1", Resource: "roles"},
	{Group: "rbac.authorization.k8s.io", Version: "v1", Resource: "rolebindings"},
	{Group: "policy", Version: "v1", Resource: "poddisruptionbudgets"},
	{Group: "autoscaling", Version: "v2", Resource: "horizontalpodautoscalers"},
	{Group: "networking.k8s.io", Version: "v1", Resource: "networkpolicies"},
}

// runtimeObjects are the objects istiod and Kubernetes create in
// istio-system while Istio runs: Istio's, not a user's.
var runtimeObjects = map[string]bool{
	"configmaps/kube-root-ca.crt":   true, // Kubernetes' root CA bundle, in every namespace
	"configmaps/istio-ca-root-cert": true, // istiod's root certificate, in every namespace
	"configmaps/istio-ca-crl":       true, // istiod's certificate revocation list (PILOT_CRL_CONFIGMAP)
	"secrets/istio-ca-secret":       true, // istiod's self-signed CA
	"serviceaccounts/default":       true, // every namespace's default
	// istiod's leader elections that lock a ConfigMap named after the
	// election (istio.io/istio/pilot/pkg/leaderelection; the per-revision
	// ones lock Leases, which are not a kind users keep here).
	"configmaps/istio-leader":                                 true,
	"configmaps/istio-namespace-controller-election":          true,
	"configmaps/istio-clustertrustbundle-controller-election": true,
	"configmaps/istio-serviceexport-controller-election":      true,
	"configmaps/istio-gateway-status-leader":                  true,
	"configmaps/istio-status-leader":                          true,
	"configmaps/istio-analyze-leader":                         true,
	"configmaps/istio-gateway-deployment":                     true,
	"configmaps/istio-gateway-inferencepool":                  true,
	"configmaps/istio-node-untaint":                           true,
	"configmaps/istio-ip-autoallocate":                        true,
}

// leaderAnnotation marks a ConfigMap used as a leader election lock.
const leaderAnnotation = "control-plane.alpha.kubernetes.io/leader"

// userObjectsIn lists what lives in the namespace besides the operator's
// objects, their dependents and Istio's run-time objects. An uninstall
// reads it once, from the API server.
func (i *Installer) userObjectsIn(ctx context.Context, namespace string) ([]string, error) {
	var out []string
	for _, gvr := range namespaceKinds {
		list, err := i.Dynamic.Resource(gvr).Namespace(namespace).List(ctx, metav1.ListOptions{})
		if err != nil {
			return nil, fmt.Errorf("listing %s in %s: %w", gvr.Resource, namespace, err)
		}
		for _, u := range list.Items {
			if !userObject(gvr.Resource, &u) {
				continue
			}
			out = append(out, u.GetKind()+" "+u.GetName())
		}
	}
	sort.Strings(out)
	return out, nil
}

// userObject reports whether an object in istio-system belongs to
// someone other than the operator and Istio.
func userObject(resource string, u *unstructured.Unstructured) bool {
	switch {
	case Owns(u), u.GetDeletionTimestamp() != nil, len(u.GetOwnerReferences()) > 0:
		return false
	case runtimeObjects[resource+"/"+u.GetName()]:
		return false
	case resource == "configmaps" && u.GetAnnotations()[leaderAnnotation] != "":
		return false
	case u.GetName() == namespaceReaderBinding && u.GetLabels()[ManagedByLabel] == ManagedByValue:
		return false
	}
	return true
}

// removeNamespace deletes istio-system after an uninstall if the operator
// created it and nothing of anyone else's lives there; otherwise it says
// why the namespace stays.
func (i *Installer) removeNamespace(ctx context.Context) (kept string, err error) {
	ns := i.Live.Get(namespaceGVK, "", Namespace)
	if ns == nil || ns.GetDeletionTimestamp() != nil {
		return "", nil
	}
	if !createdNamespace(ns) {
		return fmt.Sprintf("namespace %s was not created by the operator", Namespace), nil
	}
	others, err := i.userObjectsIn(ctx, Namespace)
	switch {
	case err != nil:
		kept = fmt.Sprintf("what lives in namespace %s cannot be read (%v)", Namespace, err)
	case len(others) > 0:
		kept = fmt.Sprintf("namespace %s holds %d objects the operator did not create: %s", Namespace, len(others), message.Named(others, 5))
	default:
		return "", i.delete(ctx, ns)
	}
	// The namespace stays; the operator's rights in it go.
	rb := &unstructured.Unstructured{}
	rb.SetGroupVersionKind(roleBindingGVK)
	rb.SetNamespace(Namespace)
	rb.SetName(namespaceReaderBinding)
	return kept, i.delete(ctx, rb)
}

var (
	namespaceGVK   = schema.GroupVersionKind{Version: "v1", Kind: "Namespace"}
	roleBindingGVK = schema.GroupVersionKind{Group: "rbac.authorization.k8s.io", Version: "v1", Kind: "RoleBinding"}
)

// ensureNamespace creates istio-system, marked as the operator's, unless
// it exists; in a namespace the operator created, it binds
// NamespaceReaderRole to its own ServiceAccount, for the uninstall.
func (i *Installer) ensureNamespace(ctx context.Context) error {
	if ns := i.Live.Get(namespaceGVK, "", Namespace); ns != nil {
		if !createdNamespace(ns) {
			return nil
		}
		return i.bindNamespaceReader(ctx)
	}
	ns := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "v1", "kind": "Namespace",
		"metadata": map[string]any{"name": Namespace, "labels": map[string]any{
			"istio-injection": "disabled", ManagedByLabel: ManagedByValue}},
	}}
	stamp(ns)
	mf, err := manifest.FromObject(ns)
	if err != nil {
		return err
	}
	if err := i.apply(ctx, Object{Manifest: mf}); err != nil {
		return err
	}
	return i.bindNamespaceReader(ctx)
}

// stamp marks an object the operator creates outside a rendering as its own.
func stamp(u *unstructured.Unstructured) {
	ann := u.GetAnnotations()
	if ann == nil {
		ann = map[string]string{}
	}
	ann[ConfigHashAnnotation] = objectHash(Version, u)
	u.SetAnnotations(ann)
}

// bindNamespaceReader grants the operator's ServiceAccount the
// NamespaceReaderRole in istio-system. An operator running as anything
// but a ServiceAccount (a developer's kubeconfig) has its own rights.
func (i *Installer) bindNamespaceReader(ctx context.Context) error {
	if i.Identity == nil {
		return nil
	}
	sa, err := i.Identity.serviceAccount(ctx)
	if err != nil || sa == nil {
		return err
	}
	rb := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
		"metadata": map[string]any{"name": namespaceReaderBinding, "namespace": Namespace,
			"labels": map[string]any{ManagedByLabel: ManagedByValue}},
		"roleRef":  map[string]any{"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": NamespaceReaderRole},
		"subjects": []any{map[string]any{"kind": "ServiceAccount", "namespace": sa.Namespace, "name": sa.Name}},
	}}
	stamp(rb)
	mf, err := manifest.FromObject(rb)
	if err != nil {
		return err
	}
	return i.apply(ctx, Object{Manifest: mf})
}

// serviceAccountRef names a ServiceAccount.
type serviceAccountRef struct{ Namespace, Name string }

// Identity finds out, once, who the operator is: a SelfSubjectReview,
// which every authenticated user may create.
type Identity struct {
	kube kubernetes.Interface

	mu    sync.Mutex
	known bool
	sa    *serviceAccountRef
}

// NewIdentity returns an Identity that asks through kube.
func NewIdentity(kube kubernetes.Interface) *Identity { return &Identity{kube: kube} }

// serviceAccount returns the operator's ServiceAccount, or nil when it
// runs as anything else. A failed review is asked again next time.
func (id *Identity) serviceAccount(ctx context.Context) (*serviceAccountRef, error) {
	id.mu.Lock()
	defer id.mu.Unlock()
	if id.known {
		return id.sa, nil
	}
	review, err := id.kube.AuthenticationV1().SelfSubjectReviews().Create(ctx, &authenticationv1.SelfSubjectReview{}, metav1.CreateOptions{})
	if err != nil {
		return nil, fmt.Errorf("asking the API server who the operator is: %w", err)
	}
	id.known = true
	id.sa = parseServiceAccount(review.Status.UserInfo.Username)
	klog.FromContext(ctx).V(2).Info("Operator identity", "user", review.Status.UserInfo.Username)
	return id.sa, nil
}

// parseServiceAccount reads system:serviceaccount:NAMESPACE:NAME.
func parseServiceAccount(user string) *serviceAccountRef {
	parts := strings.Split(user, ":")
	if len(parts) != 4 || parts[0] != "system" || parts[1] != "serviceaccount" ||
		len(validation.IsDNS1123Label(parts[2])) > 0 || parts[3] == "" {
		return nil
	}
	return &serviceAccountRef{Namespace: parts[2], Name: parts[3]}
}
