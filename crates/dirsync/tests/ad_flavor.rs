#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Active Directory basics against a real Samba AD DC, and range retrieval / malformed
//! responses against the protocol-level fake (`testenv::FakeAd`, which auto-ranges like
//! Windows AD; Samba does not).

mod ad_common;

use std::time::{Duration, Instant};

use ad_common::*;
use dirsync::mapping::DirectoryKind;
use dirsync::source::ldap::{Encryption, LdapSettings, LdapSource, SearchSpec};
use secrecy::SecretString;
use serde_json::json;
use testenv::{FakeAd, FakeAdSpec, FakeFault, SambaDc};

/// `ad.ldap.server` lines for one way of connecting.
fn server_block(dc: &SambaDc, how: &str, ca_file: &str) -> String {
    let (port, extra) = match how {
        "ldap" => (dc.ldap_port, String::new()),
        "start_tls" => (
            dc.ldap_port,
            format!("      encryption: start_tls\n      ca_file: '{ca_file}'\n"),
        ),
        "ldaps" => (
            dc.ldaps_port,
            format!("      encryption: ldaps\n      ca_file: '{ca_file}'\n"),
        ),
        "ldaps-noverify" => (
            dc.ldaps_port,
            format!(
                "      encryption: ldaps\n      ca_file: '{ca_file}'\n      verify_mode: false\n"
            ),
        ),
        _ => unreachable!(),
    };
    format!(
        "    server:\n      addresses: ['{}']\n      port: {port}\n      user: '{}'\n{extra}",
        dc.ip, dc.svc_dn
    )
}

fn config_for(dc: &SambaDc, how: &str, ca_file: &str, base_url: &str, scope_dn: &str) -> String {
    format!(
        "ad:\n  ldap:\n{}    base_dn: '{}'\n    filter:\n      user: 'memberOf={scope_dn}'\n      group: 'cn=Team*'\niid:\n  scim:\n    base_url: '{base_url}'\n    attribute:\n      user:\n        ad_bind:\n          employeeNumber: objectSid\nsync:\n  max_deletion_ratio: 1.0\n",
        server_block(dc, how, ca_file),
        dc.base_dn
    )
}

/// A CA that did not sign the DC's certificate.
fn foreign_ca(dir: &std::path::Path) -> String {
    let key = dir.join("other-ca.key");
    let pem = dir.join("other-ca.pem");
    let status = std::process::Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
        ])
        .args(["-subj", "/CN=Some Other CA"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&pem)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
    pem.display().to_string()
}

#[test]
fn samba_ad_flavor_bind_tls_guid_and_ranges() {
    if testenv::skip_samba("samba_ad_flavor_bind_tls_guid_and_ranges") {
        return;
    }
    let t0 = Instant::now();
    let dc = start_dc("EXAMPLE.TEST", "EXAMPLE");
    let ids = start_idservice();
    let scope = dc.add_group("Synced").unwrap();
    let alice = dc
        .add_user(
            "alice",
            "Alice",
            "Ando",
            Some("alice@example.test"),
            None,
            None,
        )
        .unwrap();
    let bob = dc
        .add_user("bob", "Bob", "Baker", Some("bob@example.test"), None, None)
        .unwrap();
    dc.add_members(&scope, &[&alice.dn, &bob.dn]).unwrap();
    let team = dc.add_group("Team A").unwrap();
    dc.add_members(&team, &[&alice.dn]).unwrap();
    let ca = dc.ca_file.display().to_string();

    // 1. Plain LDAP as svc-dirsync (a plain user): flavor auto → AD from the rootDSE; a
    //    subtree read from the domain root completes (continuation references, if the DC
    //    sends any, are ignored).
    let inst = Instance::new(
        &config_for(&dc, "ldap", &ca, &ids.url, &scope),
        &dc.svc_pw,
        &ids.token,
    );
    let read = inst.read().unwrap();
    assert_eq!(read.kind, DirectoryKind::ActiveDirectory);
    assert!(read.read.complete, "{:?}", read.read.notes);
    assert_eq!(read.read.users.len(), 2);
    assert_eq!(read.read.groups.len(), 1);
    let refs = dc
        .ldapsearch(&dc.base_dn, "(objectClass=user)", &["1.1"])
        .unwrap();
    eprintln!(
        "Samba sends {} continuation reference(s) for a subtree search from the domain root",
        refs.lines().filter(|l| l.starts_with("ref:")).count()
    );

    // 2. objectGUID → externalId in the standard text form (as testenv decodes it), and
    //    objectSid → S-1-5-21-… (bound to employeeNumber here to see it).
    let report = inst.sync();
    assert_clean(&report, "sync over ldap://");
    let config = inst.load();
    let users = target_users(&config);
    let a = user_named(&users, &alice.upn).unwrap();
    assert_eq!(a["externalId"], json!(alice.object_guid));
    assert_eq!(
        a["externalId"],
        json!(dc.object_guid(&alice.dn).unwrap()),
        "first three groups little-endian"
    );
    assert_eq!(
        a["urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"]["employeeNumber"],
        json!(dc.object_sid(&alice.dn).unwrap())
    );
    assert_eq!(
        a["name"],
        json!({"familyName": "Ando", "givenName": "Alice"})
    );
    assert_eq!(a["active"], json!(true));
    let groups = target_groups(&config);
    assert_eq!(groups.len(), 1);
    assert_eq!(groups[0]["displayName"], json!("Team A"));
    assert_eq!(
        groups[0]["externalId"],
        json!(dc.object_guid(&team).unwrap())
    );

    // 3. LDAPS and StartTLS with ca_file (verification on by default): same read, nothing
    //    to change.
    for how in ["ldaps", "start_tls"] {
        inst.rewrite(&config_for(&dc, how, &ca, &ids.url, &scope));
        let report = inst.sync();
        assert_clean(&report, how);
        assert!(report.no_changes(), "{how}: {}", report.to_text());
        assert!(
            report.source.starts_with(if how == "ldaps" {
                "ldaps://"
            } else {
                "ldap://"
            }),
            "{}",
            report.source
        );
    }

    // 4. A CA that did not issue the DC's certificate: the error says how to fix it.
    let wrong = foreign_ca(inst.dir.path());
    inst.rewrite(&config_for(&dc, "ldaps", &wrong, &ids.url, &scope));
    let err = inst
        .read()
        .err()
        .expect("a foreign CA must not verify")
        .to_string();
    assert!(
        err.contains("ca_file") && err.contains("verify_mode: false"),
        "{err}"
    );
    let report = inst.sync();
    assert_eq!(report.exit_code, 3, "{}", report.to_text());
    assert!(
        report.stopped.as_deref().unwrap_or("").contains("ca_file"),
        "{}",
        report.to_text()
    );
    // … and the explicit opt-out reads.
    inst.rewrite(&config_for(&dc, "ldaps-noverify", &wrong, &ids.url, &scope));
    assert!(inst.read().unwrap().read.complete);

    // 5. Explicit range retrieval on Samba (it does not auto-range): asking for
    //    member;range=0-9 of a 25-member group, the source continues from high+1 until `*`.
    let mut names = Vec::new();
    for i in 0..25 {
        let u = dc
            .add_user(
                &format!("r{i:02}"),
                "R",
                &format!("{i:02}"),
                None,
                None,
                None,
            )
            .unwrap();
        names.push(u.dn);
    }
    let big = dc.add_group("Ranged").unwrap();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    dc.add_members(&big, &refs).unwrap();
    let settings = LdapSettings {
        addresses: vec![dc.ip.clone()],
        port: dc.ldap_port,
        encryption: Encryption::None,
        verify: true,
        ca_file: None,
        bind_dn: dc.svc_upn.clone(), // a UPN binds too
        password: SecretString::from(dc.svc_pw.clone()),
        kerberos: None,
        timeout: Duration::from_secs(30),
        page_size: 500,
    };
    let members = runtime().block_on(async {
        let source = LdapSource::connect(&settings).await.unwrap();
        let out = source
            .search(SearchSpec {
                base: dc.base_dn.clone(),
                filter: "(&(objectClass=group)(cn=Ranged))".into(),
                attributes: vec!["cn".into(), "member;range=0-9".into()],
            })
            .await
            .unwrap();
        assert!(out.complete, "{:?}", out.notes);
        assert_eq!(out.entries.len(), 1);
        out.entries[0].strs("member").len()
    });
    assert_eq!(members, 25, "0-9, then 10-*: all members");
    eprintln!(
        "TIMING ad_flavor samba test {:.1} s",
        t0.elapsed().as_secs_f64()
    );
}

fn fake_config(fake: &FakeAd, base_url: &str) -> String {
    format!(
        "ad:\n  ldap:\n    server:\n      addresses: ['127.0.0.1']\n      port: {}\n      user: '{}'\n      timeout: 20\n    base_dn: '{}'\niid:\n  scim:\n    base_url: '{base_url}'\n",
        fake.port, fake.bind_dn, fake.base_dn
    )
}

#[test]
fn fake_ad_auto_ranged_group_reads_all_3500_members() {
    let spec = FakeAdSpec::big_group(3500);
    let pw = spec.bind_pw.clone();
    let fake = FakeAd::start(spec).unwrap();
    let inst = Instance::new(
        &fake_config(&fake, "http://127.0.0.1:9/scim/v2"),
        &pw,
        "unused",
    );
    let t0 = Instant::now();
    let read = inst.read().unwrap();
    assert_eq!(
        read.kind,
        DirectoryKind::ActiveDirectory,
        "rootDSE capability"
    );
    // The fake answers subtree searches from the naming context with three continuation
    // references (ForestDnsZones, DomainDnsZones, Configuration): ignored, read complete.
    assert!(read.read.complete, "{:?}", read.read.notes);
    assert_eq!(read.read.groups.len(), 1);
    let members = read.read.groups[0].strs("member");
    assert_eq!(members.len(), 3500);
    assert_eq!(
        members
            .iter()
            .collect::<std::collections::BTreeSet<_>>()
            .len(),
        3500,
        "no duplicates across ranges"
    );
    let searches = fake.searches();
    assert!(
        searches.iter().any(|s| s.ends_with("|member;range=1500-*")),
        "{searches:?}"
    );
    assert!(
        searches.iter().any(|s| s.ends_with("|member;range=3000-*")),
        "{searches:?}"
    );
    eprintln!(
        "TIMING fake AD 3,500-member read {:.2} s",
        t0.elapsed().as_secs_f64()
    );
}

#[test]
fn fake_ad_malformed_ber_fails_the_read_cleanly() {
    let mut spec = FakeAdSpec::big_group(10);
    spec.fault = FakeFault::MalformedSearchResponse;
    let pw = spec.bind_pw.clone();
    let fake = FakeAd::start(spec).unwrap();
    let inst = Instance::new(
        &fake_config(&fake, "http://127.0.0.1:9/scim/v2"),
        &pw,
        "unused",
    );
    let t0 = Instant::now();
    let outcome = inst.read();
    assert!(t0.elapsed() < Duration::from_secs(20), "no hang");
    match outcome {
        Err(e) => eprintln!("malformed BER → {e}"),
        Ok(read) => assert!(
            !read.read.complete,
            "a malformed response must not pass for a complete read: {:?}",
            read.read.notes
        ),
    }
}
