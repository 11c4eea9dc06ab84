//! `/Groups` request bodies through idservice's real router (in process, SQLite in a temporary
//! directory, [`crate::App`]), with two users to be members. The input up to the first
//! NUL is a Group for `POST /Groups` and then `PUT`, the rest a `PATCH` body; both are also
//! applied to a group created for this input and deleted after it. Beyond not panicking: no
//! 500, every error an RFC 7644 error with the right status ([`crate::check`]), and a
//! Group answered with 200/201 has an id, its schemas and the displayName it reads back with.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::App;
use axum::http::Method;
use serde_json::{Value, json};

/// The service and the ids of its two users.
fn app() -> &'static (App, Vec<String>) {
    static APP: OnceLock<(App, Vec<String>)> = OnceLock::new();
    APP.get_or_init(|| {
        let app = App::new();
        let ids = ["taro", "hanako"]
            .iter()
            .map(|n| {
                let body = json!({
                    "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
                    "userName": format!("{n}@example.jp"), "externalId": *n
                });
                let r = app.call(Method::POST, "/scim/v2/Users", body.to_string().as_bytes());
                assert_eq!(r.status.as_u16(), 201);
                r.json()["id"].as_str().unwrap().to_string()
            })
            .collect();
        (app, ids)
    })
}

/// A group as written (201/200): its id, after checking its shape and reading it back.
fn written(app: &App, group: &Value) -> String {
    let id = group["id"]
        .as_str()
        .expect("a written group has an id")
        .to_string();
    assert!(group["schemas"].is_array(), "{group}");
    let read = app.call(Method::GET, &format!("/scim/v2/Groups/{id}"), b"");
    assert_eq!(read.status.as_u16(), 200);
    assert_eq!(read.json()["displayName"], group["displayName"]);
    id
}

fn baseline(app: &App, members: &[String]) -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    let body = json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
        "displayName": format!("fuzz group {n}"), "externalId": format!("fuzz-{n}"),
        "members": [{"value": members[0], "type": "User"}]
    });
    let r = app.call(Method::POST, "/scim/v2/Groups", body.to_string().as_bytes());
    assert_eq!(r.status.as_u16(), 201, "{}", r.json());
    written(app, &r.json())
}

/// One input.
pub fn run(data: &[u8]) {
    let (app, members) = app();
    let (group, patch) = crate::split_nul(data);
    let created = app.call(Method::POST, "/scim/v2/Groups", group);
    if created.status.as_u16() == 201 {
        let id = written(app, &created.json());
        app.call(Method::DELETE, &format!("/scim/v2/Groups/{id}"), b"");
    }
    let id = baseline(app, members);
    let uri = format!("/scim/v2/Groups/{id}");
    for (method, body) in [(Method::PATCH, patch), (Method::PUT, group)] {
        let r = app.call(method, &uri, body);
        if r.status.as_u16() == 200 {
            written(app, &r.json());
        }
    }
    app.call(Method::DELETE, &uri, b"");
}
