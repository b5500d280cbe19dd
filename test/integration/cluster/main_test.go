// Package cluster_test checks the local test cluster itself (kwokctl's binary
// runtime with kwok nodes): that it runs workloads the way the operator's
// integration tests rely on, and that it serves the Istio CRD with every field.
package cluster_test

import (
	"testing"

	"github.com/meshkeeper/istio-operator/test/cluster"
)

func TestMain(m *testing.M) {
	cluster.Main(m, cluster.Options{})
}
