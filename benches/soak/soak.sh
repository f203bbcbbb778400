#!/usr/bin/env bash
# Soak: mixed good and bad traffic through portico while a backend is killed
# and restarted, portico is reloaded (SIGHUP, once with a broken config) and
# its access logs are reopened (SIGUSR1). Loopback only, bounded in time.
#
#   benches/soak/soak.sh               # 180 s of traffic, writes docs/soak.md
#
# Environment: SOAK_SECONDS (180), OUT (docs/soak.md), KEEP_WORK=1 keeps the
# scratch directory. Exits 1 if a good request failed for any reason other
# than the killed backend, bad traffic got a 5xx (or was not closed), portico
# died, reloads were not counted as sent, or fds did not return to baseline.
# See benches/soak/README.md.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
SOAK_SECONDS=${SOAK_SECONDS:-180}
OUT=${OUT:-$ROOT/docs/soak.md}
KILL_EVERY=20      # s between backend kills
KILL_DOWN=5        # s a killed backend stays down
HUP_EVERY=30       # s between SIGHUPs
SAMPLE_EVERY=10    # s between RSS/fd samples
FAIL_TIMEOUT=3     # s, the upstream servers' fail_timeout
HEADER_TIMEOUT=5   # s, client_header_timeout (slowloris must be closed by then)
KEEPALIVE=8        # idle upstream connections kept per server
FD_TOLERANCE=2     # see README: the sampler's own admin connection, one late close
COMMAND="SOAK_SECONDS=$SOAK_SECONDS benches/soak/soak.sh"
STARTED=$(date +%s)
LOADAVG_START=$(cut -d" " -f1-3 /proc/loadavg)

log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { printf 'soak.sh: error: %b\n' "$*" >&2; exit 2; }

for tool in cargo python3; do
    command -v "$tool" >/dev/null 2>&1 || die "'$tool' is not on PATH"
done
((SOAK_SECONDS >= 30)) || die "SOAK_SECONDS must be at least 30"

# --- processes ---------------------------------------------------------------------

WORK=$(mktemp -d /tmp/portico-soak.XXXXXX)
declare -A PIDS=()
cleanup() {
    local rc=$? p
    for p in "${!PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    for p in "${!PIDS[@]}"; do
        for _ in $(seq 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$p" 2>/dev/null || true
    done
    wait 2>/dev/null || true
    if [[ ${KEEP_WORK:-0} == 1 || $rc -ne 0 ]]; then
        log "scratch directory kept: $WORK"
    else
        rm -rf "$WORK"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

track() { PIDS[$1]=1; }
untrack() { unset "PIDS[$1]"; }
# port_open, alloc_port, wait_port, build_release
source "$HERE/../load/common.sh"

py() { python3 "$HERE/soak.py" "$@"; }
now() { echo "$EPOCHREALTIME"; }
event() { # event KIND [key value]...: one JSON line in events.jsonl
    local line="{\"t\":$(now),\"ev\":\"$1\"" k v
    shift
    while (($#)); do
        k=$1 v=$2
        shift 2
        if [[ $v =~ ^[0-9]+$ ]]; then line+=",\"$k\":$v"; else line+=",\"$k\":\"$v\""; fi
    done
    echo "$line}" >>"$WORK/events.jsonl"
}

# --- build, certificates, backends ------------------------------------------------------

log "building portico (cargo build --release)"
build_release PORTICO
# The revision built, read now: the tree may change while the run goes on.
BUILT_FROM="git $(git -C "$ROOT" rev-parse --short HEAD)$(git -C "$ROOT" diff --quiet HEAD -- src Cargo.toml Cargo.lock || echo ' (with uncommitted changes)')"
[[ -x $PORTICO ]] || die "no binary at $PORTICO after the build"
mkdir -p "$WORK/certs" "$WORK/logs"
"$PORTICO" cert --name localhost --out "$WORK/certs" >/dev/null || die "portico cert failed"
: >"$WORK/events.jsonl"
: >"$WORK/samples.jsonl"

NAMES=(node-a node-b node-c)
BE_PORT=() BE_PID=()
for i in 0 1 2; do alloc_port "BE_PORT[$i]"; done
start_backend() {
    local i=$1
    python3 "$HERE/soak.py" backend "${NAMES[$i]}" "${BE_PORT[$i]}" >>"$WORK/${NAMES[$i]}.log" 2>&1 &
    BE_PID[$i]=$!
    track "${BE_PID[$i]}"
    wait_port "${BE_PORT[$i]}" "${BE_PID[$i]}" "$WORK/${NAMES[$i]}.log"
}
for i in 0 1 2; do start_backend "$i"; done
log "backends: ${NAMES[*]} on ${BE_PORT[*]}"

# --- portico ---------------------------------------------------------------------------

alloc_port TLS_PORT; alloc_port PLAIN_PORT; alloc_port ADMIN_PORT
# write_config VARIANT: A and B differ in a header and a timeout; "broken" must be refused.
write_config() {
    local variant=$1 read_timeout=10s proxy=app
    [[ $variant == B ]] && read_timeout=12s
    [[ $variant == broken ]] && proxy=no_such_upstream
    local server_headers
    server_headers=$(printf '[server.headers]\nHost = "$http_host"\nX-Forwarded-For = "$proxy_add_x_forwarded_for"\nX-Forwarded-Proto = "$scheme"\nX-Soak-Config = "%s"\n' "$variant")
    cat <<EOF
# soak configuration $variant (written by benches/soak/soak.sh)
[runtime]
worker_threads = 2
error_log = "logs/error.log"
error_log_level = "info"
pid_file = "portico.pid"
shutdown_timeout = "5s"
client_header_timeout = "${HEADER_TIMEOUT}s"
keepalive_timeout = "30s"
max_request_header_size = "16k"
client_max_body_size = "1m"

[admin]
listen = "127.0.0.1:$ADMIN_PORT"

[upstream.app]
servers = [
  { address = "127.0.0.1:${BE_PORT[0]}", max_fails = 1, fail_timeout = "${FAIL_TIMEOUT}s" },
  { address = "127.0.0.1:${BE_PORT[1]}", max_fails = 1, fail_timeout = "${FAIL_TIMEOUT}s" },
  { address = "127.0.0.1:${BE_PORT[2]}", max_fails = 1, fail_timeout = "${FAIL_TIMEOUT}s" },
]
keepalive = $KEEPALIVE
connect_timeout = "2s"
read_timeout = "$read_timeout"
send_timeout = "10s"

[upstream.app.sticky]
learn = "JSESSIONID"
timeout = "10m"

[[server]]
listen = ["127.0.0.1:$TLS_PORT"]
server_name = ["localhost"]
tls = { cert = "certs/localhost.crt", key = "certs/localhost.key" }
proxy_pass = "$proxy"
access_log = "logs/access-tls.log"

$server_headers

[[server]]
listen = ["127.0.0.1:$PLAIN_PORT"]
server_name = ["localhost"]
proxy_pass = "app"
access_log = "logs/access-plain.log"

$server_headers
EOF
}
for v in A B broken; do write_config "$v" >"$WORK/config-$v.toml"; done
cp "$WORK/config-A.toml" "$WORK/portico.toml"
"$PORTICO" check -c "$WORK/config-A.toml" >/dev/null || die "config A does not check:\n$("$PORTICO" check -c "$WORK/config-A.toml" 2>&1)"
"$PORTICO" check -c "$WORK/config-B.toml" >/dev/null || die "config B does not check"
if "$PORTICO" check -c "$WORK/config-broken.toml" >/dev/null 2>&1; then die "the broken config passes portico check"; fi

NO_COLOR=1 "$PORTICO" run -c "$WORK/portico.toml" >"$WORK/portico.stderr" 2>&1 &
PORTICO_PID=$!
track "$PORTICO_PID"
wait_port "$TLS_PORT" "$PORTICO_PID" "$WORK/portico.stderr"
wait_port "$PLAIN_PORT" "$PORTICO_PID" "$WORK/portico.stderr"
wait_port "$ADMIN_PORT" "$PORTICO_PID" "$WORK/portico.stderr"
log "portico $PORTICO_PID: TLS $TLS_PORT, plain $PLAIN_PORT, admin $ADMIN_PORT"

sample() { py proc "$1" "$PORTICO_PID" "${BE_PORT[@]}" >>"$WORK/samples.jsonl" 2>/dev/null || true; }
settled() { py settled "$WORK/samples.jsonl" "$KEEPALIVE" 3 "$FD_TOLERANCE"; }

# --- warm-up, baseline -----------------------------------------------------------------------

log "warm-up: 5 s of the same traffic"
py drive "$WORK/warmup.jsonl" 5 "$PLAIN_PORT" "$TLS_PORT" "$HEADER_TIMEOUT" 2>>"$WORK/drive.stderr" \
    || die "the warm-up traffic did not finish:\n$(tail "$WORK/drive.stderr")"
for _ in $(seq 20); do
    sample probe
    [[ $(tail -n1 "$WORK/samples.jsonl" | python3 -c 'import json,sys; print(json.load(sys.stdin)["client"])') == 0 ]] && break
    sleep 0.5
done
sample baseline
log "baseline: $(tail -n1 "$WORK/samples.jsonl")"

# --- traffic and chaos -----------------------------------------------------------------------

T0=$(now)
log "traffic for $SOAK_SECONDS s: kill a backend every $KILL_EVERY s, SIGHUP every $HUP_EVERY s"
py drive "$WORK/requests.jsonl" "$SOAK_SECONDS" "$PLAIN_PORT" "$TLS_PORT" "$HEADER_TIMEOUT" 2>>"$WORK/drive.stderr" &
DRIVE_PID=$!
track "$DRIVE_PID"
event start
elapsed() { local n=${EPOCHREALTIME/./} t0=${T0/./}; echo $(((10#${n:0:13} - 10#${t0:0:13}) / 100)); } # tenths of a second

next_kill=100 next_restart=-1 next_hup=150 next_sample=0
usr1_at=$((SOAK_SECONDS * 5 + 50)) usr1_done=0
victim=0 hups=0 restart_idx=-1
VARIANTS=(B A broken B A B A B A B A)
PORTICO_EXIT=running
while :; do
    t=$(elapsed)
    ((t >= SOAK_SECONDS * 10)) && break
    if ! kill -0 "$PORTICO_PID" 2>/dev/null; then
        wait "$PORTICO_PID" && PORTICO_EXIT="exited 0" || PORTICO_EXIT="exited $?"
        untrack "$PORTICO_PID"
        event portico_died status "$PORTICO_EXIT"
        log "portico died: $PORTICO_EXIT"
        break
    fi
    if ((t >= next_kill && next_restart < 0 && t < (SOAK_SECONDS - KILL_DOWN - 3) * 10)); then
        kill -KILL "${BE_PID[$victim]}"
        event kill port "${BE_PORT[$victim]}" node "${NAMES[$victim]}"
        log "SIGKILL ${NAMES[$victim]}"
        wait "${BE_PID[$victim]}" 2>/dev/null || true
        untrack "${BE_PID[$victim]}"
        restart_idx=$victim
        next_restart=$((t + KILL_DOWN * 10))
        next_kill=$((next_kill + KILL_EVERY * 10))
        victim=$(((victim + 1) % 3))
    fi
    if ((next_restart >= 0 && t >= next_restart)); then
        start_backend "$restart_idx"
        event restart port "${BE_PORT[$restart_idx]}" node "${NAMES[$restart_idx]}"
        log "restarted ${NAMES[$restart_idx]}"
        next_restart=-1
    fi
    if ((t >= next_hup)); then
        v=${VARIANTS[$((hups % ${#VARIANTS[@]}))]}
        cp "$WORK/config-$v.toml" "$WORK/portico.toml"
        kill -HUP "$PORTICO_PID"
        event hup config "$v"
        log "SIGHUP with config $v"
        hups=$((hups + 1))
        next_hup=$((next_hup + HUP_EVERY * 10))
        if [[ $v == broken ]]; then
            # wait for the refusal, then put the last good file back (no SIGHUP needed)
            for _ in $(seq 100); do grep -q 'reload refused' "$WORK/logs/error.log" 2>/dev/null && break; sleep 0.05; done
            # (the variant before it; runs past one pass of VARIANTS wrap round)
            cp "$WORK/config-${VARIANTS[$(((hups - 2) % ${#VARIANTS[@]}))]}.toml" "$WORK/portico.toml"
        fi
    fi
    if ((usr1_done == 0 && t >= usr1_at)); then
        for f in "$WORK"/logs/access-*.log; do mv "$f" "$f.1"; done
        kill -USR1 "$PORTICO_PID"
        event usr1
        log "SIGUSR1 after renaming the access logs"
        usr1_done=1
    fi
    if ((t >= next_sample)); then
        sample during
        next_sample=$((next_sample + SAMPLE_EVERY * 10))
    fi
    sleep 0.2
done
if [[ $next_restart -ge 0 ]]; then
    start_backend "$restart_idx"
    event restart port "${BE_PORT[$restart_idx]}" node "${NAMES[$restart_idx]}"
fi
DRIVE_RC=0
wait "$DRIVE_PID" || DRIVE_RC=$?
untrack "$DRIVE_PID"
event stop
((DRIVE_RC == 0)) || log "the traffic driver exited $DRIVE_RC: $(tail -n 3 "$WORK/drive.stderr")"

# --- after: settle, sample, scrape ------------------------------------------------------------

if kill -0 "$PORTICO_PID" 2>/dev/null; then
    sample after
    for _ in $(seq 20); do
        settled && break
        sleep 0.5
        sample after
    done
    py metrics "$ADMIN_PORT" >"$WORK/metrics-final.json" || log "cannot scrape /metrics"
    log "after: $(tail -n1 "$WORK/samples.jsonl")"
fi

# --- report -------------------------------------------------------------------------------------

export META_DATE META_COMMAND META_DURATION META_PORTICO META_MACHINE META_LOADAVG META_T_START \
    META_PORTICO_EXIT META_PORTICO_STDERR_TAIL
META_DATE="$(date -u '+%Y-%m-%d %H:%M UTC') (whole run $(($(date +%s) - STARTED)) s, build included)"
META_COMMAND="\`$COMMAND\`"
META_DURATION="$SOAK_SECONDS s of traffic (after a 5 s warm-up), then up to 10 s settle"
META_PORTICO="$("$PORTICO" --version 2>&1 | head -n1), $BUILT_FROM, release build"
META_MACHINE="$(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo), $(nproc) CPUs, Linux $(uname -r); portico, backends and clients share them"
META_LOADAVG="$LOADAVG_START at start, $(cut -d" " -f1-3 /proc/loadavg) at the end"
META_T_START=$T0
META_PORTICO_EXIT=$PORTICO_EXIT
META_PORTICO_STDERR_TAIL=$(cat "$WORK/portico.stderr" "$WORK/logs/error.log" 2>/dev/null | grep -E 'ERROR|WARN|panick' | tail -n 20 || true)
python3 - "$WORK/meta.json" "$KEEPALIVE" "$FD_TOLERANCE" "$FAIL_TIMEOUT" "$HEADER_TIMEOUT" \
    "${BE_PORT[0]}:${NAMES[0]}" "${BE_PORT[1]}:${NAMES[1]}" "${BE_PORT[2]}:${NAMES[2]}" <<'EOF'
import json, os, sys
out, keepalive, tol, fail_timeout, header_timeout, *backends = sys.argv[1:]
meta = {k[5:].lower(): v for k, v in os.environ.items() if k.startswith("META_")}
meta.update(keepalive=keepalive, fd_tolerance=tol, fail_timeout_s=fail_timeout, header_timeout_s=header_timeout,
            backend_ports=[int(b.split(":")[0]) for b in backends],
            backend_names={b.split(":")[0]: b.split(":")[1] for b in backends})
json.dump(meta, open(out, "w"), indent=1)
EOF

if [[ $PORTICO_EXIT == running ]]; then
    kill -TERM "$PORTICO_PID"
    rc=0
    wait "$PORTICO_PID" || rc=$?
    untrack "$PORTICO_PID"
    ((rc == 0)) || log "portico exited $rc on SIGTERM"
fi

RC=0
py report "$WORK" "$OUT" || RC=1
((DRIVE_RC == 0)) || RC=1
log "wrote $OUT in $(($(date +%s) - STARTED)) s; $( ((RC == 0)) && echo PASS || echo FAIL)"
exit "$RC"
