//! The common name (CN) of a certificate's subject: how the server's log
//! names a client that presented a certificate (`conn 7 from ADDR
//! (device-42) connected`).
//!
//! rustls verifies certificates but does not expose their fields, and the
//! one field wanted here is a short walk through the DER encoding
//! (RFC 5280 section 4.1): Certificate, its TBSCertificate, past the
//! version, serial number, signature algorithm, issuer and validity, to the
//! subject's attributes. A walk of a few dozen lines beats a whole X.509
//! parser as a dependency. Pure: bytes in, a name out.
//!
//! The name is believed only because the certificate was verified against
//! the CA the operator named (`--tls-client-ca`) before this is called; it
//! is still escaped for the log, since the CA's subscribers chose it.

/// The DER tag of a SEQUENCE.
const SEQUENCE: u8 = 0x30;
/// The DER tag of a SET.
const SET: u8 = 0x31;
/// The DER tag of an OBJECT IDENTIFIER.
const OID: u8 = 0x06;
/// The explicit `[0]` tag of TBSCertificate's version.
const VERSION: u8 = 0xa0;
/// id-at-commonName, 2.5.4.3, as DER content bytes.
const COMMON_NAME: &[u8] = &[0x55, 0x04, 0x03];
/// X.520's upper bound of a common name, in characters: longer is cut.
const MAX_NAME: usize = 64;

/// The subject's common name in a DER certificate, escaped for a log line
/// (control characters as `\u{..}`, at most 64 characters); the
/// last CN when there are several (the most specific, by convention).
/// `None` when the subject has no CN or the DER cannot be walked.
pub fn common_name(certificate: &[u8]) -> Option<String> {
    let (certificate, _) = expect(certificate, SEQUENCE)?;
    let (mut tbs, _) = expect(certificate, SEQUENCE)?;
    if tbs.first() == Some(&VERSION) {
        tbs = element(tbs)?.2;
    }
    // serialNumber, signature, issuer, validity; then subject.
    for _ in 0..4 {
        tbs = element(tbs)?.2;
    }
    let (mut subject, _) = expect(tbs, SEQUENCE)?;
    let mut found = None;
    while !subject.is_empty() {
        let (mut set, rest) = expect(subject, SET)?;
        subject = rest;
        while !set.is_empty() {
            let (attribute, rest) = expect(set, SEQUENCE)?;
            set = rest;
            let (oid, value) = expect(attribute, OID)?;
            if oid == COMMON_NAME {
                let (tag, text, _) = element(value)?;
                found = Some(decode(tag, text));
            }
        }
    }
    found.map(|name| escape(&name))
}

/// One DER element: its tag, its contents and what follows it. Only the
/// definite lengths DER allows, of up to 4 bytes.
fn element(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let count = usize::from(first & 0x7f);
        if count == 0 || count > 4 || rest.len() < count {
            return None;
        }
        let (digits, rest) = rest.split_at(count);
        let len = digits
            .iter()
            .fold(0usize, |len, &d| (len << 8) | usize::from(d));
        (len, rest)
    };
    if rest.len() < len {
        return None;
    }
    let (contents, rest) = rest.split_at(len);
    Some((tag, contents, rest))
}

/// The element at the start of `input` if it has tag `tag`: its contents
/// and what follows it.
fn expect(input: &[u8], tag: u8) -> Option<(&[u8], &[u8])> {
    let (found, contents, rest) = element(input)?;
    (found == tag).then_some((contents, rest))
}

/// A directory string's text: BMPString as UTF-16, the others (UTF8String,
/// PrintableString, IA5String, TeletexString) as UTF-8, lossily.
fn decode(tag: u8, text: &[u8]) -> String {
    const BMP_STRING: u8 = 0x1e;
    if tag == BMP_STRING {
        let units: Vec<u16> = text
            .chunks(2)
            .map(|pair| u16::from_be_bytes([pair[0], *pair.get(1).unwrap_or(&0)]))
            .collect();
        return String::from_utf16_lossy(&units);
    }
    String::from_utf8_lossy(text).into_owned()
}

/// At most [`MAX_NAME`] characters, control characters escaped, so that a
/// name cannot break or forge a log line.
fn escape(name: &str) -> String {
    name.chars()
        .take(MAX_NAME)
        .map(|c| {
            if c.is_control() {
                c.escape_unicode().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{CertificateParams, DistinguishedName, DnType, KeyPair};

    fn certificate(names: &[(DnType, &str)]) -> Vec<u8> {
        let mut params = CertificateParams::new(vec!["localhost".into()]).unwrap();
        let mut dn = DistinguishedName::new();
        for (kind, value) in names {
            dn.push(kind.clone(), *value);
        }
        params.distinguished_name = dn;
        let key = KeyPair::generate().unwrap();
        params.self_signed(&key).unwrap().der().to_vec()
    }

    #[test]
    fn the_subjects_common_name_is_found_among_other_attributes() {
        let der = certificate(&[
            (DnType::CountryName, "NL"),
            (DnType::OrganizationName, "Fleet"),
            (DnType::CommonName, "device-42"),
        ]);
        assert_eq!(common_name(&der).as_deref(), Some("device-42"));
    }

    #[test]
    fn no_common_name_is_none() {
        let der = certificate(&[(DnType::OrganizationName, "Fleet")]);
        assert_eq!(common_name(&der), None);
    }

    #[test]
    fn control_characters_are_escaped_and_long_names_cut() {
        let der = certificate(&[(DnType::CommonName, "evil\nconn 9 connected")]);
        assert_eq!(
            common_name(&der).as_deref(),
            Some("evil\\u{a}conn 9 connected")
        );
        let long = "x".repeat(100);
        let der = certificate(&[(DnType::CommonName, &long)]);
        assert_eq!(common_name(&der).map(|n| n.len()), Some(MAX_NAME));
    }

    #[test]
    fn truncated_or_garbage_der_is_none_not_a_panic() {
        let der = certificate(&[(DnType::CommonName, "device-42")]);
        for end in 0..der.len() {
            let _ = common_name(&der[..end]);
        }
        assert_eq!(common_name(b"not a certificate"), None);
        assert_eq!(common_name(&[0x30, 0x84, 0xff, 0xff, 0xff, 0xff]), None);
    }

    #[test]
    fn a_bmp_string_is_utf16() {
        let mut text = Vec::new();
        for unit in "dévice".encode_utf16() {
            text.extend_from_slice(&unit.to_be_bytes());
        }
        assert_eq!(decode(0x1e, &text), "dévice");
    }
}
