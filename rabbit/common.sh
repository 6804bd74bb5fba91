# shellcheck shell=bash
# Sourced by the scripts beside it: connection settings from the environment,
# and the helpers they share. Needs the classic rabbitmqadmin (3.10 syntax),
# which runs on python3.
#
#   RABBITMQ_HOST      management API host  (default localhost)
#   RABBITMQ_PORT      management API port  (default 15672)
#   RABBITMQ_USER      user                 (default guest)
#   RABBITMQ_PASSWORD  password             (default guest)
#   RABBITMQ_VHOST     virtual host         (default /)
#   PAYWAIT_PREFIX     paywait's topology.prefix (default paywait)

RABBITMQ_HOST=${RABBITMQ_HOST:-localhost}
RABBITMQ_PORT=${RABBITMQ_PORT:-15672}
RABBITMQ_USER=${RABBITMQ_USER:-guest}
RABBITMQ_PASSWORD=${RABBITMQ_PASSWORD:-guest}
RABBITMQ_VHOST=${RABBITMQ_VHOST:-/}
PAYWAIT_PREFIX=${PAYWAIT_PREFIX:-paywait}

# Used by the scripts that source this file.
# shellcheck disable=SC2034
{
    ORDERS_EXCHANGE="$PAYWAIT_PREFIX.orders"
    EVENTS_EXCHANGE="$PAYWAIT_PREFIX.events"
    DEAD_QUEUE="$PAYWAIT_PREFIX.dead"
    WATCH_QUEUE="$PAYWAIT_PREFIX.watch"
}

die() {
    echo "$(basename "$0"): $*" >&2
    exit 1
}

for tool in rabbitmqadmin python3; do
    command -v "$tool" >/dev/null || die "$tool is not installed"
done

# rabbitmqadmin against the configured broker and virtual host.
admin() {
    rabbitmqadmin -H "$RABBITMQ_HOST" -P "$RABBITMQ_PORT" \
        -u "$RABBITMQ_USER" -p "$RABBITMQ_PASSWORD" -V "$RABBITMQ_VHOST" "$@"
}

# Prints its argument as a JSON string, quotes and escapes included.
json_string() {
    python3 -c 'import json, sys; print(json.dumps(sys.argv[1]))' "$1"
}

now_utc() {
    date -u +%Y-%m-%dT%H:%M:%SZ
}

# publish ROUTING_KEY PAYLOAD [NAME=VALUE...]: publishes PAYLOAD to paywait's
# orders exchange as persistent JSON, and fails unless a queue received it.
# Further arguments go to `rabbitmqadmin publish` as they are.
publish() {
    local routing_key=$1 payload=$2 output
    shift 2
    output=$(admin publish exchange="$ORDERS_EXCHANGE" routing_key="$routing_key" \
        payload="$payload" \
        properties="{\"content_type\":\"application/json\",\"delivery_mode\":2,\"type\":\"$routing_key\"}" \
        "$@") || exit 1
    case $output in
        *"NOT routed"*)
            die "$routing_key was not routed: is paywait's topology declared on vhost $RABBITMQ_VHOST? (paywait topology)"
            ;;
    esac
}

# print_messages EMPTY_TEXT [HEADER...]: reads the JSON array that
# `rabbitmqadmin -f raw_json get` prints on stdin and prints each message:
# routing key, message_id, the given headers, body. Prints EMPTY_TEXT, unless
# it is empty, when there is no message.
print_messages() {
    python3 -c '
import json, sys

def show(name, value):
    print((name + ":").ljust(18) + str(value))

messages = json.load(sys.stdin)
if not messages and sys.argv[1]:
    print(sys.argv[1])
for message in messages:
    properties = message.get("properties") or {}
    headers = properties.get("headers") or {}
    payload = message.get("payload", "")
    if message.get("payload_encoding") == "base64":
        payload = "(not UTF-8, base64) " + payload
    show("routing_key", message.get("routing_key", ""))
    if properties.get("message_id"):
        show("message_id", properties["message_id"])
    for name in sys.argv[2:]:
        if name in headers:
            show(name, headers[name])
    show("body", payload)
    print()
' "$@"
}
