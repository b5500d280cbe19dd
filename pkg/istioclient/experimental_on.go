//go:build experimental

package istioclient

// ExperimentalBuild is true in the experimental build (go build -tags
// experimental): the installation controller installs the Istio
// resource's experimental features instead of refusing them.
const ExperimentalBuild = true
