package istioclient

import (
	"errors"
	"os"
	"regexp"
	"testing"
)

func TestParseVersion(t *testing.T) {
	cases := map[string]struct {
		want    SemVer
		wantErr bool
	}{
		"1.31.1":            {want: SemVer{1, 31, 1, ""}},
		"v1.30.2":           {want: SemVer{1, 30, 2, ""}},
		"1.31.1-distroless": {want: SemVer{1, 31, 1, "-distroless"}},
		" 2.0.0 ":           {want: SemVer{2, 0, 0, ""}},
		"1.31":              {wantErr: true},
		"1.31.x":            {wantErr: true},
		"":                  {wantErr: true},
		"1.-1.0":            {wantErr: true},
	}
	for in, tc := range cases {
		got, err := ParseVersion(in)
		if tc.wantErr {
			if err == nil {
				t.Errorf("ParseVersion(%q) = %v, want an error", in, got)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("ParseVersion(%q) = %v, %v; want %v", in, got, err, tc.want)
		}
	}
}

func TestCheckUpgrade(t *testing.T) {
	cases := []struct {
		installed, target string
		allowed           bool
	}{
		{"1.31.1", "1.31.1", true},
		{"1.31.0", "1.31.1", true},
		{"1.30.2", "1.31.1", true},
		{"1.30.0", "1.31.0", true},
		{"1.29.3", "1.31.1", false},
		{"1.31.2", "1.31.1", false},
		{"1.32.0", "1.31.1", false},
		{"2.0.0", "1.31.1", false},
		{"0.31.1", "1.31.1", false},
		{"1.31.1-distroless", "1.31.1", true},
	}
	for _, tc := range cases {
		installed, target := MustParseVersion(tc.installed), MustParseVersion(tc.target)
		err := CheckUpgrade(installed, target)
		if tc.allowed && err != nil {
			t.Errorf("CheckUpgrade(%s -> %s) = %v, want allowed", tc.installed, tc.target, err)
		}
		if !tc.allowed {
			var ue *UpgradeError
			if !errors.As(err, &ue) {
				t.Errorf("CheckUpgrade(%s -> %s) = %v, want an UpgradeError", tc.installed, tc.target, err)
				continue
			}
			if ue.Installed != installed || ue.Target != target {
				t.Errorf("UpgradeError names %s -> %s, want %s -> %s", ue.Installed, ue.Target, installed, target)
			}
		}
	}
}

// The constant and go.mod's istio.io/api and istio.io/client-go pins must
// name one release.
func TestVersionMatchesModules(t *testing.T) {
	data, err := os.ReadFile("../../go.mod")
	if err != nil {
		t.Fatal(err)
	}
	for _, mod := range []string{"istio.io/api", "istio.io/client-go"} {
		m := regexp.MustCompile(`(?m)^\s*` + regexp.QuoteMeta(mod) + `\s+(\S+)`).FindSubmatch(data)
		if m == nil {
			t.Errorf("go.mod does not require %s", mod)
			continue
		}
		if got := string(m[1]); got != "v"+Version {
			t.Errorf("go.mod requires %s %s, but the operator installs Istio %s", mod, got, Version)
		}
	}
}
