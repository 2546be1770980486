#!/usr/bin/env bash
# Builds the Debian 12 systemd node image the sandbox and Molecule run, and
# prints its tag. The tag is a hash of the recipe (recipe.conf, packages.txt,
# customize.sh): an unchanged recipe reuses the image, or re-imports the cached
# rootfs tarball in seconds when the Podman store was wiped. No registry is
# reachable, so the rootfs comes from debootstrap and the Debian mirror.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/podman-env.sh main

recipe=(images/recipe.conf images/packages.txt images/customize.sh)
# recipe.conf sets these three; a recipe that leaves one out fails here.
suite='' variant='' changes=()
. images/recipe.conf
[[ -n $suite && -n $variant && ${#changes[@]} -gt 0 ]] \
  || { echo "images/recipe.conf must set suite, variant and changes" >&2; exit 1; }
hash=$(cat "${recipe[@]}" | sha256sum | cut -c1-12)
tag=localhost/gpu-stack-node:$hash
cache=$GPU_STACK_CACHE/images
tarball=$cache/rootfs-$hash.tar
mirror=${GPU_STACK_DEBIAN_MIRROR:-http://deb.debian.org/debian}
mkdir -p "$cache"

# Parallel callers (the sandbox and a test run) wait for one build.
exec 9>"$cache/.lock"
flock 9

if podman image exists "$tag"; then
  echo "$tag"
  exit 0
fi

if [[ ! -f $tarball ]]; then
  work=$(mktemp -d "$cache/build.XXXXXX")
  trap 'rm -rf "$work"' EXIT
  pkgs=$(grep -v -e '^#' -e '^$' images/packages.txt | paste -sd, -)
  log "image: debootstrap $suite ($variant + $pkgs)"
  debootstrap --variant="$variant" --include="$pkgs" "$suite" "$work/rootfs" "$mirror" \
    >"$work/debootstrap.log" 2>&1 || { tail -n 30 "$work/debootstrap.log" >&2; exit 1; }
  images/customize.sh "$work/rootfs"
  tar -C "$work/rootfs" --numeric-owner -cf "$tarball.part" .
  mv "$tarball.part" "$tarball"
  # Tarballs of older recipes are never read again.
  find "$cache" -maxdepth 1 -name 'rootfs-*.tar' ! -name "rootfs-$hash.tar" -delete
fi

log "image: importing $tarball as $tag"
change_args=()
for c in "${changes[@]}"; do change_args+=(--change "$c"); done
podman import "${change_args[@]}" \
  --quiet --message "gpu_stack node image, recipe $hash" \
  "$tarball" "$tag" >/dev/null
echo "$tag"
