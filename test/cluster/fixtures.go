package cluster

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apiextensionsclient "k8s.io/apiextensions-apiserver/pkg/client/clientset/clientset"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/yaml"

	"github.com/meshkeeper/istio-operator/test/istiod"
)

// IstioCRDFile is the operator's CRD, relative to the repository root.
const IstioCRDFile = "deploy/crds/operator.kyma-project.io_istios.yaml"

// NewDeployment returns a Deployment scheduled on the kwok nodes. No
// container ever runs, so the image is never pulled.
func NewDeployment(name string, replicas int32) *appsv1.Deployment {
	podLabels := map[string]string{"app": name}
	return &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To(replicas),
			Selector: &metav1.LabelSelector{MatchLabels: podLabels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: podLabels},
				Spec: corev1.PodSpec{
					NodeSelector: map[string]string{NodeTypeLabel: "kwok"},
					Containers:   []corev1.Container{{Name: "app", Image: "registry.k8s.io/pause:3.10"}},
				},
			},
		},
	}
}

// InstallIstioCRD creates the operator's CRD in the current cluster (or
// keeps it, when an earlier test created it) and waits until the API
// server serves Istio objects. It returns the CRD as read from the file.
func InstallIstioCRD(t *testing.T) *apiextensionsv1.CustomResourceDefinition {
	t.Helper()
	root, err := RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(filepath.Join(root, IstioCRDFile))
	if err != nil {
		t.Fatalf("reading the CRD (make generate writes it): %v", err)
	}
	crd := &apiextensionsv1.CustomResourceDefinition{}
	if err := yaml.UnmarshalStrict(raw, crd); err != nil {
		t.Fatalf("decoding %s: %v", IstioCRDFile, err)
	}
	client, err := apiextensionsclient.NewForConfig(Current().Config)
	if err != nil {
		t.Fatal(err)
	}
	crds := client.ApiextensionsV1().CustomResourceDefinitions()
	if _, err := crds.Create(t.Context(), crd.DeepCopy(), metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatalf("creating CRD %s: %v", crd.Name, err)
	}
	WaitFor(t, 30*time.Second, "CRD "+crd.Name+" Established", func(ctx context.Context) (bool, error) {
		got, err := crds.Get(ctx, crd.Name, metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		established, named := false, false
		for _, c := range got.Status.Conditions {
			established = established || (c.Type == apiextensionsv1.Established && c.Status == apiextensionsv1.ConditionTrue)
			named = named || (c.Type == apiextensionsv1.NamesAccepted && c.Status == apiextensionsv1.ConditionTrue)
		}
		return established && named, nil
	})
	// Established can precede the first successful request by a moment.
	gvr := fmt.Sprintf("/apis/%s/%s/%s", crd.Spec.Group, crd.Spec.Versions[0].Name, crd.Spec.Names.Plural)
	WaitFor(t, 30*time.Second, "the API server to serve "+gvr, func(ctx context.Context) (bool, error) {
		err := Current().Clientset().Discovery().RESTClient().Get().AbsPath(gvr).Do(ctx).Error()
		return err == nil, err
	})
	return crd
}

// ProxyContainerName is the container Istio's injector adds.
const ProxyContainerName = "istio-proxy"

// AsInjected makes a pod, or a pod template, look as Istio's injector
// leaves a pod: its status annotation, the labels its injection template
// sets (the operator's pod cache selects injected pods by
// service.istio.io/canonical-name), and an istio-proxy container of image.
func AsInjected(m *metav1.ObjectMeta, spec *corev1.PodSpec, image string) {
	if m.Annotations == nil {
		m.Annotations = map[string]string{}
	}
	m.Annotations["sidecar.istio.io/status"] = `{"containers":["istio-proxy"]}`
	if m.Labels == nil {
		m.Labels = map[string]string{}
	}
	name := m.Labels["app"]
	if name == "" {
		name = "workload"
	}
	m.Labels["service.istio.io/canonical-name"] = name
	m.Labels["service.istio.io/canonical-revision"] = "latest"
	m.Labels["security.istio.io/tlsMode"] = "istio"
	spec.Containers = append(spec.Containers, corev1.Container{Name: ProxyContainerName, Image: image})
}

// Proxy returns the pod's istio-proxy container, injected as a native
// sidecar (an init container) or as a container; nil without one.
func Proxy(p *corev1.Pod) *corev1.Container {
	for i := range p.Spec.InitContainers {
		if p.Spec.InitContainers[i].Name == ProxyContainerName {
			return &p.Spec.InitContainers[i]
		}
	}
	for i := range p.Spec.Containers {
		if p.Spec.Containers[i].Name == ProxyContainerName {
			return &p.Spec.Containers[i]
		}
	}
	return nil
}

// MeshNamespace creates a namespace with Istio's injection label: the real
// istiod injects its new pods. When istiod serves already, it returns once
// the namespace's pods are injected.
func MeshNamespace(t *testing.T) string {
	t.Helper()
	ns := Namespace(t, map[string]string{"istio-injection": "enabled"})
	select {
	case <-Current().Istiod().Ready():
		ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
		defer cancel()
		if err := istiod.WaitInjecting(ctx, Current().Clientset(), ns); err != nil {
			t.Fatal(err)
		}
	default:
	}
	return ns
}

// WaitIstiod waits until the real istiod behind the installed one serves.
func WaitIstiod(t *testing.T, timeout time.Duration) {
	t.Helper()
	select {
	case <-Current().Istiod().Ready():
	case <-time.After(timeout):
		t.Fatalf("the real istiod did not serve within %s\n%s", timeout, Current().Logs())
	}
}
