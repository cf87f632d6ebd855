#!/usr/bin/env bash
# Side-by-side proxy benchmark: Postern edge vs nginx proxying the
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
# Beside them runs the floor: postern-floor (perf/), a relay built from
# Postern's own io_uring and TLS layers that copies bytes between each
# client connection and one kept-alive backend connection, with no HTTP
# processing. Our stack cannot go below it; every report gives the ratio.
#
# Machines here are shared and noisy, so every proxy is measured once per
# round, in alternating order, for ROUNDS rounds; the report gives each
# figure's median over the rounds, and each ratio as the median of the
# per-round ratios (each taken within one round).
#
# Usage: scripts/bench-proxy.sh [DURATION_SECONDS] [CONNECTIONS] [ROUNDS]
#   BENCH_NO_COUNTERS=1 also runs a build without counters (cargo feature
#   `counters` off) to show what counting costs per request.
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${1:-10}
CONNS=${2:-32}
ROUNDS=${3:-5}
BASE_PORT=${BENCH_BASE_PORT:-18000}
BACKEND_PORT=$((BASE_PORT + 1))
NGINX_HTTP=$((BASE_PORT + 2))
NGINX_HTTPS=$((BASE_PORT + 3))
POSTERN_HTTP=$((BASE_PORT + 4))
POSTERN_HTTPS=$((BASE_PORT + 5))
TUNNEL_HTTP=$((BASE_PORT + 6))
TUNNEL_HTTPS=$((BASE_PORT + 7))
TUNNEL_LISTENER=$((BASE_PORT + 8))
FLOOR_HTTP=$((BASE_PORT + 15))
FLOOR_HTTPS=$((BASE_PORT + 16))

# shellcheck source=scripts/bench-common.sh
. scripts/bench-common.sh

# Content: a 1 KiB file of base64 text.
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

write_edge_conf "$WORK/edge.toml" "$POSTERN_HTTP" "$POSTERN_HTTPS" "$((BASE_PORT + 9))" "$BACKEND_PORT" true

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
start_connector "$((BASE_PORT + 10))" "$WORK/tstate" "$TUNNEL_LISTENER" connector 0
for _ in $(seq 1 100); do
    [ "$(curl -s -o /dev/null -w '%{http_code}' "http://localhost:$TUNNEL_HTTP/1k")" = 200 ] && break
    sleep 0.1
done

taskset -c 0 target/release/postern-floor "127.0.0.1:$BACKEND_PORT" "127.0.0.1:$FLOOR_HTTP" \
    "127.0.0.1:$FLOOR_HTTPS" "$WORK/cert.pem" "$WORK/key.pem" > "$WORK/logs/floor.out" 2>&1 & PIDS+=($!)
FLOOR_PID=$!
wait_port "$FLOOR_HTTP"; wait_port "$FLOOR_HTTPS"

printf '\nPostern vs nginx %s, 1 KiB, %s connections, %ss per run, %s rounds, proxy on CPU 0\n' \
    "$("$NGINX" -v 2>&1 | sed 's/.*\///')" "$CONNS" "$DURATION" "$ROUNDS"
echo "(tunnel: edge -> HTTP/2 tunnel -> connector, both on CPU 0, their CPU summed;"
echo " floor: postern-floor, a byte relay on Postern's I/O and TLS layers, no HTTP)"
RESULTS="$WORK/results"
: > "$RESULTS"
printf '\n%-5s %-7s %-8s %12s %12s %10s %10s  %s\n' round scheme proxy "req/s" "CPU-us/req" p50 p99 errors
for round in $(seq 1 "$ROUNDS"); do
    for scheme in http https; do
        if [ $scheme = http ]; then
            ports="nginx:$NGINX_HTTP postern:$POSTERN_HTTP tunnel:$TUNNEL_HTTP floor:$FLOOR_HTTP"
        else
            ports="nginx:$NGINX_HTTPS postern:$POSTERN_HTTPS tunnel:$TUNNEL_HTTPS floor:$FLOOR_HTTPS"
        fi
        # Alternate the order: odd rounds forwards, even rounds backwards.
        [ $((round % 2)) = 0 ] && ports=$(echo "$ports" | tr ' ' '\n' | tac | tr '\n' ' ')
        for entry in $ports; do
            proxy=${entry%%:*}; port=${entry##*:}
            case $proxy in
                nginx) pids=$NGINX_WORKER ;;
                postern) pids=$POSTERN_PID ;;
                tunnel) pids="$TUNNEL_EDGE_PID $CONNECTOR_PID" ;;
                floor) pids=$FLOOR_PID ;;
            esac
            read -r rps cpu p50 p99 err < <(run "$scheme://localhost:$port/1k" "$pids")
            printf '%-5s %-7s %-8s %12s %12s %10s %10s  %s\n' "$round" $scheme $proxy "$rps" "$cpu" "$p50" "$p99" "$err"
            echo "$round $scheme $proxy $rps $cpu $(to_us "$p50") $(to_us "$p99")" >> "$RESULTS"
        done
    done
done

# Medians over the rounds, and per-round ratios' medians.
field() { awk -v s="$1" -v p="$2" -v f="$3" '$2==s && $3==p {print $f}' "$RESULTS"; }
ratio() { # scheme proxy peer field: median over rounds of proxy/peer
    awk -v s="$1" -v p="$2" -v q="$3" -v f="$4" '$2==s && $3==p {a[$1]=$f} $2==s && $3==q {b[$1]=$f}
        END {for (r in a) if (b[r] > 0) print a[r]/b[r]}' "$RESULTS" | median
}
printf '\nmedians over %s rounds\n' "$ROUNDS"
printf '%-7s %-8s %12s %12s %10s %10s\n' scheme proxy "req/s" "CPU-us/req" "p50 us" "p99 us"
for scheme in http https; do
    for proxy in nginx postern tunnel floor; do
        printf '%-7s %-8s %12.0f %12.2f %10.0f %10.0f\n' $scheme $proxy \
            "$(field $scheme $proxy 4 | median)" "$(field $scheme $proxy 5 | median)" \
            "$(field $scheme $proxy 6 | median)" "$(field $scheme $proxy 7 | median)"
    done
done
printf '\nratios (median of per-round ratios)      CPU/request  throughput  p99\n'
for scheme in http https; do
    for pair in "postern nginx" "tunnel nginx" "floor nginx" "postern floor" "tunnel floor"; do
        set -- $pair
        printf '%-7s %-8s / %-8s              %8.2fx   %8.2fx   %6.2fx\n' $scheme "$1" "$2" \
            "$(ratio $scheme "$1" "$2" 5)" "$(ratio $scheme "$1" "$2" 4)" "$(ratio $scheme "$1" "$2" 7)"
    done
    eval "with_counters_$scheme=$(field $scheme postern 5 | median)"
done
echo

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
start_connector "$((BASE_PORT + 11))" "$WORK/tstate2" "$((BASE_PORT + 12))" connector2
CONNECTOR2_PID=$CONNECTOR_PID
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
