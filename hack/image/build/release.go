package build

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// Names of what Release writes into ReleaseOptions.Dir.
const (
	// ManifestFile is the rendered deploy/base, as make manifest names it.
	ManifestFile = "istio-operator.yaml"
	// OverlayDir holds the kustomization that pins the image by digest.
	OverlayDir   = "release"
	SumsFile     = "SHA256SUMS"
	NotesFile    = "RELEASE_NOTES.md"
	baseDir      = "deploy/base"
	archDoc      = "docs/architecture.md"
	deployDoc    = "docs/deployment.md"
	versionTitle = "## Istio version"
)

// ReleaseOptions configure Release. Root, Dir and Kubectl are required.
type ReleaseOptions struct {
	// Root is the repository.
	Root string
	// Dir holds what Build wrote (make: bin) and receives the release.
	Dir string
	// Image is the repository the manifest pulls from; a tag is ignored
	// (the digest pins the image). Default: the image of deploy/base.
	Image string
	// Kubectl renders the kustomization, as make manifest does.
	Kubectl string
	// Log receives progress lines. Default: discarded.
	Log io.Writer
}

// ReleaseResult names what Release wrote.
type ReleaseResult struct {
	// Reference is the image by digest, as the manifest pulls it.
	Reference name.Digest
	Manifest  string
	Sums      string
	Notes     string
}

// Release renders deploy/base with the image of the layout in Dir pinned
// by digest, and writes the checksums of the release files and the
// release notes. It pushes nothing: the digest is the same in any
// registry, so the manifest is valid wherever make push puts the image.
func Release(ctx context.Context, o ReleaseOptions) (*ReleaseResult, error) {
	if o.Log == nil {
		o.Log = io.Discard
	}
	idx, _, err := ReadLayout(filepath.Join(o.Dir, LayoutDir))
	if err != nil {
		return nil, err
	}
	digest, err := idx.Digest()
	if err != nil {
		return nil, err
	}
	baseName, err := BaseImageName(o.Root)
	if err != nil {
		return nil, err
	}
	image := o.Image
	if image == "" {
		image = baseName
	}
	repo, _, err := Repository(image)
	if err != nil {
		return nil, err
	}
	ref, err := name.NewDigest(repo+"@"+digest.String(), name.StrictValidation)
	if err != nil {
		return nil, err
	}
	res := &ReleaseResult{
		Reference: ref,
		Manifest:  filepath.Join(o.Dir, ManifestFile),
		Sums:      filepath.Join(o.Dir, SumsFile),
		Notes:     filepath.Join(o.Dir, NotesFile),
	}

	if err := checkOutputs(o.Dir, idx); err != nil {
		return nil, err
	}
	// The notes check the docs: fail before writing anything.
	notes, err := releaseNotes(o, idx, ref)
	if err != nil {
		return nil, err
	}
	manifest, err := renderPinned(ctx, o, baseName, repo, digest)
	if err != nil {
		return nil, err
	}
	if err := atomicWrite(res.Manifest, func(w io.Writer) error { _, err := w.Write(manifest); return err }); err != nil {
		return nil, err
	}

	im, err := idx.IndexManifest()
	if err != nil {
		return nil, err
	}
	files := []string{ManifestFile, TarballFile}
	for _, d := range im.Manifests {
		files = append(files, SBOMFile(*d.Platform))
	}
	sums, err := checksums(o.Dir, files)
	if err != nil {
		return nil, err
	}
	if err := atomicWrite(res.Sums, func(w io.Writer) error { _, err := io.WriteString(w, sums); return err }); err != nil {
		return nil, err
	}
	if err := atomicWrite(res.Notes, func(w io.Writer) error { _, err := w.Write(notes); return err }); err != nil {
		return nil, err
	}
	fmt.Fprintf(o.Log, "%s pins %s\nwrote %s and %s\n", res.Manifest, ref, res.Sums, res.Notes)
	return res, nil
}

// checkOutputs checks that the tarball and the SBOMs next to the layout
// come from the same build as the layout (a build that failed half-way
// leaves older ones behind).
func checkOutputs(dir string, idx v1.ImageIndex) error {
	im, err := idx.IndexManifest()
	if err != nil {
		return err
	}
	tarImg, err := tarball.ImageFromPath(filepath.Join(dir, TarballFile), nil)
	if err != nil {
		return fmt.Errorf("%s: %w", TarballFile, err)
	}
	tarConfig, err := tarImg.ConfigName()
	if err != nil {
		return err
	}
	tarFromIndex := false
	for _, d := range im.Manifests {
		img, err := idx.Image(d.Digest)
		if err != nil {
			return err
		}
		config, err := img.ConfigName()
		if err != nil {
			return err
		}
		tarFromIndex = tarFromIndex || config == tarConfig
		inImage, err := readFromTopLayer(img, SBOMPath)
		if err != nil {
			return fmt.Errorf("%s: %w", PlatformString(*d.Platform), err)
		}
		next, err := os.ReadFile(filepath.Join(dir, SBOMFile(*d.Platform)))
		if err != nil {
			return err
		}
		if !bytes.Equal(inImage, next) {
			return fmt.Errorf("%s is not the SBOM of the image in %s: run make image again", filepath.Join(dir, SBOMFile(*d.Platform)), filepath.Join(dir, LayoutDir))
		}
	}
	if !tarFromIndex {
		return fmt.Errorf("%s is not one of the images in %s: run make image again", filepath.Join(dir, TarballFile), filepath.Join(dir, LayoutDir))
	}
	return nil
}

// readFromTopLayer reads a regular file of the image's last layer.
func readFromTopLayer(img v1.Image, path string) ([]byte, error) {
	layers, err := img.Layers()
	if err != nil {
		return nil, err
	}
	if len(layers) == 0 {
		return nil, fmt.Errorf("the image has no layer")
	}
	rc, err := layers[len(layers)-1].Uncompressed()
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	tr := tar.NewReader(rc)
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			return nil, fmt.Errorf("%s is not in the image's last layer", path)
		}
		if err != nil {
			return nil, err
		}
		if hdr.Typeflag == tar.TypeReg && hdr.Name == strings.TrimPrefix(path, "/") {
			return io.ReadAll(tr)
		}
	}
}

// overlay is a kustomization of deploy/base that replaces the base's
// image, by the name the base gives it, with repo@digest: kustomize drops
// the tag when it sets a digest.
func overlay(relBase, baseName, repo string, digest v1.Hash) string {
	return fmt.Sprintf(`# Written by make release (hack/image): %s with the operator's image
# pinned by digest. Generated; do not edit.
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources:
- %s
images:
- name: %s
  newName: %s
  digest: %s
`, baseDir, relBase, baseName, repo, digest)
}

// renderPinned writes the overlay and renders it with kubectl kustomize,
// the renderer of make manifest, then checks that the Deployment's image
// is exactly repo@digest.
func renderPinned(ctx context.Context, o ReleaseOptions, baseName, repo string, digest v1.Hash) ([]byte, error) {
	dir := filepath.Join(o.Dir, OverlayDir)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	absDir, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	absBase, err := filepath.Abs(filepath.Join(o.Root, baseDir))
	if err != nil {
		return nil, err
	}
	// kustomize takes resources relative to the kustomization.
	rel, err := filepath.Rel(absDir, absBase)
	if err != nil {
		return nil, err
	}
	k := overlay(filepath.ToSlash(rel), baseName, repo, digest)
	if err := os.WriteFile(filepath.Join(dir, "kustomization.yaml"), []byte(k), 0o644); err != nil {
		return nil, err
	}
	cmd := exec.CommandContext(ctx, o.Kubectl, "kustomize", dir)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("kubectl kustomize %s: %v\n%s", dir, err, stderr.String())
	}
	if err := checkPinned(out, repo+"@"+digest.String()); err != nil {
		return nil, fmt.Errorf("rendering %s: %w", dir, err)
	}
	return out, nil
}

var imageLine = regexp.MustCompile(`(?m)^\s*(?:-\s+)?image:\s*(\S+)\s*$`)

// checkPinned checks that every image of the manifest is the pinned one,
// and that there is one.
func checkPinned(manifest []byte, want string) error {
	images := imageLine.FindAllSubmatch(manifest, -1)
	if len(images) == 0 {
		return fmt.Errorf("the manifest names no image")
	}
	for _, m := range images {
		if got := strings.Trim(string(m[1]), `"'`); got != want {
			return fmt.Errorf("the manifest names image %s, want %s", got, want)
		}
	}
	return nil
}

// checksums returns the files' SHA-256 sums in the format of sha256sum,
// so that `sha256sum -c SHA256SUMS` checks them in Dir.
func checksums(dir string, files []string) (string, error) {
	files = slices.Clone(files)
	slices.Sort(files)
	var b strings.Builder
	for _, f := range files {
		sum, err := fileSHA256(filepath.Join(dir, f))
		if err != nil {
			return "", err
		}
		fmt.Fprintf(&b, "%s  %s\n", sum, f)
	}
	return b.String(), nil
}

func fileSHA256(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// notableModules are the compiled-in modules the notes list; the SBOMs
// list all.
var notableModules = []string{"istio.io/istio", "istio.io/api", "istio.io/client-go", "k8s.io/client-go", "k8s.io/api"}

// releaseNotes generates the notes from the image (version, revision,
// digests, sizes), its SBOM and the docs' Istio version section, which
// must name the version: notes never claim what the docs do not.
func releaseNotes(o ReleaseOptions, idx v1.ImageIndex, ref name.Digest) ([]byte, error) {
	im, err := idx.IndexManifest()
	if err != nil {
		return nil, err
	}
	ann := im.Annotations
	version, revision := ann[LabelVersion], ann[LabelRevision]
	if version == "" || revision == "" {
		return nil, fmt.Errorf("the image index carries no %s or %s annotation", LabelVersion, LabelRevision)
	}
	created, err := time.Parse(time.RFC3339, ann[LabelCreated])
	if err != nil {
		return nil, fmt.Errorf("the image index's %s: %w", LabelCreated, err)
	}
	section, err := istioVersionSection(o.Root, version, revision)
	if err != nil {
		return nil, err
	}
	deployment, err := os.ReadFile(filepath.Join(o.Root, deployDoc))
	if err != nil {
		return nil, err
	}
	if !bytes.Contains(deployment, []byte(version)) {
		return nil, fmt.Errorf("%s does not mention version %s: update the docs before releasing", deployDoc, version)
	}
	blob := func(path string) string { return fmt.Sprintf("%s/blob/%s/%s", SourceURL, revision, path) }
	raw := func(path string) string {
		return fmt.Sprintf("https://raw.githubusercontent.com/%s/%s/%s", strings.TrimPrefix(SourceURL, "https://github.com/"), revision, path)
	}

	var b strings.Builder
	fmt.Fprintf(&b, "# istio-operator %s\n\n", version)
	fmt.Fprintf(&b, "The operator installs Istio %s: its version is the Istio version it installs.\n\n", version)

	var sbomFiles []string
	var doc *spdxDocument
	fmt.Fprintf(&b, "## Image\n\n```\n%s\n```\n\n", ref)
	fmt.Fprintf(&b, "| Platform | Image manifest | Pull size |\n| --- | --- | --- |\n")
	for _, d := range im.Manifests {
		img, err := idx.Image(d.Digest)
		if err != nil {
			return nil, err
		}
		size, err := pullSize(img)
		if err != nil {
			return nil, err
		}
		fmt.Fprintf(&b, "| `%s` | `%s` | %.1f MiB |\n", PlatformString(*d.Platform), d.Digest, float64(size)/(1<<20))
		sbomFiles = append(sbomFiles, SBOMFile(*d.Platform))
		if doc == nil {
			if doc, err = readSBOM(filepath.Join(o.Dir, SBOMFile(*d.Platform))); err != nil {
				return nil, err
			}
		}
	}
	if doc == nil {
		return nil, fmt.Errorf("the image index lists no image")
	}
	bin := doc.Packages[0]
	tarPlatform, tarTags, err := describeTarball(filepath.Join(o.Dir, TarballFile))
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(&b, "\nBuilt from %s (commit date %s).\n", strings.TrimPrefix(bin.SourceInfo, "built from "), created.UTC().Format("2006-01-02"))
	fmt.Fprintf(&b, "The image holds the static binary `%s` (its entrypoint, run as user %d:%d), `/etc/passwd` and\n", BinaryPath, UID, GID)
	fmt.Fprintf(&b, "`/etc/group` naming that user, its home, `/tmp`, and the SBOM `%s`: no shell, no package manager.\n\n", SBOMPath)

	fmt.Fprintf(&b, "## Install\n\n```sh\n")
	fmt.Fprintf(&b, "kubectl apply -f %s  # once, unless kyma-system exists\n", raw("deploy/namespace/namespace.yaml"))
	fmt.Fprintf(&b, "kubectl apply --server-side -f %s\n", ManifestFile)
	fmt.Fprintf(&b, "kubectl apply -f %s\n", raw("deploy/samples/istio-default.yaml"))
	fmt.Fprintf(&b, "kubectl wait --for=condition=Ready istio/default -n kyma-system --timeout=5m\n```\n\n")
	fmt.Fprintf(&b, "See [docs/deployment.md](%s) for the namespace, RBAC, flags and uninstalling\n", blob(deployDoc))
	fmt.Fprintf(&b, "(delete the `Istio` resource before the manifest).\n\n")

	fmt.Fprintf(&b, "## Files\n\n")
	fmt.Fprintf(&b, "- `%s`: the manifest, the image pinned by digest\n", ManifestFile)
	fmt.Fprintf(&b, "- `%s`: the `%s` image as a docker tarball (`docker load -i`, `podman load -i`), tagged `%s`\n",
		TarballFile, tarPlatform, strings.Join(tarTags, "`, `"))
	for i, f := range sbomFiles {
		fmt.Fprintf(&b, "- `%s`: SPDX 2.3 SBOM, the Go modules of the `%s` binary\n", f, PlatformString(*im.Manifests[i].Platform))
	}
	fmt.Fprintf(&b, "- `%s`: their checksums (`sha256sum -c %s`)\n\n", SumsFile, SumsFile)

	fmt.Fprintf(&b, "%s\n\n%s\n\n", versionTitle, section)

	fmt.Fprintf(&b, "## Compiled in\n\n| Module | Version |\n| --- | --- |\n")
	for _, p := range doc.Packages {
		if p.Name == "stdlib" || slices.Contains(notableModules, p.Name) {
			fmt.Fprintf(&b, "| %s | %s |\n", p.Name, p.VersionInfo)
		}
	}
	fmt.Fprintf(&b, "\n%d modules in all: see the SBOMs.\n", len(doc.Packages)-2)
	return []byte(b.String()), nil
}

// istioVersionSection returns the body of the "Istio version" section of
// docs/architecture.md, its relative links made absolute at the revision,
// and fails unless it names the version.
func istioVersionSection(root, version, revision string) (string, error) {
	raw, err := os.ReadFile(filepath.Join(root, archDoc))
	if err != nil {
		return "", err
	}
	text := string(raw)
	i := strings.Index(text, "\n"+versionTitle+"\n")
	if i < 0 {
		return "", fmt.Errorf("%s has no %q section", archDoc, versionTitle)
	}
	body := text[i+len(versionTitle)+2:]
	if j := strings.Index(body, "\n## "); j >= 0 {
		body = body[:j]
	}
	body = strings.TrimSpace(body)
	if !strings.Contains(body, version) {
		return "", fmt.Errorf("%s, %s, does not name version %s: update the docs before releasing", archDoc, versionTitle, version)
	}
	return relativeLink.ReplaceAllStringFunc(body, func(m string) string {
		target := relativeLink.FindStringSubmatch(m)[1]
		return fmt.Sprintf("](%s/blob/%s/%s)", SourceURL, revision, filepath.ToSlash(filepath.Join(filepath.Dir(archDoc), target)))
	}), nil
}

// relativeLink matches a Markdown link target that is a path in the
// repository (not a URL, not an anchor).
var relativeLink = regexp.MustCompile(`\]\(([^)#:\s][^):\s]*)\)`)

func readSBOM(path string) (*spdxDocument, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var doc spdxDocument
	if err := json.Unmarshal(raw, &doc); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if len(doc.Packages) == 0 || doc.Packages[0].SPDXID != spdxBinaryID {
		return nil, fmt.Errorf("%s does not describe the istio-operator binary first", path)
	}
	return &doc, nil
}

// describeTarball returns the platform and the tags of a docker tarball.
func describeTarball(path string) (string, []string, error) {
	opener := func() (io.ReadCloser, error) { return os.Open(path) }
	m, err := tarball.LoadManifest(opener)
	if err != nil {
		return "", nil, fmt.Errorf("%s: %w", path, err)
	}
	if len(m) != 1 {
		return "", nil, fmt.Errorf("%s holds %d images, want 1", path, len(m))
	}
	img, err := tarball.Image(opener, nil)
	if err != nil {
		return "", nil, err
	}
	cfg, err := img.ConfigFile()
	if err != nil {
		return "", nil, err
	}
	return cfg.OS + "/" + cfg.Architecture, m[0].RepoTags, nil
}
