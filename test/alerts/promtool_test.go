package alerts

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"sigs.k8s.io/yaml"
)

// Where the tools are: the variable the other tests read (test/cluster),
// then the one make exports and hack/build-tools.sh builds into.
var toolsEnv = []string{"ISTIO_OPERATOR_TOOLS", "TOOLS_BIN"}

// promtool is the promtool `make tools` builds from the pinned Prometheus
// module (hack/prometheus), in the first directory toolsEnv names, else in
// bin/tools. Without it the test fails: checking the rules with
// Prometheus' own parser and rule engine is its point.
func promtool(t *testing.T) string {
	t.Helper()
	dir := filepath.Join(repoRoot(t), "bin", "tools")
	for _, env := range toolsEnv {
		if d := os.Getenv(env); d != "" {
			dir = d
			break
		}
	}
	bin := filepath.Join(dir, "promtool")
	if info, err := os.Stat(bin); err != nil || info.IsDir() || info.Mode()&0o111 == 0 {
		t.Fatalf("promtool is not built in %s; run `make tools`", dir)
	}
	return bin
}

// runPromtool runs promtool with args and returns its output and whether
// it exited 0. Anything but an exit status (promtool not starting, a hang)
// fails the test.
func runPromtool(t *testing.T, args ...string) (string, bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, promtool(t), args...).CombinedOutput()
	var exit *exec.ExitError
	if err != nil && (!errors.As(err, &exit) || ctx.Err() != nil) {
		t.Fatalf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out), err == nil
}

func TestPromtoolCheckRules(t *testing.T) {
	if out, ok := runPromtool(t, "check", "rules", filepath.Join(repoRoot(t), rulesPath)); !ok {
		t.Fatalf("promtool check rules %s:\n%s", rulesPath, out)
	}
}

func TestPromtoolTestRules(t *testing.T) {
	if out, ok := runPromtool(t, "test", "rules", filepath.Join(repoRoot(t), ruleTestsPath)); !ok {
		t.Fatalf("promtool test rules %s:\n%s", ruleTestsPath, out)
	}
}

// TestPromtoolRejectsInvalidExpression proves the check can fail: a copy
// of the rules with an expression that does not parse must fail both
// promtool check rules and promtool test rules.
func TestPromtoolRejectsInvalidExpression(t *testing.T) {
	var rules map[string]any
	loadYAML(t, rulesPath, &rules, false)
	r := firstRule(t, rules)
	r["expr"] = `max(istio_operator_state{state="Ready"} < 1` // unclosed parenthesis
	dir := t.TempDir()
	rulesCopy := writeYAML(t, dir, rulesPath, rules)
	testsCopy := writeFile(t, dir, ruleTestsPath, readRepoFile(t, ruleTestsPath))

	out, ok := runPromtool(t, "check", "rules", rulesCopy)
	if ok {
		t.Fatalf("promtool check rules accepted an unclosed parenthesis in %s:\n%s", r["alert"], out)
	}
	if !strings.Contains(out, "parse error") {
		t.Errorf("promtool check rules failed, but not on the expression:\n%s", out)
	}
	if out, ok := runPromtool(t, "test", "rules", testsCopy); ok {
		t.Errorf("promtool test rules passed with an unclosed parenthesis in %s:\n%s", r["alert"], out)
	}
}

// TestPromtoolRejectsWrongExpectation proves the unit tests can fail, and
// that each case where an alert fires is needed: with the alert's labels
// changed, or with no alert expected there, promtool test rules must fail
// on that alert.
func TestPromtoolRejectsWrongExpectation(t *testing.T) {
	rules := readRepoFile(t, rulesPath)
	var tests map[string]any
	loadYAML(t, ruleTestsPath, &tests, false)
	type firingCase struct {
		group, test     int
		alert, evalTime string
	}
	var cases []firingCase
	for i, g := range list(tests["tests"]) {
		for j, c := range list(dict(g)["alert_rule_test"]) {
			if len(list(dict(c)["exp_alerts"])) > 0 {
				cases = append(cases, firingCase{i, j, fmt.Sprint(dict(c)["alertname"]), fmt.Sprint(dict(c)["eval_time"])})
			}
		}
	}
	if len(cases) == 0 {
		t.Fatalf("%s has no case where an alert fires", ruleTestsPath)
	}

	// mutate runs the tests with one case changed and expects promtool to
	// report that case's alert.
	mutate := func(t *testing.T, fc firingCase, change func(c map[string]any)) {
		var copied map[string]any
		loadYAML(t, ruleTestsPath, &copied, false)
		change(dict(list(dict(list(copied["tests"])[fc.group])["alert_rule_test"])[fc.test]))
		dir := t.TempDir()
		writeFile(t, dir, rulesPath, rules)
		out, ok := runPromtool(t, "test", "rules", writeYAML(t, dir, ruleTestsPath, copied))
		if ok {
			t.Fatalf("promtool test rules passed:\n%s", out)
		}
		if !strings.Contains(out, "alertname: "+fc.alert) {
			t.Errorf("promtool test rules failed, but not on %s:\n%s", fc.alert, out)
		}
	}

	t.Run("wrong severity", func(t *testing.T) {
		mutate(t, cases[0], func(c map[string]any) {
			dict(dict(list(c["exp_alerts"])[0])["exp_labels"])["severity"] = "none"
		})
	})
	for _, fc := range cases {
		t.Run(fmt.Sprintf("%s at %s expects nothing", fc.alert, fc.evalTime), func(t *testing.T) {
			mutate(t, fc, func(c map[string]any) { c["exp_alerts"] = []any{} })
		})
	}
}

// firstRule is the first rule of the first group of a decoded rule file.
func firstRule(t *testing.T, rules map[string]any) map[string]any {
	t.Helper()
	groups := list(rules["groups"])
	if len(groups) == 0 || len(list(dict(groups[0])["rules"])) == 0 {
		t.Fatalf("%s has no rule", rulesPath)
	}
	return dict(list(dict(groups[0])["rules"])[0])
}

func list(v any) []any          { l, _ := v.([]any); return l }
func dict(v any) map[string]any { m, _ := v.(map[string]any); return m }

// writeYAML writes v into dir under the base name of path and returns the
// file's path.
func writeYAML(t *testing.T, dir, path string, v any) string {
	t.Helper()
	raw, err := yaml.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return writeFile(t, dir, path, raw)
}

func writeFile(t *testing.T, dir, path string, raw []byte) string {
	t.Helper()
	p := filepath.Join(dir, filepath.Base(path))
	if err := os.WriteFile(p, raw, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}
