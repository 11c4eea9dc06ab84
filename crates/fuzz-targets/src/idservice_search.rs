//! Searches through idservice's real router (in process, SQLite in a temporary directory,
//! [`crate::App`]) holding a few users and groups: the input up to the first NUL is a
//! SearchRequest body for `POST /Users/.search`, `/Groups/.search` and `/.search`, the rest the
//! query string of `GET /Users` and `GET /Groups` (a filter, sortBy, startIndex, count,
//! attributes as the client wrote them). Beyond not panicking: no 500 (a filter too costly
//! for the time limit would be a 503), every error an RFC 7644 error with the right status
//! ([`crate::check`]), and a 200 is a ListResponse with no more Resources than
//! itemsPerPage says.

use std::sync::OnceLock;

use crate::App;
use axum::http::Method;
use serde_json::json;

fn app() -> &'static App {
    static APP: OnceLock<App> = OnceLock::new();
    APP.get_or_init(|| {
        let app = App::new();
        for i in 0..3 {
            let body = json!({
                "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User",
                            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"],
                "userName": format!("user{i}@example.jp"), "externalId": format!("guid-{i}"),
                "title": if i == 1 { "Manager" } else { "Engineer" }, "active": i != 2,
                "name": {"familyName": "Yamada", "givenName": format!("N{i}")},
                "emails": [{"value": format!("user{i}@example.jp"), "type": "work", "primary": true}],
                "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User":
                    {"employeeNumber": format!("{i}"), "department": "Dev"}
            });
            let r = app.call(Method::POST, "/scim/v2/Users", body.to_string().as_bytes());
            assert_eq!(r.status.as_u16(), 201);
            let id = r.json()["id"].as_str().unwrap().to_string();
            let group = json!({
                "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
                "displayName": format!("group {i}"), "members": [{"value": id}]
            });
            let r = app.call(Method::POST, "/scim/v2/Groups", group.to_string().as_bytes());
            assert_eq!(r.status.as_u16(), 201);
        }
        app
    })
}

/// The query string as sent: bytes outside the URI's allowed set percent-encoded.
fn query(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for &b in bytes {
        if b.is_ascii_alphanumeric() || b"-._~=&+".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn list_response(r: &crate::Reply) {
    if r.status.as_u16() != 200 {
        return;
    }
    let body = r.json();
    assert_eq!(
        body["schemas"][0], "urn:ietf:params:scim:api:messages:2.0:ListResponse",
        "{body}"
    );
    assert!(body["totalResults"].is_u64(), "{body}");
    let n = body["Resources"].as_array().map_or(0, Vec::len) as u64;
    assert!(n <= body["itemsPerPage"].as_u64().unwrap_or(0), "{body}");
}

/// One input.
pub fn run(data: &[u8]) {
    let app = app();
    let (body, q) = crate::split_nul(data);
    for uri in [
        "/scim/v2/Users/.search",
        "/scim/v2/Groups/.search",
        "/scim/v2/.search",
    ] {
        list_response(&app.call(Method::POST, uri, body));
    }
    let q = query(q);
    for path in ["/scim/v2/Users", "/scim/v2/Groups"] {
        list_response(&app.call(Method::GET, &format!("{path}?{q}"), b""));
    }
}
