#!/usr/bin/env bash
# Installs everything meow-rl needs on Debian bookworm, toolchain included, from Debian's packages.
# Idempotent: when every package is present it only checks (about a second) and installs nothing.
# Runs apt-get as root, or through sudo when started as another user.
set -euo pipefail

PACKAGES=(
  # toolchain
  g++ make cmake ninja-build ccache pkg-config ca-certificates
  # libraries (see CMakeLists.txt)
  libtorch-dev libopenblas0-pthread
  libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler
  libabsl-dev libgtest-dev libgmock-dev libbenchmark-dev
  libmujoco-dev libqhull-dev libcpp-httplib-dev
  # datasets: HDF5 files in the D4RL layout (meow dataset, meow train --offline)
  libhdf5-dev
  # MuJoCo's CMake config calls find_dependency(OpenGL) (and names libqhull_r's headers) without
  # depending on these packages.
  libgl-dev libopengl-dev libglx-dev
  # videos: MuJoCo's renderer on a headless EGL context (Mesa's software driver), H.264 through an
  # ffmpeg child process (ffprobe checks the files in the tests)
  libegl-dev libegl-mesa0 libgl1-mesa-dri ffmpeg
  # the report test loads `meow report` pages in headless Chromium; the TLS tests make
  # certificates with openssl; the fault drills make their hosts with `ip netns`; clang checks the
  # lock annotations (tests/thread_safety)
  chromium openssl iproute2 clang
  # the dataset test checks that Python's h5py reads our HDF5 files as D4RL users do
  python3-h5py
  # the Slurm test runs a real controller and two nodes on this machine (tests/deploy/slurm_test.sh)
  munge slurm-wlm
)
# `MEOW_SETUP=build` (the container image's build stage): only what building `meow` needs.
if [[ "${MEOW_SETUP:-all}" == build ]]; then
  PACKAGES=("${PACKAGES[@]/chromium}")
  PACKAGES=("${PACKAGES[@]/openssl}")
  PACKAGES=("${PACKAGES[@]/iproute2}")
  PACKAGES=("${PACKAGES[@]/clang}")
  PACKAGES=("${PACKAGES[@]/munge}")
  PACKAGES=("${PACKAGES[@]/slurm-wlm}")
  PACKAGES=("${PACKAGES[@]/libgtest-dev}")
  PACKAGES=("${PACKAGES[@]/libgmock-dev}")
  PACKAGES=("${PACKAGES[@]/libbenchmark-dev}")
  PACKAGES=("${PACKAGES[@]/ccache}")
  PACKAGES=("${PACKAGES[@]/ffmpeg}")
  PACKAGES=("${PACKAGES[@]/python3-h5py}")
  PACKAGES=(${PACKAGES[@]})  # drop the emptied entries
fi

# The manifest check runs on Node.js with packages from the npm registry: Debian's node and npm
# unless the machine already has them (another nodejs build may ship its own npm).
if [[ "${MEOW_SETUP:-all}" != build ]] && ! command -v npm >/dev/null; then
  PACKAGES+=(nodejs npm)
fi

missing=()
for pkg in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$pkg")
  fi
done

if ((${#missing[@]} == 0)); then
  echo "setup: all ${#PACKAGES[@]} packages present"
  exit 0
fi

SUDO=()
if [[ "$(id -u)" -ne 0 ]]; then
  command -v sudo >/dev/null || { echo "setup: run as root or install sudo" >&2; exit 1; }
  SUDO=(sudo)
fi
echo "setup: installing ${missing[*]}"
"${SUDO[@]}" apt-get update -qq
DEBIAN_FRONTEND=noninteractive "${SUDO[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
# LibTorch must find OpenBLAS, not the reference BLAS (about 7x slower).
if update-alternatives --query libblas.so.3-x86_64-linux-gnu 2>/dev/null | grep -q openblas; then
  "${SUDO[@]}" update-alternatives --set libblas.so.3-x86_64-linux-gnu \
    /usr/lib/x86_64-linux-gnu/openblas-pthread/libblas.so.3 >/dev/null || true
fi
echo "setup: done"
