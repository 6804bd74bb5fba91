#!/usr/bin/env bash
# Publishes order.deadline_changed, as an order service would.
set -euo pipefail

usage() {
    cat >&2 <<USAGE
usage: $(basename "$0") ORDER_ID EXPIRES_AT

Publishes order.deadline_changed for ORDER_ID to the ${PAYWAIT_PREFIX:-paywait}.orders exchange:
its new deadline, an RFC 3339 time, later or earlier, e.g.
  $(basename "$0") A-1001 2026-11-27T08:45:00Z
Connection: RABBITMQ_HOST, RABBITMQ_PORT, RABBITMQ_USER, RABBITMQ_PASSWORD,
RABBITMQ_VHOST, PAYWAIT_PREFIX (see common.sh).
USAGE
    exit 2
}

[[ $# -eq 2 && $1 != -* ]] || usage
order_id=$1
expires_at=$2

# shellcheck source=common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

payload="{\"order_id\":$(json_string "$order_id"),\"expires_at\":$(json_string "$expires_at")}"

publish order.deadline_changed "$payload"
echo "published order.deadline_changed: $payload"
