#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Issue 17: `dirsync run` as a child process against real slapd and idservice, with
//! `sync.schedule: 1s` and `--metrics-listen 127.0.0.1:0`. A user added to the directory
//! reaches the target within a few periods; `/metrics`, parsed by the Prometheus project's
//! OpenMetrics parser (prometheus-client), counts exactly the
//! runs the log reports; `/healthz` answers 200 after a good run; SIGHUP with a broken
//! configuration logs the file:line error and the daemon goes on running; SIGTERM ends it with
//! exit status 0 and a following `dirsync sync` (a full reconcile) finds nothing to do.

mod common;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{Env, TargetKind, gen_user};
use serde_json::json;

/// The daemon, killed if the test ends before it stops by itself.
struct Daemon {
    child: Child,
    log: PathBuf,
    stdout: PathBuf,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

impl Daemon {
    fn start(env: &Env, config: &Path) -> Daemon {
        let log = env.dir.path().join("daemon.log");
        let stdout = env.dir.path().join("daemon.out");
        let child = Command::new(env!("CARGO_BIN_EXE_dirsync"))
            .arg("run")
            .arg("--config")
            .arg(config)
            .arg("--secret")
            .arg(env.dir.path().join("secret.yml"))
            .args(["--metrics-listen", "127.0.0.1:0", "--log-level", "info"])
            .current_dir(env.dir.path())
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&stdout).unwrap())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("start dirsync run");
        Daemon { child, log, stdout }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The "run finished" lines logged so far.
    fn finished_runs(&self) -> Vec<String> {
        self.log()
            .lines()
            .filter(|l| l.contains("run finished"))
            .map(str::to_string)
            .collect()
    }

    fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.child.id().to_string())
            .status()
            .unwrap();
        assert!(status.success());
    }

    fn alive(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    /// The metrics address the daemon printed: its one line on stdout.
    fn metrics_addr(&self) -> String {
        let out = wait_for(Duration::from_secs(20), "the metrics address", || {
            let out = std::fs::read_to_string(&self.stdout).unwrap_or_default();
            out.ends_with('\n').then_some(out)
        });
        let addr = out.strip_prefix("metrics listening on http://").unwrap();
        addr.trim_end().to_string()
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

/// `GET path` over HTTP/1.0: (status, body).
fn http_get(addr: &str, path: &str) -> (u16, String) {
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap();
    let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    (status, body.to_string())
}

/// One sample: metric name, labels, value.
type Sample = (String, BTreeMap<String, String>, f64);

/// The Prometheus project's parser of the OpenMetrics text format (prometheus-client, in the
/// peers venv), run over `text`: it fails on any line the format does not allow.
const PARSER: &str = r#"
import json, sys
from prometheus_client.openmetrics.parser import text_string_to_metric_families
for family in text_string_to_metric_families(sys.stdin.read()):
    for s in family.samples:
        print(json.dumps([s.name, s.labels, s.value]))
"#;

fn parse_metrics(text: &str) -> Vec<Sample> {
    let mut child = Command::new(testenv::peers_venv().join("bin/python"))
        .args(["-c", PARSER])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python of the peers venv (scripts/install-test-deps)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "the OpenMetrics parser refused the text: {}\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect()
}

/// The sum of the samples named `name` whose labels include `with`.
fn sum(samples: &[Sample], name: &str, with: &[(&str, &str)]) -> f64 {
    samples
        .iter()
        .filter(|(n, labels, _)| {
            n == name
                && with
                    .iter()
                    .all(|(k, v)| labels.get(*k).map(String::as_str) == Some(*v))
        })
        .map(|(_, _, v)| v)
        .sum()
}

#[test]
fn daemon_syncs_on_schedule_reloads_and_stops() {
    let env = Env::start(TargetKind::IdService);
    env.slapd
        .load_generated(5, 1, &[])
        .expect("load generated data");
    let good = json!({"sync": {"schedule": "1s"}});
    let config = env.config("daemon", good.clone());
    let good_text = std::fs::read_to_string(&config).unwrap();
    let mut daemon = Daemon::start(&env, &config);
    let addr = daemon.metrics_addr();

    // The first run creates the directory's users.
    wait_for(Duration::from_secs(20), "the first run's users", || {
        (env.target.users().len() == 5).then_some(())
    });
    // A user added to the directory arrives within a few periods.
    env.add_user("newcomer", "ou=people", "example.test", &[]);
    let added = Instant::now();
    wait_for(Duration::from_secs(6), "the new user in the target", || {
        env.target.user("newcomer@example.test")
    });
    eprintln!("new user arrived after {:.2?}", added.elapsed());

    // The run that wrote the newcomer has finished (its writes land before it is recorded).
    wait_for(Duration::from_secs(10), "two finished runs", || {
        (daemon.finished_runs().len() >= 2).then_some(())
    });
    // /metrics counts exactly the runs the log reports: each run is recorded and logged
    // under the lock a scrape takes, so the log read before and after brackets the scrape.
    let before = daemon.finished_runs().len();
    let (status, text) = http_get(&addr, "/metrics");
    let after = daemon.finished_runs();
    assert_eq!(status, 200, "{text}");
    let samples = parse_metrics(&text);
    let runs = sum(&samples, "dirsync_runs_total", &[]);
    assert!(
        before as f64 <= runs && runs <= after.len() as f64,
        "{before} <= {runs} <= {}\n{text}",
        after.len()
    );
    assert!(runs >= 2.0, "{text}");
    for line in &after {
        assert!(line.contains("exit_code=0"), "{line}");
    }
    assert_eq!(
        sum(&samples, "dirsync_runs_total", &[("exit_code", "0")]),
        runs
    );
    assert_eq!(
        sum(&samples, "dirsync_runs_total", &[("mode", "full")]),
        1.0,
        "{text}"
    );
    assert_eq!(
        sum(&samples, "dirsync_run_duration_seconds_count", &[]),
        runs
    );
    assert_eq!(sum(&samples, "dirsync_last_run_exit_code", &[]), 0.0);
    assert!(sum(&samples, "dirsync_last_success_timestamp_seconds", &[]) > 1.7e9);
    let created = [("kind", "user"), ("op", "create"), ("result", "ok")];
    assert_eq!(
        sum(&samples, "dirsync_operations_total", &created),
        6.0,
        "{text}"
    );
    assert_eq!(
        sum(
            &samples,
            "dirsync_operations_total",
            &[("kind", "group"), ("op", "create")]
        ),
        1.0,
        "{text}"
    );
    assert_eq!(sum(&samples, "dirsync_refused_runs_total", &[]), 0.0);
    assert_eq!(http_get(&addr, "/healthz").0, 200);

    // SIGHUP with a broken configuration: the error names file and line, runs go on.
    std::fs::write(&config, "iid:\n  scim:\n    base_url: not-a-url\n").unwrap();
    daemon.signal("HUP");
    let shown = wait_for(Duration::from_secs(10), "the refused reload", || {
        daemon
            .log()
            .lines()
            .find(|l| l.contains("configuration reload refused"))
            .map(str::to_string)
    });
    assert!(
        shown.contains(&format!("{}:3:", config.display())) && shown.contains("base_url"),
        "{shown}"
    );
    let refused_at = daemon.finished_runs().len();
    wait_for(Duration::from_secs(10), "two more runs", || {
        (daemon.finished_runs().len() >= refused_at + 2).then_some(())
    });
    assert!(daemon.alive());
    std::fs::write(&config, &good_text).unwrap();

    // SIGTERM: exit status 0, and the next `dirsync sync` (full: the configuration file
    // changed since the daemon's last run) has nothing to do.
    daemon.signal("TERM");
    let status = wait_for(Duration::from_secs(20), "the daemon to stop", || {
        daemon.child.try_wait().unwrap()
    });
    assert_eq!(status.code(), Some(0), "{}", daemon.log());
    assert!(daemon.log().contains("dirsync run stopped"));
    let run = env.sync(&config, &[]);
    assert_eq!(run.code, 0, "{:#}", run.report);
    run.assert_counts(&[]);
    assert_eq!(run.report["drift"], json!(0), "{:#}", run.report);
    assert!(env.target.user(&gen_user(1)).is_some());
}

/// `dirsync_watch_connected` as `/metrics` shows it now.
fn watch_connected(addr: &str) -> f64 {
    let (status, text) = http_get(addr, "/metrics");
    assert_eq!(status, 200, "{text}");
    sum(&parse_metrics(&text), "dirsync_watch_connected", &[])
}

/// Issue 17, "deprovisioning in seconds": with `sync.watch: true` and a schedule of an hour
/// (so that only the watcher can start the runs measured here), a user disabled in slapd is
/// inactive in the target within 5 s, and a user deleted goes to pending deletion within 5 s.
/// slapd stopped under the daemon: `dirsync_watch_connected` drops to 0; a user added while
/// it is down (slapadd, offline) arrives once slapd is back and the watcher has reconnected.
#[test]
fn watch_follows_slapd_within_seconds_and_across_a_restart() {
    let env = Env::start(TargetKind::IdService);
    env.slapd
        .load_generated(20, 1, &[])
        .expect("load generated data");
    let overrides = json!({
        "iid": {"scim": {"attribute": {"user": {"ad_bind": {"active": "employeeType"}}}}},
        "sync": {"schedule": "1h", "watch": true},
    });
    let config = env.config("watch", overrides);
    let daemon = Daemon::start(&env, &config);
    let addr = daemon.metrics_addr();
    wait_for(Duration::from_secs(30), "the first run's users", || {
        (env.target.users().len() == 20).then_some(())
    });
    wait_for(Duration::from_secs(10), "the watcher to connect", || {
        (watch_connected(&addr) == 1.0).then_some(())
    });

    // Disabled in the directory: inactive in the target within 5 s.
    let dn = env.user_dn(&common::gen_uid(1));
    env.modify(&dn, "replace", "employeeType", Some("false"));
    let changed = Instant::now();
    wait_for(
        Duration::from_secs(5),
        "the user disabled in the target",
        || {
            let user = env.target.user(&gen_user(1))?;
            (user["active"] == json!(false)).then_some(())
        },
    );
    eprintln!("disable arrived after {:.2?}", changed.elapsed());

    // Deleted in the directory: pending deletion within 5 s.
    env.slapd
        .delete(&[&env.user_dn(&common::gen_uid(2))])
        .unwrap();
    let changed = Instant::now();
    wait_for(Duration::from_secs(5), "the user pending deletion", || {
        env.target
            .pending_list()
            .contains(&gen_user(2))
            .then_some(())
    });
    eprintln!("deletion arrived after {:.2?}", changed.elapsed());

    // slapd down: the watcher says so; a user added meanwhile arrives after the restart.
    env.slapd.stop().unwrap();
    wait_for(Duration::from_secs(40), "the watcher to notice", || {
        (watch_connected(&addr) == 0.0).then_some(())
    });
    let ldif = env.dir.path().join("offline.ldif");
    std::fs::write(
        &ldif,
        format!(
            "dn: uid=offline,ou=people,{base}\nobjectClass: inetOrgPerson\nuid: offline\n\
             cn: offline\nsn: Test\ngivenName: offline\nmail: offline@example.test\n",
            base = env.slapd.base
        ),
    )
    .unwrap();
    env.slapd.load_ldif_offline(&ldif).unwrap();
    wait_for(
        Duration::from_secs(90),
        "the offline user in the target",
        || env.target.user("offline@example.test"),
    );
    // The user can arrive through the catch-up run that follows the restart before the
    // watcher's search is set up again: the gauge follows within seconds.
    wait_for(Duration::from_secs(30), "the watcher to reconnect", || {
        (watch_connected(&addr) == 1.0).then_some(())
    });
    assert!(
        daemon.log().contains("watcher disconnected, reconnecting"),
        "{}",
        daemon.log()
    );
}

/// SIGTERM during a run lets the run finish (exit status 0); SIGTERM twice abandons it at
/// once (exit status 0). Either way the next `dirsync sync` converges: every user exactly once.
#[test]
fn sigterm_mid_run_leaves_a_state_the_next_run_converges_from() {
    for signals in [1, 2] {
        let env = Env::start(TargetKind::IdService);
        env.slapd
            .load_generated(3000, 20, &[])
            .expect("load generated data");
        let config = env.config("term", json!({"sync": {"schedule": "1h"}}));
        let mut daemon = Daemon::start(&env, &config);
        wait_for(Duration::from_secs(60), "the run to start writing", || {
            (!env.target.users().is_empty()).then_some(())
        });
        for _ in 0..signals {
            daemon.signal("TERM");
        }
        let status = wait_for(Duration::from_secs(60), "the daemon to stop", || {
            daemon.child.try_wait().unwrap()
        });
        assert_eq!(status.code(), Some(0), "{}", daemon.log());
        let finished = !daemon.finished_runs().is_empty();
        eprintln!(
            "{signals} SIGTERM(s): the run {} with {} of 3000 users written",
            if finished {
                "finished"
            } else {
                "was abandoned"
            },
            env.target.users().len()
        );
        if signals == 1 {
            assert!(
                finished,
                "one SIGTERM lets the run finish: {}",
                daemon.log()
            );
            assert_eq!(env.target.users().len(), 3000);
        }
        let run = env.sync(&config, &[]);
        assert!(run.code == 0, "{:#}", run.report);
        let users = env.target.users();
        let names: std::collections::BTreeSet<_> =
            users.iter().map(|u| u["userName"].to_string()).collect();
        assert_eq!(users.len(), 3000, "after {signals} SIGTERM(s)");
        assert_eq!(
            names.len(),
            3000,
            "no duplicates after {signals} SIGTERM(s)"
        );
        let again = env.sync(&config, &[]);
        assert_eq!(again.code, 0, "{:#}", again.report);
        again.assert_counts(&[]);
    }
}
