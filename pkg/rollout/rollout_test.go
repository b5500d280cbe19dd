package rollout

import (
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
)

func TestOfDeployment(t *testing.T) {
	d := func(gen, observed int64, replicas, updated, available, total int32) *appsv1.Deployment {
		return &appsv1.Deployment{
			ObjectMeta: metav1.ObjectMeta{Generation: gen},
			Spec:       appsv1.DeploymentSpec{Replicas: ptr.To(replicas)},
			Status: appsv1.DeploymentStatus{ObservedGeneration: observed, UpdatedReplicas: updated,
				AvailableReplicas: available, Replicas: total},
		}
	}
	cases := map[string]struct {
		d             *appsv1.Deployment
		done, current bool
	}{
		"rolled out":                        {d(2, 2, 3, 3, 3, 3), true, true},
		"new template not seen":             {d(3, 2, 3, 3, 3, 3), false, false},
		"old pods still running":            {d(2, 2, 3, 3, 3, 5), false, false},
		"new pods not available":            {d(2, 2, 3, 3, 1, 3), false, true},
		"not all pods updated yet":          {d(2, 2, 3, 1, 3, 3), false, false},
		"scaling up, new replicas starting": {d(3, 3, 5, 5, 3, 5), false, true},
		"nothing available":                 {d(2, 2, 3, 3, 0, 3), false, false},
		"scaled to zero":                    {d(2, 2, 0, 0, 0, 0), true, true},
	}
	for name, tc := range cases {
		got := OfDeployment(tc.d)
		if got.Done != tc.done || got.Current != tc.current || got.Failed != "" {
			t.Errorf("%s: OfDeployment = %+v, want done %v, current %v", name, got, tc.done, tc.current)
		}
	}

	stuck := d(2, 2, 3, 1, 3, 3)
	stuck.Status.Conditions = []appsv1.DeploymentCondition{{Type: appsv1.DeploymentProgressing, Status: "False",
		Reason: "ProgressDeadlineExceeded", Message: `ReplicaSet "gw-1" has timed out progressing.`}}
	if got := OfDeployment(stuck); got.Failed == "" {
		t.Error("a stuck rollout was not reported")
	}
}

func TestOfStatefulSet(t *testing.T) {
	s := func(current, update string, ready int32) *appsv1.StatefulSet {
		return &appsv1.StatefulSet{
			ObjectMeta: metav1.ObjectMeta{Generation: 4},
			Spec:       appsv1.StatefulSetSpec{Replicas: ptr.To[int32](2)},
			Status: appsv1.StatefulSetStatus{ObservedGeneration: 4, CurrentRevision: current, UpdateRevision: update,
				ReadyReplicas: ready, Replicas: 2, UpdatedReplicas: ready},
		}
	}
	if !OfStatefulSet(s("r2", "r2", 2)).Done {
		t.Error("a rolled out StatefulSet counted as rolling")
	}
	if OfStatefulSet(s("r1", "r2", 2)).Done {
		t.Error("a StatefulSet between revisions counted as rolled out")
	}
	if OfStatefulSet(s("r2", "r2", 1)).Done {
		t.Error("a StatefulSet with an unready replica counted as rolled out")
	}
}

func TestOfDaemonSet(t *testing.T) {
	d := func(observed int64, updated, available int32) *appsv1.DaemonSet {
		return &appsv1.DaemonSet{
			ObjectMeta: metav1.ObjectMeta{Generation: 3},
			Status: appsv1.DaemonSetStatus{ObservedGeneration: observed, DesiredNumberScheduled: 4,
				UpdatedNumberScheduled: updated, NumberAvailable: available},
		}
	}
	if !OfDaemonSet(d(3, 4, 4)).Done {
		t.Error("a rolled out DaemonSet counted as rolling")
	}
	for _, ds := range []*appsv1.DaemonSet{d(2, 4, 4), d(3, 3, 4), d(3, 4, 3)} {
		if OfDaemonSet(ds).Done {
			t.Errorf("DaemonSet %+v counted as rolled out", ds.Status)
		}
	}
}
