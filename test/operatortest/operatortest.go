// Package operatortest runs the operator in the test process against the
// cluster of test/cluster, so that integration tests can reach its
// controllers' queues and its metrics.
package operatortest

import (
	"context"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"k8s.io/klog/v2"

	v1alpha2 "github.com/meshkeeper/istio-operator/pkg/apis/operator/v1alpha2"
	"github.com/meshkeeper/istio-operator/pkg/controllers/controller"
	"github.com/meshkeeper/istio-operator/pkg/controllers/ingressgateway"
	"github.com/meshkeeper/istio-operator/pkg/controllers/installation"
	"github.com/meshkeeper/istio-operator/pkg/controllers/peerauthentication"
	"github.com/meshkeeper/istio-operator/pkg/controllers/proxysidecar"
	"github.com/meshkeeper/istio-operator/pkg/metrics"
	"github.com/meshkeeper/istio-operator/pkg/operator"
	"github.com/meshkeeper/istio-operator/test/cluster"
)

// Operator is a running operator.
type Operator struct {
	Installation       *installation.Controller
	IngressGateway     *ingressgateway.Controller
	PeerAuthentication *peerauthentication.Controller
	ProxySidecar       *proxysidecar.Controller
	stop               func()
}

// Options tune the operator a test starts.
type Options struct {
	// RestartPacing is the default pacing of proxy restarts; unpaced when zero.
	RestartPacing v1alpha2.RestartPacing
	// Configure, when set, adjusts the operator's options last: another
	// kubeconfig (e.g. one that impersonates a ServiceAccount), leader
	// election.
	Configure func(*operator.Options)
}

// Start runs the operator, serving namespace, until the test ends.
func Start(t *testing.T, namespace string) *Operator {
	return StartWith(t, namespace, Options{})
}

// exposed wraps a constructor so that the test can reach the controller.
func exposed[C controller.Controller](build controller.Constructor, into *C) controller.Constructor {
	return func(ctx context.Context, d *controller.Deps) (controller.Controller, error) {
		c, err := build(ctx, d)
		if err == nil {
			*into = c.(C)
		}
		return c, err
	}
}

// StartWith runs the operator with options, serving namespace, until the test ends.
func StartWith(t *testing.T, namespace string, o Options) *Operator {
	t.Helper()
	op := &Operator{}
	ctx, cancel := context.WithCancel(klog.NewContext(context.Background(), klog.Background()))
	done := make(chan error, 1)
	opts := operator.Options{
		Kubeconfig:             cluster.Current().Kubeconfig,
		Namespace:              namespace,
		MetricsBindAddress:     "0",
		HealthProbeBindAddress: "0",
		Workers:                2,
		QPS:                    200,
		Burst:                  400,
		RestartPacing:          o.RestartPacing,
		Controllers: []controller.Constructor{
			exposed(installation.New, &op.Installation),
			exposed(peerauthentication.New, &op.PeerAuthentication),
			exposed(ingressgateway.New, &op.IngressGateway),
			exposed(proxysidecar.New, &op.ProxySidecar),
		},
	}
	if o.Configure != nil {
		o.Configure(&opts)
	}
	go func() { done <- operator.Run(ctx, opts) }()
	op.stop = func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("operator stopped with %v", err)
			}
		case <-time.After(30 * time.Second):
			t.Error("operator did not stop within 30s")
		}
	}
	t.Cleanup(op.Stop)
	cluster.WaitFor(t, 30*time.Second, "operator controllers built", func(context.Context) (bool, error) {
		return op.ProxySidecar != nil, nil
	})
	return op
}

// Stop stops the operator; later calls do nothing.
func (o *Operator) Stop() {
	if o.stop != nil {
		o.stop()
		o.stop = nil
	}
}

// Writes counts the API requests that change something, so far.
func Writes(t *testing.T) float64 {
	return Requests(t, func(verb, _ string) bool {
		switch verb {
		case "create", "post", "update", "patch", "apply", "delete":
			return true
		}
		return false
	})
}

// Requests sums istio_operator_api_requests_total over the series match selects.
func Requests(t *testing.T, match func(verb, resource string) bool) float64 {
	t.Helper()
	var sum float64
	for _, m := range gather(t, "istio_operator_api_requests_total") {
		if match(label(m, "verb"), label(m, "resource")) {
			sum += m.GetCounter().GetValue()
		}
	}
	return sum
}

// Reconciles counts a controller's reconciles, all results.
func Reconciles(t *testing.T, controller string) float64 {
	t.Helper()
	var sum float64
	for _, m := range gather(t, "istio_operator_reconcile_total") {
		if label(m, "controller") == controller {
			sum += m.GetCounter().GetValue()
		}
	}
	return sum
}

func gather(t *testing.T, name string) []*dto.Metric {
	t.Helper()
	var g prometheus.Gatherer = metrics.Registry()
	families, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() == name {
			return f.GetMetric()
		}
	}
	return nil
}

func label(m *dto.Metric, name string) string {
	for _, l := range m.GetLabel() {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}

// WriteCounts are the writes so far by "verb resource", for naming the
// writes a test did not expect.
func WriteCounts(t *testing.T) map[string]float64 {
	t.Helper()
	out := map[string]float64{}
	for _, m := range gather(t, "istio_operator_api_requests_total") {
		switch v := label(m, "verb"); v {
		case "create", "post", "update", "patch", "apply", "delete":
			out[v+" "+label(m, "resource")] = m.GetCounter().GetValue()
		}
	}
	return out
}

// NewWrites lists the writes made since the snapshot before.
func NewWrites(t *testing.T, before map[string]float64) map[string]float64 {
	t.Helper()
	diff := map[string]float64{}
	for k, v := range WriteCounts(t) {
		if d := v - before[k]; d != 0 {
			diff[k] = d
		}
	}
	return diff
}

// Counter sums the counter family name over the series whose labels
// include match.
func Counter(t *testing.T, name string, match map[string]string) float64 {
	t.Helper()
	return sum(t, name, match, func(m *dto.Metric) float64 { return m.GetCounter().GetValue() })
}

// Gauge sums the gauge family name over the series whose labels include
// match.
func Gauge(t *testing.T, name string, match map[string]string) float64 {
	t.Helper()
	return sum(t, name, match, func(m *dto.Metric) float64 { return m.GetGauge().GetValue() })
}

func sum(t *testing.T, name string, match map[string]string, value func(*dto.Metric) float64) float64 {
	t.Helper()
	var total float64
	for _, m := range gather(t, name) {
		ok := true
		for k, v := range match {
			ok = ok && label(m, k) == v
		}
		if ok {
			total += value(m)
		}
	}
	return total
}
