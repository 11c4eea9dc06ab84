//! Groups and memberships, the RFC 7644 §3.5.2 PATCH cases, and `/Bulk`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{Server, user};
use serde_json::{Value, json};

fn patch(ops: Value) -> Value {
    json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"], "Operations": ops})
}

fn member_ids(g: &Value) -> Vec<String> {
    let mut v: Vec<String> = g["members"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|m| m["value"].as_str().unwrap().to_string())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

#[tokio::test]
async fn groups_and_members() {
    let s = Server::start();
    let a = s.create_user(user("a@example.jp", "a")).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let b = s.create_user(user("b@example.jp", "b")).await["id"]
        .as_str()
        .unwrap()
        .to_string();

    s.post("/Groups", json!({"displayName": ""}))
        .await
        .assert_error(400, Some("invalidValue"), None);
    s.post(
        "/Groups",
        json!({"displayName": "X", "members": [{"value": "nope"}]}),
    )
    .await
    .assert_error(400, Some("invalidValue"), None);
    let g = s.post("/Groups", json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"], "displayName": "Team", "members": [{"value": a, "type": "User"}]})).await;
    assert_eq!(g.status, 201, "{}", g.body);
    let gid = g.id();
    assert_eq!(g.body["members"][0]["type"], "User");
    assert_eq!(
        g.body["members"][0]["$ref"],
        json!(format!("{}/Users/{a}", s.base))
    );
    s.post("/Groups", json!({"displayName": "team"}))
        .await
        .assert_error(
            409,
            Some("uniqueness"),
            Some("displayName has already been taken"),
        );

    // The user's read-only groups attribute is computed from the membership table.
    let ua = s.get(&format!("/Users/{a}")).await;
    assert_eq!(ua.body["groups"][0]["value"], gid);
    assert_eq!(ua.body["groups"][0]["display"], "Team");

    // Nested group membership.
    let parent = s
        .post(
            "/Groups",
            json!({"displayName": "Parent", "members": [{"value": gid}]}),
        )
        .await;
    assert_eq!(parent.body["members"][0]["type"], "Group");

    // PUT replaces the member set.
    let put = s
        .put(
            &format!("/Groups/{gid}"),
            json!({"displayName": "Team", "members": [{"value": b}]}),
        )
        .await;
    assert_eq!(put.status, 200, "{}", put.body);
    assert_eq!(member_ids(&put.body), vec![b.clone()]);
    assert!(
        s.get(&format!("/Users/{a}"))
            .await
            .body
            .get("groups")
            .is_none()
    );

    // excludedAttributes=members skips members.
    let ex = s
        .get(&format!("/Groups/{gid}?excludedAttributes=members"))
        .await;
    assert!(ex.body.get("members").is_none());
    assert_eq!(ex.body["displayName"], "Team");

    // Deleting a group removes it from its parent; 204 then 404.
    assert_eq!(s.delete(&format!("/Groups/{gid}")).await.status, 204);
    s.get(&format!("/Groups/{gid}"))
        .await
        .assert_error(404, None, None);
    assert!(
        s.get(&format!("/Groups/{}", parent.id()))
            .await
            .body
            .get("members")
            .is_none()
    );
}

#[tokio::test]
async fn rfc7644_patch_cases() {
    let s = Server::start();
    let mut ids = Vec::new();
    for i in 0..3 {
        ids.push(
            s.create_user(user(&format!("p{i}@example.jp"), &format!("p{i}")))
                .await["id"]
                .as_str()
                .unwrap()
                .to_string(),
        );
    }
    let gid = s
        .post("/Groups", json!({"displayName": "Patchers"}))
        .await
        .id();
    let gp = format!("/Groups/{gid}");

    // Add members (§3.5.2.1).
    let r = s.patch(&gp, patch(json!([{"op": "add", "path": "members", "value": [{"value": ids[0]}, {"value": ids[1]}]}]))).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(member_ids(&r.body).len(), 2);
    // Unknown member → 400.
    s.patch(
        &gp,
        patch(json!([{"op": "add", "path": "members", "value": [{"value": "ghost"}]}])),
    )
    .await
    .assert_error(400, Some("invalidValue"), None);
    // Remove one member by value path (§3.5.2.2).
    let r = s
        .patch(
            &gp,
            patch(json!([{"op": "remove", "path": format!("members[value eq \"{}\"]", ids[0])}])),
        )
        .await;
    assert_eq!(member_ids(&r.body), vec![ids[1].clone()]);
    // Mixed operations go through the general engine: add + rename.
    let r = s.patch(&gp, patch(json!([{"op": "add", "path": "members", "value": [{"value": ids[2]}]}, {"op": "replace", "path": "displayName", "value": "Patchers 2"}]))).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["displayName"], "Patchers 2");
    assert_eq!(member_ids(&r.body).len(), 2);
    // Remove all members (§3.5.2.2).
    let r = s
        .patch(&gp, patch(json!([{"op": "remove", "path": "members"}])))
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.body.get("members").is_none());

    // Users: replace emails[type eq "work"].value (§3.5.2.3) and replace without a path.
    let mut body = user("mail@example.jp", "m1");
    body["emails"] = json!([{"value": "old@example.jp", "type": "work"}, {"value": "home@example.jp", "type": "home"}]);
    let uid = s.create_user(body).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let up = format!("/Users/{uid}");
    let r = s.patch(&up, patch(json!([{"op": "replace", "path": "emails[type eq \"work\"].value", "value": "new@example.jp"}]))).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["emails"][0]["value"], "new@example.jp");
    assert_eq!(r.body["emails"][1]["value"], "home@example.jp");
    let r = s
        .patch(
            &up,
            patch(
                json!([{"op": "replace", "value": {"displayName": "Mail User", "nickName": "mu"}}]),
            ),
        )
        .await;
    assert_eq!(r.body["displayName"], "Mail User");
    assert_eq!(r.body["nickName"], "mu");
    // Rules apply to the PATCH result too.
    s.patch(
        &up,
        patch(json!([{"op": "add", "path": "emails", "value": [{"value": "broken"}]}])),
    )
    .await
    .assert_error(400, Some("invalidValue"), None);
    // A PATCH with a stale If-Match is 412.
    let stale = s
        .send(
            Some(&s.token),
            reqwest::Method::PATCH,
            &up,
            Some(patch(
                json!([{"op": "replace", "path": "title", "value": "t"}]),
            )),
            &[("If-Match", "W/\"1\"")],
        )
        .await;
    stale.assert_error(412, None, None);
}

#[tokio::test]
async fn bulk_with_bulk_ids() {
    let s = Server::start();
    // The group references a user created later in the same request.
    let req = json!({
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:BulkRequest"],
        "Operations": [
            {"method": "POST", "path": "/Groups", "bulkId": "g1", "data": {"displayName": "Bulk Group", "members": [{"type": "User", "value": "bulkId:u1"}]}},
            {"method": "POST", "path": "/Users", "bulkId": "u1", "data": user("bulk1@example.jp", "bk1")},
            {"method": "POST", "path": "/Users", "bulkId": "u2", "data": user("bulk1@example.jp", "bk2")},
            {"method": "PATCH", "path": "/Groups/bulkId:g1", "data": patch(json!([{"op": "replace", "path": "displayName", "value": "Bulk Group 2"}]))},
        ]
    });
    let r = s.post("/Bulk", req).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let ops = r.body["Operations"].as_array().unwrap();
    assert_eq!(
        r.body["schemas"][0],
        "urn:ietf:params:scim:api:messages:2.0:BulkResponse"
    );
    assert_eq!(ops[0]["status"], "201", "{}", r.body);
    assert_eq!(ops[1]["status"], "201");
    assert_eq!(ops[2]["status"], "409");
    assert_eq!(
        ops[2]["response"]["detail"],
        "userName has already been taken"
    );
    assert_eq!(ops[3]["status"], "200", "{}", r.body);
    let uloc = ops[1]["location"].as_str().unwrap();
    let uid = uloc.rsplit('/').next().unwrap();
    let gloc = ops[0]["location"].as_str().unwrap();
    let g = s.get(gloc).await;
    assert_eq!(g.body["displayName"], "Bulk Group 2");
    assert_eq!(g.body["members"][0]["value"], uid);

    // failOnErrors stops after that many errors.
    let req = json!({
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:BulkRequest"],
        "failOnErrors": 1,
        "Operations": [
            {"method": "POST", "path": "/Users", "bulkId": "x1", "data": user("bulk1@example.jp", "dup")},
            {"method": "POST", "path": "/Users", "bulkId": "x2", "data": user("never@example.jp", "never")},
        ]
    });
    let r = s.post("/Bulk", req).await;
    let ops = r.body["Operations"].as_array().unwrap();
    assert_eq!(ops.len(), 1, "{}", r.body);
    assert_eq!(ops[0]["status"], "409");
    assert!(
        s.user_names("userName eq \"never@example.jp\"")
            .await
            .is_empty()
    );

    // Unresolvable reference; DELETE in bulk.
    let req = json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:BulkRequest"], "Operations": [
        {"method": "POST", "path": "/Groups", "bulkId": "g9", "data": {"displayName": "G9", "members": [{"value": "bulkId:missing"}]}},
        {"method": "DELETE", "path": format!("/Users/{uid}")},
    ]});
    let r = s.post("/Bulk", req).await;
    let ops = r.body["Operations"].as_array().unwrap();
    assert_eq!(ops[0]["status"], "409");
    assert_eq!(ops[1]["status"], "204");

    // More than maxOperations → 413.
    let many: Vec<Value> = (0..1001)
        .map(|i| json!({"method": "DELETE", "path": format!("/Users/{i}")}))
        .collect();
    s.post("/Bulk", json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:BulkRequest"], "Operations": many})).await.assert_error(413, None, None);
}

#[tokio::test]
async fn discovery_endpoints() {
    let s = Server::start();
    let spc = s.get("/ServiceProviderConfig").await;
    assert_eq!(spc.body["bulk"]["maxOperations"], 1000);
    assert_eq!(spc.body["etag"]["supported"], true);
    let schemas = s.get("/Schemas").await;
    assert!(schemas.body["totalResults"].as_u64().unwrap() >= 6);
    let one = s
        .get("/Schemas/urn:ietf:params:scim:schemas:core:2.0:User")
        .await;
    assert_eq!(one.body["id"], "urn:ietf:params:scim:schemas:core:2.0:User");
    let rts = s.get("/ResourceTypes").await;
    assert_eq!(rts.body["totalResults"], 2);
    let rt = s.get("/ResourceTypes/User").await;
    assert_eq!(rt.body["endpoint"], "/Users");
    s.get("/ResourceTypes/Nope")
        .await
        .assert_error(404, None, None);
}

/// The same users on two fresh servers: an active one (`taken@`, `t1`) and a pending one
/// (`pend@`, `p1`), under the registered domain example.jp.
async fn bulk_runs_server() -> Server {
    let s = Server::start();
    assert!(s.cli(&["domain", "add", "example.jp"]).status.success());
    s.create_user(user("taken@example.jp", "t1")).await;
    let pend = s.create_user(user("pend@example.jp", "p1")).await;
    let id = pend["id"].as_str().unwrap();
    assert_eq!(s.delete(&format!("/Users/{id}")).await.status, 204);
    s
}

fn create_op(bulk_id: &str, data: Value) -> Value {
    json!({"method": "POST", "path": "/Users", "bulkId": bulk_id, "data": data})
}

fn bulk(ops: Vec<Value>, fail_on_errors: Option<u64>) -> Value {
    let mut b = json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:BulkRequest"],
        "Operations": ops});
    if let Some(n) = fail_on_errors {
        b["failOnErrors"] = json!(n);
    }
    b
}

/// An answer without what differs from server to server (ids, times, versions).
fn comparable(op: &Value) -> Value {
    json!({"status": op["status"], "bulkId": op["bulkId"], "detail": op["response"]["detail"],
        "scimType": op["response"]["scimType"]})
}

/// Every listed user (pending ones are not) as (userName, externalId, state).
async fn every_user(s: &Server) -> Vec<(String, String, String)> {
    let r = s.get("/Users?count=1000").await;
    let mut out: Vec<(String, String, String)> = r.body["Resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| {
            (
                u["userName"].as_str().unwrap().to_string(),
                u["externalId"].as_str().unwrap_or("").to_string(),
                u["urn:iij:params:scim:schemas:extension:enterprisejp:2.0:User"]["state"]
                    .as_str()
                    .unwrap_or("")
                    .to_string(),
            )
        })
        .collect();
    out.sort();
    out
}

/// A run of user creates in one Bulk request takes the fast path (checked together, inserted
/// many rows at a time); each answer and the stored users must be what the same operations
/// give one request each (the one-by-one path).
#[tokio::test]
async fn bulk_creates_in_one_run_answer_as_one_by_one() {
    let mut with_password = user("d@example.jp", "dx");
    with_password["password"] = json!("Correct-Horse-9-battery");
    let ops = vec![
        create_op("a", user("a@example.jp", "ax")),
        create_op("b", user("b@example.jp", "bx")),
        create_op("taken", user("TAKEN@example.jp", "other")),
        create_op("restore", user("pend@example.jp", "p1")),
        create_op("c", user("c@example.jp", "cx")),
        create_op("b-again", user("B@Example.jp", "b2")),
        create_op("invalid", json!({"externalId": "nameless"})),
        create_op("a-ext", user("a2@example.jp", "ax")),
        create_op("d", with_password),
        create_op("d-ext", user("e@example.jp", "dx")),
        create_op("domain", user("f@elsewhere.jp", "fx")),
        create_op("g", user("g@example.jp", "gx")),
        create_op("t1-ext", user("h@example.jp", "t1")),
        create_op("i", user("i@example.jp", "ix")),
    ];
    let (together, apart) = (bulk_runs_server().await, bulk_runs_server().await);
    let r = together.post("/Bulk", bulk(ops.clone(), None)).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let answers: Vec<Value> = r.body["Operations"]
        .as_array()
        .unwrap()
        .iter()
        .map(comparable)
        .collect();
    let mut one_by_one = Vec::new();
    for op in &ops {
        let r = apart.post("/Bulk", bulk(vec![op.clone()], None)).await;
        assert_eq!(r.status, 200, "{}", r.body);
        one_by_one.push(comparable(&r.body["Operations"][0]));
    }
    assert_eq!(answers, one_by_one);
    let statuses: Vec<&str> = answers
        .iter()
        .map(|a| a["status"].as_str().unwrap())
        .collect();
    assert_eq!(
        statuses,
        [
            "201", "201", "409", "201", "201", "409", "400", "409", "201", "409", "404", "201",
            "409", "201"
        ]
    );
    assert_eq!(every_user(&together).await, every_user(&apart).await);
    // A created user reads back as its answer says.
    let loc = r.body["Operations"][0]["location"].as_str().unwrap();
    let a = together.get(loc).await;
    assert_eq!(a.body["userName"], "a@example.jp");
    assert_eq!(
        a.body["meta"]["version"],
        r.body["Operations"][0]["version"]
    );
}

/// failOnErrors counts the errors of a run in request order: nothing after the limit is
/// written, everything before it is.
#[tokio::test]
async fn fail_on_errors_stops_a_run_of_creates_in_order() {
    let s = bulk_runs_server().await;
    let ops = vec![
        create_op("1", user("one@example.jp", "1")),
        create_op("2", user("two@example.jp", "2")),
        create_op("3", user("taken@example.jp", "3")),
        create_op("4", user("four@example.jp", "4")),
        create_op("5", json!({"externalId": "5"})),
        create_op("6", user("six@example.jp", "6")),
        create_op("7", user("seven@example.jp", "7")),
    ];
    let r = s.post("/Bulk", bulk(ops, Some(2))).await;
    let statuses: Vec<&str> = r.body["Operations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, ["201", "201", "409", "201", "400"], "{}", r.body);
    let names = s.user_names("userName co \"o\"").await;
    assert!(names.contains(&"four@example.jp".to_string()), "{names:?}");
    assert!(
        s.user_names("userName eq \"six@example.jp\"")
            .await
            .is_empty()
    );
}
