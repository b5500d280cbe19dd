#!/usr/bin/env bash
# Checks the README's first command: `make run` on a fresh local cluster
# brings the sample Istio resource to Ready, and the real istiod behind it
# injects sidecars into a labelled namespace. Then it stops the operator and
# istiod and removes the cluster. CI runs it after `make test`.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CLUSTER="${CLUSTER:-istio-operator-check-run}"
NAMESPACE="${NAMESPACE:-kyma-system}"
TIMEOUT="${TIMEOUT:-300}"
LOG="${ROOT}/.cache/check-run.log"
kubectl="${ROOT}/bin/tools/kubectl"
mkdir -p "${ROOT}/.cache"

# Ports of its own, so that a developer's `make run` may keep running.
export METRICS_ADDR="127.0.0.1:18080" HEALTH_ADDR="127.0.0.1:18081"
setsid make -C "${ROOT}" run CLUSTER="${CLUSTER}" NAMESPACE="${NAMESPACE}" >"${LOG}" 2>&1 &
run=$!
cleanup() {
  kill -TERM -- "-${run}" 2>/dev/null || true
  wait "${run}" 2>/dev/null || true
  make -C "${ROOT}" --no-print-directory cluster-down CLUSTER="${CLUSTER}" >/dev/null 2>&1 || true
}
trap cleanup EXIT

fail() {
  echo "check-run: $*; the last lines of ${LOG}:" >&2
  tail -n 40 "${LOG}" >&2
  exit 1
}

deadline=$((SECONDS + TIMEOUT))
until grep -q "^Applying deploy/samples/istio-default.yaml" "${LOG}" 2>/dev/null; do
  kill -0 "${run}" 2>/dev/null || fail "make run exited before applying the sample"
  ((SECONDS < deadline)) || fail "make run did not apply the sample within ${TIMEOUT}s"
  sleep 2
done
KUBECONFIG="$(bash "${ROOT}/hack/cluster.sh" kubeconfig --name "${CLUSTER}")"
export KUBECONFIG
if ! "${kubectl}" wait --for=condition=Ready "istio/default" -n "${NAMESPACE}" --timeout="$((deadline - SECONDS))s"; then
  "${kubectl}" get istio default -n "${NAMESPACE}" -o yaml >&2 || true
  fail "the sample Istio resource did not become Ready"
fi
"${kubectl}" get istio -n "${NAMESPACE}"

# A Deployment in a namespace with Istio's injection label gets its sidecar
# from the real istiod, through the webhook the operator installed.
"${kubectl}" create namespace check-injection
"${kubectl}" label namespace check-injection istio-injection=enabled
"${kubectl}" create deployment web --image=registry.k8s.io/pause:3.10 -n check-injection
containers=""
until [[ "${containers}" == *istio-proxy* ]]; do
  ((SECONDS < deadline)) || fail "no pod of check-injection/web got an istio-proxy sidecar (containers: ${containers:-none}); see .cache/istiod-${CLUSTER}.log"
  sleep 1
  containers="$("${kubectl}" get pods -n check-injection -o jsonpath='{.items[*].spec.initContainers[*].name} {.items[*].spec.containers[*].name}')"
done
echo "check-run: check-injection/web injected by the real istiod: ${containers}"
kill -0 "${run}" 2>/dev/null || fail "make run exited"
echo "check-run: make run brought istio/default to Ready in ${SECONDS}s"
