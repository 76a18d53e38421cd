#!/usr/bin/env bash
# Does local mode learn like the reference loop on a MuJoCo task? Hopper-v4 with the paper's
# hyperparameters to 100k environment steps, seeds FIRST..LAST, each seed trained through
# `meow train` (local mode, defaults) and `meow train --sync` side by side (one pair at a time on a
# 2-core machine), then the evaluations of each run printed from its metrics.csv (10 deterministic
# episodes every 10k steps; the last one uses the final weights).
#   bash tests/learning/hopper_parity.sh [FIRST [LAST [OUT_DIR]]] [-- extra flags for local mode]
# About 25-30 minutes a pair on 2 cores. Run dirs go to OUT_DIR (default runs/hopper-parity).
set -euo pipefail
cd "$(dirname "$0")/../.."
first="${1:-1}"; last="${2:-3}"; out="${3:-runs/hopper-parity}"
shift $(( $# < 3 ? $# : 3 )) || true
[ "${1:-}" = "--" ] && shift
meow="${MEOW:-build/learner/meow}"
steps="${STEPS:-100000}"
mkdir -p "$out"
for seed in $(seq "$first" "$last"); do
  pids=()
  for mode in local sync; do
    dir="$out/$mode-seed$seed"
    rm -rf "$dir"
    flags=(--env=Hopper-v4 --total_env_steps="$steps" --seed="$seed" --run_dir="$dir")
    # Two runs share the 2 cores: one learner thread each (local mode's own split would give it
    # both cores).
    if [ "$mode" = sync ]; then flags+=(--sync); else flags+=(--learner_threads=1 "$@"); fi
    "$meow" train "${flags[@]}" > "$dir.log" 2>&1 &
    pids+=($!)
  done
  for pid in "${pids[@]}"; do wait "$pid" || { echo "a run failed: see $out/*-seed$seed.log" >&2; exit 1; }; done
done
# One line per run: the evaluation return at every 10k steps (the final weights last).
summary="$out/summary.txt"
: > "$summary"
for mode in local sync; do
  for seed in $(seq "$first" "$last"); do
    awk -F, -v name="$mode seed $seed" '
      NR == 1 { for (i = 1; i <= NF; i++) col[$i] = i; next }
      $col["eval_return_mean"] != "" && $col["eval_return_mean"] != "nan" {
        step = $col["env_steps"]; e = $col["eval_return_mean"]
        if (e != last_e || step - last_step >= 10000) { line = line sprintf(" %dk:%.0f", step / 1000, e); last_step = step }
        last_e = e; final = e
      }
      END { printf "%-14s final %6.0f |%s\n", name, final, line }' "$out/$mode-seed$seed/metrics.csv" | tee -a "$summary"
  done
done
