#!/usr/bin/env bash
# A Sluice cluster as separate processes on this machine: one coordinator, N workers.
#
#   deploy/local-cluster.sh N        start a coordinator and N workers in the background
#   deploy/local-cluster.sh status   show the recorded processes and the registered workers
#   deploy/local-cluster.sh stop     SIGTERM the workers (they drain), then the coordinator
#
# Run it from the repository root after `cargo build --release --workspace`. On success it
# prints, on standard output, the line that points the client commands at the cluster:
#   export SLUICE_COORDINATOR=http://127.0.0.1:7700 SLUICE_TOKEN_FILE=/…/.sluice-cluster/token
# so `eval "$(deploy/local-cluster.sh 3)"` starts the cluster and sets up the shell at once.
#
# Environment:
#   SLUICE_BIN            the sluice binary (default ./target/release/sluice)
#   SLUICE_CLUSTER_DIR    logs/, pids/, token, state/ and work-N/ (default .sluice-cluster)
#   SLUICE_PORT           coordinator gRPC port on 127.0.0.1 (default 7700); HTTP is PORT+80
#   SLUICE_LOG            log filter of the processes (default info)
#   SLUICE_SLOTS          task slots per worker (default: the number of cores)
#   SLUICE_START_TIMEOUT  seconds to wait for the cluster to come up (default 30)
#   SLUICE_STOP_TIMEOUT   seconds to wait for each stage of `stop` before SIGKILL (default 360;
#                         a worker drains its running tasks for up to 300 s)
#
# The cluster directory survives `stop`: the coordinator's job store keeps `sluice jobs`
# history across restarts and the token stays valid. `rm -rf .sluice-cluster` starts afresh.

set -euo pipefail

prog=$0
bin=${SLUICE_BIN:-./target/release/sluice}
dir=${SLUICE_CLUSTER_DIR:-.sluice-cluster}
port=${SLUICE_PORT:-7700}
start_timeout=${SLUICE_START_TIMEOUT:-30}
stop_timeout=${SLUICE_STOP_TIMEOUT:-360}

# Settings from the caller's environment that would point the processes elsewhere (a config
# file with TLS, another state dir...). Everything the cluster needs is passed as flags.
child_env=(env
    -u SLUICE_CONFIG -u SLUICE_COORDINATOR -u SLUICE_COORDINATOR_LISTEN -u SLUICE_WORKER_LISTEN -u SLUICE_HTTP
    -u SLUICE_WORKER_HTTP -u SLUICE_ADVERTISE -u SLUICE_STATE_DIR -u SLUICE_WORK_DIR -u SLUICE_TOKEN_FILE
    -u SLUICE_TLS_CERT -u SLUICE_TLS_KEY -u SLUICE_TLS_CA -u SLUICE_TLS_DOMAIN
    "SLUICE_LOG=${SLUICE_LOG:-info}" NO_COLOR=1)

started_pids=()   # processes started by this invocation, stopped again if start fails
started_names=()
ready=0

usage() { # [EXIT_CODE]
    cat >&2 <<EOF
usage: $prog N        start a coordinator and N workers (N from 1 to 64)
       $prog status   show the cluster's processes
       $prog stop     stop them (workers drain first)
EOF
    exit "${1:-2}"
}

say() { printf '%s\n' "$*" >&2; }
die() { say "$prog: $*"; exit 1; }

is_number() { [[ $1 =~ ^[0-9]+$ ]]; }

# True when PID is alive and is a sluice process (not a reused pid).
is_sluice() {
    local pid=$1 cmd
    kill -0 "$pid" 2>/dev/null || return 1
    if [[ -r /proc/$pid/cmdline ]]; then
        cmd=$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null) || return 1
    else
        cmd=$(ps -p "$pid" -o args= 2>/dev/null) || return 1
    fi
    [[ $cmd == *sluice* ]]
}

read_pid() { # FILE -> the pid in it, or nothing
    local pid=""
    if [[ -r $1 ]]; then read -r pid <"$1" || true; fi
    if is_number "${pid:-x}"; then printf '%s\n' "$pid"; fi
}

# Pid files, workers before the coordinator (the order of stopping).
pid_files() {
    local f
    for f in "$dir"/pids/worker-*.pid "$dir"/pids/coordinator.pid; do
        [[ -e $f ]] && printf '%s\n' "$f"
    done
    return 0
}

# The first VALUE of KEY=VALUE in a log file (colour codes and quotes removed).
log_field() { # FILE KEY
    [[ -r $1 ]] || return 0
    awk -v key="$2=" '{
        gsub(/\033\[[0-9;]*m/, "")
        for (i = 1; i <= NF; i++)
            if (index($i, key) == 1) { v = substr($i, length(key) + 1); gsub(/[",]/, "", v); print v; exit }
    }' "$1"
}

# True when GET http://HOST:PORT/PATH answers 200.
http_ok() { # HOST PORT PATH
    if command -v curl >/dev/null 2>&1; then
        curl -fsS --max-time 2 -o /dev/null "http://$1:$2$3" 2>/dev/null
    else
        (
            exec 3<>"/dev/tcp/$1/$2" || exit 1
            printf 'GET %s HTTP/1.0\r\nHost: %s:%s\r\nConnection: close\r\n\r\n' "$3" "$1" "$2" >&3
            IFS= read -r -t 2 status <&3 || exit 1
            [[ $status == "HTTP/1."[01]" 200"* ]]
        ) 2>/dev/null
    fi
}

show_logs() {
    local name log
    for name in "$@"; do
        log=$dir/logs/$name.log
        [[ -r $log ]] || continue
        say "--- $log (last 20 lines)"
        tail -n 20 "$log" >&2 || true
    done
}

fail() {
    say "$prog: $*"
    [[ ${#started_names[@]} -gt 0 ]] && show_logs "${started_names[@]}"
    exit 1
}

# SIGTERM the given pids, wait up to TIMEOUT seconds, then SIGKILL what is left.
terminate() { # TIMEOUT PID...
    local timeout=$1 pid left deadline
    shift
    [[ $# -gt 0 ]] || return 0
    kill -TERM "$@" 2>/dev/null || true
    deadline=$((SECONDS + timeout))
    while :; do
        left=()
        for pid in "$@"; do
            if is_sluice "$pid"; then left+=("$pid"); fi
        done
        [[ ${#left[@]} -gt 0 ]] || return 0
        if ((SECONDS >= deadline)); then
            say "still running after ${timeout}s, sending SIGKILL: ${left[*]}"
            kill -KILL "${left[@]}" 2>/dev/null || true
            return 0
        fi
        sleep 0.2
    done
}

# On a failed or interrupted start, stop what this invocation started.
cleanup() {
    if ((ready == 0 && ${#started_pids[@]} > 0)); then
        say "stopping the processes started by this run"
        terminate 10 "${started_pids[@]}"
        rm -f "$dir"/pids/*.pid
    fi
}

# Starts the sluice binary with ARGS in the background as NAME, logging to logs/NAME.log.
launch() { # NAME ARGS...
    local name=$1 log
    shift
    log=$dir/logs/$name.log
    if [[ -e $log ]]; then mv -f "$log" "$log.1"; fi
    # setsid: the processes outlive this script and ignore the terminal's Ctrl-C.
    if command -v setsid >/dev/null 2>&1; then
        "${child_env[@]}" setsid "$bin" "$@" </dev/null >"$log" 2>&1 &
    else
        "${child_env[@]}" nohup "$bin" "$@" </dev/null >"$log" 2>&1 &
    fi
    started_pids+=("$!")
    started_names+=("$name")
    printf '%s\n' "$!" >"$dir/pids/$name.pid"
}

check_alive() { # NAME
    local pid
    pid=$(read_pid "$dir/pids/$1.pid")
    if [[ -z $pid ]] || ! kill -0 "$pid" 2>/dev/null; then
        fail "the $1 exited during start-up (log: $dir/logs/$1.log)"
    fi
}

# "name pid, name pid" of the recorded processes that are running.
running_summary() {
    local f pid out=()
    while IFS= read -r f; do
        pid=$(read_pid "$f")
        if [[ -n $pid ]] && is_sluice "$pid"; then
            out+=("$(basename "$f" .pid) $pid")
        fi
    done < <(pid_files)
    if [[ ${#out[@]} -gt 0 ]]; then
        printf '%s' "${out[0]}"
        printf ', %s' "${out[@]:1}"
        printf '\n'
    fi
}

start() {
    local n=$1 http_port url i p name addr count out deadline shuffle_ports=()
    { is_number "$n" && ((n >= 1 && n <= 64)); } || usage
    { is_number "$port" && ((port >= 1 && port <= 65455)); } ||
        die "SLUICE_PORT must be a port from 1 to 65455 (the HTTP port is SLUICE_PORT+80)"
    { is_number "$start_timeout" && is_number "$stop_timeout"; } ||
        die "SLUICE_START_TIMEOUT and SLUICE_STOP_TIMEOUT must be whole seconds"
    http_port=$((port + 80))
    url=http://127.0.0.1:$port

    if [[ ! -x $bin ]]; then
        die "no sluice binary at $bin: run 'cargo build --release --workspace' in the repository root and start this script from there (or set SLUICE_BIN)"
    fi
    if [[ -d $dir/pids ]]; then
        out=$(running_summary)
        [[ -z $out ]] || die "a cluster is already running from $dir ($out): '$prog stop' it first"
    fi

    if [[ ! -d $dir ]]; then
        mkdir -p "$dir"
        chmod 700 "$dir"
        printf '*\n' >"$dir/.gitignore" # keep the cluster directory out of git
    fi
    mkdir -p "$dir/logs" "$dir/pids" "$dir/state"
    rm -f "$dir"/pids/*.pid            # stale: nothing recorded is running
    dir=$(cd "$dir" && pwd)            # absolute from here on: logs, flags, printed lines
    case $bin in /*) ;; *) bin=$PWD/$bin ;; esac
    if [[ ! -s $dir/token ]]; then
        (umask 077 && head -c 32 /dev/urandom | base64 >"$dir/token")
    fi
    chmod 600 "$dir/token"

    trap cleanup EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM

    say "starting the coordinator on $url (HTTP on port $http_port)"
    launch coordinator coordinator --listen "127.0.0.1:$port" --http "127.0.0.1:$http_port" \
        --state-dir "$dir/state" --token-file "$dir/token"
    deadline=$((SECONDS + start_timeout))
    until [[ -n $(log_field "$dir/logs/coordinator.log" grpc) ]] &&
        http_ok 127.0.0.1 "$http_port" /readyz; do
        check_alive coordinator
        ((SECONDS < deadline)) ||
            fail "the coordinator was not ready within ${start_timeout}s (no 'grpc=' in its log, or http://127.0.0.1:$http_port/readyz not answering 200)"
        sleep 0.2
    done

    say "starting $n workers"
    for ((i = 1; i <= n; i++)); do
        mkdir -p "$dir/work-$i"
        launch "worker-$i" worker --coordinator "$url" --listen 127.0.0.1:0 \
            --work-dir "$dir/work-$i" --token-file "$dir/token"
    done
    for ((i = 1; i <= n; i++)); do
        name=worker-$i
        until addr=$(log_field "$dir/logs/$name.log" shuffle) && [[ -n $addr ]]; do
            check_alive "$name"
            ((SECONDS < deadline)) || fail "$name logged no 'shuffle=' address within ${start_timeout}s"
            sleep 0.2
        done
        shuffle_ports+=("${addr##*:}")
    done

    # Registered = every worker's shuffle port appears in `sluice workers` (whatever its
    # layout); ports bound to 127.0.0.1:0 are unique on this machine.
    count=0
    out=""
    while :; do
        if out=$("${child_env[@]}" "$bin" workers --coordinator "$url" --token-file "$dir/token" --json 2>&1); then
            count=0
            for p in "${shuffle_ports[@]}"; do
                if grep -Eq ":$p([^0-9]|\$)" <<<"$out"; then count=$((count + 1)); fi
            done
            ((count < n)) || break
        fi
        for ((i = 1; i <= n; i++)); do check_alive "worker-$i"; done
        check_alive coordinator
        if ((SECONDS >= deadline)); then
            say "last output of 'sluice workers':"
            say "$out"
            fail "$count of $n workers registered within ${start_timeout}s"
        fi
        sleep 0.3
    done

    ready=1
    printf 'export SLUICE_COORDINATOR=%s SLUICE_TOKEN_FILE=%q\n' "$url" "$dir/token" >"$dir/env"
    say ""
    say "Sluice cluster up: coordinator $url, $n workers"
    say "  HTTP: http://127.0.0.1:$http_port/metrics, /healthz, /readyz"
    say "  logs, pids, token, state and work dirs: $dir"
    say "  stop it: $prog stop"
    say ""
    say "Point the sluice client commands at it (also in $dir/env):"
    cat "$dir/env"
}

status() {
    local f name pid state addr grpc any=0 all=1 coordinator_up=0
    while IFS= read -r f; do
        any=1
        name=$(basename "$f" .pid)
        pid=$(read_pid "$f")
        if [[ -n $pid ]] && is_sluice "$pid"; then
            state=running
            [[ $name != coordinator ]] || coordinator_up=1
        else
            state="not running"
            all=0
        fi
        if [[ $name == coordinator ]]; then
            addr="grpc=$(log_field "$dir/logs/$name.log" grpc) http=$(log_field "$dir/logs/$name.log" http)"
        else
            addr="shuffle=$(log_field "$dir/logs/$name.log" shuffle)"
        fi
        printf '%-12s pid %-8s %-12s %s\n' "$name" "${pid:-?}" "$state" "$addr"
    done < <(pid_files)
    if ((any == 0)); then
        say "no cluster recorded in $dir"
        return 1
    fi
    printf 'logs: %s/logs\n' "$dir"
    grpc=$(log_field "$dir/logs/coordinator.log" grpc)
    if ((coordinator_up)) && [[ -n $grpc && -r $dir/env && -x $bin ]]; then
        printf '\n'
        cat "$dir/env"
        printf '\n'
        "${child_env[@]}" "$bin" workers --coordinator "http://$grpc" --token-file "$dir/token" || true
    fi
    ((all))
}

stop() {
    local f name pid workers=() coordinator=()
    { is_number "$stop_timeout"; } || die "SLUICE_STOP_TIMEOUT must be whole seconds"
    while IFS= read -r f; do
        name=$(basename "$f" .pid)
        pid=$(read_pid "$f")
        if [[ -z $pid ]] || ! is_sluice "$pid"; then
            rm -f "$f"
            continue
        fi
        if [[ $name == coordinator ]]; then coordinator+=("$pid"); else workers+=("$pid"); fi
    done < <(pid_files)
    if [[ ${#workers[@]} -eq 0 && ${#coordinator[@]} -eq 0 ]]; then
        say "no cluster running from $dir"
        return 0
    fi
    # Workers first: while draining they still report to the coordinator.
    if [[ ${#workers[@]} -gt 0 ]]; then
        say "stopping ${#workers[@]} worker(s): running tasks finish first"
        terminate "$stop_timeout" "${workers[@]}"
    fi
    if [[ ${#coordinator[@]} -gt 0 ]]; then
        say "stopping the coordinator"
        terminate "$stop_timeout" "${coordinator[@]}"
    fi
    rm -f "$dir"/pids/*.pid
    say "stopped (logs and state kept in $dir)"
}

[[ $# -eq 1 ]] || usage
case $1 in
    stop) stop ;;
    status) status ;;
    -h | --help | help) usage 0 ;;
    *) start "$1" ;;
esac
