#!/usr/bin/env bash
# What pre-authentication costs: one edge worker publishes the same nginx
# backend as a passthrough app and as an `oidc` app (settings otherwise
# the same, so identity for the backend is off, as by default), and wrk
# drives them with 1 KiB responses, keep-alive. Each client request is
# sent to both apps, byte for byte the same, so the difference is the
# policy phase alone:
#   cookie       a session cookie on every request (got by signing in
#                through the demo OpenID provider, as a browser does), to
#                the oidc app; pass+cookie sends it to the passthrough app;
#   bearer       `Authorization: Bearer <id_token>` on every request (the
#                token from the provider's password grant), to the oidc
#                app; pass+bearer sends it to the passthrough app;
#   cookie+sso   a session cookie to a third copy with `sso` identity
#                headers and the signed assertion on (which the backend
#                then receives, about 700 bytes more per request).
# The apps differ in host name only (localhost, 127.0.0.1 and 127.0.0.2,
# which wrk resolves without a hosts file). The edge is pinned to CPU 0;
# wrk, the backend and the provider to CPU 1. Each round measures every
# mode in alternating order; the report gives medians over rounds and each
# ratio as the median of per-round ratios. The CPU-us/request difference
# is what the policy phase costs per request; on these shared machines one
# round's ratio can land 20% either side, so take many rounds.
#
# Usage: scripts/bench-preauth.sh [DURATION_SECONDS] [CONNECTIONS] [ROUNDS]
#   BENCH_CALLGRIND=1 then counts instructions per request in each mode
#   with callgrind (CG_REQUESTS per mode, default 2000; CALLGRIND_KEEP=dir
#   keeps the profiles).
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${1:-5}
CONNS=${2:-32}
ROUNDS=${3:-11}
BASE_PORT=${BENCH_BASE_PORT:-18300}
BACKEND_PORT=$((BASE_PORT + 1))
PASS_PORT=$((BASE_PORT + 2))
OIDC_PORT=$((BASE_PORT + 3))
ADMIN_PORT=$((BASE_PORT + 4))
IDP_PORT=$((BASE_PORT + 5))
SSO_PORT=$((BASE_PORT + 6))

# shellcheck source=scripts/bench-common.sh
. scripts/bench-common.sh
command -v curl >/dev/null || { echo "bench-preauth.sh needs curl" >&2; exit 1; }

head -c 1024 /dev/urandom | base64 -w 0 | head -c 1024 > "$WORK/www/1k"
make_cert localhost
write_backend_conf "$BACKEND_PORT"
SECRET=$(head -c 18 /dev/urandom | base64 | tr '+/' '-_')
PASSWORD=$(head -c 12 /dev/urandom | base64 | tr '+/' '-_')
printf '%s' "$SECRET" > "$WORK/client.secret"

cat > "$WORK/edge.toml" <<CONF
[edge]
workers = 1
pin_workers = true
access_log = "off"
admin_address = "127.0.0.1:$ADMIN_PORT"
state_dir = "$WORK/state"

[[listener]]
address = "127.0.0.1:$PASS_PORT"
scheme = "https"

[[listener]]
address = "127.0.0.1:$OIDC_PORT"
scheme = "https"

[[listener]]
address = "127.0.0.2:$SSO_PORT"
scheme = "https"

[[certificate]]
cert_file = "$WORK/cert.pem"
key_file = "$WORK/key.pem"

[identity_provider]
issuer = "http://127.0.0.1:$IDP_PORT"
client_id = "bench"
client_secret_file = "$WORK/client.secret"

[[app]]
name = "pass"
external_url = "https://localhost:$PASS_PORT/"
internal_url = "http://127.0.0.1:$BACKEND_PORT/"
preauth = "passthrough"

[[app]]
name = "signed"
external_url = "https://127.0.0.1:$OIDC_PORT/"
internal_url = "http://127.0.0.1:$BACKEND_PORT/"
preauth = "oidc"

[[app]]
name = "sso"
external_url = "https://127.0.0.2:$SSO_PORT/"
internal_url = "http://127.0.0.1:$BACKEND_PORT/"
preauth = "oidc"
sso = { headers = true, assertion = true }
CONF

taskset -c 1 "$NGINX" -p "$WORK" -c "$WORK/backend.conf" & PIDS+=($!)
taskset -c 1 target/release/postern-demo-idp "$IDP_PORT" bench "$SECRET" bench "$PASSWORD" \
    "https://127.0.0.1:$OIDC_PORT/.postern/callback" "https://127.0.0.2:$SSO_PORT/.postern/callback" \
    > "$WORK/logs/idp.out" 2>&1 & PIDS+=($!)
wait_port "$BACKEND_PORT"; wait_port "$IDP_PORT"
POSTERN_LOG=warn taskset -c 0 "$POSTERN" edge --config "$WORK/edge.toml" > "$WORK/logs/postern.out" 2>&1 & PIDS+=($!)
POSTERN_PID=$!
wait_port "$PASS_PORT" || { cat "$WORK/logs/postern.out" >&2; exit 1; }
wait_port "$OIDC_PORT"
for _ in $(seq 1 100); do (exec 3<>"/dev/tcp/127.0.0.2/$SSO_PORT") 2>/dev/null && break; sleep 0.1; done

SESSION=$(sign_in "https://127.0.0.1:$OIDC_PORT/1k" signed "$IDP_PORT" "$PASSWORD" "$WORK/logs/postern.out")
SSO_SESSION=$(sign_in "https://127.0.0.2:$SSO_PORT/1k" sso "$IDP_PORT" "$PASSWORD" "$WORK/logs/postern.out")
[ -n "$SESSION" ] && [ -n "$SSO_SESSION" ] || { echo "the sign-in set no session cookie" >&2; exit 1; }
ID_TOKEN=$(curl -s -u "bench:$SECRET" -d grant_type=password -d username=bench \
    --data-urlencode "password=$PASSWORD" "http://127.0.0.1:$IDP_PORT/token" \
    | sed -n 's/.*"id_token":"\([^"]*\)".*/\1/p')
[ -n "$ID_TOKEN" ] || { echo "the provider gave no id_token" >&2; exit 1; }
for h in "Cookie: $SESSION" "Authorization: Bearer $ID_TOKEN"; do
    got=$(curl -sk -o /dev/null -w '%{http_code}' -H "$h" "https://127.0.0.1:$OIDC_PORT/1k")
    [ "$got" = 200 ] || { echo "a request with ${h%%:*} got $got, not 200" >&2; exit 1; }
done
got=$(curl -sk -o /dev/null -w '%{http_code}' -H "Cookie: $SSO_SESSION" "https://127.0.0.2:$SSO_PORT/1k")
[ "$got" = 200 ] || { echo "a request to the sso app got $got, not 200" >&2; exit 1; }
got=$(curl -sk -o /dev/null -w '%{http_code}' "https://127.0.0.1:$OIDC_PORT/1k")
[ "$got" = 401 ] || { echo "a request with no credentials got $got, not 401" >&2; exit 1; }

printf '\nPre-authentication cost, 1 KiB over HTTPS, %s connections, %ss per run, %s rounds, one edge worker on CPU 0\n' \
    "$CONNS" "$DURATION" "$ROUNDS"
printf 'session cookie %s bytes, bearer token %s bytes\n' "${#SESSION}" "${#ID_TOKEN}"
RESULTS="$WORK/results"
: > "$RESULTS"
printf '\n%-5s %-11s %12s %12s %10s %10s  %s\n' round mode "req/s" "CPU-us/req" p50 p99 errors
for round in $(seq 1 "$ROUNDS"); do
    modes="pass+cookie cookie cookie+sso pass+bearer bearer"
    [ $((round % 2)) = 0 ] && modes="bearer pass+bearer cookie+sso cookie pass+cookie"
    for mode in $modes; do
        case $mode in
            pass+cookie) WRK_ARGS=(-H "Cookie: $SESSION"); host=localhost port=$PASS_PORT ;;
            cookie) WRK_ARGS=(-H "Cookie: $SESSION"); host=127.0.0.1 port=$OIDC_PORT ;;
            cookie+sso) WRK_ARGS=(-H "Cookie: $SSO_SESSION"); host=127.0.0.2 port=$SSO_PORT ;;
            pass+bearer) WRK_ARGS=(-H "Authorization: Bearer $ID_TOKEN"); host=localhost port=$PASS_PORT ;;
            bearer) WRK_ARGS=(-H "Authorization: Bearer $ID_TOKEN"); host=127.0.0.1 port=$OIDC_PORT ;;
        esac
        read -r rps cpu p50 p99 err < <(run "https://$host:$port/1k" "$POSTERN_PID")
        printf '%-5s %-11s %12s %12s %10s %10s  %s\n' "$round" $mode "$rps" "$cpu" "$p50" "$p99" "$err"
        echo "$round $mode $rps $cpu $(to_us "$p50") $(to_us "$p99")" >> "$RESULTS"
    done
done

field() { awk -v m="$1" -v f="$2" '$2==m {print $f}' "$RESULTS"; }
ratio() { # mode peer field: median over rounds of mode/peer
    awk -v m="$1" -v q="$2" -v f="$3" '$2==m {a[$1]=$f} $2==q {b[$1]=$f}
        END {for (r in a) if (b[r] > 0) print a[r]/b[r]}' "$RESULTS" | median
}
diff_ns() { # mode peer: median over rounds of the CPU-us/request difference, in ns
    awk -v m="$1" -v q="$2" '$2==m {a[$1]=$4} $2==q {b[$1]=$4}
        END {for (r in a) if (r in b) print (a[r]-b[r])*1000}' "$RESULTS" | median
}
printf '\nmedians over %s rounds\n%-11s %12s %12s %10s %10s\n' "$ROUNDS" mode "req/s" "CPU-us/req" "p50 us" "p99 us"
for mode in pass+cookie cookie cookie+sso pass+bearer bearer; do
    printf '%-11s %12.0f %12.2f %10.0f %10.0f\n' $mode "$(field $mode 3 | median)" \
        "$(field $mode 4 | median)" "$(field $mode 5 | median)" "$(field $mode 6 | median)"
done
printf '\nagainst passthrough, same requests (median of per-round ratios)\n'
printf '                          throughput  CPU/request     p99  added CPU per request\n'
for pair in "cookie pass+cookie" "bearer pass+bearer" "cookie+sso pass+cookie"; do
    set -- $pair
    printf '%-10s / %-11s %8.3fx    %8.3fx  %6.2fx  %8.0f ns\n' "$1" "$2" \
        "$(ratio "$1" "$2" 3)" "$(ratio "$1" "$2" 4)" "$(ratio "$1" "$2" 6)" "$(diff_ns "$1" "$2")"
done
curl -s -H "Authorization: Bearer $(cat "$WORK/state/admin.token")" "http://127.0.0.1:$ADMIN_PORT/v1/counters" \
    | tr ',' '\n' | grep -E '"(token_cache_hits|token_cache_misses|sign_ins|policy_denials)"' | tr -d ' {}' | paste -sd ' '

[ "${BENCH_CALLGRIND:-0}" = 1 ] || exit 0
# Instructions per request, counted by callgrind (repeatable, user space
# only): the same edge, state and all, restarted under valgrind, sent
# CG_REQUESTS requests per mode over one keep-alive connection.
command -v valgrind >/dev/null 2>&1 || { echo "BENCH_CALLGRIND=1 needs valgrind" >&2; exit 1; }
CG_REQUESTS=${CG_REQUESTS:-2000}
kill "$POSTERN_PID"; wait "$POSTERN_PID" 2>/dev/null || true
POSTERN_LOG=warn valgrind --tool=callgrind --callgrind-out-file="$WORK/cg.out" \
    "$POSTERN" edge --config "$WORK/edge.toml" > "$WORK/logs/cg.out" 2>&1 & PIDS+=($!)
CG_PID=$!
wait_port "$OIDC_PORT" 60
for _ in $(seq 1 100); do   # the provider's keys, fetched in the background
    [ "$(curl -sk -o /dev/null -w '%{http_code}' -H "Cookie: $SESSION" "https://127.0.0.1:$OIDC_PORT/1k")" = 200 ] && break
    sleep 0.3
done
printf '\ninstructions per request (callgrind, %s requests, one keep-alive connection)\n' "$CG_REQUESTS"
for mode in pass+cookie cookie cookie+sso pass+bearer bearer; do
    case $mode in
        pass+cookie) header="Cookie: $SESSION" url="https://localhost:$PASS_PORT/1k" ;;
        cookie) header="Cookie: $SESSION" url="https://127.0.0.1:$OIDC_PORT/1k" ;;
        cookie+sso) header="Cookie: $SSO_SESSION" url="https://127.0.0.2:$SSO_PORT/1k" ;;
        pass+bearer) header="Authorization: Bearer $ID_TOKEN" url="https://localhost:$PASS_PORT/1k" ;;
        bearer) header="Authorization: Bearer $ID_TOKEN" url="https://127.0.0.1:$OIDC_PORT/1k" ;;
    esac
    curl -sk -o /dev/null -H "$header" "$url?w=[1-50]"
    callgrind_control -z "$CG_PID" >/dev/null 2>&1
    curl -sk -o /dev/null -H "$header" "$url?n=[1-$CG_REQUESTS]"
    callgrind_control -d "$mode" "$CG_PID" >/dev/null 2>&1
    sleep 1
    total=$(cat "$WORK"/cg.out.* 2>/dev/null | awk '/^summary:/ {s += $2} END {print s + 0}')
    [ -n "${CALLGRIND_KEEP:-}" ] && { mkdir -p "$CALLGRIND_KEEP"; cat "$WORK"/cg.out.* > "$CALLGRIND_KEEP/$mode.callgrind"; }
    rm -f "$WORK"/cg.out.*
    awk -v t="$total" -v n="$CG_REQUESTS" -v m="$mode" 'BEGIN {printf "%-11s %10.0f\n", m, t / n}'
done
kill -9 "$CG_PID" 2>/dev/null || true
