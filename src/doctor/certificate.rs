//! The validity period of an X.509 certificate, read from its DER (the few fields before the
//! subject): enough to say whether a webhook's caBundle is current without an X.509 crate.

use crate::pki::der_element as element;

const SEQUENCE: u8 = 0x30;
const VERSION: u8 = 0xa0;
const UTC_TIME: u8 = 0x17;
const GENERALIZED_TIME: u8 = 0x18;

/// notBefore and notAfter of a DER certificate; `None` when it is not one.
pub fn validity(der: &[u8]) -> Option<(jiff::Timestamp, jiff::Timestamp)> {
    let (SEQUENCE, certificate, _) = element(der)? else {
        return None;
    };
    let (SEQUENCE, tbs, _) = element(certificate)? else {
        return None;
    };
    let mut rest = tbs;
    if rest.first() == Some(&VERSION) {
        rest = element(rest)?.2;
    }
    // serialNumber, signature, issuer
    for _ in 0..3 {
        rest = element(rest)?.2;
    }
    let (SEQUENCE, validity, _) = element(rest)? else {
        return None;
    };
    let (tag, not_before, rest) = element(validity)?;
    let not_before = time(tag, not_before)?;
    let (tag, not_after, _) = element(rest)?;
    Some((not_before, time(tag, not_after)?))
}

/// UTCTime (YYMMDDHHMMSSZ) or GeneralizedTime (YYYYMMDDHHMMSSZ), as RFC 5280 writes them.
fn time(tag: u8, text: &[u8]) -> Option<jiff::Timestamp> {
    let text = std::str::from_utf8(text).ok()?.strip_suffix('Z')?;
    let (year, rest) = match tag {
        UTC_TIME if text.len() == 12 => {
            let yy: i16 = text[..2].parse().ok()?;
            (if yy >= 50 { 1900 + yy } else { 2000 + yy }, &text[2..])
        }
        GENERALIZED_TIME if text.len() == 14 => (text[..4].parse().ok()?, &text[4..]),
        _ => return None,
    };
    let field = |i: usize| rest.get(i..i + 2)?.parse::<i8>().ok();
    jiff::civil::DateTime::new(year, field(0)?, field(2)?, field(4)?, field(6)?, field(8)?, 0)
        .ok()?
        .to_zoned(jiff::tz::TimeZone::UTC)
        .ok()
        .map(|z| z.timestamp())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cert_valid(from: (i32, u8, u8), to: (i32, u8, u8)) -> Vec<u8> {
        let mut params = rcgen::CertificateParams::new(vec!["x".to_owned()]).unwrap();
        let date = |(y, m, d): (i32, u8, u8)| {
            time::Date::from_calendar_date(y, time::Month::try_from(m).unwrap(), d)
                .unwrap()
                .with_hms(12, 30, 15)
                .unwrap()
                .assume_utc()
        };
        params.not_before = date(from);
        params.not_after = date(to);
        let key = rcgen::KeyPair::generate().unwrap();
        params.self_signed(&key).unwrap().der().to_vec()
    }

    #[test]
    fn reads_both_time_encodings() {
        // Before 2050 RFC 5280 writes UTCTime, from 2050 GeneralizedTime.
        let der = cert_valid((2024, 2, 29), (2051, 1, 2));
        let (from, to) = validity(&der).unwrap();
        assert_eq!(from.to_string(), "2024-02-29T12:30:15Z");
        assert_eq!(to.to_string(), "2051-01-02T12:30:15Z");
    }

    #[test]
    fn garbage_is_not_a_certificate() {
        assert_eq!(validity(b""), None);
        assert_eq!(validity(&[0x30, 0x05, 0x01]), None);
        assert_eq!(validity(&[0x30, 0x84, 0xff, 0xff, 0xff, 0xff]), None);
        let der = cert_valid((2024, 1, 1), (2025, 1, 1));
        assert_eq!(validity(&der[..der.len() / 3]), None);
    }
}
