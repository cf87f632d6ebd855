#!/usr/bin/env bash
# Memory per idle keep-alive TLS connection, Postern beside nginx: each
# proxy (one worker, a fresh process every round) gets N connections that
# each complete a handshake and one GET, then wait; the cost is the growth
# of the proxy's RSS (nginx: master and worker summed) divided by N.
# Rounds alternate the two proxies; the report gives each one's median.
#
# Usage: scripts/bench-idle.sh [CONNECTIONS] [ROUNDS]
set -euo pipefail
cd "$(dirname "$0")/.."

N=${1:-10000}
ROUNDS=${2:-3}
BASE_PORT=${BENCH_BASE_PORT:-18300}
BACKEND_PORT=$((BASE_PORT + 1))
NGINX_HTTPS=$((BASE_PORT + 2))
POSTERN_HTTP=$((BASE_PORT + 3))
POSTERN_HTTPS=$((BASE_PORT + 4))

# shellcheck source=scripts/bench-common.sh
. scripts/bench-common.sh
[ "$(ulimit -Hn)" = unlimited ] || [ "$(ulimit -Hn)" -gt $((N + 1000)) ] || {
    echo "the descriptor limit ($(ulimit -Hn)) is below $N connections" >&2
    exit 2
}
ulimit -n "$(ulimit -Hn)"

head -c 512 /dev/urandom | base64 -w 0 > "$WORK/www/index.html"
make_cert localhost
write_backend_conf "$BACKEND_PORT"
"$NGINX" -p "$WORK" -c "$WORK/backend.conf" & PIDS+=($!)
wait_port "$BACKEND_PORT"

write_nginx_tls_proxy "$WORK/nginx.conf" "$NGINX_HTTPS" "$BACKEND_PORT" 1 $((N + 1000)) $((N + 500))
write_edge_conf "$WORK/edge.toml" "$POSTERN_HTTP" "$POSTERN_HTTPS" "$((BASE_PORT + 5))" "$BACKEND_PORT" false
sed -i "s|^access_log = .*|&\nmax_connections_per_source = $((N + 500))\nmax_connections = $((N + 500))|" "$WORK/edge.toml"

# measure NAME: one fresh process, one line of idle-clients.py output.
measure() {
    local pids port pid
    if [ "$1" = nginx ]; then
        "$NGINX" -p "$WORK" -c "$WORK/nginx.conf" & pid=$!
        port=$NGINX_HTTPS
        wait_port "$port"
        pids="$pid $(pgrep -P "$pid" | tr '\n' ' ')"
    else
        rm -rf "$WORK/state"
        POSTERN_LOG=warn "$POSTERN" edge --config "$WORK/edge.toml" > "$WORK/logs/postern.out" 2>&1 & pid=$!
        port=$POSTERN_HTTPS
        wait_port "$port"
        pids=$pid
    fi
    # shellcheck disable=SC2086 # $pids holds several PIDs
    python3 scripts/idle-clients.py "$port" "$N" localhost $pids
    kill "$pid"
    wait "$pid" 2>/dev/null || true
}

: > "$WORK/postern.txt"; : > "$WORK/nginx.txt"
for r in $(seq 1 "$ROUNDS"); do
    if [ $((r % 2)) -eq 1 ]; then order="postern nginx"; else order="nginx postern"; fi
    for p in $order; do
        line=$(measure "$p")
        echo "round $r $p: $line" >&2
        echo "$line" >> "$WORK/$p.txt"
    done
done
P=$(awk '{print $4}' "$WORK/postern.txt" | median)
X=$(awk '{print $4}' "$WORK/nginx.txt" | median)
printf '\n%s idle keep-alive TLS connections, one worker each, median of %s rounds (%s)\n' "$N" "$ROUNDS" "$(date -u +%F)"
printf '| proxy | bytes per idle TLS connection |\n|---|---:|\n'
printf '| Postern | %s |\n| nginx %s | %s |\n' "$P" "$("$NGINX" -v 2>&1 | sed 's/.*\///')" "$X"
awk -v p="$P" -v x="$X" 'BEGIN {printf "Postern/nginx: %.2f\n", p / x}'
