#!/usr/bin/env bash
# Local backing services for tests and local runs: a single-node Apache Kafka
# broker (KRaft, combined broker + controller) and a redis-server, both bound
# to 127.0.0.1 only. Everything lives under .services/ (git-ignored).
#
# Usage:
#   scripts/services.sh install [kafka|redis|all]  redis-server via apt-get if missing,
#                                                  Kafka jars via Maven if missing
#   scripts/services.sh start   [kafka|redis|all]  install if needed, start, wait until ready
#   scripts/services.sh stop    [kafka|redis|all]  stop what this script started
#   scripts/services.sh restart [kafka|redis|all]
#   scripts/services.sh status                     exit 0 when all are up and answering, 3 otherwise
#
# Environment:
#   KAFKA_PORT (9092), KAFKA_CONTROLLER_PORT (9093), REDIS_PORT (6379)
#   KAFKA_HEAP_OPTS ("-Xmx1g -Xms512m"), KAFKA_JVM_OPTS (extra JVM flags for the broker)
#   KAFKA_START_TIMEOUT (90 s), REDIS_START_TIMEOUT (20 s), SERVICES_STOP_TIMEOUT (30 s)
#   KAFKA_KEEP_DATA=1   keep the broker's data between starts (default: a fresh,
#                       newly formatted data dir on every start)
#
# Progress goes to stderr; only `status` writes to stdout.

set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"
SVC_DIR="$ROOT/.services"
KAFKA_SRC="$ROOT/scripts/kafka"

KAFKA_DIR="$SVC_DIR/kafka"
KAFKA_LIBS="$KAFKA_DIR/libs"
KAFKA_DATA="$KAFKA_DIR/data"
KAFKA_LOGS="$KAFKA_DIR/logs"
KAFKA_CONF="$KAFKA_DIR/server.properties"
KAFKA_PIDFILE="$KAFKA_DIR/kafka.pid"
KAFKA_PORTFILE="$KAFKA_DIR/ports"

REDIS_DIR="$SVC_DIR/redis"
REDIS_PIDFILE="$REDIS_DIR/redis.pid"
REDIS_LOG="$REDIS_DIR/redis.log"
REDIS_PORTFILE="$REDIS_DIR/port"

KAFKA_PORT="${KAFKA_PORT:-9092}"
KAFKA_CONTROLLER_PORT="${KAFKA_CONTROLLER_PORT:-9093}"
REDIS_PORT="${REDIS_PORT:-6379}"
KAFKA_HEAP_OPTS="${KAFKA_HEAP_OPTS:--Xmx1g -Xms512m}"
KAFKA_JVM_OPTS="${KAFKA_JVM_OPTS:-}"
KAFKA_START_TIMEOUT="${KAFKA_START_TIMEOUT:-90}"
REDIS_START_TIMEOUT="${REDIS_START_TIMEOUT:-20}"
STOP_TIMEOUT="${SERVICES_STOP_TIMEOUT:-30}"
KAFKA_KEEP_DATA="${KAFKA_KEEP_DATA:-0}"

JAVA="${JAVA_HOME:+$JAVA_HOME/bin/}java"

log() { printf 'services: %s\n' "$*" >&2; }
die() { printf 'services: error: %s\n' "$*" >&2; exit 1; }

for _v in KAFKA_PORT KAFKA_CONTROLLER_PORT REDIS_PORT KAFKA_START_TIMEOUT REDIS_START_TIMEOUT STOP_TIMEOUT; do
    [[ "${!_v}" =~ ^[0-9]+$ ]] || die "$_v must be a number, got '${!_v}'"
done
[ "$KAFKA_PORT" != "$KAFKA_CONTROLLER_PORT" ] || die "KAFKA_PORT and KAFKA_CONTROLLER_PORT must differ"

# ---------------------------------------------------------------- helpers ---

as_root() {
    if [ "$(id -u)" -eq 0 ]; then
        "$@"
    elif command -v sudo >/dev/null 2>&1; then
        sudo -n "$@"
    else
        die "need root (or sudo) to run: $*"
    fi
}

# Takes a lock so that parallel invocations (e.g. several test runners) do not
# race. Children we start must not inherit fd 9 (see `9>&-` below).
take_lock() {
    mkdir -p "$SVC_DIR"
    exec 9>"$SVC_DIR/.lock"
    flock -w 600 9 || die "could not take $SVC_DIR/.lock"
}

# pid from a pid file, or nothing.
read_pid() {
    [ -f "$1" ] || return 0
    head -n 1 "$1" 2>/dev/null | tr -dc '0-9' || true
}

# A live (not zombie) process whose command line contains $2.
pid_is() {
    local pid="$1" pattern="$2" stat args
    [ -n "$pid" ] || return 1
    stat="$(ps -o stat= -p "$pid" 2>/dev/null || true)"
    [ -n "$stat" ] || return 1
    case "$stat" in Z*) return 1 ;; esac
    args="$(ps -o args= -p "$pid" 2>/dev/null || true)"
    [[ "$args" == *"$pattern"* ]]
}

port_open() {
    timeout 3 bash -c "exec 3<>/dev/tcp/127.0.0.1/$1" 2>/dev/null
}

# Sends TERM, waits, then KILL. $1 name, $2 pid.
terminate() {
    local name="$1" pid="$2" pattern="$3" waited=0
    log "stopping $name (pid $pid)"
    kill -TERM "$pid" 2>/dev/null || true
    while pid_is "$pid" "$pattern"; do
        if [ "$waited" -ge $((STOP_TIMEOUT * 5)) ]; then
            log "$name (pid $pid) still running after ${STOP_TIMEOUT}s: kill -9"
            kill -KILL "$pid" 2>/dev/null || true
            local k=0
            while pid_is "$pid" "$pattern" && [ "$k" -lt 50 ]; do sleep 0.2; k=$((k + 1)); done
            pid_is "$pid" "$pattern" && die "$name (pid $pid) survived kill -9"
            break
        fi
        sleep 0.2
        waited=$((waited + 1))
    done
    log "$name stopped"
}

# apt-get install, running `apt-get update` only when a package has no
# candidate in the current lists or the first install attempt fails.
apt_install() {
    command -v apt-get >/dev/null 2>&1 || die "apt-get not found; install $* by hand"
    export DEBIAN_FRONTEND=noninteractive
    local policy=/usr/sbin/policy-rc.d made_policy=0 updated=0 rc=0 p cand
    # Keep the packages' own init scripts from starting a system-wide service
    # (e.g. a redis-server on 6379): this script starts its own.
    if [ ! -e "$policy" ]; then
        as_root sh -c "printf '#!/bin/sh\nexit 101\n' > $policy && chmod 755 $policy"
        made_policy=1
    fi
    for p in "$@"; do
        cand="$(apt-cache policy "$p" 2>/dev/null | awk '/Candidate:/ {print $2}')"
        if [ -z "$cand" ] || [ "$cand" = "(none)" ]; then
            log "apt-get update (no candidate for $p in the package lists)"
            as_root apt-get update -q >&2 || rc=$?
            updated=1
            break
        fi
    done
    if [ "$rc" -eq 0 ]; then
        log "apt-get install -y $*"
        as_root apt-get install -y -q --no-install-recommends \
            -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold "$@" >&2 || rc=$?
        if [ "$rc" -ne 0 ] && [ "$updated" -eq 0 ]; then
            log "apt-get install failed; apt-get update and retry"
            rc=0
            as_root apt-get update -q >&2 || rc=$?
            [ "$rc" -ne 0 ] || as_root apt-get install -y -q --no-install-recommends \
                -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold "$@" >&2 || rc=$?
        fi
    fi
    [ "$made_policy" -eq 0 ] || as_root rm -f "$policy"
    [ "$rc" -eq 0 ] || die "apt-get install $* failed"
}

# ------------------------------------------------------------------ redis ---

install_redis() {
    if command -v redis-server >/dev/null 2>&1 && command -v redis-cli >/dev/null 2>&1; then
        return 0
    fi
    log "redis-server not found: installing it"
    apt_install redis-server
    command -v redis-server >/dev/null 2>&1 || die "redis-server still not on PATH after install"
}

redis_running() { pid_is "$(read_pid "$REDIS_PIDFILE")" redis-server; }

redis_ping() {
    [ "$(timeout 5 redis-cli -h 127.0.0.1 -p "$1" ping 2>/dev/null || true)" = "PONG" ]
}

redis_recorded_port() { cat "$REDIS_PORTFILE" 2>/dev/null || echo "$REDIS_PORT"; }

redis_log_tail() {
    local f
    for f in "$REDIS_DIR/redis.out" "$REDIS_LOG"; do
        if [ -s "$f" ]; then
            log "last lines of $f:"
            tail -n 40 "$f" >&2 || true
        fi
    done
}

start_redis() {
    install_redis
    mkdir -p "$REDIS_DIR"
    if redis_running; then
        local port; port="$(redis_recorded_port)"
        if [ "$port" != "$REDIS_PORT" ]; then
            die "redis is already running on port $port (pid $(read_pid "$REDIS_PIDFILE")); stop it first to use port $REDIS_PORT"
        fi
        if redis_ping "$port"; then
            log "redis already running (pid $(read_pid "$REDIS_PIDFILE"), 127.0.0.1:$port)"
            return 0
        fi
        log "redis (pid $(read_pid "$REDIS_PIDFILE")) does not answer; restarting it"
        stop_redis
    fi
    rm -f "$REDIS_PIDFILE"
    if port_open "$REDIS_PORT"; then
        die "127.0.0.1:$REDIS_PORT is in use by a process this script did not start; stop it or set REDIS_PORT"
    fi
    log "starting redis-server on 127.0.0.1:$REDIS_PORT"
    echo "$REDIS_PORT" >"$REDIS_PORTFILE"
    redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --protected-mode yes \
        --save '' --appendonly no --daemonize yes \
        --pidfile "$REDIS_PIDFILE" --logfile "$REDIS_LOG" --dir "$REDIS_DIR" \
        </dev/null >/dev/null 2>"$REDIS_DIR/redis.out" 9>&- || { redis_log_tail; die "redis-server failed to start"; }
    local deadline=$((SECONDS + REDIS_START_TIMEOUT))
    until redis_ping "$REDIS_PORT"; do
        if [ "$SECONDS" -ge "$deadline" ]; then
            redis_log_tail
            die "redis did not answer PING on 127.0.0.1:$REDIS_PORT within ${REDIS_START_TIMEOUT}s"
        fi
        sleep 0.2
    done
    # The daemon writes its pid file right after forking; wait for it too.
    local k=0
    while ! redis_running && [ "$k" -lt 25 ]; do sleep 0.2; k=$((k + 1)); done
    redis_running || die "redis answers on 127.0.0.1:$REDIS_PORT but $REDIS_PIDFILE does not name it"
    log "redis ready (pid $(read_pid "$REDIS_PIDFILE"), 127.0.0.1:$REDIS_PORT)"
}

stop_redis() {
    local pid; pid="$(read_pid "$REDIS_PIDFILE")"
    if pid_is "$pid" redis-server; then
        terminate redis "$pid" redis-server
    else
        log "redis not running"
    fi
    rm -f "$REDIS_PIDFILE" "$REDIS_PORTFILE"
}

status_redis() {
    local pid port; pid="$(read_pid "$REDIS_PIDFILE")"; port="$(redis_recorded_port)"
    if pid_is "$pid" redis-server; then
        if redis_ping "$port"; then
            echo "redis: running (pid $pid, 127.0.0.1:$port, PING ok)"
            return 0
        fi
        echo "redis: running (pid $pid, 127.0.0.1:$port) but not answering PING"
        return 3
    fi
    echo "redis: stopped"
    return 3
}

# ------------------------------------------------------------------ kafka ---

kafka_stamp() { sha256sum "$KAFKA_SRC/pom.xml" | cut -d ' ' -f 1; }

kafka_installed() {
    [ -f "$KAFKA_LIBS/.installed" ] && [ "$(cat "$KAFKA_LIBS/.installed")" = "$(kafka_stamp)" ]
}

ensure_java_maven() {
    if ! command -v "$JAVA" >/dev/null 2>&1; then
        log "java not found: installing a JRE"
        apt_install default-jre-headless
    fi
    if ! command -v mvn >/dev/null 2>&1; then
        log "mvn not found: installing Maven"
        apt_install maven
    fi
}

install_kafka() {
    kafka_installed && return 0
    if kafka_running; then
        log "warning: Kafka jars are out of date but the broker is running; stop it and run install again"
        return 0
    fi
    ensure_java_maven
    command -v "$JAVA" >/dev/null 2>&1 || die "java not found"
    local tmp="$KAFKA_DIR/libs.tmp.$$"
    rm -rf "$tmp"
    mkdir -p "$tmp"
    log "fetching Kafka jars with Maven (scripts/kafka/pom.xml) into .services/kafka/libs"
    # (Debian's Maven 3.8 prints bare colour resets even with -B: strip them.)
    if ! (cd "$KAFKA_SRC" && mvn -q -B -f pom.xml dependency:copy-dependencies \
            -DincludeScope=runtime -DoutputDirectory="$tmp" </dev/null 2>&1 9>&- \
            | sed -e 's/\x1b\[[0-9;]*m//g' >&2); then
        rm -rf "$tmp"
        die "mvn dependency:copy-dependencies failed (see above)"
    fi
    ls "$tmp"/kafka_2.13-*.jar >/dev/null 2>&1 || { rm -rf "$tmp"; die "no kafka_2.13 jar was copied"; }
    kafka_stamp >"$tmp/.installed"
    rm -rf "$KAFKA_LIBS"
    mv "$tmp" "$KAFKA_LIBS"
    local jars=("$KAFKA_LIBS"/*.jar) core=("$KAFKA_LIBS"/kafka_2.13-*.jar)
    log "Kafka jars ready: $(basename "${core[0]}") (${#jars[@]} jars)"
}

# Runs one of Kafka's command line tool classes from the jars.
kafka_tool() {
    "$JAVA" -Xmx256m -XX:+UseSerialGC -XX:TieredStopAtLevel=1 -Djava.awt.headless=true \
        -Dlog4j.configuration="file:$KAFKA_SRC/tools-log4j.properties" \
        -cp "$KAFKA_LIBS/*" "$@" </dev/null 9>&-
}

kafka_running() { pid_is "$(read_pid "$KAFKA_PIDFILE")" kafka.Kafka; }

kafka_recorded_ports() { cat "$KAFKA_PORTFILE" 2>/dev/null || echo "$KAFKA_PORT $KAFKA_CONTROLLER_PORT"; }

# Ready = the broker answers an admin request (list topics).
kafka_answers() {
    port_open "$1" || return 1
    timeout 30 "$JAVA" -Xmx256m -XX:+UseSerialGC -XX:TieredStopAtLevel=1 -Djava.awt.headless=true \
        -Dlog4j.configuration="file:$KAFKA_SRC/tools-log4j.properties" \
        -cp "$KAFKA_LIBS/*" org.apache.kafka.tools.TopicCommand \
        --bootstrap-server "127.0.0.1:$1" --list </dev/null >/dev/null 2>&1 9>&-
}

kafka_log_tail() {
    local f
    for f in "$KAFKA_LOGS/kafka.out" "$KAFKA_LOGS/server.log"; do
        if [ -s "$f" ]; then
            log "last lines of $f:"
            tail -n 40 "$f" >&2 || true
        fi
    done
}

render_kafka_conf() {
    sed -e "s|@KAFKA_PORT@|$KAFKA_PORT|g" \
        -e "s|@KAFKA_CONTROLLER_PORT@|$KAFKA_CONTROLLER_PORT|g" \
        -e "s|@KAFKA_DATA_DIR@|$KAFKA_DATA|g" \
        "$KAFKA_SRC/server.properties.template" >"$KAFKA_CONF.tmp"
    mv "$KAFKA_CONF.tmp" "$KAFKA_CONF"
}

wait_kafka_ready() {
    local port="$1" deadline=$((SECONDS + KAFKA_START_TIMEOUT))
    log "waiting for Kafka on 127.0.0.1:$port (up to ${KAFKA_START_TIMEOUT}s)"
    while :; do
        if ! kafka_running; then
            kafka_log_tail
            rm -f "$KAFKA_PIDFILE"
            die "Kafka exited during startup"
        fi
        if kafka_answers "$port"; then
            log "Kafka ready (pid $(read_pid "$KAFKA_PIDFILE"), 127.0.0.1:$port) after $((SECONDS - deadline + KAFKA_START_TIMEOUT))s"
            return 0
        fi
        if [ "$SECONDS" -ge "$deadline" ]; then
            kafka_log_tail
            stop_kafka
            die "Kafka did not answer on 127.0.0.1:$port within ${KAFKA_START_TIMEOUT}s"
        fi
        sleep 1
    done
}

start_kafka() {
    install_kafka
    mkdir -p "$KAFKA_DIR" "$KAFKA_LOGS"
    if kafka_running; then
        local ports; ports="$(kafka_recorded_ports)"
        if [ "$ports" != "$KAFKA_PORT $KAFKA_CONTROLLER_PORT" ]; then
            die "Kafka is already running with ports $ports (pid $(read_pid "$KAFKA_PIDFILE")); stop it first to use $KAFKA_PORT $KAFKA_CONTROLLER_PORT"
        fi
        if kafka_answers "$KAFKA_PORT"; then
            log "Kafka already running (pid $(read_pid "$KAFKA_PIDFILE"), 127.0.0.1:$KAFKA_PORT)"
            return 0
        fi
        # Maybe still starting: give it the usual time.
        wait_kafka_ready "$KAFKA_PORT"
        return 0
    fi
    rm -f "$KAFKA_PIDFILE" "$KAFKA_PORTFILE"
    local p
    for p in "$KAFKA_PORT" "$KAFKA_CONTROLLER_PORT"; do
        if port_open "$p"; then
            die "127.0.0.1:$p is in use by a process this script did not start; stop it or set KAFKA_PORT / KAFKA_CONTROLLER_PORT"
        fi
    done

    render_kafka_conf
    if [ "$KAFKA_KEEP_DATA" != "1" ]; then
        rm -rf "$KAFKA_DATA"
    fi
    if [ ! -f "$KAFKA_DATA/meta.properties" ]; then
        rm -rf "$KAFKA_DATA"
        mkdir -p "$KAFKA_DATA"
        local cluster_id
        cluster_id="$(kafka_tool kafka.tools.StorageTool random-uuid | tail -n 1)"
        [ -n "$cluster_id" ] || die "StorageTool random-uuid printed nothing"
        log "formatting KRaft storage (cluster id $cluster_id)"
        kafka_tool kafka.tools.StorageTool format -t "$cluster_id" -c "$KAFKA_CONF" --ignore-formatted >&2 \
            || die "StorageTool format failed"
    fi

    log "starting Kafka broker on 127.0.0.1:$KAFKA_PORT (controller 127.0.0.1:$KAFKA_CONTROLLER_PORT)"
    : >"$KAFKA_LOGS/kafka.out"
    # shellcheck disable=SC2086  # heap and JVM options are word lists
    (
        cd "$KAFKA_DIR"
        exec setsid "$JAVA" $KAFKA_HEAP_OPTS \
            -server -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:InitiatingHeapOccupancyPercent=35 \
            -XX:+ExplicitGCInvokesConcurrent -Djava.awt.headless=true \
            -Dkafka.logs.dir="$KAFKA_LOGS" \
            -Dlog4j.configuration="file:$KAFKA_SRC/log4j.properties" \
            $KAFKA_JVM_OPTS \
            -cp "$KAFKA_LIBS/*" kafka.Kafka "$KAFKA_CONF"
    ) </dev/null >>"$KAFKA_LOGS/kafka.out" 2>&1 9>&- &
    echo "$!" >"$KAFKA_PIDFILE"
    echo "$KAFKA_PORT $KAFKA_CONTROLLER_PORT" >"$KAFKA_PORTFILE"
    wait_kafka_ready "$KAFKA_PORT"
}

stop_kafka() {
    local pid; pid="$(read_pid "$KAFKA_PIDFILE")"
    if pid_is "$pid" kafka.Kafka; then
        terminate kafka "$pid" kafka.Kafka
    else
        log "kafka not running"
    fi
    rm -f "$KAFKA_PIDFILE" "$KAFKA_PORTFILE"
}

status_kafka() {
    local pid ports port; pid="$(read_pid "$KAFKA_PIDFILE")"
    ports="$(kafka_recorded_ports)"; port="${ports%% *}"
    if pid_is "$pid" kafka.Kafka; then
        if kafka_answers "$port"; then
            echo "kafka: running (pid $pid, 127.0.0.1:$port, controller 127.0.0.1:${ports##* }, answering)"
            return 0
        fi
        echo "kafka: running (pid $pid, 127.0.0.1:$port) but not answering"
        return 3
    fi
    echo "kafka: stopped"
    return 3
}

# ------------------------------------------------------------------- main ---

usage() {
    sed -n '2,/^$/p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2
    exit 2
}

main() {
    local cmd="${1:-}" svc rc=0 services
    [ $# -le 2 ] || usage
    case "${2:-all}" in
        all) services="redis kafka" ;;
        kafka | redis) services="$2" ;;
        *) die "unknown service '$2' (kafka, redis or all)" ;;
    esac
    case "$cmd" in
        install)
            take_lock
            for svc in $services; do "install_$svc"; done
            log "install done"
            ;;
        start)
            take_lock
            for svc in $services; do "start_$svc"; done
            ;;
        stop)
            take_lock
            for svc in $services; do "stop_$svc"; done
            ;;
        restart)
            take_lock
            for svc in $services; do "stop_$svc"; "start_$svc"; done
            ;;
        status)
            for svc in $services; do "status_$svc" || rc=$?; done
            return "$rc"
            ;;
        -h | --help | help) usage ;;
        *) usage ;;
    esac
}

main "$@"
