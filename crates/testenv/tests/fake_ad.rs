//! The fake AD LDAP server: auto-ranged `member` like Windows AD, range follow-ups, paged
//! results, rootDSE, bind checks, a malformed-BER mode — driven with OpenLDAP's `ldapsearch`
//! and with the `ldap3` client dirsync uses.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::Command;

use testenv::{FakeAd, FakeAdSpec, FakeFault};

fn search(ad: &FakeAd, args: &[&str]) -> (bool, String) {
    let out = Command::new("ldapsearch")
        .args(["-x", "-LLL", "-o", "ldif-wrap=no", "-H", &ad.url])
        .args(["-D", &ad.bind_dn, "-w", &ad.bind_pw])
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

fn count(out: &str, prefix: &str) -> usize {
    out.lines().filter(|l| l.starts_with(prefix)).count()
}

#[test]
fn big_group_is_auto_ranged_and_ranges_follow_up() {
    let ad = FakeAd::start(FakeAdSpec::big_group(3500)).unwrap();
    let group = format!("CN=big,OU=groups,{}", ad.base_dn);

    // plain read (paged, as a sync client does): member;range=0-1499, no plain member
    let (ok, out) = search(
        &ad,
        &[
            "-E",
            "pr=500/noprompt",
            "-b",
            &ad.base_dn,
            "(&(objectClass=group)(cn=big))",
            "member",
            "cn",
        ],
    );
    assert!(ok, "{out}");
    assert_eq!(count(&out, "member;range=0-1499: "), 1500);
    assert_eq!(count(&out, "member: "), 0);
    assert!(out.contains("cn: big"));
    // referrals from the domain root, like AD
    assert!(
        out.contains("refldap://") || out.contains("ldap://ForestDnsZones"),
        "{out}"
    );

    let (ok, out) = search(
        &ad,
        &[
            "-s",
            "base",
            "-b",
            &group,
            "(objectClass=*)",
            "member;range=1500-*",
        ],
    );
    assert!(ok, "{out}");
    assert_eq!(count(&out, "member;range=1500-2999: "), 1500);
    let (ok, out) = search(
        &ad,
        &[
            "-s",
            "base",
            "-b",
            &group,
            "(objectClass=*)",
            "member;range=3000-*",
        ],
    );
    assert!(ok, "{out}");
    assert_eq!(count(&out, "member;range=3000-*: "), 500);
    assert!(out.contains("member;range=3000-*: CN=user03500,OU=people,DC=fake,DC=test"));

    // users: a subtree search for users with paging returns them all in one page
    let (ok, out) = search(
        &ad,
        &[
            "-E",
            "pr=1000/noprompt",
            "-b",
            &ad.base_dn,
            "(&(objectClass=user)(sAMAccountName=user*))",
            "objectGUID",
        ],
    );
    assert!(ok, "{out}");
    assert_eq!(count(&out, "dn: "), 3500);
    assert_eq!(count(&out, "objectGUID:: "), 3500);

    // the rootDSE says Active Directory
    let (ok, out) = search(
        &ad,
        &[
            "-s",
            "base",
            "-b",
            "",
            "(objectClass=*)",
            "supportedCapabilities",
            "defaultNamingContext",
        ],
    );
    assert!(
        ok && out.contains("supportedCapabilities: 1.2.840.113556.1.4.800"),
        "{out}"
    );
    assert!(out.contains("defaultNamingContext: DC=fake,DC=test"));

    // wrong password refused
    let bad = Command::new("ldapsearch")
        .args([
            "-x",
            "-H",
            &ad.url,
            "-D",
            &ad.bind_dn,
            "-w",
            "nope",
            "-b",
            &ad.base_dn,
            "cn=big",
        ])
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(49));

    assert!(
        ad.searches()
            .iter()
            .any(|s| s.contains("member;range=1500-*"))
    );
    let port = ad.port;
    drop(ad);
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", port)).is_err(),
        "still listening"
    );
}

#[test]
fn ldap3_client_reads_all_ranges() {
    let ad = FakeAd::start(FakeAdSpec::big_group(3500)).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let (conn, mut ldap) = ldap3::LdapConnAsync::new(&ad.url).await.unwrap();
        ldap3::drive!(conn);
        ldap.simple_bind(&ad.bind_dn, &ad.bind_pw)
            .await
            .unwrap()
            .success()
            .unwrap();
        let group = format!("CN=big,OU=groups,{}", ad.base_dn);
        let mut members = Vec::new();
        let mut attr = "member".to_string();
        loop {
            let (entries, _) = ldap
                .search(
                    &group,
                    ldap3::Scope::Base,
                    "(objectClass=*)",
                    vec![attr.as_str()],
                )
                .await
                .unwrap()
                .success()
                .unwrap();
            let entry = ldap3::SearchEntry::construct(entries.into_iter().next().unwrap());
            let (name, vals) = entry.attrs.into_iter().next().unwrap();
            members.extend(vals);
            let (_, range) = name.split_once(";range=").unwrap();
            let (_, hi) = range.split_once('-').unwrap();
            if hi == "*" {
                break;
            }
            attr = format!("member;range={}-*", hi.parse::<usize>().unwrap() + 1);
        }
        assert_eq!(members.len(), 3500);
        members.sort();
        members.dedup();
        assert_eq!(members.len(), 3500);
    });
}

#[test]
fn malformed_ber_mode_breaks_the_search_not_the_bind() {
    let mut spec = FakeAdSpec::big_group(3);
    spec.fault = FakeFault::MalformedSearchResponse;
    let ad = FakeAd::start(spec).unwrap();
    let (ok, out) = search(&ad, &["-b", &ad.base_dn, "(objectClass=user)", "cn"]);
    assert!(!ok, "a malformed response must fail the client: {out}");
    // rootDSE still answers (the client can detect the flavour first)
    let (ok, out) = search(
        &ad,
        &["-s", "base", "-b", "", "(objectClass=*)", "namingContexts"],
    );
    assert!(ok, "{out}");
    // the ldap3 client gets an error (no hang, no panic)
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let res = rt.block_on(async {
        let (conn, mut ldap) = ldap3::LdapConnAsync::new(&ad.url).await.unwrap();
        ldap3::drive!(conn);
        ldap.simple_bind(&ad.bind_dn, &ad.bind_pw)
            .await
            .unwrap()
            .success()
            .unwrap();
        tokio::time::timeout(
            std::time::Duration::from_secs(10),
            ldap.search(
                &ad.base_dn,
                ldap3::Scope::Subtree,
                "(objectClass=user)",
                vec!["cn"],
            ),
        )
        .await
    });
    let res = res.expect("ldap3 hung on a malformed response");
    assert!(
        res.is_err() || res.as_ref().is_ok_and(|r| r.1.rc != 0),
        "{res:?}"
    );
}
