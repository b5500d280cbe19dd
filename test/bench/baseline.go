package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"time"

	"istio.io/istio/operator/pkg/install"
	"istio.io/istio/operator/pkg/render"
	"istio.io/istio/operator/pkg/uninstall"
	"istio.io/istio/operator/pkg/util/clog"
	istioprogress "istio.io/istio/operator/pkg/util/progress"
	"istio.io/istio/pkg/kube"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/yaml"

	operatorv1alpha2 "github.com/meshkeeper/istio-operator/pkg/apis/operator/v1alpha2"
	"github.com/meshkeeper/istio-operator/pkg/istioclient"
)

// libraryInstall installs Istio the way istioctl does, with nothing but
// Istio's own render and install packages and the IstioOperator the
// operator derives from an empty Istio resource, then uninstalls it with
// Istio's uninstall package. It returns how long the install took, render
// and readiness waits included: the baseline the operator's install is
// compared with on the same cluster.
func libraryInstall(ctx context.Context, cfg *rest.Config) (time.Duration, error) {
	iop, err := istioclient.DesiredIstioOperator(&operatorv1alpha2.IstioSpec{})
	if err != nil {
		return 0, err
	}
	data, err := yaml.Marshal(iop)
	if err != nil {
		return 0, err
	}
	f, err := os.CreateTemp("", "bench-iop-*.yaml")
	if err != nil {
		return 0, err
	}
	defer os.Remove(f.Name())
	if _, err := f.Write(data); err != nil {
		f.Close()
		return 0, err
	}
	if err := f.Close(); err != nil {
		return 0, err
	}
	cli, err := kube.NewCLIClient(kube.NewClientConfigForRestConfig(cfg))
	if err != nil {
		return 0, fmt.Errorf("istio client: %w", err)
	}
	logger := clog.NewConsoleLogger(io.Discard, os.Stderr, nil)

	start := time.Now()
	sets, merged, err := render.GenerateManifest([]string{f.Name()}, nil, false, cli, logger)
	if err != nil {
		return 0, fmt.Errorf("rendering with Istio's library: %w", err)
	}
	inst := install.Installer{
		Force:          true,
		Kube:           cli,
		Values:         merged,
		WaitTimeout:    5 * time.Minute,
		Logger:         logger,
		ProgressLogger: istioprogress.NewLog(),
	}
	if err := inst.InstallManifests(sets); err != nil {
		return 0, fmt.Errorf("installing with Istio's library: %w", err)
	}
	took := time.Since(start)

	lists, err := uninstall.GetPrunedResources(cli, "", "", "", true)
	if err != nil {
		return took, fmt.Errorf("listing what Istio's library installed: %w", err)
	}
	if err := uninstall.DeleteObjectsList(cli, false, logger, lists); err != nil {
		return took, fmt.Errorf("uninstalling with Istio's library: %w", err)
	}
	// The operator's install starts from a cluster without Istio. Istio's
	// uninstall leaves the namespace it created; delete it and wait.
	namespaces := cli.Kube().CoreV1().Namespaces()
	if err := namespaces.Delete(ctx, istioclient.Namespace, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
		return took, err
	}
	err = poll(ctx, 3*time.Minute, 200*time.Millisecond, "Istio's library install to be removed", func(ctx context.Context) (bool, error) {
		_, err := namespaces.Get(ctx, istioclient.Namespace, metav1.GetOptions{})
		return apierrors.IsNotFound(err), nil
	})
	return took, err
}
