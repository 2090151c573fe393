//! The reply each request must get, worked out when its reply is checked, in order, from the model of the
//! client's keys as it is at that point.
//!
//! Why at check time and not when the request is generated: during a slot migration a Redis Cluster refuses a
//! multi-key command whose keys are split between the two nodes (`-TRYAGAIN`), and rkproxy passes that refusal on
//! when sending the command again could reorder it against the client's later pipelined commands (a deliberate,
//! documented difference from one Redis server; for a transaction, EXEC gets the `-TRYAGAIN`). Such a command, or
//! transaction, had no effect, so the model must skip it, and every later expectation depends on whether it
//! did: they can only be known once the earlier replies are.

use std::collections::VecDeque;

use bytes::Bytes;
use resp_codec::Frame;

use super::model::{show_bytes, show_frame, Expected, Model};
use super::script::{Kind, Sent};

/// Whether a `-TRYAGAIN` reply is acceptable at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TryAgainPolicy {
    /// One Redis server never says TRYAGAIN (standalone pool, redis-server directly, cluster with no migration).
    Never,
    /// Slots move meanwhile: TRYAGAIN is accepted for a command with two or more distinct keys in one slot, and
    /// for EXEC of a transaction that would otherwise run.
    DuringMigration,
}

/// One client's model, the transaction it is in (if any), and how many TRYAGAIN replies it accepted.
pub struct Checker {
    model: Model,
    transaction: Option<Transaction>,
    policy: TryAgainPolicy,
    pub try_agains: TryAgainCounts,
    /// The last requests and their replies, to show a failing key's story.
    history: VecDeque<(u64, Vec<Bytes>, String)>,
}

/// How many requests the history keeps.
const HISTORY: usize = 20_000;

/// TRYAGAIN replies accepted (each one a command or transaction that had no effect).
#[derive(Debug, Clone, Copy, Default)]
pub struct TryAgainCounts {
    /// As the reply to a multi-key command.
    pub commands: usize,
    /// As EXEC's reply.
    pub execs: usize,
}

impl TryAgainCounts {
    pub fn total(&self) -> usize {
        self.commands + self.execs
    }

    pub fn add(&mut self, other: TryAgainCounts) {
        self.commands += other.commands;
        self.execs += other.execs;
    }
}

/// The commands queued since MULTI, run by the model only when EXEC's reply is checked.
#[derive(Default)]
struct Transaction {
    queued: Vec<Vec<Bytes>>,
    /// A command was refused at queue time: EXEC must fail with EXECABORT.
    refused: bool,
}

impl Checker {
    pub fn new(policy: TryAgainPolicy) -> Checker {
        Checker {
            model: Model::default(),
            transaction: None,
            policy,
            try_agains: TryAgainCounts::default(),
            history: VecDeque::new(),
        }
    }

    /// Checks `reply`, the reply to `sent`, and brings the model up to date; the error says what was wrong,
    /// followed by the story of the keys involved: every earlier request (of the last [`HISTORY`]) naming one of
    /// them, with its reply (for EXEC, the keys of the commands queued since MULTI).
    pub fn check(&mut self, sent: &Sent, reply: &Frame) -> Result<(), String> {
        let result = self.check_against_model(sent, reply);
        if self.history.len() == HISTORY {
            self.history.pop_front();
        }
        self.history
            .push_back((sent.number, sent.args.clone(), show_frame(reply)));
        result
            .map_err(|problem| format!("{problem}\n  the story of its keys:\n    {}", self.story()))
    }

    /// The history of the keys of the last request (of the transaction, for EXEC).
    fn story(&self) -> String {
        let is_key = |arg: &Bytes| arg.contains(&b'{');
        let name = |args: &[Bytes]| args.first().map(|name| name.to_ascii_uppercase());
        let mut keys: Vec<&Bytes> = Vec::new();
        let mut entries = self.history.iter().rev();
        let last_is_exec = self
            .history
            .back()
            .is_some_and(|(_, args, _)| name(args).as_deref() == Some(b"EXEC"));
        for (_, args, _) in entries.by_ref() {
            keys.extend(args.iter().skip(1).filter(|arg| is_key(arg)));
            if !last_is_exec || name(args).as_deref() == Some(b"MULTI") {
                break;
            }
        }
        self.history
            .iter()
            .filter(|(_, args, _)| args.iter().any(|arg| keys.contains(&arg)))
            .map(|(number, args, reply)| {
                let args: Vec<String> = args.iter().take(8).map(|arg| show_bytes(arg)).collect();
                format!("#{number} {} -> {reply}", args.join(" "))
            })
            .collect::<Vec<_>>()
            .join("\n    ")
    }

    fn check_against_model(&mut self, sent: &Sent, reply: &Frame) -> Result<(), String> {
        match &sent.kind {
            Kind::Command => self.command(&sent.args, reply),
            Kind::Refused(expected) => {
                if let Some(transaction) = self.transaction.as_mut() {
                    transaction.refused = true;
                }
                compare(expected, reply)
            }
            Kind::Multi => {
                if self.transaction.is_some() {
                    return Err(script_bug("MULTI inside MULTI"));
                }
                self.transaction = Some(Transaction::default());
                compare(&Expected::ok(), reply)
            }
            Kind::Queued => {
                let transaction = self
                    .transaction
                    .as_mut()
                    .ok_or_else(|| script_bug("a queued command outside MULTI"))?;
                transaction.queued.push(sent.args.clone());
                compare(&Expected::simple("QUEUED"), reply)
            }
            Kind::Exec => {
                let transaction = self
                    .transaction
                    .take()
                    .ok_or_else(|| script_bug("EXEC outside MULTI"))?;
                self.exec(transaction, reply)
            }
            Kind::Discard => {
                self.transaction
                    .take()
                    .ok_or_else(|| script_bug("DISCARD outside MULTI"))?;
                compare(&Expected::ok(), reply)
            }
        }
    }

    /// A command outside a transaction: run by the model, unless it was refused with an acceptable TRYAGAIN.
    fn command(&mut self, args: &[Bytes], reply: &Frame) -> Result<(), String> {
        if self.accepts_try_again(reply) && has_keys_in_one_slot(args) {
            self.try_agains.commands += 1;
            return Ok(());
        }
        let expected = self.model.apply(args);
        compare(&expected, reply)
    }

    /// EXEC: EXECABORT after a refused command; otherwise the queued commands run by the model, in order, and
    /// their replies in an array, unless the whole transaction was refused with an acceptable TRYAGAIN.
    fn exec(&mut self, transaction: Transaction, reply: &Frame) -> Result<(), String> {
        if transaction.refused {
            let aborted = Expected::error("EXECABORT", "discarded because of previous errors");
            return compare(&aborted, reply);
        }
        if self.accepts_try_again(reply) {
            self.try_agains.execs += 1;
            return Ok(());
        }
        let results = transaction
            .queued
            .iter()
            .map(|args| self.model.apply(args))
            .collect();
        compare(&Expected::Array(results), reply)
    }

    /// Whether `reply` is a TRYAGAIN error and this run accepts one (where the request allows it).
    fn accepts_try_again(&self, reply: &Frame) -> bool {
        let try_again = Expected::Error {
            code: "TRYAGAIN",
            contains: None,
        };
        self.policy == TryAgainPolicy::DuringMigration && try_again.matches(reply)
    }
}

/// Whether the command has two or more distinct keys, all in one cluster slot: only such a command can get
/// TRYAGAIN from Redis (its keys split by a migration; a repeated key is one key to Redis). A command over several
/// slots is split by the proxy, and its parts' replies merged, so it never may.
fn has_keys_in_one_slot(args: &[Bytes]) -> bool {
    let mut keys: Vec<&Bytes> = keys_of(args);
    keys.sort();
    keys.dedup();
    let Some(first) = keys.first() else {
        return false;
    };
    let slot = cluster_router::key_slot(first);
    keys.len() >= 2 && keys.iter().all(|key| cluster_router::key_slot(key) == slot)
}

/// The keys of the multi-key commands the script sends (MGET, DEL, EXISTS, MSET); none for the others.
fn keys_of(args: &[Bytes]) -> Vec<&Bytes> {
    let name = args.first().map(|name| name.to_ascii_uppercase());
    match name.as_deref() {
        Some(b"MGET" | b"DEL" | b"EXISTS") => args[1..].iter().collect(),
        Some(b"MSET") => args[1..].iter().step_by(2).collect(),
        _ => Vec::new(),
    }
}

/// Nothing when `actual` is the expected reply; otherwise both, for the failure message.
fn compare(expected: &Expected, actual: &Frame) -> Result<(), String> {
    if expected.matches(actual) {
        return Ok(());
    }
    Err(format!(
        "wrong reply\n  expected: {}\n  actual:   {}",
        expected.show(),
        show_frame(actual)
    ))
}

/// The script sent entries out of order: a bug of the test, reported as a failure.
fn script_bug(what: &str) -> String {
    format!("bug in the test script: {what}")
}
