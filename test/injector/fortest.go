package injector

import (
	"context"
	"testing"
	"time"

	"k8s.io/client-go/kubernetes"
)

// ServeForTest starts the stand-in for a test and registers it with the
// cluster of client; both are undone when the test ends, the registration
// first.
func ServeForTest(t *testing.T, client kubernetes.Interface, source ConfigSource) *Server {
	t.Helper()
	s, err := Start(t.Context(), source)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Error(err)
		}
	})
	if err := s.Register(t.Context(), client); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := s.Unregister(ctx, client); err != nil {
			t.Error(err)
		}
	})
	return s
}
