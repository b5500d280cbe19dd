// Package metricsdoc reads docs/metrics.md, so that tests check the served
// metrics, the Prometheus queries and the Grafana dashboard against the
// document itself and the three cannot drift apart.
package metricsdoc

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"

	"github.com/meshkeeper/istio-operator/test/cluster"
)

// Path is the document, relative to the repository root.
const Path = "docs/metrics.md"

// Family is a metric family of the document's tables.
type Family struct {
	Name string
	// Labels are the label names, without a histogram's "le".
	Labels []string
}

// Query is an expression of the "Useful queries" block.
type Query struct {
	// Title is the comment line above the expression.
	Title string
	Expr  string
}

// Doc is what the document promises.
type Doc struct {
	Families []Family
	Queries  []Query
}

// Load reads the document from the repository.
func Load() (*Doc, error) {
	root, err := cluster.RepoRoot()
	if err != nil {
		return nil, err
	}
	f, err := os.Open(filepath.Join(root, Path))
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return Parse(f)
}

var (
	code          = regexp.MustCompile("`([^`]+)`")
	parenthesised = regexp.MustCompile(`\([^()]*\)`)
)

// Parse reads the families from every table whose first column is
// "Family", and the queries from the promql block under "## Useful
// queries". In a Labels cell, the names are the code spans outside
// parentheses: "`result` (`success`, `error`)" is the label result.
func Parse(r io.Reader) (*Doc, error) {
	d := &Doc{}
	var section string
	inTable, inQueries := false, false
	title := ""
	sc := bufio.NewScanner(r)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		switch {
		case strings.HasPrefix(line, "## "):
			section = strings.TrimPrefix(line, "## ")
			inTable = false
		case strings.HasPrefix(line, "| Family |"):
			inTable = true
		case inTable && strings.HasPrefix(line, "| ---"):
		case inTable && strings.HasPrefix(line, "|"):
			cells := strings.Split(strings.Trim(line, "|"), "|")
			if len(cells) != 4 {
				return nil, fmt.Errorf("%s:%d: a row of %d cells, want 4 (Family, Type, Labels, Meaning)", Path, n, len(cells))
			}
			name := code.FindStringSubmatch(cells[0])
			if name == nil {
				return nil, fmt.Errorf("%s:%d: no family name in %q", Path, n, cells[0])
			}
			f := Family{Name: name[1]}
			labels := cells[2]
			for parenthesised.MatchString(labels) {
				labels = parenthesised.ReplaceAllString(labels, "")
			}
			for _, m := range code.FindAllStringSubmatch(labels, -1) {
				f.Labels = append(f.Labels, m[1])
			}
			d.Families = append(d.Families, f)
		case inTable:
			inTable = false
		case section == "Useful queries" && line == "```promql":
			inQueries = true
		case inQueries && line == "```":
			inQueries = false
		case inQueries && strings.HasPrefix(line, "#"):
			title = strings.TrimSpace(strings.TrimPrefix(line, "#"))
		case inQueries && line != "":
			if title == "" {
				return nil, fmt.Errorf("%s:%d: query %q has no comment above it", Path, n, line)
			}
			d.Queries = append(d.Queries, Query{Title: title, Expr: line})
		}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if len(d.Families) == 0 || len(d.Queries) == 0 {
		return nil, fmt.Errorf("%s: found %d families and %d queries; the tables or the promql block moved", Path, len(d.Families), len(d.Queries))
	}
	return d, nil
}
