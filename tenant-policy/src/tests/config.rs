//! Config parsing, validation, `db = "auto"` assignment and authentication.

use std::num::NonZeroU64;

use figment::providers::{Format, Toml};
use figment::Figment;

use super::{build, config, pools, spec, try_build};
use crate::{credentials, DbSetting, PolicyError, TenantConfig, Tenants, TenantsConfig};

#[derive(Debug, serde::Deserialize)]
struct Wrapper {
    tenants: TenantsConfig,
}

/// Parses TOML the way the proxy will; the error is its text.
fn parse(toml: &str) -> Result<TenantsConfig, String> {
    Figment::from(Toml::string(toml))
        .extract::<Wrapper>()
        .map(|wrapper| wrapper.tenants)
        .map_err(|error| error.to_string())
}

#[test]
fn full_tenant_table_parses() {
    let tenants = parse(
        r#"
        [tenants.app1]
        password = "sha256:5e884898da28047151d0e56f8dc6292773603d0d6aabbdd62a11ef721d1542d8"
        pool = "main"
        pools = ["other"]
        readonly = true
        admin = false
        db = "auto"
        key_prefix = "app1:"
        key_pattern = '^[a-z0-9:]+$'
        default_ttl = 3600
        max_connections = 10
        ops_per_sec = 100
        bytes_per_sec = 1000000
        max_request_bytes = 4096
        limit_wait_ms = 50

        [tenants.app2]
        password = "plain"
        pool = "main"
        db = 3
        "#,
    )
    .unwrap();
    let app1 = &tenants["app1"];
    assert_eq!(app1.db, Some(DbSetting::Auto));
    assert_eq!(app1.default_ttl, NonZeroU64::new(3600));
    assert_eq!(app1.limit_wait_ms, 50);
    assert_eq!(tenants["app2"].db, Some(DbSetting::Number(3)));
    assert_eq!(tenants["app2"].limit_wait_ms, crate::DEFAULT_LIMIT_WAIT_MS);

    let built = Tenants::new(&tenants, &pools()).unwrap();
    // "password" hashes to the configured sha256 digest.
    assert_eq!(
        built.authenticate(None, b"password").unwrap().name(),
        "app1"
    );
    assert_eq!(built.get("app1").unwrap().db(), Some(0));
}

#[test]
fn unknown_keys_and_bad_values_are_refused_by_serde() {
    let error =
        parse("[tenants.a]\npassword = 'x'\npool = 'main'\nkey_prefx = 'a:'\n").unwrap_err();
    assert!(error.contains("key_prefx"), "{error}");
    let error = parse("[tenants.a]\npassword = 'x'\npool = 'main'\nops_per_sec = 0\n").unwrap_err();
    assert!(error.contains("nonzero"), "{error}");
    let error = parse("[tenants.a]\npassword = 'x'\npool = 'main'\ndb = 'first'\n").unwrap_err();
    assert!(error.contains("database number or \"auto\""), "{error}");
    // Environment variables arrive as strings.
    let tenants = parse("[tenants.a]\npassword = 'x'\npool = 'main'\ndb = '7'\n").unwrap();
    assert_eq!(tenants["a"].db, Some(DbSetting::Number(7)));
}

#[test]
fn validation_errors_name_the_key() {
    let mut bad_regex = config("app1");
    bad_regex.key_pattern = Some("([a-z".to_owned());
    let error = try_build(vec![("app1", bad_regex)]).unwrap_err();
    assert_eq!(error.key, "tenants.app1.key_pattern");
    assert!(error
        .to_string()
        .starts_with("tenants.app1.key_pattern: invalid regex: "));

    let error = try_build(vec![("a", TenantConfig::new("x", "nope"))]).unwrap_err();
    assert_eq!(
        error.to_string(),
        "tenants.a.pool: pool 'nope' is not defined (defined: cluster, main, other)"
    );

    let mut bad_pools = config("a");
    bad_pools.pools = vec!["missing".to_owned()];
    assert_eq!(
        try_build(vec![("a", bad_pools)]).unwrap_err().key,
        "tenants.a.pools"
    );

    let error = try_build(vec![("a", TenantConfig::new("sha256:abc", "main"))]).unwrap_err();
    assert_eq!(error.key, "tenants.a.password");
    let error = try_build(vec![("a", TenantConfig::new("", "main"))]).unwrap_err();
    assert_eq!(error.key, "tenants.a.password");

    let mut empty_prefix = config("a");
    empty_prefix.key_prefix = Some(String::new());
    assert_eq!(
        try_build(vec![("a", empty_prefix)]).unwrap_err().key,
        "tenants.a.key_prefix"
    );

    let error = try_build(vec![("bad name", config("x"))]).unwrap_err();
    assert_eq!(error.key, "tenants.bad name");

    let mut db_too_big = config("a");
    db_too_big.db = Some(DbSetting::Number(16));
    assert_eq!(
        try_build(vec![("a", db_too_big)]).unwrap_err().key,
        "tenants.a.db"
    );
    let mut cluster_db = TenantConfig::new("x", "cluster");
    cluster_db.db = Some(DbSetting::Number(1));
    assert_eq!(
        try_build(vec![("a", cluster_db)]).unwrap_err().key,
        "tenants.a.db"
    );
}

#[test]
fn duplicate_passwords_are_refused_even_when_one_is_hashed() {
    let hashed = TenantConfig::new(
        "sha256:5e884898da28047151d0e56f8dc6292773603d0d6aabbdd62a11ef721d1542d8",
        "main",
    );
    let plain = TenantConfig::new("password", "main");
    let error = try_build(vec![("a", hashed), ("b", plain)]).unwrap_err();
    assert_eq!(error.key, "tenants.b.password");
    assert!(
        error.problem.contains("same password as tenant 'a'"),
        "{error}"
    );
    assert!(
        !error.to_string().contains("\"password\""),
        "the secret is not echoed"
    );
}

#[test]
fn nested_prefixes_in_a_shared_database_are_refused() {
    let mut a = config("a");
    a.key_prefix = Some("app:".to_owned());
    let mut b = config("b");
    b.key_prefix = Some("app:b:".to_owned());
    let error = try_build(vec![("a", a.clone()), ("b", b.clone())]).unwrap_err();
    assert_eq!(error.key, "tenants.b.key_prefix");
    assert!(error.problem.contains("tenant 'a'"), "{error}");

    // In different databases they cannot see each other.
    a.db = Some(DbSetting::Number(1));
    b.db = Some(DbSetting::Number(2));
    assert!(try_build(vec![("a", a), ("b", b)]).is_ok());
}

#[test]
fn auto_databases_are_deterministic_and_skip_fixed_ones() {
    let auto = |name: &str| {
        let mut config = config(name);
        config.db = Some(DbSetting::Auto);
        config
    };
    let mut fixed = config("fixed");
    fixed.db = Some(DbSetting::Number(1));
    let tenants = build(vec![
        ("zeta", auto("zeta")),
        ("alpha", auto("alpha")),
        ("fixed", fixed.clone()),
        ("mid", auto("mid")),
    ]);
    let db = |name: &str| tenants.get(name).unwrap().db();
    assert_eq!(
        (db("alpha"), db("mid"), db("zeta")),
        (Some(0), Some(2), Some(3))
    );
    assert_eq!(db("fixed"), Some(1));
    assert!(tenants.get("alpha").unwrap().db_is_auto());
    let listed: Vec<_> = tenants
        .db_assignments()
        .iter()
        .map(|a| (a.tenant.as_str(), a.db, a.auto))
        .collect();
    assert_eq!(
        listed,
        [
            ("alpha", 0, true),
            ("fixed", 1, false),
            ("mid", 2, true),
            ("zeta", 3, true)
        ]
    );

    // The same configuration gives the same assignment; a new tenant sorting first moves the
    // others, and auto_db_changes reports it.
    let again = build(vec![
        ("alpha", auto("alpha")),
        ("fixed", fixed.clone()),
        ("mid", auto("mid")),
        ("zeta", auto("zeta")),
    ]);
    assert!(tenants.auto_db_changes(&again).is_empty());
    let grown = build(vec![
        ("aardvark", auto("aardvark")),
        ("alpha", auto("alpha")),
        ("fixed", fixed),
        ("mid", auto("mid")),
        ("zeta", auto("zeta")),
    ]);
    let moved: Vec<_> = tenants
        .auto_db_changes(&grown)
        .into_iter()
        .map(|change| (change.tenant, change.old, change.new))
        .collect();
    assert_eq!(
        moved,
        [
            ("alpha".to_owned(), 0, 2),
            ("mid".to_owned(), 2, 3),
            ("zeta".to_owned(), 3, 4)
        ]
    );
}

#[test]
fn auto_keeps_db_zero_for_tenants_without_db_and_runs_out_with_an_error() {
    let mut auto = config("auto");
    auto.db = Some(DbSetting::Auto);
    let tenants = build(vec![("auto", auto.clone()), ("plain", config("plain"))]);
    assert_eq!(tenants.get("auto").unwrap().db(), Some(1));
    assert_eq!(tenants.get("plain").unwrap().db(), None);

    // 17 auto tenants do not fit in 16 databases.
    let names: Vec<String> = (0..17).map(|i| format!("t{i:02}")).collect();
    let configs = names
        .iter()
        .map(|name| {
            let mut config = config(name);
            config.db = Some(DbSetting::Auto);
            (name.as_str(), config)
        })
        .collect();
    let error = try_build(configs).unwrap_err();
    assert_eq!(error.key, "tenants.t16.db");
    assert!(error.problem.contains("no free database"), "{error}");

    // On a cluster pool, the one database goes to the first auto tenant.
    let mut c1 = TenantConfig::new("c1", "cluster");
    c1.db = Some(DbSetting::Auto);
    let mut c2 = TenantConfig::new("c2", "cluster");
    c2.db = Some(DbSetting::Auto);
    assert_eq!(
        try_build(vec![("c1", c1.clone())])
            .unwrap()
            .get("c1")
            .unwrap()
            .db(),
        Some(0)
    );
    assert_eq!(
        try_build(vec![("c1", c1), ("c2", c2)]).unwrap_err().key,
        "tenants.c2.db"
    );
}

#[test]
fn auto_accounts_for_every_pool_a_tenant_may_use() {
    // "b" lives on "other", where "x" has db 0 fixed; "a" (main) and "b" (main + other) are
    // auto: "a" gets 0, "b" cannot take 0 (a in main, x in other) and gets 1.
    let mut a = config("a");
    a.db = Some(DbSetting::Auto);
    let mut b = config("b");
    b.db = Some(DbSetting::Auto);
    b.pools = vec!["other".to_owned()];
    let mut x = TenantConfig::new("pw-x", "other");
    x.db = Some(DbSetting::Number(0));
    let tenants = build(vec![("a", a), ("b", b), ("x", x)]);
    assert_eq!(tenants.get("a").unwrap().db(), Some(0));
    assert_eq!(tenants.get("b").unwrap().db(), Some(1));
}

#[test]
fn authentication_by_password_by_name_and_default_user() {
    let tenants = build(vec![("a", config("a")), ("b", config("b"))]);
    assert_eq!(tenants.authenticate(None, b"pw-b").unwrap().name(), "b");
    assert_eq!(
        tenants.authenticate(Some(b"a"), b"pw-a").unwrap().name(),
        "a"
    );
    assert_eq!(
        tenants
            .authenticate(Some(b"default"), b"pw-a")
            .unwrap()
            .name(),
        "a"
    );
    for (user, password) in [
        (Some(&b"a"[..]), &b"pw-b"[..]),
        (Some(b"nobody"), b"pw-a"),
        (Some(b"\xff"), b"pw-a"),
        (None, b"wrong"),
        (None, b""),
    ] {
        let error = tenants.authenticate(user, password).unwrap_err();
        assert_eq!(error, PolicyError::WrongPass);
        assert_eq!(
            &error.to_reply()[..],
            b"-WRONGPASS invalid username-password pair or user is disabled.\r\n"
        );
    }
    // A tenant called "default" is found by name.
    let tenants = build(vec![("default", config("default")), ("b", config("b"))]);
    assert!(tenants.authenticate(Some(b"default"), b"pw-b").is_err());
    assert_eq!(
        tenants
            .authenticate(Some(b"default"), b"pw-default")
            .unwrap()
            .name(),
        "default"
    );
}

#[test]
fn credentials_from_auth_and_hello() {
    let found = |args: &[&str]| {
        credentials(spec(args), args).map(|found| {
            found.map(|c| {
                (
                    c.username.map(|u| String::from_utf8_lossy(u).into_owned()),
                    String::from_utf8_lossy(c.password).into_owned(),
                )
            })
        })
    };
    assert_eq!(found(&["AUTH", "pw"]), Ok(Some((None, "pw".to_owned()))));
    assert_eq!(
        found(&["auth", "u", "pw"]),
        Ok(Some((Some("u".to_owned()), "pw".to_owned())))
    );
    assert_eq!(found(&["AUTH", "a", "b", "c"]), Err(PolicyError::Syntax));
    assert_eq!(found(&["HELLO"]), Ok(None));
    assert_eq!(found(&["HELLO", "3"]), Ok(None));
    assert_eq!(found(&["HELLO", "3", "SETNAME", "x"]), Ok(None));
    assert_eq!(
        found(&["HELLO", "2", "auth", "u", "pw"]),
        Ok(Some((Some("u".to_owned()), "pw".to_owned())))
    );
    assert_eq!(
        found(&["HELLO", "3", "AUTH", "u"]).unwrap_err().to_string(),
        "ERR Syntax error in HELLO option 'AUTH'"
    );
    assert_eq!(found(&["PING"]), Ok(None));
}

#[test]
fn limits_store_must_name_a_defined_pool() {
    let mut t = config("t");
    t.ops_per_sec = std::num::NonZeroU32::new(10);
    t.limits_store = Some(crate::LimitsStore {
        pool: "nowhere".to_owned(),
    });
    let error = try_build(vec![("t", t.clone())]).unwrap_err().to_string();
    assert!(error.contains("tenants.t.limits_store.pool"), "{error}");
    t.limits_store = Some(crate::LimitsStore {
        pool: "other".to_owned(),
    });
    let tenants = try_build(vec![("t", t)]).unwrap();
    let budget = tenants
        .get("t")
        .unwrap()
        .shared_budget()
        .map(|budget| budget.pool().to_owned());
    assert_eq!(budget.as_deref(), Some("other"));
}

#[test]
fn a_backend_user_needs_its_password_a_valid_name_and_no_other_tenant_with_it() {
    let with = |user: Option<&str>, password: Option<&str>| {
        let mut config = config("a");
        config.backend_user = user.map(str::to_owned);
        config.backend_password = password.map(str::to_owned);
        config
    };
    let error = try_build(vec![("a", with(Some("acl-a"), None))]).unwrap_err();
    assert_eq!(error.key, "tenants.a.backend_user");
    assert!(error.problem.contains("go together"), "{error}");
    let error = try_build(vec![("a", with(None, Some("pw")))]).unwrap_err();
    assert!(error.problem.contains("go together"), "{error}");
    let error = try_build(vec![("a", with(Some("has space"), Some("pw")))]).unwrap_err();
    assert!(error.problem.contains("without spaces"), "{error}");
    let error = try_build(vec![("a", with(Some("acl-a"), Some("")))]).unwrap_err();
    assert_eq!(error.key, "tenants.a.backend_password");

    let mut b = with(Some("acl-a"), Some("other-pw"));
    b.password = "pw-b".to_owned();
    let error = try_build(vec![("a", with(Some("acl-a"), Some("pw"))), ("b", b)]).unwrap_err();
    assert_eq!(
        error.to_string(),
        "tenants.b.backend_user: 'acl-a' is the backend_user of tenant 'a' too; each tenant needs a \
         Redis ACL user of its own, or Redis would give both the same keys"
    );

    let tenants = build(vec![("a", with(Some("acl-a"), Some("acl-pw")))]);
    let login = tenants.get("a").unwrap().backend_login().unwrap();
    assert_eq!((login.user(), login.password()), ("acl-a", "acl-pw"));
    let debug = format!("{login:?} {:?}", with(Some("acl-a"), Some("acl-pw")));
    assert!(!debug.contains("acl-pw"), "{debug}");
}
