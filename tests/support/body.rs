//! Bodies for tests: boxed and streamable, plus a checkable byte pattern so a
//! large transfer can be verified without keeping it in memory.

use std::pin::{Pin, pin};
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body as HttpBody, Frame, SizeHint};
use http_body_util::{BodyExt, Empty, Full};

use super::Error;

/// The body type every support helper sends and serves.
pub type Body = http_body_util::combinators::BoxBody<Bytes, Error>;

/// Data chunk size of pattern bodies (and of `/big` responses).
pub const CHUNK: usize = 64 * 1024;

/// Byte `i` of a pattern body is `(i % PERIOD) as u8`; a prime period makes
/// a shifted, dropped or repeated chunk visible.
pub const PERIOD: usize = 251;

static PATTERN: [u8; CHUNK + PERIOD] = pattern_table();

const fn pattern_table() -> [u8; CHUNK + PERIOD] {
    let mut table = [0u8; CHUNK + PERIOD];
    let mut i = 0;
    while i < table.len() {
        table[i] = (i % PERIOD) as u8;
        i += 1;
    }
    table
}

/// An empty body.
pub fn empty() -> Body {
    Empty::new().map_err(|never| match never {}).boxed()
}

/// A body of these bytes, sent in one frame with a Content-Length.
pub fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into()).map_err(|never| match never {}).boxed()
}

/// A streamed body of `len` pattern bytes in 64 KiB chunks, never held in
/// memory as a whole; check what arrived with [`verify_pattern`].
pub fn pattern(len: u64) -> Body {
    Pattern { sent: 0, len }.boxed()
}

/// A body of the chunks sent on `receiver`, ending when every sender is gone
/// (no Content-Length: chunked on HTTP/1.1).
pub fn channel(receiver: tokio::sync::mpsc::Receiver<Bytes>) -> Body {
    Channel { receiver }.boxed()
}

struct Channel {
    receiver: tokio::sync::mpsc::Receiver<Bytes>,
}

impl HttpBody for Channel {
    type Data = Bytes;
    type Error = Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Error>>> {
        self.receiver.poll_recv(cx).map(|chunk| chunk.map(|bytes| Ok(Frame::data(bytes))))
    }
}

/// The first `len` bytes of the pattern, for small comparisons.
pub fn pattern_bytes(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i % PERIOD) as u8).collect()
}

struct Pattern {
    sent: u64,
    len: u64,
}

impl HttpBody for Pattern {
    type Data = Bytes;
    type Error = Error;

    fn poll_frame(mut self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Error>>> {
        let left = self.len - self.sent;
        if left == 0 {
            return Poll::Ready(None);
        }
        let n = usize::try_from(left).map_or(CHUNK, |left| left.min(CHUNK));
        let start = (self.sent % PERIOD as u64) as usize;
        self.sent += n as u64;
        Poll::Ready(Some(Ok(Frame::data(Bytes::from_static(&PATTERN[start..start + n])))))
    }

    fn is_end_stream(&self) -> bool {
        self.sent == self.len
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.len - self.sent)
    }
}

/// Reads a whole body, checking every byte against the pattern; returns its
/// length, or an error naming the first offset that differs.
pub async fn verify_pattern<B>(body: B) -> Result<u64, Error>
where
    B: HttpBody<Data = Bytes>,
    B::Error: Into<Error>,
{
    let mut body = pin!(body);
    let mut offset: u64 = 0;
    while let Some(frame) = body.frame().await {
        let Ok(data) = frame.map_err(Into::into)?.into_data() else {
            continue;
        };
        let mut rest = &data[..];
        while !rest.is_empty() {
            let start = (offset % PERIOD as u64) as usize;
            let n = rest.len().min(CHUNK);
            if rest[..n] != PATTERN[start..start + n] {
                let bad = rest[..n].iter().zip(&PATTERN[start..]).position(|(a, b)| a != b).unwrap_or(0);
                return Err(format!("body differs from the pattern at byte {}", offset + bad as u64).into());
            }
            offset += n as u64;
            rest = &rest[n..];
        }
    }
    Ok(offset)
}

/// Reads a whole body and returns its length, discarding the bytes.
pub async fn count<B>(body: B) -> Result<u64, Error>
where
    B: HttpBody<Data = Bytes>,
    B::Error: Into<Error>,
{
    let mut body = pin!(body);
    let mut len: u64 = 0;
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame.map_err(Into::into)?.into_data() {
            len += data.len() as u64;
        }
    }
    Ok(len)
}
