#!/usr/bin/env bash
# `make demo` (after bootstrap): start the sandbox nodes of inventories/local
# and run the main job, playbooks/site.yml, against them; then say what
# happened and what to try next.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
. scripts/podman-env.sh main
export PATH=$PWD/.venv/bin:$PATH
start=$SECONDS

image=$(images/build.sh)
scripts/sandbox.sh up >/dev/null
log "demo: sandbox up ($image)"

log "demo: ansible-playbook playbooks/site.yml -i inventories/local --tags preflight,summary"
ansible-playbook playbooks/site.yml -i inventories/local --tags preflight,summary "$@"

# What the cluster stages would apply, with no cluster: manifests and the
# topology picture, for the sandbox and for the example home cluster.
for inv in local example; do
  log "demo: ansible-playbook playbooks/render.yml -i inventories/$inv -> rendered/$inv"
  ansible-playbook playbooks/render.yml -i inventories/$inv -e gpu_stack_render_dir="$PWD/rendered/$inv" \
    -e ansible_connection=local >/dev/null
done

# The gateway chain of inventories/local on this machine (vLLM, llama.cpp,
# LiteLLM, gated); stopped at the end unless GPU_STACK_DEMO_KEEP=1.
log "demo: the gateway chain (scripts/demo_chain.py)"
.venv/bin/python scripts/demo_chain.py ${GPU_STACK_DEMO_KEEP:+--keep}

cat <<MSG

== gpu_stack demo: done in $((SECONDS - start)) s ==
What ran:
  - node image $image (Debian 12 + systemd, built by images/build.sh, cached)
  - sandbox nodes from inventories/local, as Podman containers:
$(scripts/sandbox.sh status | sed 's/^/      /')
  - playbooks/site.yml against them: preflight validated the inventory (models,
    GPUs, tiers, modes) and checked every node (OS, disk, kernel modules, swap,
    time sync) before anything changed.
  - playbooks/render.yml for inventories/local and inventories/example: every
    Kubernetes object the later stages apply, one file each, plus the
    topology picture: rendered/<inventory>/ (open rendered/example/topology.png).
    No k3s or Kubernetes API runs here: those stages need real machines.
  - the gateway chain (scripts/demo_chain.py): CPU vLLM, llama.cpp cpu tier,
    a local stand-in for the cloud, LiteLLM from the litellm role's rendered
    config, gated plain and with a forced fallback (GPU_STACK_DEMO_KEEP=1
    leaves it running; scripts/demo_chain.py --stop stops it).

Try next:
  scripts/sandbox.sh shell gs-gpu               # look around a node
  scripts/sandbox.sh run ansible-playbook playbooks/site.yml -i inventories/local --tags preflight,summary
                                                # run it again: nothing changes
  scripts/sandbox.sh run ansible-inventory -i inventories/local --graph
  edit inventories/local/host_vars/gs-gpu.yml (e.g. a second model with the
    same served_name) and re-run: preflight stops, naming the variable
  make test                                     # the suite CI runs
  scripts/sandbox.sh down                       # remove the sandbox
MSG
