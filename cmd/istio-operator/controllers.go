package main

import (
	"github.com/meshkeeper/istio-operator/pkg/controllers/controller"
	"github.com/meshkeeper/istio-operator/pkg/controllers/ingressgateway"
	"github.com/meshkeeper/istio-operator/pkg/controllers/installation"
	"github.com/meshkeeper/istio-operator/pkg/controllers/peerauthentication"
	"github.com/meshkeeper/istio-operator/pkg/controllers/proxysidecar"
)

// controllers lists the controllers the operator runs, in start order.
func controllers() []controller.Constructor {
	return []controller.Constructor{
		installation.New,
		ingressgateway.New,
		peerauthentication.New,
		proxysidecar.New,
	}
}
