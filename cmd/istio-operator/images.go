package main

import (
	"fmt"
	"regexp"
	"strings"

	v1alpha2 "github.com/meshkeeper/istio-operator/pkg/apis/operator/v1alpha2"
)

// The environment variables behind --istio-registry and --image-pull-secrets,
// for deployments that set images through the environment (a kustomize
// patch, a Helm value).
const (
	registryEnv    = "ISTIO_OPERATOR_REGISTRY"
	pullSecretsEnv = "ISTIO_OPERATOR_IMAGE_PULL_SECRETS"
)

var (
	registryRE   = regexp.MustCompile(v1alpha2.RegistryPattern)
	pullSecretRE = regexp.MustCompile(v1alpha2.PullSecretPattern)
)

// imageDefaults checks the image flags as the API server checks the fields
// of the same meaning, so that a typo stops the operator at start rather
// than at the first image pull.
func imageDefaults(registry, pullSecrets string) (v1alpha2.Images, error) {
	var img v1alpha2.Images
	if registry = strings.TrimSpace(registry); registry != "" {
		if len(registry) > 255 || !registryRE.MatchString(registry) {
			return img, fmt.Errorf("--istio-registry (or $%s) %q is not a registry as host[:port][/path], lower case, without scheme or tag", registryEnv, registry)
		}
		img.Registry = registry
	}
	for _, name := range strings.Split(pullSecrets, ",") {
		if name = strings.TrimSpace(name); name == "" {
			continue
		}
		if len(name) > 253 || !pullSecretRE.MatchString(name) {
			return img, fmt.Errorf("--image-pull-secrets (or $%s): %q is not a Secret name", pullSecretsEnv, name)
		}
		img.PullSecrets = append(img.PullSecrets, name)
	}
	return img, nil
}
