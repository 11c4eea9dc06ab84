//! `POST /Bulk` bodies (RFC 7644 §3.7) through idservice's real router (in process, SQLite in
//! a temporary directory, [`crate::App`]). Beyond not panicking: no 500, every error an
//! RFC 7644 error with the right status ([`crate::check`]), and a 200 is a
//! BulkResponse whose every operation has a status.

use std::sync::OnceLock;

use crate::App;
use axum::http::Method;

fn app() -> &'static App {
    static APP: OnceLock<App> = OnceLock::new();
    APP.get_or_init(App::new)
}

/// One input.
pub fn run(data: &[u8]) {
    let r = app().call(Method::POST, "/scim/v2/Bulk", data);
    if r.status.as_u16() == 200 {
        let body = r.json();
        assert_eq!(
            body["schemas"][0], "urn:ietf:params:scim:api:messages:2.0:BulkResponse",
            "{body}"
        );
        let ops = body["Operations"].as_array().expect("Operations");
        for op in ops {
            assert!(op["status"].is_string(), "{body}");
        }
    }
}
