//! The HTTP/1.1 loop's request-head parser (`portico::listener::simple_http1::parse`)
//! on arbitrary bytes from a client, cut into arbitrary reads. The loop below
//! is `simple_http1::serve` without a socket: parse, serve a simple request
//! and parse again (pipelining), read more while a head is partial, hand the
//! connection to hyper when the parser says so or the client stops halfway
//! through a head. Asserts: no panic; where the reads are cut changes nothing
//! (the requests served, in order, and how the connection ends); what hyper
//! gets is the client's bytes as sent, from the end of the last request
//! served (less the empty lines hyper skips too); a request
//! served is one the loop may serve (no body framing, `Expect`, `TE`,
//! `Upgrade` or CONNECT); its close flag is what its Connection headers say
//! (as hyper reads them).
#![no_main]

mod reads;

use bytes::BytesMut;
use http::{HeaderMap, Method, Version, header};
use libfuzzer_sys::fuzz_target;
use portico::listener::simple_http1::{MAX_HEAD, Parsed, parse};

/// A request the loop served.
#[derive(Debug, PartialEq)]
struct Served {
    method: String,
    target: String,
    headers: Vec<(String, Vec<u8>)>,
    close: bool,
}

/// How the connection left the loop.
#[derive(Debug, PartialEq)]
enum End {
    /// The client closed between requests, or asked to close after one.
    Closed,
    /// Handed to hyper, which reads these bytes first.
    Hyper(Vec<u8>),
}

/// The loop over `bytes`, read in `pieces` (which make up `bytes`).
fn run<'a>(bytes: &[u8], mut pieces: impl Iterator<Item = &'a [u8]>) -> (Vec<Served>, End) {
    let mut read = BytesMut::new();
    let mut spare = HeaderMap::new();
    let mut served = Vec::new();
    // Bytes read so far, and where the last request served ended.
    let (mut fed, mut served_to) = (0, 0);
    // Hyper gets the client's bytes from the end of the last request served,
    // less the empty lines before the next (which hyper skips too).
    let hyper = |rest: Vec<u8>, served_to: usize| {
        let after = &bytes[served_to..];
        assert_eq!(rest, &after[blank_lines(after)..], "hyper gets the client's bytes as sent");
        End::Hyper(rest)
    };
    loop {
        match parse(&mut read, &mut spare) {
            Parsed::Simple(request, close) => {
                assert!(spare.is_empty(), "the spare map is taken");
                // Exactly one head was taken out: up to its empty line.
                let from = served_to + blank_lines(&bytes[served_to..]);
                let end = head_end(&bytes[from..]).map(|len| from + len);
                assert_eq!(Some(fed - read.len()), end, "the head served is taken out, and no more");
                served_to = fed - read.len();
                served.push(check(&request, close));
                if close {
                    return (served, End::Closed);
                }
            }
            Parsed::Partial => {
                assert!(read.len() < MAX_HEAD, "a partial head past MAX_HEAD is hyper's");
                match pieces.next() {
                    Some(piece) => {
                        read.extend_from_slice(piece);
                        fed += piece.len();
                    }
                    None if read.is_empty() => return (served, End::Closed),
                    // Halfway through a head: hyper reports it.
                    None => return (served, hyper(read.to_vec(), served_to)),
                }
            }
            Parsed::Hyper => {
                assert!(spare.is_empty(), "the spare map is left empty");
                let mut rest = read.to_vec();
                pieces.for_each(|piece| rest.extend_from_slice(piece));
                return (served, hyper(rest, served_to));
            }
        }
    }
}

/// How many bytes of CR and LF `bytes` begin with.
fn blank_lines(bytes: &[u8]) -> usize {
    bytes.iter().take_while(|&&b| b == b'\r' || b == b'\n').count()
}

/// The length of the head `bytes` begin with: up to and with its first empty
/// line (LF LF or LF CR LF, as httparse takes bare LF line ends too).
fn head_end(bytes: &[u8]) -> Option<usize> {
    (0..bytes.len()).find_map(|at| match &bytes[at..] {
        [b'\n', b'\n', ..] => Some(at + 2),
        [b'\n', b'\r', b'\n', ..] => Some(at + 3),
        _ => None,
    })
}

fn check<B>(request: &http::Request<Option<B>>, close: bool) -> Served {
    assert_eq!(request.version(), Version::HTTP_11);
    assert!(request.body().is_none(), "the loop serves requests without a body");
    assert_ne!(request.method(), Method::CONNECT);
    for name in [header::CONTENT_LENGTH, header::TRANSFER_ENCODING, header::EXPECT, header::UPGRADE, header::TE] {
        assert!(!request.headers().contains_key(&name), "{name} is hyper's to handle");
    }
    // Spelled out again here rather than calling the proxy's helper: a
    // comma-separated token `close`, in any case, in a value of visible ASCII
    // only (one with other bytes names nothing, as hyper reads it).
    let asks_close = request.headers().get_all(header::CONNECTION).iter().any(|value| {
        let bytes = value.as_bytes();
        bytes.iter().all(|&b| b == b'\t' || (b' '..=b'~').contains(&b))
            && bytes.split(|&b| b == b',').any(|token| token.trim_ascii().eq_ignore_ascii_case(b"close"))
    });
    assert_eq!(close, asks_close, "close flag against {:?}", request.headers());
    Served {
        method: request.method().to_string(),
        target: request.uri().to_string(),
        headers: request
            .headers()
            .iter()
            .map(|(name, value)| (name.as_str().to_owned(), value.as_bytes().to_vec()))
            .collect(),
        close,
    }
}

fuzz_target!(|input: (Vec<u16>, &[u8])| {
    let (cuts, bytes) = input;
    let whole = run(bytes, std::iter::once(bytes));
    let pieces = reads::cut(bytes, &cuts);
    assert_eq!(run(bytes, pieces.into_iter()), whole, "split at {cuts:?}");
    // One byte per read: the worst case for split lines.
    assert_eq!(run(bytes, bytes.chunks(1)), whole, "one byte per read");
});
