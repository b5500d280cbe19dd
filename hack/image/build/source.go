package build

import (
	"context"
	"fmt"
	"go/ast"
	"go/constant"
	"go/parser"
	"go/token"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"sigs.k8s.io/yaml"
)

// Source is what the image records about the tree it was built from.
type Source struct {
	// Revision is the full commit hash (the revision label).
	Revision string
	// Commit is the short hash stamped into the binary (main.commit), as
	// make build stamps it.
	Commit string
	// Epoch is the time every timestamp of the image is set to: the commit
	// time, or $SOURCE_DATE_EPOCH.
	Epoch time.Time
	// Version is the operator's version, pkg/istioclient.Version (the Istio
	// version it installs).
	Version string
	// Modified reports uncommitted changes (git status: tracked or
	// untracked, not ignored): then the image is not what the commit builds.
	Modified bool
}

// ReadSource reads the commit, its time and the operator's version from
// the repository at root. $SOURCE_DATE_EPOCH, when set, overrides the
// commit time, as reproducible-builds.org specifies.
func ReadSource(ctx context.Context, root string) (Source, error) {
	var s Source
	var err error
	if s.Version, err = OperatorVersion(root); err != nil {
		return s, err
	}
	if s.Revision, err = git(ctx, root, "rev-parse", "HEAD"); err != nil {
		return s, err
	}
	if s.Commit, err = git(ctx, root, "rev-parse", "--short", "HEAD"); err != nil {
		return s, err
	}
	status, err := git(ctx, root, "status", "--porcelain")
	if err != nil {
		return s, err
	}
	s.Modified = status != ""
	epoch := os.Getenv("SOURCE_DATE_EPOCH")
	if epoch == "" {
		if epoch, err = git(ctx, root, "log", "-1", "--format=%ct"); err != nil {
			return s, err
		}
	}
	sec, err := strconv.ParseInt(epoch, 10, 64)
	if err != nil || sec < 0 {
		return s, fmt.Errorf("source date epoch %q is not a number of seconds", epoch)
	}
	s.Epoch = time.Unix(sec, 0).UTC()
	return s, nil
}

func git(ctx context.Context, root string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, "git", args...)
	cmd.Dir = root
	out, err := cmd.Output()
	if err != nil {
		if ee, ok := err.(*exec.ExitError); ok {
			return "", fmt.Errorf("git %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(string(ee.Stderr)))
		}
		return "", fmt.Errorf("git %s: %w", strings.Join(args, " "), err)
	}
	return strings.TrimSpace(string(out)), nil
}

// versionFile declares the operator's version. It is parsed rather than
// imported: importing pkg/istioclient would compile Istio into this tool.
const versionFile = "pkg/istioclient/version.go"

// OperatorVersion returns the constant Version of pkg/istioclient.
func OperatorVersion(root string) (string, error) {
	path := filepath.Join(root, versionFile)
	f, err := parser.ParseFile(token.NewFileSet(), path, nil, parser.SkipObjectResolution)
	if err != nil {
		return "", err
	}
	for _, decl := range f.Decls {
		gd, ok := decl.(*ast.GenDecl)
		if !ok || gd.Tok != token.CONST {
			continue
		}
		for _, spec := range gd.Specs {
			vs := spec.(*ast.ValueSpec)
			for i, n := range vs.Names {
				if n.Name != "Version" || i >= len(vs.Values) {
					continue
				}
				lit, ok := vs.Values[i].(*ast.BasicLit)
				if !ok || lit.Kind != token.STRING {
					return "", fmt.Errorf("%s: Version is not a string literal", path)
				}
				return constant.StringVal(constant.MakeFromLiteral(lit.Value, lit.Kind, 0)), nil
			}
		}
	}
	return "", fmt.Errorf("%s declares no const Version", path)
}

// baseKustomization holds the operator's image name (its images entry).
const baseKustomization = "deploy/base/kustomization.yaml"

// containerImage is the image name deploy/base/deployment.yaml uses, which
// the kustomization's images entry replaces.
const containerImage = "istio-operator"

// BaseImageName returns the repository deploy/base points the operator's
// image at: the default name of the image and of the release.
func BaseImageName(root string) (string, error) {
	raw, err := os.ReadFile(filepath.Join(root, baseKustomization))
	if err != nil {
		return "", err
	}
	var k struct {
		Images []struct {
			Name    string `json:"name"`
			NewName string `json:"newName"`
		} `json:"images"`
	}
	if err := yaml.Unmarshal(raw, &k); err != nil {
		return "", fmt.Errorf("%s: %w", baseKustomization, err)
	}
	for _, img := range k.Images {
		if img.Name == containerImage && img.NewName != "" {
			return img.NewName, nil
		}
	}
	return "", fmt.Errorf("%s has no images entry with a newName for %q", baseKustomization, containerImage)
}
