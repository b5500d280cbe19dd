package operatortest

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	v1alpha2 "github.com/meshkeeper/istio-operator/pkg/apis/operator/v1alpha2"
	"github.com/meshkeeper/istio-operator/pkg/generated/clientset/versioned"
	"github.com/meshkeeper/istio-operator/test/cluster"
)

// Client is a clientset for Istio resources in the current cluster.
func Client(t *testing.T) versioned.Interface {
	t.Helper()
	c, err := versioned.NewForConfig(cluster.Current().Config)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// CreateIstio creates an Istio resource.
func CreateIstio(t *testing.T, namespace, name string, spec v1alpha2.IstioSpec) *v1alpha2.Istio {
	t.Helper()
	i, err := Client(t).OperatorV1alpha2().Istios(namespace).Create(cluster.Context(t), &v1alpha2.Istio{
		ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: name}, Spec: spec,
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return i
}

// WaitForState waits until the resource has the state and the condition
// (when given) has the status and reason, at the current generation.
func WaitForState(t *testing.T, timeout time.Duration, namespace, name string, state v1alpha2.State, condType string, condStatus metav1.ConditionStatus, reason string) *v1alpha2.Istio {
	t.Helper()
	var got *v1alpha2.Istio
	what := fmt.Sprintf("Istio %s/%s state %s", namespace, name, state)
	if condType != "" {
		what += fmt.Sprintf(" with %s=%s (%s)", condType, condStatus, reason)
	}
	cluster.WaitFor(t, timeout, what, func(ctx context.Context) (bool, error) {
		i, err := Client(t).OperatorV1alpha2().Istios(namespace).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		got = i
		if i.Status.State != state || i.Status.ObservedGeneration != i.Generation {
			return false, fmt.Errorf("state %q (%s) at observed generation %d of %d", i.Status.State, i.Status.Description, i.Status.ObservedGeneration, i.Generation)
		}
		if condType == "" {
			return true, nil
		}
		c := meta.FindStatusCondition(i.Status.Conditions, condType)
		if c == nil || c.Status != condStatus || c.Reason != reason || c.ObservedGeneration != i.Generation {
			return false, fmt.Errorf("condition %s is %+v", condType, c)
		}
		return true, nil
	})
	return got
}

// WaitCondition waits until the resource's condition has the reason at the
// current generation and check (when given) accepts it, whatever the state.
func WaitCondition(t *testing.T, timeout time.Duration, namespace, name, condType, reason string, check func(*metav1.Condition) error) *v1alpha2.Istio {
	t.Helper()
	var got *v1alpha2.Istio
	cluster.WaitFor(t, timeout, fmt.Sprintf("Istio %s/%s %s reason %s", namespace, name, condType, reason), func(ctx context.Context) (bool, error) {
		i, err := Client(t).OperatorV1alpha2().Istios(namespace).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		c := meta.FindStatusCondition(i.Status.Conditions, condType)
		if c == nil || c.Reason != reason || c.ObservedGeneration != i.Generation {
			return false, fmt.Errorf("condition %s is %+v", condType, c)
		}
		if check != nil {
			if err := check(c); err != nil {
				return false, err
			}
		}
		got = i
		return true, nil
	})
	return got
}

// DeleteIstio deletes the resource and waits until it is gone.
func DeleteIstio(t *testing.T, timeout time.Duration, namespace, name string) {
	t.Helper()
	err := Client(t).OperatorV1alpha2().Istios(namespace).Delete(cluster.Context(t), name, metav1.DeleteOptions{})
	if err != nil && !apierrors.IsNotFound(err) {
		t.Fatal(err)
	}
	cluster.WaitFor(t, timeout, "Istio "+namespace+"/"+name+" deleted", func(ctx context.Context) (bool, error) {
		_, err := Client(t).OperatorV1alpha2().Istios(namespace).Get(ctx, name, metav1.GetOptions{})
		return apierrors.IsNotFound(err), nil
	})
}

// Image returns the image of a workload's named container, or "".
func Image(t *testing.T, kind, namespace, name, container string) string {
	t.Helper()
	kube := cluster.Current().Clientset()
	var containers []corev1.Container
	switch kind {
	case "Deployment":
		d, err := kube.AppsV1().Deployments(namespace).Get(cluster.Context(t), name, metav1.GetOptions{})
		if err != nil {
			return ""
		}
		containers = d.Spec.Template.Spec.Containers
	case "DaemonSet":
		d, err := kube.AppsV1().DaemonSets(namespace).Get(cluster.Context(t), name, metav1.GetOptions{})
		if err != nil {
			return ""
		}
		containers = d.Spec.Template.Spec.Containers
	}
	for _, c := range containers {
		if c.Name == container {
			return c.Image
		}
	}
	return ""
}

// Events lists the reasons of the Events recorded on the resource.
func Events(t *testing.T, namespace, name string) []string {
	return EventsOn(t, "Istio", namespace, name)
}

// EventsOn lists the reasons of the Events recorded on an object of kind.
func EventsOn(t *testing.T, kind, namespace, name string) []string {
	t.Helper()
	var reasons []string
	for _, e := range eventsOn(t, kind, namespace, name) {
		reasons = append(reasons, e.Reason)
	}
	return reasons
}

func eventsOn(t *testing.T, kind, namespace, name string) []corev1.Event {
	t.Helper()
	list, err := cluster.Current().Clientset().CoreV1().Events(namespace).List(cluster.Context(t), metav1.ListOptions{
		FieldSelector: "involvedObject.kind=" + kind + ",involvedObject.name=" + name,
	})
	if err != nil {
		t.Fatal(err)
	}
	return list.Items
}

// HasEvent reports whether an Event with the reason is recorded within a
// few seconds (Events are sent asynchronously).
func HasEvent(t *testing.T, namespace, name, reason string) bool {
	return HasEventOn(t, "Istio", namespace, name, reason)
}

// HasEventOn is HasEvent for an object of any kind.
func HasEventOn(t *testing.T, kind, namespace, name, reason string) bool {
	return hasEvent(t, kind, namespace, name, reason, "")
}

// HasEventWith is HasEvent for an Event whose message contains text: the
// Event of one particular problem, not an earlier one of the same reason.
func HasEventWith(t *testing.T, namespace, name, reason, text string) bool {
	return hasEvent(t, "Istio", namespace, name, reason, text)
}

func hasEvent(t *testing.T, kind, namespace, name, reason, text string) bool {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		for _, e := range eventsOn(t, kind, namespace, name) {
			if strings.EqualFold(e.Reason, reason) && strings.Contains(e.Message, text) {
				return true
			}
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(200 * time.Millisecond)
	}
}
