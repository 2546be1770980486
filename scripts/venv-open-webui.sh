#!/usr/bin/env bash
# Builds the Open WebUI venv once (keyed by the hash of
# requirements/open-webui.txt) and prints its path on stdout. ~3.5 min and
# ~3 GB from PyPI on a fresh machine (torch's CPU wheel is most of it). The
# browser test drives Debian's chromium (installed by scripts/bootstrap.sh)
# with this venv's Playwright: no browser is downloaded.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

req=requirements/open-webui.txt
venv=$(venv_path open-webui "$req")
if [[ ! -f $venv/.complete ]]; then
  log "open-webui venv: building $venv (~3.5 min, ~3 GB)"
  rm -rf "$venv"
  mkdir -p "$(dirname "$venv")"
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --upgrade pip
  # --no-deps: the file is the whole frozen closure (no second resolve).
  "$venv/bin/pip" install -q --no-deps -r "$req"
  "$venv/bin/python" -c 'import open_webui, playwright.sync_api' \
    || { log "open-webui venv: import check failed"; exit 1; }
  touch "$venv/.complete"
fi
log "open-webui venv: ready"
echo "$venv"
