#!/usr/bin/env bash
# A local tessera cluster on 127.0.0.1, for trying the cluster by hand (tests use the Rust
# harness in chaos/ instead, on ports of their own).
#
#   deploy/swarm.sh start N [DIR] [-- FLAG...]   certificates, then N nodes in the background,
#                                                 one by one; prints their URLs. FLAGs go to every
#                                                 node (e.g. -- --max-voters 5). On a DIR that
#                                                 has nodes, starts those not running (same data).
#   deploy/swarm.sh stop [DIR]                    SIGTERM every node, SIGKILL after 15 s
#   deploy/swarm.sh status [DIR]                  pid, URL, readiness and Raft role of each node
#   deploy/swarm.sh kill9|pause|resume|restart I [DIR]   one node: SIGKILL, SIGSTOP, SIGCONT,
#                                                 or stop and start again on its ports and data
#
# DIR defaults to ${TMPDIR:-/tmp}/tessera-swarm and holds ca/ (the cluster CA), and per node
# n<I>/tls (its certificate), n<I>/data, n<I>/node.log, n<I>/pid and n<I>/args.
# Node I (1-based) listens on HTTP 127.0.0.1:HTTP_BASE+10*(I-1) (default 6333, 6343, ...) and
# on QUIC/UDP 127.0.0.1:P2P_BASE+10*(I-1) (default 6335, 6345, ...). Node 1 bootstraps the
# cluster (--bootstrap), the others join it (--join 127.0.0.1:P2P_BASE), with node ids 1..N.
# The binary: $TESSERA_BIN, else this repository's target/debug/tessera, else tessera on PATH.
# Every node inherits the environment: set TESSERA_API_KEY to give them all one API key
# (status sends it too). Needs bash and curl.
set -euo pipefail

HTTP_BASE=${HTTP_BASE:-6333}
P2P_BASE=${P2P_BASE:-6335}
MAX_NODES=20
READY_TIMEOUT_S=30
JOIN_TIMEOUT_S=60
STOP_TIMEOUT_S=15

die() {
  echo "swarm.sh: $*" >&2
  exit 1
}

usage() {
  sed -n '5,13p' "$0" | sed 's/^# \{0,1\}//' >&2
  exit 2
}

find_tessera() {
  local here
  here=$(cd "$(dirname "$0")/.." && pwd)
  if [ -n "${TESSERA_BIN:-}" ]; then
    tessera=$TESSERA_BIN
  elif [ -x "$here/target/debug/tessera" ]; then
    tessera=$here/target/debug/tessera
  elif command -v tessera >/dev/null 2>&1; then
    tessera=$(command -v tessera)
  else
    die "no tessera binary: build it (cargo build -p tessera-node --bin tessera) or set TESSERA_BIN"
  fi
  [ -x "$tessera" ] || die "$tessera is not executable"
}

http_port() { echo $((HTTP_BASE + 10 * ($1 - 1))); }
p2p_port() { echo $((P2P_BASE + 10 * ($1 - 1))); }

# GET http://127.0.0.1:PORT/PATH, 2 s at most; prints the body, fails unless 2xx.
get() {
  local port=$1 path=$2
  if [ -n "${TESSERA_API_KEY:-}" ]; then
    # the key goes through a file descriptor, not the command line other users can read
    curl -fsS --max-time 2 -H @<(printf 'api-key: %s\n' "$TESSERA_API_KEY") \
      "http://127.0.0.1:$port$path" 2>/dev/null
  else
    curl -fsS --max-time 2 "http://127.0.0.1:$port$path" 2>/dev/null
  fi
}

# The pid of node I if it is a live tessera process started here, else nothing.
live_pid() {
  local f=$dir/n$1/pid pid
  [ -f "$f" ] || return 0
  pid=$(cat "$f")
  case $pid in '' | *[!0-9]*) return 0 ;; esac
  # a recycled pid is someone else's process: only a `tessera serve` counts
  if ps -p "$pid" -o args= 2>/dev/null | grep -q "tessera serve"; then
    echo "$pid"
  fi
}

# How many nodes DIR has (the highest n<I> with a tls dir).
node_count() {
  local n=0 i
  for ((i = 1; i <= MAX_NODES; i++)); do
    [ -d "$dir/n$i/tls" ] && n=$i
  done
  echo "$n"
}

log_tail() {
  echo "--- last lines of $dir/n$1/node.log ---" >&2
  tail -n 20 "$dir/n$1/node.log" >&2 || true
}

make_certs() {
  local n=$1 i
  if [ ! -f "$dir/ca/ca.key" ]; then
    "$tessera" cert ca --out "$dir/ca" >/dev/null
  fi
  for ((i = 1; i <= n; i++)); do
    if [ ! -f "$dir/n$i/tls/node.key" ]; then
      "$tessera" cert node --ca-dir "$dir/ca" --out "$dir/n$i/tls" --name "node-$i" >/dev/null
    fi
  done
}

# Starts node I in the background with the flags of its first start (kept in n<I>/args) and
# waits for /readyz.
start_node() {
  local i=$1 http p2p pid t
  http=$(http_port "$i")
  p2p=$(p2p_port "$i")
  if [ -n "$(live_pid "$i")" ]; then
    echo "node $i already running (pid $(live_pid "$i"))"
    return 0
  fi
  if (exec 3<>"/dev/tcp/127.0.0.1/$http") 2>/dev/null; then
    die "127.0.0.1:$http is taken by another process (set HTTP_BASE and P2P_BASE to move the swarm)"
  fi
  if [ ! -f "$dir/n$i/args" ]; then
    {
      if [ "$i" = 1 ]; then
        echo "--bootstrap"
      else
        echo "--join"
        echo "127.0.0.1:$(p2p_port 1)"
      fi
      for a in "${extra[@]+"${extra[@]}"}"; do echo "$a"; done
    } >"$dir/n$i/args"
  fi
  local args=()
  while IFS= read -r a; do args+=("$a"); done <"$dir/n$i/args"
  echo "===== swarm.sh: start node $i =====" >>"$dir/n$i/node.log"
  # the flags below decide bootstrap and join, not a stray variable of the caller's shell
  env -u TESSERA_BOOTSTRAP -u TESSERA_JOIN nohup "$tessera" serve --node-id "$i" \
    --http-addr "127.0.0.1:$http" --p2p-addr "127.0.0.1:$p2p" \
    --data-dir "$dir/n$i/data" --tls-dir "$dir/n$i/tls" \
    "${args[@]}" </dev/null >>"$dir/n$i/node.log" 2>&1 &
  pid=$!
  echo "$pid" >"$dir/n$i/pid"
  for ((t = 0; t < READY_TIMEOUT_S * 5; t++)); do
    if ! kill -0 "$pid" 2>/dev/null; then
      log_tail "$i"
      die "node $i exited before it was ready"
    fi
    if get "$http" /readyz >/dev/null; then
      return 0
    fi
    sleep 0.2
  done
  log_tail "$i"
  die "node $i not ready on 127.0.0.1:$http within ${READY_TIMEOUT_S}s (still running: pid $pid)"
}

# Waits until node 1's /cluster lists node I.
wait_listed() {
  local i=$1 t
  for ((t = 0; t < JOIN_TIMEOUT_S * 5; t++)); do
    if get "$(http_port 1)" /cluster | grep -q "\"$i\":{"; then
      return 0
    fi
    sleep 0.2
  done
  log_tail 1
  log_tail "$i"
  die "node $i not listed by node 1's /cluster within ${JOIN_TIMEOUT_S}s"
}

# The state nodes 1..I agree on, as "leader:commit", or nothing while they do not: each names
# the same leader and has applied that commit.
agreed_state() {
  local n=$1 i body leader applied commit state="" mine
  for ((i = 1; i <= n; i++)); do
    body=$(get "$(http_port "$i")" /cluster) || return 0
    leader=$(echo "$body" | grep -o '"leader":[0-9]*' | cut -d: -f2)
    commit=$(echo "$body" | grep -o '"commit":[0-9]*' | cut -d: -f2)
    applied=$(echo "$body" | grep -o '"applied":[0-9]*' | cut -d: -f2)
    [ -n "$leader" ] && [ -n "$commit" ] && [ "${applied:-$commit}" = "$commit" ] || return 0
    mine="$leader:$commit"
    if [ -z "$state" ]; then state=$mine; elif [ "$state" != "$mine" ]; then return 0; fi
  done
  echo "$state"
}

# Waits until nodes 1..I agree (agreed_state) and stay so for half a second: a membership change
# appends its final configuration right after its joint one, and a fault in between halts a
# group growing from 2 to 3 voters.
wait_settled() {
  local n=$1 t state prev="" same=0
  for ((t = 0; t < JOIN_TIMEOUT_S * 4; t++)); do
    state=$(agreed_state "$n")
    if [ -n "$state" ] && [ "$state" = "$prev" ]; then
      same=$((same + 1))
      [ "$same" -lt 2 ] || return 0
    else
      same=0
    fi
    prev=$state
    sleep 0.25
  done
  die "nodes 1..$n did not settle on one leader within ${JOIN_TIMEOUT_S}s (see $0 status $dir)"
}

stop_node() {
  local i=$1 pid t
  pid=$(live_pid "$i")
  if [ -z "$pid" ]; then
    rm -f "$dir/n$i/pid"
    return 0
  fi
  # a paused node must run to act on SIGTERM
  kill -TERM "$pid" 2>/dev/null || true
  kill -CONT "$pid" 2>/dev/null || true
  for ((t = 0; t < STOP_TIMEOUT_S * 5; t++)); do
    if ! kill -0 "$pid" 2>/dev/null; then
      rm -f "$dir/n$i/pid"
      echo "node $i stopped"
      return 0
    fi
    sleep 0.2
  done
  kill -KILL "$pid" 2>/dev/null || true
  rm -f "$dir/n$i/pid"
  echo "node $i did not stop within ${STOP_TIMEOUT_S}s of SIGTERM: killed" >&2
}

cmd_start() {
  local n=$1 i
  case $n in '' | *[!0-9]*) die "start needs a node count" ;; esac
  if [ "$n" -lt 1 ] || [ "$n" -gt "$MAX_NODES" ]; then die "node count must be 1..$MAX_NODES"; fi
  command -v curl >/dev/null 2>&1 || die "curl is needed"
  find_tessera
  mkdir -p "$dir"
  make_certs "$n"
  for ((i = 1; i <= n; i++)); do
    start_node "$i"
    wait_listed "$i"
    wait_settled "$i"
    echo "node $i: http://127.0.0.1:$(http_port "$i")  p2p 127.0.0.1:$(p2p_port "$i") (udp)  log $dir/n$i/node.log"
  done
  echo "swarm of $n in $dir; stop it with: $0 stop $dir"
}

cmd_stop() {
  local n i
  n=$(node_count)
  for ((i = n; i >= 1; i--)); do
    stop_node "$i"
  done
}

cmd_status() {
  local n i pid http state ready role body
  n=$(node_count)
  [ "$n" -gt 0 ] || die "no swarm in $dir"
  for ((i = 1; i <= n; i++)); do
    http=$(http_port "$i")
    pid=$(live_pid "$i")
    state=down ready=- role=-
    if [ -n "$pid" ]; then
      state="pid $pid"
      case $(ps -p "$pid" -o stat= 2>/dev/null) in T*) state="$state paused" ;; esac
      if get "$http" /readyz >/dev/null; then ready=ready; else ready=not-ready; fi
      if body=$(get "$http" /cluster); then
        role=$(echo "$body" | grep -o '"role":"[A-Za-z]*"' | cut -d'"' -f4 || true)
        role="$role leader=$(echo "$body" | grep -o '"leader":[0-9a-z]*' | cut -d: -f2 || true)"
      fi
    fi
    echo "node $i  http://127.0.0.1:$http  $state  $ready  $role"
  done
}

cmd_one() {
  local what=$1 i=$2 pid
  case $i in '' | *[!0-9]*) die "$what needs a node number" ;; esac
  [ -d "$dir/n$i" ] || die "no node $i in $dir"
  pid=$(live_pid "$i")
  case $what in
    kill9)
      [ -n "$pid" ] || die "node $i is not running"
      kill -KILL "$pid"
      rm -f "$dir/n$i/pid"
      ;;
    pause)
      [ -n "$pid" ] || die "node $i is not running"
      kill -STOP "$pid"
      ;;
    resume)
      [ -n "$pid" ] || die "node $i is not running"
      kill -CONT "$pid"
      ;;
    restart)
      command -v curl >/dev/null 2>&1 || die "curl is needed"
      find_tessera
      stop_node "$i"
      start_node "$i"
      ;;
  esac
  echo "node $i: $what done"
}

[ $# -ge 1 ] || usage
command=$1
shift
extra=()
case $command in
  start)
    n=${1:-}
    shift || true
    dir=${TMPDIR:-/tmp}/tessera-swarm
    if [ $# -gt 0 ] && [ "$1" != "--" ]; then
      dir=$1
      shift
    fi
    if [ $# -gt 0 ] && [ "$1" = "--" ]; then
      shift
      extra=("$@")
    elif [ $# -gt 0 ]; then
      usage
    fi
    cmd_start "$n"
    ;;
  stop | status)
    [ $# -le 1 ] || usage
    dir=${1:-${TMPDIR:-/tmp}/tessera-swarm}
    "cmd_$command"
    ;;
  kill9 | pause | resume | restart)
    if [ $# -lt 1 ] || [ $# -gt 2 ]; then usage; fi
    dir=${2:-${TMPDIR:-/tmp}/tessera-swarm}
    cmd_one "$command" "$1"
    ;;
  -h | --help | help) usage ;;
  *) usage ;;
esac
