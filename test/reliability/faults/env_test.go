// Package faults injects faults into the operator binary and its cluster
// and checks, from the API server's side, that the operator converges and
// restarts every workload exactly once: SIGKILL of the operator during the
// install and during a restart wave, an API server outage in the middle of
// a wave, and the loss of the leader of two replicas. docs/reliability.md
// describes the scenarios and their figures.
package faults

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/klog/v2"

	v1alpha2 "github.com/meshkeeper/istio-operator/pkg/apis/operator/v1alpha2"
	"github.com/meshkeeper/istio-operator/pkg/generated/clientset/versioned"
	"github.com/meshkeeper/istio-operator/test/cluster"
	"github.com/meshkeeper/istio-operator/test/operatorproc"
	"github.com/meshkeeper/istio-operator/test/workload"
)

const (
	istioNamespace = "kyma-system"
	istioName      = "default"

	// The workloads every wave restarts: enough that a wave takes a while
	// at the operator's pace, so that faults land in the middle of it.
	workloads  = 200
	namespaces = 4
	// workloadLabel selects the workloads and their pods.
	workloadLabel = "faults.meshkeeper.io/workload"

	// SeedEnv sets the seed of the random fault points, to repeat a run.
	SeedEnv = "FAULTS_SEED"

	installTimeout = 5 * time.Minute
	waveTimeout    = 5 * time.Minute
	readyTimeout   = 2 * time.Minute
)

func TestMain(m *testing.M) {
	// The harness's informers and the injector log every failed watch while
	// the API server is down; the tests report what matters.
	klog.SetLogger(logr.Discard())
	// The cluster runs without client-side limits: a wave rolls 200
	// Deployments, and kube-controller-manager's default 20 QPS would make
	// the rollouts, not the operator, the slow part.
	cluster.Main(m, cluster.Options{Nodes: 1, DisableQPSLimits: true, QPS: 500, Burst: 1000})
}

// env is what the tests share: the cluster (with the real istiod behind
// the installed one), the operator binary and the workloads, built by the
// first test that needs them.
type env struct {
	binary  string
	logDir  string
	cluster *cluster.Cluster
	cs      kubernetes.Interface
	istios  versioned.Interface

	wlOnce sync.Once
	wl     *workload.Set
	wlErr  error
	// lastCPU is the sidecar CPU request, in millicores, of the last wave.
	lastCPU int64
}

var (
	sharedOnce sync.Once
	shared     *env
	sharedErr  error
)

// setup returns the shared environment: the operator built, the CRD and the
// operator's namespace created. The real istiod behind the installed one
// injects the workloads' pods.
func setup(t *testing.T) *env {
	t.Helper()
	sharedOnce.Do(func() { shared, sharedErr = newEnv(t) })
	switch {
	case sharedErr != nil:
		t.Fatal(sharedErr)
	case shared == nil:
		t.Fatal("setting up the shared environment failed in an earlier test")
	}
	return shared
}

func newEnv(t *testing.T) (*env, error) {
	ctx := context.Background()
	c := cluster.Current()
	root, err := cluster.RepoRoot()
	if err != nil {
		return nil, err
	}
	e := &env{logDir: filepath.Join(root, ".cache", "faults"), cluster: c, cs: c.Clientset()}
	if e.istios, err = versioned.NewForConfig(c.Config); err != nil {
		return nil, err
	}
	// The binary under test is built from this tree, as CI checks it out.
	e.binary = filepath.Join(e.logDir, "istio-operator")
	start := time.Now()
	if err := operatorproc.Build(ctx, root, e.binary); err != nil {
		return nil, err
	}
	t.Logf("built %s in %s", e.binary, since(start))

	cluster.InstallIstioCRD(t)
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: istioNamespace}}
	if _, err := e.cs.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return nil, err
	}
	return e, nil
}

// seeded returns the test's random source; FAULTS_SEED repeats a run's
// fault points.
func seeded(t *testing.T) *rand.Rand { return operatorproc.Seeded(t, SeedEnv) }

// startOperator starts the operator binary with the flags every scenario
// uses plus extra. It is stopped when the test ends, unless the test has
// killed it.
func (e *env) startOperator(t *testing.T, name string, extra ...string) *operatorproc.Process {
	t.Helper()
	args := append([]string{
		"--kubeconfig", e.cluster.Kubeconfig,
		"--namespace", istioNamespace,
		"--log-level", "debug",
		// A pace at which a 200-workload wave takes about ten seconds of
		// patches: faults land in it, and the test stays short.
		"--proxy-restarts-per-second", "20",
	}, extra...)
	logPath := filepath.Join(e.logDir, t.Name(), name+".log")
	p, err := operatorproc.Start(e.binary, logPath, args, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := p.Stop(30 * time.Second); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	})
	return p
}

// waitFor polls cond until it holds. An error from cond counts as "not
// yet", since requests fail while the faults last; the last one is
// reported on timeout. Any of ops exiting fails the test at once.
func (e *env) waitFor(t *testing.T, timeout time.Duration, what string, cond func(context.Context) (bool, error), ops ...*operatorproc.Process) {
	t.Helper()
	if err := e.poll(t.Context(), timeout, what, cond, ops...); err != nil {
		t.Fatal(err)
	}
}

func (e *env) poll(ctx context.Context, timeout time.Duration, what string, cond func(context.Context) (bool, error), ops ...*operatorproc.Process) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var lastErr error
	err := wait.PollUntilContextCancel(ctx, 50*time.Millisecond, true, func(ctx context.Context) (bool, error) {
		for _, op := range ops {
			if err := op.Alive(); err != nil {
				return false, err
			}
		}
		ok, err := cond(ctx)
		if err != nil && ctx.Err() == nil {
			lastErr = err
			return false, nil
		}
		return ok, nil
	})
	switch {
	case err == nil:
		return nil
	case ctx.Err() == nil || !errors.Is(err, context.DeadlineExceeded):
		return fmt.Errorf("waiting for %s: %w", what, err)
	case lastErr != nil:
		return fmt.Errorf("timed out after %s waiting for %s (last error: %v)", timeout, what, lastErr)
	default:
		return fmt.Errorf("timed out after %s waiting for %s", timeout, what)
	}
}

// istio reads the Istio resource.
func (e *env) istio(ctx context.Context) (*v1alpha2.Istio, error) {
	return e.istios.OperatorV1alpha2().Istios(istioNamespace).Get(ctx, istioName, metav1.GetOptions{})
}

// conditionTrue reports whether the condition is True for generation gen
// or a later one.
func conditionTrue(i *v1alpha2.Istio, typ string, gen int64) error {
	c := meta.FindStatusCondition(i.Status.Conditions, typ)
	switch {
	case c == nil:
		return fmt.Errorf("no %s condition yet", typ)
	case c.ObservedGeneration < gen:
		return fmt.Errorf("%s describes generation %d, not %d", typ, c.ObservedGeneration, gen)
	case c.Status != metav1.ConditionTrue:
		return fmt.Errorf("%s=%s (%s: %s)", typ, c.Status, c.Reason, c.Message)
	}
	return nil
}

// waitCondition waits until the condition is True for generation gen.
func (e *env) waitCondition(t *testing.T, typ string, gen int64, timeout time.Duration, ops ...*operatorproc.Process) {
	t.Helper()
	e.waitFor(t, timeout, fmt.Sprintf("%s=True at generation %d", typ, gen), func(ctx context.Context) (bool, error) {
		i, err := e.istio(ctx)
		if err != nil {
			return false, err
		}
		if err := conditionTrue(i, typ, gen); err != nil {
			return false, err
		}
		return true, nil
	}, ops...)
}

// createIstio creates the Istio resource; it must not exist yet, so that
// what follows is a fresh install.
func (e *env) createIstio(t *testing.T) *v1alpha2.Istio {
	t.Helper()
	if _, err := e.istio(t.Context()); err == nil {
		t.Fatalf("Istio %s/%s exists already: the install scenario needs a cluster without Istio (run it first)", istioNamespace, istioName)
	}
	created, err := e.istios.OperatorV1alpha2().Istios(istioNamespace).Create(t.Context(),
		&v1alpha2.Istio{ObjectMeta: metav1.ObjectMeta{Name: istioName, Namespace: istioNamespace}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("creating the Istio resource: %v", err)
	}
	return created
}

// installed makes sure Istio is installed, with an operator of its own when
// no earlier test installed it.
func (e *env) installed(t *testing.T) {
	t.Helper()
	i, err := e.istio(t.Context())
	missing := apierrors.IsNotFound(err)
	switch {
	case err == nil && conditionTrue(i, v1alpha2.ConditionInstalled, i.Generation) == nil:
		return
	case err != nil && !missing:
		t.Fatal(err)
	}
	op := e.startOperator(t, "installer")
	if err := op.WaitReady(t.Context(), readyTimeout); err != nil {
		t.Fatal(err)
	}
	if missing {
		i = e.createIstio(t)
	}
	e.waitCondition(t, v1alpha2.ConditionReady, i.Generation, installTimeout, op)
	if err := op.Stop(30 * time.Second); err != nil {
		t.Fatal(err)
	}
}

// workloads creates the injected workloads once, after Istio is installed,
// and waits until every pod runs with a sidecar.
func (e *env) workloads(t *testing.T) *workload.Set {
	t.Helper()
	e.installed(t)
	e.wlOnce.Do(func() { e.wl, e.wlErr = e.createWorkloads(t) })
	if e.wlErr != nil {
		t.Fatal(e.wlErr)
	}
	return e.wl
}

func (e *env) createWorkloads(t *testing.T) (*workload.Set, error) {
	ctx := context.Background()
	start := time.Now()
	wl := workload.New(e.cs, workloadLabel, "faults", workloads, 1, namespaces)
	// The informers run as long as the test binary: waves in later tests
	// read them too.
	if err := wl.StartInformers(ctx); err != nil {
		return nil, err
	}
	if err := wl.CreateNamespaces(ctx, time.Minute); err != nil {
		return nil, err
	}
	if err := wl.CreateDeployments(ctx); err != nil {
		return nil, err
	}
	err := e.poll(ctx, readyTimeout, fmt.Sprintf("%d pods running with a sidecar", workloads), func(context.Context) (bool, error) {
		st, err := wl.PodsAt("")
		if err != nil {
			return false, err
		}
		if st.Total != workloads || st.Current != workloads {
			return false, fmt.Errorf("%d pods, %d running with a sidecar; e.g. %s", st.Total, st.Current, st.Sample)
		}
		return true, nil
	})
	if err != nil {
		return nil, err
	}
	t.Logf("%d workloads running with a sidecar after %s", workloads, since(start))
	return wl, nil
}

func since(t time.Time) time.Duration { return time.Since(t).Round(100 * time.Millisecond) }
