package controller

import (
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
)

func TestTransformStripsManagedFieldsAndAppliesTheDeclaredShape(t *testing.T) {
	d := &Deps{}
	if err := d.ShapeCache(&appsv1.Deployment{}, func(o runtime.Object) runtime.Object {
		o.(*appsv1.Deployment).Spec.Template.Spec = corev1.PodSpec{}
		return o
	}); err != nil {
		t.Fatal(err)
	}
	managed := []metav1.ManagedFieldsEntry{{Manager: "kubectl"}}

	dep := &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{ManagedFields: managed}}
	dep.Spec.Template.Spec.Containers = []corev1.Container{{Name: "app"}}
	got, err := d.Transform(dep)
	if err != nil {
		t.Fatal(err)
	}
	if g := got.(*appsv1.Deployment); len(g.ManagedFields) != 0 || len(g.Spec.Template.Spec.Containers) != 0 {
		t.Errorf("Deployment not shaped: %+v", g)
	}

	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{ManagedFields: managed}, Data: map[string]string{"k": "v"}}
	got, _ = d.Transform(cm)
	if c := got.(*corev1.ConfigMap); len(c.ManagedFields) != 0 || c.Data["k"] != "v" {
		t.Errorf("a type without a shape should only lose its managed fields: %+v", c)
	}
}

func TestAShapeIsDeclaredOnce(t *testing.T) {
	d := &Deps{}
	keep := func(o runtime.Object) runtime.Object { return o }
	if err := d.ShapeCache(&corev1.Pod{}, keep); err != nil {
		t.Fatal(err)
	}
	if err := d.ShapeCache(&corev1.Pod{}, keep); err == nil {
		t.Error("a second shape for pods was accepted")
	}
}
