#!/usr/bin/env bash
# Builds every real component the tests and `make run` use, from pinned Go
# modules, into $TOOLS_BIN (default: bin/tools):
#   - the local cluster and code generation (hack/tools): etcd, kube-apiserver,
#     kube-controller-manager, kube-scheduler, kubectl, kwok, kwokctl,
#     controller-gen;
#   - istiod (pilot-discovery) from the istio.io/istio module the operator
#     pins (go.mod's tool line), so it is the Istio the operator installs;
#   - prometheus and promtool (hack/prometheus), for the metrics tests and the
#     alert rules.
# Each group has a stamp of what it was built from and the Go version, so a
# second run with nothing changed is a no-op. No package manager, no root.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TOOLS_BIN="${TOOLS_BIN:-${ROOT}/bin/tools}"
KUBE_VERSION="v1.36.3"

mkdir -p "${TOOLS_BIN}"

# build NAME LDFLAGS PACKAGE [go build flags...]: run in the module of the
# current directory.
build() {
  local name="$1" ldflags="$2" pkg="$3"
  shift 3
  echo "building ${name}"
  go build -ldflags "${ldflags}" "$@" -o "${TOOLS_BIN}/${name}.tmp" "${pkg}"
  mv "${TOOLS_BIN}/${name}.tmp" "${TOOLS_BIN}/${name}"
}

# up_to_date GROUP STAMP TOOLS...: whether the group's stamp matches and all
# its binaries exist.
up_to_date() {
  local group="$1" want="$2" t
  shift 2
  [[ -f "${TOOLS_BIN}/.stamp-${group}" && "$(cat "${TOOLS_BIN}/.stamp-${group}")" == "${want}" ]] || return 1
  for t in "$@"; do [[ -x "${TOOLS_BIN}/${t}" ]] || return 1; done
}

stamp() { cat "$@" "${BASH_SOURCE[0]}" | sha256sum | cut -d' ' -f1; go env GOVERSION; }

# The local cluster and code generation.
kube_tools=(etcd kube-apiserver kube-controller-manager kube-scheduler kubectl kwok kwokctl controller-gen)
want="$(stamp "${ROOT}/hack/tools/go.mod" "${ROOT}/hack/tools/go.sum")"
if up_to_date kube "${want}" "${kube_tools[@]}"; then
  echo "cluster tools up to date in ${TOOLS_BIN}"
else
  # Built from modules, the Kubernetes binaries would report v0.0.0-master;
  # stamp the release so kubectl version and Istio's version checks see it.
  minor="${KUBE_VERSION#v1.}"; minor="${minor%%.*}"
  kube_ldflags="-s -w -X k8s.io/component-base/version.gitVersion=${KUBE_VERSION} -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=${minor} -X k8s.io/client-go/pkg/version.gitVersion=${KUBE_VERSION} -X k8s.io/client-go/pkg/version.gitMajor=1 -X k8s.io/client-go/pkg/version.gitMinor=${minor}"
  (
    cd "${ROOT}/hack/tools"
    build etcd "-s -w" go.etcd.io/etcd/server/v3 -trimpath
    build kwok "-s -w" sigs.k8s.io/kwok/cmd/kwok -trimpath
    build kwokctl "-s -w" sigs.k8s.io/kwok/cmd/kwokctl -trimpath
    build controller-gen "-s -w" sigs.k8s.io/controller-tools/cmd/controller-gen -trimpath
    for c in kube-apiserver kube-controller-manager kube-scheduler kubectl; do
      build "${c}" "${kube_ldflags}" "k8s.io/kubernetes/cmd/${c}" -trimpath
    done
  )
  echo "${want}" > "${TOOLS_BIN}/.stamp-kube"
fi

# istiod, from the operator's own module: the same istio.io/istio version, the
# same dependency versions and the same build flags (no -trimpath), so it
# shares the operator's build cache.
istio_version="$(cd "${ROOT}" && go list -m -f '{{.Version}}' istio.io/istio)"
istio_tag="$(cd "${ROOT}" && go list -m -f '{{.Version}}' istio.io/api)"
want="$(printf '%s\n' "${istio_version}" | stamp "${ROOT}/go.sum" -)"
if up_to_date istiod "${want}" pilot-discovery; then
  echo "istiod up to date in ${TOOLS_BIN}"
else
  (
    cd "${ROOT}"
    build pilot-discovery "-s -w -X istio.io/istio/pkg/version.buildVersion=${istio_tag#v}" istio.io/istio/pilot/cmd/pilot-discovery
  )
  echo "${want}" > "${TOOLS_BIN}/.stamp-istiod"
fi

# Prometheus without its service discovery plugins (the tests scrape static
# targets) and without the web UI's compiled assets (they come from npm, not
# from the module); the API and the expression browser's endpoints work.
want="$(stamp "${ROOT}/hack/prometheus/go.mod" "${ROOT}/hack/prometheus/go.sum")"
if up_to_date prometheus "${want}" prometheus promtool; then
  echo "prometheus up to date in ${TOOLS_BIN}"
else
  prom_version="$(cd "${ROOT}/hack/prometheus" && go list -m -f '{{.Version}}' github.com/prometheus/prometheus)"
  # The module's v0.MMM.P is release M.MM.P (v0.311.3 is Prometheus 3.11.3).
  v="${prom_version#v0.}"; mm="${v%%.*}"
  prom_ldflags="-s -w -X github.com/prometheus/common/version.Version=${mm:0:1}.$((10#${mm:1})).${v#*.}"
  (
    cd "${ROOT}/hack/prometheus"
    build prometheus "${prom_ldflags}" github.com/prometheus/prometheus/cmd/prometheus -trimpath -tags remove_all_sd
    build promtool "${prom_ldflags}" github.com/prometheus/prometheus/cmd/promtool -trimpath -tags remove_all_sd
  )
  echo "${want}" > "${TOOLS_BIN}/.stamp-prometheus"
fi
echo "tools built in ${TOOLS_BIN}"
