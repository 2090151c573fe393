//! One client's random requests: single commands, multi-key commands over several hash tags (so over several
//! cluster slots), MULTI blocks of 1 to 2000 commands on one hash tag, errors, some middling and a few big
//! values. Each request says what kind of entry it is; the reply it must get is worked out only when that reply
//! is checked (`checker.rs`), from the model as it is then.
//!
//! Every key and every value belongs to one client (client number in the key's hash tag, client number and
//! request number in every value and every PING/ECHO payload), so a reply that reaches the wrong request or the
//! wrong client cannot match what the model expects.

use bytes::Bytes;

use super::model::Expected;

/// Hash tags per client: multi-key commands span them, and each lives in its own cluster slot (usually).
pub const TAGS: usize = 3;
/// Keys per hash tag. Key 0 is used mostly as a list, key 1 mostly as a counter, the others as strings.
const KEYS_PER_TAG: usize = 6;
/// The longest pipeline, in entries (a MULTI block is one entry).
const MAX_PIPELINE: usize = 200;
/// One simple command in this many carries a big value (64 KiB to 1 MiB).
const BIG_VALUE_ONE_IN: u32 = 250;
/// One simple command in this many carries a middling value (1 to 48 KiB): around the sizes where the proxy
/// stops copying a request into a batch and a backend write into one buffer, and where a request no longer
/// fits the room left in a read buffer.
const MIDDLING_VALUE_ONE_IN: u32 = 25;

/// One request, and what kind of entry it is (which says how its reply is checked).
pub struct Sent {
    /// The client's running request number (also written into the values it carries).
    pub number: u64,
    pub args: Vec<Bytes>,
    pub kind: Kind,
}

/// What a request is, for the checker.
pub enum Kind {
    /// A command run at once (outside a transaction): its reply is the model's.
    Command,
    /// A command Redis refuses before running it (unknown, wrong arity): this error whatever the keys hold. Inside
    /// a transaction it makes EXEC fail with EXECABORT.
    Refused(Expected),
    /// MULTI: the commands after it are queued.
    Multi,
    /// A command queued in a transaction: `+QUEUED`, and run by EXEC.
    Queued,
    /// EXEC: the queued commands' replies, or EXECABORT after a refused one.
    Exec,
    /// DISCARD: the queued commands are dropped.
    Discard,
}

/// The generator and model of one client.
pub struct Script {
    client: usize,
    prefix: String,
    rng: fastrand::Rng,
    next_number: u64,
    max_multi: usize,
    refused_in_multi: bool,
    /// How many MULTI blocks were generated, and the largest.
    pub multi_blocks: usize,
    pub largest_multi: usize,
    /// How many big values were sent.
    pub big_values: usize,
}

impl Script {
    /// The script of client `client`, keys under `prefix`, MULTI blocks of at most `max_multi` commands, some
    /// with a command refused at queue time when `refused_in_multi`.
    pub fn new(
        client: usize,
        prefix: &str,
        seed: u64,
        max_multi: usize,
        refused_in_multi: bool,
    ) -> Script {
        let client_seed = seed ^ (client as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        Script {
            client,
            prefix: prefix.to_owned(),
            rng: fastrand::Rng::with_seed(client_seed),
            next_number: 0,
            max_multi,
            refused_in_multi,
            multi_blocks: 0,
            largest_multi: 0,
            big_values: 0,
        }
    }

    pub fn client(&self) -> usize {
        self.client
    }

    /// The hash tags of this client's keys (to find the slots a migration should move).
    pub fn tags(&self) -> Vec<String> {
        (0..TAGS).map(|tag| self.tag(tag)).collect()
    }

    /// A random pipeline of 1 to 200 entries.
    pub fn pipeline(&mut self) -> Vec<Sent> {
        let entries = self.rng.usize(1..=MAX_PIPELINE);
        let mut sent = Vec::new();
        for _ in 0..entries {
            self.entry(&mut sent);
        }
        sent
    }

    /// The last pipeline: DEL of every key of this client (so nothing is left on a shared server), then an ECHO
    /// that also shows no extra reply was left over.
    pub fn final_pipeline(&mut self) -> Vec<Sent> {
        let mut del = vec![b("DEL")];
        for tag in 0..TAGS {
            del.extend((0..KEYS_PER_TAG).map(|index| self.key(tag, index)));
        }
        let del = self.run(del);
        let echo = vec![b("ECHO"), self.payload("final")];
        vec![del, self.run(echo)]
    }

    fn entry(&mut self, sent: &mut Vec<Sent>) {
        match self.rng.u32(0..100) {
            0..=2 => self.multi_block(sent),
            3..=4 => sent.push(self.unknown_command()),
            5..=6 => sent.push(self.wrong_arity()),
            7..=11 => {
                let args = self.ping_or_echo();
                sent.push(self.run(args));
            }
            12..=26 => {
                let args = self.cross_tag_command();
                sent.push(self.run(args));
            }
            _ => {
                let tag = self.rng.usize(0..TAGS);
                let args = self.tag_command(tag, true);
                sent.push(self.run(args));
            }
        }
    }

    /// A command run at once (outside a transaction).
    fn run(&mut self, args: Vec<Bytes>) -> Sent {
        self.sent(args, Kind::Command)
    }

    fn sent(&mut self, args: Vec<Bytes>, kind: Kind) -> Sent {
        let number = self.next_number;
        self.next_number += 1;
        Sent { number, args, kind }
    }

    /// MULTI, 1 to `max_multi` commands on one hash tag, then EXEC (or DISCARD). One block in ten has a command
    /// Redis refuses when queued, which makes EXEC fail with EXECABORT.
    fn multi_block(&mut self, sent: &mut Vec<Sent>) {
        let size = self.multi_size();
        self.multi_blocks += 1;
        self.largest_multi = self.largest_multi.max(size);
        let tag = self.rng.usize(0..TAGS);
        let refused = self.rng.u32(0..10) == 0 && self.refused_in_multi;
        let refused_at = refused.then(|| self.rng.usize(0..size));
        let multi = self.sent(vec![b("MULTI")], Kind::Multi);
        sent.push(multi);
        for index in 0..size {
            if Some(index) == refused_at {
                let refused = if self.rng.bool() {
                    self.unknown_command()
                } else {
                    self.wrong_arity()
                };
                sent.push(refused);
                continue;
            }
            let args = self.tag_command(tag, false);
            let queued = self.sent(args, Kind::Queued);
            sent.push(queued);
        }
        // After a refused command, always EXEC (which must fail); the random draw only happens otherwise.
        let end = if refused_at.is_none() && self.rng.u32(0..7) == 0 {
            self.sent(vec![b("DISCARD")], Kind::Discard)
        } else {
            self.sent(vec![b("EXEC")], Kind::Exec)
        };
        sent.push(end);
    }

    /// Mostly small blocks, a quarter between 51 and 400 commands, some up to 2000; at most `max_multi`.
    fn multi_size(&mut self) -> usize {
        let size = match self.rng.u32(0..100) {
            0..=59 => self.rng.usize(1..=50),
            60..=84 => self.rng.usize(51..=400),
            _ => self.rng.usize(401..=2000),
        };
        size.min(self.max_multi)
    }

    /// A command on keys of one hash tag: it runs on one node of a cluster and may be queued in a MULTI.
    fn tag_command(&mut self, tag: usize, big_values: bool) -> Vec<Bytes> {
        match self.rng.u32(0..100) {
            0..=19 => {
                let key = self.string_key(tag);
                let value = self.value(big_values);
                vec![b("SET"), key, value]
            }
            20..=39 => vec![b("GET"), self.string_key(tag)],
            40..=49 => vec![b("INCR"), self.counter_key(tag)],
            50..=57 => {
                let key = self.string_key(tag);
                let value = self.value(big_values);
                vec![b("APPEND"), key, value]
            }
            58..=63 => self.keys_command("DEL", &[tag]),
            64..=69 => self.keys_command("EXISTS", &[tag]),
            70..=75 => self.keys_command("MGET", &[tag]),
            76..=81 => self.mset(&[tag]),
            82..=89 => {
                let key = self.list_key(tag);
                let item = self.value(false);
                vec![b("RPUSH"), key, item]
            }
            90..=94 => vec![b("LRANGE"), self.list_key(tag), b("0"), b("-1")],
            _ => self.ping_or_echo(),
        }
    }

    /// MGET, MSET, DEL or EXISTS over keys of several hash tags (several cluster slots).
    fn cross_tag_command(&mut self) -> Vec<Bytes> {
        let tags: Vec<usize> = (0..self.rng.usize(2..=5))
            .map(|_| self.rng.usize(0..TAGS))
            .collect();
        match self.rng.u32(0..4) {
            0 => self.keys_command("MGET", &tags),
            1 => self.mset(&tags),
            2 => self.keys_command("DEL", &tags),
            _ => self.keys_command("EXISTS", &tags),
        }
    }

    /// `name` with one key of each of `tags` (a key may repeat, as clients do).
    fn keys_command(&mut self, name: &'static str, tags: &[usize]) -> Vec<Bytes> {
        let mut args = vec![b(name)];
        for &tag in tags {
            args.push(self.any_key(tag));
        }
        if tags.len() == 1 {
            // Within one tag: one to three keys.
            for _ in 0..self.rng.usize(0..=2) {
                args.push(self.any_key(tags[0]));
            }
        }
        args
    }

    fn mset(&mut self, tags: &[usize]) -> Vec<Bytes> {
        let mut args = vec![b("MSET")];
        let pairs = if tags.len() == 1 {
            vec![tags[0]; self.rng.usize(1..=3)]
        } else {
            tags.to_vec()
        };
        for tag in pairs {
            args.push(self.string_key(tag));
            args.push(self.value(false));
        }
        args
    }

    fn ping_or_echo(&mut self) -> Vec<Bytes> {
        match self.rng.u32(0..5) {
            0 => vec![b("PING")],
            1 | 2 => vec![b("PING"), self.payload("ping")],
            _ => vec![b("ECHO"), self.payload("echo")],
        }
    }

    /// A command no Redis has, named after this client and request.
    fn unknown_command(&mut self) -> Sent {
        let name = format!("NOSUCH-C{}-R{}", self.client, self.next_number);
        let key = self.any_key(0);
        let expected = Expected::error("ERR", &format!("'{name}'"));
        self.sent(vec![Bytes::from(name), key], Kind::Refused(expected))
    }

    /// A known command with the wrong number of arguments.
    fn wrong_arity(&mut self) -> Sent {
        let tag = self.rng.usize(0..TAGS);
        let args = match self.rng.u32(0..4) {
            0 => vec![b("GET")],
            1 => vec![b("SET"), self.string_key(tag)],
            2 => vec![b("INCR")],
            _ => vec![b("GET"), self.string_key(tag), self.string_key(tag)],
        };
        let expected = Expected::error("ERR", "wrong number of arguments");
        self.sent(args, Kind::Refused(expected))
    }

    fn tag(&self, tag: usize) -> String {
        format!("{}:c{}:t{}", self.prefix, self.client, tag)
    }

    fn key(&self, tag: usize, index: usize) -> Bytes {
        Bytes::from(format!("{{{}}}:k{index}", self.tag(tag)))
    }

    /// Mostly keys 2 and up; one time in ten any key (then a list or a counter gets a string command).
    fn string_key(&mut self, tag: usize) -> Bytes {
        let index = if self.rng.u32(0..10) == 0 {
            self.rng.usize(0..KEYS_PER_TAG)
        } else {
            self.rng.usize(2..KEYS_PER_TAG)
        };
        self.key(tag, index)
    }

    fn counter_key(&mut self, tag: usize) -> Bytes {
        if self.rng.u32(0..10) == 0 {
            self.any_key(tag)
        } else {
            self.key(tag, 1)
        }
    }

    fn list_key(&mut self, tag: usize) -> Bytes {
        if self.rng.u32(0..10) == 0 {
            self.any_key(tag)
        } else {
            self.key(tag, 0)
        }
    }

    fn any_key(&mut self, tag: usize) -> Bytes {
        let index = self.rng.usize(0..KEYS_PER_TAG);
        self.key(tag, index)
    }

    /// A value naming this client and request; sometimes (when `big_allowed`) 64 KiB to 1 MiB long.
    fn value(&mut self, big_allowed: bool) -> Bytes {
        let mut value = self.payload("v").to_vec();
        let length = if big_allowed && self.rng.u32(0..BIG_VALUE_ONE_IN) == 0 {
            self.big_values += 1;
            self.rng.usize(64 * 1024..=1024 * 1024)
        } else if self.rng.u32(0..MIDDLING_VALUE_ONE_IN) == 0 {
            self.rng.usize(1024..=48 * 1024)
        } else {
            value.len() + self.rng.usize(0..40)
        };
        let start = value.len();
        value.extend((start..length).map(|i| b'a' + (i % 26) as u8));
        Bytes::from(value)
    }

    /// `c<client>:r<request>:<what>`: unique to this client and request.
    fn payload(&self, what: &str) -> Bytes {
        Bytes::from(format!("c{}:r{}:{what}", self.client, self.next_number))
    }
}

fn b(text: &'static str) -> Bytes {
    Bytes::from_static(text.as_bytes())
}
