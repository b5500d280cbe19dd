package reconnect

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"k8s.io/client-go/rest"
)

const testInterval = 20 * time.Millisecond

// observed counts the refusals the wrapped transport sees.
type observed struct {
	next     http.RoundTripper
	refusals atomic.Int32
	refused  chan struct{} // one send per refusal, never blocking
}

func (o *observed) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := o.next.RoundTrip(req)
	if err != nil && errors.Is(err, syscall.ECONNREFUSED) {
		o.refusals.Add(1)
		select {
		case o.refused <- struct{}{}:
		default:
		}
	}
	return resp, err
}

// closedAddr is a loopback address nothing listens on.
func closedAddr(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	return addr
}

// echo serves, on addr, the body of each request back.
func echo(t *testing.T, addr string) {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(w, r.Body)
	})}
	go func() { _ = srv.Serve(l) }()
	t.Cleanup(func() { _ = srv.Close() })
}

func newClient(t *testing.T) (*http.Client, *observed) {
	base := &http.Transport{}
	t.Cleanup(base.CloseIdleConnections)
	o := &observed{next: base, refused: make(chan struct{}, 1)}
	return &http.Client{Transport: newTransport(o, &outage{logger: logr.Discard()}, testInterval)}, o
}

func TestHeldUntilTheServerAccepts(t *testing.T) {
	addr := closedAddr(t)
	client, o := newClient(t)

	type result struct {
		body string
		err  error
	}
	done := make(chan result, 1)
	go func() {
		resp, err := client.Post("http://"+addr+"/", "text/plain", strings.NewReader("the same body"))
		if err != nil {
			done <- result{err: err}
			return
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		done <- result{body: string(b), err: err}
	}()

	// The request must be held through several refusals, then sent.
	deadline := time.After(10 * time.Second)
	for o.refusals.Load() < 3 {
		select {
		case r := <-done:
			t.Fatalf("request returned while the port was closed: %q, %v", r.body, r.err)
		case <-o.refused:
		case <-deadline:
			t.Fatal("the request was not retried")
		}
	}
	echo(t, addr)
	select {
	case r := <-done:
		if r.err != nil {
			t.Fatalf("request failed after the server came up: %v", r.err)
		}
		if r.body != "the same body" {
			t.Fatalf("body sent again = %q, want the original", r.body)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("request still held 10 s after the server came up")
	}
}

func TestContextEndsTheWait(t *testing.T) {
	addr := closedAddr(t)
	client, o := newClient(t)
	ctx, cancel := context.WithCancel(t.Context())
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/", nil)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		resp, err := client.Do(req)
		if err == nil {
			resp.Body.Close()
		}
		done <- err
	}()
	select {
	case <-o.refused:
	case <-time.After(10 * time.Second):
		t.Fatal("no refusal seen")
	}
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, syscall.ECONNREFUSED) {
			t.Fatalf("error = %v, want the refusal", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("request still held after its context ended")
	}
}

type failing struct{ calls atomic.Int32 }

func (f *failing) RoundTrip(*http.Request) (*http.Response, error) {
	f.calls.Add(1)
	return nil, syscall.ECONNRESET
}

func TestOtherErrorsPassThrough(t *testing.T) {
	f := &failing{}
	tr := newTransport(f, &outage{logger: logr.Discard()}, testInterval)
	req, err := http.NewRequest(http.MethodGet, "http://127.0.0.1:1/", nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tr.RoundTrip(req); !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("error = %v, want the connection reset", err)
	}
	if n := f.calls.Load(); n != 1 {
		t.Fatalf("a reset connection was tried %d times; the request may have been sent, so once", n)
	}
}

func TestBodyThatCannotBeReadAgainIsNotRetried(t *testing.T) {
	addr := closedAddr(t)
	o := &observed{next: &http.Transport{}, refused: make(chan struct{}, 1)}
	tr := newTransport(o, &outage{logger: logr.Discard()}, testInterval)
	req, err := http.NewRequest(http.MethodPost, "http://"+addr+"/", io.NopCloser(strings.NewReader("once")))
	if err != nil {
		t.Fatal(err)
	}
	if req.GetBody != nil {
		t.Fatal("test setup: the body must not be replayable")
	}
	if _, err := tr.RoundTrip(req); !errors.Is(err, syscall.ECONNREFUSED) {
		t.Fatalf("error = %v, want the refusal", err)
	}
	if n := o.refusals.Load(); n != 1 {
		t.Fatalf("tried %d times, want 1", n)
	}
}

// The clients built from one configuration log an outage once.
func TestWrapSharesTheOutage(t *testing.T) {
	cfg := &rest.Config{}
	Wrap(cfg, logr.Discard())
	a := cfg.WrapTransport(&http.Transport{}).(*Transport)
	b := cfg.WrapTransport(&http.Transport{}).(*Transport)
	if a.outage != b.outage {
		t.Fatal("two clients of one configuration keep separate outage records")
	}
	a.outage.begin("h")
	if !b.outage.down.Load() {
		t.Fatal("an outage seen by one client is not seen by the other")
	}
}
