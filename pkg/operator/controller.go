package operator

import (
	"context"

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
// registers its informers (by asking the factories for them) and handlers;
// it must not start anything.
type Constructor func(ctx context.Context, d *Deps) (Controller, error)

// Deps are what controllers share: clients, informer factories, the clock
// and event recorders. One informer per resource type serves all of them.
type Deps struct {
	// Namespace is where the operator serves Istio resources.
	Namespace string

	RESTConfig     *rest.Config
	KubeClient     kubernetes.Interface
	OperatorClient versioned.Interface

	KubeInformers     informers.SharedInformerFactory
	OperatorInformers istioinformers.SharedInformerFactory

	Clock clock.WithTicker

	// RestartPacing is the operator-wide default pacing of sidecar proxy
	// restarts; an Istio resource's spec.proxyRestart overrides it.
	RestartPacing v1alpha2.RestartPacing
	// RestartEvents bounds the Events recorded on restarted workloads.
	RestartEvents EventBudget

	broadcaster record.EventBroadcaster
	dynamic     []dynamicinformer.DynamicSharedInformerFactory
}

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

// Recorder returns an event recorder that reports as the named controller.
func (d *Deps) Recorder(controller string) record.EventRecorder {
	return d.broadcaster.NewRecorder(scheme, eventSource(controller))
}
