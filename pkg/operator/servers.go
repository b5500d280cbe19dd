package operator

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/pprof"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
	"golang.org/x/sync/errgroup"
	"k8s.io/client-go/tools/leaderelection"
	"k8s.io/klog/v2"

	"github.com/meshkeeper/istio-operator/pkg/metrics"
)

// leaseRenewTolerance is how long past a missed renewal /healthz still
// reports healthy; beyond it the replica is wedged and should restart.
const leaseRenewTolerance = 20 * time.Second

// servers are the metrics and health endpoints.
type servers struct {
	metricsAddr, healthAddr string
	leaderElect             bool
	leaderHealth            *leaderelection.HealthzAdaptor

	leading atomic.Bool
	synced  atomic.Bool

	profiling bool

	// bound addresses, for tests that bind port 0
	metricsListener, healthListener atomic.Pointer[net.Addr]
}

func newServers(metricsAddr, healthAddr string, leaderElect, profiling bool) *servers {
	return &servers{
		profiling:    profiling,
		metricsAddr:  metricsAddr,
		healthAddr:   healthAddr,
		leaderElect:  leaderElect,
		leaderHealth: leaderelection.NewLeaderHealthzAdaptor(leaseRenewTolerance),
	}
}

func (s *servers) setLeading(v bool) {
	s.leading.Store(v)
	if !v {
		s.synced.Store(false)
	}
}

func (s *servers) markSynced() { s.synced.Store(true) }

// ready: a leader (or the only replica) once its caches synced; a standby
// replica always, since it is ready to take over.
func (s *servers) ready() bool {
	if s.leaderElect && !s.leading.Load() {
		return true
	}
	return s.synced.Load()
}

func (s *servers) healthHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) {
		if err := s.leaderHealth.Check(r); err != nil {
			http.Error(w, "leader election: "+err.Error(), http.StatusInternalServerError)
			return
		}
		_, _ = w.Write([]byte("ok"))
	})
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) {
		if !s.ready() {
			http.Error(w, "informer caches not synced", http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte("ok"))
	})
	return mux
}

func metricsHandler(profiling bool) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(metrics.Registry(), promhttp.HandlerOpts{}))
	if profiling {
		// Go's profiler, for measuring the operator under load; off by default.
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	}
	return mux
}

// serve runs both servers until ctx ends, then shuts them down gracefully.
// An address of "0" disables a server.
func (s *servers) serve(ctx context.Context) error {
	g, gctx := errgroup.WithContext(ctx)
	start := func(addr string, h http.Handler, bound *atomic.Pointer[net.Addr]) {
		if addr == "0" || addr == "" {
			return
		}
		g.Go(func() error {
			ln, err := net.Listen("tcp", addr)
			if err != nil {
				return err
			}
			a := ln.Addr()
			bound.Store(&a)
			srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
			go func() {
				<-gctx.Done()
				sctx, cancel := context.WithTimeout(context.WithoutCancel(gctx), 5*time.Second)
				defer cancel()
				_ = srv.Shutdown(sctx)
			}()
			klog.FromContext(ctx).Info("Serving", "address", a.String())
			if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
				return err
			}
			return nil
		})
	}
	start(s.metricsAddr, metricsHandler(s.profiling), &s.metricsListener)
	start(s.healthAddr, s.healthHandler(), &s.healthListener)
	return g.Wait()
}
