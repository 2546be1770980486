#!/usr/bin/env bash
# Turns a debootstrap rootfs (argument 1) into a node that boots systemd as
# PID 1 inside an unprivileged Podman container. Part of the image recipe:
# editing it changes the image tag.
set -euo pipefail
root=$1

# Units that need real hardware or a console; in a container they only fail.
for unit in getty.target console-getty.service getty@tty1.service \
  systemd-udevd.service systemd-udevd-control.socket systemd-udevd-kernel.socket \
  systemd-udev-trigger.service systemd-udev-settle.service \
  systemd-remount-fs.service systemd-firstboot.service \
  sys-kernel-config.mount sys-kernel-debug.mount sys-kernel-tracing.mount \
  dev-hugepages.mount systemd-modules-load.service; do
  ln -sfn /dev/null "$root/etc/systemd/system/$unit"
done

# nginx is there for the ingress double, which runs its own instance with its
# own config (tests/doubles/ingress_double); the package's service would take
# ports 80/443 on every node.
ln -sfn /dev/null "$root/etc/systemd/system/nginx.service"

# sshd runs only as `sshd -i` per Ansible connection (molecule/ssh-hosts.yml),
# never as a daemon on a port; it needs its privilege separation folder,
# which the masked unit would otherwise make.
ln -sfn /dev/null "$root/etc/systemd/system/ssh.service"
ln -sfn /dev/null "$root/etc/systemd/system/ssh.socket"
echo 'd /run/sshd 0755 root root -' > "$root/etc/tmpfiles.d/sshd.conf"

# Each container gets its own machine id at first boot.
: > "$root/etc/machine-id"
rm -f "$root/var/lib/dbus/machine-id"
ln -sfn /etc/machine-id "$root/var/lib/dbus/machine-id"

cat > "$root/etc/apt/sources.list" <<'LIST'
deb http://deb.debian.org/debian bookworm main
deb http://deb.debian.org/debian bookworm-updates main
deb http://deb.debian.org/debian-security bookworm-security main
LIST

# Docs and man pages are dead weight in a test node, now and for later installs.
cat > "$root/etc/dpkg/dpkg.cfg.d/01-nodoc" <<'CFG'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
CFG
find "$root/usr/share/doc" -mindepth 2 ! -name copyright ! -type d -delete 2>/dev/null || true
rm -rf "$root/usr/share/man/"* "$root/usr/share/info/"*

# An empty package list that is old: apt's cache_valid_time must see it as
# stale, or the first `apt: update_cache` in a role would be skipped.
rm -rf "$root/var/lib/apt/lists/"* "$root/var/cache/apt/"*.bin "$root/var/cache/apt/archives/"*.deb
mkdir -p "$root/var/lib/apt/lists/partial"
touch -d 2000-01-01 "$root/var/lib/apt/lists"
rm -rf "$root/tmp/"* "$root/var/log/"*.log
