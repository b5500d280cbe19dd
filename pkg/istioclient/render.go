package istioclient

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"sort"
	"sync"

	"istio.io/istio/operator/pkg/manifest"
	"istio.io/istio/operator/pkg/render"
	"istio.io/istio/operator/pkg/values"
	"istio.io/istio/pkg/kube"
	istioversion "istio.io/istio/pkg/version"
	"sigs.k8s.io/yaml"
)

func init() {
	// Istio's installer labels objects with its own build version, which a
	// library build leaves "unknown"; the version installed is ours.
	istioversion.Info.Version = Version
}

// Rendered is the set of objects an IstioOperator produces, per component,
// with the merged IstioOperator and a hash that identifies both the
// configuration and the operator build.
type Rendered struct {
	Sets   []manifest.ManifestSet
	Merged values.Map
	// Hash changes whenever the rendered objects would change.
	Hash string
	// Version is the Istio version rendered: the image tag.
	Version string

	// desired memoizes Desired: every plan of an unchanged spec needs it,
	// and building it marshals every object.
	desiredOnce sync.Once
	desired     []Object
}

// Objects returns the rendered objects in a stable order.
func (r *Rendered) Objects() []manifest.Manifest {
	var out []manifest.Manifest
	for _, s := range r.Sets {
		out = append(out, s.Manifests...)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Hash() < out[j].Hash() })
	return out
}

// Render renders an IstioOperator with the Helm charts compiled into the
// operator. The client, when given, lets Istio detect cluster specifics (the
// Kubernetes version, GKE); tests render without one.
func Render(iop values.Map, client kube.Client) (*Rendered, error) {
	// Istio's renderer reads IstioOperators from files only.
	f, err := os.CreateTemp("", "istio-operator-iop-*.yaml")
	if err != nil {
		return nil, fmt.Errorf("writing the IstioOperator for rendering: %w", err)
	}
	defer os.Remove(f.Name())
	data, err := yaml.Marshal(iop)
	if err != nil {
		f.Close()
		return nil, &InvalidSpecError{Err: err}
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return nil, err
	}
	if err := f.Close(); err != nil {
		return nil, err
	}
	sets, merged, err := render.GenerateManifest([]string{f.Name()}, nil, false, client, nil)
	if err != nil {
		return nil, fmt.Errorf("rendering Istio: %w", err)
	}
	sort.Slice(sets, func(i, j int) bool { return sets[i].Component < sets[j].Component })
	r := &Rendered{Sets: sets, Merged: merged, Version: merged.GetPathString("spec.values.global.tag")}
	r.Hash = hashOf(r)
	return r, nil
}

// hashOf identifies the operator build, the version and every object.
func hashOf(r *Rendered) string {
	h := sha256.New()
	fmt.Fprintf(h, "istio-operator %s %s\n", Version, r.Version)
	for _, o := range r.Objects() {
		fmt.Fprintf(h, "%s\n%s\n", o.Hash(), o.Content)
	}
	return hex.EncodeToString(h.Sum(nil))[:16]
}
