// Package input feeds the operator bad input: resources the API server must
// reject, naming the field, and resources only the operator can judge,
// which must end in the documented state, condition, reason and Event.
package input

import (
	"testing"

	"github.com/meshkeeper/istio-operator/test/cluster"
)

func TestMain(m *testing.M) {
	cluster.Main(m, cluster.Options{Nodes: 2})
}
