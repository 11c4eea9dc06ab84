//! SCIM filter text (RFC 7644 §3.4.2.2) through the service's path: `scim::filter::parse`,
//! the cost limits, `idservice::store::filter_sql::condition` for both engines, and the page
//! query run by `store::search::users` / `groups` on SQLite holding a few users and groups.
//! Beyond not panicking: a filter that passed parsing and the limits must translate into SQL
//! that runs; a database error here would be a 500 to the client.

use std::sync::OnceLock;

use crate::App;
use axum::http::Method;
use idservice::store::Engine;
use idservice::store::filter_sql::{self, Kind};
use idservice::store::search::{self, SearchSpec};

fn app() -> &'static App {
    static APP: OnceLock<App> = OnceLock::new();
    APP.get_or_init(|| {
        let app = App::new();
        for (i, (name, ext, title)) in [
            ("taro@example.jp", "guid-1", "Engineer"),
            ("hanako@example.jp", "guid-2", "Manager"),
            ("ichiro@example.jp", "guid-3", "Engineer"),
        ]
        .into_iter()
        .enumerate()
        {
            let body = serde_json::json!({
                "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User",
                            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"],
                "userName": name, "externalId": ext, "title": title, "active": i != 1,
                "name": {"familyName": "Yamada", "givenName": format!("N{i}")},
                "emails": [{"value": name, "type": "work", "primary": true}],
                "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User":
                    {"employeeNumber": format!("{i}"), "department": "Dev"}
            });
            let r = app.call(Method::POST, "/scim/v2/Users", body.to_string().as_bytes());
            assert_eq!(r.status.as_u16(), 201);
            let id = r.json()["id"].as_str().unwrap().to_string();
            let group = serde_json::json!({
                "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
                "displayName": format!("group {i}"), "externalId": format!("g{i}"),
                "members": [{"value": id}]
            });
            let r = app.call(
                Method::POST,
                "/scim/v2/Groups",
                group.to_string().as_bytes(),
            );
            assert_eq!(r.status.as_u16(), 201);
        }
        app
    })
}

/// One input.
pub fn run(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(filter) = scim::filter::parse(text) else {
        return;
    };
    let app = app();
    let limits = app.service().filter_limits;
    if scim::filter::check_cost(&filter, limits.max_depth, limits.max_terms).is_err() {
        return;
    }
    let _ = filter_sql::mentions_state(&filter);
    for kind in [Kind::User, Kind::Group] {
        let _ = filter_sql::condition(kind, &filter, Engine::Postgres);
        let Ok(condition) = filter_sql::condition(kind, &filter, Engine::Sqlite) else {
            continue;
        };
        let spec = SearchSpec {
            kind,
            condition: Some(condition),
            include_pending: true,
            sort: None,
            offset: 0,
            limit: 10,
            after: None,
            known_total: None,
        };
        let store = &app.service().store;
        let result = app.block_on(async {
            match kind {
                Kind::User => search::users(store, &spec).await.map(|(f, _)| f.total),
                Kind::Group => search::groups(store, &spec).await.map(|(f, _)| f.total),
            }
        });
        if let Err(e) = result {
            panic!("{text:?} ({kind:?}): the SQL does not run: {e}");
        }
    }
}
