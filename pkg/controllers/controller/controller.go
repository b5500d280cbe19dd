// Package controller is what every controller and the process that runs
// them agree on: the Controller interface, the shared dependencies a
// controller is built from, and how the shared informer caches are shaped.
// It imports no controller and no process code, so both sides can import it.
package controller

import (
	"context"
	"fmt"
	"reflect"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/dynamic/dynamicinformer"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/record"
	"k8s.io/utils/clock"

	v1alpha2 "github.com/meshkeeper/istio-operator/pkg/apis/operator/v1alpha2"
	"github.com/meshkeeper/istio-operator/pkg/generated/clientset/versioned"
	istioinformers "github.com/meshkeeper/istio-operator/pkg/generated/informers/externalversions"
)

// Controller is one of the operator's controllers, built after this replica
// became leader and run once the informer caches have synced.
type Controller interface {
	// Name is the controller's name: queue, field manager, logger and metrics label.
	Name() string
	// Run works the controller's queue until ctx is cancelled.
	Run(ctx context.Context, workers int)
}

// Constructor builds a controller from the shared dependencies. It
// registers its informers (by asking the factories for them), their cache
// shapes and handlers; it must not start anything.
type Constructor func(ctx context.Context, d *Deps) (Controller, error)

// Deps are what controllers share: clients, informer factories, the clock
// and event recorders. One informer per resource type serves all of them.
type Deps struct {
	// Namespace is where the operator serves Istio resources. Its workloads
	// are the platform's own.
	Namespace string
	// PlatformNamespaces hold more of the platform's own workloads: restarted
	// first, and a blocked restart among them is an Error, where a customer
	// workload's is a Warning.
	PlatformNamespaces []string

	RESTConfig     *rest.Config
	KubeClient     kubernetes.Interface
	OperatorClient versioned.Interface

	// KubeInformers must be built with Transform as its transform, so that
	// the shapes controllers declare apply.
	KubeInformers     informers.SharedInformerFactory
	OperatorInformers istioinformers.SharedInformerFactory

	Clock clock.WithTicker

	// RestartPacing is the operator-wide default pacing of sidecar proxy
	// restarts; an Istio resource's spec.proxyRestart overrides it.
	RestartPacing v1alpha2.RestartPacing
	// RestartEvents bounds the Events recorded on restarted workloads.
	RestartEvents EventBudget
	// Images are the operator-wide registry and pull secrets of Istio's
	// images; an Istio resource's spec.images overrides them
	// (v1alpha2.IstioSpec.Resolved).
	Images v1alpha2.Images
	// ProfilePromotionDelay is how long the cluster must stay at or above
	// the production thresholds before an installation with the evaluation
	// profile is promoted; 0 means the installation controller's default.
	ProfilePromotionDelay time.Duration

	// Events builds the recorders; nil records nothing.
	Events func(controller string) record.EventRecorder
	// ReleaseMemory is called after work that mapped much of the binary
	// and is not repeated soon (rendering and applying Istio). The process
	// decides what it does; nil does nothing.
	ReleaseMemory func()

	dynamic []dynamicinformer.DynamicSharedInformerFactory
	caches  map[string]Cache
	shapes  map[reflect.Type]Shape
}

// Cache is a set of informers a controller builds itself, rather than
// asking the shared factories (the label-selected pod informers of
// podcache): it starts, and syncs, with them.
type Cache interface {
	Start(stop <-chan struct{})
	WaitForCacheSync(stop <-chan struct{}) bool
}

// RegisterCache adds a controller's own cache, under a name for errors.
func (d *Deps) RegisterCache(name string, c Cache) {
	if d.caches == nil {
		d.caches = map[string]Cache{}
	}
	d.caches[name] = c
}

// Caches are the registered caches by name.
func (d *Deps) Caches() map[string]Cache { return d.caches }

// EventBudget is a token bucket for Events of one kind: Burst at once, then
// PerSecond. Burst 0 means no limit.
type EventBudget struct {
	Burst     int
	PerSecond float64
}

// Register adds a dynamic informer factory whose informers start, and sync,
// with the shared ones, before any controller's workers run.
func (d *Deps) Register(f dynamicinformer.DynamicSharedInformerFactory) {
	d.dynamic = append(d.dynamic, f)
}

// DynamicFactories are the registered dynamic informer factories.
func (d *Deps) DynamicFactories() []dynamicinformer.DynamicSharedInformerFactory {
	return d.dynamic
}

// Recorder returns an event recorder that reports as the named controller.
func (d *Deps) Recorder(controller string) record.EventRecorder {
	if d.Events == nil {
		return &record.FakeRecorder{}
	}
	return d.Events(controller)
}

// Release calls ReleaseMemory, if set.
func (d *Deps) Release() {
	if d.ReleaseMemory != nil {
		d.ReleaseMemory()
	}
}

// Shape trims an object of one type in place before the shared cache
// stores it, keeping only what the controllers read.
type Shape func(obj runtime.Object) runtime.Object

// ShapeCache declares the shape of the shared cache of example's type. A
// type has one shape, declared by the controller that decides what that
// cache keeps; every other reader of the type reads only what it keeps
// (the declaring controller documents that). A second declaration for a
// type is an error, so two controllers cannot silently disagree.
func (d *Deps) ShapeCache(example runtime.Object, shape Shape) error {
	t := reflect.TypeOf(example)
	if d.shapes == nil {
		d.shapes = map[reflect.Type]Shape{}
	}
	if _, ok := d.shapes[t]; ok {
		return fmt.Errorf("the cache shape of %v is declared twice", t)
	}
	d.shapes[t] = shape
	return nil
}

// Transform is the shared informer factory's transform: no managed fields
// (no controller reads them), then the declared shape of the object's type.
// Shapes are declared while the controllers are built, before any informer
// starts, so reading them here needs no lock.
func (d *Deps) Transform(obj any) (any, error) {
	obj, _ = StripManagedFields(obj)
	if o, ok := obj.(runtime.Object); ok {
		if shape, ok := d.shapes[reflect.TypeOf(o)]; ok {
			return shape(o), nil
		}
	}
	return obj, nil
}

// StripManagedFields is an informer transform that drops metadata.managedFields.
func StripManagedFields(obj any) (any, error) {
	if m, err := meta.Accessor(obj); err == nil {
		m.SetManagedFields(nil)
	}
	return obj, nil
}
