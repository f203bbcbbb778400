//! nginx's `$request_id`: 16 random bytes in lower-case hex, one value per
//! request for every header template and access log line that prints it.
//! Made on first use, so a server that prints none pays nothing for it.
//!
//! The bytes come from a per-thread wyrand generator seeded from the
//! standard library's random hash keys: unique enough to follow a request
//! through logs, as nginx's are, and not a secret to build tokens from.

use std::cell::Cell;
use std::hash::{BuildHasher, RandomState};
use std::sync::OnceLock;

/// A request's id, made when first read.
#[derive(Debug, Default)]
pub struct RequestId(OnceLock<[u8; 32]>);

impl RequestId {
    pub const fn new() -> RequestId {
        RequestId(OnceLock::new())
    }

    /// The 32 hex digits, made now if not yet.
    pub fn as_str(&self) -> &str {
        let hex = self.0.get_or_init(generate);
        // Hex digits are ASCII: this never falls back.
        std::str::from_utf8(hex).unwrap_or_default()
    }
}

thread_local! {
    static STATE: Cell<u64> = Cell::new(RandomState::new().hash_one(std::thread::current().id()));
}

fn generate() -> [u8; 32] {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = [0u8; 32];
    let words = STATE.with(|state| [next(state), next(state)]);
    for (i, byte) in words.iter().flat_map(|w| w.to_le_bytes()).enumerate() {
        out[2 * i] = HEX[usize::from(byte >> 4)];
        out[2 * i + 1] = HEX[usize::from(byte & 0xf)];
    }
    out
}

/// wyrand: one 64-bit output per step, every state visited once.
fn next(state: &Cell<u64>) -> u64 {
    let s = state.get().wrapping_add(0xa076_1d64_78bd_642f);
    state.set(s);
    let t = u128::from(s).wrapping_mul(u128::from(s ^ 0xe703_7ed1_a0b4_28db));
    ((t >> 64) as u64) ^ (t as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_id_is_32_hex_digits_made_once_and_ids_differ() {
        let id = RequestId::new();
        let first = id.as_str().to_owned();
        assert_eq!(first.len(), 32);
        assert!(first.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)), "{first}");
        assert_eq!(id.as_str(), first, "the same request reads the same id");
        let mut seen: Vec<String> = (0..1000).map(|_| RequestId::new().as_str().to_owned()).collect();
        seen.push(first);
        seen.sort();
        seen.dedup();
        assert_eq!(seen.len(), 1001);
        // Another thread's generator starts elsewhere.
        let other = std::thread::spawn(|| RequestId::new().as_str().to_owned()).join().unwrap_or_default();
        assert_eq!(other.len(), 32);
        assert!(!seen.contains(&other));
    }
}
