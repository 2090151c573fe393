//! The hand-kept policy overlay: what only a proxy needs to know about a command.
//!
//! Redis's `COMMAND INFO` says what a command is; this file says what rkproxy does with it:
//! its [`CommandClass`], its [`ProxyHandling`] and its [`ClusterRouting`]. Most commands get
//! all three from defaults derived from their flags and ACL categories (see
//! [`default_class`] and [`default_proxy`]); the [`OVERLAY`] table lists the exceptions, each
//! with the reason for the choice. Every name in the table must exist in the generated table
//! (a unit test checks it), so a typo cannot silently leave a command on its default.
//!
//! Everything here is `const`: the static command table is built at compile time.

use super::{
    AclCategories as A, ClusterRouting as R, CommandClass as C, CommandFlags as F,
    MergePolicy as M, ProxyHandling as P, SplitPattern,
};

/// The three policy columns of a table entry.
pub(super) struct Policy {
    pub(super) class: C,
    pub(super) proxy: P,
    pub(super) cluster: R,
}

/// One overlay row: the fields left `None` keep their default.
#[derive(Clone, Copy)]
pub(super) struct Entry {
    pub(super) name: &'static str,
    class: Option<C>,
    proxy: Option<P>,
    cluster: Option<R>,
}

const fn entry(name: &'static str) -> Entry {
    Entry {
        name,
        class: None,
        proxy: None,
        cluster: None,
    }
}

impl Entry {
    const fn class(mut self, class: C) -> Entry {
        self.class = Some(class);
        self
    }

    const fn proxy(mut self, proxy: P) -> Entry {
        self.proxy = Some(proxy);
        self
    }

    const fn cluster(mut self, cluster: R) -> Entry {
        self.cluster = Some(cluster);
        self
    }
}

const fn local(name: &'static str) -> Entry {
    entry(name).proxy(P::Local)
}

const fn dedicated(name: &'static str) -> Entry {
    entry(name).proxy(P::Dedicated)
}

const fn unsupported(name: &'static str) -> Entry {
    entry(name).proxy(P::Unsupported)
}

const fn split(name: &'static str, pattern: SplitPattern, merge: M) -> Entry {
    entry(name).cluster(R::Split { pattern, merge })
}

const fn all_masters(name: &'static str, merge: M) -> Entry {
    entry(name).cluster(R::AllMasters(merge))
}

const fn all_nodes(name: &'static str, merge: M) -> Entry {
    entry(name).cluster(R::AllNodes(merge))
}

const fn any_node(name: &'static str) -> Entry {
    entry(name).cluster(R::AnyNode)
}

/// The exceptions to the defaults, grouped by reason.
#[rustfmt::skip]
pub(super) const OVERLAY: &[Entry] = &[
    // --- Local: connection state that belongs to the client's connection to the proxy. ---
    // The proxy authenticates clients itself (tenants); backend credentials are its own.
    local("auth"),
    // Protocol negotiation and authentication happen between client and proxy.
    local("hello"),
    // Backend connections are shared, so the selected database is client state in the proxy.
    local("select"),
    // QUIT closes the client's connection, never a shared backend connection.
    local("quit"),
    // RESET clears client state, which the proxy holds.
    local("reset"),
    // Names, ids and connection info describe the client's connection to the proxy; sent to a
    // shared backend connection they would describe (or rename) the wrong connection.
    local("client|setname"),
    local("client|getname"),
    local("client|id"),
    local("client|info"),
    // Library name and version (CLIENT SETINFO, Redis 7.2) are shown by CLIENT INFO, so the
    // proxy keeps them with the rest of the client's connection state.
    local("client|setinfo"),
    // CLIENT LIST shows the connection to the proxy (the backend's list would show the proxy's
    // shared connections and other tenants).
    local("client|list"),
    // CLIENT KILL closes the proxy's own client connections (by id, address, user...), never the
    // backend's: there it would close the proxy's shared connections.
    local("client|kill"),
    // CLIENT REPLY OFF/SKIP would desynchronise replies on a shared connection; the proxy
    // drops the client's replies itself instead.
    local("client|reply"),
    // Client-side caching needs invalidations on the client's own backend connection, which a
    // shared connection cannot give: the proxy refuses CLIENT TRACKING ON with a reason and
    // answers the rest as Redis does for a client that is not tracking.
    local("client|tracking"),
    local("client|caching"),
    local("client|getredir"),
    local("client|trackinginfo"),
    // NO-EVICT protects one backend connection from client eviction; the proxy's connections
    // are shared, so ON is refused with a reason and OFF (the default) acknowledged.
    local("client|no-evict"),
    // Replica reads and redirects are the proxy's routing decisions; the client's view of
    // READONLY/READWRITE/ASKING is acknowledged locally.
    local("readonly"),
    local("readwrite"),
    local("asking"),
    // The tenant's user name is known to the proxy, not to the backend.
    local("acl|whoami"),

    // --- Dedicated: state that lives on the backend connection itself. ---
    // A transaction queues commands on one backend connection until EXEC/DISCARD.
    dedicated("multi"),
    dedicated("exec"),
    dedicated("discard"),
    dedicated("watch"),
    dedicated("unwatch"),
    // Subscribing turns the backend connection into a push-only connection.
    dedicated("subscribe"),
    dedicated("psubscribe"),
    dedicated("unsubscribe"),
    dedicated("punsubscribe"),
    dedicated("ssubscribe").cluster(R::ByShardChannels),
    dedicated("sunsubscribe").cluster(R::ByShardChannels),
    // XREAD/XREADGROUP block only with the BLOCK option; without it they are plain reads.
    // (Every other command with the `blocking` flag is Dedicated by default.)
    entry("xread").proxy(P::DedicatedWhenBlocking),
    entry("xreadgroup").proxy(P::DedicatedWhenBlocking),

    // --- Unsupported: would break shared connections, other tenants, or the proxy. ---
    // MONITOR turns the connection into an endless stream of every client's commands.
    unsupported("monitor"),
    // The replication protocol takes over the connection.
    unsupported("sync"),
    unsupported("psync"),
    unsupported("replconf"),
    // Client ids are backend-side: UNBLOCK could unblock other tenants' commands.
    unsupported("client|unblock"),
    // Pausing affects every tenant on the backend.
    unsupported("client|pause"),
    unsupported("client|unpause"),
    // Stopping, crashing, demoting or failing over servers is not a client's business.
    unsupported("shutdown"),
    unsupported("debug"),
    unsupported("failover"),
    unsupported("replicaof"),
    unsupported("slaveof"),
    // SWAPDB swaps databases under every tenant's feet.
    unsupported("swapdb"),
    // WAIT counts replica acknowledgements of the *connection's* writes; on a shared
    // connection it would block other clients, on a dedicated one it would count nothing.
    unsupported("wait"),
    // Loading code changes the server for everyone, and can break the proxy (renamed commands).
    unsupported("module|load"),
    unsupported("module|loadex"),
    unsupported("module|unload"),
    // CONFIG is for admin tenants (tenant-policy refuses it to others): the proxy forwards it on
    // a standalone pool and sends it to every node of a cluster pool, naming a failing node.
    local("config|get"),
    local("config|set"),
    local("config|rewrite"),
    // Backend ACL users are the proxy's credentials; tenants must not read or change them.
    unsupported("acl|setuser"),
    unsupported("acl|deluser"),
    unsupported("acl|load"),
    unsupported("acl|save"),
    unsupported("acl|list"),
    unsupported("acl|users"),
    unsupported("acl|getuser"),
    unsupported("acl|log"),
    unsupported("acl|dryrun"),
    // The script debugger takes over the connection with its own protocol.
    unsupported("script|debug"),
    // RESTORE-ASKING is Redis Cluster's internal migration command.
    unsupported("restore-asking"),
    // Cluster topology changes behind the proxy's back; do them against the nodes directly.
    unsupported("cluster|addslots"),
    unsupported("cluster|addslotsrange"),
    unsupported("cluster|delslots"),
    unsupported("cluster|delslotsrange"),
    unsupported("cluster|flushslots"),
    unsupported("cluster|bumpepoch"),
    unsupported("cluster|set-config-epoch"),
    unsupported("cluster|setslot"),
    unsupported("cluster|meet"),
    unsupported("cluster|forget"),
    unsupported("cluster|replicate"),
    unsupported("cluster|reset"),
    unsupported("cluster|failover"),
    unsupported("cluster|saveconfig"),

    // --- Cluster: multi-key commands split per node (one sub-command per node). ---
    // MGET's per-node arrays are put back in the caller's key order.
    split("mget", SplitPattern::KeysOnly, M::OrderedByKey),
    // MSET is OK when every node said OK (not atomic across nodes; MSETNX stays same-slot).
    split("mset", SplitPattern::KeyValuePairs, M::AllSucceeded),
    // Counting commands add up the per-node counts.
    split("del", SplitPattern::KeysOnly, M::Sum),
    split("unlink", SplitPattern::KeysOnly, M::Sum),
    split("exists", SplitPattern::KeysOnly, M::Sum),
    split("touch", SplitPattern::KeysOnly, M::Sum),

    // --- Cluster: whole-keyspace commands. ---
    all_masters("dbsize", M::Sum),
    all_masters("keys", M::ConcatArrays),
    entry("scan").cluster(R::Scan),
    // Any master's random key is a random key; empty masters answer nil.
    all_masters("randomkey", M::FirstNonNull),
    all_masters("flushdb", M::AllSucceeded),
    all_masters("flushall", M::AllSucceeded),
    // Persistence is per node; the data set is covered by the masters.
    all_masters("save", M::AllSucceeded),
    all_masters("bgsave", M::AllSucceeded),
    all_masters("bgrewriteaof", M::AllSucceeded),
    // Admins get the backend's INFO (every master's on a cluster pool); other tenants the
    // proxy's own (server, clients, their own keyspace): see proxy-bin's session.
    all_masters("info", M::Info).proxy(P::Local),
    // Scripts are cached per node and not replicated, so replicas (which may serve
    // EVALSHA_RO) need them too; a script exists only if every node has it.
    all_nodes("script|load", M::AllSucceeded),
    all_nodes("script|exists", M::LogicalAnd),
    all_nodes("script|flush", M::AllSucceeded),
    all_masters("script|kill", M::OneSucceeded),
    // Functions are replicated from masters to their replicas.
    all_masters("function|load", M::AllSucceeded),
    all_masters("function|delete", M::AllSucceeded),
    all_masters("function|flush", M::AllSucceeded),
    all_masters("function|restore", M::AllSucceeded),
    all_masters("function|kill", M::OneSucceeded),
    // Pub/sub introspection: subscriptions live on whichever node a subscriber used.
    all_nodes("pubsub|channels", M::UnionArrays),
    all_nodes("pubsub|numsub", M::SumPairs),
    all_nodes("pubsub|numpat", M::Sum),
    all_nodes("pubsub|shardchannels", M::UnionArrays),
    all_nodes("pubsub|shardnumsub", M::SumPairs),
    // Per-node diagnostics that merge cleanly.
    all_nodes("slowlog|get", M::ConcatArrays),
    all_nodes("slowlog|len", M::Sum),
    all_nodes("slowlog|reset", M::AllSucceeded),
    all_nodes("latency|reset", M::Sum),
    all_nodes("config|resetstat", M::AllSucceeded).proxy(P::Local),
    all_nodes("memory|purge", M::AllSucceeded),
    // Keyless queries that any node answers the same way.
    any_node("ping"),
    any_node("echo"),
    any_node("time"),
    any_node("lastsave"),
    any_node("lolwut"),
    // PUBLISH is propagated to every node of a cluster, so any node will do.
    entry("publish").cluster(R::AnyNode),
    // Shard channels hash to slots like keys, but Redis reports them as not-keys.
    entry("spublish").cluster(R::ByShardChannels),
    // The slot is the third argument: CLUSTER COUNTKEYSINSLOT <slot>.
    entry("cluster|countkeysinslot").cluster(R::SlotArgument(2)),
    entry("cluster|getkeysinslot").cluster(R::SlotArgument(2)),

    // --- Class overrides. ---
    // TIME is a harmless query; classing it Admin would refuse it to read-only tenants.
    entry("time").class(C::Read),
];

/// The policy of `name`: the overlay row's fields where present, defaults elsewhere.
pub(super) const fn policy(name: &str, flags: F, acl: A) -> Policy {
    let mut policy = Policy {
        class: default_class(flags, acl),
        proxy: P::Forward,
        cluster: R::ByKeys,
    };
    policy.proxy = default_proxy(flags, policy.class);
    let mut index = 0;
    while index < OVERLAY.len() {
        let row = OVERLAY[index];
        if same(row.name, name) {
            if let Some(class) = row.class {
                policy.class = class;
            }
            if let Some(proxy) = row.proxy {
                policy.proxy = proxy;
            }
            if let Some(cluster) = row.cluster {
                policy.cluster = cluster;
            }
        }
        index += 1;
    }
    policy
}

/// The class from Redis's own metadata. The order matters: a command's most specific
/// trait wins (BLPOP is a write, but what matters to policy is that it blocks; CLIENT KILL is
/// a connection command, but what matters is that it is administrative).
pub(super) const fn default_class(flags: F, acl: A) -> C {
    if acl.contains(A::PUBSUB) {
        C::PubSub
    } else if acl.contains(A::TRANSACTION) {
        C::Transaction
    } else if acl.contains(A::SCRIPTING) {
        C::Scripting
    } else if flags.contains(F::BLOCKING) {
        C::Blocking
    } else if flags.contains(F::ADMIN) {
        C::Admin
    } else if acl.contains(A::CONNECTION) {
        C::Connection
    } else if flags.contains(F::WRITE) {
        C::Write
    } else if flags.contains(F::READONLY) {
        C::Read
    } else {
        // What is left are server queries without data access (INFO, CONFIG GET, LATENCY,
        // CLUSTER INFO, ...), which policy treats as administrative.
        C::Admin
    }
}

/// Blocking commands (BLPOP, BZPOPMIN, BLMOVE, ...) would stall every client sharing the
/// backend connection, so by default they get a dedicated one.
const fn default_proxy(flags: F, _class: C) -> P {
    if flags.contains(F::BLOCKING) {
        P::Dedicated
    } else {
        P::Forward
    }
}

const fn same(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    let mut index = 0;
    while index < a.len() {
        if a[index] != b[index] {
            return false;
        }
        index += 1;
    }
    true
}
