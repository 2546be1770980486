#!/usr/bin/env bash
# build-repo.sh OUT_DIR [VERSION]: builds a TEST DOUBLE of NVIDIA's container
# toolkit apt repository (NVIDIA's own repo cannot be reached from the test
# machines). It is a signed flat repo, shaped like
# nvidia.github.io/libnvidia-container/stable/deb/$(ARCH):
#   OUT_DIR/gpgkey      ASCII-armoured public key of a throwaway key made here
#   OUT_DIR/Packages, Release, InRelease (clearsigned), *.deb
# The four packages carry the real names and VERSION (default 1.17.8-1) but
# contain only double scripts (nvidia-ctk, nvidia-container-runtime,
# nvidia-container-runtime-hook, nvidia-container-cli) that print that they
# are doubles. What it shows: the role's signed-by keyring, repository entry,
# pinned install and that k3s (here k3s-double) finds nvidia-container-runtime.
# What it cannot show: that NVIDIA's real repo, key or packages work, or that
# any container gets a GPU. `nvidia-ctk runtime configure` in the double logs
# the call to /var/log/nvidia-ctk-double.log and fails, so a test can prove
# the role never ran it.
set -euo pipefail
out=${1:?usage: build-repo.sh OUT_DIR [VERSION]}
ver=${2:-1.17.8-1}
here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d)
trap 'gpgconf --homedir "$work/gnupg" --kill all >/dev/null 2>&1 || true; rm -rf "$work"' EXIT
mkdir -p "$out"
rm -f "$out"/*.deb

build_deb() { # name depends files...
  local name=$1 depends=$2; shift 2
  local root="$work/$name"
  mkdir -p "$root/DEBIAN" "$root/usr/bin" "$root/usr/share/doc/$name"
  # A package with no files is "disappeared" by dpkg; each carries a note.
  echo "TEST DOUBLE of NVIDIA's $name, built by homelab.gpu_stack tests." > "$root/usr/share/doc/$name/README.double"
  for f in "$@"; do install -m 0755 "$here/bin/$f" "$root/usr/bin/$f"; done
  {
    echo "Package: $name"
    echo "Version: $ver"
    echo "Architecture: amd64"
    echo "Maintainer: homelab.gpu_stack tests <double@invalid>"
    [ -n "$depends" ] && echo "Depends: $depends"
    echo "Description: TEST DOUBLE of NVIDIA's $name (homelab.gpu_stack tests)"
  } > "$root/DEBIAN/control"
  dpkg-deb --root-owner-group -Zgzip --build "$root" "$out/${name}_${ver}_amd64.deb" >/dev/null
}
build_deb libnvidia-container1 "" 
build_deb libnvidia-container-tools "libnvidia-container1 (= $ver)" nvidia-container-cli
build_deb nvidia-container-toolkit-base "" nvidia-ctk nvidia-container-runtime
build_deb nvidia-container-toolkit "nvidia-container-toolkit-base (= $ver), libnvidia-container-tools (= $ver)" nvidia-container-runtime-hook

cd "$out"
dpkg-scanpackages --multiversion . /dev/null 2>/dev/null > Packages
{
  echo "Origin: gpu_stack-nvidia-toolkit-double"
  echo "Label: TEST DOUBLE of NVIDIA container toolkit repository"
  echo "Date: $(LC_ALL=C date -u '+%a, %d %b %Y %H:%M:%S UTC')"
  echo "SHA256:"
  printf ' %s %s Packages\n' "$(sha256sum Packages | cut -d' ' -f1)" "$(stat -c %s Packages)"
} > Release
export GNUPGHOME="$work/gnupg"
mkdir -m 0700 "$GNUPGHOME"
gpg --batch --quiet --passphrase '' --quick-gen-key 'gpu_stack toolkit repo double <double@invalid>' ed25519 sign never 2>/dev/null
gpg --batch --quiet --yes --armor --export > gpgkey
gpg --batch --quiet --yes --clearsign -o InRelease Release
echo "$out"
