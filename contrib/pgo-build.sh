#!/usr/bin/env bash
# Builds the release binary with profile-guided optimisation (PGO).
#
#   contrib/pgo-build.sh          # writes target/pgo/portico
#
# An instrumented build serves a short mixed load through two nginx backends
# on loopback: TLS and plain HTTP/1.1, h2, 1 MiB bodies, uploads with a
# Content-Length and chunked, gzip'd (chunked) answers, full handshakes with
# ECDSA and RSA certificates, a sticky (JSESSIONID) pool, an ip_hash pool, a
# redirect and an access log. LLVM then builds portico again from that profile,
# laying the hot paths out together and inlining along them: 18% fewer
# instructions per plain proxied request, 0.82x the user CPU and 0.92x the
# total in the middle of three paired batches (docs/performance-log.md, step 32). What the load does not reach
# is treated as cold (laid out apart, inlined less): WebSocket tunnels, h2c,
# the admin listener and the Redis sticky store are not in it. A feature that
# runs hot in production belongs in the load below.
#
# Needs rustup (for llvm-profdata, from the llvm-tools component), and nginx,
# wrk, h2load, openssl and curl (installed with apt when missing, as root).
# Environment: PGO_DIR (target/pgo), the build's scratch and output directory.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
OUT=${PGO_DIR:-$ROOT/target/pgo}
WORK=$OUT/train
log() { printf '[%s] pgo-build: %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { printf 'pgo-build: error: %b\n' "$*" >&2; exit 1; }

# --- tools ------------------------------------------------------------------------

missing=()
for pair in nginx:nginx wrk:wrk h2load:nghttp2-client openssl:openssl curl:curl; do
    command -v "${pair%%:*}" >/dev/null 2>&1 || missing+=("${pair#*:}")
done
if ((${#missing[@]})); then
    [[ $EUID -eq 0 ]] || die "missing ${missing[*]}: install them, or run as root to have apt do it"
    log "installing with apt: ${missing[*]}"
    apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}" >/dev/null \
        || die "apt-get install ${missing[*]} failed"
fi
command -v rustup >/dev/null 2>&1 || die "rustup is not on PATH: llvm-profdata comes from its llvm-tools component"
rustup component add llvm-tools >/dev/null 2>&1 || rustup component add llvm-tools-preview >/dev/null 2>&1 \
    || die "rustup could not add the llvm-tools component"
HOST=$(rustc -vV | awk '/^host:/{print $2}')
PROFDATA=$(rustc --print sysroot)/lib/rustlib/$HOST/bin/llvm-profdata
[[ -x $PROFDATA ]] || die "no llvm-profdata at $PROFDATA after adding llvm-tools"

# --- the instrumented build -------------------------------------------------------------
# --target keeps RUSTFLAGS off build scripts and proc macros: only portico
# itself is instrumented, and only its runs write profiles.

rm -rf "$WORK" && mkdir -p "$WORK/profiles" "$WORK/www" "$WORK/tmp"
log "instrumented build (cargo build --release, -Cprofile-generate)"
(cd "$ROOT" && RUSTFLAGS="-Cprofile-generate=$WORK/profiles" \
    cargo build --release -q --target "$HOST" --target-dir "$OUT/generate") || die "the instrumented build failed"
GEN=$OUT/generate/$HOST/release/portico

# --- backends and the instrumented proxy --------------------------------------------------

PIDS=()
cleanup() {
    local p
    for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
}
trap cleanup EXIT

# port_open, alloc_port, wait_port
source "$ROOT/benches/load/common.sh"

"$GEN" cert --name localhost --out "$WORK/ec" >/dev/null
"$GEN" cert --name localhost --rsa 2048 --out "$WORK/rsa" >/dev/null
head -c 128 /dev/zero | tr '\0' x >"$WORK/www/small"
head -c 1048576 /dev/urandom >"$WORK/www/1m"
head -c 65536 /dev/urandom >"$WORK/upload"

alloc_port BE1; alloc_port BE1S; alloc_port BE2; alloc_port BE2S
alloc_port TLS; alloc_port RSA; alloc_port PLAIN; alloc_port REDIRECT
for i in 1 2; do
    http=BE$i https=BE${i}S
    cat >"$WORK/be$i.conf" <<EOF
$([[ $EUID -eq 0 ]] && echo "user root;")
worker_processes 1;
daemon off;
pid $WORK/be$i.pid;
error_log $WORK/be$i.err warn;
events { worker_connections 4096; }
http {
    access_log off;
    default_type application/octet-stream;
    keepalive_requests 1000000;
    client_body_temp_path $WORK/tmp/body;
    proxy_temp_path $WORK/tmp/proxy;
    fastcgi_temp_path $WORK/tmp/fastcgi;
    uwsgi_temp_path $WORK/tmp/uwsgi;
    scgi_temp_path $WORK/tmp/scgi;
    gzip on;
    gzip_types application/octet-stream;
    gzip_min_length 0;
    server {
        listen 127.0.0.1:${!http};
        listen 127.0.0.1:${!https} ssl;
        ssl_certificate $WORK/ec/localhost.crt;
        ssl_certificate_key $WORK/ec/localhost.key;
        root $WORK/www;
        location = /login { add_header Set-Cookie "JSESSIONID=node$i\$request_id; Path=/; HttpOnly"; return 200 "node $i\n"; }
        # Read the whole upload before answering, as applications do
        # (return would answer at once, before the body is read).
        location = /upload {
            client_body_buffer_size 128k;
            proxy_pass http://127.0.0.1:${!http}/small;
            proxy_method GET;
        }
    }
}
EOF
    nginx -p "$WORK" -c "$WORK/be$i.conf" >"$WORK/be$i.out" 2>&1 &
    PIDS+=($!)
    wait_port "${!http}" "$!" "$WORK/be$i.err"
    wait_port "${!https}" "$!" "$WORK/be$i.err"
done

cat >"$WORK/portico.toml" <<EOF
[runtime]
worker_threads = 1
error_log_level = "warn"

[upstream.tls]
servers = ["127.0.0.1:$BE1S", "127.0.0.1:$BE2S"]
tls = true
tls_verify = false

[upstream.plain]
servers = ["127.0.0.1:$BE1", "127.0.0.1:$BE2"]

[upstream.sticky]
servers = ["127.0.0.1:$BE1S", "127.0.0.1:$BE2S"]
tls = true
tls_verify = false
[upstream.sticky.sticky]
learn = "JSESSIONID"

[upstream.hashed]
servers = ["127.0.0.1:$BE1", "127.0.0.1:$BE2"]
balance = "ip_hash"

[[server]]
listen = ["127.0.0.1:$TLS"]
server_name = ["localhost"]
tls = { cert = "$WORK/ec/localhost.crt", key = "$WORK/ec/localhost.key" }
proxy_pass = "tls"
access_log = "$WORK/access.log"

[[server]]
listen = ["127.0.0.1:$TLS"]
server_name = ["sticky.localhost"]
tls = { cert = "$WORK/ec/localhost.crt", key = "$WORK/ec/localhost.key" }
proxy_pass = "sticky"

[[server]]
listen = ["127.0.0.1:$RSA"]
server_name = ["localhost"]
tls = { cert = "$WORK/rsa/localhost.crt", key = "$WORK/rsa/localhost.key" }
proxy_pass = "tls"

[[server]]
listen = ["127.0.0.1:$PLAIN"]
server_name = ["localhost"]
proxy_pass = "plain"

[[server]]
listen = ["127.0.0.1:$PLAIN"]
server_name = ["hashed.localhost"]
proxy_pass = "hashed"

[[server]]
listen = ["127.0.0.1:$REDIRECT"]
server_name = ["localhost"]
redirect = "https://localhost:$TLS\$request_uri"
EOF
"$GEN" check -c "$WORK/portico.toml" >/dev/null || die "portico check rejects $WORK/portico.toml"
"$GEN" run -c "$WORK/portico.toml" >"$WORK/portico.out" 2>&1 &
PROXY=$!
PIDS+=("$PROXY")
for port in "$TLS" "$RSA" "$PLAIN" "$REDIRECT"; do wait_port "$port" "$PROXY" "$WORK/portico.out"; done

# --- the training load --------------------------------------------------------------------

# load NAME COMMAND...: one step of the load; it must succeed.
load() {
    local name=$1
    shift
    "$@" >"$WORK/load-$name.out" 2>&1 || die "training step '$name' failed: $*\n$(tail -n 5 "$WORK/load-$name.out")"
    if [[ $1 == wrk ]]; then
        grep -q 'Non-2xx or 3xx' "$WORK/load-$name.out" \
            && die "training step '$name' got error answers:\n$(cat "$WORK/load-$name.out")"
        grep -q 'Socket errors' "$WORK/load-$name.out" \
            && die "training step '$name' had socket errors:\n$(cat "$WORK/load-$name.out")"
    fi
    return 0
}
log "training load (about 30 s)"
cat >"$WORK/post.lua" <<EOF
wrk.method = "POST"
local f = io.open("$WORK/upload", "rb")
wrk.body = f:read("*a")
f:close()
EOF
cookie=$(curl -sk -o /dev/null -c - -H 'Host: sticky.localhost' "https://127.0.0.1:$TLS/login" | awk '$6 == "JSESSIONID" {print $7}')
[[ -n $cookie ]] || die "the sticky pool's /login set no JSESSIONID"
load tls wrk -t1 -c64 -d4s "https://127.0.0.1:$TLS/small"
load plain wrk -t1 -c64 -d4s -H 'Host: localhost' "http://127.0.0.1:$PLAIN/small"
load h2 h2load -c16 -m10 -D3 "https://127.0.0.1:$TLS/small"
load large wrk -t1 -c16 -d2s "https://127.0.0.1:$TLS/1m"
load gzip wrk -t1 -c16 -d2s -H 'Accept-Encoding: gzip' "https://127.0.0.1:$TLS/1m"
load upload wrk -t1 -c16 -d2s -s "$WORK/post.lua" "https://127.0.0.1:$TLS/upload"
load sticky wrk -t1 -c16 -d2s -H 'Host: sticky.localhost' -H "Cookie: JSESSIONID=$cookie" "https://127.0.0.1:$TLS/small"
load hashed wrk -t1 -c16 -d2s -H 'Host: hashed.localhost' "http://127.0.0.1:$PLAIN/small"
load redirect wrk -t1 -c16 -d1s "http://127.0.0.1:$REDIRECT/small"
load handshakes-ecdsa openssl s_time -connect "127.0.0.1:$TLS" -new -time 2 -www /small
load handshakes-rsa openssl s_time -connect "127.0.0.1:$RSA" -new -time 2 -www /small
for _ in $(seq 50); do
    load chunked-upload curl -sf -o /dev/null -H 'Transfer-Encoding: chunked' --data-binary @"$WORK/upload" \
        "http://127.0.0.1:$PLAIN/upload"
done
# The profile is written when the process exits: a drain, as systemd stops it.
kill -TERM "$PROXY"
wait "$PROXY" || die "the instrumented portico exited with an error on SIGTERM; see $WORK/portico.out"
ls "$WORK"/profiles/*.profraw >/dev/null 2>&1 || die "the instrumented portico wrote no profile into $WORK/profiles"
"$PROFDATA" merge -o "$WORK/portico.profdata" "$WORK"/profiles/*.profraw || die "llvm-profdata merge failed"

# --- the optimised build ------------------------------------------------------------------

log "optimised build (cargo build --release, -Cprofile-use)"
# cargo does not see a new profile behind the same RUSTFLAGS and would keep
# what the last profile built: every crate is built again from this one.
rm -rf "$OUT/use"
(cd "$ROOT" && RUSTFLAGS="-Cprofile-use=$WORK/portico.profdata" \
    cargo build --release -q --target "$HOST" --target-dir "$OUT/use") || die "the optimised build failed"
cp "$OUT/use/$HOST/release/portico" "$OUT/portico"
log "wrote $OUT/portico"
