#!/usr/bin/env bash
# The MEow update benchmark on a GPU machine with PyTorch (CUDA) but no package registry.
#   On a machine with Debian's archive, in the repository root (the folder is git-ignored):
#     mkdir -p .devdebs && (cd .devdebs && apt-get download libabsl-dev libabsl20220623 \
#       libbenchmark-dev libbenchmark1debian libprotobuf-dev libprotobuf32)
#   On the GPU machine, with .devdebs beside the sources:
#     bash tests/bench/gpu/run.sh [--benchmark_filter=Cuda --benchmark_repetitions=3 ...]
# Runs the CPU benchmarks and, with the GPU, BM_MeowUpdateCuda / BM_StraightforwardCuda at batch
# 256 and 1024 for Hopper and Humanoid sizes; the device's name is in the context lines.
set -euo pipefail
cd "$(dirname "$0")/../../.."
[[ -d .devdebs ]] || { echo "run.sh: .devdebs/ with the Debian packages is missing (see the comment above)" >&2; exit 2; }
mkdir -p /tmp/debs
for f in .devdebs/*.deb; do dpkg -x "$f" /tmp/debs; done
prefix=$(python3 -c 'import torch; print(torch.utils.cmake_prefix_path)')
cmake -S tests/bench/gpu -B /tmp/meow-gpu-bench -G Ninja -DCMAKE_PREFIX_PATH="$prefix" -DDEBS=/tmp/debs/usr > /dev/null
cmake --build /tmp/meow-gpu-bench -j"$(nproc)"
export LD_LIBRARY_PATH=/tmp/debs/usr/lib/x86_64-linux-gnu${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
exec /tmp/meow-gpu-bench/bench_meow_update --benchmark_min_time=2 "$@"
