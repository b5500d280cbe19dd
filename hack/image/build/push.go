package build

import (
	"context"
	"fmt"
	"strings"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// ReadLayout returns the image index of a layout Build wrote, and the
// version it is named by.
func ReadLayout(dir string) (v1.ImageIndex, string, error) {
	p, err := layout.FromPath(dir)
	if err != nil {
		return nil, "", fmt.Errorf("%s: %w (make image writes it)", dir, err)
	}
	top, err := p.ImageIndex()
	if err != nil {
		return nil, "", err
	}
	m, err := top.IndexManifest()
	if err != nil {
		return nil, "", err
	}
	if len(m.Manifests) != 1 || !m.Manifests[0].MediaType.IsIndex() {
		return nil, "", fmt.Errorf("%s: want exactly one image index in index.json, got %d entries", dir, len(m.Manifests))
	}
	idx, err := top.ImageIndex(m.Manifests[0].Digest)
	if err != nil {
		return nil, "", err
	}
	return idx, m.Manifests[0].Annotations[RefName], nil
}

// Repository parses an image name without a digest: "registry/name" or
// "registry/name:tag". It returns the repository as written (name.Repository
// would spell out Docker Hub's defaults) and the tag, "" if none.
func Repository(image string) (repo, tag string, err error) {
	if strings.Contains(image, "@") {
		return "", "", fmt.Errorf("image %q: name a repository (and tag), not a digest", image)
	}
	repo = image
	if i := strings.LastIndex(image, ":"); i > strings.LastIndex(image, "/") {
		repo, tag = image[:i], image[i+1:]
	}
	if _, err := name.NewRepository(repo, name.StrictValidation); err != nil {
		return "", "", fmt.Errorf("image %q: %w", image, err)
	}
	if tag != "" {
		if _, err := name.NewTag(image, name.StrictValidation); err != nil {
			return "", "", fmt.Errorf("image %q: %w", image, err)
		}
	}
	return repo, tag, nil
}

// Push pushes the layout's image index, all platforms, to image
// ("registry/name[:tag]"; without a tag, the version tag) with the
// credentials of docker login, podman login or a credential helper
// (authn.DefaultKeychain), and returns the reference by digest.
func Push(ctx context.Context, dir, image string, opts ...remote.Option) (name.Digest, error) {
	idx, version, err := ReadLayout(dir)
	if err != nil {
		return name.Digest{}, err
	}
	repo, tag, err := Repository(image)
	if err != nil {
		return name.Digest{}, err
	}
	if tag == "" {
		tag = version
	}
	ref, err := name.NewTag(repo+":"+tag, name.StrictValidation)
	if err != nil {
		return name.Digest{}, err
	}
	digest, err := idx.Digest()
	if err != nil {
		return name.Digest{}, err
	}
	opts = append([]remote.Option{remote.WithContext(ctx), remote.WithAuthFromKeychain(authn.DefaultKeychain)}, opts...)
	if err := remote.WriteIndex(ref, idx, opts...); err != nil {
		return name.Digest{}, fmt.Errorf("pushing %s: %w", ref, err)
	}
	return name.NewDigest(repo+"@"+digest.String(), name.StrictValidation)
}
