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

/// The read's answer, not a lost connection: a size limit that ends a paged read after three
/// pages, a referral (a branch of the tree moved to a server that does not exist), an empty
/// base and a base that does not exist. None of them may move anyone to pending deletion:
/// each read is incomplete or empty, so nothing is deleted, and the run says why.
#[test]
fn limits_referrals_and_empty_bases_move_no_one_to_pending() {
    const SMALL: usize = 300;
    let env = Env::start(TargetKind::IdService);
    env.slapd
        .load_generated(SMALL, 5, &[])
        .expect("load generated data");
    env.slapd
        .add(&format!(
            "dn: ou=branch,ou=people,{base}\nobjectClass: organizationalUnit\nou: branch\n\n\
             dn: ou=empty,{base}\nobjectClass: organizationalUnit\nou: empty\n",
            base = env.slapd.base
        ))
        .unwrap();
    for i in 0..5 {
        env.add_user(
            &format!("branch{i}"),
            "ou=branch,ou=people",
            "example.test",
            &[],
        );
    }
    let config = env.config("main", json!({}));
    let run = env.sync(&config, &[]);
    assert_eq!(run.code, 0, "{:#}\n{}", run.report, run.stderr);
    assert_eq!(env.target.users().len(), SMALL + 5);
    let incomplete = |label: &str, run: &Run, why: &str| {
        assert!(
            !run.report["read_complete"].as_bool().unwrap_or(true),
            "{label}: {:#}",
            run.report
        );
        assert!(run.notes().contains(why), "{label}: {}", run.notes());
        assert!(
            run.notes().contains("no user or group is deleted"),
            "{label}: {}",
            run.notes()
        );
        assert_eq!(run.count("deleted"), 0, "{label}: {:#}", run.report);
        assert_eq!(env.target.users().len(), SMALL + 5, "{label}");
        assert_no_one_pending(&env);
    };

    // A size limit: pages of 50, and the answer ends with sizeLimitExceeded after 150
    // entries (the syncrepl refresh of a full run hits it too, and falls back to the paged read).
    let limits = |value: &str| {
        format!(
            "dn: olcDatabase={{2}}mdb,cn=config\nchangetype: modify\nreplace: olcLimits\n\
             olcLimits: {{0}}dn.exact=\"{}\" {value}\n",
            env.slapd.sync_dn
        )
    };
    env.slapd
        .modify_config(&limits(
            "size=150 size.pr=50 size.prtotal=150 time=unlimited",
        ))
        .unwrap();
    let run = env.sync(&config, &["--full"]);
    incomplete("size limit", &run, "LDAP result 4");
    env.slapd
        .modify_config(&limits("size=unlimited time=unlimited"))
        .unwrap();

    // A referral: the branch's users gone from this server, the branch now a referral to a
    // server that does not exist (never followed).
    let branch_dns: Vec<String> = (0..5)
        .map(|i| format!("uid=branch{i},ou=branch,ou=people,{}", env.slapd.base))
        .collect();
    env.slapd
        .delete(&branch_dns.iter().map(String::as_str).collect::<Vec<_>>())
        .unwrap();
    env.slapd
        .modify_managing(&format!(
            "dn: ou=branch,ou=people,{base}\nchangetype: delete\n\n\
             dn: ou=branch,ou=people,{base}\nchangetype: add\nobjectClass: referral\n\
             objectClass: extensibleObject\nou: branch\nref: ldap://127.0.0.1:9/ou=branch,dc=elsewhere\n",
            base = env.slapd.base
        ))
        .unwrap();
    let run = env.sync(&config, &["--full"]);
    incomplete(
        "referral",
        &run,
        "ldap://127.0.0.1:9/ou=branch,dc=elsewhere",
    );
    // An incremental run takes the same referral the same way.
    let run = env.sync(&config, &[]);
    eprintln!(
        "incremental with a referral: exit {}, notes: {}",
        run.code,
        run.notes()
    );
    incomplete(
        "referral, incremental",
        &run,
        "ldap://127.0.0.1:9/ou=branch,dc=elsewhere",
    );

    // An empty base, and a base that does not exist.
    for (label, base) in [("empty base", "ou=empty"), ("missing base", "ou=missing")] {
        let config = env.config(
            label.replace(' ', "-").as_str(),
            json!({
                "ad": {"ldap": {"base_dn": format!("{base},{}", env.slapd.base)}},
                "sync": {"state_dir": "state-main"},
            }),
        );
        let run = env.sync(&config, &["--full"]);
        eprintln!("{label}: exit {}, notes: {}", run.code, run.notes());
        let failed_read = !run.report["read_complete"].as_bool().unwrap_or(true)
            || run.notes().contains("returned no users");
        assert!(failed_read, "{label}: {:#}", run.report);
        assert_eq!(run.count("deleted"), 0, "{label}: {:#}", run.report);
        assert_eq!(env.target.users().len(), SMALL + 5, "{label}");
        assert_no_one_pending(&env);
    }
}
