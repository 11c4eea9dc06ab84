#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Kerberos (SASL GSSAPI) binds to a real Samba AD DC (issue 18), through the `dirsync`
//! binary: it prepares its private Kerberos environment (MEMORY: ticket cache, the configured
//! keytab, a private krb5.conf with the configured KDC) when it starts, so these tests run it
//! as a process, as an administrator would.
//!
//! - `gssapi_sync_equals_simple_bind`: a full and then an incremental sync with a GSSAPI bind
//!   give the same target as the same runs with a simple bind; a check over LDAPS binds with
//!   the TLS channel binding and no SASL layer.
//! - `strong_auth_and_kerberos_failures`: with `ldap server require strong auth = yes` a simple
//!   bind on plain LDAP is refused with a message that says why, while GSSAPI (sealed) checks
//!   and syncs; a stale keytab, a keytab without the principal's key, a principal the KDC does
//!   not know and a clock skew (dirsync under libfaketime, two hours ahead) each exit 3 naming
//!   the cause; and no password or keytab key appears in anything dirsync printed (debug logs
//!   included). (Over LDAPS this Samba refuses the bind when strong auth is required: see
//!   docs/active-directory.md.)

mod ad_common;

use std::path::Path;
use std::process::{Command, Stdio};

use ad_common::*;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use serde_json::Value;
use testenv::{IdService, SambaDc};

/// The DC's service-account principal (`svc-dirsync@EXAMPLE.TEST`).
fn svc_principal(dc: &SambaDc) -> String {
    format!("svc-dirsync@{}", dc.realm)
}

/// A config reading `OU=corp` into `base_url`: a simple bind as svc-dirsync without
/// `keytab`, a GSSAPI bind as `principal` from `keytab` (KDC: the DC's) with it.
fn config(dc: &SambaDc, base_url: &str, kerberos: Option<(&Path, &str)>) -> String {
    let auth = match kerberos {
        None => format!("      user: '{}'\n", dc.svc_dn),
        Some((keytab, principal)) => format!(
            "      kdc: '{ip}:{kdc}'\n      auth:\n        mechanism: gssapi\n        keytab: '{}'\n        principal: '{principal}'\n",
            keytab.display(),
            ip = dc.ip,
            kdc = dc.kdc_port,
        ),
    };
    format!(
        "ad:\n  ldap:\n    server:\n      addresses: ['{ip}']\n      port: {port}\n{auth}    base_dn: 'OU=corp,{base}'\niid:\n  scim:\n    base_url: '{base_url}'\nsync:\n  max_deletion_ratio: 1.0\n",
        ip = dc.ip,
        port = dc.ldap_port,
        base = dc.base_dn,
    )
}

/// `yaml` (from [`config`]) over LDAPS, verified against the DC's CA.
fn over_ldaps(dc: &SambaDc, yaml: &str) -> String {
    yaml.replace(
        &format!("      port: {}\n", dc.ldap_port),
        &format!(
            "      port: {}\n      encryption: ldaps\n      ca_file: '{}'\n",
            dc.ldaps_port,
            dc.ca_file.display()
        ),
    )
}

/// What one `dirsync` process did.
struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Run {
    fn text(&self) -> String {
        format!(
            "exit {}\n--- stdout\n{}\n--- stderr\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}

/// Runs `dirsync --log-level debug <args> --config <inst>/config.yml`, optionally under a
/// wrapper command (`faketime`), with no Kerberos variables inherited from the test.
fn dirsync(inst: &Instance, args: &[&str], wrapper: &[&str]) -> Run {
    let bin = env!("CARGO_BIN_EXE_dirsync");
    let mut cmd = match wrapper.split_first() {
        Some((first, rest)) => {
            let mut c = Command::new(first);
            c.args(rest).arg(bin);
            c
        }
        None => Command::new(bin),
    };
    cmd.args(["--log-level", "debug"])
        .args(args)
        .arg("--config")
        .arg(&inst.config)
        .current_dir(inst.dir.path())
        .env_remove("KRB5_CONFIG")
        .env_remove("KRB5CCNAME")
        .env_remove("KRB5_CLIENT_KTNAME")
        .env_remove("DIRSYNC_KRB5_DIR")
        .stdin(Stdio::null());
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {wrapper:?} dirsync: {e}"));
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// A sync through the binary; returns the JSON report (exit 0 asserted) and appends what it
/// printed to `output`.
fn sync(inst: &Instance, what: &str, output: &mut String) -> Value {
    let run = dirsync(inst, &["sync", "--report", "json"], &[]);
    output.push_str(&run.text());
    assert_eq!(run.code, 0, "{what}: {}", run.text());
    let out: Value = serde_json::from_str(&run.stdout).unwrap_or_else(|e| panic!("{what}: {e}"));
    out["report"].clone()
}

/// The target as comparable values: users without server-assigned id/meta, groups by
/// displayName with their members as userNames.
fn target(inst: &Instance) -> (Vec<Value>, Vec<(String, Vec<String>)>) {
    let cfg = inst.load();
    let users = target_users(&cfg);
    let user_name = |id: &Value| {
        users
            .iter()
            .find(|u| u["id"] == *id)
            .and_then(|u| u["userName"].as_str())
            .unwrap_or("?")
            .to_string()
    };
    let mut groups: Vec<(String, Vec<String>)> = target_groups(&cfg)
        .iter()
        .map(|g| {
            let mut members: Vec<String> = g["members"]
                .as_array()
                .map(|m| m.iter().map(|m| user_name(&m["value"])).collect())
                .unwrap_or_default();
            members.sort();
            (g["displayName"].as_str().unwrap_or("").to_string(), members)
        })
        .collect();
    groups.sort();
    let mut plain: Vec<Value> = users
        .iter()
        .map(|u| {
            let mut u = u.clone();
            if let Some(o) = u.as_object_mut() {
                o.remove("id");
                o.remove("meta");
                o.remove("groups");
            }
            // The moment the target moved the user to pending deletion is the target's.
            if let Some(ext) = u.get_mut(IIJ).and_then(Value::as_object_mut) {
                ext.remove("pendingDeletionSince");
            }
            u
        })
        .collect();
    plain.sort_by_key(|u| u["userName"].as_str().unwrap_or("").to_string());
    (plain, groups)
}

#[test]
fn gssapi_sync_equals_simple_bind() {
    if testenv::skip_samba("gssapi_sync_equals_simple_bind") {
        return;
    }
    let dc = start_dc("EXAMPLE.TEST", "EXAMPLE");
    dc.grant_deleted_objects_read("svc-dirsync").unwrap();
    dc.add_ldap_spns().unwrap();
    let keytab = dc.export_keytab(&svc_principal(&dc), "svc.keytab").unwrap();
    dc.add_ou("corp").unwrap();
    for name in ["alice", "bob", "carol", "erin"] {
        add_corp_user(&dc, name);
    }
    let staff = dc.add_group_in("staff", Some("corp")).unwrap();
    dc.add_members(&staff, &["alice", "bob"]).unwrap();

    let (ids_simple, ids_krb) = (start_idservice(), start_idservice());
    let simple = Instance::new(
        &config(&dc, &ids_simple.url, None),
        &dc.svc_pw,
        &ids_simple.token,
    );
    let principal = svc_principal(&dc);
    // The GSSAPI instance has no LDAP password at all.
    let krb = Instance::new(
        &config(&dc, &ids_krb.url, Some((&keytab, &principal))),
        "",
        &ids_krb.token,
    );

    let mut output = String::new();
    let check = dirsync(&krb, &["check"], &[]);
    output += &check.text();
    assert_eq!(check.code, 0, "{}", check.text());
    assert!(
        check
            .stdout
            .contains(&format!("bind: GSSAPI (Kerberos) as {principal}")),
        "{}",
        check.text()
    );

    // Over LDAPS: no SASL layer, the TLS channel binding instead.
    let ldaps = Instance::new(
        &over_ldaps(&dc, &config(&dc, &ids_krb.url, Some((&keytab, &principal)))),
        "",
        &ids_krb.token,
    );
    let run = dirsync(&ldaps, &["check"], &[]);
    output += &run.text();
    assert_eq!(run.code, 0, "gssapi check over LDAPS: {}", run.text());
    assert!(
        run.stdout.contains("TLS with channel binding"),
        "{}",
        run.text()
    );

    for (inst, what) in [(&simple, "simple full"), (&krb, "gssapi full")] {
        let report = sync(inst, what, &mut output);
        assert_eq!(report["mode"], "full", "{what}: {report}");
    }
    let first = target(&krb);
    assert_eq!(first.0.len(), 4, "{:?}", first.0);
    assert_eq!(
        target(&simple),
        first,
        "full sync: simple and GSSAPI targets differ"
    );

    // Changes an incremental run must carry: a new user, a changed one, a disabled one, a
    // deleted one, membership both ways.
    add_corp_user(&dc, "dave");
    let bob = dc.dn_of("bob").unwrap();
    dc.set_attr(&bob, "sn", &["Builder"]).unwrap();
    dc.disable_user("carol").unwrap();
    dc.delete_user("erin").unwrap();
    dc.add_members(&staff, &["dave"]).unwrap();
    dc.remove_members(&staff, &["bob"]).unwrap();

    for (inst, what) in [
        (&simple, "simple incremental"),
        (&krb, "gssapi incremental"),
    ] {
        let report = sync(inst, what, &mut output);
        assert_eq!(report["mode"], "incremental", "{what}: {report}");
    }
    let second = target(&krb);
    assert_eq!(
        target(&simple),
        second,
        "incremental sync: simple and GSSAPI targets differ"
    );
    assert_ne!(second, first, "the incremental runs changed nothing");
    let staff_members = &second.1.iter().find(|g| g.0 == "staff").unwrap().1;
    assert_eq!(
        staff_members,
        &vec![
            "alice@example.test".to_string(),
            "dave@example.test".to_string()
        ]
    );
    assert_no_credentials(&output, &[&dc.svc_pw, &dc.admin_pw], &[&keytab]);
    drop((ids_simple, ids_krb));
}

/// The key bytes of every entry of an MIT keytab (format 0x0502).
fn keytab_keys(path: &Path) -> Vec<Vec<u8>> {
    let b = std::fs::read(path).unwrap();
    assert_eq!(&b[..2], &[5, 2], "not a v2 keytab");
    let u16_at = |i: usize| usize::from(u16::from_be_bytes([b[i], b[i + 1]]));
    let mut keys = Vec::new();
    let mut i = 2;
    while i + 4 <= b.len() {
        let size = i32::from_be_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
        i += 4;
        let len = size.unsigned_abs() as usize;
        if size > 0 {
            let mut j = i;
            let components = u16_at(j);
            j += 2;
            j += 2 + u16_at(j); // realm
            for _ in 0..components {
                j += 2 + u16_at(j);
            }
            j += 4 + 4 + 1 + 2; // name type, timestamp, kvno, key type
            let key_len = u16_at(j);
            j += 2;
            keys.push(b[j..j + key_len].to_vec());
        }
        i += len;
    }
    assert!(!keys.is_empty(), "no keys in {}", path.display());
    keys
}

/// Fails when `output` holds any password or keytab key (raw hex either case, or base64).
fn assert_no_credentials(output: &str, passwords: &[&str], keytabs: &[&Path]) {
    for pw in passwords {
        assert!(
            !output.contains(pw),
            "a password appears in dirsync's output"
        );
    }
    for keytab in keytabs {
        for key in keytab_keys(keytab) {
            let hex = hex::encode(&key);
            for form in [hex.clone(), hex.to_uppercase(), B64.encode(&key)] {
                assert!(
                    !output.contains(&form),
                    "a key of {} appears in dirsync's output",
                    keytab.display()
                );
            }
        }
    }
}

/// `check` of `inst` must exit 3 with `cause` in what it printed.
fn assert_refused(run: &Run, cause: &str, what: &str) {
    assert_eq!(run.code, 3, "{what}: {}", run.text());
    let all = format!("{}{}", run.stdout, run.stderr);
    assert!(
        all.contains(cause),
        "{what}: no {cause:?} in\n{}",
        run.text()
    );
    assert!(
        !all.contains("code(") && !all.contains("Minor code"),
        "{what}: a GSS status code in\n{}",
        run.text()
    );
}

#[test]
fn strong_auth_and_kerberos_failures() {
    if testenv::skip_samba("strong_auth_and_kerberos_failures") {
        return;
    }
    let mut dc = start_dc("EXAMPLE.TEST", "EXAMPLE");
    dc.add_ldap_spns().unwrap();
    dc.add_ou("corp").unwrap();
    add_corp_user(&dc, "alice");
    let realm = dc.realm.clone();
    let principal = svc_principal(&dc);
    let good = dc.export_keytab(&principal, "svc.keytab").unwrap();
    // Accounts of the failure cases live in CN=Users, out of the synced OU=corp.
    let add_account = |name: &str| {
        dc.add_user(name, name, "Test", None, None, None).unwrap();
    };
    // A keytab whose key the domain no longer has: the password changed after the export.
    add_account("krbstale");
    let stale = dc
        .export_keytab(&format!("krbstale@{realm}"), "stale.keytab")
        .unwrap();
    let new_pw = "Changed#Passw0rd9";
    dc.set_password("krbstale", new_pw).unwrap();
    // A principal the KDC does not know (any more): its account was deleted after the export.
    add_account("krbgone");
    let gone = dc
        .export_keytab(&format!("krbgone@{realm}"), "gone.keytab")
        .unwrap();
    dc.delete_user("krbgone").unwrap();
    // Everything the harness does over simple LDAP binds happens before this.
    dc.require_strong_auth(true).unwrap();
    let ids: IdService = start_idservice();
    let mut output = String::new();

    let simple = Instance::new(&config(&dc, &ids.url, None), &dc.svc_pw, &ids.token);
    let run = dirsync(&simple, &["check"], &[]);
    output += &run.text();
    assert_refused(
        &run,
        "requires signed or encrypted LDAP and refuses a simple bind",
        "simple bind under strong auth",
    );

    let krb = Instance::new(
        &config(&dc, &ids.url, Some((&good, &principal))),
        "",
        &ids.token,
    );
    let run = dirsync(&krb, &["check"], &[]);
    output += &run.text();
    assert_eq!(
        run.code,
        0,
        "gssapi check under strong auth: {}",
        run.text()
    );
    for want in [
        format!("bind: GSSAPI (Kerberos) as {principal}"),
        "sealed (Kerberos confidentiality and integrity)".to_string(),
        "1 users".to_string(),
    ] {
        assert!(run.stdout.contains(&want), "no {want:?} in {}", run.text());
    }
    let run = dirsync(&krb, &["sync", "--report", "json"], &[]);
    output += &run.text();
    assert_eq!(run.code, 0, "gssapi sync under strong auth: {}", run.text());
    assert_eq!(target_users(&krb.load()).len(), 1);

    // Over LDAPS ldap3 negotiates no SASL layer (the TLS channel binding instead). Samba
    // before 4.20 still wants sign or seal when strong auth is required; the refusal must say
    // what works instead. Newer Samba and Windows accept the bind.
    let ldaps = Instance::new(
        &over_ldaps(&dc, &config(&dc, &ids.url, Some((&good, &principal)))),
        "",
        &ids.token,
    );
    let run = dirsync(&ldaps, &["check"], &[]);
    output += &run.text();
    if run.code != 0 {
        assert_refused(
            &run,
            "allow_sasl_over_tls",
            "gssapi over LDAPS, strong auth",
        );
    }

    let cases: [(&Path, String, &str, &str); 3] = [
        (
            &good,
            format!("alice@{realm}"),
            "holds no key for",
            "keytab of another account",
        ),
        (
            &stale,
            format!("krbstale@{realm}"),
            "does not match",
            "stale keytab",
        ),
        (
            &gone,
            format!("krbgone@{realm}"),
            "is unknown to the KDC",
            "unknown principal",
        ),
    ];
    for (keytab, who, cause, what) in cases {
        let inst = Instance::new(&config(&dc, &ids.url, Some((keytab, &who))), "", &ids.token);
        let run = dirsync(&inst, &["check"], &[]);
        output += &run.text();
        assert_refused(&run, cause, what);
    }

    // Two hours ahead of the KDC (which allows 5 minutes): libfaketime for dirsync only,
    // the monotonic clock left alone for the async runtime's timers.
    let faketime = [
        "env",
        "FAKETIME_DONT_FAKE_MONOTONIC=1",
        "faketime",
        "-f",
        "+2h",
    ];
    let run = dirsync(&krb, &["check"], &faketime);
    output += &run.text();
    if run.stderr.contains("faketime: No such file") || run.code == 127 {
        panic!("faketime is missing: run scripts/install-test-deps (Debian package faketime)");
    }
    assert_refused(
        &run,
        "the clock of this machine and the KDC's differ",
        "clock skew",
    );

    assert_no_credentials(
        &output,
        &[
            &dc.svc_pw,
            &dc.admin_pw,
            new_pw,
            testenv::samba::DEFAULT_USER_PW,
        ],
        &[&good, &stale, &gone],
    );
}
