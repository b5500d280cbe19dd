package proxysidecar

import (
	"context"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/clock"

	v1alpha2 "github.com/meshkeeper/istio-operator/pkg/apis/operator/v1alpha2"
	"github.com/meshkeeper/istio-operator/pkg/operator"
	"github.com/meshkeeper/istio-operator/test/cluster"
	"github.com/meshkeeper/istio-operator/test/operatortest"
)

// shiftedClock is the real clock moved by an offset: the operator's idea of
// the time of day. Timers and tickers run on the real clock, as do the
// queues' delays.
type shiftedClock struct {
	clock.RealClock
	offset atomic.Int64 // nanoseconds
}

func (c *shiftedClock) Now() time.Time                  { return time.Now().Add(time.Duration(c.offset.Load())) }
func (c *shiftedClock) Since(t time.Time) time.Duration { return c.Now().Sub(t) }

// setNow moves the clock forward so that it reads now, and returns the
// real time at which it did.
func (c *shiftedClock) setNow(t *testing.T, now time.Time) time.Time {
	t.Helper()
	at := time.Now()
	offset := now.Round(0).Sub(at.Round(0))
	if old := time.Duration(c.offset.Load()); offset < old {
		t.Fatalf("the operator's clock would go back by %v", old-offset)
	}
	c.offset.Store(int64(offset))
	return at
}

// windowAt is a daily maintenance window of 30 minutes opening at the
// operator's time at (whole minutes, UTC).
func windowAt(at time.Time) string {
	return fmt.Sprintf(`{"maintenanceWindows":[{"start":%q,"duration":"30m"}]}`, at.UTC().Format("15:04"))
}

// waitReadyInjected waits until the namespace has n ready pods, all with the
// same injected proxy image, and returns it.
func waitReadyInjected(t *testing.T, cs kubernetes.Interface, ns string, n int) string {
	t.Helper()
	var image string
	cluster.WaitFor(t, timeout, fmt.Sprintf("%d ready injected pods in %s", n, ns), func(ctx context.Context) (bool, error) {
		got, err := proxyImages(ctx, cs, ns)
		if err != nil {
			return false, err
		}
		for img, count := range got {
			if len(got) == 1 && count == n && img != "" && img != "unready" {
				image = img
				return true, nil
			}
		}
		return false, fmt.Errorf("pods by proxy image: %v", got)
	})
	return image
}

// A proxy configuration change outside the maintenance window restarts
// nothing: the condition and status.nextMaintenanceWindow name the opening.
// Once the window opens, by the operator's clock, every outdated workload
// is restarted exactly once.
//
// Windows have minute granularity. The operator runs on a clock an hour
// ahead of the real one (an operator on the real clock would see no window
// open during the test, and fail it), moved forward just before the window
// is set so that it opens a few seconds later.
func TestMaintenanceWindow(t *testing.T) {
	cluster.InstallIstioCRD(t)
	cs := cluster.Current().Clientset()
	opNS := cluster.Namespace(t, nil)
	clk := &shiftedClock{}
	clk.offset.Store(int64(time.Hour))
	operatortest.StartWith(t, opNS, operatortest.Options{Configure: func(o *operator.Options) { o.Clock = clk }})
	t.Cleanup(func() { operatortest.WaitUninstalled(t, timeout) })
	operatortest.CreateIstio(t, opNS, "default", v1alpha2.IstioSpec{})
	t.Cleanup(func() { operatortest.DeleteIstio(t, timeout, opNS, "default") })
	waitCondition(t, opNS, v1alpha2.ReasonProxySidecarRestartSucceeded, nil)

	mesh := cluster.MeshNamespace(t)
	names := []string{"web-0", "web-1", "web-2", "web-3"}
	for _, n := range names {
		createDeployment(t, cs, mesh, cluster.NewDeployment(n, 1))
	}
	image := waitReadyInjected(t, cs, mesh, len(names))
	waitCondition(t, opNS, v1alpha2.ReasonProxySidecarRestartSucceeded, nil)
	watched := watchRestarts(t, cs, mesh)
	issuedBefore := restartsIssued(t)

	nothingRestarted := func(when string) {
		t.Helper()
		if seen, _, _ := watched.snapshot(); len(seen) != 0 {
			t.Fatalf("%s: restarted %v", when, seen)
		}
		for _, n := range names {
			if got := restartAnnotation(t, cs, deployKind, mesh, n); got != "" {
				t.Fatalf("%s: %s restarted for %q", when, n, got)
			}
		}
		if got := restartsIssued(t) - issuedBefore; got != 0 {
			t.Fatalf("%s: %v restarts issued", when, got)
		}
	}
	waiting := func(opens time.Time) *v1alpha2.Istio {
		t.Helper()
		want := fmt.Sprintf("%d wait for the maintenance window that opens at %s", len(names), opens.UTC().Format(time.RFC3339))
		istio := waitCondition(t, opNS, v1alpha2.ReasonProxySidecarRestartWaitingForWindow, func(c *metav1.Condition) error {
			if !strings.Contains(c.Message, want) {
				return fmt.Errorf("message %q does not say %q", c.Message, want)
			}
			return nil
		})
		if got := istio.Status.NextMaintenanceWindow; got == nil || !got.Equal(&metav1.Time{Time: opens}) {
			t.Errorf("status.nextMaintenanceWindow %v, want %s", got, opens.UTC().Format(time.RFC3339))
		}
		return istio
	}

	// The proxy's resources change, and a window two hours away is set:
	// every workload waits.
	far := clk.Now().Truncate(time.Minute).Add(2 * time.Hour)
	patchSpec(t, opNS, fmt.Sprintf(`{"proxyRestart":%s,"components":{"proxy":{"k8s":{"resources":{"requests":{"cpu":"20m"}}}}}}`, windowAt(far)))
	waiting(far)
	nothingRestarted("waiting for the window two hours away")

	// The window moves to the next minute but one, and the operator's clock
	// to 20 seconds before it.
	const lead = 20 * time.Second
	soon := clk.Now().Truncate(time.Minute).Add(2 * time.Minute)
	opensReal := clk.setNow(t, soon.Add(-lead)).Add(lead)
	patchSpec(t, opNS, fmt.Sprintf(`{"proxyRestart":%s}`, windowAt(soon)))
	waiting(soon)
	nothingRestarted("waiting for the window")
	if left := time.Until(opensReal); left <= 0 {
		t.Fatalf("the waiting state was seen %v after the window opened; the check above proves nothing", -left)
	} else {
		t.Logf("waiting for the window, which opens in %v", left.Round(10*time.Millisecond))
	}

	istio := waitCondition(t, opNS, v1alpha2.ReasonProxySidecarRestartSucceeded, nil)
	if istio.Status.NextMaintenanceWindow != nil {
		t.Errorf("status.nextMaintenanceWindow %v after the restarts, want none", istio.Status.NextMaintenanceWindow)
	}
	seen, times, _ := watched.snapshot()
	for _, n := range names {
		if len(seen[n]) != 1 {
			t.Errorf("%s restarted %d times (%v), want once", n, len(seen[n]), seen[n])
		}
	}
	if len(times) > 0 {
		if first := times[0]; first.Before(opensReal) {
			t.Errorf("first restart %v before the window opened", opensReal.Sub(first))
		} else {
			t.Logf("first restart %v after the window opened, last %v after", first.Sub(opensReal).Round(10*time.Millisecond),
				times[len(times)-1].Sub(opensReal).Round(10*time.Millisecond))
		}
	}
	if got := restartsIssued(t) - issuedBefore; got != float64(len(names)) {
		t.Errorf("%v restarts issued, want %d", got, len(names))
	}
	if after := waitReadyInjected(t, cs, mesh, len(names)); after != image {
		t.Errorf("proxy image %s after the restarts, want %s (only the configuration changed)", after, image)
	}
}
