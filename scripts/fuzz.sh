#!/usr/bin/env bash
# Runs every fuzz target of fuzz/ (docs/fuzzing.md) for SECONDS each (default 60) and prints
# one line per target: runs, coverage, result. Exits non-zero if any target crashed, naming
# the input that did it (kept under fuzz/artifacts/<target>/).
#
#   scripts/fuzz.sh [SECONDS]
#
# Builds with the installed nightly toolchain (cargo-fuzz needs it), in its own target
# directory ($HOME/.cache/mpc/fuzz-target, or MPC_FUZZ_TARGET_DIR) so that the workspace's
# build is never invalidated. With MPC_CARGO_LOCK=<file>, the build (only) waits for that
# lock, so that fuzzing does not hold up other builds. The committed seeds in
# fuzz/corpus/<target>/ are copied to a temporary working corpus: libFuzzer never writes
# into the repository's corpus.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

seconds=${1:-60}
if ! [[ $seconds =~ ^[1-9][0-9]*$ ]]; then
    echo "usage: $0 [SECONDS]  (seconds per target, default 60)" >&2
    exit 2
fi

if ! rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
    echo "fuzz: skipped: no nightly toolchain (cargo-fuzz needs one; see docs/fuzzing.md)"
    exit 0
fi
if ! command -v cargo-fuzz >/dev/null 2>&1; then
    echo "fuzz: installing cargo-fuzz"
    cargo install --locked cargo-fuzz
fi

# Not the workspace's target directory (scripts/test.sh exports that one).
export CARGO_TARGET_DIR=${MPC_FUZZ_TARGET_DIR:-$HOME/.cache/mpc/fuzz-target}
locked() {
    if [[ -n ${MPC_CARGO_LOCK:-} ]]; then
        flock "$MPC_CARGO_LOCK" "$@"
    else
        "$@"
    fi
}

# Debug assertions and overflow checks on (-a): an overflow on fuzzed input is a finding.
echo "fuzz: building every target (nightly, $CARGO_TARGET_DIR)"
locked cargo +nightly fuzz build -a
targets=$(cargo +nightly fuzz list)
bin_dir=$CARGO_TARGET_DIR/x86_64-unknown-linux-gnu/release

work=$(mktemp -d "${TMPDIR:-/tmp}/mpc-fuzz.XXXXXX")
trap 'rm -rf "$work"' EXIT

failed=0
printf '%-24s %12s %8s %8s  %s\n' target runs cov ft result
for target in $targets; do
    corpus=$work/corpus/$target
    artifacts=$root/fuzz/artifacts/$target
    log=$work/$target.log
    mkdir -p "$corpus" "$artifacts"
    if [[ -d fuzz/corpus/$target ]]; then
        cp -R "fuzz/corpus/$target/." "$corpus/"
    fi
    status=0
    "$bin_dir/$target" "$corpus" \
        -max_total_time="$seconds" -max_len=4096 -timeout=60 -rss_limit_mb=2048 \
        -print_final_stats=1 -artifact_prefix="$artifacts/" >"$log" 2>&1 || status=$?
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
    # libFuzzer's status lines: "#<runs> <event> cov: <edges> ft: <features> corp: ...".
    status_line=$(grep -E '^#[0-9]+' "$log" | grep 'cov: ' | tail -n 1 || true)
    cov=$(grep -o 'cov: [0-9]*' <<<"$status_line" | cut -d' ' -f2 || true)
    ft=$(grep -o 'ft: [0-9]*' <<<"$status_line" | cut -d' ' -f2 || true)
    crash=$(sed -n 's/.*Test unit written to \(.*\)$/\1/p' "$log" | tail -n 1)
    if [[ $status -eq 0 ]]; then
        result=ok
    else
        failed=1
        result="FAILED (exit $status)"
        cp "$log" "$artifacts/last-failure.log"
    fi
    printf '%-24s %12s %8s %8s  %s\n' "$target" "${runs:-?}" "${cov:-?}" "${ft:-?}" "$result"
    if [[ $status -ne 0 ]]; then
        # The panic and its message, or libFuzzer's reason (timeout, out of memory).
        grep -m 1 -A 3 'panicked at' "$log" | sed 's/^/    /' || true
        grep -m 2 -E 'ERROR: libFuzzer|SUMMARY' "$log" | sed 's/^/    /' || true
        if [[ -n $crash ]]; then
            echo "    input: $crash"
            echo "    replay: $bin_dir/$target $crash"
        fi
        echo "    log: $artifacts/last-failure.log"
    fi
done
exit "$failed"
