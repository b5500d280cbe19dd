#!/usr/bin/env bash
# Fails when the committed generated code or CRD differs from what
# hack/update-codegen.sh produces from the current API types.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
tmp="$(mktemp -d)"
trap 'rm -rf "${tmp}"' EXIT

# Generate into a copy of the tree so that a failed verification leaves the
# work tree as it was.
(cd "${ROOT}" && git ls-files -co --exclude-standard -z | xargs -0 cp --parents -t "${tmp}" 2>/dev/null || true)
OUTPUT_ROOT="${tmp}" TOOLS_BIN="${TOOLS_BIN:-${ROOT}/bin/tools}" bash "${ROOT}/hack/update-codegen.sh" >/dev/null

status=0
for d in pkg/apis pkg/generated deploy/crds; do
  if ! diff -ruN "${ROOT}/${d}" "${tmp}/${d}"; then
    status=1
  fi
done
if [[ ${status} != 0 ]]; then
  echo "generated code is stale: run 'make generate'" >&2
fi
exit ${status}
