#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Secrets never leave secret.yml (brief, behaviour §2, 5): a sync at debug log level, a dry run,
//! `check`, and a run whose token the target refuses leave neither the bind password nor the
//! bearer token in stdout, stderr, the report, the audit journal or the state database.

mod common;

use common::{Env, TargetKind};
use serde_json::json;

fn assert_clean(what: &str, text: &[u8], secrets: &[&str]) {
    let text = String::from_utf8_lossy(text);
    for secret in secrets {
        assert!(!text.contains(secret), "{what} contains a secret");
    }
}

#[test]
fn no_secret_in_output_logs_report_journal_or_state() {
    let env = Env::start(TargetKind::IdService);
    env.add_user("alice", "ou=people", "example.test", &["title: Engineer"]);
    env.add_user("bob", "ou=people", "example.test", &[]);
    env.add_group("staff", "ou=groups", &["alice", "bob"]);
    let config = env.config("main", json!({}));
    let secrets = [env.slapd.sync_pw.as_str(), env.target.token()];

    let mut outputs = Vec::new();
    for args in [
        &["--log-level", "debug"][..],
        &["--dry-run", "--log-level", "debug"],
    ] {
        let output = env.dirsync_command(&config, args).output().unwrap();
        assert_eq!(
            output.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        outputs.push(output);
    }
    let check = std::process::Command::new(env!("CARGO_BIN_EXE_dirsync"))
        .args(["check", "--log-level", "debug", "--config"])
        .arg(&config)
        .arg("--secret")
        .arg(env.dir.path().join("secret.yml"))
        .output()
        .unwrap();
    assert_eq!(
        check.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&check.stdout)
    );
    outputs.push(check);

    // The target refuses a token: the error names the credential, not its value.
    let wrong = env.dir.path().join("wrong-secret.yml");
    let wrong_token = "ids_this-token-is-not-known-to-the-service";
    std::fs::write(
        &wrong,
        json!({"ad": {"ldap": {"server": {"password": env.slapd.sync_pw}}},
               "iid": {"scim": {"token": wrong_token}}})
        .to_string(),
    )
    .unwrap();
    let refused = std::process::Command::new(env!("CARGO_BIN_EXE_dirsync"))
        .args(["sync", "--log-level", "debug", "--config"])
        .arg(&config)
        .arg("--secret")
        .arg(&wrong)
        .output()
        .unwrap();
    assert_eq!(refused.status.code(), Some(3));
    let text = String::from_utf8_lossy(&refused.stdout);
    assert!(text.contains("iid.scim.token"), "{text}");
    assert_clean("refused-token output", &refused.stdout, &[wrong_token]);
    assert_clean("refused-token log", &refused.stderr, &[wrong_token]);
    outputs.push(refused);

    for (i, output) in outputs.iter().enumerate() {
        assert_clean(&format!("stdout of run {i}"), &output.stdout, &secrets);
        assert_clean(&format!("stderr of run {i}"), &output.stderr, &secrets);
    }
    let state = env.dir.path().join("state-main");
    let journal = std::fs::read(state.join("journal.jsonl")).unwrap();
    assert!(!journal.is_empty());
    assert_clean("journal", &journal, &secrets);
    for file in std::fs::read_dir(&state).unwrap() {
        let path = file.unwrap().path();
        assert_clean(
            &path.display().to_string(),
            &std::fs::read(&path).unwrap(),
            &secrets,
        );
    }
}
