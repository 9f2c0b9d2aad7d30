#!/usr/bin/env bash
# Runs a command against a NATS server of its own, with JetStream, on a free port:
#   tests/with_nats_server.sh NATS_SERVER_BINARY COMMAND...
# The command sees HUBSPOT_OPERATOR_TEST_NATS_URL (that server) and
# HUBSPOT_OPERATOR_TEST_NATS_SERVER_BIN (the same binary, for tests that start servers of
# their own). `make test` uses it to run the JetStream tests on a current NATS release too.
set -euo pipefail
server_bin="$1"
shift
work="$(mktemp -d)"
port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
"$server_bin" --jetstream --addr 127.0.0.1 --port "$port" --store_dir "$work/store" >"$work/server.log" 2>&1 &
server=$!
trap 'kill "$server" 2>/dev/null; wait "$server" 2>/dev/null; rm -rf "$work"' EXIT
for _ in $(seq 100); do
  if grep -q "Server is ready" "$work/server.log"; then break; fi
  if ! kill -0 "$server" 2>/dev/null; then cat "$work/server.log" >&2; exit 1; fi
  sleep 0.1
done
grep -q "Server is ready" "$work/server.log" || { cat "$work/server.log" >&2; echo "NATS server did not start" >&2; exit 1; }
echo "NATS $("$server_bin" --version) on 127.0.0.1:$port" >&2
HUBSPOT_OPERATOR_TEST_NATS_URL="nats://127.0.0.1:$port" HUBSPOT_OPERATOR_TEST_NATS_SERVER_BIN="$server_bin" "$@"
