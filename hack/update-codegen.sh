#!/usr/bin/env bash
# Regenerates everything derived from pkg/apis: deepcopy, register, OpenAPI
# definitions, clientset (with fake), listers, informers and apply
# configurations under pkg/generated, and the CRD under deploy/crds.
# OUTPUT_ROOT redirects the output (hack/verify-codegen.sh uses a copy).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUTPUT_ROOT="${OUTPUT_ROOT:-${ROOT}}"
TOOLS_BIN="${TOOLS_BIN:-${ROOT}/bin/tools}"
MODULE="github.com/meshkeeper/istio-operator"
BOILERPLATE="${ROOT}/hack/boilerplate.go.txt"

# The generators are built from the code-generator release pinned in
# hack/tools and installed next to the other tools, not into GOPATH.
export GOBIN="${TOOLS_BIN}/codegen"
mkdir -p "${GOBIN}"
CODEGEN_PKG="$(cd "${ROOT}/hack/tools" && go list -m -f '{{.Dir}}' k8s.io/code-generator)"
# shellcheck source=/dev/null
source "${CODEGEN_PKG}/kube_codegen.sh"

cd "${OUTPUT_ROOT}"

kube::codegen::gen_helpers --boilerplate "${BOILERPLATE}" pkg/apis
kube::codegen::gen_register --boilerplate "${BOILERPLATE}" pkg/apis

# Apply configurations need the OpenAPI schema of the types, or the fake
# clientset's Apply cannot build managed fields.
kube::codegen::gen_openapi \
  --output-dir pkg/generated/openapi \
  --output-pkg "${MODULE}/pkg/generated/openapi" \
  --extra-pkgs k8s.io/api/core/v1 \
  --extra-pkgs k8s.io/apimachinery/pkg/util/intstr \
  --extra-pkgs k8s.io/apimachinery/pkg/api/resource \
  --report-filename hack/api-violations.list \
  --update-report \
  --boilerplate "${BOILERPLATE}" \
  pkg/apis

schema="$(mktemp)"
trap 'rm -f "${schema}"' EXIT
go run ./hack/models-schema > "${schema}"

kube::codegen::gen_client \
  --with-watch \
  --with-applyconfig \
  --applyconfig-openapi-schema "${schema}" \
  --output-dir pkg/generated \
  --output-pkg "${MODULE}/pkg/generated" \
  --boilerplate "${BOILERPLATE}" \
  pkg/apis

"${TOOLS_BIN}/controller-gen" crd:crdVersions=v1 paths=./pkg/apis/... output:crd:dir=./deploy/crds
