//! Just enough DER to walk a certificate's or a CRL's fixed fields: one
//! element at a time, every read bounds-checked, so that any input gives an
//! element or `None`, never a panic. Used by the validity dates
//! (`validity.rs`) and the names and serial number (`dn.rs`): rustls and webpki parse these fields per handshake but do
//! not expose them, and a full X.509 parser would be a dependency tree for a
//! few fields.

pub(super) const SEQUENCE: u8 = 0x30;
pub(super) const SET: u8 = 0x31;
pub(super) const INTEGER: u8 = 0x02;
pub(super) const OBJECT_IDENTIFIER: u8 = 0x06;
/// `[0] EXPLICIT Version` in a TBSCertificate.
pub(super) const VERSION: u8 = 0xA0;

/// One DER element at the start of `input`: its tag, its contents, and what
/// follows. Tags are read as one byte: the fields read through this are all
/// low-numbered (a high-tag-number form, `0x1f` in the low bits, is for the
/// caller to refuse).
pub(super) fn element(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (length, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        // Long form: the low bits count the length's bytes (4 is over 4 GiB).
        let count = usize::from(first & 0x7f);
        if count == 0 || count > 4 {
            return None;
        }
        let (bytes, rest) = rest.split_at_checked(count)?;
        (bytes.iter().try_fold(0usize, |length, byte| Some(length.checked_mul(256)? | usize::from(*byte)))?, rest)
    };
    let (contents, rest) = rest.split_at_checked(length)?;
    Some((tag, contents, rest))
}

/// The TBSCertificate of the DER certificate `der`, past its version: the
/// serial number's element first.
pub(super) fn tbs_from_serial(der: &[u8]) -> Option<&[u8]> {
    let (SEQUENCE, certificate, _) = element(der)? else { return None };
    let (SEQUENCE, tbs, _) = element(certificate)? else { return None };
    let (tag, _, after_version) = element(tbs)?;
    Some(if tag == VERSION { after_version } else { tbs })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn elements_in_short_and_long_form_and_nothing_past_the_input() {
        assert_eq!(element(&[0x02, 0x01, 0x05, 0xff]), Some((0x02, &[0x05][..], &[0xff][..])));
        let mut long = vec![0x04, 0x82, 0x01, 0x00];
        long.extend([7; 256]);
        assert_eq!(element(&long).map(|(tag, contents, rest)| (tag, contents.len(), rest.len())), Some((4, 256, 0)));
        for bad in [&[][..], &[0x30], &[0x30, 0x01], &[0x30, 0x80], &[0x30, 0x85, 1, 1, 1, 1, 1], &[0x30, 0x84, 0xff]] {
            assert_eq!(element(bad), None, "{bad:?}");
        }
        assert_eq!(element(&[0x30, 0x84, 0xff, 0xff, 0xff, 0xff]), None);
    }
}
