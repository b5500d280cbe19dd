#!/usr/bin/env bash
# make run: the operator in the foreground against the local cluster, with
# the CRD installed, the real istiod standing behind the one the operator
# installs (hack/local-istiod) and the sample Istio resource applied. Ctrl-C
# stops the operator and istiod; `make cluster-down` removes the cluster.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TOOLS_BIN="${TOOLS_BIN:-${ROOT}/bin/tools}"
NAME="istio-operator"
NAMESPACE="kyma-system"
while [[ $# -gt 0 ]]; do
  case "$1" in
    --name) NAME="$2"; shift 2 ;;
    --namespace) NAMESPACE="$2"; shift 2 ;;
    *) echo "unknown argument: $1" >&2; exit 2 ;;
  esac
done

KUBECONFIG="$(bash "${ROOT}/hack/cluster.sh" kubeconfig --name "${NAME}")"
export KUBECONFIG
kubectl=("${TOOLS_BIN}/kubectl" --kubeconfig "${KUBECONFIG}")

echo "Installing the CRD"
"${kubectl[@]}" apply --server-side --force-conflicts -k "${ROOT}/deploy/crds/"
"${kubectl[@]}" wait --for=condition=Established --timeout=60s crd/istios.operator.kyma-project.io
"${kubectl[@]}" create namespace "${NAMESPACE}" --dry-run=client -o yaml | "${kubectl[@]}" apply -f -

pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "${p}" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup EXIT INT TERM

echo "Starting the real istiod behind the installed one (log: .cache/istiod-${NAME}.log)"
go build -o "${ROOT}/bin/local-istiod" "${ROOT}/hack/local-istiod"
mkdir -p "${ROOT}/.cache"
"${ROOT}/bin/local-istiod" --kubeconfig "${KUBECONFIG}" \
  --egress-selector-config "$(bash "${ROOT}/hack/cluster.sh" egress-selector --name "${NAME}")" \
  --istiod "${TOOLS_BIN}/pilot-discovery" --dir "${ROOT}/.cache/istiod-${NAME}" > "${ROOT}/.cache/istiod-${NAME}.log" 2>&1 &
pids+=($!)

echo "Applying deploy/samples/istio-default.yaml"
"${kubectl[@]}" apply -f "${ROOT}/deploy/samples/istio-default.yaml"

cat <<MSG

The operator runs below (Ctrl-C stops it). In another terminal:
  export KUBECONFIG=${KUBECONFIG}
  kubectl get istio -n ${NAMESPACE} -w
  kubectl describe istio default -n ${NAMESPACE}
  curl -s localhost:8080/metrics | grep istio_operator_
  kubectl create namespace demo && kubectl label namespace demo istio-injection=enabled
  kubectl create deployment web --image=nginx -n demo   # its pod gets a real sidecar
istiod log: .cache/istiod-${NAME}.log. Remove the cluster with: make cluster-down

MSG
"${ROOT}/bin/istio-operator" --kubeconfig "${KUBECONFIG}" --namespace "${NAMESPACE}" \
  --log-format console --metrics-bind-address "${METRICS_ADDR:-:8080}" \
  --health-probe-bind-address "${HEALTH_ADDR:-:8081}" &
pids+=($!)
wait "${pids[-1]}"
