//! Follows the framing of HTTP/1 requests on a client connection's raw bytes,
//! to catch what hyper hides: a request with both Content-Length and
//! Transfer-Encoding. hyper drops the Content-Length, reads the body as chunked
//! and hands the service a request that looks well framed, so the service
//! alone cannot refuse it (request smuggling, RFC 9112 section 6.1).
//!
//! A [`Tracker`] sees every byte the client sends before hyper does (the
//! connection's I/O wrapper feeds it). It walks message boundaries as hyper
//! does: blank lines, a head, then a Content-Length body (skipped in O(1) per
//! read) or a chunked body (sizes, extensions, trailers), then the next head.
//! It numbers the heads; the connection's [`Verdict`] numbers the requests hyper
//! hands to the service, so the flagged one is answered 400 and never
//! forwarded, while pipelined requests before it are served as usual.
//!
//! After an Upgrade or CONNECT request it waits for the answer: when the
//! service declined to switch protocols (no 101), the next bytes are the next
//! request and it follows on; otherwise they are another protocol and it stops.
//! It stops following (goes inert) on HTTP/2 and on anything it cannot follow:
//! hyper refuses such bytes itself and closes the connection, so nothing after
//! them is served anyway.
//! It allocates only when a head line is split across reads.

use std::sync::atomic::{AtomicU64, Ordering};

/// A head line longer than this stops the tracker. portico refuses longer
/// request lines (414) and header lines (431) anyway, and hyper's read buffer
/// caps a head's size, so the connection ends at that request.
const MAX_LINE: usize = 16 * 1024;

/// One client connection's position in the request stream.
#[derive(Debug)]
pub struct Tracker {
    state: State,
    /// Request heads completed on this connection.
    heads: u64,
    /// What the head being read has declared so far.
    head: Head,
    /// The unfinished head line of a read that ended mid-line (empty otherwise).
    partial: Vec<u8>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Between requests: blank lines may come before the next request line.
    Idle,
    /// Reading a head: the request line, then header lines up to a blank one.
    Head,
    /// This many bytes of a Content-Length body are still to come.
    Body(u64),
    /// Inside a chunked body.
    Chunked(Chunk),
    /// After an Upgrade or CONNECT request without a body: the next bytes are
    /// another protocol if the server switched, the next request if not
    /// (see [`Tracker::answered`]).
    Upgrading,
    /// Not following any more (HTTP/2, an upgrade, or bytes hyper refuses).
    Inert,
}

/// A chunked body, byte by byte as hyper's decoder reads it (strict CRLF).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Chunk {
    /// Expecting the first hex digit of a chunk size.
    Start,
    /// In the hex digits of a chunk size.
    Size(u64),
    /// Whitespace after the size.
    SizeSpace(u64),
    /// A chunk extension, up to CR.
    Extension(u64),
    /// CR seen after the size line; LF must follow.
    SizeLf(u64),
    /// This many chunk data bytes to skip.
    Data(u64),
    /// Chunk data ended; CR must follow.
    DataCr,
    /// LF must follow.
    DataLf,
    /// After the last chunk, at the start of a trailer line or the final CRLF.
    EndCr,
    /// Inside a trailer line, up to CR.
    Trailer,
    /// CR seen in a trailer line; LF must follow.
    TrailerLf,
    /// The final CR seen; LF ends the message.
    EndLf,
}

/// The framing-relevant facts of one head.
#[derive(Debug, Default, Clone, Copy)]
struct Head {
    /// The request line has been read.
    started: bool,
    /// Content-Length lines, and their agreed value if every one parsed and agreed.
    content_lengths: u32,
    content_length: Option<u64>,
    /// Transfer-Encoding lines, and whether the one seen was exactly `chunked`.
    transfer_encodings: u32,
    chunked: bool,
    /// CONNECT or an Upgrade header: after this request the bytes may be another protocol.
    upgrade: bool,
}

impl Default for Tracker {
    fn default() -> Tracker {
        Tracker::new()
    }
}

impl Tracker {
    /// A tracker at the start of a connection.
    pub fn new() -> Tracker {
        Tracker { state: State::Idle, heads: 0, head: Head::default(), partial: Vec::new() }
    }

    /// A tracker that follows nothing (an HTTP/2 connection by ALPN).
    pub fn inert() -> Tracker {
        Tracker { state: State::Inert, ..Tracker::new() }
    }

    /// Whether the tracker has stopped following the stream.
    pub fn is_inert(&self) -> bool {
        self.state == State::Inert
    }

    /// Whether every byte so far belongs to a whole request: no head or body
    /// is half read (false once inert or after an Upgrade request).
    pub fn between_requests(&self) -> bool {
        self.state == State::Idle
    }

    /// Request heads completed so far.
    pub fn heads(&self) -> u64 {
        self.heads
    }

    /// Before the bytes that follow an Upgrade or CONNECT request: whether
    /// its answer switched protocols, per `verdict`. Declined, the stream goes
    /// on as HTTP/1; switched, or not answered yet (a client that did not wait
    /// for the answer), the tracker stops.
    pub fn answered(&mut self, verdict: &Verdict) {
        if self.state == State::Upgrading {
            if verdict.declined_upgrade.load(Ordering::Relaxed) == self.heads {
                self.state = State::Idle;
            } else {
                self.stop();
            }
        }
    }

    /// Takes the next bytes the client sent. Returns the number (from 1) of a
    /// request whose head carries both Content-Length and Transfer-Encoding,
    /// once, when its head completes; the tracker is inert from then on.
    pub fn feed(&mut self, mut data: &[u8]) -> Option<u64> {
        while !data.is_empty() {
            match self.state {
                State::Inert => return None,
                // Bytes in the same read as the upgrade request's head came
                // before its answer: not an HTTP/1 request to follow.
                State::Upgrading => return self.stop(),
                State::Idle => {
                    // httparse skips empty lines before a request line (a
                    // stray CR it refuses, and so the connection ends).
                    let start = data.iter().position(|&b| b != b'\r' && b != b'\n')?;
                    data = &data[start..];
                    self.state = State::Head;
                    self.head = Head::default();
                }
                State::Head => match self.head_bytes(data) {
                    Ok(rest) => data = rest,
                    Err(flagged) => return flagged,
                },
                State::Body(left) => {
                    let len = data.len() as u64;
                    if len < left {
                        self.state = State::Body(left - len);
                        return None;
                    }
                    // `left <= len`, so it fits in usize.
                    data = data.get(usize::try_from(left).unwrap_or(usize::MAX)..).unwrap_or_default();
                    self.state = State::Idle;
                }
                State::Chunked(chunk) => data = self.chunk_bytes(chunk, data),
            }
        }
        None
    }

    /// Reads head lines from `data`; returns what follows the head, or
    /// `Err` when the tracker stopped (with the ambiguous request's number, if that is why).
    fn head_bytes<'d>(&mut self, mut data: &'d [u8]) -> Result<&'d [u8], Option<u64>> {
        while self.state == State::Head {
            let Some(end) = memchr::memchr(b'\n', data) else {
                // The line goes on in a later read: keep it (bounded).
                if self.partial.len() + data.len() > MAX_LINE {
                    return Err(self.stop());
                }
                self.partial.extend_from_slice(data);
                return Ok(&[]);
            };
            let (line, rest) = (&data[..end], &data[end + 1..]);
            data = rest;
            // Most header lines name none of the three fields that matter:
            // skip them here, by their first letter (`line` does the same).
            let ordinary =
                matches!(line.first(), Some(b) if !matches!(b.to_ascii_lowercase(), b'c' | b't' | b'u' | b'\r'));
            if ordinary && self.head.started && self.partial.is_empty() && line.len() <= MAX_LINE {
                continue;
            }
            let flagged = if self.partial.is_empty() {
                self.line(line)
            } else {
                let mut whole = std::mem::take(&mut self.partial);
                whole.extend_from_slice(line);
                self.line(&whole)
            };
            if self.state == State::Inert {
                return Err(flagged);
            }
        }
        Ok(data)
    }

    /// One complete head line, without its LF. Returns the request's number
    /// if it ended an ambiguous head.
    fn line(&mut self, line: &[u8]) -> Option<u64> {
        if line.len() > MAX_LINE {
            return self.stop();
        }
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if !self.head.started {
            self.head.started = true;
            if line.starts_with(b"PRI ") {
                // The HTTP/2 connection preface (`PRI * HTTP/2.0`).
                return self.stop();
            }
            self.head.upgrade = line.starts_with(b"CONNECT ");
            return None;
        }
        if line.is_empty() {
            return self.end_of_head();
        }
        // Only three names matter: their first letters rule out most lines
        // before any search for the colon.
        let first = line.first().map(u8::to_ascii_lowercase);
        if !matches!(first, Some(b'c' | b't' | b'u')) {
            return None;
        }
        let colon = memchr::memchr(b':', line)?;
        let (name, value) = (&line[..colon], trim(&line[colon + 1..]));
        match first {
            Some(b'c') if name.eq_ignore_ascii_case(b"content-length") => {
                let parsed = digits(value);
                self.head.content_length = match (self.head.content_lengths, self.head.content_length) {
                    (0, _) => parsed,
                    (_, previous) if previous == parsed => previous,
                    _ => None,
                };
                self.head.content_lengths += 1;
            }
            Some(b't') if name.eq_ignore_ascii_case(b"transfer-encoding") => {
                self.head.transfer_encodings += 1;
                self.head.chunked = value.eq_ignore_ascii_case(b"chunked");
            }
            Some(b'u') if name.eq_ignore_ascii_case(b"upgrade") => self.head.upgrade = true,
            _ => {}
        }
        None
    }

    /// The blank line after the headers: decides how the body is framed.
    fn end_of_head(&mut self) -> Option<u64> {
        self.heads += 1;
        let head = self.head;
        if head.content_lengths > 0 && head.transfer_encodings > 0 {
            // Two parsers may frame this request differently: the service
            // refuses it, and nothing after it on this connection is served.
            self.stop();
            return Some(self.heads);
        }
        self.state = if head.upgrade {
            let body = head.transfer_encodings > 0 || head.content_length.is_some_and(|length| length > 0);
            if body || head.content_lengths > 0 && head.content_length.is_none() {
                State::Inert
            } else {
                State::Upgrading
            }
        } else if head.transfer_encodings > 0 {
            // Anything but one plain `chunked` is refused by portico (400, close).
            if head.transfer_encodings == 1 && head.chunked { State::Chunked(Chunk::Start) } else { State::Inert }
        } else {
            match (head.content_lengths, head.content_length) {
                (0, _) | (_, Some(0)) => State::Idle,
                (_, Some(length)) => State::Body(length),
                // hyper refuses an invalid or disagreeing Content-Length.
                (_, None) => State::Inert,
            }
        };
        None
    }

    /// Follows a chunked body through `data`; returns what follows the body
    /// (empty if the body goes on, or the tracker stopped).
    fn chunk_bytes<'d>(&mut self, mut chunk: Chunk, mut data: &'d [u8]) -> &'d [u8] {
        while let Some((&byte, rest)) = data.split_first() {
            let next = match chunk {
                Chunk::Data(left) => {
                    // Skip the data in one step, not byte by byte.
                    let len = data.len() as u64;
                    if len < left {
                        self.state = State::Chunked(Chunk::Data(left - len));
                        return &[];
                    }
                    data = data.get(usize::try_from(left).unwrap_or(usize::MAX)..).unwrap_or_default();
                    chunk = Chunk::DataCr;
                    continue;
                }
                Chunk::Trailer => {
                    // Trailer lines end at CR, as hyper reads them.
                    let Some(cr) = memchr::memchr(b'\r', data) else {
                        self.state = State::Chunked(Chunk::Trailer);
                        return &[];
                    };
                    data = &data[cr + 1..];
                    chunk = Chunk::TrailerLf;
                    continue;
                }
                Chunk::Start => hex(byte).map(|digit| Chunk::Size(u64::from(digit))),
                Chunk::Size(size) => match byte {
                    b'\t' | b' ' => Some(Chunk::SizeSpace(size)),
                    b';' => Some(Chunk::Extension(size)),
                    b'\r' => Some(Chunk::SizeLf(size)),
                    _ => hex(byte).and_then(|digit| {
                        size.checked_mul(16).and_then(|s| s.checked_add(u64::from(digit))).map(Chunk::Size)
                    }),
                },
                Chunk::SizeSpace(size) => match byte {
                    b'\t' | b' ' => Some(Chunk::SizeSpace(size)),
                    b';' => Some(Chunk::Extension(size)),
                    b'\r' => Some(Chunk::SizeLf(size)),
                    _ => None,
                },
                Chunk::Extension(size) => match byte {
                    b'\r' => Some(Chunk::SizeLf(size)),
                    b'\n' => None,
                    _ => Some(Chunk::Extension(size)),
                },
                Chunk::SizeLf(0) => (byte == b'\n').then_some(Chunk::EndCr),
                Chunk::SizeLf(size) => (byte == b'\n').then_some(Chunk::Data(size)),
                Chunk::DataCr => (byte == b'\r').then_some(Chunk::DataLf),
                Chunk::DataLf => (byte == b'\n').then_some(Chunk::Start),
                // Any byte but CR starts a trailer line (and belongs to it).
                Chunk::EndCr if byte == b'\r' => Some(Chunk::EndLf),
                Chunk::EndCr => {
                    chunk = Chunk::Trailer;
                    continue;
                }
                Chunk::TrailerLf => (byte == b'\n').then_some(Chunk::EndCr),
                Chunk::EndLf if byte == b'\n' => {
                    self.state = State::Idle;
                    return rest;
                }
                Chunk::EndLf => None,
            };
            let Some(next) = next else {
                // hyper fails the body here: the request ends with an error
                // and the connection closes.
                self.stop();
                return &[];
            };
            chunk = next;
            data = rest;
        }
        self.state = State::Chunked(chunk);
        &[]
    }

    /// Stops following the stream for good.
    fn stop(&mut self) -> Option<u64> {
        self.state = State::Inert;
        self.partial = Vec::new();
        None
    }
}

/// What a connection's tracker found, for the service handling its requests.
#[derive(Debug, Default)]
pub struct Verdict {
    /// The number of the request the tracker flagged; 0 for none.
    ambiguous: AtomicU64,
    /// Requests handed to the service so far.
    handed: AtomicU64,
    /// The number of the last Upgrade or CONNECT request answered without
    /// switching protocols; 0 for none.
    declined_upgrade: AtomicU64,
}

impl Verdict {
    /// Records that request number `request` (from 1) was ambiguous.
    pub fn flag(&self, request: u64) {
        // Only the first counts: the connection closes after that request.
        let _ = self.ambiguous.compare_exchange(0, request, Ordering::Relaxed, Ordering::Relaxed);
    }

    /// Counts a request handed to the service: its number, and whether it is
    /// the flagged one. The tracker has always seen a head before hyper hands
    /// its request on.
    pub fn next_request(&self) -> (u64, bool) {
        let number = self.handed.fetch_add(1, Ordering::Relaxed) + 1;
        (number, number == self.ambiguous.load(Ordering::Relaxed))
    }

    /// Records that request `number`, an Upgrade or CONNECT request, was
    /// answered without switching protocols: the connection stays HTTP/1.
    /// Set before hyper writes the answer, so before the client sends on.
    pub fn upgrade_declined(&self, number: u64) {
        self.declined_upgrade.store(number, Ordering::Relaxed);
    }
}

/// Marks a request as ambiguously framed (a request extension the service checks).
#[derive(Debug, Clone, Copy)]
pub struct Ambiguous;

/// `bytes` without leading and trailing spaces and tabs.
pub(crate) fn trim(bytes: &[u8]) -> &[u8] {
    let start = bytes.iter().position(|&b| b != b' ' && b != b'\t').unwrap_or(bytes.len());
    let end = bytes.iter().rposition(|&b| b != b' ' && b != b'\t').map_or(start, |i| i + 1);
    bytes.get(start..end).unwrap_or_default()
}

/// A decimal Content-Length as hyper reads it: digits only, no sign, no overflow.
pub(crate) fn digits(bytes: &[u8]) -> Option<u64> {
    if bytes.is_empty() {
        return None;
    }
    bytes.iter().try_fold(0u64, |n, &b| {
        let digit = char::from(b).to_digit(10)?;
        n.checked_mul(10)?.checked_add(u64::from(digit))
    })
}

fn hex(byte: u8) -> Option<u8> {
    char::from(byte).to_digit(16).and_then(|d| u8::try_from(d).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    const GET: &[u8] = b"GET /a HTTP/1.1\r\nHost: a.test\r\n\r\n";
    const POST: &[u8] = b"POST /b HTTP/1.1\r\nHost: a.test\r\nContent-Length: 11\r\n\r\nhello world";
    /// A body that looks like smuggling, but is only data.
    const POST_DECOY: &[u8] =
        b"POST /c HTTP/1.1\r\nContent-Length: 47\r\n\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n";
    const CHUNKED: &[u8] = b"POST /d HTTP/1.1\r\nHost: a.test\r\ntransfer-encoding: Chunked\r\n\r\n\
        5;name=value;x\r\nhello\r\nA \t;ext\r\n0123456789\r\n0\r\nX-Trailer: 1\r\nX-Other: 2\r\n\r\n";
    const SMUGGLE: &[u8] =
        b"POST /e HTTP/1.1\r\nHost: a.test\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nX";

    fn concat(parts: &[&[u8]]) -> Vec<u8> {
        parts.concat()
    }

    /// Feeds `bytes` in the given pieces; returns the flagged request and the heads seen.
    fn feed_split(bytes: &[u8], cuts: &[usize]) -> (Option<u64>, u64) {
        let mut tracker = Tracker::new();
        let mut flagged = None;
        let mut from = 0;
        for &cut in cuts.iter().chain(std::iter::once(&bytes.len())) {
            if let Some(n) = tracker.feed(&bytes[from..cut]) {
                assert!(flagged.is_none(), "flagged twice");
                flagged = Some(n);
            }
            from = cut;
        }
        (flagged, tracker.heads())
    }

    fn feed_all(bytes: &[u8]) -> (Option<u64>, u64) {
        feed_split(bytes, &[])
    }

    #[test]
    fn cl_and_te_in_either_order_and_any_case_are_flagged() {
        assert_eq!(feed_all(SMUGGLE), (Some(1), 1));
        let te_first = b"POST / HTTP/1.1\r\nTRANSFER-ENCODING: chunked\r\ncontent-length: 6\r\n\r\n0\r\n\r\nX";
        assert_eq!(feed_all(te_first), (Some(1), 1));
        let odd_te = b"POST / HTTP/1.1\r\nContent-Length: 6\r\nTransfer-Encoding: gzip\r\n\r\n";
        assert_eq!(feed_all(odd_te), (Some(1), 1));
    }

    #[test]
    fn pipelined_requests_are_numbered_and_bodies_skipped() {
        let stream = concat(&[GET, POST, POST_DECOY, CHUNKED, GET, SMUGGLE, GET]);
        assert_eq!(feed_all(&stream), (Some(6), 6));
        let clean = concat(&[GET, POST, POST_DECOY, CHUNKED, GET]);
        let mut tracker = Tracker::new();
        assert_eq!(tracker.feed(&clean), None);
        assert_eq!(tracker.heads(), 5);
        assert_eq!(tracker.state, State::Idle, "back between requests");
        assert!(tracker.partial.capacity() == 0, "nothing was buffered");
    }

    #[test]
    fn every_split_point_gives_the_same_answer() {
        let stream = concat(&[GET, POST, CHUNKED, POST_DECOY, SMUGGLE, GET]);
        let whole = feed_all(&stream);
        assert_eq!(whole, (Some(5), 5));
        for cut in 0..=stream.len() {
            assert_eq!(feed_split(&stream, &[cut]), whole, "split at {cut}");
        }
        for cut in 0..stream.len() {
            assert_eq!(feed_split(&stream, &[cut, cut + 1]), whole, "one byte alone at {cut}");
        }
        let every: Vec<usize> = (1..stream.len()).collect();
        assert_eq!(feed_split(&stream, &every), whole, "one byte per read");
    }

    #[test]
    fn a_split_head_is_buffered_only_while_split() {
        let mut tracker = Tracker::new();
        assert_eq!(tracker.feed(&SMUGGLE[..40]), None);
        assert!(!tracker.partial.is_empty());
        assert_eq!(tracker.feed(&SMUGGLE[40..]), Some(1));
        assert!(tracker.partial.is_empty() && tracker.is_inert());
    }

    #[test]
    fn blank_lines_and_bare_lf_between_and_in_requests() {
        let bare_lf = b"\r\n\nPOST / HTTP/1.1\nContent-Length: 3\n\nabc\r\nGET / HTTP/1.1\nHost: x\n\n";
        assert_eq!(feed_all(bare_lf), (None, 2));
        let mut stream = bare_lf.to_vec();
        stream.extend_from_slice(b"POST / HTTP/1.1\nTransfer-Encoding: chunked\nContent-Length: 1\n\n");
        assert_eq!(feed_all(&stream), (Some(3), 3));
    }

    #[test]
    fn chunked_body_with_extensions_and_trailers_is_followed() {
        let stream = concat(&[CHUNKED, CHUNKED, SMUGGLE]);
        assert_eq!(feed_all(&stream), (Some(3), 3));
        // No trailers, upper-case hex, whitespace before the CRLF.
        let plain = b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n1F  \r\n0123456789012345678901234567890\r\n0\r\n\r\n";
        let stream = concat(&[plain, SMUGGLE]);
        assert_eq!(feed_all(&stream), (Some(2), 2));
    }

    #[test]
    fn upgrade_and_connect_stop_the_tracker() {
        let upgrade = b"GET /ws HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n";
        let mut tracker = Tracker::new();
        assert_eq!(tracker.feed(&concat(&[upgrade, SMUGGLE])), None);
        assert!(tracker.is_inert());
        assert_eq!(tracker.heads(), 1);
        let connect = b"CONNECT a.test:443 HTTP/1.1\r\nHost: a.test:443\r\n\r\n";
        assert_eq!(feed_all(&concat(&[connect, SMUGGLE])), (None, 1));
    }

    #[test]
    fn http2_preface_stops_the_tracker() {
        let mut tracker = Tracker::new();
        let preface = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
        assert_eq!(tracker.feed(&concat(&[preface, SMUGGLE])), None);
        assert!(tracker.is_inert());
        let mut inert = Tracker::inert();
        assert_eq!(inert.feed(SMUGGLE), None);
        assert_eq!(inert.heads(), 0);
    }

    #[test]
    fn bytes_hyper_refuses_stop_the_tracker() {
        let bad = [
            &b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"[..],
            b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhelloXX0\r\n\r\n",
            b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5;a\nb\r\nhello\r\n0\r\n\r\n",
            b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nfffffffffffffffffff\r\n",
            b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\r",
            b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
            b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"POST / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
            b"POST / HTTP/1.1\r\nContent-Length: +5\r\n\r\n",
        ];
        for bytes in bad {
            let mut tracker = Tracker::new();
            assert_eq!(tracker.feed(&concat(&[bytes, SMUGGLE])), None, "{:?}", String::from_utf8_lossy(bytes));
            assert!(tracker.is_inert(), "{:?}", String::from_utf8_lossy(bytes));
        }
        // Equal repeated lengths are one length, as for hyper.
        let same = b"POST / HTTP/1.1\r\nContent-Length: 2\r\nContent-Length:  2 \r\n\r\nab";
        assert_eq!(feed_all(&concat(&[same, SMUGGLE])), (Some(2), 2));
    }

    #[test]
    fn an_overlong_line_stops_the_tracker_split_or_not() {
        let mut long = b"GET /".to_vec();
        long.extend(std::iter::repeat_n(b'a', MAX_LINE));
        long.extend_from_slice(b" HTTP/1.1\r\n\r\n");
        long.extend_from_slice(SMUGGLE);
        assert_eq!(feed_all(&long), (None, 0));
        assert_eq!(feed_split(&long, &[100, 9000]), (None, 0));
    }

    #[test]
    fn a_large_body_costs_one_step_per_read() {
        let mut tracker = Tracker::new();
        tracker.feed(b"PUT / HTTP/1.1\r\nContent-Length: 1000000000000\r\n\r\n");
        let block = [b'x'; 4096];
        for _ in 0..100 {
            assert_eq!(tracker.feed(&block), None);
        }
        assert_eq!(tracker.state, State::Body(1_000_000_000_000 - 409_600));
    }

    #[test]
    fn verdict_marks_only_the_flagged_request() {
        let verdict = Verdict::default();
        verdict.flag(3);
        verdict.flag(5);
        let marked: Vec<(u64, bool)> = (0..5).map(|_| verdict.next_request()).collect();
        assert_eq!(marked, [(1, false), (2, false), (3, true), (4, false), (5, false)]);
        let clean = Verdict::default();
        assert!((0..5).all(|_| !clean.next_request().1));
    }

    const UPGRADE: &[u8] = b"GET /ws HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n";

    #[test]
    fn a_declined_upgrade_is_followed_by_requests_to_follow() {
        let verdict = Verdict::default();
        let mut tracker = Tracker::new();
        assert_eq!(tracker.feed(concat(&[GET, UPGRADE]).as_slice()), None);
        verdict.upgrade_declined(2);
        tracker.answered(&verdict);
        assert_eq!(tracker.feed(SMUGGLE), Some(3));
    }

    #[test]
    fn a_switched_or_unanswered_upgrade_stops_the_tracker() {
        // Switched: no decline recorded for this request (an earlier one's does not count).
        let verdict = Verdict::default();
        verdict.upgrade_declined(1);
        let mut tracker = Tracker::new();
        assert_eq!(tracker.feed(concat(&[GET, UPGRADE]).as_slice()), None);
        tracker.answered(&verdict);
        assert_eq!(tracker.feed(SMUGGLE), None);
        assert!(tracker.is_inert());
        // An upgrade request with a body is not waited on.
        let mut tracker = Tracker::new();
        let with_body = b"POST /ws HTTP/1.1\r\nUpgrade: x\r\nContent-Length: 2\r\n\r\nab";
        assert_eq!(tracker.feed(with_body), None);
        assert!(tracker.is_inert());
    }
}
