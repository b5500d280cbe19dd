package proxysidecar

import (
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"

	"github.com/meshkeeper/istio-operator/pkg/controllers/podcache"
)

// Which pods the controller sees. It caches only pods that are, or may have
// to be, in the mesh; the API server filters the others out, so the
// cluster's other pods (Jobs, batch work, namespaces without injection)
// cost nothing, however fast they churn:
//
//   - pods with the label service.istio.io/canonical-name, which Istio's
//     injection templates (sidecar and gateway) set on every pod they inject;
//   - pods that opt in by their own labels (sidecar.istio.io/inject=true, or
//     istio.io/rev), wherever they run;
//   - every other pod of a namespace whose labels select the injector of one
//     of the operator's revisions, followed only while they do (a join needs
//     them).
//
// The selectors are disjoint, so each pod is held once. Not seen: a pod
// that carries a sidecar without the canonical-name label (a manifest that
// copied the sidecar but dropped Istio's labels) in a namespace that does
// not select the injector.

// labelCanonicalName is set by Istio's injection templates on every pod they
// inject.
const labelCanonicalName = "service.istio.io/canonical-name"

// podSelectors are the label selectors of the cluster-wide pod informers.
var podSelectors = []string{
	labelCanonicalName,
	"!" + labelCanonicalName + "," + labelSidecarInject + "=true",
	"!" + labelCanonicalName + "," + labelSidecarInject + "!=true," + labelRevision,
}

// namespacePodSelector selects the pods of a selecting namespace that no
// cluster-wide informer holds.
var namespacePodSelector = "!" + labelCanonicalName + "," + labelSidecarInject + "!=true,!" + labelRevision

// podIndex is what the controller reads of its pod cache: a podcache.Cache,
// or a plain indexer in unit tests.
type podIndex interface {
	ByIndex(indexName, indexedValue string) ([]any, error)
}

// newPodCache builds the pod cache the controller reads.
func newPodCache(client kubernetes.Interface) *podcache.Cache {
	return podcache.New(podcache.Config{
		Client:            client,
		Selectors:         podSelectors,
		NamespaceSelector: namespacePodSelector,
		Transform:         trimPod,
		Indexers:          cache.Indexers{ownerIndex: indexByOwner, injectedIndex: indexInjected, optInIndex: indexOptIn},
	})
}

// followSelecting makes the pod cache follow exactly the namespaces that
// select an injector of the operator's revisions (the default tag's, or one
// named by its revision, as istio.io/rev=1-31), and reports whether it holds
// all their pods yet. Without a follower (unit tests) every pod is cached.
func (c *Controller) followSelecting(t *target) bool {
	if c.followNamespaces == nil {
		return true
	}
	all, _ := c.namespaces.List(labels.Everything())
	selecting := map[string]bool{}
	for _, ns := range all {
		if t.selectsNamespace(ns) {
			selecting[ns.Name] = true
		}
	}
	return c.followNamespaces(selecting)
}
