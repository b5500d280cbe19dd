// Command image builds, pushes and releases the operator's container image
// without Docker (make image, make push, make release; docs/deployment.md,
// "Build and publish the image"):
//
//	image build   [--out bin] [--image REPO] [--commit C]
//	image push    --image REPO[:TAG] [--layout bin/image]
//	image release [--dir bin] [--image REPO] [--kubectl bin/tools/kubectl]
//
// The work is in package build; this is its command line.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/meshkeeper/istio-operator/hack/image/build"
)

const usage = `usage: image build|push|release [flags]   (image <command> -h lists the flags)`

func main() {
	os.Exit(run(os.Args[1:]))
}

func run(args []string) int {
	if len(args) == 0 {
		fmt.Fprintln(os.Stderr, usage)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	fs := flag.NewFlagSet("image "+args[0], flag.ContinueOnError)
	root := fs.String("root", ".", "The repository.")
	image := fs.String("image", "", "Image repository. Default: the images entry of deploy/base/kustomization.yaml (build, release).")
	var cmd func() error
	switch args[0] {
	case "build":
		out := fs.String("out", "bin", "Output directory: image/ (OCI layout), the docker tarball, the SBOMs.")
		commit := fs.String("commit", "", "Commit stamped into the binary. Default: git rev-parse --short HEAD.")
		cmd = func() error {
			_, err := build.Build(ctx, build.Options{Root: *root, Out: *out, Image: *image, Commit: *commit, Log: os.Stderr})
			return err
		}
	case "push":
		layout := fs.String("layout", "bin/"+build.LayoutDir, "The OCI image layout make image wrote.")
		cmd = func() error {
			if *image == "" {
				return fmt.Errorf("--image registry/name[:tag] is required")
			}
			ref, err := build.Push(ctx, *layout, *image)
			if err != nil {
				return err
			}
			// The one line on stdout, for scripts.
			fmt.Println(ref)
			return nil
		}
	case "release":
		dir := fs.String("dir", "bin", "Directory of make image's output; receives the release files.")
		kubectl := fs.String("kubectl", "bin/tools/kubectl", "The kubectl whose kustomize renders the manifest.")
		cmd = func() error {
			_, err := build.Release(ctx, build.ReleaseOptions{Root: *root, Dir: *dir, Image: *image, Kubectl: *kubectl, Log: os.Stderr})
			return err
		}
	default:
		fmt.Fprintln(os.Stderr, usage)
		return 2
	}
	if err := fs.Parse(args[1:]); err != nil {
		if err == flag.ErrHelp {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "image %s: unexpected arguments %q\n%s\n", args[0], fs.Args(), usage)
		return 2
	}
	if err := cmd(); err != nil {
		fmt.Fprintf(os.Stderr, "image %s: %v\n", args[0], err)
		return 1
	}
	return 0
}
