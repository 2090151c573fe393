//! `cargo xtask codegen`: regenerates the Redis command table of cluster-router.
//!
//! The table in `cluster-router/src/commands/generated.rs` is the machine-readable part of
//! every command's metadata (name, arity, flags, ACL categories, the legacy first/last/step
//! key triple, the Redis 7 key specs and the command tips). It is produced from a live
//! `redis-server` with `COMMAND INFO`, so it never drifts from what the server itself says.
//!
//! The generator is std-only on purpose: it speaks just enough RESP2 over a `TcpStream` to
//! read one `COMMAND INFO` reply, which is more robust than scraping `redis-cli` output.
//! It starts its own `redis-server` on a free loopback port unless `RKPROXY_CODEGEN_REDIS`
//! names an already running one (`host:port`). The hand-kept policy overlay (class, proxy
//! handling, cluster routing) is not generated; it lives in `cluster-router/src/commands/overlay.rs`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use xshell::{cmd, Shell};

/// Where the generated table goes, relative to the workspace root.
const OUTPUT_PATH: &str = "cluster-router/src/commands/generated.rs";

/// Regenerates the command table under `root` (the workspace root).
///
/// Errors are human-readable strings meant to be printed by the xtask binary.
pub fn run(root: &Path) -> Result<(), String> {
    let server = match std::env::var("RKPROXY_CODEGEN_REDIS") {
        Ok(address) => Server::External(address),
        Err(_) => Server::start()?,
    };
    let result = generate_with(&server, root);
    drop(server);
    result
}

fn generate_with(server: &Server, root: &Path) -> Result<(), String> {
    let mut connection = RespConnection::connect(server.address())?;
    let version = server_version(&mut connection)?;
    let reply = connection.call(&["COMMAND", "INFO"])?;
    let Value::Array(entries) = reply else {
        return Err(format!(
            "COMMAND INFO returned {reply:?}, expected an array"
        ));
    };
    let mut commands = Vec::new();
    for entry in &entries {
        commands.push(CommandInfo::parse(entry)?);
    }
    commands.sort_by(|a, b| a.name.cmp(&b.name));
    let source = render(&version, &commands)?;
    let output = root.join(OUTPUT_PATH);
    std::fs::write(&output, source).map_err(|e| format!("writing {}: {e}", output.display()))?;
    format_file(&output)?;
    eprintln!(
        "codegen: wrote {} ({} commands from redis {version})",
        output.display(),
        commands.len()
    );
    Ok(())
}

/// Runs rustfmt on the generated file so that `cargo fmt --check` stays clean.
fn format_file(path: &Path) -> Result<(), String> {
    let sh = Shell::new().map_err(|e| e.to_string())?;
    cmd!(sh, "rustfmt --edition 2021 {path}")
        .quiet()
        .run()
        .map_err(|e| format!("rustfmt failed on {}: {e}", path.display()))
}

fn server_version(connection: &mut RespConnection) -> Result<String, String> {
    let info = connection.call(&["INFO", "server"])?;
    let Value::Bulk(text) = info else {
        return Err(format!("INFO server returned {info:?}"));
    };
    let text = String::from_utf8_lossy(&text).into_owned();
    text.lines()
        .find_map(|line| line.strip_prefix("redis_version:"))
        .map(|v| v.trim().to_owned())
        .ok_or_else(|| "INFO server has no redis_version".to_owned())
}

// === impl Server ===

/// The redis-server the generator reads from: either one we started (and kill on drop) or
/// an external one named by `RKPROXY_CODEGEN_REDIS`.
enum Server {
    Owned { child: Child, address: String },
    External(String),
}

impl Server {
    fn start() -> Result<Server, String> {
        // Ask the kernel for a free port, then hand it to redis-server. The tiny race with
        // other processes is acceptable for a developer tool.
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(|e| format!("finding a free port: {e}"))?
            .port();
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("starting redis-server (is it installed?): {e}"))?;
        let server = Server::Owned {
            child,
            address: format!("127.0.0.1:{port}"),
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(server.address()).is_err() {
            if Instant::now() > deadline {
                return Err(format!(
                    "redis-server did not listen on port {port} within 10s"
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(server)
    }

    fn address(&self) -> &str {
        match self {
            Server::Owned { address, .. } => address,
            Server::External(address) => address,
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Server::Owned { child, .. } = self {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

// === RESP2 client ===

#[derive(Debug)]
enum Value {
    Simple(String),
    Error(String),
    Integer(i64),
    Bulk(Vec<u8>),
    Nil,
    Array(Vec<Value>),
}

impl Value {
    fn as_text(&self) -> Option<String> {
        match self {
            Value::Simple(s) => Some(s.clone()),
            Value::Bulk(b) => Some(String::from_utf8_lossy(b).into_owned()),
            _ => None,
        }
    }

    fn as_int(&self) -> Option<i64> {
        match self {
            Value::Integer(i) => Some(*i),
            _ => None,
        }
    }

    fn as_array(&self) -> Option<&[Value]> {
        match self {
            Value::Array(items) => Some(items),
            _ => None,
        }
    }
}

struct RespConnection {
    reader: BufReader<TcpStream>,
}

impl RespConnection {
    fn connect(address: &str) -> Result<RespConnection, String> {
        let stream =
            TcpStream::connect(address).map_err(|e| format!("connecting to {address}: {e}"))?;
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .map_err(|e| e.to_string())?;
        Ok(RespConnection {
            reader: BufReader::new(stream),
        })
    }

    fn call(&mut self, args: &[&str]) -> Result<Value, String> {
        let mut request = format!("*{}\r\n", args.len());
        for arg in args {
            let _ = write!(request, "${}\r\n{arg}\r\n", arg.len());
        }
        self.reader
            .get_mut()
            .write_all(request.as_bytes())
            .map_err(|e| format!("sending {args:?}: {e}"))?;
        match self.read_value()? {
            Value::Error(message) => Err(format!("{args:?} failed: {message}")),
            value => Ok(value),
        }
    }

    fn read_line(&mut self) -> Result<String, String> {
        let mut line = String::new();
        self.reader
            .read_line(&mut line)
            .map_err(|e| format!("reading reply: {e}"))?;
        if !line.ends_with("\r\n") {
            return Err(format!("truncated reply line {line:?}"));
        }
        line.truncate(line.len() - 2);
        Ok(line)
    }

    fn read_value(&mut self) -> Result<Value, String> {
        let line = self.read_line()?;
        let (kind, rest) = line.split_at(1.min(line.len()));
        let number = || {
            rest.parse::<i64>()
                .map_err(|_| format!("bad number in reply line {line:?}"))
        };
        match kind {
            "+" => Ok(Value::Simple(rest.to_owned())),
            "-" => Ok(Value::Error(rest.to_owned())),
            ":" => Ok(Value::Integer(number()?)),
            "$" => {
                let Ok(length) = usize::try_from(number()?) else {
                    return Ok(Value::Nil);
                };
                let mut data = vec![0; length + 2];
                self.reader
                    .read_exact(&mut data)
                    .map_err(|e| format!("reading bulk: {e}"))?;
                data.truncate(length);
                Ok(Value::Bulk(data))
            }
            "*" => {
                let Ok(length) = usize::try_from(number()?) else {
                    return Ok(Value::Nil);
                };
                let mut items = Vec::with_capacity(length);
                for _ in 0..length {
                    items.push(self.read_value()?);
                }
                Ok(Value::Array(items))
            }
            _ => Err(format!("unexpected reply line {line:?}")),
        }
    }
}

// === COMMAND INFO model ===

struct CommandInfo {
    name: String,
    arity: i64,
    flags: Vec<String>,
    first_key: i64,
    last_key: i64,
    key_step: i64,
    acl_categories: Vec<String>,
    tips: Vec<String>,
    key_specs: Vec<KeySpecInfo>,
    subcommands: Vec<CommandInfo>,
}

struct KeySpecInfo {
    flags: Vec<String>,
    begin_search: String,
    find_keys: String,
}

impl CommandInfo {
    fn parse(value: &Value) -> Result<CommandInfo, String> {
        let fields = value
            .as_array()
            .ok_or_else(|| format!("command entry is not an array: {value:?}"))?;
        if fields.len() < 10 {
            return Err(format!(
                "command entry has {} fields, expected 10 (Redis 7 format)",
                fields.len()
            ));
        }
        let name = text(&fields[0])?.to_ascii_lowercase();
        let context = |what: &str| format!("{what} of command {name}");
        let mut subcommands = Vec::new();
        for sub in fields[9].as_array().ok_or_else(|| context("subcommands"))? {
            subcommands.push(CommandInfo::parse(sub)?);
        }
        subcommands.sort_by(|a, b| a.name.cmp(&b.name));
        let mut key_specs = Vec::new();
        for spec in fields[8].as_array().ok_or_else(|| context("key specs"))? {
            key_specs.push(
                KeySpecInfo::parse(spec).map_err(|e| format!("{}: {e}", context("key spec")))?,
            );
        }
        Ok(CommandInfo {
            arity: fields[1].as_int().ok_or_else(|| context("arity"))?,
            flags: texts(&fields[2]).map_err(|_| context("flags"))?,
            first_key: fields[3].as_int().ok_or_else(|| context("first key"))?,
            last_key: fields[4].as_int().ok_or_else(|| context("last key"))?,
            key_step: fields[5].as_int().ok_or_else(|| context("key step"))?,
            acl_categories: texts(&fields[6]).map_err(|_| context("ACL categories"))?,
            tips: texts(&fields[7]).map_err(|_| context("tips"))?,
            key_specs,
            subcommands,
            name,
        })
    }
}

impl KeySpecInfo {
    fn parse(value: &Value) -> Result<KeySpecInfo, String> {
        let map = as_map(value)?;
        let flags = match map.get("flags") {
            Some(flags) => texts(flags)?,
            None => Vec::new(),
        };
        let begin = as_map(map.get("begin_search").ok_or("no begin_search")?)?;
        let begin_spec = as_map(begin.get("spec").ok_or("no begin_search spec")?)?;
        let begin_search = match text(begin.get("type").ok_or("no begin_search type")?)?.as_str() {
            "index" => format!("BeginSearch::Index({})", int_field(&begin_spec, "index")?),
            "keyword" => format!(
                "BeginSearch::Keyword {{ keyword: {:?}, start_from: {} }}",
                text(begin_spec.get("keyword").ok_or("no keyword")?)?,
                int_field(&begin_spec, "startfrom")?
            ),
            "unknown" => "BeginSearch::Unknown".to_owned(),
            other => return Err(format!("unknown begin_search type {other:?}")),
        };
        let find = as_map(map.get("find_keys").ok_or("no find_keys")?)?;
        let find_spec = as_map(find.get("spec").ok_or("no find_keys spec")?)?;
        let find_keys = match text(find.get("type").ok_or("no find_keys type")?)?.as_str() {
            "range" => format!(
                "FindKeys::Range {{ last_key: {}, key_step: {}, limit: {} }}",
                int_field(&find_spec, "lastkey")?,
                int_field(&find_spec, "keystep")?,
                int_field(&find_spec, "limit")?
            ),
            "keynum" => format!(
                "FindKeys::KeyNum {{ key_num_index: {}, first_key: {}, key_step: {} }}",
                int_field(&find_spec, "keynumidx")?,
                int_field(&find_spec, "firstkey")?,
                int_field(&find_spec, "keystep")?
            ),
            "unknown" => "FindKeys::Unknown".to_owned(),
            other => return Err(format!("unknown find_keys type {other:?}")),
        };
        Ok(KeySpecInfo {
            flags,
            begin_search,
            find_keys,
        })
    }
}

fn text(value: &Value) -> Result<String, String> {
    value
        .as_text()
        .ok_or_else(|| format!("expected a string, got {value:?}"))
}

fn texts(value: &Value) -> Result<Vec<String>, String> {
    let items = value
        .as_array()
        .ok_or_else(|| format!("expected an array, got {value:?}"))?;
    items.iter().map(text).collect()
}

/// Reads a RESP2 flattened map (`[k1, v1, k2, v2, ...]`).
fn as_map(value: &Value) -> Result<BTreeMap<String, &Value>, String> {
    let items = value
        .as_array()
        .ok_or_else(|| format!("expected a map, got {value:?}"))?;
    let mut map = BTreeMap::new();
    for pair in items.chunks(2) {
        if let [key, value] = pair {
            map.insert(text(key)?, value);
        }
    }
    Ok(map)
}

fn int_field(map: &BTreeMap<String, &Value>, field: &str) -> Result<i64, String> {
    map.get(field)
        .and_then(|v| v.as_int())
        .ok_or_else(|| format!("missing integer field {field:?}"))
}

// === rendering ===

fn render(version: &str, commands: &[CommandInfo]) -> Result<String, String> {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "//! The Redis command table: generated by cargo xtask codegen; do not edit.\n//!\n\
         //! Source: `COMMAND INFO` of redis-server {version}. The policy columns (class, proxy\n\
         //! handling, cluster routing) are filled in by `spec()` from the hand-kept overlay.\n"
    );
    out.push_str(
        "use super::{\n    spec, AclCategories as A, BeginSearch, CommandFlags as F, CommandSpec, FindKeys,\n    KeySpec, KeySpecFlags as K, Tips as T,\n};\n\n",
    );
    let _ = writeln!(
        out,
        "/// The version of redis-server this table was generated from.\npub(crate) const REDIS_VERSION: &str = {version:?};\n"
    );
    let _ = writeln!(
        out,
        "/// Every top-level command, sorted by name (bytewise) for binary search.\n#[rustfmt::skip]\npub(crate) static COMMANDS: [CommandSpec; {}] = [",
        commands.len()
    );
    for command in commands {
        render_command(&mut out, command, None)?;
    }
    out.push_str("];\n");
    for command in commands.iter().filter(|c| !c.subcommands.is_empty()) {
        let _ = writeln!(
            out,
            "\n/// The subcommands of {}, sorted by name.\n#[rustfmt::skip]\nstatic {}: [CommandSpec; {}] = [",
            command.name.to_ascii_uppercase(),
            subcommand_static(&command.name),
            command.subcommands.len()
        );
        for sub in &command.subcommands {
            if !sub.subcommands.is_empty() {
                return Err(format!(
                    "{} has nested subcommands, which the table cannot express",
                    sub.name
                ));
            }
            render_command(&mut out, sub, Some(&command.name))?;
        }
        out.push_str("];\n");
    }
    Ok(out)
}

fn subcommand_static(name: &str) -> String {
    let mut ident = String::from("SUBCOMMANDS_");
    for c in name.chars() {
        ident.push(if c.is_ascii_alphanumeric() {
            c.to_ascii_uppercase()
        } else {
            '_'
        });
    }
    ident
}

/// Turns a Redis flag or category name into the Rust constant name, e.g. `no_auth` → `NO_AUTH`,
/// `@sortedset` → `SORTEDSET`. An unknown name then fails to compile, naming the new flag.
fn constant(name: &str) -> String {
    name.trim_start_matches('@')
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect()
}

fn bit_list(prefix: &str, names: &[String]) -> String {
    let items: Vec<String> = names
        .iter()
        .map(|n| format!("{prefix}::{}", constant(n)))
        .collect();
    format!("{prefix}::of(&[{}])", items.join(", "))
}

fn render_command(
    out: &mut String,
    command: &CommandInfo,
    parent: Option<&str>,
) -> Result<(), String> {
    let mut tips = Vec::new();
    for tip in &command.tips {
        let constant = match tip.as_str() {
            "nondeterministic_output" => "NONDETERMINISTIC_OUTPUT",
            "nondeterministic_output_order" => "NONDETERMINISTIC_OUTPUT_ORDER",
            "request_policy:all_nodes" => "REQUEST_ALL_NODES",
            "request_policy:all_shards" => "REQUEST_ALL_SHARDS",
            "request_policy:multi_shard" => "REQUEST_MULTI_SHARD",
            "request_policy:special" => "REQUEST_SPECIAL",
            "response_policy:one_succeeded" => "RESPONSE_ONE_SUCCEEDED",
            "response_policy:all_succeeded" => "RESPONSE_ALL_SUCCEEDED",
            "response_policy:agg_logical_and" => "RESPONSE_AGG_LOGICAL_AND",
            "response_policy:agg_logical_or" => "RESPONSE_AGG_LOGICAL_OR",
            "response_policy:agg_min" => "RESPONSE_AGG_MIN",
            "response_policy:agg_max" => "RESPONSE_AGG_MAX",
            "response_policy:agg_sum" => "RESPONSE_AGG_SUM",
            "response_policy:special" => "RESPONSE_SPECIAL",
            other => return Err(format!("command {}: unknown tip {other:?}", command.name)),
        };
        tips.push(format!("T::{constant}"));
    }
    let key_specs: Vec<String> = command
        .key_specs
        .iter()
        .map(|spec| {
            format!(
                "KeySpec {{ flags: {}, begin_search: {}, find_keys: {} }}",
                bit_list("K", &spec.flags),
                spec.begin_search,
                spec.find_keys
            )
        })
        .collect();
    let key_specs = key_specs.join(", ");
    let subcommands = if command.subcommands.is_empty() {
        "&[]".to_owned()
    } else {
        format!("&{}", subcommand_static(&command.name))
    };
    if let Some(parent) = parent {
        if !command.name.starts_with(&format!("{parent}|")) {
            return Err(format!(
                "subcommand {} is not named {parent}|...",
                command.name
            ));
        }
    }
    let _ = writeln!(
        out,
        "    spec({:?}, {}, {}, {}, [{}, {}, {}], &[{key_specs}], T::of(&[{}]), {subcommands}),",
        command.name,
        command.arity,
        bit_list("F", &command.flags),
        bit_list("A", &command.acl_categories),
        command.first_key,
        command.last_key,
        command.key_step,
        tips.join(", "),
    );
    Ok(())
}
