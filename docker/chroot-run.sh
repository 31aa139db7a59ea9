#!/usr/bin/env bash
# Run a program of a built image where no container can be started (no Docker daemon, and an OCI
# runtime that refuses to run): the image is mounted (`podman image mount`, left mounted: undo it
# with `podman image unmount IMAGE`), and the program runs chrooted into it in a private mount
# namespace holding /proc, /dev and /sys, as the image's user, in its working folder, with its
# environment (plus the host's FFKIT_* variables). Needs root.
#
#   docker/chroot-run.sh [--bind HOST_DIR:IMAGE_DIR]... [--root] IMAGE [PROGRAM ARGS...]
#
# --bind mounts a host folder on a folder the image has (e.g. a writable /tmp); --root runs as
# root instead of the image's user. The program replaces this script (same process id), so a
# signal sent to it reaches the program. Without PROGRAM: the image's entrypoint and command.
set -euo pipefail
binds=()
as_root=0
while [ $# -gt 0 ]; do
  case "$1" in
    --bind) binds+=("${2:?--bind needs HOST_DIR:IMAGE_DIR}"); shift 2 ;;
    --root) as_root=1; shift ;;
    -h|--help) sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) break ;;
  esac
done
image="${1:?usage: docker/chroot-run.sh [--bind HOST_DIR:IMAGE_DIR]... [--root] IMAGE [PROGRAM ARGS...]}"
shift
command -v podman >/dev/null || { echo "error: needs podman" >&2; exit 2; }
[ "$(id -u)" = 0 ] || { echo "error: needs root (mount, chroot)" >&2; exit 2; }
podman image inspect "$image" >/dev/null 2>&1 || { echo "error: no image $image (podman images)" >&2; exit 2; }

root="$(podman image mount "$image")"
fmt() { podman image inspect --format "$1" "$image"; }
mapfile -t envs < <(fmt '{{range .Config.Env}}{{println .}}{{end}}' | sed '/^$/d')
while IFS='=' read -r name _; do
  [ -z "$name" ] || envs+=("$name=${!name}")
done < <(env | grep '^FFKIT_' || true)
workdir="$(fmt '{{.Config.WorkingDir}}')"
user="$(fmt '{{.Config.User}}')"
if [ $# -eq 0 ]; then
  mapfile -t argv < <(fmt '{{range .Config.Entrypoint}}{{println .}}{{end}}{{range .Config.Cmd}}{{println .}}{{end}}' | sed '/^$/d')
  set -- "${argv[@]}"
fi
spec=0:0
if [ "$as_root" = 0 ] && [ -n "$user" ]; then
  name="${user%%:*}"
  spec="$(awk -F: -v u="$name" '$1 == u || $3 == u {print $3 ":" $4; exit}' "$root/etc/passwd")"
  [ -n "$spec" ] || { echo "error: user $user is not in the image's /etc/passwd" >&2; exit 2; }
fi

mounts="mount --rbind /proc '$root/proc' && mount --rbind /dev '$root/dev' && mount --rbind /sys '$root/sys'"
for b in "${binds[@]}"; do
  mounts+=" && mount --bind '${b%%:*}' '$root/${b#*:}'"
done
exec unshare --mount --propagation private -- bash -c "$mounts && exec chroot --userspec='$spec' '$root' \
  /usr/bin/env -i -C '${workdir:-/}' \"\$@\"" chroot-run "${envs[@]}" "$@"
