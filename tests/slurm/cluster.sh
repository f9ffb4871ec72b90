#!/bin/bash
# A real single-node Slurm cluster for the tests: munged, slurmctld and slurmd from Debian's
# packages (slurm-wlm, munge), private to DIR (own munge key and socket, config, state, logs),
# run as root without systemd. Everything started is recorded in DIR/pids and stopped by those pids
# (never by process name), so a machine's own Slurm or munge, if any, is left alone.
#
#   cluster.sh up DIR     start; prints "export SLURM_CONF=DIR/slurm.conf" on success
#   cluster.sh down DIR   stop what `up` started (and job processes left behind), keep the logs
#
# Exit 77 (CTest's skip) when Slurm cannot be brought up here: no packages, or not root.
set -u
cmd=${1:-}; dir=${2:-}
[ -n "$cmd" ] && [ -n "$dir" ] || { echo "usage: cluster.sh up|down DIR" >&2; exit 2; }

skip() { echo "cluster.sh: skipping: $*" >&2; exit 77; }

wait_for() { # wait_for SECONDS COMMAND...: until COMMAND succeeds
    local deadline=$((SECONDS + $1)); shift
    until "$@" >/dev/null 2>&1; do
        [ $SECONDS -lt $deadline ] || return 1
        sleep 0.2
    done
}

start() { # start NAME COMMAND...: run in its own session, record the pid
    setsid "${@:2}" >"$dir/log/$1.out" 2>&1 &
    echo "$! $1" >>"$dir/pids"
}

down() {
    [ -f "$dir/pids" ] || return 0
    # Job processes (slurmstepd and its tasks) can outlive a killed slurmd: they run in the
    # sessions of the recorded daemons' descendants, so collect those first.
    local pids="" all
    while read -r pid name; do pids="$pids $pid"; done <"$dir/pids"
    all=$pids
    for pid in $pids; do all="$all $(ps -o pid= --ppid "$pid" 2>/dev/null)"; done
    for pid in $pids; do
        sid=$(ps -o sid= -p "$pid" 2>/dev/null | tr -d ' ')
        [ -n "$sid" ] && all="$all $(ps -o pid= -s "$sid" 2>/dev/null)"
    done
    # slurmstepd re-parents to init: find the ones whose spool dir is ours.
    for pid in $(pgrep -x slurmstepd 2>/dev/null); do
        tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q "$dir" && all="$all $pid"
        grep -qs "SLURM_CONF=$dir/slurm.conf" "/proc/$pid/environ" && all="$all $pid"
    done
    kill -TERM $all 2>/dev/null
    for _ in $(seq 50); do
        alive=""; for pid in $all; do kill -0 "$pid" 2>/dev/null && alive="$alive $pid"; done
        [ -z "$alive" ] && break
        sleep 0.1
    done
    [ -n "${alive:-}" ] && kill -KILL $alive 2>/dev/null
    rm -f "$dir/pids"
}

up() {
    [ "$(id -u)" = 0 ] || skip "needs root (slurmd runs jobs as any user)"
    for b in slurmctld slurmd munged mungekey sbatch scontrol; do
        command -v $b >/dev/null || [ -x /usr/sbin/$b ] || skip "$b not installed (apt-get install slurm-wlm munge)"
    done
    export PATH=$PATH:/usr/sbin
    mkdir -p "$dir"/{log,state,spool,munge}
    dir=$(cd "$dir" && pwd)
    rm -f "$dir/pids"
    # munge: a private key and socket. munged insists the key belongs to the user it runs as.
    chown munge: "$dir/munge" 2>/dev/null || true
    chmod 700 "$dir/munge"
    [ -f "$dir/munge/munge.key" ] || runuser -u munge -- mungekey -c -k "$dir/munge/munge.key" >/dev/null 2>&1 ||
        mungekey -c -k "$dir/munge/munge.key" || { echo "cluster.sh: mungekey failed" >&2; exit 1; }
    chown munge: "$dir/munge/munge.key"; chmod 400 "$dir/munge/munge.key"
    start munged runuser -u munge -- munged --foreground --force --key-file="$dir/munge/munge.key" \
        --socket="$dir/munge/munge.sock" --pid-file="$dir/munge/munged.pid" --log-file="$dir/log/munged.log" \
        --seed-file="$dir/munge/munge.seed"
    wait_for 10 test -S "$dir/munge/munge.sock" || { echo "cluster.sh: munged did not start" >&2; cat "$dir/log/munged.out" >&2; down; exit 1; }

    local host node ports
    host=$(hostname -s)
    # Two free TCP ports (unless given), so that test runs side by side (or a real Slurm on the
    # standard 6817/6818) never meet.
    ports=$(python3 -c 'import socket
s = [socket.socket() for _ in range(2)]
for x in s: x.bind(("127.0.0.1", 0))
print(*[x.getsockname()[1] for x in s])' 2>/dev/null) || ports="6817 6818"
    set -- $ports
    node=$(slurmd -C | head -1 | sed 's/^NodeName=[^ ]* //; s/ *UpTime.*//')
    cat >"$dir/slurm.conf" <<CONF
# Written by tests/slurm/cluster.sh: one node, everything under $dir.
ClusterName=sowertest
SlurmctldHost=$host(127.0.0.1)
SlurmUser=root
SlurmdUser=root
SlurmctldPort=${SOWER_SLURMCTLD_PORT:-$1}
SlurmdPort=${SOWER_SLURMD_PORT:-$2}
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$dir/munge/munge.sock
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.pid
SlurmctldLogFile=$dir/log/slurmctld.log
SlurmdLogFile=$dir/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/filetxt
JobCompLoc=$dir/log/jobcomp.txt
SchedulerType=sched/backfill
SchedulerParameters=batch_sched_delay=0
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
MpiDefault=pmix
EnforcePartLimits=ALL
ReturnToService=2
MailProg=/bin/true
KillWait=10
MinJobAge=600
NodeName=$host NodeAddr=127.0.0.1 $node State=UNKNOWN
PartitionName=debug Nodes=$host Default=YES MaxTime=INFINITE State=UP OverSubscribe=NO
CONF
    export SLURM_CONF=$dir/slurm.conf
    start slurmctld slurmctld -D -f "$dir/slurm.conf"
    wait_for 20 scontrol ping || { echo "cluster.sh: slurmctld did not answer" >&2; tail -20 "$dir/log/slurmctld.log" >&2; down; exit 1; }
    start slurmd slurmd -D -f "$dir/slurm.conf"
    wait_for 30 sh -c "sinfo -h -n $host -o %t | grep -qx idle" ||
        { echo "cluster.sh: the node did not come up" >&2; tail -20 "$dir/log/slurmd.log" >&2; down; exit 1; }
    echo "export SLURM_CONF=$dir/slurm.conf"
}

case $cmd in
    up) up ;;
    down) dir=$(cd "$dir" 2>/dev/null && pwd) || exit 0; down ;;
    *) echo "usage: cluster.sh up|down DIR" >&2; exit 2 ;;
esac
