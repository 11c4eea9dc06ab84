#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Issue 7 acceptance, end to end: slapd → `dirsync` → `idservice` → a downstream
//! `scim2-server` standing in for Microsoft 365 (a linked application, behaviour §7.6). A synced
//! user appears downstream with the right immutable id (the directory's anchor bound to
//! `downstreamId`, else the externalId); disabling it in the directory blocks the downstream
//! account and removes its licence; enabling it again restores both, on the same account.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::{Env, Target};
use serde_json::{Value, json};
use testenv::{IdService, Scim2Server, Slapd};

const LICENCE: &str = "ENTERPRISEPACK";
const DS_TOKEN: &str = "m365-stand-in-token-42";

/// Every account of the downstream application.
fn downstream(ds: &Scim2Server) -> Vec<Value> {
    let output = Command::new("curl")
        .args(["-sS", "--fail-with-body", "-H"])
        .arg(format!("Authorization: Bearer {DS_TOKEN}"))
        .arg(format!("{}/Users?count=1000", ds.url))
        .output()
        .expect("run curl");
    assert!(output.status.success(), "{output:?}");
    let body: Value = serde_json::from_slice(&output.stdout).expect("JSON");
    body["Resources"].as_array().cloned().unwrap_or_default()
}

fn account(ds: &Scim2Server, user_name: &str) -> Option<Value> {
    downstream(ds)
        .into_iter()
        .find(|a| a["userName"].as_str() == Some(user_name))
}

fn licences(a: &Value) -> Vec<&str> {
    a["entitlements"]
        .as_array()
        .map(|v| v.iter().filter_map(|e| e["value"].as_str()).collect())
        .unwrap_or_default()
}

/// Polls the downstream account until `check` holds (the worker runs every 200 ms).
fn until(
    ds: &Scim2Server,
    id: &IdService,
    user_name: &str,
    what: &str,
    check: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = Instant::now() + Duration::from_secs(40);
    loop {
        if let Some(a) = account(ds, user_name)
            && check(&a)
        {
            return a;
        }
        if Instant::now() > deadline {
            panic!(
                "{user_name}: timed out waiting for {what}; downstream: {:#?}\nlinks:\n{}",
                downstream(ds),
                id.admin_command(&["apps", "links"]).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(150));
    }
}

#[test]
fn directory_changes_reach_the_linked_application() {
    let slapd = Slapd::start().expect("start slapd");
    let idservice =
        IdService::start_with(&["--outbound-interval", "200ms"]).expect("start idservice");
    let ds = Scim2Server::start(DS_TOKEN).expect("start scim2-server");
    let dir = tempfile::Builder::new()
        .prefix("dirsync-downstream-")
        .tempdir()
        .unwrap();
    let secret = json!({
        "ad": {"ldap": {"server": {"password": slapd.sync_pw}}},
        "iid": {"scim": {"token": idservice.token}},
    });
    std::fs::write(dir.path().join("secret.yml"), secret.to_string()).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(
        dir.path().join("secret.yml"),
        std::fs::Permissions::from_mode(0o600),
    )
    .unwrap();
    let token_file = dir.path().join("m365.token");
    std::fs::write(&token_file, DS_TOKEN).unwrap();
    std::fs::set_permissions(
        &token_file,
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .unwrap();
    idservice
        .admin_command(&[
            "apps",
            "add",
            "--allow-insecure-http",
            "m365",
            "--url",
            &ds.url,
            "--token-file",
            token_file.to_str().unwrap(),
            "--licence",
            LICENCE,
        ])
        .expect("apps add");
    let env = Env {
        slapd,
        target: Target::Id(idservice),
        dir,
    };

    // ayame has an anchor (employeeNumber, bound to downstreamId as AD's
    // mS-DS-ConsistencyGuid would be); botan has none, so its externalId is the immutable id.
    env.add_user(
        "ayame",
        "ou=people",
        "example.test",
        &["employeeNumber: anchor-ayame-01"],
    );
    env.add_user("botan", "ou=people", "example.test", &[]);
    let config = env.config(
        "main",
        json!({"iid": {"scim": {"attribute": {"user": {"ad_bind": {
            "active": "employeeType",
            "downstreamId": "employeeNumber",
        }}}}}}),
    );
    let run = env.sync(&config, &[]);
    assert_eq!(run.code, 0, "{:#}\n{}", run.report, run.stderr);
    let id = env.target.idservice();

    let a = until(&ds, id, "ayame@example.test", "the account", |a| {
        a["active"] == json!(true)
    });
    assert_eq!(a["externalId"], json!("anchor-ayame-01"), "{a}");
    assert_eq!(licences(&a), [LICENCE], "{a}");
    let b = until(&ds, id, "botan@example.test", "the account", |a| {
        a["active"] == json!(true)
    });
    let botan = env
        .target
        .user("botan@example.test")
        .expect("botan in idservice");
    assert!(botan["externalId"].as_str().is_some_and(|e| !e.is_empty()));
    assert_eq!(b["externalId"], botan["externalId"], "{b}");
    assert_eq!(licences(&b), [LICENCE]);

    // Disabled in the directory → blocked downstream, licence removed.
    let dn = env.user_dn("ayame");
    env.modify(&dn, "add", "employeeType", Some("false"));
    let run = env.sync(&config, &[]);
    assert_eq!(run.code, 0, "{:#}", run.report);
    run.assert_counts(&[("disabled", 1)]);
    let blocked = until(&ds, id, "ayame@example.test", "the block", |a| {
        a["active"] == json!(false)
    });
    assert!(licences(&blocked).is_empty(), "licence kept: {blocked}");
    assert_eq!(blocked["id"], a["id"]);
    assert_eq!(blocked["externalId"], json!("anchor-ayame-01"));
    // The other user is untouched.
    assert_eq!(
        licences(&account(&ds, "botan@example.test").unwrap()),
        [LICENCE]
    );

    // Enabled again → unblocked with the licence, same account.
    env.modify(&dn, "replace", "employeeType", Some("true"));
    let run = env.sync(&config, &[]);
    assert_eq!(run.code, 0, "{:#}", run.report);
    let back = until(&ds, id, "ayame@example.test", "the unblock", |a| {
        a["active"] == json!(true) && !licences(a).is_empty()
    });
    assert_eq!(back["id"], a["id"]);
    assert_eq!(licences(&back), [LICENCE]);
    assert_eq!(downstream(&ds).len(), 2, "no duplicate accounts");

    let links = id.admin_command(&["apps", "links", "m365"]).unwrap();
    assert!(
        links
            .lines()
            .any(|l| l.starts_with("m365\tayame@example.test\tlinked\t")
                && l.contains("anchor-ayame-01")),
        "{links}"
    );
}
