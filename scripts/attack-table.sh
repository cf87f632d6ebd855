#!/usr/bin/env bash
# Attacks side by side: connections that send nothing, and slowhttptest in
# its three modes (slowloris, slow body, slow read of a 1 MiB response),
# with ATTACK_CONNS connections
# against Postern direct, Postern through a connector, and nginx, all
# proxying the same nginx static backend over HTTPS. Each proxy gets the
# same 4,096 descriptors: Postern's process (edge; the connector has its
# own) under prlimit, nginx as two workers of 2,048. Both keep their
# default timeouts.
#
# While the attack runs, a normal client opens a new TLS connection for a
# GET every 100 ms from 127.0.0.2 (curl, 5 s limit) for MEASURE seconds.
# The table gives its success rate and p99 (failures count as 5 s), the
# peak of connections the proxy held open on its port (ss), and its peak
# RSS (all its processes; edge + connector for the tunnel).
#
# Usage: scripts/attack-table.sh [ATTACK_CONNS] [MEASURE_SECONDS]
#   ONLY="slow-read:tunnel slowloris:direct" runs just those rows
#   (modes: none silent slowloris slow-body slow-read abort-burst; proxies:
#   nginx direct tunnel). `silent` holds connections that send nothing at
#   all; `abort-burst` resets ATTACK_CONNS uploads at once, every 5 s.
set -euo pipefail
cd "$(dirname "$0")/.."

ATTACK_CONNS=${1:-3000}
MEASURE=${2:-20}
BASE_PORT=${BENCH_BASE_PORT:-18200}
BACKEND_PORT=$((BASE_PORT + 1))
NGINX_HTTPS=$((BASE_PORT + 2))
DIRECT_HTTPS=$((BASE_PORT + 3))
TUNNEL_HTTPS=$((BASE_PORT + 4))
TUNNEL_LISTENER=$((BASE_PORT + 5))
DIRECT_ADMIN=$((BASE_PORT + 6))
TUNNEL_ADMIN=$((BASE_PORT + 7))

# shellcheck source=scripts/bench-common.sh
. scripts/bench-common.sh
for tool in slowhttptest curl prlimit; do
    command -v "$tool" >/dev/null 2>&1 || {
        echo "$tool is needed (Debian: slowhttptest, curl, util-linux)" >&2
        exit 2
    }
done

head -c 300 /dev/urandom | base64 -w 0 > "$WORK/www/index.html"
head -c $((1024 * 1024)) /dev/urandom > "$WORK/www/big"
make_cert localhost
write_backend_conf "$BACKEND_PORT"

write_nginx_tls_proxy "$WORK/nginx.conf" "$NGINX_HTTPS" "$BACKEND_PORT" 2 2048 2048

# edge_conf FILE HTTPS_PORT ADMIN_PORT STATE [EXTRA]
edge_conf() {
    cat > "$1" <<CONF
[edge]
access_log = "off"
admin_address = "127.0.0.1:$3"
state_dir = "$WORK/$4"
$5

[[listener]]
address = "127.0.0.1:$2"
scheme = "https"

[[certificate]]
cert_file = "$WORK/cert.pem"
key_file = "$WORK/key.pem"

[[app]]
name = "site"
external_url = "https://localhost:$2/"
internal_url = "http://127.0.0.1:$BACKEND_PORT/"
preauth = "passthrough"
CONF
}
edge_conf "$WORK/direct.toml" "$DIRECT_HTTPS" "$DIRECT_ADMIN" direct-state ""
edge_conf "$WORK/tunnel.toml" "$TUNNEL_HTTPS" "$TUNNEL_ADMIN" tunnel-state \
    "tunnel_address = \"127.0.0.1:$TUNNEL_LISTENER\""

"$NGINX" -p "$WORK" -c "$WORK/backend.conf" & PIDS+=($!)
"$NGINX" -p "$WORK" -c "$WORK/nginx.conf" & PIDS+=($!)
NGINX_MASTER=$!
POSTERN_LOG=warn prlimit --nofile=4096:4096 "$POSTERN" edge --config "$WORK/direct.toml" \
    > "$WORK/logs/direct.out" 2>&1 & PIDS+=($!)
DIRECT_PID=$!
POSTERN_LOG=warn prlimit --nofile=4096:4096 "$POSTERN" edge --config "$WORK/tunnel.toml" \
    > "$WORK/logs/tunnel.out" 2>&1 & PIDS+=($!)
TUNNEL_PID=$!
for p in $BACKEND_PORT $NGINX_HTTPS $DIRECT_HTTPS $TUNNEL_HTTPS $TUNNEL_LISTENER; do wait_port "$p"; done
TOKEN=$("$POSTERN" tokens --admin "127.0.0.1:$TUNNEL_ADMIN" --state-dir "$WORK/tunnel-state" --json create --group default \
    | sed -n 's/.*"token": *"\([^"]*\)".*/\1/p')
"$POSTERN" connector register --edge "127.0.0.1:$TUNNEL_LISTENER" --token "$TOKEN" --state-dir "$WORK/connector" >/dev/null
POSTERN_LOG=warn "$POSTERN" connector --state-dir "$WORK/connector" > "$WORK/logs/connector.out" 2>&1 & PIDS+=($!)
CONNECTOR_PID=$!

# get PORT: one normal GET on a new TLS connection from 127.0.0.2;
# prints "CODE SECONDS".
get() {
    curl -sk --interface 127.0.0.2 --resolve "localhost:$1:127.0.0.1" -o /dev/null -m 5 \
        -w '%{http_code} %{time_total}\n' "https://localhost:$1/" 2>/dev/null || echo "000 5"
}
for _ in $(seq 1 100); do
    [ "$(get "$TUNNEL_HTTPS" | cut -d' ' -f1)" = 200 ] && break
    sleep 0.1
done
for p in $NGINX_HTTPS $DIRECT_HTTPS $TUNNEL_HTTPS; do
    [ "$(get "$p" | cut -d' ' -f1)" = 200 ] || { echo "port $p does not serve" >&2; exit 1; }
done

# rss PID...: the processes' summed VmRSS, KiB.
rss() {
    local total=0 v
    for p in "$@"; do
        v=$(awk '/^VmRSS/ {print $2}' "/proc/$p/status" 2>/dev/null || echo 0)
        total=$((total + ${v:-0}))
    done
    echo "$total"
}

mode_args() {
    case $1 in
        slowloris) echo "-H -i 5" ;;
        slow-body) echo "-B -i 5 -s 65536" ;;
        slow-read) echo "-X -w 512 -y 1024 -n 5 -z 32 -k 3" ;;
        none) echo "" ;;
    esac
}

# attack NAME PORT MODE PID...: one row.
attack() {
    local name=$1 port=$2 mode=$3
    shift 3
    if [ -n "${ONLY:-}" ] && [[ " $ONLY " != *" $mode:$name "* ]]; then return 0; fi
    local path=/
    [ "$mode" = slow-read ] && path=/big
    local out="$WORK/$name-$mode"
    local attacker=""
    if [ "$mode" = silent ]; then
        # Connections that open and send nothing at all (not even a TLS
        # hello), opened at 1,000 a second and held.
        python3 -c '
import socket, sys, time
port, n, hold = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
held = []
for i in range(n):
    try:
        held.append(socket.create_connection(("127.0.0.1", port), timeout=2))
    except OSError:
        pass
    if i % 1000 == 999:
        time.sleep(1)
time.sleep(hold)
' "$port" "$ATTACK_CONNS" $((MEASURE + 20)) &
        attacker=$!
        sleep 5
    elif [ "$mode" = abort-burst ]; then
        # Uploads that send their head and 80 KiB of a 1 MiB body (past the
        # edge's read-ahead, so each holds a backend connection or tunnel
        # stream), from 20 addresses, then all reset at once; again every
        # 5 s. Each abort is a stream reset on the tunnel.
        python3 -c '
import socket, ssl, struct, sys, time
port, n, until = int(sys.argv[1]), int(sys.argv[2]), time.time() + float(sys.argv[3])
ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
head = b"POST / HTTP/1.1\r\nHost: localhost\r\nContent-Length: 1048576\r\n\r\n"
while time.time() < until:
    held = []
    for i in range(n):
        try:
            raw = socket.create_connection(("127.0.0.1", port), timeout=5,
                                           source_address=("127.0.0.%d" % (10 + i % 20), 0))
            s = ctx.wrap_socket(raw, server_hostname="localhost")
            s.sendall(head + b"x" * 81920)
            held.append(s)
        except OSError:
            pass
    time.sleep(1)
    for s in held:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        s.close()
    time.sleep(4)
' "$port" "$ATTACK_CONNS" $((MEASURE + 5)) &
        attacker=$!
        sleep 5
    elif [ "$mode" != none ]; then
        # shellcheck disable=SC2046 # the mode's arguments are words
        slowhttptest $(mode_args "$mode") -c "$ATTACK_CONNS" -r 1000 -l $((MEASURE + 20)) \
            -p 5 -o "$out" -u "https://localhost:$port$path" >/dev/null 2>&1 &
        attacker=$!
        sleep 5   # ramp-up: 1,000 connections a second
    fi
    local peak_rss=0 peak=0 r t0 end
    end=$(( $(date +%s) + MEASURE ))
    : > "$out.normal"
    while [ "$(date +%s)" -lt "$end" ]; do
        t0=$(date +%s%N)
        get "$port" >> "$out.normal"
        r=$(rss "$@"); [ "$r" -gt "$peak_rss" ] && peak_rss=$r
        r=$(ss -Htn state established "( sport = :$port )" | wc -l); [ "$r" -gt "$peak" ] && peak=$r
        local spent=$(( ($(date +%s%N) - t0) / 1000000 ))
        [ "$spent" -lt 100 ] && sleep "0.$(printf '%03d' $((100 - spent)))"
    done
    if [ -n "$attacker" ]; then
        kill "$attacker" 2>/dev/null || true
        wait "$attacker" 2>/dev/null || true
    fi
    local n ok p99
    n=$(wc -l < "$out.normal")
    ok=$(awk '$1 == 200' "$out.normal" | wc -l)
    p99=$(awk '{print ($1 == 200) ? $2 : 5}' "$out.normal" | sort -g \
        | awk -v n="$n" 'BEGIN {i = int(n * 0.99); if (i < 1) i = 1} NR == i {print $1 * 1000}')
    awk -v name="$name" -v mode="$mode" -v peak="$peak" -v rss="$peak_rss" -v n="$n" -v ok="$ok" -v p99="$p99" \
        'BEGIN {printf "| %-10s | %-9s | %6d | %5.1f%% (%d/%d) | %8.1f ms | %6.1f MiB |\n",
            mode, name, peak, 100 * ok / n, ok, n, p99, rss / 1024}'
    # Let the proxy release the attack's connections before the next row.
    sleep 3
}

NGINX_PIDS="$NGINX_MASTER $(pgrep -P "$NGINX_MASTER" | tr '\n' ' ')"
printf '\nAttacks beside nginx %s: %s attack connections, normal client for %s s per row, %s, %s cores\n\n' \
    "$("$NGINX" -v 2>&1 | sed 's/.*\///')" "$ATTACK_CONNS" "$MEASURE" "$(date -u +%F)" "$(nproc)"
echo "| attack     | proxy     | held open | normal client ok | p99 | peak RSS |"
echo "|------------|-----------|--------:|-----------------:|----:|---------:|"
for mode in none silent slowloris slow-body slow-read abort-burst; do
    # shellcheck disable=SC2086 # NGINX_PIDS holds several PIDs
    attack nginx "$NGINX_HTTPS" "$mode" $NGINX_PIDS
    attack direct "$DIRECT_HTTPS" "$mode" "$DIRECT_PID"
    attack tunnel "$TUNNEL_HTTPS" "$mode" "$TUNNEL_PID" "$CONNECTOR_PID"
done
printf '\nTunnels the connector lost during the run: %s\n' \
    "$(grep -c 'tunnel failed' "$WORK/logs/connector.out" || true)"
