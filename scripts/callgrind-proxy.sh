#!/usr/bin/env bash
# Instructions per request of the edge, counted by callgrind (a
# repeatable count, user space only, whatever else the machine does).
#
# One edge worker proxies to an nginx static backend; a single keep-alive
# connection (curl, URL globbing) sends REQUESTS requests for a 1 KiB
# file, over HTTP/1.1, HTTP/1.1 over TLS, and HTTP/2 over TLS. Counters are zeroed just before each
# batch and dumped just after, so start-up, the TLS handshake's share
# aside, and shutdown are not counted.
#
# Usage: scripts/callgrind-proxy.sh [REQUESTS]
#   POSTERN_BIN=path measures another build of the edge (for before/after);
#   CALLGRIND_KEEP=dir keeps each batch's profile there (callgrind_annotate).
#   CALLGRIND_TUNNEL=1 also counts the tunnel path: edge and connector each,
#   and their sum.
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
wait_port "$BACKEND_PORT"

# Counts one batch per scheme against PORT for the callgrind runs whose
# output files start with each PREFIX given (label:pid:prefix ...).
measure() {
    local port_http=$1 port_https=$2; shift 2
    # https is HTTP/1.1 over TLS; h2 is HTTP/2 over TLS (ALPN), one
    # stream at a time on one connection.
    for scheme in http https h2; do
        case $scheme in
            http) port=$port_http url=http proto=--http1.1 ;;
            https) port=$port_https url=https proto=--http1.1 ;;
            h2) port=$port_https url=https proto=--http2 ;;
        esac
        # Warm the pools and caches, then count one batch.
        curl -sk $proto -o /dev/null "$url://localhost:$port/1k?w=[1-50]"
        for entry in "$@"; do callgrind_control -z "$(echo "$entry" | cut -d: -f2)" >/dev/null; done
        curl -sk $proto -o /dev/null "$url://localhost:$port/1k?n=[1-$REQUESTS]"
        local sum=0 line=""
        for entry in "$@"; do
            IFS=: read -r label pid prefix <<<"$entry"
            callgrind_control -d "$scheme" "$pid" >/dev/null
            sleep 1
            total=$(cat "$prefix".* 2>/dev/null | awk '/^summary:/ {s += $2} END {print s + 0}')
            if [ -n "${CALLGRIND_KEEP:-}" ]; then
                mkdir -p "$CALLGRIND_KEEP"; cat "$prefix".* > "$CALLGRIND_KEEP/$label-$scheme.callgrind"
            fi
            rm -f "$prefix".*
            sum=$((sum + total))
            line="$line$(awk -v t="$total" -v n="$REQUESTS" -v l="$label" 'BEGIN {printf "  %s %.0f", l, t / n}')"
        done
        awk -v t="$sum" -v n="$REQUESTS" -v s=$scheme -v l="$line" \
            'BEGIN {printf "%-6s %12.0f instructions per request%s\n", s, t / n, (l ~ / .* / && l ~ /connector/) ? " (" substr(l, 3) ")" : ""}'
    done
}

POSTERN_LOG=warn valgrind --tool=callgrind --callgrind-out-file="$WORK/cg.out" \
    "$EDGE" edge --config "$WORK/edge.toml" > "$WORK/logs/edge.out" 2>&1 & PIDS+=($!)
EDGE_PID=$!
# Start-up under valgrind is slow.
wait_port "$EDGE_HTTPS" 60
printf 'edge: %s\n%s requests per batch, one keep-alive connection\n' "$EDGE" "$REQUESTS"
measure "$EDGE_HTTP" "$EDGE_HTTPS" "edge:$EDGE_PID:$WORK/cg.out"
# The counts are in; no need to wait for a graceful exit under valgrind.
kill -9 "$EDGE_PID" 2>/dev/null || true

[ -n "${CALLGRIND_TUNNEL:-}" ] || exit 0
# The tunnel path: an edge with a tunnel listener and a connector, each
# counted on its own, and their sum.
T_HTTP=$((BASE_PORT + 5)); T_HTTPS=$((BASE_PORT + 6)); T_ADMIN=$((BASE_PORT + 7)); T_TUNNEL=$((BASE_PORT + 8))
write_edge_conf "$WORK/tedge.toml" "$T_HTTP" "$T_HTTPS" "$T_ADMIN" "$BACKEND_PORT" false
sed -i -e "s|^admin_address = .*|admin_address = \"127.0.0.1:$T_ADMIN\"\ntunnel_address = \"127.0.0.1:$T_TUNNEL\"|" \
    -e "s|^state_dir = .*|state_dir = \"$WORK/tstate\"|" "$WORK/tedge.toml"
printf '[connector]\nworkers = 1\n' > "$WORK/connector.toml"
# Enrollment talks to the admin API, which answers too slowly under
# valgrind: enroll against a plain run, then restart the edge counted.
POSTERN_LOG=warn "$EDGE" edge --config "$WORK/tedge.toml" > "$WORK/logs/tedge-plain.out" 2>&1 & PIDS+=($!)
PLAIN_PID=$!
wait_port "$T_TUNNEL"
TOKEN=$("$EDGE" tokens --admin "127.0.0.1:$T_ADMIN" --state-dir "$WORK/tstate" --json create --group default \
    | sed -n 's/.*"token": *"\([^"]*\)".*/\1/p')
"$EDGE" connector register --edge "127.0.0.1:$T_TUNNEL" --token "$TOKEN" --state-dir "$WORK/connector" >/dev/null
kill "$PLAIN_PID"; wait "$PLAIN_PID" 2>/dev/null || true
POSTERN_LOG=warn valgrind --tool=callgrind --callgrind-out-file="$WORK/te.out" \
    "$EDGE" edge --config "$WORK/tedge.toml" > "$WORK/logs/tedge.out" 2>&1 & PIDS+=($!)
TEDGE_PID=$!
# Start-up under valgrind is slow.
wait_port "$T_TUNNEL" 60
POSTERN_LOG=warn valgrind --tool=callgrind --callgrind-out-file="$WORK/tc.out" \
    "$EDGE" connector --state-dir "$WORK/connector" --config "$WORK/connector.toml" \
    > "$WORK/logs/connector.out" 2>&1 & PIDS+=($!)
CONN_PID=$!
for _ in $(seq 1 300); do
    [ "$(curl -s -o /dev/null -w '%{http_code}' "http://localhost:$T_HTTP/1k")" = 200 ] && break
    sleep 0.2
done
printf 'tunnel path (edge + connector)\n'
measure "$T_HTTP" "$T_HTTPS" "edge:$TEDGE_PID:$WORK/te.out" "connector:$CONN_PID:$WORK/tc.out"
kill -9 "$TEDGE_PID" "$CONN_PID" 2>/dev/null || true
