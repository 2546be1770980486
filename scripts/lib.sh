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
# frozen_venv NAME REQ CHECK: build (once) the venv of a requirements file
# that is the whole frozen closure (pip --no-deps: no second resolve), prove
# it with the Python statement CHECK, mark it .complete; prints nothing.
frozen_venv() {
  local name=$1 req=$2 check=$3 venv
  venv=$(venv_path "$name" "$req")
  [[ -f $venv/.complete ]] && return 0
  log "$name venv: building $venv"
  rm -rf "$venv"
  mkdir -p "$(dirname "$venv")"
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --upgrade pip
  "$venv/bin/pip" install -q --no-deps -r "$req"
  "$venv/bin/python" -c "$check" || { log "$name venv: import check failed"; return 1; }
  touch "$venv/.complete"
}
