// Command models-schema prints the OpenAPI v2 definitions of the operator's
// API types (and the Kubernetes types they embed) in the form
// applyconfiguration-gen reads with --openapi-schema. hack/update-codegen.sh
// runs it between OpenAPI and client generation.
package main

import (
	"encoding/json"
	"fmt"
	"os"
	"strings"

	"k8s.io/kube-openapi/pkg/common"
	"k8s.io/kube-openapi/pkg/validation/spec"

	"github.com/meshkeeper/istio-operator/pkg/generated/openapi"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

func run() error {
	ref := func(name string) spec.Ref {
		return spec.MustCreateRef("#/definitions/" + friendlyName(name))
	}
	defs := openapi.GetOpenAPIDefinitions(ref)
	schemas := make(map[string]spec.Schema, len(defs))
	for name, def := range defs {
		// Types with both a v3 and a v2 schema carry the v2 one as an
		// extension; the output must be v2 throughout.
		if v2, ok := def.Schema.Extensions[common.ExtensionV2Schema].(spec.Schema); ok {
			schemas[friendlyName(name)] = v2
			continue
		}
		schemas[friendlyName(name)] = def.Schema
	}
	out, err := json.Marshal(&spec.Swagger{SwaggerProps: spec.SwaggerProps{
		Swagger:     "2.0",
		Definitions: schemas,
		Info:        &spec.Info{InfoProps: spec.InfoProps{Title: "istio-operator", Version: "unversioned"}},
	}})
	if err != nil {
		return err
	}
	_, err = os.Stdout.Write(out)
	return err
}

// friendlyName turns a Go package path into an OpenAPI definition name the
// way the Kubernetes API server does: the domain reversed, slashes as dots
// (k8s.io/api/core/v1.Pod -> io.k8s.api.core.v1.Pod).
func friendlyName(name string) string {
	parts := strings.Split(name, "/")
	if len(parts) > 0 && strings.Contains(parts[0], ".") {
		host := strings.Split(parts[0], ".")
		for i, j := 0, len(host)-1; i < j; i, j = i+1, j-1 {
			host[i], host[j] = host[j], host[i]
		}
		parts[0] = strings.Join(host, ".")
	}
	return strings.Join(parts, ".")
}
