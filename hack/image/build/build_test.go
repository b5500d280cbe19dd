package build

import (
	"archive/tar"
	"bytes"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"runtime/debug"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// The repository, from this package's directory.
const root = "../../.."

var epoch = time.Unix(1767225600, 0).UTC()

func TestTarIsSortedAndCarriesNothingOfTheMachine(t *testing.T) {
	entries := append(appEntries([]byte("binary"), []byte("{}")), baseEntries()...)
	var a, b bytes.Buffer
	if err := writeTar(&a, entries, epoch); err != nil {
		t.Fatal(err)
	}
	// Another order, another time of day: the same bytes.
	reversed := make([]entry, len(entries))
	for i, e := range entries {
		reversed[len(entries)-1-i] = e
	}
	if err := writeTar(&b, reversed, epoch); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(a.Bytes(), b.Bytes()) {
		t.Fatal("the same entries in another order gave other bytes")
	}

	tr := tar.NewReader(&a)
	var names []string
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		names = append(names, hdr.Name)
		if !hdr.ModTime.Equal(epoch) || hdr.Uname != "" || hdr.Gname != "" || !hdr.AccessTime.IsZero() {
			t.Errorf("%s: mtime %v, uname %q, gname %q, atime %v; want the epoch and nothing else", hdr.Name, hdr.ModTime, hdr.Uname, hdr.Gname, hdr.AccessTime)
		}
		wantOwner := 0
		if hdr.Name == "home/nonroot/" {
			wantOwner = UID
		}
		if hdr.Uid != wantOwner || hdr.Gid != wantOwner {
			t.Errorf("%s: owner %d:%d, want %d:%d", hdr.Name, hdr.Uid, hdr.Gid, wantOwner, wantOwner)
		}
	}
	want := []string{"etc/", "etc/group", "etc/passwd", "home/", "home/nonroot/", "istio-operator", "sbom/", "sbom/istio-operator.spdx.json", "tmp/"}
	if strings.Join(names, " ") != strings.Join(want, " ") {
		t.Errorf("entries %q, want %q", names, want)
	}
}

func TestPasswdNamesTheImageUser(t *testing.T) {
	for _, e := range baseEntries() {
		if e.name == "etc/passwd" && !strings.Contains(string(e.data), "nonroot:x:65532:65532:") {
			t.Errorf("/etc/passwd = %q, want the nonroot user 65532:65532", e.data)
		}
	}
}

func buildInfo() *debug.BuildInfo {
	return &debug.BuildInfo{
		GoVersion: "go1.26.8",
		Path:      "github.com/meshkeeper/istio-operator/cmd/istio-operator",
		Main:      debug.Module{Path: "github.com/meshkeeper/istio-operator", Version: "(devel)"},
		Deps: []*debug.Module{
			{Path: "github.com/docker/cli", Version: "v29.5.2+incompatible"},
			{Path: "example.com/Old", Version: "v1.0.0", Replace: &debug.Module{Path: "example.com/new", Version: "v1.1.0"}},
			{Path: "k8s.io/client-go", Version: "v0.36.3"},
		},
		Settings: []debug.BuildSetting{{Key: "GOARCH", Value: "arm64"}},
	}
}

func TestSBOMListsTheModulesReproducibly(t *testing.T) {
	in := sbomInput{
		Source:   Source{Revision: "0123456789abcdef", Commit: "0123456", Epoch: epoch, Version: "1.31.1", Modified: true},
		Platform: "linux/arm64",
		Binary:   []byte("binary"),
		Info:     buildInfo(),
	}
	raw, err := sbom(in)
	if err != nil {
		t.Fatal(err)
	}
	again, err := sbom(in)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(raw, again) {
		t.Error("two SBOMs of the same binary differ")
	}
	var doc spdxDocument
	if err := json.Unmarshal(raw, &doc); err != nil {
		t.Fatal(err)
	}
	if doc.SPDXVersion != "SPDX-2.3" || doc.DataLicense != "CC0-1.0" || doc.CreationInfo.Created != "2026-01-01T00:00:00Z" {
		t.Errorf("version %s, data license %s, created %s", doc.SPDXVersion, doc.DataLicense, doc.CreationInfo.Created)
	}
	// sha256("binary")
	const binSum = "9a3a45d01531a20e89ac6ae10b0b0beb0492acd7216a368aa062d1a5fecaf9cd"
	if !strings.HasSuffix(doc.DocumentNamespace, binSum) {
		t.Errorf("namespace %s does not name the binary's digest", doc.DocumentNamespace)
	}
	purls := map[string]string{}
	ids := map[string]bool{}
	for _, p := range doc.Packages {
		if ids[p.SPDXID] || !regexp.MustCompile(`^SPDXRef-[A-Za-z0-9.-]+$`).MatchString(p.SPDXID) {
			t.Errorf("package %s: SPDXID %q is invalid or not unique", p.Name, p.SPDXID)
		}
		ids[p.SPDXID] = true
		purls[p.Name] = p.ExternalRefs[0].ReferenceLocator
	}
	want := map[string]string{
		"istio-operator":        "pkg:golang/github.com/meshkeeper/istio-operator",
		"stdlib":                "pkg:golang/stdlib@go1.26.8",
		"github.com/docker/cli": "pkg:golang/github.com/docker/cli@v29.5.2%2Bincompatible",
		"example.com/Old":       "pkg:golang/example.com/new@v1.1.0",
		"k8s.io/client-go":      "pkg:golang/k8s.io/client-go@v0.36.3",
	}
	for name, purl := range want {
		if purls[name] != purl {
			t.Errorf("package %s: purl %q, want %q", name, purls[name], purl)
		}
	}
	if len(doc.Packages) != len(want) {
		t.Errorf("%d packages, want %d", len(doc.Packages), len(want))
	}
	bin := doc.Packages[0]
	if bin.SPDXID != spdxBinaryID || bin.Checksums[0].ChecksumValue != binSum || !strings.Contains(bin.SourceInfo, "uncommitted changes") {
		t.Errorf("the binary's package: %+v", bin)
	}
	if len(doc.Relationships) != len(doc.Packages) || doc.Relationships[0].Type != "DESCRIBES" {
		t.Errorf("relationships %+v: want the document describing the binary, the binary linking each module", doc.Relationships)
	}
}

func TestOperatorVersionAndImageNameOfTheRepository(t *testing.T) {
	v, err := OperatorVersion(root)
	if err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(`^\d+\.\d+\.\d+$`).MatchString(v) {
		t.Errorf("version %q is not major.minor.patch", v)
	}
	name, err := BaseImageName(root)
	if err != nil {
		t.Fatal(err)
	}
	if _, tag, err := Repository(name); err != nil || tag != "" {
		t.Errorf("deploy/base's image %q: tag %q, error %v; want a repository", name, tag, err)
	}
}

func TestRepository(t *testing.T) {
	for _, tc := range []struct {
		in, repo, tag string
		bad           bool
	}{
		{in: "europe-docker.pkg.dev/meshkeeper/istio-operator", repo: "europe-docker.pkg.dev/meshkeeper/istio-operator"},
		{in: "registry.example.com:5000/team/istio-operator:1.31.1", repo: "registry.example.com:5000/team/istio-operator", tag: "1.31.1"},
		{in: "localhost:5000/istio-operator", repo: "localhost:5000/istio-operator"},
		{in: "docker.io/user/istio-operator", repo: "docker.io/user/istio-operator"},
		// The registry must be named: the manifest should not depend on a
		// runtime's default registry.
		{in: "user/istio-operator", bad: true},
		{in: "registry.example.com/istio-operator@sha256:" + strings.Repeat("a", 64), bad: true},
		{in: "Registry/Upper", bad: true},
		{in: "", bad: true},
	} {
		repo, tag, err := Repository(tc.in)
		if tc.bad {
			if err == nil {
				t.Errorf("Repository(%q) = %q, %q; want an error", tc.in, repo, tag)
			}
			continue
		}
		if err != nil || repo != tc.repo || tag != tc.tag {
			t.Errorf("Repository(%q) = %q, %q, %v; want %q, %q", tc.in, repo, tag, err, tc.repo, tc.tag)
		}
	}
}

func TestCheckPinned(t *testing.T) {
	const want = "registry.example.com/istio-operator@sha256:abc"
	ok := "containers:\n- name: istio-operator\n  image: " + want + "\n"
	if err := checkPinned([]byte(ok), want); err != nil {
		t.Error(err)
	}
	for _, bad := range []string{
		"kind: ConfigMap\n",
		"      image: registry.example.com/istio-operator:1.31.1\n",
		ok + "      - image: other@sha256:abc\n",
	} {
		if err := checkPinned([]byte(bad), want); err == nil {
			t.Errorf("checkPinned accepted %q", bad)
		}
	}
}

func TestChecksumsAreSha256sumsFormat(t *testing.T) {
	dir := t.TempDir()
	for name, data := range map[string]string{"b.yaml": "b", "a.tar": "a"} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	got, err := checksums(dir, []string{"b.yaml", "a.tar"})
	if err != nil {
		t.Fatal(err)
	}
	want := "ca978112ca1bbdcafac231b39a23dc4da786eff8147c4e72b9807785afee48bb  a.tar\n" +
		"3e23e8160039594a33894f6564e1b1348bbd7a0088d42c4acb73eeaed59c009d  b.yaml\n"
	if got != want {
		t.Errorf("checksums:\n%s\nwant:\n%s", got, want)
	}
}

func TestIstioVersionSection(t *testing.T) {
	t.Run("TheRepository", func(t *testing.T) {
		v, err := OperatorVersion(root)
		if err != nil {
			t.Fatal(err)
		}
		body, err := istioVersionSection(root, v, "0123abc")
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(body, "\n## ") || !strings.Contains(body, "Operator version = Istio version") {
			t.Errorf("section body:\n%s", body)
		}
	})
	dir := t.TempDir()
	write := func(text string) {
		t.Helper()
		if err := os.MkdirAll(filepath.Join(dir, "docs"), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, archDoc), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	t.Run("LinksAbsolute", func(t *testing.T) {
		write("# A\n\n## Istio version\n\nIt is 1.2.3; see [x](performance.md#scale), [g](../go.mod), [a](#packages) and [w](https://istio.io).\n\n## Packages\n\nnot this\n")
		body, err := istioVersionSection(dir, "1.2.3", "0123abc")
		if err != nil {
			t.Fatal(err)
		}
		want := "It is 1.2.3; see [x](" + SourceURL + "/blob/0123abc/docs/performance.md#scale), [g](" + SourceURL + "/blob/0123abc/go.mod), [a](#packages) and [w](https://istio.io)."
		if body != want {
			t.Errorf("body\n%s\nwant\n%s", body, want)
		}
	})
	t.Run("StaleDocsFail", func(t *testing.T) {
		write("## Istio version\n\nIt is 1.2.3.\n")
		if _, err := istioVersionSection(dir, "1.3.0", "0123abc"); err == nil {
			t.Error("a section naming another version was accepted")
		}
	})
}

func TestOverlayPinsTheBaseImage(t *testing.T) {
	d := v1.Hash{Algorithm: "sha256", Hex: strings.Repeat("0", 64)}
	k := overlay("../../deploy/base", "europe-docker.pkg.dev/meshkeeper/istio-operator", "registry.example.com/istio-operator", d)
	for _, want := range []string{
		"resources:\n- ../../deploy/base\n",
		"- name: europe-docker.pkg.dev/meshkeeper/istio-operator\n  newName: registry.example.com/istio-operator\n  digest: sha256:000",
	} {
		if !strings.Contains(k, want) {
			t.Errorf("overlay lacks %q:\n%s", want, k)
		}
	}
}
