package istioclient

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"

	corev1 "k8s.io/api/core/v1"

	v1alpha2 "github.com/meshkeeper/istio-operator/pkg/apis/operator/v1alpha2"
)

// ProxyConfigAnnotation is the annotation Istio's injector adds to every pod
// it injects (values.sidecarInjectorWebhook.injectedAnnotations), carrying
// ProxyConfigHash of the configuration in force. The settings it covers are
// baked into the pod at injection and cannot be read back from the pod's
// spec reliably; the annotation tells whether a pod predates a change of them.
const ProxyConfigAnnotation = "istio-operator.kyma-project.io/proxy-configuration"

// ProxyStartConfig are the Istio resource's settings that change what the
// injector writes into a pod, other than image, resources and CNI mode
// (which the pod's containers show directly).
type ProxyStartConfig struct {
	EnableDNSProxying bool                        `json:"enableDNSProxying,omitempty"`
	ProxyStatsMatcher *v1alpha2.ProxyStatsMatcher `json:"proxyStatsMatcher,omitempty"`
	PrometheusMerge   bool                        `json:"prometheusMerge,omitempty"`
	CompatibilityMode bool                        `json:"compatibilityMode,omitempty"`
	// DualStack and Ambient put variables into the proxies' metadata
	// (ISTIO_DUAL_STACK, ISTIO_META_ENABLE_HBONE), which the injector
	// writes into the istio-proxy container's environment.
	DualStack bool `json:"dualStack,omitempty"`
	Ambient   bool `json:"ambient,omitempty"`
	// Registry the injector took the proxy image from, when not Istio's
	// own. The pod's image cannot tell: a registry mirror rewrites the
	// host of the image a pod runs (and sameImage accepts that), so a
	// changed registry shows in the hash instead, once per change.
	Registry string `json:"registry,omitempty"`
}

// ProxyConfigHash identifies the injection-time proxy configuration of a
// spec; settings that do not reach the injected pods leave it unchanged.
func ProxyConfigHash(spec *v1alpha2.IstioSpec) string {
	c := spec.Config
	cfg := ProxyStartConfig{
		EnableDNSProxying: c.EnableDNSProxying != nil && *c.EnableDNSProxying,
		PrometheusMerge:   c.Telemetry.Metrics.PrometheusMerge,
		CompatibilityMode: spec.CompatibilityMode,
		DualStack:         dualStack(spec.Experimental),
		Ambient:           ambient(spec.Experimental),
	}
	if r := Registry(spec); r != Hub {
		cfg.Registry = r
	}
	if m := c.ProxyStatsMatcher; m != nil && (len(m.InclusionRegexps)+len(m.InclusionPrefixes)+len(m.InclusionSuffixes)) > 0 {
		cfg.ProxyStatsMatcher = m
	}
	return shortHash(cfg)
}

// Proxy is the sidecar proxy the installed Istio injects for a spec: what
// every injected pod should run.
type Proxy struct {
	// Image of the istio-proxy container.
	Image string `json:"image"`
	// Resources of the istio-proxy container for a pod without resource
	// annotations (sidecar.istio.io/proxyCPU and friends).
	Resources corev1.ResourceRequirements `json:"resources"`
	// CNI is true when traffic redirection is set up by Istio's CNI node
	// agent: pods get the istio-validation init container, not istio-init.
	CNI bool `json:"cni"`
	// ConfigHash is the expected value of ProxyConfigAnnotation.
	ConfigHash string `json:"configHash"`
}

// DesiredProxy derives the sidecar proxy from the IstioOperator a resolved
// spec (v1alpha2.IstioSpec.Resolved) installs, so that it is by
// construction what the injector is configured with.
func DesiredProxy(spec *v1alpha2.IstioSpec) (Proxy, error) {
	iop, err := DesiredIstioOperator(spec)
	if err != nil {
		return Proxy{}, err
	}
	p := Proxy{ConfigHash: ProxyConfigHash(spec)}
	hub := iop.GetPathString("spec.hub")
	tag := iop.GetPathString("spec.tag")
	p.Image = fmt.Sprintf("%s/proxyv2:%s", hub, tag)
	if cni, ok := iop.GetPath("spec.components.cni.enabled"); ok {
		p.CNI, _ = cni.(bool)
	}
	if r, ok := iop.GetPath("spec.values.global.proxy.resources"); ok {
		raw, err := json.Marshal(r)
		if err != nil {
			return Proxy{}, err
		}
		if err := json.Unmarshal(raw, &p.Resources); err != nil {
			return Proxy{}, fmt.Errorf("values.global.proxy.resources: %w", err)
		}
	}
	return p, nil
}

// Hash identifies the proxy; the proxy sidecar controller records it on
// every workload it restarts, so that a workload is restarted once per
// change of the desired proxy.
func (p Proxy) Hash() string { return shortHash(p) }

func shortHash(v any) string {
	b, _ := json.Marshal(v)
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])[:16]
}
