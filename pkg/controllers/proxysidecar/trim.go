package proxysidecar

import (
	"strings"
	"sync"
	"unique"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/meshkeeper/istio-operator/pkg/controllers/controller"
	"github.com/meshkeeper/istio-operator/pkg/istioclient"
)

// The pod and ReplicaSet caches hold only what the controller reads, so that
// tens of thousands of pods stay cheap (the pod cache's own transform is
// trimPod, pods.go): identity, owner, the annotations
// below, the revision label, the injected containers and readiness. The values every sidecar
// repeats (image, resources, owner kind, configuration hash) are shared
// between the cached pods rather than held once per pod; cached objects are
// read-only, so sharing is safe.

// keptPodAnnotations are the pod annotations the controller reads.
var keptPodAnnotations = []string{
	annotationSidecarStatus, annotationProxyImage,
	annotationProxyCPU, annotationProxyCPULimit, annotationProxyMemory, annotationProxyMemoryLimit,
	istioclient.ProxyConfigAnnotation, annotationLimitRanger, annotationRevision, labelSidecarInject,
}

// keptPodLabels are the pod labels the injector's selection reads.
var keptPodLabels = []string{labelRevision, labelSidecarInject}

// cacheShapes are the shapes of the shared caches this controller decides:
// ReplicaSets as above, and workloads without their pod template's
// spec. The controllers read a workload's replicas, strategy, status and
// template metadata (the restart annotations, the ingress gateway
// controller its Deployment's labels and annotations), and write workloads
// only with patches, so the containers, volumes and claim templates, often
// the bulk of a workload, are not cached.
var cacheShapes = map[runtime.Object]controller.Shape{
	&appsv1.ReplicaSet{}:            func(o runtime.Object) runtime.Object { r, _ := trimReplicaSet(o); return r.(runtime.Object) },
	&appsv1.Deployment{}:            trimWorkload,
	&appsv1.StatefulSet{}:           trimWorkload,
	&appsv1.DaemonSet{}:             trimWorkload,
	&corev1.ReplicationController{}: trimWorkload,
}

// trimWorkload drops a workload's pod spec (and a StatefulSet's claim
// templates).
func trimWorkload(obj runtime.Object) runtime.Object {
	switch w := obj.(type) {
	case *appsv1.Deployment:
		w.Spec.Template.Spec = corev1.PodSpec{}
	case *appsv1.StatefulSet:
		w.Spec.Template.Spec = corev1.PodSpec{}
		w.Spec.VolumeClaimTemplates = nil
	case *appsv1.DaemonSet:
		w.Spec.Template.Spec = corev1.PodSpec{}
	case *corev1.ReplicationController:
		if w.Spec.Template != nil {
			w.Spec.Template.Spec = corev1.PodSpec{}
		}
	}
	return obj
}

// trimPod is the pod cache's shape.
func trimPod(obj any) (any, error) {
	pod, ok := obj.(*corev1.Pod)
	if !ok {
		return obj, nil
	}
	out := &corev1.Pod{ObjectMeta: trimMeta(&pod.ObjectMeta, keptPodAnnotations)}
	for _, l := range keptPodLabels {
		if v, ok := pod.Labels[l]; ok {
			if out.Labels == nil {
				out.Labels = map[string]string{}
			}
			out.Labels[l] = intern(v)
		}
	}
	out.Spec.HostNetwork = pod.Spec.HostNetwork
	if _, injected := pod.Annotations[annotationSidecarStatus]; injected {
		// The status annotation is a JSON document; only its presence counts.
		out.Annotations[annotationSidecarStatus] = ""
		for _, c := range pod.Spec.Containers {
			if c.Name == proxyContainer {
				out.Spec.Containers = append(out.Spec.Containers, trimProxy(&c))
			}
		}
		for _, c := range pod.Spec.InitContainers {
			switch c.Name {
			case proxyContainer:
				out.Spec.InitContainers = append(out.Spec.InitContainers, trimProxy(&c))
			case initContainer, validationContainer:
				// Only the name tells the CNI mode.
				out.Spec.InitContainers = append(out.Spec.InitContainers, corev1.Container{Name: intern(c.Name)})
			}
		}
	}
	out.Status.Phase = pod.Status.Phase
	for _, c := range pod.Status.Conditions {
		if c.Type == corev1.PodReady {
			out.Status.Conditions = []corev1.PodCondition{{Type: c.Type, Status: c.Status}}
		}
	}
	return out, nil
}

func trimProxy(c *corev1.Container) corev1.Container {
	out := corev1.Container{Name: intern(c.Name), Image: intern(c.Image), Resources: sharedResources(c.Resources)}
	if c.RestartPolicy != nil {
		policy := *c.RestartPolicy
		out.RestartPolicy = &policy
	}
	return out
}

// intern returns the one shared copy of a string.
func intern(s string) string { return unique.Make(s).Value() }

// maxSharedResources bounds the table of shared resource requirements: one
// entry per distinct proxy size in the mesh, which pod annotations can make
// many.
const maxSharedResources = 1024

var resourceTable = struct {
	sync.Mutex
	byKey map[string]corev1.ResourceRequirements
}{byKey: map[string]corev1.ResourceRequirements{}}

// sharedResources returns the CPU and memory requests and limits, the only
// ones the controller compares, as a value shared by every pod with the
// same ones. Each ResourceList is a map of several hundred bytes.
func sharedResources(r corev1.ResourceRequirements) corev1.ResourceRequirements {
	var b strings.Builder
	for _, list := range []corev1.ResourceList{r.Requests, r.Limits} {
		for _, name := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
			if q, ok := list[name]; ok {
				b.WriteString(q.String())
			}
			b.WriteByte(';')
		}
	}
	key := b.String()
	resourceTable.Lock()
	defer resourceTable.Unlock()
	if shared, ok := resourceTable.byKey[key]; ok {
		return shared
	}
	out := corev1.ResourceRequirements{Requests: cpuAndMemory(r.Requests), Limits: cpuAndMemory(r.Limits)}
	if len(resourceTable.byKey) < maxSharedResources {
		resourceTable.byKey[key] = out
	}
	return out
}

func cpuAndMemory(list corev1.ResourceList) corev1.ResourceList {
	var out corev1.ResourceList
	for _, name := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
		if q, ok := list[name]; ok {
			if out == nil {
				out = corev1.ResourceList{}
			}
			out[name] = q
		}
	}
	return out
}

// trimReplicaSet is the ReplicaSet informer's transform: owner and replica
// counts; of the template only whether it carries a sidecar itself
// (istioctl kube-inject), which judgePods reads.
func trimReplicaSet(obj any) (any, error) {
	rs, ok := obj.(*appsv1.ReplicaSet)
	if !ok {
		return obj, nil
	}
	out := &appsv1.ReplicaSet{
		ObjectMeta: trimMeta(&rs.ObjectMeta, []string{AnnotationRestartedFor, AnnotationRestartedAt}),
		Spec:       appsv1.ReplicaSetSpec{Replicas: rs.Spec.Replicas},
		Status:     appsv1.ReplicaSetStatus{Replicas: rs.Status.Replicas, ReadyReplicas: rs.Status.ReadyReplicas},
	}
	if _, ok := rs.Spec.Template.Annotations[annotationSidecarStatus]; ok {
		out.Spec.Template.Annotations = map[string]string{annotationSidecarStatus: ""}
	}
	return out, nil
}

func trimMeta(m *metav1.ObjectMeta, annotations []string) metav1.ObjectMeta {
	out := metav1.ObjectMeta{
		Name: m.Name, Namespace: m.Namespace, UID: m.UID, ResourceVersion: m.ResourceVersion,
		Generation: m.Generation, CreationTimestamp: m.CreationTimestamp, DeletionTimestamp: m.DeletionTimestamp,
		OwnerReferences: m.OwnerReferences,
		Annotations:     map[string]string{},
	}
	for i := range out.OwnerReferences {
		ref := &out.OwnerReferences[i]
		ref.APIVersion, ref.Kind = intern(ref.APIVersion), intern(ref.Kind)
	}
	for _, a := range annotations {
		if v, ok := m.Annotations[a]; ok {
			out.Annotations[a] = intern(v)
		}
	}
	return out
}
