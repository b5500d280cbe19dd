package v1alpha2_test

import (
	"context"
	"math"
	"os"
	"strings"
	"testing"

	"k8s.io/apiextensions-apiserver/pkg/apis/apiextensions"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	structuralschema "k8s.io/apiextensions-apiserver/pkg/apiserver/schema"
	"k8s.io/apiextensions-apiserver/pkg/apiserver/schema/cel"
	"k8s.io/apiextensions-apiserver/pkg/apiserver/validation"
	utiljson "k8s.io/apimachinery/pkg/util/json"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"sigs.k8s.io/yaml"
)

// crdSchema validates objects against deploy/crds the way the API server
// does: OpenAPI schema first, then the CEL rules.
type crdSchema struct {
	openapi validation.SchemaValidator
	cel     *cel.Validator
	s       *structuralschema.Structural
}

func loadCRD(t *testing.T) *crdSchema {
	t.Helper()
	data, err := os.ReadFile("../../../../deploy/crds/operator.kyma-project.io_istios.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var crd apiextensionsv1.CustomResourceDefinition
	if err := yaml.UnmarshalStrict(data, &crd); err != nil {
		t.Fatal(err)
	}
	if len(crd.Spec.Versions) != 1 || crd.Spec.Versions[0].Name != "v1alpha2" {
		t.Fatalf("CRD serves %d versions, want exactly v1alpha2", len(crd.Spec.Versions))
	}
	var internal apiextensions.CustomResourceValidation
	if err := apiextensionsv1.Convert_v1_CustomResourceValidation_To_apiextensions_CustomResourceValidation(
		crd.Spec.Versions[0].Schema, &internal, nil); err != nil {
		t.Fatal(err)
	}
	v, _, err := validation.NewSchemaValidator(internal.OpenAPIV3Schema)
	if err != nil {
		t.Fatal(err)
	}
	s, err := structuralschema.NewStructural(internal.OpenAPIV3Schema)
	if err != nil {
		t.Fatal(err)
	}
	return &crdSchema{openapi: v, cel: cel.NewValidator(s, true, math.MaxInt64), s: s}
}

func (c *crdSchema) validate(obj map[string]any) field.ErrorList {
	errs := validation.ValidateCustomResource(nil, obj, c.openapi)
	if len(errs) > 0 {
		return errs
	}
	celErrs, _ := c.cel.Validate(context.Background(), nil, c.s, obj, nil, math.MaxInt64)
	return celErrs
}

func istioObject(t *testing.T, spec string) map[string]any {
	t.Helper()
	doc := "apiVersion: operator.kyma-project.io/v1alpha2\nkind: Istio\nmetadata: {name: default, namespace: kyma-system}\nspec:\n" + spec
	data, err := yaml.YAMLToJSON([]byte(doc))
	if err != nil {
		t.Fatalf("test object: %v", err)
	}
	// Decode numbers as the API server does: integers as int64.
	var obj map[string]any
	if err := utiljson.Unmarshal(data, &obj); err != nil {
		t.Fatalf("test object: %v", err)
	}
	return obj
}

// A Kyma user's resource with every field set to a legal value must be
// accepted unchanged.
const kymaEverything = `
  compatibilityMode: true
  networkPoliciesEnabled: true
  enableModuleNetworkPolicies: true
  config:
    numTrustedProxies: 2
    forwardClientCertDetails: SANITIZE_SET
    gatewayExternalTrafficPolicy: Local
    trustDomain: cluster.local
    enableDNSProxying: true
    telemetry: {metrics: {prometheusMerge: true}}
    proxyStatsMatcher: {inclusionRegexps: [".*http_local_rate_limit.*"]}
    authorizers:
    - name: ext-authz
      service: ext-authz.auth.svc.cluster.local
      port: 8080
      pathPrefix: /check?path=
      timeout: 1.5s
      headers:
        inCheck: {include: [authorization], add: {x-source: mesh}}
        toUpstream: {onAllow: [x-user]}
        toDownstream: {onAllow: [x-trace], onDeny: [www-authenticate]}
  components:
    pilot:
      k8s:
        hpaSpec: {minReplicas: 1, maxReplicas: 5}
        strategy: {rollingUpdate: {maxSurge: "50%", maxUnavailable: 0}}
        resources: {requests: {cpu: 100m, memory: 128Mi}, limits: {cpu: "1.5", memory: 1Gi}}
    ingressGateway:
      k8s:
        hpaSpec: {minReplicas: 3, maxReplicas: 3}
        strategy: {rollingUpdate: {maxSurge: 1, maxUnavailable: "100%"}}
        resources: {requests: {cpu: "1", memory: "1e9"}}
    egressGateway:
      enabled: true
      k8s: {resources: {limits: {cpu: 2000m, memory: 2G}}}
    cni:
      k8s:
        resources: {requests: {cpu: 10m, memory: 64Mi}}
        affinity:
          nodeAffinity:
            requiredDuringSchedulingIgnoredDuringExecution:
              nodeSelectorTerms: [{matchExpressions: [{key: kubernetes.io/os, operator: In, values: [linux]}]}]
    proxy:
      k8s: {resources: {requests: {cpu: 10m, memory: 32Mi}, limits: {cpu: 500m, memory: 512Mi}}}
  experimental:
    pilot: {enableAlphaGatewayAPI: true, enableMultiNetworkDiscoverGatewayAPI: true}
    enableAmbient: false
    enableDualStack: false
  deletionStrategy: Cascading
  proxyRestart: {restartsPerSecond: "0.5", maxConcurrentRollouts: 10}
`

func TestCRDAcceptsLegalResources(t *testing.T) {
	crd := loadCRD(t)
	for name, spec := range map[string]string{
		"empty":           "  {}\n",
		"every field":     kymaEverything,
		"integer rate":    "  proxyRestart: {restartsPerSecond: 5}\n",
		"max proxies":     "  config: {numTrustedProxies: 4294967295}\n",
		"only min":        "  components: {pilot: {k8s: {hpaSpec: {minReplicas: 7}}}}\n",
		"equal min max":   "  components: {pilot: {k8s: {hpaSpec: {minReplicas: 2, maxReplicas: 2}}}}\n",
		"composite dur":   "  config: {authorizers: [{name: a, port: 1, timeout: 1m30s}]}\n",
		"blocking delete": "  deletionStrategy: Blocking\n",
	} {
		t.Run(name, func(t *testing.T) {
			if errs := crd.validate(istioObject(t, spec)); len(errs) > 0 {
				t.Fatalf("rejected: %v", errs.ToAggregate())
			}
		})
	}
}

func TestCRDRejectsInvalidFieldsNamingThem(t *testing.T) {
	crd := loadCRD(t)
	cases := []struct {
		name, spec, field string
	}{
		{"unknown XFCC", "  config: {forwardClientCertDetails: BOGUS}\n", "spec.config.forwardClientCertDetails"},
		{"unknown traffic policy", "  config: {gatewayExternalTrafficPolicy: Nearest}\n", "spec.config.gatewayExternalTrafficPolicy"},
		{"negative proxies", "  config: {numTrustedProxies: -1}\n", "spec.config.numTrustedProxies"},
		{"too many proxies", "  config: {numTrustedProxies: 4294967296}\n", "spec.config.numTrustedProxies"},
		{"trust domain chars", "  config: {trustDomain: \"Cluster Local\"}\n", "spec.config.trustDomain"},
		{"empty trust domain", "  config: {trustDomain: \"\"}\n", "spec.config.trustDomain"},
		{"malformed memory", "  components: {pilot: {k8s: {resources: {limits: {memory: 12 Gi}}}}}\n", "spec.components.pilot.k8s.resources.limits.memory"},
		{"malformed cpu", "  components: {ingressGateway: {k8s: {resources: {requests: {cpu: 1.5cores}}}}}\n", "spec.components.ingressGateway.k8s.resources.requests.cpu"},
		{"proxy memory unit", "  components: {proxy: {k8s: {resources: {requests: {memory: 10XB}}}}}\n", "spec.components.proxy.k8s.resources.requests.memory"},
		{"min above max", "  components: {pilot: {k8s: {hpaSpec: {minReplicas: 5, maxReplicas: 2}}}}\n", "spec.components.pilot.k8s.hpaSpec.minReplicas"},
		{"gateway min above max", "  components: {ingressGateway: {k8s: {hpaSpec: {minReplicas: 9, maxReplicas: 3}}}}\n", "spec.components.ingressGateway.k8s.hpaSpec.minReplicas"},
		{"negative replicas", "  components: {pilot: {k8s: {hpaSpec: {maxReplicas: -3}}}}\n", "spec.components.pilot.k8s.hpaSpec.maxReplicas"},
		{"surge pattern", "  components: {pilot: {k8s: {strategy: {rollingUpdate: {maxSurge: \"ten\"}}}}}\n", "spec.components.pilot.k8s.strategy.rollingUpdate.maxSurge"},
		{"unavailable over 100%", "  components: {pilot: {k8s: {strategy: {rollingUpdate: {maxUnavailable: \"150%\"}}}}}\n", "spec.components.pilot.k8s.strategy.rollingUpdate.maxUnavailable"},
		{"negative surge", "  components: {pilot: {k8s: {strategy: {rollingUpdate: {maxSurge: -1}}}}}\n", "spec.components.pilot.k8s.strategy.rollingUpdate.maxSurge"},
		{"strategy without rollingUpdate", "  components: {pilot: {k8s: {strategy: {}}}}\n", "spec.components.pilot.k8s.strategy.rollingUpdate"},
		{"component without k8s", "  components: {pilot: {}}\n", "spec.components.pilot.k8s"},
		{"authorizer without name", "  config: {authorizers: [{port: 80}]}\n", "spec.config.authorizers[0].name"},
		{"authorizer without port", "  config: {authorizers: [{name: a}]}\n", "spec.config.authorizers[0].port"},
		{"authorizer port range", "  config: {authorizers: [{name: a, port: 70000}]}\n", "spec.config.authorizers[0].port"},
		{"authorizer timeout", "  config: {authorizers: [{name: a, port: 80, timeout: soon}]}\n", "spec.config.authorizers[0].timeout"},
		{"deletion strategy", "  deletionStrategy: Orphan\n", "spec.deletionStrategy"},
		{"zero restart rate", "  proxyRestart: {restartsPerSecond: \"0\"}\n", "spec.proxyRestart.restartsPerSecond"},
		{"restart rate not a quantity", "  proxyRestart: {restartsPerSecond: fast}\n", "spec.proxyRestart.restartsPerSecond"},
		{"zero rollouts", "  proxyRestart: {maxConcurrentRollouts: 0}\n", "spec.proxyRestart.maxConcurrentRollouts"},
		{"wrong type", "  compatibilityMode: \"yes\"\n", "spec.compatibilityMode"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			errs := crd.validate(istioObject(t, tc.spec))
			if len(errs) == 0 {
				t.Fatalf("accepted, want an error naming %s", tc.field)
			}
			if msg := errs.ToAggregate().Error(); !strings.Contains(msg, tc.field) {
				t.Fatalf("error %q does not name %s", msg, tc.field)
			}
		})
	}
}

func TestCRDPresentation(t *testing.T) {
	data, err := os.ReadFile("../../../../deploy/crds/operator.kyma-project.io_istios.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var crd apiextensionsv1.CustomResourceDefinition
	if err := yaml.Unmarshal(data, &crd); err != nil {
		t.Fatal(err)
	}
	v := crd.Spec.Versions[0]
	if v.Subresources == nil || v.Subresources.Status == nil {
		t.Error("the status subresource is not enabled")
	}
	var cols []string
	for _, c := range v.AdditionalPrinterColumns {
		cols = append(cols, c.Name)
	}
	if got := strings.Join(cols, ","); got != "State,Istio,Ready,Age" {
		t.Errorf("printer columns %s, want State,Istio,Ready,Age", got)
	}
	if got := strings.Join(crd.Spec.Names.Categories, ","); got != "kyma-modules,kyma-istio" {
		t.Errorf("categories %s, want Kyma's kyma-modules,kyma-istio", got)
	}
	if len(crd.Spec.Names.ShortNames) == 0 {
		t.Error("no short name")
	}
	conds := v.Schema.OpenAPIV3Schema.Properties["status"].Properties["conditions"]
	if conds.XListType == nil || *conds.XListType != "map" || len(conds.XListMapKeys) != 1 || conds.XListMapKeys[0] != "type" {
		t.Error("status.conditions is not a map-list keyed by type; controllers applying their own conditions would overwrite each other")
	}
}
