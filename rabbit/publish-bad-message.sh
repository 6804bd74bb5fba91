#!/usr/bin/env bash
# Publishes an order.placed that paywait cannot process: it parks the message
# in the dead queue with an x-paywait-error header and counts it in
# paywait_messages_dead_total{reason=KIND}.
set -euo pipefail

kinds="not_json not_utf8 missing_field wrong_type invalid_order_id invalid_field too_large"

usage() {
    cat >&2 <<USAGE
usage: $(basename "$0") [KIND]

Publishes a bad order.placed to the ${PAYWAIT_PREFIX:-paywait}.orders exchange.
KIND is one of: $kinds
(default not_json). Read the result with read-dead.sh.
Connection: RABBITMQ_HOST, RABBITMQ_PORT, RABBITMQ_USER, RABBITMQ_PASSWORD,
RABBITMQ_VHOST, PAYWAIT_PREFIX (see common.sh).
USAGE
    exit 2
}

[[ $# -le 1 ]] || usage
kind=${1:-not_json}

# shellcheck source=common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

# Each id is unique, so that the broken messages are told apart in the dead queue.
id="BAD-$(date -u +%Y%m%d%H%M%S)-$$"
case $kind in
    not_json) body="this is not JSON {order_id: $id}" ;;
    missing_field) body="{\"amount_cents\":100,\"note\":\"$id has no order_id\"}" ;;
    wrong_type) body="{\"order_id\":\"$id\",\"amount_cents\":\"12.90\"}" ;;
    invalid_order_id) body="{\"order_id\":\"$id has spaces\"}" ;;
    invalid_field) body="{\"order_id\":\"$id\",\"currency\":\"yuan\"}" ;;
    not_utf8)
        # The bytes ff fe, given base64-encoded to rabbitmqadmin.
        publish order.placed //4= payload_encoding=base64
        echo "published order.placed ($kind): the bytes ff fe"
        exit 0
        ;;
    too_large)
        # Over the 64 KiB paywait accepts.
        body="{\"order_id\":\"$id\",\"padding\":\"$(printf '%066000d' 0)\"}"
        publish order.placed "$body"
        echo "published order.placed ($kind): $id, ${#body} bytes"
        exit 0
        ;;
    *) usage ;;
esac
publish order.placed "$body"
echo "published order.placed ($kind): $body"
