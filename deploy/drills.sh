#!/usr/bin/env bash
# Multi-host run and fault drills. Replay, learner, two actors and the evaluator each run on their
# own host: a network namespace with a veth pair into a shared bridge (10.77.0.0/24), so all
# traffic crosses real interfaces. Then, while training runs:
#   1. SIGKILL an actor and start it again;
#   2. SIGKILL replay and restart it from its snapshot and log;
#   3. SIGKILL the learner and restart it from its run dir;
# and after each: training goes on (updates and stored transitions grow), weight versions never
# go backwards (learner and actors, polled all along), and replay's counters show every
# acknowledged batch stored exactly once (inserted_batches = the sum of the actors' last sequence
# numbers, and no actor's acknowledged batch is missing). Training then runs to its end and every
# process exits 0. Last, a load: `meow load` with 64 insert streams for 60 s against a fresh replay
# on its own host: no errors, replay's memory stays bounded, the rate limiter's waits reported.
#
# Where network namespaces are not permitted (not root, no CAP_NET_ADMIN), the same drills run on
# 127.0.0.1 and the script says so. Needs bash, iproute2 and a built `meow`.
#
#   bash deploy/drills.sh [--meow=PATH] [--out=DIR] [--quick] [--loopback]
#                         [--env=TASK] [--total_env_steps=N] [--load_streams=N] [--load_seconds=N]
# --quick: a short run (the test suite's): fewer steps and a 15-second load (the replay's memory
# levels off after 5-10 s of 64 streams; a 5-second load on a busy machine ended while it still grew).
set -euo pipefail
cd "$(dirname "$0")/.."

meow=build/learner/meow
out=""
env_name=Hopper-v4
total_steps=12000
load_streams=64
load_seconds=60
force_loopback=0
while (($#)); do
  case "$1" in
    --meow=*) meow="${1#*=}" ;;
    --out=*) out="${1#*=}" ;;
    --env=*) env_name="${1#*=}" ;;
    --total_env_steps=*) total_steps="${1#*=}" ;;
    --load_streams=*) load_streams="${1#*=}" ;;
    --load_seconds=*) load_seconds="${1#*=}" ;;
    --quick) total_steps=6000; load_seconds=15 ;;
    --loopback) force_loopback=1 ;;
    *) echo "drills.sh: unknown argument $1" >&2; exit 2 ;;
  esac
  shift
done
for n in "$total_steps" "$load_streams" "$load_seconds"; do
  [[ "$n" =~ ^[1-9][0-9]*$ ]] || { echo "drills.sh: expected a positive number, got \"$n\"" >&2; exit 2; }
done
[[ -x "$meow" ]] || { echo "drills.sh: $meow not found: build first (cmake --build build)" >&2; exit 2; }
meow="$(cd "$(dirname "$meow")" && pwd)/$(basename "$meow")"
out="${out:-runs/drills-$(date +%Y%m%d-%H%M%S)}"
rm -rf "$out"
mkdir -p "$out/logs"
out="$(cd "$out" && pwd)"
summary="$out/summary.txt"
: > "$summary"
say() { echo "drills: $*" | tee -a "$summary"; }
failures=0
check() {  # check NAME CONDITION-RESULT(0/1) DETAIL
  if [[ "$2" == 0 ]]; then
    say "  ok    $1 ($3)"
  else
    say "  FAIL  $1 ($3)"
    failures=$((failures + 1))
  fi
}

# --- Hosts -------------------------------------------------------------------------------------
hosts=(replay learner actor0 actor1 eval ops)
declare -A ip ns
prefix="meow$$"
netns_ok=0
if ((force_loopback == 0)) && ip netns add "${prefix}sw" 2>/dev/null; then
  netns_ok=1
fi
cleanup() {
  set +e
  for pid in $(jobs -p); do kill -KILL "$pid" 2>/dev/null; done
  wait 2>/dev/null
  if ((netns_ok)); then
    for h in "${hosts[@]}"; do ip netns del "${prefix}$h" 2>/dev/null; done
    ip netns del "${prefix}sw" 2>/dev/null
  fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

if ((netns_ok)); then
  ip -n "${prefix}sw" link add br0 type bridge
  ip -n "${prefix}sw" link set br0 up
  i=1
  for h in "${hosts[@]}"; do
    ns[$h]="${prefix}$h"
    ip[$h]="10.77.0.$i"
    ip netns add "${ns[$h]}"
    ip link add "${prefix}h$i" type veth peer name "${prefix}b$i"
    ip link set "${prefix}h$i" netns "${ns[$h]}"
    ip link set "${prefix}b$i" netns "${prefix}sw"
    ip -n "${prefix}sw" link set "${prefix}b$i" master br0 up
    ip -n "${ns[$h]}" link set "${prefix}h$i" name eth0
    ip -n "${ns[$h]}" addr add "${ip[$h]}/24" dev eth0
    ip -n "${ns[$h]}" link set eth0 up
    ip -n "${ns[$h]}" link set lo up
    i=$((i + 1))
  done
  say "hosts: ${#hosts[@]} network namespaces on a bridge, 10.77.0.0/24 ($(for h in "${hosts[@]}"; do printf '%s=%s ' "$h" "${ip[$h]}"; done))"
else
  for h in "${hosts[@]}"; do ip[$h]=127.0.0.1; ns[$h]=""; done
  if ((force_loopback)); then
    say "hosts: 127.0.0.1 (--loopback)"
  else
    say "hosts: network namespaces are not permitted here (ip netns add failed): the same drills run on 127.0.0.1"
  fi
fi
on() {  # on HOST COMMAND...: runs COMMAND on HOST
  local h=$1
  shift
  if [[ -n "${ns[$h]}" ]]; then ip netns exec "${ns[$h]}" "$@"; else "$@"; fi
}

# Ports differ per process so that loopback mode works too; pid-derived to let runs coexist.
base=$((20000 + ($$ % 2000) * 10))
replay_addr="${ip[replay]}:$base"
learner_addr="${ip[learner]}:$((base + 1))"
declare -A metrics=([replay]="${ip[replay]}:$((base + 2))" [learner]="${ip[learner]}:$((base + 3))"
                    [actor0]="${ip[actor0]}:$((base + 4))" [actor1]="${ip[actor1]}:$((base + 5))"
                    [eval]="${ip[eval]}:$((base + 6))")

# scrape PROCESS: its /metrics page, fetched from the ops host (empty when it does not answer).
scrape() {
  local hostport=${metrics[$1]}
  on ops timeout 5 bash -c "exec 3<>/dev/tcp/${hostport%:*}/${hostport#*:} &&
    printf 'GET /metrics HTTP/1.0\r\nHost: meow\r\n\r\n' >&3 && cat <&3" 2>/dev/null || true
}
# value PAGE NAME [LABELS]: one sample's value, empty if absent.
value() {
  awk -v name="$2${3:-}" '$1 == name { print $2; exit }' <<< "$1"
}
# sum_family PAGE NAME: the sum of every sample of NAME (all label values).
sum_family() {
  awk -v name="$2" 'index($1, name "{") == 1 { s += $2 } END { printf "%d\n", s }' <<< "$1"
}

# --- The processes -----------------------------------------------------------------------------
learning_starts=1000
common=(--env="$env_name")
checkpoint_interval=300
train_flags=(--total_env_steps="$total_steps" --learning_starts="$learning_starts" --eval_interval=3000
             --eval_episodes=2 --checkpoint_interval="$checkpoint_interval" --publish_interval=10 --log_interval=500
             --connect_timeout=120s)
declare -A pid
# spawn NAME HOST LOG COMMAND...: COMMAND on HOST in the background; pid[NAME] is its own pid
# (`ip netns exec` execs it), so a signal reaches the process itself.
spawn() {
  local name=$1 h=$2 log=$3
  shift 3
  if [[ -n "${ns[$h]}" ]]; then
    ip netns exec "${ns[$h]}" "$@" >> "$log" 2>&1 &
  else
    "$@" >> "$log" 2>&1 &
  fi
  pid[$name]=$!
}
start_replay() {
  spawn replay replay "$out/logs/replay.log" "$meow" replay "${common[@]}" --address="$replay_addr" \
    --replay_dir="$out/replay" --samples_per_insert=256 --min_replay_size="$learning_starts" \
    --snapshot_interval=15s --metrics_address="${metrics[replay]}"
}
start_learner() {
  spawn learner learner "$out/logs/learner.log" "$meow" learner "${common[@]}" "${train_flags[@]}" \
    --replay="$replay_addr" --address="$learner_addr" --run_dir="$out/run" --metrics_address="${metrics[learner]}"
}
start_actor() {  # start_actor N
  spawn "actor$1" "actor$1" "$out/logs/actor$1.log" "$meow" actor "${common[@]}" "${train_flags[@]}" \
    --replay="$replay_addr" --learner="$learner_addr" --actor_id="$1" --metrics_address="${metrics[actor$1]}"
}
start_eval() {
  spawn eval eval "$out/logs/eval.log" "$meow" eval "${common[@]}" "${train_flags[@]}" --learner="$learner_addr" \
    --metrics_address="${metrics[eval]}"
}

# --- Observing ---------------------------------------------------------------------------------
# From here on failures are counted and reported, not fatal.
set +e
declare -A actor_max=([actor0]=0 [actor1]=0)
learner_max=0
backwards=0
echo "seconds,source,version" > "$out/versions.csv"
t0=$(date +%s.%N)
elapsed() { awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }'; }
# Polls every version in the system; any reading below an earlier one of the same source counts.
poll_versions() {
  local page v a
  page=$(scrape learner)
  v=$(value "$page" meow_learner_version)
  if [[ -n "$v" ]]; then
    echo "$(elapsed),learner,$v" >> "$out/versions.csv"
    if ((v < learner_max)); then backwards=$((backwards + 1)); say "  learner version went from $learner_max back to $v"; fi
    ((v > learner_max)) && learner_max=$v
  fi
  for a in actor0 actor1; do
    page=$(scrape "$a")
    v=$(value "$page" meow_actor_policy_version)
    [[ -n "$v" ]] || continue
    echo "$(elapsed),$a,$v" >> "$out/versions.csv"
    if ((v < actor_max[$a])); then backwards=$((backwards + 1)); say "  $a version went from ${actor_max[$a]} back to $v"; fi
    ((v > actor_max[$a])) && actor_max[$a]=$v
  done
  return 0
}
updates() { local v; v=$(value "$(scrape learner)" meow_learner_updates_total); echo "${v:-0}"; }
stored_rows() { local v; v=$(value "$(scrape replay)" meow_replay_table_inserted_transitions); echo "${v:-0}"; }
last_seq() { local v; v=$(value "$(scrape replay)" meow_replay_table_last_sequence_number "{actor=\"$1\"}"); echo "${v:-0}"; }
acked_seq() { local v; v=$(value "$(scrape "$1")" meow_actor_acked_sequence_number); echo "${v:-0}"; }
actor_version() { local v; v=$(value "$(scrape "$1")" meow_actor_policy_version); echo "${v:-0}"; }
# wait_until DESCRIPTION SECONDS CONDITION: polls CONDITION (a bash expression) and the versions.
wait_until() {
  local deadline=$((SECONDS + $2))
  while ! eval "$3"; do
    poll_versions
    if ((SECONDS >= deadline)); then
      say "  timed out after $2 s waiting until $1"
      failures=$((failures + 1))
      return 1
    fi
    sleep 0.5
  done
  poll_versions
}
# Exactly once: replay's stored batches equal the sum of the actors' last sequence numbers
# (actors number batches 1, 2, ... without gaps, also across restarts).
check_exactly_once() {
  local page inserted sum dup
  page=$(scrape replay)
  inserted=$(value "$page" meow_replay_table_inserted_batches)
  sum=$(sum_family "$page" meow_replay_table_last_sequence_number)
  dup=$(value "$page" meow_replay_table_duplicate_batches)
  [[ -n "$inserted" && "$inserted" == "$sum" ]]
  check "exactly once" $? "replay stored ${inserted:-?} batches = sum of the actors' last sequence numbers $sum; resends acknowledged as duplicates: ${dup:-?}"
}
check_versions() {
  ((backwards == 0))
  check "versions never went back" $? "learner up to $learner_max, actors up to ${actor_max[actor0]} and ${actor_max[actor1]}; readings in versions.csv"
}

# sigkill NAME: SIGKILLs the process, reaps it, notes the time in t_kill and waits a second.
sigkill() {
  kill -KILL "${pid[$1]}"
  wait "${pid[$1]}" 2>/dev/null || true
  t_kill=$SECONDS
  sleep 1
}

# --- The run -----------------------------------------------------------------------------------
say "run: $env_name for $total_steps env steps; replay $replay_addr, learner $learner_addr; output in $out"
start_replay
start_learner
start_actor 0
start_actor 1
start_eval
wait_until "learning has started (200 updates)" 300 '(( $(updates) >= 200 ))' || exit 1
say "learning started at $(elapsed) s: $(updates) updates, $(stored_rows) transitions stored"
for p in replay learner actor0 actor1 eval; do
  if [[ "$(readlink "/proc/${pid[$p]}/exe")" != "$meow" ]]; then
    say "the $p pid ${pid[$p]} is not meow itself ($(readlink "/proc/${pid[$p]}/exe")): signals would miss it"
    exit 1
  fi
done

say "drill 1: SIGKILL actor1, start it again"
before_seq=$(last_seq 1)
before_updates=$(updates)
sigkill actor1
actor_max[actor1]=0  # a new process starts at version 0
start_actor 1
wait_until "actor1 stores batches again" 120 '(( $(last_seq 1) > before_seq ))'
check "actor1 back" $? "its batches stored again $((SECONDS - t_kill)) s after the kill (last sequence number $before_seq -> $(last_seq 1))"
wait_until "training goes on" 120 '(( $(updates) > before_updates + 100 ))'
check "training goes on" $? "updates $before_updates -> $(updates)"
check_exactly_once
check_versions

say "drill 2: SIGKILL replay, restart it from its snapshot and log"
acked0=$(acked_seq actor0)
acked1=$(acked_seq actor1)
rows_before=$(stored_rows)
sigkill replay
start_replay
wait_until "replay answers" 120 '[[ -n "$(value "$(scrape replay)" meow_replay_table_size)" ]]'
say "  replay: $(grep -o 'recovered .*' "$out/logs/replay.log" | tail -1)"
l0=$(last_seq 0)
l1=$(last_seq 1)
((l0 >= acked0 && l1 >= acked1))
check "nothing acknowledged lost" $? "actors had acknowledgements up to $acked0 and $acked1 before the kill; the restarted replay holds up to $l0 and $l1 ($((SECONDS - t_kill)) s to serve again)"
wait_until "training goes on" 180 '(( $(stored_rows) > rows_before + 500 ))'
check "training goes on" $? "transitions stored $rows_before -> $(stored_rows)"
before_updates=$(updates)
wait_until "the learner samples again" 120 '(( $(updates) > before_updates + 100 ))'
check "the learner samples again" $? "updates $before_updates -> $(updates)"
check_exactly_once
check_versions

say "drill 3: SIGKILL the learner, restart it from its run dir"
poll_versions
max_before=$learner_max
before_updates=$(updates)
sigkill learner
start_learner
wait_until "the learner answers" 120 '[[ -n "$(value "$(scrape learner)" meow_learner_version)" ]]'
first_version=$(value "$(scrape learner)" meow_learner_version)
resumed_updates=$(updates)
((resumed_updates >= before_updates - checkpoint_interval))
check "resumed from its newest checkpoint" $? "$resumed_updates updates right after the restart, $before_updates before the kill, a checkpoint every $checkpoint_interval"
((first_version > max_before))
check "versions go on above the old ones" $? "highest before the kill $max_before, first after the restart $first_version ($((SECONDS - t_kill)) s to serve again)"
wait_until "training goes on" 180 '(( $(updates) > before_updates + 100 ))'
check "training goes on" $? "updates $resumed_updates after the restart -> $(updates)"
wait_until "the actors act with the new learner's weights" 120 \
  '(( $(actor_version actor0) > max_before && $(actor_version actor1) > max_before ))'
check "actors follow" $? "both actors act with versions above $max_before"
check_exactly_once
check_versions

say "training to the end ($total_steps env steps)"
status_all=0
for p in learner actor0 actor1 eval; do
  rc=0
  deadline=$((SECONDS + 1800))
  while kill -0 "${pid[$p]}" 2>/dev/null && ((SECONDS < deadline)); do poll_versions; sleep 1; done
  wait "${pid[$p]}" || rc=$?
  ((rc == 0)) || status_all=1
  say "  $p exited $rc"
done
check "every process exits 0" $status_all "after $(elapsed) s"
check_exactly_once
check_versions
kill -TERM "${pid[replay]}"
rc=0
wait "${pid[replay]}" || rc=$?
check "replay stops cleanly on SIGTERM" $rc "exit $rc"

# --- Load --------------------------------------------------------------------------------------
say "load: $load_streams insert streams for $load_seconds s against a fresh replay (its own host), one sampler"
load_addr="${ip[replay]}:$((base + 7))"
metrics[load]="${ip[replay]}:$((base + 8))"
spawn load replay "$out/logs/load-replay.log" "$meow" replay "${common[@]}" --address="$load_addr" \
  --replay_dir="$out/load-replay" --buffer_size=200000 --samples_per_insert=4 --min_replay_size=1000 \
  --metrics_address="${metrics[load]}"
wait_until "the load replay answers" 60 '[[ -n "$(value "$(scrape load)" meow_replay_table_size)" ]]'
echo "seconds,rss_kib" > "$out/load-rss.csv"
(
  while kill -0 "${pid[load]}" 2>/dev/null; do
    echo "$(elapsed),$(awk '/^VmRSS/ { print $2 }' "/proc/${pid[load]}/status" 2>/dev/null)" >> "$out/load-rss.csv"
    sleep 1
  done
) &
rss_pid=$!
rc=0
on ops "$meow" load --replay="$load_addr" --streams="$load_streams" --duration="${load_seconds}s" \
  > "$out/logs/load.log" 2>&1 || rc=$?
sed 's/^/  /' "$out/logs/load.log" | tee -a "$summary" > /dev/null
kill -TERM "${pid[load]}"
wait "${pid[load]}" || true
wait "$rss_pid" 2>/dev/null || true
result=$(grep '^result:' "$out/logs/load.log" || true)
field() { grep -o " $1=[^ ]*" <<< "$result" | cut -d= -f2; }
check "load without errors" $rc "exit $rc; insert errors $(field insert_errors), rejected $(field rejected), sample errors $(field sample_errors), reconnects $(field reconnects)"
[[ -n "$result" && "$(field stored_batches)" == "$(field batches_acked)" ]]
check "load stored exactly once" $? "acknowledged $(field batches_acked) batches, stored $(field stored_batches)"
rss_report=$(awk -F, 'NR > 1 && $2 != "" { t[n] = $1; r[n] = $2; n++ }
  END {
    if (n < 4) { print "too few samples"; exit 1 }
    # The last third against what came before: filling the table and the stream buffers is
    # allowed, growing on once they are full is not.
    h = int(2 * n / 3); p1 = 0; p2 = 0
    for (i = 0; i < h; i++) if (r[i] > p1) p1 = r[i]
    for (i = h; i < n; i++) if (r[i] > p2) p2 = r[i]
    printf "resident memory of replay: %.0f MiB after 1 s, peak %.0f MiB in the first two thirds, %.0f MiB in the last third, %.0f MiB at the end",
      r[1] / 1024, p1 / 1024, p2 / 1024, r[n - 1] / 1024
    exit (p2 <= p1 * 1.10 + 32768) ? 0 : 1
  }' "$out/load-rss.csv") && rc=0 || rc=$?
check "memory stays bounded" $rc "$rss_report (capacity 200,000 transitions)"
[[ -n "$result" ]] && say "  rate limiter: $(field insert_waits) insert waits, $(field insert_wait_s) s waited in all; $(field rows_per_s) rows/s stored, $(field sampled_batches) batches sampled"

if ((failures > 0)); then
  say "FAILED: $failures check(s); logs in $out/logs"
  exit 1
fi
say "all drills passed in $(elapsed) s; summary in $summary"
