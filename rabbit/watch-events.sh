#!/usr/bin/env bash
# Shows the events paywait publishes, through a queue of its own bound to the
# events exchange with '#'.
#
# While the watch queue exists, every event is routed to it, so events that no
# downstream queue is bound for no longer wait in <prefix>.unrouted. Delete it
# when done (--delete). Unused for an hour, the broker deletes it by itself.
set -euo pipefail

usage() {
    cat >&2 <<USAGE
usage: $(basename "$0") [-f] [COUNT]
       $(basename "$0") --delete

Declares the queue ${PAYWAIT_PREFIX:-paywait}.watch, bound to ${PAYWAIT_PREFIX:-paywait}.events with '#', then
takes and prints up to COUNT (default 100) events that reached it since it was
declared. -f keeps polling until interrupted. --delete removes the queue.
Connection: RABBITMQ_HOST, RABBITMQ_PORT, RABBITMQ_USER, RABBITMQ_PASSWORD,
RABBITMQ_VHOST, PAYWAIT_PREFIX (see common.sh).
USAGE
    exit 2
}

follow=false
count=100
case ${1:-} in
    --delete)
        [[ $# -eq 1 ]] || usage
        # shellcheck source=common.sh
        source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
        admin delete queue name="$WATCH_QUEUE"
        exit 0
        ;;
    -f) follow=true; shift ;;
    -*) usage ;;
esac
[[ $# -le 1 ]] || usage
count=${1:-$count}
[[ $count =~ ^[1-9][0-9]*$ ]] || usage

# shellcheck source=common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

# Capped in length and dropped after an hour unused, so that a forgotten watch
# cannot fill the broker. Durable, because recent brokers refuse transient
# queues that are not exclusive.
admin declare queue name="$WATCH_QUEUE" durable=true \
    arguments='{"x-queue-type":"classic","x-expires":3600000,"x-max-length":10000}' >/dev/null
admin declare binding source="$EVENTS_EXCHANGE" destination="$WATCH_QUEUE" \
    destination_type=queue routing_key='#' >/dev/null

while :; do
    messages=$(admin -f raw_json get queue="$WATCH_QUEUE" ackmode=ack_requeue_false count="$count")
    print_messages "" <<<"$messages"
    $follow || break
    sleep 1
done
