package injector

import (
	"context"
	"encoding/json"
	"fmt"
	"regexp"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/yaml"
)

// Config is what the stand-in injects into a pod.
type Config struct {
	// ProxyImage is the image of the istio-proxy container, fully resolved
	// (hub/name:tag[-variant]). The pod annotation sidecar.istio.io/proxyImage
	// overrides it when its value contains a '/', as in Istio's template.
	ProxyImage string
	// ProxyInitImage is the image of the istio-init or istio-validation init
	// container. Empty means ProxyImage, which is what Istio's default values
	// (global.proxy_init.image = global.proxy.image = proxyv2) amount to.
	ProxyInitImage string
	// Resources are the resources of the injected containers unless the pod
	// carries one of the sidecar.istio.io/proxy{CPU,CPULimit,Memory,MemoryLimit}
	// annotations, in which case only the annotations count (as in Istio).
	Resources corev1.ResourceRequirements
	// NativeSidecar injects istio-proxy as an init container with
	// restartPolicy Always (Kubernetes native sidecar). The pod annotation
	// sidecar.istio.io/nativeSidecar overrides it.
	NativeSidecar bool
	// CNI injects istio-validation instead of istio-init, as Istio does when
	// its CNI node agent sets up traffic redirection (pilot.cni.enabled).
	CNI bool
	// KeepAppProbes leaves the probes of the pod's own containers alone.
	// By default they are pointed at the agent's status port, as Istio does
	// unless sidecarInjectorWebhook.rewriteAppHTTPProbe is false; the pod
	// annotation sidecar.istio.io/rewriteAppHTTPProbers overrides either way.
	KeepAppProbes bool
	// Revision is the control-plane revision written to the istio.io/rev
	// annotation and the status annotation; empty means "default".
	Revision string
	// InjectedAnnotations are added to every injected pod
	// (sidecarInjectorWebhook.injectedAnnotations).
	InjectedAnnotations map[string]string
}

// DefaultConfig is what Istio 1.31 injects with the istiod chart's default
// values, given the proxy image: the sidecar resources of
// global.proxy.resources (requests 100m/128Mi, limits 2000m/1024Mi), no CNI,
// classic (non-native) sidecars, the default revision.
func DefaultConfig(proxyImage string) Config {
	return Config{
		ProxyImage: proxyImage,
		Resources: corev1.ResourceRequirements{
			Requests: corev1.ResourceList{
				corev1.ResourceCPU:    resource.MustParse("100m"),
				corev1.ResourceMemory: resource.MustParse("128Mi"),
			},
			Limits: corev1.ResourceList{
				corev1.ResourceCPU:    resource.MustParse("2000m"),
				corev1.ResourceMemory: resource.MustParse("1024Mi"),
			},
		},
	}
}

// ConfigSource yields the Config for one admission request. It is called for
// every pod the stand-in injects, so a source that reads the cluster makes
// pods created after an Istio upgrade get the upgraded proxy.
type ConfigSource func(ctx context.Context) (Config, error)

// Static is a ConfigSource that always yields cfg.
func Static(cfg Config) ConfigSource {
	return func(context.Context) (Config, error) { return cfg, nil }
}

// FromCluster is a ConfigSource that reads the installed (default-revision)
// Istio's injector configuration on every request; see ConfigFromCluster.
func FromCluster(client kubernetes.Interface) ConfigSource {
	return func(ctx context.Context) (Config, error) { return ConfigFromCluster(ctx, client) }
}

const (
	// IstioNamespace is where the stand-in looks for Istio's configuration.
	IstioNamespace = "istio-system"

	injectorConfigMapName = "istio-sidecar-injector"
	meshConfigMapName     = "istio"
)

// ConfigFromCluster reads what the installed default-revision Istio would
// inject; it is ConfigFromClusterRevision with an empty revision.
func ConfigFromCluster(ctx context.Context, client kubernetes.Interface) (Config, error) {
	return ConfigFromClusterRevision(ctx, client, "")
}

// ConfigFromClusterRevision reads what the installed Istio control plane of
// the given revision ("" for the default one) would inject, from the places
// Istio 1.31 reads it:
//
//   - The key "values" of ConfigMap istio-system/istio-sidecar-injector[-REV]
//     (the istiod chart's values, as JSON) is the main source.
//   - Proxy image: global.proxy.image (default "proxyv2") verbatim if it
//     contains a '/' (a ':' alone does not count, as in Istio's injection
//     template), else <global.hub>/<image>:<global.tag>, where the tag gets
//     the image type as suffix: meshConfig defaultConfig.image.imageType from
//     ConfigMap istio-system/istio[-REV] (key "mesh") if set, else
//     global.variant; a known suffix (-distroless, -debug) already on the tag
//     is replaced, and the type "default" removes it (Istio's imageURL).
//   - Init image: the same rule with global.proxy_init.image and only
//     global.variant (Istio's ProxyInitImage ignores the mesh image type).
//   - Resources: global.proxy.resources.
//   - CNI: pilot.cni.enabled (the istiod chart's own cni.enabled, which the
//     injector ConfigMap stores under "pilot"; Istio 1.31's template reads
//     nothing else, in particular not a top-level istio_cni.enabled).
//   - Native sidecars: istiod's ENABLE_NATIVE_SIDECARS, which the chart sets
//     from pilot.env.ENABLE_NATIVE_SIDECARS (default "auto"): "true" enables,
//     "false" disables, any other value but "auto" disables (as istiod does);
//     "auto" enables only if every Node's kubelet version parses as a
//     version whose minor is at least 33 (istiod's DetectNativeSidecar for a
//     pod not yet bound to a node, which is every pod at creation). kwok's
//     simulated nodes report kubeletVersion "kwok-<version>" unless told
//     otherwise, which does not parse, so "auto" means classic sidecars there.
//   - Probe rewriting: off only if sidecarInjectorWebhook.rewriteAppHTTPProbe
//     is false.
//   - Revision: the top-level "revision" value.
//   - Injected annotations: sidecarInjectorWebhook.injectedAnnotations.
func ConfigFromClusterRevision(ctx context.Context, client kubernetes.Interface, revision string) (Config, error) {
	suffix := ""
	if revision != "" && revision != "default" {
		suffix = "-" + revision
	}
	cms := client.CoreV1().ConfigMaps(IstioNamespace)
	injector, err := cms.Get(ctx, injectorConfigMapName+suffix, metav1.GetOptions{})
	if err != nil {
		return Config{}, fmt.Errorf("reading Istio's injector configuration: %w", err)
	}
	values, ok := injector.Data["values"]
	if !ok {
		return Config{}, fmt.Errorf("ConfigMap %s/%s has no key \"values\"", IstioNamespace, injector.Name)
	}

	meshImageType := ""
	switch mesh, err := cms.Get(ctx, meshConfigMapName+suffix, metav1.GetOptions{}); {
	case apierrors.IsNotFound(err):
	case err != nil:
		return Config{}, fmt.Errorf("reading Istio's mesh configuration: %w", err)
	default:
		if meshImageType, err = imageTypeFromMeshConfig(mesh.Data["mesh"]); err != nil {
			return Config{}, fmt.Errorf("ConfigMap %s/%s: %w", IstioNamespace, mesh.Name, err)
		}
	}

	kubeletVersions := func() ([]string, error) {
		// Served from the API server's cache: this runs for every pod, and
		// kubelet versions change rarely.
		nodes, err := client.CoreV1().Nodes().List(ctx, metav1.ListOptions{ResourceVersion: "0"})
		if err != nil {
			return nil, fmt.Errorf("listing nodes to decide on native sidecars: %w", err)
		}
		versions := make([]string, 0, len(nodes.Items))
		for i := range nodes.Items {
			versions = append(versions, nodes.Items[i].Status.NodeInfo.KubeletVersion)
		}
		return versions, nil
	}
	cfg, err := configFromValues([]byte(values), meshImageType, kubeletVersions)
	if err != nil {
		return Config{}, fmt.Errorf("ConfigMap %s/%s: %w", IstioNamespace, injector.Name, err)
	}
	return cfg, nil
}

// imageTypeFromMeshConfig extracts defaultConfig.image.imageType from the
// mesh configuration YAML.
func imageTypeFromMeshConfig(mesh string) (string, error) {
	var m struct {
		DefaultConfig struct {
			Image struct {
				ImageType string `json:"imageType"`
			} `json:"image"`
		} `json:"defaultConfig"`
	}
	if err := yaml.Unmarshal([]byte(mesh), &m); err != nil {
		return "", fmt.Errorf("parsing mesh configuration: %w", err)
	}
	return m.DefaultConfig.Image.ImageType, nil
}

// configFromValues applies the rules documented on ConfigFromClusterRevision
// to the injector's values JSON. kubeletVersions is called only when the
// native sidecar mode is "auto".
func configFromValues(valuesJSON []byte, meshImageType string, kubeletVersions func() ([]string, error)) (Config, error) {
	var values map[string]any
	if err := json.Unmarshal(valuesJSON, &values); err != nil {
		return Config{}, fmt.Errorf("parsing injector values: %w", err)
	}

	hub := stringValue(lookup(values, "global", "hub"))
	tag := ""
	if t := lookup(values, "global", "tag"); t != nil {
		tag = fmt.Sprint(t) // a tag may be a YAML number, as Istio allows
	}
	variant := stringValue(lookup(values, "global", "variant"))

	proxyType := meshImageType
	if proxyType == "" {
		proxyType = variant
	}
	cfg := Config{
		ProxyImage:     resolveImage(hub, stringValue(lookup(values, "global", "proxy", "image")), tag, proxyType),
		ProxyInitImage: resolveImage(hub, stringValue(lookup(values, "global", "proxy_init", "image")), tag, variant),
		CNI:            truthy(lookup(values, "pilot", "cni", "enabled")),
		KeepAppProbes:  lookup(values, "sidecarInjectorWebhook", "rewriteAppHTTPProbe") == false,
		Revision:       stringValue(lookup(values, "revision")),
	}
	if m, ok := lookup(values, "sidecarInjectorWebhook", "injectedAnnotations").(map[string]any); ok && len(m) > 0 {
		cfg.InjectedAnnotations = make(map[string]string, len(m))
		for k, v := range m {
			cfg.InjectedAnnotations[k] = fmt.Sprint(v)
		}
	}
	if cfg.ProxyInitImage == cfg.ProxyImage {
		cfg.ProxyInitImage = ""
	}

	if r := lookup(values, "global", "proxy", "resources"); r != nil {
		raw, err := json.Marshal(omitNil(r))
		if err != nil {
			return Config{}, err
		}
		if err := json.Unmarshal(raw, &cfg.Resources); err != nil {
			return Config{}, fmt.Errorf("global.proxy.resources: %w", err)
		}
	}

	mode := "auto"
	if v := lookup(values, "pilot", "env", "ENABLE_NATIVE_SIDECARS"); v != nil {
		mode = fmt.Sprint(v)
	}
	switch mode {
	case "true":
		cfg.NativeSidecar = true
	case "auto":
		versions, err := kubeletVersions()
		if err != nil {
			return Config{}, err
		}
		cfg.NativeSidecar = true
		for _, v := range versions {
			if !kubeletSupportsNativeSidecars(v) {
				cfg.NativeSidecar = false
				break
			}
		}
	}
	return cfg, nil
}

// resolveImage is Istio's rule for a proxy image: a name with a '/' is a full
// reference; anything else is composed from hub, name and tag.
func resolveImage(hub, name, tag, imageType string) string {
	if name == "" {
		name = "proxyv2"
	}
	if strings.Contains(name, "/") {
		return name
	}
	return hub + "/" + name + ":" + tagWithImageType(tag, imageType)
}

// tagWithImageType is Istio's updateImageTypeIfPresent.
func tagWithImageType(tag, imageType string) string {
	if imageType == "" {
		return tag
	}
	for _, known := range []string{"distroless", "debug"} {
		if strings.HasSuffix(tag, "-"+known) {
			tag = strings.TrimSuffix(tag, "-"+known)
			break
		}
	}
	if imageType == "default" {
		return tag
	}
	return tag + "-" + imageType
}

// versionRegexp is the version syntax of github.com/hashicorp/go-version,
// which istiod uses to parse kubelet versions.
var versionRegexp = regexp.MustCompile(`^v?([0-9]+(\.[0-9]+)*?)` +
	`(-([0-9]+[0-9A-Za-z\-~]*(\.[0-9A-Za-z\-~]+)*)|(-?([A-Za-z\-~]+[0-9A-Za-z\-~]*(\.[0-9A-Za-z\-~]+)*)))?` +
	`(\+([0-9A-Za-z\-~]+(\.[0-9A-Za-z\-~]+)*))?` +
	`?$`)

// kubeletSupportsNativeSidecars is istiod's node check: the version must
// parse and its minor must be at least 33 (the major is not looked at).
func kubeletSupportsNativeSidecars(version string) bool {
	m := versionRegexp.FindStringSubmatch(version)
	if m == nil {
		return false
	}
	segments := strings.Split(m[1], ".")
	if len(segments) < 2 {
		return false // the minor is padded with 0
	}
	minor, err := strconv.ParseInt(segments[1], 10, 64)
	return err == nil && minor >= 33
}

func lookup(m map[string]any, path ...string) any {
	var cur any = m
	for _, key := range path {
		obj, ok := cur.(map[string]any)
		if !ok {
			return nil
		}
		cur = obj[key]
	}
	return cur
}

func stringValue(v any) string {
	if s, ok := v.(string); ok {
		return s
	}
	return ""
}

func truthy(v any) bool {
	switch b := v.(type) {
	case bool:
		return b
	case string:
		return b == "true"
	}
	return false
}

// omitNil drops null map entries, like the omitNil template function Istio
// applies to global.proxy.resources.
func omitNil(v any) any {
	switch t := v.(type) {
	case map[string]any:
		out := make(map[string]any, len(t))
		for k, val := range t {
			if val != nil {
				out[k] = omitNil(val)
			}
		}
		return out
	case []any:
		out := make([]any, 0, len(t))
		for _, val := range t {
			out = append(out, omitNil(val))
		}
		return out
	}
	return v
}
