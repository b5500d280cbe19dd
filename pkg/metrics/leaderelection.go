package metrics

import (
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/client-go/tools/leaderelection"
)

var (
	leaderStatus = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "leader_election_master_status",
		Help: "1 while this replica holds the named lease, 0 otherwise.",
	}, []string{"name"})
	leaderSlowpath = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "leader_election_slowpath_total",
		Help: "Lease renewals that had to fall back to a full read-modify-write.",
	}, []string{"name"})

	leaderOnce sync.Once
)

// InstallLeaderElectionMetrics reports client-go's leader election state.
// lease names the lease, so that its series exists (at 0) from the start.
func InstallLeaderElectionMetrics(lease string) {
	leaderOnce.Do(func() {
		Registry().MustRegister(leaderStatus, leaderSlowpath)
		leaderelection.SetProvider(leaderProvider{})
	})
	leaderStatus.WithLabelValues(lease)
	leaderSlowpath.WithLabelValues(lease)
}

type leaderProvider struct{}

func (leaderProvider) NewLeaderMetric() leaderelection.LeaderMetric { return leaderMetric{} }

type leaderMetric struct{}

func (leaderMetric) On(name string)                { leaderStatus.WithLabelValues(name).Set(1) }
func (leaderMetric) Off(name string)               { leaderStatus.WithLabelValues(name).Set(0) }
func (leaderMetric) SlowpathExercised(name string) { leaderSlowpath.WithLabelValues(name).Inc() }
