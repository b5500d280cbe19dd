// Package podcache caches the pods a controller may have to decide about,
// and no others. A cluster-wide pod informer receives, decodes and keeps
// every pod of the cluster, so its cost follows the cluster's churn (Jobs,
// batch work, namespaces that have nothing to do with the controller). A
// Cache is instead a union of label-selected informers: the API server
// filters, and the other pods never reach the process.
//
// Two kinds of informer make up a Cache: cluster-wide ones, one per label
// selector, running for the life of the cache; and namespaced ones, one per
// followed namespace with a common label selector, started and stopped as
// the set of followed namespaces changes (Follow). The selectors should be
// disjoint, so that a pod is held once; a pod seen by two informers for a
// moment (its labels just changed) is returned once.
package podcache

import (
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	coreinformers "k8s.io/client-go/informers/core/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	"k8s.io/klog/v2"
)

// Config says which pods a Cache holds and how.
type Config struct {
	Client kubernetes.Interface
	// Selectors are the label selectors of the cluster-wide informers.
	Selectors []string
	// NamespaceSelector is the label selector of the informer of each
	// followed namespace.
	NamespaceSelector string
	// Transform shapes each pod before it is stored.
	Transform cache.TransformFunc
	// Indexers are added to every informer, beside the namespace index.
	Indexers cache.Indexers
	Resync   time.Duration
}

// Cache is the union of the informers. It is built stopped; Start runs it.
type Cache struct {
	cfg      Config
	global   []cache.SharedIndexInformer
	handlers []cache.ResourceEventHandler

	mu      sync.RWMutex
	stop    <-chan struct{} // set by Start
	follows map[string]*namespaced
}

// namespaced is the informer of one followed namespace.
type namespaced struct {
	informer cache.SharedIndexInformer
	stop     chan struct{}
}

// New builds a Cache; its cluster-wide informers exist at once, so that
// handlers can be added before Start.
func New(cfg Config) *Cache {
	c := &Cache{cfg: cfg, follows: map[string]*namespaced{}}
	for _, sel := range cfg.Selectors {
		c.global = append(c.global, c.informer(metav1.NamespaceAll, sel))
	}
	return c
}

func (c *Cache) informer(namespace, selector string) cache.SharedIndexInformer {
	indexers := cache.Indexers{cache.NamespaceIndex: cache.MetaNamespaceIndexFunc}
	for name, f := range c.cfg.Indexers {
		indexers[name] = f
	}
	inf := coreinformers.NewFilteredPodInformer(c.cfg.Client, namespace, c.cfg.Resync, indexers,
		func(o *metav1.ListOptions) { o.LabelSelector = selector })
	if c.cfg.Transform != nil {
		// Cannot fail: the informer has not started.
		_ = inf.SetTransform(c.cfg.Transform)
	}
	return inf
}

// AddEventHandler adds h to every informer, those of namespaces followed
// later included. Call it before Start.
func (c *Cache) AddEventHandler(h cache.ResourceEventHandler) error {
	for _, inf := range c.global {
		if _, err := inf.AddEventHandler(h); err != nil {
			return err
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.handlers = append(c.handlers, h)
	return nil
}

// Start runs the cluster-wide informers, and those of the namespaces
// followed already, until stop is closed.
func (c *Cache) Start(stop <-chan struct{}) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.stop = stop
	for _, inf := range c.global {
		go inf.Run(stop)
	}
	for _, n := range c.follows {
		c.run(n)
	}
}

// WaitForCacheSync waits until the cluster-wide informers have synced.
func (c *Cache) WaitForCacheSync(stop <-chan struct{}) bool {
	synced := make([]cache.InformerSynced, len(c.global))
	for i, inf := range c.global {
		synced[i] = inf.HasSynced
	}
	return cache.WaitForCacheSync(stop, synced...)
}

// Follow makes the followed namespaces exactly namespaces: it starts the
// informers of those not followed yet and stops the others. It reports
// whether the informers of all of them have synced; until they have, the
// cache may lack pods of those namespaces.
func (c *Cache) Follow(namespaces map[string]bool) (synced bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for ns, n := range c.follows {
		if !namespaces[ns] {
			if n.stop != nil {
				close(n.stop)
			}
			delete(c.follows, ns)
			klog.V(2).InfoS("Stopped following the pods of a namespace", "namespace", ns)
		}
	}
	synced = true
	for ns := range namespaces {
		n, ok := c.follows[ns]
		if !ok {
			n = &namespaced{informer: c.informer(ns, c.cfg.NamespaceSelector)}
			for _, h := range c.handlers {
				if _, err := n.informer.AddEventHandler(h); err != nil {
					// Only a stopped informer refuses a handler; this one
					// has not started.
					panic(err)
				}
			}
			c.follows[ns] = n
			c.run(n)
			klog.V(2).InfoS("Following the pods of a namespace", "namespace", ns)
		}
		synced = synced && n.informer.HasSynced()
	}
	return synced
}

// run starts a namespace's informer once the cache runs. Called with mu
// held.
func (c *Cache) run(n *namespaced) {
	if c.stop == nil || n.stop != nil {
		return
	}
	n.stop = make(chan struct{})
	go n.informer.Run(mergeStop(c.stop, n.stop))
}

// mergeStop closes when either channel does.
func mergeStop(a, b <-chan struct{}) <-chan struct{} {
	out := make(chan struct{})
	go func() {
		defer close(out)
		select {
		case <-a:
		case <-b:
		}
	}()
	return out
}

// Followed are the namespaces followed now.
func (c *Cache) Followed() []string {
	c.mu.RLock()
	defer c.mu.RUnlock()
	out := make([]string, 0, len(c.follows))
	for ns := range c.follows {
		out = append(out, ns)
	}
	return out
}

// Size is the number of pods held and of namespaces followed.
func (c *Cache) Size() (pods, namespaces int) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	for _, inf := range c.global {
		pods += len(inf.GetStore().ListKeys())
	}
	for _, n := range c.follows {
		pods += len(n.informer.GetStore().ListKeys())
	}
	return pods, len(c.follows)
}

// ByIndex returns the pods of every informer whose index named indexName
// has indexedValue, each pod once. Its signature is cache.Indexer's, so
// that a controller can be tested with a plain indexer.
func (c *Cache) ByIndex(indexName, indexedValue string) ([]any, error) {
	c.mu.RLock()
	informers := make([]cache.SharedIndexInformer, 0, len(c.global)+len(c.follows))
	informers = append(informers, c.global...)
	if indexName == cache.NamespaceIndex {
		if n, ok := c.follows[indexedValue]; ok {
			informers = append(informers, n.informer)
		}
	} else {
		for _, n := range c.follows {
			informers = append(informers, n.informer)
		}
	}
	c.mu.RUnlock()

	var out []any
	sources := 0
	for _, inf := range informers {
		objs, err := inf.GetIndexer().ByIndex(indexName, indexedValue)
		if err != nil {
			return nil, err
		}
		if len(objs) > 0 {
			sources++
			out = append(out, objs...)
		}
	}
	if sources < 2 {
		return out, nil
	}
	return unique(out), nil
}

// unique drops the second and later pods of the same name.
func unique(objs []any) []any {
	seen := make(map[cache.ObjectName]bool, len(objs))
	out := objs[:0]
	for _, o := range objs {
		pod, ok := o.(*corev1.Pod)
		if !ok {
			continue
		}
		name := cache.MetaObjectToName(pod)
		if seen[name] {
			continue
		}
		seen[name] = true
		out = append(out, o)
	}
	return out
}
