//! gzip for upstream responses (`gzip = true` on a server or location; nginx's
//! `gzip on`): what is compressed is decided from the request and the response
//! head as nginx's gzip filter decides it, and the body is compressed as it
//! streams, each piece the upstream sends flushed on at once so that a
//! trickling answer (server-sent events, a long poll) is not held back.

use std::cell::RefCell;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use flate2::{Compress, Compression, Crc, FlushCompress, Status};
use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, Response, StatusCode, Version};
use hyper::body::{Body, Frame, SizeHint};

use super::body::{BoxError, ResponseBody};
use crate::config::runtime::Gzip;

/// Whether the request lets its answer be compressed: HTTP/1.1 or later (an
/// HTTP/1.0 client gets no chunked body, and the length is not known before
/// the end; nginx's `gzip_http_version 1.1`), not HEAD, and `gzip` in
/// Accept-Encoding with a q above 0.
pub fn request_accepts(method: &Method, version: Version, headers: &HeaderMap) -> bool {
    version >= Version::HTTP_11 && *method != Method::HEAD && accepts_gzip(headers)
}

fn accepts_gzip(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT_ENCODING)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .any(|coding| {
            let mut parts = coding.split(';');
            let name = parts.next().unwrap_or("").trim();
            (name.eq_ignore_ascii_case("gzip") || name.eq_ignore_ascii_case("x-gzip"))
                && parts.all(|param| match param.trim().split_once('=') {
                    Some((q, value)) if q.trim().eq_ignore_ascii_case("q") => {
                        value.trim().parse::<f32>().is_ok_and(|q| q > 0.0)
                    }
                    _ => true,
                })
        })
}

/// Compresses `response` when `gzip` takes it and the client `accepts`. A
/// response of a type `gzip` covers is marked `Vary: Accept-Encoding` either
/// way, so that a cache in between does not hand one client's form to another.
pub fn apply(gzip: &Gzip, accepts: bool, response: &mut Response<ResponseBody>) {
    let headers = response.headers();
    // nginx's gzip filter: these statuses only, nothing already encoded.
    if !matches!(response.status(), StatusCode::OK | StatusCode::FORBIDDEN | StatusCode::NOT_FOUND)
        || headers.get(header::CONTENT_ENCODING).is_some_and(|e| !e.as_bytes().eq_ignore_ascii_case(b"identity"))
        || !gzip.covers(headers.get(header::CONTENT_TYPE))
    {
        return;
    }
    add_vary(response.headers_mut());
    let too_short = response.body().size_hint().exact().is_some_and(|length| length < gzip.min_length);
    // A proxy must not change a body its sender marked `no-transform` (RFC 9111).
    let no_transform =
        response.headers().get_all(header::CACHE_CONTROL).iter().any(|value| {
            value.to_str().is_ok_and(|v| v.split(',').any(|d| d.trim().eq_ignore_ascii_case("no-transform")))
        });
    if !accepts || too_short || no_transform || response.body().is_empty_answer() {
        return;
    }
    let headers = response.headers_mut();
    headers.remove(header::CONTENT_LENGTH);
    headers.remove(header::ACCEPT_RANGES);
    headers.insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
    // The compressed bytes are not the ones a strong validator named; as
    // nginx does, it stays a weak one (the content is the same).
    if let Some(etag) = headers.get(header::ETAG)
        && !etag.as_bytes().starts_with(b"W/")
    {
        let mut weak = b"W/".to_vec();
        weak.extend_from_slice(etag.as_bytes());
        match HeaderValue::from_bytes(&weak) {
            Ok(value) => headers.insert(header::ETAG, value),
            Err(_) => headers.remove(header::ETAG),
        };
    }
    let body = std::mem::replace(response.body_mut(), ResponseBody::empty());
    *response.body_mut() = ResponseBody::Gzip(Box::new(GzipBody::new(body, gzip.level)));
}

/// Adds `Accept-Encoding` to the Vary header unless it is there (or `*` is).
fn add_vary(headers: &mut HeaderMap) {
    let listed = headers.get_all(header::VARY).iter().any(|value| {
        value.to_str().is_ok_and(|v| {
            v.split(',').any(|name| name.trim() == "*" || name.trim().eq_ignore_ascii_case("accept-encoding"))
        })
    });
    if !listed {
        headers.append(header::VARY, HeaderValue::from_static("Accept-Encoding"));
    }
}

/// The gzip header (RFC 1952) before the deflate stream: no name, no time,
/// "unknown" operating system.
const HEADER: [u8; 10] = [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff];

/// Compressors kept per thread for the next answer, at most this many: one
/// is a few hundred KiB of tables, made and zeroed, which was most of the
/// cost of compressing a small answer (benches/gzip.rs); a reset one serves
/// again (its tables are zeroed still, but not allocated).
const SPARE_COMPRESSORS: usize = 4;

thread_local! {
    static SPARE: RefCell<Vec<(u32, Compress)>> = const { RefCell::new(Vec::new()) };
}

/// A compressor at `level`: a spare one of this thread's, or a new one.
fn compressor(level: u32) -> Compress {
    let spare = SPARE.with(|spare| {
        let mut spare = spare.borrow_mut();
        let found = spare.iter().rposition(|(l, _)| *l == level)?;
        Some(spare.swap_remove(found).1)
    });
    spare.unwrap_or_else(|| Compress::new(Compression::new(level), false))
}

/// Gives `compress` back to this thread's spares (or drops it: there are enough).
fn give_back(level: u32, mut compress: Compress) {
    compress.reset();
    SPARE.with(|spare| {
        let mut spare = spare.borrow_mut();
        if spare.len() < SPARE_COMPRESSORS {
            spare.push((level, compress));
        }
    });
}

/// An upstream body, compressed as it streams.
pub struct GzipBody {
    inner: ResponseBody,
    level: u32,
    /// `None` once the gzip trailer has gone out.
    compress: Option<Compress>,
    crc: Crc,
    header_sent: bool,
    /// Compressed bytes passed on, for the access log.
    sent: u64,
}

impl GzipBody {
    fn new(mut inner: ResponseBody, level: u32) -> GzipBody {
        if let ResponseBody::Upstream(upstream) = &mut inner {
            upstream.compressed();
        }
        GzipBody { inner, level, compress: Some(compressor(level)), crc: Crc::new(), header_sent: false, sent: 0 }
    }

    /// The body it compresses.
    pub fn inner(&self) -> &ResponseBody {
        &self.inner
    }

    pub fn inner_mut(&mut self) -> &mut ResponseBody {
        &mut self.inner
    }

    pub fn poll_frame(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let polled = self.poll_compressed(cx);
        if let Poll::Ready(Some(Ok(data))) = &polled {
            self.sent += data.len() as u64;
        }
        polled.map(|frame| frame.map(|data| data.map(Frame::data)))
    }

    fn poll_compressed(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Bytes, BoxError>>> {
        loop {
            if self.compress.is_none() {
                return Poll::Ready(None);
            }
            match ready!(Pin::new(&mut self.inner).poll_frame(cx)) {
                Some(Ok(frame)) => {
                    let Ok(data) = frame.into_data() else { continue };
                    self.crc.update(&data);
                    // The last piece ends the stream at once (one block, not
                    // a flushed one and an empty last: a small answer's whole
                    // body comes as one piece); any other is sync-flushed, so
                    // that what came in so far can be decoded now.
                    if self.inner.is_end_stream() {
                        return Poll::Ready(Some(self.finish(&data)));
                    }
                    let out = self.deflate(&data, FlushCompress::Sync)?;
                    if !out.is_empty() {
                        return Poll::Ready(Some(Ok(Bytes::from(out))));
                    }
                }
                Some(Err(e)) => {
                    self.release();
                    return Poll::Ready(Some(Err(e)));
                }
                None => return Poll::Ready(Some(self.finish(&[]))),
            }
        }
    }

    /// Compresses `input` and flushes as `flush` says; the header first, once.
    fn deflate(&mut self, input: &[u8], flush: FlushCompress) -> Result<Vec<u8>, BoxError> {
        let Some(compress) = self.compress.as_mut() else { return Ok(Vec::new()) };
        let mut out = Vec::with_capacity(input.len() / 2 + 64);
        if !std::mem::replace(&mut self.header_sent, true) {
            out.extend_from_slice(&HEADER);
        }
        let mut rest = input;
        loop {
            let before = compress.total_in();
            let status = compress.compress_vec(rest, &mut out, flush)?;
            let taken = usize::try_from(compress.total_in() - before).unwrap_or(rest.len());
            rest = rest.get(taken..).unwrap_or_default();
            // Done when all is taken and the flush did not fill the output.
            let done = match flush {
                FlushCompress::Finish => status == Status::StreamEnd,
                _ => rest.is_empty() && out.len() < out.capacity(),
            };
            if done {
                return Ok(out);
            }
            out.reserve(out.capacity().max(256));
        }
    }

    /// The stream's end: `last` compressed, then the trailer.
    fn finish(&mut self, last: &[u8]) -> Result<Bytes, BoxError> {
        let mut out = self.deflate(last, FlushCompress::Finish)?;
        out.extend_from_slice(&self.crc.sum().to_le_bytes());
        // ISIZE: the input's length modulo 2^32, as RFC 1952 has it.
        out.extend_from_slice(&self.crc.amount().to_le_bytes());
        self.release();
        Ok(Bytes::from(out))
    }

    fn release(&mut self) {
        if let Some(compress) = self.compress.take() {
            give_back(self.level, compress);
        }
    }

    pub fn is_end_stream(&self) -> bool {
        self.compress.is_none()
    }

    pub fn size_hint(&self) -> SizeHint {
        SizeHint::default()
    }
}

impl Drop for GzipBody {
    fn drop(&mut self) {
        self.release();
        // Before the upstream body drops and writes the line.
        if let ResponseBody::Upstream(upstream) = &mut self.inner {
            upstream.compressed_to(self.sent);
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn accepts(values: &[&str]) -> bool {
        let mut headers = HeaderMap::new();
        for value in values {
            headers.append(header::ACCEPT_ENCODING, HeaderValue::from_str(value).unwrap());
        }
        request_accepts(&Method::GET, Version::HTTP_11, &headers)
    }

    #[test]
    fn accept_encoding() {
        assert!(accepts(&["gzip"]));
        assert!(accepts(&["deflate, GZIP;q=0.5, br"]));
        assert!(accepts(&["br", "x-gzip"]));
        assert!(!accepts(&[]));
        assert!(!accepts(&["br, deflate"]));
        assert!(!accepts(&["gzip;q=0"]));
        assert!(!accepts(&["gzip; q=0.0"]));
        assert!(!accepts(&["gzipped"]));
        // `*` is not taken as gzip (nginx does not either).
        assert!(!accepts(&["*"]));
        let mut headers = HeaderMap::new();
        headers.insert(header::ACCEPT_ENCODING, HeaderValue::from_static("gzip"));
        assert!(!request_accepts(&Method::HEAD, Version::HTTP_11, &headers));
        assert!(!request_accepts(&Method::GET, Version::HTTP_10, &headers));
        assert!(request_accepts(&Method::GET, Version::HTTP_2, &headers));
    }

    #[test]
    fn vary_is_added_once() {
        let mut headers = HeaderMap::new();
        add_vary(&mut headers);
        add_vary(&mut headers);
        assert_eq!(headers.get_all(header::VARY).iter().count(), 1);
        let mut headers = HeaderMap::new();
        headers.insert(header::VARY, HeaderValue::from_static("Origin"));
        add_vary(&mut headers);
        let all: Vec<_> = headers.get_all(header::VARY).iter().collect();
        assert_eq!(all, ["Origin", "Accept-Encoding"]);
        let mut headers = HeaderMap::new();
        headers.insert(header::VARY, HeaderValue::from_static("origin, accept-encoding"));
        add_vary(&mut headers);
        assert_eq!(headers.get_all(header::VARY).iter().count(), 1);
    }
}
