#!/usr/bin/env bash
# Builds the meow image (deploy/Dockerfile) with the first builder that works here: docker (with
# a running engine), podman, or buildah; then, with --check, runs `meow help` and a short
# MultiGoal-v0 training inside it as its non-root user.
#
#   bash deploy/build_image.sh [--tag=meow-rl:dev] [--base-from-debootstrap] [--check]
#
# --base-from-debootstrap: for machines that reach Debian's archive but no image registry. Makes
#   debian:bookworm and debian:bookworm-slim locally (debootstrap --variant=minbase, then an
#   image import); needs root and the debootstrap package.
set -euo pipefail
cd "$(dirname "$0")/.."

tag=meow-rl:dev
base_from_debootstrap=0
check=0
while (($#)); do
  case "$1" in
    --tag=*) tag="${1#*=}" ;;
    --base-from-debootstrap) base_from_debootstrap=1 ;;
    --check) check=1 ;;
    *) echo "build_image.sh: unknown argument $1" >&2; exit 2 ;;
  esac
  shift
done

builder=""
if command -v docker > /dev/null && docker info > /dev/null 2>&1; then
  builder=docker
elif command -v podman > /dev/null; then
  builder=podman
elif command -v buildah > /dev/null; then
  builder=buildah
else
  echo "build_image.sh: no image builder: install docker (with its engine), podman or buildah" >&2
  echo "  (on Debian: apt-get install podman buildah)" >&2
  exit 2
fi
# Without a container engine's privileges (e.g. inside another container), build steps run in a
# chroot and images are stored as plain directories.
extra=()
if [[ "$builder" != docker ]]; then
  extra=(--storage-driver=vfs)
fi
echo "build_image.sh: building $tag with $builder"

if ((base_from_debootstrap)); then
  command -v debootstrap > /dev/null || { echo "build_image.sh: debootstrap is missing (apt-get install debootstrap)" >&2; exit 2; }
  root=$(mktemp -d /tmp/meow-base.XXXXXX)
  trap 'rm -rf "$root"' EXIT
  echo "build_image.sh: making debian:bookworm with debootstrap in $root"
  debootstrap --variant=minbase bookworm "$root" http://deb.debian.org/debian > "$root.log" 2>&1 ||
    { echo "build_image.sh: debootstrap failed; see $root.log" >&2; exit 1; }
  rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
  case "$builder" in
    docker) tar -C "$root" -c . | docker import - debian:bookworm > /dev/null ;;
    *) tar -C "$root" -c . | podman "${extra[@]}" import - docker.io/library/debian:bookworm > /dev/null ;;
  esac
  if [[ "$builder" == docker ]]; then
    docker tag debian:bookworm debian:bookworm-slim
  else
    podman "${extra[@]}" tag docker.io/library/debian:bookworm docker.io/library/debian:bookworm-slim
  fi
fi

start=$SECONDS
case "$builder" in
  docker) docker build -f deploy/Dockerfile -t "$tag" . ;;
  podman | buildah)
    pull=()
    ((base_from_debootstrap)) && pull=(--pull=never)
    buildah "${extra[@]}" bud --isolation=chroot --layers "${pull[@]}" -f deploy/Dockerfile -t "$tag" . ;;
esac
echo "build_image.sh: built $tag in $((SECONDS - start)) s"

if ((check)); then
  args=(train --env=MultiGoal-v0 --total_env_steps=2000 --learning_starts=500 --batch_size=64
        --samples_per_insert=64 --eval_interval=1000 --eval_episodes=2 --run_dir=/data/check)
  run_in_image() {
    if [[ "$builder" == docker ]]; then
      docker run --rm "$tag" "$@"
    elif podman "${extra[@]}" run --rm "$tag" help > /dev/null 2>&1; then
      podman "${extra[@]}" run --rm "$tag" "$@"
    else
      # No runtime can start containers here (e.g. rlimits or namespaces refused): run the
      # image's own userland in a chroot, as its user.
      local ctr
      ctr=$(buildah "${extra[@]}" from --pull=never "$tag")
      local rc=0
      buildah "${extra[@]}" run --isolation=chroot --user 10001 "$ctr" -- /usr/local/bin/meow "$@" || rc=$?
      buildah "${extra[@]}" rm "$ctr" > /dev/null
      return $rc
    fi
  }
  run_in_image help | head -3
  run_in_image "${args[@]}" | tail -2
  echo "build_image.sh: $tag runs: meow help and a MultiGoal-v0 training finished inside it"
fi
