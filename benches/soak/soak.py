#!/usr/bin/env python3
"""Helper for benches/soak/soak.sh: test backends, the traffic driver, the
fd/RSS sampler and the report. Python 3 standard library only, loopback only.

Subcommands:
  backend NAME PORT                 a threaded HTTP/1.1 node (GET, POST echo, /login, WebSocket echo)
  drive OUT SECONDS PLAIN TLS       good and bad traffic from several threads; one JSON line per outcome
  proc PHASE PID BACKEND_PORT...    one sample of portico: VmRSS, VmHWM, fds split by kind (JSON)
  metrics ADMIN_PORT                /metrics as JSON {name{labels}: value}
  settled SAMPLES KEEPALIVE N TOL   exit 0 when the last sample's fds are back to baseline
  report WORK OUT                   classify, print the report, write docs/soak.md; exit 1 on failure
"""

import base64
import hashlib
import http.client
import json
import os
import random
import re
import socket
import ssl
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

HOST = "127.0.0.1"
WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

# --- backend -------------------------------------------------------------------


def cmd_backend(args):
    name, port = args[0], int(args[1])

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "soak-backend"

        def log_message(self, *a):
            pass

        def reply(self, status, body, extra=()):
            data = body.encode()
            self.send_response(status)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(data)))
            self.send_header("X-Node", name)
            for k, v in extra:
                self.send_header(k, v)
            self.end_headers()
            # head and body in one write: a kill cannot split them
            self.wfile.write(data)

        def info(self):
            return f"node={name}\nconfig={self.headers.get('X-Soak-Config', '-')}\n"

        def do_GET(self):
            if self.headers.get("Upgrade", "").lower() == "websocket":
                return self.websocket()
            extra = []
            if self.path.startswith("/login"):
                extra.append(("Set-Cookie", f"JSESSIONID={name}-{random.getrandbits(64):016x}; Path=/; HttpOnly"))
            self.reply(200, self.info() + "x" * (int(random.random() * 2048)), extra)

        def do_POST(self):
            te = self.headers.get("Transfer-Encoding", "").lower()
            h = hashlib.sha256()
            n = 0
            if "chunked" in te:
                while True:
                    line = self.rfile.readline(1024)
                    if not line:
                        self.close_connection = True
                        return
                    size = int(line.split(b";")[0].strip() or b"0", 16)
                    if size == 0:
                        while self.rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                            pass
                        break
                    chunk = self.rfile.read(size)
                    self.rfile.read(2)
                    if len(chunk) < size:
                        self.close_connection = True
                        return
                    h.update(chunk)
                    n += len(chunk)
            else:
                want = int(self.headers.get("Content-Length", "0"))
                while n < want:
                    chunk = self.rfile.read(min(65536, want - n))
                    if not chunk:
                        self.close_connection = True
                        return  # client (portico) gave up mid-body
                    h.update(chunk)
                    n += len(chunk)
            self.reply(200, self.info() + f"len={n}\nsha={h.hexdigest()}\n")

        def websocket(self):
            key = self.headers.get("Sec-WebSocket-Key", "")
            accept = base64.b64encode(hashlib.sha1((key + WS_GUID).encode()).digest()).decode()
            self.send_response(101)
            self.send_header("Upgrade", "websocket")
            self.send_header("Connection", "Upgrade")
            self.send_header("Sec-WebSocket-Accept", accept)
            self.send_header("X-Node", name)
            self.end_headers()
            self.wfile.flush()
            self.close_connection = True
            try:
                while True:
                    op, payload = ws_read(self.rfile)
                    if op is None or op == 8:
                        self.wfile.write(ws_frame(8, b"", mask=False))
                        return
                    self.wfile.write(ws_frame(op, payload, mask=False))
                    self.wfile.flush()
            except OSError:
                return

    class Server(ThreadingHTTPServer):
        daemon_threads = True
        allow_reuse_address = True
        request_queue_size = 256

    Server((HOST, port), Handler).serve_forever()
    return 0


def ws_frame(op, payload, mask=True):
    head = bytes([0x80 | op])
    n = len(payload)
    m = 0x80 if mask else 0
    if n < 126:
        head += bytes([m | n])
    elif n < 65536:
        head += bytes([m | 126]) + n.to_bytes(2, "big")
    else:
        head += bytes([m | 127]) + n.to_bytes(8, "big")
    if mask:
        key = os.urandom(4)
        return head + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))
    return head + payload


def ws_read(f):
    def need(k):
        b = f.read(k)
        if len(b) < k:
            raise EOFError
        return b

    try:
        b0, b1 = need(2)
        n = b1 & 0x7F
        if n == 126:
            n = int.from_bytes(need(2), "big")
        elif n == 127:
            n = int.from_bytes(need(8), "big")
        key = need(4) if b1 & 0x80 else None
        payload = need(n)
        if key:
            payload = bytes(b ^ key[i % 4] for i, b in enumerate(payload))
        return b0 & 0x0F, payload
    except EOFError:
        return None, b""


# --- traffic -------------------------------------------------------------------


class Recorder:
    def __init__(self, path):
        self.f = open(path, "w")
        self.lock = threading.Lock()
        self.seq = 0

    def next_id(self):
        with self.lock:
            self.seq += 1
            return self.seq

    def put(self, **rec):
        line = json.dumps(rec, separators=(",", ":"))
        with self.lock:
            self.f.write(line + "\n")


def tls_ctx():
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.set_alpn_protocols(["http/1.1"])
    return ctx


CTX = tls_ctx()
TIMEOUT = 15.0


def new_conn(scheme, ports):
    if scheme == "https":
        return http.client.HTTPSConnection(HOST, ports["tls"], timeout=TIMEOUT, context=CTX)
    return http.client.HTTPConnection(HOST, ports["plain"], timeout=TIMEOUT)


def good_worker(rec, ports, stop, scheme, keepalive, sticky, wid):
    """GETs and POSTs (fixed-length and chunked bodies) on one connection at a
    time; keep-alive or a new connection per request; optional JSESSIONID."""
    rnd = random.Random(wid)
    conn, used = None, 0
    cookie, cookie_node = None, None
    while not stop.is_set():
        rid = rec.next_id()
        if sticky and (cookie is None or rnd.random() < 0.02):
            method, path = "GET", f"/login?id={rid}"
        else:
            method = "POST" if rnd.random() < 0.35 else "GET"
            path = f"/soak/{method.lower()}?id={rid}"
        body, chunked = None, False
        headers = {"Host": "localhost", "User-Agent": "soak"}
        if not keepalive:
            headers["Connection"] = "close"
        if cookie and not path.startswith("/login"):
            headers["Cookie"] = f"JSESSIONID={cookie}"
        if method == "POST":
            body = os.urandom(rnd.choice([0, 17, 1000, 16384, 70000]))
            chunked = rnd.random() < 0.3 and len(body) > 0
        if conn is None:
            conn, used = new_conn(scheme, ports), 0
        reused = used > 0
        t0 = time.time()
        r = dict(id=rid, kind="good", scheme=scheme, ka=keepalive, sticky=bool(cookie), method=method,
                 chunked=chunked, size=len(body) if body is not None else 0, reused=reused, t0=t0)
        try:
            if chunked:
                conn.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
                for k, v in headers.items():
                    conn.putheader(k, v)
                conn.putheader("Transfer-Encoding", "chunked")
                conn.endheaders()
                for i in range(0, len(body), 4096):
                    piece = body[i:i + 4096]
                    conn.send(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
                conn.send(b"0\r\n\r\n")
            else:
                conn.request(method, path, body=body, headers=headers)
            resp = conn.getresponse()
            data = resp.read()
            used += 1
            r["status"] = resp.status
            r["node"] = resp.getheader("X-Node")
            text = data.decode("latin-1")
            m = re.search(r"^config=(.*)$", text, re.M)
            r["config"] = m.group(1) if m else None
            if resp.status != 200:
                r["outcome"] = f"status {resp.status}"
            elif method == "POST" and f"len={len(body)}\nsha={hashlib.sha256(body).hexdigest()}" not in text:
                r["outcome"] = "body mismatch"
            else:
                r["outcome"] = "ok"
            if path.startswith("/login") and resp.status == 200:
                c = resp.getheader("Set-Cookie") or ""
                m = re.match(r"JSESSIONID=([^;]+)", c)
                if m:
                    cookie, cookie_node = m.group(1), r["node"]
            elif cookie and resp.status == 200:
                r["sticky_expected"] = cookie_node
                if r["node"] != cookie_node:
                    cookie_node = r["node"]  # portico rebinds a moved session
            if not keepalive or resp.will_close:
                conn.close()
                conn = None
        except (OSError, http.client.HTTPException) as e:
            r["outcome"] = f"error {type(e).__name__}: {e}"[:200]
            try:
                conn.close()
            except Exception:
                pass
            conn = None
        r["t1"] = time.time()
        rec.put(**r)
        time.sleep(rnd.uniform(0.002, 0.012))
    if conn:
        conn.close()


def read_head(s, limit=65536, deadline=None):
    buf = b""
    while b"\r\n\r\n" not in buf and len(buf) < limit:
        if deadline and time.time() > deadline:
            raise socket.timeout("head deadline")
        chunk = s.recv(65536)
        if not chunk:
            break
        buf += chunk
    return buf


def ws_worker(rec, ports, stop, wid):
    """A WebSocket upgrade through the plain listener every ~1.5 s, 3 echoes, close."""
    rnd = random.Random(wid)
    while not stop.is_set():
        rid = rec.next_id()
        t0 = time.time()
        r = dict(id=rid, kind="good", scheme="http", ka=False, sticky=False, method="WS", t0=t0, upgraded=False)
        s = None
        try:
            s = socket.create_connection((HOST, ports["plain"]), timeout=TIMEOUT)
            key = base64.b64encode(os.urandom(16)).decode()
            s.sendall((f"GET /ws?id={rid} HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\n"
                       f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode())
            f = s.makefile("rb")
            status_line = f.readline()
            hdrs = {}
            while True:
                line = f.readline()
                if line in (b"\r\n", b""):
                    break
                k, _, v = line.decode("latin-1").partition(":")
                hdrs[k.strip().lower()] = v.strip()
            parts = status_line.split()
            status = int(parts[1]) if len(parts) > 1 else 0
            r["status"], r["node"] = status, hdrs.get("x-node")
            want = base64.b64encode(hashlib.sha1((key + WS_GUID).encode()).digest()).decode()
            if status != 101 or hdrs.get("sec-websocket-accept") != want:
                r["outcome"] = f"status {status}"
            else:
                r["upgraded"] = True
                ok = True
                for i in range(3):
                    msg = f"hello {rid} {i} ".encode() * rnd.randint(1, 50)
                    s.sendall(ws_frame(1, msg))
                    op, payload = ws_read(f)
                    if op != 1 or payload != msg:
                        ok = False
                        r["outcome"] = f"echo mismatch (op {op})"
                        break
                if ok:
                    s.sendall(ws_frame(8, b""))
                    op, _ = ws_read(f)
                    r["outcome"] = "ok" if op in (8, None) else f"close got op {op}"
        except (OSError, ValueError) as e:
            r["outcome"] = f"error {type(e).__name__}: {e}"[:200]
        finally:
            if s:
                s.close()
        r["t1"] = time.time()
        rec.put(**r)
        stop.wait(rnd.uniform(1.0, 2.0))


def bad_once(kind, ports, rnd):
    """One piece of bad traffic; returns (outcome, detail). outcome is '4xx',
    'closed', '5xx', '2xx/3xx' or 'hung'."""
    tls = kind.startswith("tls-")
    port = ports["tls"] if tls else ports["plain"]
    raw = socket.create_connection((HOST, port), timeout=TIMEOUT)
    s = raw
    try:
        if tls and kind != "tls-garbage" and kind != "tls-plaintext":
            s = CTX.wrap_socket(raw, server_hostname="localhost")
        if kind in ("bad-line", "tls-bad-line"):
            s.sendall(rnd.choice([b"HELLO\r\n\r\n", b"GET / HTTP/9.9\r\nHost: x\r\n\r\n",
                                  b"GET /\x00\x01 HTTP/1.1\r\nHost: x\r\n\r\n", b"\xff\xfe\xfd junk\r\n\r\n",
                                  b"GET / HTTP/1.1 extra\r\nHost: x\r\n\r\n"]))
        elif kind == "bad-header":
            s.sendall(rnd.choice([b"GET / HTTP/1.1\r\nHost: x\r\nBad Header: y\r\n\r\n",
                                  b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello",
                                  b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n"]))
        elif kind == "te-and-cl":
            # RFC 9112 6.1: a server MAY reject this or process it by the
            # Transfer-Encoding alone, and MUST then close the connection.
            s.sendall(b"POST /soak/post HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
                      b"Content-Length: 3\r\n\r\n5\r\nhello\r\n0\r\n\r\n")
            s.settimeout(5.0)
            data = b""
            try:
                while True:
                    chunk = s.recv(65536)
                    if not chunk:
                        break
                    data += chunk
            except ConnectionResetError:
                pass
            except socket.timeout:
                return "2xx kept open", data.split(b"\r\n")[0].decode("latin-1")
            m = re.match(rb"HTTP/1\.[01] (\d{3})", data)
            code = int(m.group(1)) if m else 0
            if 400 <= code < 500:
                return "4xx", str(code)
            if code == 200 and b"len=5\n" in data:
                return "2xx, then closed", "chunked body forwarded, connection closed"
            return ("closed", "EOF") if not data else ("5xx" if code >= 500 else "other", data[:40].decode("latin-1"))
        elif kind in ("oversized", "tls-oversized"):
            which = rnd.random()
            if which < 0.4:
                s.sendall(b"GET /" + b"a" * 40000 + b" HTTP/1.1\r\nHost: x\r\n\r\n")
            elif which < 0.8:
                s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"b" * 40000 + b"\r\n\r\n")
            else:
                s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n" + b"".join(b"X-H%d: v\r\n" % i for i in range(3000)) + b"\r\n")
        elif kind == "bad-chunk":
            s.sendall(b"POST /soak/post HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n")
        elif kind in ("mid-body", "tls-mid-body"):
            n = 200000
            s.sendall(b"POST /soak/post HTTP/1.1\r\nHost: localhost\r\nContent-Length: %d\r\n\r\n" % n + os.urandom(rnd.randint(0, 30000)))
            if rnd.random() < 0.5:
                return "closed", "abrupt close mid-body (no answer awaited)"
            if tls:
                # TLS has no half-close that leaves the read side usable: close after a pause
                time.sleep(0.05)
                return "closed", "abrupt close mid-body (TLS)"
            s.shutdown(socket.SHUT_WR)
        elif kind == "tls-garbage":
            s.sendall(os.urandom(rnd.randint(1, 3000)))
        elif kind == "tls-plaintext":
            s.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
        s.settimeout(TIMEOUT)
        try:
            head = read_head(s, deadline=time.time() + TIMEOUT)
        except (ConnectionResetError, ssl.SSLError) as e:
            return "closed", type(e).__name__
        except socket.timeout:
            return "hung", "no answer and no close within 15 s"
        if not head:
            return "closed", "EOF"
        m = re.match(rb"HTTP/1\.[01] (\d{3})", head)
        if not m:
            return "closed", "non-HTTP bytes then close (%r)" % head[:12]
        code = int(m.group(1))
        if 400 <= code < 500:
            return "4xx", str(code)
        if code >= 500:
            return "5xx", head.split(b"\r\n")[0].decode("latin-1")
        return "2xx/3xx", head.split(b"\r\n")[0].decode("latin-1")
    finally:
        try:
            s.close()
        except OSError:
            pass


BAD_KINDS = ["bad-line", "tls-bad-line", "bad-header", "te-and-cl", "oversized", "tls-oversized", "bad-chunk",
             "mid-body", "tls-mid-body", "tls-garbage", "tls-plaintext"]


def bad_worker(rec, ports, stop, wid):
    rnd = random.Random(wid)
    while not stop.is_set():
        kind = rnd.choice(BAD_KINDS)
        t0 = time.time()
        try:
            outcome, detail = bad_once(kind, ports, rnd)
        except (OSError, ssl.SSLError) as e:
            outcome, detail = ("closed", f"{type(e).__name__}") if not isinstance(e, ConnectionRefusedError) \
                else ("refused", str(e))
        rec.put(kind="bad", bad=kind, outcome=outcome, detail=detail, t0=t0, t1=time.time())
        stop.wait(rnd.uniform(0.02, 0.1))


def slowloris_worker(rec, ports, stop, header_timeout, wid):
    """Partial request heads, one more header line a second; portico must
    close them within client_header_timeout (+ 3 s slack)."""
    rnd = random.Random(wid)
    limit = header_timeout + 3.0
    while not stop.is_set():
        tls = rnd.random() < 0.5
        t0 = time.time()
        outcome, detail = "hung", ""
        s = None
        try:
            s = socket.create_connection((HOST, ports["tls" if tls else "plain"]), timeout=TIMEOUT)
            if tls:
                s = CTX.wrap_socket(s, server_hostname="localhost")
            s.sendall(b"GET /slow HTTP/1.1\r\nHost: localhost\r\n")
            s.settimeout(1.0)
            while time.time() - t0 < limit:
                try:
                    data = s.recv(4096)
                    if not data:
                        outcome, detail = "closed", f"closed after {time.time() - t0:.1f} s"
                        break
                    m = re.match(rb"HTTP/1\.[01] (\d{3})", data)
                    code = int(m.group(1)) if m else 0
                    outcome = "4xx" if 400 <= code < 500 else ("5xx" if code >= 500 else "closed")
                    detail = f"{code} after {time.time() - t0:.1f} s"
                    break
                except socket.timeout:
                    pass
                try:
                    s.sendall(b"X-Slow-%d: x\r\n" % rnd.randint(0, 1 << 30))
                except OSError as e:
                    outcome, detail = "closed", f"{type(e).__name__} after {time.time() - t0:.1f} s"
                    break
            else:
                detail = f"still open after {limit:.0f} s"
        except (OSError, ssl.SSLError) as e:
            outcome, detail = "closed", f"{type(e).__name__} after {time.time() - t0:.1f} s"
        finally:
            if s:
                s.close()
        rec.put(kind="bad", bad="tls-slowloris" if tls else "slowloris", outcome=outcome, detail=detail,
                t0=t0, t1=time.time())


def cmd_drive(args):
    out, seconds, plain, tlsport, header_timeout = args[0], float(args[1]), int(args[2]), int(args[3]), float(args[4])
    ports = {"plain": plain, "tls": tlsport}
    rec = Recorder(out)
    stop = threading.Event()
    threads = []
    wid = 0

    def spawn(fn, *a):
        nonlocal wid
        wid += 1
        threads.append(threading.Thread(target=fn, args=(rec, ports, stop) + a + (wid,), daemon=True))

    for scheme in ("http", "https"):
        for ka in (True, False):
            spawn(good_worker, scheme, ka, False)
        spawn(good_worker, scheme, True, True)
    spawn(good_worker, "https", False, True)
    spawn(ws_worker)
    spawn(bad_worker)
    spawn(bad_worker)
    spawn(slowloris_worker, header_timeout)
    spawn(slowloris_worker, header_timeout)
    for t in threads:
        t.start()
    end = time.time() + seconds
    while time.time() < end:
        time.sleep(0.2)
    stop.set()
    for t in threads:
        t.join(timeout=TIMEOUT + 10)
    alive = sum(t.is_alive() for t in threads)
    rec.f.flush()
    print(f"drive: {rec.seq} good request ids, {alive} threads still running at exit", file=sys.stderr)
    return 0 if alive == 0 else 1


# --- portico's process ------------------------------------------------------------


def tcp_sockets():
    """inode -> (local port, remote port, state) for every TCP socket on the host."""
    table = {}
    for name in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = open(name).read().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            f = line.split()
            lport = int(f[1].rsplit(":", 1)[1], 16)
            rport = int(f[2].rsplit(":", 1)[1], 16)
            table[f[9]] = (lport, rport, f[3])
    return table


def cmd_proc(args):
    phase, pid, backends = args[0], int(args[1]), {int(p) for p in args[2:]}
    status = open(f"/proc/{pid}/status").read()
    kb = lambda k: int(re.search(rf"^{k}:\s+(\d+)", status, re.M).group(1))
    socks = tcp_sockets()
    counts = {"total": 0, "upstream": 0, "listen": 0, "client": 0, "other_socket": 0, "file": 0, "other": 0}
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            link = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        counts["total"] += 1
        m = re.match(r"socket:\[(\d+)\]", link)
        if m:
            s = socks.get(m.group(1))
            if s is None:
                counts["other_socket"] += 1
            elif s[2] == "0A":
                counts["listen"] += 1
            elif s[1] in backends:
                counts["upstream"] += 1
            else:
                counts["client"] += 1
        elif link.startswith("/"):
            counts["file"] += 1
        else:
            counts["other"] += 1
    counts.update(phase=phase, rss_kb=kb("VmRSS"), hwm_kb=kb("VmHWM"), threads=kb("Threads"), t=time.time())
    print(json.dumps(counts))
    return 0


def cmd_settled(args):
    """settled SAMPLES KEEPALIVE NBACKENDS TOLERANCE: exit 0 when the last sample's
    fds are back to the baseline's (idle upstream connections counted apart)."""
    samples = load_jsonl(args[0])
    keepalive, nback, tol = int(args[1]), int(args[2]), int(args[3])
    base = next((s for s in samples if s["phase"] == "baseline"), None)
    last = samples[-1] if samples else None
    if not base or not last:
        return 1
    ok = (last["total"] - last["upstream"] <= base["total"] - base["upstream"] + tol
          and last["upstream"] <= keepalive * nback and last["client"] == 0)
    return 0 if ok else 1


def scrape(port):
    c = http.client.HTTPConnection(HOST, port, timeout=5)
    c.request("GET", "/metrics")
    text = c.getresponse().read().decode()
    c.close()
    out = {}
    for line in text.splitlines():
        if line.startswith("#") or not line.strip():
            continue
        key, _, value = line.rpartition(" ")
        try:
            out[key] = float(value)
        except ValueError:
            pass
    return out


def cmd_metrics(args):
    print(json.dumps(scrape(int(args[0]))))
    return 0


# --- report ----------------------------------------------------------------------


def load_jsonl(path):
    out = []
    if os.path.exists(path):
        for line in open(path):
            line = line.strip()
            if line:
                try:
                    out.append(json.loads(line))
                except ValueError:
                    pass
    return out


def kill_windows(events, grace):
    """[(start, end, backend port)] from 'kill' and 'restart' events: from the
    kill (minus 0.5 s, a request in flight at that moment) to the restart plus
    `grace` (fail_timeout + 2 s: the node is skipped, pooled connections to the
    dead process are discovered)."""
    wins, open_kills = [], {}
    for e in events:
        if e["ev"] == "kill":
            open_kills[e["port"]] = e["t"]
        elif e["ev"] == "restart" and e["port"] in open_kills:
            wins.append((open_kills.pop(e["port"]) - 0.5, e["t"] + grace, e["port"]))
    for port, t in open_kills.items():
        wins.append((t - 0.5, float("inf"), port))
    return wins


def cmd_report(args):
    work, out = args
    meta = json.load(open(os.path.join(work, "meta.json")))
    events = load_jsonl(os.path.join(work, "events.jsonl"))
    recs = load_jsonl(os.path.join(work, "requests.jsonl"))
    samples = load_jsonl(os.path.join(work, "samples.jsonl"))
    grace = float(meta["fail_timeout_s"]) + 2.0
    wins = kill_windows(events, grace)
    errlog = ""
    for name in ("error.log", "error.log.1"):
        p = os.path.join(work, "logs", name)
        if os.path.exists(p):
            errlog += open(p, errors="replace").read()
    backend_addr = {int(p): f"127.0.0.1:{p}" for p in meta["backend_ports"]}
    failures = []  # (why, record)

    good = [r for r in recs if r["kind"] == "good"]
    bad = [r for r in recs if r["kind"] == "bad"]
    cls = {"ok": 0, "killed": 0, "real": 0}
    by_method = {}
    killed_detail = []
    sticky_moves = {"in_kill_window": 0, "outside": 0}
    configs = {}
    for r in good:
        key = (r["method"], r["scheme"], "keep-alive" if r["ka"] else "close", "cookie" if r.get("sticky") else "-")
        bm = by_method.setdefault(key, {"ok": 0, "killed": 0, "real": 0})
        overlapping = [w for w in wins if r["t0"] <= w[1] and r["t1"] >= w[0]]
        if r.get("config") and r["outcome"] == "ok":
            configs[r["config"]] = configs.get(r["config"], 0) + 1
        if r.get("sticky_expected") and r.get("node") != r["sticky_expected"]:
            sticky_moves["in_kill_window" if overlapping else "outside"] += 1
        if r["outcome"] == "ok":
            c = "ok"
        else:
            c = "real"
            # POST (not repeatable once sent): a 502/504 whose time overlaps a kill
            # window and whose error-log line names a killed backend and this request id.
            if r["method"] == "POST" and r.get("status") in (502, 504) and overlapping:
                pat = re.compile(r"id=%d\b[^\n]*upstream: \"[^\"]*\" (127\.0\.0\.1:\d+)" % r["id"])
                named = {m.group(1) for m in pat.finditer(errlog)}
                if named & {backend_addr[w[2]] for w in overlapping}:
                    c = "killed"
                    killed_detail.append(f"POST id={r['id']} {r['status']} (upstream {', '.join(sorted(named))})")
            # WebSocket: upgraded on the killed node, then cut when it died.
            if r["method"] == "WS" and r.get("upgraded") and overlapping and r.get("node"):
                nodes_killed = {meta["backend_names"][str(w[2])] for w in overlapping}
                if r["node"] in nodes_killed:
                    c = "killed"
                    killed_detail.append(f"WebSocket id={r['id']} on {r['node']} cut: {r['outcome']}")
            if c == "real":
                failures.append(("good request failed", r))
        cls[c] += 1
        bm[c] += 1

    bad_counts = {}
    for r in bad:
        d = bad_counts.setdefault(r["bad"], {})
        d[r["outcome"]] = d.get(r["outcome"], 0) + 1
        if r["outcome"] not in ("4xx", "closed", "2xx, then closed"):
            failures.append(("bad traffic not refused", r))

    # samples: baseline (after warm-up), during, after
    base = next((s for s in samples if s["phase"] == "baseline"), None)
    during = [s for s in samples if s["phase"] == "during"]
    after = [s for s in samples if s["phase"] == "after"]
    final = after[-1] if after else None
    keepalive = int(meta["keepalive"])
    nback = len(meta["backend_ports"])
    tol = int(meta["fd_tolerance"])
    fd_ok = False
    fd_text = "no samples"
    if base and final:
        base_nonup = base["total"] - base["upstream"]
        fin_nonup = final["total"] - final["upstream"]
        fd_ok = fin_nonup <= base_nonup + tol and final["upstream"] <= keepalive * nback and final["client"] == 0
        fd_text = (f"{'returned to baseline' if fd_ok else 'DID NOT return to baseline'}: "
                   f"{fin_nonup} fds other than idle upstream connections (baseline {base_nonup}, tolerance +{tol}), "
                   f"{final['upstream']} idle upstream connections (cap keepalive {keepalive} x {nback} servers = "
                   f"{keepalive * nback}), {final['client']} client connections")
        if not fd_ok:
            failures.append(("fd count did not return to baseline", {"baseline": base, "final": final}))
    peak_rss = max([s["rss_kb"] for s in samples] or [0])
    peak_fd = max([s["total"] for s in samples] or [0])
    hwm = max([s["hwm_kb"] for s in samples] or [0])

    # reloads
    reloaded = len(re.findall(r"\breloaded\b", errlog))
    refused = len(re.findall(r"reload refused", errlog))
    failed_reload = len(re.findall(r"reload of .* failed|reload failed", errlog))
    hups = [e for e in events if e["ev"] == "hup"]
    hup_good = sum(1 for e in hups if e.get("config") != "broken")
    hup_broken = sum(1 for e in hups if e.get("config") == "broken")
    m_final = json.load(open(os.path.join(work, "metrics-final.json"))) if os.path.exists(
        os.path.join(work, "metrics-final.json")) else {}
    m_ok = int(m_final.get('portico_reloads_total{result="ok"}', -1))
    m_err = int(m_final.get('portico_reloads_total{result="error"}', -1))
    m_gen = int(m_final.get("portico_config_generation", -1))
    reload_ok = (reloaded == hup_good and refused >= hup_broken and m_ok == hup_good and m_err == hup_broken
                 and failed_reload == 0)
    if not reload_ok:
        failures.append(("reload results differ from the SIGHUPs sent",
                         {"hup_good": hup_good, "hup_broken": hup_broken, "log_reloaded": reloaded,
                          "log_refused_lines": refused, "metrics_ok": m_ok, "metrics_error": m_err}))

    # access log lines vs. requests counted in /metrics (SIGUSR1 reopen loses no line)
    logs = os.path.join(work, "logs")
    acc_lines = 0
    for name in os.listdir(logs) if os.path.isdir(logs) else []:
        if name.startswith("access"):
            acc_lines += sum(1 for _ in open(os.path.join(logs, name), errors="replace"))
    m_requests = int(sum(v for k, v in m_final.items() if k.startswith("portico_server_requests_total")))
    acc_files = sorted(n for n in os.listdir(logs) if n.startswith("access")) if os.path.isdir(logs) else []
    usr1 = [e for e in events if e["ev"] == "usr1"]
    crashed = meta.get("portico_exit") not in (None, "", "running")
    if crashed:
        failures.append(("portico exited during the soak", {"exit": meta.get("portico_exit")}))
    panics = [l for l in errlog.splitlines() if "panick" in l]
    if panics:
        failures.append(("panic in portico's log", {"lines": panics[:5]}))

    chaos = {}
    for e in events:
        chaos[e["ev"]] = chaos.get(e["ev"], 0) + 1
    sent = len(good) + len(bad)
    real = cls["real"] + sum(1 for f in failures if f[0] == "bad traffic not refused")
    verdict = "PASS" if not failures else "FAIL"

    L = []
    w = L.append
    w("# Soak test")
    w("")
    w("Written by `benches/soak/soak.sh` (see `benches/soak/README.md`). Mixed good and bad")
    w("traffic on loopback while a backend is SIGKILLed and restarted, portico is reloaded")
    w("(SIGHUP, including a broken configuration) and its logs are reopened (SIGUSR1).")
    w("")
    w(f"**Result: {verdict}.** {sent:,} requests sent ({len(good):,} good, {len(bad):,} bad); "
      f"**{cls['real']} good requests failed for a reason other than the killed backend**; "
      f"{sum(1 for f in failures if f[0] == 'bad traffic not refused')} bad requests got something other "
      f"than a 4xx or a close; fds {'returned' if fd_ok else 'did NOT return'} to baseline.")
    w("")
    w("## Run")
    w("")
    for k, label in (("date", "Date"), ("command", "Command"), ("duration", "Traffic duration"),
                     ("portico", "portico"), ("machine", "Machine"), ("loadavg", "Load average")):
        w(f"- {label}: {meta.get(k, '?')}")
    w(f"- Setup: 3 Python `http.server` backends ({', '.join(meta['backend_names'].values())}) behind one "
      f"upstream (round robin, `max_fails = 1`, `fail_timeout = \"{meta['fail_timeout_s']}s\"`, "
      f"`keepalive = {keepalive}`, sticky `JSESSIONID`); a TLS and a plain listener; "
      f"`client_header_timeout = \"{meta['header_timeout_s']}s\"`, `max_request_header_size = \"16k\"`; "
      f"access and error logs in the scratch directory; `[admin]` on loopback for `/metrics`.")
    w(f"- Chaos: {chaos.get('kill', 0)} SIGKILLs of a backend (each restarted on the same port ~5 s later: "
      f"{chaos.get('restart', 0)} restarts), {len(hups)} SIGHUPs ({hup_good} valid configurations alternating "
      f"A/B, {hup_broken} broken), {len(usr1)} SIGUSR1 after renaming the access logs.")
    w("")
    w("## Good requests")
    w("")
    w(f"| outcome | count |\n|---|---:|\n| succeeded | {cls['ok']:,} |\n"
      f"| failed, caused by the killed backend | {cls['killed']:,} |\n"
      f"| **failed, any other cause (must be 0)** | **{cls['real']:,}** |")
    w("")
    w("| request | scheme | connection | JSESSIONID | ok | killed backend | other failure |")
    w("|---|---|---|---|---:|---:|---:|")
    for key in sorted(by_method):
        b = by_method[key]
        w(f"| {' | '.join(key)} | {b['ok']:,} | {b['killed']:,} | {b['real']:,} |")
    w("")
    w("Classification: a good request succeeds when it gets a 200 whose body is the backend's (POST: the")
    w("backend's length and SHA-256 of the body sent match; WebSocket: 101 with the right accept key and")
    w("three echoes). A failure is blamed on the killed backend only when it is a POST answered 502/504")
    w("whose time overlaps a kill window (kill - 0.5 s to restart + fail_timeout + 2 s) and portico's")
    w("error log names a killed backend for that very request id (a POST already sent cannot be retried),")
    w("or a WebSocket already upgraded on the node that was then killed. Every GET must succeed:")
    w("with three backends portico retries a GET on another one. Everything else is a real failure.")
    w("")
    if killed_detail:
        w("Failures caused by the killed backend:")
        w("")
        for d in killed_detail[:30]:
            w(f"- {d}")
        if len(killed_detail) > 30:
            w(f"- ... and {len(killed_detail) - 30} more")
        w("")
    w(f"Sticky sessions: {sticky_moves['in_kill_window']} requests with a JSESSIONID answered by another node "
      f"during a kill window (the session's node was dead or skipped, portico rebinds), "
      f"{sticky_moves['outside']} outside kill windows.")
    w("")
    w(f"Configuration seen by the backends (`X-Soak-Config` set by `[server.headers]`): "
      + ", ".join(f"{k}: {v:,}" for k, v in sorted(configs.items())) + ".")
    w("Every request after a reload, on kept-alive connections too, uses the new configuration; "
      "an upgraded WebSocket stays on the configuration it was opened with.")
    w("")
    w("## Bad traffic")
    w("")
    w("| kind | 4xx | closed | 2xx, then closed | other (must be 0) |")
    w("|---|---:|---:|---:|---:|")
    for k in sorted(bad_counts):
        d = bad_counts[k]
        okk = ("4xx", "closed", "2xx, then closed")
        other = sum(v for o, v in d.items() if o not in okk)
        other_s = f"**{other}** ({', '.join(f'{o}: {v}' for o, v in d.items() if o not in okk)})" if other else "0"
        w(f"| {k} | {d.get('4xx', 0):,} | {d.get('closed', 0):,} | {d.get('2xx, then closed', 0):,} | {other_s} |")
    w("")
    w("bad-line: malformed request lines; bad-header: invalid header name, duplicate Content-Length,")
    w("non-numeric Content-Length; te-and-cl: `Transfer-Encoding: chunked` with `Content-Length`, which")
    w("RFC 9112 section 6.1 lets a server reject or process by the chunked coding alone provided it then")
    w("closes the connection (\"2xx, then closed\": the backend got the 5-byte chunked body, and portico")
    w("closed the connection after the answer; a 2xx on a connection left open would fail); oversized: 40 KB request line,")
    w("40 KB header, 3000 headers (limit 16k); bad-chunk: invalid chunk size; mid-body: Content-Length")
    w("200000 and a close (or half-close) after 0-30 KB; tls-garbage: random bytes on the TLS port;")
    w("tls-plaintext: plain HTTP on the TLS port; slowloris: a partial head with one more header line a")
    w(f"second, which must be closed within client_header_timeout + 3 s.")
    w("")
    w("## Memory and file descriptors (portico's process)")
    w("")
    w("| when | VmRSS | VmHWM | fds | upstream sockets | client sockets | listen sockets | files |")
    w("|---|---:|---:|---:|---:|---:|---:|---:|")

    def row(label, s):
        w(f"| {label} | {s['rss_kb'] / 1024:.1f} MiB | {s['hwm_kb'] / 1024:.1f} MiB | {s['total']} | "
          f"{s['upstream']} | {s['client']} | {s['listen']} | {s['file']} |")

    if base:
        row("baseline (after warm-up)", base)
    if during:
        peak = max(during, key=lambda s: s["rss_kb"])
        row("during (highest RSS)", peak)
        row("during (most fds)", max(during, key=lambda s: s["total"]))
    if after:
        row("after traffic stopped" , after[0])
        row(f"after settle ({final['t'] - after[0]['t']:.1f} s)", final)
    w("")
    w(f"Peak over {len(samples)} samples: VmRSS {peak_rss / 1024:.1f} MiB, VmHWM {hwm / 1024:.1f} MiB, {peak_fd} fds.")
    w("")
    w(f"fds: {fd_text}. Idle upstream connections are counted apart because portico keeps up to")
    w(f"`keepalive` of them per server on purpose (closed after 60 s unused); the tolerance of +{tol}")
    w("covers the admin connection that takes the sample's /metrics scrape and a connection closed by")
    w("the client whose close portico has not yet processed. Every other fd (listeners, log files, epoll,")
    w("client connections) must be back to its baseline count.")
    w("")
    w("## Reloads and log reopening")
    w("")
    w(f"- SIGHUP with a valid configuration: {hup_good}; `reloaded` lines in portico's error log: {reloaded}; "
      f"`portico_reloads_total{{result=\"ok\"}}` = {m_ok}; `portico_config_generation` = {m_gen}.")
    w(f"- SIGHUP with a broken configuration: {hup_broken}; `reload refused` lines: {refused}; "
      f"`portico_reloads_total{{result=\"error\"}}` = {m_err}; serving went on (see the good requests around it).")
    w(f"- SIGUSR1 after renaming the access logs: {len(usr1)}; access log files at the end: {', '.join(acc_files)}; "
      f"{acc_lines:,} access log lines in all vs. {m_requests:,} responses in `portico_server_requests_total`"
      f" ({'equal' if acc_lines == m_requests else 'DIFFERENT'}).")
    w("")
    if failures:
        w("## Failures")
        w("")
        shown = {}
        for why, r in failures:
            shown.setdefault(why, []).append(r)
        for why, rs in shown.items():
            w(f"**{why}: {len(rs)}**")
            w("")
            w("```")
            for r in rs[:15]:
                w(json.dumps(r)[:400])
            w("```")
            w("")
        stderr_lines = meta.get("portico_stderr_tail", "")
        if stderr_lines:
            w("portico's error log (error lines, last 20):")
            w("")
            w("```")
            w(stderr_lines)
            w("```")
            w("")
    w("## Timeline")
    w("")
    t_start = float(meta["t_start"])
    w("```")
    for e in events:
        extra = " ".join(f"{k}={v}" for k, v in e.items() if k not in ("t", "ev"))
        w(f"+{e['t'] - t_start:7.1f} s  {e['ev']:<8} {extra}")
    w("```")
    text = "\n".join(L) + "\n"
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    open(out, "w").write(text)
    print(text)
    return 0 if verdict == "PASS" else 1


def main():
    if len(sys.argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    cmd = {"backend": cmd_backend, "drive": cmd_drive, "proc": cmd_proc, "metrics": cmd_metrics, "settled": cmd_settled,
           "report": cmd_report}.get(sys.argv[1])
    if cmd is None:
        print(__doc__, file=sys.stderr)
        return 2
    return cmd(sys.argv[2:])


if __name__ == "__main__":
    sys.exit(main())
