# Sourced (bash): points podman at this project's own configuration and store.
#   . scripts/podman-env.sh          the main store: the node image and the sandbox
#   . scripts/podman-env.sh NAME     a store of its own for one test run; it
#                                    reads the main store's images read-only, so
#                                    its containers (same names as the sandbox's)
#                                    never collide with the sandbox or other runs
# Exports CONTAINERS_CONF, CONTAINERS_STORAGE_CONF and GPU_STACK_PODMAN_STORE.
# All stores share podman's network config folder, so the subnets of their
# networks never overlap; never `podman system reset` one (it deletes them all).
# shellcheck shell=bash
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

gpu_stack_podman_env() {
  local store=${1:-main}
  local root=$GPU_STACK_CACHE/podman
  local dir=$root/$store
  mkdir -p "$dir/tmp" "$dir/storage" "$dir/runroot"
  local extra=""
  if [[ $store != main ]]; then
    mkdir -p "$root/main/storage"
    extra="additionalimagestores = [\"$root/main/storage\"]"
  fi
  # This VM's root lacks CAP_SYS_RESOURCE (so ulimits must be set below the
  # hard limits), crun refuses the hybrid cgroup layout (runc + cgroupfs), and
  # there is no journald. File locks under the store's own tmp_dir keep each
  # store's lock state apart from every other podman user on the machine.
  cat > "$dir/containers.conf.new" <<CONF
[containers]
default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]
log_driver = "k8s-file"

[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
tmp_dir = "$dir/tmp"
lock_type = "file"

[network]
network_backend = "netavark"
CONF
  cat > "$dir/storage.conf.new" <<CONF
[storage]
driver = "overlay"
graphroot = "$dir/storage"
runroot = "$dir/runroot"

[storage.options]
$extra
CONF
  local f
  for f in containers.conf storage.conf; do
    if cmp -s "$dir/$f.new" "$dir/$f"; then rm -f "$dir/$f.new"; else mv -f "$dir/$f.new" "$dir/$f"; fi
  done
  export CONTAINERS_CONF=$dir/containers.conf
  export CONTAINERS_STORAGE_CONF=$dir/storage.conf
  export GPU_STACK_PODMAN_STORE=$store
}

# gpu_stack_podman_drop NAME: remove a per-run store and everything in it.
gpu_stack_podman_drop() {
  local store=$1 dir=$GPU_STACK_CACHE/podman/$1
  [[ $store != main && -d $dir ]] || return 0
  (
    gpu_stack_podman_env "$store"
    podman rm -fa -t 0 >/dev/null 2>&1 || true
  )
  local m
  { findmnt -rn -o TARGET | grep -F "$dir/" | sort -r | while read -r m; do umount -l "$m"; done; } 2>/dev/null || true
  rm -rf "$dir"
}

gpu_stack_podman_env "${1:-main}"
