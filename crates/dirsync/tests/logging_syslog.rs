#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Issue "dirsync as a service", item 4: logging as configured, on real slapd and idservice.
//!
//! - `log.logger: syslog` with `log.syslog_socket` pointing at a Unix datagram socket the test
//!   binds: every line arrives as one RFC 5424 message (`<PRI>1 TIMESTAMP HOST dirsync PID - -
//!   MSG`), nothing goes to stderr, and the run's start and end (with the counts) are there; a
//!   refused run's end line is at warning severity and says why.
//! - `log.file` with a small `file_max_size`: the file is rotated, at most `file_keep` rotated
//!   files are kept, none is over the size, and no secret is in any of them.

mod common;

use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::time::Duration;

use common::{Env, TargetKind, gen_uid};
use serde_json::json;

/// Every datagram waiting on `socket`.
fn drain(socket: &UnixDatagram) -> Vec<String> {
    socket
        .set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let mut out = Vec::new();
    let mut buf = vec![0u8; 65536];
    while let Ok(n) = socket.recv(&mut buf) {
        out.push(String::from_utf8(buf[..n].to_vec()).expect("UTF-8 message"));
    }
    out
}

/// One parsed RFC 5424 header.
#[derive(Debug)]
struct Syslog {
    pri: u16,
    hostname: String,
    app: String,
    procid: String,
    msg: String,
}

/// Parses `<PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID MSGID SD MSG` strictly.
fn parse_5424(line: &str) -> Syslog {
    let rest = line
        .strip_prefix('<')
        .unwrap_or_else(|| panic!("no PRI: {line}"));
    let (pri, rest) = rest.split_once('>').unwrap();
    let pri: u16 = pri.parse().unwrap_or_else(|_| panic!("bad PRI: {line}"));
    assert!(pri <= 191, "{line}");
    let mut parts = rest.splitn(8, ' ');
    let mut next = || parts.next().unwrap_or_else(|| panic!("short: {line}"));
    assert_eq!(next(), "1", "version: {line}");
    let timestamp = next();
    chrono::DateTime::parse_from_rfc3339(timestamp)
        .unwrap_or_else(|e| panic!("timestamp {timestamp:?}: {e}: {line}"));
    assert!(timestamp.ends_with('Z'), "{line}");
    let hostname = next().to_string();
    let app = next().to_string();
    let procid = next().to_string();
    assert_eq!(next(), "-", "MSGID: {line}");
    assert_eq!(next(), "-", "STRUCTURED-DATA: {line}");
    let msg = next().to_string();
    for field in [&hostname, &app, &procid] {
        assert!(
            !field.is_empty() && field.bytes().all(|b| (33..=126).contains(&b)),
            "{line}"
        );
    }
    Syslog {
        pri,
        hostname,
        app,
        procid,
        msg,
    }
}

#[test]
fn syslog_rfc5424_on_a_datagram_socket() {
    let env = Env::start(TargetKind::IdService);
    env.slapd.load_generated(5, 1, &[]).unwrap();
    let socket_path = env.dir.path().join("log.sock");
    let socket = UnixDatagram::bind(&socket_path).unwrap();
    let config = env.config(
        "main",
        json!({
            "log": {"logger": "syslog", "syslog_socket": socket_path},
            "sync": {"max_deletions": 1, "max_deletion_ratio": 1.0},
        }),
    );

    let run = env.sync(&config, &[]);
    assert_eq!(run.code, 0, "{:#}", run.report);
    assert!(
        !run.stderr.contains("run started") && !run.stderr.contains("INFO"),
        "log lines went to stderr: {}",
        run.stderr
    );
    let lines = drain(&socket);
    let messages: Vec<Syslog> = lines.iter().map(|l| parse_5424(l)).collect();
    assert!(!messages.is_empty());
    for m in &messages {
        assert_eq!(m.app, "dirsync");
        assert_eq!(m.procid, messages[0].procid);
        assert_eq!(m.hostname, messages[0].hostname);
        assert!(m.procid.parse::<u32>().is_ok(), "{m:?}");
        // facility daemon (3)
        assert_eq!(m.pri / 8, 3, "{m:?}");
    }
    let start = messages
        .iter()
        .find(|m| m.msg.starts_with("run started"))
        .unwrap_or_else(|| panic!("no start line in {lines:#?}"));
    assert_eq!(start.pri, 30, "info");
    let end = messages
        .iter()
        .find(|m| m.msg.starts_with("run ended"))
        .unwrap_or_else(|| panic!("no end line in {lines:#?}"));
    assert_eq!(end.pri, 30, "info: {end:?}");
    for field in ["exit_code=0", "created=5", "failed=0", "mode=full"] {
        assert!(end.msg.contains(field), "{field} not in {end:?}");
    }
    let secrets = [env.target.token(), env.slapd.sync_pw.as_str()];
    for line in &lines {
        for s in secrets {
            assert!(!line.contains(s), "a secret in {line}");
        }
    }

    // A refused run: the end line is a warning with the reason.
    env.slapd
        .delete(&[&env.user_dn(&gen_uid(1)), &env.user_dn(&gen_uid(2))])
        .unwrap();
    let run = env.sync(&config, &[]);
    assert_eq!(run.code, 2, "{:#}", run.report);
    let lines = drain(&socket);
    let end = lines
        .iter()
        .map(|l| parse_5424(l))
        .find(|m| m.msg.starts_with("run ended"))
        .unwrap_or_else(|| panic!("no end line in {lines:#?}"));
    assert_eq!(end.pri, 28, "warning: {end:?}");
    assert!(
        end.msg.contains("exit_code=2") && end.msg.contains("--allow-deletions"),
        "{end:?}"
    );
}

/// The socket is missing: the lines go to stderr with a warning, and the run is not affected.
#[test]
fn syslog_socket_missing_falls_back_to_stderr() {
    let env = Env::start(TargetKind::IdService);
    env.slapd.load_generated(2, 0, &[]).unwrap();
    let missing = env.dir.path().join("no-such.sock");
    let config = env.config(
        "main",
        json!({"log": {"logger": "syslog", "syslog_socket": missing}}),
    );
    let run = env.sync(&config, &[]);
    assert_eq!(run.code, 0, "{:#}", run.report);
    assert!(
        run.stderr.contains("log.logger: syslog: cannot use") && run.stderr.contains("run ended"),
        "{}",
        run.stderr
    );
}

fn file_size(p: &Path) -> u64 {
    std::fs::metadata(p).map(|m| m.len()).unwrap_or(0)
}

#[test]
fn log_file_rotated_by_size() {
    let env = Env::start(TargetKind::IdService);
    env.slapd.load_generated(3, 1, &[]).unwrap();
    let config = env.config(
        "main",
        json!({"log": {"file": "logs/dirsync.log", "file_max_size": "1KiB", "file_keep": 2}}),
    );
    let log = env.dir.path().join("logs").join("dirsync.log");
    // The directory must exist: a file that cannot be opened is a configuration error.
    let output = env.dirsync_command(&config, &[]).output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("log.file") && stderr.contains("cannot open"),
        "{stderr}"
    );
    std::fs::create_dir(env.dir.path().join("logs")).unwrap();

    for _ in 0..6 {
        let run = env.sync(&config, &["--full"]);
        assert_eq!(run.code, 0, "{:#}", run.report);
        // In addition to the logger (stderr here).
        assert!(run.stderr.contains("run ended"), "{}", run.stderr);
    }
    let rotated: Vec<_> = (1..=3)
        .map(|n| env.dir.path().join("logs").join(format!("dirsync.log.{n}")))
        .collect();
    assert!(rotated[0].exists() && rotated[1].exists(), "not rotated");
    assert!(!rotated[2].exists(), "more than file_keep rotated files");
    let files = std::fs::read_dir(env.dir.path().join("logs"))
        .unwrap()
        .count();
    assert_eq!(files, 3);
    let secrets = [env.target.token(), env.slapd.sync_pw.as_str()];
    for p in [&log, &rotated[0], &rotated[1]] {
        assert!(
            file_size(p) <= 1024,
            "{} is {} bytes",
            p.display(),
            file_size(p)
        );
        let text = std::fs::read_to_string(p).unwrap();
        for s in secrets {
            assert!(!text.contains(s), "a secret in {}", p.display());
        }
    }
    let newest = std::fs::read_to_string(&log).unwrap();
    assert!(newest.contains("run ended"), "{newest}");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&log).unwrap().permissions().mode() & 0o777,
        0o600
    );
}
