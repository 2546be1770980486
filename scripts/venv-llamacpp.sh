#!/usr/bin/env bash
# Builds the llama.cpp CPU-tier venv (llama-cpp-python[server], compiled from
# source: ~5 min on 2 cores) once, keyed by the hash of requirements/llamacpp.txt,
# and prints its path. The sdist's own HF->GGUF converter (with its gguf-py and
# conversion/ package) is kept under $venv/share/llama.cpp so the tests convert
# the generated tiny model with the converter of the very llama.cpp that serves it.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

req=requirements/llamacpp.txt
venv=$(venv_path llamacpp "$req")
if [[ ! -f $venv/.complete ]]; then
  log "venv: building $venv (llama.cpp compiles from source, ~5 min)"
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --upgrade pip
  version=$(sed -n 's/^llama_cpp_python\[server\]==//p' "$req")
  "$venv/bin/pip" download -q --no-deps --no-binary :all: -d "$venv/src" "llama-cpp-python==$version"
  # Two cores are shared with the rest of the suite: cap the build's parallelism.
  CMAKE_BUILD_PARALLEL_LEVEL=${CMAKE_BUILD_PARALLEL_LEVEL:-2} \
    "$venv/bin/pip" install -q --find-links "$venv/src" -r "$req"
  mkdir -p "$venv/share"
  tar -xzf "$venv/src/llama_cpp_python-$version.tar.gz" -C "$venv/share" --strip-components=2 \
    --wildcards "llama_cpp_python-$version/vendor/llama.cpp/convert_hf_to_gguf.py" \
    "llama_cpp_python-$version/vendor/llama.cpp/gguf-py/*" \
    "llama_cpp_python-$version/vendor/llama.cpp/conversion/*"
  "$venv/bin/python" -c 'import llama_cpp.server' 
  touch "$venv/.complete"
fi
echo "$venv"
