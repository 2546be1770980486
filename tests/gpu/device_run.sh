#!/usr/bin/env bash
# Run on the GPU machine from the repository root, in three back-to-back device calls
# (a machine goes back 30 s after a call, and /tmp survives only while it is held):
#   a  gpu_facts against the real nvidia-smi; unpack vLLM part 1 (.whl/p1, carried);
#      generate the random-weight models into /tmp/models
#   b  unpack vLLM part 2 (.whl/p2, carried); start serve_matrix.py on tests/gpu/$JOBS (jobs.json)
#      in its own session (it outlives the call); wait up to B_WAIT_S; report
#      with SWITCH=jobs_switch.json, mode_switch.py (issue 14, P7) runs first, then the matrix
#      (SKIP: job names left out of the matrix, space-separated)
#   c  wait for serve_matrix.py to finish (up to C_WAIT_S); report
# Each stage leaves results.json, orchestrator.log and logs.tgz under $OUT.
set -u
STAGE=${1:?stage a, b or c}
O=${OUT:-/tmp/gpout}; mkdir -p "$O"
RUN=/tmp/gpurun; SCRIPTS=/tmp/gpu_scripts
T0=$(date +%s)
say(){ echo "[$(( $(date +%s) - T0 ))s] $*"; }
unpack(){
  if command -v xz >/dev/null 2>&1; then xz -dc -T0 "$1" | tar -x -C /tmp/site
  else python3 -c "import tarfile,sys; tarfile.open(sys.argv[1],'r:xz').extractall(sys.argv[2], filter='fully_trusted')" "$1" /tmp/site; fi
}
report(){
  [ -f $RUN/results.json ] && cp $RUN/results.json "$O/"
  [ -f $RUN/orchestrator.log ] && cp $RUN/orchestrator.log "$O/"
  (cd $RUN 2>/dev/null && tar -czf "$O/logs.tgz" logs mem.csv 2>/dev/null)
  nvidia-smi --query-gpu=memory.used,memory.total --format=csv,noheader | sed 's/^/gpu memory now: /'
  [ -f $RUN/switch_results.json ] && cp $RUN/switch_results.json "$O/"
  [ -f $RUN/switch.log ] && cp $RUN/switch.log "$O/" && tail -n 40 $RUN/switch.log | cut -c1-400
  [ -f $RUN/orchestrator.log ] && tail -n 45 $RUN/orchestrator.log | cut -c1-330
}
mkdir -p /tmp/site

case "$STAGE" in
a)
  python3 tests/gpu/gpu_facts_probe.py h100_real.csv > "$O/gpu_facts.txt" 2>&1; head -3 "$O/gpu_facts.txt"
  t=$(date +%s); unpack .whl/p1/a.tar.xz && touch /tmp/site/.a_done; say "unpacked part 1 in $(( $(date +%s) - t ))s"
  # GEN1/GEN2: the models to write (two writers at once); the defaults are the full matrix.
  read -ra gen1 <<< "${GEN1:-llama-3.1-8b qwen2.5-0.5b qwen2.5-7b-awq}"
  read -ra gen2 <<< "${GEN2:-llama-3.1-8b-awq qwen2.5-14b-awq qwen2.5-3b}"
  python3 tests/gpu/gen_models.py /tmp/models "${gen1[@]}" > "$O/gen1.log" 2>&1 &
  p1=$!
  python3 tests/gpu/gen_models.py /tmp/models "${gen2[@]}" > "$O/gen2.log" 2>&1
  wait $p1
  cat "$O/gen1.log" "$O/gen2.log" | grep -v regex | tail -8
  du -sh /tmp/models/* ; df -h /tmp | tail -1; free -g | head -2
  say "stage a done"
  ;;
b)
  [ -f /tmp/site/.a_done ] || { say "STAGE A MISSING: the machine was replaced"; exit 3; }
  t=$(date +%s); unpack .whl/p2/b.tar.xz && touch /tmp/site/.b_done; say "unpacked part 2 in $(( $(date +%s) - t ))s ($(du -sh /tmp/site | cut -f1))"
  rm -rf $SCRIPTS $RUN; cp -r tests/gpu $SCRIPTS; mkdir -p $RUN
  export PYTHONPATH=/tmp/site:$SCRIPTS/vllm_gate PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 \
    VLLM_NO_USAGE_STATS=1 DO_NOT_TRACK=1 TOKENIZERS_PARALLELISM=false VLLM_USE_FLASHINFER_SAMPLER=0
  setsid nohup nvidia-smi --query-gpu=timestamp,memory.used,utilization.gpu --format=csv,noheader -lms 1000 \
    > $RUN/mem.csv 2>/dev/null < /dev/null &
  echo $! > $RUN/mem.pid
  python3 -c "import json,sys; d=json.load(open(sys.argv[1])); skip=set(sys.argv[3].split()); d['jobs']=[j for j in d['jobs'] if j['name'] not in skip]; json.dump(d, open(sys.argv[2],'w'))" \
    "$SCRIPTS/${JOBS:-jobs.json}" $RUN/matrix_jobs.json "${SKIP:-}"
  first=true
  [ -n "${SWITCH:-}" ] && first="GPUSTACK_ROOT=$PWD python3 $SCRIPTS/mode_switch.py $SCRIPTS/$SWITCH $RUN ${SWITCH_ROUNDS:-3} > $RUN/switch.log 2>&1"
  setsid nohup bash -c "$first; python3 $SCRIPTS/serve_matrix.py $RUN/matrix_jobs.json $RUN ${MATRIX_DEADLINE_S:-1020}; touch $RUN/finished" \
    > $RUN/orchestrator.log 2>&1 < /dev/null &
  say "serve_matrix started"
  while [ ! -f $RUN/finished ] && [ $(( $(date +%s) - T0 )) -lt "${B_WAIT_S:-560}" ]; do sleep 5; done
  report
  ;;
c)
  [ -f $RUN/orchestrator.log ] || { say "NO RUN: the machine was replaced"; exit 3; }
  while [ ! -f $RUN/finished ] && [ $(( $(date +%s) - T0 )) -lt "${C_WAIT_S:-570}" ]; do sleep 5; done
  [ -f $RUN/finished ] && kill "$(cat $RUN/mem.pid)" 2>/dev/null
  report
  ;;
esac
