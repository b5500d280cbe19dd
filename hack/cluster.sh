#!/usr/bin/env bash
# Runs a local Kubernetes control plane (etcd, kube-apiserver,
# kube-controller-manager, kube-scheduler) with kwok-simulated nodes, for
# trying the operator by hand. It uses kwokctl's binary runtime with the
# binaries `make tools` builds into bin/tools: no Docker, no downloads.
# Pods on the kwok nodes become Running without running any container.
#
#   hack/cluster.sh up [--name NAME] [--nodes N] [--disable-qps-limits]
#   hack/cluster.sh down|kubeconfig|egress-selector|status [--name NAME]
#
# Environment: TOOLS_BIN (default bin/tools), KWOK_WORKDIR (default .cache/kwok).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TOOLS_BIN="${TOOLS_BIN:-${ROOT}/bin/tools}"
KWOK_WORKDIR="${KWOK_WORKDIR:-${ROOT}/.cache/kwok}"
NAME="istio-operator"
NODES=1
DISABLE_QPS_LIMITS=0

# kwokctl picks component ports by probing down from 32767 for a free one, so
# concurrent creations would collide; creations take this host-wide lock
# (test/cluster takes the same one) until all their ports are listening.
LOCK_FILE="${TMPDIR:-/tmp}/istio-operator-kwokctl.lock"

TOOLS=(etcd kube-apiserver kube-controller-manager kube-scheduler kubectl kwok kwokctl)

usage() {
  sed -n '8,9s/^#   //p' "${BASH_SOURCE[0]}"
}

die() {
  echo "cluster.sh: $*" >&2
  exit 1
}

log() {
  echo "cluster.sh: $*" >&2
}

# Signals end the script through `exit`, so that the EXIT trap cleaning up
# a half-created cluster runs.
trap 'exit 129' HUP
trap 'exit 130' INT
trap 'exit 143' TERM

command="${1:-}"
[[ $# -gt 0 ]] && shift
while [[ $# -gt 0 ]]; do
  case "$1" in
    --name) [[ $# -ge 2 ]] || die "--name needs a value"; NAME="$2"; shift 2 ;;
    --name=*) NAME="${1#*=}"; shift ;;
    --nodes) [[ $# -ge 2 ]] || die "--nodes needs a value"; NODES="$2"; shift 2 ;;
    --nodes=*) NODES="${1#*=}"; shift ;;
    --disable-qps-limits) DISABLE_QPS_LIMITS=1; shift ;;
    -h|--help) usage; exit 0 ;;
    *) usage >&2; die "unknown argument: $1" ;;
  esac
done
[[ "${NAME}" =~ ^[a-z0-9]([a-z0-9-]{0,38}[a-z0-9])?$ ]] ||
  die "--name ${NAME}: use lowercase letters, digits and '-', at most 40 characters"
[[ "${NODES}" =~ ^[1-9][0-9]*$ ]] || die "--nodes ${NODES}: want a positive number"

TOOLS_BIN="$(realpath -m "${TOOLS_BIN}")"
KWOK_WORKDIR="$(realpath -m "${KWOK_WORKDIR}")"
CLUSTER_DIR="${KWOK_WORKDIR}/clusters/${NAME}"
KUBECONFIG_PATH="${CLUSTER_DIR}/kubeconfig.yaml"

export KWOK_WORKDIR
export KWOK_RUNTIME=binary
export KWOK_KUBE_BINARY_PREFIX="${TOOLS_BIN}"
export KWOK_KUBE_APISERVER_BINARY="${TOOLS_BIN}/kube-apiserver"
export KWOK_KUBE_CONTROLLER_MANAGER_BINARY="${TOOLS_BIN}/kube-controller-manager"
export KWOK_KUBE_SCHEDULER_BINARY="${TOOLS_BIN}/kube-scheduler"
export KWOK_KUBECTL_BINARY="${TOOLS_BIN}/kubectl"
export KWOK_ETCD_BINARY="${TOOLS_BIN}/etcd"
export KWOK_CONTROLLER_BINARY="${TOOLS_BIN}/kwok"

check_tools() {
  local missing=() t
  for t in "${TOOLS[@]}"; do
    [[ -x "${TOOLS_BIN}/${t}" && ! -d "${TOOLS_BIN}/${t}" ]] || missing+=("${t}")
  done
  if [[ ${#missing[@]} -gt 0 ]]; then
    die "missing ${missing[*]} in ${TOOLS_BIN}; run \`make tools\` to build them"
  fi
}

# kwokctl runs kwokctl; it prefers a kubectl on PATH to KWOK_KUBECTL_BINARY,
# so bin/tools goes first.
kwokctl() {
  PATH="${TOOLS_BIN}:${PATH}" "${TOOLS_BIN}/kwokctl" --name "${NAME}" "$@"
}

kctl() {
  "${TOOLS_BIN}/kubectl" --kubeconfig "${KUBECONFIG_PATH}" "$@"
}

# alive PID: the process exists and is not a zombie (a killed component
# whose parent has not reaped it yet is gone for our purposes).
alive() {
  local stat
  { read -r stat < "/proc/$1/stat"; } 2>/dev/null || return 1
  stat="${stat##*) }"
  [[ "${stat:0:1}" != Z && "${stat:0:1}" != X ]]
}

# refers_to_cluster PID: its command line names a file under the cluster dir,
# as every component's does (data dir, certificates, kubeconfig).
refers_to_cluster() {
  local args=()
  { mapfile -d '' -t args < "/proc/$1/cmdline"; } 2>/dev/null || return 1
  [[ "${args[*]}" == *"${CLUSTER_DIR}/"* ]]
}

# any_exists PID...: some PID still has a process table entry, maybe a zombie.
any_exists() {
  local p
  for p in "$@"; do
    [[ -e "/proc/${p}" ]] && return 0
  done
  return 1
}

# component_pids prints the live processes of the cluster.
component_pids() {
  local p pid
  for p in /proc/[0-9]*; do
    pid="${p#/proc/}"
    [[ "${pid}" == "$$" || "${pid}" == "${BASHPID}" ]] && continue
    refers_to_cluster "${pid}" && alive "${pid}" && echo "${pid}"
  done
  return 0
}

# running: every component kwokctl recorded is alive and the API server is ready.
running() {
  [[ -f "${CLUSTER_DIR}/kwok.yaml" && -f "${KUBECONFIG_PATH}" ]] || return 1
  local f n=0
  for f in "${CLUSTER_DIR}"/pids/*.pid; do
    [[ -f "${f}" ]] || return 1
    alive "$(<"${f}")" || return 1
    n=$((n + 1))
  done
  [[ ${n} -gt 0 ]] || return 1
  kctl get --raw /readyz --request-timeout=5s >/dev/null 2>&1
}

delete_cluster() {
  [[ -e "${CLUSTER_DIR}" ]] || return 0
  local pids=() out p i
  # Note the processes before kwokctl forgets them with their pid files.
  mapfile -t pids < <(component_pids)
  # kwokctl delete insists on a kubeconfig to remove the cluster's context
  # from; give it the cluster's own, which goes away anyway.
  if [[ ! -x "${TOOLS_BIN}/kwokctl" ]]; then
    log "no kwokctl in ${TOOLS_BIN}; cleaning up by hand"
  elif ! out="$(kwokctl delete cluster --kubeconfig "${KUBECONFIG_PATH}" 2>&1)"; then
    log "kwokctl delete cluster failed, cleaning up by hand:"
    echo "${out}" >&2
  fi
  mapfile -t -O "${#pids[@]}" pids < <(component_pids)
  for p in "${pids[@]}"; do
    if alive "${p}" && refers_to_cluster "${p}"; then
      log "killing leftover process ${p}"
      kill -KILL "${p}" 2>/dev/null || true
    fi
  done
  for ((i = 0; i < 100; i++)); do
    [[ -z "$(component_pids)" ]] && break
    sleep 0.1
  done
  if [[ -n "$(component_pids)" ]]; then
    die "processes of ${NAME} survived SIGKILL: $(component_pids | tr '\n' ' ')"
  fi
  # The components were detached, so their parent is init, which may reap
  # them a moment later; wait briefly so that no <defunct> entry remains.
  for ((i = 0; i < 50; i++)); do
    any_exists "${pids[@]}" || break
    sleep 0.1
  done
  rm -rf "${CLUSTER_DIR}" "${KWOK_WORKDIR}/${NAME}.egress-selector.yaml" "${KWOK_WORKDIR}/${NAME}.router.sock"
}

# dead_components prints the components kwokctl started that have exited;
# kwokctl does not restart them.
dead_components() {
  local f
  for f in "${CLUSTER_DIR}"/pids/*.pid; do
    [[ -f "${f}" ]] || continue
    alive "$(<"${f}")" || basename "${f}" .pid
  done
  return 0
}

# wait_until SECONDS WHAT COMMAND...: polls COMMAND every 0.2s; gives up at
# once when a component has exited.
wait_until() {
  local timeout="$1" what="$2" deadline dead
  shift 2
  deadline=$((SECONDS + timeout))
  until "$@" >/dev/null 2>&1; do
    dead="$(dead_components)"
    [[ -z "${dead}" ]] || die "waiting for ${what}: components exited: ${dead//$'\n'/ }"$'\n'"$(component_logs)"
    ((SECONDS < deadline)) || die "timed out after ${timeout}s waiting for ${what}"$'\n'"$(component_logs)"
    sleep 0.2
  done
}

component_logs() {
  local f
  for f in "${CLUSTER_DIR}"/logs/*.log; do
    [[ -f "${f}" ]] || continue
    echo "==> ${f##*/} (last 20 lines) <=="
    tail -n 20 "${f}"
  done
}

# cluster_ports prints the ports kwokctl chose, from the cluster's config.
cluster_ports() {
  sed -nE 's/^[[:space:]]+(etcdPort|etcdPeerPort|kubeApiserverPort|kubeControllerManagerPort|kubeSchedulerPort|kwokControllerPort):[[:space:]]*([0-9]+)[[:space:]]*$/\2/p' \
    "${CLUSTER_DIR}/kwok.yaml" | awk '$1 != 0' | sort -u
}

ports_listening() {
  local port
  for port in $(cluster_ports); do
    (exec 3<>"/dev/tcp/127.0.0.1/${port}") 2>/dev/null || return 1
  done
}

default_service_account() {
  kctl get serviceaccount default --namespace default
}

create_cluster() {
  mkdir -p "${KWOK_WORKDIR}"
  # Ports are the host's, so every user locks the same file: created
  # writable for all, and opened read-only (flock needs no more), so a file
  # another user created serves as well.
  [[ -e "${LOCK_FILE}" ]] || (umask 0 && : >>"${LOCK_FILE}")
  exec 9<"${LOCK_FILE}"
  flock -w 300 9 || die "timed out waiting for ${LOCK_FILE} (another cluster is being created)"

  # The API server dials Services (webhooks) through an HTTP CONNECT proxy
  # on this Unix socket, which hack/local-istiod serves: the route to the
  # real istiod behind the simulated one (test/istiod).
  local egress="${KWOK_WORKDIR}/${NAME}.egress-selector.yaml"
  cat > "${egress}" <<EOF
apiVersion: apiserver.k8s.io/v1beta1
kind: EgressSelectorConfiguration
egressSelections:
- name: cluster
  connection:
    proxyProtocol: HTTPConnect
    transport:
      uds:
        udsName: ${KWOK_WORKDIR}/${NAME}.router.sock
EOF
  # kwokctl binds every component to 0.0.0.0 unless configured otherwise,
  # and has no flag for it.
  local config="${KWOK_WORKDIR}/istio-operator-kwokctl.yaml"
  cat > "${config}" <<EOF
apiVersion: config.kwok.x-k8s.io/v1alpha1
kind: KwokctlConfiguration
options:
  bindAddress: 127.0.0.1
componentsPatches:
- name: kube-apiserver
  extraArgs:
  - key: egress-selector-config-file
    value: ${egress}
EOF
  local args=(create cluster --config "${config}" --kubeconfig "" --runtime binary)
  [[ ${DISABLE_QPS_LIMITS} == 1 ]] && args+=(--disable-qps-limits)

  # kwokctl waits up to two minutes for the API server even when a
  # component has died; watch the components meanwhile to fail at once.
  # 9>&-: the components must not inherit the lock.
  # kwokctl runs in its own session, so that stopping it also stops the
  # kubectl it polls the API server with.
  local out="${KWOK_WORKDIR}/${NAME}.kwokctl.log" dead rc=0
  PATH="${TOOLS_BIN}:${PATH}" setsid "${TOOLS_BIN}/kwokctl" --name "${NAME}" "${args[@]}" >"${out}" 2>&1 9>&- &
  KWOKCTL_PID=$!
  while kill -0 "${KWOKCTL_PID}" 2>/dev/null; do
    dead="$(dead_components)"
    if [[ -n "${dead}" ]]; then
      stop_kwokctl
      cat "${out}" >&2
      rm -f "${out}"
      die "components exited: ${dead//$'\n'/ }"$'\n'"$(component_logs)"
    fi
    sleep 0.2
  done
  wait "${KWOKCTL_PID}" || rc=$?
  KWOKCTL_PID=""
  if [[ ${rc} != 0 ]]; then
    cat "${out}" >&2
    rm -f "${out}"
    die "kwokctl create cluster failed"$'\n'"$(component_logs)"
  fi
  rm -f "${out}"
  wait_until 120 "the components to listen on their ports" ports_listening
  exec 9>&-
}

create_nodes() {
  local i manifest=""
  for ((i = 0; i < NODES; i++)); do
    manifest+="
---
apiVersion: v1
kind: Node
metadata:
  name: kwok-node-${i}
  annotations:
    kwok.x-k8s.io/node: fake
  labels:
    type: kwok
    kubernetes.io/hostname: kwok-node-${i}
    kubernetes.io/os: linux
    kubernetes.io/arch: amd64
status:
  allocatable: {cpu: \"32\", memory: 256Gi, pods: \"1000\"}
  capacity: {cpu: \"32\", memory: 256Gi, pods: \"1000\"}
"
  done
  kctl apply -f - >/dev/null <<<"${manifest}"
  for ((i = 0; i < NODES; i++)); do
    wait_until 60 "node kwok-node-${i} to be Ready" \
      kctl wait --for=condition=Ready "node/kwok-node-${i}" --timeout=5s
  done
}

KWOKCTL_PID=""

# stop_kwokctl kills a running `kwokctl create` and its children.
stop_kwokctl() {
  if [[ -n "${KWOKCTL_PID}" ]]; then
    kill -KILL -- "-${KWOKCTL_PID}" 2>/dev/null || true
    wait "${KWOKCTL_PID}" 2>/dev/null || true
    KWOKCTL_PID=""
  fi
}

# remove_failed_cluster is the EXIT trap while `up` creates a cluster: a
# cluster that failed to come up (or whose start was interrupted) is
# deleted, its log tails already printed.
remove_failed_cluster() {
  local rc=$?
  if [[ ${rc} != 0 ]]; then
    stop_kwokctl
    log "removing the cluster that failed to start"
    delete_cluster || true
  fi
  exit "${rc}"
}

up() {
  check_tools
  local start="${SECONDS}"
  if [[ -e "${CLUSTER_DIR}" ]]; then
    if running; then
      log "cluster ${NAME} is already running; reusing it"
    else
      log "cluster ${NAME} is stale or broken; recreating it"
      delete_cluster
    fi
  fi
  if [[ ! -e "${CLUSTER_DIR}" ]]; then
    log "creating cluster ${NAME} in ${CLUSTER_DIR}"
    trap remove_failed_cluster EXIT
    create_cluster
  fi
  wait_until 120 "kube-apiserver /readyz" kctl get --raw /readyz
  create_nodes
  wait_until 60 "ServiceAccount default/default" default_service_account
  trap - EXIT
  log "cluster ${NAME} ready in $((SECONDS - start))s"
  echo "${KUBECONFIG_PATH}"
  echo "export KUBECONFIG=${KUBECONFIG_PATH}"
}

down() {
  if [[ ! -e "${CLUSTER_DIR}" ]]; then
    log "cluster ${NAME} does not exist"
    return 0
  fi
  delete_cluster
  log "cluster ${NAME} deleted"
}

status() {
  if [[ ! -e "${CLUSTER_DIR}" ]]; then
    echo "cluster ${NAME}: not created"
    return 1
  fi
  if running; then
    echo "cluster ${NAME}: running (kubeconfig ${KUBECONFIG_PATH})"
    kctl get nodes
    return 0
  fi
  echo "cluster ${NAME}: stopped or broken (run: $0 up --name ${NAME})"
  return 1
}

case "${command}" in
  up) up ;;
  down) down ;;
  egress-selector)
    echo "${KWOK_WORKDIR}/${NAME}.egress-selector.yaml"
    ;;
  kubeconfig)
    echo "${KUBECONFIG_PATH}"
    [[ -f "${KUBECONFIG_PATH}" ]] || die "cluster ${NAME} does not exist; run: $0 up --name ${NAME}"
    ;;
  status) status ;;
  -h|--help|help) usage ;;
  *) usage >&2; exit 2 ;;
esac
