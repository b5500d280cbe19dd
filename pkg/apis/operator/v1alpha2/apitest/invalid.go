// Package apitest holds Istio resources for tests: specs that render every
// object the operator can install, and invalid ones,
// each with the field the API server's error must name. One table serves the
// offline schema test (pkg/apis/operator/v1alpha2) and the test against a real
// API server (test/reliability/input).
package apitest

import (
	"fmt"
	"strings"

	utiljson "k8s.io/apimachinery/pkg/util/json"
	"sigs.k8s.io/yaml"
)

// Invalid is an Istio resource the API server must reject.
type Invalid struct {
	Name string
	// Object is the resource below apiVersion and kind, as YAML.
	Object string
	// Field is the path the error must name.
	Field string
	// Reason is the part of the error that says what is wrong with the field.
	Reason string
}

// Unstructured returns the resource as the API server decodes it, named
// name unless the case names it itself.
func (c Invalid) Unstructured(name string) (map[string]any, error) {
	doc := "apiVersion: operator.kyma-project.io/v1alpha2\nkind: Istio\n" + c.Object
	data, err := yaml.YAMLToJSON([]byte(doc))
	if err != nil {
		return nil, fmt.Errorf("case %q: %w", c.Name, err)
	}
	// Numbers decode as the API server decodes them: integers as int64.
	var obj map[string]any
	if err := utiljson.Unmarshal(data, &obj); err != nil {
		return nil, fmt.Errorf("case %q: %w", c.Name, err)
	}
	md, _ := obj["metadata"].(map[string]any)
	if md == nil {
		md = map[string]any{}
		obj["metadata"] = md
	}
	if _, ok := md["name"]; !ok {
		md["name"] = name
	}
	return obj, nil
}

// spec is a resource with the given spec, in YAML flow style.
func spec(s string) string { return "spec: " + s + "\n" }

// k8s is a spec that sets a component's Kubernetes settings.
func k8s(component, settings string) string {
	return spec("{components: {" + component + ": {k8s: " + settings + "}}}")
}

// InvalidIstios covers every field of the spec that the schema constrains,
// and metadata. Reasons are the API server's wording.
func InvalidIstios() []Invalid {
	authorizers := strings.TrimSuffix(strings.Repeat("{name: a, port: 1}, ", 65), ", ")
	regexps := strings.TrimSuffix(strings.Repeat(".*, ", 257), ", ")
	return []Invalid{
		// config
		{"unknown forwardClientCertDetails", spec("{config: {forwardClientCertDetails: BOGUS}}"),
			"spec.config.forwardClientCertDetails", `Unsupported value: "BOGUS"`},
		{"unknown gatewayExternalTrafficPolicy", spec("{config: {gatewayExternalTrafficPolicy: Nearest}}"),
			"spec.config.gatewayExternalTrafficPolicy", `Unsupported value: "Nearest"`},
		{"negative numTrustedProxies", spec("{config: {numTrustedProxies: -1}}"),
			"spec.config.numTrustedProxies", "should be greater than or equal to 0"},
		{"numTrustedProxies above uint32", spec("{config: {numTrustedProxies: 4294967296}}"),
			"spec.config.numTrustedProxies", "should be less than or equal to 4294967295"},
		{"numTrustedProxies as a string", spec(`{config: {numTrustedProxies: "2"}}`),
			"spec.config.numTrustedProxies", `must be of type integer`},
		{"trustDomain with a space and capitals", spec(`{config: {trustDomain: "Cluster Local"}}`),
			"spec.config.trustDomain", "should match"},
		{"empty trustDomain", spec(`{config: {trustDomain: ""}}`),
			"spec.config.trustDomain", "should be at least 1 chars long"},
		{"trustDomain over 255 characters", spec("{config: {trustDomain: " + strings.Repeat("a", 256) + "}}"),
			"spec.config.trustDomain", "may not be more than 255 bytes"},
		{"null authorizer", spec("{config: {authorizers: [null]}}"),
			"spec.config.authorizers[0]", "must be of type object"},
		{"authorizer without name", spec("{config: {authorizers: [{port: 80}]}}"),
			"spec.config.authorizers[0].name", "Required value"},
		{"authorizer with an empty name", spec(`{config: {authorizers: [{name: "", port: 80}]}}`),
			"spec.config.authorizers[0].name", "should be at least 1 chars long"},
		{"authorizer without port", spec("{config: {authorizers: [{name: a}]}}"),
			"spec.config.authorizers[0].port", "Required value"},
		{"authorizer port 0", spec("{config: {authorizers: [{name: a, port: 0}]}}"),
			"spec.config.authorizers[0].port", "should be greater than or equal to 1"},
		{"authorizer port above 65535", spec("{config: {authorizers: [{name: a, port: 70000}]}}"),
			"spec.config.authorizers[0].port", "should be less than or equal to 65535"},
		{"authorizer timeout not a duration", spec("{config: {authorizers: [{name: a, port: 80, timeout: soon}]}}"),
			"spec.config.authorizers[0].timeout", "should match"},
		{"authorizer header value not a string", spec("{config: {authorizers: [{name: a, port: 80, headers: {inCheck: {add: {x-a: 1}}}}]}}"),
			"spec.config.authorizers[0].headers.inCheck.add.x-a", "must be of type string"},
		{"65 authorizers", spec("{config: {authorizers: [" + authorizers + "]}}"),
			"spec.config.authorizers", "must have at most 64 items"},
		{"257 stats matcher regexps", spec("{config: {proxyStatsMatcher: {inclusionRegexps: [" + regexps + "]}}}"),
			"spec.config.proxyStatsMatcher.inclusionRegexps", "must have at most 256 items"},
		{"stats matcher regexps not a list", spec("{config: {proxyStatsMatcher: {inclusionRegexps: .*}}}"),
			"spec.config.proxyStatsMatcher.inclusionRegexps", "must be of type array"},
		{"empty stats matcher regexp", spec(`{config: {proxyStatsMatcher: {inclusionRegexps: [".*ok.*", ""]}}}`),
			"spec.config.proxyStatsMatcher.inclusionRegexps[1]", "should be at least 1 chars long"},
		{"empty stats matcher prefix", spec(`{config: {proxyStatsMatcher: {inclusionPrefixes: [""]}}}`),
			"spec.config.proxyStatsMatcher.inclusionPrefixes[0]", "should be at least 1 chars long"},
		{"empty stats matcher suffix", spec(`{config: {proxyStatsMatcher: {inclusionSuffixes: [""]}}}`),
			"spec.config.proxyStatsMatcher.inclusionSuffixes[0]", "should be at least 1 chars long"},
		{"prometheusMerge not a boolean", spec(`{config: {telemetry: {metrics: {prometheusMerge: "yes"}}}}`),
			"spec.config.telemetry.metrics.prometheusMerge", "must be of type boolean"},
		{"enableDNSProxying not a boolean", spec(`{config: {enableDNSProxying: "true"}}`),
			"spec.config.enableDNSProxying", "must be of type boolean"},

		// components
		{"pilot without k8s", spec("{components: {pilot: {}}}"),
			"spec.components.pilot.k8s", "Required value"},
		{"ingressGateway without k8s", spec("{components: {ingressGateway: {}}}"),
			"spec.components.ingressGateway.k8s", "Required value"},
		{"cni without k8s", spec("{components: {cni: {}}}"),
			"spec.components.cni.k8s", "Required value"},
		{"proxy without k8s", spec("{components: {proxy: {}}}"),
			"spec.components.proxy.k8s", "Required value"},
		{"pilot memory limit with a space", k8s("pilot", `{resources: {limits: {memory: "12 Gi"}}}`),
			"spec.components.pilot.k8s.resources.limits.memory", "should match"},
		{"ingressGateway cpu request in cores", k8s("ingressGateway", "{resources: {requests: {cpu: 1.5cores}}}"),
			"spec.components.ingressGateway.k8s.resources.requests.cpu", "should match"},
		{"egressGateway memory request in words", k8s("egressGateway", "{resources: {requests: {memory: lots}}}"),
			"spec.components.egressGateway.k8s.resources.requests.memory", "should match"},
		{"cni negative cpu limit", k8s("cni", `{resources: {limits: {cpu: "-1"}}}`),
			"spec.components.cni.k8s.resources.limits.cpu", "should match"},
		{"pilot cpu request above the limit", k8s("pilot", `{resources: {requests: {cpu: "2"}, limits: {cpu: 1500m}}}`),
			"spec.components.pilot.k8s.resources.requests.cpu", "must not be greater than limits.cpu"},
		{"proxy memory request above the limit", k8s("proxy", "{resources: {requests: {memory: 1Gi}, limits: {memory: 512Mi}}}"),
			"spec.components.proxy.k8s.resources.requests.memory", "must not be greater than limits.memory"},
		{"proxy memory in an unknown unit", k8s("proxy", "{resources: {requests: {memory: 10XB}}}"),
			"spec.components.proxy.k8s.resources.requests.memory", "should match"},
		{"egressGateway enabled not a boolean", spec(`{components: {egressGateway: {enabled: "yes"}}}`),
			"spec.components.egressGateway.enabled", "must be of type boolean"},
		{"pilot minReplicas above maxReplicas", k8s("pilot", "{hpaSpec: {minReplicas: 5, maxReplicas: 2}}"),
			"spec.components.pilot.k8s.hpaSpec.minReplicas", "minReplicas must not be greater than maxReplicas"},
		{"ingressGateway minReplicas above maxReplicas", k8s("ingressGateway", "{hpaSpec: {minReplicas: 9, maxReplicas: 3}}"),
			"spec.components.ingressGateway.k8s.hpaSpec.minReplicas", "minReplicas must not be greater than maxReplicas"},
		{"egressGateway negative maxReplicas", k8s("egressGateway", "{hpaSpec: {maxReplicas: -3}}"),
			"spec.components.egressGateway.k8s.hpaSpec.maxReplicas", "should be greater than or equal to 0"},
		{"pilot maxReplicas above int32", k8s("pilot", "{hpaSpec: {maxReplicas: 2147483648}}"),
			"spec.components.pilot.k8s.hpaSpec.maxReplicas", "should be less than or equal to 2147483647"},
		{"pilot maxSurge in words", k8s("pilot", `{strategy: {rollingUpdate: {maxSurge: "ten"}}}`),
			"spec.components.pilot.k8s.strategy.rollingUpdate.maxSurge", "should match"},
		{"ingressGateway maxUnavailable above 100%", k8s("ingressGateway", `{strategy: {rollingUpdate: {maxUnavailable: "150%"}}}`),
			"spec.components.ingressGateway.k8s.strategy.rollingUpdate.maxUnavailable", "should match"},
		{"egressGateway negative maxSurge", k8s("egressGateway", "{strategy: {rollingUpdate: {maxSurge: -1}}}"),
			"spec.components.egressGateway.k8s.strategy.rollingUpdate.maxSurge", "must not be negative"},
		{"ingressGateway maxSurge and maxUnavailable both 0", k8s("ingressGateway", `{strategy: {rollingUpdate: {maxSurge: 0, maxUnavailable: "0%"}}}`),
			"spec.components.ingressGateway.k8s.strategy.rollingUpdate.maxUnavailable", "must not be 0 when maxSurge is 0"},
		{"pilot strategy without rollingUpdate", k8s("pilot", "{strategy: {}}"),
			"spec.components.pilot.k8s.strategy.rollingUpdate", "Required value"},
		{"pilot replicas, which the API does not have", k8s("pilot", "{replicas: 3}"),
			"spec.components.pilot.k8s.replicas", `unknown field`},
		{"cni affinity term without key", k8s("cni", "{affinity: {nodeAffinity: {requiredDuringSchedulingIgnoredDuringExecution: {nodeSelectorTerms: [{matchExpressions: [{operator: In, values: [a]}]}]}}}}"),
			"spec.components.cni.k8s.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms[0].matchExpressions[0].key", "Required value"},

		// experimental, deletion and proxy restart pacing
		{"enableAmbient not a boolean", spec(`{experimental: {enableAmbient: "yes"}}`),
			"spec.experimental.enableAmbient", "must be of type boolean"},
		{"enableAlphaGatewayAPI a number", spec("{experimental: {pilot: {enableAlphaGatewayAPI: 1}}}"),
			"spec.experimental.pilot.enableAlphaGatewayAPI", "must be of type boolean"},
		{"unknown deletionStrategy", spec("{deletionStrategy: Orphan}"),
			"spec.deletionStrategy", `Unsupported value: "Orphan"`},
		{"zero restartsPerSecond", spec(`{proxyRestart: {restartsPerSecond: "0"}}`),
			"spec.proxyRestart.restartsPerSecond", "must be at least 100m"},
		{"negative restartsPerSecond", spec(`{proxyRestart: {restartsPerSecond: "-2"}}`),
			"spec.proxyRestart.restartsPerSecond", "must be at least 100m"},
		{"restartsPerSecond of one per 1000 seconds", spec(`{proxyRestart: {restartsPerSecond: "1m"}}`),
			"spec.proxyRestart.restartsPerSecond", "must be at least 100m"},
		{"restartsPerSecond just below the minimum", spec(`{proxyRestart: {restartsPerSecond: "0.099"}}`),
			"spec.proxyRestart.restartsPerSecond", "must be at least 100m"},
		{"restartsPerSecond not a quantity", spec("{proxyRestart: {restartsPerSecond: fast}}"),
			"spec.proxyRestart.restartsPerSecond", "should match"},
		{"zero maxConcurrentRollouts", spec("{proxyRestart: {maxConcurrentRollouts: 0}}"),
			"spec.proxyRestart.maxConcurrentRollouts", "should be greater than or equal to 1"},
		{"maxConcurrentRollouts above 10000", spec("{proxyRestart: {maxConcurrentRollouts: 10001}}"),
			"spec.proxyRestart.maxConcurrentRollouts", "should be less than or equal to 10000"},
		{"registry with a scheme", spec(`{images: {registry: "https://registry.example.com/istio"}}`),
			"spec.images.registry", "should match"},
		{"registry with a tag", spec(`{images: {registry: "registry.example.com/istio:1.31"}}`),
			"spec.images.registry", "should match"},
		{"upper-case registry", spec(`{images: {registry: "Registry.example.com"}}`),
			"spec.images.registry", "should match"},
		{"pull secret not a name", spec(`{images: {pullSecrets: ["my_secret"]}}`),
			"spec.images.pullSecrets[0]", "should match"},
		{"unknown profile", spec(`{profile: Small}`),
			"spec.profile", "Unsupported value"},
		{"maintenance window without start", spec(`{proxyRestart: {maintenanceWindows: [{duration: 1h}]}}`),
			"spec.proxyRestart.maintenanceWindows[0].start", "Required value"},
		{"maintenance window start 24:00", spec(`{proxyRestart: {maintenanceWindows: [{start: "24:00", duration: 1h}]}}`),
			"spec.proxyRestart.maintenanceWindows[0].start", "should match"},
		{"maintenance window start without minutes", spec(`{proxyRestart: {maintenanceWindows: [{start: "2", duration: 1h}]}}`),
			"spec.proxyRestart.maintenanceWindows[0].start", "should match"},
		{"maintenance window of 30 seconds", spec(`{proxyRestart: {maintenanceWindows: [{start: "02:00", duration: 30s}]}}`),
			"spec.proxyRestart.maintenanceWindows[0].duration", "must be from 1m to 168h"},
		{"maintenance window longer than a week", spec(`{proxyRestart: {maintenanceWindows: [{start: "02:00", duration: 169h}]}}`),
			"spec.proxyRestart.maintenanceWindows[0].duration", "must be from 1m to 168h"},
		{"maintenance window on an unknown day", spec(`{proxyRestart: {maintenanceWindows: [{days: [Monday], start: "02:00", duration: 1h}]}}`),
			"spec.proxyRestart.maintenanceWindows[0].days[0]", "Unsupported value"},
		{"maintenance window on a day twice", spec(`{proxyRestart: {maintenanceWindows: [{days: [Mon, Mon], start: "02:00", duration: 1h}]}}`),
			"spec.proxyRestart.maintenanceWindows[0].days[1]", "Duplicate value"},
		{"maintenance window time zone with spaces", spec(`{proxyRestart: {maintenanceWindows: [{start: "02:00", duration: 1h, timeZone: "Central European"}]}}`),
			"spec.proxyRestart.maintenanceWindows[0].timeZone", "should match"},
		{"maintenance window in the operator's zone", spec(`{proxyRestart: {maintenanceWindows: [{start: "02:00", duration: 1h, timeZone: Local}]}}`),
			"spec.proxyRestart.maintenanceWindows[0].timeZone", "must name a zone"},
		{"unknown versionUpgrades", spec(`{proxyRestart: {versionUpgrades: Later}}`),
			"spec.proxyRestart.versionUpgrades", "Unsupported value"},
		{"compatibilityMode a string", spec(`{compatibilityMode: "yes"}`),
			"spec.compatibilityMode", "must be of type boolean"},
		{"networkPoliciesEnabled a string", spec(`{networkPoliciesEnabled: "on"}`),
			"spec.networkPoliciesEnabled", "must be of type boolean"},

		// metadata, and metadata in the wrong place
		{"labels under spec", spec("{metadata: {labels: {app: istio}}}"),
			"spec.metadata", "unknown field"},
		{"spec not an object", `spec: "default"` + "\n",
			"spec", "must be of type object"},
		{"name with capitals", "metadata: {name: Default}\n",
			"metadata.name", "a lowercase RFC 1123 subdomain"},
		{"label key with a space", "metadata: {labels: {\"bad key\": x}}\n",
			"metadata.labels", "name part must consist of alphanumeric characters"},
		{"label value too long", "metadata: {labels: {app: " + strings.Repeat("v", 64) + "}}\n",
			"metadata.labels", "must be no more than 63 bytes"},
		{"annotation key with two slashes", "metadata: {annotations: {a/b/c: x}}\n",
			"metadata.annotations", "a valid label key must consist of alphanumeric characters"},
	}
}
