//! Parsing of the proxy's admin commands on proxy-managed cursors: a pure function from argument byte slices to
//! a [`CursorAdmin`].
//!
//! | command | meaning |
//! |---|---|
//! | `RKPROXY KOFFSETS group topic` | every partition's cursor of `group`: next offset, given-back offsets, pending (unacknowledged) offsets and the time to the oldest one's deadline |
//! | `RKPROXY KRESET group topic partition next_offset` | sets `group`'s cursor on one partition (a repair); the group's offset in Kafka follows |
//!
//! The proxy checks the caller's rights by [`CursorAdminKind::command_name`] before it parses the rest, so a
//! tenant that is not an admin learns nothing about the arguments; [`KafkaBridge::run_cursor_admin`] runs the
//! parsed command.
//!
//! [`KafkaBridge::run_cursor_admin`]: crate::KafkaBridge::run_cursor_admin

use crate::command::{parse_integer, parse_partition};
use crate::error::KafkaError;

/// Which cursor admin command an `RKPROXY` subcommand names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum CursorAdminKind {
    /// `RKPROXY KOFFSETS`.
    Show,
    /// `RKPROXY KRESET`.
    Reset,
}

/// A parsed cursor admin command. Group and topic are taken as (lossy) UTF-8 text.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CursorAdmin {
    /// `RKPROXY KOFFSETS group topic`.
    Show {
        /// The consumer group (a tenant name).
        group: String,
        /// The topic.
        topic: String,
    },
    /// `RKPROXY KRESET group topic partition next_offset`.
    Reset {
        /// The consumer group (a tenant name).
        group: String,
        /// The topic.
        topic: String,
        /// The partition.
        partition: i32,
        /// The offset the group's next `KPOP topic` reads on that partition.
        next_offset: i64,
    },
}

// === impl CursorAdminKind ===

impl CursorAdminKind {
    /// The command named by the subcommand `sub` of `RKPROXY` (any case), or `None` when it is not a cursor
    /// admin command.
    ///
    /// ```
    /// use kafka_bridge::CursorAdminKind;
    /// assert_eq!(CursorAdminKind::of(b"koffsets"), Some(CursorAdminKind::Show));
    /// assert_eq!(CursorAdminKind::of(b"KRESET"), Some(CursorAdminKind::Reset));
    /// assert_eq!(CursorAdminKind::of(b"RELOAD"), None);
    /// ```
    pub fn of(sub: &[u8]) -> Option<CursorAdminKind> {
        if sub.eq_ignore_ascii_case(b"KOFFSETS") {
            Some(CursorAdminKind::Show)
        } else if sub.eq_ignore_ascii_case(b"KRESET") {
            Some(CursorAdminKind::Reset)
        } else {
            None
        }
    }

    /// The command's name as the tenants' admin rights know it: `RKPROXY KOFFSETS` or `RKPROXY KRESET`.
    pub fn command_name(self) -> &'static str {
        match self {
            CursorAdminKind::Show => "RKPROXY KOFFSETS",
            CursorAdminKind::Reset => "RKPROXY KRESET",
        }
    }

    /// The command's whole form, as the wrong-arity error shows it.
    fn usage(self) -> &'static str {
        match self {
            CursorAdminKind::Show => "RKPROXY KOFFSETS group topic",
            CursorAdminKind::Reset => "RKPROXY KRESET group topic partition next_offset",
        }
    }

    /// Parses the whole request, `args[0]` being `RKPROXY` and `args[1]` the subcommand this kind came from.
    ///
    /// Pure: whether the topic exists is checked by whoever runs the command.
    ///
    /// ```
    /// use kafka_bridge::{CursorAdmin, CursorAdminKind};
    ///
    /// let parsed = CursorAdminKind::Reset.parse(&[b"RKPROXY", b"KRESET", b"billing", b"orders", b"2", b"40"]);
    /// let expected = CursorAdmin::Reset { group: "billing".into(), topic: "orders".into(), partition: 2, next_offset: 40 };
    /// assert_eq!(parsed, Ok(expected));
    ///
    /// let error = CursorAdminKind::Show.parse(&[b"RKPROXY", b"KOFFSETS", b"billing"]).unwrap_err();
    /// assert_eq!(error.to_string(), "ERR wrong number of arguments: RKPROXY KOFFSETS group topic");
    /// ```
    pub fn parse(self, args: &[&[u8]]) -> Result<CursorAdmin, KafkaError> {
        let text = |raw: &[u8]| String::from_utf8_lossy(raw).into_owned();
        match (self, args) {
            (CursorAdminKind::Show, [_, _, group, topic]) => Ok(CursorAdmin::Show {
                group: text(group),
                topic: text(topic),
            }),
            (CursorAdminKind::Reset, [_, _, group, topic, partition, next_offset]) => {
                Ok(CursorAdmin::Reset {
                    group: text(group),
                    topic: text(topic),
                    partition: parse_partition(partition)?,
                    next_offset: parse_next_offset(next_offset)?,
                })
            }
            _ => Err(KafkaError::AdminArity {
                usage: self.usage(),
            }),
        }
    }
}

// === impl CursorAdmin ===

impl CursorAdmin {
    /// The topic the command is about, so the proxy can find the pool that has it.
    pub fn topic(&self) -> &str {
        match self {
            CursorAdmin::Show { topic, .. } | CursorAdmin::Reset { topic, .. } => topic,
        }
    }
}

fn parse_next_offset(raw: &[u8]) -> Result<i64, KafkaError> {
    parse_integer::<i64>(raw, "next_offset")
        .ok()
        .filter(|offset| *offset >= 0)
        .ok_or(KafkaError::NotANextOffset)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(kind: CursorAdminKind, args: &[&str]) -> Result<CursorAdmin, KafkaError> {
        let args: Vec<&[u8]> = args.iter().map(|arg| arg.as_bytes()).collect();
        kind.parse(&args)
    }

    fn error_text(kind: CursorAdminKind, args: &[&str]) -> String {
        parse(kind, args).unwrap_err().to_string()
    }

    #[test]
    fn parses_both_commands() {
        assert_eq!(
            parse(
                CursorAdminKind::Show,
                &["rkproxy", "koffsets", "billing", "orders"]
            ),
            Ok(CursorAdmin::Show {
                group: "billing".into(),
                topic: "orders".into()
            })
        );
        let reset = parse(
            CursorAdminKind::Reset,
            &["RKPROXY", "KRESET", "billing", "orders", "-1", "0"],
        )
        .unwrap();
        assert_eq!(reset.topic(), "orders");
        assert_eq!(
            reset,
            CursorAdmin::Reset {
                group: "billing".into(),
                topic: "orders".into(),
                partition: -1,
                next_offset: 0
            }
        );
    }

    #[test]
    fn wrong_arities_show_the_whole_form() {
        assert_eq!(
            error_text(
                CursorAdminKind::Show,
                &["RKPROXY", "KOFFSETS", "g", "t", "extra"]
            ),
            "ERR wrong number of arguments: RKPROXY KOFFSETS group topic"
        );
        assert_eq!(
            error_text(
                CursorAdminKind::Reset,
                &["RKPROXY", "KRESET", "g", "t", "0"]
            ),
            "ERR wrong number of arguments: RKPROXY KRESET group topic partition next_offset"
        );
    }

    #[test]
    fn numbers_are_checked_like_redis_checks_them() {
        let partition_error = "ERR partition is not an integer or out of range";
        let offset_error = "ERR next_offset is not an integer >= 0 or out of range";
        let reset = |partition: &'static str, offset: &'static str| {
            error_text(
                CursorAdminKind::Reset,
                &["RKPROXY", "KRESET", "g", "t", partition, offset],
            )
        };
        assert_eq!(reset("x", "0"), partition_error);
        assert_eq!(reset("+1", "0"), partition_error);
        assert_eq!(reset("2147483648", "0"), partition_error);
        assert_eq!(reset("0", "-1"), offset_error);
        assert_eq!(reset("0", "+3"), offset_error);
        assert_eq!(reset("0", "x"), offset_error);
        assert_eq!(reset("0", "9223372036854775808"), offset_error);
    }

    #[test]
    fn the_command_name_is_what_admin_rights_name() {
        assert_eq!(CursorAdminKind::Show.command_name(), "RKPROXY KOFFSETS");
        assert_eq!(CursorAdminKind::Reset.command_name(), "RKPROXY KRESET");
        assert_eq!(
            CursorAdminKind::of(b"KOffsets"),
            Some(CursorAdminKind::Show)
        );
        assert_eq!(CursorAdminKind::of(b""), None);
    }
}
