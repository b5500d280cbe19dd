package injector

import (
	"encoding/json"
	"fmt"
	"reflect"
	"regexp"
	"strconv"
	"strings"

	"istio.io/api/annotation"
	"istio.io/api/label"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
)

// Names of the containers Istio injects.
const (
	ProxyContainerName      = "istio-proxy"
	InitContainerName       = "istio-init"
	ValidationContainerName = "istio-validation"

	enableCoreDumpName = "enable-core-dump"
)

// Defaults of the istiod chart and mesh configuration that the stand-in does
// not read from the cluster.
const (
	defaultStatusPort       = "15020"
	defaultInterceptionMode = "REDIRECT"
	proxyUID                = int64(1337)
)

// sidecarStatus is the JSON of the sidecar.istio.io/status annotation, field
// for field as Istio writes it (pkg/kube/inject.SidecarInjectionStatus): the
// names of what the injection template added, with nulls for empty lists.
type sidecarStatus struct {
	InitContainers   []string `json:"initContainers"`
	Containers       []string `json:"containers"`
	Volumes          []string `json:"volumes"`
	ImagePullSecrets []string `json:"imagePullSecrets"`
	Revision         string   `json:"revision"`
}

// injectionRequired is Istio's policy check with autoInject "enabled" (the
// default), plus the stand-in's rule that an already injected pod is left
// alone. Istio itself re-injects such a pod after stripping what its status
// annotation lists.
func injectionRequired(pod *corev1.Pod) bool {
	if pod.Spec.HostNetwork {
		return false
	}
	if _, injected := pod.Annotations[annotation.SidecarStatus.Name]; injected {
		return false
	}
	selector := pod.Annotations[annotation.SidecarInject.Name]
	if l, ok := pod.Labels[label.SidecarInject.Name]; ok {
		selector = l // the label is the newer API and wins
	}
	return selector != "false"
}

// inject returns a copy of pod as Istio's sidecar template would leave it.
func inject(original *corev1.Pod, cfg Config) (*corev1.Pod, error) {
	pod := original.DeepCopy()
	ann := pod.Annotations

	resources, err := proxyResources(ann, cfg.Resources)
	if err != nil {
		return nil, err
	}

	native := cfg.NativeSidecar
	if v := ann[annotation.SidecarNativeSidecar.Name]; v != "" {
		native = v != "false"
	}
	mode := orDefault(ann[annotation.SidecarInterceptionMode.Name], defaultInterceptionMode)

	proxyImage := cfg.ProxyImage
	initImage := orDefault(cfg.ProxyInitImage, cfg.ProxyImage)
	if img := ann[annotation.SidecarProxyImage.Name]; strings.Contains(img, "/") {
		proxyImage, initImage = img, img
	}

	var appContainers []string
	for _, c := range pod.Spec.Containers {
		if c.Name != ProxyContainerName {
			appContainers = append(appContainers, c.Name)
		}
	}

	// What the injection template renders.
	var tmplInit, tmplContainers []corev1.Container
	if mode != "NONE" {
		tmplInit = append(tmplInit, initContainer(cfg.CNI, initImage, resources, mode, ann))
	}
	proxy := proxyContainer(proxyImage, resources, native, ann)
	if native {
		tmplInit = append(tmplInit, proxy)
	} else {
		tmplContainers = append(tmplContainers, proxy)
	}
	tmplVolumes := injectedVolumes()

	// A pod may declare its own istio-proxy container to customise the
	// injected one; Istio lays the pod's fields over the template's.
	if user := findContainer(pod.Spec.Containers, ProxyContainerName); user != nil {
		overlay(&proxy, user)
	} else if user := findContainer(pod.Spec.InitContainers, ProxyContainerName); user != nil {
		overlay(&proxy, user)
	}
	pod.Spec.Containers = remove(pod.Spec.Containers, ProxyContainerName)
	pod.Spec.InitContainers = remove(pod.Spec.InitContainers, ProxyContainerName)
	if native {
		tmplInit[len(tmplInit)-1] = proxy
	} else {
		tmplContainers[0] = proxy
	}

	pod.Spec.InitContainers = mergeContainers(pod.Spec.InitContainers, tmplInit)
	pod.Spec.Containers = mergeContainers(pod.Spec.Containers, tmplContainers)
	pod.Spec.Volumes = mergeVolumes(pod.Spec.Volumes, tmplVolumes)

	// Ordering (Istio's reorderPod): the proxy container last; native
	// sidecars come first among init containers after the iptables setup,
	// otherwise istio-validation first and istio-init last.
	pod.Spec.Containers = moveLast(pod.Spec.Containers, ProxyContainerName)
	if native {
		for _, name := range []string{enableCoreDumpName, ProxyContainerName, ValidationContainerName, InitContainerName} {
			pod.Spec.InitContainers = moveFirst(pod.Spec.InitContainers, name)
		}
	} else {
		pod.Spec.InitContainers = moveFirst(pod.Spec.InitContainers, ValidationContainerName)
		pod.Spec.InitContainers = moveLast(pod.Spec.InitContainers, InitContainerName)
		pod.Spec.InitContainers = moveLast(pod.Spec.InitContainers, enableCoreDumpName)
	}

	if pod.Labels == nil {
		pod.Labels = map[string]string{}
	}
	if pod.Annotations == nil {
		pod.Annotations = map[string]string{}
	}
	applyLabels(pod)
	applyAnnotations(pod, cfg, appContainers, mode)
	applyPrometheusMerge(pod)
	rewrite := !cfg.KeepAppProbes
	if v, err := strconv.ParseBool(ann[annotation.SidecarRewriteAppHTTPProbers.Name]); err == nil {
		rewrite = v
	}
	if rewrite {
		rewriteAppProbes(pod)
	}

	status := sidecarStatus{
		InitContainers: names(tmplInit),
		Containers:     names(tmplContainers),
		Revision:       orDefault(cfg.Revision, "default"),
	}
	for _, v := range tmplVolumes {
		status.Volumes = append(status.Volumes, v.Name)
	}
	js, err := json.Marshal(status)
	if err != nil {
		return nil, err
	}
	pod.Annotations[annotation.SidecarStatus.Name] = string(js)
	return pod, nil
}

// proxyResources is the "resources" block of Istio's template: if any of the
// four resource annotations is present (even empty), only the annotations
// count; otherwise the configured resources.
func proxyResources(ann map[string]string, configured corev1.ResourceRequirements) (corev1.ResourceRequirements, error) {
	type entry struct {
		annotation string
		name       corev1.ResourceName
		limit      bool
	}
	entries := []entry{
		{annotation.SidecarProxyCPU.Name, corev1.ResourceCPU, false},
		{annotation.SidecarProxyMemory.Name, corev1.ResourceMemory, false},
		{annotation.SidecarProxyCPULimit.Name, corev1.ResourceCPU, true},
		{annotation.SidecarProxyMemoryLimit.Name, corev1.ResourceMemory, true},
	}
	var out corev1.ResourceRequirements
	found := false
	for _, e := range entries {
		v, ok := ann[e.annotation]
		if !ok {
			continue
		}
		found = true
		q, err := resource.ParseQuantity(v)
		if err != nil {
			return corev1.ResourceRequirements{}, fmt.Errorf("annotation %s=%q: %w", e.annotation, v, err)
		}
		list := &out.Requests
		if e.limit {
			list = &out.Limits
		}
		if *list == nil {
			*list = corev1.ResourceList{}
		}
		(*list)[e.name] = q
	}
	if !found {
		return *configured.DeepCopy(), nil
	}
	return out, nil
}

// proxyContainer is the template's istio-proxy container, less its
// environment, probes and lifecycle hooks.
func proxyContainer(image string, resources corev1.ResourceRequirements, native bool, ann map[string]string) corev1.Container {
	c := corev1.Container{
		Name:  ProxyContainerName,
		Image: image,
		Args: []string{
			"proxy", "sidecar",
			"--domain", "$(POD_NAMESPACE).svc.cluster.local",
			"--proxyLogLevel=" + orDefault(ann[annotation.SidecarLogLevel.Name], "warning"),
			"--proxyComponentLogLevel=" + orDefault(ann[annotation.SidecarComponentLogLevel.Name], "misc:error"),
			"--log_output_level=" + orDefault(ann[annotation.SidecarAgentLogLevel.Name], "default:info"),
		},
		Ports: []corev1.ContainerPort{
			{Name: "http-envoy-prom", ContainerPort: 15090, Protocol: corev1.ProtocolTCP},
		},
		Resources: *resources.DeepCopy(),
		SecurityContext: &corev1.SecurityContext{
			AllowPrivilegeEscalation: ptr.To(false),
			Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
			Privileged:               ptr.To(false),
			ReadOnlyRootFilesystem:   ptr.To(true),
			RunAsNonRoot:             ptr.To(true),
			RunAsUser:                ptr.To(proxyUID),
			RunAsGroup:               ptr.To(proxyUID),
		},
		VolumeMounts: []corev1.VolumeMount{
			{Name: "workload-socket", MountPath: "/var/run/secrets/workload-spiffe-uds"},
			{Name: "credential-socket", MountPath: "/var/run/secrets/credential-uds"},
			{Name: "workload-certs", MountPath: "/var/run/secrets/workload-spiffe-credentials"},
			{Name: "istiod-ca-cert", MountPath: "/var/run/secrets/istio"},
			{Name: "istio-ca-crl", MountPath: "/var/run/secrets/istio/crl"},
			{Name: "istio-data", MountPath: "/var/lib/istio/data"},
			{Name: "istio-envoy", MountPath: "/etc/istio/proxy"},
			{Name: "istio-token", MountPath: "/var/run/secrets/tokens"},
			{Name: "istio-podinfo", MountPath: "/etc/istio/pod"},
		},
	}
	if native {
		c.RestartPolicy = ptr.To(corev1.ContainerRestartPolicyAlways)
	}
	return c
}

// initContainer is the template's istio-init (iptables setup) or, with CNI,
// istio-validation (checks the CNI agent's setup) container.
func initContainer(cni bool, image string, resources corev1.ResourceRequirements, mode string, ann map[string]string) corev1.Container {
	exclude := excludeInboundPort(
		orDefault(ann[annotation.SidecarStatusPort.Name], defaultStatusPort),
		ann[annotation.SidecarTrafficExcludeInboundPorts.Name])
	excludeArg := "15090,15021"
	if exclude != "" {
		excludeArg += "," + exclude
	}
	args := []string{
		"istio-iptables",
		"-p", "15001",
		"-z", "15006",
		"-u", "1337",
		"-m", mode,
		"-i", orDefault(ann[annotation.SidecarTrafficIncludeOutboundIPRanges.Name], "*"),
		"-x", ann[annotation.SidecarTrafficExcludeOutboundIPRanges.Name],
		"-b", orDefault(ann[annotation.SidecarTrafficIncludeInboundPorts.Name], "*"),
		"-d", excludeArg,
	}
	if v, ok := ann[annotation.SidecarTrafficIncludeOutboundPorts.Name]; ok {
		args = append(args, "-q", v)
	}
	if v, ok := ann[annotation.SidecarTrafficExcludeOutboundPorts.Name]; ok {
		args = append(args, "-o", v)
	}
	if v, ok := ann[annotation.IoIstioRerouteVirtualInterfaces.Name]; ok {
		args = append(args, "-k", v)
	} else if v, ok := ann[annotation.SidecarTrafficKubevirtInterfaces.Name]; ok {
		args = append(args, "-k", v)
	}
	if v, ok := ann[annotation.SidecarTrafficExcludeInterfaces.Name]; ok {
		args = append(args, "-c", v)
	}
	args = append(args, "--log_output_level="+orDefault(ann[annotation.SidecarAgentLogLevel.Name], "default:info"))

	c := corev1.Container{
		Name:      InitContainerName,
		Image:     image,
		Resources: *resources.DeepCopy(),
	}
	if cni {
		c.Name = ValidationContainerName
		args = append(args, "--run-validation", "--skip-rule-apply")
		c.SecurityContext = &corev1.SecurityContext{
			AllowPrivilegeEscalation: ptr.To(false),
			Privileged:               ptr.To(false),
			Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
			ReadOnlyRootFilesystem:   ptr.To(true),
			RunAsGroup:               ptr.To(proxyUID),
			RunAsUser:                ptr.To(proxyUID),
			RunAsNonRoot:             ptr.To(true),
		}
	} else {
		c.SecurityContext = &corev1.SecurityContext{
			AllowPrivilegeEscalation: ptr.To(false),
			Privileged:               ptr.To(false),
			Capabilities: &corev1.Capabilities{
				Add:  []corev1.Capability{"NET_ADMIN", "NET_RAW"},
				Drop: []corev1.Capability{"ALL"},
			},
			ReadOnlyRootFilesystem: ptr.To(false),
			RunAsGroup:             ptr.To(int64(0)),
			RunAsNonRoot:           ptr.To(false),
			RunAsUser:              ptr.To(int64(0)),
		}
	}
	c.Args = args
	return c
}

// injectedVolumes are the template's volumes with the chart's default values
// (pilotCertProvider istiod, no GKE workload certificates, no mTLS cert
// mount, no bootstrap override, no user volumes).
func injectedVolumes() []corev1.Volume {
	emptyDir := func(name string) corev1.Volume {
		return corev1.Volume{Name: name, VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}
	}
	return []corev1.Volume{
		emptyDir("workload-socket"),
		emptyDir("credential-socket"),
		emptyDir("workload-certs"),
		{Name: "istio-envoy", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{Medium: corev1.StorageMediumMemory}}},
		emptyDir("istio-data"),
		{Name: "istio-podinfo", VolumeSource: corev1.VolumeSource{DownwardAPI: &corev1.DownwardAPIVolumeSource{
			Items: []corev1.DownwardAPIVolumeFile{
				{Path: "labels", FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.labels"}},
				{Path: "annotations", FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.annotations"}},
			},
		}}},
		{Name: "istio-token", VolumeSource: corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{
			Sources: []corev1.VolumeProjection{{ServiceAccountToken: &corev1.ServiceAccountTokenProjection{
				Path:              "istio-token",
				ExpirationSeconds: ptr.To(int64(43200)),
				Audience:          "istio-ca",
			}}},
		}}},
		{Name: "istiod-ca-cert", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{
			LocalObjectReference: corev1.LocalObjectReference{Name: "istio-ca-root-cert"},
		}}},
		{Name: "istio-ca-crl", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{
			LocalObjectReference: corev1.LocalObjectReference{Name: "istio-ca-crl"},
			Optional:             ptr.To(true),
		}}},
	}
}

// applyLabels sets the labels of the template's metadata, each defaulting to
// the pod's own value.
func applyLabels(pod *corev1.Pod) {
	l := pod.Labels
	l[label.SecurityTlsMode.Name] = firstNonEmpty(l[label.SecurityTlsMode.Name], "istio")
	name := firstNonEmpty(l[label.ServiceCanonicalName.Name], l["app.kubernetes.io/name"], l["app"], workloadName(pod))
	if len(name) > 63 {
		name = name[:63]
	}
	l[label.ServiceCanonicalName.Name] = strings.Trim(name, "-_.")
	l[label.ServiceCanonicalRevision.Name] = firstNonEmpty(l[label.ServiceCanonicalRevision.Name],
		l["app.kubernetes.io/version"], l["version"], "latest")
}

// applyAnnotations sets the annotations of the template's metadata.
func applyAnnotations(pod *corev1.Pod, cfg Config, appContainers []string, mode string) {
	a := pod.Annotations
	orig := func(key string) string { return a[key] }
	set := map[string]string{
		label.IoIstioRev.Name: orDefault(cfg.Revision, "default"),
	}
	if len(appContainers) > 0 {
		for _, key := range []string{"kubectl.kubernetes.io/default-logs-container", "kubectl.kubernetes.io/default-container"} {
			if _, ok := a[key]; !ok {
				set[key] = appContainers[0]
			}
		}
	}
	if cfg.CNI {
		set[annotation.SidecarInterceptionMode.Name] = mode
		set[annotation.SidecarTrafficIncludeOutboundIPRanges.Name] = orDefault(orig(annotation.SidecarTrafficIncludeOutboundIPRanges.Name), "*")
		if v := orig(annotation.SidecarTrafficExcludeOutboundIPRanges.Name); v != "" {
			set[annotation.SidecarTrafficExcludeOutboundIPRanges.Name] = v
		}
		set[annotation.SidecarTrafficIncludeInboundPorts.Name] = orDefault(orig(annotation.SidecarTrafficIncludeInboundPorts.Name), "*")
		set[annotation.SidecarTrafficExcludeInboundPorts.Name] = excludeInboundPort(
			orDefault(orig(annotation.SidecarStatusPort.Name), defaultStatusPort),
			orig(annotation.SidecarTrafficExcludeInboundPorts.Name))
	}
	for k, v := range cfg.InjectedAnnotations {
		set[k] = v
	}
	for k, v := range set {
		a[k] = v
	}
}

// prometheusAnnotations are the scrape annotations Istio's metrics merging
// takes over, in Prometheus' sanitised spelling.
var prometheusAnnotations = map[string]bool{
	"prometheus_io_scrape":               true,
	"prometheus_io_port":                 true,
	"prometheus_io_path":                 true,
	"prometheus_istio_io_scrape_targets": true,
}

var invalidLabelChar = regexp.MustCompile(`[^a-zA-Z0-9_]`)

// applyPrometheusMerge is Istio's metrics merging with the mesh default
// (enablePrometheusMerge true): unless the pod opts out, its scrape
// annotations are pointed at the agent's merged endpoint. Istio also passes
// the pod's own scrape settings to the agent in an environment variable,
// which the stand-in does not set.
func applyPrometheusMerge(pod *corev1.Pod) {
	a := pod.Annotations
	scrape := true
	port := ""
	for k, v := range a {
		switch invalidLabelChar.ReplaceAllString(k, "_") {
		case "prometheus_io_scrape":
			if b, err := strconv.ParseBool(v); err == nil {
				scrape = b
			}
		case "prometheus_io_port":
			port = v
		}
	}
	merge := true
	if v, ok := a[annotation.PrometheusMergeMetrics.Name]; ok {
		if b, err := strconv.ParseBool(v); err == nil {
			merge = b
		}
	}
	if !scrape || !merge || port == defaultStatusPort {
		return
	}
	for k := range a {
		if prometheusAnnotations[invalidLabelChar.ReplaceAllString(k, "_")] {
			delete(a, k)
		}
	}
	a["prometheus.io/port"] = defaultStatusPort
	a["prometheus.io/path"] = "/stats/prometheus"
	a["prometheus.io/scrape"] = "true"
}

// rewriteAppProbes points the probes and lifecycle hooks of the pod's other
// containers at the agent's status port (Istio's patchRewriteProbe), since
// the kubelet's requests would otherwise be caught by the sidecar. Istio
// also hands the original probes to the agent in an environment variable,
// which the stand-in does not set.
func rewriteAppProbes(pod *corev1.Pod) {
	port := defaultStatusPort
	if v, ok := pod.Annotations[annotation.SidecarStatusPort.Name]; ok {
		port = v
	}
	statusPort, _ := strconv.Atoi(port) // Istio uses 0 for an invalid port too
	toAgent := func(path string) *corev1.HTTPGetAction {
		return &corev1.HTTPGetAction{Path: path, Port: intstr.FromInt32(int32(statusPort))}
	}
	rewriteHandler := func(h *corev1.ProbeHandler, path string) {
		switch {
		case h.HTTPGet != nil:
			h.HTTPGet.Path, h.HTTPGet.Port = path, intstr.FromInt32(int32(statusPort))
			if h.HTTPGet.Scheme == corev1.URISchemeHTTPS {
				h.HTTPGet.Scheme = corev1.URISchemeHTTP
			}
		case h.TCPSocket != nil:
			h.HTTPGet, h.TCPSocket = toAgent(path), nil
		case h.GRPC != nil:
			h.HTTPGet, h.GRPC = toAgent(path), nil
		}
	}
	rewriteLifecycle := func(h *corev1.LifecycleHandler, path string) {
		switch {
		case h == nil:
		case h.HTTPGet != nil:
			h.HTTPGet.Path, h.HTTPGet.Port = path, intstr.FromInt32(int32(statusPort))
			if h.HTTPGet.Scheme == corev1.URISchemeHTTPS {
				h.HTTPGet.Scheme = corev1.URISchemeHTTP
			}
		case h.TCPSocket != nil:
			h.HTTPGet, h.TCPSocket = toAgent(path), nil
		}
	}
	for _, cs := range [][]corev1.Container{pod.Spec.Containers, pod.Spec.InitContainers} {
		for i := range cs {
			c := &cs[i]
			if c.Name == ProxyContainerName {
				continue
			}
			for _, p := range []struct {
				probe *corev1.Probe
				path  string
			}{
				{c.ReadinessProbe, "/app-health/" + c.Name + "/readyz"},
				{c.LivenessProbe, "/app-health/" + c.Name + "/livez"},
				{c.StartupProbe, "/app-health/" + c.Name + "/startupz"},
			} {
				if p.probe != nil {
					rewriteHandler(&p.probe.ProbeHandler, p.path)
				}
			}
			if c.Lifecycle != nil {
				rewriteLifecycle(c.Lifecycle.PreStop, "/app-lifecycle/"+c.Name+"/prestopz")
				rewriteLifecycle(c.Lifecycle.PostStart, "/app-lifecycle/"+c.Name+"/poststartz")
			}
		}
	}
}

// cronJobName matches a Job created by a CronJob.
var cronJobName = regexp.MustCompile(`(.+)-\d{8,10}$`)

// workloadName is the name Istio derives for the pod's workload
// (pkg/kube.GetDeployMetaFromPod).
func workloadName(pod *corev1.Pod) string {
	name := pod.Name
	if pod.GenerateName != "" {
		for _, ref := range pod.OwnerReferences {
			if ref.Controller == nil || !*ref.Controller {
				continue
			}
			name = ref.Name
			hash := pod.Labels["pod-template-hash"]
			rolloutHash := pod.Labels["rollouts-pod-template-hash"]
			switch {
			case ref.Kind == "ReplicaSet" && hash != "" && strings.HasSuffix(ref.Name, hash):
				name = strings.TrimSuffix(ref.Name, "-"+hash)
			case ref.Kind == "ReplicaSet" && rolloutHash != "" && strings.HasSuffix(ref.Name, rolloutHash):
				name = strings.TrimSuffix(ref.Name, "-"+rolloutHash)
			case ref.Kind == "ReplicationController" && pod.Labels["deploymentconfig"] != "":
				name = pod.Labels["deploymentconfig"]
			case ref.Kind == "Job":
				if m := cronJobName.FindStringSubmatch(ref.Name); len(m) == 2 {
					name = m[1]
				}
			}
			break
		}
	}
	if name == "" {
		name = pod.Name
	}
	return name
}

// excludeInboundPort adds the status port to the excluded inbound ports
// unless it is there already or disabled (Istio's template function).
func excludeInboundPort(statusPort, excluded string) string {
	statusPort = strings.TrimSpace(statusPort)
	if statusPort == "" || statusPort == "0" {
		return excluded
	}
	var out []string
	for _, p := range strings.Split(excluded, ",") {
		if p == statusPort {
			return excluded
		}
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return strings.Join(append(out, statusPort), ",")
}

// overlay lays the fields a pod customises most on its own istio-proxy
// container over the injected one.
func overlay(injected *corev1.Container, user *corev1.Container) {
	if user.Image != "" && user.Image != "auto" {
		injected.Image = user.Image
	}
	for name, q := range user.Resources.Requests {
		if injected.Resources.Requests == nil {
			injected.Resources.Requests = corev1.ResourceList{}
		}
		injected.Resources.Requests[name] = q
	}
	for name, q := range user.Resources.Limits {
		if injected.Resources.Limits == nil {
			injected.Resources.Limits = corev1.ResourceList{}
		}
		injected.Resources.Limits[name] = q
	}
	if len(user.Args) > 0 {
		injected.Args = user.Args
	}
	for _, e := range user.Env {
		replaced := false
		for i := range injected.Env {
			if injected.Env[i].Name == e.Name {
				injected.Env[i], replaced = e, true
			}
		}
		if !replaced {
			injected.Env = append(injected.Env, e)
		}
	}
}

// mergeContainers replaces same-named containers and appends the others, the
// outcome of the strategic merge Istio applies for the fields set here.
func mergeContainers(existing, add []corev1.Container) []corev1.Container {
	for _, c := range add {
		if i := indexOf(existing, c.Name); i >= 0 {
			existing[i] = c
		} else {
			existing = append(existing, c)
		}
	}
	return existing
}

func mergeVolumes(existing, add []corev1.Volume) []corev1.Volume {
outer:
	for _, v := range add {
		for i := range existing {
			if existing[i].Name == v.Name {
				existing[i] = v
				continue outer
			}
		}
		existing = append(existing, v)
	}
	return existing
}

func indexOf(cs []corev1.Container, name string) int {
	for i := range cs {
		if cs[i].Name == name {
			return i
		}
	}
	return -1
}

func findContainer(cs []corev1.Container, name string) *corev1.Container {
	if i := indexOf(cs, name); i >= 0 {
		return &cs[i]
	}
	return nil
}

func remove(cs []corev1.Container, name string) []corev1.Container {
	if i := indexOf(cs, name); i >= 0 {
		return append(cs[:i:i], cs[i+1:]...)
	}
	return cs
}

func moveFirst(cs []corev1.Container, name string) []corev1.Container {
	i := indexOf(cs, name)
	if i < 0 {
		return cs
	}
	c := cs[i]
	return append([]corev1.Container{c}, remove(cs, name)...)
}

func moveLast(cs []corev1.Container, name string) []corev1.Container {
	i := indexOf(cs, name)
	if i < 0 {
		return cs
	}
	c := cs[i]
	return append(remove(cs, name), c)
}

func names(cs []corev1.Container) []string {
	var out []string
	for _, c := range cs {
		out = append(out, c.Name)
	}
	return out
}

func orDefault(v, def string) string {
	if v == "" {
		return def
	}
	return v
}

func firstNonEmpty(vs ...string) string {
	for _, v := range vs {
		if v != "" {
			return v
		}
	}
	return ""
}

// patchOp is one RFC 6902 JSON patch operation.
type patchOp struct {
	Op    string `json:"op"`
	Path  string `json:"path"`
	Value any    `json:"value"`
}

// createPatch turns the difference between the original and the injected pod
// into a JSON patch. Each changed field is replaced whole ("add" on an
// existing member replaces it), which the API server applies exactly.
func createPatch(original, injected *corev1.Pod) ([]byte, error) {
	var ops []patchOp
	diff := func(path string, before, after any) {
		if !reflect.DeepEqual(before, after) {
			ops = append(ops, patchOp{Op: "add", Path: path, Value: after})
		}
	}
	diff("/metadata/labels", original.Labels, injected.Labels)
	diff("/metadata/annotations", original.Annotations, injected.Annotations)
	diff("/spec/initContainers", original.Spec.InitContainers, injected.Spec.InitContainers)
	diff("/spec/containers", original.Spec.Containers, injected.Spec.Containers)
	diff("/spec/volumes", original.Spec.Volumes, injected.Spec.Volumes)
	if ops == nil {
		ops = []patchOp{}
	}
	return json.Marshal(ops)
}
