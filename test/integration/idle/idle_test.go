// Package idle tests that a steady state costs no writes: with workloads
// the operator reports blocked, five idle minutes write the Istio resource
// not once, counted per field manager from the API server's audit log.
package idle

import (
	"context"
	"fmt"
	"net/url"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	v1alpha2 "github.com/meshkeeper/istio-operator/pkg/apis/operator/v1alpha2"
	"github.com/meshkeeper/istio-operator/test/cluster"
	"github.com/meshkeeper/istio-operator/test/operatortest"
)

// auditPolicy logs every write of an Istio resource with its request
// body, so a failure shows what was written.
const auditPolicy = `apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: ["RequestReceived"]
rules:
- level: Request
  verbs: ["create", "update", "patch", "delete"]
  resources:
  - group: operator.kyma-project.io
    resources: ["istios", "istios/status"]
- level: None
`

const (
	oldProxy  = "docker.io/istio/proxyv2:1.30.2"
	workloads = 20
	// idle is how long the steady state is watched: five rounds of the
	// proxy sidecar controller's re-check of blocked workloads.
	idle = 5 * time.Minute
)

func TestMain(m *testing.M) {
	cluster.Main(m, cluster.Options{Nodes: 2, AuditPolicy: auditPolicy})
}

// TestBlockedWorkloadsIdleWritesNothing: once the workloads are reported
// blocked, nothing changes, and nothing is written: no status write and no
// conflict in five minutes.
func TestBlockedWorkloadsIdleWritesNothing(t *testing.T) {
	cluster.InstallIstioCRD(t)
	cs := cluster.Current().Clientset()
	opNS := cluster.Namespace(t, nil)
	// Deployments whose pod templates pin an older proxy, as a manifest
	// copied from an injected pod does: the injector leaves such pods
	// alone, so a restart cannot update them and each is reported blocked.
	// The namespace is not labelled for injection: istiod does not run on
	// this cluster, and its webhook would refuse the restarted pods.
	mesh := cluster.Namespace(t, nil)
	for i := range workloads {
		d := cluster.NewDeployment(fmt.Sprintf("pinned-%02d", i), 2)
		cluster.AsInjected(&d.Spec.Template.ObjectMeta, &d.Spec.Template.Spec, oldProxy)
		if _, err := cs.AppsV1().Deployments(mesh).Create(t.Context(), d, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}

	operatortest.Start(t, opNS)
	t.Cleanup(func() { operatortest.WaitUninstalled(t, 2*time.Minute) })
	operatortest.CreateIstio(t, opNS, "default", v1alpha2.IstioSpec{})
	t.Cleanup(func() { operatortest.DeleteIstio(t, 2*time.Minute, opNS, "default") })

	// Every workload restarted once, its rollout finished and reported
	// blocked, and the summary says so. Until the rollouts finish, pods
	// still come and go, and the condition rightly names new ones.
	cluster.WaitFor(t, 5*time.Minute, "every pinned workload rolled out and reported blocked", func(ctx context.Context) (bool, error) {
		if err := rolledOut(ctx, mesh); err != nil {
			return false, err
		}
		istio, err := operatortest.Client(t).OperatorV1alpha2().Istios(opNS).Get(ctx, "default", metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		c := meta.FindStatusCondition(istio.Status.Conditions, v1alpha2.ConditionProxySidecarRestartSucceeded)
		if c == nil || c.Reason != v1alpha2.ReasonProxySidecarRestartPartiallySucceeded || c.ObservedGeneration != istio.Generation {
			return false, fmt.Errorf("condition %+v", c)
		}
		if blocked := operatortest.Gauge(t, "istio_operator_proxy_workloads", map[string]string{"state": "blocked"}); blocked != workloads {
			return false, fmt.Errorf("%v workloads blocked (condition %q)", blocked, c.Message)
		}
		// The summary has caught up: Ready quotes the condition.
		ready := meta.FindStatusCondition(istio.Status.Conditions, v1alpha2.ConditionReady)
		// Customer workloads: a Warning.
		if istio.Status.State != v1alpha2.StateWarning || ready == nil || !strings.Contains(ready.Message, c.Message) {
			return false, fmt.Errorf("state %s, Ready %+v", istio.Status.State, ready)
		}
		return true, nil
	})
	conflictsBefore := operatortest.Counter(t, "rest_client_requests_total", map[string]string{"code": "409"})
	start := time.Now()
	t.Logf("steady state reached; watching %v", idle)

	// Not a sleep: the window is the measurement.
	timer := time.NewTimer(idle)
	select {
	case <-timer.C:
	case <-t.Context().Done():
		t.Fatal("cancelled")
	}
	end := time.Now()

	writes, bodies := writesBetween(t, start, end)
	conflicts := operatortest.Counter(t, "rest_client_requests_total", map[string]string{"code": "409"}) - conflictsBefore
	t.Logf("in %v idle: writes by field manager %v, %v conflicts", end.Sub(start).Round(time.Second), writes, conflicts)
	if len(writes) > 0 {
		t.Errorf("%v idle with blocked workloads cost writes of the Istio resource: %v", idle, writes)
		for _, b := range bodies {
			t.Log(b)
		}
	}
	if conflicts > 0 {
		t.Errorf("%v idle cost %v conflicts", idle, conflicts)
	}
}

// rolledOut says why the Deployments in the namespace are still rolling
// out, or nil when every one has exactly its replicas, all updated and
// ready, and no pod is terminating.
func rolledOut(ctx context.Context, namespace string) error {
	cs := cluster.Current().Clientset()
	deployments, err := cs.AppsV1().Deployments(namespace).List(ctx, metav1.ListOptions{})
	if err != nil {
		return err
	}
	for _, d := range deployments.Items {
		st := d.Status
		if st.ObservedGeneration != d.Generation || st.Replicas != *d.Spec.Replicas ||
			st.UpdatedReplicas != st.Replicas || st.ReadyReplicas != st.Replicas {
			return fmt.Errorf("deployment %s rolling out: %+v", d.Name, st)
		}
	}
	pods, err := cs.CoreV1().Pods(namespace).List(ctx, metav1.ListOptions{})
	if err != nil {
		return err
	}
	for _, p := range pods.Items {
		if p.DeletionTimestamp != nil {
			return fmt.Errorf("pod %s terminating", p.Name)
		}
	}
	return nil
}

// writesBetween counts the API server's writes of Istio resources received
// in [from, to), by field manager (and response code when not 2xx), and
// returns each write with its time and body.
func writesBetween(t *testing.T, from, to time.Time) (counts map[string]int, bodies []string) {
	t.Helper()
	counts = map[string]int{}
	cluster.Current().AuditEvents(t, func(_ int, ev *cluster.AuditEvent) {
		at := ev.RequestReceivedTimestamp.Time
		if ev.ObjectRef == nil || at.Before(from) || !at.Before(to) {
			return
		}
		key := ev.Verb + " " + ev.ObjectRef.Resource
		if ev.ObjectRef.Subresource != "" {
			key += "/" + ev.ObjectRef.Subresource
		}
		if u, err := url.Parse(ev.RequestURI); err == nil && u.Query().Get("fieldManager") != "" {
			key += " as " + u.Query().Get("fieldManager")
		}
		if ev.ResponseStatus != nil && ev.ResponseStatus.Code >= 300 {
			key += fmt.Sprintf(" (%d)", ev.ResponseStatus.Code)
		}
		counts[key]++
		bodies = append(bodies, fmt.Sprintf("%s %s: %s", at.Format(time.RFC3339Nano), key, ev.RequestObject))
	})
	return counts, bodies
}
