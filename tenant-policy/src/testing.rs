//! Test support, for this crate's tests and for the proxy's live isolation test (feature `testing`): sample
//! arguments that make each key-taking command of the table name keys of another tenant (`t2:...`).

use cluster_router::commands::{all_commands, KeySpecFlags};
use cluster_router::CommandSpec;

/// Every command and subcommand of the table (containers are represented by their subcommands).
pub fn every_spec() -> Vec<&'static CommandSpec> {
    let mut specs = Vec::new();
    for spec in all_commands() {
        if spec.is_container() {
            specs.extend(spec.subcommands.iter());
        } else {
            specs.push(spec);
        }
    }
    specs
}

fn strings(args: &[&str]) -> Vec<Vec<u8>> {
    args.iter().map(|arg| arg.as_bytes().to_vec()).collect()
}

/// Sample arguments that make `spec` name keys (argument 0 is the command name): hand-written for commands whose keys follow a
/// keyword or need a particular shape, generated from the key specs for the rest. Keys are
/// named after another tenant's keys (`t2:...`), as an attacker would.
pub fn sample_args(spec: &CommandSpec) -> Vec<Vec<u8>> {
    let hand: Option<&[&str]> = match spec.name {
        "xread" => Some(&["XREAD", "COUNT", "2", "STREAMS", "t2:s1", "t2:s2", "0", "0"]),
        "xreadgroup" => Some(&[
            "XREADGROUP",
            "GROUP",
            "g",
            "c",
            "STREAMS",
            "t2:s1",
            "t2:s2",
            ">",
            ">",
        ]),
        "georadius" => Some(&[
            "GEORADIUS",
            "t2:geo",
            "15",
            "37",
            "200",
            "km",
            "STORE",
            "t2:dst",
        ]),
        "georadiusbymember" => Some(&[
            "GEORADIUSBYMEMBER",
            "t2:geo",
            "m",
            "200",
            "km",
            "STOREDIST",
            "t2:dst",
        ]),
        "sort" => Some(&["SORT", "t2:list", "LIMIT", "0", "5", "STORE", "t2:dst"]),
        "migrate" => Some(&[
            "MIGRATE", "h", "1", "", "0", "5000", "COPY", "KEYS", "t2:a", "t2:b",
        ]),
        "set" => Some(&["SET", "t2:k", "v", "EX", "10"]),
        "bitfield" => Some(&["BITFIELD", "t2:k", "GET", "u8", "0"]),
        "sort_ro" => Some(&["SORT_RO", "t2:list"]),
        _ => None,
    };
    if let Some(hand) = hand {
        return strings(hand);
    }
    let mut args: Vec<Vec<u8>> = spec
        .name
        .split('|')
        .map(|part| part.as_bytes().to_vec())
        .collect();
    let fixed = args.len();
    let arity = spec.arity.unsigned_abs() as usize;
    let mut len = arity.max(fixed);
    if spec.arity < 0 {
        len += 3;
    }
    for key_spec in spec.key_specs {
        if let (
            cluster_router::commands::BeginSearch::Index(begin),
            cluster_router::commands::FindKeys::KeyNum {
                key_num_index,
                first_key,
                ..
            },
        ) = (key_spec.begin_search, key_spec.find_keys)
        {
            len = len.max((begin + first_key) as usize + 3);
            args.resize(len, Vec::new());
            args[(begin + key_num_index) as usize] = b"2".to_vec();
        }
    }
    args.resize(len, Vec::new());
    for (index, arg) in args.iter_mut().enumerate().skip(fixed) {
        if arg.is_empty() {
            *arg = format!("t2:k{index}").into_bytes();
        }
    }
    args
}

pub fn has_real_keys(spec: &CommandSpec) -> bool {
    spec.key_specs
        .iter()
        .any(|key_spec| !key_spec.flags.contains(KeySpecFlags::NOT_KEY))
}
