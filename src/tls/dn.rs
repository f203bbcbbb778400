//! A certificate's subject and issuer names and serial number as nginx prints
//! them (`$ssl_client_s_dn`, `$ssl_client_i_dn`, `$ssl_client_serial`), so
//! that an upstream that matched nginx's headers matches portico's byte for
//! byte.
//!
//! nginx (since 1.11.6) prints a name with OpenSSL's
//! `X509_NAME_print_ex(..., XN_FLAG_RFC2253)` and a serial number with
//! `i2a_ASN1_INTEGER`; this is what those print, checked against OpenSSL 3.0's
//! `openssl x509 -nameopt RFC2253 -subject -serial` (the unit tests hold the
//! cases). Where OpenSSL refuses the certificate outright (a UTF8String that
//! is not UTF-8, a BMPString of odd length, a serial number with a needless
//! leading byte), nginx never gets to print it; here the name or number is
//! `None`, and the variable empty. The DER walk is `der.rs`'s: any input
//! gives a text or `None`, never a panic, and nothing recurses.

use std::fmt::Write as _;

use super::der::{INTEGER, OBJECT_IDENTIFIER, SEQUENCE, SET, element, tbs_from_serial};

/// The fields of a certificate the variables print, as DER contents.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Fields<'a> {
    /// The serial number INTEGER's contents.
    pub serial: &'a [u8],
    /// The issuer Name SEQUENCE's contents: its RDNs.
    pub issuer: &'a [u8],
    /// The subject Name SEQUENCE's contents.
    pub subject: &'a [u8],
}

/// The serial number, issuer and subject of the DER certificate `der`
/// (RFC 5280 4.1: version, serialNumber, signature, issuer, validity, subject).
pub(super) fn fields(der: &[u8]) -> Option<Fields<'_>> {
    let (INTEGER, serial, rest) = element(tbs_from_serial(der)?)? else { return None };
    let (SEQUENCE, _, rest) = element(rest)? else { return None }; // signature algorithm
    let (SEQUENCE, issuer, rest) = element(rest)? else { return None };
    let (SEQUENCE, _, rest) = element(rest)? else { return None }; // validity
    let (SEQUENCE, subject, _) = element(rest)? else { return None };
    Some(Fields { serial, issuer, subject })
}

/// One attribute of a name: `type=value` within an RDN.
struct Attribute<'a> {
    /// Which RDN (SET) of the name it is in, counted in DER order.
    rdn: usize,
    /// The attribute type's OBJECT IDENTIFIER contents.
    oid: &'a [u8],
    /// The value's tag, contents, and whole DER element.
    tag: u8,
    contents: &'a [u8],
    der: &'a [u8],
}

/// The Name whose SEQUENCE contents are `rdns` in RFC 2253 form as
/// `XN_FLAG_RFC2253` prints it: attributes last to first (most specific
/// first), `,` between RDNs and `+` within one; `None` when it is not a Name.
pub(super) fn name(mut rdns: &[u8]) -> Option<String> {
    let mut attributes = Vec::new();
    let mut rdn = 0;
    while !rdns.is_empty() {
        let (SET, mut set, rest) = element(rdns)? else { return None };
        while !set.is_empty() {
            let (SEQUENCE, pair, more) = element(set)? else { return None };
            let (OBJECT_IDENTIFIER, oid, value) = element(pair)? else { return None };
            let (tag, contents, after) = element(value)?;
            // A high tag number (0x1f) would be misread as one byte: refuse it.
            if !after.is_empty() || tag & 0x1f == 0x1f {
                return None;
            }
            attributes.push(Attribute { rdn, oid, tag, contents, der: value });
            set = more;
        }
        rdn += 1;
        rdns = rest;
    }
    let mut out = String::new();
    let mut previous = None;
    // OpenSSL reverses the list of attributes, not of RDNs: the attributes of
    // a multi-valued RDN come out in reverse DER order too.
    for attribute in attributes.iter().rev() {
        if let Some(previous) = previous {
            out.push(if previous == attribute.rdn { '+' } else { ',' });
        }
        previous = Some(attribute.rdn);
        let oid = dotted(attribute.oid)?;
        match short_name(&oid) {
            Some(short) => {
                out.push_str(short);
                out.push('=');
                value(attribute, &mut out)?;
            }
            // XN_FLAG_DUMP_UNKNOWN_FIELDS: an attribute OpenSSL has no name
            // for is printed as its OID and the DER of its value, whatever
            // the value's type.
            None => {
                out.push_str(&oid);
                out.push('=');
                hex_dump(attribute.der, &mut out);
            }
        }
    }
    Some(out)
}

const UTF8_STRING: u8 = 12;
const NUMERIC_STRING: u8 = 18;
const PRINTABLE_STRING: u8 = 19;
const T61_STRING: u8 = 20;
const IA5_STRING: u8 = 22;
const VISIBLE_STRING: u8 = 26;
const UNIVERSAL_STRING: u8 = 28;
const BMP_STRING: u8 = 30;

/// A known attribute's value: a string's characters escaped as RFC 2253 and
/// OpenSSL's ESC_CTRL and ESC_MSB flags ask, anything else `#` and its DER.
fn value(attribute: &Attribute<'_>, out: &mut String) -> Option<()> {
    let bytes = attribute.contents;
    let chars: Vec<char> = match attribute.tag {
        UTF8_STRING => std::str::from_utf8(bytes).ok()?.chars().collect(),
        // One byte a character, read as Latin-1 (OpenSSL's ASN1_STRFLGS_UTF8_CONVERT).
        NUMERIC_STRING | PRINTABLE_STRING | T61_STRING | IA5_STRING | VISIBLE_STRING => {
            bytes.iter().map(|&b| char::from(b)).collect()
        }
        BMP_STRING => units(bytes, 2)?,
        UNIVERSAL_STRING => units(bytes, 4)?,
        _ => {
            hex_dump(attribute.der, out);
            return Some(());
        }
    };
    let last = chars.len().checked_sub(1);
    for (i, c) in chars.into_iter().enumerate() {
        // OpenSSL marks the first character or the last, not both: a lone `#`
        // stays as it is, a lone space is escaped.
        let is_last = Some(i) == last;
        let is_first = i == 0 && !is_last;
        escape(c, is_first, is_last, out);
    }
    Some(())
}

/// The big-endian code units of `width` bytes in `bytes` as characters;
/// `None` for a cut unit or one that is no Unicode scalar value (a lone
/// surrogate), which OpenSSL refuses.
fn units(bytes: &[u8], width: usize) -> Option<Vec<char>> {
    if !bytes.len().is_multiple_of(width) {
        return None;
    }
    bytes
        .chunks_exact(width)
        .map(|unit| char::from_u32(unit.iter().fold(0u32, |code, &b| (code << 8) | u32::from(b))))
        .collect()
}

/// One character of a value: RFC 2253 2.4's specials with a backslash, a
/// leading `#` or space and a trailing space too, and control characters and
/// each byte of a non-ASCII character's UTF-8 as `\XX`.
fn escape(c: char, first: bool, last: bool, out: &mut String) {
    match c {
        ',' | '+' | '"' | '\\' | '<' | '>' | ';' => {
            out.push('\\');
            out.push(c);
        }
        '#' if first => out.push_str("\\#"),
        ' ' if first || last => out.push_str("\\ "),
        ' '..='~' => out.push(c),
        _ => {
            let mut utf8 = [0; 4];
            for byte in c.encode_utf8(&mut utf8).bytes() {
                let _ = write!(out, "\\{byte:02X}");
            }
        }
    }
}

/// `#` and the bytes in upper-case hex, as OpenSSL dumps a value.
fn hex_dump(der: &[u8], out: &mut String) {
    out.push('#');
    for byte in der {
        let _ = write!(out, "{byte:02X}");
    }
}

/// The OBJECT IDENTIFIER contents `oid` in dotted form (`2.5.4.3`), cut to
/// 79 characters as OpenSSL's 80-byte buffer cuts it; `None` for a cut or
/// padded arc, or one past 128 bits (OpenSSL would print it, but no attribute
/// type has such an arc).
fn dotted(oid: &[u8]) -> Option<String> {
    if oid.last().is_none_or(|last| last & 0x80 != 0) {
        return None;
    }
    let mut text = String::new();
    let mut arc: u128 = 0;
    let mut arc_start = true;
    for &byte in oid {
        if arc_start && byte == 0x80 {
            return None;
        }
        arc = arc.checked_mul(128)?.checked_add(u128::from(byte & 0x7f))?;
        arc_start = byte & 0x80 == 0;
        if arc_start {
            // The first subidentifier holds the first two arcs: 40 * X + Y.
            let _ = match (text.is_empty(), arc) {
                (true, 0..40) => write!(text, "0.{arc}"),
                (true, 40..80) => write!(text, "1.{}", arc - 40),
                (true, _) => write!(text, "2.{}", arc - 80),
                (false, _) => write!(text, ".{arc}"),
            };
            arc = 0;
        }
    }
    text.truncate(79);
    Some(text)
}

/// OpenSSL's short name for a name attribute type, as `XN_FLAG_FN_SN` prints
/// it: those of OpenSSL 3.0's object table that names carry (X.520, PKCS #9,
/// RFC 4519's pilot attributes, the EV jurisdiction and Russian
/// registration attributes). An OID OpenSSL knows by another name that is
/// missing here is printed as an unknown one.
fn short_name(oid: &str) -> Option<&'static str> {
    SHORT_NAMES.iter().find(|(known, _)| *known == oid).map(|(_, name)| *name)
}

/// Generated from OpenSSL 3.0's `OBJ_nid2obj` for these arcs; the full table
/// has some 1200 objects, almost none of which a name uses.
const SHORT_NAMES: &[(&str, &str)] = &[
    ("2.5.4.3", "CN"),
    ("2.5.4.4", "SN"),
    ("2.5.4.5", "serialNumber"),
    ("2.5.4.6", "C"),
    ("2.5.4.7", "L"),
    ("2.5.4.8", "ST"),
    ("2.5.4.9", "street"),
    ("2.5.4.10", "O"),
    ("2.5.4.11", "OU"),
    ("2.5.4.12", "title"),
    ("2.5.4.13", "description"),
    ("2.5.4.14", "searchGuide"),
    ("2.5.4.15", "businessCategory"),
    ("2.5.4.16", "postalAddress"),
    ("2.5.4.17", "postalCode"),
    ("2.5.4.18", "postOfficeBox"),
    ("2.5.4.19", "physicalDeliveryOfficeName"),
    ("2.5.4.20", "telephoneNumber"),
    ("2.5.4.21", "telexNumber"),
    ("2.5.4.22", "teletexTerminalIdentifier"),
    ("2.5.4.23", "facsimileTelephoneNumber"),
    ("2.5.4.24", "x121Address"),
    ("2.5.4.25", "internationaliSDNNumber"),
    ("2.5.4.26", "registeredAddress"),
    ("2.5.4.27", "destinationIndicator"),
    ("2.5.4.28", "preferredDeliveryMethod"),
    ("2.5.4.29", "presentationAddress"),
    ("2.5.4.30", "supportedApplicationContext"),
    ("2.5.4.31", "member"),
    ("2.5.4.32", "owner"),
    ("2.5.4.33", "roleOccupant"),
    ("2.5.4.34", "seeAlso"),
    ("2.5.4.35", "userPassword"),
    ("2.5.4.36", "userCertificate"),
    ("2.5.4.37", "cACertificate"),
    ("2.5.4.38", "authorityRevocationList"),
    ("2.5.4.39", "certificateRevocationList"),
    ("2.5.4.40", "crossCertificatePair"),
    ("2.5.4.41", "name"),
    ("2.5.4.42", "GN"),
    ("2.5.4.43", "initials"),
    ("2.5.4.44", "generationQualifier"),
    ("2.5.4.45", "x500UniqueIdentifier"),
    ("2.5.4.46", "dnQualifier"),
    ("2.5.4.47", "enhancedSearchGuide"),
    ("2.5.4.48", "protocolInformation"),
    ("2.5.4.49", "distinguishedName"),
    ("2.5.4.50", "uniqueMember"),
    ("2.5.4.51", "houseIdentifier"),
    ("2.5.4.52", "supportedAlgorithms"),
    ("2.5.4.53", "deltaRevocationList"),
    ("2.5.4.54", "dmdName"),
    ("2.5.4.65", "pseudonym"),
    ("2.5.4.72", "role"),
    ("2.5.4.97", "organizationIdentifier"),
    ("2.5.4.98", "c3"),
    ("2.5.4.99", "n3"),
    ("2.5.4.100", "dnsName"),
    ("1.2.840.113549.1.9.1", "emailAddress"),
    ("1.2.840.113549.1.9.2", "unstructuredName"),
    ("1.2.840.113549.1.9.3", "contentType"),
    ("1.2.840.113549.1.9.4", "messageDigest"),
    ("1.2.840.113549.1.9.5", "signingTime"),
    ("1.2.840.113549.1.9.6", "countersignature"),
    ("1.2.840.113549.1.9.7", "challengePassword"),
    ("1.2.840.113549.1.9.8", "unstructuredAddress"),
    ("1.2.840.113549.1.9.9", "extendedCertificateAttributes"),
    ("1.2.840.113549.1.9.20", "friendlyName"),
    ("1.2.840.113549.1.9.21", "localKeyID"),
    ("0.9.2342.19200300.100.1.1", "UID"),
    ("0.9.2342.19200300.100.1.2", "textEncodedORAddress"),
    ("0.9.2342.19200300.100.1.3", "mail"),
    ("0.9.2342.19200300.100.1.4", "info"),
    ("0.9.2342.19200300.100.1.5", "favouriteDrink"),
    ("0.9.2342.19200300.100.1.6", "roomNumber"),
    ("0.9.2342.19200300.100.1.7", "photo"),
    ("0.9.2342.19200300.100.1.8", "userClass"),
    ("0.9.2342.19200300.100.1.9", "host"),
    ("0.9.2342.19200300.100.1.10", "manager"),
    ("0.9.2342.19200300.100.1.11", "documentIdentifier"),
    ("0.9.2342.19200300.100.1.12", "documentTitle"),
    ("0.9.2342.19200300.100.1.13", "documentVersion"),
    ("0.9.2342.19200300.100.1.14", "documentAuthor"),
    ("0.9.2342.19200300.100.1.15", "documentLocation"),
    ("0.9.2342.19200300.100.1.20", "homeTelephoneNumber"),
    ("0.9.2342.19200300.100.1.21", "secretary"),
    ("0.9.2342.19200300.100.1.22", "otherMailbox"),
    ("0.9.2342.19200300.100.1.23", "lastModifiedTime"),
    ("0.9.2342.19200300.100.1.24", "lastModifiedBy"),
    ("0.9.2342.19200300.100.1.25", "DC"),
    ("0.9.2342.19200300.100.1.26", "aRecord"),
    ("0.9.2342.19200300.100.1.27", "pilotAttributeType27"),
    ("0.9.2342.19200300.100.1.28", "mXRecord"),
    ("0.9.2342.19200300.100.1.29", "nSRecord"),
    ("0.9.2342.19200300.100.1.30", "sOARecord"),
    ("0.9.2342.19200300.100.1.31", "cNAMERecord"),
    ("0.9.2342.19200300.100.1.37", "associatedDomain"),
    ("0.9.2342.19200300.100.1.38", "associatedName"),
    ("0.9.2342.19200300.100.1.39", "homePostalAddress"),
    ("0.9.2342.19200300.100.1.40", "personalTitle"),
    ("0.9.2342.19200300.100.1.41", "mobileTelephoneNumber"),
    ("0.9.2342.19200300.100.1.42", "pagerTelephoneNumber"),
    ("0.9.2342.19200300.100.1.43", "friendlyCountryName"),
    ("0.9.2342.19200300.100.1.44", "uid"),
    ("0.9.2342.19200300.100.1.45", "organizationalStatus"),
    ("0.9.2342.19200300.100.1.46", "janetMailbox"),
    ("0.9.2342.19200300.100.1.47", "mailPreferenceOption"),
    ("0.9.2342.19200300.100.1.48", "buildingName"),
    ("0.9.2342.19200300.100.1.49", "dSAQuality"),
    ("0.9.2342.19200300.100.1.50", "singleLevelQuality"),
    ("0.9.2342.19200300.100.1.51", "subtreeMinimumQuality"),
    ("0.9.2342.19200300.100.1.52", "subtreeMaximumQuality"),
    ("0.9.2342.19200300.100.1.53", "personalSignature"),
    ("0.9.2342.19200300.100.1.54", "dITRedirect"),
    ("0.9.2342.19200300.100.1.55", "audio"),
    ("0.9.2342.19200300.100.1.56", "documentPublisher"),
    ("1.3.6.1.4.1.311.60.2.1.1", "jurisdictionL"),
    ("1.3.6.1.4.1.311.60.2.1.2", "jurisdictionST"),
    ("1.3.6.1.4.1.311.60.2.1.3", "jurisdictionC"),
    ("1.2.643.3.131.1.1", "INN"),
    ("1.2.643.100.1", "OGRN"),
    ("1.2.643.100.3", "SNILS"),
    ("1.2.643.100.5", "OGRNIP"),
];

/// The serial number INTEGER's contents as `i2a_ASN1_INTEGER` prints it:
/// the magnitude in upper-case hex, `-` before a negative one. `None` for
/// an empty or needlessly padded INTEGER, which OpenSSL refuses to read.
/// OpenSSL breaks a number of more than 35 bytes with `\` and a newline,
/// which no header may hold: here it stays one line (RFC 5280 allows 20).
pub(super) fn serial(contents: &[u8]) -> Option<String> {
    let (&first, rest) = contents.split_first()?;
    let negative = first & 0x80 != 0;
    // c2i_ibuf: a leading 0x00, or 0xff before some non-zero byte, only
    // carries the sign, and must be needed for it.
    let padded = first == 0 || (first == 0xff && rest.iter().any(|&b| b != 0));
    let body = match rest.first() {
        Some(&next) if padded => {
            if negative == (next & 0x80 != 0) {
                return None;
            }
            rest
        }
        _ => contents,
    };
    let mut magnitude = body.to_vec();
    if negative {
        // Two's complement: invert, add one.
        let mut carry = 1u16;
        for byte in magnitude.iter_mut().rev() {
            let sum = u16::from(!*byte) + carry;
            *byte = sum.to_le_bytes()[0];
            carry = sum >> 8;
        }
    }
    let mut out = String::with_capacity(magnitude.len() * 2 + 1);
    if negative {
        out.push('-');
    }
    for byte in magnitude {
        let _ = write!(out, "{byte:02X}");
    }
    Some(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    /// Bytes from hex, for DER written out in the tests.
    fn hex(text: &str) -> Vec<u8> {
        (0..text.len()).step_by(2).map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap()).collect()
    }

    /// The Name whose whole DER is `der` (hex), printed.
    fn print(der: &str) -> Option<String> {
        let der = hex(der);
        let (SEQUENCE, rdns, rest) = element(&der)? else { return None };
        assert!(rest.is_empty());
        name(rdns)
    }

    // Each expectation below is what `openssl x509 -noout -subject -nameopt
    // RFC2253` (OpenSSL 3.0.22) printed for a certificate with that Name as
    // its subject.

    #[test]
    fn rdns_print_most_specific_first_with_specials_escaped() {
        // C=US, O=Example, Ltd, OU=Ops, CN=client.example.com (DER order).
        let der = "304f310b300906035504061302555331153013060355040a0c0c4578616d706c652c204c7464310c300a060355040b0c034f7073311b301906035504030c12636c69656e742e6578616d706c652e636f6d";
        assert_eq!(print(der).unwrap(), r"CN=client.example.com,OU=Ops,O=Example\, Ltd,C=US");
        // a+b,c"d\e<f>g;h=i
        assert_eq!(
            print("301c311a301806035504030c11612b622c6322645c653c663e673b683d69").unwrap(),
            r#"CN=a\+b\,c\"d\\e\<f\>g\;h=i"#
        );
        assert_eq!(print("300d310b300906035504030c02615c").unwrap(), r"CN=a\\");
    }

    #[test]
    fn leading_hash_and_outer_spaces_are_escaped_as_openssl_does() {
        let cases = [
            ("300d310b300906035504030c022378", r"CN=\#x"),
            ("300e310c300a06035504030c03782379", "CN=x#y"),
            ("300d310b300906035504030c026123", "CN=a#"),
            // A lone `#` is the last character, not the first: kept.
            ("300c310a300806035504030c0123", "CN=#"),
            ("300c310a300806035504030c0120", r"CN=\ "),
            ("300d310b300906035504030c022020", r"CN=\ \ "),
            ("3010310e300c06035504030c052061206220", r"CN=\ a b\ "),
            ("300e310c300a06035504030c03c3a920", r"CN=\C3\A9\ "),
            // In a BMPString as in any string.
            ("300f310d300b06035504031e0400230061", r"CN=\#a"),
            ("300b3109300706035504030c00", "CN="),
            ("3000", ""),
        ];
        for (der, printed) in cases {
            assert_eq!(print(der).as_deref(), Some(printed), "{der}");
        }
    }

    #[test]
    fn non_ascii_and_control_characters_are_utf8_bytes_in_hex() {
        let cases = [
            // UTF8String "Zoë Ünïcode €😀"
            (
                "3021311f301d06035504030c165a6fc3ab20c39c6ec3af636f646520e282acf09f9880",
                r"CN=Zo\C3\AB \C3\9Cn\C3\AFcode \E2\82\AC\F0\9F\98\80",
            ),
            ("30133111300f06035504030c0861006209637f641f", r"CN=a\00b\09c\7Fd\1F"),
            // T61String, IA5String and PrintableString bytes are Latin-1.
            ("300f310d300b06035504031404636166e9", r"CN=caf\C3\A9"),
            ("300d310b30090603550403160261e9", r"CN=a\C3\A9"),
            ("300d310b30090603550403130261e9", r"CN=a\C3\A9"),
            ("30133111300f06035504031e08005a006f00eb20ac", r"CN=Zo\C3\AB\E2\82\AC"),
            ("30173115301306035504031c0c0000005a000000f60001f600", r"CN=Z\C3\B6\F0\9F\98\80"),
        ];
        for (der, printed) in cases {
            assert_eq!(print(der).as_deref(), Some(printed), "{der}");
        }
    }

    #[test]
    fn a_multi_valued_rdn_is_joined_with_plus_in_reverse_der_order() {
        // SET { OU=Ops, CN=cn, UID=u1 }, then CN=x.
        let der = "30373129300a060355040b0c034f7073300906035504030c02636e3010060a0992268993f22c6401010c027531310a300806035504030c0178";
        assert_eq!(print(der).unwrap(), "CN=x,UID=u1+CN=cn+OU=Ops");
        // An empty RDN prints nothing.
        assert_eq!(print("300e3100310a300806035504030c0161").unwrap(), "CN=a");
    }

    #[test]
    fn short_names_are_openssls() {
        let der = "308186310a300806035504090c0173310a300806035504070c016c310b300906035504080c02737431123010060a0992268993f22c64011916026463310b300906035504040c02736e310b3009060355042a0c02676e310a3008060355040c0c017431133011060b2b0601040182373c020103130255533110300e06035504610c0756415444452d31";
        assert_eq!(
            print(der).unwrap(),
            "organizationIdentifier=VATDE-1,jurisdictionC=US,title=t,GN=gn,SN=sn,DC=dc,ST=st,L=l,street=s"
        );
        assert_eq!(print("30163114301206092a864886f70d01090116056140622e63").unwrap(), "emailAddress=a@b.c");
        assert_eq!(print("3010310e300c060355040512053132332034").unwrap(), "serialNumber=123 4");
    }

    #[test]
    fn unknown_types_print_as_oid_and_the_values_der() {
        let cases = [
            ("301d310f300d06042a0304050c0568656c6c6f310a300806035504030c0178", "CN=x,1.2.3.4.5=#0C0568656C6C6F"),
            ("301531133011060b883781dba6e9bab1c3e64e13026869", "2.999.123456789012345678=#13026869"),
            ("300b3109300706022a03140167", "1.2.3=#140167"),
            // OpenSSL's 80-byte buffer cuts a long OID to 79 characters.
            (
                "30323130302e06292abaef9a15baef9a15baef9a15baef9a15baef9a15baef9a15baef9a15baef9a15baef9a15baef9a150c0176",
                "1.2.123456789.123456789.123456789.123456789.123456789.123456789.123456789.12345=#0C0176",
            ),
        ];
        for (der, printed) in cases {
            assert_eq!(print(der).as_deref(), Some(printed), "{der}");
        }
    }

    #[test]
    fn values_that_are_not_strings_print_as_their_der() {
        let cases = [
            ("300d310b3009060355042d030200ab", "x500UniqueIdentifier=#030200AB"),
            ("300e310c300a06035504033003020105", "CN=#3003020105"),
            ("300c310a300806035504030d0101", "CN=#0D0101"),
            // OpenSSL refuses these certificates; the DER is what is there.
            ("300c310a30080603550403020105", "CN=#020105"),
            ("300d310b3009060355040304020102", "CN=#04020102"),
        ];
        for (der, printed) in cases {
            assert_eq!(print(der).as_deref(), Some(printed), "{der}");
        }
    }

    #[test]
    fn malformed_names_are_none_never_a_panic() {
        for der in [
            "300e310c300a06035504030c0361ffc3",       // not UTF-8
            "300e310c300a06035504031e03006100",       // odd BMPString
            "3011310f300d06035504031e060061d8000062", // lone surrogate
            "300f310d300b06035504031c0400110000",     // past U+10FFFF
            "300e310c300a06035504031c03000000",       // cut UniversalString
            "300d310b300906035504031f200161",         // high tag number
            "300e310c300a06035504030c01610c00",       // two values
            "3009310730050603550403",                 // no value
            "300c310a300806035504030c0561",           // value cut
            "300c310a300806035504840c0161",           // last OID byte continues
            "300d310b30090604558004030c0161",         // padded OID arc
            "30093107300506000c0161",                 // empty OID
            "300c310a300804035504030c0161",           // type not an OID
            "300c300a300806035504030c0161",           // RDN not a SET
            "300c310a310806035504030c0161",           // attribute not a SEQUENCE
        ] {
            assert_eq!(print(der), None, "{der}");
        }
        let good = hex(
            "304f310b300906035504061302555331153013060355040a0c0c4578616d706c652c204c7464310c300a060355040b0c034f7073311b301906035504030c12636c69656e742e6578616d706c652e636f6d",
        );
        for cut in 2..good.len() {
            // The outer length no longer matches; the contents alone are cut.
            let _ = name(&good[2..cut]);
        }
        let mut flipped = good.clone();
        for i in 0..flipped.len() {
            for bit in 0..8 {
                flipped[i] ^= 1 << bit;
                let _ = element(&flipped).map(|(_, rdns, _)| name(rdns));
                flipped[i] ^= 1 << bit;
            }
        }
    }

    #[test]
    fn serial_numbers_as_i2a_asn1_integer_prints_them() {
        // What `openssl x509 -noout -serial` printed for each INTEGER's contents.
        for (contents, printed) in [
            ("00", "00"),
            ("01", "01"),
            ("0080", "80"),
            ("00ff", "FF"),
            ("0a1b2c3d4e5f", "0A1B2C3D4E5F"),
            ("ff", "-01"),
            ("80", "-80"),
            ("ff7f", "-81"),
            ("ff00", "-0100"),
            ("8000", "-8000"),
            ("ff0000", "-010000"),
        ] {
            assert_eq!(serial(&hex(contents)).as_deref(), Some(printed), "{contents}");
        }
        // Refused by OpenSSL: empty, or padded without need.
        for contents in ["", "0001", "ffff01"] {
            assert_eq!(serial(&hex(contents)), None, "{contents}");
        }
    }

    #[test]
    fn fields_of_a_certificate() {
        let mut params = rcgen::CertificateParams::new(vec!["a.test".to_owned()]).unwrap();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params.distinguished_name.push(rcgen::DnType::OrganizationName, "Example, Ltd");
        params.distinguished_name.push(rcgen::DnType::CommonName, "a.test");
        params.serial_number = Some(rcgen::SerialNumber::from_slice(&[0x8f, 0x01, 0x00]));
        let key = rcgen::KeyPair::generate().unwrap();
        let der = params.self_signed(&key).unwrap().der().to_vec();
        let fields = fields(&der).unwrap();
        assert_eq!(serial(fields.serial).unwrap(), "8F0100");
        assert_eq!(name(fields.subject).unwrap(), r"CN=a.test,O=Example\, Ltd");
        assert_eq!(name(fields.issuer).unwrap(), r"CN=a.test,O=Example\, Ltd");
        for cut in 0..der.len() {
            let _ = super::fields(&der[..cut]);
        }
        assert_eq!(super::fields(b"\x30\x03\x02\x01\x01"), None);
    }
}
