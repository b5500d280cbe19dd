package alerts

import (
	"bufio"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
)

// exportedOutsideTheTables are the metric names the rules may use besides
// the families of docs/metrics.md's tables: up is Prometheus' own series
// per target.
var exportedOutsideTheTables = []string{"up"}

// TestAlertsUseExportedMetrics checks every metric name of every
// expression, and of the queries in annotation templates, against the
// families docs/metrics.md documents; test/integration/metrics checks that
// the operator serves exactly those.
func TestAlertsUseExportedMetrics(t *testing.T) {
	doc := parseDoc(t, string(readRepoFile(t, docPath)))
	f := loadRules(t)
	recorded := map[string]bool{}
	for _, g := range f.Groups {
		for _, r := range g.Rules {
			if r.Record != "" {
				recorded[r.Record] = true
			}
		}
	}
	exported := func(name string) bool {
		return doc.families[name] || recorded[name] || slices.Contains(exportedOutsideTheTables, name) ||
			strings.HasPrefix(name, "go_") || strings.HasPrefix(name, "process_")
	}
	for _, g := range f.Groups {
		for _, r := range g.Rules {
			name := r.Alert + r.Record
			exprs := []string{r.Expr}
			for k, v := range r.Annotations {
				qs, err := templateQueries(v)
				if err != nil {
					t.Errorf("%s: annotation %s: %v", name, k, err)
				}
				exprs = append(exprs, qs...)
			}
			for _, e := range exprs {
				names := metricNames(e)
				if len(names) == 0 {
					t.Errorf("%s: no metric name found in %q", name, e)
				}
				for _, m := range names {
					if !exported(m) {
						t.Errorf("%s uses %s, which docs/metrics.md does not document as exported", name, m)
					}
				}
			}
		}
	}
}

// TestAlertsAreDocumented checks that the "Alerts" section of
// docs/metrics.md lists every alert, with its severity and for: duration,
// and has a section (the runbook_url's anchor) for each, and nothing else.
func TestAlertsAreDocumented(t *testing.T) {
	doc := parseDoc(t, string(readRepoFile(t, docPath)))
	all := alerts(loadRules(t))
	var names []string
	for _, a := range all {
		names = append(names, a.Alert)
		row, ok := doc.alertRows[a.Alert]
		if !ok {
			t.Errorf("%s: the Alerts table has no row for %s", docPath, a.Alert)
		} else if row.severity != a.Labels["severity"] || row.forDuration != a.For {
			t.Errorf("%s: the Alerts table says %s is %s after %s, the rules %s after %s",
				docPath, a.Alert, row.severity, row.forDuration, a.Labels["severity"], a.For)
		}
	}
	sort.Strings(names)
	var rows []string
	for n := range doc.alertRows {
		rows = append(rows, n)
	}
	sort.Strings(rows)
	headings := slices.Clone(doc.alertHeadings)
	sort.Strings(headings)
	if !slices.Equal(rows, names) {
		t.Errorf("%s: the Alerts table lists %q, the rules define %q", docPath, rows, names)
	}
	if !slices.Equal(headings, names) {
		t.Errorf("%s: the Alerts section has sections %q, the rules define %q", docPath, headings, names)
	}
}

// metricsDoc is what the rules are checked against in docs/metrics.md.
type metricsDoc struct {
	// families are the metric names of the tables whose first column is
	// Family, with a histogram's _bucket, _sum and _count.
	families map[string]bool
	// alertRows are the rows of the Alerts table, by alert name.
	alertRows map[string]alertRow
	// alertHeadings are the ### headings of the Alerts section.
	alertHeadings []string
}

type alertRow struct{ severity, forDuration string }

var codeSpan = regexp.MustCompile("`([^`]+)`")

// parseDoc reads the families from every table whose header starts with
// "| Family |" (as test/metricsdoc does) and, under "## Alerts", the table
// whose header starts with "| Alert |" (Alert, Severity, For, ...) and the
// ### headings.
func parseDoc(t *testing.T, text string) metricsDoc {
	t.Helper()
	d := metricsDoc{families: map[string]bool{}, alertRows: map[string]alertRow{}}
	var section, table string
	sc := bufio.NewScanner(strings.NewReader(text))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		switch {
		case strings.HasPrefix(line, "## "):
			section, table = strings.TrimPrefix(line, "## "), ""
		case section == "Alerts" && strings.HasPrefix(line, "### "):
			d.alertHeadings = append(d.alertHeadings, strings.TrimPrefix(line, "### "))
		case strings.HasPrefix(line, "| Family |"):
			table = "family"
		case section == "Alerts" && strings.HasPrefix(line, "| Alert |"):
			table = "alert"
		case table != "" && strings.HasPrefix(line, "| ---"):
		case table != "" && strings.HasPrefix(line, "|"):
			cells := strings.Split(strings.Trim(line, "|"), "|")
			name := codeSpan.FindStringSubmatch(cells[0])
			if name == nil || len(cells) < 3 {
				t.Fatalf("%s:%d: a %s table row without a name in code or with %d cells", docPath, n, table, len(cells))
			}
			if table == "family" {
				d.families[name[1]] = true
				if strings.TrimSpace(cells[1]) == "histogram" {
					for _, s := range []string{"_bucket", "_sum", "_count"} {
						d.families[name[1]+s] = true
					}
				}
				continue
			}
			d.alertRows[name[1]] = alertRow{
				severity:    strings.Trim(strings.TrimSpace(cells[1]), "`"),
				forDuration: strings.Trim(strings.TrimSpace(cells[2]), "`"),
			}
		default:
			table = ""
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if len(d.families) == 0 || len(d.alertRows) == 0 {
		t.Fatalf("%s: found %d families and %d alerts; the tables moved", docPath, len(d.families), len(d.alertRows))
	}
	return d
}

// anchor is GitHub's anchor of a Markdown heading.
func anchor(heading string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(heading) {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9', r == '-', r == '_':
			b.WriteRune(r)
		case r == ' ':
			b.WriteRune('-')
		}
	}
	return b.String()
}

var (
	stringLiteral = regexp.MustCompile(`"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|` + "`[^`]*`")
	labelMatchers = regexp.MustCompile(`\{[^}]*\}`)
	rangeOrSub    = regexp.MustCompile(`\[[^\]]*\]`)
	grouping      = regexp.MustCompile(`\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)`)
	// identifier is a name not preceded by a name character or a digit (so
	// not the unit of 5m).
	identifier = regexp.MustCompile(`(?:^|[^a-zA-Z0-9_:.])([a-zA-Z_:][a-zA-Z0-9_:]*)`)
	keywords   = []string{"and", "or", "unless", "bool", "offset", "atan2", "inf", "nan"}

	templateQuery = regexp.MustCompile(`\bquery\s+("(?:[^"\\]|\\.)*"|` + "`[^`]*`)")
)

// metricNames returns the metric names a PromQL expression selects. It is
// no parser (promtool parses the rules): it drops strings, label matchers,
// ranges and grouping clauses, then takes every name that is not called
// and is no keyword. Enough for rules that select metrics by name.
func metricNames(expr string) []string {
	e := stringLiteral.ReplaceAllString(expr, `""`)
	e = labelMatchers.ReplaceAllString(e, " ")
	e = rangeOrSub.ReplaceAllString(e, " ")
	e = grouping.ReplaceAllString(e, " ")
	seen := map[string]bool{}
	var names []string
	for _, m := range identifier.FindAllStringSubmatchIndex(e, -1) {
		name := e[m[2]:m[3]]
		called := strings.HasPrefix(strings.TrimLeft(e[m[3]:], " \t\n"), "(")
		if called || slices.Contains(keywords, strings.ToLower(name)) || seen[name] {
			continue
		}
		seen[name] = true
		names = append(names, name)
	}
	return names
}

// templateQueries returns the PromQL of the query calls of an annotation
// template.
func templateQueries(tmpl string) ([]string, error) {
	var out []string
	for _, m := range templateQuery.FindAllStringSubmatch(tmpl, -1) {
		q, err := strconv.Unquote(m[1])
		if err != nil {
			return nil, err
		}
		out = append(out, q)
	}
	return out, nil
}

func TestMetricNames(t *testing.T) {
	for expr, want := range map[string][]string{
		`absent(up{job="istio-operator"} == 1)`:                                                            {"up"},
		`sum by (controller) (increase(istio_operator_reconcile_total{result="error"}[10m])) > 0`:          {"istio_operator_reconcile_total"},
		`max(a{x="}"}) < 1 and on () max(b offset 5m) == 1 unless ignoring(le) c:rate5m[1h:1m] > 1e3`:      {"a", "b", "c:rate5m"},
		`histogram_quantile(0.99, sum(rate(d_bucket[5m])) by (le)) / on(x) group_left(y) e > bool Inf`:     {"d_bucket", "e"},
		"max by (state) (istio_operator_state{job=\"istio-operator\"} == 1)":                               {"istio_operator_state"},
		`label_replace(f, "dst", "$1", "src", "(.*)") or vector(0) and sum without (instance) (g) atan2 h`: {"f", "g", "h"},
	} {
		if got := metricNames(expr); !slices.Equal(got, want) {
			t.Errorf("metricNames(%q) = %q, want %q", expr, got, want)
		}
	}

	qs, err := templateQueries("a {{ with query `max(x == 1)` }}{{ . | first | value }}{{ end }} b {{ query \"y{j=\\\"k\\\"}\" }}")
	if err != nil || !slices.Equal(qs, []string{"max(x == 1)", `y{j="k"}`}) {
		t.Errorf("templateQueries = %q, %v", qs, err)
	}

	if got := anchor("IstioOperatorDown"); got != "istiooperatordown" {
		t.Errorf("anchor = %q", got)
	}
}
