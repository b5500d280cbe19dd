//go:build !experimental

package istioclient

// ExperimentalBuild is false in the regular build: the installation
// controller refuses an Istio resource that sets an experimental feature.
// The experimental build is the same code built with -tags experimental.
const ExperimentalBuild = false
