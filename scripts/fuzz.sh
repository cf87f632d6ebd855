#!/usr/bin/env bash
# Runs every fuzz target in fuzz/ for SECONDS each (default 20) on stable
# Rust, without a sanitizer (`-s none`); prints executions per target and
# exits non-zero on the first crash, leaving the input in
# fuzz/artifacts/TARGET/. With RUSTC_BOOTSTRAP=1 and FUZZ_SANITIZER=address
# it runs under AddressSanitizer instead.
#
#   scripts/fuzz.sh [SECONDS] [TARGET...]
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
seconds="${1:-20}"
shift || true
sanitizer="${FUZZ_SANITIZER:-none}"
command -v cargo-fuzz >/dev/null 2>&1 || {
    echo "cargo-fuzz is not installed: cargo install --locked cargo-fuzz" >&2
    exit 2
}
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    mapfile -t targets < <(cargo fuzz list)
fi
cargo fuzz build -s "$sanitizer" -O
for t in "${targets[@]}"; do
    mkdir -p "corpus/$t"
    log="$(mktemp)"
    if ! cargo fuzz run -s "$sanitizer" -O "$t" -- -max_total_time="$seconds" \
        -print_final_stats=1 >"$log" 2>&1; then
        tail -40 "$log" >&2
        echo "fuzz target $t failed; the input is in fuzz/artifacts/$t/" >&2
        exit 1
    fi
    runs="$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo '?')"
    printf '%-16s %8s s  %12s executions  corpus %s\n' "$t" "$seconds" "$runs" \
        "$(find "corpus/$t" -type f | wc -l)"
    rm -f "$log"
done
