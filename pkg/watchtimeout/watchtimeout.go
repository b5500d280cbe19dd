// Package watchtimeout lets the operator's watches run as long as the API
// server's own default.
//
// client-go's reflectors ask the API server to end every watch after 5 to
// 10 minutes and then open the next one, and the informer factories cannot
// change that. Each renewal is a request: a few dozen informers renew one
// every ten seconds or so, idle or not, around the clock. A watch that names
// no timeout gets the server's default, 30 to 60 minutes
// (--min-request-timeout, 1800 s), and a dead connection is found long
// before either by client-go's HTTP/2 health check (a ping after 30 s
// without a frame), so the renewals buy nothing. The transport here raises
// the timeout of a watch below Min to a random value between Min and twice
// Min, as the server would pick it; the spread keeps the informers from
// renewing together.
package watchtimeout

import (
	"math/rand/v2"
	"net/http"
	"strconv"
	"time"

	"k8s.io/client-go/rest"
)

// Min is the shortest watch the operator asks for: the API server's
// default --min-request-timeout.
const Min = 30 * time.Minute

// Wrap makes every client built from cfg ask for watches of at least min
// (and at most twice min).
func Wrap(cfg *rest.Config, min time.Duration) {
	cfg.Wrap(func(rt http.RoundTripper) http.RoundTripper {
		return &Transport{next: rt, min: min, jitter: rand.Float64}
	})
}

// Transport is an http.RoundTripper that lengthens short watch timeouts.
type Transport struct {
	next   http.RoundTripper
	min    time.Duration
	jitter func() float64 // in [0, 1)
}

// RoundTrip implements http.RoundTripper.
func (t *Transport) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.Method != http.MethodGet {
		return t.next.RoundTrip(req)
	}
	q := req.URL.Query()
	if w := q.Get("watch"); w != "true" && w != "1" {
		return t.next.RoundTrip(req)
	}
	secs, err := strconv.ParseInt(q.Get("timeoutSeconds"), 10, 64)
	if err != nil || secs <= 0 || time.Duration(secs)*time.Second >= t.min {
		// No timeout (the server's default applies), or long enough.
		return t.next.RoundTrip(req)
	}
	timeout := time.Duration(float64(t.min) * (1 + t.jitter())).Truncate(time.Second)
	q.Set("timeoutSeconds", strconv.FormatInt(int64(timeout/time.Second), 10))
	if q.Has("timeout") {
		// client-go sends the same limit as the request's own timeout.
		q.Set("timeout", timeout.String())
	}
	longer := req.Clone(req.Context())
	longer.URL.RawQuery = q.Encode()
	return t.next.RoundTrip(longer)
}
