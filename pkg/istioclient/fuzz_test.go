package istioclient

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"

	"istio.io/istio/operator/pkg/values"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/yaml"

	v1alpha2 "github.com/meshkeeper/istio-operator/pkg/apis/operator/v1alpha2"
)

// fuzzInput is everything FuzzDesiredIstioOperator varies. present holds
// one bit per optional field: a clear bit leaves the pointer nil, so the
// fuzzer explores partially filled resources as the API server may store
// them (CEL and OpenAPI validation do not guard nil entries in lists, for
// one).
type fuzzInput struct {
	present                          uint64
	trustDomain, xfcc, trafficPolicy string
	numTrustedProxies                int64
	prometheusMerge, dns, compat     bool
	authName, authService, authPath  string
	authPort                         int32
	timeout                          int64
	header, regex                    string
	cpu, memory                      string
	minReplicas, maxReplicas, surge  int32
	unavailable                      string
	egressEnabled                    bool
	affinityKey                      string
}

func (in fuzzInput) bit(i uint) bool { return in.present&(1<<i) != 0 }

func (in fuzzInput) spec() *v1alpha2.IstioSpec {
	spec := &v1alpha2.IstioSpec{CompatibilityMode: in.compat}
	c := &spec.Config
	if in.bit(0) {
		c.NumTrustedProxies = &in.numTrustedProxies
	}
	if in.bit(1) {
		x := v1alpha2.XFCCStrategy(in.xfcc)
		c.ForwardClientCertDetails = &x
	}
	if in.bit(2) {
		c.GatewayExternalTrafficPolicy = &in.trafficPolicy
	}
	c.Telemetry.Metrics.PrometheusMerge = in.prometheusMerge
	if in.bit(3) {
		c.TrustDomain = &in.trustDomain
	}
	if in.bit(4) {
		c.EnableDNSProxying = &in.dns
	}
	if in.bit(5) {
		c.ProxyStatsMatcher = &v1alpha2.ProxyStatsMatcher{
			InclusionRegexps:  strings.Split(in.regex, ","),
			InclusionPrefixes: strings.Fields(in.regex),
		}
		if in.bit(6) {
			c.ProxyStatsMatcher.InclusionSuffixes = []string{}
		} else {
			c.ProxyStatsMatcher.InclusionSuffixes = []string{in.regex, ""}
		}
	}
	if in.bit(7) {
		a := &v1alpha2.Authorizer{Name: in.authName, Service: in.authService, Port: in.authPort}
		if in.bit(8) {
			a.PathPrefix = &in.authPath
		}
		if in.bit(9) {
			a.Timeout = &metav1.Duration{Duration: time.Duration(in.timeout)}
		}
		if in.bit(10) {
			a.Headers = &v1alpha2.Headers{}
			if in.bit(11) {
				a.Headers.InCheck = &v1alpha2.InCheck{Include: []string{in.header}, Add: map[string]string{in.header: in.authPath}}
			}
			if in.bit(12) {
				a.Headers.ToUpstream = &v1alpha2.ToUpstream{OnAllow: []string{in.header}}
			}
			if in.bit(13) {
				a.Headers.ToDownstream = &v1alpha2.ToDownstream{OnAllow: []string{in.header}, OnDeny: []string{}}
			}
		}
		dup := *a
		dup.Service = in.authPath
		c.Authorizers = []*v1alpha2.Authorizer{a, nil, &dup, {Name: in.header}}
	}
	if !in.bit(14) {
		return spec
	}
	comps := &v1alpha2.Components{}
	spec.Components = comps
	if in.bit(15) {
		comps.Pilot = &v1alpha2.IstioComponent{K8s: in.k8s(16)}
	}
	if in.bit(17) {
		comps.IngressGateway = &v1alpha2.IstioComponent{K8s: in.k8s(18)}
	}
	if in.bit(19) {
		comps.EgressGateway = &v1alpha2.EgressGateway{K8s: in.k8s(20)}
		if in.bit(21) {
			comps.EgressGateway.Enabled = &in.egressEnabled
		}
	}
	if in.bit(22) {
		comps.Cni = &v1alpha2.CniComponent{}
		if in.bit(23) {
			comps.Cni.K8s = &v1alpha2.CniK8sConfig{Resources: in.resources()}
			if in.bit(24) {
				comps.Cni.K8s.Affinity = &corev1.Affinity{NodeAffinity: &corev1.NodeAffinity{
					RequiredDuringSchedulingIgnoredDuringExecution: &corev1.NodeSelector{NodeSelectorTerms: []corev1.NodeSelectorTerm{{
						MatchExpressions: []corev1.NodeSelectorRequirement{{Key: in.affinityKey, Operator: corev1.NodeSelectorOperator(in.header), Values: []string{in.regex}}},
					}}},
				}}
			}
		}
	}
	if in.bit(25) {
		comps.Proxy = &v1alpha2.ProxyComponent{}
		if in.bit(26) {
			comps.Proxy.K8s = &v1alpha2.ProxyK8sConfig{Resources: in.resources()}
		}
	}
	return spec
}

// k8s builds a component's settings, or nil when bit first is clear.
func (in fuzzInput) k8s(first uint) *v1alpha2.KubernetesResourcesConfig {
	if !in.bit(first) {
		return nil
	}
	k := &v1alpha2.KubernetesResourcesConfig{Resources: in.resources()}
	if in.bit(27) {
		k.HPASpec = &v1alpha2.HPASpec{MinReplicas: &in.minReplicas}
		if in.bit(28) {
			k.HPASpec.MaxReplicas = &in.maxReplicas
		}
	}
	if in.bit(29) {
		k.Strategy = &v1alpha2.Strategy{}
		if in.bit(30) {
			surge, unavailable := intstr.FromInt32(in.surge), intstr.FromString(in.unavailable)
			if in.bit(31) {
				surge, unavailable = intstr.FromString(in.unavailable), intstr.FromInt32(in.surge)
			}
			k.Strategy.RollingUpdate = &v1alpha2.RollingUpdate{MaxSurge: &surge}
			if in.bit(32) {
				k.Strategy.RollingUpdate.MaxUnavailable = &unavailable
			}
		}
	}
	return k
}

func (in fuzzInput) resources() *v1alpha2.Resources {
	if !in.bit(33) {
		return nil
	}
	r := &v1alpha2.Resources{}
	if in.bit(34) {
		r.Limits = &v1alpha2.ResourceClaims{CPU: &in.cpu}
		if in.bit(35) {
			r.Limits.Memory = &in.memory
		}
	}
	if in.bit(36) {
		r.Requests = &v1alpha2.ResourceClaims{Memory: &in.memory}
		if in.bit(37) {
			r.Requests.CPU = &in.cpu
		}
	}
	return r
}

// FuzzDesiredIstioOperator feeds odd and partial Istio resources to the
// merge. Whatever the resource holds, the merge must not panic, and its
// IstioOperator must survive the YAML round trip Render makes through a
// file, or the installer would crash or render something else.
func FuzzDesiredIstioOperator(f *testing.F) {
	const all = ^uint64(0)
	f.Add(all, "cluster.local", "SANITIZE_SET", "Local", int64(1), true, true, true,
		"ext-authz", "ext-authz.auth.svc.cluster.local", "/check", int32(8080), int64(time.Second), "authorization", ".*outlier_detection.*",
		"500m", "1Gi", int32(2), int32(5), int32(1), "25%", true, "kubernetes.io/os")
	f.Add(uint64(0), "", "", "", int64(0), false, false, false,
		"", "", "", int32(0), int64(0), "", "", "", "", int32(0), int32(0), int32(0), "", false, "")
	f.Add(all, "yes", "null", "~", int64(-1), false, false, true,
		"on", ": x", "- a", int32(-1), int64(-250*time.Millisecond), "{}", "[", "1e3", "0.5", int32(-5), int32(-1), int32(-2147483648), "100%", false, "1.30")
	f.Add(all^(1<<6|1<<31|1<<32), "a.b", "APPEND_FORWARD", "Cluster", int64(4294967295), true, false, false,
		"dup", "svc", "", int32(65535), int64(90*time.Minute), "\n", "(", "-1", "abc", int32(2147483647), int32(0), int32(0), "", true, "")
	f.Add(uint64(1<<14|1<<15|1<<16|1<<29|1<<30|1<<32|1<<33|1<<34|1<<36), "x", "", "", int64(3), false, true, false,
		"", "", "", int32(1), int64(1), "", "", "0x1F", "1e400", int32(1), int32(1), int32(3), "0%", false, "")
	f.Add(all, "\xff\xfe", "\x00", "\t", int64(1)<<62, true, true, true,
		"\xc3\x28", "\"quoted\"", "'", int32(1), int64(1)<<62, "#comment", "&anchor", "*alias", "!!binary", int32(1), int32(0), int32(7), "%", true, "\u2028")

	// JSON, and so the API server, carries DEL, the C1 controls and
	// U+FFFE/U+FFFF in strings verbatim; the YAML reader behind
	// sigs.k8s.io/yaml.Marshal rejects them ("control characters are not
	// allowed"). Authorizer services, paths and headers, stats matcher
	// expressions and CNI affinity terms have no pattern keeping them out.
	f.Add(all, "cluster.local", "SANITIZE_SET", "Local", int64(1), false, false, false,
		"ext-authz", "ext-authz\x7f.auth.svc.cluster.local", "/check", int32(8080), int64(time.Second), "x-user\u0085", "stat\u009b",
		"1", "1Gi", int32(1), int32(2), int32(1), "25%", false, "key\uffff")

	baseline := defaultJSON(f)
	f.Fuzz(func(t *testing.T, present uint64, trustDomain, xfcc, trafficPolicy string, numTrustedProxies int64, prometheusMerge, dns, compat bool,
		authName, authService, authPath string, authPort int32, timeout int64, header, regex string,
		cpu, memory string, minReplicas, maxReplicas, surge int32, unavailable string, egressEnabled bool, affinityKey string) {
		in := fuzzInput{
			present: present, trustDomain: trustDomain, xfcc: xfcc, trafficPolicy: trafficPolicy,
			numTrustedProxies: numTrustedProxies, prometheusMerge: prometheusMerge, dns: dns, compat: compat,
			authName: authName, authService: authService, authPath: authPath, authPort: authPort, timeout: timeout,
			header: header, regex: regex, cpu: cpu, memory: memory,
			minReplicas: minReplicas, maxReplicas: maxReplicas, surge: surge, unavailable: unavailable,
			egressEnabled: egressEnabled, affinityKey: affinityKey,
		}
		spec := in.spec()
		before, err := json.Marshal(spec)
		if err != nil {
			t.Fatal(err)
		}

		iop, err := DesiredIstioOperator(spec)
		if err != nil {
			// Refusing a resource is an answer the controller can report;
			// what must not happen is a panic, or an IstioOperator that
			// Render cannot write. The validation must have caught it
			// first, so that the report names the field.
			if errs := v1alpha2.ValidateSpec(spec); len(errs) == 0 {
				t.Fatalf("the merge refuses a resource ValidateSpec accepts: %v", err)
			}
			return
		}
		// Render writes the IstioOperator with values.Map.YAML, which is
		// this marshal with a panic on error.
		out, err := yaml.Marshal(iop)
		if err != nil {
			t.Fatalf("IstioOperator does not marshal to YAML: %v", err)
		}
		back, err := values.MapFromYaml(out)
		if err != nil {
			t.Fatalf("IstioOperator YAML does not parse back: %v\n%s", err, out)
		}
		if want, got := normalize(t, iop), normalize(t, back); !reflect.DeepEqual(want, got) {
			t.Fatalf("IstioOperator changed in the YAML round trip:\nwant %v\ngot  %v", want, got)
		}
		if td := spec.Config.TrustDomain; td != nil {
			// JSON, and so the API server, carries strings as UTF-8.
			want, _ := json.Marshal(*td)
			var valid string
			_ = json.Unmarshal(want, &valid)
			if got := back.GetPathString("spec.meshConfig.trustDomain"); got != valid {
				t.Errorf("trustDomain %q came back as %q", *td, got)
			}
		}

		after, _ := json.Marshal(spec)
		if string(before) != string(after) {
			t.Errorf("DesiredIstioOperator changed the spec:\nbefore %s\nafter  %s", before, after)
		}
		if got := defaultJSON(t); got != baseline {
			t.Errorf("a merge leaked into the defaults of later merges:\n%s", got)
		}
	})
}

func defaultJSON(tb testing.TB) string {
	tb.Helper()
	iop, err := DesiredIstioOperator(&v1alpha2.IstioSpec{})
	if err != nil {
		tb.Fatal(err)
	}
	return iop.JSON()
}

// normalize maps an IstioOperator to plain JSON types, so int64 and float64
// numbers, and Map and map[string]any, compare equal.
func normalize(t testing.TB, m values.Map) any {
	t.Helper()
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	var v any
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatal(err)
	}
	return v
}
