// Package image tests the operator's container image as make image, make
// push and make release produce it (hack/image/build, the code behind those
// targets): built into a temporary directory, pushed into an in-process
// registry and pulled back, the index holds both platforms, each image
// runs the operator binary as the non-root user of the Deployment, holds
// nothing but the files the build puts there (no shell), carries the OCI
// labels and an SBOM naming client-go; the host platform's binary prints
// the stamped version; a second build of the same commit has the same
// digest; and the release manifest pins that digest and passes the API
// server's dry-run on a real local cluster.
package image

import (
	"archive/tar"
	"bufio"
	"bytes"
	"crypto/sha256"
	"debug/elf"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"log"
	"maps"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"
	appsv1 "k8s.io/api/apps/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	k8sruntime "k8s.io/apimachinery/pkg/runtime"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/yaml"

	"github.com/meshkeeper/istio-operator/hack/image/build"
	"github.com/meshkeeper/istio-operator/test/cluster"
)

func TestMain(m *testing.M) {
	cluster.Main(m, cluster.Options{})
}

// story is what the steps share: one build of both platforms (the
// expensive part), what the registry returned, the release.
type story struct {
	root, dir string
	built     *build.Result
	pulled    v1.ImageIndex
	images    map[string]*imageFiles // by platform
}

// TestImage is one story in steps: each needs the ones before.
func TestImage(t *testing.T) {
	root, err := cluster.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	s := &story{root: root, dir: t.TempDir(), images: map[string]*imageFiles{}}
	steps := []struct {
		name string
		run  func(t *testing.T)
	}{
		{"Build", s.build},
		{"PushAndPull", s.pushAndPull},
		{"IndexHoldsBothPlatforms", s.checkIndex},
		{"ConfigRunsTheBinaryAsNonRoot", s.checkConfig},
		{"OnlyTheFilesTheBuildPutsThere", s.checkFiles},
		{"SBOMNamesTheModules", s.checkSBOM},
		{"BinaryPrintsTheStampedVersion", s.checkVersion},
		{"SameCommitSameDigest", s.checkReproducible},
		{"ReleaseManifestPinsTheDigest", s.checkRelease},
		{"ReleaseManifestPassesServerDryRun", s.checkDryRun},
	}
	for _, st := range steps {
		if !t.Run(st.name, st.run) {
			return
		}
	}
}

func (s *story) build(t *testing.T) {
	var out bytes.Buffer
	begin := time.Now()
	res, err := build.Build(t.Context(), build.Options{Root: s.root, Out: s.dir, Log: &out})
	t.Logf("build (%s):\n%s", time.Since(begin).Round(time.Second), out.String())
	if err != nil {
		t.Fatal(err)
	}
	s.built = res
}

func (s *story) pushAndPull(t *testing.T) {
	srv := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	t.Cleanup(srv.Close)
	repo := strings.TrimPrefix(srv.URL, "http://") + "/meshkeeper/istio-operator"

	ref, err := build.Push(t.Context(), filepath.Join(s.dir, build.LayoutDir), repo)
	if err != nil {
		t.Fatal(err)
	}
	if want := repo + "@" + s.built.Digest.String(); ref.String() != want {
		t.Fatalf("push returned %s, want %s", ref, want)
	}
	// Without a tag, the push tags the version.
	tag, err := name.NewTag(repo + ":" + s.built.Source.Version)
	if err != nil {
		t.Fatal(err)
	}
	byTag, err := remote.Index(tag, remote.WithContext(t.Context()))
	if err != nil {
		t.Fatalf("pulling %s: %v", tag, err)
	}
	if d, err := byTag.Digest(); err != nil || d != s.built.Digest {
		t.Fatalf("%s has digest %v (%v), want %s", tag, d, err, s.built.Digest)
	}
	if s.pulled, err = remote.Index(ref, remote.WithContext(t.Context())); err != nil {
		t.Fatalf("pulling %s: %v", ref, err)
	}
	// Pull every image now: the registry and the context end with this step.
	m, err := s.pulled.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range m.Manifests {
		if d.Platform == nil {
			t.Fatalf("manifest %s has no platform", d.Digest)
		}
		img, err := s.pulled.Image(d.Digest)
		if err != nil {
			t.Fatalf("pulling %s: %v", d.Digest, err)
		}
		s.images[d.Platform.OS+"/"+d.Platform.Architecture] = readImage(t, img)
	}
}

func (s *story) checkIndex(t *testing.T) {
	m, err := s.pulled.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	if m.MediaType != types.OCIImageIndex {
		t.Errorf("index media type %s, want %s", m.MediaType, types.OCIImageIndex)
	}
	var platforms []string
	for _, d := range m.Manifests {
		platforms = append(platforms, d.Platform.OS+"/"+d.Platform.Architecture)
		if d.MediaType != types.OCIManifestSchema1 {
			t.Errorf("%s: media type %s, want %s", d.Digest, d.MediaType, types.OCIManifestSchema1)
		}
	}
	if want := []string{"linux/amd64", "linux/arm64"}; !slices.Equal(platforms, want) {
		t.Fatalf("index holds %v, want %v", platforms, want)
	}
	for _, k := range []string{build.LabelSource, build.LabelRevision, build.LabelVersion} {
		if m.Annotations[k] == "" {
			t.Errorf("the index has no %s annotation: %v", k, m.Annotations)
		}
	}
	// The base layer is the same blob on every platform.
	if a, b := s.images["linux/amd64"].layers[0], s.images["linux/arm64"].layers[0]; a != b {
		t.Errorf("base layers differ: %s, %s", a, b)
	}
}

func (s *story) checkConfig(t *testing.T) {
	d := deployment(t, filepath.Join(s.root, "deploy/base/deployment.yaml"))
	psc := d.Spec.Template.Spec.SecurityContext
	wantUser := "65532:65532"
	if psc != nil && psc.RunAsUser != nil {
		wantUser = strconv.FormatInt(*psc.RunAsUser, 10) + ":" + strconv.FormatInt(ptr.Deref(psc.RunAsGroup, *psc.RunAsUser), 10)
	}
	// The commit the build read (HEAD may have moved since), and its time.
	revision := s.built.Source.Revision
	if got := git(t, s.root, "rev-parse", "--verify", revision+"^{commit}"); got != revision {
		t.Fatalf("the build's revision %q is not a commit of the repository (%s)", revision, got)
	}
	when, err := time.Parse(time.RFC3339, git(t, s.root, "show", "-s", "--format=%cI", revision))
	if err != nil {
		t.Fatal(err)
	}
	for p, im := range s.images {
		c := im.config
		if c.OS+"/"+c.Architecture != p {
			t.Errorf("%s: config is for %s/%s", p, c.OS, c.Architecture)
		}
		if !slices.Equal(c.Config.Entrypoint, []string{"/istio-operator"}) || len(c.Config.Cmd) != 0 {
			t.Errorf("%s: entrypoint %q, cmd %q; want the operator binary alone", p, c.Config.Entrypoint, c.Config.Cmd)
		}
		if c.Config.User != wantUser {
			t.Errorf("%s: user %q, want %q (deploy/base's runAsUser:runAsGroup)", p, c.Config.User, wantUser)
		}
		labels := c.Config.Labels
		for k, want := range map[string]string{
			build.LabelSource:   "https://github.com/meshkeeper/istio-operator",
			build.LabelRevision: revision,
			build.LabelVersion:  s.built.Source.Version,
			build.LabelTitle:    "istio-operator",
		} {
			if labels[k] != want {
				t.Errorf("%s: label %s = %q, want %q", p, k, labels[k], want)
			}
		}
		if !c.Created.Time.Equal(when) {
			t.Errorf("%s: created %s, want the commit time %s", p, c.Created.Time, when)
		}
		for _, h := range c.History {
			if !h.Created.Time.Equal(when) {
				t.Errorf("%s: history %q created %s, want the commit time", p, h.CreatedBy, h.Created.Time)
			}
		}
	}
}

func (s *story) checkFiles(t *testing.T) {
	// Path, with a trailing slash for directories: mode.
	want := map[string]int64{
		"etc/":                          0o755,
		"etc/group":                     0o644,
		"etc/passwd":                    0o644,
		"home/":                         0o755,
		"home/nonroot/":                 0o700,
		"istio-operator":                0o755,
		"sbom/":                         0o755,
		"sbom/istio-operator.spdx.json": 0o644,
		"tmp/":                          0o1777,
	}
	machine := map[string]elf.Machine{"linux/amd64": elf.EM_X86_64, "linux/arm64": elf.EM_AARCH64}
	for p, im := range s.images {
		var got []string
		for n, f := range im.files {
			switch f.hdr.Typeflag {
			case tar.TypeDir:
				n += "/"
			case tar.TypeReg:
			default:
				t.Errorf("%s: %s is neither a file nor a directory (type %c)", p, n, f.hdr.Typeflag)
			}
			got = append(got, n)
			if mode, ok := want[n]; ok && f.hdr.Mode != mode {
				t.Errorf("%s: %s has mode %o, want %o", p, n, f.hdr.Mode, mode)
			}
			if strings.HasPrefix(n, "bin/") || strings.HasSuffix(n, "/sh") {
				t.Errorf("%s: the image holds %s", p, n)
			}
		}
		slices.Sort(got)
		if wantNames := slices.Sorted(maps.Keys(want)); !slices.Equal(got, wantNames) {
			t.Errorf("%s: files %q, want exactly %q", p, got, wantNames)
		}
		if !strings.Contains(string(im.files["etc/passwd"].data), "nonroot:x:65532:65532:") {
			t.Errorf("%s: /etc/passwd does not name the user 65532:\n%s", p, im.files["etc/passwd"].data)
		}
		// A static binary for the platform: no dynamic loader to need.
		f, err := elf.NewFile(bytes.NewReader(im.files["istio-operator"].data))
		if err != nil {
			t.Fatalf("%s: the binary: %v", p, err)
		}
		if f.Machine != machine[p] {
			t.Errorf("%s: the binary is for %s", p, f.Machine)
		}
		for _, prog := range f.Progs {
			if prog.Type == elf.PT_INTERP {
				t.Errorf("%s: the binary is dynamically linked", p)
			}
		}
	}
}

func (s *story) checkSBOM(t *testing.T) {
	for _, pi := range s.built.Images {
		p := build.PlatformString(pi.Platform)
		im := s.images[p]
		raw := im.files["sbom/istio-operator.spdx.json"].data
		next, err := os.ReadFile(pi.SBOM)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(raw, next) {
			t.Errorf("%s: %s differs from the image's /sbom/istio-operator.spdx.json", p, pi.SBOM)
		}
		var doc struct {
			SPDXVersion string `json:"spdxVersion"`
			Packages    []struct {
				Name        string `json:"name"`
				VersionInfo string `json:"versionInfo"`
				Checksums   []struct {
					Algorithm, ChecksumValue string
				} `json:"checksums"`
			} `json:"packages"`
		}
		if err := json.Unmarshal(raw, &doc); err != nil {
			t.Fatalf("%s: the SBOM: %v", p, err)
		}
		if doc.SPDXVersion != "SPDX-2.3" {
			t.Errorf("%s: the SBOM is %s, want SPDX-2.3", p, doc.SPDXVersion)
		}
		versions := map[string]string{}
		for _, pkg := range doc.Packages {
			versions[pkg.Name] = pkg.VersionInfo
		}
		// The modules the binary reports compiled in, with their versions.
		for _, mod := range []string{"k8s.io/client-go", "istio.io/istio", "go.uber.org/zap"} {
			if versions[mod] == "" || versions[mod] != goModVersion(t, s.root, mod) {
				t.Errorf("%s: the SBOM lists %s at %q, go.mod at %q", p, mod, versions[mod], goModVersion(t, s.root, mod))
			}
		}
		sum := sha256.Sum256(im.files["istio-operator"].data)
		if bin := doc.Packages[0]; bin.Name != "istio-operator" || len(bin.Checksums) != 1 || bin.Checksums[0].ChecksumValue != hex.EncodeToString(sum[:]) {
			t.Errorf("%s: the SBOM's first package %+v is not the image's binary (sha256 %x)", p, bin, sum)
		}
	}
}

var versionLine = regexp.MustCompile(`^istio-operator (\S+) \(Istio (\S+), commit (\S+), (go\S+)\)\n$`)

func (s *story) checkVersion(t *testing.T) {
	p := runtime.GOOS + "/" + runtime.GOARCH
	im, ok := s.images[p]
	if !ok {
		t.Skipf("no image for this machine's platform %s", p)
	}
	bin := filepath.Join(t.TempDir(), "istio-operator")
	if err := os.WriteFile(bin, im.files["istio-operator"].data, 0o755); err != nil {
		t.Fatal(err)
	}
	out, err := exec.CommandContext(t.Context(), bin, "--version").Output()
	if err != nil {
		t.Fatalf("%s --version: %v", bin, err)
	}
	m := versionLine.FindStringSubmatch(string(out))
	if m == nil {
		t.Fatalf("--version printed %q", out)
	}
	commit := git(t, s.root, "rev-parse", "--short", s.built.Source.Revision)
	if m[1] != im.config.Config.Labels[build.LabelVersion] || m[2] != m[1] || m[3] != commit {
		t.Errorf("--version printed %q: want version %s (the label), Istio the same, commit %s", out, im.config.Config.Labels[build.LabelVersion], commit)
	}
}

func (s *story) checkReproducible(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "again")
	begin := time.Now()
	again, err := build.Build(t.Context(), build.Options{Root: s.root, Out: dir})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("second build: %s", time.Since(begin).Round(time.Second))
	if a, b := s.built.Source.Commit, again.Source.Commit; a != b {
		t.Fatalf("HEAD moved from %s to %s between the two builds: not the same commit to compare; run the test again", a, b)
	}
	if again.Digest != s.built.Digest {
		t.Errorf("a second build of the same commit has digest %s, the first %s", again.Digest, s.built.Digest)
		for i := range again.Images {
			t.Logf("%s: %s, first %s", build.PlatformString(again.Images[i].Platform), again.Images[i].Digest, s.built.Images[i].Digest)
		}
	}
	for _, f := range []string{build.TarballFile, build.SBOMFile(build.Platforms[0]), build.SBOMFile(build.Platforms[1])} {
		if a, b := fileSum(t, filepath.Join(s.dir, f)), fileSum(t, filepath.Join(dir, f)); a != b {
			t.Errorf("%s differs between the builds", f)
		}
	}
}

func (s *story) checkRelease(t *testing.T) {
	kubectl := kubectlPath(t, s.root)
	// An IMAGE of another registry, with a tag the digest replaces.
	res, err := build.Release(t.Context(), build.ReleaseOptions{Root: s.root, Dir: s.dir, Kubectl: kubectl, Image: "registry.example.com/team/istio-operator:ignored"})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := deploymentImage(t, res.Manifest), "registry.example.com/team/istio-operator@"+s.built.Digest.String(); got != want {
		t.Errorf("with IMAGE set, the Deployment runs %s, want %s", got, want)
	}

	res, err = build.Release(t.Context(), build.ReleaseOptions{Root: s.root, Dir: s.dir, Kubectl: kubectl})
	if err != nil {
		t.Fatal(err)
	}
	base, err := build.BaseImageName(s.root)
	if err != nil {
		t.Fatal(err)
	}
	want := base + "@" + s.built.Digest.String()
	if got := deploymentImage(t, res.Manifest); got != want {
		t.Errorf("the Deployment runs %s, want %s", got, want)
	}
	if res.Reference.String() != want {
		t.Errorf("release reports %s, want %s", res.Reference, want)
	}

	// SHA256SUMS checks what it lists, as sha256sum -c does.
	f, err := os.Open(res.Sums)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var listed []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		sum, file, ok := strings.Cut(sc.Text(), "  ")
		if !ok {
			t.Fatalf("SHA256SUMS line %q", sc.Text())
		}
		listed = append(listed, file)
		if got := fileSum(t, filepath.Join(s.dir, file)); got != sum {
			t.Errorf("SHA256SUMS: %s has sum %s, listed %s", file, got, sum)
		}
	}
	if want := []string{"istio-operator-image.tar", "istio-operator-linux-amd64.spdx.json", "istio-operator-linux-arm64.spdx.json", "istio-operator.yaml"}; !slices.Equal(listed, want) {
		t.Errorf("SHA256SUMS lists %q, want %q", listed, want)
	}

	notes, err := os.ReadFile(res.Notes)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"# istio-operator " + s.built.Source.Version + "\n",
		want,
		"## Istio version\n",
		"| k8s.io/client-go | " + goModVersion(t, s.root, "k8s.io/client-go") + " |",
	} {
		if !strings.Contains(string(notes), want) {
			t.Errorf("the release notes lack %q:\n%s", want, notes)
		}
	}
}

func (s *story) checkDryRun(t *testing.T) {
	kubectl := kubectlPath(t, s.root)
	run := func(args ...string) {
		t.Helper()
		cmd := exec.CommandContext(t.Context(), kubectl, append([]string{"--kubeconfig", cluster.Current().Kubeconfig}, args...)...)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("kubectl %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		t.Logf("kubectl %s:\n%s", strings.Join(args, " "), out)
	}
	// The manifest holds no Namespace; deploy/namespace creates it.
	run("apply", "-f", filepath.Join(s.root, "deploy/namespace/namespace.yaml"))
	run("apply", "--server-side", "--dry-run=server", "-f", filepath.Join(s.dir, build.ManifestFile))
}

// imageFiles is one image as the registry returned it.
type imageFiles struct {
	config *v1.ConfigFile
	layers []v1.Hash
	files  map[string]file // the flattened filesystem
}

type file struct {
	hdr  *tar.Header
	data []byte
}

func readImage(t *testing.T, img v1.Image) *imageFiles {
	t.Helper()
	im := &imageFiles{files: map[string]file{}}
	var err error
	if im.config, err = img.ConfigFile(); err != nil {
		t.Fatal(err)
	}
	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range layers {
		d, err := l.Digest()
		if err != nil {
			t.Fatal(err)
		}
		im.layers = append(im.layers, d)
	}
	rc := mutate.Extract(img)
	defer rc.Close()
	tr := tar.NewReader(rc)
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		data, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		im.files[strings.TrimSuffix(hdr.Name, "/")] = file{hdr: hdr, data: data}
	}
	return im
}

// deploymentImage returns the image of the operator's Deployment in a
// rendered manifest.
func deploymentImage(t *testing.T, manifest string) string {
	t.Helper()
	raw, err := os.ReadFile(manifest)
	if err != nil {
		t.Fatal(err)
	}
	dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(raw), 4096)
	var images []string
	for {
		u := &unstructured.Unstructured{}
		if err := dec.Decode(&u.Object); err != nil {
			if errors.Is(err, io.EOF) {
				break
			}
			t.Fatalf("decoding %s: %v", manifest, err)
		}
		if u.GetKind() != "Deployment" {
			continue
		}
		var d appsv1.Deployment
		if err := k8sruntime.DefaultUnstructuredConverter.FromUnstructured(u.Object, &d); err != nil {
			t.Fatal(err)
		}
		for _, c := range d.Spec.Template.Spec.Containers {
			images = append(images, c.Image)
		}
	}
	if len(images) != 1 {
		t.Fatalf("%s: the Deployments run %q, want one container", manifest, images)
	}
	return images[0]
}

func deployment(t *testing.T, path string) *appsv1.Deployment {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var d appsv1.Deployment
	if err := yaml.Unmarshal(raw, &d); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return &d
}

func kubectlPath(t *testing.T, root string) string {
	t.Helper()
	dir := os.Getenv(cluster.ToolsEnv)
	if dir == "" {
		dir = filepath.Join(root, "bin", "tools")
	}
	return filepath.Join(dir, "kubectl")
}

func git(t *testing.T, root string, args ...string) string {
	t.Helper()
	cmd := exec.Command("git", args...)
	cmd.Dir = root
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("git %s: %v", strings.Join(args, " "), err)
	}
	return strings.TrimSpace(string(out))
}

// goModVersion returns the version go.mod's build list selects for a module.
func goModVersion(t *testing.T, root, module string) string {
	t.Helper()
	cmd := exec.Command("go", "list", "-m", "-f", "{{.Version}}", module)
	cmd.Dir = root
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list -m %s: %v", module, err)
	}
	return strings.TrimSpace(string(out))
}

func fileSum(t *testing.T, path string) string {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(raw)
	return hex.EncodeToString(sum[:])
}
