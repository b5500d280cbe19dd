#!/usr/bin/env bash
# make run: the operator in the foreground against the local cluster, with
# the CRD installed, the sidecar-injector stand-in serving on loopback and
# the sample Istio resource applied. Ctrl-C stops the operator and the
# stand-in; `make cluster-down` removes the cluster.
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

echo "Starting the sidecar-injector stand-in (test scaffolding: no container runs on this cluster)"
go build -o "${ROOT}/bin/injector-standin" "${ROOT}/hack/injector-standin"
"${ROOT}/bin/injector-standin" --kubeconfig "${KUBECONFIG}" > "${ROOT}/.cache/injector-standin.log" 2>&1 &
pids+=($!)

echo "Applying deploy/samples/istio-default.yaml"
"${kubectl[@]}" apply -f "${ROOT}/deploy/samples/istio-default.yaml"

cat <<MSG

The operator runs below (Ctrl-C stops it). In another terminal:
  export KUBECONFIG=${KUBECONFIG}
  kubectl get istio -n ${NAMESPACE} -w
  kubectl describe istio default -n ${NAMESPACE}
  curl -s localhost:8080/metrics | grep istio_operator_
Stand-in log: .cache/injector-standin.log. Remove the cluster with: make cluster-down

MSG
"${ROOT}/bin/istio-operator" --kubeconfig "${KUBECONFIG}" --namespace "${NAMESPACE}" \
  --log-format console --metrics-bind-address "${METRICS_ADDR:-:8080}" \
  --health-probe-bind-address "${HEALTH_ADDR:-:8081}" &
pids+=($!)
wait "${pids[-1]}"
