#!/usr/bin/env bash
# Publishes order.cancelled, as an order service would.
set -euo pipefail

usage() {
    cat >&2 <<USAGE
usage: $(basename "$0") ORDER_ID [REASON]

Publishes order.cancelled for ORDER_ID to the ${PAYWAIT_PREFIX:-paywait}.orders exchange, e.g.
  $(basename "$0") A-1001 customer
Connection: RABBITMQ_HOST, RABBITMQ_PORT, RABBITMQ_USER, RABBITMQ_PASSWORD,
RABBITMQ_VHOST, PAYWAIT_PREFIX (see common.sh).
USAGE
    exit 2
}

[[ $# -ge 1 && $# -le 2 && $1 != -* ]] || usage
order_id=$1
reason=${2:-}

# shellcheck source=common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

payload="{\"order_id\":$(json_string "$order_id")"
[[ -n $reason ]] && payload+=",\"reason\":$(json_string "$reason")"
payload+="}"

publish order.cancelled "$payload"
echo "published order.cancelled: $payload"
