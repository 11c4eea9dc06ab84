#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Issue 3 acceptance, behaviour §4.5: `dirsync` killed with SIGKILL in the middle of an initial
//! sync of 5,000 users into idservice; the next run converges to exactly 5,000 users with no
//! duplicate userName or externalId, and does not redo what was already confirmed.

mod common;

use std::collections::HashSet;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::{Env, TargetKind};
use serde_json::json;

const USERS: usize = 5000;

#[test]
fn sigkill_during_initial_sync_then_rerun_converges_without_duplicates() {
    let env = Env::start(TargetKind::IdService);
    env.slapd
        .load_generated(USERS, 10, &[])
        .expect("load generated data");
    let config = env.config("main", json!({}));
    let total = || {
        env.target.get("/Users?count=1")["totalResults"]
            .as_u64()
            .unwrap() as usize
    };

    let mut child = env
        .dirsync_command(&config, &[])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn dirsync");
    let deadline = Instant::now() + Duration::from_secs(120);
    let seen = loop {
        // Well into the run (a fifth of the users), so that the kill interrupts real work.
        let n = total();
        if n >= USERS / 5 {
            break n;
        }
        if let Some(status) = child.try_wait().unwrap() {
            panic!("dirsync ended ({status}) before it was killed");
        }
        assert!(Instant::now() < deadline, "{n} users after 120 s");
        std::thread::sleep(Duration::from_millis(20));
    };
    child.kill().expect("SIGKILL dirsync");
    let status = child.wait().unwrap();
    assert!(
        status.code().is_none(),
        "dirsync was killed, not finished ({status})"
    );
    // Requests (a Bulk of many users) already received by the service finish; wait until
    // the count is stable.
    let mut present = total();
    loop {
        std::thread::sleep(Duration::from_millis(300));
        let now = total();
        if now == present {
            break;
        }
        present = now;
    }
    eprintln!("killed after seeing {seen} users; {present} present");
    assert!(
        present < USERS,
        "the kill came too late to test anything ({present} users)"
    );

    let run = env.sync(&config, &[]);
    assert_eq!(run.code, 0, "{:#}", run.report);
    // Confirmed work is not redone: only the missing users are created.
    assert_eq!(
        run.count("created") as usize,
        USERS - present,
        "{:#}",
        run.report
    );
    let users = env.target.users();
    assert_eq!(users.len(), USERS);
    let names: HashSet<&str> = users
        .iter()
        .map(|u| u["userName"].as_str().unwrap())
        .collect();
    let external_ids: HashSet<&str> = users
        .iter()
        .map(|u| u["externalId"].as_str().unwrap())
        .collect();
    assert_eq!(names.len(), USERS, "duplicate userName");
    assert_eq!(external_ids.len(), USERS, "duplicate externalId");
    let groups = env.target.groups();
    assert_eq!(groups.len(), 10);

    // And the state agrees with the target: nothing left to do.
    let run = env.sync(&config, &[]);
    assert_eq!(run.code, 0, "{:#}", run.report);
    run.assert_counts(&[]);
}
