#!/usr/bin/env bash
# Publishes payment.succeeded, as a payment service would.
set -euo pipefail

usage() {
    cat >&2 <<USAGE
usage: $(basename "$0") ORDER_ID PAYMENT_ID [AMOUNT_CENTS]

Publishes payment.succeeded for ORDER_ID to the ${PAYWAIT_PREFIX:-paywait}.orders exchange, e.g.
  $(basename "$0") A-1001 PAY-77 12900
Connection: RABBITMQ_HOST, RABBITMQ_PORT, RABBITMQ_USER, RABBITMQ_PASSWORD,
RABBITMQ_VHOST, PAYWAIT_PREFIX (see common.sh).
USAGE
    exit 2
}

[[ $# -ge 2 && $# -le 3 && $1 != -* ]] || usage
order_id=$1
payment_id=$2
amount_cents=${3:-}
[[ -z $amount_cents || $amount_cents =~ ^[0-9]+$ ]] || usage

# shellcheck source=common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

payload="{\"order_id\":$(json_string "$order_id"),\"payment_id\":$(json_string "$payment_id")"
[[ -n $amount_cents ]] && payload+=",\"amount_cents\":$amount_cents"
payload+=",\"paid_at\":\"$(now_utc)\"}"

publish payment.succeeded "$payload"
echo "published payment.succeeded: $payload"
