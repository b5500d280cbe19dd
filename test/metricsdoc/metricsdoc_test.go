package metricsdoc

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/meshkeeper/istio-operator/test/cluster"
)

// DashboardPath is the Grafana dashboard, relative to the repository root.
const DashboardPath = "deploy/grafana/istio-operator-dashboard.json"

func TestParse(t *testing.T) {
	d, err := Parse(strings.NewReader("# Metrics\n\n## Ours\n\n" +
		"| Family | Type | Labels | Meaning |\n| --- | --- | --- | --- |\n" +
		"| `a_total` | counter | `verb` (`get`, `create`/`post`), `resource` (with subresource, e.g. `istios/status`) | x |\n" +
		"| `b` | gauge | - | y |\n\nText.\n\n## Useful queries\n\n```promql\n# first\nsum(a_total)\nb\n\n# second\nrate(a_total[5m])\n```\n"))
	if err != nil {
		t.Fatal(err)
	}
	wantFamilies := []Family{{Name: "a_total", Labels: []string{"verb", "resource"}}, {Name: "b"}}
	if !slices.EqualFunc(d.Families, wantFamilies, func(a, b Family) bool { return a.Name == b.Name && slices.Equal(a.Labels, b.Labels) }) {
		t.Errorf("families %+v, want %+v", d.Families, wantFamilies)
	}
	wantQueries := []Query{{"first", "sum(a_total)"}, {"first", "b"}, {"second", "rate(a_total[5m])"}}
	if !slices.Equal(d.Queries, wantQueries) {
		t.Errorf("queries %+v, want %+v", d.Queries, wantQueries)
	}

	if _, err := Parse(strings.NewReader("| Family | Type | Labels | Meaning |\n| --- |\n| `x` | gauge |\n")); err == nil {
		t.Error("a row with a missing cell parsed")
	}
}

// TestDocument checks that the document parses into what the integration
// test of test/integration/metrics will check, so a change of its layout
// fails here and not as an empty check there.
func TestDocument(t *testing.T) {
	d, err := Load()
	if err != nil {
		t.Fatal(err)
	}
	labels := map[string][]string{}
	for _, f := range d.Families {
		if _, dup := labels[f.Name]; dup {
			t.Errorf("%s is documented twice", f.Name)
		}
		labels[f.Name] = f.Labels
	}
	for name, want := range map[string][]string{
		"istio_operator_build_info":                 {"version", "istio_version", "go_version"},
		"istio_operator_reconcile_duration_seconds": {"controller", "result"},
		"istio_operator_outdated_proxies":           nil,
		"istio_operator_api_requests_total":         {"verb", "resource"},
		"istio_operator_state":                      {"state"},
		"istio_operator_condition":                  {"type", "status"},
		"workqueue_depth":                           {"name"},
		"leader_election_master_status":             {"name"},
	} {
		got, ok := labels[name]
		if !ok {
			t.Errorf("%s is not documented", name)
		} else if !slices.Equal(got, want) {
			t.Errorf("%s has labels %q, want %q", name, got, want)
		}
	}
	if len(d.Queries) < 5 {
		t.Errorf("%d queries parsed", len(d.Queries))
	}
}

// dashboard is the part of Grafana's dashboard model the test reads.
type dashboard struct {
	Templating struct {
		List []struct {
			Name, Type string
			Query      any
		}
	}
	Panels []struct {
		Title      string
		Datasource struct{ Type, UID string }
		Targets    []struct {
			Expr       string
			RefID      string `json:"refId"`
			Datasource struct{ Type, UID string }
		}
	}
}

// TestDashboardShowsTheDocumentedQueries checks that the dashboard is
// built on exactly the documented queries, each on the Prometheus data
// source the user picks.
func TestDashboardShowsTheDocumentedQueries(t *testing.T) {
	d, err := Load()
	if err != nil {
		t.Fatal(err)
	}
	root, err := cluster.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(filepath.Join(root, DashboardPath))
	if err != nil {
		t.Fatal(err)
	}
	var dash dashboard
	if err := json.Unmarshal(raw, &dash); err != nil {
		t.Fatalf("%s: %v", DashboardPath, err)
	}
	dsVar := ""
	for _, v := range dash.Templating.List {
		if v.Type == "datasource" && v.Query == "prometheus" {
			dsVar = "${" + v.Name + "}"
		}
	}
	if dsVar == "" {
		t.Fatal("the dashboard has no Prometheus data source variable")
	}
	documented := map[string]bool{}
	for _, q := range d.Queries {
		documented[q.Expr] = true
	}
	shown := map[string]bool{}
	for _, p := range dash.Panels {
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		if p.Datasource.Type != "prometheus" || p.Datasource.UID != dsVar {
			t.Errorf("panel %q uses data source %+v, want the variable %s", p.Title, p.Datasource, dsVar)
		}
		for _, tg := range p.Targets {
			if !documented[tg.Expr] {
				t.Errorf("panel %q shows %q, which docs/metrics.md does not document", p.Title, tg.Expr)
			}
			if tg.Datasource.UID != dsVar || tg.RefID == "" {
				t.Errorf("panel %q query %q: data source %+v, refId %q", p.Title, tg.Expr, tg.Datasource, tg.RefID)
			}
			shown[tg.Expr] = true
		}
	}
	for _, q := range d.Queries {
		if !shown[q.Expr] {
			t.Errorf("no panel shows the documented query %q (%s)", q.Expr, q.Title)
		}
	}
}
