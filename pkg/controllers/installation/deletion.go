package installation

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/metadata"
	"k8s.io/client-go/metadata/metadatainformer"
	"k8s.io/client-go/tools/cache"
	"k8s.io/klog/v2"

	v1alpha2 "github.com/meshkeeper/istio-operator/pkg/apis/operator/v1alpha2"
	"github.com/meshkeeper/istio-operator/pkg/controllers/queue"
	"github.com/meshkeeper/istio-operator/pkg/controllers/status"
	"github.com/meshkeeper/istio-operator/pkg/istioclient"
	"github.com/meshkeeper/istio-operator/pkg/message"
)

// listedUserResources is how many user resources a blocked deletion names.
const listedUserResources = 5

var crdGVK = schema.GroupVersionKind{Group: "apiextensions.k8s.io", Version: "v1", Kind: "CustomResourceDefinition"}

// delete handles a deleted Istio resource: blocked while user-created Istio
// resources exist (Blocking), or deleting them first (Cascading); then
// uninstall and let the resource go.
func (c *Controller) delete(ctx context.Context, istio *v1alpha2.Istio) (queue.Result, error) {
	logger := klog.FromContext(ctx)
	if !slices.Contains(istio.Finalizers, Finalizer) {
		return queue.Result{}, nil
	}
	// An installation the version gate kept the operator away from, or one
	// whose version cannot be read, is not the operator's to remove.
	if installed, found, err := istioclient.InstalledVersion(c.live); found {
		why := ""
		if err != nil {
			why = fmt.Sprintf("its version cannot be read: %v", err)
		} else if gate := istioclient.CheckUpgrade(installed, istioclient.MustParseVersion(istioclient.Version)); gate != nil {
			why = gate.Error()
		}
		if why != "" {
			c.recorder.Eventf(istio, corev1.EventTypeNormal, v1alpha2.EventUninstallSkipped,
				"The installed Istio was never managed by this operator (%s); it is left installed.", why)
			return queue.Result{}, c.removeFinalizer(ctx, istio)
		}
	}
	if istio.Uninstalled() {
		return c.awaitSidecarRemoval(ctx, istio)
	}
	found, synced := c.userResources.list(c.crdExists)
	if !synced {
		// The user resource informers start on the first deletion; their
		// sync wakes this key again.
		return queue.Result{RequeueAfter: UserResourcesSyncInterval}, nil
	}
	if len(found) > 0 {
		names := make([]string, len(found))
		for i, r := range found {
			names[i] = r.String()
		}
		listed := message.Named(names, listedUserResources)
		if istio.Spec.EffectiveDeletionStrategy() == v1alpha2.DeletionStrategyBlocking {
			_, err := c.report(ctx, istio, v1alpha2.StateWarning, v1alpha2.ReasonIstioCustomResourcesDangling, fmt.Sprintf(
				"Istio is not uninstalled while %d Istio resources created by users exist: %s. Delete them, or set spec.deletionStrategy to Cascading to delete them with Istio.",
				len(found), listed), c.installedCondition(istio))
			return queue.Result{RequeueAfter: BlockedInterval}, err
		}
		if _, err := c.report(ctx, istio, v1alpha2.StateDeleting, v1alpha2.ReasonIstioUninstalling, fmt.Sprintf(
			"Deleting %d Istio resources created by users (deletion strategy Cascading): %s.", len(found), listed),
			c.installedCondition(istio)); err != nil {
			return queue.Result{}, err
		}
		c.recorder.Eventf(istio, corev1.EventTypeNormal, v1alpha2.EventDeletingUserResources,
			"Deleting %d Istio resources created by users (deletion strategy Cascading): %s.", len(found), listed)
		for _, r := range found {
			if err := c.userResources.delete(ctx, r); err != nil {
				return queue.Result{}, err
			}
		}
		// Their delete events wake this key; the poll is a safety net.
		return queue.Result{RequeueAfter: CascadeInterval}, nil
	}

	istio, err := c.report(ctx, istio, v1alpha2.StateDeleting, v1alpha2.ReasonIstioUninstalling,
		fmt.Sprintf("Uninstalling Istio %s.", istioclient.Version), c.installedCondition(istio))
	if err != nil {
		return queue.Result{}, err
	}
	c.recorder.Event(istio, corev1.EventTypeNormal, v1alpha2.EventUninstallStarted, "Uninstalling Istio: no user-created Istio resources remain.")
	// The uninstall deletes Istio's CRDs: stop watching their kinds first.
	c.userResources.reset()
	start := c.clock.Now()
	kept, err := c.applier.Uninstall(ctx)
	if err != nil {
		c.recorder.Eventf(istio, corev1.EventTypeWarning, v1alpha2.EventUninstallFailed, "Uninstalling Istio failed: %v", err)
		if _, werr := c.report(ctx, istio, v1alpha2.StateError, v1alpha2.ReasonIstioInstallUninstallFailed,
			fmt.Sprintf("Uninstalling Istio failed and is retried: %v.", err), c.installedCondition(istio)); werr != nil {
			logger.Error(werr, "Writing the status")
		}
		return queue.Result{}, err
	}
	c.recorder.Eventf(istio, corev1.EventTypeNormal, v1alpha2.EventUninstallSucceeded, "Uninstalled Istio in %s.", c.clock.Since(start).Round(10*time.Millisecond))
	if kept != "" {
		c.recorder.Eventf(istio, corev1.EventTypeNormal, v1alpha2.EventNamespaceKept, "Namespace %s is kept: %s.", istioclient.Namespace, kept)
	}
	logger.Info("Uninstalled Istio")
	if istio.KeepsSidecars() {
		return queue.Result{}, c.removeFinalizer(ctx, c.latest(istio))
	}
	return c.awaitSidecarRemoval(ctx, c.latest(istio))
}

// awaitSidecarRemoval holds the finalizer after the uninstall until the
// proxy sidecar controller reports that the workloads with sidecars are
// restarted without them, as far as it can restart them; pods keeping a
// sidecar point at a control plane that is gone.
func (c *Controller) awaitSidecarRemoval(ctx context.Context, istio *v1alpha2.Istio) (queue.Result, error) {
	if !istio.KeepsSidecars() {
		switch cond := meta.FindStatusCondition(istio.Status.Conditions, v1alpha2.ConditionProxySidecarRestartSucceeded); {
		case cond != nil && (cond.Reason == v1alpha2.ReasonProxySidecarsRemoved || cond.Reason == v1alpha2.ReasonProxySidecarRemovalIncomplete):
		default:
			_, err := c.report(ctx, istio, v1alpha2.StateDeleting, v1alpha2.ReasonIstioUninstallSucceeded, fmt.Sprintf(
				"Istio is uninstalled; the workloads with sidecars are restarted without them before the resource goes (condition %s). Annotate the resource with %s=true to let it go now.",
				v1alpha2.ConditionProxySidecarRestartSucceeded, v1alpha2.AnnotationKeepSidecars), &status.Condition{
				Type: v1alpha2.ConditionInstalled, Status: metav1.ConditionFalse, Reason: v1alpha2.ReasonIstioUninstallSucceeded, Message: "Istio is uninstalled.",
			})
			return queue.Result{RequeueAfter: SidecarRemovalInterval}, err
		}
	}
	return queue.Result{}, c.removeFinalizer(ctx, c.latest(istio))
}

// installedCondition is the Installed condition as it stands, so that a
// status write during deletion keeps it.
func (c *Controller) installedCondition(istio *v1alpha2.Istio) *status.Condition {
	for _, cond := range istio.Status.Conditions {
		if cond.Type == v1alpha2.ConditionInstalled {
			return &status.Condition{Type: cond.Type, Status: cond.Status, Reason: cond.Reason, Message: cond.Message}
		}
	}
	return nil
}

func (c *Controller) removeFinalizer(ctx context.Context, istio *v1alpha2.Istio) error {
	if !slices.Contains(istio.Finalizers, Finalizer) {
		return nil
	}
	istio = istio.DeepCopy()
	istio.Finalizers = slices.DeleteFunc(istio.Finalizers, func(f string) bool { return f == Finalizer })
	_, err := c.client.OperatorV1alpha2().Istios(istio.Namespace).Update(ctx, istio, metav1.UpdateOptions{FieldManager: status.FieldManagerPrefix + Name})
	if apierrors.IsNotFound(err) {
		return nil
	}
	return err
}

func (c *Controller) crdExists(gvr schema.GroupVersionResource) bool {
	return c.live.Get(crdGVK, "", gvr.Resource+"."+gvr.Group) != nil
}

// userResource is one user-created Istio object.
type userResource struct {
	kind      string
	resource  schema.GroupVersionResource
	namespace string
	name      string
}

func (r userResource) String() string {
	if r.namespace == "" {
		return r.kind + " " + r.name
	}
	return r.kind + " " + r.namespace + "/" + r.name
}

// userResources watches the Istio API kinds users create, metadata only,
// from the first deletion on: an installed operator pays nothing for them
// until they matter, and a blocked deletion is re-checked the moment one
// of them is deleted.
type userResources struct {
	client   metadata.Interface
	factory  metadatainformer.SharedInformerFactory
	onChange func()

	mu        sync.Mutex
	informers map[schema.GroupVersionResource]cache.SharedIndexInformer
	stop      chan struct{}
}

func newUserResources(client metadata.Interface, onChange func()) *userResources {
	return &userResources{
		client:    client,
		factory:   metadatainformer.NewSharedInformerFactory(client, 0),
		onChange:  onChange,
		informers: map[schema.GroupVersionResource]cache.SharedIndexInformer{},
		stop:      make(chan struct{}),
	}
}

// list returns the user-created Istio objects, sorted, and whether every
// watched kind has synced. Kinds whose CRD does not exist are skipped.
// Objects the operator created (labelled managed-by istio-operator) are
// not the user's.
func (u *userResources) list(crdExists func(schema.GroupVersionResource) bool) ([]userResource, bool) {
	u.mu.Lock()
	defer u.mu.Unlock()
	started := false
	for _, r := range istioclient.UserResources {
		if _, ok := u.informers[r.Resource]; ok || !crdExists(r.Resource) {
			continue
		}
		inf := u.factory.ForResource(r.Resource).Informer()
		_, _ = inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
			AddFunc:    func(any) { u.onChange() },
			DeleteFunc: func(any) { u.onChange() },
		})
		u.informers[r.Resource] = inf
		started = true
	}
	if started {
		u.factory.Start(u.stop)
	}
	var out []userResource
	synced := true
	for _, r := range istioclient.UserResources {
		inf, ok := u.informers[r.Resource]
		if !ok {
			continue
		}
		if !inf.HasSynced() {
			synced = false
			continue
		}
		for _, obj := range inf.GetStore().List() {
			m, ok := obj.(*metav1.PartialObjectMetadata)
			if !ok || !istioclient.CreatedByUser(m.Labels) || m.DeletionTimestamp != nil {
				continue
			}
			out = append(out, userResource{kind: r.Kind, resource: r.Resource, namespace: m.Namespace, name: m.Name})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].String() < out[j].String() })
	return out, synced
}

func (u *userResources) delete(ctx context.Context, r userResource) error {
	err := u.client.Resource(r.resource).Namespace(r.namespace).Delete(ctx, r.name, metav1.DeleteOptions{})
	if err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("deleting %s: %w", r, err)
	}
	return nil
}

func (u *userResources) shutdown() {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.stopLocked()
}

// reset stops the informers; the next deletion starts them anew.
func (u *userResources) reset() {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.stopLocked()
	u.factory = metadatainformer.NewSharedInformerFactory(u.client, 0)
	u.informers = map[schema.GroupVersionResource]cache.SharedIndexInformer{}
	u.stop = make(chan struct{})
}

func (u *userResources) stopLocked() {
	select {
	case <-u.stop:
	default:
		close(u.stop)
	}
	u.factory.Shutdown()
}
