package istioclient

import (
	"fmt"

	"istio.io/istio/pkg/kube"
	"k8s.io/client-go/rest"
)

// Cluster is Istio's own client of the cluster: rendering asks it for
// cluster specifics (the Kubernetes version, GKE), and the installer for
// its webhook checks. Build it once per process; the zero of *Cluster (nil)
// renders and applies without it, as tests do.
type Cluster struct {
	client kube.CLIClient
}

// NewCluster builds Istio's client from the operator's REST configuration.
func NewCluster(cfg *rest.Config) (*Cluster, error) {
	c, err := kube.NewCLIClient(kube.NewClientConfigForRestConfig(cfg))
	if err != nil {
		return nil, fmt.Errorf("building Istio's client: %w", err)
	}
	return &Cluster{client: c}, nil
}

// kube is the client, or nil for no cluster.
func (c *Cluster) kube() kube.Client {
	if c == nil {
		return nil
	}
	return c.client
}
