#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Faults on the directory side: the LDAP connection cut in the middle of a read (a reset,
//! a restart) must cost a re-read, never a run and never a user. Every connection to slapd
//! goes through the fault proxy, which resets the next connections once they have carried
//! a given number of bytes. A cut read is made again from the start on a new connection; a
//! directory down for good stops the run (exit 3) once `sync.unreachable_after` has passed;
//! a refused bind is not retried. In no case does anyone reach pending deletion.

mod common;

use std::time::{Duration, Instant};

use common::{Env, Run, TargetKind};
use serde_json::json;
use testenv::{FaultMode, FaultProxy};

const USERS: usize = 3000;
const GROUPS: usize = 10;

/// slapd with generated users, and a fault proxy in front of it.
fn env_with_proxy() -> (Env, FaultProxy) {
    let env = Env::start(TargetKind::IdService);
    env.slapd
        .load_generated(USERS, GROUPS, &[])
        .expect("load generated data");
    let proxy = FaultProxy::start(&format!("127.0.0.1:{}", env.slapd.port)).expect("fault proxy");
    (env, proxy)
}

/// The base config, reading slapd through the proxy.
fn config(env: &Env, proxy: &FaultProxy, unreachable_after: &str) -> std::path::PathBuf {
    let port: u16 = proxy.listen.rsplit_once(':').unwrap().1.parse().unwrap();
    env.config(
        "main",
        json!({
            "ad": {"ldap": {"server": {"port": port}}},
            "sync": {"unreachable_after": unreachable_after},
        }),
    )
}

fn resets(proxy: &FaultProxy) -> u64 {
    let status: serde_json::Value = serde_json::from_str(&proxy.status().unwrap()).unwrap();
    status["stats"]["resets"].as_u64().unwrap()
}

/// Nobody is pending deletion in idservice (its own list, not the agent's report).
fn assert_no_one_pending(env: &Env) {
    let pending = env.target.pending_list();
    assert!(
        !pending.contains("@example.test"),
        "users pending deletion: {pending}"
    );
}

fn assert_lost_and_read_again(run: &Run, times: u32) {
    let notes = run.notes();
    assert!(
        notes.contains(&format!("lost {times} time(s)")) && notes.contains("again from the start"),
        "{notes}"
    );
}

/// The initial read, a full reconcile and an incremental read, each cut twice in the middle
/// (the first two connections that carry 120 kB are reset): each run ends with exit 0, the
/// target is complete, and no one is ever pending deletion except the one user deleted in
/// the directory.
#[test]
fn a_read_cut_in_the_middle_is_made_again_and_deletes_no_one() {
    let (env, proxy) = env_with_proxy();
    let config = config(&env, &proxy, "30s");

    proxy.set_resets(120_000, 2).unwrap();
    let run = env.sync(&config, &[]);
    assert_eq!(run.code, 0, "{:#}\n{}", run.report, run.stderr);
    assert_eq!(resets(&proxy), 2);
    assert_lost_and_read_again(&run, 2);
    assert_eq!(env.target.users().len(), USERS);
    assert!(run.report["read_complete"].as_bool().unwrap());

    proxy.set_resets(120_000, 2).unwrap();
    let run = env.sync(&config, &["--full"]);
    assert_eq!(run.code, 0, "{:#}\n{}", run.report, run.stderr);
    assert_eq!(resets(&proxy), 4);
    assert_lost_and_read_again(&run, 2);
    run.assert_counts(&[
        ("unchanged_users", USERS as u64),
        ("unchanged_groups", GROUPS as u64),
    ]);
    assert_no_one_pending(&env);

    // An incremental read cut once (a small one: cut after 200 bytes).
    env.slapd
        .delete(&[&env.user_dn(&common::gen_uid(7))])
        .unwrap();
    env.add_user("late", "ou=people", "example.test", &[]);
    proxy.set_resets(200, 1).unwrap();
    let run = env.sync(&config, &[]);
    assert_eq!(run.code, 0, "{:#}\n{}", run.report, run.stderr);
    assert_eq!(resets(&proxy), 5);
    assert_lost_and_read_again(&run, 1);
    assert!(
        env.target.user("late@example.test").is_some(),
        "{:#}",
        run.report
    );
    env.target.assert_pending(&common::gen_user(7));
    let pending = env.target.pending_list();
    assert_eq!(
        pending.matches("@example.test").count(),
        1,
        "only the deleted user is pending: {pending}"
    );
}

/// A directory down for a few seconds is waited for; one down for good stops the run with
/// exit 3 once `unreachable_after` has passed, having changed nothing.
#[test]
fn a_directory_down_for_good_stops_the_run_and_changes_nothing() {
    let (env, proxy) = env_with_proxy();
    let run = env.sync(&config(&env, &proxy, "30s"), &[]);
    assert_eq!(run.code, 0, "{:#}\n{}", run.report, run.stderr);

    // Down for 3 s when the run starts: waited for.
    env.add_user("late", "ou=people", "example.test", &[]);
    proxy.set_mode(FaultMode::Refuse).unwrap();
    let mut child = env
        .dirsync_command(&config(&env, &proxy, "30s"), &[])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_secs(3));
    assert!(
        child.try_wait().unwrap().is_none(),
        "the run gave up while the directory was down for 3 s"
    );
    proxy.set_mode(FaultMode::Pass).unwrap();
    let run = common::parse_run(&child.wait_with_output().unwrap());
    assert_eq!(run.code, 0, "{:#}\n{}", run.report, run.stderr);
    assert!(env.target.user("late@example.test").is_some());

    // Down for good.
    env.add_user("later", "ou=people", "example.test", &[]);
    proxy.set_mode(FaultMode::Refuse).unwrap();
    for args in [&[][..], &["--full"][..]] {
        let started = Instant::now();
        let run = env.sync(&config(&env, &proxy, "2s"), args);
        let took = started.elapsed();
        assert_eq!(run.code, 3, "{args:?}: {:#}\n{}", run.report, run.stderr);
        assert!(
            took >= Duration::from_secs(2) && took < Duration::from_secs(60),
            "{args:?}: gave up after {took:?}"
        );
        assert!(
            run.report["stopped"]
                .as_str()
                .unwrap_or("")
                .contains("directory"),
            "{:#}",
            run.report
        );
        assert!(env.target.user("later@example.test").is_none());
        assert_eq!(env.target.users().len(), USERS + 1);
        assert_no_one_pending(&env);
    }
}

/// A bind the directory refuses is its answer, not a lost connection: the run stops at
/// once with exit 3 (not after `unreachable_after`), and nothing changes.
#[test]
fn a_bind_that_starts_failing_stops_the_run_at_once() {
    let (env, proxy) = env_with_proxy();
    let config = config(&env, &proxy, "2m");
    let run = env.sync(&config, &[]);
    assert_eq!(run.code, 0, "{:#}\n{}", run.report, run.stderr);
    env.slapd
        .modify(&format!(
            "dn: {}\nchangetype: modify\nreplace: userPassword\nuserPassword: changed-elsewhere\n",
            env.slapd.sync_dn
        ))
        .unwrap();
    for args in [&[][..], &["--full"][..]] {
        let started = Instant::now();
        let run = env.sync(&config, args);
        assert_eq!(run.code, 3, "{args:?}: {:#}\n{}", run.report, run.stderr);
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "{args:?}: a refused bind was retried for {:?}",
            started.elapsed()
        );
        assert!(
            run.report["stopped"]
                .as_str()
                .unwrap_or("")
                .contains("bind"),
            "{:#}",
            run.report
        );
        assert_eq!(env.target.users().len(), USERS);
        assert_no_one_pending(&env);
    }
}
