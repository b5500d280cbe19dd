package istioclient

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"sort"
	"strings"
	"sync"

	"istio.io/istio/manifests"
	"istio.io/istio/operator/pkg/component"
	"istio.io/istio/operator/pkg/manifest"
	"istio.io/istio/operator/pkg/render"
	"istio.io/istio/operator/pkg/values"
	"istio.io/istio/pkg/config/mesh"
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
	// Revision is the control plane revision rendered: DefaultRevision
	// unless values.revision names one.
	Revision string

	// desired memoizes Desired: every plan of an unchanged spec needs it,
	// and building it marshals every object. Set only by a build that
	// returned: a panic must not leave an empty set behind, which a plan
	// would read as "nothing installed is wanted".
	desiredMu sync.Mutex
	desired   []Object
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
// operator. The cluster, when given, lets Istio detect cluster specifics
// (the Kubernetes version, GKE); tests render without one (nil).
//
// Istio's base chart turns each of its CRDs into a map and back into YAML
// (fromYaml, toYaml) only to replace their labels, which is two thirds of a
// rendering's CPU time and allocations (BenchmarkRender). So the base
// component is rendered on its own with base.enableCRDTemplates off, which
// takes the CRD file as it is, and its CRDs get the labels the template
// gives them; the other components are rendered without it, so that the
// flag does not reach the values istiod's chart records. TestRenderFastCRDs
// holds the result to Istio's own rendering.
func Render(iop values.Map, cluster *Cluster) (*Rendered, error) {
	client := cluster.kube()
	if err := checkMeshConfig(iop); err != nil {
		return nil, err
	}
	var sets []manifest.ManifestSet
	var merged values.Map
	var err error
	if !crdLabelsReplaceable(iop) {
		sets, merged, err = generate(iop, client)
	} else {
		sets, merged, err = renderWithFastCRDs(iop, client)
	}
	if err != nil {
		return nil, err
	}
	sort.Slice(sets, func(i, j int) bool { return sets[i].Component < sets[j].Component })
	r := &Rendered{Sets: sets, Merged: merged, Version: merged.GetPathString("spec.values.global.tag"), Revision: DefaultRevision}
	if rev := merged.GetPathString("spec.values.revision"); rev != "" {
		r.Revision = rev
	}
	r.Hash = hashOf(r)
	return r, nil
}

// checkMeshConfig holds the IstioOperator's mesh configuration to what
// istiod accepts. istiod validates the mesh configuration it reads with this
// same function on every load and, when it fails, keeps running on its
// previous configuration and only logs; Istio's renderer refuses it too, in
// an error that would read as a failure to retry. Checked first, it is what
// it is: an Istio resource the user has to change.
func checkMeshConfig(iop values.Map) error {
	mc, ok := iop.GetPath("spec.meshConfig")
	if !ok {
		return nil
	}
	raw, err := yaml.Marshal(mc)
	if err != nil {
		return &InvalidSpecError{Err: err}
	}
	if _, err := mesh.ApplyMeshConfigDefaults(string(raw)); err != nil {
		return &InvalidSpecError{Err: fmt.Errorf("istiod would reject the mesh configuration: %s", errorList(err))}
	}
	return nil
}

// errorList flattens Istio's multi-line error lists ("2 errors occurred:"
// followed by "\t* ..." lines) into one line for a condition message.
func errorList(err error) string {
	var items []string
	for _, line := range strings.Split(err.Error(), "\n") {
		if item, ok := strings.CutPrefix(strings.TrimSpace(line), "* "); ok {
			items = append(items, item)
		}
	}
	if len(items) == 0 {
		return err.Error()
	}
	return strings.Join(items, "; ")
}

// generate is Istio's rendering of an IstioOperator, which it reads from
// files only.
func generate(iop values.Map, client kube.Client) ([]manifest.ManifestSet, values.Map, error) {
	f, err := os.CreateTemp("", "istio-operator-iop-*.yaml")
	if err != nil {
		return nil, nil, fmt.Errorf("writing the IstioOperator for rendering: %w", err)
	}
	defer os.Remove(f.Name())
	data, err := yaml.Marshal(iop)
	if err != nil {
		f.Close()
		return nil, nil, &InvalidSpecError{Err: err}
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return nil, nil, err
	}
	if err := f.Close(); err != nil {
		return nil, nil, err
	}
	sets, merged, err := render.GenerateManifest([]string{f.Name()}, nil, false, client, nil)
	if err != nil {
		return nil, nil, fmt.Errorf("rendering Istio: %w", err)
	}
	return sets, merged, nil
}

// crdLabelsReplaceable says whether the base component is enabled and its
// CRDs are templated with nothing but their labels changed: no CRD is
// excluded, and the templating is not set either way.
func crdLabelsReplaceable(iop values.Map) bool {
	if !iop.GetPathBool("spec.components.base.enabled") {
		return false
	}
	for _, path := range []string{"spec.values.base.enableCRDTemplates", "spec.values.base.excludedCRDs"} {
		if _, set := iop.GetPath(path); set {
			return false
		}
	}
	return true
}

func renderWithFastCRDs(iop values.Map, client kube.Client) ([]manifest.ManifestSet, values.Map, error) {
	rest := iop.DeepClone()
	if err := rest.SetPath("spec.components.base.enabled", false); err != nil {
		return nil, nil, err
	}
	sets, merged, err := generate(rest, client)
	if err != nil {
		return nil, nil, err
	}
	// The merged IstioOperator is the one asked for.
	if err := merged.SetPath("spec.components.base.enabled", true); err != nil {
		return nil, nil, err
	}
	base, err := renderBase(iop, client)
	if err != nil {
		return nil, nil, err
	}
	return append(sets, base), merged, nil
}

// renderBase renders the base component alone, its CRD file as it is, and
// labels the CRDs as the base chart's template does.
func renderBase(iop values.Map, client kube.Client) (manifest.ManifestSet, error) {
	only := iop.DeepClone()
	comps, _ := only.GetPathMap("spec.components")
	for name, c := range comps {
		if name == "base" {
			continue
		}
		switch c := c.(type) {
		case map[string]any:
			c["enabled"] = false
		case []any:
			for _, g := range c {
				if g, ok := g.(map[string]any); ok {
					g["enabled"] = false
				}
			}
		}
	}
	if err := only.SetPath("spec.values.base.enableCRDTemplates", false); err != nil {
		return manifest.ManifestSet{}, err
	}
	sets, _, err := generate(only, client)
	if err != nil {
		return manifest.ManifestSet{}, err
	}
	labels, err := baseChartLabels(iop.GetPathString("spec.installPackagePath"))
	if err != nil {
		return manifest.ManifestSet{}, err
	}
	for _, s := range sets {
		if s.Component != component.BaseComponentName {
			continue
		}
		for _, m := range s.Manifests {
			if m.GetKind() == "CustomResourceDefinition" {
				// The template replaces the labels, it does not add to them.
				m.SetLabels(maps.Clone(labels))
			}
		}
		return s, nil
	}
	return manifest.ManifestSet{}, fmt.Errorf("rendering Istio: the base component rendered nothing")
}

// baseChartLabels are the labels the base chart's istio.labels template
// gives, for the release Istio's renderer names "istio".
func baseChartLabels(installPackagePath string) (map[string]string, error) {
	data, err := fs.ReadFile(manifests.BuiltinOrDir(installPackagePath), "charts/base/Chart.yaml")
	if err != nil {
		return nil, fmt.Errorf("reading Istio's base chart: %w", err)
	}
	var chart struct {
		Name       string `json:"name"`
		Version    string `json:"version"`
		AppVersion string `json:"appVersion"`
	}
	if err := yaml.Unmarshal(data, &chart); err != nil {
		return nil, fmt.Errorf("reading Istio's base chart: %w", err)
	}
	labels := map[string]string{
		"app.kubernetes.io/managed-by": "Helm",
		"app.kubernetes.io/instance":   "istio",
		"app.kubernetes.io/part-of":    "istio",
	}
	if chart.AppVersion != "" {
		labels["app.kubernetes.io/version"] = chart.AppVersion
	}
	if chart.Name != "" && chart.Version != "" {
		v := strings.ReplaceAll(chart.Name+"-"+chart.Version, "+", "_")
		labels["helm.sh/chart"] = strings.TrimSuffix(v[:min(len(v), 63)], "-")
	}
	return labels, nil
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
