#!/usr/bin/env bash
# Instructions per request of the edge, counted by callgrind (a
# repeatable count, user space only, whatever else the machine does).
#
# One edge worker proxies to an nginx static backend; a single keep-alive
# connection (curl, URL globbing) sends REQUESTS requests for a 1 KiB
# file, over HTTP and then HTTPS. Counters are zeroed just before each
# batch and dumped just after, so start-up, the TLS handshake's share
# aside, and shutdown are not counted.
#
# Usage: scripts/callgrind-proxy.sh [REQUESTS]
#   POSTERN_BIN=path measures another build of the edge (for before/after);
#   CALLGRIND_KEEP=dir keeps each batch's profile there (callgrind_annotate).
set -euo pipefail
cd "$(dirname "$0")/.."

REQUESTS=${1:-2000}
BASE_PORT=${BENCH_BASE_PORT:-18100}
BACKEND_PORT=$((BASE_PORT + 1))
EDGE_HTTP=$((BASE_PORT + 2))
EDGE_HTTPS=$((BASE_PORT + 3))
command -v valgrind >/dev/null 2>&1 || { echo "valgrind is needed (apt-get install valgrind)" >&2; exit 1; }
command -v curl >/dev/null 2>&1 || { echo "curl is needed" >&2; exit 1; }

# shellcheck source=scripts/bench-common.sh
. scripts/bench-common.sh
EDGE=${POSTERN_BIN:-$POSTERN}

head -c 1024 /dev/urandom | base64 -w 0 | head -c 1024 > "$WORK/www/1k"
make_cert localhost
write_backend_conf "$BACKEND_PORT"
write_edge_conf "$WORK/edge.toml" "$EDGE_HTTP" "$EDGE_HTTPS" "$((BASE_PORT + 4))" "$BACKEND_PORT" false

"$NGINX" -p "$WORK" -c "$WORK/backend.conf" & PIDS+=($!)
POSTERN_LOG=warn valgrind --tool=callgrind --callgrind-out-file="$WORK/cg.out" \
    "$EDGE" edge --config "$WORK/edge.toml" > "$WORK/logs/edge.out" 2>&1 & PIDS+=($!)
EDGE_PID=$!
wait_port "$BACKEND_PORT"
for _ in $(seq 1 300); do
    (exec 3<>"/dev/tcp/127.0.0.1/$EDGE_HTTPS") 2>/dev/null && break
    sleep 0.2
done

printf 'edge: %s\n%s requests per batch, one keep-alive connection\n' "$EDGE" "$REQUESTS"
for scheme in http https; do
    if [ $scheme = http ]; then port=$EDGE_HTTP; else port=$EDGE_HTTPS; fi
    # Warm the pools and caches, then count one batch.
    curl -sk -o /dev/null "$scheme://localhost:$port/1k?w=[1-50]"
    callgrind_control -z "$EDGE_PID" >/dev/null
    curl -sk -o /dev/null "$scheme://localhost:$port/1k?n=[1-$REQUESTS]"
    callgrind_control -d "$scheme" "$EDGE_PID" >/dev/null
    sleep 1
    total=$(cat "$WORK"/cg.out.* 2>/dev/null | awk '/^summary:/ {s += $2} END {print s + 0}')
    if [ -n "${CALLGRIND_KEEP:-}" ]; then
        mkdir -p "$CALLGRIND_KEEP"; cp "$WORK"/cg.out.* "$CALLGRIND_KEEP/$scheme.callgrind"
    fi
    rm -f "$WORK"/cg.out.*
    awk -v t="$total" -v n="$REQUESTS" -v s=$scheme \
        'BEGIN {printf "%-6s %12.0f instructions per request\n", s, t / n}'
done
# The counts are in; no need to wait for a graceful exit under valgrind.
kill -9 "$EDGE_PID" 2>/dev/null || true
