#!/usr/bin/env bash
# Link translation side by side: the CPU each proxy adds to
# translate a 256 KiB HTML page holding one internal link per ~1 KiB.
#
#   nginx:   proxy_pass with no sub_filter, with 1 rule, with 101 rules
#            (sub_filter_once off, Accept-Encoding "" so the body is plain)
#   Postern: the same page with translate_body off, on with 1 published
#            app, on with 101 published apps
#
# Everything is HTTPS (TLS 1.3, ECDSA P-256) with keep-alive to the backend.
# The proxy under test is pinned to CPU 0; wrk and the nginx backend to
# CPU 1. Cost is proxy CPU per request (postern-cpu); "added" is the cost
# with translation minus the cost without it, from the same run. Then the
# rewriter alone (postern-translate-bench), pinned to CPU 0.
#
# Each case runs ROUNDS times (default 5), the cases interleaved so drift
# on a shared machine hits them alike. Each round gives its own added CPU
# (with minus without translation, measured back to back) and throughput
# ratio; the summary is the median over rounds of those paired figures,
# which cancels most of the machine's drift.
#
# Usage: scripts/bench-translate.sh [DURATION_SECONDS] [CONNECTIONS] [ROUNDS]
#   BENCH_PROFILE=N: instead, load the Postern edge with N apps (1 or 101)
#   for DURATION seconds and record it with `perf record` into
#   /tmp/postern-translate.perf (`perf report -i` it).
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${1:-5}
CONNS=${2:-16}
ROUNDS=${3:-5}
BASE_PORT=${BENCH_BASE_PORT:-18200}
BACKEND=$((BASE_PORT + 1))
N0=$((BASE_PORT + 2)); N1=$((BASE_PORT + 3)); N101=$((BASE_PORT + 4))
P0=$((BASE_PORT + 5)); P1=$((BASE_PORT + 6)); P101=$((BASE_PORT + 7))

# shellcheck source=scripts/bench-common.sh
. scripts/bench-common.sh

target/release/postern-translate-bench --write-page "$WORK/www/page.html" "http://127.0.0.1:$BACKEND/"
make_cert localhost '*.example.com'

write_backend_conf "$BACKEND"

# nginx: one server per rule count, the 100 extra rules for other apps'
# internal hosts (app<N>.corp), as 100 more published apps would need.
rules_for() {
    local port=$1 n=$2
    [ "$n" -ge 1 ] && echo "sub_filter 'http://127.0.0.1:$BACKEND/' 'https://localhost:$port/';"
    for k in $(seq 1 $((n - 1))); do
        echo "sub_filter 'http://app$k.corp/' 'https://app$k.example.com/';"
    done
    return 0
}
{
    cat <<CONF
$USER_LINE
worker_processes 1;
daemon off;
pid $WORK/proxy.pid;
error_log $WORK/logs/proxy.err warn;
events { worker_connections 4096; }
http {
    access_log off;
    keepalive_requests 10000000;
    upstream backend { server 127.0.0.1:$BACKEND; keepalive 64; }
    ssl_certificate $WORK/cert.pem;
    ssl_certificate_key $WORK/key.pem;
    ssl_protocols TLSv1.2 TLSv1.3;
    proxy_http_version 1.1;
    proxy_set_header Connection "";
    proxy_set_header Accept-Encoding "";
    sub_filter_once off;
CONF
    for pair in "$N0 0" "$N1 1" "$N101 101"; do
        set -- $pair
        echo "    server { listen 127.0.0.1:$1 ssl; location / { proxy_pass http://backend;"
        rules_for "$1" "$2" | sed 's/^/        /'
        echo "    } }"
    done
    echo "}"
} > "$WORK/proxy.conf"

# Postern: one edge per case, each with a single worker pinned to CPU 0.
edge_config() {
    local port=$1 apps=$2 translate=$3 admin=$4
    cat <<CONF
[edge]
workers = 1
pin_workers = true
access_log = "off"
admin_address = "127.0.0.1:$admin"
state_dir = "$WORK/state-$port"

[[listener]]
address = "127.0.0.1:$port"
scheme = "https"

[[certificate]]
cert_file = "$WORK/cert.pem"
key_file = "$WORK/key.pem"

[[app]]
name = "page"
external_url = "https://localhost:$port/"
internal_url = "http://127.0.0.1:$BACKEND/"
preauth = "passthrough"
translate_body = $translate
CONF
    for k in $(seq 1 $((apps - 1))); do
        printf '\n[[app]]\nname = "app%s"\nexternal_url = "https://app%s.example.com:%s/"\ninternal_url = "http://app%s.corp/"\npreauth = "passthrough"\n' \
            "$k" "$k" "$port" "$k"
    done
}
edge_config $P0 101 false $((BASE_PORT + 10)) > "$WORK/edge0.toml"
edge_config $P1 1 true $((BASE_PORT + 11)) > "$WORK/edge1.toml"
edge_config $P101 101 true $((BASE_PORT + 12)) > "$WORK/edge101.toml"

taskset -c 1 "$NGINX" -p "$WORK" -c "$WORK/backend.conf" & PIDS+=($!)
taskset -c 0 "$NGINX" -p "$WORK" -c "$WORK/proxy.conf" & PIDS+=($!)
NGINX_MASTER=$!
declare -A EDGE
for n in 0 1 101; do
    POSTERN_LOG=warn taskset -c 0 "$POSTERN" edge --config "$WORK/edge$n.toml" > "$WORK/logs/edge$n.out" 2>&1 & PIDS+=($!)
    EDGE[$n]=$!
done
for p in $BACKEND $N0 $N1 $N101 $P0 $P1 $P101; do wait_port "$p"; done
NGINX_WORKER=$(pgrep -P "$NGINX_MASTER" | head -1)

# Both proxies must really translate, and the same links.
for port in $N101 $P101; do
    body=$(curl -sk "https://localhost:$port/page.html")
    left=$(grep -c "http://127.0.0.1:$BACKEND/" <<<"$body" || true)
    done_=$(grep -o "https://localhost:$port/" <<<"$body" | wc -l)
    if [ "$left" != 0 ] || [ "$done_" -lt 200 ]; then
        echo "port $port: $left internal links left, $done_ translated" >&2; exit 1
    fi
done

if [ -n "${BENCH_PROFILE:-}" ]; then
    port=$P1; [ "$BENCH_PROFILE" = 101 ] && port=$P101
    taskset -c 1 wrk -t1 -c"$CONNS" -d"$((DURATION + 2))s" "https://localhost:$port/page.html" >/dev/null &
    load=$!
    sleep 1
    perf record -e cpu-clock -g -p "${EDGE[$BENCH_PROFILE]}" -o /tmp/postern-translate.perf -- sleep "$DURATION"
    wait "$load"
    exit 0
fi

size=$(stat -c %s "$WORK/www/page.html")
printf '\nLink translation, %s-byte page over HTTPS, %s connections, %ss per run, median of %s rounds, proxy on CPU 0\n\n' \
    "$size" "$CONNS" "$DURATION" "$ROUNDS"
CASES=("nginx, no sub_filter|$N0|$NGINX_WORKER" "nginx, 1 rule|$N1|$NGINX_WORKER" "nginx, 101 rules|$N101|$NGINX_WORKER"
       "postern, translation off|$P0|${EDGE[0]}" "postern, 1 app|$P1|${EDGE[1]}" "postern, 101 apps|$P101|${EDGE[101]}")
declare -A ALL
for round in $(seq 1 "$ROUNDS"); do
    for c in "${CASES[@]}"; do
        IFS='|' read -r name port pid <<<"$c"
        ALL[$name]+="$(run "https://localhost:$port/page.html" "$pid")"$'\n'
    done
    echo "round $round of $ROUNDS done" >&2
done
declare -A RPS CPUS
printf '%-28s %10s %12s %10s %10s  %s\n' case "req/s" "CPU-us/req" p50 p99 errors
for c in "${CASES[@]}"; do
    IFS='|' read -r name _ _ <<<"$c"
    rows=${ALL[$name]}
    RPS[$name]=$(awk 'NF {print $1}' <<<"$rows" | median)
    CPUS[$name]=$(awk 'NF {print $2}' <<<"$rows" | median)
    p50=$(awk 'NF {print $3}' <<<"$rows" | sed 's/ms$//' | median)
    p99=$(awk 'NF {print $4}' <<<"$rows" | sed 's/ms$//' | median)
    errs=$(awk 'NF {$1=$2=$3=$4=""; print}' <<<"$rows" | sort -u | tr '\n' ' ')
    printf '%-28s %10s %12s %9sms %9sms  %s\n' "$name" "${RPS[$name]}" "${CPUS[$name]}" "$p50" "$p99" "$errs"
done
# Paired figures, round by round: column k of each case's rows.
col() { awk -v k="$2" 'NF {print $k}' <<<"${ALL[$1]}"; }
paired() {   # paired OP A B: per-round values of A op B, one per line
    paste <(col "$2" "$4") <(col "$3" "$4") | awk -v op="$1" '{print (op=="-" ? $1-$2 : $1/$2)}'
}
printf '\nper round, CPU-us added by translation (with - without):\n'
for pair in "nginx, 1 rule|nginx, no sub_filter" "nginx, 101 rules|nginx, no sub_filter" \
            "postern, 1 app|postern, translation off" "postern, 101 apps|postern, translation off"; do
    IFS='|' read -r a b <<<"$pair"
    printf '  %-22s %s\n' "$a" "$(paired - "$a" "$b" 2 | awk '{printf "%.1f ", $1}')"
done
n1=$(paired - "nginx, 1 rule" "nginx, no sub_filter" 2 | median)
n101=$(paired - "nginx, 101 rules" "nginx, no sub_filter" 2 | median)
p1=$(paired - "postern, 1 app" "postern, translation off" 2 | median)
p101=$(paired - "postern, 101 apps" "postern, translation off" 2 | median)
t101=$(paired / "postern, 101 apps" "postern, translation off" 1 | median)
t1=$(paired / "postern, 1 app" "postern, translation off" 1 | median)
echo
awk -v n1="$n1" -v n101="$n101" -v p1="$p1" -v p101="$p101" -v t1="$t1" -v t101="$t101" 'BEGIN {
    printf "CPU-us added by translation (median of rounds): nginx 1 rule %.1f, 101 rules %.1f; postern 1 app %.1f, 101 apps %.1f\n",
        n1, n101, p1, p101
    printf "postern/nginx added CPU: 1 app vs 1 rule %.2fx, 101 apps vs 101 rules %.2fx\n", p1/n1, p101/n101
    printf "postern throughput with translation on / off (median of rounds): 1 app %.2fx, 101 apps %.2fx\n", t1, t101
}'
echo
taskset -c 0 target/release/postern-translate-bench 1.5
