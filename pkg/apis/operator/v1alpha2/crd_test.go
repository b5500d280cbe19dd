package v1alpha2_test

import (
	"context"
	"fmt"
	"math"
	"os"
	"strings"
	"testing"

	"k8s.io/apiextensions-apiserver/pkg/apis/apiextensions"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	structuralschema "k8s.io/apiextensions-apiserver/pkg/apiserver/schema"
	"k8s.io/apiextensions-apiserver/pkg/apiserver/schema/cel"
	"k8s.io/apiextensions-apiserver/pkg/apiserver/schema/listtype"
	"k8s.io/apiextensions-apiserver/pkg/apiserver/schema/pruning"
	"k8s.io/apiextensions-apiserver/pkg/apiserver/validation"
	"k8s.io/apimachinery/pkg/runtime"
	utiljson "k8s.io/apimachinery/pkg/util/json"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"sigs.k8s.io/yaml"

	"github.com/meshkeeper/istio-operator/pkg/apis/operator/v1alpha2/apitest"
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
	crd := readCRD(t)
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
	// Unknown fields, as strict field validation (kubectl's default) reports them.
	var errs field.ErrorList
	for _, p := range pruning.PruneWithOptions(runtime.DeepCopyJSON(obj), c.s, true, structuralschema.UnknownFieldPathOptions{TrackUnknownFieldPaths: true}) {
		errs = append(errs, field.Invalid(field.NewPath(p), nil, fmt.Sprintf("unknown field %q", p)))
	}
	errs = append(errs, validation.ValidateCustomResource(nil, obj, c.openapi)...)
	errs = append(errs, listtype.ValidateListSetsAndMaps(nil, c.s, obj)...)
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
  proxyRestart:
    restartsPerSecond: "0.5"
    maxConcurrentRollouts: 10
    maintenanceWindows:
    - {days: [Sat, Sun], start: "02:00", duration: 4h, timeZone: Europe/Berlin}
    - {start: "23:30", duration: 90m}
    versionUpgrades: Immediate
  images:
    registry: registry.example.com:5000/mirror/istio
    pullSecrets: [registry-credentials, mirror.pull]
  profile: Evaluation
`

func TestCRDAcceptsLegalResources(t *testing.T) {
	crd := loadCRD(t)
	for name, spec := range map[string]string{
		"empty":            "  {}\n",
		"every field":      kymaEverything,
		"integer rate":     "  proxyRestart: {restartsPerSecond: 5}\n",
		"minimum rate":     "  proxyRestart: {restartsPerSecond: 100m}\n",
		"minimum as 0.1":   "  proxyRestart: {restartsPerSecond: \"0.1\"}\n",
		"max proxies":      "  config: {numTrustedProxies: 4294967295}\n",
		"only min":         "  components: {pilot: {k8s: {hpaSpec: {minReplicas: 7}}}}\n",
		"equal min max":    "  components: {pilot: {k8s: {hpaSpec: {minReplicas: 2, maxReplicas: 2}}}}\n",
		"composite dur":    "  config: {authorizers: [{name: a, port: 1, timeout: 1m30s}]}\n",
		"blocking delete":  "  deletionStrategy: Blocking\n",
		"registry host":    "  images: {registry: localhost:5000}\n",
		"week-long window": "  proxyRestart: {maintenanceWindows: [{start: \"00:00\", duration: 168h}]}\n",
		"minute window":    "  proxyRestart: {maintenanceWindows: [{start: \"23:59\", duration: 1m, timeZone: America/Argentina/Buenos_Aires}]}\n",
		"request at limit": "  components: {proxy: {k8s: {resources: {requests: {cpu: 500m, memory: 1Gi}, limits: {cpu: \"0.5\", memory: 1024Mi}}}}}\n",
		"only surge zero":  "  components: {pilot: {k8s: {strategy: {rollingUpdate: {maxSurge: 0, maxUnavailable: 1}}}}}\n",
	} {
		t.Run(name, func(t *testing.T) {
			if errs := crd.validate(istioObject(t, spec)); len(errs) > 0 {
				t.Fatalf("rejected: %v", errs.ToAggregate())
			}
		})
	}
}

// TestCRDRejectsInvalidFieldsNamingThem runs the spec cases of the shared
// table of invalid resources offline; test/reliability/input runs all of them
// against a real API server. Metadata is validated by the API server's
// generic code, not by the schema, so its cases run there only.
func TestCRDRejectsInvalidFieldsNamingThem(t *testing.T) {
	crd := loadCRD(t)
	ran := 0
	for _, tc := range apitest.InvalidIstios() {
		if !strings.HasPrefix(tc.Field, "spec") {
			continue
		}
		ran++
		t.Run(tc.Name, func(t *testing.T) {
			obj, err := tc.Unstructured("default")
			if err != nil {
				t.Fatal(err)
			}
			errs := crd.validate(obj)
			if len(errs) == 0 {
				t.Fatalf("accepted, want an error naming %s", tc.Field)
			}
			msg := errs.ToAggregate().Error()
			if !strings.Contains(msg, tc.Field) || !strings.Contains(msg, tc.Reason) {
				t.Fatalf("error %q does not name %s with %q", msg, tc.Field, tc.Reason)
			}
		})
	}
	if ran == 0 {
		t.Fatal("no spec cases in the shared table")
	}
}

// readCRD reads deploy/crds as the API server would be given it.
func readCRD(t *testing.T) *apiextensionsv1.CustomResourceDefinition {
	t.Helper()
	data, err := os.ReadFile("../../../../deploy/crds/operator.kyma-project.io_istios.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var crd apiextensionsv1.CustomResourceDefinition
	if err := yaml.UnmarshalStrict(data, &crd); err != nil {
		t.Fatal(err)
	}
	return &crd
}

func TestCRDPresentation(t *testing.T) {
	crd := readCRD(t)
	v := crd.Spec.Versions[0]
	if v.Subresources == nil || v.Subresources.Status == nil {
		t.Error("the status subresource is not enabled")
	}
	var cols []string
	for _, c := range v.AdditionalPrinterColumns {
		cols = append(cols, c.Name)
	}
	// Kyma's four, then ours, shown with -o wide only (priority 1).
	if got, want := strings.Join(cols, ","), "State,Istio,Ready,Age,Profile,Next window"; got != want {
		t.Errorf("printer columns %s, want %s", got, want)
	}
	for _, c := range v.AdditionalPrinterColumns[4:] {
		if c.Priority != 1 {
			t.Errorf("printer column %s has priority %d, want 1 (-o wide)", c.Name, c.Priority)
		}
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
