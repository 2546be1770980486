#!/usr/bin/env bash
# `make demo` (after bootstrap): playbooks/site.yml end to end on the three
# sandbox nodes of inventories/local, the same run CI makes (the molecule/k3s
# scenario's nodes, prepare and converge), then what to try. The cluster
# under site.yml is made of test doubles (tests/doubles: k3s, its API,
# kubelet, kube-proxy, Traefik as nginx, NVIDIA's repository and card); vLLM
# (CPU build), LiteLLM, llama.cpp and nginx are real.
#   scripts/demo.sh                 up (or again: a re-run changes nothing)
#   scripts/demo.sh playbook NAME [ARGS...]
#                                   run playbooks/NAME against the sandbox
#   scripts/demo.sh shell NODE      a shell on a node
#   scripts/demo.sh down            remove the sandbox
# The sandbox is removed at the end unless GPU_STACK_DEMO_KEEP=1.
set -euo pipefail
cd "$(dirname "$0")/.."
[[ ${1:-} != down ]] || GPU_STACK_NODE_IMAGE=none
. scripts/molecule-env.sh demo
scenario=k3s
inventory=$MOLECULE_EPHEMERAL_DIRECTORY/inventory
vars=molecule/$scenario/vars.yml

down() {
  molecule_env_cleanup
  log "demo: sandbox removed"
}

case ${1:-up} in
  down) down; exit 0 ;;
  playbook) shift; name=$1; shift
    exec ansible-playbook -i "$inventory" -e @"$vars" "playbooks/$name" "$@" ;;
  shell) exec podman exec -it "$2" bash ;;
  up) ;;
  *) echo "usage: scripts/demo.sh [up | playbook NAME [ARGS...] | shell NODE | down]" >&2; exit 2 ;;
esac

start=$SECONDS
[[ -n ${GPU_STACK_DEMO_KEEP:-} ]] || trap down EXIT
log "demo: sandbox nodes and the doubles on them (molecule create, prepare)"
molecule create -s "$scenario"
log "demo: ansible-playbook playbooks/site.yml on the sandbox (molecule converge)"
molecule converge -s "$scenario"

# What the cluster stages apply for the example home cluster, with no cluster:
# manifests and the topology picture.
log "demo: ansible-playbook playbooks/render.yml -i inventories/example -> rendered/example"
ansible-playbook playbooks/render.yml -i inventories/example -e gpu_stack_render_dir="$PWD/rendered/example" \
  -e ansible_connection=local >/dev/null

# The summary stage's one-page status (and the picture it links), kept after
# the sandbox is gone.
mkdir -p rendered/sandbox
cp "$MOLECULE_EPHEMERAL_DIRECTORY"/rendered/{status.html,topology.svg} rendered/sandbox/ 2>/dev/null || true

server=$(podman inspect -f '{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}' gs-server)
key=$(sed -n 's/^litellm_master_key: //p' inventories/local/group_vars/all/main.yml)
cat <<MSG

== gpu_stack demo: site.yml ran end to end in $((SECONDS - start)) s ==
Every stage and gate passed on gs-server, gs-gpu and gs-cpu: preflight, the
NVIDIA toolkit, k3s, the GPU add-ons, the model cache, vLLM (tiny-chat, CPU
build) and the LiteLLM gateway behind the Ingress, falling back to the cpu tier
and the cloud stand-in on gs-cpu, and Open WebUI (the chat page) at its own
Ingress. Not k3s: the cluster is made of doubles
(tests/doubles); README.md says what they cannot show.

Status page (each model's state, plan vs what vLLM reported, the tier
answering, the URLs): file://$PWD/rendered/sandbox/status.html
MSG
if [[ -f rendered/sandbox/status.html && -n ${DISPLAY:-} ]] && command -v xdg-open >/dev/null; then
  xdg-open rendered/sandbox/status.html >/dev/null 2>&1 || true
fi
if [[ -n ${GPU_STACK_DEMO_KEEP:-} ]]; then
  cat <<MSG

Try next (the sandbox is kept):
  curl --cacert $MOLECULE_EPHEMERAL_DIRECTORY/tls/ca.crt \\
    --resolve llm.gpu-stack.home.arpa:443:$server \\
    https://llm.gpu-stack.home.arpa/v1/chat/completions -H "Authorization: Bearer $key" \\
    -H 'Content-Type: application/json' -d '{"model": "tiny-chat", "messages": [{"role": "user", "content": "Hi"}]}'
  # The chat page, resolved to $server; its certificate is signed by the CA above (import it,
  # or accept the warning). Admin: open_webui_admin_email / _password in inventories/local.
  chromium --host-resolver-rules="MAP chat.gpu-stack.home.arpa $server" https://chat.gpu-stack.home.arpa
  scripts/demo.sh playbook gpu_mode.yml -e gpu_stack_gpu_mode=gaming   # GPU off; the curl still answers
  scripts/demo.sh playbook gpu_mode.yml -e gpu_stack_gpu_mode=ml       # and back
  scripts/demo.sh                       # site.yml again: nothing changes
  scripts/demo.sh shell gs-gpu          # look around a node
  scripts/demo.sh down                  # remove the sandbox
MSG
else
  echo "The sandbox is removed now; GPU_STACK_DEMO_KEEP=1 make demo keeps it, with a curl and a gpu_mode.yml line to try."
fi
