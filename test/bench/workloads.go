package main

import (
	"context"
	"fmt"
	"time"

	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"

	"github.com/meshkeeper/istio-operator/test/workload"
)

const (
	// workloadLabel marks the benchmark's Deployments and their pods, so the
	// harness's informers see nothing else (Istio's own workloads included).
	workloadLabel = "bench.meshkeeper.io/workload"

	// progressEvery is how often long waits report how far they got.
	progressEvery = 10 * time.Second
)

// restart is one restart patch of one Deployment, as the harness saw it.
type restart = workload.Restart

// workloads are the benchmark's namespaces and Deployments (test/workload),
// with the waits that report progress and time out the benchmark's way.
type workloads struct {
	*workload.Set
	names   []string
	factory informers.SharedInformerFactory
}

func newWorkloads(cs kubernetes.Interface, count, replicas, namespaces int) *workloads {
	s := workload.New(cs, workloadLabel, "bench", count, replicas, namespaces)
	return &workloads{Set: s, names: s.Names}
}

func (w *workloads) startInformers(ctx context.Context) error {
	err := w.StartInformers(ctx)
	w.factory = w.Factory
	return err
}

func (w *workloads) restartsSince(t time.Time) []restart { return w.RestartsSince(t) }

func (w *workloads) createNamespaces(ctx context.Context, timeout time.Duration) error {
	return w.CreateNamespaces(ctx, timeout)
}

func (w *workloads) createDeployments(ctx context.Context) error { return w.CreateDeployments(ctx) }

func (w *workloads) proxyCPU() (resource.Quantity, error) { return w.ProxyCPU() }

// waitPods waits until exactly the expected pods exist (pods being deleted
// aside) and all of them are current for cpu. It returns when the last
// missing current pod became Ready, which precedes the end: the Deployment
// controller scales the old pods down after that.
func (w *workloads) waitPods(ctx context.Context, what, cpu string, timeout time.Duration, alive func() error) (allCurrent time.Time, err error) {
	return w.waitCurrent(ctx, what, func() (workload.PodState, error) { return w.PodsAt(cpu) }, timeout, alive)
}

// waitCurrent is waitPods with what makes a pod current given by count.
func (w *workloads) waitCurrent(ctx context.Context, what string, count func() (workload.PodState, error), timeout time.Duration, alive func() error) (allCurrent time.Time, err error) {
	want := len(w.names) * w.Replicas
	var last workload.PodState
	lastReport := time.Now()
	err = poll(ctx, timeout, 200*time.Millisecond, what, func(context.Context) (bool, error) {
		if err := alive(); err != nil {
			return false, err
		}
		st, err := count()
		if err != nil {
			return false, err
		}
		last = st
		if st.Current >= want && allCurrent.IsZero() {
			allCurrent = time.Now()
		}
		if time.Since(lastReport) >= progressEvery {
			progress("  %d of %d pods current, %d pods in all", st.Current, want, st.Total)
			lastReport = time.Now()
		}
		return st.Total == want && st.Current == want, nil
	})
	if err != nil {
		return allCurrent, fmt.Errorf("%w (%d pods, %d of %d wanted current; e.g. %s)", err, last.Total, last.Current, want, last.Sample)
	}
	return allCurrent, nil
}

// waitRestarts waits until every Deployment has been patched since t.
func (w *workloads) waitRestarts(ctx context.Context, since time.Time, timeout time.Duration, alive func() error) error {
	var patched int
	lastReport := time.Now()
	err := poll(ctx, timeout, 100*time.Millisecond, "every Deployment's restart patch", func(context.Context) (bool, error) {
		if err := alive(); err != nil {
			return false, err
		}
		patched = workload.Summarize(w.restartsSince(since)).Patched
		if time.Since(lastReport) >= progressEvery {
			progress("  %d of %d Deployments patched", patched, len(w.names))
			lastReport = time.Now()
		}
		return patched >= len(w.names), nil
	})
	if err != nil {
		return fmt.Errorf("%w (%d of %d Deployments patched)", err, patched, len(w.names))
	}
	return nil
}
