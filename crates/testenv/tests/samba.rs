//! Samba AD DC harness: a DC starts in its own network namespace, takes users/groups/OUs,
//! answers paged LDAP, LDAPS and StartTLS verified against its private CA (also by rustls),
//! two forests run side by side, bulk loading works, and everything is gone after drop.
//!
//! Needs the Samba packages (`scripts/install-test-deps`, as root). Without them the tests
//! FAIL with instructions; `DIRSYNC_SKIP_SAMBA=1` skips them on purpose.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::Instant;

use testenv::SambaDc;

fn ldapsearch(dc: &SambaDc, env: &[(&str, &str)], url: &str, args: &[&str]) -> (bool, String) {
    let out = Command::new("ldapsearch")
        .envs(env.iter().copied())
        .args(["-x", "-LLL", "-o", "ldif-wrap=no", "-H", url])
        .args(["-D", &dc.svc_dn, "-w", &dc.svc_pw])
        .args(args)
        .output()
        .unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

fn is_gone(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/status")) {
        Err(_) => true,
        // a zombie has no memory, sockets or namespace left; only the PID 1 of a container
        // that does not reap keeps it in the table
        Ok(s) => s
            .lines()
            .any(|l| l.starts_with("State:") && l.contains('Z')),
    }
}

fn lo_addresses() -> String {
    let out = Command::new("ip")
        .args(["-4", "-o", "addr", "show", "dev", "lo"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Checks that nothing of the DC is left after drop.
fn assert_cleaned_up(pid: u32, fwd: Option<u32>, ip: &str, port: u16, dir: &Path) {
    assert!(is_gone(pid), "samba pid {pid} still running");
    if let Some(f) = fwd {
        assert!(is_gone(f), "forwarder pid {f} still running");
    }
    assert!(
        std::net::TcpStream::connect((ip, port)).is_err(),
        "{ip}:{port} still answers"
    );
    assert!(!dir.exists(), "{} still exists", dir.display());
    assert!(
        !lo_addresses().contains(&format!("inet {ip}/")),
        "lo still has {ip}"
    );
}

#[test]
fn one_dc_users_groups_ous_tls_and_cleanup() {
    if testenv::skip_samba("one_dc_users_groups_ous_tls_and_cleanup") {
        return;
    }
    let lo_before = lo_addresses();
    let dc = SambaDc::start("EXAMPLE.TEST", "EXAMPLE").unwrap();
    eprintln!(
        "EXAMPLE.TEST DC on {} (ldap {}, ldaps {}) started in {:.2?}",
        dc.ip, dc.ldap_port, dc.ldaps_port, dc.startup
    );
    assert_eq!(dc.base_dn, "DC=example,DC=test");
    assert_eq!(dc.realm, "EXAMPLE.TEST");
    assert!(dc.ldap_url.starts_with("ldap://127."));
    // the host's lo is untouched: the DC lives in its own namespace
    assert_eq!(lo_addresses(), lo_before);

    // users: create, read back paged, disable/enable, GUID, password, delete
    let ou = dc.add_ou("Staff").unwrap();
    assert_eq!(ou, "OU=Staff,DC=example,DC=test");
    let alice = dc
        .add_user(
            "alice",
            "Alice",
            "Liddell",
            Some("alice@example.test"),
            None,
            Some("Staff"),
        )
        .unwrap();
    assert_eq!(alice.dn, "CN=alice,OU=Staff,DC=example,DC=test");
    assert_eq!(alice.upn, "alice@example.test");
    let bob = dc
        .add_user("bob", "Bob", "Builder", None, Some("bob@corp.test"), None)
        .unwrap();
    assert_eq!(bob.dn, "CN=bob,CN=Users,DC=example,DC=test");
    let (ok, out) = ldapsearch(
        &dc,
        &[],
        &dc.ldap_url,
        &[
            "-E",
            "pr=1/noprompt",
            "-b",
            &dc.base_dn,
            "(&(objectCategory=person)(|(sAMAccountName=alice)(sAMAccountName=bob)))",
            "sAMAccountName",
            "mail",
            "userAccountControl",
            "objectGUID",
        ],
    );
    assert!(ok, "{out}");
    assert_eq!(
        out.matches("\ndn: ").count() + usize::from(out.starts_with("dn: ")),
        2,
        "{out}"
    );
    assert!(out.contains("mail: alice@example.test"), "{out}");
    assert!(
        out.contains("# pagedresults: estimate")
            || out.matches("userAccountControl: 512").count() == 2,
        "{out}"
    );
    assert_eq!(dc.user_account_control("alice").unwrap(), 512);
    dc.disable_user("alice").unwrap();
    assert_eq!(dc.user_account_control("alice").unwrap(), 514);
    dc.enable_user("alice").unwrap();
    assert_eq!(dc.user_account_control(&alice.dn).unwrap(), 512);

    // objectGUID text form: AD resolves <GUID=…> with exactly this form
    assert_eq!(alice.object_guid.len(), 36);
    let (ok, out) = ldapsearch(
        &dc,
        &[],
        &dc.ldap_url,
        &[
            "-s",
            "base",
            "-b",
            &format!("<GUID={}>", alice.object_guid),
            "dn",
        ],
    );
    assert!(ok && out.contains(&alice.dn), "{out}");
    let sid = dc.object_sid(&alice.dn).unwrap();
    assert!(sid.starts_with("S-1-5-21-"), "{sid}");

    // attributes, binary attributes, password (bind as the user with it)
    dc.set_attr(&alice.dn, "title", &["Engineer"]).unwrap();
    assert_eq!(
        dc.value(&alice.dn, "title").unwrap().as_deref(),
        Some("Engineer")
    );
    let raw_guid = dc.values(&alice.dn, "objectGUID").unwrap().remove(0);
    dc.set_attr_bytes(&bob.dn, "mS-DS-ConsistencyGuid", &[&raw_guid])
        .unwrap();
    assert_eq!(
        dc.values(&bob.dn, "mS-DS-ConsistencyGuid").unwrap(),
        vec![raw_guid]
    );
    dc.set_password("alice", "New#Passw0rd2").unwrap();
    let bind = Command::new("ldapsearch")
        .args(["-x", "-LLL", "-H", &dc.ldap_url, "-D", "alice@example.test"])
        .args(["-w", "New#Passw0rd2", "-s", "base", "-b", &dc.base_dn, "dn"])
        .output()
        .unwrap();
    assert!(bind.status.success(), "{bind:?}");

    // groups and members
    let g = dc.add_group("staff-all").unwrap();
    dc.add_members("staff-all", &["alice", &bob.dn]).unwrap();
    assert_eq!(dc.values(&g, "member").unwrap().len(), 2);
    dc.remove_members(&g, &["bob"]).unwrap();
    assert_eq!(dc.values(&g, "member").unwrap().len(), 1);

    // move, then delete user and group
    let moved = dc.move_to(&bob.dn, &ou).unwrap();
    assert_eq!(moved, "CN=bob,OU=Staff,DC=example,DC=test");
    assert_eq!(dc.dn_of("bob").unwrap(), moved);
    assert_eq!(dc.object_guid(&moved).unwrap(), bob.object_guid);
    dc.delete_user("bob").unwrap();
    assert!(dc.dn_of("bob").is_err());
    dc.delete_group("staff-all").unwrap();
    // re-created account: same name, new objectGUID
    let bob2 = dc
        .add_user("bob", "Bob", "Builder", None, None, None)
        .unwrap();
    assert_ne!(bob2.object_guid, bob.object_guid);

    // TLS: LDAPS and StartTLS verify against the private CA; another CA is refused
    let ca = dc.ca_file.display().to_string();
    let with_ca = [
        ("LDAPTLS_CACERT", ca.as_str()),
        ("LDAPTLS_REQCERT", "demand"),
    ];
    let q = ["-s", "base", "-b", &dc.base_dn, "dn"];
    let (ok, out) = ldapsearch(&dc, &with_ca, &dc.ldaps_url, &q);
    assert!(ok, "LDAPS: {out}");
    let mut starttls = vec!["-ZZ"];
    starttls.extend_from_slice(&q);
    let (ok, out) = ldapsearch(&dc, &with_ca, &dc.ldap_url, &starttls);
    assert!(ok, "StartTLS: {out}");
    let wrong = [
        ("LDAPTLS_CACERT", "/etc/ssl/certs/ca-certificates.crt"),
        ("LDAPTLS_REQCERT", "demand"),
    ];
    let (ok, out) = ldapsearch(&dc, &wrong, &dc.ldaps_url, &q);
    assert!(!ok, "LDAPS verified against the system CAs?! {out}");

    let (pid, fwd, ip, port, dir) = (
        dc.pid(),
        dc.forwarder_pid(),
        dc.ip.clone(),
        dc.ldap_port,
        dc.dir(),
    );
    drop(dc);
    assert_cleaned_up(pid, fwd, &ip, port, &dir);
    assert_eq!(lo_addresses(), lo_before);
}

fn rustls_config(ca: &Path) -> Arc<rustls::ClientConfig> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    Arc::new(
        rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth(),
    )
}

async fn rustls_bind(dc: &SambaDc, url: &str, starttls: bool) -> Result<usize, ldap3::LdapError> {
    let settings = ldap3::LdapConnSettings::new()
        .set_config(rustls_config(&dc.ca_file))
        .set_starttls(starttls);
    let (conn, mut ldap) = ldap3::LdapConnAsync::with_settings(settings, url).await?;
    ldap3::drive!(conn);
    ldap.simple_bind(&dc.svc_dn, &dc.svc_pw).await?.success()?;
    let (entries, _) = ldap
        .search(
            &dc.base_dn,
            ldap3::Scope::Base,
            "(objectClass=*)",
            vec!["dn"],
        )
        .await?
        .success()?;
    let _ = ldap.unbind().await;
    Ok(entries.len())
}

#[test]
fn two_forests_side_by_side_and_rustls_verifies_each() {
    if testenv::skip_samba("two_forests_side_by_side_and_rustls_verifies_each") {
        return;
    }
    let t0 = Instant::now();
    let other = std::thread::spawn(|| SambaDc::start("OTHER.TEST", "OTHER"));
    let example = SambaDc::start("EXAMPLE.TEST", "EXAMPLE").unwrap();
    let other = other.join().unwrap().unwrap();
    eprintln!(
        "two DCs started concurrently in {:.2?} (EXAMPLE {:.2?}, OTHER {:.2?})",
        t0.elapsed(),
        example.startup,
        other.startup
    );
    assert_ne!(example.ip, other.ip);
    for (dc, base) in [
        (&example, "DC=example,DC=test"),
        (&other, "DC=other,DC=test"),
    ] {
        assert_eq!(dc.base_dn, base);
        let (ok, out) = ldapsearch(
            dc,
            &[],
            &dc.ldap_url,
            &["-s", "base", "-b", "", "defaultNamingContext"],
        );
        assert!(
            ok && out.contains(&format!("defaultNamingContext: {base}")),
            "{out}"
        );
    }
    // same user name in both forests, different objects
    let a = example
        .add_user("sam", "Sam", "Example", None, None, None)
        .unwrap();
    let b = other
        .add_user("sam", "Sam", "Other", None, None, None)
        .unwrap();
    assert_ne!(a.object_guid, b.object_guid);
    assert_eq!(b.dn, "CN=sam,CN=Users,DC=other,DC=test");

    // rustls (what dirsync uses) accepts each DC against its own CA: LDAPS and StartTLS,
    // IP-literal URL (IP SAN); and refuses a DC signed by the other forest's CA.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        for dc in [&example, &other] {
            assert_eq!(rustls_bind(dc, &dc.ldaps_url, false).await.unwrap(), 1);
            assert_eq!(rustls_bind(dc, &dc.ldap_url, true).await.unwrap(), 1);
        }
        let crossed = SambaDcView { ca: &other.ca_file };
        let err = crossed.bind(&example.ldaps_url).await;
        assert!(
            err.is_err(),
            "rustls accepted a certificate from another CA"
        );
    });

    let gone: Vec<_> = [&example, &other]
        .iter()
        .map(|d| {
            (
                d.pid(),
                d.forwarder_pid(),
                d.ip.clone(),
                d.ldap_port,
                d.dir(),
            )
        })
        .collect();
    drop(example);
    drop(other);
    for (pid, fwd, ip, port, dir) in gone {
        assert_cleaned_up(pid, fwd, &ip, port, &dir);
    }
}

/// Just a CA, for the negative rustls check.
struct SambaDcView<'a> {
    ca: &'a Path,
}

impl SambaDcView<'_> {
    async fn bind(&self, url: &str) -> Result<(), ldap3::LdapError> {
        let settings = ldap3::LdapConnSettings::new().set_config(rustls_config(self.ca));
        let (conn, mut ldap) = ldap3::LdapConnAsync::with_settings(settings, url).await?;
        ldap3::drive!(conn);
        ldap.simple_bind("", "").await?;
        Ok(())
    }
}

#[test]
fn bulk_load_explicit_ranges_and_dirsync_grant() {
    if testenv::skip_samba("bulk_load_explicit_ranges_and_dirsync_grant") {
        return;
    }
    let dc = SambaDc::start("EXAMPLE.TEST", "EXAMPLE").unwrap();
    let stats = dc.load_users(300, 3).unwrap();
    eprintln!(
        "loaded {} users + {} groups in {:.2?} ({:.0} objects/s)",
        stats.users,
        stats.groups,
        stats.elapsed,
        (stats.users + stats.groups) as f64 / stats.elapsed.as_secs_f64()
    );
    assert!(dc.load_users(1, 1).is_err(), "second load must be refused");
    let (ok, out) = ldapsearch(
        &dc,
        &[],
        &dc.ldap_url,
        &[
            "-E",
            "pr=100/noprompt",
            "-b",
            &stats.people_dn,
            "(objectClass=user)",
            "userAccountControl",
        ],
    );
    assert!(ok, "{out}");
    assert_eq!(out.matches("userAccountControl: 546").count(), 300);

    // Samba does not auto-range, but honours explicit ranges (group00001 has 100 members)
    let g = format!("CN=group00001,{}", stats.groups_dn);
    let (ok, out) = ldapsearch(
        &dc,
        &[],
        &dc.ldap_url,
        &[
            "-s",
            "base",
            "-b",
            &g,
            "(objectClass=*)",
            "member;range=0-39",
        ],
    );
    assert!(ok, "{out}");
    assert_eq!(out.matches("member;range=0-39: ").count(), 40, "{out}");

    // DirSync as the service account: refused without the right, allowed after the grant
    let dirsync = [
        "-E",
        "!dirSync=0/0",
        "-b",
        dc.base_dn.as_str(),
        "(objectClass=user)",
        "dn",
    ];
    let (ok, _) = ldapsearch(&dc, &[], &dc.ldap_url, &dirsync);
    assert!(!ok, "DirSync without the grant should fail");
    dc.grant_dirsync(&dc.svc_dn).unwrap();
    let (ok, out) = ldapsearch(&dc, &[], &dc.ldap_url, &dirsync);
    assert!(ok, "{out}");
    assert!(out.matches("dn: ").count() >= 300, "{out}");

    // an unavailable DC, then the same DC back with its data
    let mut dc = dc;
    dc.stop().unwrap();
    assert!(std::net::TcpStream::connect((dc.ip.as_str(), dc.ldap_port)).is_err());
    let t0 = Instant::now();
    dc.restart().unwrap();
    eprintln!("restart in {:.2?}", t0.elapsed());
    assert!(
        dc.dn_of("user000001")
            .unwrap()
            .starts_with("CN=user000001,OU=people,")
    );
}
