#!/usr/bin/env bash
# Lists the messages paywait parked in its dead queue, each with the reason in
# x-paywait-error and the queue it came from in x-paywait-queue. The messages
# are put back: reading them removes nothing.
set -euo pipefail

usage() {
    cat >&2 <<USAGE
usage: $(basename "$0") [COUNT]

Prints up to COUNT (default 100) messages of ${PAYWAIT_PREFIX:-paywait}.dead and leaves them in
the queue. To discard them all: rabbitmqadmin purge queue name=${PAYWAIT_PREFIX:-paywait}.dead
Connection: RABBITMQ_HOST, RABBITMQ_PORT, RABBITMQ_USER, RABBITMQ_PASSWORD,
RABBITMQ_VHOST, PAYWAIT_PREFIX (see common.sh).
USAGE
    exit 2
}

[[ $# -le 1 ]] || usage
count=${1:-100}
[[ $count =~ ^[1-9][0-9]*$ ]] || usage

# shellcheck source=common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

# ack_requeue_true returns every message to the queue once all are read, so
# each is listed once.
messages=$(admin -f raw_json get queue="$DEAD_QUEUE" ackmode=ack_requeue_true count="$count")
print_messages "$DEAD_QUEUE is empty" x-paywait-error x-paywait-queue <<<"$messages"
