#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Issue 17, "deprovisioning in seconds" on Active Directory: `dirsync run` with
//! `sync.watch: true` against a real Samba AD DC holds a change-notification search (Samba
//! grants it; the log shows it was used) and polls `highestCommittedUSN` every
//! `sync.watch_interval` (3 s here), and runs as soon as either reports a change. The schedule is an hour, so
//! only the watcher can start the runs measured: a user disabled in AD is inactive in the
//! target, and a user deleted is pending deletion, each within 2 × `watch_interval`.

mod ad_common;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use ad_common::*;

/// The daemon, killed when the test ends.
struct Daemon(Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Polls `f` every 100 ms until it gives a value; panics after `limit`.
fn wait_for<T>(limit: Duration, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(start.elapsed() < limit, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn ad_watch_disables_and_pends_within_two_intervals() {
    if testenv::skip_samba("ad_watch_disables_and_pends_within_two_intervals") {
        return;
    }
    let dc = start_dc("EXAMPLE.TEST", "EXAMPLE");
    // Incremental runs see deletions through tombstones (docs/active-directory.md).
    dc.grant_deleted_objects_read("svc-dirsync").unwrap();
    let ids = start_idservice();
    dc.add_ou("corp").unwrap();
    let users: Vec<_> = ["ann", "ben", "cat", "dan"]
        .iter()
        .map(|n| add_corp_user(&dc, n))
        .collect();
    let interval = Duration::from_secs(3);
    let config = basic_config(&dc, &ids.url, "", "").replace("base_dn: '", "base_dn: 'OU=corp,")
        + "  schedule: 1h\n  watch: true\n  watch_interval: 3s\n";
    let inst = Instance::new(&config, &dc.svc_pw, &ids.token);
    let cfg = inst.load();
    let log = inst.dir.path().join("daemon.log");
    let _daemon = Daemon(
        Command::new(env!("CARGO_BIN_EXE_dirsync"))
            .args(["run", "--config"])
            .arg(&inst.config)
            .args(["--log-level", "debug"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap(),
    );
    let daemon_log = || std::fs::read_to_string(&log).unwrap_or_default();
    wait_for(Duration::from_secs(60), "the first run's users", || {
        (target_users(&cfg).len() == 4).then_some(())
    });
    wait_for(Duration::from_secs(30), "the watcher to connect", || {
        daemon_log().contains("watcher connected").then_some(())
    });
    // The run the connection made due has finished before the clock starts.
    std::thread::sleep(interval);

    dc.disable_user(&users[0].dn).unwrap();
    let changed = Instant::now();
    wait_for(2 * interval, "ann inactive in the target", || {
        let all = target_users(&cfg);
        let ann = user_named(&all, &users[0].upn)?;
        (ann["active"] == serde_json::json!(false)).then_some(())
    });
    eprintln!("AD disable arrived after {:.2?}", changed.elapsed());

    dc.delete_user(&users[1].dn).unwrap();
    let changed = Instant::now();
    wait_for(2 * interval, "ben pending deletion", || {
        let all = target_users(&cfg);
        user_named(&all, &users[1].upn).filter(|u| is_pending(u))?;
        Some(())
    });
    eprintln!("AD deletion arrived after {:.2?}", changed.elapsed());
    assert!(
        !daemon_log().contains("watcher disconnected"),
        "{}",
        daemon_log()
    );
    for line in daemon_log().lines().filter(|l| {
        l.contains("notification") || l.contains("run finished") || l.contains("changed")
    }) {
        eprintln!("daemon: {line}");
    }
    // Samba grants change notification: the watcher used it (the USN poll runs beside it).
    assert!(
        daemon_log().contains("Active Directory change notification: an object changed"),
        "{}",
        daemon_log()
    );
}
