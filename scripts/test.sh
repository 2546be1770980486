#!/usr/bin/env bash
# The suite CI runs (.ci/run -> make test -> this). Each part runs on its own,
# its output goes to build/test-logs/<part>.log, and a summary table follows.
# Exit status is non-zero when a part fails or a part that must run did not
# (no tests collected, no Molecule scenario found).
#   scripts/test.sh                 every part
#   scripts/test.sh PATTERN...      only parts whose name matches a glob
#                                   (e.g. 'pytest-*', molecule-default)
#   scripts/test.sh --list          the part names
# GPU_STACK_PART_TIMEOUT (seconds, default 2400) stops a part that hangs; the
# part then fails (Molecule's cleanup trap still removes its containers).
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
. scripts/lib.sh
export PATH=$PWD/.venv/bin:$PATH
export ANSIBLE_FORCE_COLOR=0 PY_COLORS=0 NO_COLOR=1

parts=()   # "name|command", run in this order
part() { parts+=("$1|$2"); }

# --- the parts (add new ones here) -----------------------------------------
part ansible-lint  "ansible-lint --offline"
part yamllint      "yamllint --strict ."
part ruff          "ruff check \$(ls -d plugins tests benchmarks 2>/dev/null)"
part sanity        "scripts/sanity.sh"
# The real servers the e2e tests start and the node image Molecule runs: built
# once per pin set or recipe (cached by hash), here rather than inside a
# test's time limit. llama.cpp compiles on the CPU while the others mostly
# download, so they run beside it.
part builds "scripts/venv-llamacpp.sh & llamacpp=\$!; scripts/venv-vllm.sh && scripts/venv-litellm.sh && scripts/venv-open-webui.sh && images/build.sh; rc=\$?; wait \$llamacpp && exit \$rc"
# pytest exits 5 when a folder collects no test: that counts as a failure.
# The unit tests (most of them ansible-playbook runs of the bad-input corpus)
# run on both cores; render and e2e share module fixtures and real servers.
part pytest-unit "pytest -q -p no:cacheprovider -n 2 tests/unit"
for dir in render e2e; do
  part "pytest-$dir" "pytest -q -p no:cacheprovider tests/$dir"
done
scenarios=()
for f in molecule/*/molecule.yml; do
  [[ -f $f ]] || continue
  s=${f#molecule/}; s=${s%/molecule.yml}
  [[ $s == shared ]] && continue
  scenarios+=("$s")
  part "molecule-$s" "scripts/molecule.sh $s"
done
((${#scenarios[@]})) || part molecule "echo 'no Molecule scenario found under molecule/' >&2; false"
# ---------------------------------------------------------------------------

if [[ ${1:-} == --list ]]; then printf '%s\n' "${parts[@]%%|*}"; exit 0; fi

logs=build/test-logs
mkdir -p "$logs"
selected=() results=() times=()
for p in "${parts[@]}"; do
  name=${p%%|*}
  if (($#)); then
    # The arguments are glob patterns ('pytest-*'), so $pat stays unquoted.
    hit=0
    # shellcheck disable=SC2053
    for pat in "$@"; do [[ $name == $pat ]] && hit=1; done
    ((hit)) || continue
  fi
  selected+=("$p")
done
if ((${#selected[@]} == 0)); then
  echo "no part matches: $*" >&2
  echo "0 passed, 1 failed"
  exit 1
fi

passed=0 failed=0
for p in "${selected[@]}"; do
  name=${p%%|*} cmd=${p#*|}
  log "part $name: $cmd"
  start=$SECONDS
  if timeout -k 60 "${GPU_STACK_PART_TIMEOUT:-2400}" bash -o pipefail -c "$cmd" >"$logs/$name.log" 2>&1; then
    results+=(pass); passed=$((passed + 1))
  else
    rc=$?
    results+=("FAIL($rc)"); failed=$((failed + 1))
    echo "---- $name failed (exit $rc); last lines of $logs/$name.log:" >&2
    tail -n 40 "$logs/$name.log" >&2
    echo "----" >&2
  fi
  times+=($((SECONDS - start)))
  log "part $name: ${results[-1]} in ${times[-1]}s"
done

echo
printf '%-22s %-9s %6s  %s\n' PART RESULT SECONDS LOG
for i in "${!selected[@]}"; do
  name=${selected[$i]%%|*}
  printf '%-22s %-9s %6s  %s\n' "$name" "${results[$i]}" "${times[$i]}" "$logs/$name.log"
done
echo "$passed passed, $failed failed"
((failed == 0))
