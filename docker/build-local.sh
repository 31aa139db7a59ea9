#!/usr/bin/env bash
# Build the repository's Dockerfile (ffkit serve with pre-optimised models) on a machine with
# podman or docker, even one that cannot pull the official Python base image.
#
#   docker/build-local.sh -t ffkit-serve -c CHECKPOINTS_DIR \
#     --build-arg BUILDS="retinaface_resnet50=Resnet50_Final.pth ..." --build-arg EMAP=inswapper_128.onnx
#
# --base-only: only make (or find) the base. Every other argument goes to `podman build` / `docker build`
# as it is (--build-arg ..., --no-cache, ...).
#
# The engine: $FFKIT_ENGINE (podman | docker) when set, else docker when its daemon answers,
# else podman (installed with apt-get when missing and this is root on Debian/Ubuntu).
#
# The base: $PYTHON_IMAGE when set; else python:3.11-slim when present or pullable; else a local
# base made once from Debian's packages and cached (rebuilt only when missing; FFKIT_REBUILD_BASE=1
# rebuilds it): `debootstrap --variant=minbase bookworm` imported as localhost/debian-min:bookworm,
# then python3.11 + python3-venv with a venv first on PATH (localhost/ffkit-python:3.11-bookworm),
# so `python` and `pip` behave as in the official image. When this machine's pip is configured
# (`pip config list`: a CA bundle, find-links folders, file:// indexes), those paths are mounted
# read-only into the build and named by PIP_CERT / PIP_FIND_LINKS / PIP_EXTRA_INDEX_URL in the local
# base, so pip in the build sees what pip on the host sees (podman only).
#
# FFKIT_DOCKER_CACHE: where the rootfs is made (default /var/tmp/ffkit-docker).
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
repo="$(dirname "$here")"
tag="ffkit-serve"
checkpoints=""
base_only=0
passthrough=()
while [ $# -gt 0 ]; do
  case "$1" in
    -t|--tag) tag="${2:?-t needs a name}"; shift 2 ;;
    -c|--checkpoints) checkpoints="${2:?-c needs a folder}"; shift 2 ;;
    --base-only) base_only=1; shift ;;
    -h|--help) sed -n '2,24p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) passthrough+=("$1"); shift ;;
  esac
done
if [ "$base_only" = 0 ]; then
  if [ -z "$checkpoints" ] || [ ! -d "$checkpoints" ]; then
    echo "error: give -c CHECKPOINTS_DIR (an existing folder holding the checkpoints)" >&2; exit 2
  fi
  checkpoints="$(cd "$checkpoints" && pwd)"
fi
cache="${FFKIT_DOCKER_CACHE:-/var/tmp/ffkit-docker}"
official="python:3.11-slim"
debian_base="localhost/debian-min:bookworm"
local_base="localhost/ffkit-python:3.11-bookworm"

say() { echo "[build-local $(date +%H:%M:%S)] $*" >&2; }

apt_install() {   # install Debian packages when we may (root with apt-get); else say what is missing
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    say "installing $*"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
  else
    echo "error: needs $* (install them, or run as root on Debian/Ubuntu)" >&2; exit 2
  fi
}

engine="${FFKIT_ENGINE:-}"
if [ -z "$engine" ]; then
  if command -v docker >/dev/null && timeout 20 docker info >/dev/null 2>&1; then engine=docker
  else engine=podman; fi
fi
case "$engine" in
  podman) command -v podman >/dev/null || apt_install podman ;;
  docker) ;;
  *) echo "error: FFKIT_ENGINE must be podman or docker, not '$engine'" >&2; exit 2 ;;
esac

[ "$engine" != podman ] || official="docker.io/library/python:3.11-slim"   # no short-name lookup

have_image() { "$engine" image inspect "$1" >/dev/null 2>&1; }

# pip's configuration on this machine, as paths to mount and the values to give pip in the build.
pip_mounts=()
pip_env=()
pip_config() {
  local cfg cert links index dir
  cfg="$(python3 -m pip config list 2>/dev/null || pip config list 2>/dev/null || true)"
  get() { printf '%s\n' "$cfg" | sed -n "s/^[^.]*\.$1='\(.*\)'\$/\1/p" | tail -n 1; }
  cert="${PIP_CERT:-$(get cert)}"
  links="${PIP_FIND_LINKS:-$(get find-links)}"
  index="${PIP_EXTRA_INDEX_URL:-$(get extra-index-url)}"
  if [ -n "$cert" ] && [ -f "$cert" ]; then
    pip_mounts+=("--volume" "$cert:/run/ffkit-pip/ca.crt:ro"); pip_env+=("PIP_CERT=/run/ffkit-pip/ca.crt")
  fi
  local kept=()
  for dir in $links; do
    dir="${dir#file://}"
    if [ -d "$dir" ]; then pip_mounts+=("--volume" "$dir:$dir:ro"); kept+=("$dir"); fi
  done
  [ ${#kept[@]} -eq 0 ] || pip_env+=("PIP_FIND_LINKS=${kept[*]}")
  kept=()
  for dir in $index; do
    case "$dir" in
      file://*)   # a local index: mount the folder above it (its links may point beside it)
        dir="${dir#file://}"; dir="${dir%/}"
        if [ -d "$dir" ]; then pip_mounts+=("--volume" "$(dirname "$dir"):$(dirname "$dir"):ro"); kept+=("file://$dir"); fi ;;
      *) kept+=("$dir") ;;
    esac
  done
  [ ${#kept[@]} -eq 0 ] || pip_env+=("PIP_EXTRA_INDEX_URL=${kept[*]}")
}

make_local_base() {
  if [ "${FFKIT_REBUILD_BASE:-0}" = 1 ] || ! have_image "$debian_base"; then
    command -v debootstrap >/dev/null || apt_install debootstrap
    local rootfs="$cache/rootfs-bookworm"
    rm -rf "$rootfs"; mkdir -p "$cache"
    say "debootstrap --variant=minbase bookworm (a few minutes)"
    debootstrap --variant=minbase bookworm "$rootfs" ${DEBIAN_MIRROR:+"$DEBIAN_MIRROR"} >"$cache/debootstrap.log" 2>&1 \
      || { tail -n 20 "$cache/debootstrap.log" >&2; echo "error: debootstrap failed (log: $cache/debootstrap.log)" >&2; exit 1; }
    rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
    say "importing the rootfs as $debian_base"
    tar -C "$rootfs" -c . | "$engine" import - "$debian_base" >/dev/null
    rm -rf "$rootfs"
  fi
  if [ "${FFKIT_REBUILD_BASE:-0}" = 1 ] || ! have_image "$local_base"; then
    local ctx; ctx="$(mktemp -d)"
    {
      echo "FROM $debian_base"
      local kv
      for kv in "${pip_env[@]}"; do echo "ENV ${kv%%=*}=\"${kv#*=}\""; done
      echo "RUN apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \\"
      echo "      python3.11 python3-venv ca-certificates >/dev/null && rm -rf /var/lib/apt/lists/* \\"
      echo " && python3.11 -m venv /opt/venv && /opt/venv/bin/pip install --no-cache-dir -q --upgrade pip"
      echo "ENV PATH=/opt/venv/bin:\$PATH LANG=C.UTF-8 PYTHONUNBUFFERED=1"
      echo 'CMD ["python3"]'
    } >"$ctx/Containerfile"
    say "building $local_base (python3.11 + venv on the Debian base)"
    build_args=()
    [ "$engine" = podman ] && build_args+=(--isolation chroot "${pip_mounts[@]}")
    "$engine" build "${build_args[@]}" -t "$local_base" -f "$ctx/Containerfile" "$ctx" >&2
    rm -rf "$ctx"
  fi
}

# (docker build cannot mount host folders into RUN steps: there pip uses its own defaults)
if [ "$engine" = podman ]; then pip_config; fi
base="${PYTHON_IMAGE:-}"
if [ -z "$base" ]; then
  if have_image "$official"; then base="$official"
  elif have_image "$local_base" && [ "${FFKIT_REBUILD_BASE:-0}" != 1 ]; then base="$local_base"
  elif [ "${FFKIT_LOCAL_BASE:-0}" != 1 ] && timeout 90 "$engine" pull -q "$official" >/dev/null 2>&1; then base="$official"
  else say "$official cannot be pulled: making a local base"; make_local_base; base="$local_base"; fi
fi
say "engine $engine, base $base"
[ "$base_only" = 0 ] || exit 0

cmd=("$engine" build -t "$tag" -f "$repo/Dockerfile" --build-context "checkpoints=$checkpoints"
     --build-arg "PYTHON_IMAGE=$base")
if [ "$engine" = podman ]; then
  # chroot isolation (no OCI runtime needed); docker format keeps HEALTHCHECK and STOPSIGNAL
  cmd+=(--isolation chroot --format docker --layers)
  [ "$base" != "$local_base" ] || cmd+=("${pip_mounts[@]}")
fi
# the checkpoints' digest, so that a layer cache not keyed on the mounted files still rebuilds the models
say "hashing the checkpoints"
digest="$(cd "$checkpoints" && find . -type f -print0 | LC_ALL=C sort -z | xargs -0r sha256sum | sha256sum | cut -c1-16)"
cmd+=(--build-arg "CHECKPOINTS_DIGEST=$digest")
start=$(date +%s)
"${cmd[@]}" "${passthrough[@]}" "$repo"
say "built $tag in $(( $(date +%s) - start )) s"
