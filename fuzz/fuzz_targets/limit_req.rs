//! `portico::limit_req::Zone` on arbitrary sequences of requests, with any
//! rate, capacity, burst and delay, keyed by address or by a rendered key's
//! hash, counted in one step (`check`) or in two (`peek`, then `commit` when
//! it fits, as several limits are): no panic or overflow; the table never
//! holds more keys than its capacity; a delay is never longer than the whole
//! burst takes to drain at the rate.
#![no_main]

use std::net::IpAddr;
use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use portico::limit_req::{Decision, Zone, ZoneKey};

fuzz_target!(|input: (u64, u16, Vec<(u8, u16, u16, u16)>)| {
    let (rate, capacity, requests) = input;
    let zone = Zone::new(rate, usize::from(capacity));
    let mut now = Instant::now();
    for (client, advance_ms, burst, delay_free) in requests {
        // Times only move forward, as Instant::now's do.
        now = now.checked_add(Duration::from_millis(u64::from(advance_ms))).unwrap_or(now);
        let key = if client & 0x40 == 0 {
            ZoneKey::Addr(IpAddr::from([127, 0, client % 4, client]))
        } else {
            // An empty rendered key is not counted.
            match zone.hash_key(&"k".repeat(usize::from(client % 4))) {
                Some(key) => key,
                None => continue,
            }
        };
        let (burst, delay_free) = (u64::from(burst), u64::from(delay_free));
        let decision = if client & 0x80 == 0 {
            zone.check(key, now, burst, delay_free)
        } else if zone.peek(key, now, burst) {
            zone.commit(key, now, delay_free)
        } else {
            Decision::Reject
        };
        if let Decision::Delay(wait) = decision {
            let longest = u128::from(burst) * 1_000_000 / u128::from(rate.max(1));
            assert!(wait.as_millis() <= longest, "{wait:?} for a burst of {burst} at {rate}");
        }
        assert!(zone.len() <= usize::from(capacity).max(1), "{} keys in a zone of {capacity}", zone.len());
    }
});
