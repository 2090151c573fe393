//! The subject of a client certificate, and the `tls_subject` a tenant is bound to (mutual TLS).
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
        let (_, certificate) = Der::new(certificate).element(SEQUENCE)?;
        let (_, to_be_signed) = Der::new(certificate).element(SEQUENCE)?;
        let mut fields = Der::new(to_be_signed);
        if fields.peek() == Some(EXPLICIT_VERSION) {
            fields.any()?;
        }
        fields.element(INTEGER)?; // serial number
        fields.element(SEQUENCE)?; // signature algorithm
        fields.element(SEQUENCE)?; // issuer
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

const SEQUENCE: u8 = 0x30;
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
    fn garbage_is_no_subject() {
        for bytes in [
            &b""[..],
            b"\x30",
            b"\x30\x84\xff\xff\xff\xff",
            b"\x30\x03\x30\x01",
        ] {
            assert_eq!(Subject::of_certificate(bytes), None);
        }
    }
}
