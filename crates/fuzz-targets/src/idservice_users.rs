//! `/Users` request bodies through idservice's real router (in process, SQLite in a temporary
//! directory, [`crate::App`]). The input up to the first NUL is a User for
//! `POST /Users` and then `PUT`, the rest a `PATCH` body; both are also applied to a user
//! created for this input and deleted after it. Beyond not panicking: no 500, every error an
//! RFC 7644 error with the right status ([`crate::check`]), and a User answered with
//! 200/201 has an id, its schemas and the userName it reads back with.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::App;
use axum::http::Method;
use serde_json::{Value, json};

fn app() -> &'static App {
    static APP: OnceLock<App> = OnceLock::new();
    APP.get_or_init(App::new)
}

/// A user as written (201/200): its id, after checking its shape and reading it back.
fn written(app: &App, user: &Value) -> String {
    let id = user["id"]
        .as_str()
        .expect("a written user has an id")
        .to_string();
    assert!(user["schemas"].is_array(), "{user}");
    let read = app.call(Method::GET, &format!("/scim/v2/Users/{id}"), b"");
    assert_eq!(read.status.as_u16(), 200);
    assert_eq!(read.json()["userName"], user["userName"]);
    id
}

fn baseline(app: &App) -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    let body = json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
        "userName": format!("fuzz{n}@example.jp"), "externalId": format!("fuzz-{n}"),
        "name": {"familyName": "Yamada", "givenName": "Taro"},
        "emails": [{"value": format!("fuzz{n}@example.jp"), "type": "work", "primary": true}]
    });
    let r = app.call(Method::POST, "/scim/v2/Users", body.to_string().as_bytes());
    assert_eq!(r.status.as_u16(), 201, "{}", r.json());
    written(app, &r.json())
}

/// One input.
pub fn run(data: &[u8]) {
    let app = app();
    let (user, patch) = crate::split_nul(data);
    let created = app.call(Method::POST, "/scim/v2/Users", user);
    if created.status.as_u16() == 201 {
        let id = written(app, &created.json());
        app.call(Method::DELETE, &format!("/scim/v2/Users/{id}"), b"");
    }
    let id = baseline(app);
    let uri = format!("/scim/v2/Users/{id}");
    for (method, body) in [(Method::PATCH, patch), (Method::PUT, user)] {
        let r = app.call(method, &uri, body);
        if r.status.as_u16() == 200 {
            written(app, &r.json());
        }
    }
    app.call(Method::DELETE, &uri, b"");
}
