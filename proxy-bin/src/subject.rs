//! What rkproxy reads from certificates itself: the subject of a client certificate, and the `tls_subject` a
//! tenant is bound to (mutual TLS); and when a certificate expires (the listener's, for the metrics and the
//! start-up warning).
//!
//! A subject is a set of `ATTRIBUTE=value` pairs (`CN=orders,O=Shop`). A tenant's `tls_subject` names the whole
//! set, in any order: `"CN=orders, O=Shop"` matches a certificate whose subject is exactly O=Shop and
//! CN=orders. Values cannot contain commas. The certificate has been verified by rustls before its subject is
//! read; the reader below still treats it as untrusted bytes (no panics, no indexing past the end).

/// A configured `tls_subject` that is not a list of `ATTRIBUTE=value`.
#[derive(Debug, thiserror::Error)]
#[error("'{0}' is not ATTRIBUTE=value")]
pub struct BadSubject(String);

/// A certificate subject: its attributes, sorted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subject(Vec<(String, String)>);

impl Subject {
    /// Parses a configured `tls_subject` (`CN=name, O=org`).
    pub fn parse(text: &str) -> Result<Subject, BadSubject> {
        let mut attributes = Vec::new();
        for part in text.split(',') {
            let part = part.trim();
            let (name, value) = part
                .split_once('=')
                .ok_or_else(|| BadSubject(part.to_owned()))?;
            let (name, value) = (name.trim(), value.trim());
            if name.is_empty() || value.is_empty() {
                return Err(BadSubject(part.to_owned()));
            }
            attributes.push((name.to_ascii_uppercase(), value.to_owned()));
        }
        attributes.sort();
        Ok(Subject(attributes))
    }

    /// The subject of a DER certificate, `None` when it cannot be read.
    pub fn of_certificate(certificate: &[u8]) -> Option<Subject> {
        let mut fields = fields_from_validity(certificate)?;
        fields.element(SEQUENCE)?; // validity
        let (_, name) = fields.element(SEQUENCE)?;
        let mut attributes = Vec::new();
        let mut sets = Der::new(name);
        while !sets.is_empty() {
            let (_, set) = sets.element(SET)?;
            let mut pairs = Der::new(set);
            while !pairs.is_empty() {
                let (_, pair) = pairs.element(SEQUENCE)?;
                let mut pair = Der::new(pair);
                let (_, oid) = pair.element(OID)?;
                let (_, value) = pair.any()?;
                attributes.push((
                    attribute_name(oid),
                    String::from_utf8_lossy(value).into_owned(),
                ));
            }
        }
        attributes.sort();
        Some(Subject(attributes))
    }
}

impl std::fmt::Display for Subject {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (index, (name, value)) in self.0.iter().enumerate() {
            if index > 0 {
                f.write_str(",")?;
            }
            write!(f, "{name}={value}")?;
        }
        Ok(())
    }
}

/// When a DER certificate stops being valid (its `notAfter`), in seconds since 1970; `None` when it cannot be
/// read.
pub fn expiry_of_certificate(certificate: &[u8]) -> Option<i64> {
    let (_, validity) = fields_from_validity(certificate)?.element(SEQUENCE)?;
    let mut validity = Der::new(validity);
    validity.any()?; // notBefore
    let (tag, time) = validity.any()?;
    seconds_since_1970(tag, time)
}

/// The fields of a certificate's to-be-signed part from its validity on (version, serial number, signature
/// algorithm and issuer skipped).
fn fields_from_validity(certificate: &[u8]) -> Option<Der<'_>> {
    let (_, certificate) = Der::new(certificate).element(SEQUENCE)?;
    let (_, to_be_signed) = Der::new(certificate).element(SEQUENCE)?;
    let mut fields = Der::new(to_be_signed);
    if fields.peek() == Some(EXPLICIT_VERSION) {
        fields.any()?;
    }
    fields.element(INTEGER)?; // serial number
    fields.element(SEQUENCE)?; // signature algorithm
    fields.element(SEQUENCE)?; // issuer
    Some(fields)
}

/// An X.509 time (RFC 5280 4.1.2.5: UTCTime `YYMMDDHHMMSSZ`, years 1950-2049, or GeneralizedTime
/// `YYYYMMDDHHMMSSZ`) as seconds since 1970.
fn seconds_since_1970(tag: u8, time: &[u8]) -> Option<i64> {
    let text = std::str::from_utf8(time).ok()?.strip_suffix('Z')?;
    let (year, rest) = match tag {
        UTC_TIME if text.len() == 12 => {
            let short: i64 = text.get(..2)?.parse().ok()?;
            (
                if short < 50 {
                    2000 + short
                } else {
                    1900 + short
                },
                &text[2..],
            )
        }
        GENERALIZED_TIME if text.len() == 14 => (text.get(..4)?.parse().ok()?, &text[4..]),
        _ => return None,
    };
    let field = |at: usize| -> Option<i64> { rest.get(at..at + 2)?.parse().ok() };
    let (month, day) = (field(0)?, field(2)?);
    let (hour, minute, second) = (field(4)?, field(6)?, field(8)?);
    if !(1..=12).contains(&month)
        || !(1..=31).contains(&day)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return None;
    }
    Some(days_since_1970(year, month, day) * 86_400 + hour * 3_600 + minute * 60 + second)
}

/// Days from 1970-01-01 to a date of the proleptic Gregorian calendar (Howard Hinnant's `days_from_civil`).
fn days_since_1970(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let day_of_year = (153 * ((month + 9) % 12) + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

const SEQUENCE: u8 = 0x30;
const UTC_TIME: u8 = 0x17;
const GENERALIZED_TIME: u8 = 0x18;
const SET: u8 = 0x31;
const INTEGER: u8 = 0x02;
const OID: u8 = 0x06;
const EXPLICIT_VERSION: u8 = 0xa0;

/// The usual short names of X.520 attributes (2.5.4.N); others by their dotted number.
fn attribute_name(oid: &[u8]) -> String {
    match oid {
        [0x55, 0x04, 0x03] => "CN".to_owned(),
        [0x55, 0x04, 0x06] => "C".to_owned(),
        [0x55, 0x04, 0x07] => "L".to_owned(),
        [0x55, 0x04, 0x08] => "ST".to_owned(),
        [0x55, 0x04, 0x0a] => "O".to_owned(),
        [0x55, 0x04, 0x0b] => "OU".to_owned(),
        other => other
            .iter()
            .map(|byte| byte.to_string())
            .collect::<Vec<_>>()
            .join("."),
    }
}

/// A cursor over DER elements (tag, length, value), reading only what the bytes hold.
struct Der<'a>(&'a [u8]);

impl<'a> Der<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        Der(bytes)
    }

    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn peek(&self) -> Option<u8> {
        self.0.first().copied()
    }

    /// The next element whatever its tag: (tag, value).
    fn any(&mut self) -> Option<(u8, &'a [u8])> {
        let (&tag, rest) = self.0.split_first()?;
        let (&first, mut rest) = rest.split_first()?;
        let length = if first < 0x80 {
            usize::from(first)
        } else {
            let count = usize::from(first & 0x7f);
            if count == 0 || count > 4 {
                return None;
            }
            let (digits, after) = rest.split_at_checked(count)?;
            rest = after;
            digits
                .iter()
                .fold(0usize, |length, &digit| (length << 8) | usize::from(digit))
        };
        let (value, after) = rest.split_at_checked(length)?;
        self.0 = after;
        Some((tag, value))
    }

    /// The next element, which must have `tag`.
    fn element(&mut self, tag: u8) -> Option<(u8, &'a [u8])> {
        self.any().filter(|(found, _)| *found == tag)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn configured_subjects_compare_as_sets() {
        let a = Subject::parse("CN=orders, O=Shop").unwrap();
        let b = Subject::parse("o=Shop,CN=orders").unwrap();
        assert_eq!(a, b);
        assert_ne!(a, Subject::parse("CN=orders").unwrap());
        assert!(Subject::parse("CN").is_err());
        assert!(Subject::parse("CN=").is_err());
    }

    #[test]
    fn certificate_times_count_seconds_since_1970() {
        assert_eq!(days_since_1970(1970, 1, 1), 0);
        assert_eq!(days_since_1970(2000, 3, 1), 11_017);
        assert_eq!(days_since_1970(1969, 12, 31), -1);
        // The test CA's expired certificate (xtask/src/tls.rs) ends at 2020-01-02 00:00:00 UTC.
        assert_eq!(
            seconds_since_1970(GENERALIZED_TIME, b"20200102000000Z"),
            Some(1_577_923_200)
        );
        assert_eq!(
            seconds_since_1970(UTC_TIME, b"200102000000Z"),
            Some(1_577_923_200)
        );
        assert_eq!(
            seconds_since_1970(UTC_TIME, b"991231235959Z"),
            Some(946_684_799)
        );
        for (tag, bad) in [
            (UTC_TIME, &b"20200102000000Z"[..]),
            (GENERALIZED_TIME, b"200102000000Z"),
            (UTC_TIME, b"201302000000Z"),
            (UTC_TIME, b"2001020000+0"),
            (UTC_TIME, b"20010200000\xffZ"),
            (INTEGER, b"200102000000Z"),
        ] {
            assert_eq!(seconds_since_1970(tag, bad), None, "{bad:?}");
        }
    }

    #[test]
    fn garbage_is_no_subject() {
        for bytes in [
            &b""[..],
            b"\x30",
            b"\x30\x84\xff\xff\xff\xff",
            b"\x30\x03\x30\x01",
        ] {
            assert_eq!(Subject::of_certificate(bytes), None);
            assert_eq!(expiry_of_certificate(bytes), None);
        }
    }
}
