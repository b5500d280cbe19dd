package proxysidecar

import (
	"fmt"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	appslisters "k8s.io/client-go/listers/apps/v1"
	"k8s.io/client-go/tools/cache"
)

// Kind is the kind of a queue key.
type Kind string

// The kinds of keys. Summary is the Istio resource: its sync counts the
// whole mesh and writes the condition. The others are workloads.
const (
	KindSummary               Kind = "Istio"
	KindDeployment            Kind = "Deployment"
	KindStatefulSet           Kind = "StatefulSet"
	KindDaemonSet             Kind = "DaemonSet"
	KindReplicaSet            Kind = "ReplicaSet"
	KindReplicationController Kind = "ReplicationController"
)

// Key is one unit of work: a workload, or the summary of an Istio resource.
type Key struct {
	Kind      Kind
	Namespace string
	Name      string
}

// ObjectName is the key's namespace and name.
func (k Key) ObjectName() cache.ObjectName {
	return cache.ObjectName{Namespace: k.Namespace, Name: k.Name}
}

func (k Key) String() string { return fmt.Sprintf("%s %s/%s", k.Kind, k.Namespace, k.Name) }

// ownerIndex indexes pods and ReplicaSets by their controlling owner,
// "Kind/namespace/name".
const ownerIndex = "owner"

func ownerIndexValue(kind, namespace, name string) string { return kind + "/" + namespace + "/" + name }

func indexByOwner(obj any) ([]string, error) {
	m, ok := obj.(metav1.Object)
	if !ok {
		return nil, nil
	}
	ref := metav1.GetControllerOfNoCopy(m)
	if ref == nil {
		return nil, nil
	}
	return []string{ownerIndexValue(ref.Kind, m.GetNamespace(), ref.Name)}, nil
}

// restartable reports whether the operator can restart a workload of kind.
func restartable(k Kind) bool {
	switch k {
	case KindDeployment, KindStatefulSet, KindDaemonSet, KindReplicaSet, KindReplicationController:
		return true
	}
	return false
}

// workloadOf resolves the workload that owns a pod: the Deployment of its
// ReplicaSet, its StatefulSet or DaemonSet, or an owner-less ReplicaSet or
// ReplicationController. ok is false for a pod nothing can restart (no
// owner, a Job, another kind); then the key names the pod's owner or the pod
// itself, for reporting.
func workloadOf(pod *corev1.Pod, replicaSets appslisters.ReplicaSetLister) (key Key, ok bool) {
	ref := metav1.GetControllerOfNoCopy(pod)
	if ref == nil {
		return Key{Kind: "Pod", Namespace: pod.Namespace, Name: pod.Name}, false
	}
	key = Key{Kind: Kind(ref.Kind), Namespace: pod.Namespace, Name: ref.Name}
	if key.Kind == KindReplicaSet {
		rs, err := replicaSets.ReplicaSets(pod.Namespace).Get(ref.Name)
		if err != nil {
			// Not in the cache yet: the ReplicaSet's own key resolves it.
			return key, true
		}
		if up := metav1.GetControllerOfNoCopy(rs); up != nil {
			if up.Kind != string(KindDeployment) {
				return Key{Kind: Kind(up.Kind), Namespace: pod.Namespace, Name: up.Name}, false
			}
			return Key{Kind: KindDeployment, Namespace: pod.Namespace, Name: up.Name}, true
		}
	}
	if !restartable(key.Kind) || ref.APIVersion != apiVersionOf(key.Kind) {
		return key, false
	}
	return key, true
}

func apiVersionOf(k Kind) string {
	if k == KindReplicationController {
		return "v1"
	}
	return appsv1.SchemeGroupVersion.String()
}
