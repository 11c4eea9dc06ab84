#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Issue 23, saved plans, on real slapd and idservice: `dirsync sync --dry-run --plan-out`
//! then `dirsync apply` gives the target `dirsync sync` would; a user changed in the directory
//! between the two is refused by name (exit 2, nothing written); a plan applied twice does
//! nothing the second time; a plan older than `sync.plan_max_age` or made with another
//! configuration is refused.

mod common;

use std::path::Path;
use std::process::Stdio;

use common::{Env, Run, TargetKind, gen_uid, gen_user};
use serde_json::{Value, json};

fn overrides() -> Value {
    json!({"iid": {"scim": {"attribute": {"user": {"ad_bind": {
        "active": "employeeType",
        "title": "title",
    }}}}}})
}

/// `dirsync apply --config … --secret … --report json PLAN`.
fn apply(env: &Env, config: &Path, plan: &Path) -> Run {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_dirsync"))
        .arg("apply")
        .arg("--config")
        .arg(config)
        .arg("--secret")
        .arg(env.dir.path().join("secret.yml"))
        .args(["--report", "json"])
        .arg(plan)
        .current_dir(env.dir.path())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    common::parse_run(&output)
}

/// `dirsync apply` that does not run (refused before, or already applied): (exit code, output).
fn apply_text(env: &Env, config: &Path, plan: &Path) -> (i32, String) {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_dirsync"))
        .args(["apply", "--config"])
        .arg(config)
        .arg("--secret")
        .arg(env.dir.path().join("secret.yml"))
        .arg(plan)
        .current_dir(env.dir.path())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.code().unwrap_or(-1), text)
}

/// The target's users by userName, without what differs between two servers with the same
/// content (ids, metadata, the directory's entryUUIDs as externalId, group ids in `groups`).
fn target(env: &Env) -> Vec<Value> {
    let mut users: Vec<Value> = env
        .target
        .users()
        .into_iter()
        .map(|mut u| {
            let o = u.as_object_mut().unwrap();
            for key in ["id", "meta", "externalId"] {
                o.remove(key);
            }
            if let Some(groups) = o.get_mut("groups").and_then(Value::as_array_mut) {
                for g in groups.iter_mut() {
                    g.as_object_mut().unwrap().retain(|k, _| k == "display");
                }
                groups.sort_by_key(|g| g["display"].to_string());
            }
            u
        })
        .collect();
    users.sort_by_key(|u| u["userName"].to_string());
    users
}

#[test]
fn review_then_apply_gives_the_same_target_as_sync() {
    let env = Env::start(TargetKind::IdService);
    env.slapd.load_generated(12, 2, &[]).unwrap();
    let config = env.config("main", overrides());
    let plan = env.dir.path().join("plan.json");
    let dry = env.sync(
        &config,
        &["--dry-run", "--plan-out", plan.to_str().unwrap()],
    );
    assert_eq!(dry.code, 0, "{:#}", dry.report);
    assert!(env.target.users().is_empty(), "a dry run writes nothing");
    let saved: Value = serde_json::from_slice(&std::fs::read(&plan).unwrap()).unwrap();
    assert_eq!(saved["format"], json!("dirsync-plan/1"));
    assert_eq!(
        saved["operations"].as_array().unwrap().len(),
        dry.plan["operations"].as_array().unwrap().len()
    );
    let text = String::from_utf8(std::fs::read(&plan).unwrap()).unwrap();
    assert!(
        !text.contains(env.target.token()),
        "no secret in the plan file"
    );

    let applied = apply(&env, &config, &plan);
    assert_eq!(applied.code, 0, "{:#}", applied.report);
    assert_eq!(applied.count("created"), 12, "{:#}", applied.report);
    let after_apply = target(&env);

    // The same directory synchronised by `sync` into a second target is the same.
    let other = Env::start(TargetKind::IdService);
    other.slapd.load_generated(12, 2, &[]).unwrap();
    let other_config = other.config("main", overrides());
    assert_eq!(other.sync(&other_config, &[]).code, 0);
    assert_eq!(after_apply, target(&other));

    // Applied again: nothing happens.
    let (code, text) = apply_text(&env, &config, &plan);
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("applied before"), "{text}");
    assert_eq!(target(&env), after_apply);
    // And a sync finds nothing left to do.
    let run = env.sync(&config, &[]);
    assert_eq!(run.code, 0, "{:#}", run.report);
    run.assert_counts(&[]);
}

#[test]
fn a_planned_user_changed_in_the_directory_is_refused_by_name() {
    let env = Env::start(TargetKind::IdService);
    env.slapd.load_generated(6, 1, &[]).unwrap();
    let config = env.config("main", overrides());
    assert_eq!(env.sync(&config, &[]).code, 0);
    // Two users get a new title: the plan updates them.
    for k in [1, 2] {
        env.modify(
            &env.user_dn(&gen_uid(k)),
            "replace",
            "title",
            Some("Reviewed"),
        );
    }
    let plan = env.dir.path().join("plan.json");
    let dry = env.sync(
        &config,
        &["--dry-run", "--plan-out", plan.to_str().unwrap()],
    );
    assert_eq!(dry.code, 0, "{:#}", dry.report);
    let before = target(&env);

    // One of them changes again after the review, and a user the plan does not touch too.
    env.modify(
        &env.user_dn(&gen_uid(2)),
        "replace",
        "title",
        Some("Changed after review"),
    );
    let applied = apply(&env, &config, &plan);
    assert_eq!(applied.code, 2, "{:#}", applied.report);
    let refused = applied.report["refused"].as_str().unwrap();
    assert!(refused.contains(&gen_user(2)), "{refused}");
    assert!(!refused.contains(&gen_user(1)), "{refused}");
    assert_eq!(target(&env), before, "nothing written");

    // A fresh plan of the same state applies; a change elsewhere waits for the next run.
    let plan2 = env.dir.path().join("plan2.json");
    assert_eq!(
        env.sync(
            &config,
            &["--dry-run", "--plan-out", plan2.to_str().unwrap()]
        )
        .code,
        0
    );
    env.modify(
        &env.user_dn(&gen_uid(3)),
        "replace",
        "title",
        Some("Not in the plan"),
    );
    let applied = apply(&env, &config, &plan2);
    assert_eq!(applied.code, 0, "{:#}", applied.report);
    assert_eq!(applied.count("updated"), 2, "{:#}", applied.report);
    assert_eq!(
        env.target.user(&gen_user(3)).unwrap()["title"],
        before
            .iter()
            .find(|u| u["userName"] == json!(gen_user(3)))
            .unwrap()["title"]
    );
    let next = env.sync(&config, &[]);
    assert_eq!(next.code, 0, "{:#}", next.report);
    assert_eq!(next.count("updated"), 1, "{:#}", next.report);
    assert_eq!(
        env.target.user(&gen_user(3)).unwrap()["title"],
        json!("Not in the plan")
    );
}

#[test]
fn an_old_plan_or_one_of_another_configuration_is_refused() {
    let env = Env::start(TargetKind::IdService);
    env.slapd.load_generated(3, 1, &[]).unwrap();
    let mut o = overrides();
    o["sync"] = json!({"plan_max_age": "2s"});
    let config = env.config("main", o.clone());
    let plan = env.dir.path().join("plan.json");
    assert_eq!(
        env.sync(
            &config,
            &["--dry-run", "--plan-out", plan.to_str().unwrap()]
        )
        .code,
        0
    );
    std::thread::sleep(std::time::Duration::from_secs(3));
    let (code, text) = apply_text(&env, &config, &plan);
    assert_eq!(code, 2, "{text}");
    assert!(text.contains("sync.plan_max_age"), "{text}");
    assert!(env.target.users().is_empty());

    o["sync"] = json!({"plan_max_age": "1h"});
    let config = env.config("main", o.clone());
    assert_eq!(
        env.sync(
            &config,
            &["--dry-run", "--plan-out", plan.to_str().unwrap()]
        )
        .code,
        0
    );
    o["sync"]["max_deletions"] = json!(100);
    let config = env.config("main", o);
    let (code, text) = apply_text(&env, &config, &plan);
    assert_eq!(code, 2, "{text}");
    assert!(text.contains("another configuration"), "{text}");
    assert!(env.target.users().is_empty());

    let (code, text) = apply_text(&env, &config, &env.dir.path().join("missing.json"));
    assert_eq!(code, 2, "{text}");
}
