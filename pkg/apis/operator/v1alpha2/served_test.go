package v1alpha2

import (
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestServedIsTheOldestThenByName(t *testing.T) {
	at := func(name string, sec int64) *Istio {
		return &Istio{ObjectMeta: metav1.ObjectMeta{Name: name, CreationTimestamp: metav1.NewTime(time.Unix(sec, 0))}}
	}
	if got := Served(nil); got != nil {
		t.Fatalf("Served(nil) = %s", got.Name)
	}
	istios := []*Istio{at("young", 20), at("b", 10), at("a", 10)}
	if got := Served(istios); got.Name != "a" {
		t.Errorf("served %s, want a: the oldest, ties broken by name", got.Name)
	}
	if istios[0].Name != "young" {
		t.Error("Served reordered its argument")
	}
}
