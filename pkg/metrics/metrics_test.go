package metrics

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/util/workqueue"
)

func TestClassifyRequest(t *testing.T) {
	cases := []struct {
		method, url          string
		wantVerb, wantResrce string
	}{
		{"GET", "https://h/api/v1/pods?limit=500", "list", "pods"},
		{"GET", "https://h/api/v1/namespaces/ns/pods?watch=true&resourceVersion=1", "watch", "pods"},
		{"GET", "https://h/api/v1/namespaces/ns/pods/p", "get", "pods"},
		{"GET", "https://h/api/v1/namespaces", "list", "namespaces"},
		{"GET", "https://h/api/v1/namespaces/ns", "get", "namespaces"},
		{"PATCH", "https://h/apis/apps/v1/namespaces/ns/deployments/d", "patch", "deployments"},
		{"PATCH", "https://h/apis/operator.kyma-project.io/v1alpha2/namespaces/kyma-system/istios/default/status", "patch", "istios/status"},
		{"POST", "https://h/api/v1/namespaces/ns/pods/p/eviction", "post", "pods/eviction"},
		{"PUT", "https://h/apis/coordination.k8s.io/v1/namespaces/ns/leases/l", "update", "leases"},
		{"DELETE", "https://h/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations/w", "delete", "mutatingwebhookconfigurations"},
		{"GET", "https://h/version", "get", "other"},
	}
	for _, tc := range cases {
		u, err := url.Parse(tc.url)
		if err != nil {
			t.Fatal(err)
		}
		verb, res := ClassifyRequest(tc.method, *u)
		if verb != tc.wantVerb || res != tc.wantResrce {
			t.Errorf("%s %s = %s %s, want %s %s", tc.method, tc.url, verb, res, tc.wantVerb, tc.wantResrce)
		}
	}
}

func TestWorkqueueMetricsForNamedQueues(t *testing.T) {
	InstallWorkqueueProvider()
	q := workqueue.NewTypedRateLimitingQueueWithConfig(workqueue.DefaultTypedControllerRateLimiter[string](),
		workqueue.TypedRateLimitingQueueConfig[string]{Name: "metrics-test"})
	defer q.ShutDown()
	q.Add("a")
	q.Add("b")
	if got := testutil.ToFloat64(wqAdds.WithLabelValues("metrics-test")); got != 2 {
		t.Errorf("adds %v, want 2", got)
	}
	if got := testutil.ToFloat64(wqDepth.WithLabelValues("metrics-test")); got != 2 {
		t.Errorf("depth %v, want 2", got)
	}
	k, _ := q.Get()
	q.Done(k)
	if got := testutil.ToFloat64(wqDepth.WithLabelValues("metrics-test")); got != 1 {
		t.Errorf("depth after one item %v, want 1", got)
	}
}

func TestReconcileSeriesExistFromStart(t *testing.T) {
	NewReconcileMetrics("preinit")
	for _, r := range Results {
		if got := testutil.ToFloat64(reconcileTotal.WithLabelValues("preinit", r)); got != 0 {
			t.Errorf("%s = %v", r, got)
		}
	}
	n, err := testutil.GatherAndCount(Registry(), "istio_operator_reconcile_total")
	if err != nil {
		t.Fatal(err)
	}
	if n < len(Results) {
		t.Errorf("%d reconcile_total series gathered, want at least %d", n, len(Results))
	}
}

func TestLeaderElectionSeriesExistFromStart(t *testing.T) {
	InstallLeaderElectionMetrics("lease-test")
	leaderMetric{}.On("lease-test")
	if got := testutil.ToFloat64(leaderStatus.WithLabelValues("lease-test")); got != 1 {
		t.Errorf("leader status %v after On, want 1", got)
	}
	leaderMetric{}.Off("lease-test")
	if got := testutil.ToFloat64(leaderStatus.WithLabelValues("lease-test")); got != 0 {
		t.Errorf("leader status %v after Off, want 0", got)
	}
}

func TestInstrumentConfigCountsRequests(t *testing.T) {
	InstallRESTClientMetrics()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"kind":"Status","apiVersion":"v1","status":"Success"}`))
	}))
	defer srv.Close()
	cfg := &rest.Config{Host: srv.URL}
	InstrumentConfig(cfg)
	rt, err := rest.TransportFor(cfg)
	if err != nil {
		t.Fatal(err)
	}
	client := &http.Client{Transport: rt}
	before := testutil.ToFloat64(apiRequests.WithLabelValues("watch", "configmaps"))
	for _, u := range []string{"/api/v1/namespaces/a/configmaps?watch=true", "/api/v1/configmaps?watch=1"} {
		resp, err := client.Get(srv.URL + u)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	req, _ := http.NewRequest(http.MethodPatch, srv.URL+"/apis/apps/v1/namespaces/a/deployments/d", nil)
	req.Header.Set("Content-Type", "application/apply-patch+yaml")
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if got := testutil.ToFloat64(apiRequests.WithLabelValues("watch", "configmaps")) - before; got != 2 {
		t.Errorf("counted %v watches, want 2", got)
	}
	if got := testutil.ToFloat64(apiRequests.WithLabelValues("apply", "deployments")); got != 1 {
		t.Errorf("counted %v applies, want 1", got)
	}
}
