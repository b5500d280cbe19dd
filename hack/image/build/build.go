// Package build builds the operator's container image without Docker:
// static binaries for each platform, laid on an empty base with a user
// database and an SBOM, as an OCI image layout and a docker tarball;
// pushes that layout; and writes the release files (a manifest pinned by
// the image's digest, checksums, release notes). Everything it writes is
// reproducible: the same commit gives the same bytes.
package build

import (
	"bytes"
	"context"
	"debug/buildinfo"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/partial"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// Names of what Build writes into Options.Out.
const (
	// LayoutDir is the OCI image layout: its index.json holds one entry,
	// the image index of all platforms, named by the version tag.
	LayoutDir = "image"
	// TarballFile is the host platform's image as a docker tarball, for
	// docker load and podman load.
	TarballFile = "istio-operator-image.tar"
)

// SBOMFile is the name of a platform's SPDX document next to the layout.
func SBOMFile(p v1.Platform) string {
	return fmt.Sprintf("istio-operator-%s-%s.spdx.json", p.OS, p.Architecture)
}

// Platforms the image is built for.
var Platforms = []v1.Platform{
	{OS: "linux", Architecture: "amd64"},
	{OS: "linux", Architecture: "arm64"},
}

// OCI annotation keys, used as image labels and index annotations.
const (
	LabelTitle    = "org.opencontainers.image.title"
	LabelDesc     = "org.opencontainers.image.description"
	LabelVersion  = "org.opencontainers.image.version"
	LabelRevision = "org.opencontainers.image.revision"
	LabelSource   = "org.opencontainers.image.source"
	LabelCreated  = "org.opencontainers.image.created"
	// RefName names the index in the layout (oci:bin/image:<version>).
	RefName = "org.opencontainers.image.ref.name"
)

// Options configure Build. Root and Out are required.
type Options struct {
	// Root is the repository (the module's directory).
	Root string
	// Out receives LayoutDir, TarballFile and the SBOMs (make: bin).
	Out string
	// Image names the docker tarball's tag: registry/name, tagged with the
	// version, or registry/name:tag. Default: the image of deploy/base.
	Image string
	// Commit is stamped into the binary (main.commit). Default: the short
	// hash of HEAD, as make build stamps it.
	Commit string
	// Go is the go command. Default: go.
	Go string
	// Log receives progress lines. Default: discarded.
	Log io.Writer
}

// Result describes a built image.
type Result struct {
	Source Source
	// Digest is the image index's digest, the same wherever it is pushed.
	Digest v1.Hash
	Index  v1.ImageIndex
	// Images are the platforms' images, in Platforms order.
	Images []PlatformImage
	// Layout, Tarball and the images' SBOM paths are the files written.
	Layout  string
	Tarball string
	// Tag is the docker tarball's tag.
	Tag name.Tag
}

// PlatformImage is one platform's image.
type PlatformImage struct {
	Platform v1.Platform
	Image    v1.Image
	Digest   v1.Hash
	// Size is what a pull transfers: manifest, config and compressed
	// layers.
	Size int64
	// SBOM is the path of its SPDX document next to the layout; the same
	// bytes are at SBOMPath in the image.
	SBOM     string
	sbomData []byte
}

// Build compiles the operator for every platform and writes the image.
func Build(ctx context.Context, o Options) (*Result, error) {
	if o.Go == "" {
		o.Go = "go"
	}
	if o.Log == nil {
		o.Log = io.Discard
	}
	src, err := ReadSource(ctx, o.Root)
	if err != nil {
		return nil, err
	}
	if o.Commit != "" {
		src.Commit = o.Commit
	}
	if o.Image == "" {
		if o.Image, err = BaseImageName(o.Root); err != nil {
			return nil, err
		}
	}
	repo, tagName, err := Repository(o.Image)
	if err != nil {
		return nil, err
	}
	if tagName == "" {
		tagName = src.Version
	}
	tag, err := name.NewTag(repo+":"+tagName, name.StrictValidation)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(o.Out, 0o755); err != nil {
		return nil, err
	}
	res := &Result{Source: src, Tag: tag}

	tmp, err := os.MkdirTemp(o.Out, ".image-build-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)

	base, err := newLayer(baseEntries(), src.Epoch)
	if err != nil {
		return nil, err
	}
	idx := mutate.IndexMediaType(empty.Index, types.OCIImageIndex)
	for _, p := range Platforms {
		bin := filepath.Join(tmp, p.OS+"-"+p.Architecture, "istio-operator")
		begin := time.Now()
		if err := compile(ctx, o, src, p, bin); err != nil {
			return nil, err
		}
		fmt.Fprintf(o.Log, "compiled %s in %s\n", PlatformString(p), time.Since(begin).Round(100*time.Millisecond))

		begin = time.Now()
		pi, err := platformImage(src, p, base, bin)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", PlatformString(p), err)
		}
		fmt.Fprintf(o.Log, "assembled %s in %s\n", PlatformString(p), time.Since(begin).Round(100*time.Millisecond))
		pi.SBOM = filepath.Join(o.Out, SBOMFile(p))
		res.Images = append(res.Images, pi)
		idx = mutate.AppendManifests(idx, mutate.IndexAddendum{
			Add:        pi.Image,
			Descriptor: v1.Descriptor{Platform: &p},
		})
	}
	idx = mutate.Annotations(idx, labels(src)).(v1.ImageIndex)
	res.Index = idx
	if res.Digest, err = idx.Digest(); err != nil {
		return nil, err
	}

	begin := time.Now()
	if res.Layout, err = writeLayout(filepath.Join(o.Out, LayoutDir), idx, src.Version); err != nil {
		return nil, err
	}
	if err := writeSBOMs(res.Images); err != nil {
		return nil, err
	}
	// The tarball holds the image a docker or podman on this machine runs.
	host := res.Images[0]
	for _, pi := range res.Images {
		if pi.Platform.Architecture == runtime.GOARCH {
			host = pi
		}
	}
	res.Tarball = filepath.Join(o.Out, TarballFile)
	if err := atomicWrite(res.Tarball, func(w io.Writer) error { return tarball.Write(tag, host.Image, w) }); err != nil {
		return nil, err
	}
	fmt.Fprintf(o.Log, "wrote the layout and the tarball in %s\n", time.Since(begin).Round(100*time.Millisecond))

	for _, pi := range res.Images {
		fmt.Fprintf(o.Log, "%-12s %s %5.1f MiB\n", PlatformString(pi.Platform), pi.Digest, float64(pi.Size)/(1<<20))
	}
	fmt.Fprintf(o.Log, "index        %s (%s, version %s, commit %s)\n", res.Digest, res.Layout, src.Version, src.Commit)
	fmt.Fprintf(o.Log, "tarball      %s: %s (%s)\n", res.Tarball, tag, PlatformString(host.Platform))
	if src.Modified {
		fmt.Fprintf(o.Log, "warning: the tree has uncommitted changes: this image is not what commit %s builds\n", src.Commit)
	}
	return res, nil
}

// ldflags strip the symbol table and DWARF (stack traces keep function
// names and lines), empty the build ID and stamp the commit as make build
// does. With -trimpath, Go does not record them in the build info.
func ldflags(src Source) string { return "-s -w -buildid= -X main.commit=" + src.Commit }

// compile builds a static, stripped binary whose bytes depend only on the
// source, the commit and the Go toolchain: no cgo, no paths of this
// machine (-trimpath), no VCS stamp (GOFLAGS may set either; the commit is
// stamped and labelled instead), and the baseline instruction set whatever
// GOAMD64 or GOARM64 the environment sets.
func compile(ctx context.Context, o Options, src Source, p v1.Platform, out string) error {
	cmd := exec.CommandContext(ctx, o.Go, "build", "-trimpath", "-buildvcs=false", "-ldflags", ldflags(src), "-o", out, "./cmd/istio-operator")
	cmd.Dir = o.Root
	cmd.Env = append(os.Environ(),
		"CGO_ENABLED=0", "GOOS="+p.OS, "GOARCH="+p.Architecture, "GOAMD64=v1", "GOARM64=v8.0")
	var stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stderr, &stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("go build for %s: %v\n%s", PlatformString(p), err, stderr.String())
	}
	return nil
}

// platformImage lays the binary and its SBOM over the base layer.
func platformImage(src Source, p v1.Platform, base v1.Layer, binPath string) (PlatformImage, error) {
	pi := PlatformImage{Platform: p}
	binary, err := os.ReadFile(binPath)
	if err != nil {
		return pi, err
	}
	info, err := buildinfo.ReadFile(binPath)
	if err != nil {
		return pi, fmt.Errorf("reading the binary's build info: %w", err)
	}
	doc, err := sbom(sbomInput{Source: src, Platform: PlatformString(p), Binary: binary, Info: info})
	if err != nil {
		return pi, err
	}
	app, err := newLayer(appEntries(binary, doc), src.Epoch)
	if err != nil {
		return pi, err
	}

	img := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	img, err = mutate.ConfigFile(img, &v1.ConfigFile{
		Architecture: p.Architecture,
		OS:           p.OS,
		Created:      v1.Time{Time: src.Epoch},
		Config: v1.Config{
			User:       fmt.Sprintf("%d:%d", UID, GID),
			Entrypoint: []string{BinaryPath},
			WorkingDir: "/",
			Labels:     labels(src),
		},
		RootFS: v1.RootFS{Type: "layers"},
	})
	if err != nil {
		return pi, err
	}
	created := v1.Time{Time: src.Epoch}
	img, err = mutate.Append(img,
		mutate.Addendum{Layer: base, History: v1.History{Created: created, CreatedBy: "hack/image: /etc/passwd, /etc/group, /home/nonroot, /tmp", Comment: "base"}},
		mutate.Addendum{Layer: app, History: v1.History{Created: created, CreatedBy: "hack/image: " + BinaryPath + ", " + SBOMPath, Comment: "istio-operator " + src.Version}},
	)
	if err != nil {
		return pi, err
	}
	pi.Image, pi.sbomData = img, doc
	if pi.Digest, err = img.Digest(); err != nil {
		return pi, err
	}
	if pi.Size, err = pullSize(img); err != nil {
		return pi, err
	}
	return pi, nil
}

// labels are the image's OCI labels, also the index's annotations.
func labels(src Source) map[string]string {
	return map[string]string{
		LabelTitle:    "istio-operator",
		LabelDesc:     fmt.Sprintf("Kubernetes operator that installs and upgrades Istio %s", src.Version),
		LabelVersion:  src.Version,
		LabelRevision: src.Revision,
		LabelSource:   SourceURL,
		LabelCreated:  src.Epoch.UTC().Format(time.RFC3339),
	}
}

func pullSize(img v1.Image) (int64, error) {
	size, err := partial.Size(img)
	if err != nil {
		return 0, err
	}
	m, err := img.Manifest()
	if err != nil {
		return 0, err
	}
	size += m.Config.Size
	for _, l := range m.Layers {
		size += l.Size
	}
	return size, nil
}

// writeLayout replaces dir with an OCI image layout holding the index.
// Only a directory that is an image layout (or none) is replaced.
func writeLayout(dir string, idx v1.ImageIndex, version string) (string, error) {
	if _, err := os.Stat(dir); err == nil {
		if _, err := os.Stat(filepath.Join(dir, "oci-layout")); err != nil {
			return "", fmt.Errorf("%s exists and is not an OCI image layout; not replacing it", dir)
		}
		if err := os.RemoveAll(dir); err != nil {
			return "", err
		}
	}
	p, err := layout.Write(dir, empty.Index)
	if err != nil {
		return "", err
	}
	if err := p.AppendIndex(idx, layout.WithAnnotations(map[string]string{RefName: version})); err != nil {
		return "", err
	}
	return dir, nil
}

// writeSBOMs writes each image's SPDX document next to the layout.
func writeSBOMs(images []PlatformImage) error {
	for _, pi := range images {
		if err := atomicWrite(pi.SBOM, func(w io.Writer) error { _, err := w.Write(pi.sbomData); return err }); err != nil {
			return err
		}
	}
	return nil
}

func atomicWrite(path string, write func(io.Writer) error) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	if err := write(f); err != nil {
		f.Close()
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Chmod(f.Name(), 0o644); err != nil {
		return err
	}
	return os.Rename(f.Name(), path)
}

// PlatformString formats a platform as os/architecture.
func PlatformString(p v1.Platform) string { return p.OS + "/" + p.Architecture }
