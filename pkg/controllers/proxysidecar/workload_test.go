package proxysidecar

import (
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	appslisters "k8s.io/client-go/listers/apps/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/utils/ptr"
)

func owned(kind, apiVersion, name string) []metav1.OwnerReference {
	return []metav1.OwnerReference{{APIVersion: apiVersion, Kind: kind, Name: name, Controller: ptr.To(true)}}
}

func TestWorkloadOf(t *testing.T) {
	rss := cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{})
	for _, rs := range []*appsv1.ReplicaSet{
		{ObjectMeta: metav1.ObjectMeta{Name: "web-abc", Namespace: "ns", OwnerReferences: owned("Deployment", "apps/v1", "web")}},
		{ObjectMeta: metav1.ObjectMeta{Name: "solo", Namespace: "ns"}},
		{ObjectMeta: metav1.ObjectMeta{Name: "rollout-x", Namespace: "ns", OwnerReferences: owned("Rollout", "argoproj.io/v1alpha1", "rollout")}},
	} {
		if err := rss.Add(rs); err != nil {
			t.Fatal(err)
		}
	}
	lister := appslisters.NewReplicaSetLister(rss)
	cases := []struct {
		owners []metav1.OwnerReference
		want   Key
		ok     bool
	}{
		{owned("ReplicaSet", "apps/v1", "web-abc"), Key{KindDeployment, "ns", "web"}, true},
		{owned("ReplicaSet", "apps/v1", "solo"), Key{KindReplicaSet, "ns", "solo"}, true},
		{owned("ReplicaSet", "apps/v1", "rollout-x"), Key{"Rollout", "ns", "rollout"}, false},
		{owned("StatefulSet", "apps/v1", "db"), Key{KindStatefulSet, "ns", "db"}, true},
		{owned("DaemonSet", "apps/v1", "agent"), Key{KindDaemonSet, "ns", "agent"}, true},
		{owned("ReplicationController", "v1", "old"), Key{KindReplicationController, "ns", "old"}, true},
		{owned("Job", "batch/v1", "batch"), Key{"Job", "ns", "batch"}, false},
		{owned("StatefulSet", "example.com/v1", "lookalike"), Key{KindStatefulSet, "ns", "lookalike"}, false},
		{nil, Key{"Pod", "ns", "p"}, false},
	}
	for _, tc := range cases {
		pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "ns", OwnerReferences: tc.owners}}
		got, ok := workloadOf(pod, lister)
		if got != tc.want || ok != tc.ok {
			t.Errorf("owners %v: workloadOf = %v, %v; want %v, %v", tc.owners, got, ok, tc.want, tc.ok)
		}
	}
}
