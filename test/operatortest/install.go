package operatortest

import (
	"context"
	"fmt"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/restmapper"

	v1alpha2 "github.com/meshkeeper/istio-operator/pkg/apis/operator/v1alpha2"
	"github.com/meshkeeper/istio-operator/pkg/istioclient"
	"github.com/meshkeeper/istio-operator/test/cluster"
)

// InstallIstio installs Istio as another tool would, before the operator
// runs: the same charts, with the images (and version labels) of tag.
func InstallIstio(t *testing.T, tag string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(cluster.Context(t), 3*time.Minute)
	defer cancel()
	if err := Install(ctx, cluster.Current(), tag); err != nil {
		t.Fatal(err)
	}
}

// Install is InstallIstio on cluster c, for a harness without a test.
func Install(ctx context.Context, c *cluster.Cluster, tag string) error {
	iop, err := istioclient.DesiredIstioOperator(&v1alpha2.IstioSpec{})
	if err != nil {
		return err
	}
	if err := iop.SetPath("spec.tag", tag); err != nil {
		return err
	}
	r, err := istioclient.Render(iop, nil)
	if err != nil {
		return err
	}
	inst := installerFor(c)
	if err := inst.Apply(ctx, r, istioclient.MakePlan(r, inst.Live)); err != nil {
		return fmt.Errorf("installing Istio %s: %w", tag, err)
	}
	return nil
}

// testInstaller is an installer that reads the current cluster directly.
func testInstaller() *istioclient.Installer { return installerFor(cluster.Current()) }

// installerFor is an installer that reads cluster c directly.
func installerFor(c *cluster.Cluster) *istioclient.Installer {
	mapper := restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(c.Clientset().Discovery()))
	live := &apiLive{client: c.Dynamic(), mapper: mapper}
	return &istioclient.Installer{Dynamic: c.Dynamic(), Mapper: mapper, Live: live, WaitTimeout: 2 * time.Minute}
}

// apiLive reads objects straight from the API server: fine for a test's
// one-off install, never for the operator.
type apiLive struct {
	client dynamic.Interface
	mapper *restmapper.DeferredDiscoveryRESTMapper
}

func (l *apiLive) resource(gvk schema.GroupVersionKind, namespace string) dynamic.ResourceInterface {
	m, err := l.mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
	if err != nil {
		l.mapper.Reset()
		return nil
	}
	if m.Scope.Name() == "namespace" {
		return l.client.Resource(m.Resource).Namespace(namespace)
	}
	return l.client.Resource(m.Resource)
}

func (l *apiLive) Get(gvk schema.GroupVersionKind, namespace, name string) *unstructured.Unstructured {
	r := l.resource(gvk, namespace)
	if r == nil {
		return nil
	}
	u, err := r.Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		return nil
	}
	return u
}

func (l *apiLive) Labelled(gvk schema.GroupVersionKind) []*unstructured.Unstructured {
	r := l.resource(gvk, "")
	if r == nil {
		return nil
	}
	list, err := r.List(context.Background(), metav1.ListOptions{LabelSelector: istioclient.OwnedSelector})
	if err != nil {
		return nil
	}
	out := make([]*unstructured.Unstructured, len(list.Items))
	for i := range list.Items {
		out[i] = &list.Items[i]
	}
	return out
}

// UninstallIstio removes an installation made by InstallIstio.
func UninstallIstio(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithTimeout(cluster.Context(t), 3*time.Minute)
	defer cancel()
	if _, err := testInstaller().Uninstall(ctx); err != nil {
		t.Fatalf("uninstalling Istio: %v", err)
	}
	WaitUninstalled(t, 2*time.Minute)
}

// WaitUninstalled waits until istiod, the revision tag webhook (which
// points at istiod and would refuse pods of injected namespaces) and the
// istio-system namespace are gone, so that the next test starts from a
// cluster without Istio.
func WaitUninstalled(t *testing.T, timeout time.Duration) {
	t.Helper()
	kube := cluster.Current().Clientset()
	cluster.WaitFor(t, timeout, "Istio uninstalled and istio-system deleted", func(ctx context.Context) (bool, error) {
		if _, err := kube.AppsV1().Deployments(istioclient.Namespace).Get(ctx, "istiod", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
			return false, err
		}
		if _, err := kube.AdmissionregistrationV1().MutatingWebhookConfigurations().Get(ctx, istioclient.TagWebhookName, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
			return false, err
		}
		_, err := kube.CoreV1().Namespaces().Get(ctx, istioclient.Namespace, metav1.GetOptions{})
		return apierrors.IsNotFound(err), nil
	})
}
