#!/usr/bin/env bash
# Runs the multi-process layout on one machine: `meow replay`, `meow learner`, N `meow actor`s and
# `meow eval --learner`, each its own process on 127.0.0.1, with logs in RUN_DIR/logs/. Waits until
# the learner finishes (actors and the evaluator exit on their own), then stops replay. Ctrl-C
# stops everything cleanly (replay writes its snapshot, the learner its checkpoint); running the
# same command again resumes.
#
#   bash deploy/launch_local.sh [--actors=N] [--run_dir=DIR] [--meow=PATH] [-- flags for every process]
#   bash deploy/launch_local.sh --actors=4 -- --env=Hopper-v4 --total_env_steps=200000
set -euo pipefail
cd "$(dirname "$0")/.."

actors=2
run_dir=""
meow=build/learner/meow
replay_port=${MEOW_REPLAY_PORT:-7777}
learner_port=${MEOW_LEARNER_PORT:-7778}
while (($#)); do
  case "$1" in
    --actors=*) actors="${1#*=}" ;;
    --run_dir=*) run_dir="${1#*=}" ;;
    --meow=*) meow="${1#*=}" ;;
    --) shift; break ;;
    *) echo "launch_local.sh: unknown argument $1 (flags for meow go after --)" >&2; exit 2 ;;
  esac
  shift
done
common=("$@")
[[ "$actors" =~ ^[1-9][0-9]*$ ]] || { echo "launch_local.sh: --actors=$actors: expected a positive number" >&2; exit 2; }
[[ -x "$meow" ]] || { echo "launch_local.sh: $meow not found: build first (cmake --build build)" >&2; exit 2; }
run_dir="${run_dir:-runs/local-$(date +%Y%m%d-%H%M%S)}"
mkdir -p "$run_dir/logs"
replay="127.0.0.1:$replay_port"
learner="127.0.0.1:$learner_port"

pids=()
stop_all() {
  trap - INT TERM
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  wait || true
}
trap 'echo "launch_local.sh: stopping"; stop_all; exit 130' INT TERM

"$meow" replay --address="$replay" --replay_dir="$run_dir/replay" --samples_per_insert="${MEOW_SAMPLES_PER_INSERT:-256}" \
  --min_replay_size="${MEOW_MIN_REPLAY_SIZE:-5000}" "${common[@]}" > "$run_dir/logs/replay.log" 2>&1 &
replay_pid=$!
pids+=("$replay_pid")
"$meow" learner --replay="$replay" --address="$learner" --run_dir="$run_dir" "${common[@]}" \
  > "$run_dir/logs/learner.log" 2>&1 &
learner_pid=$!
pids+=("$learner_pid")
for ((i = 0; i < actors; i++)); do
  "$meow" actor --replay="$replay" --learner="$learner" --actor_id="$i" "${common[@]}" \
    > "$run_dir/logs/actor$i.log" 2>&1 &
  pids+=("$!")
done
"$meow" eval --learner="$learner" "${common[@]}" > "$run_dir/logs/eval.log" 2>&1 &
pids+=("$!")
echo "launch_local.sh: replay $replay, learner $learner, $actors actors, evaluator; logs in $run_dir/logs"

status=0
wait "$learner_pid" || status=$?
for pid in "${pids[@]:2}"; do wait "$pid" || status=$((status == 0 ? $? : status)); done
kill -TERM "$replay_pid" 2>/dev/null || true
wait "$replay_pid" || true
tail -n 2 "$run_dir/logs/learner.log"
exit "$status"
