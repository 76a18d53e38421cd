#!/usr/bin/env bash
# The two entry points of the README, from a fresh clone on Debian bookworm:
#   bash deploy/quickstart.sh          set up, build, and train on the default task
#   bash deploy/quickstart.sh test     set up, build, and run the test suite
# Extra arguments after `train` go to `meow train` (e.g. --env=MultiGoal-v0 --seed=2);
# after `test` they go to ctest (e.g. -L unit). BUILD_DIR overrides the build folder.
set -euo pipefail
cd "$(dirname "$0")/.."
mode="${1:-train}"
shift || true
build="${BUILD_DIR:-build}"

bash deploy/setup.sh
cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$build" -j "$(nproc)"

case "$mode" in
  train)
    exec "$build/learner/meow" train "$@"
    ;;
  test)
    # The manifest check's schema packages (pinned by package-lock.json).
    npm ci --prefix deploy/k8s/validate --no-audit --no-fund --loglevel=error
    # Tests run one at a time so that timing-sensitive ones never share the 2 cores. Without
    # arguments everything but the long learning runs (label `long`: ctest -L long) runs.
    if [ "$#" -eq 0 ]; then set -- -LE long; fi
    exec ctest --test-dir "$build" --output-on-failure --timeout 900 "$@"
    ;;
  *)
    echo "usage: bash deploy/quickstart.sh [train|test] [args...]" >&2
    exit 2
    ;;
esac
