#!/usr/bin/env bash
# Single-node Apache Kafka (KRaft, combined broker+controller) without Docker.
# Jars come from Maven Central via deploy/kafka/pom.xml.
#
# Usage: deploy/kafka/kafka.sh {install|start|stop|restart|status|foreground|tool|logs|reset}
#   install      download jars into the cache (idempotent; marker file)
#   start        install if needed, write config, format storage once, start in
#                the background, wait until a real client can list topics
#   stop         SIGTERM, wait, SIGKILL after KAFKA_STOP_TIMEOUT s
#   restart      stop + start
#   status       exit 0 if running and answering, 1 if running but not answering,
#                3 if not running
#   foreground   like start but exec's the broker in the foreground (for supervisors)
#   tool CLASS [ARGS...]   run a Kafka tool class with the cached classpath, e.g.
#                kafka.sh tool org.apache.kafka.tools.TopicCommand \
#                    --bootstrap-server 127.0.0.1:9092 --list
#   logs         tail -f the broker log
#   reset        stop and delete the data dir (topics and offsets are lost)
#
# Environment (defaults):
#   KAFKA_PORT=9092  KAFKA_CONTROLLER_PORT=9093  KAFKA_HOST=127.0.0.1
#   KAFKA_DATA_DIR=<repo>/.data/kafka
#   COUNTYPOOL_CACHE=$HOME/.cache/countypool   (jars: $COUNTYPOOL_CACHE/kafka-<version>/libs)
#   KAFKA_HEAP_OPTS="-Xmx1g -Xms256m"  KAFKA_EXTRA_JVM_OPTS=""
#   KAFKA_READY_TIMEOUT=90  KAFKA_STOP_TIMEOUT=60
#   KAFKA_MVN_OPTS=""   extra maven args, e.g. -Dmaven.repo.local=/tmp/m2
#   KAFKA_SASL_PORT=""  KAFKA_SASL_USERS=""   with a port, a second client listener that takes SASL/PLAIN
#                logins (KAFKA_SASL_USERS="name:password,..."), to try the clients' KAFKA_SECURITY_PROTOCOL=
#                SASL_PLAINTEXT settings against; PLAINTEXT stays on KAFKA_PORT
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_DIR="$(cd "$SCRIPT_DIR/../.." && pwd)"
POM="$SCRIPT_DIR/pom.xml"

KAFKA_VERSION="$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' "$POM" | head -n1)"
[[ -n "$KAFKA_VERSION" ]] || { echo "kafka.sh: cannot read kafka.version from $POM" >&2; exit 1; }

KAFKA_HOST="${KAFKA_HOST:-127.0.0.1}"
KAFKA_PORT="${KAFKA_PORT:-9092}"
KAFKA_CONTROLLER_PORT="${KAFKA_CONTROLLER_PORT:-9093}"
KAFKA_DATA_DIR="${KAFKA_DATA_DIR:-$REPO_DIR/.data/kafka}"
CACHE_ROOT="${COUNTYPOOL_CACHE:-$HOME/.cache/countypool}"
INSTALL_DIR="$CACHE_ROOT/kafka-$KAFKA_VERSION"
LIB_DIR="$INSTALL_DIR/libs"
MARKER="$INSTALL_DIR/.installed"
# 1 GiB: at 512 MiB the broker died of OutOfMemoryError (heap) under several test suites and benches at once
KAFKA_HEAP_OPTS="${KAFKA_HEAP_OPTS:--Xmx1g -Xms256m}"
KAFKA_EXTRA_JVM_OPTS="${KAFKA_EXTRA_JVM_OPTS:-}"
KAFKA_READY_TIMEOUT="${KAFKA_READY_TIMEOUT:-90}"
KAFKA_STOP_TIMEOUT="${KAFKA_STOP_TIMEOUT:-60}"
KAFKA_MVN_OPTS="${KAFKA_MVN_OPTS:-}"
KAFKA_SASL_PORT="${KAFKA_SASL_PORT:-}"
KAFKA_SASL_USERS="${KAFKA_SASL_USERS:-}"

BOOTSTRAP="$KAFKA_HOST:$KAFKA_PORT"
CONF="$KAFKA_DATA_DIR/server.properties"
CLIENT_CONF="$INSTALL_DIR/client.properties"   # probe timeouts; static
LOG_DIRS="$KAFKA_DATA_DIR/kraft-logs"      # topic data + __cluster_metadata
APP_LOG_DIR="$KAFKA_DATA_DIR/logs"         # server.log, kafka.out
PID_FILE="$KAFKA_DATA_DIR/kafka.pid"

if [[ -n "${JAVA_HOME:-}" && -x "$JAVA_HOME/bin/java" ]]; then JAVA="$JAVA_HOME/bin/java"; else JAVA="${JAVA:-java}"; fi
TOOL_JVM_OPTS=(-Xmx256m -XX:+UseSerialGC -XX:TieredStopAtLevel=1
               "-Dlog4j2.configurationFile=$SCRIPT_DIR/tools-log4j2.properties")

log() { echo "kafka.sh: $*" >&2; }
die() { log "ERROR: $*"; exit 1; }
now() { echo "${EPOCHREALTIME/,/.}"; }
elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

# ---------------------------------------------------------------- install ----
ensure_tool() {  # ensure_tool CMD DEBIAN_PACKAGE
  command -v "$1" >/dev/null 2>&1 && return 0
  if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null 2>&1; then
    log "$1 not found; installing Debian package $2"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$2" >/dev/null
  fi
  command -v "$1" >/dev/null 2>&1 || die "$1 not found (install $2)"
}

pom_hash() { sha256sum "$POM" | cut -d' ' -f1; }

is_installed() {
  [[ -f "$MARKER" && "$(cat "$MARKER" 2>/dev/null)" == "$(pom_hash)" ]] \
    && compgen -G "$LIB_DIR/kafka_2.13-$KAFKA_VERSION.jar" >/dev/null
}

cmd_install() {
  if is_installed; then log "kafka $KAFKA_VERSION already installed in $LIB_DIR"; return 0; fi
  ensure_tool java openjdk-17-jre-headless
  ensure_tool mvn maven
  mkdir -p "$INSTALL_DIR"
  exec 9>"$INSTALL_DIR/.lock"
  flock 9                                  # serialise concurrent installs
  if is_installed; then exec 9>&-; return 0; fi
  local t0 tmp; t0="$(now)"; tmp="$INSTALL_DIR/libs.tmp.$$"
  rm -rf "$tmp"
  log "downloading kafka $KAFKA_VERSION jars from Maven Central into $LIB_DIR ..."
  # shellcheck disable=SC2086
  if ! mvn -q -B -Dstyle.color=never -f "$POM" $KAFKA_MVN_OPTS \
        dependency:copy-dependencies -DoutputDirectory="$tmp" -DincludeScope=runtime \
        >"$INSTALL_DIR/mvn.log" 2>&1; then
    cat "$INSTALL_DIR/mvn.log" >&2
    rm -rf "$tmp"; die "maven failed to fetch the kafka jars (log: $INSTALL_DIR/mvn.log)"
  fi
  [[ -f "$tmp/kafka_2.13-$KAFKA_VERSION.jar" ]] || { rm -rf "$tmp"; die "kafka_2.13-$KAFKA_VERSION.jar missing after download"; }
  rm -rf "$LIB_DIR"; mv "$tmp" "$LIB_DIR"
  pom_hash > "$MARKER"
  exec 9>&-
  log "installed $(ls "$LIB_DIR" | wc -l) jars ($(du -sh "$LIB_DIR" | cut -f1)) in $(elapsed "$t0") s"
}

# ----------------------------------------------------------------- config ----
sasl_config() {  # the SASL/PLAIN listener's lines, when KAFKA_SASL_PORT is set
  [[ -n "$KAFKA_SASL_PORT" ]] || return 0
  local users="" pair pairs
  IFS=',' read -ra pairs <<<"$KAFKA_SASL_USERS"
  for pair in "${pairs[@]}"; do
    users+=" user_${pair%%:*}=\"${pair#*:}\""
  done
  echo "sasl.enabled.mechanisms=PLAIN"
  echo "listener.name.sasl_plaintext.plain.sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required${users};"
}

check_sasl_users() {
  [[ -n "$KAFKA_SASL_PORT" ]] || return 0
  [[ -n "$KAFKA_SASL_USERS" ]] || die "KAFKA_SASL_PORT needs KAFKA_SASL_USERS=name:password[,...]"
  local pair pairs
  IFS=',' read -ra pairs <<<"$KAFKA_SASL_USERS"
  for pair in "${pairs[@]}"; do
    [[ "$pair" == *:* && "${pair%%:*}" =~ ^[A-Za-z0-9_.-]+$ && "${pair#*:}" != *'"'* ]] \
      || die "KAFKA_SASL_USERS: each entry is name:password (name of letters, digits, _ . -; no quote in the password)"
  done
}

write_config() {
  mkdir -p "$KAFKA_DATA_DIR" "$LOG_DIRS" "$APP_LOG_DIR"
  check_sasl_users
  local sasl_listener="" sasl_map=""
  if [[ -n "$KAFKA_SASL_PORT" ]]; then
    sasl_listener=",SASL_PLAINTEXT://$KAFKA_HOST:$KAFKA_SASL_PORT"
    sasl_map=",SASL_PLAINTEXT:SASL_PLAINTEXT"
  fi
  # self-ignoring .data dir when it lives inside the repo
  if [[ "$KAFKA_DATA_DIR" == "$REPO_DIR/.data/"* && ! -e "$REPO_DIR/.data/.gitignore" ]]; then
    echo '*' > "$REPO_DIR/.data/.gitignore"
  fi
  cat > "$CONF" <<EOF
# generated by deploy/kafka/kafka.sh on every start; edit the script, not this file
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@$KAFKA_HOST:$KAFKA_CONTROLLER_PORT
listeners=PLAINTEXT://$KAFKA_HOST:$KAFKA_PORT,CONTROLLER://$KAFKA_HOST:$KAFKA_CONTROLLER_PORT$sasl_listener
advertised.listeners=PLAINTEXT://$KAFKA_HOST:$KAFKA_PORT$sasl_listener
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT$sasl_map
inter.broker.listener.name=PLAINTEXT
controller.listener.names=CONTROLLER
log.dirs=$LOG_DIRS
num.partitions=3
default.replication.factor=1
auto.create.topics.enable=true
offsets.topic.replication.factor=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
# after an unclean stop (SIGKILL) the new incarnation is refused until the old
# broker session expires: 9 s by default, shortened for a local single node
broker.session.timeout.ms=5000
broker.heartbeat.interval.ms=1000
num.network.threads=2
num.io.threads=4
num.recovery.threads.per.data.dir=1
log.retention.hours=168
log.segment.bytes=1073741824
$(sasl_config)
EOF
}

write_client_conf() {
  [[ -f "$CLIENT_CONF" ]] && return 0
  mkdir -p "$INSTALL_DIR"
  cat > "$CLIENT_CONF.$$" <<EOF
request.timeout.ms=3000
default.api.timeout.ms=5000
socket.connection.setup.timeout.ms=2000
socket.connection.setup.timeout.max.ms=2000
EOF
  mv "$CLIENT_CONF.$$" "$CLIENT_CONF"
}

classpath() { echo "$LIB_DIR/*"; }

run_tool() {  # run_tool CLASS ARGS...
  "$JAVA" "${TOOL_JVM_OPTS[@]}" -cp "$(classpath)" "$@"
}

is_formatted() { [[ -f "$LOG_DIRS/meta.properties" ]]; }

format_storage() {
  is_formatted && return 0
  local cid
  cid="$(run_tool kafka.tools.StorageTool random-uuid | tail -n1)"
  [[ -n "$cid" ]] || die "StorageTool random-uuid returned nothing"
  log "formatting $LOG_DIRS (cluster id $cid)"
  run_tool kafka.tools.StorageTool format -t "$cid" -c "$CONF" >"$APP_LOG_DIR/format.out" 2>&1 \
    || { cat "$APP_LOG_DIR/format.out" >&2; die "storage format failed"; }
}

broker_java_cmd() {
  # shellcheck disable=SC2206
  local heap=($KAFKA_HEAP_OPTS) extra=($KAFKA_EXTRA_JVM_OPTS)
  BROKER_CMD=("$JAVA" "${heap[@]}" -server
    -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:InitiatingHeapOccupancyPercent=35
    -XX:+ExplicitGCInvokesConcurrent -XX:+ExitOnOutOfMemoryError -Djava.awt.headless=true
    "-Dkafka.logs.dir=$APP_LOG_DIR"
    "-Dlog4j2.configurationFile=$SCRIPT_DIR/log4j2.properties"
    "${extra[@]}"
    -cp "$(classpath)" kafka.Kafka "$CONF")
}

# ---------------------------------------------------------------- process ----
port_open() { (exec 3<>"/dev/tcp/$KAFKA_HOST/$1") 2>/dev/null; }

# a real client: Admin.listTopics via TopicCommand, bounded by client timeouts
broker_answers() {
  port_open "$KAFKA_PORT" || return 1
  timeout 30 "$JAVA" "${TOOL_JVM_OPTS[@]}" -cp "$(classpath)" org.apache.kafka.tools.TopicCommand \
    --bootstrap-server "$BOOTSTRAP" --command-config "$CLIENT_CONF" --list >/dev/null 2>&1
}

is_kafka_pid() {  # our broker: java running kafka.Kafka with our config
  local pid="$1"
  [[ -n "$pid" && -r "/proc/$pid/cmdline" ]] || return 1
  tr '\0' ' ' < "/proc/$pid/cmdline" | grep -qF "kafka.Kafka $CONF"
}

running_pid() {
  local pid=""
  [[ -f "$PID_FILE" ]] && pid="$(cat "$PID_FILE" 2>/dev/null || true)"
  if is_kafka_pid "$pid"; then echo "$pid"; return 0; fi
  # pid file missing/stale: look for a broker started with our config file
  local p comm
  for p in /proc/[0-9]*; do
    comm=""; read -r comm < "$p/comm" 2>/dev/null || continue
    [[ "$comm" == java ]] || continue
    p="${p#/proc/}"
    if is_kafka_pid "$p"; then
      [[ -d "$KAFKA_DATA_DIR" ]] && echo "$p" > "$PID_FILE"
      echo "$p"; return 0
    fi
  done
  rm -f "$PID_FILE"
  return 1
}

need_lib_for_probe() { is_installed || cmd_install; write_client_conf; }

wait_ready() {  # wait_ready PID T0
  local pid="$1" t0="$2" deadline
  deadline=$(( ${EPOCHSECONDS} + KAFKA_READY_TIMEOUT ))
  while (( EPOCHSECONDS < deadline )); do
    if ! kill -0 "$pid" 2>/dev/null; then
      log "broker process $pid exited during start-up; last log lines:"
      tail -n 40 "$APP_LOG_DIR/kafka.out" "$APP_LOG_DIR/server.log" >&2 2>/dev/null || true
      rm -f "$PID_FILE"
      return 1
    fi
    if broker_answers; then
      echo "kafka ready on $BOOTSTRAP in $(elapsed "$t0") s"
      return 0
    fi
    sleep 0.5
  done
  log "broker (pid $pid) not ready after ${KAFKA_READY_TIMEOUT}s; see $APP_LOG_DIR/server.log"
  return 1
}

raise_open_files() {  # a file stays open per log segment: the usual soft limit of 1,024 runs out under a test run
  local hard
  hard="$(ulimit -Hn)"
  [[ "$hard" == unlimited ]] && hard=1048576
  ulimit -Sn "$(( hard < 1048576 ? hard : 1048576 ))" 2>/dev/null || true
  if (( $(ulimit -Sn) < 16384 )); then
    log "warning: the broker may open only $(ulimit -Sn) files; raise the hard limit (ulimit -Hn, or LimitNOFILE=) to 100000"
  fi
}

cmd_start() {
  local t0 pid
  need_lib_for_probe
  t0="$(now)"                      # readiness time excludes the one-off jar download
  if pid="$(running_pid)"; then
    if broker_answers; then echo "kafka already running (pid $pid) on $BOOTSTRAP"; return 0; fi
    log "kafka process $pid exists but is not answering yet; waiting"
    wait_ready "$pid" "$t0"; return
  fi
  if port_open "$KAFKA_PORT"; then
    if broker_answers; then echo "a kafka broker is already answering on $BOOTSTRAP (not the one in $KAFKA_DATA_DIR); leaving it"; return 0; fi
    die "port $KAFKA_PORT on $KAFKA_HOST is in use by something that is not a kafka broker"
  fi
  port_open "$KAFKA_CONTROLLER_PORT" && die "controller port $KAFKA_CONTROLLER_PORT on $KAFKA_HOST is already in use"
  write_config
  format_storage
  broker_java_cmd
  raise_open_files
  : > "$APP_LOG_DIR/kafka.out"
  # own session: survives the caller's process group / terminal going away
  setsid "${BROKER_CMD[@]}" </dev/null >>"$APP_LOG_DIR/kafka.out" 2>&1 &
  pid=$!
  echo "$pid" > "$PID_FILE"
  log "started kafka $KAFKA_VERSION (pid $pid), data in $KAFKA_DATA_DIR; waiting up to ${KAFKA_READY_TIMEOUT}s"
  wait_ready "$pid" "$t0"
}

cmd_foreground() {
  cmd_install
  if port_open "$KAFKA_PORT"; then die "port $KAFKA_PORT on $KAFKA_HOST is already in use"; fi
  write_config
  format_storage
  broker_java_cmd
  raise_open_files
  echo "$$" > "$PID_FILE"          # exec keeps the pid
  log "exec kafka $KAFKA_VERSION in the foreground on $BOOTSTRAP"
  exec "${BROKER_CMD[@]}"
}

cmd_stop() {
  local pid deadline
  if ! pid="$(running_pid)"; then echo "kafka not running"; return 0; fi
  log "stopping kafka (pid $pid)"
  kill -TERM "$pid" 2>/dev/null || true
  deadline=$(( EPOCHSECONDS + KAFKA_STOP_TIMEOUT ))
  while kill -0 "$pid" 2>/dev/null && (( EPOCHSECONDS < deadline )); do sleep 0.2; done
  if kill -0 "$pid" 2>/dev/null; then
    log "kafka did not stop within ${KAFKA_STOP_TIMEOUT}s; sending SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
    while kill -0 "$pid" 2>/dev/null; do sleep 0.1; done
  fi
  rm -f "$PID_FILE"
  echo "kafka stopped"
}

cmd_status() {
  local pid
  if pid="$(running_pid)"; then
    need_lib_for_probe
    if broker_answers; then echo "kafka running (pid $pid), answering on $BOOTSTRAP"; return 0; fi
    echo "kafka running (pid $pid), NOT answering on $BOOTSTRAP"; return 1
  fi
  if port_open "$KAFKA_PORT"; then echo "kafka not started by this script, but port $KAFKA_PORT is open"; return 1; fi
  echo "kafka not running"; return 3
}

cmd_tool() {
  [[ $# -ge 1 ]] || die "usage: kafka.sh tool CLASS [ARGS...]"
  is_installed || cmd_install
  run_tool "$@"
}

cmd_reset() {
  cmd_stop
  [[ -d "$KAFKA_DATA_DIR" ]] && rm -rf "$KAFKA_DATA_DIR"
  echo "removed $KAFKA_DATA_DIR"
}

case "${1:-}" in
  install)    cmd_install ;;
  start)      cmd_start ;;
  stop)       cmd_stop ;;
  restart)    cmd_stop; cmd_start ;;
  status)     cmd_status ;;
  foreground|run) cmd_foreground ;;
  tool)       shift; cmd_tool "$@" ;;
  logs)       exec tail -n 100 -F "$APP_LOG_DIR/server.log" ;;
  reset)      cmd_reset ;;
  *) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2; exit 2 ;;
esac
