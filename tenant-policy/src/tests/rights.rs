//! Rights: before-auth commands, read-only and admin tenants, SELECT, USE, isolation refusals.

use cluster_router::commands::{added_commands, all_commands, CommandFlags, KeySpecFlags};
use cluster_router::CommandSpec;

use super::{build, config, spec, tenant};
use crate::tenant::{is_admin_command, may_write};
use crate::{allowed_before_auth, DbSetting, PolicyError, KEYLESS_COMMANDS_FOR_TENANTS};

pub(super) use crate::testing::every_spec;

#[test]
fn only_five_commands_work_before_auth() {
    let allowed: Vec<_> = every_spec()
        .into_iter()
        .filter(|spec| allowed_before_auth(spec))
        .map(|spec| spec.name)
        .collect();
    assert_eq!(allowed, ["auth", "echo", "hello", "ping", "quit"]);
    assert_eq!(
        &PolicyError::NoAuth.to_reply()[..],
        b"-NOAUTH Authentication required.\r\n"
    );
}

#[test]
fn readonly_tenant_is_refused_every_write_with_its_name_in_the_error() {
    let mut readonly = config("ro");
    readonly.readonly = true;
    readonly.admin = true;
    let ro = tenant("ro", readonly);
    let no_args: &[&[u8]] = &[];
    let mut refused = 0;
    for spec in every_spec() {
        let result = ro.authorize(spec, &no_args);
        let writes = spec.flags.contains(CommandFlags::WRITE)
            || ["eval", "evalsha", "fcall"].contains(&spec.name);
        if writes {
            refused += 1;
            assert_eq!(
                result.unwrap_err().to_string(),
                format!(
                    "NOPERM this user has no permissions to run the '{}' command (tenant 'ro' is \
                     read-only)",
                    spec.name
                )
            );
        } else {
            assert!(result.is_ok(), "{}: {result:?}", spec.name);
        }
    }
    assert!(refused > 90, "only {refused} writes found");
    for name in [
        "get",
        "eval_ro",
        "fcall_ro",
        "sort_ro",
        "georadius_ro",
        "xread",
        "publish",
    ] {
        assert!(!may_write(spec_named(name)), "{name}");
    }
    for name in [
        "set",
        "sort",
        "georadius",
        "xreadgroup",
        "eval",
        "blpop",
        "function|load",
    ] {
        assert!(may_write(spec_named(name)), "{name}");
    }
}

fn spec_named(name: &str) -> &'static CommandSpec {
    every_spec()
        .into_iter()
        .find(|spec| spec.name == name)
        .unwrap_or_else(|| panic!("no command {name}"))
}

#[test]
fn admin_commands_are_refused_to_other_tenants() {
    let user = tenant("user", config("user"));
    let mut admin_config = config("root");
    admin_config.admin = true;
    let admin = tenant("root", admin_config);
    let no_args: &[&[u8]] = &[];
    for name in [
        "config|get",
        "config|set",
        "info",
        "flushall",
        "flushdb",
        "shutdown",
        "debug",
        "monitor",
        "save",
        "bgsave",
        "lastsave",
        "slowlog|get",
        "latency|latest",
        "client|list",
        "client|kill",
        "acl|list",
        "swapdb",
        "migrate",
        "restore",
        "cluster|nodes",
        "role",
        "script|flush",
        "function|flush",
        "module|list",
        "memory|stats",
        "replicaof",
    ] {
        let spec = spec_named(name);
        assert!(is_admin_command(spec), "{name} should be admin-only");
        assert_eq!(
            user.authorize(spec, &no_args).unwrap_err().to_string(),
            format!(
                "NOPERM this user has no permissions to run the '{name}' command (tenant 'user' \
                 is not an admin)"
            )
        );
        assert!(
            admin.authorize(spec, &no_args).is_ok(),
            "{name} for an admin"
        );
    }
    for name in [
        "get",
        "set",
        "keys",
        "sort",
        "scan",
        "dbsize",
        "time",
        "ping",
        "echo",
        "select",
        "command|docs",
        "command|count",
        "client|setname",
        "eval",
        "script|load",
        "publish",
        "subscribe",
        "multi",
        "exec",
        "object|encoding",
        "memory|usage",
        "xinfo|stream",
    ] {
        assert!(
            !is_admin_command(spec_named(name)),
            "{name} should be for everyone"
        );
    }
    // Proxy admin commands (RELOAD, SHOW) are not in the table.
    assert_eq!(
        user.may_run_proxy_admin(b"RELOAD").unwrap_err().to_string(),
        "NOPERM this user has no permissions to run the 'reload' command (tenant 'user' is not \
         an admin)"
    );
    assert!(admin.may_run_proxy_admin(b"RELOAD").is_ok());
}

#[test]
fn isolation_refusals_randomkey_move_copy_db() {
    let mut prefixed = config("p");
    prefixed.key_prefix = Some("p:".to_owned());
    prefixed.db = Some(DbSetting::Number(2));
    let p = tenant("p", prefixed);
    let refuse = |args: &[&str]| p.authorize(spec(args), &args).map_err(|e| e.to_string());
    assert_eq!(
        refuse(&["RANDOMKEY"]).unwrap_err(),
        "NOPERM this user has no permissions to run the 'randomkey' command (tenant 'p' has a \
         key prefix and RANDOMKEY would pick any tenant's key; use SCAN)"
    );
    assert!(refuse(&["MOVE", "k", "3"])
        .unwrap_err()
        .contains("another database"));
    assert!(refuse(&["COPY", "a", "b", "DB", "3"])
        .unwrap_err()
        .contains("another database"));
    assert!(refuse(&["COPY", "a", "b", "db", "2", "REPLACE"]).is_ok());
    assert!(refuse(&["COPY", "a", "b"]).is_ok());
    assert_eq!(
        refuse(&["DBSIZE"]).unwrap_err(),
        "NOPERM this user has no permissions to run the 'dbsize' command (tenant 'p' has a key \
         prefix and DBSIZE would count every tenant's keys; use SCAN)"
    );
    assert_eq!(
        refuse(&["PUBSUB", "NUMPAT"]).unwrap_err(),
        "NOPERM this user has no permissions to run the 'pubsub|numpat' command (tenant 'p' has a \
         key prefix and PUBSUB NUMPAT would count every tenant's patterns)"
    );
    // Without a prefix they are harmless: the tenant's own database, or no isolation to keep.
    let plain = tenant("q", config("q"));
    for args in [&["RANDOMKEY"][..], &["DBSIZE"], &["PUBSUB", "NUMPAT"]] {
        assert!(plain.authorize(spec(args), &args).is_ok(), "{args:?}");
    }
}

/// Every command the table can return for a request: commands, subcommands, the containers that run bare
/// (COMMAND) and the hand-written additions (CLIENT SETINFO).
fn every_lookup_target() -> Vec<&'static CommandSpec> {
    let mut specs = every_spec();
    specs.extend(
        all_commands()
            .iter()
            .filter(|spec| spec.is_container() && spec.arity_accepts(1)),
    );
    specs.extend(added_commands());
    specs
}

fn takes_keys(spec: &CommandSpec) -> bool {
    spec.key_specs
        .iter()
        .any(|key_spec| !key_spec.flags.contains(KeySpecFlags::NOT_KEY))
}

#[test]
fn keyless_commands_are_for_admins_unless_listed_with_a_reason() {
    let names: Vec<&str> = KEYLESS_COMMANDS_FOR_TENANTS
        .iter()
        .map(|(name, _)| *name)
        .collect();
    let mut sorted = names.clone();
    sorted.sort_unstable();
    sorted.dedup();
    assert_eq!(
        names, sorted,
        "the list is sorted (binary search) without duplicates"
    );
    let targets = every_lookup_target();
    for (name, reason) in KEYLESS_COMMANDS_FOR_TENANTS {
        let spec = targets
            .iter()
            .find(|spec| spec.name == *name)
            .unwrap_or_else(|| panic!("{name} is not in the command table"));
        assert!(!takes_keys(spec), "{name} takes keys: it needs no listing");
        assert!(reason.len() > 10, "{name} has no reason");
    }
    let user = tenant("user", config("user"));
    let mut admin_config = config("root");
    admin_config.admin = true;
    let admin = tenant("root", admin_config);
    let no_args: &[&[u8]] = &[];
    let mut for_tenants = Vec::new();
    for spec in targets.into_iter().filter(|spec| !takes_keys(spec)) {
        if user.authorize(spec, &no_args).is_ok() {
            for_tenants.push(spec.name);
        } else {
            assert!(
                admin.authorize(spec, &no_args).is_ok(),
                "{} for an admin",
                spec.name
            );
        }
    }
    // INFO and SLOWLOG are refused by `authorize` and answered by the proxy itself (`police` lets them through).
    let listed_without_those: Vec<&str> = names
        .into_iter()
        .filter(|name| !crate::ANSWERED_BY_THE_PROXY_FOR_NON_ADMINS.contains(name))
        .collect();
    for_tenants.sort_unstable();
    assert_eq!(for_tenants, listed_without_those);
    // Commands a newer table might add are refused until listed: WAIT (the proxy cannot serve it either).
    assert!(user.authorize(spec(&["WAIT", "0", "0"]), &no_args).is_err());
}

#[test]
fn select_rules() {
    let mut fixed = config("fixed");
    fixed.db = Some(DbSetting::Number(5));
    let mut admin = config("admin");
    admin.admin = true;
    let tenants = build(vec![
        ("fixed", fixed),
        ("free", config("free")),
        ("admin", admin),
    ]);
    let fixed = tenants.get("fixed").unwrap();
    let free = tenants.get("free").unwrap();
    let admin = tenants.get("admin").unwrap();

    assert_eq!(fixed.check_select("main", b"5"), Ok(5));
    assert_eq!(
        fixed.check_select("main", b"0").unwrap_err().to_string(),
        "ERR SELECT 0 is not allowed: tenant 'fixed' works in db 5"
    );
    assert_eq!(free.check_select("main", b"0"), Ok(0));
    assert_eq!(free.check_select("main", b"6"), Ok(6));
    assert_eq!(
        free.check_select("main", b"5").unwrap_err().to_string(),
        "ERR SELECT 5 is not allowed: db 5 of pool 'main' is reserved for another tenant"
    );
    // "other" has no claimed databases.
    assert_eq!(free.check_select("other", b"5"), Ok(5));
    assert_eq!(admin.check_select("main", b"5"), Ok(5));
    for bad in [&b"x"[..], b"", b"1.5"] {
        assert_eq!(
            free.check_select("main", bad),
            Err(PolicyError::NotAnInteger)
        );
    }
    for out in [&b"16"[..], b"-1", b"99999999999"] {
        assert_eq!(
            admin.check_select("main", out),
            Err(PolicyError::DbOutOfRange)
        );
    }
    assert_eq!(
        admin.check_select("cluster", b"1"),
        Err(PolicyError::DbOutOfRange)
    );
}

#[test]
fn use_pool_rules() {
    let mut roaming = config("roaming");
    roaming.pools = vec!["other".to_owned()];
    let mut admin = config("admin");
    admin.admin = true;
    let tenants = build(vec![
        ("roaming", roaming),
        ("home", config("home")),
        ("admin", admin),
    ]);
    let get = |name| tenants.get(name).unwrap();
    assert!(get("roaming").may_use_pool("main").is_ok());
    assert!(get("roaming").may_use_pool("other").is_ok());
    assert!(get("home").may_use_pool("main").is_ok());
    assert_eq!(
        get("home").may_use_pool("other").unwrap_err().to_string(),
        "NOPERM tenant 'home' may not use pool 'other'"
    );
    assert!(get("admin").may_use_pool("cluster").is_ok());
}
