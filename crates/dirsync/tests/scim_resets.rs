#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Issue 23, progress under transient faults: the SCIM connection cut in the middle of
//! answers (a load balancer's or a proxy's reset) must not cost a run. Every connection to
//! the target goes through the fault proxy, which resets it once it has carried a few dozen
//! kilobytes of answers, so creates and Bulk requests are cut off after the target applied
//! them. The initial sync still ends in its first run with exit 0, every user exactly once:
//! requests safe to repeat are repeated, and a create that may have been applied is looked up
//! by externalId before it is sent again. Against idservice (which refuses a second
//! externalId) and scim2-server (which would keep both).

mod common;

use std::collections::HashSet;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::{Env, TargetKind};
use serde_json::json;
use testenv::{FaultMode, FaultProxy};

const USERS: usize = 1500;
const GROUPS: usize = 10;

/// A fault proxy in front of the target.
fn proxy_for(env: &Env) -> FaultProxy {
    let upstream = env
        .target
        .url()
        .split_once("://")
        .unwrap()
        .1
        .split('/')
        .next()
        .unwrap()
        .to_string();
    FaultProxy::start(&upstream).expect("start fault proxy")
}

/// Every user of the target, each exactly once.
fn assert_each_user_once(env: &Env, users: usize) {
    let listed = env.target.users();
    let external: HashSet<&str> = listed
        .iter()
        .map(|u| u["externalId"].as_str().unwrap())
        .collect();
    let names: HashSet<&str> = listed
        .iter()
        .map(|u| u["userName"].as_str().unwrap())
        .collect();
    assert_eq!(listed.len(), users, "users on the target");
    assert_eq!(external.len(), users, "duplicate externalIds");
    assert_eq!(names.len(), users, "duplicate userNames");
}

fn initial_sync_through_resets(kind: TargetKind) {
    let env = Env::start(kind);
    env.slapd
        .load_generated(USERS, GROUPS, &[])
        .expect("load generated data");
    let proxy = proxy_for(&env);
    proxy.set_reset_after_bytes(16_000).unwrap();
    let config = env.config(
        "main",
        json!({"iid": {"scim": {"base_url": proxy.proxied_url(env.target.url())}}}),
    );

    let run = env.sync(&config, &[]);
    let status: serde_json::Value = serde_json::from_str(&proxy.status().unwrap()).unwrap();
    let resets = status["stats"]["resets"].as_u64().unwrap_or(0);
    eprintln!(
        "{kind:?}: {resets} connections reset; exit {}; stopped: {}",
        run.code, run.report["stopped"]
    );
    assert!(
        resets >= 5,
        "the proxy reset only {resets} connections: {status}"
    );
    assert_eq!(run.code, 0, "{:#}\n{}", run.report, run.stderr);
    assert_eq!(run.count("created") as usize, USERS, "{:#}", run.report);

    assert_each_user_once(&env, USERS);
    assert_eq!(env.target.groups().len(), GROUPS, "groups on the target");

    // And the next run finds nothing to do.
    proxy.set_reset_after_bytes(0).unwrap();
    let again = env.sync(&config, &["--full"]);
    assert_eq!(again.code, 0, "{:#}", again.report);
    again.assert_counts(&[]);
}

#[test]
fn resets_during_an_initial_sync_into_idservice_cost_nothing() {
    initial_sync_through_resets(TargetKind::IdService);
}

#[test]
fn resets_during_an_initial_sync_into_scim2_server_cost_nothing() {
    initial_sync_through_resets(TargetKind::Scim2);
}

/// `sync.unreachable_after`: a target that refuses connections for a few seconds in the
/// middle of an initial sync is waited for, and the run ends with exit 0, every user once; a
/// target that stays down past `unreachable_after` stops the run with exit 3.
#[test]
fn a_target_down_for_seconds_is_waited_for_and_one_down_for_good_stops_the_run() {
    const MANY: usize = 4000;
    let env = Env::start(TargetKind::IdService);
    env.slapd
        .load_generated(MANY, GROUPS, &[])
        .expect("load generated data");
    let proxy = proxy_for(&env);
    let url = proxy.proxied_url(env.target.url());
    let config = env.config(
        "main",
        json!({"iid": {"scim": {"base_url": url}}, "sync": {"unreachable_after": "30s"}}),
    );
    let total = || {
        env.target.get("/Users?count=1")["totalResults"]
            .as_u64()
            .unwrap() as usize
    };
    let mut child = env
        .dirsync_command(&config, &[])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn dirsync");
    let deadline = Instant::now() + Duration::from_secs(120);
    while total() < MANY / 10 {
        assert!(
            child.try_wait().unwrap().is_none(),
            "the run ended too soon"
        );
        assert!(Instant::now() < deadline, "no progress");
        std::thread::sleep(Duration::from_millis(10));
    }
    proxy.set_mode(FaultMode::Refuse).unwrap();
    let down_at = total();
    std::thread::sleep(Duration::from_secs(4));
    assert!(
        child.try_wait().unwrap().is_none(),
        "the run gave up while the target was down for 4 s"
    );
    proxy.set_mode(FaultMode::Pass).unwrap();
    let output = child.wait_with_output().unwrap();
    let run = common::parse_run(&output);
    eprintln!("target down at {down_at} users; exit {}", run.code);
    assert!(down_at < MANY, "the target went down after the run");
    assert_eq!(run.code, 0, "{:#}\n{}", run.report, run.stderr);
    assert_each_user_once(&env, MANY);

    // Down for good: the run stops once `unreachable_after` has passed, with exit 3.
    env.add_user("late", "ou=people", "example.test", &[]);
    let short = env.config(
        "main",
        json!({"iid": {"scim": {"base_url": url}}, "sync": {"unreachable_after": "2s"}}),
    );
    proxy.set_mode(FaultMode::Refuse).unwrap();
    let started = Instant::now();
    let run = env.sync(&short, &[]);
    let took = started.elapsed();
    assert_eq!(run.code, 3, "{:#}", run.report);
    assert!(
        took >= Duration::from_secs(2) && took < Duration::from_secs(60),
        "gave up after {took:?}"
    );
    assert!(
        run.report["stopped"]
            .as_str()
            .unwrap_or("")
            .contains("cannot reach"),
        "{:#}",
        run.report
    );
}

/// A target that answers `200` with an empty list (a proxy in front of it answering "nothing
/// here", a scope filter matching nothing) while it holds every user this instance created:
/// a full run stops before it writes anything (exit 2), and creates no second copy of
/// anyone, even on scim2-server, which would keep a duplicate; the incremental run, which
/// plans against its cache, is not misled either. Once the answers are whole again the
/// next full run finds nothing to do.
fn empty_lists_change_nothing(kind: TargetKind) {
    let env = Env::start(kind);
    env.slapd
        .load_generated(50, 3, &[])
        .expect("load generated data");
    let proxy = proxy_for(&env);
    let config = env.config(
        "main",
        json!({"iid": {"scim": {"base_url": proxy.proxied_url(env.target.url())}}}),
    );
    let run = env.sync(&config, &[]);
    assert_eq!(run.code, 0, "{:#}\n{}", run.report, run.stderr);
    assert_each_user_once(&env, 50);

    proxy.set_empty_lists(true).unwrap();
    env.slapd
        .delete(&[&env.user_dn(&common::gen_uid(3))])
        .unwrap();
    for args in [&["--full"][..], &["--full", "--dry-run"][..]] {
        let run = env.sync(&config, args);
        assert_eq!(run.code, 2, "{args:?}: {:#}\n{}", run.report, run.stderr);
        let stopped = run.report["stopped"].as_str().unwrap_or("");
        assert!(
            stopped.contains("none of the 50 this instance manages"),
            "{args:?}: {stopped}"
        );
        assert_eq!(run.count("created"), 0, "{args:?}: {:#}", run.report);
        assert_each_user_once(&env, 50);
    }
    let status: serde_json::Value = serde_json::from_str(&proxy.status().unwrap()).unwrap();
    assert!(
        status["stats"]["http_emptied"].as_u64().unwrap_or(0) >= 2,
        "{status}"
    );

    proxy.set_empty_lists(false).unwrap();
    let run = env.sync(&config, &["--full"]);
    assert_eq!(run.code, 0, "{:#}\n{}", run.report, run.stderr);
    assert_eq!(run.count("created"), 0, "{:#}", run.report);
    env.target.assert_pending(&common::gen_user(3));
}

#[test]
fn empty_lists_from_idservice_change_nothing() {
    empty_lists_change_nothing(TargetKind::IdService);
}

#[test]
fn empty_lists_from_scim2_server_change_nothing() {
    empty_lists_change_nothing(TargetKind::Scim2);
}
