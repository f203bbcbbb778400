//! `portico::upstream::http1`'s response reader (`parse_head`, then
//! `BodyReader::take`) on arbitrary bytes from an upstream, cut into arbitrary
//! reads: no panic, and where the reads are cut changes nothing it finds (the
//! head, the body bytes, where the body ends, what is left over, the error).
//! The loop below is `Conn::poll_head` and `Conn::poll_body` without a socket.
#![no_main]

mod reads;

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use portico::upstream::http1::{BodyReader, MAX_HEAD, parse_head};

#[derive(Debug, PartialEq)]
enum Outcome {
    /// The input ended before a whole head.
    NoHead,
    /// Failed with this error after these body bytes.
    Failed(String, Vec<u8>),
    /// A head, its body read to its end, and the bytes after it.
    Read { status: u16, headers: Vec<(String, Vec<u8>)>, body: Vec<u8>, reusable: bool, left: Vec<u8> },
}

fn run<'a>(mut pieces: impl Iterator<Item = &'a [u8]>, head_request: bool) -> Outcome {
    let mut read = BytesMut::new();
    let mut head = None;
    let mut body = Vec::new();
    loop {
        match &mut head {
            None => match parse_head(&mut read, head_request) {
                Ok(Some(found)) => {
                    head = Some(found);
                    continue;
                }
                Ok(None) if read.len() >= MAX_HEAD => return Outcome::Failed("head too large".into(), body),
                Ok(None) => {}
                Err(e) => return Outcome::Failed(e.to_string(), body),
            },
            Some(found) => {
                loop {
                    match found.body.take(&mut read) {
                        Ok(Some(data)) => {
                            assert!(!data.is_empty(), "an empty piece of body");
                            body.extend_from_slice(&data);
                        }
                        Ok(None) => break,
                        Err(e) => return Outcome::Failed(e.to_string(), body),
                    }
                }
                if found.body.is_end() {
                    let mut left = read.to_vec();
                    pieces.for_each(|piece| left.extend_from_slice(piece));
                    return read_whole(found, body, left);
                }
            }
        }
        match pieces.next() {
            Some(piece) => read.extend_from_slice(piece),
            // The server closed: a body read to the close ends there.
            None => {
                return match head {
                    None => Outcome::NoHead,
                    Some(mut found) if matches!(found.body, BodyReader::Close) => {
                        assert!(read.is_empty(), "a close-delimited body leaves nothing unread");
                        found.body = BodyReader::Done { reusable: false };
                        read_whole(&found, body, Vec::new())
                    }
                    Some(_) => Outcome::Failed("truncated".into(), body),
                };
            }
        }
    }
}

fn read_whole(head: &portico::upstream::http1::ResponseHead, body: Vec<u8>, left: Vec<u8>) -> Outcome {
    assert!(head.body.is_end());
    let headers =
        head.headers.iter().map(|(name, value)| (name.as_str().to_owned(), value.as_bytes().to_vec())).collect();
    Outcome::Read { status: head.status.as_u16(), headers, body, reusable: head.body.is_reusable(), left }
}

fuzz_target!(|input: (bool, Vec<u16>, &[u8])| {
    let (head_request, cuts, bytes) = input;
    let whole = run(std::iter::once(bytes), head_request);
    let pieces = reads::cut(bytes, &cuts);
    assert_eq!(run(pieces.into_iter(), head_request), whole, "split at {cuts:?}");
    // One byte per read: the worst case for split lines.
    assert_eq!(run(bytes.chunks(1), head_request), whole, "one byte per read");
});
