// Package alerts checks the operator's Prometheus alerting rules
// (deploy/alerts): promtool accepts them and their unit tests pass, the
// PrometheusRule of deploy/overlays/servicemonitor holds the same groups,
// every alert follows the conventions and is documented in docs/metrics.md,
// and uses only metrics the operator exports.
//
// It runs the promtool that `make tools` builds (hack/prometheus) and fails
// without it. It imports nothing of the operator, so that it compiles in
// seconds.
package alerts

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"
)

// The files, relative to the repository root.
const (
	rulesPath          = "deploy/alerts/istio-operator.rules.yaml"
	ruleTestsPath      = "deploy/alerts/istio-operator.rules.test.yaml"
	prometheusRulePath = "deploy/overlays/servicemonitor/prometheusrule.yaml"
	kustomizationPath  = "deploy/overlays/servicemonitor/kustomization.yaml"
	docPath            = "docs/metrics.md"

	modulePath = "github.com/meshkeeper/istio-operator"
	// runbookBase is where docs/metrics.md is read: every runbook_url is it
	// plus the anchor of the alert's heading.
	runbookBase = "https://github.com/meshkeeper/istio-operator/blob/main/" + docPath
)

// ruleFile is a Prometheus rule file.
type ruleFile struct {
	Groups []ruleGroup `json:"groups"`
}

type ruleGroup struct {
	Name     string `json:"name"`
	Interval string `json:"interval,omitempty"`
	Rules    []rule `json:"rules"`
}

type rule struct {
	Alert         string            `json:"alert,omitempty"`
	Record        string            `json:"record,omitempty"`
	Expr          string            `json:"expr"`
	For           string            `json:"for,omitempty"`
	KeepFiringFor string            `json:"keep_firing_for,omitempty"`
	Labels        map[string]string `json:"labels,omitempty"`
	Annotations   map[string]string `json:"annotations,omitempty"`
}

// ruleTests is the part of a promtool test file the checks read.
type ruleTests struct {
	RuleFiles []string `json:"rule_files"`
	Tests     []struct {
		AlertRuleTests []struct {
			EvalTime  string `json:"eval_time"`
			Alertname string `json:"alertname"`
			ExpAlerts []any  `json:"exp_alerts"`
		} `json:"alert_rule_test"`
	} `json:"tests"`
}

// repoRoot is the directory holding the operator's go.mod, found by walking
// up from the working directory (test/cluster's RepoRoot, without its
// imports).
func repoRoot(t *testing.T) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if raw, err := os.ReadFile(filepath.Join(dir, "go.mod")); err == nil && strings.Contains(string(raw), "module "+modulePath+"\n") {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatalf("no go.mod of module %s above the working directory", modulePath)
		}
		dir = parent
	}
}

func readRepoFile(t *testing.T, path string) []byte {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(repoRoot(t), path))
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

// loadYAML reads a repository file into v, refusing fields v does not know
// when strict.
func loadYAML(t *testing.T, path string, v any, strict bool) {
	t.Helper()
	raw := readRepoFile(t, path)
	unmarshal := yaml.Unmarshal
	if strict {
		unmarshal = yaml.UnmarshalStrict
	}
	if err := unmarshal(raw, v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

func loadRules(t *testing.T) ruleFile {
	t.Helper()
	var f ruleFile
	loadYAML(t, rulesPath, &f, true)
	if len(f.Groups) == 0 {
		t.Fatalf("%s has no groups", rulesPath)
	}
	return f
}

// alerts lists the alerting rules of f.
func alerts(f ruleFile) []rule {
	var out []rule
	for _, g := range f.Groups {
		for _, r := range g.Rules {
			if r.Alert != "" {
				out = append(out, r)
			}
		}
	}
	return out
}

// TestPrometheusRuleMatchesRulesFile checks that the PrometheusRule of the
// servicemonitor overlay carries exactly the plain file's groups, and that
// the overlay includes it.
func TestPrometheusRuleMatchesRulesFile(t *testing.T) {
	var plain, pr map[string]any
	loadYAML(t, rulesPath, &plain, false)
	loadYAML(t, prometheusRulePath, &pr, false)

	if pr["apiVersion"] != "monitoring.coreos.com/v1" || pr["kind"] != "PrometheusRule" {
		t.Errorf("%s is a %v %v, want a monitoring.coreos.com/v1 PrometheusRule", prometheusRulePath, pr["apiVersion"], pr["kind"])
	}
	meta, _ := pr["metadata"].(map[string]any)
	if meta["name"] != "istio-operator" || meta["namespace"] != "kyma-system" {
		t.Errorf("%s is %v/%v, want kyma-system/istio-operator", prometheusRulePath, meta["namespace"], meta["name"])
	}
	spec, _ := pr["spec"].(map[string]any)
	if len(spec) != 1 {
		t.Errorf("%s: spec has %d fields, want only groups", prometheusRulePath, len(spec))
	}
	if len(plain) != 1 {
		t.Errorf("%s has %d top-level fields, want only groups", rulesPath, len(plain))
	}
	if diff := firstDifference("groups", plain["groups"], spec["groups"]); diff != "" {
		t.Errorf("%s spec.groups differ from the groups of %s (change both): %s", prometheusRulePath, rulesPath, diff)
	}

	var k struct {
		Resources []string `json:"resources"`
	}
	loadYAML(t, kustomizationPath, &k, false)
	if !slices.Contains(k.Resources, filepath.Base(prometheusRulePath)) {
		t.Errorf("%s does not include %s: resources %q", kustomizationPath, filepath.Base(prometheusRulePath), k.Resources)
	}
}

// firstDifference describes where want and got (decoded YAML) first differ,
// or returns "" when they are equal.
func firstDifference(path string, want, got any) string {
	switch w := want.(type) {
	case map[string]any:
		g, ok := got.(map[string]any)
		if !ok {
			return fmt.Sprintf("%s: %T in the rules file, %T in the PrometheusRule", path, want, got)
		}
		for k := range w {
			if _, ok := g[k]; !ok {
				return fmt.Sprintf("%s.%s: missing from the PrometheusRule", path, k)
			}
			if d := firstDifference(path+"."+k, w[k], g[k]); d != "" {
				return d
			}
		}
		for k := range g {
			if _, ok := w[k]; !ok {
				return fmt.Sprintf("%s.%s: only in the PrometheusRule", path, k)
			}
		}
	case []any:
		g, ok := got.([]any)
		if !ok {
			return fmt.Sprintf("%s: %T in the rules file, %T in the PrometheusRule", path, want, got)
		}
		for i := range min(len(w), len(g)) {
			if d := firstDifference(fmt.Sprintf("%s[%d]", path, i), w[i], g[i]); d != "" {
				return d
			}
		}
		if len(w) != len(g) {
			return fmt.Sprintf("%s: %d entries in the rules file, %d in the PrometheusRule", path, len(w), len(g))
		}
	default:
		if want != got {
			return fmt.Sprintf("%s: %q in the rules file, %q in the PrometheusRule", path, fmt.Sprint(want), fmt.Sprint(got))
		}
	}
	return ""
}

// TestAlertConventions checks what every alert must carry: a severity of
// critical or warning, a deliberate for:, a summary, a description and a
// runbook_url pointing at its section of docs/metrics.md.
func TestAlertConventions(t *testing.T) {
	f := loadRules(t)
	seen := map[string]bool{}
	all := alerts(f)
	if len(all) == 0 {
		t.Fatalf("%s has no alerts", rulesPath)
	}
	for _, a := range all {
		if seen[a.Alert] {
			t.Errorf("alert %s is defined twice", a.Alert)
		}
		seen[a.Alert] = true
		if s := a.Labels["severity"]; s != "critical" && s != "warning" {
			t.Errorf("alert %s: severity %q, want critical or warning", a.Alert, s)
		}
		if a.For == "" {
			t.Errorf("alert %s has no for: duration", a.Alert)
		}
		for _, k := range []string{"summary", "description"} {
			if strings.TrimSpace(a.Annotations[k]) == "" {
				t.Errorf("alert %s has no %s annotation", a.Alert, k)
			}
		}
		if want := runbookBase + "#" + anchor(a.Alert); a.Annotations["runbook_url"] != want {
			t.Errorf("alert %s: runbook_url %q, want %q", a.Alert, a.Annotations["runbook_url"], want)
		}
	}
}

// TestEveryAlertIsUnitTested checks that the promtool tests have, for
// every alert, a case where it fires and one where it does not.
func TestEveryAlertIsUnitTested(t *testing.T) {
	var tests ruleTests
	loadYAML(t, ruleTestsPath, &tests, false)
	if len(tests.RuleFiles) != 1 || tests.RuleFiles[0] != filepath.Base(rulesPath) {
		t.Errorf("%s tests rule files %q, want [%s]", ruleTestsPath, tests.RuleFiles, filepath.Base(rulesPath))
	}
	firing, silent := map[string]int{}, map[string]int{}
	for _, g := range tests.Tests {
		for _, c := range g.AlertRuleTests {
			if len(c.ExpAlerts) > 0 {
				firing[c.Alertname]++
			} else {
				silent[c.Alertname]++
			}
		}
	}
	defined := map[string]bool{}
	for _, a := range alerts(loadRules(t)) {
		defined[a.Alert] = true
		if firing[a.Alert] == 0 {
			t.Errorf("%s has no case where %s fires", ruleTestsPath, a.Alert)
		}
		if silent[a.Alert] == 0 {
			t.Errorf("%s has no case where %s does not fire", ruleTestsPath, a.Alert)
		}
	}
	for name := range firing {
		if !defined[name] {
			t.Errorf("%s tests %s, which %s does not define", ruleTestsPath, name, rulesPath)
		}
	}
	for name := range silent {
		if !defined[name] {
			t.Errorf("%s tests %s, which %s does not define", ruleTestsPath, name, rulesPath)
		}
	}
}
