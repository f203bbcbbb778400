//! For the targets that check a reader finds the same however its input is
//! cut into reads (a module of theirs, not a target of its own).

/// `bytes` cut at the points `cuts` names (each taken modulo the length, then
/// in order): the reads a socket could have delivered them in.
pub fn cut<'a>(bytes: &'a [u8], cuts: &[u16]) -> Vec<&'a [u8]> {
    let mut points: Vec<usize> = cuts.iter().map(|&c| usize::from(c) % (bytes.len() + 1)).collect();
    points.sort_unstable();
    let mut pieces = Vec::with_capacity(points.len() + 1);
    let mut from = 0;
    for point in points.into_iter().chain(std::iter::once(bytes.len())) {
        pieces.push(&bytes[from..point]);
        from = point;
    }
    pieces
}
