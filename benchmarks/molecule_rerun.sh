#!/usr/bin/env bash
# P3: the first playbooks/site.yml vs its re-run, on the molecule/k3s
# scenario (its converge is site.yml: three Podman systemd nodes, every stage
# and gate, the cluster through tests/doubles: k3s, its API, kubelet,
# kube-proxy and Traefik are doubles; vLLM, LiteLLM and nginx are real).
# Prints both wall times, their ratio, the changed count of the re-run
# (every host and the controller) and the re-run's slowest tasks
# (ansible.posix.profile_tasks). A measurement, not a test: nothing here
# asserts a time.
#   benchmarks/molecule_rerun.sh [SCENARIO]      (default k3s)
# GPU_STACK_BENCH_LOGS=DIR keeps the step logs there.
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
rerun=$(step converge 2)
changed=$(grep -A10 'PLAY RECAP' "$logs/converge.2.log" | grep -o 'changed=[0-9]*' | cut -d= -f2 | paste -sd+ - | bc)
nodes=$(grep -A10 'PLAY RECAP' "$logs/converge.2.log" | grep -c 'changed=')

printf 'scenario            %s\n' "$scenario"
printf 'first converge      %.1f s\n' "$first"
printf 'idempotent re-run   %.1f s\n' "$rerun"
printf 'ratio re-run/first  %.2f\n' "$(echo "$rerun / $first" | bc -l)"
printf 're-run changed      %d (over %d host recaps)\n' "$changed" "$nodes"
printf 're-run, slowest tasks and roles (profile_tasks, profile_roles):\n'
sed -n '/^PLAY RECAP/,$p' "$logs/converge.2.log" | grep -E ' -+ +[0-9.]+s$'
