#!/usr/bin/env bash
# Installs what the demo and the suite need, once; a second run only checks.
# The venv lives in a cache keyed by the hash of the pinned requirements, so a
# change to the pins builds a new one and an unchanged tree reuses it.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

need_apt=()
for cmd in podman:podman debootstrap:debootstrap runc:runc netavark:/usr/lib/podman/netavark \
    librsvg2-bin:rsvg-convert shellcheck:shellcheck openssh-client:ssh-keygen \
    prometheus:prometheus chromium:chromium; do
  bin=${cmd#*:}; pkg=${cmd%%:*}
  if [[ $bin == /* ]]; then [[ -x $bin ]] || need_apt+=("$pkg"); else command -v "$bin" >/dev/null || need_apt+=("$pkg"); fi
done
if ((${#need_apt[@]})); then
  log "apt: installing ${need_apt[*]} aardvark-dns conmon iptables uidmap"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" aardvark-dns conmon iptables uidmap >/dev/null
fi

venv=$(venv_path dev requirements/dev.txt)
if [[ ! -f $venv/.complete ]]; then
  log "venv: building $venv"
  rm -rf "$venv"
  python3 -m venv "$venv"
  # /etc/pip.conf lists local wheel folders that do not all exist; pip warns
  # about each on every lookup, which buries real errors.
  quiet_pip() { "$venv/bin/pip" "$@" 2> >(grep -v 'is ignored: it is neither a file nor a directory' >&2); }
  quiet_pip install -q --upgrade pip
  quiet_pip install -q -r requirements/dev.txt
  touch "$venv/.complete"
fi
ln -sfn "$venv" .venv

# Resolve homelab.gpu_stack.* from this checkout.
mkdir -p .ansible/collections/ansible_collections/homelab
ln -sfn "$PWD" .ansible/collections/ansible_collections/homelab/gpu_stack
log "bootstrap: ready ($venv)"
