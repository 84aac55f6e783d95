#!/usr/bin/env bash
# Builds every fuzz target with libFuzzer's coverage instrumentation and runs each for a bounded
# time, one per core at a time (CIBA_FUZZ_JOBS to choose); exits non-zero when any target crashed
# (a panic), timed out or ran out of memory, and keeps the input that did it under
# fuzz/artifacts/<target>/.
#
#   bash fuzz/run.sh [SECONDS_PER_TARGET [TARGET...]]     (default: 60 seconds, every target;
#                                                          0 builds without running)
#
# Stable Rust is enough: the instrumentation is the one cargo-fuzz asks for with
# `--sanitizer none` (LLVM's sancov pass through -C flags, `--cfg fuzzing`); only its sanitizers
# need nightly. libfuzzer-sys compiles libFuzzer itself with the C++ compiler. `--target` keeps
# these flags off build scripts and proc macros, which do not link libFuzzer.
#
# Each target starts from the seeds in fuzz/corpus/<target>/ (small files, from real requests
# and fixtures) and a working corpus under fuzz/target/corpus/<target>/ that grows from run to
# run; what libFuzzer prints goes to fuzz/target/logs/<target>.log, one summary line per target
# here.
set -euo pipefail

FUZZ="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
SECONDS_PER_TARGET="${1:-60}"
shift || true
if (($# > 0)); then
    TARGETS=("$@")
else
    mapfile -t TARGETS < <(cd "$FUZZ/fuzz_targets" && ls -- *.rs | sed 's/\.rs$//')
fi

TRIPLE="$(rustc -vV | sed -n 's/^host: //p')"
TARGET_DIR="$FUZZ/target"
RUSTFLAGS="-Cpasses=sancov-module \
-Cllvm-args=-sanitizer-coverage-level=4 \
-Cllvm-args=-sanitizer-coverage-inline-8bit-counters \
-Cllvm-args=-sanitizer-coverage-pc-table \
-Cllvm-args=-sanitizer-coverage-trace-compares \
-Cllvm-args=-sanitizer-coverage-stack-depth \
-Cllvm-args=-simplifycfg-branch-fold-threshold=0 \
--cfg fuzzing"
export RUSTFLAGS

# The dev profile (debug assertions and overflow checks on, so an overflow is a finding too):
# a release build of the AWS SDK that ciba-shared links costs minutes more than it saves here.
# Not --locked: fuzz/Cargo.lock began as the workspace's, and a dependency that ciba-shared
# gains later is added to it here rather than failing the build.
cargo build --manifest-path "$FUZZ/Cargo.toml" --target "$TRIPLE" \
    --target-dir "$TARGET_DIR" --bins

if ((SECONDS_PER_TARGET == 0)); then
    exit 0
fi

# One target per core at a time (libFuzzer's default is one process): each writes its outcome to
# a file, and the outcomes are printed in the targets' order once all have run.
JOBS="${CIBA_FUZZ_JOBS:-$(nproc)}"
run_target() {
    local target="$1"
    local binary="$TARGET_DIR/$TRIPLE/debug/$target"
    local seeds="$FUZZ/corpus/$target"
    local corpus="$TARGET_DIR/corpus/$target"
    local artifacts="$FUZZ/artifacts/$target"
    local log="$TARGET_DIR/logs/$target.log"
    local outcome="$TARGET_DIR/logs/$target.outcome"
    mkdir -p "$corpus" "$artifacts" "$(dirname "$log")"
    # New inputs go to the first directory, the working corpus, never into the seeds.
    if "$binary" -max_total_time="$SECONDS_PER_TARGET" -timeout=30 -rss_limit_mb=2048 \
        -artifact_prefix="$artifacts/" -print_final_stats=1 "$corpus" "$seeds" >"$log" 2>&1; then
        local runs cov
        runs="$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")"
        cov="$(grep -o 'cov: [0-9]*' "$log" | tail -n 1)"
        echo "fuzz $target: ${runs:-?} runs in ${SECONDS_PER_TARGET}s, ${cov:-cov: ?}, no crash" >"$outcome"
    else
        {
            echo "fuzz $target: FAILED, input kept in fuzz/artifacts/$target/; the panic and the end of $log:"
            grep -m 1 -A 1 'panicked at' "$log" || true
            tail -n 25 "$log"
        } >"$outcome"
        return 1
    fi
}

rm -f "$TARGET_DIR"/logs/*.outcome
running=0
for target in "${TARGETS[@]}"; do
    if ((running >= JOBS)); then
        wait -n || true
        running=$((running - 1))
    fi
    run_target "$target" &
    running=$((running + 1))
done

wait || true

# A target that left no outcome (killed) failed too.
failed=()
for target in "${TARGETS[@]}"; do
    outcome="$TARGET_DIR/logs/$target.outcome"
    if [[ -s "$outcome" ]]; then
        cat "$outcome"
    else
        echo "fuzz $target: FAILED, no outcome (see $TARGET_DIR/logs/$target.log)"
    fi
    if ! grep -q "^fuzz $target: .* no crash\$" "$outcome" 2>/dev/null; then
        failed+=("$target")
    fi
done

if ((${#failed[@]} > 0)); then
    echo "fuzz: ${failed[*]} failed; replay one with $TARGET_DIR/$TRIPLE/debug/<target> <artifact>"
    exit 1
fi
