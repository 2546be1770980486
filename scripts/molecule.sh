#!/usr/bin/env bash
# Runs one Molecule scenario's full sequence (test_sequence in its
# molecule.yml):  scripts/molecule.sh [SCENARIO] [molecule args]
# The run gets its own id, Podman store and Molecule ephemeral folder, so it
# can run beside the sandbox (same node names) and beside other runs. Its
# containers carry homelab.gpu_stack.test=1 and homelab.gpu_stack.run=<id> and
# are removed on exit, also when the scenario fails or is interrupted.
set -euo pipefail
cd "$(dirname "$0")/.."
scenario=${1:-default}; shift || true

start=$SECONDS
. scripts/molecule-env.sh "mol-$scenario-$(date +%s)-$$"
log "molecule: image ready in $((SECONDS - start)) s"

cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  set +e
  molecule_env_cleanup
  log "molecule: scenario $scenario exit $rc after $((SECONDS - start)) s; run $run_id removed"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

log "molecule: scenario $scenario, run $run_id, image $GPU_STACK_NODE_IMAGE"
molecule test -s "$scenario" "$@"
