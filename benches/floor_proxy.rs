//! The floor under scenario 2 of `benches/load/compare.sh`: the least a plain
//! HTTP/1.1 proxy on tokio can do per request, to tell the cost of the runtime
//! and the kernel from that of the HTTP machinery above them (step 27 of
//! `docs/performance-log.md`).
//!
//! ```text
//! cargo bench --bench floor_proxy --no-run        # prints the binary's path
//! taskset -c 1 $B 127.0.0.1:19202 127.0.0.1:19001 127.0.0.1:19002   # LISTEN UPSTREAM...
//! ```
//!
//! It does what the benchmark's proxies do for `GET /small`, and no more: one
//! current-thread runtime, a task per client connection that reads a request
//! head (httparse), writes the upstream request with the hop-by-hop headers
//! dropped and `Host`, `X-Forwarded-{Host,Server,For,Port,Proto}` set, on a
//! keep-alive connection to the next upstream in round-robin order, reads the
//! answer head and its Content-Length body, and writes them back with the
//! hop-by-hop headers dropped. No `HeaderMap`, no body streaming, no timeouts,
//! no routing, no logs: requests with a body and answers without a
//! Content-Length are refused. It is a measuring instrument, not a proxy.

use std::cell::RefCell;
use std::net::SocketAddr;
use std::rc::Rc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

type BoxError = Box<dyn std::error::Error>;

/// Idle upstream connections, each with its read buffer, per server.
struct Pool {
    servers: Vec<SocketAddr>,
    idle: Vec<Vec<(TcpStream, Vec<u8>)>>,
    next: usize,
}

/// Dropped in both directions (RFC 9110 7.6.1); `Host` is set anew.
const HOP_BY_HOP: [&str; 7] =
    ["connection", "keep-alive", "proxy-connection", "te", "trailer", "transfer-encoding", "upgrade"];
const BUFFER: usize = 8192;
const MAX_HEADERS: usize = 64;

fn main() -> Result<(), BoxError> {
    let args: Vec<String> = std::env::args().skip(1).filter(|a| a != "--bench").collect();
    // `cargo bench` runs every bench target with no arguments: nothing to do.
    let Some((listen, servers)) = args.split_first() else { return Ok(()) };
    if servers.is_empty() {
        eprintln!("usage: floor_proxy LISTEN UPSTREAM...");
        std::process::exit(2);
    }
    let listen: SocketAddr = listen.parse()?;
    let servers: Vec<SocketAddr> = servers.iter().map(|s| s.parse()).collect::<Result<_, _>>()?;
    let idle = servers.iter().map(|_| Vec::new()).collect();
    let pool = Rc::new(RefCell::new(Pool { servers, idle, next: 0 }));
    let runtime = tokio::runtime::Builder::new_current_thread().enable_io().build()?;
    let tasks = tokio::task::LocalSet::new();
    tasks.block_on(&runtime, async move {
        let listener = TcpListener::bind(listen).await?;
        loop {
            let (client, peer) = listener.accept().await?;
            client.set_nodelay(true)?;
            let pool = pool.clone();
            tokio::task::spawn_local(async move {
                if let Err(e) = serve(client, peer, pool).await {
                    eprintln!("floor_proxy: {peer}: {e}");
                }
            });
        }
    })
}

fn is_hop_by_hop(name: &str) -> bool {
    HOP_BY_HOP.iter().any(|hop| name.eq_ignore_ascii_case(hop))
}

fn push_header(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

async fn serve(mut client: TcpStream, peer: SocketAddr, pool: Rc<RefCell<Pool>>) -> Result<(), BoxError> {
    let client_ip = peer.ip().to_string();
    let port_line = format!("X-Forwarded-Port: {}\r\nX-Forwarded-Proto: http\r\n\r\n", client.local_addr()?.port());
    let mut request = vec![0u8; BUFFER];
    let mut filled = 0;
    let mut out = Vec::with_capacity(BUFFER);
    loop {
        // The request head, into the upstream request.
        out.clear();
        let head_len = loop {
            let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
            let mut head = httparse::Request::new(&mut headers);
            if let httparse::Status::Complete(len) = head.parse(&request[..filled])? {
                out.extend_from_slice(head.method.unwrap_or("GET").as_bytes());
                out.push(b' ');
                out.extend_from_slice(head.path.unwrap_or("/").as_bytes());
                out.extend_from_slice(b" HTTP/1.1\r\n");
                let mut host: &[u8] = b"";
                for header in head.headers.iter() {
                    let name = header.name;
                    if name.eq_ignore_ascii_case("transfer-encoding")
                        || (name.eq_ignore_ascii_case("content-length") && header.value != b"0")
                    {
                        return Err("a request body: not handled here".into());
                    } else if name.eq_ignore_ascii_case("host") {
                        host = header.value;
                    } else if !is_hop_by_hop(name) {
                        push_header(&mut out, name.as_bytes(), header.value);
                    }
                }
                // `$host`: the Host header without its port (`[::1]:8080` -> `[::1]`).
                let host_name = match host.iter().rposition(|&b| b == b':') {
                    Some(colon) if host[colon + 1..].iter().all(u8::is_ascii_digit) => &host[..colon],
                    _ => host,
                };
                push_header(&mut out, b"Host", host);
                push_header(&mut out, b"X-Forwarded-Host", host_name);
                push_header(&mut out, b"X-Forwarded-Server", host_name);
                push_header(&mut out, b"X-Forwarded-For", client_ip.as_bytes());
                out.extend_from_slice(port_line.as_bytes());
                break len;
            }
            if filled == request.len() {
                return Err("request head over 8 KiB".into());
            }
            match client.read(&mut request[filled..]).await? {
                0 => return Ok(()),
                n => filled += n,
            }
        };
        request.copy_within(head_len..filled, 0);
        filled -= head_len;

        // An upstream connection: the next server's idle one, or a new one.
        let (server, idle) = {
            let mut pool = pool.borrow_mut();
            let server = pool.next % pool.servers.len();
            pool.next = pool.next.wrapping_add(1);
            (server, pool.idle[server].pop())
        };
        let (mut upstream, mut answer) = match idle {
            Some(idle) => idle,
            None => {
                let addr = pool.borrow().servers[server];
                let upstream = TcpStream::connect(addr).await?;
                upstream.set_nodelay(true)?;
                (upstream, vec![0u8; BUFFER])
            }
        };
        upstream.write_all(&out).await?;

        // The answer head, then its body, into the client's answer.
        out.clear();
        let mut got = 0;
        let (body_start, end) = loop {
            let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
            let mut head = httparse::Response::new(&mut headers);
            if let httparse::Status::Complete(len) = head.parse(&answer[..got])? {
                out.extend_from_slice(b"HTTP/1.1 ");
                // httparse takes exactly three digits.
                let code = head.code.unwrap_or(502);
                out.extend_from_slice(&[code / 100, code / 10 % 10, code % 10].map(|d| b'0' + d as u8));
                out.push(b' ');
                out.extend_from_slice(head.reason.unwrap_or_default().as_bytes());
                out.extend_from_slice(b"\r\n");
                let mut length = None;
                for header in head.headers.iter() {
                    if header.name.eq_ignore_ascii_case("content-length") {
                        length = Some(std::str::from_utf8(header.value)?.trim().parse::<usize>()?);
                    }
                    if !is_hop_by_hop(header.name) {
                        push_header(&mut out, header.name.as_bytes(), header.value);
                    }
                }
                out.extend_from_slice(b"\r\n");
                let length = length.ok_or("an answer without Content-Length: not handled here")?;
                break (len, len + length);
            }
            if got == answer.len() {
                return Err("answer head over 8 KiB".into());
            }
            match upstream.read(&mut answer[got..]).await? {
                0 => return Err("upstream closed".into()),
                n => got += n,
            }
        };
        if got > end {
            return Err("bytes after the answer: not handled here".into());
        }
        if answer.len() < end {
            answer.resize(end, 0);
        }
        while got < end {
            match upstream.read(&mut answer[got..end]).await? {
                0 => return Err("upstream closed".into()),
                n => got += n,
            }
        }
        out.extend_from_slice(&answer[body_start..end]);
        answer.truncate(BUFFER);
        pool.borrow_mut().idle[server].push((upstream, answer));
        client.write_all(&out).await?;
    }
}
