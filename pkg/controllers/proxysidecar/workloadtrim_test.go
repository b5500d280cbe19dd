package proxysidecar

import (
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
)

func TestTrimWorkloadKeepsWhatControllersRead(t *testing.T) {
	d := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "d", ManagedFields: []metav1.ManagedFieldsEntry{{Manager: "kubectl"}}},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To[int32](3),
			Paused:   true,
			Strategy: appsv1.DeploymentStrategy{Type: appsv1.RecreateDeploymentStrategyType},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "d"}, Annotations: map[string]string{"restarted": "x"}},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "app", Args: []string{"--long"}}}},
			},
		},
		Status: appsv1.DeploymentStatus{UpdatedReplicas: 2},
	}
	got := trimWorkload(d)
	w := got.(*appsv1.Deployment)
	if len(w.Spec.Template.Spec.Containers) != 0 {
		t.Errorf("containers kept: %+v", w)
	}
	if *w.Spec.Replicas != 3 || !w.Spec.Paused || w.Spec.Strategy.Type != appsv1.RecreateDeploymentStrategyType ||
		w.Spec.Template.Labels["app"] != "d" || w.Spec.Template.Annotations["restarted"] != "x" || w.Status.UpdatedReplicas != 2 {
		t.Errorf("lost what the controllers read: %+v", w)
	}

	s := &appsv1.StatefulSet{Spec: appsv1.StatefulSetSpec{
		UpdateStrategy:       appsv1.StatefulSetUpdateStrategy{Type: appsv1.OnDeleteStatefulSetStrategyType},
		VolumeClaimTemplates: []corev1.PersistentVolumeClaim{{}},
		Template:             corev1.PodTemplateSpec{Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "db"}}}},
	}}
	got = trimWorkload(s)
	ss := got.(*appsv1.StatefulSet)
	if len(ss.Spec.VolumeClaimTemplates)+len(ss.Spec.Template.Spec.Containers) != 0 || ss.Spec.UpdateStrategy.Type != appsv1.OnDeleteStatefulSetStrategyType {
		t.Errorf("StatefulSet after trimming: %+v", ss.Spec)
	}

}
