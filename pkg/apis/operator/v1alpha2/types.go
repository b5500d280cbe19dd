package v1alpha2

import (
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// +genclient
// +k8s:deepcopy-gen:interfaces=k8s.io/apimachinery/pkg/runtime.Object
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:storageversion
// +kubebuilder:resource:shortName=ist,categories={kyma-modules,kyma-istio}
// +kubebuilder:printcolumn:name="State",type=string,JSONPath=`.status.state`
// +kubebuilder:printcolumn:name="Istio",type=string,JSONPath=`.status.installedVersion`,description="Installed Istio version"
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
// +kubebuilder:printcolumn:name="Profile",type=string,JSONPath=`.status.profile`,priority=1,description="Installed profile"
// +kubebuilder:printcolumn:name="Next window",type=string,JSONPath=`.status.nextMaintenanceWindow`,priority=1,description="When the next maintenance window for proxy restarts opens"

// Istio describes the Istio installation the operator keeps in the cluster
// and reports its state.
type Istio struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// Spec is the desired Istio installation.
	// +optional
	Spec IstioSpec `json:"spec,omitempty"`
	// Status is the observed state of the installation, written by the operator.
	// +optional
	Status IstioStatus `json:"status,omitempty"`
}

// +k8s:deepcopy-gen:interfaces=k8s.io/apimachinery/pkg/runtime.Object
// +kubebuilder:object:root=true

// IstioList is a list of Istio resources.
type IstioList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []Istio `json:"items"`
}

// IstioSpec is the desired state of the Istio installation. Every field is optional.
// +kubebuilder:validation:XValidation:rule="!has(self.canaryRollback) || !self.canaryRollback || (has(self.upgradeStrategy) && self.upgradeStrategy == 'Canary')",message="spec.canaryRollback needs spec.upgradeStrategy: Canary",fieldPath=".canaryRollback",reason=FieldValueInvalid
type IstioSpec struct {
	// Config configures the mesh.
	// +optional
	Config Config `json:"config,omitempty"`
	// Components configures the Kubernetes resources of Istio's components.
	// +optional
	Components *Components `json:"components,omitempty"`
	// CompatibilityMode enables the compatibility version of Istio's
	// defaults (the previous minor version's behaviour).
	// +optional
	CompatibilityMode bool `json:"compatibilityMode,omitempty"`
	// NetworkPoliciesEnabled installs NetworkPolicies that let the operator and
	// Istio work under a deny-all policy in kyma-system and istio-system.
	// +optional
	NetworkPoliciesEnabled bool `json:"networkPoliciesEnabled,omitempty"`
	// EnableModuleNetworkPolicies is the name later Kyma releases use for
	// networkPoliciesEnabled; either one enables the policies.
	// +optional
	EnableModuleNetworkPolicies bool `json:"enableModuleNetworkPolicies,omitempty"`
	// Experimental holds features that only an experimental build accepts.
	// +optional
	Experimental *Experimental `json:"experimental,omitempty"`

	// DeletionStrategy decides what happens when this resource is deleted
	// while user-created Istio resources exist. Blocking (the default) keeps
	// Istio installed and reports the resources; Cascading deletes them and
	// then uninstalls Istio. Extension.
	// +optional
	// +kubebuilder:validation:Enum=Blocking;Cascading
	DeletionStrategy DeletionStrategy `json:"deletionStrategy,omitempty"`
	// ProxyRestart paces the restarts of workloads whose sidecar proxy is
	// outdated. Unset fields take the operator's flag defaults. Extension.
	// +optional
	ProxyRestart *ProxyRestart `json:"proxyRestart,omitempty"`
	// Images sets where Istio's images are pulled from. Unset fields take
	// the operator's --istio-registry and --image-pull-secrets. Extension.
	// +optional
	Images *Images `json:"images,omitempty"`
	// Profile sizes Istio's components: Evaluation (one replica each, small
	// requests and limits) or Production. Unset, the operator chooses from
	// the cluster's allocatable resources and reports the choice in
	// status.profile. Extension.
	// +optional
	// +kubebuilder:validation:Enum=Evaluation;Production
	Profile Profile `json:"profile,omitempty"`
	// UpgradeStrategy is how a new minor version of Istio replaces the
	// installed one. InPlace (the default) replaces the control plane at
	// once and then restarts the workloads. Canary installs the new version
	// as a revision named after it (1-31) beside the installed one, moves the
	// default revision tag to it, restarts the workloads onto it, and
	// removes the old control plane once no pod uses it. A patch upgrade is
	// always made in place. Extension.
	// +optional
	// +kubebuilder:validation:Enum=InPlace;Canary
	UpgradeStrategy UpgradeStrategy `json:"upgradeStrategy,omitempty"`
	// CanaryRollback, set during a canary upgrade while the old control
	// plane exists, moves back to it: the default tag returns to the old
	// revision, the workloads already moved are restarted back once, and
	// the new revision is removed. While it is set, the operator keeps the
	// old version and upgrades no further; unset it to upgrade again.
	// Extension.
	// +optional
	CanaryRollback bool `json:"canaryRollback,omitempty"`
}

// UpgradeStrategy is how a new minor version replaces the installed one.
type UpgradeStrategy string

const (
	// UpgradeStrategyInPlace replaces the control plane at once.
	UpgradeStrategyInPlace UpgradeStrategy = "InPlace"
	// UpgradeStrategyCanary runs the new version as a revision beside the
	// old one and moves the workloads over.
	UpgradeStrategyCanary UpgradeStrategy = "Canary"
)

// Profile is a sizing of Istio's components.
type Profile string

const (
	// ProfileEvaluation runs one replica of istiod and of each gateway,
	// without autoscaling, with small requests and limits.
	ProfileEvaluation Profile = "Evaluation"
	// ProfileProduction autoscales istiod and the gateways and gives every
	// component production requests and limits.
	ProfileProduction Profile = "Production"
)

// Images sets where Istio's images come from. Extension.
type Images struct {
	// Registry is the registry, and repository path, of every Istio image
	// the operator installs and of the injected sidecar proxies, as
	// host[:port][/path] ("registry.example.com/istio"). Images keep
	// Istio's names and the operator's version as their tag. A change of
	// it restarts every injected workload once.
	// +optional
	// +kubebuilder:validation:MaxLength=255
	// +kubebuilder:validation:Pattern=`^[a-z0-9]+([._-][a-z0-9]+)*(:[0-9]+)?(/[a-z0-9]+([._-][a-z0-9]+)*)*$`
	Registry string `json:"registry,omitempty"`
	// PullSecrets are the names of image pull Secrets set on Istio's
	// ServiceAccounts and on every injected pod. Each Secret must exist in
	// istio-system and in every namespace with injected workloads.
	// +optional
	// +kubebuilder:validation:MaxItems=16
	// +kubebuilder:validation:items:MaxLength=253
	// +kubebuilder:validation:items:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`
	// +listType=atomic
	PullSecrets []string `json:"pullSecrets,omitempty"`
}

// DeletionStrategy is what the operator does with user-created Istio
// resources when the Istio resource is deleted.
type DeletionStrategy string

const (
	// DeletionStrategyBlocking keeps Istio installed while user-created Istio
	// resources exist.
	DeletionStrategyBlocking DeletionStrategy = "Blocking"
	// DeletionStrategyCascading deletes user-created Istio resources, then
	// uninstalls Istio.
	DeletionStrategyCascading DeletionStrategy = "Cascading"
)

// ProxyRestart paces sidecar proxy restarts. Extension.
type ProxyRestart struct {
	// RestartsPerSecond is the steady rate of workload restarts, as a
	// Kubernetes quantity ("2", "0.5", "500m"), at least 100m (one restart
	// every 10 seconds), so that a wave of restarts ends in hours, not days.
	// +optional
	// +kubebuilder:validation:XValidation:rule="!isQuantity(string(self)) || !quantity(string(self)).isLessThan(quantity('100m'))",message="spec.proxyRestart.restartsPerSecond must be at least 100m (0.1 restarts per second)"
	RestartsPerSecond *resource.Quantity `json:"restartsPerSecond,omitempty"`
	// MaxConcurrentRollouts is the most workloads rolling out at once.
	// +optional
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=10000
	MaxConcurrentRollouts *int32 `json:"maxConcurrentRollouts,omitempty"`
	// MaintenanceWindows, when set, confine restarts for a changed proxy
	// configuration to these windows: outside them the workloads wait, and
	// status.nextMaintenanceWindow says when the next one opens.
	// +optional
	// +kubebuilder:validation:MaxItems=32
	// +listType=atomic
	MaintenanceWindows []MaintenanceWindow `json:"maintenanceWindows,omitempty"`
	// VersionUpgrades says whether restarts for a new Istio version wait for
	// a maintenance window too (InWindow, the default) or start at once
	// (Immediate). Without maintenance windows it has no effect.
	// +optional
	// +kubebuilder:validation:Enum=InWindow;Immediate
	VersionUpgrades VersionUpgradeRestarts `json:"versionUpgrades,omitempty"`
}

// MaintenanceWindow is a weekly recurring time span. A window that is open
// lets restarts start; a wave in progress when it closes stops starting
// new restarts until the next one opens.
type MaintenanceWindow struct {
	// Days are the days of the week on which the window opens; unset, every day.
	// +optional
	// +kubebuilder:validation:MaxItems=7
	// +kubebuilder:validation:items:Enum=Mon;Tue;Wed;Thu;Fri;Sat;Sun
	// +listType=set
	Days []Weekday `json:"days,omitempty"`
	// Start is the time of day the window opens, as HH:MM (24 hours).
	// +kubebuilder:validation:Pattern=`^([01][0-9]|2[0-3]):[0-5][0-9]$`
	Start string `json:"start"`
	// Duration is how long the window stays open, as a Go duration ("2h",
	// "90m"), from one minute to one week.
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Pattern=`^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$`
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('1m') && duration(self) <= duration('168h')",message="spec.proxyRestart.maintenanceWindows[].duration must be from 1m to 168h"
	Duration metav1.Duration `json:"duration"`
	// TimeZone is the IANA time zone of Start ("Europe/Berlin"); unset, UTC.
	// "Local" is refused: it would be the operator's own zone.
	// +optional
	// +kubebuilder:validation:MaxLength=64
	// +kubebuilder:validation:Pattern=`^[A-Za-z0-9_+-]+(/[A-Za-z0-9_+-]+)*$`
	// +kubebuilder:validation:XValidation:rule="self != 'Local'",message="spec.proxyRestart.maintenanceWindows[].timeZone must name a zone; Local is the operator's own"
	TimeZone string `json:"timeZone,omitempty"`
}

// Weekday is a day of the week, abbreviated to three letters.
type Weekday string

// VersionUpgradeRestarts is when restarts for a new Istio version start.
type VersionUpgradeRestarts string

const (
	// VersionUpgradesInWindow restarts for a new Istio version only in a
	// maintenance window, like a configuration change.
	VersionUpgradesInWindow VersionUpgradeRestarts = "InWindow"
	// VersionUpgradesImmediate restarts for a new Istio version at once:
	// proxies should not run older than istiod for long.
	VersionUpgradesImmediate VersionUpgradeRestarts = "Immediate"
)

// Config configures the mesh.
type Config struct {
	// NumTrustedProxies is the number of trusted proxies in front of the
	// ingress gateway (meshConfig.defaultConfig.gatewayTopology.numTrustedProxies).
	// +optional
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=4294967295
	NumTrustedProxies *int64 `json:"numTrustedProxies,omitempty"`
	// ForwardClientCertDetails is how gateways handle the
	// X-Forwarded-Client-Cert header (gatewayTopology.forwardClientCertDetails).
	// Istio's default is SANITIZE_SET.
	// +optional
	// +kubebuilder:validation:Enum=APPEND_FORWARD;SANITIZE_SET;SANITIZE;ALWAYS_FORWARD_ONLY;FORWARD_ONLY
	ForwardClientCertDetails *XFCCStrategy `json:"forwardClientCertDetails,omitempty"`
	// Authorizers are external authorization providers, each added to
	// meshConfig.extensionProviders as envoyExtAuthzHttp. Names must be unique.
	// +optional
	// +kubebuilder:validation:MaxItems=64
	// +listType=atomic
	Authorizers []*Authorizer `json:"authorizers,omitempty"`
	// GatewayExternalTrafficPolicy is the externalTrafficPolicy of the
	// istio-ingressgateway Service. Local preserves client IPs.
	// +optional
	// +kubebuilder:validation:Enum=Local;Cluster
	GatewayExternalTrafficPolicy *string `json:"gatewayExternalTrafficPolicy,omitempty"`
	// Telemetry configures Istio telemetry.
	// +optional
	Telemetry Telemetry `json:"telemetry,omitempty"`
	// TrustDomain is the mesh's SPIFFE trust domain (meshConfig.trustDomain).
	// +optional
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=255
	// +kubebuilder:validation:Pattern=`^[a-z0-9]*([a-z0-9-_]*)?(\.[a-z0-9]*([a-z0-9-_]*[a-z0-9]*)?)*$`
	TrustDomain *string `json:"trustDomain,omitempty"`
	// EnableDNSProxying turns on the sidecar's DNS proxy
	// (proxyMetadata ISTIO_META_DNS_CAPTURE).
	// +optional
	EnableDNSProxying *bool `json:"enableDNSProxying,omitempty"`
	// ProxyStatsMatcher selects the Envoy statistics sidecars report
	// (meshConfig.defaultConfig.proxyStatsMatcher).
	// +optional
	ProxyStatsMatcher *ProxyStatsMatcher `json:"proxyStatsMatcher,omitempty"`
}

// XFCCStrategy is how a gateway handles the X-Forwarded-Client-Cert header.
type XFCCStrategy string

// The XFCC strategies Istio supports.
const (
	XFCCAppendForward     XFCCStrategy = "APPEND_FORWARD"
	XFCCSanitizeSet       XFCCStrategy = "SANITIZE_SET"
	XFCCSanitize          XFCCStrategy = "SANITIZE"
	XFCCAlwaysForwardOnly XFCCStrategy = "ALWAYS_FORWARD_ONLY"
	XFCCForwardOnly       XFCCStrategy = "FORWARD_ONLY"
)

// Authorizer is an external authorization provider that AuthorizationPolicies
// with action CUSTOM can reference by name.
type Authorizer struct {
	// Name identifies the provider; it must be unique among the authorizers.
	// +kubebuilder:validation:MinLength=1
	Name string `json:"name"`
	// Service implementing Envoy's ext_authz HTTP API, as [Namespace/]Hostname.
	// +optional
	Service string `json:"service"`
	// Port of the service.
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=65535
	Port int32 `json:"port"`
	// Headers included, added or forwarded during authorization.
	// +optional
	Headers *Headers `json:"headers,omitempty"`
	// PathPrefix is prepended to the path of the authorization request.
	// +optional
	PathPrefix *string `json:"pathPrefix,omitempty"`
	// Timeout of the authorization request, as a Go duration ("1s", "250ms").
	// +optional
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Pattern=`^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$`
	Timeout *metav1.Duration `json:"timeout,omitempty"`
}

// Headers are the headers included, added or forwarded during authorization.
type Headers struct {
	// InCheck are the headers included in or added to the check request.
	// +optional
	InCheck *InCheck `json:"inCheck,omitempty"`
	// ToUpstream are the headers forwarded to the backend.
	// +optional
	ToUpstream *ToUpstream `json:"toUpstream,omitempty"`
	// ToDownstream are the headers forwarded to the client.
	// +optional
	ToDownstream *ToDownstream `json:"toDownstream,omitempty"`
}

// InCheck are the headers of the check request.
type InCheck struct {
	// Include lists client request headers sent to the authorization service.
	// +optional
	// +listType=atomic
	Include []string `json:"include,omitempty"`
	// Add sets fixed headers on the authorization request.
	// +optional
	Add map[string]string `json:"add,omitempty"`
}

// ToUpstream are the authorization service's headers sent to the backend.
type ToUpstream struct {
	// OnAllow lists the headers added to the request when it is allowed.
	// +optional
	// +listType=atomic
	OnAllow []string `json:"onAllow,omitempty"`
}

// ToDownstream are the authorization service's headers sent to the client.
type ToDownstream struct {
	// OnAllow lists the headers sent to the client when the request is allowed.
	// +optional
	// +listType=atomic
	OnAllow []string `json:"onAllow,omitempty"`
	// OnDeny lists the headers sent to the client when the request is denied.
	// +optional
	// +listType=atomic
	OnDeny []string `json:"onDeny,omitempty"`
}

// Telemetry configures Istio telemetry.
type Telemetry struct {
	// Metrics configures Istio metrics.
	// +optional
	Metrics Metrics `json:"metrics,omitempty"`
}

// Metrics configures Istio metrics.
type Metrics struct {
	// PrometheusMerge merges the application's metrics with Istio's on
	// :15020/stats/prometheus and sets prometheus.io annotations on
	// injected pods (meshConfig.enablePrometheusMerge).
	// +optional
	PrometheusMerge bool `json:"prometheusMerge,omitempty"`
}

// ProxyStatsMatcher selects Envoy statistics by name.
type ProxyStatsMatcher struct {
	// InclusionRegexps are RE2 regular expressions of statistics to report.
	// Envoy rejects an empty expression, prefix or suffix, and with it the
	// bootstrap of every proxy.
	// +optional
	// +kubebuilder:validation:MaxItems=256
	// +kubebuilder:validation:items:MinLength=1
	// +listType=atomic
	InclusionRegexps []string `json:"inclusionRegexps,omitempty"`
	// InclusionPrefixes are name prefixes of statistics to report. Extension.
	// +optional
	// +kubebuilder:validation:items:MinLength=1
	// +listType=atomic
	InclusionPrefixes []string `json:"inclusionPrefixes,omitempty"`
	// InclusionSuffixes are name suffixes of statistics to report. Extension.
	// +optional
	// +kubebuilder:validation:items:MinLength=1
	// +listType=atomic
	InclusionSuffixes []string `json:"inclusionSuffixes,omitempty"`
}

// Components configures Istio's components.
type Components struct {
	// Pilot configures istiod.
	// +optional
	Pilot *IstioComponent `json:"pilot,omitempty"`
	// IngressGateway configures the istio-ingressgateway Deployment.
	// +optional
	IngressGateway *IstioComponent `json:"ingressGateway,omitempty"`
	// Cni configures the istio-cni-node DaemonSet.
	// +optional
	Cni *CniComponent `json:"cni,omitempty"`
	// Proxy configures the injected sidecar proxies.
	// +optional
	Proxy *ProxyComponent `json:"proxy,omitempty"`
	// EgressGateway enables and configures the istio-egressgateway Deployment.
	// +optional
	EgressGateway *EgressGateway `json:"egressGateway,omitempty"`
}

// IstioComponent configures a Deployment of Istio (istiod, a gateway).
type IstioComponent struct {
	// K8s are the component's Kubernetes settings.
	K8s *KubernetesResourcesConfig `json:"k8s"`
}

// KubernetesResourcesConfig is a subset of Istio's KubernetesResourcesSpec.
type KubernetesResourcesConfig struct {
	// HPASpec configures the HorizontalPodAutoscaler.
	// +optional
	HPASpec *HPASpec `json:"hpaSpec,omitempty"`
	// Strategy configures the rolling update.
	// +optional
	Strategy *Strategy `json:"strategy,omitempty"`
	// Resources are the container's resource requests and limits.
	// +optional
	Resources *Resources `json:"resources,omitempty"`
}

// HPASpec configures a HorizontalPodAutoscaler.
// +kubebuilder:validation:XValidation:rule="!has(self.minReplicas) || !has(self.maxReplicas) || self.minReplicas <= self.maxReplicas",message="minReplicas must not be greater than maxReplicas",fieldPath=".minReplicas",reason=FieldValueInvalid
type HPASpec struct {
	// MaxReplicas is the upper limit of replicas.
	// +optional
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=2147483647
	MaxReplicas *int32 `json:"maxReplicas,omitempty"`
	// MinReplicas is the lower limit of replicas.
	// +optional
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=2147483647
	MinReplicas *int32 `json:"minReplicas,omitempty"`
}

// Strategy is a Deployment's update strategy.
type Strategy struct {
	// RollingUpdate configures the rolling update.
	RollingUpdate *RollingUpdate `json:"rollingUpdate"`
}

// RollingUpdate configures a rolling update. A Deployment cannot have both
// at 0: it could never make progress.
// +kubebuilder:validation:XValidation:rule="!has(self.maxSurge) || !has(self.maxUnavailable) || !(string(self.maxSurge).matches('^0+%?$') && string(self.maxUnavailable).matches('^0+%?$'))",message="must not be 0 when maxSurge is 0",fieldPath=".maxUnavailable",reason=FieldValueInvalid
type RollingUpdate struct {
	// MaxSurge is the number or percentage of pods created above the desired count.
	// +optional
	// +kubebuilder:validation:XIntOrString
	// +kubebuilder:validation:Pattern=`^[0-9]+%?$`
	// +kubebuilder:validation:XValidation:rule="type(self) == int ? self >= 0 && self <= 2147483647 : self.size() >= 0",message="must not be negative, more than 2147483647 or an empty string"
	MaxSurge *intstr.IntOrString `json:"maxSurge,omitempty"`
	// MaxUnavailable is the number or percentage (at most 100%) of pods that
	// may be unavailable during the update.
	// +optional
	// +kubebuilder:validation:XIntOrString
	// +kubebuilder:validation:Pattern=`^((100|[0-9]{1,2})%|[0-9]+)$`
	// +kubebuilder:validation:XValidation:rule="type(self) == int ? self >= 0 && self <= 2147483647 : self.size() >= 0",message="must not be negative, more than 2147483647 or an empty string"
	MaxUnavailable *intstr.IntOrString `json:"maxUnavailable,omitempty"`
}

// Resources are a container's resource requests and limits. Kubernetes
// rejects a container that requests more than its limit.
// +kubebuilder:validation:XValidation:rule="!has(self.requests) || !has(self.limits) || !has(self.requests.cpu) || !has(self.limits.cpu) || !isQuantity(self.requests.cpu) || !isQuantity(self.limits.cpu) || quantity(self.requests.cpu).compareTo(quantity(self.limits.cpu)) <= 0",message="must not be greater than limits.cpu",fieldPath=".requests.cpu",reason=FieldValueInvalid
// +kubebuilder:validation:XValidation:rule="!has(self.requests) || !has(self.limits) || !has(self.requests.memory) || !has(self.limits.memory) || !isQuantity(self.requests.memory) || !isQuantity(self.limits.memory) || quantity(self.requests.memory).compareTo(quantity(self.limits.memory)) <= 0",message="must not be greater than limits.memory",fieldPath=".requests.memory",reason=FieldValueInvalid
type Resources struct {
	// Limits are the most the container may use.
	// +optional
	Limits *ResourceClaims `json:"limits,omitempty"`
	// Requests are what the container is guaranteed.
	// +optional
	Requests *ResourceClaims `json:"requests,omitempty"`
}

// ResourceClaims are CPU and memory amounts.
type ResourceClaims struct {
	// CPU, in cores ("1", "0.5") or millicores ("500m").
	// +optional
	// +kubebuilder:validation:Pattern=`^([0-9]+m?|[0-9]\.[0-9]{1,3})$`
	CPU *string `json:"cpu,omitempty"`
	// Memory, as a Kubernetes quantity ("128Mi", "1G").
	// +optional
	// +kubebuilder:validation:Pattern=`^[0-9]+(((\.[0-9]+)?(E|P|T|G|M|k|Ei|Pi|Ti|Gi|Mi|Ki|m)?)|(e[0-9]+))$`
	Memory *string `json:"memory,omitempty"`
}

// CniComponent configures the Istio CNI DaemonSet.
type CniComponent struct {
	// K8s are the DaemonSet's Kubernetes settings.
	K8s *CniK8sConfig `json:"k8s"`
}

// CniK8sConfig are the CNI DaemonSet's Kubernetes settings.
type CniK8sConfig struct {
	// Affinity constrains the nodes the CNI pods run on.
	// +optional
	Affinity *corev1.Affinity `json:"affinity,omitempty"`
	// Resources are the CNI container's resource requests and limits.
	// +optional
	Resources *Resources `json:"resources,omitempty"`
}

// ProxyComponent configures the sidecar proxies.
type ProxyComponent struct {
	// K8s are the sidecar's Kubernetes settings.
	K8s *ProxyK8sConfig `json:"k8s"`
}

// ProxyK8sConfig are the sidecar's Kubernetes settings.
type ProxyK8sConfig struct {
	// Resources are the istio-proxy container's requests and limits
	// (values.global.proxy.resources).
	// +optional
	Resources *Resources `json:"resources,omitempty"`
}

// EgressGateway enables and configures the egress gateway.
type EgressGateway struct {
	// Enabled installs the egress gateway.
	// +optional
	Enabled *bool `json:"enabled,omitempty"`
	// K8s are the egress gateway's Kubernetes settings.
	// +optional
	K8s *KubernetesResourcesConfig `json:"k8s,omitempty"`
}

// Experimental holds features that only an experimental build of the
// operator accepts; a regular build reports them as an error.
type Experimental struct {
	// Pilot holds experimental istiod features.
	// +optional
	Pilot *PilotFeatures `json:"pilot,omitempty"`
	// EnableAmbient enables ambient mode.
	// +optional
	EnableAmbient *bool `json:"enableAmbient,omitempty"`
	// EnableDualStack enables dual-stack networking.
	// +optional
	EnableDualStack *bool `json:"enableDualStack,omitempty"`
}

// PilotFeatures are experimental istiod features.
type PilotFeatures struct {
	// EnableAlphaGatewayAPI enables the alpha Gateway API resources.
	// +optional
	EnableAlphaGatewayAPI bool `json:"enableAlphaGatewayAPI,omitempty"`
	// EnableMultiNetworkDiscoverGatewayAPI enables multi-network discovery
	// of Gateway API gateways.
	// +optional
	EnableMultiNetworkDiscoverGatewayAPI bool `json:"enableMultiNetworkDiscoverGatewayAPI,omitempty"`
}

// State is the summary state of an Istio resource.
type State string

// The states, as in Kyma.
const (
	StateProcessing State = "Processing"
	StateReady      State = "Ready"
	StateError      State = "Error"
	StateDeleting   State = "Deleting"
	StateWarning    State = "Warning"
)

// IstioStatus is the observed state of the installation.
type IstioStatus struct {
	// State summarises the conditions: Processing, Ready, Error, Deleting or Warning.
	// +optional
	// +kubebuilder:validation:Enum=Processing;Deleting;Ready;Error;Warning
	State State `json:"state,omitempty"`
	// Description explains the state in a sentence.
	// +optional
	Description string `json:"description,omitempty"`
	// Conditions are the observations of the operator's controllers; each
	// type is written by exactly one controller (see conditions.go).
	// +optional
	// +listType=map
	// +listMapKey=type
	Conditions []metav1.Condition `json:"conditions,omitempty"`
	// ObservedGeneration is the generation the state and description describe.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`
	// InstalledVersion is the Istio version found installed in the cluster.
	// +optional
	InstalledVersion string `json:"installedVersion,omitempty"`
	// Profile is the profile Istio is installed with. Written by the
	// installation controller.
	// +optional
	Profile Profile `json:"profile,omitempty"`
	// NextMaintenanceWindow is when the next maintenance window opens while
	// proxy restarts wait for one. Written by the proxy sidecar controller.
	// +optional
	NextMaintenanceWindow *metav1.Time `json:"nextMaintenanceWindow,omitempty"`
	// Revision is the Istio revision the default revision tag points at:
	// the control plane that injects new pods. "default" for an
	// installation that never had a canary upgrade. Written by the
	// installation controller.
	// +optional
	Revision string `json:"revision,omitempty"`
	// Upgrade is the canary upgrade in progress, unset when none is.
	// Written by the installation controller.
	// +optional
	Upgrade *UpgradeStatus `json:"upgrade,omitempty"`
}

// UpgradeStatus describes a canary upgrade in progress: two control planes
// of the operator run side by side.
type UpgradeStatus struct {
	// Phase is where the upgrade stands: InstallingRevision,
	// MovingWorkloads, RemovingRevision, RollingBack or
	// RemovingNewRevision.
	Phase UpgradePhase `json:"phase"`
	// From is the control plane installed before the upgrade.
	From RevisionVersion `json:"from"`
	// To is the control plane of the operator's version.
	To RevisionVersion `json:"to"`
}

// RevisionVersion is a control plane: its revision and Istio version.
type RevisionVersion struct {
	Revision string `json:"revision"`
	Version  string `json:"version"`
}

// UpgradePhase is a phase of a canary upgrade.
type UpgradePhase string

// Phases of a canary upgrade, in order; a rollback continues with
// RollingBack and RemovingNewRevision.
const (
	UpgradePhaseInstallingRevision  UpgradePhase = "InstallingRevision"
	UpgradePhaseMovingWorkloads     UpgradePhase = "MovingWorkloads"
	UpgradePhaseRemovingRevision    UpgradePhase = "RemovingRevision"
	UpgradePhaseRollingBack         UpgradePhase = "RollingBack"
	UpgradePhaseRemovingNewRevision UpgradePhase = "RemovingNewRevision"
)
