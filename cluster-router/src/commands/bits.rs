//! Small named bit sets for the command table (command flags, ACL categories, key-spec flags
//! and command tips).
//!
//! They are hand-rolled instead of pulling in the `bitflags` crate because the table needs
//! only `of`, `contains` and a readable `Debug`, all usable in `const` context.

/// Defines a `Copy` bit-set newtype with one constant per Redis name.
macro_rules! bit_set {
    (
        $(#[$meta:meta])*
        pub struct $name:ident($repr:ty) {
            $($(#[$flag_meta:meta])* $flag:ident = $bit:literal, $text:literal;)*
        }
    ) => {
        $(#[$meta])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
        pub struct $name($repr);

        impl $name {
            $($(#[$flag_meta])* pub const $flag: $name = $name(1 << $bit);)*

            /// Every constant with its Redis spelling, in bit order.
            pub const ALL: &'static [($name, &'static str)] = &[$(($name::$flag, $text)),*];

            /// The empty set.
            pub const fn empty() -> $name {
                $name(0)
            }

            /// The union of all the given sets (usable in `const` context).
            pub const fn of(items: &[$name]) -> $name {
                let mut bits = 0;
                let mut index = 0;
                while index < items.len() {
                    bits |= items[index].0;
                    index += 1;
                }
                $name(bits)
            }

            /// Whether every bit of `other` is set in `self`.
            pub const fn contains(self, other: $name) -> bool {
                self.0 & other.0 == other.0
            }

            /// Whether any bit of `other` is set in `self`.
            pub const fn intersects(self, other: $name) -> bool {
                self.0 & other.0 != 0
            }

            /// Whether no bit is set.
            pub const fn is_empty(self) -> bool {
                self.0 == 0
            }

            /// The Redis names of the bits that are set, in bit order.
            pub fn names(self) -> impl Iterator<Item = &'static str> {
                Self::ALL
                    .iter()
                    .filter(move |(flag, _)| self.contains(*flag))
                    .map(|(_, text)| *text)
            }
        }

        impl std::fmt::Debug for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.debug_set().entries(self.names()).finish()
            }
        }
    };
}

bit_set! {
    /// Command flags as reported by `COMMAND INFO` (the third field).
    pub struct CommandFlags(u32) {
        /// The command may modify data.
        WRITE = 0, "write";
        /// The command only reads data.
        READONLY = 1, "readonly";
        /// The command may use more memory and is refused when over `maxmemory`.
        DENYOOM = 2, "denyoom";
        /// The command comes from a module.
        MODULE = 3, "module";
        /// An administrative command.
        ADMIN = 4, "admin";
        /// A pub/sub command.
        PUBSUB = 5, "pubsub";
        /// Not allowed inside scripts.
        NOSCRIPT = 6, "noscript";
        /// The command may block the connection.
        BLOCKING = 7, "blocking";
        /// Allowed while the server loads its data set.
        LOADING = 8, "loading";
        /// Allowed on a replica with stale data.
        STALE = 9, "stale";
        /// Not shown to MONITOR.
        SKIP_MONITOR = 10, "skip_monitor";
        /// Not shown in the slow log.
        SKIP_SLOWLOG = 11, "skip_slowlog";
        /// Allowed on an importing slot after ASKING.
        ASKING = 12, "asking";
        /// A fast (O(1) or O(log N)) command.
        FAST = 13, "fast";
        /// Allowed before authentication.
        NO_AUTH = 14, "no_auth";
        /// The command may be replicated.
        MAY_REPLICATE = 15, "may_replicate";
        /// The command may legitimately have no keys.
        NO_MANDATORY_KEYS = 16, "no_mandatory_keys";
        /// Protected (disabled by default in the config).
        PROTECTED = 17, "protected";
        /// Refused during asynchronous loading.
        NO_ASYNC_LOADING = 18, "no_async_loading";
        /// Not allowed inside MULTI.
        NO_MULTI = 19, "no_multi";
        /// The key positions depend on the arguments.
        MOVABLEKEYS = 20, "movablekeys";
        /// Allowed while a script is busy.
        ALLOW_BUSY = 21, "allow_busy";
        /// A sentinel command.
        SENTINEL = 22, "sentinel";
        /// A sentinel-only command.
        ONLY_SENTINEL = 23, "only_sentinel";
        /// A module command with a key-extraction callback.
        MODULE_GETKEYS = 24, "module_getkeys";
        /// A module command that refuses cluster mode.
        MODULE_NO_CLUSTER = 25, "module_no_cluster";
        /// The command may touch keys it does not name.
        TOUCHES_ARBITRARY_KEYS = 26, "touches_arbitrary_keys";
    }
}

bit_set! {
    /// ACL categories as reported by `COMMAND INFO` (the seventh field), without the `@`.
    pub struct AclCategories(u32) {
        /// `@keyspace`.
        KEYSPACE = 0, "keyspace";
        /// `@read`.
        READ = 1, "read";
        /// `@write`.
        WRITE = 2, "write";
        /// `@set`.
        SET = 3, "set";
        /// `@sortedset`.
        SORTEDSET = 4, "sortedset";
        /// `@list`.
        LIST = 5, "list";
        /// `@hash`.
        HASH = 6, "hash";
        /// `@string`.
        STRING = 7, "string";
        /// `@bitmap`.
        BITMAP = 8, "bitmap";
        /// `@hyperloglog`.
        HYPERLOGLOG = 9, "hyperloglog";
        /// `@geo`.
        GEO = 10, "geo";
        /// `@stream`.
        STREAM = 11, "stream";
        /// `@pubsub`.
        PUBSUB = 12, "pubsub";
        /// `@admin`.
        ADMIN = 13, "admin";
        /// `@fast`.
        FAST = 14, "fast";
        /// `@slow`.
        SLOW = 15, "slow";
        /// `@blocking`.
        BLOCKING = 16, "blocking";
        /// `@dangerous`.
        DANGEROUS = 17, "dangerous";
        /// `@connection`.
        CONNECTION = 18, "connection";
        /// `@transaction`.
        TRANSACTION = 19, "transaction";
        /// `@scripting`.
        SCRIPTING = 20, "scripting";
    }
}

bit_set! {
    /// Key-spec flags (how the command uses the keys a key spec finds).
    pub struct KeySpecFlags(u16) {
        /// Read-only access.
        RO = 0, "RO";
        /// Read-write access.
        RW = 1, "RW";
        /// Overwrite.
        OW = 2, "OW";
        /// Remove.
        RM = 3, "RM";
        /// The value is returned or copied.
        ACCESS = 4, "access";
        /// The value is updated.
        UPDATE = 5, "update";
        /// Data is inserted.
        INSERT = 6, "insert";
        /// Data is deleted.
        DELETE = 7, "delete";
        /// Not a key but hashed like one (shard channels).
        NOT_KEY = 8, "not_key";
        /// The spec may miss keys; Redis then falls back to a custom key finder.
        INCOMPLETE = 9, "incomplete";
        /// The flags depend on the arguments.
        VARIABLE_FLAGS = 10, "variable_flags";
    }
}

bit_set! {
    /// Command tips (`COMMAND INFO` field 8) that the proxy can use.
    pub struct Tips(u16) {
        /// The reply is not deterministic.
        NONDETERMINISTIC_OUTPUT = 0, "nondeterministic_output";
        /// The reply order is not deterministic.
        NONDETERMINISTIC_OUTPUT_ORDER = 1, "nondeterministic_output_order";
        /// Clients should send it to all nodes.
        REQUEST_ALL_NODES = 2, "request_policy:all_nodes";
        /// Clients should send it to all masters.
        REQUEST_ALL_SHARDS = 3, "request_policy:all_shards";
        /// Clients may split it by key.
        REQUEST_MULTI_SHARD = 4, "request_policy:multi_shard";
        /// Needs special request handling.
        REQUEST_SPECIAL = 5, "request_policy:special";
        /// One success is enough.
        RESPONSE_ONE_SUCCEEDED = 6, "response_policy:one_succeeded";
        /// All parts must succeed.
        RESPONSE_ALL_SUCCEEDED = 7, "response_policy:all_succeeded";
        /// Logical AND of the replies.
        RESPONSE_AGG_LOGICAL_AND = 8, "response_policy:agg_logical_and";
        /// Logical OR of the replies.
        RESPONSE_AGG_LOGICAL_OR = 9, "response_policy:agg_logical_or";
        /// Minimum of the replies.
        RESPONSE_AGG_MIN = 10, "response_policy:agg_min";
        /// Maximum of the replies.
        RESPONSE_AGG_MAX = 11, "response_policy:agg_max";
        /// Sum of the replies.
        RESPONSE_AGG_SUM = 12, "response_policy:agg_sum";
        /// Needs special response handling.
        RESPONSE_SPECIAL = 13, "response_policy:special";
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn of_contains_and_debug_use_redis_names() {
        let flags = CommandFlags::of(&[CommandFlags::WRITE, CommandFlags::FAST]);
        assert!(flags.contains(CommandFlags::WRITE));
        assert!(!flags.contains(CommandFlags::READONLY));
        assert!(flags.intersects(CommandFlags::of(&[
            CommandFlags::READONLY,
            CommandFlags::FAST
        ])));
        assert_eq!(format!("{flags:?}"), r#"{"write", "fast"}"#);
        assert!(CommandFlags::empty().is_empty());
    }
}
