package queue

import (
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/client-go/tools/cache"
)

// KeysFunc maps an informer object to the keys it affects; none is fine.
type KeysFunc[K comparable] func(obj any) []K

// Handler returns informer event handlers that enqueue the keys an object
// maps to. Periodic resyncs that deliver an unchanged object (same
// resourceVersion) are dropped, and delete tombstones are unwrapped, so
// keysFn always sees the object itself.
func (l *Loop[K]) Handler(keysFn KeysFunc[K]) cache.ResourceEventHandler {
	return l.handler(keysFn, l.queue.Add)
}

// HandlerAfter is Handler with the keys enqueued after delay: a burst of
// events (a rollout's pod churn) becomes one reconcile per key and delay.
// An event for a key that is already due within delay, and has not been
// picked up yet, changes nothing: that reconcile reads the cache after the
// event. Skipping it here spares the delaying queue a wake-up per event.
func (l *Loop[K]) HandlerAfter(delay time.Duration, keysFn KeysFunc[K]) cache.ResourceEventHandler {
	return l.handler(keysFn, func(k K) {
		if l.due.schedule(k, time.Now().Add(delay)) { // the workqueue's own clock
			l.queue.AddAfter(k, delay)
		}
	})
}

// dueSet holds the keys HandlerAfter has scheduled and no worker has
// picked up yet, with the time each is due.
type dueSet[K comparable] struct {
	mu   sync.Mutex
	keys map[K]time.Time
}

// schedule reports whether k must be added to the queue to run by at: it
// must unless it is already due by then.
func (d *dueSet[K]) schedule(k K, at time.Time) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	if due, ok := d.keys[k]; ok && !due.After(at) {
		return false
	}
	if d.keys == nil {
		d.keys = map[K]time.Time{}
	}
	d.keys[k] = at
	return true
}

// picked forgets k: a worker took it and reads the cache from now on.
func (d *dueSet[K]) picked(k K) {
	d.mu.Lock()
	delete(d.keys, k)
	d.mu.Unlock()
}

func (l *Loop[K]) handler(keysFn KeysFunc[K], add func(K)) cache.ResourceEventHandler {
	enqueue := func(obj any) {
		for _, k := range keysFn(obj) {
			add(k)
		}
	}
	return cache.ResourceEventHandlerFuncs{
		AddFunc: func(obj any) { enqueue(obj) },
		UpdateFunc: func(oldObj, newObj any) {
			if sameResourceVersion(oldObj, newObj) {
				return
			}
			// An update can move an object between keys (e.g. a label that
			// selects an owner changed): both old and new keys are affected.
			enqueue(oldObj)
			enqueue(newObj)
		},
		DeleteFunc: func(obj any) {
			if t, ok := obj.(cache.DeletedFinalStateUnknown); ok {
				obj = t.Obj
			}
			enqueue(obj)
		},
	}
}

func sameResourceVersion(a, b any) bool {
	ma, errA := meta.Accessor(a)
	mb, errB := meta.Accessor(b)
	if errA != nil || errB != nil {
		return false
	}
	return ma.GetResourceVersion() == mb.GetResourceVersion()
}

// ObjectNameKey is the KeysFunc of a controller keyed by the object itself.
func ObjectNameKey(obj any) []cache.ObjectName {
	name, err := cache.ObjectToName(obj)
	if err != nil {
		return nil
	}
	return []cache.ObjectName{name}
}
