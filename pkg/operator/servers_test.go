package operator

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

func TestReadiness(t *testing.T) {
	single := newServers("0", "0", false, false)
	if single.ready() {
		t.Error("a single replica is ready before its caches synced")
	}
	single.markSynced()
	if !single.ready() {
		t.Error("a single replica is not ready after its caches synced")
	}

	ha := newServers("0", "0", true, false)
	if !ha.ready() {
		t.Error("a standby replica must be ready: it is ready to take over")
	}
	ha.setLeading(true)
	if ha.ready() {
		t.Error("a new leader is ready before its caches synced")
	}
	ha.markSynced()
	if !ha.ready() {
		t.Error("a leader is not ready after its caches synced")
	}
	ha.setLeading(false)
	ha.setLeading(true)
	if ha.ready() {
		t.Error("a re-elected leader reuses the readiness of its previous term")
	}
}

func TestServeEndpoints(t *testing.T) {
	s := newServers("127.0.0.1:0", "127.0.0.1:0", false, true)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.serve(ctx) }()

	var healthURL, metricsURL string
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		if h, m := s.healthListener.Load(), s.metricsListener.Load(); h != nil && m != nil {
			healthURL, metricsURL = "http://"+(*h).String(), "http://"+(*m).String()
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if healthURL == "" {
		t.Fatal("servers did not bind within 5s")
	}
	expect := func(url string, code int, body string) {
		t.Helper()
		resp, err := http.Get(url)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != code || !strings.Contains(string(b), body) {
			t.Fatalf("GET %s = %d %q, want %d containing %q", url, resp.StatusCode, b, code, body)
		}
	}
	expect(healthURL+"/healthz", 200, "ok")
	expect(healthURL+"/readyz", 503, "not synced")
	s.markSynced()
	expect(healthURL+"/readyz", 200, "ok")
	expect(metricsURL+"/metrics", 200, "go_goroutines")

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("serve returned %v on shutdown", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("servers did not shut down")
	}
}
