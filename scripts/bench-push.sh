#!/usr/bin/env bash
# Push latency: time from an admin API change being acknowledged to every
# worker serving the new app-table version, idle and under load.
# Prints p50 / p99 / max over N changes for each case.
#
# Usage: scripts/bench-push.sh [CHANGES]
set -euo pipefail
cd "$(dirname "$0")/.."
CHANGES=${1:-200}
BASE=${BENCH_BASE_PORT:-18100}
command -v wrk >/dev/null 2>&1 || { echo "needs wrk (apt-get install wrk)" >&2; exit 1; }
cargo build --release --quiet -p postern-dataplane
WORK=$(mktemp -d /tmp/postern-push.XXXXXX)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$WORK"; }
trap cleanup EXIT

python3 -m http.server --bind 127.0.0.1 $((BASE + 1)) --directory "$WORK" >/dev/null 2>&1 & PIDS+=($!)
cat > "$WORK/edge.toml" <<CONF
[edge]
workers = 2
access_log = "off"
admin_address = "127.0.0.1:$((BASE + 9))"
state_dir = "$WORK/state"

[[listener]]
address = "127.0.0.1:$((BASE + 4))"
scheme = "http"
public_port = 80

[[app]]
name = "steady"
external_url = "http://localhost/"
internal_url = "http://127.0.0.1:$((BASE + 1))/"
preauth = "passthrough"
cookie = { secure = false }
CONF
POSTERN_LOG=warn target/release/postern edge --config "$WORK/edge.toml" > "$WORK/edge.out" 2>&1 & PIDS+=($!)
for _ in $(seq 100); do grep -q "edge ready" "$WORK/edge.out" && break; sleep 0.1; done

measure() {
    python3 - "$((BASE + 9))" "$WORK/state/admin.token" "$CHANGES" "$1" <<'PY'
import http.client, json, sys, time
port, token_file, n, label = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), sys.argv[4]
token = open(token_file).read().strip()
def call(method, path, body=None):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    c.request(method, path, body=body, headers={"Authorization": "Bearer " + token})
    r = c.getresponse(); data = r.read(); c.close()
    return r.status, (json.loads(data) if data else None)
lat = []
for i in range(n):
    name = f"push{i}"
    body = json.dumps({"name": name, "external_url": f"http://{name}.example.com/",
                       "internal_url": "http://127.0.0.1:1/", "preauth": "passthrough",
                       "cookie": {"secure": False}})
    st, v = call("POST", "/v1/apps", body)
    assert st == 201, (st, v)
    acked = time.perf_counter(); want = v["version"]
    while True:
        _, h = call("GET", "/healthz")
        if all(w >= want for w in h["workers_serving"]):
            break
    lat.append((time.perf_counter() - acked) * 1000)
    call("DELETE", f"/v1/apps/{name}")
lat.sort()
q = lambda p: lat[min(len(lat) - 1, int(p * len(lat)))]
print(f"{label:<12} changes={n} p50={q(0.5):.2f}ms p99={q(0.99):.2f}ms max={lat[-1]:.2f}ms")
PY
}
measure idle
wrk -t1 -c16 -d600s -H "Host: localhost" "http://127.0.0.1:$((BASE + 4))/" >/dev/null 2>&1 & WRK=$!; PIDS+=($WRK)
sleep 1
measure "under load"
