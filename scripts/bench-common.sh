# Shared by the side-by-side benchmarks; sourced, not run.
# Provides: NGINX, POSTERN, CPU, WORK, PIDS, USER_LINE, wait_port, run,
# make_cert, write_backend_conf, write_edge_conf, write_nginx_tls_proxy, to_us,
# median, sign_in, start_connector, need_commands. Callers set CONNS and DURATION before calling `run`.

need=()
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || need+=(nginx-light)
command -v wrk >/dev/null 2>&1 || need+=(wrk)
command -v openssl >/dev/null 2>&1 || need+=(openssl)
if [ ${#need[@]} -gt 0 ]; then
    echo "installing ${need[*]} (Debian packages)" >&2
    sudo_cmd=""; [ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"
    DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get update -q >/dev/null
    DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -q "${need[@]}" >/dev/null
fi
NGINX=$(command -v nginx || echo /usr/sbin/nginx)

# Installs the Debian package of each command not found:
# need_commands COMMAND=PACKAGE...
need_commands() {
    local missing=() pair sudo_cmd=""
    for pair in "$@"; do
        command -v "${pair%%=*}" >/dev/null 2>&1 || missing+=("${pair#*=}")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    echo "installing ${missing[*]} (Debian packages)" >&2
    [ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"
    DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get update -q >/dev/null
    DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -q "${missing[@]}" >/dev/null
}

cargo build --release --quiet -p postern-dataplane -p postern-perf
POSTERN=target/release/postern
CPU=target/release/postern-cpu

WORK=$(mktemp -d /tmp/postern-bench.XXXXXX)
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT
mkdir -p "$WORK/www" "$WORK/logs"
USER_LINE=""; [ "$(id -u)" -eq 0 ] && USER_LINE="user root;"

# The nginx static backend both benchmarks proxy to: serves $WORK/www on
# 127.0.0.1:PORT, to be run pinned to CPU 1.
write_backend_conf() {
    cat > "$WORK/backend.conf" <<CONF
$USER_LINE
worker_processes 1;
daemon off;
pid $WORK/backend.pid;
error_log $WORK/logs/backend.err warn;
events { worker_connections 4096; }
http {
    access_log off;
    keepalive_requests 10000000;
    # Room for a pre-authenticated request's identity headers and
    # assertion (beyond the default 1 KiB nginx takes a slower path).
    client_header_buffer_size 4k;
    types { text/html html; }
    server { listen 127.0.0.1:$1 reuseport; root $WORK/www; }
}
CONF
}

# nginx proxying HTTPS on 127.0.0.1:PORT to the backend, with the shared
# certificate: write_nginx_tls_proxy FILE PORT BACKEND_PORT WORKERS NOFILE
# CONNECTIONS [LISTEN_FLAGS [HTTP_DIRECTIVES]] (descriptors and connections
# per worker; LISTEN_FLAGS such as `http2`, HTTP_DIRECTIVES added to the
# http block).
write_nginx_tls_proxy() {
    cat > "$1" <<CONF
$USER_LINE
worker_processes $4;
worker_rlimit_nofile $5;
daemon off;
pid $1.pid;
error_log $WORK/logs/nginx.err crit;
events { worker_connections $6; }
http {
    access_log off;
    ${8:-}
    upstream backend { server 127.0.0.1:$3; keepalive 64; }
    server {
        listen 127.0.0.1:$2 ssl ${7:-} reuseport;
        ssl_certificate $WORK/cert.pem;
        ssl_certificate_key $WORK/key.pem;
        location / {
            proxy_pass http://backend;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }
    }
}
CONF
}

# A one-worker edge publishing the backend over http and https:
# write_edge_conf FILE HTTP_PORT HTTPS_PORT ADMIN_PORT BACKEND_PORT PIN
write_edge_conf() {
    cat > "$1" <<CONF
[edge]
workers = 1
pin_workers = $6
access_log = "off"           # nginx runs with access_log off too
admin_address = "127.0.0.1:$4"
state_dir = "$WORK/state"

[[listener]]
address = "127.0.0.1:$2"
scheme = "http"

[[listener]]
address = "127.0.0.1:$3"
scheme = "https"

[[certificate]]
cert_file = "$WORK/cert.pem"
key_file = "$WORK/key.pem"

[[app]]
name = "bench-https"
external_url = "https://localhost:$3/"
internal_url = "http://127.0.0.1:$5/"
preauth = "passthrough"

[[app]]
name = "bench-http"
external_url = "http://localhost:$2/"
internal_url = "http://127.0.0.1:$5/"
preauth = "passthrough"
cookie = { secure = false }
CONF
}

# ECDSA P-256 certificate for the given names, shared by every proxy.
make_cert() {
    local san
    san=$(printf 'DNS:%s,' "$@"); san=${san%,}
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
        -keyout "$WORK/key.pem" -out "$WORK/cert.pem" -subj "/CN=$1" \
        -addext "subjectAltName=$san" 2>/dev/null
}

# A wrk latency (850.00us, 1.20ms, 2.00s) in microseconds.
to_us() {
    awk -v v="$1" 'BEGIN {
        if (v ~ /us$/) { sub(/us$/, "", v); print v + 0 }
        else if (v ~ /ms$/) { sub(/ms$/, "", v); print v * 1000 }
        else if (v ~ /s$/) { sub(/s$/, "", v); print v * 1000000 }
        else print 0 }'
}

# wait_port PORT [SECONDS]: waits until 127.0.0.1:PORT accepts (10 s default).
wait_port() {
    for _ in $(seq 1 $((${2:-10} * 10))); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
        sleep 0.1
    done
    echo "port $1 did not open" >&2; return 1
}

# The median of the numbers on stdin, one per line.
median() { sort -g | awk '{v[NR]=$1} END {if (NR%2) print v[(NR+1)/2]; else print (v[NR/2]+v[NR/2+1])/2}'; }

# One measured run: prints "rps cpu_us_per_req p50 p99 errors"; the CPU of
# every PID given (edge and connector for the tunnel path) is summed. Extra
# wrk arguments (headers) come from the array WRK_ARGS when it is set.
run() {
    local url=$1 pid=$2
    local extra=(${WRK_ARGS[@]+"${WRK_ARGS[@]}"})
    wrk -t1 -c"$CONNS" -d1s ${extra[@]+"${extra[@]}"} "$url" >/dev/null 2>&1 || true   # warm-up
    local before after out
    # shellcheck disable=SC2086 # $pid may hold several PIDs
    before=$("$CPU" $pid)
    out=$(taskset -c 1 wrk -t1 -c"$CONNS" -d"${DURATION}s" --latency ${extra[@]+"${extra[@]}"} "$url")
    # shellcheck disable=SC2086
    after=$("$CPU" $pid)
    local reqs rps p50 p99 errs
    reqs=$(echo "$out" | awk '/requests in/ {print $1}')
    rps=$(echo "$out" | awk '/Requests\/sec/ {print $2}')
    p50=$(echo "$out" | awk '$1=="50%" {print $2}')
    p99=$(echo "$out" | awk '$1=="99%" {print $2}')
    errs=$(echo "$out" | awk '/Non-2xx|Socket errors/ {s=s $0 "; "} END {print (s=="" ? "0" : s)}')
    local cpu_per
    cpu_per=$(awk -v a="$after" -v b="$before" -v n="$reqs" 'BEGIN {printf "%.2f", (a-b)/n}')
    echo "$rps $cpu_per $p50 $p99 $errs"
}

# Signs in to an `oidc` app at the demo OpenID provider as a browser does:
# the app sends us to the provider, we post the login form (user `bench`),
# the provider sends us back to the callback, which sets the session
# cookie. The edge fetches the provider in the background, so the first
# tries may get 503. sign_in URL APP IDP_PORT PASSWORD EDGE_LOG prints
# "name=value" of the app's session cookie.
sign_in() {
    local jar="$WORK/jar-$2" code="" login
    for _ in $(seq 1 50); do
        code=$(curl -sk -c "$jar" -b "$jar" -H 'Accept: text/html' -L -o "$WORK/form.html" -w '%{http_code}' \
            "$1" || true)
        [ "$code" = 200 ] && grep -q 'name="request"' "$WORK/form.html" && break
        sleep 0.2
    done
    login=$(sed -n 's/.*name="request" value="\([^"]*\)".*/\1/p' "$WORK/form.html")
    [ -n "$login" ] || { echo "the sign-in to $2 did not reach the provider's login form" >&2; cat "$5" >&2; return 1; }
    curl -sk -c "$jar" -b "$jar" -L -o /dev/null --data-urlencode "request=$login" -d login=bench \
        --data-urlencode "password=$4" "http://127.0.0.1:$3/login"
    awk -v n="postern-$2" '$6 ~ n"$" {print $6 "=" $7}' "$jar"
}

# Enrolls a connector with a tunnel edge and starts it:
# start_connector ADMIN_PORT EDGE_STATE_DIR TUNNEL_PORT NAME [CPUS]. The
# connector keeps its state in $WORK/NAME, reads $WORK/NAME.toml, logs to
# $WORK/logs/NAME.out and runs on CPUS (taskset) when given; its PID is
# left in CONNECTOR_PID.
start_connector() {
    local token pin=()
    [ -n "${5:-}" ] && pin=(taskset -c "$5")
    token=$("$POSTERN" tokens --admin "127.0.0.1:$1" --state-dir "$2" --json create --group default \
        | sed -n 's/.*"token": *"\([^"]*\)".*/\1/p')
    "$POSTERN" connector register --edge "127.0.0.1:$3" --token "$token" --state-dir "$WORK/$4" >/dev/null
    POSTERN_LOG=warn "${pin[@]}" "$POSTERN" connector --state-dir "$WORK/$4" --config "$WORK/$4.toml" \
        > "$WORK/logs/$4.out" 2>&1 &
    PIDS+=($!)
    CONNECTOR_PID=$!
}
