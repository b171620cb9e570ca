#!/usr/bin/env bash
# Proves the README's claim "from nothing": clones this repository (its committed HEAD) into a minimal
# Debian 12 chroot made by debootstrap and runs `make test` there as root. Not part of CI (it downloads
# a base system); run it by hand before claiming a fresh-machine result.
#   bash .ci/fresh-debian.sh [CHROOT_DIR]      (default /srv/deb12; created if missing)
set -euo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd)
ROOTFS=${1:-/srv/deb12}
command -v debootstrap >/dev/null || apt-get install -y -qq debootstrap
[ -x "$ROOTFS/bin/bash" ] || debootstrap --variant=minbase bookworm "$ROOTFS" http://deb.debian.org/debian
cp /etc/resolv.conf "$ROOTFS/etc/resolv.conf"
# The host's locally added CAs (an egress proxy's, say) are part of what a new machine here trusts.
mkdir -p "$ROOTFS/usr/local/share/ca-certificates"
cp /usr/local/share/ca-certificates/*.crt "$ROOTFS/usr/local/share/ca-certificates/" 2>/dev/null || true
rm -rf "$ROOTFS/work"
mkdir -p "$ROOTFS/work"
git clone -q "$REPO" "$ROOTFS/work/main"
[ -d "$REPO/../shared" ] && cp -r "$REPO/../shared" "$ROOTFS/work/shared"
mountpoint -q "$ROOTFS/proc" || mount -t proc proc "$ROOTFS/proc"
mountpoint -q "$ROOTFS/dev" || mount --bind /dev "$ROOTFS/dev"
trap 'umount "$ROOTFS/dev" "$ROOTFS/proc" 2>/dev/null || true' EXIT
# Only apt (for make deps) is assumed; make itself is the first thing a newcomer installs.
chroot "$ROOTFS" /bin/bash -c 'export DEBIAN_FRONTEND=noninteractive PATH=/usr/sbin:/usr/bin:/sbin:/bin;
    export NODE_EXTRA_CA_CERTS=/etc/ssl/certs/ca-certificates.crt;
    apt-get update -qq && apt-get install -y -qq make ca-certificates >/dev/null && update-ca-certificates >/dev/null &&
    cd /work/main && make test'
