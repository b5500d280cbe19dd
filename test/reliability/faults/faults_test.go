package faults

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	v1alpha2 "github.com/meshkeeper/istio-operator/pkg/apis/operator/v1alpha2"
	"github.com/meshkeeper/istio-operator/test/operatorproc"
)

const (
	// kills is how many times each kill scenario kills the operator.
	kills = 10
	// installKillWrites bounds the random kill point of the install: the
	// operator is killed after 1 to this many write requests of its own.
	// A fresh install writes more than this before Istio is installed; a
	// resumed one may not (the run before may have applied every object and
	// been killed before its summary), and then the kills end early.
	installKillWrites = 12
	// minInstallKills is how many kills must land in the install.
	minInstallKills = 3

	outage = 30 * time.Second
	// recoveryLimit is how soon after the API server's return the operator
	// must be restarting workloads again.
	recoveryLimit = 60 * time.Second
	// cacheCatchUp bounds the wait for the harness's own informers after
	// an outage: client-go's reflector backoff can keep a watch away for
	// about a minute, the test cluster's clients hold requests instead.
	cacheCatchUp = 90 * time.Second

	// Leader election of the failover scenario: short, so that the test is.
	leaseDuration = 8 * time.Second
	renewDeadline = 6 * time.Second
	retryPeriod   = 1 * time.Second
)

// TestKillDuringInstall comes first: it needs a cluster without Istio, and
// installs it for the tests after it.
//
// It kills the operator with SIGKILL up to ten times while it installs
// Istio, each time after a random number of its write requests, and
// restarts it at once, as its Deployment would; the kills end when a
// resumed run finishes the install before its kill point, after at least
// minInstallKills. The install must complete, and Istio's own Deployments
// must not have been rolled by the repeated applies.
func TestKillDuringInstall(t *testing.T) {
	e := setup(t)
	rng := seeded(t)

	op := e.startOperator(t, "operator-0")
	if err := op.WaitReady(t.Context(), readyTimeout); err != nil {
		t.Fatal(err)
	}
	created := e.createIstio(t)
	var restarted time.Time
	for i := range kills {
		point := 1 + rng.IntN(installKillWrites)
		var writes float64
		var i2 *v1alpha2.Istio
		// A resumed run may finish the install in fewer writes than the kill
		// point and then write nothing more: the wait ends either way.
		e.waitFor(t, installTimeout, fmt.Sprintf("the operator's write request %d or the install's end", point), func(ctx context.Context) (bool, error) {
			m, err := op.Scrape(ctx)
			if err != nil {
				return false, err
			}
			writes = m.Requests().Writes()
			if i2, err = e.istio(ctx); err != nil {
				return false, err
			}
			return writes >= float64(point) || conditionTrue(i2, v1alpha2.ConditionInstalled, created.Generation) == nil, nil
		}, op)
		if conditionTrue(i2, v1alpha2.ConditionInstalled, created.Generation) == nil {
			if i < minInstallKills {
				t.Fatalf("kill %d: Istio was installed before the operator's write request %d; lower installKillWrites", i+1, point)
			}
			t.Logf("the run after kill %d installed Istio before its write request %d: no install left to kill", i, point)
			break
		}
		if err := op.Kill(); err != nil {
			t.Fatal(err)
		}
		restarted = time.Now()
		step := "no Ready condition yet"
		if c := meta.FindStatusCondition(i2.Status.Conditions, v1alpha2.ConditionReady); c != nil {
			step = c.Message
		}
		op = e.startOperator(t, fmt.Sprintf("operator-%d", i+1))
		if err := op.WaitReady(t.Context(), readyTimeout); err != nil {
			t.Fatal(err)
		}
		t.Logf("kill %d after write %.0f (%s); restarted, ready after %s", i+1, writes, step, since(restarted))
	}
	e.waitCondition(t, v1alpha2.ConditionReady, created.Generation, installTimeout, op)
	t.Logf("Istio installed: Ready=True %s after the last restart, %s after the resource was created",
		since(restarted), since(created.CreationTimestamp.Time))
	// The install is the only writer of a fresh cluster's Istio: its spec
	// must not have changed at all.
	for _, c := range e.checkIstioNotRolled(t) {
		t.Errorf("%s: the repeated installs changed it", c)
	}
}

// checkIstioNotRolled checks that each of Istio's Deployments has one
// ReplicaSet and is at its first revision: its pod template never changed,
// so the installs cut short restarted none of Istio's pods. It returns the
// Deployments whose spec changed otherwise (generation above 1), with who
// wrote them, for the caller to judge.
func (e *env) checkIstioNotRolled(t *testing.T) []string {
	t.Helper()
	ds, err := e.cs.AppsV1().Deployments("istio-system").List(t.Context(), metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	rss, err := e.cs.AppsV1().ReplicaSets("istio-system").List(t.Context(), metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	owned := map[string]int{}
	for _, rs := range rss.Items {
		if owner := metav1.GetControllerOf(&rs); owner != nil {
			owned[owner.Name]++
		}
	}
	if len(ds.Items) == 0 {
		t.Fatal("no Deployment in istio-system")
	}
	var changed []string
	for _, d := range ds.Items {
		if revision := d.Annotations["deployment.kubernetes.io/revision"]; owned[d.Name] != 1 || revision != "1" {
			t.Errorf("Deployment istio-system/%s was rolled after it was created: revision %q, %d ReplicaSets", d.Name, revision, owned[d.Name])
		}
		if d.Generation != 1 {
			var writers []string
			for _, m := range d.ManagedFields {
				writers = append(writers, fmt.Sprintf("%s %s %s at %s", m.Manager, m.Operation, m.Subresource, m.Time))
			}
			changed = append(changed, fmt.Sprintf("Deployment istio-system/%s at generation %d, written by %v", d.Name, d.Generation, writers))
		}
	}
	return changed
}

// TestKillDuringRestartWave kills the operator with SIGKILL ten times
// during a restart wave of 200 workloads, each time once a random number
// of them has been restarted, and restarts it at once. Every workload must
// be restarted exactly once.
func TestKillDuringRestartWave(t *testing.T) {
	e := setup(t)
	rng := seeded(t)
	e.workloads(t)

	op := e.startOperator(t, "operator-0")
	if err := op.WaitReady(t.Context(), readyTimeout); err != nil {
		t.Fatal(err)
	}
	w := e.startWave(t)
	var restarted time.Time
	for i, point := range killPoints(rng, kills, workloads) {
		e.waitPatched(t, w, point, op)
		at := e.patched(w)
		if err := op.Kill(); err != nil {
			t.Fatal(err)
		}
		restarted = time.Now()
		op = e.startOperator(t, fmt.Sprintf("operator-%d", i+1))
		if err := op.WaitReady(t.Context(), readyTimeout); err != nil {
			t.Fatal(err)
		}
		ready := since(restarted)
		if at == workloads {
			t.Logf("kill %d after %d of %d workloads restarted (rollouts in progress); restarted, ready after %s", i+1, at, workloads, ready)
			continue
		}
		e.waitPatched(t, w, at+1, op)
		t.Logf("kill %d after %d of %d workloads restarted; restarted, ready after %s, restarting workloads again after %s",
			i+1, at, workloads, ready, since(restarted))
	}
	e.waitConverged(t, w, op)
	t.Logf("wave converged %s after the last restart, %s after the change", since(restarted), since(w.start))
	e.checkRestartedOnce(t, w)
}

// killPoints draws n distinct numbers of restarted workloads in [1, total],
// ascending: total itself means "after the last restart patch, while the
// rollouts run".
func killPoints(rng *rand.Rand, n, total int) []int {
	points := rng.Perm(total)[:n]
	for i := range points {
		points[i]++
	}
	slices.Sort(points)
	return points
}

// TestAPIServerOutage stops kube-apiserver for 30 seconds in the middle of
// a restart wave. The operator must not exit, must restart workloads again
// within 60 seconds of the API server's return, and must restart every
// workload exactly once.
//
// It runs with leader election and a renew deadline longer than the
// outage: with the default 10 s deadline the leader cannot renew its lease
// and exits by design, so that its Deployment restarts it.
func TestAPIServerOutage(t *testing.T) {
	e := setup(t)
	rng := seeded(t)
	e.workloads(t)

	op := e.startOperator(t, "operator",
		"--leader-elect", "--leader-election-id", "faults-outage",
		"--leader-election-lease-duration", "90s",
		"--leader-election-renew-deadline", "60s",
		"--leader-election-retry-period", "2s")
	if err := op.WaitReady(t.Context(), readyTimeout); err != nil {
		t.Fatal(err)
	}
	w := e.startWave(t)
	point := workloads/10 + rng.IntN(workloads/2)
	e.waitPatched(t, w, point, op)

	ctx := t.Context()
	if err := e.cluster.KillComponent(ctx, "kube-apiserver"); err != nil {
		t.Fatal(err)
	}
	down := time.Now()
	t.Logf("kube-apiserver killed after %d of %d workloads restarted", e.patched(w), workloads)
	// The outage lasts its full length; the operator must live through it.
	e.hold(t, outage, op)
	restarted, err := e.cluster.StartComponents(ctx)
	if err != nil {
		t.Fatal(err)
	}
	back := time.Now()
	t.Logf("kube-apiserver back after %s (started again: %s)", since(down), strings.Join(restarted, ", "))

	// The first count after the return holds every restart of before the
	// outage; recovery is the first restart after it.
	before := -1
	e.waitFor(t, recoveryLimit, "the operator to restart a workload after the API server's return", func(ctx context.Context) (bool, error) {
		n, err := e.restartedForWave(ctx, w)
		if err != nil {
			return false, err
		}
		if before < 0 {
			before = n
		}
		return n > before, nil
	}, op)
	t.Logf("operator restarting workloads again %s after the API server's return (%d of %d restarted before)", since(back), before, workloads)
	e.waitConverged(t, w, op)
	t.Logf("wave converged %s after the API server's return", since(back))
	e.checkRestartedOnce(t, w)
}

// hold waits for d, failing at once should one of ops exit.
func (e *env) hold(t *testing.T, d time.Duration, ops ...*operatorproc.Process) {
	t.Helper()
	end := time.Now().Add(d)
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for time.Now().Before(end) {
		for _, op := range ops {
			if err := op.Alive(); err != nil {
				t.Fatal(err)
			}
		}
		select {
		case <-t.Context().Done():
			t.Fatal(t.Context().Err())
		case <-tick.C:
		}
	}
}

// restartedForWave counts, straight from the API server, the workloads
// whose restart annotation changed since the wave began.
func (e *env) restartedForWave(ctx context.Context, w *wave) (int, error) {
	now, err := e.snapshot(ctx)
	if err != nil {
		return 0, err
	}
	n := 0
	for key, d := range now {
		if d.restartedFor != w.before[key].restartedFor {
			n++
		}
	}
	return n, nil
}

// TestLeaderFailover runs two replicas with leader election and kills the
// leader with SIGKILL in the middle of a restart wave. The other replica
// must take the lease within the lease duration plus the retry slack, and
// finish the wave with every workload restarted exactly once; until then
// it must not have written anything.
func TestLeaderFailover(t *testing.T) {
	e := setup(t)
	rng := seeded(t)
	e.workloads(t)

	flags := []string{"--leader-elect", "--leader-election-id", "faults-failover",
		"--leader-election-lease-duration", leaseDuration.String(),
		"--leader-election-renew-deadline", renewDeadline.String(),
		"--leader-election-retry-period", retryPeriod.String()}
	replicas := []*operatorproc.Process{e.startOperator(t, "replica-a", flags...), e.startOperator(t, "replica-b", flags...)}
	for _, r := range replicas {
		if err := r.WaitReady(t.Context(), readyTimeout); err != nil {
			t.Fatal(err)
		}
	}
	leader, standby := e.waitLeader(t, "faults-failover", replicas...)

	w := e.startWave(t)
	point := workloads/10 + rng.IntN(workloads*8/10)
	e.waitPatched(t, w, point, replicas...)
	e.checkIdle(t, standby)

	if err := leader.Kill(); err != nil {
		t.Fatal(err)
	}
	killed := time.Now()
	t.Logf("leader (pid %d) killed after %d of %d workloads restarted", leader.PID(), e.patched(w), workloads)
	want := identity(t, standby)
	e.waitFor(t, 2*leaseDuration, "the standby to take the lease", func(ctx context.Context) (bool, error) {
		holder, err := e.leaseHolder(ctx, "faults-failover")
		return holder == want, err
	}, standby)
	takeover := time.Since(killed)
	// client-go spaces a standby's attempts by 1 to 2.2 retry periods: one
	// such gap may pass before it sees the last renewal, and another after
	// the lease has expired.
	if limit := leaseDuration + 5*retryPeriod; takeover > limit {
		t.Errorf("the standby took the lease %s after the leader was killed; want at most %s (lease duration %s plus two jittered retry periods)",
			takeover.Round(100*time.Millisecond), limit, leaseDuration)
	}
	t.Logf("standby (pid %d) took the lease %s after the kill (lease duration %s)", standby.PID(), takeover.Round(100*time.Millisecond), leaseDuration)
	e.waitConverged(t, w, standby)
	t.Logf("wave converged %s after the kill", since(killed))
	e.checkRestartedOnce(t, w)
}

// identity is the leader election identity of a replica: host name and pid.
func identity(t *testing.T, p *operatorproc.Process) string {
	t.Helper()
	host, err := os.Hostname()
	if err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("%s_%d", host, p.PID())
}

func (e *env) leaseHolder(ctx context.Context, name string) (string, error) {
	l, err := e.cs.CoordinationV1().Leases(istioNamespace).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return "", err
	}
	if l.Spec.HolderIdentity == nil {
		return "", nil
	}
	return *l.Spec.HolderIdentity, nil
}

// waitLeader waits until one of two replicas holds the lease and returns
// it and the other.
func (e *env) waitLeader(t *testing.T, lease string, replicas ...*operatorproc.Process) (leader, standby *operatorproc.Process) {
	t.Helper()
	e.waitFor(t, 2*leaseDuration, "a leader", func(ctx context.Context) (bool, error) {
		holder, err := e.leaseHolder(ctx, lease)
		if err != nil {
			return false, err
		}
		for i, r := range replicas {
			if holder == identity(t, r) {
				leader, standby = r, replicas[1-i]
				return true, nil
			}
		}
		return false, fmt.Errorf("lease held by %q", holder)
	}, replicas...)
	return leader, standby
}

// checkIdle checks that a standby has written nothing but its attempts to
// take the lease.
func (e *env) checkIdle(t *testing.T, standby *operatorproc.Process) {
	t.Helper()
	m, err := standby.Scrape(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	for key, n := range m.Requests().ByResource {
		verb, resource, _ := strings.Cut(key, " ")
		if resource != "leases" && operatorproc.IsWrite(verb) {
			t.Errorf("the standby wrote while the other replica led: %.0f %s requests", n, key)
		}
	}
}
