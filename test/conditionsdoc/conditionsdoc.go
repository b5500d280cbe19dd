// Package conditionsdoc checks docs/conditions.md against the code: every
// condition and Event reason the controllers emit is documented, every
// documented reason is emitted, and no reason constant is left unused.
package conditionsdoc

import (
	"bufio"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// APIPackage is the import path of the package that declares the reasons.
const APIPackage = "github.com/meshkeeper/istio-operator/pkg/apis/operator/v1alpha2"

// Constants reads the Reason* and Event* constants of a Go file: name to
// value.
func Constants(path string) (map[string]string, error) {
	f, err := parser.ParseFile(token.NewFileSet(), path, nil, 0)
	if err != nil {
		return nil, err
	}
	out := map[string]string{}
	for _, decl := range f.Decls {
		gd, ok := decl.(*ast.GenDecl)
		if !ok || gd.Tok != token.CONST {
			continue
		}
		for _, spec := range gd.Specs {
			vs := spec.(*ast.ValueSpec)
			for i, name := range vs.Names {
				if !isReason(name.Name) || i >= len(vs.Values) {
					continue
				}
				lit, ok := vs.Values[i].(*ast.BasicLit)
				if !ok || lit.Kind != token.STRING {
					return nil, fmt.Errorf("%s: %s is not a string literal", path, name.Name)
				}
				v, err := strconv.Unquote(lit.Value)
				if err != nil {
					return nil, err
				}
				out[name.Name] = v
			}
		}
	}
	return out, nil
}

func isReason(name string) bool {
	return strings.HasPrefix(name, "Reason") || strings.HasPrefix(name, "Event")
}

// Uses walks the non-test Go files under the roots and returns the Reason*
// and Event* constants of APIPackage they refer to.
func Uses(roots ...string) (map[string]bool, error) {
	used := map[string]bool{}
	for _, root := range roots {
		err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
				return err
			}
			f, err := parser.ParseFile(token.NewFileSet(), path, nil, parser.SkipObjectResolution)
			if err != nil {
				return err
			}
			local := ""
			for _, imp := range f.Imports {
				if p, _ := strconv.Unquote(imp.Path.Value); p == APIPackage {
					local = "v1alpha2"
					if imp.Name != nil {
						local = imp.Name.Name
					}
				}
			}
			if local == "" {
				return nil
			}
			ast.Inspect(f, func(n ast.Node) bool {
				if sel, ok := n.(*ast.SelectorExpr); ok {
					if id, ok := sel.X.(*ast.Ident); ok && id.Name == local && isReason(sel.Sel.Name) {
						used[sel.Sel.Name] = true
					}
				}
				return true
			})
			return nil
		})
		if err != nil {
			return nil, err
		}
	}
	return used, nil
}

var backticked = regexp.MustCompile("`([^`]+)`")

// Documented reads the reasons of a Markdown document's tables: the
// backticked words in the cells of every column headed "Reason".
func Documented(r io.Reader) (map[string]bool, error) {
	out := map[string]bool{}
	col := -1
	s := bufio.NewScanner(r)
	for s.Scan() {
		line := strings.TrimSpace(s.Text())
		if !strings.HasPrefix(line, "|") {
			col = -1
			continue
		}
		cells := strings.Split(strings.Trim(line, "|"), "|")
		for i := range cells {
			cells[i] = strings.TrimSpace(cells[i])
		}
		switch {
		case col == -1:
			// A table's header row.
			col = slices.Index(cells, "Reason")
			if col == -1 {
				col = -2 // a table without reasons
			}
		case col < 0 || strings.HasPrefix(cells[0], "---"):
		case col >= len(cells):
			return nil, fmt.Errorf("table row %q has no Reason cell", line)
		default:
			for _, m := range backticked.FindAllStringSubmatch(cells[col], -1) {
				out[m[1]] = true
			}
		}
	}
	return out, s.Err()
}

// Check compares the three: constants (name to value), the constants the
// code uses, and the documented reason values. It returns one line per
// disagreement.
func Check(constants map[string]string, used, documented map[string]bool) []string {
	var problems []string
	values := map[string]bool{}
	for name, v := range constants {
		switch {
		case !used[name]:
			problems = append(problems, fmt.Sprintf("%s (%q) is declared but never emitted: emit it or remove it", name, v))
		case !documented[v]:
			problems = append(problems, fmt.Sprintf("%s (%q) is emitted but not documented", name, v))
		}
		if used[name] {
			values[v] = true
		}
	}
	for v := range documented {
		if !values[v] {
			problems = append(problems, fmt.Sprintf("%q is documented but no controller emits it", v))
		}
	}
	slices.Sort(problems)
	return problems
}

// CheckRepository runs Check on the repository at root.
func CheckRepository(root string) ([]string, error) {
	constants, err := Constants(filepath.Join(root, "pkg/apis/operator/v1alpha2/conditions.go"))
	if err != nil {
		return nil, err
	}
	used, err := Uses(filepath.Join(root, "pkg/controllers"), filepath.Join(root, "pkg/operator"), filepath.Join(root, "cmd"))
	if err != nil {
		return nil, err
	}
	doc, err := os.Open(filepath.Join(root, "docs/conditions.md"))
	if err != nil {
		return nil, err
	}
	defer doc.Close()
	documented, err := Documented(doc)
	if err != nil {
		return nil, err
	}
	return Check(constants, used, documented), nil
}
