#!/usr/bin/env bash
# ansible-test sanity, locally with Python 3.11. ansible-test only runs from a
# path ending in ansible_collections/<namespace>/<name>, so the working tree's
# files (tracked, plus new ones git does not ignore) are staged under the
# cache first. Extra arguments go to ansible-test (e.g. --test pep8).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
venv=$PWD/.venv

# ansible-test bootstraps pip in each of its venvs from a script it downloads
# from a host this machine cannot reach. Put a bootstrap in its cache that
# takes pip from Python's bundled ensurepip and then upgrades it from PyPI.
pip_version=$(sed -n "s/^ *pip='\([0-9.]*\)',$/\1/p" \
  "$venv"/lib/python3*/site-packages/ansible_test/_internal/python_requirements.py | head -n1)
bootstrap=$HOME/.ansible/test/cache/get_pip_${pip_version//./_}.py
mkdir -p "${bootstrap%/*}"
cat > "$bootstrap.new" <<'PY'
"""pip bootstrap for ansible-test on a machine that only reaches PyPI."""
import os
import subprocess
import sys

# ansible-test points PIP_CONFIG_FILE at /dev/null, which hides /etc/pip.conf
# and with it the index and CA bundle this machine needs.
os.environ.pop("PIP_CONFIG_FILE", None)
subprocess.check_call([sys.executable, "-m", "ensurepip", "--upgrade", "--default-pip"])
args = [a for a in sys.argv[1:] if a not in ("--no-setuptools", "--no-wheel")]
subprocess.check_call([sys.executable, "-m", "pip", "install", "--upgrade"] + args)
PY
if cmp -s "$bootstrap.new" "$bootstrap"; then rm -f "$bootstrap.new"; else mv -f "$bootstrap.new" "$bootstrap"; fi

# One staging folder per checkout; runs of the same checkout wait for each other.
key=$(printf '%s' "$PWD" | sha256sum | cut -c1-12)
base=$GPU_STACK_CACHE/sanity/$key
stage=$base/ansible_collections/homelab/gpu_stack
mkdir -p "$base"
exec 9>"$base/.lock"
flock 9
rm -rf "$stage"
mkdir -p "$stage"
git ls-files -z --cached --others --exclude-standard |
  while IFS= read -r -d '' f; do [[ -e $f || -L $f ]] && printf '%s\0' "$f"; done |
  tar --null -T - -cf - | tar -xf - -C "$stage"

cd "$stage"
export PATH=$venv/bin:$PATH
ansible-test sanity --local --python 3.11 --color no "$@"
