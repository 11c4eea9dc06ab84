//! Token scopes, expiry and revocation (401/403), and the CLI's errors for a busy port, a
//! corrupt database and an unusable data directory.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::process::{Command, Stdio};

use common::{BIN, Server, user};
use reqwest::Method;
use serde_json::json;

#[tokio::test]
async fn scopes_and_token_states() {
    let s = Server::start();
    let read_users = s.new_token("escim_read_users", "90d");
    let write_groups = s.new_token("escim_write_groups,escim_read_groups", "90d");
    let expired = s.new_token("escim_read_users", "0s");
    let out = s.cli(&["token", "create", "--scope", "escim_read_users"]);
    let revoked = String::from_utf8_lossy(&out.stdout).trim().to_string();
    // The CLI names the new token's id on stderr: "token <id> created (...)".
    let revoked_id = String::from_utf8_lossy(&out.stderr)
        .split_whitespace()
        .nth(1)
        .unwrap()
        .to_string();

    // 401: missing, unknown, expired, revoked — with WWW-Authenticate.
    let none = s.send(None, Method::GET, "/Users", None, &[]).await;
    none.assert_error(401, None, None);
    assert_eq!(none.header("www-authenticate").unwrap(), "Bearer");
    s.send(Some("ids_bogus"), Method::GET, "/Users", None, &[])
        .await
        .assert_error(401, None, None);
    s.send(Some(&expired), Method::GET, "/Users", None, &[])
        .await
        .assert_error(401, None, Some("token expired"));
    let list = s.cli(&["token", "list"]);
    let listing = String::from_utf8_lossy(&list.stdout).to_string();
    assert!(!listing.contains(&revoked), "secrets are never listed");
    assert!(listing.contains("expired"));
    assert!(listing.contains(&format!("{revoked_id}\tvalid")));
    assert_eq!(
        s.send(Some(&revoked), Method::GET, "/Users", None, &[])
            .await
            .status,
        200
    );
    assert!(s.cli(&["token", "revoke", &revoked_id]).status.success());
    s.send(Some(&revoked), Method::GET, "/Users", None, &[])
        .await
        .assert_error(401, None, Some("token revoked"));

    // 403: lacking scope.
    assert_eq!(
        s.send(Some(&read_users), Method::GET, "/Users", None, &[])
            .await
            .status,
        200
    );
    s.send(
        Some(&read_users),
        Method::POST,
        "/Users",
        Some(user("r@example.jp", "r")),
        &[],
    )
    .await
    .assert_error(403, None, None);
    s.send(Some(&read_users), Method::GET, "/Groups", None, &[])
        .await
        .assert_error(403, None, None);
    s.send(Some(&write_groups), Method::GET, "/Users", None, &[])
        .await
        .assert_error(403, None, None);
    assert_eq!(
        s.send(
            Some(&write_groups),
            Method::POST,
            "/Groups",
            Some(json!({"displayName": "ok"})),
            &[]
        )
        .await
        .status,
        201
    );
    // Any valid token may read the discovery endpoints.
    assert_eq!(
        s.send(
            Some(&read_users),
            Method::GET,
            "/ServiceProviderConfig",
            None,
            &[]
        )
        .await
        .status,
        200
    );
    assert_eq!(
        s.send(Some(&read_users), Method::GET, "/Schemas", None, &[])
            .await
            .status,
        200
    );
    // Bulk checks the scope of each operation.
    let r = s
        .send(
            Some(&write_groups),
            Method::POST,
            "/Bulk",
            Some(json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:BulkRequest"], "Operations": [
                {"method": "POST", "path": "/Users", "bulkId": "u", "data": user("bulk@example.jp", "bu")},
                {"method": "POST", "path": "/Groups", "bulkId": "g", "data": {"displayName": "bulk"}},
            ]})),
            &[],
        )
        .await;
    assert_eq!(r.body["Operations"][0]["status"], "403", "{}", r.body);
    assert_eq!(r.body["Operations"][1]["status"], "201");

    // Bad scope names are refused by the CLI.
    let bad = s.cli(&["token", "create", "--scope", "escim_everything"]);
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("unknown scope"));
}

fn serve_fails(data: &std::path::Path, listen: &str) -> String {
    let out = Command::new(BIN)
        .args(["serve", "--listen", listen, "--data"])
        .arg(data)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success(), "serve should fail");
    String::from_utf8_lossy(&out.stderr).to_string()
}

#[tokio::test]
async fn startup_errors() {
    let s = Server::start();
    // Busy port.
    let other = tempfile::tempdir().unwrap();
    let err = serve_fails(other.path(), &s.addr);
    assert!(
        err.contains(&format!("address {} is already in use", s.addr)),
        "{err}"
    );

    // Corrupt database: not a SQLite file.
    let bad = tempfile::tempdir().unwrap();
    std::fs::write(bad.path().join("idservice.db"), vec![b'x'; 4096]).unwrap();
    let err = serve_fails(bad.path(), "127.0.0.1:0");
    assert!(
        err.contains("idservice.db") && err.contains("not a SQLite database"),
        "{err}"
    );

    // Unusable data directory (a path below a regular file).
    let file = tempfile::NamedTempFile::new().unwrap();
    let err = serve_fails(&file.path().join("data"), "127.0.0.1:0");
    assert!(err.contains("cannot create data directory"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
}

#[tokio::test]
async fn graceful_shutdown_on_sigterm() {
    common::install_crypto();
    let dir = tempfile::tempdir().unwrap();
    let (mut child, _addr) = common::spawn_serve(dir.path(), &[]);
    let pid = child.id().to_string();
    let st = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    assert!(st.success());
    let status = child.wait().unwrap();
    assert!(status.success(), "exit status {status:?}");
}
