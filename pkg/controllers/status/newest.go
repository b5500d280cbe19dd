package status

import (
	"fmt"

	"k8s.io/client-go/tools/cache"

	v1alpha2 "github.com/meshkeeper/istio-operator/pkg/apis/operator/v1alpha2"
)

// Newest returns a copy of the cached resource, or of the writer's own last
// write of it while the informer has not delivered that write yet. A sync
// that follows its own status write closely must compare against what the
// server has, or it writes the same status again.
func (w *Writer) Newest(cached *v1alpha2.Istio) *v1alpha2.Istio {
	key := cache.MetaObjectToName(cached)
	w.mu.Lock()
	defer w.mu.Unlock()
	if last, ok := w.written[key]; ok && last.UID == cached.UID && NewerResourceVersion(last.ResourceVersion, cached.ResourceVersion) {
		return last.DeepCopy()
	}
	delete(w.written, key)
	return cached.DeepCopy()
}

// Forget drops the memory of a resource, e.g. once it is deleted.
func (w *Writer) Forget(key cache.ObjectName) {
	w.mu.Lock()
	defer w.mu.Unlock()
	delete(w.written, key)
}

func (w *Writer) remember(istio *v1alpha2.Istio) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.written[cache.MetaObjectToName(istio)] = istio.DeepCopy()
}

// NewerResourceVersion reports whether resource version a is newer than b,
// comparing them as the API server issues them (etcd revisions, increasing
// numbers). Versions that are not numbers are never newer.
func NewerResourceVersion(a, b string) bool {
	var ia, ib uint64
	if _, err := fmt.Sscan(a, &ia); err != nil {
		return false
	}
	if _, err := fmt.Sscan(b, &ib); err != nil {
		return false
	}
	return ia > ib
}
