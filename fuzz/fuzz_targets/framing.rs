//! `portico::framing::Tracker` on arbitrary bytes cut into arbitrary reads:
//! no panic, and where the reads are cut changes nothing it finds (the request
//! it flags, the heads it counts, whether it stopped following).
#![no_main]

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
    // Cut points from the input, in order and within the bytes.
    let mut points: Vec<usize> = cuts.iter().map(|&c| usize::from(c) % (bytes.len() + 1)).collect();
    points.sort_unstable();
    let mut pieces = Vec::with_capacity(points.len() + 1);
    let mut from = 0;
    for point in points.into_iter().chain(std::iter::once(bytes.len())) {
        pieces.push(&bytes[from..point]);
        from = point;
    }
    assert_eq!(run(pieces.into_iter()), whole, "split at {cuts:?}");
    // One byte per read: the worst case for split lines.
    assert_eq!(run(bytes.chunks(1)), whole, "one byte per read");
});
