#!/usr/bin/env bash
# Downloads into .devdebs/ (git-ignored) the Debian bookworm packages that tests/gpu/run.sh unpacks
# on the lent GPU machine, which has CMake, ninja, g++, CUDA and PyTorch but none of the project's
# other dependencies and no package registry. Runs on a Debian bookworm machine with apt (this
# project's own machines), in any folder of the repository:
#   bash tests/gpu/fetch_debs.sh            # --update runs apt-get update first (as root)
# Then checks that every shared library a downloaded program or library needs is either in the
# set or one that any Ubuntu/Debian-like image has (ASSUMED below), and prints the size of what
# travels to that machine (at most 64 MiB with the working tree).
set -euo pipefail
cd "$(dirname "$0")/../.."

PACKAGES=(
  # abseil: headers, CMake config, shared libraries
  libabsl-dev libabsl20220623
  # protobuf: headers and library; protoc and its library generate code during the build
  libprotobuf-dev libprotobuf32 protobuf-compiler libprotoc32
  # gRPC: headers, CMake config, libraries, grpc_cpp_plugin (gRPC's CMake config also checks that
  # the php/python/ruby plugins beside it exist: the same package)
  libgrpc++-dev libgrpc-dev libgrpc++1.51 libgrpc29 protobuf-compiler-grpc
  # what gRPC's CMake config finds and its targets name: c-ares, RE2 (pkg-config), OpenSSL, zlib
  libc-ares-dev libc-ares2 libre2-dev libre2-9 libssl-dev libssl3 zlib1g-dev zlib1g
  # MuJoCo and the libraries libmujoco.so needs
  libmujoco-dev libmujoco2.2.2 libccd2 liblodepng0 libqhull-r8.0 libtinyxml2-9
  # cpp-httplib; its pkg-config file requires openssl, zlib and brotli's pkg-config files
  libcpp-httplib-dev libcpp-httplib0.11 libbrotli-dev libbrotli1
  # HDF5 (serial): headers, pkg-config file, the library and what it links (szip, libcurl)
  libhdf5-dev libhdf5-103-1 libsz2 libaec0 libcurl4
  # libcurl's libraries, which an image with a pip-installed CMake need not have (libunistring2:
  # Ubuntu 24.04 has only libunistring.so.5)
  libnghttp2-14 libpsl5 librtmp1 libssh2-1 libldap-2.5-0 libsasl2-2 libgssapi-krb5-2 libkrb5-3
  libk5crypto3 libkrb5support0 libkeyutils1 libcom-err2 libidn2-0 libunistring2
  # EGL for actor/render: libEGL.so and its dispatch library; <EGL/egl.h> includes
  # <KHR/khrplatform.h> (libgl-dev) and <X11/Xlib.h> (libx11-dev, x11proto-dev): headers only
  libegl-dev libegl1 libglvnd0 libgl-dev libx11-dev x11proto-dev
  # tests and benchmarks
  libgtest-dev libgmock-dev libbenchmark-dev libbenchmark1debian
  # pkg-config (CMake's FindPkgConfig needs the program: cpp-httplib, HDF5 and RE2 are found so)
  pkgconf-bin libpkgconf3
)

# Libraries the carried ones may link without carrying them: glibc's, the compiler's runtime and
# a few every Debian/Ubuntu base image has (apt links them). Newer versions there are compatible.
ASSUMED=(ld-linux-x86-64.so.2 libc.so.6 libm.so.6 libpthread.so.0 libdl.so.2 librt.so.1 libresolv.so.2
  libstdc++.so.6 libgcc_s.so.1 libzstd.so.1 libgnutls.so.30 libnettle.so.8 libhogweed.so.6 libgmp.so.10)

if [[ "${1:-}" == --update ]]; then apt-get update -qq; fi
command -v apt-get >/dev/null || { echo "fetch_debs.sh: needs apt-get (a Debian bookworm machine)" >&2; exit 2; }
mkdir -p .devdebs
rm -f .devdebs/*.deb  # exactly this set: no second version of a package
# Downloading as root: apt would otherwise warn that its sandbox user cannot write here.
sandbox=(); [[ "$(id -u)" -eq 0 ]] && sandbox=(-o APT::Sandbox::User=root)
if ! (cd .devdebs && apt-get download -q "${sandbox[@]}" "${PACKAGES[@]}"); then
  echo "fetch_debs.sh: apt-get download failed (run 'apt-get update' first, or pass --update)" >&2
  exit 1
fi
echo "fetch_debs.sh: $(find .devdebs -name '*.deb' | wc -l) packages for ${#PACKAGES[@]} names"

# The closure check: unpack into a scratch folder and read each ELF file's NEEDED entries.
if command -v readelf >/dev/null; then
  tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
  for f in .devdebs/*.deb; do dpkg-deb -x "$f" "$tmp"; done
  declare -A have=()
  for n in "${ASSUMED[@]}"; do have[$n]=1; done
  while IFS= read -r f; do have[$(basename "$f")]=1; done < <(find "$tmp" -name '*.so*' \( -type f -o -type l \))
  missing=0
  while IFS= read -r f; do
    while IFS= read -r n; do
      if [[ -z "${have[$n]:-}" ]]; then
        owner=$(dpkg -S "$n" 2>/dev/null | head -1 | cut -d: -f1 || true)
        echo "fetch_debs.sh: ${f#"$tmp"/} needs $n, which is not carried${owner:+ (Debian package $owner)}" >&2
        missing=1
      fi
    done < <(readelf -d "$f" 2>/dev/null | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p')
  done < <(find "$tmp" -type f \( -name '*.so*' -o -path '*/bin/*' \))
  ((missing == 0)) || { echo "fetch_debs.sh: add the packages named above to PACKAGES" >&2; exit 1; }
  echo "fetch_debs.sh: every shared library the carried files need is carried or in ASSUMED"
else
  echo "fetch_debs.sh: readelf not found (binutils): the closure check was skipped" >&2
fi

# What travels: tracked and untracked-not-ignored files, plus .devdebs.
debs=$(du -cb .devdebs/*.deb | tail -1 | cut -f1)
tree=$( (git ls-files -z; git ls-files -z --others --exclude-standard) | xargs -0 du -cb 2>/dev/null \
  | awk '$2 == "total" {s += $1} END {print s + 0}')
mib() { awk -v b="$1" 'BEGIN {printf "%.1f MiB", b / 1048576}'; }
echo "fetch_debs.sh: .devdebs $(mib "$debs"); with the working tree $(mib $((debs + tree))) (limit 64 MiB)"
if ((debs + tree > 64 * 1048576)); then
  echo "fetch_debs.sh: over the 64 MiB that may travel" >&2
  exit 1
fi
