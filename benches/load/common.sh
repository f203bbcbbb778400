# Helpers shared by benches/load/compare.sh, benches/soak/soak.sh and
# contrib/pgo-build.sh: loopback ports and the release build (sourced; each
# defines `die MESSAGE` and ROOT, the checkout, first).

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# Below the kernel's ephemeral range (32768+ by default): a listen port there
# can collide with a client connection's local port and fail to bind.
NEXT_PORT=$((10000 + RANDOM % 15000))
# alloc_port VAR: a loopback port nobody listens on.
alloc_port() {
    while port_open "$NEXT_PORT"; do NEXT_PORT=$((NEXT_PORT + 1)); done
    printf -v "$1" '%s' "$NEXT_PORT"
    NEXT_PORT=$((NEXT_PORT + 1))
}

# wait_port PORT PID LOG: poll until PORT accepts, failing if PID exits first.
wait_port() {
    local port=$1 pid=$2 logf=$3
    for _ in $(seq 400); do
        port_open "$port" && return 0
        kill -0 "$pid" 2>/dev/null || die "process $pid exited before listening on port $port; $logf says:\n$(tail -n 30 "$logf" 2>/dev/null)"
        sleep 0.025
    done
    die "nothing listens on port $port after 10 s (pid $pid); $logf says:\n$(tail -n 30 "$logf" 2>/dev/null)"
}

# build_release VAR: `cargo build --release` of the checkout; sets VAR to the
# binary, where cargo put it (CARGO_TARGET_DIR, if set, is relative to ROOT).
build_release() {
    (cd "$ROOT" && cargo build --release -q) || die "cargo build --release failed"
    local dir=${CARGO_TARGET_DIR:-target}
    [[ $dir == /* ]] || dir=$ROOT/$dir
    printf -v "$1" '%s' "$dir/release/portico"
}
