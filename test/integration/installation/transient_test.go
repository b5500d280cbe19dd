package installation

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	v1alpha2 "github.com/meshkeeper/istio-operator/pkg/apis/operator/v1alpha2"
	"github.com/meshkeeper/istio-operator/pkg/operator"
	"github.com/meshkeeper/istio-operator/test/cluster"
	"github.com/meshkeeper/istio-operator/test/operatortest"
)

// TestTransientRenderFailureRecovers: while the API server refuses the
// render's read of its version (503), the installation reports the failure
// and retries with backoff; once the API server answers again, Istio is
// installed with no other event: nothing about the resource or the cluster
// changes in between.
func TestTransientRenderFailureRecovers(t *testing.T) {
	cluster.InstallIstioCRD(t)
	proxy := cluster.NewFaultProxy(t)
	proxy.Refuse(func(r *http.Request) bool { return r.Method == http.MethodGet && r.URL.Path == "/version" })
	ns := cluster.Namespace(t, nil)
	operatortest.StartWith(t, ns, operatortest.Options{Configure: func(o *operator.Options) { o.Kubeconfig = proxy.Kubeconfig }})
	operatortest.CreateIstio(t, ns, "default", v1alpha2.IstioSpec{})
	t.Cleanup(func() { operatortest.DeleteIstio(t, installTimeout, ns, "default") })

	istio := operatortest.WaitForState(t, installTimeout, ns, "default", v1alpha2.StateError,
		v1alpha2.ConditionInstalled, metav1.ConditionFalse, v1alpha2.ReasonIstioInstallUninstallFailed)
	c := meta.FindStatusCondition(istio.Status.Conditions, v1alpha2.ConditionInstalled)
	if !strings.Contains(c.Message, "Rendering Istio") || !strings.Contains(c.Message, "is retried") {
		t.Errorf("Installed message %q does not say the rendering failed and is retried", c.Message)
	}
	// Retried with backoff while refused, not once and forgotten.
	cluster.WaitFor(t, 30*time.Second, "three refused reads", func(context.Context) (bool, error) {
		if n := len(proxy.Refused()); n < 3 {
			return false, fmt.Errorf("%d refused: %v", n, proxy.Refused())
		}
		return true, nil
	})
	// The retries need no event: the resource is not written between them.
	before, err := operatortest.Client(t).OperatorV1alpha2().Istios(ns).Get(t.Context(), "default", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	refused := len(proxy.Refused())
	cluster.WaitFor(t, time.Minute, "another retry", func(context.Context) (bool, error) {
		return len(proxy.Refused()) > refused, nil
	})
	after, err := operatortest.Client(t).OperatorV1alpha2().Istios(ns).Get(t.Context(), "default", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if after.ResourceVersion != before.ResourceVersion {
		t.Errorf("the resource was written between two retries (resourceVersion %s, was %s)", after.ResourceVersion, before.ResourceVersion)
	}
	generation := after.Generation

	proxy.Refuse(nil)
	start := time.Now()
	istio = operatortest.WaitForState(t, installTimeout, ns, "default", v1alpha2.StateReady,
		v1alpha2.ConditionInstalled, metav1.ConditionTrue, v1alpha2.ReasonIstioInstallSucceeded)
	t.Logf("installed %v after the API server answered again, %d reads refused before",
		time.Since(start).Round(10*time.Millisecond), len(proxy.Refused()))
	if istio.Generation != generation {
		t.Errorf("the spec changed (generation %d, was %d): the recovery was not on its own", istio.Generation, generation)
	}
}
