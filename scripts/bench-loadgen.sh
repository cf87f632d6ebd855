#!/usr/bin/env bash
# postern-load beside the generators it must match: wrk for HTTP/1.1
# keep-alive (plain and TLS, 32 connections) and h2load for HTTP/2 over TLS
# (1 connection x 64 streams, 16 x 16), each on one thread pinned to CPU 1,
# against the same nginx serving a 1 KiB file on CPU 0. Each round runs
# every scenario with both generators, alternating which goes first; the
# report gives medians over rounds of the requests per second each
# generator reached and of its own CPU time per request (user + system),
# and each ratio as the median of the per-round ratios (postern-load /
# peer: above 1 is better for req/s, below 1 for CPU), plus how far apart
# the two generators' latency medians are.
#
# Usage: scripts/bench-loadgen.sh [DURATION_SECONDS] [ROUNDS]
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${1:-5}
ROUNDS=${2:-5}
BASE_PORT=${BENCH_BASE_PORT:-18500}
PLAIN_PORT=$((BASE_PORT + 1))
TLS_PORT=$((BASE_PORT + 2))

CONNS=1 # bench-common's `run` (wrk) is not used here
# shellcheck source=scripts/bench-common.sh
. scripts/bench-common.sh
need_commands h2load=nghttp2-client
LOAD=target/release/postern-load

head -c 768 /dev/urandom | base64 -w 0 | head -c 1024 > "$WORK/www/1k"
make_cert localhost
cat > "$WORK/server.conf" <<CONF
$USER_LINE
worker_processes 1;
daemon off;
pid $WORK/server.pid;
error_log $WORK/logs/server.err warn;
events { worker_connections 4096; }
http {
    access_log off;
    keepalive_requests 10000000;
    http2_max_concurrent_streams 128;
    server { listen 127.0.0.1:$PLAIN_PORT; root $WORK/www; }
    server {
        listen 127.0.0.1:$TLS_PORT ssl http2;
        ssl_certificate $WORK/cert.pem;
        ssl_certificate_key $WORK/key.pem;
        root $WORK/www;
    }
}
CONF
taskset -c 0 "$NGINX" -c "$WORK/server.conf" & PIDS+=($!)
wait_port "$PLAIN_PORT"
wait_port "$TLS_PORT"

# timed CMD...: runs CMD on CPU 1; its output goes to $WORK/out, and
# "user+system seconds" to stdout.
timed() {
    local TIMEFORMAT='%U %S'
    { time taskset -c 1 "$@" > "$WORK/out" 2>&1; } 2> "$WORK/time"
    awk '{print $1 + $2}' "$WORK/time"
}

# One generator on one scenario: prints "rps cpu_us_per_req p50_us".
measure() {
    local who=$1 sc=$2 cpu n rps p50
    local url_plain="http://127.0.0.1:$PLAIN_PORT/1k" url_tls="https://localhost:$TLS_PORT/1k"
    case "$who $sc" in
        "postern-load h1") cpu=$(timed "$LOAD" -t1 -c32 -d"$DURATION" --json "$WORK/r.json" "$url_plain") ;;
        "postern-load h1-tls") cpu=$(timed "$LOAD" -t1 -c32 -d"$DURATION" --json "$WORK/r.json" "$url_tls") ;;
        "postern-load h2-1x64") cpu=$(timed "$LOAD" --http2 -t1 -c1 -m64 -d"$DURATION" --json "$WORK/r.json" "$url_tls") ;;
        "postern-load h2-16x16") cpu=$(timed "$LOAD" --http2 -t1 -c16 -m16 -d"$DURATION" --json "$WORK/r.json" "$url_tls") ;;
        "peer h1") cpu=$(timed wrk -t1 -c32 -d"${DURATION}s" --latency "$url_plain") ;;
        "peer h1-tls") cpu=$(timed wrk -t1 -c32 -d"${DURATION}s" --latency "$url_tls") ;;
        "peer h2-1x64") cpu=$(timed h2load -t1 -c1 -m64 -D"$DURATION" "$url_tls") ;;
        "peer h2-16x16") cpu=$(timed h2load -t1 -c16 -m16 -D"$DURATION" "$url_tls") ;;
    esac
    if [ "$who" = postern-load ]; then
        n=$(sed -n 's/^  "requests": \([0-9]*\),$/\1/p' "$WORK/r.json")
        rps=$(sed -n 's/^  "rps": \([0-9.e+]*\),$/\1/p' "$WORK/r.json")
        p50=$(sed -n 's/^    "p50": \([0-9]*\),$/\1/p' "$WORK/r.json")
    elif [ "${sc#h2}" != "$sc" ]; then
        n=$(awk '/^requests:/ {print $8}' "$WORK/out")
        rps=$(awk '/^finished in/ {gsub(",", "", $4); print $4}' "$WORK/out")
        # h2load's "time for request" line: min max mean sd; its median is
        # not printed, so the mean stands in.
        p50=$(to_us "$(awk '/^time for request:/ {print $6}' "$WORK/out")")
    else
        n=$(awk '/requests in/ {print $1}' "$WORK/out")
        rps=$(awk '/Requests\/sec/ {print $2}' "$WORK/out")
        p50=$(to_us "$(awk '$1=="50%" {print $2}' "$WORK/out")")
    fi
    awk -v c="$cpu" -v n="${n:-0}" -v r="${rps:-0}" -v p="${p50:-0}" \
        'BEGIN {printf "%s %.2f %s\n", r, (n > 0 ? c * 1e6 / n : 0), p}'
}

SCENARIOS=(h1 h1-tls h2-1x64 h2-16x16)
declare -A R
for round in $(seq 1 "$ROUNDS"); do
    for sc in "${SCENARIOS[@]}"; do
        order=(postern-load peer)
        [ $((round % 2)) -eq 0 ] && order=(peer postern-load)
        for who in "${order[@]}"; do
            R["$round $sc $who"]=$(measure "$who" "$sc")
            echo "round $round  $sc  $who: ${R["$round $sc $who"]}" >&2
        done
    done
done

echo
echo "postern-load beside wrk (HTTP/1.1) and h2load (HTTP/2), one thread each on CPU 1; nginx (1 KiB file) on CPU 0"
echo "medians of $ROUNDS rounds of ${DURATION} s; ratios are postern-load / peer"
printf '%-10s %-7s %12s %12s %8s %12s %12s %8s %9s\n' scenario peer "load req/s" "peer req/s" ratio "load us/req" "peer us/req" ratio "p50 ratio"
for sc in "${SCENARIOS[@]}"; do
    peer=wrk; [ "${sc#h2}" != "$sc" ] && peer=h2load
    a_rps=(); b_rps=(); a_cpu=(); b_cpu=(); r_rps=(); r_cpu=(); r_lat=()
    for round in $(seq 1 "$ROUNDS"); do
        read -r ar ac al <<< "${R["$round $sc postern-load"]}"
        read -r br bc bl <<< "${R["$round $sc peer"]}"
        a_rps+=("$ar"); b_rps+=("$br"); a_cpu+=("$ac"); b_cpu+=("$bc")
        r_rps+=("$(awk -v a="$ar" -v b="$br" 'BEGIN {printf "%.3f", (b > 0 ? a/b : 0)}')")
        r_cpu+=("$(awk -v a="$ac" -v b="$bc" 'BEGIN {printf "%.3f", (b > 0 ? a/b : 0)}')")
        r_lat+=("$(awk -v a="$al" -v b="$bl" 'BEGIN {printf "%.3f", (b > 0 ? a/b : 0)}')")
    done
    printf '%-10s %-7s %12s %12s %7sx %12s %12s %7sx %8sx\n' "$sc" "$peer" \
        "$(printf '%s\n' "${a_rps[@]}" | median)" "$(printf '%s\n' "${b_rps[@]}" | median)" \
        "$(printf '%s\n' "${r_rps[@]}" | median)" \
        "$(printf '%s\n' "${a_cpu[@]}" | median)" "$(printf '%s\n' "${b_cpu[@]}" | median)" \
        "$(printf '%s\n' "${r_cpu[@]}" | median)" "$(printf '%s\n' "${r_lat[@]}" | median)"
done
