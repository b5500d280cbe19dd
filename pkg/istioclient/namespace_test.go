package istioclient

import (
	"testing"

	"istio.io/istio/pilot/pkg/features"
	"istio.io/istio/pilot/pkg/leaderelection"
)

// Every ConfigMap istiod creates in its namespace while it runs is Istio's
// run-time state, not a user's object that would keep the namespace on
// uninstall: its leader elections' locks and its revocation list, by the
// names the compiled-in Istio uses.
func TestRuntimeObjectsCoverIstiodsConfigMaps(t *testing.T) {
	for _, name := range []string{
		leaderelection.IngressController,
		leaderelection.NamespaceController,
		leaderelection.ClusterTrustBundleController,
		leaderelection.ServiceExportController,
		leaderelection.GatewayStatusController,
		leaderelection.StatusController,
		leaderelection.AnalyzeController,
		leaderelection.GatewayDeploymentController,
		leaderelection.InferencePoolController,
		leaderelection.NodeUntaintController,
		leaderelection.IPAutoallocateController,
		features.CRLConfigMapName,
	} {
		if !runtimeObjects["configmaps/"+name] {
			t.Errorf("configmaps/%s, which istiod creates in %s, would count as a user's object", name, Namespace)
		}
	}
}
