#!/usr/bin/env bash
# A real Slurm cluster on this one machine for the tests: munged, slurmctld and two slurmd
# processes (nodes n1 and n2, each with its own port and the CPUs given), all in DIR, started from
# an empty state and stopped by their PIDs. Source it, then:
#   slurm_cluster_start DIR [CPUS_PER_NODE]   # exports SLURM_CONF; returns once both nodes are idle
#   slurm_cluster_stop                         # cancels the jobs, kills the daemons it started and
#                                              # what is left of their jobs, waits for them
# Needs root (munged runs as the munge user, slurmd launches the job steps) and Debian's munge and
# slurm-wlm packages (deploy/setup.sh); the host name need not resolve (the addresses are given).
# slurm_cluster_usable says why it cannot run, if it cannot.

slurm_cluster_usable() {
  local b
  for b in munged slurmctld slurmd sbatch srun squeue scancel scontrol sinfo setpriv; do
    command -v "$b" > /dev/null || { echo "$b is not installed (deploy/setup.sh installs munge and slurm-wlm)"; return 1; }
  done
  [[ "$(id -u)" == 0 ]] || { echo "not root: munged must run as the munge user and slurmd must launch job steps"; return 1; }
  [[ -r /etc/munge/munge.key ]] || { echo "/etc/munge/munge.key is missing (the munge package creates it)"; return 1; }
  return 0
}

slurm_cluster_pids=()
slurm_cluster_dir=""
slurm_cluster_start() {
  local dir=$1 cpus=${2:-4} host i
  host=$(hostname -s)
  rm -rf "$dir"
  mkdir -p "$dir/state" "$dir/spool/slurmd.n1" "$dir/spool/slurmd.n2" "$dir/log" "$dir/munge"
  dir=$(cd "$dir" && pwd)
  slurm_cluster_dir=$dir
  # Ports from this shell's pid, so that two clusters on one machine do not meet.
  local base=$((30000 + ($$ % 1000) * 4))
  cat > "$dir/slurm.conf" <<CONF
ClusterName=meowtest
SlurmctldHost=$host(127.0.0.1)
SlurmctldPort=$base
SlurmdPort=$((base + 1))
SlurmUser=root
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool/slurmd.%n
SlurmctldPidFile=$dir/slurmctld.pidfile
SlurmdPidFile=$dir/slurmd.%n.pidfile
SlurmctldLogFile=$dir/log/slurmctld.log
SlurmdLogFile=$dir/log/slurmd.%n.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
MpiDefault=none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SchedulerParameters=bf_interval=1
ReturnToService=2
KillWait=10
SlurmdParameters=config_overrides
MailProg=/bin/true
NodeName=n1 NodeHostname=$host NodeAddr=127.0.0.1 Port=$((base + 2)) CPUs=$cpus RealMemory=4000
NodeName=n2 NodeHostname=$host NodeAddr=127.0.0.1 Port=$((base + 3)) CPUs=$cpus RealMemory=4000
PartitionName=debug Nodes=n1,n2 Default=YES MaxTime=INFINITE State=UP OverSubscribe=FORCE:4
CONF
  export SLURM_CONF=$dir/slurm.conf
  # munged with its own socket, so a munged already running on the machine is left alone.
  chown munge:munge "$dir/munge"
  local socket=$dir/munge/munge.socket
  MEOW_TEST_CLUSTER=$dir setsid setpriv --reuid=munge --regid=munge --init-groups /usr/sbin/munged -F --socket="$socket" \
    --pid-file="$dir/munge/munged.pid" --log-file="$dir/munge/munged.log" --seed-file="$dir/munge/munged.seed" \
    > "$dir/log/munged.out" 2>&1 &
  slurm_cluster_pids+=($!)
  disown $!  # stopped by pid in slurm_cluster_stop, without the shell's "Killed" notices
  echo "AuthInfo=socket=$socket" >> "$SLURM_CONF"
  for i in $(seq 1 300); do [[ -S "$socket" ]] && break; sleep 0.1; done  # up to 30 s on a busy machine
  MEOW_TEST_CLUSTER=$dir setsid slurmctld -D -f "$SLURM_CONF" > "$dir/log/slurmctld.out" 2>&1 &
  slurm_cluster_pids+=($!)
  disown $!  # stopped by pid in slurm_cluster_stop, without the shell's "Killed" notices
  MEOW_TEST_CLUSTER=$dir setsid slurmd -D -N n1 -f "$SLURM_CONF" > "$dir/log/slurmd.n1.out" 2>&1 &
  slurm_cluster_pids+=($!)
  disown $!  # stopped by pid in slurm_cluster_stop, without the shell's "Killed" notices
  MEOW_TEST_CLUSTER=$dir setsid slurmd -D -N n2 -f "$SLURM_CONF" > "$dir/log/slurmd.n2.out" 2>&1 &
  slurm_cluster_pids+=($!)
  disown $!  # stopped by pid in slurm_cluster_stop, without the shell's "Killed" notices
  local deadline=$((SECONDS + 60))
  until [[ "$(sinfo -h -o '%T %D' 2>/dev/null)" == "idle 2" ]]; do
    if ((SECONDS > deadline)); then
      echo "slurm_cluster: the nodes did not come up in 60 s; sinfo: $(sinfo 2>&1 | tr '\n' ' ')" >&2
      tail -n 5 "$dir"/log/*.log "$dir"/log/*.out >&2
      return 1
    fi
    sleep 0.2
  done
}

slurm_cluster_stop() {
  local pid deadline=$((SECONDS + 30))
  # Jobs first: cancelled, and given a while to end, while the daemons still run.
  if [[ -n "$slurm_cluster_dir" ]] && squeue -h -o %A 2>/dev/null | grep -q .; then
    scancel --quiet $(squeue -h -o %A 2>/dev/null) 2>/dev/null
    while squeue -h -o %A 2>/dev/null | grep -q . && ((SECONDS < deadline)); do sleep 0.5; done
  fi
  for pid in "${slurm_cluster_pids[@]}"; do kill -TERM "$pid" 2> /dev/null; done
  for pid in "${slurm_cluster_pids[@]}"; do
    for _ in $(seq 1 50); do kill -0 "$pid" 2> /dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2> /dev/null
  done
  slurm_cluster_pids=()
  # What is left of the jobs (step daemons, their processes): everything whose environment names
  # this cluster's configuration and a job, or that the daemons started.
  if [[ -n "$slurm_cluster_dir" ]]; then
    local env_file p e
    for env_file in /proc/[0-9]*/environ; do
      p=${env_file#/proc/}
      p=${p%/environ}
      [[ "$p" == "$$" || "$p" == "$BASHPID" ]] && continue
      { e=$(tr '\0' '\n' < "$env_file"); } 2>/dev/null || continue
      if grep -qx "MEOW_TEST_CLUSTER=$slurm_cluster_dir" <<< "$e" ||
         { grep -q '^SLURM_JOB_ID=' <<< "$e" && grep -qx "SLURM_CONF=$slurm_cluster_dir/slurm.conf" <<< "$e"; }; then
        kill -KILL "$p" 2>/dev/null
      fi
    done
  fi
  slurm_cluster_dir=""
}
