//! Subcommands newer than the redis-server the generated table was read from, which client libraries send
//! at connect time whatever the server's version: Redis 7.2's `CLIENT SETINFO` (redis-py 5, Jedis 5,
//! go-redis 9, Lettuce 6.3 and node-redis 4.7 all send it). Hand-written from Redis 7.2's `COMMAND INFO`;
//! [`lookup`](super::lookup) finds them only after the generated table had no match, so the hot path does not
//! change.

use super::{spec, AclCategories as A, CommandFlags as F, CommandSpec, Tips as T};

/// The added subcommands, named `container|sub` like the generated ones.
pub(crate) static ADDED: [CommandSpec; 1] = [spec(
    "client|setinfo",
    -4,
    F::of(&[F::NOSCRIPT, F::LOADING, F::STALE]),
    A::of(&[A::SLOW, A::CONNECTION]),
    [0, 0, 0],
    &[],
    T::of(&[T::REQUEST_ALL_NODES, T::RESPONSE_ALL_SUCCEEDED]),
    &[],
)];

/// The added subcommand `sub` (any case) of `container` (lowercase), if there is one.
pub(super) fn find(container: &str, sub: &[u8]) -> Option<&'static CommandSpec> {
    ADDED.iter().find(|spec| {
        spec.name.split_once('|').is_some_and(|(owner, name)| {
            owner == container && name.as_bytes().eq_ignore_ascii_case(sub)
        })
    })
}
