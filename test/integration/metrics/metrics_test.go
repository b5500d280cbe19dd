// Package metrics tests the operator's metrics as docs/metrics.md documents
// them, end to end: the operator (in the test process, serving /metrics on
// loopback, with leader election) installs Istio and restarts outdated
// sidecars; then every family of the document's tables is served with
// exactly the documented labels, and a real Prometheus server (built by
// make tools from the pinned module) that scraped the operator with
// hack/prometheus/prometheus.yml returns data for every query of the
// document's "Useful queries".
//
// With METRICS_SCREENSHOT=<file.png> (make screenshot) the test also takes
// a headless Chromium screenshot of Prometheus' graph page at the end; with
// METRICS_SCRAPE=<file> it keeps the last scrape of /metrics.
package metrics

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"runtime"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"

	v1alpha2 "github.com/meshkeeper/istio-operator/pkg/apis/operator/v1alpha2"
	"github.com/meshkeeper/istio-operator/pkg/controllers/ingressgateway"
	"github.com/meshkeeper/istio-operator/pkg/controllers/installation"
	"github.com/meshkeeper/istio-operator/pkg/controllers/peerauthentication"
	"github.com/meshkeeper/istio-operator/pkg/controllers/proxysidecar"
	"github.com/meshkeeper/istio-operator/pkg/istioclient"
	"github.com/meshkeeper/istio-operator/pkg/metrics"
	"github.com/meshkeeper/istio-operator/pkg/operator"
	"github.com/meshkeeper/istio-operator/test/cluster"
	"github.com/meshkeeper/istio-operator/test/metricsdoc"
	"github.com/meshkeeper/istio-operator/test/operatorproc"
	"github.com/meshkeeper/istio-operator/test/operatortest"
	"github.com/meshkeeper/istio-operator/test/workload"
)

const (
	oldTag    = "1.30.2"
	oldProxy  = "docker.io/istio/proxyv2:" + oldTag
	timeout   = 3 * time.Minute
	leaseName = "istio-operator-leader"
)

func TestMain(m *testing.M) {
	cluster.Main(m, cluster.Options{Nodes: 1})
}

// meshWorkloads installs Istio oldTag as another tool would, creates
// Deployments, a StatefulSet and a DaemonSet in an injected namespace and
// waits until their pods run the old proxy, which the real istiod injected:
// once the operator upgrades Istio, it has to restart every one of them.
func meshWorkloads(t *testing.T, cs kubernetes.Interface) int {
	t.Helper()
	operatortest.InstallIstio(t, oldTag)
	cluster.WaitIstiod(t, timeout)
	ns := cluster.MeshNamespace(t)
	var workloads int
	for i := range 8 {
		if _, err := cs.AppsV1().Deployments(ns).Create(t.Context(), cluster.NewDeployment(fmt.Sprintf("deploy-%d", i), 1), metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		workloads++
	}
	tmpl := cluster.NewDeployment("sts", 1).Spec.Template
	if _, err := cs.AppsV1().StatefulSets(ns).Create(t.Context(), &appsv1.StatefulSet{
		ObjectMeta: metav1.ObjectMeta{Name: "sts"},
		Spec:       appsv1.StatefulSetSpec{Replicas: ptr.To[int32](1), Selector: &metav1.LabelSelector{MatchLabels: tmpl.Labels}, Template: tmpl},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	workloads++
	tmpl = cluster.NewDeployment("ds", 1).Spec.Template
	if _, err := cs.AppsV1().DaemonSets(ns).Create(t.Context(), &appsv1.DaemonSet{
		ObjectMeta: metav1.ObjectMeta{Name: "ds"},
		Spec:       appsv1.DaemonSetSpec{Selector: &metav1.LabelSelector{MatchLabels: tmpl.Labels}, Template: tmpl},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	workloads++
	cluster.WaitFor(t, timeout, fmt.Sprintf("%d ready pods on %s", workloads, oldProxy), func(ctx context.Context) (bool, error) {
		pods, err := cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			return false, err
		}
		ready := 0
		for _, p := range pods.Items {
			for _, c := range p.Status.Conditions {
				if c.Type == corev1.PodReady && c.Status == corev1.ConditionTrue && workload.ProxyImage(&p) == oldProxy {
					ready++
				}
			}
		}
		if ready != workloads {
			return false, fmt.Errorf("%d of %d pods ready on the old proxy", ready, workloads)
		}
		return true, nil
	})
	return workloads
}

// scrape reads the operator's /metrics as Prometheus does, in the text
// format, and parses it with Prometheus' own parser.
func scrape(t *testing.T, addr string) (map[string]*dto.MetricFamily, []byte) {
	t.Helper()
	req, err := http.NewRequestWithContext(cluster.Context(t), http.MethodGet, "http://"+addr+"/metrics", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Accept", "text/plain;version=0.0.4")
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		t.Fatalf("scraping the operator: %v", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("scraping the operator: %s %v", resp.Status, err)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(strings.NewReader(string(body)))
	if err != nil {
		t.Fatalf("parsing the operator's /metrics: %v", err)
	}
	return families, body
}

// value is the value of the series of family with exactly labels.
func value(families map[string]*dto.MetricFamily, family string, labels map[string]string) (float64, bool) {
	f := families[family]
	if f == nil {
		return 0, false
	}
	for _, m := range f.GetMetric() {
		got := map[string]string{}
		for _, l := range m.GetLabel() {
			got[l.GetName()] = l.GetValue()
		}
		if len(got) != len(labels) {
			continue
		}
		match := true
		for k, v := range labels {
			match = match && got[k] == v
		}
		if !match {
			continue
		}
		switch {
		case m.Gauge != nil:
			return m.GetGauge().GetValue(), true
		case m.Counter != nil:
			return m.GetCounter().GetValue(), true
		case m.Histogram != nil:
			return float64(m.GetHistogram().GetSampleCount()), true
		}
	}
	return 0, false
}

// sum adds up the values of the series of family that carry match.
func sum(families map[string]*dto.MetricFamily, family string, match map[string]string) float64 {
	var total float64
	for _, m := range families[family].GetMetric() {
		ok := true
		for k, v := range match {
			found := false
			for _, l := range m.GetLabel() {
				found = found || (l.GetName() == k && l.GetValue() == v)
			}
			ok = ok && found
		}
		if !ok {
			continue
		}
		switch {
		case m.Counter != nil:
			total += m.GetCounter().GetValue()
		case m.Histogram != nil:
			total += float64(m.GetHistogram().GetSampleCount())
		case m.Gauge != nil:
			total += m.GetGauge().GetValue()
		}
	}
	return total
}

func labelNames(m *dto.Metric) []string {
	var names []string
	for _, l := range m.GetLabel() {
		names = append(names, l.GetName())
	}
	sort.Strings(names)
	return names
}

// TestMetricsWithPrometheus is one story: the run, then the checks of what
// it left in /metrics and in Prometheus.
func TestMetricsWithPrometheus(t *testing.T) {
	promBin := prometheusBinary(t)
	doc, err := metricsdoc.Load()
	if err != nil {
		t.Fatal(err)
	}
	cluster.InstallIstioCRD(t)
	cs := cluster.Current().Clientset()
	workloads := meshWorkloads(t, cs)

	// The one family the binary registers itself (cmd/istio-operator), as
	// it does.
	metrics.RegisterBuildInfo(metrics.Registry(), istioclient.Version, istioclient.Version, runtime.Version())

	opNS := cluster.Namespace(t, nil)
	metricsAddr := operatorproc.MustFreeAddr(t)
	operatortest.StartWith(t, opNS, operatortest.Options{
		// Paced, so that the restarts spread over a few scrapes.
		RestartPacing: v1alpha2.RestartPacing{RestartsPerSecond: 2},
		Configure: func(o *operator.Options) {
			o.MetricsBindAddress = metricsAddr
			o.LeaderElect = true
			o.LeaderElectionID = leaseName
			o.LeaseDuration, o.RenewDeadline, o.RetryPeriod = 15*time.Second, 10*time.Second, 2*time.Second
		},
	})
	prom := startPrometheus(t, promBin, metricsAddr)

	operatortest.CreateIstio(t, opNS, "default", v1alpha2.IstioSpec{})
	operatortest.WaitForState(t, timeout, opNS, "default", v1alpha2.StateReady,
		v1alpha2.ConditionProxySidecarRestartSucceeded, metav1.ConditionTrue, v1alpha2.ReasonProxySidecarRestartSucceeded)
	cluster.WaitFor(t, 30*time.Second, "a restart duration observed", func(context.Context) (bool, error) {
		f, _ := scrape(t, metricsAddr)
		return sum(f, "istio_operator_proxy_restart_duration_seconds", nil) > 0, nil
	})
	families, body := scrape(t, metricsAddr)
	// Prometheus' latest samples are from after the run, as the scrape is.
	prom.waitScrapedAfter(t, time.Now())
	if path := os.Getenv("METRICS_SCRAPE"); path != "" {
		if err := os.WriteFile(path, body, 0o644); err != nil {
			t.Error(err)
		}
	}

	t.Run("every documented family is served with exactly its labels", func(t *testing.T) {
		documented := map[string]bool{}
		for _, want := range doc.Families {
			documented[want.Name] = true
			f := families[want.Name]
			if f == nil || len(f.GetMetric()) == 0 {
				t.Errorf("%s is documented but not served", want.Name)
				continue
			}
			wantLabels := slices.Sorted(slices.Values(want.Labels))
			for _, m := range f.GetMetric() {
				if got := labelNames(m); !slices.Equal(got, wantLabels) {
					t.Errorf("%s has a series with labels %q, documented %q", want.Name, got, wantLabels)
					break
				}
			}
		}
		// The document lists everything but Go's and the process' standard
		// collectors.
		for name := range families {
			if !documented[name] && !strings.HasPrefix(name, "go_") && !strings.HasPrefix(name, "process_") {
				t.Errorf("%s is served but not documented in %s", name, metricsdoc.Path)
			}
		}
	})

	t.Run("every controller reconciled and the restarts were counted", func(t *testing.T) {
		for _, c := range []string{installation.Name, proxysidecar.Name, ingressgateway.Name, peerauthentication.Name} {
			if n := sum(families, "istio_operator_reconcile_total", map[string]string{"controller": c}); n == 0 {
				t.Errorf("no reconcile of %s counted", c)
			}
			if n := sum(families, "workqueue_adds_total", map[string]string{"name": c}); n == 0 {
				t.Errorf("no add to the %s queue counted", c)
			}
		}
		if n := sum(families, "istio_operator_proxy_restarts_total", map[string]string{"result": "issued"}); n < float64(workloads) {
			t.Errorf("%v restarts issued, want at least %d", n, workloads)
		}
		if v, _ := value(families, "leader_election_master_status", map[string]string{"name": leaseName}); v != 1 {
			t.Errorf("leader_election_master_status{name=%q} = %v, want 1", leaseName, v)
		}
	})

	t.Run("the state and condition gauges report the served resource", func(t *testing.T) {
		for _, s := range []v1alpha2.State{v1alpha2.StateReady, v1alpha2.StateProcessing, v1alpha2.StateError, v1alpha2.StateDeleting, v1alpha2.StateWarning} {
			want := 0.0
			if s == v1alpha2.StateReady {
				want = 1
			}
			if v, ok := value(families, "istio_operator_state", map[string]string{"state": string(s)}); !ok || v != want {
				t.Errorf("istio_operator_state{state=%q} = %v (served: %v), want %v", s, v, ok, want)
			}
		}
		for _, typ := range []string{v1alpha2.ConditionReady, v1alpha2.ConditionInstalled, v1alpha2.ConditionProxySidecarRestartSucceeded,
			v1alpha2.ConditionIngressGatewayReady, v1alpha2.ConditionPeerAuthenticationReady} {
			for status, want := range map[string]float64{"True": 1, "False": 0, "Unknown": 0} {
				if v, ok := value(families, "istio_operator_condition", map[string]string{"type": typ, "status": status}); !ok || v != want {
					t.Errorf("istio_operator_condition{type=%q,status=%q} = %v (served: %v), want %v", typ, status, v, ok, want)
				}
			}
		}
	})

	t.Run("every documented query returns data from Prometheus", func(t *testing.T) {
		for _, q := range doc.Queries {
			series := prom.waitForData(t, q.Expr)
			t.Logf("%s: %s", q.Expr, series)
			if strings.Contains(q.Expr, "istio_operator_state") {
				for _, s := range series {
					if s.Metric["state"] == model.LabelValue(v1alpha2.StateReady) && s.Value != 1 {
						t.Errorf("Prometheus has %s, want the Ready state at 1", series)
					}
				}
			}
		}
	})

	if path := os.Getenv("METRICS_SCREENSHOT"); path != "" && !t.Failed() {
		prom.screenshot(t, path, doc.Queries)
	}
}
