#!/usr/bin/env bash
# First converge vs idempotent re-run of the molecule/k3s scenario (three
# Podman systemd nodes; k3s is tests/doubles/k3s-double, the toolkit repo a
# double). Prints both wall times, their ratio and the changed count of the
# re-run. A measurement, not a test: nothing here asserts a time.
#   benchmarks/molecule_rerun.sh [SCENARIO]      (default k3s)
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
export PATH=$PWD/.venv/bin:$PATH
scenario=${1:-k3s}

GPU_STACK_NODE_IMAGE=$(images/build.sh)
run_id=bench-$scenario-$(date +%s)-$$
. scripts/podman-env.sh "$run_id"
export GPU_STACK_NODE_IMAGE GPU_STACK_RUN_ID=$run_id
export MOLECULE_EPHEMERAL_DIRECTORY=$GPU_STACK_CACHE/molecule/$run_id
export MOLECULE_GLOB='molecule/*/molecule.yml'
export ANSIBLE_FORCE_COLOR=0
logs=$(mktemp -d)

cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  molecule destroy -s "$scenario" >"$logs/destroy.log" 2>&1 || true
  podman ps -aq --filter label=homelab.gpu_stack.run="$run_id" | xargs -r podman rm -f -t 0 >/dev/null 2>&1 || true
  podman network rm -f "gs-molecule-$run_id" >/dev/null 2>&1 || true
  gpu_stack_podman_drop "$run_id"
  rm -rf "$MOLECULE_EPHEMERAL_DIRECTORY" "$logs"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

step() { # name: run one molecule step, print its wall time in seconds
  local name=$1 t0 t1
  t0=$(date +%s.%N)
  if ! molecule "$name" -s "$scenario" >"$logs/$name.$2.log" 2>&1; then
    tail -n 40 "$logs/$name.$2.log" >&2
    log "benchmark: molecule $name failed"
    exit 1
  fi
  t1=$(date +%s.%N)
  echo "$t1 - $t0" | bc
}

log "benchmark: scenario $scenario, run $run_id"
step create 0 >/dev/null
step prepare 0 >/dev/null
first=$(step converge 1)
rerun=$(step converge 2)
changed=$(grep -A10 'PLAY RECAP' "$logs/converge.2.log" | grep -o 'changed=[0-9]*' | cut -d= -f2 | paste -sd+ - | bc)
nodes=$(grep -A10 'PLAY RECAP' "$logs/converge.2.log" | grep -c 'changed=')

printf 'scenario            %s\n' "$scenario"
printf 'first converge      %.1f s\n' "$first"
printf 'idempotent re-run   %.1f s\n' "$rerun"
printf 'ratio re-run/first  %.2f\n' "$(echo "$rerun / $first" | bc -l)"
printf 're-run changed      %d (over %d host recaps)\n' "$changed" "$nodes"
