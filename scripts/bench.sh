#!/usr/bin/env bash
# The side-by-side benchmark suite: Postern beside nginx and HAProxy (each
# one worker or thread, pinned to CPU 0) in front of the same nginx static
# backend; postern-load drives them from CPU 1, where the backend also
# runs. Scenarios:
#   a  1 KiB HTTP/1.1 keep-alive over HTTP and HTTPS (and the floor relay)
#   b  body sizes from 512 B to 1 MiB over HTTPS
#   c  TLS handshakes per second, full and resumed (a connection per request)
#   d  the tunnel path (edge + connector, their CPU summed) beside the
#      direct path and the peers
#   e  a 256 KiB page with link translation for 1 and 100 apps, beside
#      nginx sub_filter with 1 and 101 rules
#   f  memory per idle keep-alive TLS connection (10,000 of them)
#   g  latency under open-loop load at 50% and 80% of each proxy's own
#      maximum (from a), and at 80% of the lowest maximum for all
#   h  HTTP/2 over TLS, 1 connection x 64 streams and 16 x 16
#   i  a pre-authenticated app (session cookie) beside passthrough
# Every scenario runs ROUNDS rounds, the proxies in a different order each
# round; each figure is the median over rounds, and each ratio the median
# of the per-round ratios (Postern / peer). CPU per request counts every
# process of the proxy (edge and connector for the tunnel path).
#
# Writes OUT/RESULTS.md (a table per scenario, the machine and the date),
# OUT/latency.svg (g) and OUT/body-size.svg (b); OUT is perf/ by default.
#
# Usage: scripts/bench.sh [--smoke] [--duration S] [--rounds N] [--out DIR]
#   --smoke: a second per run, one round, small sizes: checks that every
#   scenario still runs (CI does this), not a measurement.
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=5
ROUNDS=3
OUT=perf
SMOKE=0
while [ $# -gt 0 ]; do
    case $1 in
        --smoke) SMOKE=1; DURATION=1; ROUNDS=1; OUT=${OUT_SET:-$(mktemp -d /tmp/postern-bench-smoke.XXXXXX)} ;;
        --duration) DURATION=$2; shift ;;
        --rounds) ROUNDS=$2; shift ;;
        --out) OUT=$2; OUT_SET=$2; shift ;;
        *) echo "usage: scripts/bench.sh [--smoke] [--duration S] [--rounds N] [--out DIR]" >&2; exit 2 ;;
    esac
    shift
done
[ -n "${OUT_SET:-}" ] && OUT=$OUT_SET
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
if [ "$SMOKE" = 1 ]; then
    SIZES=(512 64k 1m); IDLE=200; WARMUP=0.3
else
    SIZES=(512 1k 4k 16k 64k 256k 1m); IDLE=10000; WARMUP=1
fi

BASE=${BENCH_BASE_PORT:-17000}
BACKEND=$((BASE + 1)); IDP=$((BASE + 2))
PE_HTTP=$((BASE + 10)); PE_HTTPS=$((BASE + 11)); PE_OIDC=$((BASE + 12)); PE_ADMIN=$((BASE + 13))
PT1=$((BASE + 20)); PT101=$((BASE + 21))
TUN_HTTPS=$((BASE + 30)); TUN_LISTEN=$((BASE + 31)); TUN_ADMIN=$((BASE + 32))
NX_HTTP=$((BASE + 40)); NX_HTTPS=$((BASE + 41)); NX_T1=$((BASE + 42)); NX_T101=$((BASE + 43))
HA_HTTP=$((BASE + 50)); HA_HTTPS=$((BASE + 51))
FL_HTTP=$((BASE + 60)); FL_HTTPS=$((BASE + 61))
ID_PE=$((BASE + 70)); ID_NX=$((BASE + 71)); ID_HA=$((BASE + 72))

CONNS=1 # bench-common's `run` (wrk) is not used here
# shellcheck source=scripts/bench-common.sh
. scripts/bench-common.sh
need_commands haproxy=haproxy curl=curl python3=python3
LOAD=target/release/postern-load
HAPROXY=$(command -v haproxy)
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
FDMAX=$(ulimit -n); [ "$FDMAX" = unlimited ] && FDMAX=1048576
[ "$FDMAX" -gt $((IDLE + 500)) ] || { echo "the descriptor limit ($FDMAX) is too low for $IDLE idle connections" >&2; exit 2; }
# HAProxy reserves two descriptors per connection it may take, and stops at
# start-up if they do not fit: it takes what the limit allows.
HA_MAXCONN=$(( (FDMAX - 200) / 2 )); [ "$HA_MAXCONN" -gt $((IDLE + 1000)) ] && HA_MAXCONN=$((IDLE + 1000))
HA_IDLE=$IDLE; [ "$HA_IDLE" -gt $((HA_MAXCONN - 100)) ] && HA_IDLE=$((HA_MAXCONN - 100))
RUNS="$WORK/runs"; mkdir -p "$RUNS"
TSV="$WORK/results.tsv"; : > "$TSV"

# --- content and the backend --------------------------------------------
for s in "${SIZES[@]}" 1k; do
    n=$(numfmt --from=iec "${s^^}")
    head -c $((n * 3 / 4 + 3)) /dev/urandom | base64 -w 0 > "$WORK/www/$s"
    truncate -s "$n" "$WORK/www/$s"
done
cp "$WORK/www/1k" "$WORK/www/index.html" # the idle clients' GET /
target/release/postern-translate-bench --write-page "$WORK/www/page.html" "http://127.0.0.1:$BACKEND/"
make_cert localhost '*.example.com'
cat "$WORK/cert.pem" "$WORK/key.pem" > "$WORK/haproxy.pem"
write_backend_conf "$BACKEND"
taskset -c 1 "$NGINX" -p "$WORK" -c "$WORK/backend.conf" & PIDS+=($!)

# --- the demo OpenID provider, for the pre-authenticated app (i) ---------
SECRET=$(head -c 18 /dev/urandom | base64 | tr '+/' '-_')
PASSWORD=$(head -c 12 /dev/urandom | base64 | tr '+/' '-_')
printf '%s' "$SECRET" > "$WORK/client.secret"
taskset -c 1 target/release/postern-demo-idp "$IDP" bench "$SECRET" bench "$PASSWORD" \
    "https://127.0.0.1:$PE_OIDC/.postern/callback" > "$WORK/logs/idp.out" 2>&1 & PIDS+=($!)

# --- Postern: the main edge, two translation edges, a tunnel edge --------
edge_head() { # edge_head ADMIN STATE [EXTRA_LINES]
    printf '[edge]\nworkers = 1\npin_workers = true\naccess_log = "off"\nadmin_address = "127.0.0.1:%s"\nstate_dir = "%s"\n%s\n' "$1" "$2" "${3:-}"
    printf '\n[[certificate]]\ncert_file = "%s/cert.pem"\nkey_file = "%s/key.pem"\n' "$WORK" "$WORK"
}
listener() { printf '\n[[listener]]\naddress = "%s"\nscheme = "%s"\n' "$1" "$2"; }
app() { # app NAME EXTERNAL INTERNAL [EXTRA_LINES]
    printf '\n[[app]]\nname = "%s"\nexternal_url = "%s"\ninternal_url = "%s"\npreauth = "passthrough"\n%s\n' "$1" "$2" "$3" "${4:-}"
}
{
    edge_head $PE_ADMIN "$WORK/state-main" "max_connections = 30000
max_connections_per_source = 30000"
    listener "127.0.0.1:$PE_HTTP" http; listener "127.0.0.1:$PE_HTTPS" https; listener "127.0.0.1:$PE_OIDC" https
    printf '\n[identity_provider]\nissuer = "http://127.0.0.1:%s"\nclient_id = "bench"\nclient_secret_file = "%s/client.secret"\n' "$IDP" "$WORK"
    app pass "https://localhost:$PE_HTTPS/" "http://127.0.0.1:$BACKEND/"
    app plain "http://localhost:$PE_HTTP/" "http://127.0.0.1:$BACKEND/" 'cookie = { secure = false }'
    printf '\n[[app]]\nname = "signed"\nexternal_url = "https://127.0.0.1:%s/"\ninternal_url = "http://127.0.0.1:%s/"\npreauth = "oidc"\n' "$PE_OIDC" "$BACKEND"
} > "$WORK/edge-main.toml"
{
    edge_head $((BASE + 14)) "$WORK/state-t1"
    listener "127.0.0.1:$PT1" https
    app page "https://localhost:$PT1/" "http://127.0.0.1:$BACKEND/" 'translate_body = true'
} > "$WORK/edge-t1.toml"
{
    edge_head $((BASE + 15)) "$WORK/state-t101"
    listener "127.0.0.1:$PT101" https
    app page "https://localhost:$PT101/" "http://127.0.0.1:$BACKEND/" 'translate_body = true'
    for k in $(seq 1 100); do app "app$k" "https://app$k.example.com:$PT101/" "http://app$k.corp/"; done
} > "$WORK/edge-t101.toml"
{
    edge_head $TUN_ADMIN "$WORK/state-tunnel" "tunnel_address = \"127.0.0.1:$TUN_LISTEN\""
    listener "127.0.0.1:$TUN_HTTPS" https
    app pass "https://localhost:$TUN_HTTPS/" "http://127.0.0.1:$BACKEND/"
} > "$WORK/edge-tunnel.toml"
printf '[connector]\nworkers = 1\n' > "$WORK/connector.toml"

start_edge() { # start_edge NAME: prints the PID
    POSTERN_LOG=warn taskset -c 0 "$POSTERN" edge --config "$WORK/edge-$1.toml" > "$WORK/logs/edge-$1.out" 2>&1 &
    PIDS+=($!); echo $! > "$WORK/pid-$1"
}
start_edge main; start_edge t1; start_edge t101; start_edge tunnel
PE_PID=$(cat "$WORK/pid-main"); PT1_PID=$(cat "$WORK/pid-t1"); PT101_PID=$(cat "$WORK/pid-t101"); TUN_PID=$(cat "$WORK/pid-tunnel")

# --- nginx and HAProxy ------------------------------------------------------
nginx_conf() { # nginx_conf FILE PID_NAME: proxy, h2 on TLS, sub_filter servers
    {
        cat <<CONF
$USER_LINE
worker_processes 1;
worker_rlimit_nofile $FDMAX;
daemon off;
pid $WORK/$2.pid;
error_log $WORK/logs/$2.err warn;
events { worker_connections $((FDMAX - 100)); }
http {
    access_log off;
    keepalive_requests 10000000;
    http2_max_concurrent_streams 128;
    upstream backend { server 127.0.0.1:$BACKEND; keepalive 64; }
    ssl_certificate $WORK/cert.pem;
    ssl_certificate_key $WORK/key.pem;
    ssl_protocols TLSv1.2 TLSv1.3;
    proxy_http_version 1.1;
    proxy_set_header Connection "";
    sub_filter_once off;
    server {
        listen 127.0.0.1:$NX_HTTP;
        listen 127.0.0.1:$NX_HTTPS ssl http2;
        location / { proxy_pass http://backend; }
    }
    server {
        listen 127.0.0.1:$ID_NX ssl;
        location / { proxy_pass http://backend; }
    }
    server {
        listen 127.0.0.1:$NX_T1 ssl;
        location / {
            proxy_pass http://backend;
            proxy_set_header Accept-Encoding "";
            sub_filter 'http://127.0.0.1:$BACKEND/' 'https://localhost:$NX_T1/';
        }
    }
    server {
        listen 127.0.0.1:$NX_T101 ssl;
        location / {
            proxy_pass http://backend;
            proxy_set_header Accept-Encoding "";
            sub_filter 'http://127.0.0.1:$BACKEND/' 'https://localhost:$NX_T101/';
CONF
        for k in $(seq 1 100); do echo "            sub_filter 'http://app$k.corp/' 'https://app$k.example.com/';"; done
        echo "        }"; echo "    }"; echo "}"
    } > "$1"
}
nginx_conf "$WORK/nginx.conf" nginx
cat > "$WORK/haproxy.cfg" <<CONF
global
    nbthread 1
    ulimit-n $FDMAX
    maxconn $HA_MAXCONN
    ssl-default-bind-options ssl-min-ver TLSv1.2
defaults
    mode http
    timeout connect 5s
    timeout client 120s
    timeout server 120s
    http-reuse always
    option http-keep-alive
frontend fe_http
    bind 127.0.0.1:$HA_HTTP
    default_backend be
frontend fe_https
    bind 127.0.0.1:$HA_HTTPS ssl crt $WORK/haproxy.pem alpn h2,http/1.1
    bind 127.0.0.1:$ID_HA ssl crt $WORK/haproxy.pem alpn http/1.1
    default_backend be
backend be
    server s1 127.0.0.1:$BACKEND maxconn 1000
CONF
taskset -c 0 "$NGINX" -p "$WORK" -c "$WORK/nginx.conf" & PIDS+=($!)
NX_MASTER=$!
taskset -c 0 "$HAPROXY" -db -f "$WORK/haproxy.cfg" > "$WORK/logs/haproxy.out" 2>&1 & PIDS+=($!)
HA_PID=$!
taskset -c 0 target/release/postern-floor "127.0.0.1:$BACKEND" "127.0.0.1:$FL_HTTP" \
    "127.0.0.1:$FL_HTTPS" "$WORK/cert.pem" "$WORK/key.pem" > "$WORK/logs/floor.out" 2>&1 & PIDS+=($!)
FL_PID=$!
for p in $BACKEND $IDP $PE_HTTP $PE_HTTPS $PE_OIDC $PT1 $PT101 $TUN_HTTPS $TUN_LISTEN $NX_HTTP $NX_HTTPS $NX_T1 $NX_T101 \
    $HA_HTTP $HA_HTTPS $FL_HTTP $FL_HTTPS; do
    wait_port "$p" || { for f in "$WORK"/logs/*; do echo "== $f"; tail -n 5 "$f"; done >&2; exit 1; }
done
NX_PIDS="$NX_MASTER $(pgrep -P "$NX_MASTER" | tr '\n' ' ')"

# The connector for the tunnel edge.
start_connector "$TUN_ADMIN" "$WORK/state-tunnel" "$TUN_LISTEN" connector 0
CONN_PID=$CONNECTOR_PID
for _ in $(seq 1 100); do
    [ "$(curl -sk -o /dev/null -w '%{http_code}' "https://localhost:$TUN_HTTPS/1k")" = 200 ] && break
    sleep 0.1
done

# Every proxy answers, and the translating ones translate.
for url in "http://localhost:$PE_HTTP/1k" "https://localhost:$PE_HTTPS/1k" "https://localhost:$TUN_HTTPS/1k" \
    "http://localhost:$NX_HTTP/1k" "https://localhost:$NX_HTTPS/1k" "http://localhost:$HA_HTTP/1k" \
    "https://localhost:$HA_HTTPS/1k" "http://localhost:$FL_HTTP/1k"; do
    code=$(curl -sk -o /dev/null -w '%{http_code}' "$url")
    [ "$code" = 200 ] || { echo "$url answered $code" >&2; for f in "$WORK"/logs/*; do echo "== $f"; tail -n 5 "$f"; done >&2; exit 1; }
done
for port in $PT101 $NX_T101; do
    left=$(curl -sk "https://localhost:$port/page.html" | grep -c "http://127.0.0.1:$BACKEND/" || true)
    [ "$left" = 0 ] || { echo "port $port left $left internal links" >&2; exit 1; }
done

# A session for the pre-authenticated app (i), signed in as a browser does.
SESSION=$(sign_in "https://127.0.0.1:$PE_OIDC/1k" signed "$IDP" "$PASSWORD" "$WORK/logs/edge-main.out")
[ -n "$SESSION" ] || { echo "the sign-in set no session cookie" >&2; exit 1; }

# --- measuring ---------------------------------------------------------------
pids_of() {
    case $1 in
        postern) echo "$PE_PID" ;; nginx) echo "$NX_PIDS" ;; haproxy) echo "$HA_PID" ;; floor) echo "$FL_PID" ;;
        tunnel) echo "$TUN_PID $CONN_PID" ;; postern-1app) echo "$PT1_PID" ;; postern-100apps) echo "$PT101_PID" ;;
        nginx-1rule | nginx-101rules) echo "$NX_PIDS" ;; postern-preauth | postern-passthrough) echo "$PE_PID" ;;
    esac
}
rss_kib() { local t=0 p; for p in "$@"; do t=$((t + $(awk '/^VmRSS/ {print $2}' "/proc/$p/status"))); done; echo $t; }

# measure SCENARIO VARIANT PROXY LOAD_ARGS...: one run, one TSV row.
measure() {
    local scen=$1 var=$2 proxy=$3; shift 3
    local pids json before after
    pids=$(pids_of "$proxy")
    json="$RUNS/$scen-${var//[^A-Za-z0-9]/_}-$proxy-r$ROUND.json"
    taskset -c 1 "$LOAD" -d "$WARMUP" "$@" > /dev/null 2>&1 || true
    # shellcheck disable=SC2086
    before=$("$CPU" $pids)
    taskset -c 1 "$LOAD" -d "$DURATION" --json "$json" "$@" > "$WORK/load.out" 2>&1 \
        || { echo "postern-load $*: $(cat "$WORK/load.out")" >&2; return 1; }
    # shellcheck disable=SC2086
    after=$("$CPU" $pids)
    # shellcheck disable=SC2086
    python3 - "$json" "$scen" "$var" "$proxy" "$ROUND" "$before" "$after" "$(rss_kib $pids)" >> "$TSV" <<'PY'
import json, sys
path, scen, var, proxy, rnd, before, after, rss = sys.argv[1:]
r = json.load(open(path))
n = r["requests"]
cpu = (float(after) - float(before)) / n if n else 0
errors = sum(r["errors"].values())
print("\t".join(map(str, [scen, var, proxy, rnd, round(r["rps"], 1), round(cpu, 2),
      r["latency_us"]["p50"], r["latency_us"]["p99"], rss, errors, path])))
PY
    tail -1 "$TSV" | cut -f1-10 >&2
}

# rotate N WORDS...: the words, rotated left by N (each round its own order).
rotate() { local n=$1; shift; local a=("$@"); local k=$((n % ${#a[@]})); echo "${a[@]:k}" "${a[@]:0:k}"; }
port_of() { # port_of PROXY SCHEME
    case "$1 $2" in
        "postern http") echo $PE_HTTP ;; "postern https") echo $PE_HTTPS ;;
        "nginx http") echo $NX_HTTP ;; "nginx https") echo $NX_HTTPS ;;
        "haproxy http") echo $HA_HTTP ;; "haproxy https") echo $HA_HTTPS ;;
        "floor http") echo $FL_HTTP ;; "floor https") echo $FL_HTTPS ;;
        "tunnel https") echo $TUN_HTTPS ;;
    esac
}

for ROUND in $(seq 1 "$ROUNDS"); do
    echo "round $ROUND of $ROUNDS" >&2
    # a: 1 KiB keep-alive, HTTP and HTTPS.
    for scheme in http https; do
        for p in $(rotate "$ROUND" postern nginx haproxy floor); do
            measure a "$scheme" "$p" -c 32 "$scheme://localhost:$(port_of "$p" $scheme)/1k"
        done
    done
    # b: body sizes over HTTPS.
    for s in "${SIZES[@]}"; do
        for p in $(rotate "$ROUND" postern nginx haproxy); do
            measure b "$s" "$p" -c 32 "https://localhost:$(port_of "$p" https)/$s"
        done
    done
    # c: handshakes, a connection per request.
    for kind in full resumed; do
        extra=(); [ $kind = full ] && extra=(--no-resume)
        for p in $(rotate "$ROUND" postern nginx haproxy); do
            measure c "$kind" "$p" --new-connection "${extra[@]}" -c 16 "https://localhost:$(port_of "$p" https)/1k"
        done
    done
    # d: the tunnel path beside the direct path and the peers.
    for p in $(rotate "$ROUND" tunnel postern nginx haproxy); do
        measure d 1k "$p" -c 32 "https://localhost:$(port_of "$p" https)/1k"
    done
    # e: link translation of a 256 KiB page.
    for pair in "1 app|postern-1app|$PT1|nginx-1rule|$NX_T1" "100 apps|postern-100apps|$PT101|nginx-101rules|$NX_T101"; do
        IFS='|' read -r var pp pport np nport <<< "$pair"
        for who in $(rotate "$ROUND" p n); do
            if [ "$who" = p ]; then measure e "$var" "$pp" -c 16 "https://localhost:$pport/page.html"
            else measure e "$var" "$np" -c 16 "https://localhost:$nport/page.html"; fi
        done
    done
    # h: HTTP/2 over TLS.
    for shape in "1x64|1|64" "16x16|16|16"; do
        IFS='|' read -r var c m <<< "$shape"
        for p in $(rotate "$ROUND" postern nginx haproxy); do
            measure h "$var" "$p" --http2 -c "$c" -m "$m" "https://localhost:$(port_of "$p" https)/1k"
        done
    done
    # i: a pre-authenticated app with a session cookie, beside passthrough.
    for p in $(rotate "$ROUND" postern-preauth postern-passthrough); do
        port=$PE_OIDC; host=127.0.0.1; [ $p = postern-passthrough ] && port=$PE_HTTPS host=localhost
        measure i cookie "$p" -c 32 -H "Cookie: $SESSION" "https://$host:$port/1k"
    done
done

# g: open-loop latency at 50% and 80% of each proxy's own maximum (a,
# https), and at one load for all: 80% of the lowest maximum. On two cores
# the generator and the backend share CPU 1, and under an open loop they
# cost more per request than in a closed one; the common load keeps that
# share the same for every proxy.
max_of() { awk -F'\t' -v p="$1" '$1=="a" && $2=="https" && $3==p {print $5}' "$TSV" | median; }
LOWEST=$(for p in postern nginx haproxy; do max_of $p; done | sort -g | head -1)
for ROUND in $(seq 1 "$ROUNDS"); do
    for p in $(rotate "$ROUND" postern nginx haproxy); do
        max=$(max_of "$p")
        for pct in 50 80; do
            rate=$(awk -v m="$max" -v q="$pct" 'BEGIN {printf "%.0f", m * q / 100}')
            measure g "$pct%" "$p" -c 64 --rate "$rate" "https://localhost:$(port_of "$p" https)/1k"
        done
        rate=$(awk -v m="$LOWEST" 'BEGIN {printf "%.0f", m * 0.8}')
        measure g "80% of the lowest" "$p" -c 64 --rate "$rate" "https://localhost:$(port_of "$p" https)/1k"
    done
done

# f: memory per idle keep-alive TLS connection; fresh processes, one round.
{
    edge_head $((BASE + 16)) "$WORK/state-idle" "max_connections = $((IDLE + 1000))
max_connections_per_source = $((IDLE + 1000))"
    listener "127.0.0.1:$ID_PE" https
    app pass "https://localhost:$ID_PE/" "http://127.0.0.1:$BACKEND/"
} > "$WORK/edge-idle.toml"
start_edge idle
IDLE_PE=$(cat "$WORK/pid-idle")
wait_port "$ID_PE"
for p in postern nginx haproxy; do
    n=$IDLE
    case $p in
        postern) port=$ID_PE pids=$IDLE_PE ;; nginx) port=$ID_NX pids=$NX_PIDS ;;
        haproxy) port=$ID_HA pids=$HA_PID n=$HA_IDLE ;;
    esac
    # shellcheck disable=SC2086
    read -r held _ _ per < <(taskset -c 1 python3 scripts/idle-clients.py "$port" "$n" localhost $pids)
    printf 'f\tidle\t%s\t1\t0\t0\t0\t0\t%s\t%s\t-\n' "$p" "$(awk -v b="$per" 'BEGIN {printf "%.0f", b}')" \
        "$((n - held))" >> "$TSV"
    tail -1 "$TSV" | cut -f1-10 >&2
done

# --- the report ----------------------------------------------------------
{
    echo "date: $(date -u '+%Y-%m-%d %H:%M UTC')"
    echo "machine: $(lscpu | sed -n 's/^Model name: *//p' | head -1), $(nproc) CPUs, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), Linux $(uname -r)"
    echo "peers: nginx $("$NGINX" -v 2>&1 | sed 's/.*\///'), HAProxy $("$HAPROXY" -v | sed -n 's/^HAProxy version \([^ ]*\).*/\1/p')"
    echo "runs: $ROUNDS rounds of $DURATION s per figure (after ${WARMUP} s of warm-up); idle connections: $IDLE$([ "$HA_IDLE" -lt "$IDLE" ] && echo " (HAProxy: $HA_IDLE, all its descriptor limit of $FDMAX allows)")"
} > "$WORK/machine.txt"
target/release/postern-bench-report "$TSV" "$WORK/machine.txt" "$OUT"
cp "$TSV" "$OUT/results.tsv"
echo "wrote $OUT/RESULTS.md, $OUT/latency.svg, $OUT/body-size.svg" >&2
