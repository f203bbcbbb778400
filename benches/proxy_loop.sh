#!/usr/bin/env bash
# Runs benches/proxy_loop.rs: portico alone in one process (optionally under a
# tool), the backend and client in another.
#   benches/proxy_loop.sh requests N [CONNS]   # callgrind instruction count of the proxy process
#   benches/proxy_loop.sh wall N [CONNS]       # no tool: wall time of N requests
#   benches/proxy_loop.sh idle N               # VmRSS delta of N idle TLS connections
set -euo pipefail
cd "$(dirname "$0")/.."
mode=${1:?mode}; n=${2:-20000}; conns=${3:-1}
bin=$(cargo bench --bench proxy_loop --no-run --message-format=json 2>/dev/null |
    python3 -c 'import json,sys
for l in sys.stdin:
    m=json.loads(l)
    if m.get("reason")=="compiler-artifact" and m["target"]["name"]=="proxy_loop" and m.get("executable"): print(m["executable"])' | tail -1)
dir=$(mktemp -d /tmp/proxy_loop.XXXXXX)
trap 'exec 3>&-; rm -rf "$dir"' EXIT
"$bin" certs "$dir"
mkfifo "$dir/stdin"
case $mode in
    requests) tool=(valgrind --tool=callgrind --callgrind-out-file="$dir/cg.out") ;;
    *) tool=() ;;
esac
"${tool[@]}" "$bin" proxy "$dir" <"$dir/stdin" >"$dir/proxy.out" 2>"$dir/proxy.err" &
proxy=$!
exec 3>"$dir/stdin"
until grep -q READY "$dir/proxy.out" 2>/dev/null; do sleep 0.2; done
pid=$(awk '/READY/{print $2}' "$dir/proxy.out")
case $mode in
    idle) "$bin" idle "$dir" "$n" "$pid" ;;
    *) "$bin" drive "$dir" "$n" "$conns" ;;
esac
if [[ $mode == wall ]]; then
    # utime + stime of the proxy process, in clock ticks.
    read -r -a stat <"/proc/$pid/stat"
    echo "proxy CPU: $(( (stat[13] + stat[14]) * 1000 / $(getconf CLK_TCK) )) ms for $n requests"
fi
exec 3>&-
wait "$proxy"
if [[ $mode == requests ]]; then
    total=$(grep -E '^(summary|totals):' "$dir/cg.out" | tail -1 | awk '{print $2}')
    echo "proxy process: $total instructions (Ir) for $n requests"
    if [[ -n ${KEEP:-} ]]; then cp "$dir/cg.out" "$KEEP"; fi
fi
