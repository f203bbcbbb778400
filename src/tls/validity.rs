//! A certificate's validity period, read from its DER: what `portico check`
//! and a start or reload warn about (a certificate expired, expiring, or not
//! yet valid) and what `/metrics` exposes for alerting before it happens.
//!
//! Just enough DER for `TBSCertificate.validity` (RFC 5280 4.1), through
//! `der.rs`: rustls and webpki check it per handshake but do not expose it.
//! Any input gives `None` or a period, never a panic.

/// A certificate closer than this to its end is a warning at start, reload
/// and `portico check`, and marked on `/status` (certbot renews at 30 days left).
pub const EXPIRY_WARNING_DAYS: i64 = 14;

/// When a certificate is valid, in seconds since the Unix epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Validity {
    pub not_before: i64,
    pub not_after: i64,
}

use super::der::{INTEGER, SEQUENCE, element, tbs_from_serial};

const UTC_TIME: u8 = 0x17;
const GENERALIZED_TIME: u8 = 0x18;

/// The validity of the DER certificate `der`, or `None` when it is not one.
pub fn validity(der: &[u8]) -> Option<Validity> {
    let (INTEGER, _, rest) = element(tbs_from_serial(der)?)? else { return None };
    let (SEQUENCE, _, rest) = element(rest)? else { return None }; // signature algorithm
    let (SEQUENCE, _, rest) = element(rest)? else { return None }; // issuer
    let (SEQUENCE, validity, _) = element(rest)? else { return None };
    let (before_tag, before, rest) = element(validity)?;
    let (after_tag, after, _) = element(rest)?;
    Some(Validity { not_before: time(before_tag, before)?, not_after: time(after_tag, after)? })
}

/// When the CRL `der` says its issuer publishes the next list (`nextUpdate`,
/// Unix seconds); `None` when it names no date or is not a CRL.
pub fn crl_next_update(der: &[u8]) -> Option<i64> {
    let (SEQUENCE, list, _) = element(der)? else { return None };
    let (SEQUENCE, tbs, _) = element(list)? else { return None };
    let (tag, _, after_version) = element(tbs)?;
    let algorithm = if tag == INTEGER { after_version } else { tbs };
    let (SEQUENCE, _, rest) = element(algorithm)? else { return None }; // signature algorithm
    let (SEQUENCE, _, rest) = element(rest)? else { return None }; // issuer
    let (this_tag, this_update, rest) = element(rest)?;
    time(this_tag, this_update)?;
    let (next_tag, next_update, _) = element(rest)?;
    time(next_tag, next_update)
}

/// A `Time` as RFC 5280 has certificates write it: UTCTime `YYMMDDHHMMSSZ`
/// (years 1950-2049) or GeneralizedTime `YYYYMMDDHHMMSSZ`.
fn time(tag: u8, text: &[u8]) -> Option<i64> {
    let (year, rest) = match tag {
        UTC_TIME => {
            let year = number(text.get(..2)?)?;
            (if year >= 50 { 1900 + year } else { 2000 + year }, text.get(2..)?)
        }
        GENERALIZED_TIME => (number(text.get(..4)?)?, text.get(4..)?),
        _ => return None,
    };
    let [m1, m2, d1, d2, h1, h2, i1, i2, s1, s2, b'Z'] = *rest else { return None };
    let (month, day) = (number(&[m1, m2])?, number(&[d1, d2])?);
    let (hour, minute, second) = (number(&[h1, h2])?, number(&[i1, i2])?, number(&[s1, s2])?);
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    Some(days_from_civil(year, month, day) * 86_400 + hour * 3_600 + minute * 60 + second)
}

/// ASCII decimal digits as a number.
fn number(digits: &[u8]) -> Option<i64> {
    digits.iter().try_fold(0i64, |n, digit| digit.is_ascii_digit().then(|| n * 10 + i64::from(digit - b'0')))
}

/// Days from 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's
/// `days_from_civil`; the inverse of `log::civil_from_days`).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    // Shift to 0000-03-01 so the leap day ends each 400-year era's years.
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let march_month = (month + 9) % 12;
    let day_of_year = (153 * march_month + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn certificate(not_before: (i32, u8, u8), not_after: (i32, u8, u8)) -> Vec<u8> {
        let mut params = rcgen::CertificateParams::new(vec!["a.test".to_owned()]).unwrap();
        params.not_before = rcgen::date_time_ymd(not_before.0, not_before.1, not_before.2);
        params.not_after = rcgen::date_time_ymd(not_after.0, not_after.1, not_after.2);
        let key = rcgen::KeyPair::generate().unwrap();
        params.self_signed(&key).unwrap().der().to_vec()
    }

    #[test]
    fn days_from_civil_matches_known_dates() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2000, 2, 29), 951_782_400 / 86_400);
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
        assert_eq!(days_from_civil(2024, 12, 31), 20_088);
        assert_eq!(days_from_civil(1969, 12, 31), -1);
    }

    #[test]
    fn reads_utc_and_generalized_times() {
        // rcgen writes UTCTime through 2049 and GeneralizedTime from 2050, as RFC 5280 asks.
        let der = certificate((2026, 11, 28), (2027, 2, 26));
        let got = validity(&der).unwrap();
        assert_eq!(got, Validity { not_before: 1_795_824_000, not_after: 1_803_600_000 });
        let der = certificate((1975, 1, 1), (2051, 6, 30));
        let got = validity(&der).unwrap();
        assert_eq!(got.not_before, days_from_civil(1975, 1, 1) * 86_400);
        assert_eq!(got.not_after, days_from_civil(2051, 6, 30) * 86_400);
    }

    #[test]
    fn times_are_checked() {
        assert_eq!(time(UTC_TIME, b"491231235959Z"), Some(days_from_civil(2049, 12, 31) * 86_400 + 86_399));
        assert_eq!(time(UTC_TIME, b"500101000000Z"), Some(days_from_civil(1950, 1, 1) * 86_400));
        assert_eq!(time(GENERALIZED_TIME, b"20500101000000Z"), Some(days_from_civil(2050, 1, 1) * 86_400));
        for bad in [
            &b"2612010000Z"[..],
            b"261301000000Z",
            b"261200000000Z",
            b"261201240000Z",
            b"2612010000000",
            b"26120100000+Z",
        ] {
            assert_eq!(time(UTC_TIME, bad), None, "{}", String::from_utf8_lossy(bad));
        }
        assert_eq!(time(0x13, b"261201000000Z"), None);
    }

    #[test]
    fn reads_a_crls_next_update() {
        let crl = crate::test_support::crl_der((2026, 11, 28), (2027, 2, 26));
        assert_eq!(crl_next_update(&crl), Some(1_803_600_000));
        // A certificate is not a CRL, and a cut one is nothing.
        assert_eq!(crl_next_update(&certificate((2026, 1, 1), (2027, 1, 1))), None);
        for cut in 0..crl.len() {
            assert_eq!(crl_next_update(&crl[..cut]), None);
        }
    }

    #[test]
    fn anything_else_is_none_not_a_panic() {
        let der = certificate((2026, 1, 1), (2027, 1, 1));
        for cut in 0..der.len() {
            let _ = validity(&der[..cut]);
        }
        assert_eq!(validity(b""), None);
        assert_eq!(validity(&[0x30, 0x84, 0xff, 0xff, 0xff, 0xff]), None);
        assert_eq!(validity(&[0x30, 0x85, 1, 1, 1, 1, 1]), None);
        assert_eq!(validity(b"-----BEGIN CERTIFICATE-----"), None);
    }
}
