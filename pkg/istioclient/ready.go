package istioclient

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"istio.io/istio/operator/pkg/component"
	appsv1 "k8s.io/api/apps/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/klog/v2"

	"github.com/meshkeeper/istio-operator/pkg/rollout"
)

func isWorkload(kind string) bool {
	return kind == "Deployment" || kind == "DaemonSet" || kind == "CustomResourceDefinition"
}

// waitReady polls the caches (cheap) until every workload of the component
// is ready: Deployments and DaemonSets rolled out, CRDs established.
func (i *Installer) waitReady(ctx context.Context, comp component.Name, objs []Object, progress *progressLog) error {
	timeout := i.WaitTimeout
	if timeout <= 0 {
		timeout = 150 * time.Second
	}
	var pending, waitedFor []string
	start := time.Now()
	err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, timeout, true, func(context.Context) (bool, error) {
		pending = pending[:0]
		for _, o := range objs {
			cur := i.Live.Get(o.GroupVersionKind(), o.GetNamespace(), o.GetName())
			if cur == nil || !Ready(cur) {
				pending = append(pending, o.String())
			}
		}
		if len(pending) > 0 {
			progress.set(comp, "waiting for "+strings.Join(pending, ", "))
			if waitedFor == nil {
				waitedFor = slices.Clone(pending)
			}
		}
		return len(pending) == 0, nil
	})
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return fmt.Errorf("not ready after %s: %s", timeout, strings.Join(pending, ", "))
	}
	if waited := time.Since(start); waited >= slowReady {
		klog.FromContext(ctx).Info("Waited for Istio workloads to become ready", "component", comp,
			"waited", waited.Round(10*time.Millisecond), "workloads", waitedFor)
	}
	return nil
}

// slowReady is a wait for readiness long enough to log: it explains a slow
// install or update.
const slowReady = time.Second

// Ready reports whether a live workload is ready: a Deployment whose
// current generation is rolled out (no pod of an older template left) and
// serving (a replica available), a DaemonSet updated and ready on every
// node, an Established CRD.
//
// A Deployment scaling up is ready: the HorizontalPodAutoscalers of istiod
// and the gateway add replicas whenever they like, and a replica the
// cluster is slow to start, or has no room for, must not hold up an install
// or a configuration change (and with it every sidecar restart).
func Ready(u *unstructured.Unstructured) bool {
	gen := u.GetGeneration()
	observed, _, _ := unstructured.NestedInt64(u.Object, "status", "observedGeneration")
	switch u.GetKind() {
	case "Deployment":
		// The ingress gateway controller judges its Deployment by the same
		// rule, from its typed cache.
		var d appsv1.Deployment
		if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, &d); err != nil {
			return false
		}
		return rollout.OfDeployment(&d).Current
	case "DaemonSet":
		desired, _, _ := unstructured.NestedInt64(u.Object, "status", "desiredNumberScheduled")
		updated, _, _ := unstructured.NestedInt64(u.Object, "status", "updatedNumberScheduled")
		ready, _, _ := unstructured.NestedInt64(u.Object, "status", "numberReady")
		return observed >= gen && updated == desired && ready == desired
	case "CustomResourceDefinition":
		conds, _, _ := unstructured.NestedSlice(u.Object, "status", "conditions")
		for _, c := range conds {
			m, _ := c.(map[string]any)
			if m["type"] == "Established" && m["status"] == "True" {
				return true
			}
		}
		return false
	}
	return true
}
