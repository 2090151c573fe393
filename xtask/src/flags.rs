//! Command line parsing for `cargo xtask`.
//!
//! Parsed by hand: the grammar is a subcommand plus a few flags, which does not justify a
//! dependency. Unknown flags are errors rather than being ignored, so a typo never silently
//! changes what runs.

/// The help text, printed for `help`, `--help` and on a usage error.
pub const USAGE: &str = "\
usage: cargo xtask <command> [options]

commands:
  demo                      start Redis (16379), a Redis Cluster (17000-17005) and Kafka (19092) on
                            loopback, build rkproxy in release and run it in the foreground on
                            127.0.0.1:7480; stops the servers it started when rkproxy exits
      --no-build            use the existing target/release/rkproxy instead of building it
      --no-kafka            do not start Kafka
  test [-- <cargo args>]    start throw-away servers on free ports, run `cargo test --workspace`
                            with RKPROXY_TEST_* set, stop the servers; exit code is cargo's
      --keep-data           keep server data and logs under target/rkproxy-servers/ afterwards
      --no-kafka            do not start Kafka (saves time and 512 MB; Kafka tests will fail)
  cluster up|down|status    the demo's servers, detached, for working by hand
                            (`cluster up --no-kafka` leaves Kafka out)
  bench                     redis-benchmark against direct redis, rkproxy and twemproxy, and
                            against a 3-master Redis Cluster direct and through rkproxy
      --requests N          requests per redis-benchmark run at pipeline 1 (default 200000;
                            pipelined runs use 8 times as many)
      --rounds N            rounds per target, the table shows the median (default 5)
      --clients N           parallel connections (default 50)
      --targets LIST        comma-separated subset of direct,rkproxy,twemproxy (default all;
                            the cluster sections use direct and rkproxy only)
      --sections LIST       comma-separated subset of standalone,cluster,mget,kafka (default
                            all; kafka starts a Kafka broker: KPUSH/KPOP vs SET through rkproxy)
      --workers N           run every rkproxy with worker_threads = N (default: the config
                            default, 1)
      --no-build            use the existing target/release/rkproxy instead of building it
  ci [-- <cargo args>]      cargo fmt --check, cargo clippy -D warnings, then `test`
  codegen                   regenerate cluster-router/src/commands/generated.rs from a live
                            redis-server (its own on a free port, or RKPROXY_CODEGEN_REDIS)
  help                      this text
";

/// What to do, as parsed from the command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Help,
    Demo(DemoOptions),
    Test(TestOptions),
    Cluster(ClusterAction),
    Bench(BenchOptions),
    Ci(TestOptions),
    Codegen,
}

/// Options of `cargo xtask demo`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DemoOptions {
    /// Run the existing release binary instead of building it first.
    pub no_build: bool,
    /// Do not start the Kafka broker.
    pub no_kafka: bool,
}

/// Options of `cargo xtask test` (and of `ci`, which ends with a `test`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TestOptions {
    /// Extra arguments for `cargo test`, everything after `--`.
    pub cargo_args: Vec<String>,
    /// Keep the servers' data directories and logs after the run.
    pub keep_data: bool,
    /// Do not start the Kafka broker (its tests then fail, saying so).
    pub no_kafka: bool,
}

/// The subcommands of `cargo xtask cluster`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClusterAction {
    Up { kafka: bool },
    Down,
    Status,
}

/// A process that `cargo xtask bench` can send load to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum BenchTarget {
    Direct,
    Rkproxy,
    Twemproxy,
}

impl BenchTarget {
    /// Every target, in the order the table lists them.
    pub const ALL: [BenchTarget; 3] = [
        BenchTarget::Direct,
        BenchTarget::Rkproxy,
        BenchTarget::Twemproxy,
    ];

    /// The name used on the command line and in the table.
    pub fn name(self) -> &'static str {
        match self {
            BenchTarget::Direct => "direct",
            BenchTarget::Rkproxy => "rkproxy",
            BenchTarget::Twemproxy => "twemproxy",
        }
    }
}

/// A group of `cargo xtask bench` measurements that share their servers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum BenchSection {
    /// GET/SET through every target to one redis-server.
    Standalone,
    /// GET/SET to a 3-master Redis Cluster: `redis-benchmark --cluster` versus rkproxy.
    Cluster,
    /// A 10-key MGET: cross-slot through rkproxy versus one slot on one node direct.
    Mget,
    /// KPUSH and KPOP through rkproxy's Kafka pool versus SET through its Redis pool.
    Kafka,
}

impl BenchSection {
    /// Every section, in the order they run and the table lists them.
    pub const ALL: [BenchSection; 4] = [
        BenchSection::Standalone,
        BenchSection::Cluster,
        BenchSection::Mget,
        BenchSection::Kafka,
    ];

    /// The name used on the command line and in the table.
    pub fn name(self) -> &'static str {
        match self {
            BenchSection::Standalone => "standalone",
            BenchSection::Cluster => "cluster",
            BenchSection::Mget => "mget",
            BenchSection::Kafka => "kafka",
        }
    }
}

/// Options of `cargo xtask bench`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BenchOptions {
    pub requests: u64,
    pub rounds: usize,
    pub clients: u32,
    pub targets: Vec<BenchTarget>,
    pub sections: Vec<BenchSection>,
    /// `worker_threads` for every rkproxy the bench starts; `None` keeps rkproxy's default.
    pub workers: Option<usize>,
    pub no_build: bool,
}

impl BenchOptions {
    /// Whether the run includes `section`.
    pub fn wants_section(&self, section: BenchSection) -> bool {
        self.sections.contains(&section)
    }

    /// Whether the run includes `target`.
    pub fn wants_target(&self, target: BenchTarget) -> bool {
        self.targets.contains(&target)
    }
}

impl Default for BenchOptions {
    fn default() -> Self {
        BenchOptions {
            requests: 200_000,
            rounds: 5,
            clients: 50,
            targets: BenchTarget::ALL.to_vec(),
            sections: BenchSection::ALL.to_vec(),
            workers: None,
            no_build: false,
        }
    }
}

/// Parses the arguments that follow `cargo xtask`.
pub fn parse(args: &[String]) -> Result<Command, String> {
    let Some((command, rest)) = args.split_first() else {
        return Ok(Command::Help);
    };
    match command.as_str() {
        "help" | "--help" | "-h" => Ok(Command::Help),
        "demo" => {
            let mut options = DemoOptions::default();
            for arg in rest {
                match arg.as_str() {
                    "--no-build" => options.no_build = true,
                    "--no-kafka" => options.no_kafka = true,
                    other => return Err(format!("unknown option for demo: {other}")),
                }
            }
            Ok(Command::Demo(options))
        }
        "test" => parse_test_options(rest).map(Command::Test),
        "ci" => parse_test_options(rest).map(Command::Ci),
        "cluster" => match rest {
            [action] if action == "up" => Ok(Command::Cluster(ClusterAction::Up { kafka: true })),
            [action, flag] if action == "up" && flag == "--no-kafka" => {
                Ok(Command::Cluster(ClusterAction::Up { kafka: false }))
            }
            [action] if action == "down" => Ok(Command::Cluster(ClusterAction::Down)),
            [action] if action == "status" => Ok(Command::Cluster(ClusterAction::Status)),
            _ => Err("cluster needs one of: up [--no-kafka], down, status".to_string()),
        },
        "bench" => parse_bench_options(rest).map(Command::Bench),
        "codegen" if rest.is_empty() => Ok(Command::Codegen),
        "codegen" => Err("codegen takes no arguments".to_string()),
        other => Err(format!("unknown command: {other}")),
    }
}

fn parse_test_options(args: &[String]) -> Result<TestOptions, String> {
    let mut options = TestOptions::default();
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--keep-data" => options.keep_data = true,
            "--no-kafka" => options.no_kafka = true,
            "--" => {
                options.cargo_args = args.cloned().collect();
                break;
            }
            other => {
                return Err(format!(
                    "unknown option: {other} (arguments for cargo test go after `--`)"
                ))
            }
        }
    }
    Ok(options)
}

fn parse_bench_options(args: &[String]) -> Result<BenchOptions, String> {
    let mut options = BenchOptions::default();
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        // Both `--flag value` and `--flag=value` are accepted.
        let (name, inline_value) = match arg.split_once('=') {
            Some((name, value)) => (name, Some(value.to_string())),
            None => (arg.as_str(), None),
        };
        let mut value = || -> Result<String, String> {
            inline_value
                .clone()
                .or_else(|| args.next().cloned())
                .ok_or_else(|| format!("{name} needs a value"))
        };
        match name {
            "--requests" => options.requests = parse_positive(name, &value()?)?,
            "--rounds" => options.rounds = parse_positive(name, &value()?)?,
            "--clients" => options.clients = parse_positive(name, &value()?)?,
            "--workers" => options.workers = Some(parse_positive(name, &value()?)?),
            "--targets" => {
                options.targets =
                    parse_list(name, &value()?, &BenchTarget::ALL, |target| target.name())?;
            }
            "--sections" => {
                options.sections = parse_list(name, &value()?, &BenchSection::ALL, |section| {
                    section.name()
                })?;
            }
            "--no-build" if inline_value.is_none() => options.no_build = true,
            other => return Err(format!("unknown option for bench: {other}")),
        }
    }
    Ok(options)
}

/// Parses a comma-separated list of names from `known`, without duplicates, in `known`'s order.
fn parse_list<T: Copy + PartialEq>(
    flag: &str,
    text: &str,
    known: &[T],
    name_of: impl Fn(T) -> &'static str,
) -> Result<Vec<T>, String> {
    let mut picked = Vec::new();
    for item_name in text.split(',').filter(|name| !name.is_empty()) {
        let item = known
            .iter()
            .copied()
            .find(|item| name_of(*item) == item_name)
            .ok_or_else(|| format!("unknown value for {flag}: {item_name}"))?;
        if !picked.contains(&item) {
            picked.push(item);
        }
    }
    if picked.is_empty() {
        return Err(format!("{flag} needs at least one value"));
    }
    Ok(known
        .iter()
        .copied()
        .filter(|item| picked.contains(item))
        .collect())
}

fn parse_positive<T>(flag: &str, text: &str) -> Result<T, String>
where
    T: std::str::FromStr + PartialOrd + Default,
{
    match text.parse::<T>() {
        Ok(number) if number > T::default() => Ok(number),
        _ => Err(format!("{flag} needs a positive number, got {text:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_words(words: &str) -> Result<Command, String> {
        let args: Vec<String> = words.split_whitespace().map(str::to_string).collect();
        parse(&args)
    }

    #[test]
    fn test_passes_everything_after_double_dash_to_cargo() {
        let command = parse_words("test --keep-data -- -p resp-codec -- --nocapture").unwrap();
        assert_eq!(
            command,
            Command::Test(TestOptions {
                cargo_args: vec![
                    "-p".into(),
                    "resp-codec".into(),
                    "--".into(),
                    "--nocapture".into()
                ],
                keep_data: true,
                no_kafka: false,
            })
        );
    }

    #[test]
    fn test_rejects_cargo_arguments_without_double_dash() {
        assert!(parse_words("test -p resp-codec").is_err());
    }

    #[test]
    fn bench_accepts_both_value_forms_and_sorts_targets() {
        let command =
            parse_words("bench --requests=1000 --rounds 5 --targets twemproxy,direct --workers 2")
                .unwrap();
        let Command::Bench(options) = command else {
            panic!("expected bench, got {command:?}");
        };
        assert_eq!(options.requests, 1000);
        assert_eq!(options.rounds, 5);
        assert_eq!(options.clients, 50);
        assert_eq!(options.workers, Some(2));
        assert_eq!(
            options.targets,
            vec![BenchTarget::Direct, BenchTarget::Twemproxy]
        );
        assert_eq!(BenchOptions::default().workers, None);
    }

    #[test]
    fn bench_rejects_zero_and_unknown_targets() {
        assert!(parse_words("bench --requests 0").is_err());
        assert!(parse_words("bench --targets envoy").is_err());
        assert!(parse_words("bench --targets ,").is_err());
        assert!(parse_words("bench --rounds").is_err());
        assert!(parse_words("bench --workers 0").is_err());
    }

    #[test]
    fn bench_sections_default_to_all_and_keep_their_order() {
        let Command::Bench(options) = parse_words("bench").unwrap() else {
            panic!("expected bench");
        };
        assert_eq!(options.sections, BenchSection::ALL.to_vec());
        let command = parse_words("bench --sections mget,cluster,mget").unwrap();
        let Command::Bench(options) = command else {
            panic!("expected bench, got {command:?}");
        };
        assert_eq!(
            options.sections,
            vec![BenchSection::Cluster, BenchSection::Mget]
        );
        assert!(options.wants_section(BenchSection::Mget));
        assert!(!options.wants_section(BenchSection::Standalone));
        assert!(
            parse_words("bench --sections kafka,mget").is_ok_and(|command| command
                == Command::Bench(BenchOptions {
                    sections: vec![BenchSection::Mget, BenchSection::Kafka],
                    ..BenchOptions::default()
                }))
        );
        assert!(parse_words("bench --sections rabbitmq").is_err());
    }

    #[test]
    fn cluster_needs_one_known_action() {
        assert_eq!(
            parse_words("cluster up").unwrap(),
            Command::Cluster(ClusterAction::Up { kafka: true })
        );
        assert_eq!(
            parse_words("cluster up --no-kafka").unwrap(),
            Command::Cluster(ClusterAction::Up { kafka: false })
        );
        assert!(parse_words("cluster").is_err());
        assert!(parse_words("cluster restart").is_err());
    }

    #[test]
    fn no_arguments_means_help() {
        assert_eq!(parse_words("").unwrap(), Command::Help);
    }
}
