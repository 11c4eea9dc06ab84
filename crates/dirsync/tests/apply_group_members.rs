#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Issue 5: a group the plan creates is sent with its members (no PATCH per member chunk),
//! through `/Bulk` when the target offers it and one POST per group otherwise. A member whose
//! own create failed is left out without failing the group; a group that already existed
//! (adopted by externalId) gets its members by PATCH as before. Runs `apply` directly on a
//! hand-made plan against a real idservice.

use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;

use dirsync::apply::{self, ApplyContext, ApplyOutcome};
use dirsync::journal::Journal;
use dirsync::plan::{GroupRef, MemberRef, Operation, Plan};
use dirsync::state::{ObjectKind, StateStore};
use scim_client::{Auth, ClientOptions, ResourceKind, ScimClient};
use serde_json::{Value, json};
use testenv::IdService;

fn create_user(anchor: &str, phone: Option<&str>) -> Operation {
    let mut resource = json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
        "userName": format!("{anchor}@example.test"),
        "externalId": anchor,
    });
    if let Some(phone) = phone {
        resource["phoneNumbers"] = json!([{"value": phone, "type": "work"}]);
    }
    Operation::CreateUser {
        anchor: anchor.into(),
        user_name: format!("{anchor}@example.test"),
        dn: format!("uid={anchor},ou=people,dc=example,dc=test"),
        resource,
    }
}

fn create_group(anchor: &str) -> Operation {
    Operation::CreateGroup {
        anchor: anchor.into(),
        display_name: anchor.into(),
        dn: format!("cn={anchor},ou=groups,dc=example,dc=test"),
        resource: json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
            "displayName": anchor,
            "externalId": anchor,
        }),
    }
}

fn add_members(group: &str, users: &[&str]) -> Operation {
    Operation::AddMembers {
        group: GroupRef::New(group.into()),
        display_name: group.into(),
        members: users
            .iter()
            .map(|u| MemberRef {
                id: None,
                anchor: Some((*u).into()),
                user_name: format!("{u}@example.test"),
            })
            .collect(),
    }
}

struct Applied {
    outcome: ApplyOutcome,
    journal: Vec<Value>,
    /// displayName → member ids, as the target holds them.
    target_members: HashMap<String, BTreeSet<String>>,
    /// userName → id on the target.
    user_ids: HashMap<String, String>,
    state_groups: usize,
    state_users: usize,
}

/// One idservice; `adopted` already exists on it (a previous run created it and was killed
/// before recording it), without members. The plan: users `u1`, `u2` (rejected by the target:
/// its phone number is not RFC 3966), `u3`; groups `team` (members u1, u2 in one chunk, u3 in
/// another), `empty` (no members), `adopted` (u1, u3).
fn run(bulk_size: Option<usize>) -> Applied {
    let service = IdService::start().expect("start idservice");
    let dir = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let client = ScimClient::new(ClientOptions::new(
            service.url.clone(),
            Auth::Bearer {
                token: service.token.clone().into(),
                credential: "test token".into(),
            },
        ))
        .unwrap();
        client
            .create(
                ResourceKind::Groups,
                &json!({
                    "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
                    "displayName": "adopted",
                    "externalId": "adopted",
                }),
            )
            .await
            .unwrap();
        let plan = Plan {
            operations: vec![
                create_user("u1", None),
                create_user("u2", Some("not a phone number")),
                create_user("u3", None),
                create_group("team"),
                create_group("empty"),
                create_group("adopted"),
                add_members("team", &["u1", "u2"]),
                add_members("team", &["u3"]),
                add_members("adopted", &["u1", "u3"]),
            ],
            ..Plan::default()
        };
        let state = StateStore::open(dir.path()).await.unwrap();
        let journal = Mutex::new(Journal::open(dir.path()).unwrap());
        let anchors = HashMap::new();
        let progress = indicatif::ProgressBar::hidden();
        let ctx = ApplyContext {
            client: &client,
            state: &state,
            journal: &journal,
            run_id: "test",
            concurrency: 4,
            now: chrono::Utc::now(),
            anchors: &anchors,
            progress: &progress,
            bulk_size,
        };
        let outcome = apply::apply(&plan, &ctx).await;

        let journal = std::fs::read_to_string(dir.path().join("journal.jsonl")).unwrap();
        let journal = journal
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        let mut target_members = HashMap::new();
        for g in client.list(ResourceKind::Groups, None, None).await.unwrap() {
            let ids = g["members"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|m| m["value"].as_str().unwrap().to_string())
                .collect();
            target_members.insert(g["displayName"].as_str().unwrap().to_string(), ids);
        }
        let user_ids = client
            .list(ResourceKind::Users, None, None)
            .await
            .unwrap()
            .iter()
            .map(|u| {
                (
                    u["userName"].as_str().unwrap().to_string(),
                    u["id"].as_str().unwrap().to_string(),
                )
            })
            .collect();
        Applied {
            outcome,
            journal,
            target_members,
            user_ids,
            state_groups: state.objects(ObjectKind::Group).await.unwrap().len(),
            state_users: state.objects(ObjectKind::User).await.unwrap().len(),
        }
    })
}

fn check(a: &Applied) {
    let c = &a.outcome.counts;
    assert_eq!(a.outcome.stopped, None);
    // The same counts as when members went by PATCH: u2 is one failure, and is not counted
    // as a member of team.
    assert_eq!(
        (c.created, c.failed, c.groups_created, c.members_added),
        (2, 1, 3, 4),
        "{c:?} {:?}",
        a.outcome.failures
    );
    assert_eq!(a.outcome.failures.len(), 1);
    assert_eq!(a.outcome.failures[0].operation, "create_user");
    assert_eq!(a.outcome.failures[0].object, "u2@example.test");

    let id = |u: &str| a.user_ids[&format!("{u}@example.test")].clone();
    assert!(!a.user_ids.contains_key("u2@example.test"));
    let both: BTreeSet<String> = [id("u1"), id("u3")].into();
    assert_eq!(a.target_members["team"], both);
    assert_eq!(a.target_members["adopted"], both);
    assert!(a.target_members["empty"].is_empty());
    assert_eq!((a.state_users, a.state_groups), (2, 3));

    // Journal: team's members went with its create (no request of their own); adopted's
    // went by PATCH ("ok").
    let lines = |op: &str, object: &str| -> Vec<&Value> {
        a.journal
            .iter()
            .filter(|l| l["operation"] == op && l["object"] == object)
            .collect()
    };
    let team_adds = lines("add_members", "team");
    assert_eq!(team_adds.len(), 2, "{:#?}", a.journal);
    for l in &team_adds {
        assert_eq!(l["outcome"], "ok (sent with the group create)");
    }
    assert_eq!(
        team_adds[0]["after"]["members"],
        json!(["u1@example.test", "u2@example.test"])
    );
    let adopted_adds = lines("add_members", "adopted");
    assert_eq!(adopted_adds.len(), 1);
    assert_eq!(adopted_adds[0]["outcome"], "ok");
    let team_create = lines("create_group", "team");
    assert_eq!(team_create.len(), 1);
    assert_eq!(
        team_create[0]["after"]["members"],
        json!([{"value": id("u1")}, {"value": id("u3")}])
    );
    assert_eq!(
        lines("create_group", "adopted")[0]["outcome"],
        "ok (already existed; adopted by externalId)"
    );

    // Created: the two users and the two groups created here (not the adopted one), each
    // as sent plus its id; a group with its members.
    let created: HashMap<(ObjectKind, &str), Value> = a
        .outcome
        .created
        .iter()
        .map(|c| {
            let resource: Value = serde_json::from_str(&c.resource).unwrap();
            assert_eq!(resource["id"], json!(c.id));
            assert_eq!(resource["externalId"], json!(c.anchor));
            ((c.kind, c.anchor.as_str()), resource)
        })
        .collect();
    let mut keys: Vec<_> = created.keys().copied().collect();
    keys.sort();
    assert_eq!(
        keys,
        [
            (ObjectKind::User, "u1"),
            (ObjectKind::User, "u3"),
            (ObjectKind::Group, "empty"),
            (ObjectKind::Group, "team"),
        ]
    );
    assert_eq!(created[&(ObjectKind::User, "u1")]["id"], json!(id("u1")));
    assert_eq!(
        created[&(ObjectKind::Group, "team")]["members"],
        json!([{"value": id("u1")}, {"value": id("u3")}])
    );
    assert_eq!(created[&(ObjectKind::Group, "empty")]["members"], json!([]));
}

/// Bulk of two: users in two requests (u2 fails inside the first), groups in two (adopted's
/// create is answered 409 inside its request and retried alone, which adopts it).
#[test]
fn groups_created_with_members_through_bulk() {
    check(&run(Some(2)));
}

/// No Bulk: one POST per group, members in its body.
#[test]
fn groups_created_with_members_one_request_each() {
    check(&run(None));
}
