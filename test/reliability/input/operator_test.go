package input

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"

	v1alpha2 "github.com/meshkeeper/istio-operator/pkg/apis/operator/v1alpha2"
	"github.com/meshkeeper/istio-operator/pkg/controllers/installation"
	"github.com/meshkeeper/istio-operator/pkg/istioclient"
	"github.com/meshkeeper/istio-operator/test/cluster"
	"github.com/meshkeeper/istio-operator/test/operatortest"
)

const timeout = 2 * time.Minute

// TestOperatorReportsWhatTheSchemaCannotCatch installs Istio, then gives the
// operator what the API server accepts but the operator cannot install as
// asked: specs of the served resource, one at a time, a second resource and
// one in another namespace. Each must end in the state, Ready reason and
// Event docs/conditions.md documents, naming the field; afterwards the
// served resource is Ready again.
func TestOperatorReportsWhatTheSchemaCannotCatch(t *testing.T) {
	cluster.InstallIstioCRD(t)
	ns := cluster.Namespace(t, nil)
	operatortest.Start(t, ns)
	operatortest.CreateIstio(t, ns, "default", v1alpha2.IstioSpec{})
	t.Cleanup(func() { operatortest.DeleteIstio(t, timeout, ns, "default") })
	waitServedReady(t, ns, timeout)

	specs := []struct {
		name string
		spec string // the whole spec, as JSON
		// The expected state, Ready reason and Installed status.
		state     v1alpha2.State
		reason    string
		installed metav1.ConditionStatus
		// field is what the Ready message and the Event must name.
		field string
		// check, when set, checks what was installed.
		check func(t *testing.T)
	}{
		{"duplicate authorizer names", `{"config":{"authorizers":[{"name":"ext","service":"first.ns.svc","port":80},{"name":"ext","service":"second.ns.svc","port":80}]}}`,
			v1alpha2.StateWarning, v1alpha2.ReasonIstioCustomResourceMisconfigured, metav1.ConditionTrue, "spec.config.authorizers[1].name",
			func(t *testing.T) {
				if mesh := meshConfig(t); !strings.Contains(mesh, "first.ns.svc") || strings.Contains(mesh, "second.ns.svc") {
					t.Errorf("the mesh config does not hold exactly the first authorizer:\n%s", mesh)
				}
			}},
		{"unclosed group in a stats regexp", `{"config":{"proxyStatsMatcher":{"inclusionRegexps":[".*ok.*","(unclosed"]}}}`,
			v1alpha2.StateError, v1alpha2.ReasonValidationFailed, metav1.ConditionFalse, "spec.config.proxyStatsMatcher.inclusionRegexps[1]", nil},
		{"lookahead, which RE2 lacks, in a stats regexp", `{"config":{"proxyStatsMatcher":{"inclusionRegexps":["(?=upstream)"]}}}`,
			v1alpha2.StateError, v1alpha2.ReasonValidationFailed, metav1.ConditionFalse, "spec.config.proxyStatsMatcher.inclusionRegexps[0]", nil},
		{"DEL in an authorizer service", `{"config":{"authorizers":[{"name":"ext","service":"ext\u007f.ns.svc","port":80}]}}`,
			v1alpha2.StateError, v1alpha2.ReasonValidationFailed, metav1.ConditionFalse, "spec.config.authorizers[0].service", nil},
		{"C1 control in an authorizer header", `{"config":{"authorizers":[{"name":"ext","service":"ext.ns.svc","port":80,"headers":{"toUpstream":{"onAllow":["x-user\u0090"]}}}]}}`,
			v1alpha2.StateError, v1alpha2.ReasonValidationFailed, metav1.ConditionFalse, "spec.config.authorizers[0].headers.toUpstream.onAllow[0]", nil},
		{"experimental ambient mode", `{"experimental":{"enableAmbient":true}}`,
			v1alpha2.StateError, v1alpha2.ReasonExperimentalFeatureNotAvailable, metav1.ConditionFalse, "spec.experimental.enableAmbient", nil},
		// Kubernetes' schema of an affinity has no enum of the operators:
		// the API server rejects the rendered DaemonSet, naming its field.
		{"unknown node affinity operator for CNI", `{"components":{"cni":{"k8s":{"affinity":{"nodeAffinity":{"requiredDuringSchedulingIgnoredDuringExecution":{"nodeSelectorTerms":[{"matchExpressions":[{"key":"a","operator":"Near","values":["b"]}]}]}}}}}}}`,
			v1alpha2.StateError, v1alpha2.ReasonIstioInstallUninstallFailed, metav1.ConditionFalse, "matchExpressions[0].operator", nil},
	}
	for _, tc := range specs {
		t.Run(tc.name, func(t *testing.T) {
			setSpec(t, ns, tc.spec)
			i := operatortest.WaitForState(t, 30*time.Second, ns, "default", tc.state,
				v1alpha2.ConditionReady, metav1.ConditionFalse, tc.reason)
			ready := meta.FindStatusCondition(i.Status.Conditions, v1alpha2.ConditionReady)
			if !strings.Contains(ready.Message, tc.field) {
				t.Errorf("Ready message %q does not name %s", ready.Message, tc.field)
			}
			c := meta.FindStatusCondition(i.Status.Conditions, v1alpha2.ConditionInstalled)
			if c == nil || c.Status != tc.installed || (tc.installed == metav1.ConditionFalse && c.Reason != tc.reason) {
				t.Errorf("Installed condition %+v, want %s (%s)", c, tc.installed, tc.reason)
			}
			if !operatortest.HasEventWith(t, ns, "default", tc.reason, tc.field) {
				t.Errorf("no %s Event naming %s; events: %v", tc.reason, tc.field, operatortest.Events(t, ns, "default"))
			}
			if tc.check != nil {
				tc.check(t)
			}

			setSpec(t, ns, `{}`)
			waitServedReady(t, ns, timeout)
		})
	}

	t.Run("a second resource", func(t *testing.T) {
		operatortest.CreateIstio(t, ns, "second", v1alpha2.IstioSpec{Config: v1alpha2.Config{NumTrustedProxies: ptr.To[int64](4)}})
		ignored(t, ns, ns, "second", v1alpha2.StateWarning, v1alpha2.ReasonOlderCRExists, ns+"/default")
		if strings.Contains(meshConfig(t), "numTrustedProxies: 4") {
			t.Error("the ignored resource's numTrustedProxies reached the mesh config")
		}
	})

	t.Run("a resource in another namespace", func(t *testing.T) {
		other := cluster.Namespace(t, nil)
		operatortest.CreateIstio(t, other, "default", v1alpha2.IstioSpec{})
		ignored(t, ns, other, "default", v1alpha2.StateError, v1alpha2.ReasonWrongNamespace, "namespace "+ns)
	})
}

// TestInvalidSpecAtCreationInstallsNothing creates the first resource with
// a spec the operator refuses: it is reported, and nothing is installed.
func TestInvalidSpecAtCreationInstallsNothing(t *testing.T) {
	cluster.InstallIstioCRD(t)
	ns := cluster.Namespace(t, nil)
	operatortest.Start(t, ns)
	operatortest.CreateIstio(t, ns, "default", v1alpha2.IstioSpec{Config: v1alpha2.Config{
		ProxyStatsMatcher: &v1alpha2.ProxyStatsMatcher{InclusionRegexps: []string{"(unclosed"}},
	}})
	t.Cleanup(func() { operatortest.DeleteIstio(t, timeout, ns, "default") })
	i := operatortest.WaitForState(t, 30*time.Second, ns, "default", v1alpha2.StateError,
		v1alpha2.ConditionReady, metav1.ConditionFalse, v1alpha2.ReasonValidationFailed)
	c := meta.FindStatusCondition(i.Status.Conditions, v1alpha2.ConditionReady)
	if !strings.Contains(c.Message, "spec.config.proxyStatsMatcher.inclusionRegexps[0]") {
		t.Errorf("message %q does not name the field", c.Message)
	}
	if !operatortest.HasEvent(t, ns, "default", v1alpha2.ReasonValidationFailed) {
		t.Error("no ValidationFailed Event")
	}
	if _, err := cluster.Current().Clientset().AppsV1().Deployments(istioclient.Namespace).Get(t.Context(), "istiod", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("istiod exists although the spec is invalid (err %v)", err)
	}
}

// ignored checks that a resource the operator does not serve gets the state
// and reason, a message naming text, the Event, and no finalizer, while the
// served resource (in servedNS) stays Ready; then it deletes the resource.
func ignored(t *testing.T, servedNS, ns, name string, state v1alpha2.State, reason, text string) {
	t.Helper()
	i := operatortest.WaitForState(t, 30*time.Second, ns, name, state, v1alpha2.ConditionReady, metav1.ConditionFalse, reason)
	if c := meta.FindStatusCondition(i.Status.Conditions, v1alpha2.ConditionReady); !strings.Contains(c.Message, text) {
		t.Errorf("message %q does not name %s", c.Message, text)
	}
	if c := meta.FindStatusCondition(i.Status.Conditions, v1alpha2.ConditionInstalled); c != nil {
		t.Errorf("the ignored resource carries %+v; only the served one does", c)
	}
	if slices.Contains(i.Finalizers, installation.Finalizer) {
		t.Errorf("the ignored resource got the finalizer: %v", i.Finalizers)
	}
	if !operatortest.HasEventWith(t, ns, name, reason, text) {
		t.Errorf("no %s Event naming %s; events: %v", reason, text, operatortest.Events(t, ns, name))
	}
	waitServedReady(t, servedNS, 10*time.Second)
	operatortest.DeleteIstio(t, 30*time.Second, ns, name)
}

// waitServedReady waits until the served resource is Ready at its
// generation with every controller's condition True.
func waitServedReady(t *testing.T, ns string, within time.Duration) {
	t.Helper()
	operatortest.WaitForState(t, within, ns, "default", v1alpha2.StateReady,
		v1alpha2.ConditionReady, metav1.ConditionTrue, v1alpha2.ReasonReconcileSucceeded)
}

// setSpec replaces the spec of the served resource.
func setSpec(t *testing.T, ns, spec string) {
	t.Helper()
	istios := operatortest.Client(t).OperatorV1alpha2().Istios(ns)
	// A JSON merge patch merges into the old spec: remove that first.
	for _, p := range []string{`{"spec":null}`, `{"spec":` + spec + `}`} {
		if _, err := istios.Patch(t.Context(), "default", types.MergePatchType, []byte(p), metav1.PatchOptions{}); err != nil {
			t.Fatalf("patching %s: %v", p, err)
		}
	}
}

// meshConfig is the mesh configuration Istio runs with.
func meshConfig(t *testing.T) string {
	t.Helper()
	var mesh string
	cluster.WaitFor(t, 10*time.Second, "the istio ConfigMap", func(ctx context.Context) (bool, error) {
		cm, err := cluster.Current().Clientset().CoreV1().ConfigMaps(istioclient.Namespace).Get(ctx, "istio", metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		mesh = cm.Data["mesh"]
		return true, nil
	})
	return mesh
}
