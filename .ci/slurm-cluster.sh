#!/usr/bin/env bash
# A real one-node Slurm cluster on this machine, so that tests/test_slurm_cluster.py (and CI) can run the pipeline
# through snakemake-executor-plugin-slurm against genuine sbatch/srun/squeue instead of a mock.
#
#   bash .ci/slurm-cluster.sh install   # Debian packages munge, slurmctld, slurmd, slurm-client (skipped if present)
#   bash .ci/slurm-cluster.sh up        # install, write /etc/slurm/slurm.conf, start munged/slurmctld/slurmd, wait idle
#   bash .ci/slurm-cluster.sh status    # sinfo + squeue
#   bash .ci/slurm-cluster.sh down      # cancel jobs, stop the daemons that `up` started (by their pid files)
#
# Needs root and apt (Debian 12: Slurm 22.05). The configuration is the smallest that works in a container without
# systemd or cgroup delegation: process tracking by /proc (proctrack/linuxproc), no task binding (task/none), no
# accounting daemon (so the executor plugin must query job states with squeue, not sacct), every daemon as root.
set -euo pipefail

# Slurm's compiled-in default path on Debian: the srun that the plugin starts inside each job finds it without
# SLURM_CONF having to be passed through.
SLURM_CONF_FILE=/etc/slurm/slurm.conf
STATE_DIR=/var/spool/slurmctld
SPOOL_DIR=/var/spool/slurmd
LOG_DIR=/var/log/slurm
SLURMCTLD_PID=/run/slurmctld.pid
SLURMD_PID=/run/slurmd.pid
MUNGE_RUN_DIR=/run/munge
MUNGED_PID=$MUNGE_RUN_DIR/munged.pid
PARTITION=debug
# CPUs of the node: the machine's own unless told otherwise (the test needs >= 1; 2 lets two shards run side by side).
NODE_CPUS=${SLURM_NODE_CPUS:-$(nproc)}
# Memory Slurm may hand out, in MB. It must not exceed what slurmd measures (else the node is drained as
# "Low RealMemory"), so take `free -m`'s total less a share left to the OS and the daemons.
MEMORY_SHARE_PERCENT=90
# squeue keeps finished jobs this long (seconds); the plugin reads job states from squeue, so it has to be well above
# its polling interval (Slurm's default, spelled out because the plugin checks it).
MIN_JOB_AGE=300
WAIT_IDLE_SECONDS=${SLURM_WAIT_IDLE_SECONDS:-120}
NODE=$(hostname -s)

log() { echo "slurm-cluster: $*" >&2; }

require_root() {
    if [[ $(id -u) -ne 0 ]]; then
        log "must run as root (installs packages, writes /etc/slurm, starts daemons)"
        exit 2
    fi
}

install_packages() {
    require_root
    if command -v munged >/dev/null && command -v slurmctld >/dev/null && command -v slurmd >/dev/null \
        && command -v sbatch >/dev/null; then
        log "Slurm and munge already installed ($(slurmd -V))"
        return
    fi
    if ! command -v apt-get >/dev/null; then
        log "apt-get not found: install munge, slurmctld, slurmd and slurm-client by hand"
        exit 3
    fi
    log "installing munge slurmctld slurmd slurm-client from Debian"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q
    apt-get install -y -q --no-install-recommends munge slurmctld slurmd slurm-client
}

write_config() {
    local total_mb real_mb
    total_mb=$(free -m | awk '/^Mem:/ {print $2}')
    real_mb=$((total_mb * MEMORY_SHARE_PERCENT / 100))
    mkdir -p "$(dirname "$SLURM_CONF_FILE")" "$STATE_DIR" "$SPOOL_DIR" "$LOG_DIR"
    cat >"$SLURM_CONF_FILE" <<EOF
# Written by .ci/slurm-cluster.sh: a one-node test cluster (see that script for why each choice).
ClusterName=ci
SlurmctldHost=${NODE}(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CryptoType=crypto/munge
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
ReturnToService=2
MinJobAge=${MIN_JOB_AGE}
StateSaveLocation=${STATE_DIR}
SlurmdSpoolDir=${SPOOL_DIR}
SlurmctldPidFile=${SLURMCTLD_PID}
SlurmdPidFile=${SLURMD_PID}
SlurmctldLogFile=${LOG_DIR}/slurmctld.log
SlurmdLogFile=${LOG_DIR}/slurmd.log
NodeName=${NODE} NodeAddr=127.0.0.1 CPUs=${NODE_CPUS} RealMemory=${real_mb} State=UNKNOWN
PartitionName=${PARTITION} Nodes=${NODE} Default=YES MaxTime=INFINITE State=UP
EOF
    log "wrote $SLURM_CONF_FILE: node $NODE, $NODE_CPUS CPUs, ${real_mb} MB"
}

running() { [[ -s $1 ]] && kill -0 "$(cat "$1")" 2>/dev/null; }

start_munge() {
    if running "$MUNGED_PID"; then
        log "munged already running"
        return
    fi
    mkdir -p "$MUNGE_RUN_DIR"
    chown munge:munge "$MUNGE_RUN_DIR"
    # munged refuses to run as root; the Debian package made the key and the munge user.
    runuser -u munge -- /usr/sbin/munged
    munge -n | unmunge >/dev/null
}

start_slurm() {
    if running "$SLURMCTLD_PID"; then
        log "slurmctld already running"
    else
        # -c: start from a clean state, without jobs left over from an earlier `up`.
        slurmctld -c
    fi
    if running "$SLURMD_PID"; then
        log "slurmd already running"
    else
        slurmd
    fi
}

wait_idle() {
    local waited=0 state=""
    while ((waited < WAIT_IDLE_SECONDS)); do
        state=$(sinfo -h -n "$NODE" -o %t 2>/dev/null || true)
        if [[ $state == idle ]]; then
            log "node $NODE idle after ${waited}s"
            sinfo
            return
        fi
        sleep 1
        waited=$((waited + 1))
    done
    log "node $NODE not idle after ${WAIT_IDLE_SECONDS}s (state: '${state}'); last log lines:"
    tail -n 20 "$LOG_DIR/slurmctld.log" "$LOG_DIR/slurmd.log" >&2 || true
    exit 4
}

stop_pid() {
    local name=$1 pidfile=$2 pid waited=0
    if ! running "$pidfile"; then
        return
    fi
    pid=$(cat "$pidfile")
    kill "$pid"
    while kill -0 "$pid" 2>/dev/null && ((waited < 30)); do
        sleep 1
        waited=$((waited + 1))
    done
    if kill -0 "$pid" 2>/dev/null; then
        log "$name ($pid) did not stop in 30s; killing it"
        kill -9 "$pid" || true
    fi
    log "stopped $name ($pid)"
}

up() {
    require_root
    install_packages
    write_config
    start_munge
    start_slurm
    wait_idle
}

down() {
    require_root
    if running "$SLURMCTLD_PID"; then
        scancel --full --state=PENDING,RUNNING --user=root 2>/dev/null || true
    fi
    stop_pid slurmd "$SLURMD_PID"
    stop_pid slurmctld "$SLURMCTLD_PID"
    stop_pid munged "$MUNGED_PID"
}

case "${1:-}" in
    install) install_packages ;;
    up) up ;;
    down) down ;;
    status) sinfo && squeue --states=all ;;
    *)
        echo "usage: $0 install|up|down|status" >&2
        exit 64
        ;;
esac
