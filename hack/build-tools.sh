#!/usr/bin/env bash
# Builds the pinned local-cluster and code-generation tools from hack/tools
# into $TOOLS_BIN (default: bin/tools). A stamp of the tools module and the Go
# version makes a second run with nothing changed a no-op.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TOOLS_BIN="${TOOLS_BIN:-${ROOT}/bin/tools}"
KUBE_VERSION="v1.36.3"

tools=(etcd kube-apiserver kube-controller-manager kube-scheduler kubectl kwok kwokctl controller-gen)

stamp_value() {
  cat "${ROOT}/hack/tools/go.mod" "${ROOT}/hack/tools/go.sum" "${BASH_SOURCE[0]}" | sha256sum | cut -d' ' -f1
  go env GOVERSION
}

stamp="${TOOLS_BIN}/.stamp"
want="$(stamp_value)"
if [[ -f "${stamp}" && "$(cat "${stamp}")" == "${want}" ]]; then
  missing=0
  for t in "${tools[@]}"; do [[ -x "${TOOLS_BIN}/${t}" ]] || missing=1; done
  if [[ ${missing} == 0 ]]; then
    echo "tools up to date in ${TOOLS_BIN}"
    exit 0
  fi
fi

mkdir -p "${TOOLS_BIN}"
cd "${ROOT}/hack/tools"

# Built from modules, the Kubernetes binaries would report v0.0.0-master;
# stamp the release so kubectl version and Istio's version checks see it.
minor="${KUBE_VERSION#v1.}"; minor="${minor%%.*}"
kube_ldflags="-s -w -X k8s.io/component-base/version.gitVersion=${KUBE_VERSION} -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=${minor} -X k8s.io/client-go/pkg/version.gitVersion=${KUBE_VERSION} -X k8s.io/client-go/pkg/version.gitMajor=1 -X k8s.io/client-go/pkg/version.gitMinor=${minor}"

# build NAME LDFLAGS PACKAGE
build() {
  echo "building $1"
  go build -trimpath -ldflags "$2" -o "${TOOLS_BIN}/$1.tmp" "$3"
  mv "${TOOLS_BIN}/$1.tmp" "${TOOLS_BIN}/$1"
}

build etcd "-s -w" go.etcd.io/etcd/server/v3
build kwok "-s -w" sigs.k8s.io/kwok/cmd/kwok
build kwokctl "-s -w" sigs.k8s.io/kwok/cmd/kwokctl
build controller-gen "-s -w" sigs.k8s.io/controller-tools/cmd/controller-gen
for c in kube-apiserver kube-controller-manager kube-scheduler kubectl; do
  build "${c}" "${kube_ldflags}" "k8s.io/kubernetes/cmd/${c}"
done

echo "${want}" > "${stamp}"
echo "tools built in ${TOOLS_BIN}"
