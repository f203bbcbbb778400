//! `portico::limit_req::Zone::check` on arbitrary sequences of requests, with
//! any rate, capacity, burst and delay: no panic or overflow; the table never
//! holds more addresses than its capacity; a delay is never longer than the
//! whole burst takes to drain at the rate.
#![no_main]

use std::net::IpAddr;
use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use portico::limit_req::{Decision, Zone};

fuzz_target!(|input: (u64, u16, Vec<(u8, u16, u16, u16)>)| {
    let (rate, capacity, requests) = input;
    let zone = Zone::new(rate, usize::from(capacity));
    let mut now = Instant::now();
    for (client, advance_ms, burst, delay_free) in requests {
        // Times only move forward, as Instant::now's do.
        now = now.checked_add(Duration::from_millis(u64::from(advance_ms))).unwrap_or(now);
        let ip = IpAddr::from([127, 0, client % 4, client]);
        if let Decision::Delay(wait) = zone.check(ip, now, u64::from(burst), u64::from(delay_free)) {
            let longest = u128::from(burst) * 1_000_000 / u128::from(rate.max(1));
            assert!(wait.as_millis() <= longest, "{wait:?} for a burst of {burst} at {rate}");
        }
        assert!(zone.len() <= usize::from(capacity).max(1), "{} addresses in a zone of {capacity}", zone.len());
    }
});
