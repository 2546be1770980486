#!/usr/bin/env bash
# Builds the LiteLLM gateway venv once, keyed by the hash of
# requirements/litellm.txt (a change to the pins builds a new one), and prints
# its path. A venv without the .complete marker is half-built and is redone.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

req=requirements/litellm.txt
venv=$(venv_path litellm "$req")
if [[ ! -f $venv/.complete ]]; then
  log "venv: building $venv"
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --upgrade pip
  "$venv/bin/pip" install -q -r "$req"
  LITELLM_LOCAL_MODEL_COST_MAP=True "$venv/bin/python" -c 'import litellm.proxy.proxy_server, prisma'
  touch "$venv/.complete"
fi
echo "$venv"
