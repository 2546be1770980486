#!/usr/bin/env bash
# The demo's sandbox: the hosts of inventories/local as systemd containers
# from the node image (images/), on one bridge network, in the project's main
# Podman store (scripts/podman-env.sh). Idempotent.
#   scripts/sandbox.sh up          build the image if needed, start the nodes
#   scripts/sandbox.sh down        remove the nodes and their network
#   scripts/sandbox.sh status      one line per node
#   scripts/sandbox.sh run CMD...  run CMD (e.g. ansible-playbook) where it
#                                  reaches the nodes: sandbox store, venv on PATH
#   scripts/sandbox.sh shell NODE  a shell on a node
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/podman-env.sh main
export PATH=$PWD/.venv/bin:$PATH
label=homelab.gpu_stack.sandbox=1
network=gs-sandbox
inventory=inventories/local

# The node names come from the inventory, so the sandbox always matches it.
nodes() {
  ANSIBLE_INVENTORY_UNPARSED_WARNING=false ansible-inventory -i "$inventory" --list 2>/dev/null |
    python3 -c 'import json,sys; d=json.load(sys.stdin); print("\n".join(sorted(d["_meta"]["hostvars"])))'
}

wait_booted() {
  local node=$1 state=""
  for _ in $(seq 1 60); do
    state=$(podman exec "$node" systemctl is-system-running 2>/dev/null || true)
    [[ $state == running || $state == degraded ]] && return 0
    sleep 1
  done
  log "sandbox: $node did not boot (systemd: ${state:-no answer})"
  return 1
}

up() {
  local image node current
  image=$(images/build.sh)
  mapfile -t hosts < <(nodes)
  ((${#hosts[@]})) || { log "sandbox: no hosts in $inventory"; exit 1; }
  podman network exists "$network" ||
    podman network create --label "$label" "$network" >/dev/null
  for node in "${hosts[@]}"; do
    if podman container exists "$node"; then
      current=$(podman inspect -f '{{index .Config.Labels "homelab.gpu_stack.image"}}' "$node")
      if [[ $current != "$image" ]]; then
        log "sandbox: $node runs ${current:-another image}; recreating it from $image"
        podman rm -f -t 5 "$node" >/dev/null
      fi
    fi
    if ! podman container exists "$node"; then
      log "sandbox: starting $node"
      podman run -d --name "$node" --hostname "$node" --network "$network" \
        --systemd=always --label "$label" --label "homelab.gpu_stack.image=$image" \
        "$image" >/dev/null
    elif [[ $(podman inspect -f '{{.State.Running}}' "$node") != true ]]; then
      log "sandbox: restarting $node"
      podman start "$node" >/dev/null
    fi
  done
  for node in "${hosts[@]}"; do wait_booted "$node"; done
  status
}

down() {
  podman ps -aq --filter "label=$label" | xargs -r podman rm -f -t 5 >/dev/null
  podman network exists "$network" && podman network rm -f "$network" >/dev/null
  log "sandbox: down"
}

status() {
  local n
  n=$(podman ps -a --filter "label=$label" -q | wc -l)
  if ((n == 0)); then echo "sandbox: no nodes (scripts/sandbox.sh up starts them)"; return 0; fi
  podman ps -a --filter "label=$label" --format '{{.Names}}\t{{.Status}}\t{{.Image}}' | sort
}

case ${1:-} in
  up) up ;;
  down) down ;;
  status) status ;;
  run) shift; exec "$@" ;;
  shell) exec podman exec -it "${2:?which node}" bash ;;
  *) sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2 ;;
esac
