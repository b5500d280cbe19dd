package metrics

import "github.com/prometheus/client_golang/prometheus"

// RegisterBuildInfo exports the operator and Istio versions as a constant
// gauge, so dashboards can show what runs where.
func RegisterBuildInfo(reg prometheus.Registerer, operatorVersion, istioVersion, goVersion string) {
	g := prometheus.NewGauge(prometheus.GaugeOpts{
		Namespace: Namespace,
		Name:      "build_info",
		Help:      "Build information of the operator; the value is always 1.",
		ConstLabels: prometheus.Labels{
			"version":       operatorVersion,
			"istio_version": istioVersion,
			"go_version":    goVersion,
		},
	})
	g.Set(1)
	reg.MustRegister(g)
}
