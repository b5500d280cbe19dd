package status

import (
	"sync"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/resourceversion"
	"k8s.io/client-go/tools/cache"
)

// LastWrites remembers a controller's own last write of each object until
// its informer delivers that write. A sync that follows its own write
// closely must compare against what the server has, not the stale cache, or
// it writes (and reports) the same thing again.
type LastWrites[T interface {
	comparable
	metav1.Object
}] struct {
	mu   sync.Mutex
	last map[cache.ObjectName]T
	copy func(T) T
}

// NewLastWrites returns an empty memory; copy deep-copies an object, so
// that neither the caller nor the memory sees the other's changes.
func NewLastWrites[T interface {
	comparable
	metav1.Object
}](copy func(T) T) *LastWrites[T] {
	return &LastWrites[T]{last: map[cache.ObjectName]T{}, copy: copy}
}

// Wrote remembers obj, as the server returned it from a write.
func (m *LastWrites[T]) Wrote(obj T) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.last[cache.MetaObjectToName(obj)] = m.copy(obj)
}

// Newest returns the remembered write of key while it is newer than the
// cached object (the zero value when the cache has none), and the cached
// object otherwise, when the memory lets go of it. A write to an object of
// another UID (deleted and recreated since) is not newer.
func (m *LastWrites[T]) Newest(key cache.ObjectName, cached T) T {
	var zero T
	m.mu.Lock()
	defer m.mu.Unlock()
	last, ok := m.last[key]
	if !ok {
		return cached
	}
	if cached == zero || (last.GetUID() == cached.GetUID() && newer(last.GetResourceVersion(), cached.GetResourceVersion())) {
		return m.copy(last)
	}
	delete(m.last, key)
	return cached
}

// Seen lets go of the write once the informer delivered it, or anything
// after it; a deleted object is always let go of, as a delete after the
// write must read as missing.
func (m *LastWrites[T]) Seen(obj T, deleted bool) {
	key := cache.MetaObjectToName(obj)
	m.mu.Lock()
	defer m.mu.Unlock()
	if last, ok := m.last[key]; ok && (deleted || !newer(last.GetResourceVersion(), obj.GetResourceVersion())) {
		delete(m.last, key)
	}
}

// Forget lets go of key, e.g. once it is deleted.
func (m *LastWrites[T]) Forget(key cache.ObjectName) {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.last, key)
}

// Reset lets go of everything.
func (m *LastWrites[T]) Reset() {
	m.mu.Lock()
	defer m.mu.Unlock()
	clear(m.last)
}

// newer reports whether resource version a is newer than b. Versions the
// API server did not issue (not comparable) are never newer.
func newer(a, b string) bool {
	c, err := resourceversion.CompareResourceVersion(a, b)
	return err == nil && c > 0
}
