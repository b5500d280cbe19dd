package controllertest

import (
	"context"
	"fmt"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/informers"
	kubefake "k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/tools/cache"
	"k8s.io/utils/ptr"
)

// Kube is a fake Kubernetes clientset and the caches of a shared informer
// factory over it, both holding the workloads and pods. The factory is never
// started: Set fills its caches, as its synced informers would. Controllers
// take their listers from Informers, as they do from the operator's shared
// factory.
type Kube struct {
	t         testing.TB
	Client    *kubefake.Clientset
	Informers informers.SharedInformerFactory
}

// NewKube holds the objects (Pods, Namespaces, Deployments, ReplicaSets,
// StatefulSets, DaemonSets, ReplicationControllers) in a fake clientset and
// its caches.
func NewKube(t testing.TB, objs ...runtime.Object) *Kube {
	t.Helper()
	client := kubefake.NewClientset(objs...)
	k := &Kube{t: t, Client: client, Informers: informers.NewSharedInformerFactory(client, 0)}
	for _, o := range objs {
		if err := k.indexer(o).Add(o); err != nil {
			t.Fatal(err)
		}
	}
	return k
}

// indexer is the cache of the object's kind.
func (k *Kube) indexer(obj runtime.Object) cache.Indexer {
	k.t.Helper()
	f := k.Informers
	var inf cache.SharedIndexInformer
	switch obj.(type) {
	case *corev1.Pod:
		inf = f.Core().V1().Pods().Informer()
	case *corev1.Namespace:
		inf = f.Core().V1().Namespaces().Informer()
	case *corev1.ReplicationController:
		inf = f.Core().V1().ReplicationControllers().Informer()
	case *appsv1.Deployment:
		inf = f.Apps().V1().Deployments().Informer()
	case *appsv1.ReplicaSet:
		inf = f.Apps().V1().ReplicaSets().Informer()
	case *appsv1.StatefulSet:
		inf = f.Apps().V1().StatefulSets().Informer()
	case *appsv1.DaemonSet:
		inf = f.Apps().V1().DaemonSets().Informer()
	default:
		k.t.Fatalf("controllertest.Kube holds no %T", obj)
	}
	return inf.GetIndexer()
}

// gvr is the resource of the object's kind, for the tracker.
func gvr(obj runtime.Object) schema.GroupVersionResource {
	switch obj.(type) {
	case *corev1.Pod:
		return corev1.SchemeGroupVersion.WithResource("pods")
	case *corev1.Namespace:
		return corev1.SchemeGroupVersion.WithResource("namespaces")
	case *corev1.ReplicationController:
		return corev1.SchemeGroupVersion.WithResource("replicationcontrollers")
	case *appsv1.Deployment:
		return appsv1.SchemeGroupVersion.WithResource("deployments")
	case *appsv1.ReplicaSet:
		return appsv1.SchemeGroupVersion.WithResource("replicasets")
	case *appsv1.StatefulSet:
		return appsv1.SchemeGroupVersion.WithResource("statefulsets")
	case *appsv1.DaemonSet:
		return appsv1.SchemeGroupVersion.WithResource("daemonsets")
	}
	panic(fmt.Sprintf("controllertest.Kube holds no %T", obj))
}

// Set adds or replaces the object in the client and the cache (a user's
// change, or a workload controller's status update, both delivered).
func (k *Kube) Set(obj runtime.Object) {
	k.t.Helper()
	m, err := meta.Accessor(obj)
	if err != nil {
		k.t.Fatal(err)
	}
	tracker := k.Client.Tracker()
	_, err = tracker.Get(gvr(obj), m.GetNamespace(), m.GetName())
	switch {
	case apierrors.IsNotFound(err):
		err = tracker.Add(obj)
	case err == nil:
		err = tracker.Update(gvr(obj), obj, m.GetNamespace())
	}
	if err != nil {
		k.t.Fatal(err)
	}
	if err := k.indexer(obj).Update(obj); err != nil {
		k.t.Fatal(err)
	}
}

// Delete removes the object from the client and the cache.
func (k *Kube) Delete(obj runtime.Object) {
	k.t.Helper()
	m, err := meta.Accessor(obj)
	if err != nil {
		k.t.Fatal(err)
	}
	if err := k.Client.Tracker().Delete(gvr(obj), m.GetNamespace(), m.GetName()); err != nil && !apierrors.IsNotFound(err) {
		k.t.Fatal(err)
	}
	if err := k.indexer(obj).Delete(obj); err != nil {
		k.t.Fatal(err)
	}
}

// Deployment is the Deployment as the client holds it now.
func (k *Kube) Deployment(namespace, name string) *appsv1.Deployment {
	k.t.Helper()
	d, err := k.Client.AppsV1().Deployments(namespace).Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		k.t.Fatal(err)
	}
	return d
}

// Owned is a controller owner reference, as a workload controller sets it
// on what it creates.
func Owned(kind, apiVersion, name string) []metav1.OwnerReference {
	return []metav1.OwnerReference{{APIVersion: apiVersion, Kind: kind, Name: name, UID: types.UID(name), Controller: ptr.To(true)}}
}

// Deployment is a Deployment at generation 1 whose rollout is complete:
// the Deployment controller observed it, and every one of the replicas runs
// its template and is available.
func Deployment(namespace, name string, replicas int32) *appsv1.Deployment {
	return &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: name, Generation: 1, UID: types.UID(name), ResourceVersion: "1"},
		Spec:       appsv1.DeploymentSpec{Replicas: ptr.To(replicas)},
		Status: appsv1.DeploymentStatus{ObservedGeneration: 1, Replicas: replicas, UpdatedReplicas: replicas,
			ReadyReplicas: replicas, AvailableReplicas: replicas},
	}
}

// Rolling sets the Deployment's status to a rollout in progress: of its
// total pods, updated run the current template and available serve.
func Rolling(d *appsv1.Deployment, updated, available, total int32) *appsv1.Deployment {
	d.Status.UpdatedReplicas, d.Status.AvailableReplicas, d.Status.ReadyReplicas, d.Status.Replicas = updated, available, available, total
	return d
}

// Unobserved makes the Deployment's spec newer than its status: the
// Deployment controller has not seen the latest change yet.
func Unobserved(d *appsv1.Deployment) *appsv1.Deployment {
	d.Generation = d.Status.ObservedGeneration + 1
	return d
}

// ProgressDeadlineExceeded marks the Deployment's rollout stuck, as the
// Deployment controller does.
func ProgressDeadlineExceeded(d *appsv1.Deployment, msg string) *appsv1.Deployment {
	d.Status.Conditions = append(d.Status.Conditions, appsv1.DeploymentCondition{
		Type: appsv1.DeploymentProgressing, Status: corev1.ConditionFalse, Reason: "ProgressDeadlineExceeded", Message: msg,
	})
	return d
}
