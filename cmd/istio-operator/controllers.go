package main

import (
	"github.com/meshkeeper/istio-operator/pkg/controllers/ingressgateway"
	"github.com/meshkeeper/istio-operator/pkg/controllers/installation"
	"github.com/meshkeeper/istio-operator/pkg/controllers/peerauthentication"
	"github.com/meshkeeper/istio-operator/pkg/controllers/proxysidecar"
	"github.com/meshkeeper/istio-operator/pkg/operator"
)

// controllers lists the controllers the operator runs, in start order.
func controllers() []operator.Constructor {
	return []operator.Constructor{
		installation.New,
		ingressgateway.New,
		peerauthentication.New,
		proxysidecar.New,
	}
}
