package installation

import (
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/tools/cache"

	v1alpha2 "github.com/meshkeeper/istio-operator/pkg/apis/operator/v1alpha2"
	"github.com/meshkeeper/istio-operator/pkg/controllers/controllertest"
	"github.com/meshkeeper/istio-operator/pkg/istioclient"
)

func TestChooseProfile(t *testing.T) {
	now := controllertest.Start
	small := clusterCapacity(nodesOf(node("a", "4", "64Gi")))
	lowMemory := clusterCapacity(nodesOf(node("a", "16", "8Gi")))
	atThreshold := clusterCapacity(nodesOf(node("a", "2", "4Gi"), node("b", "3", "6Gi")))
	large := clusterCapacity(nodesOf(node("a", "32", "256Gi")))
	const delay = 10 * time.Minute
	for name, tc := range map[string]struct {
		override, installed v1alpha2.Profile
		capacity            capacity
		aboveFor            time.Duration // how long the capacity has been at or above the thresholds
		want                v1alpha2.Profile
		wantRecheck         time.Duration
	}{
		"first install, large cluster":          {capacity: large, aboveFor: 0, want: v1alpha2.ProfileProduction},
		"first install, few CPUs":               {capacity: small, want: v1alpha2.ProfileEvaluation},
		"first install, little memory":          {capacity: lowMemory, want: v1alpha2.ProfileEvaluation},
		"first install, exactly the thresholds": {capacity: atThreshold, want: v1alpha2.ProfileProduction},
		"override Evaluation on a large cluster": {override: v1alpha2.ProfileEvaluation, installed: v1alpha2.ProfileProduction,
			capacity: large, aboveFor: time.Hour, want: v1alpha2.ProfileEvaluation},
		"override Production on a small cluster":    {override: v1alpha2.ProfileProduction, capacity: small, want: v1alpha2.ProfileProduction},
		"production stays when the cluster shrinks": {installed: v1alpha2.ProfileProduction, capacity: small, want: v1alpha2.ProfileProduction},
		"evaluation stays while small":              {installed: v1alpha2.ProfileEvaluation, capacity: small, want: v1alpha2.ProfileEvaluation},
		"evaluation waits for the delay": {installed: v1alpha2.ProfileEvaluation, capacity: large, aboveFor: 4 * time.Minute,
			want: v1alpha2.ProfileEvaluation, wantRecheck: 6 * time.Minute},
		"evaluation promoted after the delay": {installed: v1alpha2.ProfileEvaluation, capacity: large, aboveFor: delay, want: v1alpha2.ProfileProduction},
	} {
		t.Run(name, func(t *testing.T) {
			since := time.Time{}
			if tc.capacity.production() {
				since = now.Add(-tc.aboveFor)
			}
			got := chooseProfile(tc.override, tc.installed, tc.capacity, since, now, delay)
			if got.profile != tc.want || got.recheck != tc.wantRecheck {
				t.Errorf("profile %s, recheck %s (%s); want %s, recheck %s", got.profile, got.recheck, got.why, tc.want, tc.wantRecheck)
			}
			if got.why == "" {
				t.Error("no reason given")
			}
		})
	}
}

// A node that comes and goes near the thresholds changes nothing: the
// evaluation profile is promoted only when the cluster stays large for the
// whole delay, once, and production is never lowered.
func TestProfileNeverFlaps(t *testing.T) {
	f := newFixture(t, served(1))
	key := cache.ObjectName{Namespace: controllertest.Namespace, Name: "default"}
	small := node("node-0", "4", "8Gi")
	extra := node("node-1", "4", "8Gi")
	f.setNodes(small)

	step := func(what string, want v1alpha2.Profile) time.Duration {
		t.Helper()
		after, err := f.sync(key)
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		if got := f.renderer.last.Profile; got != want {
			t.Fatalf("%s: rendered profile %q, want %q", what, got, want)
		}
		if got := f.get(key).Status.Profile; got != want {
			t.Fatalf("%s: status.profile %q, want %q", what, got, want)
		}
		return after
	}

	step("a small cluster", v1alpha2.ProfileEvaluation)
	f.setNodes(small, extra)
	if after := step("a node joins", v1alpha2.ProfileEvaluation); after != min(ResyncInterval, DefaultProfilePromotionDelay) {
		t.Errorf("requeue %s, want the promotion delay %s or the resync interval", after, DefaultProfilePromotionDelay)
	}
	f.clock.Step(DefaultProfilePromotionDelay / 2)
	f.setNodes(small)
	step("the node leaves before the delay", v1alpha2.ProfileEvaluation)
	f.setNodes(small, extra)
	step("the node is back", v1alpha2.ProfileEvaluation)
	f.clock.Step(DefaultProfilePromotionDelay/2 + time.Minute)
	if after := step("the delay less a minute after it came back", v1alpha2.ProfileEvaluation); after != DefaultProfilePromotionDelay/2-time.Minute {
		t.Errorf("requeue %s, want the rest of the delay %s", after, DefaultProfilePromotionDelay/2-time.Minute)
	}
	if ev := f.events(); len(ev) != 0 {
		t.Errorf("events before any change: %v", ev)
	}
	f.clock.Step(DefaultProfilePromotionDelay/2 - time.Minute)
	if after := step("the cluster stayed large for the delay", v1alpha2.ProfileProduction); after != ResyncInterval {
		t.Errorf("requeue %s, want the resync interval", after)
	}
	ev := f.events()
	if len(ev) != 1 || !strings.Contains(ev[0], v1alpha2.EventProfileChanged) || !strings.Contains(ev[0], "from Evaluation to Production") {
		t.Errorf("events %v, want one ProfileChanged from Evaluation to Production", ev)
	}
	f.setNodes(small)
	step("the node leaves again", v1alpha2.ProfileProduction)
	f.clock.Step(time.Hour)
	step("an hour later", v1alpha2.ProfileProduction)
	if ev := f.events(); len(ev) != 0 {
		t.Errorf("events after the promotion: %v", ev)
	}
}

// An installation made before the operator chose profiles is Production,
// whatever the cluster's size: choosing now would resize Istio and restart
// every proxy on an operator upgrade.
func TestProfileOfAnEarlierInstallation(t *testing.T) {
	f := newFixture(t, served(1))
	f.setNodes(node("node-0", "2", "4Gi"))
	f.live(istiod(istioclient.Version, renderedHash))
	if _, err := f.sync(cache.ObjectName{Namespace: controllertest.Namespace, Name: "default"}); err != nil {
		t.Fatal(err)
	}
	if got := f.renderer.last.Profile; got != v1alpha2.ProfileProduction {
		t.Errorf("rendered profile %q, want Production", got)
	}
}

// The renderer gets the resolved spec: the operator's image defaults under
// the resource's own settings.
func TestImagesReachTheRenderer(t *testing.T) {
	istio := served(1)
	istio.Spec.Images = &v1alpha2.Images{PullSecrets: []string{"own"}}
	f := newFixture(t, istio)
	f.c.images = v1alpha2.Images{Registry: "mirror.example.com/istio", PullSecrets: []string{"default"}}
	if _, err := f.sync(cache.ObjectName{Namespace: controllertest.Namespace, Name: "default"}); err != nil {
		t.Fatal(err)
	}
	got := f.renderer.last.Images
	if got == nil || got.Registry != "mirror.example.com/istio" || strings.Join(got.PullSecrets, ",") != "own" {
		t.Errorf("rendered images %+v, want the default registry and the resource's pull secrets", got)
	}
	if f.get(cache.ObjectName{Namespace: controllertest.Namespace, Name: "default"}).Spec.Images.Registry != "" {
		t.Error("the resolved registry was written to the resource")
	}
}

func nodesOf(nodes ...*corev1.Node) []*corev1.Node { return nodes }
