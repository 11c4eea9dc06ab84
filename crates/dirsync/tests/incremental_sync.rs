#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Issue 5 acceptance, end to end: `dirsync sync` against a real slapd (syncrepl) into
//! idservice. After the initial full run every directory change is synchronised by an
//! incremental run, and after each step `sync --full --dry-run` must plan nothing: the target
//! equals what a full reconcile produces. Then: the no-change run, target-side drift (unseen
//! by incremental runs, repaired and reported by `--full`), an invalid cursor (full reconcile
//! with the reason), and a run whose state write was lost after apply (converges without
//! duplicates).

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use common::{Env, Run, TargetKind, gen_uid, gen_user};
use serde_json::{Value, json};

fn overrides() -> Value {
    json!({
        "ad": {"ldap": {"filter": {"user": "(!(description=out-of-scope))"}}},
        "iid": {"scim": {"attribute": {"user": {"ad_bind": {
            "active": "employeeType",
            "title": "title",
        }}}}},
    })
}

/// An incremental run that succeeded.
fn incremental(env: &Env, config: &Path, what: &str) -> Run {
    incremental_with(env, config, what, &[])
}

fn incremental_with(env: &Env, config: &Path, what: &str, args: &[&str]) -> Run {
    let run = env.sync(config, args);
    assert_eq!(run.code, 0, "{what}: {:#}", run.report);
    assert_eq!(
        run.report["mode"],
        json!("incremental"),
        "{what}: {:#}",
        run.report
    );
    // A run with changes plans the changed users only (issue #5); a run without none at all.
    let over = &run.report["planned_over"];
    assert!(
        over.is_null() || *over == json!("changed users"),
        "{what}: {:#}",
        run.report
    );
    run
}

/// The target equals what a full reconcile would produce: a full dry run plans nothing.
fn assert_converged(env: &Env, config: &Path, what: &str) {
    let run = env.sync(config, &["--full", "--dry-run"]);
    assert_eq!(run.code, 0, "{what}: {:#}", run.report);
    assert_eq!(run.report["mode"], json!("full"), "{what}");
    assert_eq!(
        run.plan["operations"],
        json!([]),
        "{what}: a full reconcile would still change the target: {:#}",
        run.plan
    );
}

fn state_db(env: &Env) -> PathBuf {
    env.dir.path().join("state-main").join("state.db")
}

/// Runs one SQL statement on the state database (what an operator or a crash could leave);
/// the first column of its first row, if it returns a number.
fn sql_on_state(env: &Env, statement: &'static str) -> Option<i64> {
    let db = state_db(env);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        use sqlx::{Connection, Row};
        let mut conn = sqlx::SqliteConnection::connect(&format!("sqlite://{}", db.display()))
            .await
            .unwrap();
        let row = sqlx::query(statement)
            .fetch_optional(&mut conn)
            .await
            .unwrap();
        conn.close().await.unwrap();
        row.and_then(|r| r.try_get::<i64, _>(0).ok())
    })
}

fn sql(env: &Env, statement: &'static str) {
    sql_on_state(env, statement);
}

/// A number the state database answers.
fn sql_count(env: &Env, query: &'static str) -> i64 {
    sql_on_state(env, query).unwrap()
}

/// SCIM PATCH on idservice, as another administrator would.
fn patch_user(env: &Env, id: &str, path: &str, value: &str) {
    let body = json!({
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
        "Operations": [{"op": "replace", "path": path, "value": value}],
    });
    let output = Command::new("curl")
        .args(["-sS", "--fail-with-body", "-X", "PATCH", "-H"])
        .arg(format!("Authorization: Bearer {}", env.target.token()))
        .args(["-H", "Content-Type: application/scim+json", "--data"])
        .arg(body.to_string())
        .arg(format!("{}/Users/{id}", env.target.url()))
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "PATCH: {}",
        String::from_utf8_lossy(&output.stdout)
    );
}

#[test]
fn slapd_incremental_sync_matches_full_reconcile() {
    let env = Env::start(TargetKind::IdService);
    env.slapd.load_generated(10, 2, &[]).unwrap();
    env.add_ou("staff");
    let config = env.config("main", overrides());

    let run = env.sync(&config, &[]);
    assert_eq!(run.code, 0, "{:#}", run.report);
    assert_eq!(run.report["mode"], json!("full"));
    assert_eq!(run.report["full_reason"], json!("first run"));
    run.assert_counts(&[
        ("created", 10),
        ("groups_created", 2),
        ("members_added", 10),
    ]);

    // No change: incremental, nothing read from the target, every object unchanged.
    let started = Instant::now();
    let run = incremental(&env, &config, "no change");
    eprintln!(
        "TIMING no-change incremental run: {:.2?}",
        started.elapsed()
    );
    run.assert_counts(&[]);
    assert_eq!(run.report["unchanged_users"], json!(10));
    assert_eq!(run.report["read_users"], json!(0), "nothing re-read");

    // Add (and make it a member of group 1 at once).
    env.add_user("newbie", "ou=people", "example.test", &["title: Intern"]);
    env.modify(
        &env.group_dn("group00001"),
        "add",
        "member",
        Some(&env.user_dn("newbie")),
    );
    let run = incremental(&env, &config, "add");
    run.assert_counts(&[("created", 1), ("members_added", 1)]);
    assert_eq!(
        env.target.user("newbie@example.test").unwrap()["title"],
        json!("Intern")
    );
    assert!(
        env.target
            .member_names("group00001")
            .contains(&"newbie@example.test".into())
    );
    assert_converged(&env, &config, "add");

    // Modify.
    env.modify(&env.user_dn(&gen_uid(3)), "replace", "title", Some("Chief"));
    incremental(&env, &config, "modify").assert_counts(&[("updated", 1)]);
    assert_eq!(
        env.target.user(&gen_user(3)).unwrap()["title"],
        json!("Chief")
    );
    assert_converged(&env, &config, "modify");

    // Rename and move (the group still names the old DN: it loses the member, as a full
    // read would decide too).
    let before = env.target.user(&gen_user(4)).unwrap();
    env.slapd
        .modrdn(
            &env.user_dn(&gen_uid(4)),
            "uid=renamed4",
            Some(&format!("ou=staff,{}", env.slapd.base)),
        )
        .unwrap();
    incremental(&env, &config, "rename/move");
    let after = env.target.user(&gen_user(4)).unwrap();
    assert_eq!(
        after["id"], before["id"],
        "same target object after the move"
    );
    assert_converged(&env, &config, "rename/move");

    // Disable.
    env.modify(
        &env.user_dn(&gen_uid(5)),
        "replace",
        "employeeType",
        Some("false"),
    );
    incremental(&env, &config, "disable").assert_counts(&[("disabled", 1)]);
    assert_eq!(
        env.target.user(&gen_user(5)).unwrap()["active"],
        json!(false)
    );
    assert_converged(&env, &config, "disable");

    // Delete → pending deletion on idservice.
    env.slapd.delete(&[&env.user_dn(&gen_uid(6))]).unwrap();
    let run = incremental(&env, &config, "delete");
    assert_eq!(run.count("pending_deletion"), 1, "{:#}", run.report);
    env.target.assert_pending(&gen_user(6));
    assert_converged(&env, &config, "delete");

    // Leave the scope by filter.
    env.modify(
        &env.user_dn(&gen_uid(7)),
        "add",
        "description",
        Some("out-of-scope"),
    );
    let run = incremental(&env, &config, "leave scope");
    assert_eq!(run.count("pending_deletion"), 1, "{:#}", run.report);
    env.target.assert_pending(&gen_user(7));
    assert_converged(&env, &config, "leave scope");

    // Group member remove, then group delete.
    env.modify(
        &env.group_dn("group00001"),
        "delete",
        "member",
        Some(&env.user_dn("newbie")),
    );
    incremental(&env, &config, "member remove").assert_counts(&[("members_removed", 1)]);
    assert!(
        !env.target
            .member_names("group00001")
            .contains(&"newbie@example.test".into())
    );
    assert_converged(&env, &config, "member remove");
    env.slapd.delete(&[&env.group_dn("group00002")]).unwrap();
    // One of two groups is over the group deletion threshold: allowed explicitly.
    incremental_with(&env, &config, "group delete", &["--allow-deletions", "1"])
        .assert_counts(&[("groups_deleted", 1)]);
    assert!(env.target.group("group00002").is_none());
    assert_converged(&env, &config, "group delete");

    // Drift: a managed attribute changed on the target. Incremental runs do not look there;
    // `--full` repairs it and says so.
    let u8 = env.target.user(&gen_user(8)).unwrap();
    patch_user(
        &env,
        u8["id"].as_str().unwrap(),
        "title",
        "Changed on the target",
    );
    incremental(&env, &config, "after drift").assert_counts(&[]);
    let run = env.sync(&config, &["--full"]);
    assert_eq!(run.code, 0, "{:#}", run.report);
    assert_eq!(run.report["full_reason"], json!("--full"));
    run.assert_counts(&[("updated", 1)]);
    assert_eq!(run.report["drift"], json!(1), "{:#}", run.report);
    assert_eq!(
        run.report["drift_objects"],
        json!([format!("user {}", gen_user(8))])
    );
    assert!(
        run.report["warnings"].to_string().contains("drift"),
        "{:#}",
        run.report
    );
    assert_eq!(env.target.user(&gen_user(8)).unwrap()["title"], u8["title"]);
    // The run after a clean full reconcile reports no drift.
    let run = env.sync(&config, &["--full"]);
    assert_eq!(run.report["drift"], json!(0), "{:#}", run.report);
    incremental(&env, &config, "after --full").assert_counts(&[]);

    // A cursor the server cannot use (another server's) → full reconcile with the reason.
    sql(
        &env,
        r#"UPDATE cursors SET cursor = '{"kind":"syncrepl","origin":"ldap://elsewhere/dc=x","value":"{}"}'"#,
    );
    env.modify(&env.user_dn(&gen_uid(9)), "replace", "title", Some("Nine"));
    let run = env.sync(&config, &[]);
    assert_eq!(run.code, 0, "{:#}", run.report);
    assert_eq!(run.report["mode"], json!("full"));
    let reason = run.report["full_reason"].as_str().unwrap();
    assert!(reason.starts_with("cursor invalid: "), "{reason}");
    run.assert_counts(&[("updated", 1)]);
    incremental(&env, &config, "after a cursor reload").assert_counts(&[]);
    // An unreadable cursor, likewise.
    sql(&env, "UPDATE cursors SET cursor = 'garbage'");
    let run = env.sync(&config, &[]);
    assert_eq!(run.report["mode"], json!("full"));
    assert!(
        run.report["full_reason"]
            .as_str()
            .unwrap()
            .contains("unreadable"),
        "{:#}",
        run.report
    );
    assert_converged(&env, &config, "after an unreadable cursor");

    // A full reconcile writes only the image rows whose stored hash differs: a row marked
    // behind its back survives one with nothing new, and is rewritten once its hash differs.
    sql(
        &env,
        "UPDATE directory_image SET dn = 'marker' WHERE rowid = \
         (SELECT MIN(rowid) FROM directory_image WHERE kind = 'user')",
    );
    let marked = "SELECT COUNT(*) FROM directory_image WHERE dn = 'marker'";
    let run = env.sync(&config, &["--full"]);
    assert_eq!(run.code, 0, "{:#}", run.report);
    assert_eq!(sql_count(&env, marked), 1, "an unchanged row was rewritten");
    sql(
        &env,
        "UPDATE directory_image SET hash = 0 WHERE dn = 'marker'",
    );
    let run = env.sync(&config, &["--full"]);
    assert_eq!(run.code, 0, "{:#}", run.report);
    assert_eq!(
        sql_count(&env, marked),
        0,
        "a differing row was not rewritten"
    );
    // A state another dirsync version wrote holds that version's mapping of the entries: the
    // next run is full (and rewrites every row), then incremental again.
    sql(
        &env,
        "UPDATE meta SET value = '0.0.0-older' WHERE key = 'state_format'",
    );
    let run = env.sync(&config, &[]);
    assert_eq!(run.code, 0, "{:#}", run.report);
    assert_eq!(run.report["mode"], json!("full"));
    assert_eq!(
        run.report["full_reason"],
        json!("the state was written by another version")
    );
    incremental(&env, &config, "after a version change").assert_counts(&[]);

    // A run whose state write was lost after apply (killed between apply and commit): the
    // next run reads the same changes again against the old cache and converges without
    // creating anything twice.
    let saved = env.dir.path().join("saved-state.db");
    let db = state_db(&env);
    sql(&env, "PRAGMA wal_checkpoint(TRUNCATE)");
    std::fs::copy(&db, &saved).unwrap();
    env.add_user("crashy", "ou=people", "example.test", &[]);
    env.modify(&env.user_dn(&gen_uid(10)), "replace", "title", Some("Ten"));
    incremental(&env, &config, "before the lost write")
        .assert_counts(&[("created", 1), ("updated", 1)]);
    std::fs::copy(&saved, &db).unwrap();
    let _ = std::fs::remove_file(db.with_extension("db-wal"));
    let _ = std::fs::remove_file(db.with_extension("db-shm"));
    let run = incremental(&env, &config, "after the lost write");
    // The create is repeated; the target answers 409 and apply takes the existing user
    // (found by externalId) instead of making a second one.
    assert_eq!(run.report["failures"], json!([]), "{:#}", run.report);
    let crashy: Vec<Value> = env
        .target
        .users()
        .into_iter()
        .filter(|u| u["userName"] == json!("crashy@example.test"))
        .collect();
    assert_eq!(crashy.len(), 1);
    assert_converged(&env, &config, "after the lost write");
    incremental(&env, &config, "settled").assert_counts(&[]);
}

/// A killed run (a `runs` row without `finished_at`) makes the next run a full one.
#[test]
fn slapd_interrupted_run_forces_full_reconcile() {
    let env = Env::start(TargetKind::IdService);
    env.slapd.load_generated(3, 1, &[]).unwrap();
    let config = env.config("main", overrides());
    assert_eq!(env.sync(&config, &[]).code, 0);
    sql(
        &env,
        "INSERT INTO runs (id, started_at, mode, dry_run) VALUES ('killed', strftime('%Y-%m-%dT%H:%M:%fZ', 'now'), 'incremental', 0)",
    );
    let run = env.sync(&config, &[]);
    assert_eq!(run.report["mode"], json!("full"), "{:#}", run.report);
    assert_eq!(
        run.report["full_reason"],
        json!("the previous run did not finish")
    );
    incremental(&env, &config, "after the full run").assert_counts(&[]);
}

/// Without a syncprov session log slapd answers a cookie with the present phase (every id
/// still in scope) instead of naming the deleted ones: deletions and leaving the scope must
/// still be seen incrementally.
#[test]
fn slapd_without_sessionlog_present_phase() {
    let slapd = testenv::Slapd::start_with(testenv::SlapdOptions {
        sessionlog: 0,
        ..testenv::SlapdOptions::default()
    })
    .unwrap();
    let target = common::Target::start(TargetKind::IdService);
    let dir = tempfile::tempdir().unwrap();
    let secret = json!({
        "ad": {"ldap": {"server": {"password": slapd.sync_pw}}},
        "iid": {"scim": {"token": target.token()}},
    });
    let secret_path = dir.path().join("secret.yml");
    std::fs::write(&secret_path, secret.to_string()).unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&secret_path, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    let env = Env { slapd, target, dir };
    // 12 users: one deletion stays under the default 10 % deletion threshold.
    env.slapd.load_generated(12, 1, &[]).unwrap();
    let config = env.config("main", overrides());
    assert_eq!(
        env.sync(&config, &[]).report["full_reason"],
        json!("first run")
    );
    incremental(&env, &config, "no change").assert_counts(&[]);

    env.slapd.delete(&[&env.user_dn(&gen_uid(2))]).unwrap();
    let run = incremental(&env, &config, "delete");
    assert_eq!(run.count("pending_deletion"), 1, "{:#}", run.report);
    assert_converged(&env, &config, "delete");
    env.modify(
        &env.user_dn(&gen_uid(3)),
        "add",
        "description",
        Some("out-of-scope"),
    );
    let run = incremental(&env, &config, "leave scope");
    assert_eq!(run.count("pending_deletion"), 1, "{:#}", run.report);
    assert_converged(&env, &config, "leave scope");
    env.add_user("late", "ou=people", "example.test", &[]);
    incremental(&env, &config, "add").assert_counts(&[("created", 1)]);
    assert_converged(&env, &config, "add");
}

mod ad_common;

/// The same sequence against Samba AD (DirSync as the non-admin service account), through
/// the library: every step is an incremental run, and a full dry run afterwards plans nothing.
#[test]
fn samba_incremental_sync_matches_full_reconcile() {
    use dirsync::run::{SyncOptions, sync};
    if testenv::skip_samba("samba_incremental_sync_matches_full_reconcile") {
        return;
    }
    let dc = ad_common::start_dc("ISYNC.TEST", "ISYNC");
    // Without this grant the non-admin account sees no tombstones and incremental runs miss
    // deletions until the full reconcile (docs/dirsync.md).
    dc.grant_deleted_objects_read("svc-dirsync").unwrap();
    let base = dc.add_ou("Sync").unwrap();
    let outside = dc.add_ou("Outside").unwrap();
    let ou = Some(base.as_str());
    let alice = dc
        .add_user("alice", "Alice", "A", Some("alice@isync.test"), None, ou)
        .unwrap();
    let bob = dc.add_user("bob", "Bob", "B", None, None, ou).unwrap();
    let carol = dc.add_user("carol", "Carol", "C", None, None, ou).unwrap();
    let team = dc.add_group_in("Team", ou).unwrap();
    dc.add_members(&team, &[&alice.dn, &bob.dn]).unwrap();
    // A directory without any group left reads as a failed read (nothing deleted): Other
    // stays, so that deleting Team is a real deletion.
    dc.add_group_in("Other", ou).unwrap();
    let ids = ad_common::start_idservice();
    let yaml = format!(
        "ad:\n  ldap:\n    server:\n      addresses: ['{ip}']\n      port: {port}\n      user: '{user}'\n    base_dn: '{base}'\n    filter:\n      user: '!(description=excluded)'\niid:\n  scim:\n    base_url: '{url}'\nsync:\n  max_deletion_ratio: 1.0\n",
        ip = dc.ip,
        port = dc.ldap_port,
        user = dc.svc_dn,
        url = ids.url,
    );
    let instance = ad_common::Instance::new(&yaml, &dc.svc_pw, &ids.token);
    let rt = ad_common::runtime();
    let run = |full: bool, dry_run: bool| {
        let config = instance.load();
        let options = SyncOptions {
            full,
            dry_run,
            // Deleting the only group is over any ratio; the steps are deliberate.
            allow_deletions: Some(10),
            ..SyncOptions::default()
        };
        rt.block_on(sync(&config, Vec::new(), &options))
    };
    let step = |what: &str| {
        let t0 = Instant::now();
        let result = run(false, false);
        eprintln!("TIMING samba {what}: {:.2?}", t0.elapsed());
        let report = result.report;
        ad_common::assert_clean(&report, what);
        assert_eq!(report.mode, "incremental", "{what}: {}", report.to_text());
        let full = run(true, true);
        assert_eq!(full.report.mode, "full");
        let plan = full.plan.unwrap();
        assert!(
            plan.operations.is_empty(),
            "{what}: a full reconcile would still change the target: {:?}",
            plan.operations
        );
        report
    };

    let first = run(false, false).report;
    ad_common::assert_clean(&first, "initial");
    assert_eq!(first.full_reason.as_deref(), Some("first run"));
    assert_eq!(first.counts.created, 3, "{}", first.to_text());
    let r = step("no change");
    assert!(r.no_changes(), "{}", r.to_text());

    let dave = dc.add_user("dave", "Dave", "D", None, None, ou).unwrap();
    dc.add_members(&team, &[&dave.dn]).unwrap();
    let r = step("add");
    assert_eq!(
        (r.counts.created, r.counts.members_added),
        (1, 1),
        "{}",
        r.to_text()
    );
    dc.set_attr(&alice.dn, "givenName", &["Alicia"]).unwrap();
    assert_eq!(step("modify").counts.updated, 1);
    let bob_dn = dc.rename(&bob.dn, "CN=Robert").unwrap();
    step("rename");
    dc.disable_user("carol").unwrap();
    assert_eq!(step("disable").counts.disabled, 1);
    dc.delete(&dave.dn).unwrap();
    assert_eq!(step("delete").counts.pending_deletion, 1);
    dc.set_attr(&carol.dn, "description", &["excluded"])
        .unwrap();
    assert_eq!(step("leave scope by filter").counts.pending_deletion, 1);
    dc.move_to(&bob_dn, &outside).unwrap();
    assert_eq!(step("leave scope by move").counts.pending_deletion, 1);
    dc.remove_members(&team, &[&alice.dn]).unwrap();
    assert_eq!(step("member remove").counts.members_removed, 1);
    dc.delete_group(&team).unwrap();
    assert_eq!(step("group delete").counts.groups_deleted, 1);
}
