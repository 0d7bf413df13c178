#!/usr/bin/env bash
# A real single-node SLURM cluster on this machine, for the SLURM tests and CI (run as root).
#
#   scripts/slurm_single_node.sh start    install slurm-wlm, munge, slurmdbd and mariadb-server when
#                                         missing, write slurm.conf, start munged, mariadbd + slurmdbd
#                                         (job accounting: sacct, which submitit reads job states with),
#                                         slurmctld and slurmd, wait until the node is idle
#   scripts/slurm_single_node.sh stop     cancel the cluster's jobs, stop the daemons it started
#   scripts/slurm_single_node.sh status   daemons and node state; exit 0 only when the node takes jobs
#
# State, spool, logs and pid files live in $SLURM_SINGLE_NODE_DIR (default /var/tmp/nnsam-slurm). The
# config goes to /etc/slurm/slurm.conf, where sinfo/sbatch/submitit find it without SLURM_CONF; an
# existing slurm.conf that this script did not write is never overwritten. Optional overrides:
# SLURM_SINGLE_NODE_CPUS (CPUs the node advertises; default: this machine's), SLURM_SINGLE_NODE_MEM_MB
# (default: 90% of MemTotal), SLURM_SINGLE_NODE_WAIT_S (seconds to wait for an idle node, default 90),
# SLURM_SINGLE_NODE_APT_TIMEOUT_S (default 900).
set -uo pipefail

DIR="${SLURM_SINGLE_NODE_DIR:-/var/tmp/nnsam-slurm}"
CONF=/etc/slurm/slurm.conf
MARKER="# written by nnunet_sam_adapter scripts/slurm_single_node.sh"
NODE="$(hostname -s)"
PARTITION=debug
WAIT_S="${SLURM_SINGLE_NODE_WAIT_S:-90}"

say() { echo "slurm_single_node: $*"; }
die() { echo "slurm_single_node: ERROR: $*" >&2; exit 1; }

log_tails() {
    local f
    for f in "$DIR/log/slurmctld.log" "$DIR/log/slurmd.log" "$DIR/log/slurmdbd.log" /var/log/munge/munged.log; do
        [[ -s "$f" ]] && { echo "--- last lines of $f" >&2; tail -n 15 "$f" >&2; }
    done
}

pid_alive() { [[ -s "$1" ]] && kill -0 "$(cat "$1")" 2>/dev/null; }

install_packages() {
    local missing=0 cmd
    for cmd in munged slurmctld slurmd sinfo sbatch scontrol sacct slurmdbd mariadbd mariadb; do
        command -v "$cmd" >/dev/null 2>&1 || missing=1
    done
    [[ $missing == 0 ]] && return 0
    [[ $(id -u) == 0 ]] || die "slurm-wlm/munge are not installed and installing them needs root"
    command -v apt-get >/dev/null 2>&1 || die "slurm-wlm/munge are not installed and there is no apt-get"
    say "installing slurm-wlm, munge, slurmdbd and mariadb-server with apt-get (log: $DIR/log/apt.log)"
    local t="${SLURM_SINGLE_NODE_APT_TIMEOUT_S:-900}"
    # A dropped download is fetched again (up to 5 times) rather than failing the whole set-up.
    local retries=(-o Acquire::Retries=5)
    if ! { DEBIAN_FRONTEND=noninteractive timeout "$t" apt-get "${retries[@]}" update -qq &&
           DEBIAN_FRONTEND=noninteractive timeout "$t" apt-get "${retries[@]}" install -y -qq --no-install-recommends \
               slurm-wlm munge slurmdbd mariadb-server; } >"$DIR/log/apt.log" 2>&1; then
        tail -n 20 "$DIR/log/apt.log" >&2
        die "apt-get could not install slurm-wlm, munge, slurmdbd and mariadb-server (see above)"
    fi
}

node_cpus() {
    if [[ -n "${SLURM_SINGLE_NODE_CPUS:-}" ]]; then echo "$SLURM_SINGLE_NODE_CPUS"; return; fi
    local c
    c="$(slurmd -C 2>/dev/null | sed -n 's/.*CPUs=\([0-9]*\).*/\1/p' | head -n 1)"
    [[ -n "$c" ]] && echo "$c" || nproc
}

node_mem_mb() {
    if [[ -n "${SLURM_SINGLE_NODE_MEM_MB:-}" ]]; then echo "$SLURM_SINGLE_NODE_MEM_MB"; return; fi
    awk '/^MemTotal:/ { printf "%d\n", $2 / 1024 * 0.9 }' /proc/meminfo
}

write_conf() {
    if [[ -f "$CONF" ]] && ! grep -qF "$MARKER" "$CONF"; then
        die "$CONF exists and was not written by this script; refusing to replace a real cluster's config"
    fi
    local cpus mem tmp
    cpus="$(node_cpus)"; mem="$(node_mem_mb)"
    [[ "$cpus" =~ ^[0-9]+$ && "$cpus" -gt 0 ]] || die "could not tell this machine's CPU count (got '$cpus')"
    [[ "$mem" =~ ^[0-9]+$ && "$mem" -gt 0 ]] || die "could not tell this machine's memory (got '$mem')"
    mkdir -p "$(dirname "$CONF")"
    tmp="$(mktemp "$CONF.XXXXXX")"
    cat >"$tmp" <<EOF
$MARKER
# One node ($NODE, $cpus CPUs, $mem MB = 90% of its memory), one default partition '$PARTITION'.
ClusterName=nnsam
SlurmctldHost=$NODE(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
# A requeued job waits cred_expire seconds before it may start again (default 120).
AuthInfo=cred_expire=15
CredType=cred/munge
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
# The node advertises the CPUs written here (SLURM_SINGLE_NODE_CPUS may ask for more than the machine has).
SlurmdParameters=config_overrides
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool
SlurmctldPidFile=$DIR/run/slurmctld.pid
SlurmdPidFile=$DIR/run/slurmd.pid
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$DIR/log/slurmd.log
SlurmctldPort=6817
SlurmdPort=6818
# Requeue: batch jobs are requeueable by default (scontrol requeue, and submitit's own requeue on
# preemption/timeout); a node that restarts comes back into service by itself.
JobRequeue=1
ReturnToService=2
# Fast turnaround for tests: schedule every 2 s (requeued jobs wait for the periodic pass), kill 5 s
# after SIGTERM, drop finished jobs from squeue after 30 s.
SchedulerType=sched/backfill
SchedulerParameters=sched_interval=2,bf_interval=2,sched_min_interval=100000
KillWait=5
MinJobAge=30
MessageTimeout=10
SlurmctldTimeout=30
SlurmdTimeout=30
InactiveLimit=0
Waittime=0
# Accounting through slurmdbd (sacct works, as on real clusters); no limits enforced, no accounts needed.
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
DefMemPerCPU=$((mem / cpus))
NodeName=$NODE NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=$PARTITION Nodes=$NODE Default=YES MaxTime=INFINITE State=UP
EOF
    chmod 644 "$tmp"
    mv -f "$tmp" "$CONF"
    cp "$CONF" "$DIR/slurm.conf"
}

munge_works() { munge -n 2>/dev/null | unmunge >/dev/null 2>&1; }

start_munge() {
    if munge_works; then return 0; fi
    if [[ ! -s /etc/munge/munge.key ]]; then
        mkdir -p /etc/munge
        dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none
    fi
    local user=root
    id munge >/dev/null 2>&1 && user=munge
    mkdir -p /run/munge /var/log/munge /var/lib/munge
    chown "$user:" /etc/munge /etc/munge/munge.key /run/munge /var/log/munge /var/lib/munge
    chmod 700 /etc/munge; chmod 400 /etc/munge/munge.key; chmod 755 /run/munge
    if [[ $user == root ]]; then munged --force; else runuser -u munge -- munged; fi ||
        { log_tails; die "munged did not start"; }
    touch "$DIR/run/munged.started-by-us"
    local i
    for i in $(seq 1 20); do munge_works && return 0; sleep 0.5; done
    log_tails; die "munged started but munge -n | unmunge fails"
}

write_dbd_conf() {
    local conf=/etc/slurm/slurmdbd.conf tmp
    if [[ -f "$conf" ]] && ! grep -qF "$MARKER" "$conf"; then
        die "$conf exists and was not written by this script; refusing to replace a real cluster's config"
    fi
    tmp="$(mktemp "$conf.XXXXXX")"
    cat >"$tmp" <<EOF
$MARKER
DbdHost=localhost
SlurmUser=root
StorageType=accounting_storage/mysql
# root through mariadb's unix_socket authentication: no password anywhere.
StorageUser=root
StorageLoc=nnsam_slurm_acct_db
LogFile=$DIR/log/slurmdbd.log
PidFile=$DIR/run/slurmdbd.pid
EOF
    chmod 600 "$tmp"
    mv -f "$tmp" "$conf"
}

start_accounting() {
    local i
    if ! mariadb -e 'select 1' >/dev/null 2>&1; then
        mkdir -p /run/mysqld "$DIR/mariadb"
        chown mysql: /run/mysqld "$DIR/mariadb"
        setsid mariadbd --user=mysql --skip-networking --pid-file="$DIR/mariadb/mariadb.pid" \
            --log-error="$DIR/mariadb/mariadb.log" </dev/null >/dev/null 2>&1 &
        touch "$DIR/run/mariadbd.started-by-us"
        for i in $(seq 1 60); do mariadb -e 'select 1' >/dev/null 2>&1 && break; sleep 0.5; done
        mariadb -e 'select 1' >/dev/null 2>&1 ||
            { tail -n 15 "$DIR/mariadb/mariadb.log" >&2; die "mariadbd did not start"; }
    fi
    write_dbd_conf
    if ! pid_alive "$DIR/run/slurmdbd.pid"; then
        slurmdbd || { log_tails; die "slurmdbd did not start"; }
    fi
    for i in $(seq 1 60); do sacctmgr -n list cluster >/dev/null 2>&1 && return 0; sleep 0.5; done
    log_tails; die "slurmdbd does not answer (sacctmgr list cluster fails)"
}

node_state() { sinfo -h -N -n "$NODE" -o %T 2>/dev/null | head -n 1; }

wait_idle() {
    local deadline=$((SECONDS + WAIT_S)) state=""
    while ((SECONDS < deadline)); do
        state="$(node_state)"
        case "$state" in
            idle|mixed|allocated) return 0 ;;
            down*|drain*|drained*)
                scontrol update NodeName="$NODE" State=RESUME >/dev/null 2>&1 ;;
        esac
        sleep 1
    done
    log_tails
    die "node $NODE is not idle after ${WAIT_S}s (sinfo says: '${state:-no answer from slurmctld}')"
}

start() {
    mkdir -p "$DIR"/{state,spool,log,run}
    install_packages
    write_conf
    start_munge
    start_accounting
    if ! pid_alive "$DIR/run/slurmctld.pid"; then
        slurmctld || { log_tails; die "slurmctld did not start"; }
    fi
    if ! pid_alive "$DIR/run/slurmd.pid"; then
        slurmd || { log_tails; die "slurmd did not start"; }
    fi
    wait_idle
    say "up: node $NODE ($(sinfo -h -N -n "$NODE" -o '%c CPUs, %m MB, %T'), partition '$PARTITION'), logs in $DIR/log"
}

stop_pidfile() {
    local pidfile="$1" name="$2" pid i
    pid_alive "$pidfile" || return 0
    pid="$(cat "$pidfile")"
    kill "$pid" 2>/dev/null
    for i in $(seq 1 30); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.5; done
    say "$name (pid $pid) ignored SIGTERM for 15 s; killing it"
    kill -9 "$pid" 2>/dev/null
}

stop() {
    if command -v scontrol >/dev/null 2>&1 && [[ -f "$CONF" ]] && grep -qF "$MARKER" "$CONF" &&
        scontrol ping >/dev/null 2>&1; then
        # A test cluster: its jobs go with it (no job keeps running without its daemons).
        scancel --full --quiet --state=PENDING 2>/dev/null
        scancel --full --quiet 2>/dev/null
        local i
        for i in $(seq 1 20); do
            [[ -z "$(squeue -h -t PENDING,RUNNING,COMPLETING,SUSPENDED -o %i 2>/dev/null)" ]] && break
            sleep 0.5
        done
    fi
    stop_pidfile "$DIR/run/slurmd.pid" slurmd
    stop_pidfile "$DIR/run/slurmctld.pid" slurmctld
    stop_pidfile "$DIR/run/slurmdbd.pid" slurmdbd
    if [[ -f "$DIR/run/mariadbd.started-by-us" ]]; then
        stop_pidfile "$DIR/mariadb/mariadb.pid" mariadbd
        rm -f "$DIR/run/mariadbd.started-by-us"
    fi
    if [[ -f "$DIR/run/munged.started-by-us" ]]; then
        stop_pidfile /run/munge/munged.pid munged
        rm -f "$DIR/run/munged.started-by-us"
    fi
    say "stopped"
}

status() {
    local name pidfile ok=0
    for name in slurmdbd slurmctld slurmd; do
        pidfile="$DIR/run/$name.pid"
        if pid_alive "$pidfile"; then say "$name running (pid $(cat "$pidfile"))"; else say "$name not running"; ok=1; fi
    done
    if munge_works; then say "munged running"; else say "munged not running"; ok=1; fi
    local state
    state="$(node_state)"
    say "node $NODE: ${state:-no answer from slurmctld}"
    case "$state" in idle|mixed|allocated) ;; *) ok=1 ;; esac
    return $ok
}

case "${1:-}" in
    start) start ;;
    stop) stop ;;
    status) status ;;
    *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
