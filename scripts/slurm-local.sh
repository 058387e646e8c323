#!/usr/bin/env bash
# A single-node Slurm cluster on this machine (controller and compute node in one), to run
# the array jobs of docs/cluster.md for real: installs Debian's slurm-wlm and munge when
# missing, writes /etc/slurm/slurm.conf (no cgroups: proctrack/linuxproc, task/none), and
# starts munged, slurmctld and slurmd by hand (no systemd needed). Idempotent: what already
# runs with the same configuration is left alone; every action is printed.
#
# Usage: scripts/slurm-local.sh [start|check|stop|status]
#   start   (default) install, configure and start; wait until the node is idle
#   check   start, then `sinfo`, `srun hostname` and a 4-task array job (`sbatch --array=1-4`)
#   stop    stop slurmd, slurmctld and munged (the ones this script started, by pid file)
#   status  whether each daemon runs, then `sinfo`
#
# Must run as root (Debian/Ubuntu with apt-get). Environment (optional):
#   SLURM_LOCAL_CPUS     CPUs the node offers (default: nproc)
#   SLURM_LOCAL_MEMORY   memory the node offers, MB (default: 90% of MemTotal)
#   SLURM_LOCAL_CLUSTER  the cluster name (default: littledata)
set -euo pipefail

ACTION=${1:-start}
CONF_DIR=/etc/slurm
CONF=$CONF_DIR/slurm.conf
STATE=/var/spool/slurmctld
SPOOL=/var/spool/slurmd
LOGS=/var/log/slurm
RUN=/run/slurm-local
CTLD_PID=$RUN/slurmctld.pid
SLURMD_PID=$RUN/slurmd.pid
MUNGE_PID=/run/munge/munged.pid

say() { echo "slurm-local: $*"; }
die() {
    echo "slurm-local: error: $*" >&2
    exit 1
}
running() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

case "$ACTION" in
start | check | stop | status) ;;
-h | --help)
    sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'
    exit 0
    ;;
*) die "unknown action '$ACTION' (expected start, check, stop or status)" ;;
esac
[ "$(id -u)" = 0 ] || die "must run as root (it installs packages, writes /etc/slurm and starts daemons)"

stop_daemon() { # name pidfile
    if running "$2"; then
        kill "$(cat "$2")"
        for _ in $(seq 50); do running "$2" || break; sleep 0.1; done
        say "stopped $1"
    else
        say "$1 was not running"
    fi
}

if [ "$ACTION" = stop ]; then
    stop_daemon slurmd "$SLURMD_PID"
    stop_daemon slurmctld "$CTLD_PID"
    stop_daemon munged "$MUNGE_PID"
    exit 0
fi
if [ "$ACTION" = status ]; then
    for d in "munged $MUNGE_PID" "slurmctld $CTLD_PID" "slurmd $SLURMD_PID"; do
        set -- $d
        if running "$2"; then say "$1 runs (pid $(cat "$2"))"; else say "$1 does not run"; fi
    done
    command -v sinfo >/dev/null && sinfo || true
    exit 0
fi

# --- Packages ----------------------------------------------------------------------------------
if ! command -v slurmctld >/dev/null || ! command -v slurmd >/dev/null || ! command -v munged >/dev/null ||
    ! command -v sbatch >/dev/null; then
    command -v apt-get >/dev/null || die "slurm is not installed and there is no apt-get to install it"
    say "installing slurm-wlm and munge with apt-get ..."
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq slurm-wlm munge >/dev/null
    say "installed $(slurmctld -V)"
else
    say "found $(slurmctld -V) and $(munged -V 2>&1 | awk '{print $1}' | head -n1)"
fi

# --- munge -------------------------------------------------------------------------------------
if [ ! -s /etc/munge/munge.key ]; then
    mkdir -p /etc/munge
    dd if=/dev/urandom of=/etc/munge/munge.key bs=1 count=1024 status=none
    say "created /etc/munge/munge.key"
fi
chown munge:munge /etc/munge /etc/munge/munge.key
chmod 700 /etc/munge
chmod 400 /etc/munge/munge.key
mkdir -p /run/munge /var/lib/munge /var/log/munge
chown munge:munge /run/munge /var/lib/munge /var/log/munge
chmod 755 /run/munge
if running "$MUNGE_PID" && munge -n | unmunge >/dev/null 2>&1; then
    say "munged already runs (pid $(cat "$MUNGE_PID"))"
else
    runuser -u munge -- munged --force
    for _ in $(seq 50); do munge -n 2>/dev/null | unmunge >/dev/null 2>&1 && break; sleep 0.1; done
    munge -n | unmunge >/dev/null || die "munged does not answer (see /var/log/munge/munged.log)"
    say "started munged (pid $(cat "$MUNGE_PID"))"
fi

# --- slurm.conf --------------------------------------------------------------------------------
HOST=$(hostname -s)
CPUS=${SLURM_LOCAL_CPUS:-$(nproc)}
MEMORY=${SLURM_LOCAL_MEMORY:-$(awk '/^MemTotal:/ { printf "%d", $2 / 1024 * 0.9 }' /proc/meminfo)}
CLUSTER=${SLURM_LOCAL_CLUSTER:-littledata}
[[ "$CPUS" =~ ^[1-9][0-9]*$ ]] || die "SLURM_LOCAL_CPUS must be a positive whole number, got '$CPUS'"
[[ "$MEMORY" =~ ^[1-9][0-9]*$ ]] || die "SLURM_LOCAL_MEMORY must be a positive whole number (MB), got '$MEMORY'"
mkdir -p "$CONF_DIR" "$STATE" "$SPOOL" "$LOGS" "$RUN"
NEW_CONF=$(
    cat <<EOF
# Written by littledata's scripts/slurm-local.sh: a single-node cluster, no cgroups.
ClusterName=$CLUSTER
SlurmctldHost=$HOST(127.0.0.1)
AuthType=auth/munge
CryptoType=crypto/munge
SlurmUser=root
SlurmdUser=root
StateSaveLocation=$STATE
SlurmdSpoolDir=$SPOOL
SlurmctldPidFile=$CTLD_PID
SlurmdPidFile=$SLURMD_PID
SlurmctldLogFile=$LOGS/slurmctld.log
SlurmdLogFile=$LOGS/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
MpiDefault=none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
ReturnToService=2
SlurmdTimeout=300
InactiveLimit=0
MinJobAge=300
KillWait=30
Waittime=0
NodeName=$HOST NodeAddr=127.0.0.1 CPUs=$CPUS RealMemory=$MEMORY State=UNKNOWN
PartitionName=local Nodes=$HOST Default=YES MaxTime=INFINITE State=UP
EOF
)
CHANGED=0
if [ "$(cat "$CONF" 2>/dev/null || true)" != "$NEW_CONF" ]; then
    printf '%s\n' "$NEW_CONF" >"$CONF"
    CHANGED=1
    say "wrote $CONF ($HOST: $CPUS CPUs, $MEMORY MB)"
else
    say "$CONF is current ($HOST: $CPUS CPUs, $MEMORY MB)"
fi

# --- Daemons -----------------------------------------------------------------------------------
if [ "$CHANGED" = 1 ]; then
    # A new configuration: restart what runs with the old one.
    running "$SLURMD_PID" && stop_daemon slurmd "$SLURMD_PID"
    running "$CTLD_PID" && stop_daemon slurmctld "$CTLD_PID"
fi
if running "$CTLD_PID"; then
    say "slurmctld already runs (pid $(cat "$CTLD_PID"))"
else
    slurmctld || die "slurmctld did not start (see $LOGS/slurmctld.log)"
    for _ in $(seq 100); do scontrol ping >/dev/null 2>&1 && break; sleep 0.2; done
    scontrol ping | grep -q UP || die "slurmctld does not answer (see $LOGS/slurmctld.log)"
    say "started slurmctld (pid $(cat "$CTLD_PID"))"
fi
if running "$SLURMD_PID"; then
    say "slurmd already runs (pid $(cat "$SLURMD_PID"))"
else
    slurmd || die "slurmd did not start (see $LOGS/slurmd.log)"
    for _ in $(seq 50); do running "$SLURMD_PID" && break; sleep 0.1; done
    running "$SLURMD_PID" || die "slurmd exited at once (see $LOGS/slurmd.log)"
    say "started slurmd (pid $(cat "$SLURMD_PID"))"
fi

# Wait for the node to register; bring it back if an earlier run left it down or drained.
for _ in $(seq 100); do
    NODE_STATE=$(sinfo -h -n "$HOST" -o %T 2>/dev/null | head -n1)
    case "$NODE_STATE" in idle* | mixed* | allocated*) break ;; esac
    case "$NODE_STATE" in down* | drain* | drained*)
        scontrol update NodeName="$HOST" State=RESUME >/dev/null 2>&1 || true
        say "node $HOST was $NODE_STATE: resumed"
        ;;
    esac
    sleep 0.2
done
case "$NODE_STATE" in
idle* | mixed* | allocated*) say "node $HOST is $NODE_STATE" ;;
*) die "node $HOST is '${NODE_STATE:-unknown}' (see $LOGS/slurmd.log and $LOGS/slurmctld.log)" ;;
esac

[ "$ACTION" = check ] || exit 0

# --- Check -------------------------------------------------------------------------------------
say "sinfo:"
sinfo
say "srun hostname: $(srun -N1 -n1 hostname)"
OUT=$(mktemp -d -t slurm-local-check.XXXXXX)
JOB=$(sbatch --parsable --array=1-4 --output="$OUT/task-%a.out" --wrap \
    'echo "$SLURM_ARRAY_TASK_ID $SLURM_ARRAY_TASK_MIN $SLURM_ARRAY_TASK_MAX $SLURM_ARRAY_TASK_COUNT"')
say "submitted array job $JOB (4 tasks)"
for _ in $(seq 300); do
    [ -z "$(squeue -h -j "$JOB" 2>/dev/null)" ] && break
    sleep 0.2
done
[ -z "$(squeue -h -j "$JOB" 2>/dev/null)" ] || die "array job $JOB did not finish within a minute"
for i in 1 2 3 4; do
    [ "$(cat "$OUT/task-$i.out" 2>/dev/null)" = "$i 1 4 4" ] ||
        die "task $i of job $JOB wrote '$(cat "$OUT/task-$i.out" 2>/dev/null)', expected '$i 1 4 4'"
done
rm -rf "$OUT"
say "array job $JOB: 4 tasks saw SLURM_ARRAY_TASK_ID 1..4 with MIN=1 MAX=4 COUNT=4; the cluster works"
