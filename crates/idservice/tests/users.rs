//! Users over HTTP: CRUD, ETags, the behaviour §7.2 rules with their exact answers, and the
//! pending-deletion lifecycle (hide, restore, purge, reuse).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{IIJ, Server, user};
use reqwest::Method;
use serde_json::json;

#[tokio::test]
async fn user_crud_and_etags() {
    let s = Server::start();
    let r = s
        .post(
            "/Users",
            json!({
                "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
                "userName": "taro@example.jp",
                "externalId": "guid-1",
                "name": {"familyName": "Yamada", "givenName": "Taro"},
                "emails": [{"value": "taro@example.jp", "type": "work", "primary": true}],
                "id": "client-chosen", "groups": [{"value": "x"}]
            }),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(r.header("content-type").unwrap(), "application/scim+json");
    let id = r.id();
    assert_ne!(id, "client-chosen", "id is readOnly");
    assert!(r.body.get("groups").is_none());
    assert_eq!(r.header("etag").unwrap(), "W/\"1\"");
    assert_eq!(
        r.header("location").unwrap(),
        format!("{}/Users/{id}", s.base)
    );
    assert_eq!(r.body["meta"]["resourceType"], "User");
    assert_eq!(r.body[IIJ]["state"], "active");

    let g = s.get(&format!("/Users/{id}")).await;
    assert_eq!(g.status, 200);
    assert_eq!(g.body["name"]["givenName"], "Taro");

    // If-None-Match with the current tag → 304.
    let nm = s
        .send(
            Some(&s.token),
            Method::GET,
            &format!("/Users/{id}"),
            None,
            &[("If-None-Match", "W/\"1\"")],
        )
        .await;
    assert_eq!(nm.status, 304);

    // PUT replaces; attributes left out disappear; a stale If-Match is 412.
    let mut body = user("taro@example.jp", "guid-1");
    body["displayName"] = json!("Taro Y");
    let stale = s
        .send(
            Some(&s.token),
            Method::PUT,
            &format!("/Users/{id}"),
            Some(body.clone()),
            &[("If-Match", "W/\"7\"")],
        )
        .await;
    stale.assert_error(412, None, None);
    let put = s
        .send(
            Some(&s.token),
            Method::PUT,
            &format!("/Users/{id}"),
            Some(body),
            &[("If-Match", "W/\"1\"")],
        )
        .await;
    assert_eq!(put.status, 200, "{}", put.body);
    assert_eq!(put.body["displayName"], "Taro Y");
    assert!(put.body.get("name").is_none());
    assert_eq!(put.header("etag").unwrap(), "W/\"2\"");

    // PATCH returns 200 with the resource; disabling changes the state.
    let p = s
        .patch(
            &format!("/Users/{id}"),
            json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
                   "Operations": [{"op": "replace", "path": "active", "value": false}]}),
        )
        .await;
    assert_eq!(p.status, 200, "{}", p.body);
    assert_eq!(p.body["active"], false);
    assert_eq!(p.body[IIJ]["state"], "disabled");

    let stale_del = s
        .send(
            Some(&s.token),
            Method::DELETE,
            &format!("/Users/{id}"),
            None,
            &[("If-Match", "W/\"1\"")],
        )
        .await;
    stale_del.assert_error(412, None, None);
    let d = s.delete(&format!("/Users/{id}")).await;
    assert_eq!(d.status, 204);
    s.get(&format!("/Users/{id}"))
        .await
        .assert_error(404, None, None);
    s.get("/Users/does-not-exist")
        .await
        .assert_error(404, None, None);
}

#[tokio::test]
async fn protocol_errors_are_scim_errors() {
    let s = Server::start();
    let bad = s
        .client
        .post(format!("{}/Users", s.base))
        .bearer_auth(&s.token)
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
    let body: serde_json::Value = bad.json().await.unwrap();
    assert_eq!(body["scimType"], "invalidSyntax");
    s.filter("/Users", "userName eq")
        .await
        .assert_error(400, Some("invalidFilter"), None);
    s.get("/NoSuchThing").await.assert_error(404, None, None);
    s.send(
        Some(&s.token),
        Method::DELETE,
        "/ServiceProviderConfig",
        None,
        &[],
    )
    .await
    .assert_error(405, None, None);
    // Plain application/json is accepted too.
    let ok = s
        .client
        .post(format!("{}/Users", s.base))
        .bearer_auth(&s.token)
        .header("content-type", "application/json")
        .body(user("json@example.jp", "j1").to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 201);
}

#[tokio::test]
async fn body_limit_is_413() {
    let s = Server::start_with(&["--max-body-bytes", "2000"]);
    let mut body = user("big@example.jp", "b1");
    body["displayName"] = json!("x".repeat(5000));
    s.post("/Users", body).await.assert_error(413, None, None);
    let spc = s.get("/ServiceProviderConfig").await;
    assert_eq!(spc.body["bulk"]["maxPayloadSize"], 2000);
}

#[tokio::test]
async fn spec_7_2_rules() {
    let s = Server::start();
    s.create_user(user("hanako@example.jp", "ext-1")).await;

    // externalId taken.
    s.post("/Users", user("other@example.jp", "ext-1"))
        .await
        .assert_error(
            409,
            Some("uniqueness"),
            Some("externalId has already been taken"),
        );
    // userName taken, case-insensitively.
    s.post("/Users", user("HANAKO@example.jp", "ext-2"))
        .await
        .assert_error(
            409,
            Some("uniqueness"),
            Some("userName has already been taken"),
        );

    // Issuer rule.
    let mut b = user("sub@example.jp", "ext-3");
    b[IIJ] = json!({"externalUserName": "sub@idp"});
    s.post("/Users", b.clone())
        .await
        .assert_error(400, Some("invalidValue"), None);
    b[IIJ] = json!({"idTokenClaims": {"subject": "abc"}});
    s.post("/Users", b.clone())
        .await
        .assert_error(400, Some("invalidValue"), None);
    b[IIJ] = json!({"externalUserName": "sub@idp", "idTokenClaims": {"issuer": "https://idp.example", "subject": "abc"}});
    assert_eq!(s.post("/Users", b).await.status, 201);

    // Email and phone formats.
    let mut e = user("mail@example.jp", "ext-4");
    e["emails"] = json!([{"value": "not-an-email", "type": "work"}]);
    s.post("/Users", e)
        .await
        .assert_error(400, Some("invalidValue"), None);
    let mut p = user("phone@example.jp", "ext-5");
    p["phoneNumbers"] = json!([{"value": "03-1234-5678", "type": "work"}]);
    s.post("/Users", p.clone())
        .await
        .assert_error(400, Some("invalidValue"), None);
    p["phoneNumbers"] = json!([{"value": "tel:+81-3-1234-5678", "type": "work"}, {"value": "+81312345678", "type": "mobile"}]);
    assert_eq!(s.post("/Users", p).await.status, 201);

    // Limits: 5 emails (one primary), 10 phones, 10 ims.
    let mut l = user("limits@example.jp", "ext-6");
    l["emails"] = json!(
        (0..6)
            .map(|i| json!({"value": format!("a{i}@example.jp")}))
            .collect::<Vec<_>>()
    );
    s.post("/Users", l.clone())
        .await
        .assert_error(400, Some("invalidValue"), None);
    l["emails"] = json!([{"value": "a@example.jp", "primary": true}, {"value": "b@example.jp", "primary": true}]);
    s.post("/Users", l.clone())
        .await
        .assert_error(400, Some("invalidValue"), None);
    l["emails"] = json!(
        (0..5)
            .map(|i| json!({"value": format!("a{i}@example.jp"), "primary": i == 0}))
            .collect::<Vec<_>>()
    );
    l["phoneNumbers"] = json!(
        (0..11)
            .map(|i| json!({"value": format!("+8130000000{i:02}")}))
            .collect::<Vec<_>>()
    );
    s.post("/Users", l.clone())
        .await
        .assert_error(400, Some("invalidValue"), None);
    l["phoneNumbers"] = json!([]);
    l["ims"] = json!(
        (0..11)
            .map(|i| json!({"value": format!("im{i}"), "type": "skype"}))
            .collect::<Vec<_>>()
    );
    s.post("/Users", l.clone())
        .await
        .assert_error(400, Some("invalidValue"), None);
    l["ims"] = json!(
        (0..10)
            .map(|i| json!({"value": format!("im{i}"), "type": "skype"}))
            .collect::<Vec<_>>()
    );
    assert_eq!(s.post("/Users", l).await.status, 201);

    // Domains: with none registered anything goes; once one is, userNames must be in it.
    let out = s.cli(&["domain", "add", "example.jp"]);
    assert!(out.status.success());
    s.post("/Users", user("x@unknown.example", "ext-7"))
        .await
        .assert_error(404, None, Some("organization is not found."));
    s.post("/Users", user("nodomain", "ext-8"))
        .await
        .assert_error(404, None, Some("organization is not found."));
    assert_eq!(
        s.post("/Users", user("y@EXAMPLE.jp", "ext-9")).await.status,
        201
    );
    let list = s.cli(&["domain", "list"]);
    assert_eq!(String::from_utf8_lossy(&list.stdout).trim(), "example.jp");
}

#[tokio::test]
async fn pending_deletion_lifecycle() {
    let s = Server::start_with(&["--retention-days", "7"]);
    // Issue 16: /ServiceProviderConfig has the RFC 7643 section 5 members only (strict
    // clients refuse anything else), plus RFC 9865's `pagination`, which extends section 5;
    // the pending-deletion state and its retention are in the IIJ User extension schema.
    let spc = s.get("/ServiceProviderConfig").await;
    let rfc_7643_5 = [
        "schemas",
        "meta",
        "documentationUri",
        "patch",
        "bulk",
        "filter",
        "changePassword",
        "sort",
        "etag",
        "authenticationSchemes",
        "pagination",
    ];
    for key in spc.body.as_object().unwrap().keys() {
        assert!(rfc_7643_5.contains(&key.as_str()), "{key} in {}", spc.body);
    }
    assert_eq!(
        spc.body["schemas"],
        json!(["urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig"])
    );
    let iij = s
        .get("/Schemas/urn:iij:params:scim:schemas:extension:enterprisejp:2.0:User")
        .await;
    let state = iij.body["attributes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["name"] == "state")
        .unwrap()
        .clone();
    assert!(
        state["canonicalValues"]
            .as_array()
            .unwrap()
            .contains(&json!("pendingDeletion")),
        "{state}"
    );
    assert!(
        state["description"]
            .as_str()
            .unwrap()
            .contains("purged after 7 days"),
        "{state}"
    );

    let u = s.create_user(user("jiro@example.jp", "guid-j")).await;
    let id = u["id"].as_str().unwrap().to_string();
    let g = s
        .post(
            "/Groups",
            json!({"displayName": "Sales", "members": [{"value": id}]}),
        )
        .await;
    assert_eq!(g.status, 201, "{}", g.body);
    let gid = g.id();

    assert_eq!(s.delete(&format!("/Users/{id}")).await.status, 204);
    // Hidden: GET by id, lists, group members.
    s.get(&format!("/Users/{id}"))
        .await
        .assert_error(404, None, None);
    assert!(
        s.user_names("userName eq \"jiro@example.jp\"")
            .await
            .is_empty()
    );
    assert!(
        s.get(&format!("/Groups/{gid}"))
            .await
            .body
            .get("members")
            .is_none()
    );
    // Visible when the filter names the state.
    let pending = s
        .filter("/Users", &format!("{IIJ}:state eq \"pendingDeletion\""))
        .await;
    assert_eq!(pending.body["totalResults"], 1, "{}", pending.body);
    assert_eq!(
        pending.body["Resources"][0][IIJ]["state"],
        "pendingDeletion"
    );
    assert!(pending.body["Resources"][0][IIJ]["pendingDeletionSince"].is_string());
    // Collisions with a pending user.
    s.post("/Users", user("jiro@example.jp", "guid-other"))
        .await
        .assert_error(
            409,
            Some("uniqueness"),
            Some("userName has already been taken"),
        );
    s.post("/Users", user("jiro2@example.jp", "guid-j"))
        .await
        .assert_error(
            409,
            Some("uniqueness"),
            Some("externalId has already been taken"),
        );
    let listed = s.cli(&["users", "list-pending"]);
    assert!(String::from_utf8_lossy(&listed.stdout).contains("jiro@example.jp"));

    // Restore: same userName and externalId → same id, attributes from the request.
    let mut again = user("jiro@example.jp", "guid-j");
    again["displayName"] = json!("Jiro Restored");
    let r = s.post("/Users", again).await;
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(r.id(), id);
    assert_eq!(r.body["displayName"], "Jiro Restored");
    assert_eq!(r.body[IIJ]["state"], "active");
    assert_eq!(r.body["groups"][0]["value"], gid);
    assert_eq!(
        s.get(&format!("/Groups/{gid}")).await.body["members"][0]["value"],
        id
    );

    // Delete again; purge that is not yet due purges nothing; purge --user purges it.
    assert_eq!(s.delete(&format!("/Users/{id}")).await.status, 204);
    let none = s.cli(&["users", "purge-pending"]);
    assert!(none.status.success());
    assert!(String::from_utf8_lossy(&none.stdout).is_empty());
    let purge = s.cli(&["users", "purge-pending", "--user", "jiro@example.jp"]);
    assert!(
        purge.status.success(),
        "{}",
        String::from_utf8_lossy(&purge.stderr)
    );
    assert!(String::from_utf8_lossy(&purge.stdout).contains("purged jiro@example.jp"));
    let pending = s
        .filter("/Users", &format!("{IIJ}:state eq \"pendingDeletion\""))
        .await;
    assert_eq!(pending.body["totalResults"], 0);
    // userName (and externalId) reusable; the membership went with the purge.
    let fresh = s.create_user(user("jiro@example.jp", "guid-new")).await;
    assert_ne!(fresh["id"], json!(id));
    assert!(fresh.get("groups").is_none());

    // --all purges every pending user.
    let fid = fresh["id"].as_str().unwrap();
    assert_eq!(s.delete(&format!("/Users/{fid}")).await.status, 204);
    let all = s.cli(&["users", "purge-pending", "--all"]);
    assert!(String::from_utf8_lossy(&all.stdout).contains("purged jiro@example.jp"));

    // The database's own record of each of those moves, oldest first: deleted, restored,
    // deleted and purged; the fresh user (another id) deleted and purged.
    let history = s.cli(&["users", "history", "--user", "JIRO@example.jp"]);
    assert!(history.status.success());
    let text = String::from_utf8_lossy(&history.stdout).to_string();
    let moves: Vec<(String, String, String)> = text
        .lines()
        .skip(1)
        .map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            assert_eq!(f[2], "jiro@example.jp", "{text}");
            (f[1].to_string(), f[4].to_string(), f[5].to_string())
        })
        .collect();
    let step = |id: &str, from: &str, to: &str| (id.to_string(), from.to_string(), to.to_string());
    assert_eq!(
        moves,
        [
            step(&id, "active", "pendingDeletion"),
            step(&id, "pendingDeletion", "active"),
            step(&id, "active", "pendingDeletion"),
            step(&id, "pendingDeletion", "purged"),
            step(fid, "active", "pendingDeletion"),
            step(fid, "pendingDeletion", "purged"),
        ],
        "{text}"
    );
    let everyone = s.cli(&["users", "history"]);
    assert_eq!(
        String::from_utf8_lossy(&everyone.stdout).lines().count(),
        text.lines().count(),
        "only jiro changed state"
    );
}

#[tokio::test]
async fn cursor_pages_walk_every_user_once_and_start_index_still_works() {
    let s = Server::start();
    for i in 0..25 {
        s.create_user(user(&format!("walk{i:02}@example.jp"), &format!("w{i}")))
            .await;
    }
    // Keyset paging: pages of 10 by `cursor`, `nextCursor` until the last page.
    let mut seen = std::collections::HashSet::new();
    let mut cursor = String::new();
    let mut pages = 0;
    loop {
        let r = s.get(&format!("/Users?count=10&cursor={cursor}")).await;
        assert_eq!(r.status, 200, "{}", r.body);
        assert_eq!(r.body["totalResults"], 25);
        pages += 1;
        for u in r.body["Resources"].as_array().unwrap() {
            assert!(
                seen.insert(u["id"].as_str().unwrap().to_string()),
                "twice: {u}"
            );
        }
        match r.body.get("nextCursor").and_then(|c| c.as_str()) {
            Some(c) => cursor = c.to_string(),
            None => break,
        }
        assert!(pages < 10, "no end");
    }
    assert_eq!((pages, seen.len()), (3, 25));
    // A filter applies to every cursor page.
    let r = s
        .get("/Users?count=2&cursor=&filter=userName%20sw%20%22walk1%22")
        .await;
    assert_eq!(r.body["totalResults"], 10, "{}", r.body);
    assert_eq!(r.body["Resources"].as_array().unwrap().len(), 2);
    assert!(r.body["nextCursor"].is_string());
    // sortBy does not combine with a cursor; startIndex paging is unchanged.
    s.get("/Users?cursor=&sortBy=userName")
        .await
        .assert_error(400, Some("invalidValue"), None);
    let r = s.get("/Users?startIndex=21&count=10&sortBy=userName").await;
    assert_eq!(r.body["startIndex"], 21);
    assert_eq!(r.body["Resources"].as_array().unwrap().len(), 5);
    assert!(r.body.get("nextCursor").is_none());
    assert_eq!(r.body["Resources"][0]["userName"], "walk20@example.jp");
    // A list page carries each user's groups (read for the whole page at once).
    let first = s
        .get("/Users?filter=userName%20sw%20%22walk0%22&sortBy=userName")
        .await;
    let ids: Vec<String> = first.body["Resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["id"].as_str().unwrap().to_string())
        .collect();
    for (name, members) in [("Team B", &ids[..2]), ("Team A", &ids[..1])] {
        let members: Vec<_> = members.iter().map(|id| json!({"value": id})).collect();
        let g = s
            .post(
                "/Groups",
                json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
                       "displayName": name, "members": members}),
            )
            .await;
        assert_eq!(g.status, 201, "{}", g.body);
    }
    let page = s
        .get("/Users?filter=userName%20sw%20%22walk0%22&sortBy=userName&count=3")
        .await;
    let groups = |i: usize| -> Vec<String> {
        page.body["Resources"][i]["groups"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|g| g["display"].as_str().unwrap().to_string())
                    .collect()
            })
            .unwrap_or_default()
    };
    assert_eq!(groups(0), ["Team A", "Team B"], "{}", page.body);
    assert_eq!(groups(1), ["Team B"]);
    assert!(groups(2).is_empty());
    // A cursor walk's totalResults is counted on its first page and repeated after: a user
    // created mid-walk shows in the next walk's total.
    let first = s.get("/Users?count=10&cursor=").await;
    assert_eq!(first.body["totalResults"], 25);
    s.create_user(user("late@example.jp", "late")).await;
    let next = first.body["nextCursor"].as_str().unwrap();
    let second = s.get(&format!("/Users?count=10&cursor={next}")).await;
    assert_eq!(second.body["totalResults"], 25, "{}", second.body);
    let again = s.get("/Users?count=10&cursor=").await;
    assert_eq!(again.body["totalResults"], 26);
}
