#!/usr/bin/env bash
# A multi-instance deployment on loopback, and the cluster scenario against it.
#
#   deploy/run.sh          the scenario: for each instance count in HYDROGEN_BENCH_INSTANCES (1,3),
#                          start nats-server, the instances and nginx, run the bench client
#                          (benches/cluster) against them, stop everything; then print the table
#   deploy/run.sh up [N]   start nats-server, N instances (3) and nginx, print where they are, and
#                          keep them running until Ctrl-C (to try the deployment by hand)
#
# What runs, all on 127.0.0.1 with free ports:
#   - nats-server (Debian's package), one server, no cluster;
#   - N hydrogen-ws instances (the release binary), each `--nats nats://127.0.0.1:PORT`, each under a
#     small supervisor loop that starts it again HYDROGEN_DEPLOY_RESTART_DELAY (0.2 s) after it exits,
#     as systemd's Restart=always would (deploy/systemd/); its pid is in STATE/instance-I.pid;
#   - nginx with deploy/nginx.conf, its ports replaced, run in the foreground from a prefix directory
#     under STATE (nothing in /etc is read or written).
# Everything is stopped on exit, error or Ctrl-C (SIGTERM, then SIGKILL after 5 s).
#
# Needs nginx and nats-server: `apt-get install -y nginx nats-server` (Debian/Ubuntu; the package does
# not need to run as a service: `systemctl disable --now nginx nats-server` if it started them). When
# one is missing, or the binary has no --nats option, the script says so and exits with status 77
# (skipped), or 1 when HYDROGEN_REQUIRE_NATS=1.
#
# Knobs (environment): the bench's own (HYDROGEN_BENCH_CLIENTS, _EVENTS, _RATE, _TOPICS, ...: see
# benches/cluster/main.rs) pass through, and
#   HYDROGEN_BENCH_INSTANCES      instance counts to run the scenario with, in turn (1,3)
#   HYDROGEN_BENCH_LOCAL          1: also one instance without NATS, the in-process bus (0)
#   HYDROGEN_DEPLOY_STATE         directory for logs, pid files and nginx's prefix (a fresh mktemp -d;
#                                 kept after the run when set, removed otherwise)
#   HYDROGEN_DEPLOY_RESTART_DELAY seconds between an instance's exit and its restart (0.2)
#   HYDROGEN_DEPLOY_LOG_LEVEL     the instances' --log-level (warn)
#   HYDROGEN_CLUSTER_CLIENT       the bench client binary (default: built with cargo bench --no-run)
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
who="deploy/run.sh"
mode=${1:-scenario}
up_instances=${2:-3}

say() { printf '%s: %s\n' "$who" "$*" >&2; }

skip() {
  say "$*"
  if [[ ${HYDROGEN_REQUIRE_NATS:-0} == 1 ]]; then
    say "HYDROGEN_REQUIRE_NATS=1: a missing piece is a failure"
    exit 1
  fi
  say "skipped"
  exit 77
}

case $mode in
  scenario | up) ;;
  -h | --help | help)
    sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'
    exit 0
    ;;
  *)
    say "unknown mode '$mode' (scenario or up)"
    exit 2
    ;;
esac

for tool in nginx nats-server python3; do
  command -v "$tool" >/dev/null 2>&1 ||
    skip "$tool is missing: apt-get install -y nginx nats-server python3 (Debian/Ubuntu)"
done

# --- the binaries -----------------------------------------------------------------------------------
cd "$root"
target=${CARGO_TARGET_DIR:-$root/target}
say "cargo build --release --bin hydrogen-ws"
cargo build --quiet --release --bin hydrogen-ws
bin=$target/release/hydrogen-ws
"$bin" --help | grep -q -- '--nats ' ||
  skip "$bin has no --nats option: this build has no NATS bus (issue 20, parts 1-4)"

client=${HYDROGEN_CLUSTER_CLIENT:-}
if [[ $mode == scenario && -z $client ]]; then
  say "cargo bench --bench cluster --no-run"
  client=$(cargo bench --quiet --bench cluster --no-run --message-format=json 2>/dev/null |
    python3 -c 'import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["target"]["name"] == "cluster":
        print(m["executable"])')
  [[ -x $client ]] || { say "cannot build the bench client (cargo bench --bench cluster --no-run)"; exit 1; }
fi

# Each WebSocket client is a descriptor in the bench, two in nginx and one in an instance.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
if (( $(ulimit -n) < 16384 )); then
  say "warning: the open-file limit is $(ulimit -n); 3,000 clients need about 16,384 (ulimit -n)"
fi

# --- state and cleanup ------------------------------------------------------------------------------
if [[ -n ${HYDROGEN_DEPLOY_STATE:-} ]]; then
  state=$HYDROGEN_DEPLOY_STATE
  keep_state=1
  mkdir -p "$state"
else
  state=$(mktemp -d /tmp/hydrogen-deploy.XXXXXX)
  keep_state=0
fi
key=${HYDROGEN_DEPLOY_KEY:-deploy-bench-key-$RANDOM$RANDOM}
restart_delay=${HYDROGEN_DEPLOY_RESTART_DELAY:-0.2}
log_level=${HYDROGEN_DEPLOY_LOG_LEVEL:-warn}

nats_pid=
nginx_pid=
supervisors=()

# Whether a process is alive (a zombie is not).
alive() {
  local s
  [[ -n $1 && -r /proc/$1/stat ]] || return 1
  s=$(cut -d' ' -f3 "/proc/$1/stat" 2>/dev/null) || return 1
  [[ $s != Z ]]
}

# Waits up to $2 seconds for process $1 to be gone.
gone_within() {
  local pid=$1 n
  n=$(( ${2} * 20 ))
  while (( n-- > 0 )); do
    alive "$pid" || return 0
    sleep 0.05
  done
  ! alive "$pid"
}

# SIGTERM, then SIGKILL after 5 s; reaps it when it is our child.
stop_pid() {
  local pid=$1
  [[ -n $pid ]] || return 0
  kill -TERM "$pid" 2>/dev/null || true
  if ! gone_within "$pid" 5; then
    say "pid $pid still running 5 s after SIGTERM: SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
  fi
  wait "$pid" 2>/dev/null || true
}

stop_all() {
  touch "$state/down"
  stop_pid "$nginx_pid"
  nginx_pid=
  local f
  for f in "$state"/instance-*.pid; do
    [[ -e $f ]] && stop_pid "$(cat "$f")"
  done
  local s
  for s in "${supervisors[@]}"; do
    stop_pid "$s"
  done
  supervisors=()
  stop_pid "$nats_pid"
  nats_pid=
  rm -f "$state"/instance-*.pid "$state/down"
}

cleanup() {
  local status=$?
  trap - EXIT INT TERM
  stop_all
  if (( keep_state )); then
    say "logs in $state"
  else
    rm -rf "$state"
  fi
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# --- helpers ----------------------------------------------------------------------------------------
free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# The status code of GET $2 on 127.0.0.1:$1 (empty when nothing answers).
http_status() {
  python3 - "$1" "$2" <<'PY' 2>/dev/null || true
import http.client, sys
try:
    c = http.client.HTTPConnection("127.0.0.1", int(sys.argv[1]), timeout=2)
    c.request("GET", sys.argv[2])
    print(c.getresponse().status)
except OSError:
    pass
PY
}

# Waits up to $3 seconds for GET $2 on port $1 to answer 200.
wait_200() {
  local n=$(( $3 * 10 ))
  while (( n-- > 0 )); do
    [[ $(http_status "$1" "$2") == 200 ]] && return 0
    sleep 0.1
  done
  return 1
}

wait_port() {
  local n=$(( $2 * 20 ))
  while (( n-- > 0 )); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    sleep 0.05
  done
  return 1
}

start_nats() {
  nats_port=$(free_port)
  nats-server -a 127.0.0.1 -p "$nats_port" -l "$state/nats.log" &
  nats_pid=$!
  wait_port "$nats_port" 5 || { say "nats-server did not start:"; cat "$state/nats.log" >&2; exit 1; }
}

# The supervisor of instance $1 on port $2 (a subshell): starts it, waits for it, starts it again.
supervise() {
  local i=$1 port=$2
  shift 2
  trap - EXIT INT TERM
  while [[ ! -e $state/down ]]; do
    "$bin" --listen "127.0.0.1:$port" "$@" 2>>"$state/instance-$i.log" &
    echo $! >"$state/instance-$i.pid"
    wait $! || true
    [[ -e $state/down ]] && break
    sleep "$restart_delay"
  done
}

# Starts $1 instances (with NATS when $2 is 1) and waits until each answers /health.
start_instances() {
  local n=$1 with_nats=$2 i
  instance_ports=()
  # Behind nginx every connection comes from 127.0.0.1: no per-address limit, and room for every
  # client on one instance (a rolling restart moves a third of them at a time).
  local args=(--key "$key" --threads 4096 --max-connections-per-ip 0 --log-level "$log_level"
              --allow-publish 'bench.>')
  if (( with_nats )); then
    args+=(--nats "nats://127.0.0.1:$nats_port")
  fi
  for (( i = 1; i <= n; i++ )); do
    local port
    port=$(free_port)
    instance_ports+=("$port")
    supervise "$i" "$port" "${args[@]}" &
    supervisors+=($!)
  done
  for (( i = 1; i <= n; i++ )); do
    wait_200 "${instance_ports[i - 1]}" /health 10 ||
      { say "instance $i did not start:"; cat "$state/instance-$i.log" >&2; exit 1; }
  done
}

# nginx from deploy/nginx.conf, with the instances' ports in its upstream and a free port to listen on.
start_nginx() {
  local prefix=$state/nginx
  rm -rf "$prefix"
  mkdir -p "$prefix/logs" "$prefix/tmp"
  nginx_port=$(free_port)
  local servers="" p
  for p in "${instance_ports[@]}"; do
    servers+="        server 127.0.0.1:$p max_fails=0;\n"
  done
  # The example's three `server 127.0.0.1:500N ...;` lines become ours; its listen port ours.
  sed -e "/^ *server 127\.0\.0\.1:500[0-9] /d" \
      -e "s/^\( *\)least_conn;/\1least_conn;\n$servers/" \
      -e "s/listen 127\.0\.0\.1:8080 /listen 127.0.0.1:$nginx_port /" \
      "$root/deploy/nginx.conf" >"$prefix/nginx.conf"
  nginx -q -t -e stderr -p "$prefix" -c "$prefix/nginx.conf"
  nginx -e stderr -p "$prefix" -c "$prefix/nginx.conf" 2>>"$state/nginx.log" &
  nginx_pid=$!
  wait_200 "$nginx_port" /health 5 || { say "nginx did not start:"; cat "$state/nginx.log" >&2; exit 1; }
}

# The deployment: $1 instances, with NATS when $2 is 1.
deploy() {
  local n=$1 with_nats=$2
  if (( with_nats )); then start_nats; fi
  start_instances "$n" "$with_nats"
  start_nginx
}

join() { local IFS=,; echo "$*"; }

# --- up: the deployment, by hand ---------------------------------------------------------------------
if [[ $mode == up ]]; then
  deploy "$up_instances" 1
  cat <<EOF
nats-server   nats://127.0.0.1:$nats_port (log $state/nats.log)
instances     $(for p in "${instance_ports[@]}"; do printf 'ws://127.0.0.1:%s ' "$p"; done)(logs $state/instance-*.log)
nginx         ws://127.0.0.1:$nginx_port/ (config $state/nginx/nginx.conf)
key           $key   (Authorization: Key $key, or ?key=$key)
publish       allowed on topics bench.>
status page   http://127.0.0.1:$nginx_port/?key=$key
Ctrl-C stops everything.
EOF
  while alive "$nginx_pid" && alive "$nats_pid"; do sleep 1; done
  say "nginx or nats-server exited"
  exit 1
fi

# --- the scenario -----------------------------------------------------------------------------------
results=$state/results.md
: >"$results"
failed=0
runs=()
if [[ ${HYDROGEN_BENCH_LOCAL:-0} != 0 ]]; then runs+=("1:0"); fi
IFS=, read -r -a counts <<<"${HYDROGEN_BENCH_INSTANCES:-1,3}"
for n in "${counts[@]}"; do
  [[ $n =~ ^[1-9][0-9]?$ ]] || { say "HYDROGEN_BENCH_INSTANCES: '$n' is not an instance count (1-99)"; exit 2; }
  runs+=("$n:1")
done

for run in "${runs[@]}"; do
  n=${run%%:*}
  with_nats=${run##*:}
  if [[ $n == 1 ]]; then label="1 instance"; else label="$n instances"; fi
  if [[ $with_nats == 1 ]]; then label+=", NATS"; else label+=", in-process bus"; fi
  say "== $label"
  deploy "$n" "$with_nats"
  pidfiles=()
  addrs=()
  for (( i = 1; i <= n; i++ )); do
    pidfiles+=("$state/instance-$i.pid")
    addrs+=("127.0.0.1:${instance_ports[i - 1]}")
  done
  status=0
  HYDROGEN_BENCH_ROLE=client \
  HYDROGEN_CLUSTER_LABEL="$label" \
  HYDROGEN_CLUSTER_ENTRY="127.0.0.1:$nginx_port" \
  HYDROGEN_CLUSTER_INSTANCES="$(join "${addrs[@]}")" \
  HYDROGEN_CLUSTER_PIDFILES="$(join "${pidfiles[@]}")" \
  HYDROGEN_CLUSTER_KEY="$key" \
  HYDROGEN_CLUSTER_RESULTS="$results" \
    "$client" || status=$?
  if (( status != 0 )); then
    say "$label: the client exited with status $status"
    failed=1
    for (( i = 1; i <= n; i++ )); do
      if grep -q . "$state/instance-$i.log" 2>/dev/null; then
        say "instance $i's log (last lines):"
        tail -n 5 "$state/instance-$i.log" >&2
      fi
    done
  fi
  stop_all
done

# The rows of every run under one head per table (the client writes both; the heads are the same).
for section in fanout restart; do
  grep -q "^$section	" "$results" || continue
  echo
  grep "^$section-head	" "$results" | head -n 2 | cut -f2-
  grep "^$section	" "$results" | cut -f2-
done
exit "$failed"
