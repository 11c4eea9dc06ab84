#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Issue 21: a local state that cannot be read stops the run with exit 5 and a message naming
//! what could not be read; nothing is created, changed or deleted on a guess (behaviour §5).
//!
//! One directory and one idservice. After a first run, the directory gains a user (a create)
//! and loses one (a pending deletion); then each failure is injected into a copy of the
//! state (a dropped table, or a state file overwritten with garbage) and a run must exit 5
//! without a single SCIM write: the target's users and groups (with their `meta`) and the
//! audit journal are the same before and after. A last run on the intact state makes those
//! writes, so there was something to write all along.

mod common;

use std::path::{Path, PathBuf};

use common::{Env, TargetKind};
use serde_json::{Value, json};

const STATE_FILES: [&str; 3] = ["state.db", "state.db-wal", "state.db-shm"];

fn state_dir(env: &Env) -> PathBuf {
    env.dir.path().join("state-main")
}

/// Copies the state files present in `from` to `to` (removing those `from` lacks).
fn copy_state(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for name in STATE_FILES {
        let (src, dst) = (from.join(name), to.join(name));
        if src.exists() {
            std::fs::copy(&src, &dst).unwrap();
        } else if dst.exists() {
            std::fs::remove_file(&dst).unwrap();
        }
    }
}

/// Runs one SQL statement on the state database.
fn sql(env: &Env, statement: &'static str) {
    let db = state_dir(env).join("state.db");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        use sqlx::Connection;
        let mut conn = sqlx::SqliteConnection::connect(&format!("sqlite://{}", db.display()))
            .await
            .unwrap();
        sqlx::query(statement).execute(&mut conn).await.unwrap();
        conn.close().await.unwrap();
    });
}

/// Everything a SCIM write would change: users and groups with their `meta`, and the journal.
fn target_and_journal(env: &Env) -> (Vec<Value>, Vec<Value>, usize) {
    let journal = std::fs::read_to_string(state_dir(env).join("journal.jsonl")).unwrap_or_default();
    (
        env.target.users(),
        env.target.groups(),
        journal.lines().count(),
    )
}

enum Failure {
    Sql(&'static str),
    Garbage,
}

#[test]
fn unreadable_state_stops_with_exit_5_and_writes_nothing() {
    let env = Env::start(TargetKind::IdService);
    for uid in ["alice", "bob", "carol"] {
        env.add_user(uid, "ou=people", "example.test", &[]);
    }
    env.add_group("staff", "ou=groups", &["alice", "bob", "carol"]);
    // No deletion threshold in the way: a run that guessed would write.
    let config = env.config("main", json!({"sync": {"max_deletion_ratio": 1.0}}));
    let first = env.sync(&config, &[]);
    assert_eq!(first.code, 0, "{:#}", first.report);
    assert_eq!(env.target.users().len(), 3);

    // Writes the next run would make: one create, one pending deletion, a member removal.
    env.add_user("dave", "ou=people", "example.test", &[]);
    env.slapd.delete(&[&env.user_dn("carol")]).unwrap();
    let saved = env.dir.path().join("saved-state");
    copy_state(&state_dir(&env), &saved);

    let cases: [(&str, Failure, &[&str], &str); 9] = [
        (
            "runs",
            Failure::Sql("DROP TABLE runs"),
            &[],
            "the run history",
        ),
        (
            "meta",
            Failure::Sql("DROP TABLE meta"),
            &[],
            "the configuration fingerprint",
        ),
        (
            "cursors",
            Failure::Sql("DROP TABLE cursors"),
            &[],
            "the directory cursor",
        ),
        (
            "objects (incremental)",
            Failure::Sql("DROP TABLE objects"),
            &[],
            "ownership records",
        ),
        (
            "objects (full)",
            Failure::Sql("DROP TABLE objects"),
            &["--full"],
            "ownership records",
        ),
        (
            "image (incremental)",
            Failure::Sql("DROP TABLE directory_image"),
            &[],
            "the directory image",
        ),
        (
            "image (full)",
            Failure::Sql("DROP TABLE directory_image"),
            &["--full"],
            "the directory image",
        ),
        (
            "target cache (full)",
            Failure::Sql("DROP TABLE target_cache"),
            &["--full"],
            "the target cache",
        ),
        ("garbage", Failure::Garbage, &[], "state.db"),
    ];
    for (name, failure, args, what) in cases {
        copy_state(&saved, &state_dir(&env));
        match failure {
            Failure::Sql(statement) => sql(&env, statement),
            Failure::Garbage => {
                copy_state(&env.dir.path().join("none"), &state_dir(&env));
                std::fs::write(state_dir(&env).join("state.db"), vec![0x5a_u8; 64 * 1024]).unwrap();
            }
        }
        let before = target_and_journal(&env);
        let run = env.sync(&config, args);
        assert_eq!(run.code, 5, "{name}: {:#}", run.report);
        let stopped = run.report["stopped"].as_str().unwrap_or_default();
        assert!(
            stopped.starts_with("cannot read the local state") && stopped.contains(what),
            "{name}: the message names {what:?}: {stopped:?}"
        );
        assert_eq!(run.report["counts"]["created"], json!(0), "{name}");
        assert!(
            before == target_and_journal(&env),
            "{name}: a SCIM write was made: {:#}",
            run.report
        );
    }

    // The intact state: the writes the failed runs held back are made now.
    copy_state(&saved, &state_dir(&env));
    let run = env.sync(&config, &[]);
    assert_eq!(run.code, 0, "{:#}", run.report);
    assert!(
        env.target.user("dave@example.test").is_some(),
        "{:#}",
        run.report
    );
    assert_ne!(
        run.count("pending_deletion"),
        0,
        "carol goes to pending deletion: {:#}",
        run.report
    );
}
