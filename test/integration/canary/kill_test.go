package canary

import (
	"context"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	v1alpha2 "github.com/meshkeeper/istio-operator/pkg/apis/operator/v1alpha2"
	"github.com/meshkeeper/istio-operator/pkg/istioclient"
	"github.com/meshkeeper/istio-operator/test/cluster"
	"github.com/meshkeeper/istio-operator/test/operatorproc"
	"github.com/meshkeeper/istio-operator/test/operatortest"
)

// seedEnv sets the seed of the random kill points, to repeat a run.
const seedEnv = "CANARY_SEED"

// operatorBinary builds the operator from this tree, as the reliability
// suite does, for a process the test can kill.
func operatorBinary(t *testing.T) string {
	t.Helper()
	root, err := cluster.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(root, ".cache", "canary", "istio-operator")
	if err := operatorproc.Build(t.Context(), root, bin); err != nil {
		t.Fatal(err)
	}
	return bin
}

// TestKillDuringCanaryUpgrade kills the operator with SIGKILL at a random
// point of each phase of a canary upgrade (the reliability suite's method)
// and restarts it at once, as its Deployment would. The upgrade must
// complete, with every workload restarted exactly once and the old control
// plane removed only after its last pod went.
func TestKillDuringCanaryUpgrade(t *testing.T) {
	m := setUp(t, 8)
	rng := seeded(t)
	k := startCanaryUpgrade(t, m, "2")
	kill, verbs := k.kill, k.verbs
	tagOnNew := func(ctx context.Context) bool {
		tag, err := m.cs.AdmissionregistrationV1().MutatingWebhookConfigurations().Get(ctx, istioclient.TagWebhookName, metav1.GetOptions{})
		return err == nil && tag.Labels[istioclient.RevisionLabel] == newRev
	}

	// InstallingRevision: after a random number of the operator's writes,
	// before the tag moved.
	point := float64(1 + rng.IntN(15))
	var installing bool
	cluster.WaitFor(t, timeout, fmt.Sprintf("the operator's write request %.0f", point), func(ctx context.Context) (bool, error) {
		var writes float64
		for _, v := range []string{"post", "patch", "apply", "update", "delete"} {
			n, err := verbs(ctx, v)
			if err != nil {
				return false, err
			}
			writes += n
		}
		installing = !tagOnNew(ctx)
		return writes >= point, nil
	})
	if installing {
		kill(fmt.Sprintf("installing revision 1-31, after write %.0f", point))
	} else {
		t.Logf("the tag moved before write %.0f: no install left to kill", point)
	}

	// MovingWorkloads: once a random number of workloads moved.
	moved := 1 + rng.IntN(len(m.workloads)-1)
	m.waitMoved(t, moved)
	kill(fmt.Sprintf("moving workloads, %d of %d restarted", m.restarts.moved(), len(m.workloads)))

	// RemovingRevision: the moment the old istiod is deleted, one of the
	// old revision's objects; the others go in the same removal.
	select {
	case <-m.oldRemoved:
	case <-time.After(timeout):
		t.Fatal("the old istiod was not removed")
	}
	kill("removing the old revision, its istiod deleted")
	if n := revisionObjects(t, m, istioclient.DefaultRevision); n > 0 {
		t.Logf("%d objects of the old revision were left at the kill", n)
	}

	i := operatortest.WaitCondition(t, timeout, m.opNS, "default", v1alpha2.ConditionCanaryUpgrade, v1alpha2.ReasonCanaryUpgradeSucceeded, nil)
	m.waitAllOn(t, newProxy, newRev)
	if i.Status.Revision != newRev {
		t.Errorf("status.revision %q", i.Status.Revision)
	}
	for k := range m.workloads {
		if got := m.restarts.of(k); len(got) != 1 {
			t.Errorf("%s restarted for %v, want exactly once", k, got)
		}
	}
	m.watchMu.Lock()
	removedAt, left := m.oldRemovedAt, m.oldPodsAtDeletion
	m.watchMu.Unlock()
	if removedAt.IsZero() || left != 0 {
		t.Errorf("old istiod removed at %v with %d pods of its revision live", removedAt, left)
	}
	if n := revisionObjects(t, m, istioclient.DefaultRevision); n != 0 {
		t.Errorf("%d objects of the old revision left", n)
	}
	if k.kills < 1 {
		t.Error("no kill landed in the upgrade")
	}
}

// seeded returns the test's random source; CANARY_SEED repeats a run's
// kill points.
func seeded(t *testing.T) *rand.Rand { return operatorproc.Seeded(t, seedEnv) }

// killable is the operator as a process the test kills and restarts.
type killable struct {
	t     *testing.T
	m     *mesh
	bin   string
	rate  string
	op    *operatorproc.Process
	kills int
}

// startCanaryUpgrade runs the operator binary built from this tree for the
// mesh, restarting workloads at rate per second, in a new namespace, and
// creates the resource asking for a canary upgrade; the process that runs
// last uninstalls Istio when the test ends.
func startCanaryUpgrade(t *testing.T, m *mesh, rate string) *killable {
	t.Helper()
	m.opNS = cluster.Namespace(t, nil)
	k := &killable{t: t, m: m, bin: operatorBinary(t), rate: rate}
	k.op = k.start("operator-0")
	t.Cleanup(func() { _ = k.op.Stop(30 * time.Second) })
	t.Cleanup(func() { operatortest.WaitUninstalled(t, timeout) })
	operatortest.CreateIstio(t, m.opNS, "default", v1alpha2.IstioSpec{UpgradeStrategy: v1alpha2.UpgradeStrategyCanary})
	t.Cleanup(func() { operatortest.DeleteIstio(t, timeout, m.opNS, "default") })
	return k
}

func (k *killable) start(name string) *operatorproc.Process {
	k.t.Helper()
	p, err := operatorproc.Start(k.bin, filepath.Join(filepath.Dir(k.bin), k.t.Name(), name+".log"), []string{
		"--kubeconfig", cluster.Current().Kubeconfig, "--namespace", k.m.opNS, "--log-level", "debug",
		"--platform-namespaces", k.m.platform, "--proxy-restarts-per-second", k.rate,
	}, nil)
	if err != nil {
		k.t.Fatal(err)
	}
	if err := p.WaitReady(k.t.Context(), time.Minute); err != nil {
		k.t.Fatal(err)
	}
	return p
}

// kill kills the operator with SIGKILL and starts it again at once, as
// its Deployment would.
func (k *killable) kill(what string) {
	k.t.Helper()
	if err := k.op.Alive(); err != nil {
		k.t.Fatal(err)
	}
	if err := k.op.Kill(); err != nil {
		k.t.Fatal(err)
	}
	k.kills++
	k.op = k.start(fmt.Sprintf("operator-%d", k.kills))
	k.t.Logf("kill %d: %s; restarted", k.kills, what)
}

// verbs is the running operator's request count of a verb.
func (k *killable) verbs(ctx context.Context, verb string) (float64, error) {
	sc, err := k.op.Scrape(ctx)
	if err != nil {
		return 0, err
	}
	return sc.Requests().ByVerb[verb], nil
}

// TestKillDuringCanaryRollback kills the operator at a random point of
// each phase of a rollback: while the workloads move back, and while the
// new revision is removed. Every workload moved forward comes back exactly
// once; the new revision goes.
func TestKillDuringCanaryRollback(t *testing.T) {
	m := setUp(t, 8)
	rng := seeded(t)
	k := startCanaryUpgrade(t, m, "1")

	forward := 2 + rng.IntN(len(m.workloads)-3)
	m.waitMoved(t, forward)
	if _, err := operatortest.Client(t).OperatorV1alpha2().Istios(m.opNS).Patch(t.Context(), "default", types.MergePatchType,
		[]byte(`{"spec":{"canaryRollback":true}}`), metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	before := map[string]int{}
	for w := range m.workloads {
		before[w] = len(m.restarts.of(w))
	}
	movedForward := 0
	for _, n := range before {
		movedForward += n
	}

	// RollingBack: once a random number of workloads came back.
	back := 1 + rng.IntN(max(1, movedForward-1))
	cluster.WaitFor(t, timeout, fmt.Sprintf("%d workloads moved back", back), func(context.Context) (bool, error) {
		n := 0
		for w, b := range before {
			if len(m.restarts.of(w)) > b {
				n++
			}
		}
		return n >= back, nil
	})
	k.kill(fmt.Sprintf("rolling back, %d of %d workloads moved back", back, movedForward))

	// RemovingNewRevision: the moment istiod-1-31 is deleted.
	cluster.WaitFor(t, timeout, "istiod-1-31 deleted", func(ctx context.Context) (bool, error) {
		_, err := m.cs.AppsV1().Deployments(istioclient.Namespace).Get(ctx, "istiod-"+newRev, metav1.GetOptions{})
		return apierrors.IsNotFound(err), nil
	})
	k.kill("removing the new revision, its istiod deleted")

	operatortest.WaitCondition(t, timeout, m.opNS, "default", v1alpha2.ConditionCanaryUpgrade, v1alpha2.ReasonCanaryRolledBack, nil)
	m.waitAllOn(t, oldProxy, istioclient.DefaultRevision)
	for w, b := range before {
		got := m.restarts.of(w)
		switch {
		case b == 0 && len(got) <= 1:
		case b == 1 && len(got) == 2:
		default:
			t.Errorf("%s restarted for %v (%d before the rollback): a moved workload comes back exactly once", w, got, b)
		}
	}
	if n := revisionObjects(t, m, newRev); n != 0 {
		t.Errorf("%d objects of revision 1-31 left", n)
	}
}

// revisionObjects counts the ConfigMaps, Services and ServiceAccounts in
// istio-system of a revision.
func revisionObjects(t *testing.T, m *mesh, revision string) int {
	t.Helper()
	sel := metav1.ListOptions{LabelSelector: istioclient.RevisionLabel + "=" + revision}
	n := 0
	if l, err := m.cs.CoreV1().ConfigMaps(istioclient.Namespace).List(t.Context(), sel); err == nil {
		n += len(l.Items)
	}
	if l, err := m.cs.CoreV1().Services(istioclient.Namespace).List(t.Context(), sel); err == nil {
		n += len(l.Items)
	}
	if l, err := m.cs.CoreV1().ServiceAccounts(istioclient.Namespace).List(t.Context(), sel); err == nil {
		n += len(l.Items)
	}
	return n
}

// TestAPIServerOutageDuringCanaryUpgrade stops the API server for 20
// seconds while the workloads move (after a random number of them) and
// starts it again: the operator lives through it, the upgrade completes,
// and every Deployment's pod template changed exactly once (its rollout
// revision is 2: the one it was created with, and the move).
func TestAPIServerOutageDuringCanaryUpgrade(t *testing.T) {
	m := setUp(t, 8)
	rng := seeded(t)
	k := startCanaryUpgrade(t, m, "2")

	moved := 1 + rng.IntN(len(m.workloads)-1)
	m.waitMoved(t, moved)
	c := cluster.Current()
	if err := c.KillComponent(t.Context(), "kube-apiserver"); err != nil {
		t.Fatal(err)
	}
	t.Logf("kube-apiserver stopped after %d of %d workloads moved", m.restarts.moved(), len(m.workloads))
	end := time.Now().Add(20 * time.Second)
	for time.Now().Before(end) {
		if err := k.op.Alive(); err != nil {
			t.Fatalf("the operator did not live through the outage: %v", err)
		}
		select {
		case <-t.Context().Done():
			t.Fatal(t.Context().Err())
		case <-time.After(200 * time.Millisecond):
		}
	}
	if _, err := c.StartComponents(t.Context()); err != nil {
		t.Fatal(err)
	}

	operatortest.WaitCondition(t, timeout, m.opNS, "default", v1alpha2.ConditionCanaryUpgrade, v1alpha2.ReasonCanaryUpgradeSucceeded, nil)
	m.waitAllOn(t, newProxy, newRev)
	for w, ns := range m.workloads {
		d, err := m.cs.AppsV1().Deployments(ns).Get(t.Context(), w[len(ns)+1:], metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if rev := d.Annotations["deployment.kubernetes.io/revision"]; rev != "2" {
			t.Errorf("%s is at rollout revision %s, want 2: restarted once", w, rev)
		}
	}
	if n := revisionObjects(t, m, istioclient.DefaultRevision); n != 0 {
		t.Errorf("%d objects of the old revision left", n)
	}
}
