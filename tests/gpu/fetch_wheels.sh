#!/usr/bin/env bash
# Fetch vLLM 0.26.0 and the pure-Python wheels the GPU image lacks, and pack them
# into archives that each fit one device call (a call carries at most 64 MiB).
# Runs here (PyPI reachable), never on the GPU machine (no network there).
# Usage: tests/gpu/fetch_wheels.sh [DEST]   (default .whl/, git-ignored)
# Output: DEST/p1/a.tar.xz (vLLM's _C_stable_libtorch library alone) and
#         DEST/p2/b.tar.xz (everything else), each < 64 MiB.
# vLLM 0.26.0 is the release pinned to torch 2.11.0, the torch on the GPU machine,
# so torch itself never travels.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
DEST=${1:-$ROOT/.whl}
mkdir -p "$DEST/wheels" "$DEST/p1" "$DEST/p2"
PLATS=""
for n in 17 24 27 28 31 34 35; do PLATS="$PLATS --platform manylinux_2_${n}_x86_64"; done
PLATS="$PLATS --platform manylinux2014_x86_64 --platform manylinux1_x86_64 --platform any"
specs="vllm==0.26.0"
# wheels.txt holds name-version lines (the list proven on the GPU machine).
while read -r line; do
  [ -z "$line" ] && continue
  specs="$specs ${line%-*}==${line##*-}"
done < "$HERE/wheels.txt"
# shellcheck disable=SC2086
python3 -m pip download -q --disable-pip-version-check --no-deps --only-binary=:all: --python-version 3.12 \
  --implementation cp --abi cp312 --abi abi3 --abi none $PLATS -d "$DEST/wheels" $specs

SITE=$DEST/site
rm -rf "$SITE"; mkdir -p "$SITE"
# Installed for the GPU machine's Python (3.12), not this one.
wheels=()
for w in "$DEST"/wheels/*.whl; do
  case ${w##*/} in vllm-0.26.0*) ;; *) wheels+=("$w") ;; esac
done
# shellcheck disable=SC2086
python3 -m pip install -q --no-index --no-deps --no-compile --only-binary=:all: \
  --python-version 3.12 --implementation cp --abi cp312 --abi abi3 --abi none $PLATS \
  --target "$SITE" "${wheels[@]}"
# vLLM itself is unzipped rather than installed so that parts Hopper does not use
# can be left out: FA2 (Hopper uses FA3), the Rust router, the MoE library
# (optional import) and deep_gemm builds for Pythons other than 3.12.
python3 - "$DEST"/wheels/vllm-0.26.0-*.whl "$SITE" <<'PY'
import re, sys, zipfile
whl, site = sys.argv[1], sys.argv[2]
skip = re.compile(r"(vllm/vllm_flash_attn/_vllm_fa2_C\.abi3\.so$|^vllm/vllm-rs|"
                  r"vllm/_moe_C_stable_libtorch\.abi3\.so$|deep_gemm.*cpython-3(?!12)\d+.*\.so$|__pycache__)")
with zipfile.ZipFile(whl) as z:
    for n in z.namelist():
        if not skip.search(n):
            z.extract(n, site)
PY
find "$SITE" -name __pycache__ -type d -prune -exec rm -rf {} +
(cd "$SITE" && tar -c vllm/_C_stable_libtorch.abi3.so | xz -T0 -6 > "$DEST/p1/a.tar.xz")
(cd "$SITE" && tar -c --exclude=vllm/_C_stable_libtorch.abi3.so . | xz -T0 -6 > "$DEST/p2/b.tar.xz")
ls -la "$DEST/p1" "$DEST/p2"
for f in "$DEST"/p1/a.tar.xz "$DEST"/p2/b.tar.xz; do
  sz=$(stat -c %s "$f")
  [ "$sz" -lt $((63 * 1024 * 1024)) ] || { echo "$f is $sz bytes: over one call's limit" >&2; exit 1; }
done
