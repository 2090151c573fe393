//! What one Redis server would answer: a model of one client's own keys, and the expected reply of each
//! command, compared with the reply the proxy sent.
//!
//! Only the commands the pairing test sends are modelled (SET, GET, INCR, APPEND, DEL, EXISTS, MGET, MSET, RPUSH,
//! LRANGE, PING, ECHO). Each client's keys are its own, so the model is exact whatever other clients do.

use std::collections::HashMap;
use std::fmt::Write;

use bytes::Bytes;
use resp_codec::Frame;

/// Redis's reply to a command on a key of another type.
const WRONGTYPE: &str = "Operation against a key holding the wrong kind of value";
/// Redis's reply to INCR on a value that is not a 64-bit integer.
const NOT_AN_INTEGER: &str = "value is not an integer or out of range";

/// A value held by one key.
#[derive(Debug, Clone)]
pub enum Value {
    Text(Bytes),
    List(Vec<Bytes>),
}

/// One client's keys, as the server holds them after every command so far.
#[derive(Debug, Clone, Default)]
pub struct Model {
    keys: HashMap<Bytes, Value>,
}

/// The reply a single Redis server gives to one command.
#[derive(Debug, Clone)]
pub enum Expected {
    /// Exactly this reply.
    Exact(Frame),
    /// An error with this code (its first word), whose text contains `contains` (case-insensitive) when given.
    /// Error texts are not compared whole: the proxy may word an error of its own differently.
    Error {
        code: &'static str,
        contains: Option<String>,
    },
    /// An array whose elements are these replies (an EXEC reply, with errors inside).
    Array(Vec<Expected>),
}

impl Expected {
    pub fn ok() -> Expected {
        Expected::simple("OK")
    }

    pub fn simple(text: &'static str) -> Expected {
        Expected::Exact(Frame::Simple(Bytes::from_static(text.as_bytes())))
    }

    pub fn integer(value: i64) -> Expected {
        Expected::Exact(Frame::Integer(value))
    }

    pub fn bulk(value: Bytes) -> Expected {
        Expected::Exact(Frame::Bulk(value))
    }

    pub fn error(code: &'static str, contains: &str) -> Expected {
        Expected::Error {
            code,
            contains: Some(contains.to_owned()),
        }
    }

    /// Whether `actual` is this reply.
    pub fn matches(&self, actual: &Frame) -> bool {
        match (self, actual) {
            (Expected::Exact(expected), actual) => expected == actual,
            (Expected::Error { code, contains }, Frame::Error(text)) => {
                let text = String::from_utf8_lossy(text).to_ascii_lowercase();
                let code_matches = text.split(' ').next() == Some(&code.to_ascii_lowercase());
                let text_matches = contains
                    .as_ref()
                    .is_none_or(|part| text.contains(&part.to_ascii_lowercase()));
                code_matches && text_matches
            }
            (Expected::Array(expected), Frame::Array(actual)) => {
                expected.len() == actual.len()
                    && expected.iter().zip(actual).all(|(e, a)| e.matches(a))
            }
            _ => false,
        }
    }

    /// A readable form, with long values shortened.
    pub fn show(&self) -> String {
        match self {
            Expected::Exact(frame) => show_frame(frame),
            Expected::Error { code, contains } => {
                format!("error {code} containing {contains:?}")
            }
            Expected::Array(items) => {
                let items: Vec<String> = items.iter().map(Expected::show).collect();
                show_list(&items)
            }
        }
    }
}

/// A readable form of a reply, with long values shortened (a 1 MiB value shows its length and first bytes).
pub fn show_frame(frame: &Frame) -> String {
    match frame {
        Frame::Bulk(bytes) => format!("${}", show_bytes(bytes)),
        Frame::Simple(bytes) => format!("+{}", show_bytes(bytes)),
        Frame::Error(bytes) => format!("-{}", show_bytes(bytes)),
        Frame::Array(items) => show_list(&items.iter().map(show_frame).collect::<Vec<_>>()),
        other => format!("{other:?}"),
    }
}

/// Shows at most the first 20 elements of a long list.
fn show_list(items: &[String]) -> String {
    let mut text = format!("[{} items: ", items.len());
    for item in items.iter().take(20) {
        let _ = write!(text, "{item}, ");
    }
    if items.len() > 20 {
        text.push_str("...");
    }
    text.push(']');
    text
}

/// Bytes as lossy text, shortened to 80 bytes with the full length.
pub fn show_bytes(bytes: &[u8]) -> String {
    if bytes.len() <= 80 {
        format!("{:?}", String::from_utf8_lossy(bytes))
    } else {
        format!(
            "{:?}... ({} bytes)",
            String::from_utf8_lossy(&bytes[..80]),
            bytes.len()
        )
    }
}

impl Model {
    /// Runs one well-formed command as Redis would, and returns its reply.
    pub fn apply(&mut self, args: &[Bytes]) -> Expected {
        let name = String::from_utf8_lossy(&args[0]).to_ascii_uppercase();
        let rest = &args[1..];
        match name.as_str() {
            "SET" => self.set(&rest[0], &rest[1]),
            "GET" => self.get(&rest[0]),
            "INCR" => self.incr(&rest[0]),
            "APPEND" => self.append(&rest[0], &rest[1]),
            "DEL" => self.del(rest),
            "EXISTS" => self.exists(rest),
            "MGET" => self.mget(rest),
            "MSET" => self.mset(rest),
            "RPUSH" => self.rpush(&rest[0], &rest[1..]),
            "LRANGE" => self.lrange(&rest[0]),
            "PING" if rest.is_empty() => Expected::simple("PONG"),
            "PING" | "ECHO" => Expected::bulk(rest[0].clone()),
            other => panic!("the model does not know {other}"),
        }
    }

    fn set(&mut self, key: &Bytes, value: &Bytes) -> Expected {
        self.keys.insert(key.clone(), Value::Text(value.clone()));
        Expected::ok()
    }

    fn get(&self, key: &Bytes) -> Expected {
        match self.keys.get(key) {
            None => Expected::Exact(Frame::NullBulk),
            Some(Value::Text(value)) => Expected::bulk(value.clone()),
            Some(Value::List(_)) => Expected::error("WRONGTYPE", WRONGTYPE),
        }
    }

    fn incr(&mut self, key: &Bytes) -> Expected {
        let current = match self.keys.get(key) {
            None => 0,
            Some(Value::List(_)) => return Expected::error("WRONGTYPE", WRONGTYPE),
            Some(Value::Text(text)) => match as_integer(text) {
                Some(number) => number,
                None => return Expected::error("ERR", NOT_AN_INTEGER),
            },
        };
        let Some(next) = current.checked_add(1) else {
            return Expected::error("ERR", "increment or decrement would overflow");
        };
        let text = Bytes::from(next.to_string());
        self.keys.insert(key.clone(), Value::Text(text));
        Expected::integer(next)
    }

    fn append(&mut self, key: &Bytes, suffix: &Bytes) -> Expected {
        let joined = match self.keys.get(key) {
            None => suffix.clone(),
            Some(Value::List(_)) => return Expected::error("WRONGTYPE", WRONGTYPE),
            Some(Value::Text(text)) => Bytes::from([&text[..], &suffix[..]].concat()),
        };
        let length = joined.len() as i64;
        self.keys.insert(key.clone(), Value::Text(joined));
        Expected::integer(length)
    }

    fn del(&mut self, keys: &[Bytes]) -> Expected {
        let removed = keys
            .iter()
            .filter(|key| self.keys.remove(*key).is_some())
            .count();
        Expected::integer(removed as i64)
    }

    fn exists(&self, keys: &[Bytes]) -> Expected {
        let present = keys
            .iter()
            .filter(|key| self.keys.contains_key(*key))
            .count();
        Expected::integer(present as i64)
    }

    /// MGET answers nil for a key of another type, not an error.
    fn mget(&self, keys: &[Bytes]) -> Expected {
        let values = keys
            .iter()
            .map(|key| match self.keys.get(key) {
                Some(Value::Text(value)) => Frame::Bulk(value.clone()),
                _ => Frame::NullBulk,
            })
            .collect();
        Expected::Exact(Frame::Array(values))
    }

    fn mset(&mut self, pairs: &[Bytes]) -> Expected {
        for pair in pairs.chunks(2) {
            self.keys
                .insert(pair[0].clone(), Value::Text(pair[1].clone()));
        }
        Expected::ok()
    }

    fn rpush(&mut self, key: &Bytes, items: &[Bytes]) -> Expected {
        let list = match self
            .keys
            .entry(key.clone())
            .or_insert(Value::List(Vec::new()))
        {
            Value::List(list) => list,
            Value::Text(_) => return Expected::error("WRONGTYPE", WRONGTYPE),
        };
        list.extend(items.iter().cloned());
        Expected::integer(list.len() as i64)
    }

    /// LRANGE key 0 -1: the whole list.
    fn lrange(&self, key: &Bytes) -> Expected {
        match self.keys.get(key) {
            None => Expected::Exact(Frame::Array(Vec::new())),
            Some(Value::Text(_)) => Expected::error("WRONGTYPE", WRONGTYPE),
            Some(Value::List(items)) => Expected::Exact(Frame::Array(
                items.iter().cloned().map(Frame::Bulk).collect(),
            )),
        }
    }
}

/// The value as Redis's INCR reads it: a decimal 64-bit integer with no spaces, sign only for negatives.
fn as_integer(text: &[u8]) -> Option<i64> {
    let text = std::str::from_utf8(text).ok()?;
    if text.is_empty() || text.starts_with('+') || (text.len() > 1 && text.starts_with('0')) {
        return None;
    }
    text.parse().ok()
}
