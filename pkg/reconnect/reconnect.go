// Package reconnect holds the operator's API requests while the API
// server's port refuses connections, and sends them again once it accepts.
//
// client-go's reflectors back off exponentially on failed lists and
// watches: 0.8 s doubling to 30 s, plus up to as much again of jitter. An
// API server that is away for 30 s leaves every informer waiting up to a
// minute more after its return, and the shared informer factories cannot
// change that backoff. A request that finds the port closed was never sent,
// so sending it again is safe for every verb; held here, it goes out within
// one poll interval of the server's return and the reflector never sees the
// outage as a string of failures.
package reconnect

import (
	"errors"
	"math/rand/v2"
	"net/http"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/go-logr/logr"
	"k8s.io/client-go/rest"
)

// DefaultInterval is how often a held request tries the API server again.
const DefaultInterval = 500 * time.Millisecond

// Wrap makes every client built from cfg hold its requests while the API
// server refuses connections. The clients share one record of the outage,
// so it is logged once. Wrap should come before wrappers that count
// requests, so that a held request counts once.
func Wrap(cfg *rest.Config, logger logr.Logger) {
	o := &outage{logger: logger}
	cfg.Wrap(func(rt http.RoundTripper) http.RoundTripper {
		return newTransport(rt, o, DefaultInterval)
	})
}

// Transport is an http.RoundTripper that holds requests refused a
// connection and retries them every interval until the connection is
// accepted or the request's context ends.
type Transport struct {
	next     http.RoundTripper
	interval time.Duration
	outage   *outage
}

func newTransport(next http.RoundTripper, o *outage, interval time.Duration) *Transport {
	return &Transport{next: next, interval: interval, outage: o}
}

// RoundTrip implements http.RoundTripper.
func (t *Transport) RoundTrip(req *http.Request) (*http.Response, error) {
	for {
		resp, err := t.next.RoundTrip(req)
		if err == nil {
			t.outage.end()
			return resp, nil
		}
		if !refused(err) {
			return nil, err
		}
		if req.Body != nil && req.Body != http.NoBody && req.GetBody == nil {
			// The body is spent and cannot be read again.
			return nil, err
		}
		t.outage.begin(req.URL.Host)
		if !t.pause(req) {
			return nil, err
		}
		if req.GetBody != nil {
			body, berr := req.GetBody()
			if berr != nil {
				return nil, err
			}
			req = req.Clone(req.Context())
			req.Body = body
		}
	}
}

// pause waits one interval, with jitter so that held requests do not
// arrive together; it reports false when the request's context ended.
func (t *Transport) pause(req *http.Request) bool {
	d := t.interval/2 + rand.N(t.interval)
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-req.Context().Done():
		return false
	case <-timer.C:
		return true
	}
}

// refused reports a dial that found no listener: nothing was sent.
func refused(err error) bool {
	return errors.Is(err, syscall.ECONNREFUSED)
}

// outage logs an outage once when it begins and once when it ends.
type outage struct {
	logger logr.Logger
	down   atomic.Bool // the fast path of every request that succeeds
	mu     sync.Mutex
	since  time.Time // zero while the API server accepts connections
}

func (o *outage) begin(host string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.since.IsZero() {
		o.since = time.Now()
		o.down.Store(true)
		o.logger.Info("API server refuses connections; holding requests until it accepts them again", "host", host)
	}
}

func (o *outage) end() {
	if !o.down.Load() {
		return
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	if !o.since.IsZero() {
		o.down.Store(false)
		o.logger.Info("API server accepts connections again; sending held requests", "refusedFor", time.Since(o.since).Round(time.Millisecond))
		o.since = time.Time{}
	}
}
