package conditionsdoc

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/meshkeeper/istio-operator/test/cluster"
)

func TestDocumented(t *testing.T) {
	got, err := Documented(strings.NewReader("# C\n\n| Status | Reason | Meaning |\n| --- | --- | --- |\n" +
		"| True | `A` | uses `NotAReason` |\n| False | `B`, `C` | x |\n\ntext `D`\n\n" +
		"| Family | Type |\n| --- | --- |\n| `E` | gauge |\n"))
	if err != nil {
		t.Fatal(err)
	}
	var keys []string
	for k := range got {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	if want := []string{"A", "B", "C"}; !slices.Equal(keys, want) {
		t.Errorf("documented %v, want %v", keys, want)
	}
}

func TestUses(t *testing.T) {
	dir := t.TempDir()
	src := "package x\n\nimport api \"" + APIPackage + "\"\n\nvar _ = []string{api.ReasonA, api.EventB, api.ConditionC}\n"
	if err := os.WriteFile(filepath.Join(dir, "x.go"), []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "x_test.go"), []byte(strings.ReplaceAll(src, "ReasonA", "ReasonT")), 0o644); err != nil {
		t.Fatal(err)
	}
	got, err := Uses(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || !got["ReasonA"] || !got["EventB"] {
		t.Errorf("uses %v, want ReasonA and EventB only (no conditions, no test files)", got)
	}
}

// Each kind of disagreement is found.
func TestCheck(t *testing.T) {
	constants := map[string]string{"ReasonOK": "OK", "ReasonDead": "Dead", "ReasonHidden": "Hidden"}
	used := map[string]bool{"ReasonOK": true, "ReasonHidden": true}
	documented := map[string]bool{"OK": true, "Dead": true, "Stale": true}
	got := Check(constants, used, documented)
	want := []string{
		`"Dead" is documented but no controller emits it`,
		`"Stale" is documented but no controller emits it`,
		`ReasonDead ("Dead") is declared but never emitted: emit it or remove it`,
		`ReasonHidden ("Hidden") is emitted but not documented`,
	}
	if !slices.Equal(got, want) {
		t.Errorf("problems:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if p := Check(map[string]string{"ReasonOK": "OK"}, map[string]bool{"ReasonOK": true}, map[string]bool{"OK": true}); len(p) != 0 {
		t.Errorf("agreement reported as %v", p)
	}
}

// The repository's docs and code agree.
func TestRepository(t *testing.T) {
	root, err := cluster.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	problems, err := CheckRepository(root)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Error(p)
	}
}
