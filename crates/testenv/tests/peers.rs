//! The harness itself: each peer starts, answers, and is gone after drop.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::Command;

#[test]
fn slapd_starts_takes_changes_and_stops() {
    let slapd = testenv::Slapd::start().unwrap();
    slapd
        .add(&format!(
            "dn: uid=probe,ou=people,{base}\nobjectClass: inetOrgPerson\nuid: probe\ncn: Probe\nsn: Probe\n",
            base = slapd.base
        ))
        .unwrap();
    let out = Command::new("ldapsearch")
        .args([
            "-x",
            "-LLL",
            "-H",
            &slapd.uri,
            "-D",
            &slapd.sync_dn,
            "-w",
            &slapd.sync_pw,
        ])
        .args(["-b", &slapd.base, "(uid=probe)", "dn"])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("uid=probe,ou=people"));
    let port = slapd.port;
    drop(slapd);
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", port)).is_err(),
        "slapd still listening"
    );
}

#[test]
fn scim2_server_starts_and_requires_its_token() {
    let server = testenv::Scim2Server::start("peer-token").unwrap();
    let status = |auth: &str| {
        let out = Command::new("curl")
            .args(["-s", "-o", "/dev/null", "-w", "%{http_code}", "-H", auth])
            .arg(format!("{}/Users", server.url))
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    assert_eq!(status("Authorization: Bearer peer-token"), "200");
    assert_eq!(status("Authorization: Bearer wrong"), "401");
}
