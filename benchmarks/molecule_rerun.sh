#!/usr/bin/env bash
# P3: the first playbooks/site.yml vs its re-run, on the molecule/k3s
# scenario (its converge is site.yml: three Podman systemd nodes, every stage
# and gate, the cluster through tests/doubles: k3s, its API, kubelet,
# kube-proxy and Traefik are doubles; vLLM, LiteLLM and nginx are real).
# Prints the first run's wall time, the median of several re-runs, their
# ratio, the re-runs' changed count (every host and the controller) and the
# last re-run's slowest tasks (ansible.posix.profile_tasks). A measurement,
# not a test: nothing here asserts a time.
#   benchmarks/molecule_rerun.sh [SCENARIO]      (default k3s)
# GPU_STACK_BENCH_RERUNS=N re-runs (default 3); GPU_STACK_BENCH_LOGS=DIR
# keeps the step logs there.
set -euo pipefail
cd "$(dirname "$0")/.."
scenario=${1:-k3s}
. scripts/molecule-env.sh "bench-$scenario-$(date +%s)-$$"
logs=$(mktemp -d)

cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  molecule destroy -s "$scenario" >"$logs/destroy.log" 2>&1 || true
  molecule_env_cleanup
  if [[ -n ${GPU_STACK_BENCH_LOGS:-} ]]; then mkdir -p "$GPU_STACK_BENCH_LOGS" && cp "$logs"/*.log "$GPU_STACK_BENCH_LOGS"/; fi
  rm -rf "$logs"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

step() { # name: run one molecule step, print its wall time in seconds
  local name=$1 t0 t1
  t0=$(date +%s.%N)
  if ! molecule "$name" -s "$scenario" >"$logs/$name.$2.log" 2>&1; then
    tail -n 40 "$logs/$name.$2.log" >&2
    log "benchmark: molecule $name failed"
    exit 1
  fi
  t1=$(date +%s.%N)
  echo "$t1 - $t0" | bc
}

# Where the time goes: every task and role timed (their summaries end each
# converge log).
export ANSIBLE_CALLBACKS_ENABLED=homelab.gpu_stack.changes,ansible.posix.profile_tasks,ansible.posix.profile_roles
export PROFILE_TASKS_TASK_OUTPUT_LIMIT=${PROFILE_TASKS_TASK_OUTPUT_LIMIT:-25}
log "benchmark: scenario $scenario, run $run_id"
step create 0 >/dev/null
step prepare 0 >/dev/null
first=$(step converge 1)
# Several re-runs, their median reported: one re-run's wall time moves by
# 10-20% from run to run on a small machine.
reruns=()
changed=0
for ((i = 2; i < 2 + ${GPU_STACK_BENCH_RERUNS:-3}; i++)); do
  reruns+=("$(step converge "$i")")
  changed=$((changed + $(grep -A10 'PLAY RECAP' "$logs/converge.$i.log" | grep -o 'changed=[0-9]*' | cut -d= -f2 | paste -sd+ - | bc)))
done
last=$logs/converge.$((i - 1)).log
nodes=$(grep -A10 'PLAY RECAP' "$last" | grep -c 'changed=')
rerun=$(printf '%s\n' "${reruns[@]}" | sort -n | awk '{v[NR] = $1} END {print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2}')

printf 'scenario            %s\n' "$scenario"
printf 'first converge      %.1f s\n' "$first"
printf 're-runs             %s s\n' "$(printf '%.1f ' "${reruns[@]}")"
printf 'idempotent re-run   %.1f s (median of %d)\n' "$rerun" "${#reruns[@]}"
printf 'ratio re-run/first  %.2f\n' "$(echo "$rerun / $first" | bc -l)"
printf 're-runs changed     %d (over %d host recaps each)\n' "$changed" "$nodes"
printf 'last re-run, slowest tasks and roles (profile_tasks, profile_roles):\n'
sed -n '/^PLAY RECAP/,$p' "$last" | grep -E ' -+ +[0-9.]+s$'
