//! Command line parsing for `cargo xtask`, with `xflags` (the parser rust-analyzer's xtask uses).
//!
//! The grammar below is the single description of the command line: the structs after it are
//! generated from it (`env UPDATE_XFLAGS=1 cargo build -p xtask` rewrites them), and its doc
//! comments are the help text. Unknown flags and stray words are errors, so a typo never silently
//! changes what runs. Two things xflags does not do are added by [`parse`]: `--flag=value` (split
//! into `--flag value`) and a check that arguments for `cargo test` come after `--`.

use std::ffi::OsString;
use std::num::{NonZeroU32, NonZeroU64, NonZeroUsize};
use std::path::PathBuf;
use std::str::FromStr;

xflags::xflags! {
    src "./src/flags.rs"

    /// Developer automation for rkproxy. Usage: cargo xtask <command> [options]
    cmd xtask {
        /// Start Redis (16379), a Redis Cluster (17000-17005) and Kafka (19092) on loopback, build
        /// rkproxy in release and run it in the foreground on 127.0.0.1:7480; stops the servers
        /// it started when rkproxy exits.
        cmd demo {
            /// Use the existing target/release/rkproxy instead of building it.
            optional --no-build
            /// Do not start Kafka.
            optional --no-kafka
        }
        /// Start throw-away servers on free ports, run `cargo test --workspace` with
        /// RKPROXY_TEST_* set, stop the servers; the exit code is cargo's.
        cmd test {
            /// Arguments for `cargo test`, after `--`
            /// (`cargo xtask test -- -p proxy-bin --test it -- filter`).
            repeated cargo_args: OsString
            /// Keep server data and logs under target/rkproxy-servers/ afterwards.
            optional --keep-data
            /// Do not start Kafka (saves time and 512 MB; Kafka tests will fail).
            optional --no-kafka
        }
        /// The demo's servers, detached, for working by hand.
        cmd cluster {
            /// Start them (or adopt the ones a running demo started).
            cmd up {
                /// Leave Kafka out.
                optional --no-kafka
            }
            /// Stop them.
            cmd down {}
            /// Show which are running and whether the cluster is healthy.
            cmd status {}
        }
        /// redis-benchmark against direct redis, rkproxy, twemproxy and predixy, and against a
        /// 3-master Redis Cluster direct and through rkproxy and predixy; with --baseline, an older
        /// rkproxy beside the current one in the same rounds.
        cmd bench {
            /// Requests per redis-benchmark run at pipeline 1 (default 200000; pipelined runs use
            /// 8 times as many).
            optional --requests n: NonZeroU64
            /// Rounds per target, the table shows the median (default 5).
            optional --rounds n: NonZeroUsize
            /// Parallel connections (default 50).
            optional --clients n: NonZeroU32
            /// Value size of SET/GET in bytes (redis-benchmark -d; default redis-benchmark's 3).
            optional --value-bytes n: NonZeroU32
            /// Comma-separated subset of direct,rkproxy,baseline,twemproxy,predixy (default all
            /// available: baseline only with --baseline, predixy only if ../shared/peers/predixy
            /// exists; the cluster sections leave twemproxy out).
            optional --targets list: TargetList
            /// An older rkproxy binary, run as target `baseline` with the same configs as the
            /// current rkproxy, so that one run compares before and after (in the kafka section:
            /// SET and KPUSH, with only the config keys an older binary knows).
            optional --baseline path: PathBuf
            /// Comma-separated subset of standalone,cluster,mget,kafka,bigreq,tenants,tls,stats (default all;
            /// kafka starts a Kafka broker: KPUSH/KPOP vs SET through rkproxy; bigreq: 1 MiB SETs and
            /// slow readers, peak RSS and small-GET latency; tenants: the cost of limits,
            /// limits_store and backend_user; tls: GET/SET with TLS on either side of rkproxy vs
            /// redis-server's TLS port; stats: rkproxy with stats on and off).
            optional --sections list: SectionList
            /// Run every rkproxy with worker_threads = n (default: the config default, 1).
            optional --workers n: NonZeroUsize
            /// Use the existing target/release/rkproxy instead of building it.
            optional --no-build
        }
        /// cargo fmt --check, cargo clippy -D warnings, then `test` (same options).
        cmd ci {
            /// Arguments for `cargo test`, after `--`.
            repeated cargo_args: OsString
            /// Keep server data and logs under target/rkproxy-servers/ afterwards.
            optional --keep-data
            /// Do not start Kafka.
            optional --no-kafka
        }
        /// Start the test servers and rkproxy, then run real client libraries against it in plain
        /// (non-cluster) mode: redis-py, ioredis, node-redis, go-redis, Jedis, Lettuce
        /// (clients/matrix/), then each language's K* helper package (clients/<language>-rkproxy/).
        /// Each language's pinned packages are installed first (under target/clients/).
        cmd clients {
            /// Comma-separated subset of python,node,go,java (default all).
            optional --only list: SuiteList
            /// Build and run the release rkproxy (default: the debug build).
            optional --release
            /// Do not start Kafka: the Kafka pool, its scenarios and the K* helper packages are left out.
            optional --no-kafka
            /// Keep server data and logs (the proxies' included) under target/rkproxy-servers/.
            optional --keep-data
        }
        /// Regenerate cluster-router/src/commands/generated.rs from a live redis-server (its own
        /// on a free port, or RKPROXY_CODEGEN_REDIS).
        cmd codegen {}
        /// This text (also `--help`, `-h`, or no arguments).
        cmd help {}
    }
}
// generated start
// The following code is generated by `xflags` macro.
// Run `env UPDATE_XFLAGS=1 cargo build` to regenerate.
#[derive(Debug)]
pub struct Xtask {
    pub subcommand: XtaskCmd,
}

#[derive(Debug)]
pub enum XtaskCmd {
    Demo(Demo),
    Test(Test),
    Cluster(Cluster),
    Bench(Bench),
    Ci(Ci),
    Clients(Clients),
    Codegen(Codegen),
    Help(Help),
}

#[derive(Debug)]
pub struct Demo {
    pub no_build: bool,
    pub no_kafka: bool,
}

#[derive(Debug)]
pub struct Test {
    pub cargo_args: Vec<OsString>,

    pub keep_data: bool,
    pub no_kafka: bool,
}

#[derive(Debug)]
pub struct Cluster {
    pub subcommand: ClusterCmd,
}

#[derive(Debug)]
pub enum ClusterCmd {
    Up(Up),
    Down(Down),
    Status(Status),
}

#[derive(Debug)]
pub struct Up {
    pub no_kafka: bool,
}

#[derive(Debug)]
pub struct Down;

#[derive(Debug)]
pub struct Status;

#[derive(Debug)]
pub struct Bench {
    pub requests: Option<NonZeroU64>,
    pub rounds: Option<NonZeroUsize>,
    pub clients: Option<NonZeroU32>,
    pub value_bytes: Option<NonZeroU32>,
    pub targets: Option<TargetList>,
    pub baseline: Option<PathBuf>,
    pub sections: Option<SectionList>,
    pub workers: Option<NonZeroUsize>,
    pub no_build: bool,
}

#[derive(Debug)]
pub struct Ci {
    pub cargo_args: Vec<OsString>,

    pub keep_data: bool,
    pub no_kafka: bool,
}

#[derive(Debug)]
pub struct Clients {
    pub only: Option<SuiteList>,
    pub release: bool,
    pub no_kafka: bool,
    pub keep_data: bool,
}

#[derive(Debug)]
pub struct Codegen;

#[derive(Debug)]
pub struct Help;

impl Xtask {
    #[allow(dead_code)]
    pub fn from_env_or_exit() -> Self {
        Self::from_env_or_exit_()
    }

    #[allow(dead_code)]
    pub fn from_env() -> xflags::Result<Self> {
        Self::from_env_()
    }

    #[allow(dead_code)]
    pub fn from_vec(args: Vec<std::ffi::OsString>) -> xflags::Result<Self> {
        Self::from_vec_(args)
    }
}
// generated end

/// Parses the arguments that follow `cargo xtask`. No arguments means `help`.
pub fn parse(args: Vec<OsString>) -> xflags::Result<XtaskCmd> {
    if args.is_empty() {
        return Ok(XtaskCmd::Help(Help));
    }
    let args = split_inline_values(args);
    let command = Xtask::from_vec(args.clone())?.subcommand;
    let cargo_args = match &command {
        XtaskCmd::Test(test) => &test.cargo_args,
        XtaskCmd::Ci(ci) => &ci.cargo_args,
        XtaskCmd::Bench(bench) => return check_baseline(bench).map(|()| command),
        _ => return Ok(command),
    };
    // xflags takes words before `--` as positional arguments too; `cargo xtask test foo` is a
    // mistake (cargo's arguments go after `--`), so it stays an error.
    let after_double_dash = args
        .iter()
        .position(|arg| arg == "--")
        .map_or(0, |split| args.len() - split - 1);
    if cargo_args.len() > after_double_dash {
        return Err(xflags::Error::new(format!(
            "unexpected argument: {:?} (arguments for cargo test go after `--`)",
            cargo_args[0]
        )));
    }
    Ok(command)
}

/// `--targets baseline` needs the binary to run as the baseline.
fn check_baseline(bench: &Bench) -> xflags::Result<()> {
    let picks_baseline = bench
        .targets
        .as_ref()
        .is_some_and(|list| list.0.contains(&BenchTarget::Baseline));
    if picks_baseline && bench.baseline.is_none() {
        return Err(xflags::Error::new(
            "--targets baseline needs --baseline PATH (the older rkproxy binary)",
        ));
    }
    Ok(())
}

/// The help text, generated by xflags from the grammar's doc comments.
pub fn help() -> &'static str {
    Xtask::HELP_
}

/// Splits `--flag=value` into `--flag value` (xflags accepts only the second form). Arguments
/// after `--` belong to cargo and are left as they are.
fn split_inline_values(args: Vec<OsString>) -> Vec<OsString> {
    let mut split = Vec::with_capacity(args.len());
    let mut rest = args.into_iter();
    for arg in rest.by_ref() {
        if arg == "--" {
            split.push(arg);
            break;
        }
        match arg.to_str().and_then(|text| text.split_once('=')) {
            Some((name, value)) if name.starts_with("--") => {
                split.push(name.into());
                split.push(value.into());
            }
            _ => split.push(arg),
        }
    }
    split.extend(rest);
    split
}

/// A process that `cargo xtask bench` can send load to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum BenchTarget {
    Direct,
    /// The rkproxy built from this worktree.
    Rkproxy,
    /// An older rkproxy binary (`--baseline`), started like `Rkproxy`.
    Baseline,
    Twemproxy,
    /// predixy, a peer proxy in C++, with one worker thread.
    Predixy,
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
    /// Pipelined 1 MiB SETs and clients that never read: peak RSS and a small GET's latency beside them.
    Bigreq,
    /// One prefixed tenant with no limits, local limits, `limits_store` and a `backend_user`: their cost.
    Tenants,
    /// GET/SET with TLS on the client side and on the backend side of rkproxy vs redis-server's TLS port.
    Tls,
    /// GET/SET through rkproxy with stats on and off: what counting costs.
    Stats,
}

/// Something picked by name from a fixed list on the command line.
pub trait Named: Copy + PartialEq + 'static {
    /// Every value, in the order runs and tables use.
    const ALL: &'static [Self];
    /// The name used on the command line and in the table.
    fn name(self) -> &'static str;
}

impl Named for BenchTarget {
    const ALL: &'static [Self] = &[
        BenchTarget::Direct,
        BenchTarget::Rkproxy,
        BenchTarget::Baseline,
        BenchTarget::Twemproxy,
        BenchTarget::Predixy,
    ];

    fn name(self) -> &'static str {
        match self {
            BenchTarget::Direct => "direct",
            BenchTarget::Rkproxy => "rkproxy",
            BenchTarget::Baseline => "baseline",
            BenchTarget::Twemproxy => "twemproxy",
            BenchTarget::Predixy => "predixy",
        }
    }
}

impl Named for BenchSection {
    const ALL: &'static [Self] = &[
        BenchSection::Standalone,
        BenchSection::Cluster,
        BenchSection::Mget,
        BenchSection::Kafka,
        BenchSection::Bigreq,
        BenchSection::Tenants,
        BenchSection::Tls,
        BenchSection::Stats,
    ];

    fn name(self) -> &'static str {
        match self {
            BenchSection::Standalone => "standalone",
            BenchSection::Cluster => "cluster",
            BenchSection::Mget => "mget",
            BenchSection::Kafka => "kafka",
            BenchSection::Bigreq => "bigreq",
            BenchSection::Tenants => "tenants",
            BenchSection::Tls => "tls",
            BenchSection::Stats => "stats",
        }
    }
}

/// A language whose client libraries `cargo xtask clients` runs (`clients/matrix/<name>/`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum ClientSuite {
    /// redis-py, sync and asyncio, under pytest.
    Python,
    /// ioredis and node-redis, under node's test runner.
    Node,
    /// go-redis v9, under go test.
    Go,
    /// Jedis and Lettuce, under Maven and JUnit.
    Java,
}

impl Named for ClientSuite {
    const ALL: &'static [Self] = &[
        ClientSuite::Python,
        ClientSuite::Node,
        ClientSuite::Go,
        ClientSuite::Java,
    ];

    fn name(self) -> &'static str {
        match self {
            ClientSuite::Python => "python",
            ClientSuite::Node => "node",
            ClientSuite::Go => "go",
            ClientSuite::Java => "java",
        }
    }
}

/// A comma-separated list of names: at least one, without duplicates, in `T::ALL`'s order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NameList<T>(pub Vec<T>);

/// The value of `bench --targets` (xflags wants a plain type name).
pub type TargetList = NameList<BenchTarget>;
/// The value of `bench --sections`.
pub type SectionList = NameList<BenchSection>;
/// The value of `clients --only`.
pub type SuiteList = NameList<ClientSuite>;

impl<T: Named> FromStr for NameList<T> {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let mut picked = Vec::new();
        for item_name in text.split(',').filter(|name| !name.is_empty()) {
            let item = T::ALL
                .iter()
                .copied()
                .find(|item| item.name() == item_name)
                .ok_or_else(|| format!("unknown value {item_name:?}"))?;
            picked.push(item);
        }
        if picked.is_empty() {
            return Err("needs at least one value".to_string());
        }
        let in_order = T::ALL.iter().copied().filter(|item| picked.contains(item));
        Ok(NameList(in_order.collect()))
    }
}

/// Options of `cargo xtask bench`, with the defaults filled in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BenchOptions {
    pub requests: u64,
    pub rounds: usize,
    pub clients: u32,
    /// `redis-benchmark -d`; `None` keeps its default (3 bytes).
    pub value_bytes: Option<u32>,
    pub targets: Vec<BenchTarget>,
    pub sections: Vec<BenchSection>,
    /// The older rkproxy binary that target `baseline` runs.
    pub baseline: Option<PathBuf>,
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

impl From<Bench> for BenchOptions {
    fn from(flags: Bench) -> Self {
        BenchOptions {
            requests: flags.requests.map_or(200_000, NonZeroU64::get),
            rounds: flags.rounds.map_or(5, NonZeroUsize::get),
            clients: flags.clients.map_or(50, NonZeroU32::get),
            value_bytes: flags.value_bytes.map(NonZeroU32::get),
            targets: flags
                .targets
                .map_or_else(|| default_targets(flags.baseline.is_some()), |list| list.0),
            sections: flags
                .sections
                .map_or(BenchSection::ALL.to_vec(), |list| list.0),
            baseline: flags.baseline,
            workers: flags.workers.map(NonZeroUsize::get),
            no_build: flags.no_build,
        }
    }
}

/// Every target, except `baseline` when there is no baseline binary to run. (Whether predixy is
/// installed is the bench's business: it skips a missing peer and says so.)
fn default_targets(has_baseline: bool) -> Vec<BenchTarget> {
    BenchTarget::ALL
        .iter()
        .copied()
        .filter(|target| has_baseline || *target != BenchTarget::Baseline)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_words(words: &str) -> xflags::Result<XtaskCmd> {
        parse(words.split_whitespace().map(OsString::from).collect())
    }

    fn bench_options(words: &str) -> BenchOptions {
        match parse_words(words) {
            Ok(XtaskCmd::Bench(bench)) => BenchOptions::from(bench),
            other => panic!("expected bench, got {other:?}"),
        }
    }

    #[test]
    fn test_passes_everything_after_double_dash_to_cargo() {
        let command = parse_words("test --keep-data -- -p resp-codec -- --nocapture --x=y");
        let Ok(XtaskCmd::Test(test)) = command else {
            panic!("expected test, got {command:?}");
        };
        assert_eq!(
            test.cargo_args,
            ["-p", "resp-codec", "--", "--nocapture", "--x=y"]
        );
        assert!(test.keep_data);
        assert!(!test.no_kafka);
    }

    #[test]
    fn test_rejects_cargo_arguments_without_double_dash() {
        assert!(parse_words("test -p resp-codec").is_err());
        assert!(parse_words("test resp-codec").is_err());
        assert!(parse_words("test resp-codec -- --nocapture").is_err());
        assert!(parse_words("ci --no-kafka resp-codec").is_err());
        assert!(parse_words("test --keep-data=yes").is_err());
    }

    #[test]
    fn unknown_flags_and_commands_are_errors() {
        assert!(parse_words("demo --no-kafka --fast").is_err());
        assert!(parse_words("test --fast").is_err());
        assert!(parse_words("bench --no-build=yes").is_err());
        assert!(parse_words("codegen now").is_err());
        assert!(parse_words("deploy").is_err());
    }

    #[test]
    fn bench_accepts_both_value_forms_and_sorts_targets() {
        let options = bench_options(
            "bench --requests=1000 --rounds 5 --targets twemproxy,direct --workers 2 --value-bytes 16000",
        );
        assert_eq!(options.value_bytes, Some(16000));
        assert_eq!(options.requests, 1000);
        assert_eq!(options.rounds, 5);
        assert_eq!(options.clients, 50);
        assert_eq!(options.workers, Some(2));
        assert_eq!(
            options.targets,
            vec![BenchTarget::Direct, BenchTarget::Twemproxy]
        );
        assert_eq!(bench_options("bench").workers, None);
        assert_eq!(bench_options("bench").value_bytes, None);
    }

    #[test]
    fn bench_rejects_zero_and_unknown_targets() {
        assert!(parse_words("bench --requests 0").is_err());
        assert!(parse_words("bench --targets envoy").is_err());
        assert!(parse_words("bench --targets ,").is_err());
        assert!(parse_words("bench --rounds").is_err());
        assert!(parse_words("bench --workers 0").is_err());
        assert!(parse_words("bench --value-bytes 0").is_err());
    }

    #[test]
    fn bench_runs_baseline_by_default_only_with_a_baseline_binary() {
        let without = bench_options("bench");
        assert_eq!(without.baseline, None);
        assert_eq!(
            without.targets,
            vec![
                BenchTarget::Direct,
                BenchTarget::Rkproxy,
                BenchTarget::Twemproxy,
                BenchTarget::Predixy
            ]
        );
        let with = bench_options("bench --baseline=/tmp/rkproxy-old");
        assert_eq!(with.baseline, Some(PathBuf::from("/tmp/rkproxy-old")));
        assert_eq!(with.targets, BenchTarget::ALL.to_vec());
    }

    #[test]
    fn bench_targets_accept_baseline_and_predixy() {
        let options = bench_options("bench --targets predixy,baseline,rkproxy --baseline old");
        assert_eq!(
            options.targets,
            vec![
                BenchTarget::Rkproxy,
                BenchTarget::Baseline,
                BenchTarget::Predixy
            ]
        );
        assert_eq!(
            bench_options("bench --targets predixy").targets,
            vec![BenchTarget::Predixy]
        );
        let missing_binary = parse_words("bench --targets rkproxy,baseline");
        assert!(missing_binary.is_err_and(|error| error.to_string().contains("--baseline PATH")));
        assert!(parse_words("bench --baseline").is_err());
    }

    #[test]
    fn bench_sections_default_to_all_and_keep_their_order() {
        assert_eq!(bench_options("bench").sections, BenchSection::ALL.to_vec());
        let options = bench_options("bench --sections mget,cluster,mget");
        assert_eq!(
            options.sections,
            vec![BenchSection::Cluster, BenchSection::Mget]
        );
        assert!(options.wants_section(BenchSection::Mget));
        assert!(!options.wants_section(BenchSection::Standalone));
        assert_eq!(
            bench_options("bench --sections kafka,mget").sections,
            vec![BenchSection::Mget, BenchSection::Kafka]
        );
        assert!(parse_words("bench --sections rabbitmq").is_err());
    }

    #[test]
    fn clients_picks_suites_in_order() {
        let clients = |words| match parse_words(words) {
            Ok(XtaskCmd::Clients(clients)) => Some(clients),
            _ => None,
        };
        let all = clients("clients").expect("clients parses");
        assert!(all.only.is_none());
        assert!(!all.release && !all.no_kafka && !all.keep_data);
        let picked = clients("clients --only java,go,python --release --no-kafka").expect("parses");
        assert_eq!(
            picked.only.map(|list| list.0),
            Some(vec![
                ClientSuite::Python,
                ClientSuite::Go,
                ClientSuite::Java
            ])
        );
        assert!(picked.release && picked.no_kafka);
        assert!(parse_words("clients --only ruby").is_err());
        assert!(parse_words("clients python").is_err());
    }

    #[test]
    fn cluster_needs_one_known_action() {
        let up = |words| match parse_words(words) {
            Ok(XtaskCmd::Cluster(Cluster {
                subcommand: ClusterCmd::Up(up),
            })) => Some(up.no_kafka),
            _ => None,
        };
        assert_eq!(up("cluster up"), Some(false));
        assert_eq!(up("cluster up --no-kafka"), Some(true));
        assert!(matches!(
            parse_words("cluster status"),
            Ok(XtaskCmd::Cluster(Cluster {
                subcommand: ClusterCmd::Status(Status)
            }))
        ));
        assert!(parse_words("cluster").is_err());
        assert!(parse_words("cluster restart").is_err());
        assert!(parse_words("cluster down --no-kafka").is_err());
    }

    #[test]
    fn no_arguments_or_help_means_help() {
        assert!(matches!(parse_words(""), Ok(XtaskCmd::Help(_))));
        assert!(matches!(parse_words("help"), Ok(XtaskCmd::Help(_))));
        for words in ["--help", "-h", "bench --help"] {
            assert!(parse_words(words).is_err_and(|error| error.is_help()));
        }
        assert!(help().contains("--no-kafka"));
    }
}
