#!/usr/bin/env bash
# A three-node RabbitMQ cluster on this one machine, beside its own broker,
# which it leaves untouched: its own node names, ports, data directories and
# Erlang cookie. For trying paywait against a cluster (amqp.urls) and for
# the tests. Run as root, with Debian's RabbitMQ installed.
#
#   rabbit/cluster.sh start    # prints the nodes' AMQP URLs, one per line
#   rabbit/cluster.sh stop     # stops the nodes and removes their data
#   rabbit/cluster.sh stop-node N / start-node N   # one node goes away, comes back
#   rabbit/cluster.sh status / queues               # the nodes; the queues' replicas
#   rabbit/cluster.sh leader QUEUE / connections N  # a queue's leader; paywait's connections to a node
#
# Environment: CLUSTER_DIR (default /tmp/paywait-cluster), CLUSTER_PORT
# (default 5780: node N listens for AMQP on CLUSTER_PORT+N and for its peers
# on CLUSTER_PORT+20000+N), CLUSTER_NAME (default paywait-cluster: the nodes
# are CLUSTER_NAME-1@localhost and so on).
set -euo pipefail

BIN=/usr/lib/rabbitmq/bin
DIR=${CLUSTER_DIR:-/tmp/paywait-cluster}
PORT=${CLUSTER_PORT:-5780}
NAME=${CLUSTER_NAME:-paywait-cluster}
NODES=(1 2 3)

node() { echo "$NAME-$1@localhost"; }

# Runs a RabbitMQ program as node $1, with the cluster's own home and cookie.
as_node() {
  local n=$1
  shift
  env HOME="$DIR/home" RABBITMQ_NODENAME="$(node "$n")" \
    RABBITMQ_NODE_PORT=$((PORT + n)) RABBITMQ_DIST_PORT=$((PORT + 20000 + n)) \
    RABBITMQ_MNESIA_BASE="$DIR/node-$n/mnesia" RABBITMQ_LOG_BASE="$DIR/node-$n/log" \
    RABBITMQ_CONFIG_FILE="$DIR/rabbitmq.conf" RABBITMQ_ENABLED_PLUGINS_FILE="$DIR/enabled_plugins" \
    "$@"
}

ctl() { as_node "$1" "$BIN/rabbitmqctl" -q -n "$(node "$1")" "${@:2}"; }

start_node() {
  as_node "$1" "$BIN/rabbitmq-server" -detached >>"$DIR/cluster.log" 2>&1
  for _ in $(seq 1 60); do
    ctl "$1" await_startup >/dev/null 2>&1 && return 0
    sleep 1
  done
  echo "cluster.sh: node $(node "$1") did not start; see $DIR/node-$1/log" >&2
  return 1
}

case "${1:-}" in
  start)
    mkdir -p "$DIR/home"
    for n in "${NODES[@]}"; do mkdir -p "$DIR/node-$n/mnesia" "$DIR/node-$n/log"; done
    if [ ! -f "$DIR/home/.erlang.cookie" ]; then
      head -c 24 /dev/urandom | base64 | tr -dc 'A-Za-z0-9' > "$DIR/home/.erlang.cookie"
      chmod 400 "$DIR/home/.erlang.cookie"
    fi
    printf 'loopback_users = none\n' > "$DIR/rabbitmq.conf"
    printf '[].\n' > "$DIR/enabled_plugins"
    for n in "${NODES[@]}"; do start_node "$n"; done
    for n in 2 3; do
      {
        ctl "$n" stop_app
        ctl "$n" reset
        ctl "$n" join_cluster "$(node 1)"
        ctl "$n" start_app
      } >>"$DIR/cluster.log" 2>&1
    done
    for n in "${NODES[@]}"; do echo "amqp://guest:guest@127.0.0.1:$((PORT + n))/%2f"; done
    ;;
  stop)
    for n in "${NODES[@]}"; do ctl "$n" stop >/dev/null 2>&1 || true; done
    rm -rf "$DIR"
    ;;
  stop-node)
    ctl "${2:?which node}" stop_app
    ;;
  start-node)
    ctl "${2:?which node}" start_app
    ;;
  status)
    ctl 1 cluster_status
    ;;
  queues)
    ctl 1 list_queues name type members
    ;;
  leader)
    ctl 1 list_queues name leader | awk -v q="${2:?which queue}" '$1 == q { print $2 }'
    ;;
  connections)
    ctl "${2:?which node}" list_connections client_properties | grep -c '{"connection_name","paywait"}' || true
    ;;
  *)
    echo "usage: $0 start|stop|stop-node N|start-node N|status|queues|leader QUEUE|connections N" >&2
    exit 64
    ;;
esac
