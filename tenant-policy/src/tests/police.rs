//! `police`: the one entry point, in the order the proxy relies on (auth, rights, size,
//! traffic, rewrite), for Redis commands and for commands outside the table (Kafka's).

use std::num::{NonZeroU32, NonZeroUsize};

use bytes::Bytes;

use super::{config, spec, tenant};
use crate::{police, LimitKind, OverLimit, Policed, PolicyError, Tenant, Verdict};

fn redis<'a>(args: &'a [&'a str], over_limit: OverLimit) -> Policed<'a, [&'a str]> {
    Policed {
        spec: Some(spec(args)),
        args,
        pool: "main",
        size: args.iter().map(|arg| arg.len() + 8).sum(),
        over_limit,
    }
}

fn kafka<'a>(args: &'a [&'a str], size: usize) -> Policed<'a, [&'a str]> {
    Policed {
        spec: None,
        args,
        pool: "main",
        size,
        over_limit: OverLimit::Wait,
    }
}

fn over_ops(tenant: &Tenant) -> Verdict {
    Verdict::Refuse(PolicyError::OverLimit {
        tenant: tenant.name().to_owned(),
        limit: LimitKind::OpsPerSec,
    })
}

#[test]
fn before_auth_only_the_auth_commands_pass_and_kafka_commands_do_not() {
    assert_eq!(
        police(None, redis(&["PING"], OverLimit::Wait)),
        Verdict::Proceed
    );
    assert_eq!(
        police(None, redis(&["AUTH", "pw"], OverLimit::Wait)),
        Verdict::Proceed
    );
    assert_eq!(
        police(None, redis(&["GET", "k"], OverLimit::Wait)),
        Verdict::Refuse(PolicyError::NoAuth)
    );
    assert_eq!(
        police(None, kafka(&["KPUSH", "t", "v"], 30)),
        Verdict::Refuse(PolicyError::NoAuth)
    );
}

#[test]
fn rights_are_checked_before_anything_is_charged() {
    let mut readonly = config("ro");
    readonly.readonly = true;
    readonly.ops_per_sec = NonZeroU32::new(1);
    readonly.limit_wait_ms = 0;
    let ro = tenant("ro", readonly);
    for _ in 0..3 {
        let Verdict::Refuse(PolicyError::ReadOnly { command, .. }) =
            police(Some(&ro), redis(&["SET", "k", "v"], OverLimit::Wait))
        else {
            panic!("a read-only tenant may not SET");
        };
        assert_eq!(command, "set");
    }
    // The refusals did not use the one op a second.
    assert_eq!(
        police(Some(&ro), redis(&["GET", "k"], OverLimit::Wait)),
        Verdict::Proceed
    );
    assert_eq!(
        police(Some(&ro), redis(&["GET", "k"], OverLimit::Wait)),
        over_ops(&ro)
    );
}

#[test]
fn info_passes_for_non_admins_who_get_the_proxys_own_and_other_admin_commands_do_not() {
    let user = tenant("user", config("user"));
    assert_eq!(
        police(Some(&user), redis(&["INFO"], OverLimit::Wait)),
        Verdict::Proceed
    );
    assert!(matches!(
        police(Some(&user), redis(&["FLUSHALL"], OverLimit::Wait)),
        Verdict::Refuse(PolicyError::AdminOnly { .. })
    ));
}

#[test]
fn size_is_checked_for_redis_and_kafka_commands_alike() {
    let mut limited = config("small");
    limited.max_request_bytes = NonZeroUsize::new(20);
    let small = tenant("small", limited);
    assert_eq!(
        police(Some(&small), kafka(&["KPUSH", "t", "v"], 20)),
        Verdict::Proceed
    );
    let refused = police(Some(&small), kafka(&["KPUSH", "t", "v"], 21));
    let Verdict::Refuse(error) = refused else {
        panic!("21 bytes are over 20");
    };
    assert_eq!(
        error.to_string(),
        "ERR request of 21 bytes is over tenant 'small' limit of 20 bytes"
    );
    assert!(matches!(
        police(
            Some(&small),
            redis(&["SET", "key", "a long value"], OverLimit::Wait)
        ),
        Verdict::Refuse(PolicyError::RequestTooLarge { .. })
    ));
}

#[test]
fn over_a_limit_a_request_waits_or_is_refused_with_the_limits_name() {
    let mut limited = config("slow");
    limited.ops_per_sec = NonZeroU32::new(1);
    let slow = tenant("slow", limited);
    assert_eq!(
        police(Some(&slow), kafka(&["KPOP", "t"], 10)),
        Verdict::Proceed
    );
    let Verdict::Wait(wait) = police(Some(&slow), kafka(&["KPOP", "t"], 10)) else {
        panic!("the second op of the second waits (limit_wait_ms defaults to a second)");
    };
    assert!(wait.as_millis() > 0 && wait.as_millis() <= 1000, "{wait:?}");
    let refused = police(Some(&slow), redis(&["GET", "k"], OverLimit::Refuse));
    assert_eq!(refused, over_ops(&slow));
    let Verdict::Refuse(error) = refused else {
        unreachable!()
    };
    assert_eq!(
        error.to_string(),
        "ERR tenant 'slow' is over its ops_per_sec limit"
    );
}

#[test]
fn admitted_requests_are_rewritten_but_kafka_commands_are_not() {
    let mut prefixed = config("app");
    prefixed.key_prefix = Some("app:".to_owned());
    let app = tenant("app", prefixed);
    assert_eq!(
        police(Some(&app), redis(&["MGET", "a", "b"], OverLimit::Wait)),
        Verdict::Rewritten(vec![
            Bytes::from("MGET"),
            Bytes::from("app:a"),
            Bytes::from("app:b")
        ])
    );
    assert_eq!(
        police(Some(&app), redis(&["PING"], OverLimit::Wait)),
        Verdict::Proceed
    );
    assert_eq!(
        police(Some(&app), kafka(&["KPUSH", "a", "v"], 30)),
        Verdict::Proceed
    );
}
