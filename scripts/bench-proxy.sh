#!/usr/bin/env bash
# Side-by-side proxy benchmark (BENCH.md): Postern edge vs nginx proxying the
# same nginx static backend, 1 KiB responses over HTTP and HTTPS, keep-alive.
# Postern runs twice: edge straight to the backend, and the product's real
# path, edge -> HTTP/2 tunnel -> connector -> backend, whose cost is the
# edge's and the connector's CPU summed.
#
# The proxy under test is pinned to CPU 0; the load generator (wrk) and the
# backend to CPU 1. Cost is proxy CPU time per request, read from
# /proc/PID/task/*/stat before and after each run (postern-cpu), so it stays
# meaningful when the load generator, not the proxy, is the bottleneck.
#
# Usage: scripts/bench-proxy.sh [DURATION_SECONDS] [CONNECTIONS]
#   BENCH_NO_COUNTERS=1 also runs a build without counters (cargo feature
#   `counters` off) to show what counting costs per request.
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${1:-10}
CONNS=${2:-32}
BASE_PORT=${BENCH_BASE_PORT:-18000}
BACKEND_PORT=$((BASE_PORT + 1))
NGINX_HTTP=$((BASE_PORT + 2))
NGINX_HTTPS=$((BASE_PORT + 3))
POSTERN_HTTP=$((BASE_PORT + 4))
POSTERN_HTTPS=$((BASE_PORT + 5))
TUNNEL_HTTP=$((BASE_PORT + 6))
TUNNEL_HTTPS=$((BASE_PORT + 7))
TUNNEL_LISTENER=$((BASE_PORT + 8))

# shellcheck source=scripts/bench-common.sh
. scripts/bench-common.sh

# Content: the 1 KiB file BENCH.md specifies.
head -c 1024 /dev/urandom | base64 -w 0 | head -c 1024 > "$WORK/www/1k"
make_cert localhost

write_backend_conf "$BACKEND_PORT"

cat > "$WORK/proxy.conf" <<CONF
$USER_LINE
worker_processes 1;
daemon off;
pid $WORK/proxy.pid;
error_log $WORK/logs/proxy.err warn;
events { worker_connections 4096; }
http {
    access_log off;
    keepalive_requests 10000000;
    upstream backend { server 127.0.0.1:$BACKEND_PORT; keepalive 64; }
    server {
        listen 127.0.0.1:$NGINX_HTTP;
        listen 127.0.0.1:$NGINX_HTTPS ssl;
        ssl_certificate $WORK/cert.pem;
        ssl_certificate_key $WORK/key.pem;
        ssl_protocols TLSv1.2 TLSv1.3;
        location / {
            proxy_pass http://backend;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }
    }
}
CONF

cat > "$WORK/edge.toml" <<CONF
[edge]
workers = 1
pin_workers = true
access_log = "off"           # nginx runs with access_log off too
admin_address = "127.0.0.1:$((BASE_PORT + 9))"
state_dir = "$WORK/state"

[[listener]]
address = "127.0.0.1:$POSTERN_HTTP"
scheme = "http"

[[listener]]
address = "127.0.0.1:$POSTERN_HTTPS"
scheme = "https"

[[certificate]]
cert_file = "$WORK/cert.pem"
key_file = "$WORK/key.pem"

[[app]]
name = "bench-https"
external_url = "https://localhost:$POSTERN_HTTPS/"
internal_url = "http://127.0.0.1:$BACKEND_PORT/"
preauth = "passthrough"

[[app]]
name = "bench-http"
external_url = "http://localhost:$POSTERN_HTTP/"
internal_url = "http://127.0.0.1:$BACKEND_PORT/"
preauth = "passthrough"
cookie = { secure = false }
CONF

# The same apps behind a second edge that relays through a connector.
sed -e "s|^admin_address = .*|admin_address = \"127.0.0.1:$((BASE_PORT + 10))\"\ntunnel_address = \"127.0.0.1:$TUNNEL_LISTENER\"|" \
    -e "s|^state_dir = .*|state_dir = \"$WORK/tstate\"|" \
    -e "s|127.0.0.1:$POSTERN_HTTPS\"|127.0.0.1:$TUNNEL_HTTPS\"|; s|localhost:$POSTERN_HTTPS/|localhost:$TUNNEL_HTTPS/|" \
    -e "s|127.0.0.1:$POSTERN_HTTP\"|127.0.0.1:$TUNNEL_HTTP\"|; s|localhost:$POSTERN_HTTP/|localhost:$TUNNEL_HTTP/|" \
    "$WORK/edge.toml" > "$WORK/tunnel-edge.toml"
printf '[connector]\nworkers = 1\n' > "$WORK/connector.toml"

taskset -c 1 "$NGINX" -p "$WORK" -c "$WORK/backend.conf" & PIDS+=($!)
taskset -c 0 "$NGINX" -p "$WORK" -c "$WORK/proxy.conf" & PIDS+=($!)
NGINX_MASTER=$!
POSTERN_LOG=warn taskset -c 0 "$POSTERN" edge --config "$WORK/edge.toml" > "$WORK/logs/postern.out" 2>&1 & PIDS+=($!)
POSTERN_PID=$!

for p in $BACKEND_PORT $NGINX_HTTP $NGINX_HTTPS $POSTERN_HTTP $POSTERN_HTTPS; do wait_port "$p"; done
NGINX_WORKER=$(pgrep -P "$NGINX_MASTER" | head -1)

POSTERN_LOG=warn taskset -c 0 "$POSTERN" edge --config "$WORK/tunnel-edge.toml" > "$WORK/logs/tunnel-edge.out" 2>&1 & PIDS+=($!)
TUNNEL_EDGE_PID=$!
for p in $TUNNEL_HTTP $TUNNEL_HTTPS $TUNNEL_LISTENER; do wait_port "$p"; done
TOKEN=$("$POSTERN" tokens --admin "127.0.0.1:$((BASE_PORT + 10))" --state-dir "$WORK/tstate" --json create --group default \
    | sed -n 's/.*"token": *"\([^"]*\)".*/\1/p')
"$POSTERN" connector register --edge "127.0.0.1:$TUNNEL_LISTENER" --token "$TOKEN" --state-dir "$WORK/connector" >/dev/null
POSTERN_LOG=warn taskset -c 0 "$POSTERN" connector --state-dir "$WORK/connector" --config "$WORK/connector.toml" \
    > "$WORK/logs/connector.out" 2>&1 & PIDS+=($!)
CONNECTOR_PID=$!
for _ in $(seq 1 100); do
    [ "$(curl -s -o /dev/null -w '%{http_code}' "http://localhost:$TUNNEL_HTTP/1k")" = 200 ] && break
    sleep 0.1
done

printf '\nPostern vs nginx %s, 1 KiB, %s connections, %ss per run, proxy on CPU 0\n\n' \
    "$("$NGINX" -v 2>&1 | sed 's/.*\///')" "$CONNS" "$DURATION"
printf '%-7s %-8s %12s %14s %10s %10s  %s\n' scheme proxy "req/s" "CPU-us/req" p50 p99 errors
echo "(tunnel: edge -> HTTP/2 tunnel -> connector, both on CPU 0, their CPU summed)"
for scheme in http https; do
    if [ $scheme = http ]; then nport=$NGINX_HTTP; pport=$POSTERN_HTTP; tport=$TUNNEL_HTTP
    else nport=$NGINX_HTTPS; pport=$POSTERN_HTTPS; tport=$TUNNEL_HTTPS; fi
    read -r n_rps n_cpu n_p50 n_p99 n_err < <(run "$scheme://localhost:$nport/1k" "$NGINX_WORKER")
    read -r p_rps p_cpu p_p50 p_p99 p_err < <(run "$scheme://localhost:$pport/1k" "$POSTERN_PID")
    read -r t_rps t_cpu t_p50 t_p99 t_err < <(run "$scheme://localhost:$tport/1k" "$TUNNEL_EDGE_PID $CONNECTOR_PID")
    printf '%-7s %-8s %12s %14s %10s %10s  %s\n' $scheme nginx "$n_rps" "$n_cpu" "$n_p50" "$n_p99" "$n_err"
    printf '%-7s %-8s %12s %14s %10s %10s  %s\n' $scheme postern "$p_rps" "$p_cpu" "$p_p50" "$p_p99" "$p_err"
    printf '%-7s %-8s %12s %14s %10s %10s  %s\n' $scheme tunnel "$t_rps" "$t_cpu" "$t_p50" "$t_p99" "$t_err"
    awk -v pc="$p_cpu" -v nc="$n_cpu" -v pr="$p_rps" -v nr="$n_rps" -v s=$scheme \
        'BEGIN {printf "%-7s ratio postern/nginx: CPU per request %.2fx, throughput %.2fx\n", s, pc/nc, pr/nr}'
    awk -v pc="$t_cpu" -v nc="$n_cpu" -v pr="$t_rps" -v nr="$n_rps" -v s=$scheme \
        'BEGIN {printf "%-7s ratio tunnel (edge+connector)/nginx: CPU per request %.2fx, throughput %.2fx\n\n", s, pc/nc, pr/nr}'
    eval "with_counters_$scheme=$p_cpu"
done

# Throughput of the tunnel path on both cores (Entra application proxy
# publishes 586 req/s for a 2-core connector): edge and connector each get
# two workers, nothing is pinned, and wrk and the backend share the same
# two cores, so this is a lower bound for a machine of its own.
sed -e "s|^workers = 1|workers = 2|" -e "s|^pin_workers = true|pin_workers = false|" \
    -e "s|$((BASE_PORT + 10))|$((BASE_PORT + 11))|" -e "s|$TUNNEL_LISTENER|$((BASE_PORT + 12))|" \
    -e "s|$TUNNEL_HTTPS|$((BASE_PORT + 13))|g" -e "s|$TUNNEL_HTTP|$((BASE_PORT + 14))|g" \
    -e "s|$WORK/tstate|$WORK/tstate2|" "$WORK/tunnel-edge.toml" > "$WORK/tunnel-edge2.toml"
printf '[connector]\nworkers = 2\n' > "$WORK/connector2.toml"
POSTERN_LOG=warn "$POSTERN" edge --config "$WORK/tunnel-edge2.toml" > "$WORK/logs/tunnel-edge2.out" 2>&1 & PIDS+=($!)
EDGE2_PID=$!
for p in $((BASE_PORT + 12)) $((BASE_PORT + 13)) $((BASE_PORT + 14)); do wait_port "$p"; done
TOKEN=$("$POSTERN" tokens --admin "127.0.0.1:$((BASE_PORT + 11))" --state-dir "$WORK/tstate2" --json create --group default \
    | sed -n 's/.*"token": *"\([^"]*\)".*/\1/p')
"$POSTERN" connector register --edge "127.0.0.1:$((BASE_PORT + 12))" --token "$TOKEN" --state-dir "$WORK/connector2" >/dev/null
POSTERN_LOG=warn "$POSTERN" connector --state-dir "$WORK/connector2" --config "$WORK/connector2.toml" \
    > "$WORK/logs/connector2.out" 2>&1 & PIDS+=($!)
CONNECTOR2_PID=$!
sleep 2
printf 'tunnel path on 2 cores (edge 2 workers + connector 2 workers, unpinned, sharing the cores with wrk and the backend)\n'
for scheme in http https; do
    if [ $scheme = http ]; then tport=$((BASE_PORT + 14)); else tport=$((BASE_PORT + 13)); fi
    wrk -t2 -c64 -d1s "$scheme://localhost:$tport/1k" >/dev/null 2>&1 || true
    out=$(wrk -t2 -c64 -d"${DURATION}s" --latency "$scheme://localhost:$tport/1k")
    rps=$(echo "$out" | awk '/Requests\/sec/ {print $2}')
    p99=$(echo "$out" | awk '$1=="99%" {print $2}')
    errs=$(echo "$out" | awk '/Non-2xx|Socket errors/ {s=s $0 "; "} END {print (s=="" ? "0" : s)}')
    awk -v r="$rps" -v s=$scheme -v p="$p99" -v e="$errs" \
        'BEGIN {printf "%-7s %10.0f req/s (%.0fx the 586 req/s of a 2-core Entra connector), p99 %s, errors %s\n", s, r, r/586, p, e}'
done
kill "$EDGE2_PID" "$CONNECTOR2_PID" 2>/dev/null || true
echo

if [ "${BENCH_NO_COUNTERS:-0}" = 1 ]; then
    cargo build --release --quiet -p postern-dataplane --no-default-features --target-dir target/bench-no-counters
    kill "$POSTERN_PID"; wait "$POSTERN_PID" 2>/dev/null || true
    sleep 0.5
    POSTERN_LOG=warn taskset -c 0 target/bench-no-counters/release/postern edge --config "$WORK/edge.toml" \
        > "$WORK/logs/postern-nc.out" 2>&1 & PIDS+=($!)
    POSTERN_PID=$!
    wait_port "$POSTERN_HTTP"; wait_port "$POSTERN_HTTPS"
    printf 'counter cost (same run): postern with and without counters\n'
    for scheme in http https; do
        if [ $scheme = http ]; then pport=$POSTERN_HTTP; else pport=$POSTERN_HTTPS; fi
        read -r p_rps p_cpu _ _ _ < <(run "$scheme://localhost:$pport/1k" "$POSTERN_PID")
        with=$(eval echo "\$with_counters_$scheme")
        awk -v w="$with" -v wo="$p_cpu" -v s=$scheme \
            'BEGIN {printf "%-7s CPU-us/req with counters %.2f, without %.2f, difference %.2f\n", s, w, wo, w-wo}'
    done
fi
