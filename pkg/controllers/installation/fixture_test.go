package installation

import (
	"context"
	"encoding/json"
	"errors"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic/dynamicinformer"
	dynamicfake "k8s.io/client-go/dynamic/fake"
	corelisters "k8s.io/client-go/listers/core/v1"
	metadatafake "k8s.io/client-go/metadata/fake"
	clienttesting "k8s.io/client-go/testing"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"
	"k8s.io/klog/v2/ktesting"
	clocktesting "k8s.io/utils/clock/testing"

	v1alpha2 "github.com/meshkeeper/istio-operator/pkg/apis/operator/v1alpha2"
	"github.com/meshkeeper/istio-operator/pkg/controllers/controllertest"
	"github.com/meshkeeper/istio-operator/pkg/controllers/status"
	"github.com/meshkeeper/istio-operator/pkg/istioclient"
)

// fixture is the controller with fake clients, caches filled from objects,
// a fake clock and fakes of rendering, planning and applying, in the manner
// of sample-controller: sync is called directly and the recorded actions,
// the status written, the Events and the requeue are asserted.
type fixture struct {
	t        *testing.T
	istios   *controllertest.Istios
	meta     *metadatafake.FakeMetadataClient
	recorder *record.FakeRecorder
	clock    *clocktesting.FakeClock
	renderer *fakeRenderer
	planner  *fakePlanner
	applier  *fakeApplier
	// nodes is the node cache; newFixture puts one large node in it.
	nodes *cache.Indexer
	// releases counts the calls of the controller's release.
	releases int
	c        *Controller
}

func newFixture(t *testing.T, istios ...*v1alpha2.Istio) *fixture {
	t.Helper()
	f := &fixture{
		t:        t,
		istios:   controllertest.NewIstios(t, istios...),
		meta:     metadatafake.NewSimpleMetadataClient(metadatafake.NewTestScheme()),
		recorder: controllertest.Recorder(),
		clock:    controllertest.Clock(),
		renderer: &fakeRenderer{},
		planner:  &fakePlanner{},
		applier:  &fakeApplier{},
	}
	f.istios.BumpResourceVersions()
	dyn := dynamicfake.NewSimpleDynamicClient(runtime.NewScheme())
	// Never started: the tests fill the informers' caches.
	owned := dynamicinformer.NewFilteredDynamicSharedInformerFactory(dyn, 0, "", ownedTweak)
	namespaces := dynamicinformer.NewFilteredDynamicSharedInformerFactory(dyn, 0, "", namespaceTweak)
	f.c = &Controller{
		namespace:     controllertest.Namespace,
		istios:        f.istios.Lister,
		client:        f.istios.Client,
		status:        status.NewWriter(f.istios.Client, Name, f.clock),
		recorder:      f.recorder,
		clock:         f.clock,
		live:          newLiveObjects(dyn, owned, namespaces),
		renderer:      f.renderer,
		planner:       f.planner,
		applier:       f.applier,
		userResources: newUserResources(f.meta, func() {}),
		release:       func() { f.releases++ },
		rendered:      map[string]*istioclient.Rendered{},

		promotionDelay: DefaultProfilePromotionDelay,
	}
	nodes := cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{})
	f.nodes = &nodes
	f.c.nodes = corelisters.NewNodeLister(nodes)
	f.setNodes(node("node-0", "32", "256Gi"))
	t.Cleanup(f.c.userResources.shutdown)
	return f
}

// setNodes replaces the node cache's contents.
func (f *fixture) setNodes(nodes ...*corev1.Node) {
	f.t.Helper()
	objs := make([]any, len(nodes))
	for i, n := range nodes {
		objs[i] = n
	}
	if err := (*f.nodes).Replace(objs, "1"); err != nil {
		f.t.Fatal(err)
	}
}

// node is a node with allocatable CPU and memory.
func node(name, cpu, memory string) *corev1.Node {
	n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name}}
	n.Status.Allocatable = corev1.ResourceList{
		corev1.ResourceCPU:    resource.MustParse(cpu),
		corev1.ResourceMemory: resource.MustParse(memory),
	}
	return n
}

// sync syncs the key and returns the requeue.
func (f *fixture) sync(key cache.ObjectName) (time.Duration, error) {
	f.t.Helper()
	_, ctx := ktesting.NewTestContext(f.t)
	res, err := f.c.sync(ctx, key)
	return res.RequeueAfter, err
}

// live fills the live-object caches, as synced informers would hold them.
func (f *fixture) live(objs ...*unstructured.Unstructured) {
	f.t.Helper()
	for _, o := range objs {
		inf, ok := f.c.live.informers[o.GroupVersionKind()]
		if !ok {
			f.t.Fatalf("no informer for %s", o.GroupVersionKind())
		}
		if err := inf.GetIndexer().Add(o); err != nil {
			f.t.Fatal(err)
		}
	}
}

// syncedInformer is an informer that has synced the objects its store
// holds, without running.
type syncedInformer struct{ cache.SharedIndexInformer }

func (syncedInformer) HasSynced() bool { return true }

// userResources stands in for the synced user resource informers of every
// kind, holding the objects.
func (f *fixture) userResources(objs ...userObject) {
	f.t.Helper()
	u := f.c.userResources
	for _, r := range istioclient.UserResources {
		inf := cache.NewSharedIndexInformer(&cache.ListWatch{}, &metav1.PartialObjectMetadata{}, 0, cache.Indexers{})
		u.informers[r.Resource] = syncedInformer{inf}
	}
	for _, o := range objs {
		inf, ok := u.informers[o.resource]
		if !ok {
			f.t.Fatalf("no informer for %s", o.resource)
		}
		if err := inf.GetStore().Add(o.obj); err != nil {
			f.t.Fatal(err)
		}
	}
}

// userObject is an object of a user resource kind.
type userObject struct {
	resource schema.GroupVersionResource
	obj      *metav1.PartialObjectMetadata
}

func userObj(kind, namespace, name string, labels map[string]string) userObject {
	for _, r := range istioclient.UserResources {
		if r.Kind == kind {
			return userObject{r.Resource, &metav1.PartialObjectMetadata{ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: name, Labels: labels}}}
		}
	}
	panic("not a user resource kind: " + kind)
}

// userDeletes are the deletes of user resources sent.
func (f *fixture) userDeletes() []string {
	var out []string
	for _, a := range f.meta.Actions() {
		if d, ok := a.(clienttesting.DeleteAction); ok {
			out = append(out, d.GetResource().Resource+" "+d.GetNamespace()+"/"+d.GetName())
		}
	}
	return out
}

// get is the resource as the client holds it now.
func (f *fixture) get(key cache.ObjectName) *v1alpha2.Istio {
	f.t.Helper()
	return f.istios.Get(key)
}

func (f *fixture) condition(key cache.ObjectName, typ string) *metav1.Condition {
	f.t.Helper()
	return meta.FindStatusCondition(f.get(key).Status.Conditions, typ)
}

// written are the statuses applied, in order.
func (f *fixture) written() []v1alpha2.IstioStatus {
	f.t.Helper()
	var out []v1alpha2.IstioStatus
	for _, a := range controllertest.Actions(f.istios.Client.Actions(), "patch", "istios", "status") {
		var i v1alpha2.Istio
		if err := json.Unmarshal(a.(clienttesting.PatchAction).GetPatch(), &i); err != nil {
			f.t.Fatal(err)
		}
		out = append(out, i.Status)
	}
	return out
}

// installedMessages are the messages of the Installed conditions applied, in order.
func (f *fixture) installedMessages() []string {
	var out []string
	for _, s := range f.written() {
		if c := meta.FindStatusCondition(s.Conditions, v1alpha2.ConditionInstalled); c != nil {
			out = append(out, c.Message)
		}
	}
	return out
}

// finalizerUpdates are the finalizer lists of the updates of the resource.
func (f *fixture) finalizerUpdates() [][]string {
	var out [][]string
	for _, a := range controllertest.Actions(f.istios.Client.Actions(), "update", "istios", "") {
		out = append(out, a.(clienttesting.UpdateAction).GetObject().(*v1alpha2.Istio).Finalizers)
	}
	return out
}

func (f *fixture) events() []string { return controllertest.Drain(f.recorder) }

// fakeRenderer renders nothing, quickly, and counts its calls.
type fakeRenderer struct {
	err   error
	calls int
	// last is the spec of the last call, as the revision it rendered.
	last   *v1alpha2.IstioSpec
	lastAs istioclient.Revision
}

// renderedHash is the hash of every fake rendering.
const renderedHash = "rendered-hash"

func (r *fakeRenderer) Render(spec *v1alpha2.IstioSpec, as istioclient.Revision) (*istioclient.Rendered, error) {
	r.calls++
	r.last, r.lastAs = spec, as
	if r.err != nil {
		return nil, r.err
	}
	hash := renderedHash
	if as.Name != istioclient.DefaultRevision || as.Version.String() != istioclient.Version {
		hash += "-" + as.Name + "-" + as.Version.String()
	}
	return &istioclient.Rendered{Hash: hash, Version: as.Version.String(), Revision: as.Name}, nil
}

// fakePlanner returns a copy of plan for every rendering.
type fakePlanner struct {
	plan       istioclient.Plan
	missingErr error
	// planned are the renderings planned, checked the plans whose missing
	// objects were looked up.
	planned []*istioclient.Rendered
	checked int
	// kept are the revisions each plan kept; planFor, when set, makes the
	// plans.
	kept    [][]string
	planFor func(r *istioclient.Rendered, tag istioclient.Revision, keep []string) istioclient.Plan
}

func (p *fakePlanner) PlanRevisions(r *istioclient.Rendered, _ istioclient.LiveObjects, tag istioclient.Revision, keep ...string) *istioclient.Plan {
	p.planned = append(p.planned, r)
	p.kept = append(p.kept, keep)
	plan := p.plan
	if p.planFor != nil {
		plan = p.planFor(r, tag, keep)
	}
	plan.TagRevision = tag.Name
	return &plan
}

func (p *fakePlanner) CheckMissing(ctx context.Context, _ *istioclient.Plan, lookup func(context.Context, istioclient.Object) (*unstructured.Unstructured, error)) error {
	p.checked++
	if _, err := lookup(ctx, istioclient.Object{}); err != nil {
		return err
	}
	return p.missingErr
}

// fakeApplier records what it is asked to do.
type fakeApplier struct {
	applyErr error
	// during runs inside Apply with its progress callback.
	during  func(progress func(string))
	applied []*istioclient.Plan

	// uninstalling runs inside Uninstall.
	uninstalling func()
	uninstallErr error
	kept         string
	uninstalls   int
	// lookups counts the API server reads.
	lookups int
	// tags are the revisions the default tag was moved to; moveTag runs
	// inside MoveTag.
	tags    []string
	moveTag func(revision string) error
}

func (a *fakeApplier) MoveTag(_ context.Context, revision, _ string, _ bool) error {
	a.tags = append(a.tags, revision)
	if a.moveTag != nil {
		return a.moveTag(revision)
	}
	return nil
}

func (a *fakeApplier) Apply(_ context.Context, _ *istioclient.Rendered, p *istioclient.Plan, progress func(string)) error {
	a.applied = append(a.applied, p)
	if a.during != nil {
		a.during(progress)
	}
	return a.applyErr
}

func (a *fakeApplier) Uninstall(context.Context) (string, error) {
	a.uninstalls++
	if a.uninstalling != nil {
		a.uninstalling()
	}
	return a.kept, a.uninstallErr
}

func (a *fakeApplier) Lookup(context.Context, istioclient.Object) (*unstructured.Unstructured, error) {
	a.lookups++
	return nil, nil
}

var errBoom = errors.New("boom")

// served is the default resource at a generation with the finalizer: the
// one the controller serves, taken on already.
func served(gen int64, conds ...metav1.Condition) *v1alpha2.Istio {
	i := controllertest.Istio(gen, conds...)
	i.Finalizers = []string{Finalizer}
	return i
}

// deleting is the served resource being deleted.
func deleting(gen int64, conds ...metav1.Condition) *v1alpha2.Istio {
	i := served(gen, conds...)
	i.DeletionTimestamp = &metav1.Time{Time: controllertest.Start.Add(-time.Minute)}
	// The uninstall tests let the resource go right after it;
	// TestDeletionAwaitsSidecarRemoval covers the wait for the sidecars.
	i.Annotations = map[string]string{v1alpha2.AnnotationKeepSidecars: "true"}
	return i
}

// pruning is a plan that is not empty.
func pruning() istioclient.Plan {
	return istioclient.Plan{Prune: []*unstructured.Unstructured{ownedObject("v1", "ConfigMap", istioclient.Namespace, "old")}}
}

// pruneSummary is pruning's summary.
const pruneSummary = "apply nothing; prune 1 objects no longer rendered"

func object(apiVersion, kind, namespace, name string) *unstructured.Unstructured {
	u := &unstructured.Unstructured{}
	u.SetAPIVersion(apiVersion)
	u.SetKind(kind)
	u.SetNamespace(namespace)
	u.SetName(name)
	u.SetResourceVersion("5")
	return u
}

// ownedObject is an object the operator applied.
func ownedObject(apiVersion, kind, namespace, name string) *unstructured.Unstructured {
	u := object(apiVersion, kind, namespace, name)
	u.SetLabels(map[string]string{istioclient.OwnedSelector: "Base"})
	u.SetAnnotations(map[string]string{istioclient.ConfigHashAnnotation: "object-hash"})
	return u
}

// istiod is the operator's istiod running the image tag, installed from
// the rendering with the hash.
func istiod(tag, hash string) *unstructured.Unstructured {
	u := ownedObject("apps/v1", "Deployment", istioclient.Namespace, "istiod")
	u.SetLabels(map[string]string{istioclient.OwnedSelector: "Pilot"})
	u.SetAnnotations(map[string]string{istioclient.ConfigHashAnnotation: "object-hash", istioclient.InstallationHashAnnotation: hash})
	withImage(u, "docker.io/istio/pilot:"+tag)
	return u
}

// foreignIstiod is a control plane another installer left in namespace.
func foreignIstiod(namespace string) *unstructured.Unstructured {
	u := object("apps/v1", "Deployment", namespace, "istiod")
	u.SetLabels(map[string]string{istioclient.OwnedSelector: "Pilot", "app.kubernetes.io/managed-by": "Helm"})
	withImage(u, "docker.io/istio/pilot:1.30.2")
	return u
}

func withImage(u *unstructured.Unstructured, image string) {
	containers := []any{map[string]any{"name": "discovery", "image": image}}
	if err := unstructured.SetNestedSlice(u.Object, containers, "spec", "template", "spec", "containers"); err != nil {
		panic(err)
	}
}

// istioNamespace is istio-system, terminating or not.
func istioNamespace(terminating bool) *unstructured.Unstructured {
	u := object("v1", "Namespace", "", istioclient.Namespace)
	if terminating {
		u.SetDeletionTimestamp(&metav1.Time{Time: controllertest.Start})
	}
	return u
}

// crd is the CRD of a user resource kind.
func crd(kind string) *unstructured.Unstructured {
	r := userObj(kind, "", "", nil).resource
	return ownedObject("apiextensions.k8s.io/v1", "CustomResourceDefinition", "", r.Resource+"."+r.Group)
}
