//! `portico::proxy_protocol::parse`, the PROXY protocol header a balancer
//! sends first: no panic, whole and fed in the steps `read` takes, which
//! never go past a header and find what parsing the whole finds.
#![no_main]

use libfuzzer_sys::fuzz_target;
use portico::proxy_protocol::{Parsed, parse};

fuzz_target!(|bytes: &[u8]| {
    let whole = parse(bytes);
    if let Ok(Parsed::Complete { len, .. }) = &whole {
        assert!(*len <= bytes.len() && *len >= 15, "{len} of {}", bytes.len());
    }
    // `read` takes what an incomplete parse asks for, never more: following
    // those steps from one byte must end where parsing the whole does.
    let mut taken = bytes.len().min(1);
    loop {
        match parse(&bytes[..taken]) {
            Ok(Parsed::Incomplete { more }) if taken + more <= bytes.len() => {
                assert!(more > 0);
                taken += more;
            }
            // `read` would wait for bytes that are header if this is one;
            // what it reads of something else is dropped with the connection.
            Ok(Parsed::Incomplete { .. }) => {
                assert!(!matches!(whole, Ok(Parsed::Complete { .. })), "{whole:?}");
                break;
            }
            Ok(Parsed::Complete { header, len }) => {
                assert_eq!(len, taken, "a step read past the header");
                match &whole {
                    Ok(Parsed::Complete { header: h, len: l }) => assert_eq!((h, l), (&header, &len)),
                    other => panic!("stepwise {header:?}, whole {other:?}"),
                }
                break;
            }
            Err(e) => {
                assert!(whole.is_err(), "stepwise {e}, whole {whole:?}");
                break;
            }
        }
    }
});
