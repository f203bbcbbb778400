//! The PROXY protocol (HAProxy's; v1 text and v2 binary): the header an L4
//! load balancer (an AWS NLB, HAProxy's `send-proxy`, F5, GCP's TCP proxy)
//! puts before a connection's first byte to name the client it took the
//! connection from. nginx's `listen ... proxy_protocol`.
//!
//! Only the header is read off the socket, never a byte past it: what follows
//! is the client's TLS handshake or HTTP request, for the listener as usual.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

/// The v2 header's first 12 bytes.
const V2_SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";
/// A v1 line's longest form, CRLF included (the specification's 107).
const V1_MAX: usize = 107;
/// A v2 header's fixed part: signature, version and command, family, length.
const V2_FIXED: usize = 16;
/// The longest v2 header taken. Its length field allows 64 KiB; what load
/// balancers send (addresses and a few TLVs: a VPC endpoint id, an SSL
/// summary) is far below this, and a connection should not cost 64 KiB
/// before it has said anything.
const V2_MAX: usize = 4096;

/// What a header says about the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Header {
    /// A proxied TCP connection from this client address.
    Client(SocketAddr),
    /// The balancer's own connection (a v2 LOCAL, as its health checks send),
    /// `UNKNOWN`, or an address family other than TCP over IP: the socket's
    /// own peer stands.
    Local,
}

/// Why a connection's header was refused.
#[derive(Debug, thiserror::Error)]
pub enum ProxyHeaderError {
    #[error("the connection closed before its PROXY protocol header")]
    Closed,
    #[error("no PROXY protocol header within client_header_timeout")]
    TimedOut,
    #[error("no PROXY protocol header: the connection began with {0:?}")]
    Missing(String),
    #[error("broken PROXY protocol header: {0}")]
    Malformed(&'static str),
    #[error("reading the PROXY protocol header: {0}")]
    Io(#[from] std::io::Error),
}

/// What the bytes read so far hold.
#[derive(Debug, PartialEq, Eq)]
pub enum Parsed {
    /// A whole header, `len` bytes long.
    Complete { header: Header, len: usize },
    /// A header's beginning: at least `more` bytes of it are still to come.
    Incomplete { more: usize },
}

/// Parses a header at the start of `bytes`, which may hold what follows it too.
pub fn parse(bytes: &[u8]) -> Result<Parsed, ProxyHeaderError> {
    let known = bytes.len().min(V2_SIGNATURE.len());
    if bytes[..known] == V2_SIGNATURE[..known] && !bytes.is_empty() {
        return parse_v2(bytes);
    }
    let known = bytes.len().min(6);
    if bytes[..known] == b"PROXY "[..known] && !bytes.is_empty() {
        return parse_v1(bytes);
    }
    let shown = &bytes[..bytes.len().min(16)];
    Err(ProxyHeaderError::Missing(String::from_utf8_lossy(shown).into_owned()))
}

fn parse_v1(bytes: &[u8]) -> Result<Parsed, ProxyHeaderError> {
    let window = &bytes[..bytes.len().min(V1_MAX)];
    let Some(end) = window.windows(2).position(|pair| pair == b"\r\n") else {
        if window.len() == V1_MAX {
            return Err(ProxyHeaderError::Malformed("a v1 line longer than 107 bytes"));
        }
        // The CR may have come without its LF yet.
        return Ok(Parsed::Incomplete { more: if window.ends_with(b"\r") { 1 } else { 2 } });
    };
    let line =
        std::str::from_utf8(&window[..end]).map_err(|_| ProxyHeaderError::Malformed("a v1 line not in ASCII"))?;
    let len = end + 2;
    let mut fields = line.split(' ').skip(1);
    let header = match fields.next() {
        // The rest of an UNKNOWN line is to be ignored.
        Some("UNKNOWN") => Header::Local,
        Some(family @ ("TCP4" | "TCP6")) => {
            let (Some(source), Some(_destination), Some(port), Some(_), None) =
                (fields.next(), fields.next(), fields.next(), fields.next(), fields.next())
            else {
                return Err(ProxyHeaderError::Malformed("a v1 line without its four addresses and ports"));
            };
            let ip: IpAddr = source.parse().map_err(|_| ProxyHeaderError::Malformed("a v1 source address"))?;
            if ip.is_ipv4() != (family == "TCP4") {
                return Err(ProxyHeaderError::Malformed("a v1 source address of the other family"));
            }
            Header::Client(SocketAddr::new(ip, v1_port(port)?))
        }
        _ => return Err(ProxyHeaderError::Malformed("a v1 line whose protocol is not TCP4, TCP6 or UNKNOWN")),
    };
    Ok(Parsed::Complete { header, len })
}

/// A v1 port: digits only (`u16`'s parser would also take a `+`).
fn v1_port(text: &str) -> Result<u16, ProxyHeaderError> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ProxyHeaderError::Malformed("a v1 source port"));
    }
    text.parse().map_err(|_| ProxyHeaderError::Malformed("a v1 source port"))
}

fn parse_v2(bytes: &[u8]) -> Result<Parsed, ProxyHeaderError> {
    let Some(fixed) = bytes.get(..V2_FIXED) else {
        return Ok(Parsed::Incomplete { more: V2_FIXED - bytes.len() });
    };
    let (version_command, family, length) = (fixed[12], fixed[13], u16::from_be_bytes([fixed[14], fixed[15]]));
    if version_command >> 4 != 2 {
        return Err(ProxyHeaderError::Malformed("a v2 header of another version"));
    }
    let len = V2_FIXED + usize::from(length);
    if len > V2_MAX {
        return Err(ProxyHeaderError::Malformed("a v2 header longer than 4096 bytes"));
    }
    if bytes.len() < len {
        return Ok(Parsed::Incomplete { more: len - bytes.len() });
    }
    let addresses = &bytes[V2_FIXED..len];
    let header = match version_command & 0x0f {
        0 => Header::Local,
        1 => match family {
            // TCP over IPv4: source, destination, source port, destination port.
            0x11 => {
                let a = addresses.get(..12).ok_or(ProxyHeaderError::Malformed("a v2 IPv4 header too short"))?;
                let ip = Ipv4Addr::new(a[0], a[1], a[2], a[3]);
                Header::Client(SocketAddr::new(IpAddr::V4(ip), u16::from_be_bytes([a[8], a[9]])))
            }
            0x21 => {
                let a = addresses.get(..36).ok_or(ProxyHeaderError::Malformed("a v2 IPv6 header too short"))?;
                let mut octets = [0u8; 16];
                octets.copy_from_slice(&a[..16]);
                Header::Client(SocketAddr::new(IpAddr::V6(Ipv6Addr::from(octets)), u16::from_be_bytes([a[32], a[33]])))
            }
            // UNSPEC, UDP, unix sockets: the specification has the receiver
            // fall back to the connection's own addresses.
            _ => Header::Local,
        },
        _ => return Err(ProxyHeaderError::Malformed("a v2 command other than LOCAL or PROXY")),
    };
    Ok(Parsed::Complete { header, len })
}

/// Reads the header off `stream`, and not a byte more.
///
/// The balancer usually sends the header in the same segment as what
/// follows: a peek finds all of it, and one read takes it off. A header that
/// comes in pieces is read in exact steps instead, each no longer than what
/// is certainly still header.
pub async fn read(stream: &mut TcpStream) -> Result<Header, ProxyHeaderError> {
    // Room for a v2 header's longest addresses (unix sockets'), and so
    // for any v1 line too.
    let mut peeked = [0u8; V2_FIXED + 216];
    let n = stream.peek(&mut peeked).await?;
    if n == 0 {
        return Err(ProxyHeaderError::Closed);
    }
    let mut more = match parse(&peeked[..n])? {
        Parsed::Complete { header, len } => {
            stream.read_exact(&mut peeked[..len]).await?;
            return Ok(header);
        }
        Parsed::Incomplete { more } => more,
    };
    // Everything peeked is header: take it, then the rest in exact steps.
    stream.read_exact(&mut peeked[..n]).await?;
    let mut taken = peeked[..n].to_vec();
    loop {
        let start = taken.len();
        taken.resize(start + more, 0);
        match stream.read_exact(&mut taken[start..]).await {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Err(ProxyHeaderError::Closed),
            Err(e) => return Err(e.into()),
        }
        match parse(&taken)? {
            Parsed::Complete { header, .. } => return Ok(header),
            Parsed::Incomplete { more: still } => more = still,
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn complete(bytes: &[u8]) -> (Header, usize) {
        match parse(bytes).unwrap() {
            Parsed::Complete { header, len } => (header, len),
            other => panic!("{other:?}"),
        }
    }

    fn malformed(bytes: &[u8]) -> String {
        match parse(bytes) {
            Err(ProxyHeaderError::Malformed(why)) => why.to_string(),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn v1_lines() {
        let line = b"PROXY TCP4 192.0.2.7 198.51.100.1 56324 443\r\nGET / HTTP/1.1\r\n";
        assert_eq!(complete(line), (Header::Client("192.0.2.7:56324".parse().unwrap()), 45));
        let line = b"PROXY TCP6 2001:db8::1 2001:db8::2 65535 443\r\n\x16\x03\x01";
        assert_eq!(complete(line), (Header::Client("[2001:db8::1]:65535".parse().unwrap()), 46));
        assert_eq!(complete(b"PROXY UNKNOWN\r\n"), (Header::Local, 15));
        assert_eq!(complete(b"PROXY UNKNOWN ffff::1 ffff::2 1 2\r\n"), (Header::Local, 35));
    }

    #[test]
    fn v1_pieces_ask_for_what_is_certainly_still_header() {
        assert_eq!(parse(b"P").unwrap(), Parsed::Incomplete { more: 2 });
        assert_eq!(parse(b"PROXY TCP4 1.2.3.4").unwrap(), Parsed::Incomplete { more: 2 });
        assert_eq!(parse(b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r").unwrap(), Parsed::Incomplete { more: 1 });
    }

    #[test]
    fn v1_refusals() {
        assert_eq!(malformed(b"PROXY TCP4 2001:db8::1 1.2.3.4 1 2\r\n"), "a v1 source address of the other family");
        assert_eq!(malformed(b"PROXY TCP4 1.2.3.4 5.6.7.8 +1 2\r\n"), "a v1 source port");
        assert_eq!(malformed(b"PROXY TCP4 1.2.3.4 5.6.7.8 65536 2\r\n"), "a v1 source port");
        assert_eq!(malformed(b"PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n"), "a v1 line without its four addresses and ports");
        assert_eq!(
            malformed(b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3\r\n"),
            "a v1 line without its four addresses and ports"
        );
        assert_eq!(
            malformed(b"PROXY UDP4 1.2.3.4 5.6.7.8 1 2\r\n"),
            "a v1 line whose protocol is not TCP4, TCP6 or UNKNOWN"
        );
        assert_eq!(malformed(&[b'P', b'R', b'O', b'X', b'Y', b' '].repeat(20)), "a v1 line longer than 107 bytes");
        assert!(
            matches!(parse(b"GET / HTTP/1.1\r\n"), Err(ProxyHeaderError::Missing(start)) if start == "GET / HTTP/1.1\r\n")
        );
        assert!(matches!(parse(b"\x16\x03\x01\x02\x00"), Err(ProxyHeaderError::Missing(_))));
    }

    fn v2(command: u8, family: u8, addresses: &[u8]) -> Vec<u8> {
        let mut header = V2_SIGNATURE.to_vec();
        header.extend([0x20 | command, family]);
        header.extend(u16::try_from(addresses.len()).unwrap().to_be_bytes());
        header.extend(addresses);
        header
    }

    #[test]
    fn v2_headers() {
        let ipv4 = [192, 0, 2, 7, 198, 51, 100, 1, 0xdc, 0x04, 0x01, 0xbb];
        let mut bytes = v2(1, 0x11, &ipv4);
        bytes.extend(b"\x16\x03\x01");
        assert_eq!(complete(&bytes), (Header::Client("192.0.2.7:56324".parse().unwrap()), 28));
        // TLVs after the addresses are skipped.
        let mut with_tlv = ipv4.to_vec();
        with_tlv.extend([0x05, 0x00, 0x02, b'i', b'd']);
        assert_eq!(complete(&v2(1, 0x11, &with_tlv)), (Header::Client("192.0.2.7:56324".parse().unwrap()), 33));
        let mut ipv6 = vec![0x20, 0x01, 0x0d, 0xb8];
        ipv6.extend([0; 11]);
        ipv6.push(1);
        ipv6.extend([0; 16]);
        ipv6.extend([0x01, 0xbb, 0x01, 0xbb]);
        assert_eq!(complete(&v2(1, 0x21, &ipv6)), (Header::Client("[2001:db8::1]:443".parse().unwrap()), 52));
        // A LOCAL connection (the balancer's health check) and a unix socket.
        assert_eq!(complete(&v2(0, 0x00, &[])), (Header::Local, 16));
        assert_eq!(complete(&v2(1, 0x31, &[0; 216])), (Header::Local, 232));
    }

    #[test]
    fn v2_pieces_and_refusals() {
        let whole = v2(1, 0x11, &[1, 2, 3, 4, 5, 6, 7, 8, 0, 1, 0, 2]);
        assert_eq!(parse(&whole[..5]).unwrap(), Parsed::Incomplete { more: 11 });
        assert_eq!(parse(&whole[..20]).unwrap(), Parsed::Incomplete { more: 8 });
        assert_eq!(malformed(&v2(1, 0x11, &[1, 2, 3])), "a v2 IPv4 header too short");
        assert_eq!(malformed(&v2(1, 0x21, &[0; 12])), "a v2 IPv6 header too short");
        assert_eq!(malformed(&v2(2, 0x11, &[0; 12])), "a v2 command other than LOCAL or PROXY");
        assert_eq!(malformed(&v2(1, 0x11, &[0; 4081])), "a v2 header longer than 4096 bytes");
        let mut version_one = v2(1, 0x11, &[0; 12]);
        version_one[12] = 0x11;
        assert_eq!(malformed(&version_one), "a v2 header of another version");
    }
}
