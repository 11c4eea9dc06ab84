#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Secrets never leave secret.yml (brief, behaviour §2, 5): a sync at debug log level, a dry run,
//! `check`, and a run whose token the target refuses leave neither the bind password nor the
//! bearer token in stdout, stderr, the report, the audit journal or the state database.

mod common;

use std::path::Path;
use std::process::Command;

use common::{Env, TargetKind};
use serde_json::json;

/// Writes a secret file as dirsync requires it: readable by its owner only.
fn write_private(path: &Path, text: &str) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
}

/// `dirsync <command> --config CONFIG --secret SECRET`: exit code and stdout + stderr.
fn run(command: &str, config: &Path, secret: &Path) -> (Option<i32>, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_dirsync"))
        .arg(command)
        .arg("--config")
        .arg(config)
        .arg("--secret")
        .arg(secret)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.code(), text)
}

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
    write_private(
        &wrong,
        &json!({"ad": {"ldap": {"server": {"password": env.slapd.sync_pw}}},
                "iid": {"scim": {"token": wrong_token}}})
        .to_string(),
    );
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

/// A bind DN whose password is missing from secret.yml (no key, or an empty value) stops
/// `sync` and `check` with the key named (exit 2) instead of binding anonymously to the real
/// slapd; nothing reaches the target. A secret.yml others can read is refused the same way.
#[test]
fn missing_bind_password_is_an_error_not_an_anonymous_bind() {
    let env = Env::start(TargetKind::IdService);
    env.add_user("alice", "ou=people", "example.test", &[]);
    let config = env.config("nopw", json!({}));
    let token = env.target.token();
    let cases = [
        ("absent", json!({"iid": {"scim": {"token": token}}})),
        (
            "empty",
            json!({"ad": {"ldap": {"server": {"password": ""}}},
                   "iid": {"scim": {"token": token}}}),
        ),
    ];
    for (name, secret) in cases {
        let path = env.dir.path().join(format!("{name}-secret.yml"));
        write_private(&path, &secret.to_string());
        for command in ["sync", "check"] {
            let (code, text) = run(command, &config, &path);
            assert_eq!(code, Some(2), "{command} ({name}): {text}");
            assert!(
                text.contains(&format!(
                    "{}: ad.ldap.server.password: no bind password",
                    path.display()
                )),
                "{command} ({name}): {text}"
            );
            assert!(text.contains("anonymous bind"), "{text}");
            assert!(!text.contains(token), "{text}");
        }
    }
    assert!(env.target.users().is_empty());

    // The complete secret file, readable by others: refused, with the fix.
    let open = env.dir.path().join("open-secret.yml");
    write_private(
        &open,
        &json!({"ad": {"ldap": {"server": {"password": env.slapd.sync_pw}}},
                "iid": {"scim": {"token": token}}})
        .to_string(),
    );
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o644)).unwrap();
    }
    for command in ["sync", "check"] {
        let (code, text) = run(command, &config, &open);
        assert_eq!(code, Some(2), "{command}: {text}");
        assert!(
            text.contains(&format!("chmod 600 {}", open.display())),
            "{text}"
        );
        assert!(!text.contains(env.slapd.sync_pw.as_str()), "{text}");
    }
    assert!(env.target.users().is_empty());

    // With the password, the same configuration syncs.
    let run = env.sync(&config, &[]);
    assert_eq!(run.code, 0, "{:?}", run.report);
    assert_eq!(env.target.users().len(), 1);
}

/// `encryption: none` written for an address that is not loopback is honoured and warned about
/// on every `sync` (log and report) and `check`, naming the host; left out, the same address
/// gets StartTLS, which this slapd does not offer, so nothing is sent in clear. The address is
/// `0.0.0.0`: not loopback by the configuration's rule, yet Linux connects it to this machine,
/// so no packet leaves the host.
#[test]
fn cleartext_ldap_to_another_host_warns_on_every_run() {
    let env = Env::start(TargetKind::IdService);
    env.add_user("alice", "ou=people", "example.test", &[]);
    let secret = env.dir.path().join("secret.yml");
    let explicit = env.config(
        "plain",
        json!({"ad": {"ldap": {"server": {"addresses": ["0.0.0.0"], "encryption": "none"}}}}),
    );
    let warning = "ad.ldap.server.encryption: none: the bind password and every entry read \
                   travel in clear to 0.0.0.0";
    for _ in 0..2 {
        let (code, text) = run("sync", &explicit, &secret);
        assert_eq!(code, Some(0), "{text}");
        assert!(text.contains(warning), "{text}");
        let (code, text) = run("check", &explicit, &secret);
        assert_eq!(code, Some(0), "{text}");
        assert!(
            text.contains(&format!("warn {}", explicit.display())),
            "{text}"
        );
        assert!(text.contains(warning), "{text}");
    }
    assert_eq!(env.target.users().len(), 1);

    let default = env.config(
        "default",
        json!({"ad": {"ldap": {"server": {"addresses": ["0.0.0.0"]}}}}),
    );
    let (code, text) = run("check", &default, &secret);
    assert_eq!(code, Some(3), "{text}");
    // slapd's answer to the StartTLS extended operation: the client asked for TLS first.
    assert!(text.contains("unsupported extended operation"), "{text}");
    assert!(!text.contains("in clear"), "{text}");
    assert!(!text.contains(env.slapd.sync_pw.as_str()), "{text}");
}
