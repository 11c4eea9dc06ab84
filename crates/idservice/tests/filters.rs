//! Filters (run in SQL) with every operator, value paths, dates, case rules; sorting,
//! pagination and attribute projection.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{IIJ, Server};
use serde_json::json;

async fn seed(s: &Server) {
    let users = [
        json!({"userName": "alice@example.jp", "externalId": "A-1", "displayName": "Alice",
               "title": "Engineer", "active": true,
               "name": {"familyName": "Anderson", "givenName": "Alice"},
               "emails": [{"value": "alice@example.jp", "type": "work", "primary": true},
                          {"value": "alice@home.example", "type": "home"}],
               "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {"employeeNumber": "100", "department": "R&D"}}),
        json!({"userName": "bob@example.jp", "externalId": "b-2", "displayName": "Bob",
               "title": "Manager", "active": false,
               "name": {"familyName": "Brown", "givenName": "Bob"},
               "emails": [{"value": "bob@corp.example", "type": "work"}]}),
        json!({"userName": "carol_x@example.jp", "externalId": "C-3", "displayName": "Carol%",
               "active": true,
               "emails": [{"value": "carol@example.jp", "type": "home"}],
               "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {"employeeNumber": "300"}}),
        json!({"userName": "dave@other.example", "externalId": "d-4", "active": true,
               "urn:oidfj:params:scim:schemas:extention:enterprisejp:2.0:User": {"organizationName": "Dept"}}),
    ];
    for u in users {
        s.create_user(u).await;
    }
}

#[tokio::test]
async fn every_filter_operator() {
    let s = Server::start();
    seed(&s).await;
    let n = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();

    // eq on indexed columns; userName is case-insensitive, externalId caseExact.
    assert_eq!(
        s.user_names("userName eq \"ALICE@example.jp\"").await,
        n(&["alice@example.jp"])
    );
    assert_eq!(
        s.user_names("externalId eq \"A-1\"").await,
        n(&["alice@example.jp"])
    );
    assert!(s.user_names("externalId eq \"a-1\"").await.is_empty());
    assert_eq!(
        s.user_names("USERNAME Eq \"bob@example.jp\"").await,
        n(&["bob@example.jp"])
    );
    // ne (absent values count as not equal).
    assert_eq!(
        s.user_names("title ne \"Engineer\"").await,
        n(&["bob@example.jp", "carol_x@example.jp", "dave@other.example"])
    );
    // co / sw / ew, with LIKE wildcards escaped.
    assert_eq!(
        s.user_names("userName co \"_x\"").await,
        n(&["carol_x@example.jp"])
    );
    assert_eq!(
        s.user_names("displayName co \"%\"").await,
        n(&["carol_x@example.jp"])
    );
    assert_eq!(
        s.user_names("userName sw \"A\"").await,
        n(&["alice@example.jp"])
    );
    assert_eq!(
        s.user_names("userName ew \"OTHER.EXAMPLE\"").await,
        n(&["dave@other.example"])
    );
    assert_eq!(
        s.user_names("externalId sw \"b\"").await,
        n(&["bob@example.jp"])
    );
    assert!(s.user_names("externalId sw \"B\"").await.is_empty());
    // gt / ge / lt / le on strings.
    assert_eq!(
        s.user_names("userName gt \"carol\"").await,
        n(&["carol_x@example.jp", "dave@other.example"])
    );
    assert_eq!(
        s.user_names("userName ge \"carol_x@example.jp\"").await,
        n(&["carol_x@example.jp", "dave@other.example"])
    );
    assert_eq!(
        s.user_names("userName lt \"b\"").await,
        n(&["alice@example.jp"])
    );
    assert_eq!(
        s.user_names("userName le \"bob@example.jp\"").await,
        n(&["alice@example.jp", "bob@example.jp"])
    );
    // pr.
    assert_eq!(
        s.user_names("title pr").await,
        n(&["alice@example.jp", "bob@example.jp"])
    );
    assert_eq!(
        s.user_names("emails pr").await,
        n(&["alice@example.jp", "bob@example.jp", "carol_x@example.jp"])
    );
    assert_eq!(
        s.user_names("name.givenName pr").await,
        n(&["alice@example.jp", "bob@example.jp"])
    );
    // booleans.
    assert_eq!(
        s.user_names("active eq false").await,
        n(&["bob@example.jp"])
    );
    assert_eq!(s.user_names("active ne false").await.len(), 3);
    // and / or / not, with precedence and grouping.
    assert_eq!(
        s.user_names("title pr and active eq true").await,
        n(&["alice@example.jp"])
    );
    assert_eq!(
        s.user_names("userName sw \"a\" or userName sw \"d\"").await,
        n(&["alice@example.jp", "dave@other.example"])
    );
    assert_eq!(
        s.user_names("not (title pr)").await,
        n(&["carol_x@example.jp", "dave@other.example"])
    );
    assert_eq!(
        s.user_names("not (title eq \"Engineer\") and (active eq true or userName sw \"b\")")
            .await,
        n(&["bob@example.jp", "carol_x@example.jp", "dave@other.example"])
    );
    // Sub-attributes and multi-valued attributes.
    assert_eq!(
        s.user_names("name.familyName eq \"brown\"").await,
        n(&["bob@example.jp"])
    );
    assert_eq!(
        s.user_names("emails.value ew \"@example.jp\"").await,
        n(&["alice@example.jp", "carol_x@example.jp"])
    );
    assert_eq!(
        s.user_names("emails co \"corp\"").await,
        n(&["bob@example.jp"])
    );
    assert_eq!(
        s.user_names("emails.type eq \"home\"").await,
        n(&["alice@example.jp", "carol_x@example.jp"])
    );
    // Value paths: both conditions on the same element.
    assert_eq!(
        s.user_names("emails[type eq \"work\" and value co \"@example.jp\"]")
            .await,
        n(&["alice@example.jp"])
    );
    assert_eq!(
        s.user_names("emails[type eq \"home\" and value co \"corp\"]")
            .await,
        Vec::<String>::new()
    );
    assert_eq!(
        s.user_names("emails[not (type eq \"work\")]").await,
        n(&["alice@example.jp", "carol_x@example.jp"])
    );
    assert_eq!(
        s.user_names("emails[primary eq true]").await,
        n(&["alice@example.jp"])
    );
    // Extension attributes by full URN path.
    assert_eq!(
        s.user_names(
            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:employeeNumber eq \"300\""
        )
        .await,
        n(&["carol_x@example.jp"])
    );
    assert_eq!(
        s.user_names(
            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department eq \"r&d\""
        )
        .await,
        n(&["alice@example.jp"])
    );
    assert_eq!(s.user_names("urn:oidfj:params:scim:schemas:extention:enterprisejp:2.0:User:organizationName eq \"dept\"").await, n(&["dave@other.example"]));
    assert_eq!(
        s.user_names(&format!("{IIJ}:state eq \"disabled\"")).await,
        n(&["bob@example.jp"])
    );
    // Dates, normalised (an offset is converted to UTC before comparing).
    assert_eq!(
        s.user_names("meta.created gt \"2000-01-01T09:00:00+09:00\"")
            .await
            .len(),
        4
    );
    assert!(
        s.user_names("meta.lastModified lt \"2000-01-01T00:00:00Z\"")
            .await
            .is_empty()
    );
    assert_eq!(s.user_names("meta.lastModified ge \"2000-01-01T00:00:00.000Z\" and meta.created le \"2999-01-01T00:00:00Z\"").await.len(), 4);
    s.filter("/Users", "meta.created gt \"yesterday\"")
        .await
        .assert_error(400, Some("invalidFilter"), None);
    // id, and unknown attributes (never match, like the evaluator in the scim crate).
    let alice = s
        .filter("/Users", "userName eq \"alice@example.jp\"")
        .await
        .body["Resources"][0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        s.user_names(&format!("id eq \"{alice}\"")).await,
        n(&["alice@example.jp"])
    );
    assert!(s.user_names("noSuchAttribute eq \"x\"").await.is_empty());
    // Bad filters.
    s.filter("/Users", "userName eq")
        .await
        .assert_error(400, Some("invalidFilter"), None);
    s.filter("/Users", "active gt true")
        .await
        .assert_error(400, Some("invalidFilter"), None);
}

#[tokio::test]
async fn group_filters() {
    let s = Server::start();
    seed(&s).await;
    let alice = s
        .filter("/Users", "userName eq \"alice@example.jp\"")
        .await
        .body["Resources"][0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let g1 = s.post("/Groups", json!({"displayName": "Engineering", "externalId": "G-1", "members": [{"value": alice}]})).await;
    assert_eq!(g1.status, 201, "{}", g1.body);
    s.post("/Groups", json!({"displayName": "Empty"})).await;
    let names = |r: &common::Resp| {
        r.body["Resources"]
            .as_array()
            .unwrap()
            .iter()
            .map(|g| g["displayName"].as_str().unwrap().to_string())
            .collect::<Vec<_>>()
    };
    assert_eq!(
        names(&s.filter("/Groups", "displayName eq \"engineering\"").await),
        ["Engineering"]
    );
    assert_eq!(
        names(
            &s.filter("/Groups", &format!("members.value eq \"{alice}\""))
                .await
        ),
        ["Engineering"]
    );
    assert_eq!(
        names(
            &s.filter("/Groups", &format!("members[value eq \"{alice}\"]"))
                .await
        ),
        ["Engineering"]
    );
    assert_eq!(
        names(&s.filter("/Groups", "not (members pr)").await),
        ["Empty"]
    );
    assert_eq!(
        names(&s.filter("/Groups", "externalId eq \"G-1\"").await),
        ["Engineering"]
    );
    // A user's computed groups are filterable too.
    assert_eq!(
        s.user_names(&format!("groups.value eq \"{}\"", g1.id()))
            .await,
        ["alice@example.jp"]
    );
    assert_eq!(
        s.user_names("groups.display eq \"engineering\"").await,
        ["alice@example.jp"]
    );
}

#[tokio::test]
async fn sort_pagination_projection() {
    let s = Server::start();
    for i in 0..25 {
        s.create_user(json!({"userName": format!("u{i:02}@example.jp"), "externalId": format!("x{i}"), "displayName": format!("D{}", 24 - i)})).await;
    }
    let page = s
        .get("/Users?sortBy=userName&sortOrder=descending&startIndex=3&count=5")
        .await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert_eq!(page.body["totalResults"], 25);
    assert_eq!(page.body["startIndex"], 3);
    assert_eq!(page.body["itemsPerPage"], 5);
    let names: Vec<&str> = page.body["Resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["userName"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "u22@example.jp",
            "u21@example.jp",
            "u20@example.jp",
            "u19@example.jp",
            "u18@example.jp"
        ]
    );
    let by_display = s.get("/Users?sortBy=displayName&count=2").await;
    assert_eq!(by_display.body["Resources"][0]["displayName"], "D0");
    let last = s.get("/Users?startIndex=24&count=10").await;
    assert_eq!(last.body["itemsPerPage"], 2);
    let zero = s.get("/Users?count=0").await;
    assert_eq!(zero.body["totalResults"], 25);
    assert_eq!(zero.body["Resources"], json!([]));
    s.get("/Users?sortOrder=sideways")
        .await
        .assert_error(400, Some("invalidValue"), None);
    s.get("/Users?startIndex=abc")
        .await
        .assert_error(400, Some("invalidValue"), None);

    // attributes / excludedAttributes: id and schemas are always returned.
    let only = s.get("/Users?attributes=userName&count=1").await;
    let u = &only.body["Resources"][0];
    assert!(u["userName"].is_string() && u["id"].is_string());
    assert!(u.get("displayName").is_none() && u.get("externalId").is_none());
    let ex = s.get("/Users?excludedAttributes=displayName&count=1").await;
    assert!(ex.body["Resources"][0].get("displayName").is_none());
    assert!(ex.body["Resources"][0]["userName"].is_string());

    // POST /.search on a resource type and at the root.
    let srch = s.post("/Users/.search", json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:SearchRequest"],
        "filter": "userName sw \"u1\"", "attributes": ["userName"], "sortBy": "userName", "startIndex": 1, "count": 3})).await;
    assert_eq!(srch.status, 200, "{}", srch.body);
    assert_eq!(srch.body["totalResults"], 10);
    assert_eq!(srch.body["Resources"][0]["userName"], "u10@example.jp");
    s.post("/Groups", json!({"displayName": "G"})).await;
    let root = s.post("/.search", json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:SearchRequest"], "startIndex": 25, "count": 5})).await;
    assert_eq!(root.body["totalResults"], 26, "{}", root.body);
    assert_eq!(root.body["Resources"].as_array().unwrap().len(), 2);
    assert_eq!(root.body["Resources"][1]["displayName"], "G");
}
