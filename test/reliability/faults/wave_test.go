package faults

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	v1alpha2 "github.com/meshkeeper/istio-operator/pkg/apis/operator/v1alpha2"
	"github.com/meshkeeper/istio-operator/test/operatorproc"
	"github.com/meshkeeper/istio-operator/test/workload"
)

// wave is one change of the sidecar configuration, which the operator
// answers by restarting every workload once.
type wave struct {
	cpu    string // the sidecar CPU request the change asks for
	gen    int64  // the Istio resource's generation with the change
	start  time.Time
	before map[string]deployment
}

// deployment is what the API server says about one workload's Deployment.
type deployment struct {
	generation   int64 // counts the changes of its spec, each restart one
	replicaSets  int   // counts its pod templates, each restart one more
	restartedFor string
}

// snapshot reads every workload's Deployment and ReplicaSets straight from
// the API server.
func (e *env) snapshot(ctx context.Context) (map[string]deployment, error) {
	out := map[string]deployment{}
	opts := metav1.ListOptions{LabelSelector: workloadLabel}
	for _, ns := range e.wl.Namespaces {
		ds, err := e.cs.AppsV1().Deployments(ns).List(ctx, opts)
		if err != nil {
			return nil, err
		}
		for _, d := range ds.Items {
			out[ns+"/"+d.Name] = deployment{generation: d.Generation, restartedFor: d.Spec.Template.Annotations[workload.RestartedForAnnotation]}
		}
		// A ReplicaSet carries its pod template's labels, the workload
		// label among them.
		rss, err := e.cs.AppsV1().ReplicaSets(ns).List(ctx, opts)
		if err != nil {
			return nil, err
		}
		for _, rs := range rss.Items {
			if owner := metav1.GetControllerOf(&rs); owner != nil && owner.Kind == "Deployment" {
				k := ns + "/" + owner.Name
				d := out[k]
				d.replicaSets++
				out[k] = d
			}
		}
	}
	return out, nil
}

// startWave changes the sidecar CPU request to a value no pod has yet.
func (e *env) startWave(t *testing.T) *wave {
	t.Helper()
	current, err := e.wl.ProxyCPU()
	if err != nil {
		t.Fatal(err)
	}
	// One millicore more than the pods have and than any earlier wave
	// asked for (a failed test may leave a wave unfinished): small, so that
	// old and new pods fit on the node together.
	e.lastCPU = max(e.lastCPU, current.MilliValue()) + 1
	cpu := resource.NewMilliQuantity(e.lastCPU, resource.DecimalSI)
	w := &wave{cpu: cpu.String()}
	if w.before, err = e.snapshot(t.Context()); err != nil {
		t.Fatal(err)
	}
	if len(w.before) != workloads {
		t.Fatalf("found %d workload Deployments, want %d", len(w.before), workloads)
	}
	// The wave is counted from the harness's Deployment informer, which
	// outlives each test. After an API server outage it may still be
	// catching up with the previous wave; its late updates would count as
	// this wave's restarts.
	e.waitFor(t, cacheCatchUp, "the harness's Deployment cache to match the API server", func(context.Context) (bool, error) {
		for key, d := range w.before {
			ns, name, _ := strings.Cut(key, "/")
			cached, err := e.wl.Deployments.Deployments(ns).Get(name)
			if err != nil || cached.Spec.Template.Annotations[workload.RestartedForAnnotation] != d.restartedFor {
				return false, nil
			}
		}
		return true, nil
	})
	patch := fmt.Sprintf(`{"spec":{"components":{"proxy":{"k8s":{"resources":{"requests":{"cpu":%q}}}}}}}`, w.cpu)
	w.start = time.Now()
	i, err := e.istios.OperatorV1alpha2().Istios(istioNamespace).Patch(t.Context(), istioName, types.MergePatchType, []byte(patch), metav1.PatchOptions{})
	if err != nil {
		t.Fatalf("changing the sidecar CPU request: %v", err)
	}
	w.gen = i.Generation
	t.Logf("wave: sidecar CPU request %s -> %s (generation %d)", current.String(), w.cpu, w.gen)
	return w
}

// patched counts the workloads whose restart patch the harness has seen
// since the wave began.
func (e *env) patched(w *wave) int {
	return workload.Summarize(e.wl.RestartsSince(w.start)).Patched
}

// waitPatched waits until at least n workloads have been patched.
func (e *env) waitPatched(t *testing.T, w *wave, n int, ops ...*operatorproc.Process) {
	t.Helper()
	e.waitFor(t, waveTimeout, fmt.Sprintf("%d of %d workloads restarted", n, workloads), func(context.Context) (bool, error) {
		return e.patched(w) >= n, nil
	}, ops...)
}

// waitConverged waits until the operator reports the wave done and every
// pod, from the harness's informer, runs the new sidecar with no old pod
// left.
func (e *env) waitConverged(t *testing.T, w *wave, ops ...*operatorproc.Process) {
	t.Helper()
	e.waitFor(t, waveTimeout, "the wave to converge", func(ctx context.Context) (bool, error) {
		return e.converged(ctx, w)
	}, ops...)
}

func (e *env) converged(ctx context.Context, w *wave) (bool, error) {
	st, err := e.wl.PodsAt(w.cpu)
	if err != nil {
		return false, err
	}
	if st.Total != workloads || st.Current != workloads {
		return false, fmt.Errorf("%d pods, %d of them Ready with the new sidecar; e.g. %s", st.Total, st.Current, st.Sample)
	}
	i, err := e.istio(ctx)
	if err != nil {
		return false, err
	}
	for _, typ := range []string{v1alpha2.ConditionProxySidecarRestartSucceeded, v1alpha2.ConditionReady} {
		if err := conditionTrue(i, typ, w.gen); err != nil {
			return false, fmt.Errorf("every pod has the new sidecar, but %w", err)
		}
	}
	return true, nil
}

// checkRestartedOnce checks, from the API server's records, that the wave
// changed every workload's pod template exactly once: one more generation,
// one more ReplicaSet, and the restart annotation of the new proxy, the
// same on every workload.
func (e *env) checkRestartedOnce(t *testing.T, w *wave) {
	t.Helper()
	after, err := e.snapshot(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string][]string{}
	for _, r := range e.wl.RestartsSince(w.start) {
		seen[r.Key] = append(seen[r.Key], r.Hash)
	}
	hashes := map[string]int{}
	var problems []string // one per workload
	for _, key := range e.wl.Names {
		b, a := w.before[key], after[key]
		hashes[a.restartedFor]++
		var p []string
		if n := a.generation - b.generation; n != 1 {
			p = append(p, fmt.Sprintf("pod template changed %d times (generation %d -> %d)", n, b.generation, a.generation))
		}
		if n := a.replicaSets - b.replicaSets; n != 1 {
			p = append(p, fmt.Sprintf("%d new ReplicaSets", n))
		}
		if a.restartedFor == "" || a.restartedFor == b.restartedFor {
			p = append(p, fmt.Sprintf("restarted-for %q, before the wave %q", a.restartedFor, b.restartedFor))
		}
		if len(p) > 0 {
			problems = append(problems, fmt.Sprintf("%s: %s; restart patches seen: %v", key, strings.Join(p, ", "), seen[key]))
		}
	}
	if len(hashes) != 1 {
		t.Errorf("the workloads were restarted for different proxies (restarted-for: workloads): %v", hashes)
	}
	if n := len(problems); n > 0 {
		sort.Strings(problems)
		if n > 20 {
			problems = append(problems[:20], fmt.Sprintf("... and %d more", n-20))
		}
		t.Errorf("%d of %d workloads were not restarted exactly once:\n%s", n, workloads, strings.Join(problems, "\n"))
		return
	}
	t.Logf("every one of %d workloads restarted exactly once (one new generation and ReplicaSet each)", workloads)
}
