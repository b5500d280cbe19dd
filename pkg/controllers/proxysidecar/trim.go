package proxysidecar

import (
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/meshkeeper/istio-operator/pkg/istioclient"
)

// The pod and ReplicaSet caches hold only what the controller reads, so that
// tens of thousands of pods stay cheap: identity, owner, the annotations
// below, the injected containers and readiness.

// keptPodAnnotations are the pod annotations the controller reads.
var keptPodAnnotations = []string{
	annotationSidecarStatus, annotationProxyImage,
	annotationProxyCPU, annotationProxyCPULimit, annotationProxyMemory, annotationProxyMemoryLimit,
	istioclient.ProxyConfigAnnotation,
}

// trimPod is the pod informer's transform.
func trimPod(obj any) (any, error) {
	pod, ok := obj.(*corev1.Pod)
	if !ok {
		return obj, nil
	}
	out := &corev1.Pod{ObjectMeta: trimMeta(&pod.ObjectMeta, keptPodAnnotations)}
	if _, injected := pod.Annotations[annotationSidecarStatus]; injected {
		// The status annotation is a JSON document; only its presence counts.
		out.Annotations[annotationSidecarStatus] = ""
		for _, c := range pod.Spec.Containers {
			if c.Name == proxyContainer {
				out.Spec.Containers = append(out.Spec.Containers, trimContainer(&c))
			}
		}
		for _, c := range pod.Spec.InitContainers {
			switch c.Name {
			case proxyContainer, initContainer, validationContainer:
				out.Spec.InitContainers = append(out.Spec.InitContainers, trimContainer(&c))
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

func trimContainer(c *corev1.Container) corev1.Container {
	return corev1.Container{Name: c.Name, Image: c.Image, Resources: c.Resources, RestartPolicy: c.RestartPolicy}
}

// trimReplicaSet is the ReplicaSet informer's transform: owner and replica
// counts, no template.
func trimReplicaSet(obj any) (any, error) {
	rs, ok := obj.(*appsv1.ReplicaSet)
	if !ok {
		return obj, nil
	}
	return &appsv1.ReplicaSet{
		ObjectMeta: trimMeta(&rs.ObjectMeta, []string{AnnotationRestartedFor, AnnotationRestartedAt}),
		Spec:       appsv1.ReplicaSetSpec{Replicas: rs.Spec.Replicas},
		Status:     appsv1.ReplicaSetStatus{Replicas: rs.Status.Replicas, ReadyReplicas: rs.Status.ReadyReplicas},
	}, nil
}

func trimMeta(m *metav1.ObjectMeta, annotations []string) metav1.ObjectMeta {
	out := metav1.ObjectMeta{
		Name: m.Name, Namespace: m.Namespace, UID: m.UID, ResourceVersion: m.ResourceVersion,
		Generation: m.Generation, CreationTimestamp: m.CreationTimestamp, DeletionTimestamp: m.DeletionTimestamp,
		OwnerReferences: m.OwnerReferences,
		Annotations:     map[string]string{},
	}
	for _, a := range annotations {
		if v, ok := m.Annotations[a]; ok {
			out.Annotations[a] = v
		}
	}
	return out
}
