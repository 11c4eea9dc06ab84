//! Regressions found by the conformance tools (`scripts/conformance`, docs/conformance.md):
//! `password` is writeOnly / returned never and stored only as a hash; a PATCH value for a whole
//! extension may echo that extension's own `schemas`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{Server, user};
use serde_json::{Value, json};

const ENTERPRISE: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";

fn patch(op: &str, path: Option<&str>, value: Value) -> Value {
    let mut o = json!({"op": op, "value": value});
    if let Some(p) = path {
        o["path"] = json!(p);
    }
    json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"], "Operations": [o]})
}

/// The stored password column and resource of a user, read from the database file.
async fn stored(s: &Server, id: &str) -> (Option<String>, String) {
    let url = format!(
        "sqlite://{}?mode=ro",
        s.dir.path().join("idservice.db").display()
    );
    let mut conn = <sqlx::SqliteConnection as sqlx::Connection>::connect(&url)
        .await
        .expect("open database");
    let row: (Option<String>, String) =
        sqlx::query_as("SELECT password_hash, resource FROM users WHERE id = ?")
            .bind(id)
            .fetch_one(&mut conn)
            .await
            .unwrap();
    row
}

#[tokio::test]
async fn password_is_never_returned_and_never_stored_in_clear() {
    let s = Server::start();
    let mut body = user("pw@example.jp", "guid-pw");
    body["password"] = json!("Initial-Secret-1");
    let r = s.post("/Users", body).await;
    assert_eq!(r.status, 201, "{}", r.body);
    assert!(r.body.get("password").is_none(), "{}", r.body);
    let id = r.id();
    let (hash, resource) = stored(&s, &id).await;
    let first = hash.expect("a hash is stored");
    assert!(first.starts_with("$argon2id$"), "{first}");
    assert!(!first.contains("Initial-Secret-1") && !resource.contains("Initial-Secret-1"));

    // PATCH add and replace (Password Sync sets it with replace): 200 without the password.
    for op in ["add", "replace"] {
        let r = s
            .patch(
                &format!("/Users/{id}"),
                patch(op, Some("password"), json!("Patched-Secret-2")),
            )
            .await;
        assert_eq!(r.status, 200, "{}", r.body);
        assert!(r.body.get("password").is_none(), "{op}: {}", r.body);
    }
    let (hash, resource) = stored(&s, &id).await;
    let patched = hash.unwrap();
    assert_ne!(patched, first, "a new password gives a new hash");
    assert!(!resource.contains("Patched-Secret-2"));

    // Later PATCHes, GETs, lists and explicit attribute requests never show it either.
    let r = s
        .patch(
            &format!("/Users/{id}"),
            patch("replace", Some("displayName"), json!("PW")),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.body.get("password").is_none(), "{}", r.body);
    let g = s.get(&format!("/Users/{id}?attributes=password")).await;
    assert!(g.body.get("password").is_none(), "{}", g.body);
    let g = s.get(&format!("/Users/{id}")).await;
    assert!(g.body.get("password").is_none(), "{}", g.body);
    let l = s.filter("/Users", "userName eq \"pw@example.jp\"").await;
    assert!(l.body["Resources"][0].get("password").is_none());
    assert_eq!(l.body["totalResults"], 1);

    // A PUT without password keeps the stored hash (a writeOnly value cannot be read back).
    let mut put = user("pw@example.jp", "guid-pw");
    put["displayName"] = json!("PW2");
    let r = s.put(&format!("/Users/{id}"), put).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(stored(&s, &id).await.0.unwrap(), patched);

    // A non-string password is a 400.
    let r = s
        .patch(
            &format!("/Users/{id}"),
            patch("replace", Some("password"), json!(12345)),
        )
        .await;
    r.assert_error(400, Some("invalidValue"), None);
}

#[tokio::test]
async fn extension_value_may_carry_its_own_schemas() {
    let s = Server::start();
    let u = s.create_user(user("ext@example.jp", "guid-ext")).await;
    let id = u["id"].as_str().unwrap();
    for op in ["add", "replace"] {
        let r = s
            .patch(
                &format!("/Users/{id}"),
                patch(
                    op,
                    Some(ENTERPRISE),
                    json!({"schemas": [ENTERPRISE], "department": format!("D-{op}")}),
                ),
            )
            .await;
        assert_eq!(r.status, 200, "{op}: {}", r.body);
        assert_eq!(r.body[ENTERPRISE], json!({"department": format!("D-{op}")}));
        assert!(
            r.body["schemas"]
                .as_array()
                .unwrap()
                .contains(&json!(ENTERPRISE))
        );
    }
}
