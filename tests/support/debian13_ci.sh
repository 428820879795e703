#!/usr/bin/env bash
# Run scripts/test.sh on a fresh Debian 13 "machine": a container of the debootstrap'd trixie
# rootfs (tests/support/debian13.py makes it), nothing else installed, the repository copied in.
#
#   bash tests/support/debian13_ci.sh [pytest arguments...]     (default: tests/unit -q)
#
# Needs the rootfs image (python3 -m tests.support.debian13 builds it). The container runs
# unprivileged with the capability flags of TESTENV.md, /var/lib/docker on a volume of its own;
# both are removed at the end. What a container cannot show: systemd, a real kernel/cgroup
# set-up of its own (the cgroup and /sys remounts below stand in for a machine's), AppArmor.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
DOCKER="${DOCKER:-/usr/bin/docker}"
ROOTFS="$(cd "$ROOT" && python3 -c 'from tests.support.debian13 import rootfs_tag; print(rootfs_tag())')"
# The container's apt sources: trixie from this machine's own mirrors (tests/support/aptsources.py).
SOURCES="$(cd "$ROOT" && python3 -c 'from tests.support import debian13; print(debian13.sources_text(debian13.mirrors()))')"
NAME="ik-d13ci-$(head -c4 /dev/urandom | od -An -tx1 | tr -d ' \n')"
VOLUME="$NAME-docker"
(($# > 0)) || set -- tests/unit -q

cleanup() {
    "$DOCKER" rm -f -v "$NAME" >/dev/null 2>&1 || true
    "$DOCKER" volume rm -f "$VOLUME" >/dev/null 2>&1 || true
}
trap cleanup EXIT

# This machine's network set-up, not the project's: a TLS-intercepting network's CA bundle and
# pip constraints, which a CI machine of this kind has as well.
MACHINE=()
if [[ -r /etc/ssl/certs/ca-certificates.crt ]]; then
    MACHINE+=(-v /etc/ssl/certs/ca-certificates.crt:/etc/imagekit-host/ca.crt:ro)
    MACHINE+=(-e PIP_CERT=/etc/imagekit-host/ca.crt)
fi
if [[ -r /etc/xdg/pip/constraints.txt ]]; then
    MACHINE+=(-v /etc/xdg/pip/constraints.txt:/etc/imagekit-host/constraints.txt:ro)
    MACHINE+=(-e PIP_CONSTRAINT=/etc/imagekit-host/constraints.txt)
fi

"$DOCKER" image inspect "$ROOTFS" >/dev/null
"$DOCKER" volume create "$VOLUME" >/dev/null
"$DOCKER" run -d --name "$NAME" \
    --cap-add ALL --cap-drop SYS_RESOURCE --device-cgroup-rule 'a *:* rwm' \
    --security-opt seccomp=unconfined --security-opt apparmor=unconfined \
    --security-opt systempaths=unconfined \
    "${MACHINE[@]}" -v "$VOLUME:/var/lib/docker" "$ROOTFS" sleep infinity >/dev/null

# What a machine has and a container has not: writable /sys and cgroups, the usual sources.
"$DOCKER" exec -i "$NAME" sh -s <<'EOF'
mount -t securityfs securityfs /sys/kernel/security 2>/dev/null || true
mount -o remount,rw /sys 2>/dev/null || true
for dir in /sys/fs/cgroup /sys/fs/cgroup/*; do
    grep -q " $dir .*\bro\b" /proc/self/mountinfo && mount -o remount,bind,rw "$dir" 2>/dev/null
done
rm -f /etc/apt/sources.list
true
EOF
printf '%s\n' "$SOURCES" | "$DOCKER" exec -i "$NAME" sh -c 'cat >/etc/apt/sources.list.d/debian.sources'
git -C "$ROOT" ls-files -z | tar -C "$ROOT" --null -T - -c | "$DOCKER" exec -i "$NAME" sh -c 'mkdir -p /src && tar -x -C /src'

started=$SECONDS
status=0
"$DOCKER" exec -e CI=true -w /src "$NAME" bash scripts/test.sh "$@" || status=$?
echo "[debian13_ci] scripts/test.sh $* exited $status after $((SECONDS - started)) s" >&2
exit "$status"
