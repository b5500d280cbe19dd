package metrics

import (
	"context"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/client-go/rest"
	clientmetrics "k8s.io/client-go/tools/metrics"
)

// API request metrics. client-go reports the latency and result of its
// requests; a transport wrapper (InstrumentConfig) counts every request by
// verb and resource (never by object name), watches included, so that tests
// and benchmarks can count LIST calls and writes.
var (
	requestLatency = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "rest_client_request_duration_seconds",
		Help:    "Latency of requests to the Kubernetes API server, by verb and host.",
		Buckets: []float64{0.005, 0.025, 0.1, 0.25, 0.5, 1, 2, 4, 8, 15, 30, 60},
	}, []string{"verb", "host"})
	requestResult = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "rest_client_requests_total",
		Help: "Requests to the Kubernetes API server, by status code, method and host.",
	}, []string{"code", "method", "host"})
	apiRequests = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: Namespace,
		Name:      "api_requests_total",
		Help:      "Requests to the Kubernetes API server by verb (get, list, watch, create, update, patch, apply, delete) and resource.",
	}, []string{"verb", "resource"})

	restClientOnce sync.Once
)

// InstallRESTClientMetrics hooks client-go's request instrumentation into
// the registry. Once per process, before the first client is built.
func InstallRESTClientMetrics() {
	restClientOnce.Do(func() {
		Registry().MustRegister(requestLatency, requestResult, apiRequests)
		clientmetrics.Register(clientmetrics.RegisterOpts{
			RequestLatency: latencyAdapter{},
			RequestResult:  resultAdapter{},
		})
	})
}

// APIRequests is the counter of API requests by verb and resource.
func APIRequests() *prometheus.CounterVec { return apiRequests }

type latencyAdapter struct{}

func (latencyAdapter) Observe(_ context.Context, verb string, u url.URL, d time.Duration) {
	requestLatency.WithLabelValues(verb, u.Host).Observe(d.Seconds())
}

// InstrumentConfig makes every client built from cfg count its requests in
// istio_operator_api_requests_total. client-go's own hooks miss watches,
// and informers list through watches (WatchList) on current servers.
func InstrumentConfig(cfg *rest.Config) {
	cfg.Wrap(func(rt http.RoundTripper) http.RoundTripper {
		return countingTransport{next: rt}
	})
}

type countingTransport struct{ next http.RoundTripper }

func (t countingTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	verb, res := ClassifyRequest(req.Method, *req.URL)
	if verb == "patch" && strings.HasPrefix(req.Header.Get("Content-Type"), "application/apply-patch") {
		verb = "apply"
	}
	apiRequests.WithLabelValues(verb, res).Inc()
	return t.next.RoundTrip(req)
}

type resultAdapter struct{}

func (resultAdapter) Increment(_ context.Context, code, method, host string) {
	requestResult.WithLabelValues(code, method, host).Inc()
}

// ClassifyRequest maps an HTTP verb and API URL to the Kubernetes verb and
// the resource (with subresource, e.g. "istios/status"). A GET of a
// collection is a list, or a watch when the query asks for one; a PATCH with
// the apply content type cannot be told from here and counts as patch.
func ClassifyRequest(httpVerb string, u url.URL) (verb, resource string) {
	parts := strings.Split(strings.Trim(u.Path, "/"), "/")
	// Drop the group/version prefix: /api/v1/... or /apis/<group>/<version>/...
	switch {
	case len(parts) >= 2 && parts[0] == "api":
		parts = parts[2:]
	case len(parts) >= 3 && parts[0] == "apis":
		parts = parts[3:]
	default:
		return strings.ToLower(httpVerb), "other"
	}
	// Cluster- or namespace-scoped: [namespaces <ns>] <resource> [<name> [<sub>]]
	if len(parts) >= 3 && parts[0] == "namespaces" {
		parts = parts[2:]
	}
	named := len(parts) >= 2
	switch len(parts) {
	case 0:
		resource = "namespaces"
	case 1, 2:
		resource = parts[0]
	default:
		resource = parts[0] + "/" + parts[2]
	}
	verb = strings.ToLower(httpVerb)
	switch verb {
	case "get":
		if !named {
			verb = "list"
			if u.Query().Get("watch") == "true" || u.Query().Get("watch") == "1" {
				verb = "watch"
			}
		}
	case "put":
		verb = "update"
	}
	return verb, resource
}
