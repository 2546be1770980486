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
# ~3.5 min and ~3 GB on a fresh machine.
frozen_venv open-webui "$req" 'import open_webui, playwright.sync_api'
log "open-webui venv: ready"
venv_path open-webui "$req"
