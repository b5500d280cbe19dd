package main

import (
	"context"
	"fmt"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	operatorv1alpha2 "github.com/meshkeeper/istio-operator/pkg/apis/operator/v1alpha2"
	"github.com/meshkeeper/istio-operator/pkg/istioclient"
	"github.com/meshkeeper/istio-operator/test/cluster"
	"github.com/meshkeeper/istio-operator/test/operatortest"
	"github.com/meshkeeper/istio-operator/test/workload"
)

// canaryFrom is the Istio version a --canary run upgrades from: the
// previous minor, installed as the default revision before the operator
// starts (as the lifecycle tests do).
const canaryFrom = "1.30.2"

// installPrevious installs canaryFrom with Istio's installer, and stands
// the real istiod behind it and behind the operator's revision, which the
// canary upgrade installs beside it.
func (s *scenario) installPrevious(ctx context.Context, c *cluster.Cluster) error {
	progress("installing Istio %s as the default revision (the canary upgrade's start)", canaryFrom)
	if err := operatortest.Install(ctx, c, canaryFrom); err != nil {
		return err
	}
	if _, err := c.SuperviseRevision(istioclient.RevisionName(istioclient.MustParseVersion(istioclient.Version))); err != nil {
		return err
	}
	select {
	case <-c.Istiod().Ready():
		return nil
	case <-time.After(2 * time.Minute):
		return fmt.Errorf("the real istiod behind Istio %s did not serve within 2m", canaryFrom)
	case <-ctx.Done():
		return ctx.Err()
	}
}

// canaryWave creates the Istio resource with spec.upgradeStrategy Canary:
// the operator installs its version beside canaryFrom, moves the default
// tag, restarts every workload onto it once and removes the old revision.
// It ends with CanaryUpgrade=True.
func (s *scenario) canaryWave() waveSpec {
	image := fmt.Sprintf("%s/proxyv2:%s", istioclient.Hub, istioclient.Version)
	return waveSpec{
		name: "canary",
		change: func(ctx context.Context) (int64, error) {
			cr := &operatorv1alpha2.Istio{ObjectMeta: metav1.ObjectMeta{Name: istioName, Namespace: istioNamespace},
				Spec: operatorv1alpha2.IstioSpec{UpgradeStrategy: operatorv1alpha2.UpgradeStrategyCanary}}
			created, err := s.istios.OperatorV1alpha2().Istios(istioNamespace).Create(ctx, cr, metav1.CreateOptions{})
			if err != nil {
				return 0, fmt.Errorf("creating the Istio resource: %w", err)
			}
			return created.Generation, nil
		},
		current:   func() (workload.PodState, error) { return s.wl.PodsOn(image) },
		what:      "every pod running " + image + " and no old pod left",
		condition: operatorv1alpha2.ConditionCanaryUpgrade,
	}
}
