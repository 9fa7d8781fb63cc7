#!/usr/bin/env bash
# Make a local Debian base image for the Dockerfile's BASE_IMAGE build arg.
#
# No container registry is reachable on these machines, so the base is bootstrapped from the Debian
# mirror this host's apt already uses (same release as the host), then imported into podman.
# Cached: does nothing when the image exists (FORCE=1 rebuilds).
#
# Usage: scripts/base_image.sh [IMAGE]     default IMAGE: localhost/batglitch-base:<host codename>
# Env:   SUITE (default: trixie, whose Python 3.13 the project needs; the host is bookworm), MIRROR (default: from the host's apt sources), FORCE=1
set -euo pipefail

# shellcheck source=/dev/null
. /etc/os-release
SUITE=${SUITE:-trixie}
IMAGE=${1:-localhost/batglitch-base:$SUITE}

# The first apt source that serves $SUITE, from deb822 (*.sources) or one-line (*.list) files.
host_mirror() {
    local f suite=${1:-$SUITE}
    for f in /etc/apt/sources.list.d/*.sources; do
        [[ -f $f ]] || continue
        awk -v suite="$suite" 'BEGIN { RS = "" }
            {
                uri = ""; hit = 0; key = ""
                for (i = 1; i <= NF; i++) {
                    if ($i ~ /:$/) { key = $i; continue }
                    if (key == "URIs:" && uri == "") uri = $i
                    if (key == "Suites:" && $i == suite) hit = 1
                }
                if (hit && uri != "") { print uri; exit }
            }' "$f"
    done
    for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
        [[ -f $f ]] || continue
        awk -v suite="$suite" '$1 == "deb" { sub(/ \[[^]]*\]/, ""); if ($3 == suite) { print $2; exit } }' "$f"
    done
}

if [[ -z ${FORCE:-} ]] && podman image exists "$IMAGE"; then
    echo "base image $IMAGE exists (FORCE=1 to rebuild)"
    exit 0
fi

# The host's own mirror serves newer suites too (DESIGN.md: trixie from the same mirror).
MIRROR=${MIRROR:-$( (host_mirror; host_mirror "$VERSION_CODENAME") | head -n 1)}
if [[ -z $MIRROR ]]; then
    echo "no apt source for suite '$SUITE' on this host; set MIRROR" >&2
    exit 1
fi

rootfs=$(mktemp -d /var/tmp/batglitch-rootfs.XXXXXX)
trap 'rm -rf --one-file-system "$rootfs"' EXIT

start=$(date +%s)
# minbase + only what a Python app needs; Recommends (compilers, python3-dev) are not pulled in.
debootstrap --variant=minbase --include=python3,python3-venv,python3-pip,ca-certificates \
    "$SUITE" "$rootfs" "$MIRROR"

# Size: package caches, indexes, docs and man pages are useless in an image.
chroot "$rootfs" apt-get clean
rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/usr/share/doc/* "$rootfs"/usr/share/man/* \
    "$rootfs"/usr/share/info/* "$rootfs"/var/cache/debconf/*-old "$rootfs"/var/log/*.log

tar --numeric-owner -C "$rootfs" -c . |
    podman import --change 'ENV LANG=C.UTF-8' --change 'CMD ["/bin/bash"]' - "$IMAGE"
echo "base image $IMAGE built in $(($(date +%s) - start)) s"
