#!/usr/bin/env bash
# HTTP/2 towards clients, side by side with nginx (`http2` on its TLS
# listener): h2load drives each proxy over TLS with ALPN h2, to the same
# nginx backend over HTTP/1.1 keep-alive, with 1 KiB and 64 KiB responses,
# as 1 connection x 64 streams and 16 connections x 16 streams. One proxy
# worker pinned to CPU 0; h2load and the backend on CPU 1. Each round runs
# every scenario on both proxies, alternating which goes first; the report
# gives medians over rounds, and each ratio as the median of the per-round
# ratios (Postern / nginx: above 1 is better for req/s, below 1 for CPU).
#
# Usage: scripts/bench-h2.sh [DURATION_SECONDS] [ROUNDS]
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${1:-5}
ROUNDS=${2:-5}
BASE_PORT=${BENCH_BASE_PORT:-18400}
BACKEND_PORT=$((BASE_PORT + 1))
EDGE_HTTP=$((BASE_PORT + 2))
EDGE_HTTPS=$((BASE_PORT + 3))
ADMIN_PORT=$((BASE_PORT + 4))
NGINX_PORT=$((BASE_PORT + 5))

CONNS=1 # bench-common's `run` (wrk) is not used here
# shellcheck source=scripts/bench-common.sh
. scripts/bench-common.sh
need_commands h2load=nghttp2-client

head -c 768 /dev/urandom | base64 -w 0 | head -c 1024 > "$WORK/www/1k"
head -c 49152 /dev/urandom | base64 -w 0 | head -c 65536 > "$WORK/www/64k"
make_cert localhost
write_backend_conf "$BACKEND_PORT"
write_edge_conf "$WORK/edge.toml" "$EDGE_HTTP" "$EDGE_HTTPS" "$ADMIN_PORT" "$BACKEND_PORT" true

# nginx with HTTP/2 on its TLS listener, one worker; h2load counts the
# GOAWAY nginx sends after keepalive_requests as failures, so that is
# raised, and its stream limit matches the edge's (100 streams).
write_nginx_tls_proxy "$WORK/nginx-h2.conf" "$NGINX_PORT" "$BACKEND_PORT" 1 8192 4096 http2 \
    "keepalive_requests 10000000; http2_max_concurrent_streams 100;"

taskset -c 1 "$NGINX" -c "$WORK/backend.conf" & PIDS+=($!)
wait_port "$BACKEND_PORT"
taskset -c 0 "$NGINX" -c "$WORK/nginx-h2.conf" & PIDS+=($!)
NGINX_PID=$!
wait_port "$NGINX_PORT"
"$POSTERN" edge --config "$WORK/edge.toml" > "$WORK/logs/edge.log" 2>&1 & PIDS+=($!)
EDGE_PID=$!
wait_port "$EDGE_HTTPS"
NGINX_WORKER=$(pgrep -P "$NGINX_PID" | head -1)

# h2load_run URL PID CONNS STREAMS: prints "rps cpu_us_per_req mean_ms failed".
h2load_run() {
    local url=$1 pid=$2 c=$3 m=$4
    taskset -c 1 h2load -t1 -c"$c" -m"$m" -D1 "$url" >/dev/null 2>&1 || true # warm-up
    local before after out
    before=$("$CPU" "$pid")
    out=$(taskset -c 1 h2load -t1 -c"$c" -m"$m" -D"$DURATION" "$url" 2>&1)
    after=$("$CPU" "$pid")
    local done rps failed mean
    done=$(echo "$out" | awk '/^requests:/ {print $8}')
    failed=$(echo "$out" | awk '/^requests:/ {print $10 + $12}')
    rps=$(echo "$out" | awk '/^finished in/ {gsub(",", "", $4); print $4}')
    mean=$(echo "$out" | awk '/^time for request:/ {print $6}')
    local cpu_per
    cpu_per=$(awk -v a="$after" -v b="$before" -v n="${done:-0}" 'BEGIN {printf "%.2f", (n > 0 ? (a-b)/n : 0)}')
    echo "${rps:-0} $cpu_per ${mean:-?} ${failed:-?}"
}

SCENARIOS=("1k 1 64" "1k 16 16" "64k 1 64" "64k 16 16")
declare -A R
for round in $(seq 1 "$ROUNDS"); do
    for sc in "${SCENARIOS[@]}"; do
        read -r size c m <<< "$sc"
        order=(postern nginx)
        [ $((round % 2)) -eq 0 ] && order=(nginx postern)
        for who in "${order[@]}"; do
            if [ "$who" = postern ]; then
                res=$(h2load_run "https://localhost:$EDGE_HTTPS/$size" "$EDGE_PID" "$c" "$m")
            else
                res=$(h2load_run "https://localhost:$NGINX_PORT/$size" "$NGINX_WORKER" "$c" "$m")
            fi
            R["$round $sc $who"]=$res
            echo "round $round  $size ${c}x${m}  $who: $res" >&2
        done
    done
done

echo
echo "HTTP/2 over TLS, h2load -t1; medians of $ROUNDS rounds of ${DURATION} s; one worker each on CPU 0"
printf '%-12s %14s %14s %10s %14s %14s %10s %8s\n' scenario "postern req/s" "nginx req/s" "ratio" "postern us/req" "nginx us/req" "ratio" failed
for sc in "${SCENARIOS[@]}"; do
    read -r size c m <<< "$sc"
    p_rps=(); n_rps=(); p_cpu=(); n_cpu=(); r_rps=(); r_cpu=(); fails=0
    for round in $(seq 1 "$ROUNDS"); do
        read -r prps pcpu _ pf <<< "${R["$round $sc postern"]}"
        read -r nrps ncpu _ nf <<< "${R["$round $sc nginx"]}"
        p_rps+=("$prps"); n_rps+=("$nrps"); p_cpu+=("$pcpu"); n_cpu+=("$ncpu")
        r_rps+=("$(awk -v a="$prps" -v b="$nrps" 'BEGIN {printf "%.3f", (b > 0 ? a/b : 0)}')")
        r_cpu+=("$(awk -v a="$pcpu" -v b="$ncpu" 'BEGIN {printf "%.3f", (b > 0 ? a/b : 0)}')")
        fails=$((fails + ${pf:-0} + ${nf:-0}))
    done
    printf '%-12s %14s %14s %9sx %14s %14s %9sx %8s\n' "$size ${c}x${m}" \
        "$(printf '%s\n' "${p_rps[@]}" | median)" "$(printf '%s\n' "${n_rps[@]}" | median)" \
        "$(printf '%s\n' "${r_rps[@]}" | median)" \
        "$(printf '%s\n' "${p_cpu[@]}" | median)" "$(printf '%s\n' "${n_cpu[@]}" | median)" \
        "$(printf '%s\n' "${r_cpu[@]}" | median)" "$fails"
done
