#!/usr/bin/env bash
# Publishes order.placed, as an order service would.
set -euo pipefail

usage() {
    cat >&2 <<USAGE
usage: $(basename "$0") ORDER_ID [AMOUNT_CENTS] [CURRENCY]

Publishes order.placed for ORDER_ID to the ${PAYWAIT_PREFIX:-paywait}.orders exchange, e.g.
  $(basename "$0") A-1001 12900 CNY
Connection: RABBITMQ_HOST, RABBITMQ_PORT, RABBITMQ_USER, RABBITMQ_PASSWORD,
RABBITMQ_VHOST, PAYWAIT_PREFIX (see common.sh).
USAGE
    exit 2
}

[[ $# -ge 1 && $# -le 3 && $1 != -* ]] || usage
order_id=$1
amount_cents=${2:-}
currency=${3:-}
[[ -z $amount_cents || $amount_cents =~ ^[0-9]+$ ]] || usage

# shellcheck source=common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

payload="{\"order_id\":$(json_string "$order_id")"
[[ -n $amount_cents ]] && payload+=",\"amount_cents\":$amount_cents"
[[ -n $currency ]] && payload+=",\"currency\":$(json_string "$currency")"
payload+=",\"placed_at\":\"$(now_utc)\"}"

publish order.placed "$payload"
echo "published order.placed: $payload"
