#!/usr/bin/env bash
# Start, stop or inspect a Dask cluster on this machine, bound to 127.0.0.1 only:
# one `dask scheduler` and N single-threaded `dask worker` processes.
#
#   deploy/local-cluster.sh start [N]   # N workers (default: number of cores); waits until ready
#   deploy/local-cluster.sh status      # exit 0 when running, 3 when not
#   deploy/local-cluster.sh stop        # stops everything this script started
#
# Then run jobs on it:
#   streammix fit data.zarr --model model --n-components 8 --scheduler-file .dask-cluster/scheduler.json
# Locations may be URLs (s3://bucket/data.zarr): the workers read the store's credentials from
# the environment `start` ran in (AWS_*, ...), so export them before starting.
#
# Environment:
#   STREAMMIX_CLUSTER_DIR     state directory: scheduler file, pid files, logs (default ./.dask-cluster)
#   STREAMMIX_SCHEDULER_PORT  scheduler port (default 8786; 0 picks a free one)
#   STREAMMIX_DASHBOARD_PORT  serve the scheduler dashboard on 127.0.0.1:PORT (default: no dashboard)
#   STREAMMIX_WORKER_MEMORY   memory limit per worker, e.g. 4GiB (default: auto)
#   STREAMMIX_CLUSTER_TIMEOUT seconds to wait for the scheduler and workers (default 60)
#   STREAMMIX_TLS_CA_FILE, STREAMMIX_TLS_CERT, STREAMMIX_TLS_KEY
#                             all three: the cluster speaks tls:// only (pass the same files to
#                             streammix as --tls-ca-file/--tls-cert/--tls-key)
#   STREAMMIX_DASK, STREAMMIX_PYTHON
#                             the `dask` and `python` to use (default: `dask` on PATH, else the
#                             repository's .venv; python next to that dask)
#
# Anyone who can reach a Dask scheduler can run code on its workers: everything here listens
# on 127.0.0.1, and the state directory is private to the user who started the cluster.

set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
readonly here
readonly state_dir="${STREAMMIX_CLUSTER_DIR:-./.dask-cluster}"
readonly scheduler_file="$state_dir/scheduler.json"
readonly scheduler_pid="$state_dir/scheduler.pid"
readonly workers_pid="$state_dir/workers.pid"
readonly timeout="${STREAMMIX_CLUSTER_TIMEOUT:-60}"

die() {
    echo "local-cluster: $*" >&2
    exit 1
}

find_dask() {
    if [[ -n "${STREAMMIX_DASK:-}" ]]; then
        echo "$STREAMMIX_DASK"
    elif command -v dask >/dev/null 2>&1; then
        command -v dask
    elif [[ -x "$here/../.venv/bin/dask" ]]; then
        echo "$here/../.venv/bin/dask"
    else
        die "no 'dask' command found; activate the environment or set STREAMMIX_DASK"
    fi
}

find_python() {
    local dask_bin="$1"
    if [[ -n "${STREAMMIX_PYTHON:-}" ]]; then
        echo "$STREAMMIX_PYTHON"
    elif [[ -x "$(dirname "$dask_bin")/python" ]]; then
        echo "$(dirname "$dask_bin")/python"
    else
        command -v python3 || die "no python found; set STREAMMIX_PYTHON"
    fi
}

# TLS flags shared by scheduler and workers (dask's option names match streammix's).
tls_args=()
tls_setup() {
    local ca="${STREAMMIX_TLS_CA_FILE:-}" cert="${STREAMMIX_TLS_CERT:-}" key="${STREAMMIX_TLS_KEY:-}"
    if [[ -z "$ca$cert$key" ]]; then
        return 0
    fi
    [[ -n "$ca" && -n "$cert" && -n "$key" ]] ||
        die "TLS needs all of STREAMMIX_TLS_CA_FILE, STREAMMIX_TLS_CERT and STREAMMIX_TLS_KEY"
    local f
    for f in "$ca" "$cert" "$key"; do
        [[ -r "$f" ]] || die "TLS file not readable: $f"
    done
    tls_args=(--tls-ca-file "$ca" --tls-cert "$cert" --tls-key "$key")
}

protocol() {
    if ((${#tls_args[@]})); then echo tls; else echo tcp; fi
}

# True while any process of the group led by the pid in file $1 is alive (zombies excluded).
group_alive() {
    local pidfile="$1" pgid stat
    [[ -f "$pidfile" ]] || return 1
    pgid="$(<"$pidfile")"
    [[ "$pgid" =~ ^[0-9]+$ ]] || return 1
    if ! command -v ps >/dev/null 2>&1; then
        kill -0 -- "-$pgid" 2>/dev/null
        return
    fi
    # ps lists every process with its group; a zombie (state Z) is already dead. The leader
    # counts too: just after launch it may not have made its own group yet.
    local pid pg
    while read -r pid pg stat; do
        if [[ ("$pg" == "$pgid" || "$pid" == "$pgid") && "$stat" != Z* ]]; then
            return 0
        fi
    done < <(ps -A -o pid= -o pgid= -o stat= 2>/dev/null)
    return 1
}

# Start "$@" in a new session (its own process group, no terminal) and record its pid.
launch() {
    local pidfile="$1" log="$2"
    shift 2
    if command -v setsid >/dev/null 2>&1; then
        setsid "$@" </dev/null >>"$log" 2>&1 &
    else
        # No setsid (macOS): job control gives the background job its own process group.
        set -m
        nohup "$@" </dev/null >>"$log" 2>&1 &
        set +m
    fi
    echo "$!" >"$pidfile"
}

# Number of workers connected to the scheduler in the scheduler file, or fail. With a
# second argument N, waits up to 5 s for N workers (while the processes whose pids follow
# live) before answering.
count_workers() {
    local python="$1" wanted="${2:-0}"
    shift 2 || shift $#
    STREAMMIX_LC_SCHEDULER_FILE="$scheduler_file" STREAMMIX_LC_WANTED="$wanted" \
        STREAMMIX_LC_WATCH="$*" "$python" - ${tls_args[@]+"${tls_args[@]}"} <<'EOF'
import os
import sys
import time

import psutil

from distributed import Client
from distributed.security import Security

args = dict(zip(sys.argv[1::2], sys.argv[2::2]))
security = None
if args:
    security = Security(
        tls_ca_file=args["--tls-ca-file"],
        tls_client_cert=args["--tls-cert"],
        tls_client_key=args["--tls-key"],
        require_encryption=True,
    )
with Client(
    scheduler_file=os.environ["STREAMMIX_LC_SCHEDULER_FILE"], security=security, timeout=10
) as client:
    def alive(pid):
        try:
            return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
        except psutil.Error:
            return False

    watch = [int(pid) for pid in os.environ["STREAMMIX_LC_WATCH"].split()]
    deadline = time.monotonic() + 5
    while len(client.nthreads()) < int(os.environ["STREAMMIX_LC_WANTED"]):
        if time.monotonic() > deadline or not all(map(alive, watch)):
            break
        time.sleep(0.1)
    print(len(client.nthreads()))
EOF
}

stop_group() {
    local pidfile="$1" what="$2" pgid waited
    if [[ ! -f "$pidfile" ]]; then
        return 0
    fi
    pgid="$(<"$pidfile")"
    if group_alive "$pidfile"; then
        echo "stopping $what (process group $pgid)"
        # The leader first, so that it can shut its children down cleanly ...
        kill -TERM "$pgid" 2>/dev/null || true
        for ((waited = 0; waited < 100; waited++)); do
            group_alive "$pidfile" || break
            sleep 0.1
        done
        # ... then whatever is left of its group.
        if group_alive "$pidfile"; then
            kill -TERM -- "-$pgid" 2>/dev/null || true
            for ((waited = 0; waited < 50; waited++)); do
                group_alive "$pidfile" || break
                sleep 0.1
            done
        fi
        if group_alive "$pidfile"; then
            echo "local-cluster: $what did not stop, killing process group $pgid" >&2
            kill -KILL -- "-$pgid" 2>/dev/null || true
            sleep 0.2
        fi
    fi
    rm -f "$pidfile"
}

cmd_stop() {
    stop_group "$workers_pid" "workers"
    stop_group "$scheduler_pid" "scheduler"
    rm -f "$scheduler_file"
}

started=1
stop_unless_started() {
    if ((!started)); then
        echo "local-cluster: start failed, stopping" >&2
        cmd_stop >&2
    fi
}

cmd_start() {
    local n="${1:-}"
    if [[ -z "$n" ]]; then
        n="$(getconf _NPROCESSORS_ONLN 2>/dev/null || echo 2)"
    fi
    [[ "$n" =~ ^[1-9][0-9]*$ ]] || die "N must be a positive integer, got '$n'"
    [[ "$timeout" =~ ^[1-9][0-9]*$ ]] || die "STREAMMIX_CLUSTER_TIMEOUT must be a positive integer"
    local port="${STREAMMIX_SCHEDULER_PORT:-8786}"
    [[ "$port" =~ ^[0-9]+$ ]] || die "STREAMMIX_SCHEDULER_PORT must be a port number"

    if group_alive "$scheduler_pid" || group_alive "$workers_pid"; then
        die "a cluster is already running from $state_dir; run '$0 stop' first"
    fi
    tls_setup
    local dask_bin python
    dask_bin="$(find_dask)"
    python="$(find_python "$dask_bin")"

    mkdir -p "$state_dir"
    chmod 700 "$state_dir"
    rm -f "$scheduler_file" "$scheduler_pid" "$workers_pid"
    : >"$state_dir/scheduler.log"
    : >"$state_dir/workers.log"

    # From here on, a failure (or Ctrl-C) stops whatever was started.
    started=0
    trap stop_unless_started EXIT
    trap 'exit 130' INT TERM

    # Scheduler and workers serve HTTP (health, metrics) even without the dashboard, on all
    # interfaces unless told otherwise: pin it to loopback, on a free port.
    local dashboard=(--no-dashboard --dashboard-address 127.0.0.1:0)
    if [[ -n "${STREAMMIX_DASHBOARD_PORT:-}" ]]; then
        [[ "$STREAMMIX_DASHBOARD_PORT" =~ ^[0-9]+$ ]] || die "STREAMMIX_DASHBOARD_PORT must be a port number"
        dashboard=(--dashboard --dashboard-address "127.0.0.1:$STREAMMIX_DASHBOARD_PORT")
    fi
    launch "$scheduler_pid" "$state_dir/scheduler.log" \
        "$dask_bin" scheduler \
        --host 127.0.0.1 --port "$port" --protocol "$(protocol)" \
        "${dashboard[@]}" \
        --scheduler-file "$scheduler_file" \
        ${tls_args[@]+"${tls_args[@]}"}

    local waited
    for ((waited = 0; waited < timeout * 10; waited++)); do
        [[ -s "$scheduler_file" ]] && break
        group_alive "$scheduler_pid" || break
        sleep 0.1
    done
    if [[ ! -s "$scheduler_file" ]]; then
        echo "local-cluster: the scheduler did not start; last lines of $state_dir/scheduler.log:" >&2
        tail -n 20 "$state_dir/scheduler.log" >&2 || true
        exit 1
    fi

    launch "$workers_pid" "$state_dir/workers.log" \
        "$dask_bin" worker \
        --scheduler-file "$scheduler_file" \
        --host 127.0.0.1 --protocol "$(protocol)" \
        --nworkers "$n" --nthreads 1 \
        --memory-limit "${STREAMMIX_WORKER_MEMORY:-auto}" \
        --no-dashboard --dashboard-address 127.0.0.1:0 \
        --death-timeout 60 \
        --local-directory "$state_dir/work" \
        ${tls_args[@]+"${tls_args[@]}"}

    local connected=0 deadline=$((SECONDS + timeout))
    while ((SECONDS < deadline)); do
        if ! group_alive "$workers_pid" || ! group_alive "$scheduler_pid"; then
            break
        fi
        connected="$(count_workers "$python" "$n" "$(<"$scheduler_pid")" "$(<"$workers_pid")" \
            2>/dev/null || echo 0)"
        ((connected >= n)) && break
        sleep 0.2
    done
    if ((connected < n)); then
        local why="after ${timeout}s"
        group_alive "$workers_pid" || why="(the workers exited)"
        group_alive "$scheduler_pid" || why="(the scheduler exited)"
        echo "local-cluster: $connected of $n workers connected $why; last lines of $state_dir/workers.log:" >&2
        tail -n 20 "$state_dir/workers.log" >&2 || true
        exit 1
    fi
    started=1
    trap - INT TERM

    local address
    address="$("$python" -c 'import json, sys; print(json.load(open(sys.argv[1]))["address"])' "$scheduler_file")"
    echo "scheduler $address with $n workers"
    echo "scheduler file: $scheduler_file"
    echo "use: streammix <command> ... --scheduler-file $scheduler_file"
}

cmd_status() {
    local running=0
    if group_alive "$scheduler_pid"; then
        echo "scheduler: running (pid $(<"$scheduler_pid"))"
        running=1
    else
        echo "scheduler: not running"
    fi
    if group_alive "$workers_pid"; then
        echo "workers: running (pid $(<"$workers_pid"))"
    else
        echo "workers: not running"
        running=0
    fi
    if ((running)) && [[ -s "$scheduler_file" ]]; then
        tls_setup
        local python
        python="$(find_python "$(find_dask)")"
        echo "scheduler file: $scheduler_file"
        echo "connected workers: $(count_workers "$python" 0 2>/dev/null || echo unknown)"
        return 0
    fi
    return 3
}

usage() {
    sed -n '2,8p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
}

main() {
    case "${1:-}" in
        start)
            shift
            (($# <= 1)) || die "usage: $0 start [N]"
            cmd_start "$@"
            ;;
        stop) cmd_stop ;;
        status) cmd_status ;;
        -h | --help | help) usage ;;
        *)
            usage >&2
            exit 2
            ;;
    esac
}

main "$@"
