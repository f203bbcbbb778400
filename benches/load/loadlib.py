#!/usr/bin/env python3
"""Helper for benches/load/compare.sh: parse tool output, hold idle TLS
connections, and write docs/performance.md. Python 3 standard library only.

Every measured figure goes through results.tsv (round, target, scenario,
metric, value); the report prints medians of those rows and nothing else.
"""

import json
import os
import re
import socket
import ssl
import statistics
import sys
import time
from datetime import datetime, timezone

RESULTS = os.environ.get("RESULTS", "results.tsv")


def put(rnd, target, scen, metric, value):
    with open(RESULTS, "a") as f:
        f.write(f"{rnd}\t{target}\t{scen}\t{metric}\t{value}\n")


def note(text):
    """A failure or error for the report's "Failures" section (NOTES file)."""
    sys.stderr.write(text + "\n")
    path = os.environ.get("NOTES")
    if path:
        with open(path, "a") as f:
            f.write(text + "\n\n")


# --- parsers -----------------------------------------------------------------


def put_cpu(rnd, target, scen, ticks, sys_ticks, hz, requests, load_ticks=-1, wall_us=0, accepts=-1):
    """The proxy's CPU (and its kernel part) per 10k requests; a negative tick
    count means there was no proxy to read (the direct runs). With the time the
    ticks were read over, also how busy the proxy's CPU and the load CPU (wrk and the
    backends) were, and the load CPU's time per 10k requests: which of the two
    bound the run. With the backends' accepted connections, those per 1k
    requests: through a proxy, the upstream connections it opened."""
    if requests <= 0:
        return
    if int(accepts) >= 0:
        put(rnd, target, scen, "be_accepts_per_1k", int(accepts) / requests * 1000)
    hz = float(hz)
    for metric, t in (("cpu_s_per_10k", int(ticks)), ("sys_s_per_10k", int(sys_ticks)),
                      ("load_s_per_10k", int(load_ticks))):
        if t >= 0:
            put(rnd, target, scen, metric, t / hz / requests * 10000)
    if int(wall_us) > 0:
        for metric, t in (("proxy_busy_pct", int(ticks)), ("load_busy_pct", int(load_ticks))):
            if t >= 0:
                put(rnd, target, scen, metric, t / hz / (int(wall_us) / 1e6) * 100)


def cmd_wrk(args):
    """wrk ROUND TARGET SCEN FILE CPU_TICKS HZ [SYS_TICKS [LOAD_TICKS WALL_US ACCEPTS]]: the WRKJSON line of our Lua done()."""
    rnd, target, scen, path, ticks, hz = args[:6]
    sys_ticks = int(args[6]) if len(args) > 6 else -1
    load_ticks, wall_us, accepts = args[7:10] if len(args) > 9 else (-1, 0, -1)
    text = open(path).read()
    m = re.search(r"^WRKJSON (\{.*\})$", text, re.M)
    if not m:
        note(f"**{target}, scenario {scen}, round {rnd}: wrk gave no result.** wrk printed:\n\n```\n{text[-2000:]}\n```")
        put(rnd, target, scen, "failed", 1)
        return 1
    s = json.loads(m.group(1))
    secs = s["duration_us"] / 1e6
    errors = s["connect"] + s["read"] + s["write"] + s["timeout"] + s["status"]
    put(rnd, target, scen, "rps", s["requests"] / secs)
    put(rnd, target, scen, "mib_s", s["bytes"] / secs / 1048576)
    put(rnd, target, scen, "p50_ms", s["p50_us"] / 1000)
    put(rnd, target, scen, "p99_ms", s["p99_us"] / 1000)
    put(rnd, target, scen, "requests", s["requests"])
    put(rnd, target, scen, "errors", errors)
    put_cpu(rnd, target, scen, ticks, sys_ticks, hz, s["requests"], load_ticks, wall_us, accepts)
    if errors:
        printed = re.sub(r"^WRKJSON .*$", "", text, flags=re.M).strip()
        note(f"**{target}, scenario {scen}, round {rnd}: {errors} errors** of {s['requests']} requests "
             f"(connect {s['connect']}, read {s['read']}, write {s['write']}, timeout {s['timeout']}, "
             f"non-2xx {s['status']}). wrk printed:\n\n```\n{printed[-2000:]}\n```")
    return 0


def cmd_turns(args):
    """turns ROUND FROM TO: one round's wrk turns (rows of scenario FROM, one
    set per turn, in order) made into one run of scenario TO per target: the
    requests over the time of all turns, the CPU over all their requests, the
    median turn's p50 and p99, the errors summed. The FROM rows go."""
    rnd, src, dst = args
    rows = [line.rstrip("\n").split("\t") for line in open(RESULTS)]
    turns = {}
    kept = []
    for row in rows:
        if len(row) == 5 and row[0] == rnd and row[2] == src:
            turns.setdefault(row[1], {}).setdefault(row[3], []).append(float(row[4]))
        else:
            kept.append(row)
    with open(RESULTS, "w") as f:
        f.writelines("\t".join(row) + "\n" for row in kept)
    for target, m in turns.items():
        if m.get("failed"):
            put(rnd, target, dst, "failed", int(sum(m["failed"])))
        reqs, rps = m.get("requests", []), m.get("rps", [])
        if not reqs or len(reqs) != len(rps):
            continue
        secs = [r / x if x > 0 else 0.0 for r, x in zip(reqs, rps)]
        total, seconds = sum(reqs), sum(secs)
        if total <= 0 or seconds <= 0:
            continue
        put(rnd, target, dst, "rps", total / seconds)
        put(rnd, target, dst, "mib_s", sum(b * t for b, t in zip(m.get("mib_s", []), secs)) / seconds)
        for metric in ("p50_ms", "p99_ms"):
            if m.get(metric):
                put(rnd, target, dst, metric, statistics.median(m[metric]))
        put(rnd, target, dst, "requests", int(total))
        put(rnd, target, dst, "errors", int(sum(m.get("errors", []))))
        for metric in ("cpu_s_per_10k", "sys_s_per_10k", "load_s_per_10k", "be_accepts_per_1k"):
            if len(m.get(metric, [])) == len(reqs):
                put(rnd, target, dst, metric, sum(c * r for c, r in zip(m[metric], reqs)) / total)
        for metric in ("proxy_busy_pct", "load_busy_pct"):
            if len(m.get(metric, [])) == len(secs):
                put(rnd, target, dst, metric, sum(b * t for b, t in zip(m[metric], secs)) / seconds)
    return 0


def cmd_h2load(args):
    """h2load ROUND TARGET SCEN FILE CPU_TICKS HZ SYS_TICKS [LOAD_TICKS WALL_US ACCEPTS]: one timed h2load run."""
    rnd, target, scen, path, ticks, hz, sys_ticks = args[:7]
    load_ticks, wall_us, accepts = args[7:10] if len(args) > 9 else (-1, 0, -1)
    text = open(path).read()
    done = re.search(r"^finished in ([\d.]+)s, ", text, re.M)
    reqs = re.search(r"^requests: (\d+) total, \d+ started, \d+ done, (\d+) succeeded, (\d+) failed, "
                     r"(\d+) errored, (\d+) timeout", text, re.M)
    codes = re.search(r"^status codes: (\d+) 2xx", text, re.M)
    mean = re.search(r"^time for request:\s+\S+\s+\S+\s+([\d.]+)(us|ms|s)\b", text, re.M)
    if not (done and reqs and codes and mean):
        note(f"**{target}, scenario {scen}, round {rnd}: h2load gave no result.** It printed:\n\n```\n{text[-2000:]}\n```")
        put(rnd, target, scen, "failed", 1)
        return 1
    secs = float(done.group(1))
    ok = int(codes.group(1))
    # Streams still open when the timed run ends are neither failed nor done.
    errors = int(reqs.group(3)) + int(reqs.group(4)) + int(reqs.group(5)) + (int(reqs.group(2)) - ok)
    put(rnd, target, scen, "rps", ok / secs)
    put(rnd, target, scen, "mean_ms", float(mean.group(1)) * {"us": 0.001, "ms": 1, "s": 1000}[mean.group(2)])
    put(rnd, target, scen, "requests", ok)
    put(rnd, target, scen, "errors", errors)
    put_cpu(rnd, target, scen, ticks, sys_ticks, hz, ok, load_ticks, wall_us, accepts)
    if errors:
        note(f"**{target}, scenario {scen}, round {rnd}: {errors} failed requests** of {reqs.group(1)}. "
             f"h2load printed:\n\n```\n{text[-1500:]}\n```")
    return 0


def cmd_stime(args):
    """stime ROUND TARGET SCEN METRIC CPU_TICKS HZ WALL0 WALL1 FILE...: parallel s_time
    runs; the rate is all their connections over the wall time from the start of the
    first to the end of the last (s_time's own "real seconds" is a whole number)."""
    rnd, target, scen, metric, ticks, hz, w0, w1, *files = args
    wall = float(w1) - float(w0)
    conns, reused, new = 0, 0, 0
    for path in files:
        text = open(path).read()
        m = re.search(r"(\d+) connections in ([\d.]+) real seconds", text)
        if not m:
            note(f"**{target}, scenario {scen} ({metric}), round {rnd}: `openssl s_time` gave no result.** "
                 f"It printed:\n\n```\n{text[-1500:]}\n```")
            put(rnd, target, scen, metric + "_failed", 1)
            return 1
        conns += int(m.group(1))
        # s_time prints '*' for a full handshake and 'r' for a resumed one
        # (progress characters, mixed with the "connections" summary lines).
        body = re.sub(r"^.*connections.*$", "", text, flags=re.M)
        reused += body.count("r")
        new += body.count("*")
    put(rnd, target, scen, metric, conns / wall)
    if metric.startswith("resumed") and reused + new:
        put(rnd, target, scen, metric + "_share_resumed", reused / (reused + new))
    if int(ticks) >= 0 and conns:
        put(rnd, target, scen, metric + "_cpu_s_per_1k", int(ticks) / float(hz) / conns * 1000)
    return 0


def cmd_put(args):
    put(*args)
    return 0


# --- idle connections --------------------------------------------------------


def cmd_idle(args):
    """idle PORT N STOPFILE: open N TLS keep-alive connections, one request each,
    print READY <opened>, hold them until STOPFILE exists (at most 120 s)."""
    port, n, stop = int(args[0]), int(args[1]), args[2]
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    held, failed = [], 0
    req = b"GET /small HTTP/1.1\r\nHost: localhost\r\n\r\n"
    for _ in range(n):
        try:
            raw = socket.create_connection(("127.0.0.1", port), timeout=10)
            s = ctx.wrap_socket(raw, server_hostname="localhost")
            s.sendall(req)
            buf = b""
            while b"\r\n\r\n" not in buf:
                chunk = s.recv(65536)
                if not chunk:
                    raise OSError("closed before the response head")
                buf += chunk
            head, _, body = buf.partition(b"\r\n\r\n")
            m = re.search(rb"(?i)content-length:\s*(\d+)", head)
            need = int(m.group(1)) if m else 0
            while len(body) < need:
                chunk = s.recv(65536)
                if not chunk:
                    raise OSError("closed before the body ended")
                body += chunk
            held.append(s)
        except OSError as e:
            failed += 1
            if failed <= 3:
                sys.stderr.write(f"idle connection failed: {e}\n")
    print(f"READY {len(held)} {failed}", flush=True)
    deadline = time.time() + 120
    while not os.path.exists(stop) and time.time() < deadline:
        time.sleep(0.05)
    for s in held:
        s.close()
    return 0


# --- reload timing -----------------------------------------------------------


def cmd_reload_ms(args):
    """reload-ms T0 LOG NTH: ms from T0 (epoch seconds) to the NTH 'reloaded' log line."""
    t0, log, nth = float(args[0]), args[1], int(args[2])
    lines = [l for l in open(log, errors="replace") if re.search(r"\breloaded\b", l)]
    if len(lines) < nth:
        print("missing")
        return 1
    m = re.search(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?)Z", lines[nth - 1])
    if not m:
        print("missing")
        return 1
    stamp = m.group(1)
    if "." in stamp:
        whole, frac = stamp.split(".")
        stamp = whole + "." + (frac + "000000")[:6]
        t = datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%S.%f")
    else:
        t = datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%S")
    t = t.replace(tzinfo=timezone.utc).timestamp()
    print(f"{(t - t0) * 1000:.2f}")
    return 0


# --- the report ----------------------------------------------------------------


def load_results(path):
    data = {}
    if not os.path.exists(path):
        return data
    for line in open(path):
        parts = line.rstrip("\n").split("\t")
        if len(parts) != 5:
            continue
        rnd, target, scen, metric, value = parts
        data.setdefault((target, scen, metric), []).append((rnd, float(value)))
    return data


def fmt(v, digits=None):
    if v is None:
        return "not measured"
    if digits is None:
        digits = 0 if abs(v) >= 100 else (1 if abs(v) >= 10 else 2 if abs(v) >= 1 else 3)
    return f"{v:,.{digits}f}"


def cmd_report(args):
    results, meta_path, notes_path, out = args
    data = load_results(results)
    meta = json.load(open(meta_path))
    # Scenario 2b: access lines on file per request wrk counted. wrk does not
    # count the requests in flight when it stops, which are logged too, so a
    # proxy that loses nothing shows 1.00 or a hair above.
    for target_ in ("portico", "nginx"):
        lines = dict(data.get((target_, "s2log", "lines"), []))
        reqs = dict(data.get((target_, "s2log", "requests"), []))
        per = [(r, lines[r] / reqs[r]) for r in sorted(lines) if reqs.get(r)]
        if per:
            data[(target_, "s2log", "lines_per_request")] = per
    notes = open(notes_path).read().strip() if os.path.exists(notes_path) else ""

    def med(target, scen, metric):
        vals = data.get((target, scen, metric))
        return statistics.median(v for _, v in vals) if vals else None

    def tot(target, scen, metric):
        vals = data.get((target, scen, metric))
        return sum(v for _, v in vals) if vals else None

    def n_of(target, scen, metric):
        return len(data.get((target, scen, metric), []))

    def ratio(a, b):
        return None if a is None or b in (None, 0) else a / b

    def paired(scen, metric):
        """The median over rounds of each round's portico / nginx ratio: the two
        were measured seconds apart, so the machine's drift cancels in it."""
        p = dict(data.get(("portico", scen, metric), []))
        n = dict(data.get(("nginx", scen, metric), []))
        rs = [p[r] / n[r] for r in p if n.get(r)]
        return statistics.median(rs) if rs else ratio(med("portico", scen, metric), med("nginx", scen, metric))

    L = []
    w = L.append
    w("# Performance: portico vs nginx, side by side")
    w("")
    w("Generated by `benches/load/compare.sh` from one run; every figure below was")
    w("measured in that run (medians over the rounds; per-round values at the end).")
    w("Hand edits are lost on the next run, except for the sections after the")
    w("\"kept\" marker at the end (figures measured otherwise, such as criterion's).")
    w("")
    w(f"- Date: {meta['date']}")
    w(f"- Command: `{meta['command']}`")
    w(f"- portico: {meta['portico']}")
    w(f"- nginx: {meta['nginx']}")
    w(f"- wrk: {meta['wrk']}; h2load: {meta['h2load']}; openssl: {meta['openssl']}")
    w(f"- rustc: {meta['rustc']}")
    w(f"- CPU: {meta['cpu']} ({meta['ncpu']} CPUs), kernel {meta['kernel']}")
    if meta.get("loadavg"):
        w(f"- Load average (other work on the machine): {meta['loadavg']}")
    w(f"- Rounds: {meta['rounds']}. Both proxies start fresh each round and run side by side; "
      "each scenario is measured on both back to back (portico first in odd rounds, nginx first "
      f"in even ones), then direct. wrk runs {meta['duration']} s, handshake runs "
      f"{meta['hs_duration']} s")
    w("")
    w("## Setup")
    w("")
    w(f"- The proxy under test is pinned to CPU {meta['proxy_cpu']} (`taskset`; other work on the machine is not kept off it): nginx "
      "`worker_processes 1` (master + 1 worker), portico `worker_threads = 1`.")
    w(f"- Load generators (wrk, `openssl s_time`, Python) and the two backend nodes run on "
      f"CPU {meta['load_cpu']}. Backends: nginx, one worker each, HTTP and HTTPS (ECDSA P-256) "
      "listeners, `/small` (a fixed "
      f"{meta['small_bytes']}-byte body) and `/1m` (1 MiB).")
    w("- Upstream keep-alive sized alike: nginx `keepalive 64` for the group of 2 servers "
      "(per worker), portico `keepalive = 32` per server. Both proxies: access log off (except in 2b), "
      "upstream TLS without verification, TLS 1.2/1.3 toward clients and backends alike "
      "(nginx `proxy_ssl_protocols` included: 1.22's default stops at TLS 1.2), "
      "so TLS 1.3 is spoken on both sides, nginx `keepalive_requests` raised to "
      "1000000 on both sides so no connection is closed for its request count, "
      "nginx `ssl_session_cache shared:SSL:10m` with tickets (its defaults otherwise, "
      "including `proxy_buffering on`). nginx's idle cache is one for the group: when the "
      "server the balancer picks has no idle connection there, it opens one, and once the "
      "cache is full it closes the least recently used, so under these loads it keeps opening upstream "
      "connections; portico keeps its idle connections per server. The row \"connections "
      "the backends accepted\" counts them (each backend's `stub_status`): through a proxy, "
      "the upstream connections it opened; direct, wrk's own.")
    if meta.get("ciphers"):
        w(f"- Cipher suite an OpenSSL client (as wrk and `s_time` are) negotiates: {meta['ciphers']}. "
          "Each proxy's default: nginx follows the client's order (OpenSSL's lists AES-256-GCM "
          "first), portico prefers AES-128-GCM; toward the backends each offers its own order "
          "(nginx OpenSSL's, portico AES-128-GCM first), which the backends follow. It weighs on "
          "scenario 3 and its direct ceiling: on the load CPU wrk decrypts and the backends "
          "encrypt every byte (docs/performance-log.md step 35).")
    w(f"- Clients: wrk, 1 thread, {meta['conns']} connections, HTTP/1.1 keep-alive. "
      "\"direct\" is the same client against one backend node (HTTPS or HTTP) with no proxy: "
      "the ceiling of this load generator and backend on this machine.")
    w("- CPU figures: utime+stime from `/proc/PID/stat` of all the proxy's processes "
      "(nginx master + worker; portico's one process, all threads), read before and after "
      "the run, divided by the requests wrk completed. The kernel row is stime alone; on "
      "loopback it includes the TCP receive path of the peer each write wakes, so it is "
      "the part neither proxy's code can shrink except by making fewer system calls.")
    w("- Which CPU bound a run: \"proxy CPU busy\" is the proxy's CPU time over the wall-clock time the "
      "load client ran; \"load CPU busy\" is the load CPU's busy time from `/proc/stat` (user, nice, "
      "system, irq, softirq) over the same, wrk and the backends together, and \"load CPU s / "
      "10k requests\" what the load CPU spent per answer. A run with the load CPU near 100% "
      "measures the load generator and backends more than the proxy: there, the proxy that "
      "costs them less per answer serves more.")
    w("")

    def table(title, scen, rows, direct=True, lead=""):
        w(f"## {title}")
        w("")
        if lead:
            w(lead)
            w("")
        cols = ["portico", "nginx"] + (["direct"] if direct else []) + ["portico / nginx"]
        w("| metric | " + " | ".join(cols) + " |")
        w("|---" * (len(cols) + 1) + "|")
        for label, metric, digits in rows:
            # errors and failures: the total over all rounds, never a median that hides one
            agg = tot if metric in ("errors", "failed") else med
            p, n = agg("portico", scen, metric), agg("nginx", scen, metric)
            cells = [fmt(p, digits), fmt(n, digits)]
            if direct:
                d = agg("direct", scen, metric)
                cells.append(fmt(d, digits) if d is not None else "n/a")
            r = ratio(p, n) if agg is tot else paired(scen, metric)
            cells.append(f"{r:.2f}x" if r is not None else "-")
            w(f"| {label} | " + " | ".join(cells) + " |")
        w("")

    base = [("requests/s", "rps", 0), ("p50 latency (ms)", "p50_ms", 3),
            ("p99 latency (ms)", "p99_ms", 3), ("errors, all rounds (wrk: socket + timeout + non-2xx)", "errors", 0)]
    cpu_rows = [("proxy CPU s / 10k requests", "cpu_s_per_10k", 3),
                ("of which in the kernel (stime)", "sys_s_per_10k", 3),
                ("proxy CPU busy (%)", "proxy_busy_pct", 0),
                ("load CPU busy (%), wrk + backends", "load_busy_pct", 0),
                ("load CPU s / 10k requests", "load_s_per_10k", 3),
                ("connections the backends accepted / 1k requests", "be_accepts_per_1k", 2)]
    table("1. TLS to clients, HTTPS upstream with keep-alive, small responses", "s1",
          base + cpu_rows,
          lead=f"`GET /small` over {meta['conns']} keep-alive TLS connections; the proxy "
               "speaks HTTPS with keep-alive to the two backend nodes (the seed's deployment).")
    table("1b. Scenario 1 at an equal, lower load", "s1p", base + cpu_rows, direct=False,
          lead=f"As scenario 1 (3 s runs), but each connection waits {meta.get('pace_ms', '?')} ms after every "
               "response (a wrk `delay()`), so both proxies see about the same request rate, below "
               "either one's limit. wrk is closed-loop: at full speed (scenario 1) the proxy that "
               "answers faster is also sent more, which loads the backends and wrk on the other CPU "
               "harder, and its latencies are taken under a heavier load than the other's. "
               "wrk and the backends share the load CPU, so these latencies include its scheduling: "
               "timed at the proxy's own sockets, portico holds a request for less time than nginx "
               "while wrk's median through it comes out higher (docs/performance-log.md step 36).")
    table("1c. Scenario 1 over h2", "s1h2",
          [("requests/s", "rps", 0), ("mean latency (ms)", "mean_ms", 3),
           ("errors, all rounds (h2load: failed + errored + timeout + non-2xx)", "errors", 0)] + cpu_rows,
          direct=False,
          lead=f"As scenario 1, with h2 clients: h2load, {meta.get('h2_conns', '?')} TLS connections "
               f"with {meta.get('h2_streams', '?')} streams in flight on each, 3 s runs; "
               "HTTPS/1.1 with keep-alive to the backends as before. h2load reports no percentiles, "
               "so the mean. nginx serves it on a second listener with `http2` on, the same server "
               "otherwise. No direct run: the backends speak HTTP/1.1 only.")
    table("2. Plain HTTP on both sides, small responses", "s2", base + cpu_rows,
          lead=f"`GET /small` over {meta['conns']} keep-alive connections, plain HTTP to the proxy and "
               f"from it to the backends. Measured in turns: each round gives each proxy {meta['duration']} "
               "wrk runs of 1 s, taken in turn with the other's (the order flips every turn), and sums "
               "them into one run (p50 and p99: the median turn's). On plain HTTP the two proxies are "
               "close, and the machine's speed drifts over seconds enough to decide a round measured as one "
               "run each; turns halve that spread (docs/performance-log.md step 36). The direct run is one "
               f"{meta['duration']} s run.")
    table("2b. Scenario 2 with access logs on", "s2log",
          base + cpu_rows + [("access log lines on file per request", "lines_per_request", 3)],
          direct=False,
          lead="As scenario 2 (3 s runs), on a server that logs every request in nginx's `combined` "
               "format to a file, as operators run it (the seed's virtual hosts each have one). "
               "nginx: `access_log FILE combined;`, its default, one write() per line; portico: "
               "`access_log = FILE`, lines handed to its writer thread and written in batches. The "
               "lines are counted after the proxy has stopped. Not one of the issue's targets.")
    s3_turns = int(meta.get("s3_turns", 1))
    table("3. 1 MiB response through TLS", "s3",
          [("throughput (MiB/s)", "mib_s", 1), ("requests/s", "rps", 1),
           ("p99 latency (ms)", "p99_ms", 1), ("errors, all rounds", "errors", 0),
           ("proxy CPU s / 10k requests", "cpu_s_per_10k", 2),
           ("proxy CPU busy (%)", "proxy_busy_pct", 0),
           ("load CPU busy (%), wrk + backends", "load_busy_pct", 0),
           ("load CPU s / 10k requests", "load_s_per_10k", 2),
           ("connections the backends accepted / 1k requests", "be_accepts_per_1k", 2)],
          lead="`GET /1m` over TLS to the client, HTTPS upstream. Measured in turns, as scenario 2: "
               f"each round gives each proxy {s3_turns} wrk run{'s' if s3_turns > 1 else ''} of 2 s, "
               "taken in turn with the other's (the order flips every turn), summed into one run (p99: "
               "the median turn's). Each turn leaves the answers in flight at its end unfinished, the "
               "same number for both proxies (docs/performance-log.md step 45). The direct run is one "
               f"{meta['duration']} s run.")
    table("4. New TLS connections per second (one request per connection)", "s4",
          [("full handshakes/s, ECDSA P-256", "full_ecdsa", 0),
           ("proxy CPU s / 1k full handshakes, ECDSA", "full_ecdsa_cpu_s_per_1k", 3),
           ("full handshakes/s, RSA 2048", "full_rsa", 0),
           ("proxy CPU s / 1k full handshakes, RSA", "full_rsa_cpu_s_per_1k", 3),
           ("resumed handshakes/s (s_time -reuse), ECDSA", "resumed_ecdsa", 0),
           ("share of s_time connections actually resumed", "resumed_ecdsa_share_resumed", 2)],
          lead=f"Full handshakes: `openssl s_time -new` ({meta['stime_procs']} processes in "
               "parallel, summed), which never offers a session, `GET /small` as HTTP/1.0 so the "
               "server closes. Resumed: `openssl s_time -reuse` (the first connection is full, "
               "then every one resumes).")
    w("## 5. Proxy CPU and memory for scenario 1")
    w("")
    w("| metric | portico | nginx | portico / nginx |")
    w("|---|---|---|---|")
    for label, metric, digits in [("CPU s / 10k requests", "cpu_s_per_10k", 3),
                                  ("CPU µs / request", "cpu_s_per_10k", None),
                                  ("peak RSS, sum of VmHWM over processes (MiB)", "hwm_mib", 1),
                                  ("PSS after the run, sum over processes (MiB)", "pss_mib", 1)]:
        p, n = med("portico", "s1", metric), med("nginx", "s1", metric)
        if label.startswith("CPU µs"):
            p = p * 100 if p is not None else None
            n = n * 100 if n is not None else None
            digits = 1
        r = paired("s1", metric)
        w(f"| {label} | {fmt(p, digits)} | {fmt(n, digits)} | "
          + (f"{r:.2f}x" if r is not None else "-") + " |")
    w("")
    w("VmHWM of nginx counts the master and the worker, whose pages are partly shared; "
      "PSS shares those pages out and is the fairer total.")
    w("")
    table("6. Memory of idle TLS keep-alive client connections", "s6",
          [("connections held open", "opened", 0), ("connections that failed, all rounds", "failed", 0),
           ("RSS delta per 1000 connections (MiB)", "mib_per_1k", 2),
           ("PSS delta per 1000 connections (MiB)", "pss_mib_per_1k", 2)],
          direct=False,
          lead=f"{meta['idle_conns']} TLS connections from a Python `ssl` client, each after one "
               "`GET /small`, then left idle; the proxy's RSS (and PSS) summed over its processes "
               "before and after, per 1000 connections.")
    w("## 7. Direct to backend (ceiling)")
    w("")
    w("The \"direct\" columns above: wrk and `openssl s_time` against backend node 1 with no "
      "proxy, the backend sharing CPU 0 with the client as it does in the proxied runs. For "
      "the keep-alive scenarios (1-3) this is the ceiling: a proxy near it is limited by the "
      "load generator, not by itself. For the handshake rows it is not a ceiling: there the "
      "backend does the full handshakes on the client's CPU, while a proxy does them on its "
      "own CPU and reuses pooled upstream connections.")
    w("")
    w("| metric | direct |")
    w("|---|---|")
    for label, scen, metric, digits in [
            ("TLS small requests/s", "s1", "rps", 0), ("plain small requests/s", "s2", "rps", 0),
            ("TLS 1 MiB MiB/s", "s3", "mib_s", 1),
            ("full handshakes/s ECDSA", "s4", "full_ecdsa", 0),
            ("full handshakes/s RSA 2048", "s4", "full_rsa", 0)]:
        w(f"| {label} | {fmt(med('direct', scen, metric), digits)} |")
    w("")
    w("## Other figures")
    w("")
    w("| metric | value |")
    w("|---|---|")
    w(f"| portico RSS at start, quickstart config (MiB) | {fmt(med('portico', 'start', 'rss_mib'), 1)} |")
    w(f"| portico RSS at start, benchmark config (MiB) | {fmt(med('portico', 'start', 'rss_bench_mib'), 1)} |")
    w(f"| nginx RSS at start, benchmark config, master + worker (MiB) | {fmt(med('nginx', 'start', 'rss_bench_mib'), 1)} |")
    w(f"| portico reload, 100 virtual servers + 50 upstreams: SIGHUP to `reloaded` logged (ms, median) | {fmt(med('portico', 'reload', 'ms'), 1)} |")
    w(f"| portico reload: worst of the SIGHUPs (ms) | {fmt(max((v for _, v in data.get(('portico', 'reload', 'ms'), [])), default=None), 1)} |")
    w(f"| portico reload: requests during the reloads / failed | {fmt(tot('portico', 'reload', 'requests'), 0)} / {fmt(tot('portico', 'reload', 'errors'), 0)} |")
    w("")
    w("The quickstart figure is `portico run` on `config/quickstart.toml` with its two "
      "listen ports moved to free ones. The reload figure is from the moment the script "
      "sends SIGHUP to the timestamp of portico's `reloaded` log line, while wrk sends "
      "plain HTTP requests to one of the virtual servers; failed = wrk socket errors + "
      "non-2xx answers.")
    w("")

    # Targets
    w("## Targets (issue 6)")
    w("")
    w("| target | measured | status |")
    w("|---|---|---|")

    def target(label, value, goal, higher=True, unit="x"):
        if value is None:
            w(f"| {label} | not measured | not measured |")
            return
        ok = value >= goal if higher else value <= goal
        if unit == "x":
            gap = f"{(value - goal):+.2f}x vs {goal}x"
            shown = f"{value:.2f}x"
        else:
            gap = f"{(value - goal):+.1f} {unit} vs {goal} {unit}"
            shown = f"{value:.1f} {unit}"
        w(f"| {label} | {shown} | {'met' if ok else 'missed'} ({gap}) |")

    r = paired
    target("Scenario 1 requests/s >= 1.25x nginx", r("s1", "rps"), 1.25)
    target("Scenario 1 p99 <= 1.0x", r("s1", "p99_ms"), 1.0, higher=False)
    target("Scenario 1 CPU per request <= 0.7x", r("s1", "cpu_s_per_10k"), 0.7, higher=False)
    target("Scenario 2 requests/s >= 1.0x", r("s2", "rps"), 1.0)
    target("Scenario 3 throughput >= 1.0x", r("s3", "mib_s"), 1.0)
    target("Scenario 4 full handshakes/s ECDSA P-256 >= 1.5x", r("s4", "full_ecdsa"), 1.5)
    target("Scenario 4 full handshakes/s RSA 2048 >= 1.5x", r("s4", "full_rsa"), 1.5)
    target("Idle memory per connection <= 1.0x (RSS delta)", r("s6", "mib_per_1k"), 1.0, higher=False)
    target("portico RSS at start, quickstart config < 15 MiB", med("portico", "start", "rss_mib"),
           15, higher=False, unit="MiB")
    target("Reload of 100 vhosts / 50 upstreams < 50 ms (worst SIGHUP)",
           max((v for _, v in data.get(("portico", "reload", "ms"), [])), default=None),
           50, higher=False, unit="ms")
    rel_err = tot("portico", "reload", "errors")
    w(f"| Reload with 0 failed requests | {fmt(rel_err, 0) if rel_err is not None else 'not measured'} failed | "
      + ("not measured" if rel_err is None else ("met" if rel_err == 0 else "missed")) + " |")
    w("")
    w("Ratios are the median over rounds of each round's portico / nginx ratio (the two measured "
      "seconds apart), so they can differ a little from the quotient of the medians shown. "
      "Where the load generator is the limit (compare "
      "with the direct ceiling), the CPU-per-request row is the figure that shows the "
      "difference between the proxies.")
    w("")
    w("## Failures and errors seen in this run")
    w("")
    if notes:
        w("wrk counts a `timeout` when a request takes longer than its 2 s limit; `read`/`write` "
          "are socket errors, non-2xx are answers with another status.")
        w("")
    w(notes if notes else "None: no proxy exited, and no run reported socket errors or non-2xx answers.")
    w("")
    w("## Per-round values")
    w("")
    w("| target | scenario | metric | values by round |")
    w("|---|---|---|---|")
    for (target_, scen, metric), vals in sorted(data.items()):
        w(f"| {target_} | {scen} | {metric} | " + ", ".join(f"{v:.4g}" for _, v in vals) + " |")
    w("")
    # Sections measured by other means (criterion) live after KEPT_MARKER and
    # are carried over from the file being replaced.
    try:
        with open(out) as f:
            previous = f.read()
    except OSError:
        previous = ""
    kept = previous.find(KEPT_MARKER)
    if kept >= 0:
        L.append(previous[kept:].rstrip("\n"))
        L.append("")
    with open(out, "w") as f:
        f.write("\n".join(L))
    return 0


KEPT_MARKER = "<!-- Not written by compare.sh: kept across its runs. -->"


def main():
    cmds = {"wrk": cmd_wrk, "turns": cmd_turns, "h2load": cmd_h2load, "stime": cmd_stime, "put": cmd_put,
            "idle": cmd_idle, "reload-ms": cmd_reload_ms, "report": cmd_report}
    if len(sys.argv) < 2 or sys.argv[1] not in cmds:
        sys.stderr.write("usage: loadlib.py " + "|".join(cmds) + " ARGS...\n")
        return 2
    return cmds[sys.argv[1]](sys.argv[2:])


if __name__ == "__main__":
    sys.exit(main())
