// Package metrics holds the operator's Prometheus registry and the adapters
// that feed client-go's own instrumentation (workqueues, REST client, leader
// election) into it. Everything is registered on one registry of our own, so
// /metrics shows exactly what docs/metrics.md documents.
package metrics

import (
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// Namespace prefixes the operator's own metric names.
const Namespace = "istio_operator"

var (
	registryOnce sync.Once
	registry     *prometheus.Registry
)

// Registry is the process-wide registry. client-go's metric hooks are global
// and can be installed once, so the registry they feed is global too.
func Registry() *prometheus.Registry {
	registryOnce.Do(func() {
		registry = prometheus.NewRegistry()
		registry.MustRegister(
			collectors.NewGoCollector(),
			collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		)
	})
	return registry
}
