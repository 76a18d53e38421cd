#!/usr/bin/env bash
# Does local mode learn like the reference loop? MultiGoal-v0 with the paper's toy settings, seeds
# FIRST..LAST, each trained through `meow train` (local mode, defaults) and `meow train --sync`
# (the single-threaded reference loop), then measured the same way as the learning tests: 100
# stochastic rollouts of 50 steps from the origin with the final weights (meow eval). A seed
# counts when every goal ends a rollout and at least 75 rollouts end at a goal.
#   bash tests/learning/multigoal_parity.sh [FIRST [LAST [OUT_DIR]]] [-- extra meow train flags]
# Prints one line per run and a summary per mode; run dirs go to OUT_DIR (default runs/parity).
# MODES="local" (or "sync") runs one mode only; the single-threaded loop is deterministic, so its
# lines from an earlier run of the same binary version still stand.
set -euo pipefail
cd "$(dirname "$0")/../.."
first="${1:-1}"; last="${2:-10}"; out="${3:-runs/parity}"
shift $(( $# < 3 ? $# : 3 )) || true
[ "${1:-}" = "--" ] && shift
meow="${MEOW:-build/learner/meow}"
mkdir -p "$out"
summary="$out/summary.txt"
: > "$summary"
for seed in $(seq "$first" "$last"); do
  for mode in ${MODES:-local sync}; do
    dir="$out/$mode-seed$seed"
    rm -rf "$dir"
    flags=(--env=MultiGoal-v0 --seed="$seed" --run_dir="$dir" "$@")
    [ "$mode" = sync ] && flags+=(--sync)
    start=$(date +%s)
    "$meow" train "${flags[@]}" > "$dir.log" 2>&1 || { echo "train failed: see $dir.log" >&2; exit 1; }
    seconds=$(( $(date +%s) - start ))
    goals=$("$meow" eval --policy="$dir/policy_latest.safetensors" --env=MultiGoal-v0 --stochastic \
              --episodes=100 --max_steps=50 --seed=1000 | grep '^goals reached')
    # goals reached: (+5,0) A, (-5,0) B, (0,+5) C, (0,-5) D; unfinished U of 100
    read -r a b c d u <<< "$(echo "$goals" | sed -E 's/.*\(\+5,0\) ([0-9]+), \(-5,0\) ([0-9]+), \(0,\+5\) ([0-9]+), \(0,-5\) ([0-9]+); unfinished ([0-9]+).*/\1 \2 \3 \4 \5/')"
    n=0; for g in $a $b $c $d; do [ "$g" -gt 0 ] && n=$((n + 1)); done
    all=0; [ "$n" -eq 4 ] && [ $((100 - u)) -ge 75 ] && all=1
    printf '%-5s seed %3d: goals %d (%s/%s/%s/%s), unfinished %3d, all four %s, %d s\n' \
      "$mode" "$seed" "$n" "$a" "$b" "$c" "$d" "$u" "$([ $all = 1 ] && echo yes || echo no)" "$seconds" | tee -a "$summary"
  done
done
for mode in ${MODES:-local sync}; do
  awk -v m="$mode" '$1 == m {
      n++; goals += $5; unfinished += $8; if ($11 == "yes,") all++
    }
    END { if (n) printf "%-5s: all four goals in %d of %d seeds, %.2f goals per seed, %.1f unfinished rollouts per seed\n", m, all, n, goals / n, unfinished / n }' "$summary"
done
