//! `portico::framing::Tracker` on arbitrary bytes cut into arbitrary reads:
//! no panic, and where the reads are cut changes nothing it finds (the request
//! it flags, the heads it counts, whether it stopped following).
#![no_main]

mod reads;

use libfuzzer_sys::fuzz_target;
use portico::framing::Tracker;

/// Feeds `pieces` in order; returns (flagged request, heads, inert).
fn run<'a>(pieces: impl Iterator<Item = &'a [u8]>) -> (Option<u64>, u64, bool) {
    let mut tracker = Tracker::new();
    let mut flagged = None;
    for piece in pieces {
        if let Some(request) = tracker.feed(piece) {
            assert!(flagged.is_none(), "flagged twice");
            assert!(tracker.is_inert(), "flagging stops the tracker");
            assert!(request >= 1 && request == tracker.heads(), "flagged {request} of {} heads", tracker.heads());
            flagged = Some(request);
        }
    }
    (flagged, tracker.heads(), tracker.is_inert())
}

fuzz_target!(|input: (Vec<u16>, &[u8])| {
    let (cuts, bytes) = input;
    let whole = run(std::iter::once(bytes));
    let pieces = reads::cut(bytes, &cuts);
    assert_eq!(run(pieces.into_iter()), whole, "split at {cuts:?}");
    // One byte per read: the worst case for split lines.
    assert_eq!(run(bytes.chunks(1)), whole, "one byte per read");
});
