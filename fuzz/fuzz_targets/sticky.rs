//! `portico::upstream::sticky::{request_session, response_session}` on
//! arbitrary Cookie / Set-Cookie bytes and paths: no panic, and a session
//! value found is always a slice of what was sent.
#![no_main]

use http::{HeaderMap, HeaderValue, header};
use libfuzzer_sys::fuzz_target;
use portico::upstream::sticky::{Learned, request_session, response_session};

/// Whether `part` points into `whole` (not merely equal to some substring).
fn within(part: &str, whole: &[u8]) -> bool {
    let start = whole.as_ptr() as usize;
    let p = part.as_ptr() as usize;
    p >= start && p + part.len() <= start + whole.len()
}

fuzz_target!(|input: (&str, &str, Vec<&[u8]>)| {
    let (name, path, values) = input;
    let mut request = HeaderMap::new();
    let mut response = HeaderMap::new();
    for value in &values {
        // Only what hyper could hand over: bytes a HeaderValue accepts.
        let Ok(value) = HeaderValue::from_bytes(value) else { continue };
        request.append(header::COOKIE, value.clone());
        response.append(header::SET_COOKIE, value);
    }
    if let Some(session) = request_session(&request, path, name) {
        assert!(!session.is_empty());
        let from_header = request.get_all(header::COOKIE).iter().any(|v| within(session, v.as_bytes()));
        assert!(from_header || within(session, path.as_bytes()), "{session:?} is not part of the request");
    }
    if let Some(Learned::Set(session)) = response_session(&response, name) {
        assert!(!session.is_empty());
        assert!(
            response.get_all(header::SET_COOKIE).iter().any(|v| within(session, v.as_bytes())),
            "{session:?} is not part of the response"
        );
    }
});
