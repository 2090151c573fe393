//! Scripts and functions on a pool shared between tenants: refused for non-admins, allowed for
//! admins and for a tenant alone on its pool.

use super::{build, config, spec};
use crate::tenant::is_script_command;
use crate::testing::every_spec;
use crate::{police, OverLimit, Policed, PolicyError, Tenants, Verdict};

/// Tenants `a` and `b` (prefixed) and the admin `boss` on `main`; `solo` alone on `other`;
/// `roamer` alone on `cluster`, which may also USE `main`.
fn shared() -> Tenants {
    let mut a = config("a");
    a.key_prefix = Some("a:".to_owned());
    let mut b = config("b");
    b.key_prefix = Some("b:".to_owned());
    let mut boss = config("boss");
    boss.admin = true;
    let mut solo = config("solo");
    solo.pool = "other".to_owned();
    let mut roamer = config("roamer");
    roamer.pool = "cluster".to_owned();
    roamer.pools = vec!["main".to_owned()];
    roamer.key_prefix = Some("r:".to_owned());
    build(vec![
        ("a", a),
        ("b", b),
        ("boss", boss),
        ("solo", solo),
        ("roamer", roamer),
    ])
}

fn police_on(tenants: &Tenants, name: &str, pool: &str, args: &[&str]) -> Verdict {
    let tenant = tenants.get(name).map(|tenant| &**tenant);
    police(
        tenant,
        Policed {
            spec: Some(spec(args)),
            args,
            pool,
            size: 64,
            over_limit: OverLimit::Refuse,
        },
    )
}

fn refused_on_shared_pool(tenant: &str, command: &'static str, pool: &str) -> Verdict {
    Verdict::Refuse(PolicyError::ScriptsOnSharedPool {
        tenant: tenant.to_owned(),
        command,
        pool: pool.to_owned(),
    })
}

#[test]
fn the_scripting_commands_are_the_eval_fcall_script_and_function_families() {
    let mut names: Vec<_> = every_spec()
        .into_iter()
        .filter(|spec| is_script_command(spec))
        .map(|spec| spec.name)
        .collect();
    names.sort_unstable();
    for name in &names {
        let family = name.starts_with("eval")
            || name.starts_with("fcall")
            || name.starts_with("script|")
            || name.starts_with("function|");
        assert!(family, "{name} is not a script command");
    }
    for expected in [
        "eval",
        "eval_ro",
        "evalsha",
        "evalsha_ro",
        "fcall",
        "fcall_ro",
        "script|load",
        "script|exists",
        "script|flush",
        "script|kill",
        "function|load",
        "function|list",
        "function|dump",
        "function|restore",
        "function|delete",
        "function|flush",
        "function|stats",
    ] {
        assert!(
            names.contains(&expected),
            "{expected} missing from {names:?}"
        );
    }
}

#[test]
fn a_tenant_sharing_its_pool_is_refused_every_script_command_with_why_and_what_to_do() {
    let tenants = shared();
    let a = tenants.get("a").unwrap();
    let mut refused = 0;
    for spec in every_spec() {
        let result = a.check_scripts(spec, "main");
        if is_script_command(spec) {
            refused += 1;
            let error = result.unwrap_err();
            assert_eq!(
                error,
                PolicyError::ScriptsOnSharedPool {
                    tenant: "a".to_owned(),
                    command: spec.name,
                    pool: "main".to_owned(),
                }
            );
            let text = error.to_string();
            assert!(text.starts_with("NOPERM "), "{text}");
            assert!(
                text.contains("shares pool 'main' with other tenants"),
                "{text}"
            );
            assert!(text.contains("a pool of its own"), "{text}");
        } else {
            assert_eq!(result, Ok(()), "{}", spec.name);
        }
    }
    assert!(refused >= 17, "{refused}");
}

#[test]
fn police_refuses_scripts_on_a_shared_pool_whatever_the_tenant_or_its_prefix() {
    let tenants = shared();
    for tenant in ["a", "b"] {
        for (args, name) in [
            (&["EVAL", "return 1", "0"][..], "eval"),
            (&["EVAL_RO", "return 1", "0"][..], "eval_ro"),
            (
                &["EVALSHA", "e0e1f9fabfc9d4800c877a703b823ac0578ff831", "0"][..],
                "evalsha",
            ),
            (&["FCALL_RO", "f", "0"][..], "fcall_ro"),
            (&["SCRIPT", "LOAD", "return 1"][..], "script|load"),
            (&["FUNCTION", "LIST", "WITHCODE"][..], "function|list"),
            (&["FUNCTION", "DUMP"][..], "function|dump"),
            (
                &["FUNCTION", "LOAD", "REPLACE", "#!lua name=x\n"][..],
                "function|load",
            ),
        ] {
            assert_eq!(
                police_on(&tenants, tenant, "main", args),
                refused_on_shared_pool(tenant, name, "main"),
                "{tenant} {args:?}"
            );
        }
        // Other commands pass (and are prefixed as before).
        assert!(matches!(
            police_on(&tenants, tenant, "main", &["GET", "k"]),
            Verdict::Rewritten(_)
        ));
    }
    // SCRIPT FLUSH and FUNCTION FLUSH stay admin-only, with the admin-only text.
    assert!(matches!(
        police_on(&tenants, "a", "main", &["FUNCTION", "FLUSH"]),
        Verdict::Refuse(PolicyError::AdminOnly { .. })
    ));
}

#[test]
fn admins_may_run_scripts_and_manage_functions_on_a_shared_pool() {
    let tenants = shared();
    for args in [
        &["EVAL", "return 1", "0"][..],
        &["FUNCTION", "LOAD", "REPLACE", "#!lua name=x\n"][..],
        &["FUNCTION", "FLUSH"][..],
        &["FUNCTION", "DUMP"][..],
        &["SCRIPT", "FLUSH"][..],
    ] {
        assert_eq!(
            police_on(&tenants, "boss", "main", args),
            Verdict::Proceed,
            "{args:?}"
        );
    }
}

#[test]
fn a_tenant_alone_on_its_pool_keeps_scripts_and_the_pool_decides_not_the_tenant() {
    let tenants = shared();
    assert_eq!(
        police_on(
            &tenants,
            "solo",
            "other",
            &["FUNCTION", "LOAD", "#!lua name=x\n"]
        ),
        Verdict::Proceed
    );
    assert_eq!(
        police_on(&tenants, "solo", "other", &["EVAL", "return 1", "0"]),
        Verdict::Proceed
    );
    // Alone on `cluster`, but on `main` (which it may USE) it shares the pool.
    assert_eq!(
        police_on(&tenants, "roamer", "cluster", &["EVAL", "return 1", "0"]),
        Verdict::Proceed
    );
    assert_eq!(
        police_on(&tenants, "roamer", "main", &["EVAL", "return 1", "0"]),
        refused_on_shared_pool("roamer", "eval", "main")
    );
}

#[test]
fn a_tenant_that_may_use_a_pool_makes_it_shared() {
    let mut visitor = config("visitor");
    visitor.pool = "other".to_owned();
    visitor.pools = vec!["main".to_owned()];
    let tenants = build(vec![("home", config("home")), ("visitor", visitor)]);
    assert_eq!(
        police_on(&tenants, "home", "main", &["EVAL", "return 1", "0"]),
        refused_on_shared_pool("home", "eval", "main")
    );
    // Alone: scripts as before.
    let tenants = build(vec![("home", config("home"))]);
    assert_eq!(
        police_on(&tenants, "home", "main", &["EVAL", "return 1", "0"]),
        Verdict::Proceed
    );
}

#[test]
fn commands_outside_the_table_are_not_script_commands() {
    let tenants = shared();
    let kpush: &[&str] = &["KPUSH", "events", "x"];
    let verdict = police(
        tenants.get("a").map(|tenant| &**tenant),
        Policed {
            spec: None,
            args: kpush,
            pool: "main",
            size: 30,
            over_limit: OverLimit::Refuse,
        },
    );
    assert_eq!(verdict, Verdict::Proceed);
}

/// Channels are server-wide: a tenant with a db but no key prefix may not use pub/sub on a pool shared with
/// other tenants; a prefix (which prefixes channels), being alone on the pool, or being an admin lifts it.
#[test]
fn pubsub_needs_a_key_prefix_for_a_db_tenant_on_a_shared_pool() {
    let mut a = config("a");
    a.key_prefix = Some("a:".to_owned());
    let mut c = config("c");
    c.db = Some(crate::DbSetting::Number(3));
    let mut lone = config("lone");
    lone.db = Some(crate::DbSetting::Number(4));
    lone.pool = "other".to_owned();
    let mut boss = config("boss");
    boss.admin = true;
    boss.db = Some(crate::DbSetting::Number(5));
    let plain = config("plain");
    let tenants = build(vec![
        ("a", a),
        ("c", c),
        ("lone", lone),
        ("boss", boss),
        ("plain", plain),
    ]);
    let requests: [&[&str]; 5] = [
        &["SUBSCRIBE", "b:news"],
        &["PSUBSCRIBE", "*"],
        &["PUBLISH", "b:news", "x"],
        &["PUBSUB", "CHANNELS"],
        &["SSUBSCRIBE", "b:shard"],
    ];
    for args in requests {
        let command = spec(args).name;
        assert_eq!(
            police_on(&tenants, "c", "main", args),
            Verdict::Refuse(PolicyError::ChannelsWithoutPrefix {
                tenant: "c".to_owned(),
                command,
                pool: "main".to_owned(),
            }),
            "{args:?}"
        );
        for (name, pool) in [
            ("a", "main"),
            ("boss", "main"),
            ("plain", "main"),
            ("lone", "other"),
        ] {
            assert!(
                !matches!(police_on(&tenants, name, pool, args), Verdict::Refuse(_)),
                "{name} {args:?}"
            );
        }
    }
    assert_eq!(
        PolicyError::ChannelsWithoutPrefix {
            tenant: "c".to_owned(),
            command: "subscribe",
            pool: "main".to_owned(),
        }
        .to_string(),
        "NOPERM this user has no permissions to run the 'subscribe' command (tenant 'c' shares pool 'main' \
         with other tenants and has a db but no key prefix; pub/sub channels are server-wide, not per db, so \
         it would hear and reach every tenant's channels; give the tenant a key_prefix, which prefixes its \
         channels too)"
    );
    // Other commands are not concerned.
    assert!(!matches!(
        police_on(&tenants, "c", "main", &["GET", "k"]),
        Verdict::Refuse(_)
    ));
}

/// `a` and `b` (prefixed) on `main`, `a` with a Redis ACL user of its own.
fn shared_with_a_backend_user() -> Tenants {
    let mut a = config("a");
    a.key_prefix = Some("a:".to_owned());
    a.backend_user = Some("acl-a".to_owned());
    a.backend_password = Some("acl-a-pw".to_owned());
    let mut b = config("b");
    b.key_prefix = Some("b:".to_owned());
    build(vec![("a", a), ("b", b)])
}

#[test]
fn a_backend_user_lifts_the_script_refusal_on_a_shared_pool_but_not_for_functions() {
    let tenants = shared_with_a_backend_user();
    for args in [
        &["EVAL", "return 1", "0"][..],
        &["EVAL_RO", "return 1", "0"][..],
        &["EVALSHA", "e0e1f9fabfc9d4800c877a703b823ac0578ff831", "0"][..],
        &["FCALL", "f", "0"][..],
        &["FCALL_RO", "f", "0"][..],
        &["SCRIPT", "LOAD", "return 1"][..],
        &[
            "SCRIPT",
            "EXISTS",
            "e0e1f9fabfc9d4800c877a703b823ac0578ff831",
        ][..],
    ] {
        assert!(
            !matches!(police_on(&tenants, "a", "main", args), Verdict::Refuse(_)),
            "{args:?}"
        );
        // `b` has no ACL user: still refused.
        assert!(
            matches!(
                police_on(&tenants, "b", "main", args),
                Verdict::Refuse(PolicyError::ScriptsOnSharedPool { .. })
            ),
            "{args:?}"
        );
    }
    for (args, command) in [
        (
            &["FUNCTION", "LOAD", "REPLACE", "#!lua name=x\n"][..],
            "function|load",
        ),
        (&["FUNCTION", "LIST", "WITHCODE"][..], "function|list"),
        (&["FUNCTION", "DUMP"][..], "function|dump"),
        (&["FUNCTION", "STATS"][..], "function|stats"),
    ] {
        let verdict = police_on(&tenants, "a", "main", args);
        let expected = PolicyError::FunctionsOnSharedPool {
            tenant: "a".to_owned(),
            command,
            pool: "main".to_owned(),
        };
        assert_eq!(verdict, Verdict::Refuse(expected.clone()), "{args:?}");
        assert!(expected
            .to_string()
            .contains("FUNCTION is for admins there"));
    }
    // SCRIPT FLUSH / KILL and FUNCTION FLUSH / DELETE / RESTORE stay admin-only.
    for args in [
        &["SCRIPT", "FLUSH"][..],
        &["SCRIPT", "KILL"][..],
        &["FUNCTION", "FLUSH"][..],
        &["FUNCTION", "DELETE", "x"][..],
        &["FUNCTION", "RESTORE", "x"][..],
    ] {
        assert!(
            matches!(
                police_on(&tenants, "a", "main", args),
                Verdict::Refuse(PolicyError::AdminOnly { .. })
            ),
            "{args:?}"
        );
    }
}

#[test]
fn the_script_refusal_names_backend_user_as_the_way_out() {
    let text = PolicyError::ScriptsOnSharedPool {
        tenant: "a".to_owned(),
        command: "eval",
        pool: "main".to_owned(),
    }
    .to_string();
    assert!(text.contains("give the tenant a backend_user"), "{text}");
}
