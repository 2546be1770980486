# shellcheck shell=bash
# Sourced by the scripts: the cache layout and a logger.
GPU_STACK_CACHE=${GPU_STACK_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/homelab-gpu-stack}
export GPU_STACK_CACHE
log() { printf '\033[1m[gpu_stack]\033[0m %s\n' "$*" >&2; }
# venv_path NAME FILE...: a venv folder keyed by the hash of the files that pin it.
venv_path() {
  local name=$1; shift
  echo "$GPU_STACK_CACHE/venvs/$name-$(cat "$@" | sha256sum | cut -c1-12)"
}
