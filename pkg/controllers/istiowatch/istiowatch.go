// Package istiowatch runs informers on Istio's own API kinds in Istio's
// namespace. Those kinds exist only while Istio's CRDs are installed: after
// the operator started, and until an uninstall removes them. So their
// informers cannot be part of the shared factories, which start, and must
// sync, before any worker runs. A controller starts a Watch from its sync
// once the served Istio resource has Installed=True at its current
// generation (the installation controller reports that only after the CRDs
// are established), and stops it as soon as that resource is being deleted.
package istiowatch

import (
	"context"
	"fmt"
	"sync"
	"time"

	istioclientset "istio.io/client-go/pkg/clientset/versioned"
	istioinformers "istio.io/client-go/pkg/informers/externalversions"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/client-go/tools/cache"

	v1alpha2 "github.com/meshkeeper/istio-operator/pkg/apis/operator/v1alpha2"
	"github.com/meshkeeper/istio-operator/pkg/controllers/controller"
	"github.com/meshkeeper/istio-operator/pkg/istioclient"
)

// SyncTimeout bounds how long Start waits for a freshly started informer;
// the caller retries a timeout with backoff.
const SyncTimeout = 30 * time.Second

// Pick chooses one kind's informer and lister from a factory.
type Pick[L any] func(istioinformers.SharedInformerFactory) (cache.SharedIndexInformer, L)

// Watch is one Istio kind's informer in Istio's namespace, running only
// between Start and Stop.
type Watch[L any] struct {
	client  istioclientset.Interface
	kind    string
	pick    Pick[L]
	handler cache.ResourceEventHandler

	mu      sync.Mutex
	running *running[L]
}

type running[L any] struct {
	factory   istioinformers.SharedInformerFactory // nil when seeded by a test
	lister    L
	hasSynced cache.InformerSynced
	stopCh    chan struct{}
}

// New returns a stopped watch of the kind pick chooses; handler receives
// its events once it runs.
func New[L any](client istioclientset.Interface, kind string, pick Pick[L], handler cache.ResourceEventHandler) *Watch[L] {
	return &Watch[L]{client: client, kind: kind, pick: pick, handler: handler}
}

// Start starts the informer unless it runs, waits until it has synced and
// returns its lister.
func (w *Watch[L]) Start(ctx context.Context) (L, error) {
	w.mu.Lock()
	r := w.running
	if r == nil {
		factory := istioinformers.NewSharedInformerFactoryWithOptions(w.client, 0,
			istioinformers.WithNamespace(istioclient.Namespace),
			istioinformers.WithTransform(controller.StripManagedFields))
		inf, lister := w.pick(factory)
		if _, err := inf.AddEventHandler(w.handler); err != nil {
			w.mu.Unlock()
			var none L
			return none, err
		}
		r = &running[L]{factory: factory, lister: lister, hasSynced: inf.HasSynced, stopCh: make(chan struct{})}
		factory.Start(r.stopCh)
		w.running = r
	}
	w.mu.Unlock()

	if !r.hasSynced() {
		sctx, cancel := context.WithTimeout(ctx, SyncTimeout)
		defer cancel()
		if !cache.WaitForCacheSync(sctx.Done(), r.hasSynced) {
			var none L
			return none, fmt.Errorf("the %s informer of %s did not sync within %s", w.kind, istioclient.Namespace, SyncTimeout)
		}
	}
	return r.lister, nil
}

// Stop stops the informer, if it runs; the next Start begins anew.
func (w *Watch[L]) Stop() {
	w.mu.Lock()
	r := w.running
	w.running = nil
	w.mu.Unlock()
	if r != nil {
		close(r.stopCh)
		if r.factory != nil {
			r.factory.Shutdown()
		}
	}
}

// Running reports whether the informer runs.
func (w *Watch[L]) Running() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.running != nil
}

// Seed stands in for a started and synced informer whose lister is given:
// for unit tests, which have no API server to watch.
func (w *Watch[L]) Seed(lister L) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.running = &running[L]{lister: lister, hasSynced: func() bool { return true }, stopCh: make(chan struct{})}
}

// Needed reports whether any of the Istio resources is installed and not
// being deleted: while none is, Istio's CRDs may be gone, and a watch on
// their kinds must stop.
func Needed(istios []*v1alpha2.Istio) bool {
	for _, i := range istios {
		if i.DeletionTimestamp == nil && meta.IsStatusConditionTrue(i.Status.Conditions, v1alpha2.ConditionInstalled) {
			return true
		}
	}
	return false
}
