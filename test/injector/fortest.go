package injector

import (
	"context"
	"testing"
	"time"

	"k8s.io/client-go/kubernetes"

	"github.com/meshkeeper/istio-operator/test/cluster"
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

// Namespace creates a namespace the stand-in selects (through
// cluster.Namespace, so it is deleted when the test ends) and waits until
// the API server calls the stand-in for it.
func (s *Server) Namespace(t *testing.T, client kubernetes.Interface) string {
	t.Helper()
	ns := cluster.Namespace(t, map[string]string{NamespaceLabelKey: NamespaceLabelValue})
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	if err := s.WaitUntilActive(ctx, client, ns); err != nil {
		t.Fatal(err)
	}
	return ns
}
