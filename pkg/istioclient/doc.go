// Package istioclient is the only part of the operator that knows the
// istio.io/istio Go packages: the Istio version compiled into the operator,
// the routing of Istio's loggers, and (for the installation controller)
// rendering, applying and uninstalling Istio.
package istioclient
