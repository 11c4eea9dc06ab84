#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Issue "dirsync as a service", item 5: `notify.email`, on real slapd, idservice and the SMTP
//! sink. A refused run (the deletion count gate: `max_deletions: 1`, 3 users deleted) sends one
//! mail naming the instance and the refusal; the next refused run sends none; the good run
//! that lets the deletions through sends one "cleared" mail, and the run after it none. The
//! incident state lives in the state directory, so these one-shot runs behave as the daemon's.
//! A relay that is down does not change the exit code, and the mail is sent by the next run.

mod common;

use std::time::Duration;

use common::{Env, TargetKind, gen_uid};
use serde_json::{Value, json};
use testenv::SmtpSink;

fn notify(sink: &SmtpSink) -> Value {
    json!({"email": {
        "host": sink.host,
        "port": sink.port,
        "starttls": false,
        "from": "dirsync <dirsync@example.test>",
        "to": ["ops@example.test", "oncall@example.test"],
        "timeout": "10s",
        "instance": "agent-7",
    }})
}

/// Only the count gate can refuse (the ratio gate is wide open).
fn sync_settings() -> Value {
    json!({"max_deletions": 1, "max_deletion_ratio": 1.0})
}

fn state_file(env: &Env) -> Value {
    let path = env.dir.path().join("state-main").join("notify.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[test]
fn refused_run_mails_once_and_clears_once() {
    let sink = SmtpSink::start().unwrap();
    let env = Env::start(TargetKind::IdService);
    env.slapd.load_generated(6, 1, &[]).unwrap();
    let config = env.config(
        "main",
        json!({"notify": notify(&sink), "sync": sync_settings()}),
    );

    let run = env.sync(&config, &[]);
    assert_eq!(run.code, 0, "{:#}", run.report);
    assert_eq!(
        sink.messages().unwrap().len(),
        0,
        "a good run sends nothing"
    );

    env.slapd
        .delete(&[
            &env.user_dn(&gen_uid(1)),
            &env.user_dn(&gen_uid(2)),
            &env.user_dn(&gen_uid(3)),
        ])
        .unwrap();
    let run = env.sync(&config, &[]);
    assert_eq!(run.code, 2, "{:#}", run.report);
    let refusal = run.report["refused"].as_str().unwrap().to_string();
    let mails = sink.wait_for(1, Duration::from_secs(10)).unwrap();
    assert_eq!(mails.len(), 1, "{mails:?}");
    let mail = &mails[0];
    assert!(
        mail.subject.contains("agent-7") && mail.subject.contains("run refused"),
        "{}",
        mail.subject
    );
    let mut rcpts = mail.rcpts.clone();
    rcpts.sort();
    assert_eq!(rcpts, ["oncall@example.test", "ops@example.test"]);
    assert_eq!(mail.mail_from, "dirsync@example.test");
    assert!(
        mail.body.contains("REFUSED") && mail.body.contains("--allow-deletions 3"),
        "{}",
        mail.body
    );
    assert!(
        mail.body
            .contains(&run.report["run_id"].as_str().unwrap().to_string())
    );
    let _ = refusal;
    assert_eq!(state_file(&env)["state"], "open");
    assert_eq!(state_file(&env)["notified"], true);

    // The same incident: no second mail.
    let run = env.sync(&config, &[]);
    assert_eq!(run.code, 2, "{:#}", run.report);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(sink.messages().unwrap().len(), 1);

    // The deletions let through: the incident clears, one mail.
    let run = env.sync(&config, &["--allow-deletions", "3"]);
    assert_eq!(run.code, 0, "{:#}", run.report);
    let mails = sink.wait_for(2, Duration::from_secs(10)).unwrap();
    assert_eq!(mails.len(), 2);
    assert!(
        mails[1].subject.contains("agent-7") && mails[1].subject.contains("cleared"),
        "{}",
        mails[1].subject
    );
    assert!(mails[1].body.contains("exit code: 0"), "{}", mails[1].body);
    assert_eq!(state_file(&env)["state"], "clear");

    let run = env.sync(&config, &[]);
    assert_eq!(run.code, 0, "{:#}", run.report);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        sink.messages().unwrap().len(),
        2,
        "nothing more once cleared"
    );

    let secrets = [env.target.token(), env.slapd.sync_pw.as_str()];
    for m in sink.messages().unwrap() {
        for s in secrets {
            assert!(!m.raw.contains(s), "a secret in {}", m.raw);
        }
    }
}

/// The relay is down: the refused run keeps exit 2, logs the failure, and the incident stays
/// "not yet notified"; the next refused run, with the relay up, sends the mail.
#[test]
fn relay_down_is_retried_on_the_next_run() {
    let env = Env::start(TargetKind::IdService);
    env.slapd.load_generated(4, 0, &[]).unwrap();
    // A port nothing listens on, then the sink on that port.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let notify_down = json!({"email": {
        "host": "127.0.0.1", "port": port, "starttls": false,
        "from": "dirsync@example.test", "to": "ops@example.test", "timeout": "5s",
    }});
    let config = env.config(
        "main",
        json!({"notify": notify_down, "sync": sync_settings()}),
    );
    assert_eq!(env.sync(&config, &[]).code, 0);
    env.slapd
        .delete(&[&env.user_dn(&gen_uid(1)), &env.user_dn(&gen_uid(2))])
        .unwrap();
    let run = env.sync(&config, &[]);
    assert_eq!(run.code, 2, "{:#}", run.report);
    assert!(
        run.stderr.contains("could not be sent") && run.stderr.contains(&port.to_string()),
        "{}",
        run.stderr
    );
    assert_eq!(state_file(&env)["notified"], false);

    let sink = SmtpSink::start_on(port, "").unwrap();
    let run = env.sync(&config, &[]);
    assert_eq!(run.code, 2, "{:#}", run.report);
    let mails = sink.wait_for(1, Duration::from_secs(10)).unwrap();
    assert_eq!(mails.len(), 1);
    assert!(
        mails[0].subject.contains("run refused"),
        "{}",
        mails[0].subject
    );
    assert_eq!(state_file(&env)["notified"], true);
}

/// `dirsync run` (`sync.schedule: 1s`): the daemon's runs follow the same rule; three refused
/// runs in a row send one mail.
#[test]
fn daemon_runs_mail_once_per_incident() {
    let sink = SmtpSink::start().unwrap();
    let env = Env::start(TargetKind::IdService);
    env.slapd.load_generated(4, 0, &[]).unwrap();
    let mut settings = sync_settings();
    settings["schedule"] = json!("1s");
    let config = env.config("main", json!({"notify": notify(&sink), "sync": settings}));
    assert_eq!(env.sync(&config, &[]).code, 0);
    env.slapd
        .delete(&[&env.user_dn(&gen_uid(1)), &env.user_dn(&gen_uid(2))])
        .unwrap();

    let log = env.dir.path().join("daemon.log");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_dirsync"))
        .arg("run")
        .arg("--config")
        .arg(&config)
        .arg("--secret")
        .arg(env.dir.path().join("secret.yml"))
        .current_dir(env.dir.path())
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let started = std::time::Instant::now();
    let finished = loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        let finished: Vec<String> = text
            .lines()
            .filter(|l| l.contains("run finished"))
            .map(str::to_string)
            .collect();
        if finished.len() >= 3 || started.elapsed() > Duration::from_secs(60) {
            break finished;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let _ = child.kill();
    let _ = child.wait();
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(finished.len() >= 3, "{text}");
    assert!(
        finished.iter().all(|l| l.contains("exit_code=2")),
        "{finished:#?}"
    );
    let mails = sink.messages().unwrap();
    assert_eq!(mails.len(), 1, "{mails:?}\n{text}");
    assert!(
        mails[0].subject.contains("run refused"),
        "{}",
        mails[0].subject
    );
}
