//! `dirsync config schema`: the printed JSON Schema accepts every example configuration of
//! the repository (`examples/**/config*.yml`, the vendor samples and the demo, and the
//! packaged service's example under `packaging/`) and refuses unknown keys at the top level
//! and in nested sections, as the loader does (`deny_unknown_fields`).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{Value, json};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The schema as the binary prints it.
fn schema() -> Value {
    let out = Command::new(env!("CARGO_BIN_EXE_dirsync"))
        .args(["config", "schema"])
        .output()
        .expect("run dirsync config schema");
    assert!(
        out.status.success(),
        "dirsync config schema failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("the schema is JSON")
}

fn validator() -> jsonschema::Validator {
    let schema = schema();
    assert_eq!(schema["title"], "dirsync config.yml");
    jsonschema::validator_for(&schema).expect("a valid JSON Schema")
}

fn errors(v: &jsonschema::Validator, config: &Value) -> Vec<String> {
    v.iter_errors(config)
        .map(|e| format!("{}: {e}", e.instance_path))
        .collect()
}

/// Every `config*.yml` under `dir`, at any depth.
fn configs(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            configs(&path, out);
        } else {
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            if name.starts_with("config") && name.ends_with(".yml") {
                out.push(path);
            }
        }
    }
}

fn yaml(text: &str) -> Value {
    serde_saphyr::from_str(text).expect("YAML")
}

#[test]
fn every_example_config_is_valid() {
    let v = validator();
    let mut files = Vec::new();
    configs(&root().join("examples"), &mut files);
    configs(&root().join("packaging"), &mut files);
    files.sort();
    // the demo, the three vendor samples, the packaged service's example
    assert!(files.len() >= 5, "{files:?}");
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        let errs = errors(&v, &yaml(&text));
        assert!(errs.is_empty(), "{}: {errs:#?}", file.display());
    }
}

const MINIMAL: &str = "
ad:
  ldap:
    server: { addresses: [dc1.example.jp], user: 'CN=sync,DC=example,DC=jp' }
    base_dn: 'DC=example,DC=jp'
iid:
  scim:
    base_url: 'https://idp.example.jp/scim/v2'
    attribute:
      user:
        ad_bind: { userName: userPrincipalName, emails: { value: mail } }
        convert:
          userName: [ { pattern: '@EXAMPLE\\.JP\\z', replacement: '@example.jp' } ]
sync:
  schedule: 15m
  full_every: 1h30m
  max_deletion_ratio: 0.2
  concurrency: 8
";

#[test]
fn unknown_keys_are_refused_at_every_level() {
    let v = validator();
    let base = yaml(MINIMAL);
    assert!(errors(&v, &base).is_empty(), "{:#?}", errors(&v, &base));

    type Edit = fn(&mut Value);
    let cases: [(&str, Edit); 6] = [
        ("top level", |c| c["bogus"] = json!(1)),
        ("ad.ldap.server", |c| {
            c["ad"]["ldap"]["server"]["pasword"] = json!("x")
        }),
        ("iid.scim", |c| c["iid"]["scim"]["tokn"] = json!("x")),
        ("sync", |c| c["sync"]["state"] = json!("/var/lib/dirsync")),
        ("a user binding", |c| {
            c["iid"]["scim"]["attribute"]["user"]["ad_bind"]["emailz"] = json!("mail")
        }),
        ("convert: an attribute that cannot be converted", |c| {
            c["iid"]["scim"]["attribute"]["user"]["convert"]["active"] = json!([])
        }),
    ];
    for (what, edit) in cases {
        let mut config = base.clone();
        edit(&mut config);
        assert!(!v.is_valid(&config), "{what}: an unknown key was accepted");
    }
}

#[test]
fn value_syntax_is_checked() {
    let v = validator();
    let base = yaml(MINIMAL);
    type Edit = fn(&mut Value);
    let bad: [(&str, Edit); 7] = [
        ("iid is required", |c| {
            c.as_object_mut().unwrap().remove("iid");
        }),
        ("a duration needs a unit", |c| {
            c["sync"]["full_every"] = json!("30")
        }),
        ("a watch interval without a unit", |c| {
            c["sync"]["watch_interval"] = json!("5")
        }),
        ("a ratio above 1", |c| {
            c["sync"]["max_deletion_ratio"] = json!(1.5)
        }),
        ("concurrency over 64", |c| {
            c["sync"]["concurrency"] = json!(65)
        }),
        ("a base_url without http", |c| {
            c["iid"]["scim"]["base_url"] = json!("idp.example.jp/scim")
        }),
        ("an encryption that does not exist", |c| {
            c["ad"]["ldap"]["server"]["encryption"] = json!("tls")
        }),
    ];
    for (what, edit) in bad {
        let mut config = base.clone();
        edit(&mut config);
        assert!(!v.is_valid(&config), "{what}: accepted");
    }
    // Accepted: a cron schedule, the watch, a log file size, a notification recipient list.
    let mut config = base.clone();
    config["sync"]["schedule"] = json!("*/15 * * * *");
    config["sync"]["watch"] = json!(true);
    config["log"] = json!({"file": "dirsync.log", "file_max_size": "10MiB"});
    config["notify"] = json!({"email": {"host": "smtp.example.jp", "from": "dirsync@example.jp",
        "to": ["ops@example.jp", "Sec <sec@example.jp>"]}});
    assert!(v.is_valid(&config), "{config}");
}

/// secret.yml is not part of the schema: its keys are refused in config.yml.
#[test]
fn secrets_are_not_described() {
    let text = serde_json::to_string(&schema()).unwrap();
    for secret in ["password", "token", "client_secret"] {
        assert!(
            !text.contains(&format!("\"{secret}\"")),
            "the schema names the secret key {secret}"
        );
    }
}

/// The packaged service's example (packaging/dirsync/config.yml) loads as it is, with a
/// secret.yml beside it, and puts the state where the units let the service write.
#[test]
fn packaged_example_loads_with_state_under_var_lib() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.yml");
    std::fs::copy(root().join("packaging/dirsync/config.yml"), &config).unwrap();
    let secret = dir.path().join("secret.yml");
    std::fs::write(
        &secret,
        "ad: { ldap: { server: { password: 'x' } } }\niid: { scim: { token: 'y' } }\n",
    )
    .unwrap();
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).unwrap();
    let (loaded, _warnings) = dirsync::config::Config::load(&config, None).expect("loads");
    assert_eq!(loaded.state_dir, Path::new("/var/lib/dirsync"));
}
