#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use chrono::TimeZone;
use serde_json::json;

use super::*;

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 27, 0, 0, 0).unwrap()
}

fn du(name: &str, ext: &str, active: bool) -> MappedUser {
    du_with(name, ext, active, None)
}

fn du_with(name: &str, ext: &str, active: bool, title: Option<&str>) -> MappedUser {
    let mut resource = json!({
        "schemas": [scim::urn::USER],
        "externalId": ext,
        "userName": name,
        "active": active,
    });
    if let Some(t) = title {
        resource["title"] = json!(t);
    }
    MappedUser {
        dn: format!("uid={name},ou=People,dc=example,dc=jp"),
        anchor: ext.into(),
        user_name: name.into(),
        active,
        resource: resource.into(),
        warnings: vec![],
    }
}

fn tu(id: &str, name: &str, ext: &str, active: bool, pending: bool) -> TargetUser {
    tu_with(id, name, ext, active, pending, None)
}

fn tu_with(
    id: &str,
    name: &str,
    ext: &str,
    active: bool,
    pending: bool,
    title: Option<&str>,
) -> TargetUser {
    let mut resource = json!({
        "schemas": [scim::urn::USER],
        "id": id,
        "externalId": ext,
        "userName": name,
        "active": active,
        "meta": {"resourceType": "User"},
    });
    if let Some(t) = title {
        resource["title"] = json!(t);
    }
    TargetUser {
        id: id.into(),
        external_id: Some(ext.into()),
        user_name: name.into(),
        active,
        pending,
        pending_since: pending.then(|| now() - Duration::days(1)),
        resource: resource.into(),
    }
}

fn dg(name: &str, ext: &str, members: &[&str]) -> DesiredGroup {
    DesiredGroup {
        group: MappedGroup {
            dn: format!("cn={name},ou=Groups,dc=example,dc=jp"),
            anchor: ext.into(),
            display_name: name.into(),
            resource: json!({"schemas": [scim::urn::GROUP], "externalId": ext, "displayName": name}),
            member_values: vec![],
        },
        member_anchors: members.iter().map(|s| s.to_string()).collect(),
    }
}

fn tg(id: &str, name: &str, ext: &str, members: &[&str]) -> TargetGroup {
    TargetGroup {
        id: id.into(),
        display_name: name.into(),
        external_id: Some(ext.into()),
        members: members.iter().map(|s| s.to_string()).collect(),
        resource: json!({
            "schemas": [scim::urn::GROUP], "id": id, "externalId": ext, "displayName": name,
            "members": members.iter().map(|m| json!({"value": m})).collect::<Vec<_>>(),
        }),
    }
}

/// An input where every target object is owned, thresholds are out of the way and the
/// target keeps pending users.
fn input(users: Vec<MappedUser>, targets: Vec<TargetUser>) -> PlanInput {
    let owned_users = targets.iter().map(|t| t.id.clone()).collect();
    PlanInput {
        now: now(),
        users,
        groups: vec![],
        unmapped_users: vec![],
        unmapped_groups: vec![],
        read_complete: true,
        target_users: targets,
        target_groups: vec![],
        target: TargetKind {
            keeps_pending: true,
        },
        scope: Scope::default(),
        ownership: Ownership {
            users: owned_users,
            groups: BTreeSet::new(),
            adopt: false,
        },
        thresholds: Thresholds {
            max_deletion_ratio: 1.0,
            ..Thresholds::default()
        },
        retention: Duration::days(30),
        member_chunk: 100,
        managed_user_attributes: vec!["title".into()],
        changed_users_only: None,
    }
}

fn with_groups(
    mut i: PlanInput,
    groups: Vec<DesiredGroup>,
    targets: Vec<TargetGroup>,
) -> PlanInput {
    i.ownership.groups = targets.iter().map(|t| t.id.clone()).collect();
    i.groups = groups;
    i.target_groups = targets;
    i
}

fn lines(p: &Plan) -> Vec<String> {
    p.operations.iter().map(ToString::to_string).collect()
}

fn filter(s: &str) -> Option<scim::Filter> {
    Some(scim::filter::parse(s).unwrap())
}

/// behaviour §4.1, one row per case: (row, input, expected operation lines, expected error kinds).
#[test]
fn spec_4_1_user_table() {
    let bob = || du("bob@example.jp", "g-bob", true);
    let bob_t = || tu("t-bob", "bob@example.jp", "g-bob", true, false);
    let rows: Vec<(&str, PlanInput, Vec<&str>, Vec<ErrorKind>)> = vec![
        (
            "new user, enabled → created, active",
            input(vec![du("alice@example.jp", "g-alice", true)], vec![]),
            vec!["+ user alice@example.jp"],
            vec![],
        ),
        (
            "new user, disabled → created, inactive",
            input(vec![du("alice@example.jp", "g-alice", false)], vec![]),
            vec!["+ user alice@example.jp (inactive)"],
            vec![],
        ),
        (
            "attributes changed → only the changed attribute is sent",
            input(
                vec![du_with("bob@example.jp", "g-bob", true, Some("B"))],
                vec![tu_with(
                    "t-bob",
                    "bob@example.jp",
                    "g-bob",
                    true,
                    false,
                    Some("A"),
                )],
            ),
            vec![r#"~ user bob@example.jp: title "A" -> "B""#],
            vec![],
        ),
        (
            "nothing changed → nothing sent",
            input(vec![bob()], vec![bob_t()]),
            vec![],
            vec![],
        ),
        (
            "user disabled → active=false",
            input(vec![du("bob@example.jp", "g-bob", false)], vec![bob_t()]),
            vec!["~ user bob@example.jp: disabled"],
            vec![],
        ),
        (
            "user enabled → active=true",
            input(
                vec![bob()],
                vec![tu("t-bob", "bob@example.jp", "g-bob", false, false)],
            ),
            vec!["~ user bob@example.jp: enabled"],
            vec![],
        ),
        (
            "user deleted → pending deletion",
            input(
                vec![bob()],
                vec![
                    bob_t(),
                    tu("t-carol", "carol@example.jp", "g-carol", true, false),
                ],
            ),
            vec!["- user carol@example.jp (pending deletion)"],
            vec![],
        ),
        (
            "user leaves the sync scope → pending deletion (same as deleted: not in the read)",
            input(
                vec![bob()],
                vec![
                    bob_t(),
                    tu("t-dave", "dave@example.jp", "g-dave", false, false),
                ],
            ),
            vec!["- user dave@example.jp (pending deletion)"],
            vec![],
        ),
        (
            "returns to scope, same userName and externalId, pending → restored",
            input(
                vec![bob()],
                vec![tu("t-bob", "bob@example.jp", "g-bob", false, true)],
            ),
            vec!["+ user bob@example.jp (restored from pending deletion)"],
            vec![],
        ),
        (
            "re-created (new externalId), old one pending → error, nothing changed",
            input(
                vec![du("bob@example.jp", "g-bob-NEW", true)],
                vec![tu("t-bob", "bob@example.jp", "g-bob", false, true)],
            ),
            vec![],
            vec![ErrorKind::RecreatedUser],
        ),
        (
            "rename / move (same externalId) → update including userName",
            input(vec![du("robert@example.jp", "g-bob", true)], vec![bob_t()]),
            vec![r#"~ user robert@example.jp: userName "bob@example.jp" -> "robert@example.jp""#],
            vec![],
        ),
        (
            "two directory users with the same userName → both reported, neither sent",
            input(
                vec![
                    du("x@example.jp", "g-1", true),
                    du("X@example.jp", "g-2", true),
                ],
                vec![],
            ),
            vec![],
            vec![ErrorKind::DuplicateUserName],
        ),
        (
            "two directory users with the same externalId → both reported, neither sent",
            input(
                vec![
                    du("x@example.jp", "g-1", true),
                    du("y@example.jp", "g-1", true),
                ],
                vec![],
            ),
            vec![],
            vec![ErrorKind::DuplicateExternalId],
        ),
        (
            "matched by userName when externalId changed (owned) → externalId updated",
            input(vec![du("bob@example.jp", "g-bob-2", true)], vec![bob_t()]),
            vec![r#"~ user bob@example.jp: externalId "g-bob" -> "g-bob-2""#],
            vec![],
        ),
    ];
    for (row, inp, want_ops, want_errors) in rows {
        let p = plan(&inp);
        assert_eq!(lines(&p), want_ops, "{row}\n{p}");
        let kinds: Vec<ErrorKind> = p.errors.iter().map(|e| e.kind).collect();
        assert_eq!(kinds, want_errors, "{row}\n{p}");
        assert!(p.refused.is_none(), "{row}");
    }
}

#[test]
fn duplicate_users_protect_their_target_counterpart() {
    // The target user shares the duplicated externalId: it must not be pended.
    let p = plan(&input(
        vec![
            du("x@example.jp", "g-1", true),
            du("y@example.jp", "g-1", true),
        ],
        vec![tu("t-x", "x@example.jp", "g-1", true, false)],
    ));
    assert!(p.operations.is_empty(), "{p}");
    assert_eq!(p.errors.len(), 1);
    assert!(
        p.errors[0].object.contains("uid=x@example.jp")
            && p.errors[0].object.contains("uid=y@example.jp")
    );
}

#[test]
fn recreated_user_error_explains_the_fix() {
    let p = plan(&input(
        vec![du("bob@example.jp", "g-bob-NEW", true)],
        vec![tu("t-bob", "bob@example.jp", "g-bob", false, true)],
    ));
    let msg = &p.errors[0].message;
    assert!(
        msg.contains("idservice users purge-pending --user bob@example.jp"),
        "{msg}"
    );
    assert!(msg.contains("mS-DS-ConsistencyGuid"), "{msg}");
    assert!(p.operations.is_empty());
}

#[test]
fn mapping_failure_protects_target_user() {
    let mut i = input(
        vec![du("a@example.jp", "g-a", true)],
        vec![
            tu("t-a", "a@example.jp", "g-a", true, false),
            tu("t-b", "b@example.jp", "g-b", true, false),
        ],
    );
    i.unmapped_users.push(MappingError {
        dn: "uid=b,dc=example,dc=jp".into(),
        attribute: "phoneNumbers".into(),
        message: "bad".into(),
        anchor: Some("g-b".into()),
        user_name: Some("b@example.jp".into()),
    });
    let p = plan(&i);
    assert!(p.operations.is_empty(), "{p}");
    assert_eq!(p.errors[0].kind, ErrorKind::Mapping);
}

/// behaviour §4.2, one row per case.
#[test]
fn spec_4_2_group_table() {
    let users = || {
        vec![
            du("a@example.jp", "g-a", true),
            du("b@example.jp", "g-b", true),
            du("c@example.jp", "g-c", true),
        ]
    };
    let targets = || {
        vec![
            tu("t-a", "a@example.jp", "g-a", true, false),
            tu("t-b", "b@example.jp", "g-b", true, false),
            tu("t-c", "c@example.jp", "g-c", true, false),
        ]
    };
    let rows: Vec<(&str, PlanInput, Vec<&str>)> = vec![
        (
            "group created → created, with its members",
            with_groups(
                input(users(), targets()),
                vec![dg("Staff", "gg-1", &["g-a", "g-b"])],
                vec![],
            ),
            vec![
                "+ group Staff",
                "~ group Staff: + 2 member(s): a@example.jp, b@example.jp",
            ],
        ),
        (
            "members changed → add/remove of the difference only",
            with_groups(
                input(users(), targets()),
                vec![dg("Staff", "gg-1", &["g-a", "g-c"])],
                vec![tg("tg-1", "Staff", "gg-1", &["t-a", "t-b"])],
            ),
            vec![
                "~ group Staff: + 1 member(s): c@example.jp",
                "~ group Staff: - 1 member(s): b@example.jp",
            ],
        ),
        (
            "group deleted or out of scope → deleted",
            with_groups(
                input(users(), targets()),
                vec![dg("Staff", "gg-1", &[])],
                vec![
                    tg("tg-1", "Staff", "gg-1", &[]),
                    tg("tg-2", "Old", "gg-2", &["t-a"]),
                ],
            ),
            vec!["- group Old"],
        ),
        (
            "renamed group (same externalId) → displayName updated",
            with_groups(
                input(users(), targets()),
                vec![dg("Staff2", "gg-1", &[])],
                vec![tg("tg-1", "Staff", "gg-1", &[])],
            ),
            vec![r#"~ group Staff2: displayName "Staff" -> "Staff2""#],
        ),
        (
            "nested child groups and out-of-scope users are not members",
            with_groups(
                input(users(), targets()),
                vec![dg("Staff", "gg-1", &["g-a", "gg-child", "g-unknown"])],
                vec![tg("tg-1", "Staff", "gg-1", &["t-a"])],
            ),
            vec![],
        ),
    ];
    for (row, inp, want) in rows {
        let p = plan(&inp);
        assert_eq!(lines(&p), want, "{row}\n{p}");
        assert!(p.errors.is_empty() && p.refused.is_none(), "{row}\n{p}");
    }
}

#[test]
fn member_to_be_created_is_referenced_by_anchor() {
    let i = with_groups(
        input(vec![du("new@example.jp", "g-new", true)], vec![]),
        vec![dg("Staff", "gg-1", &["g-new"])],
        vec![tg("tg-1", "Staff", "gg-1", &[])],
    );
    let p = plan(&i);
    let add = p
        .operations
        .iter()
        .find_map(|o| match o {
            Operation::AddMembers { members, group, .. } => Some((group.clone(), members.clone())),
            _ => None,
        })
        .unwrap();
    assert_eq!(add.0, GroupRef::Id("tg-1".into()));
    assert_eq!(add.1[0].anchor.as_deref(), Some("g-new"));
    assert_eq!(add.1[0].id, None);
}

#[test]
fn members_are_chunked() {
    let users: Vec<MappedUser> = (0..5)
        .map(|n| du(&format!("u{n}@x.jp"), &format!("g{n}"), true))
        .collect();
    let anchors: Vec<String> = (0..5).map(|n| format!("g{n}")).collect();
    let refs: Vec<&str> = anchors.iter().map(String::as_str).collect();
    let mut i = with_groups(input(users, vec![]), vec![dg("Big", "gg", &refs)], vec![]);
    i.member_chunk = 2;
    let p = plan(&i);
    let sizes: Vec<usize> = p
        .operations
        .iter()
        .filter_map(|o| match o {
            Operation::AddMembers { members, .. } => Some(members.len()),
            _ => None,
        })
        .collect();
    assert_eq!(sizes, vec![2, 2, 1]);
}

#[test]
fn duplicate_group_names_are_reported_and_not_synced() {
    let mut a = dg("Staff", "gg-1", &[]);
    a.group.dn = "cn=Staff,ou=Tokyo,dc=example,dc=jp".into();
    let mut b = dg("staff", "gg-2", &[]);
    b.group.dn = "cn=Staff,ou=Osaka,dc=example,dc=jp".into();
    let i = with_groups(
        input(
            vec![du("a@example.jp", "g-a", true)],
            vec![tu("t-a", "a@example.jp", "g-a", true, false)],
        ),
        vec![a, b],
        // The existing target group of that name is neither updated nor deleted.
        vec![tg("tg-1", "Staff", "gg-1", &[])],
    );
    let p = plan(&i);
    assert!(p.operations.is_empty(), "{p}");
    assert_eq!(p.errors.len(), 1);
    assert_eq!(p.errors[0].kind, ErrorKind::DuplicateGroupName);
    assert!(p.errors[0].object.contains("ou=Tokyo") && p.errors[0].object.contains("ou=Osaka"));
}

#[test]
fn group_held_by_another_instance_is_refused_naming_both_dns() {
    // Domain B meets a group "Staff" that domain A's instance created and marked (behaviour §4.3).
    let mut b = dg("Staff", "guid-b", &[]);
    b.group.dn = "CN=Staff,OU=corp,DC=b,DC=test".into();
    let mut held = tg("tg-1", "Staff", "guid-a", &[]);
    crate::source_mark::stamp(
        &mut held.resource,
        "OU=corp,DC=a,DC=test",
        "CN=Staff,OU=corp,DC=a,DC=test",
    );
    let mut i = with_groups(input(vec![], vec![]), vec![b], vec![held]);
    i.ownership.groups.clear();
    let p = plan(&i);
    assert!(p.operations.is_empty(), "{p}");
    assert_eq!(p.errors.len(), 1, "{p}");
    let e = &p.errors[0];
    assert_eq!(e.kind, ErrorKind::NameTaken);
    assert_eq!(e.object, "CN=Staff,OU=corp,DC=b,DC=test");
    assert!(
        e.message.contains(
            "synced from CN=Staff,OU=corp,DC=a,DC=test by the instance reading OU=corp,DC=a,DC=test"
        ),
        "{}",
        e.message
    );

    // Without a mark (a plain SCIM target) the holder is named by id and externalId only.
    i.target_groups[0].resource = json!({"schemas": [scim::urn::GROUP], "displayName": "Staff"});
    let p = plan(&i);
    assert!(p.errors[0].message.contains("tg-1") && p.errors[0].message.contains("guid-a"));
    assert!(!p.errors[0].message.contains("synced from"));
}

#[test]
fn scope_filter_excludes_target_objects() {
    let mut i = input(
        vec![
            du("a@example.jp", "A-1", true),
            du("z@example.jp", "B-9", true),
        ],
        vec![
            tu("t-a", "a@example.jp", "A-1", true, false),
            // Outside the scope: not deleted although absent from the directory…
            tu("t-b", "b@example.jp", "B-1", true, false),
            // …and not updated although it matches a directory user.
            tu("t-z", "z@example.jp", "B-9", false, false),
        ],
    );
    i.scope.user = filter(r#"externalId sw "A-""#);
    let p = plan(&i);
    assert!(p.operations.is_empty(), "{p}");
    assert_eq!(p.errors.len(), 1);
    assert_eq!(p.errors[0].kind, ErrorKind::OutOfScope);
}

#[test]
fn creating_outside_scope_is_refused_per_object() {
    let mut i = input(vec![du("b@example.jp", "B-1", true)], vec![]);
    i.scope.user = filter(r#"externalId sw "A-""#);
    let p = plan(&i);
    assert!(p.operations.is_empty());
    assert_eq!(p.errors[0].kind, ErrorKind::WouldLeaveScope);
}

#[test]
fn two_instances_with_disjoint_scopes_never_touch_each_other() {
    let target = vec![
        tu("t-a1", "a1@example.jp", "A-1", true, false),
        tu("t-a2", "a2@example.jp", "A-2", true, false),
        tu("t-b1", "b1@example.jp", "B-1", true, false),
        tu("t-b2", "b2@example.jp", "B-2", true, false),
    ];
    let groups = vec![
        tg("tg-a", "Team A", "GA", &["t-a1", "t-b1"]),
        tg("tg-b", "Team B", "GB", &["t-b1", "t-a1"]),
    ];
    // Instance A: its directory lost A-2 and now lists Team A without anyone from B.
    let mut a = input(vec![du("a1@example.jp", "A-1", false)], target.clone());
    a.scope.user = filter(r#"externalId sw "A-""#);
    a.scope.group = filter(r#"externalId sw "GA""#);
    a.ownership.users = ["t-a1", "t-a2"].iter().map(|s| s.to_string()).collect();
    a.ownership.groups = ["tg-a"].iter().map(|s| s.to_string()).collect();
    a.groups = vec![dg("Team A", "GA", &["A-1"])];
    a.target_groups = groups.clone();
    let pa = plan(&a);
    let touched: BTreeSet<String> = pa
        .operations
        .iter()
        .map(|o| serde_json::to_value(o).unwrap())
        .filter_map(|v| v.get("id").and_then(Value::as_str).map(str::to_string))
        .collect();
    assert_eq!(
        touched,
        ["t-a1", "t-a2"].iter().map(|s| s.to_string()).collect(),
        "{pa}"
    );
    // Team A keeps its B member (not A's user), and Team B is not touched at all.
    assert_eq!(
        lines(&pa),
        vec![
            "~ user a1@example.jp: disabled",
            "- user a2@example.jp (pending deletion)"
        ],
        "{pa}"
    );

    // Instance B: its directory has no groups and B-2 only.
    let mut b = input(vec![du("b2@example.jp", "B-2", true)], target);
    b.scope.user = filter(r#"externalId sw "B-""#);
    b.scope.group = filter(r#"displayName eq """#);
    b.ownership.users = ["t-b1", "t-b2"].iter().map(|s| s.to_string()).collect();
    b.target_groups = groups;
    let pb = plan(&b);
    assert_eq!(
        lines(&pb),
        vec!["- user b1@example.jp (pending deletion)"],
        "{pb}"
    );
}

fn population(n: usize, present: usize) -> PlanInput {
    let targets: Vec<TargetUser> = (0..n)
        .map(|k| {
            tu(
                &format!("t{k}"),
                &format!("u{k}@x.jp"),
                &format!("g{k}"),
                true,
                false,
            )
        })
        .collect();
    let users: Vec<MappedUser> = (0..present)
        .map(|k| du(&format!("u{k}@x.jp"), &format!("g{k}"), true))
        .collect();
    let mut i = input(users, targets);
    i.thresholds = Thresholds::default();
    i
}

/// `population` with the ratio gate applying from the first removal.
fn population_without_floor(n: usize, present: usize) -> PlanInput {
    let mut i = population(n, present);
    i.thresholds.deletion_ratio_floor = 0;
    i
}

#[test]
fn threshold_refuses_20_percent_with_default_ratio() {
    let p = plan(&population_without_floor(10, 8));
    let reason = p.refused.clone().unwrap();
    assert!(p.operations.is_empty(), "no writes in a refused plan");
    assert!(reason.contains("2 of 10 managed users (20%)"), "{reason}");
    assert!(reason.contains("--allow-deletions 2"), "{reason}");

    let mut i = population_without_floor(10, 8);
    i.thresholds.allow_deletions = Some(2);
    let p = plan(&i);
    assert!(p.refused.is_none());
    assert_eq!(p.operations.len(), 2, "{p}");

    // Exactly 10% passes.
    assert!(plan(&population_without_floor(10, 9)).refused.is_none());

    // The count limit.
    let mut i = population(10, 5);
    i.thresholds.max_deletion_ratio = 1.0;
    i.thresholds.max_deletions = 3;
    assert!(plan(&i).refused.unwrap().contains("sync.max_deletions (3)"));
}

/// The ratio gate applies only past `deletion_ratio_floor` removals (default 10); the count
/// gate (`max_deletions`) always applies.
#[test]
fn deletion_ratio_floor_lets_leavers_through() {
    // (managed users, users still in the directory, max_deletions, refused?)
    let cases = [
        (9, 8, 500, false),     // 1 leaver of 9 (11%): under the floor
        (40, 35, 500, false),   // 5 of 40 (12.5%): under the floor
        (40, 30, 500, false),   // 10 of 40 (25%): at the floor, still through
        (40, 28, 500, true),    // 12 of 40 (30%): past the floor, the ratio refuses
        (200, 189, 500, false), // 11 of 200 (5.5%): past the floor, under the ratio
        (200, 178, 500, true),  // 22 of 200 (11%): past the floor and the ratio
        (40, 35, 3, true),      // 5 of 40 with max_deletions 3: the count gate refuses
    ];
    for (n, present, max_deletions, refused) in cases {
        let mut i = population(n, present);
        i.thresholds.max_deletions = max_deletions;
        let p = plan(&i);
        assert_eq!(
            p.refused.is_some(),
            refused,
            "{n} managed, {present} present, max_deletions {max_deletions}: {:?}",
            p.refused
        );
        if !refused {
            assert_eq!(p.operations.len(), n - present, "{p}");
        }
    }
}

#[test]
fn group_threshold_counts_separately() {
    let users: Vec<MappedUser> = (0..3)
        .map(|k| du(&format!("u{k}@x.jp"), &format!("g{k}"), true))
        .collect();
    let targets: Vec<TargetUser> = (0..3)
        .map(|k| {
            tu(
                &format!("t{k}"),
                &format!("u{k}@x.jp"),
                &format!("g{k}"),
                true,
                false,
            )
        })
        .collect();
    let mut i = with_groups(
        input(users, targets),
        vec![dg("Keep", "k", &[])],
        vec![
            tg("tg-k", "Keep", "k", &["t0", "t1", "t2"]),
            tg("tg-x", "Gone", "x", &[]),
        ],
    );
    i.thresholds = Thresholds {
        deletion_ratio_floor: 0,
        ..Thresholds::default()
    };
    // 3 member removals + 1 group deletion out of 2 groups + 3 memberships.
    let p = plan(&i);
    assert!(
        p.refused
            .as_deref()
            .unwrap()
            .contains("group deletions and member removals"),
        "{p}"
    );
    i.thresholds.allow_deletions = Some(4);
    let p = plan(&i);
    assert!(p.refused.is_none());
    assert_eq!(
        lines(&p),
        vec![
            "~ group Keep: - 3 member(s): u0@x.jp, u1@x.jp, u2@x.jp",
            "- group Gone"
        ]
    );
}

#[test]
fn incomplete_read_never_deletes() {
    let mut i = with_groups(
        input(
            vec![du("a@x.jp", "g-a", true), du("new@x.jp", "g-new", true)],
            vec![
                tu("t-a", "a@x.jp", "g-a", true, false),
                tu("t-b", "b@x.jp", "g-b", true, false),
            ],
        ),
        vec![dg("G", "gg", &["g-a"])],
        vec![
            tg("tg", "G", "gg", &["t-a", "t-b"]),
            tg("tg-old", "Old", "old", &[]),
        ],
    );
    i.read_complete = false;
    let p = plan(&i);
    // Creates and updates still happen; nothing is removed.
    assert_eq!(lines(&p), vec!["+ user new@x.jp"], "{p}");
    assert!(p.notes[0].contains("incomplete"));
}

#[test]
fn empty_read_never_deletes() {
    let i = with_groups(
        input(vec![], vec![tu("t-a", "a@x.jp", "g-a", true, false)]),
        vec![],
        vec![tg("tg", "G", "gg", &["t-a"])],
    );
    let p = plan(&i);
    assert!(p.operations.is_empty(), "{p}");
    assert!(p.refused.is_none());
    assert!(p.notes[0].contains("no users"), "{:?}", p.notes);
}

#[test]
fn plain_target_lifecycle() {
    let base = |targets: Vec<TargetUser>| {
        let mut i = input(vec![du("a@x.jp", "g-a", true)], targets);
        i.target.keeps_pending = false;
        i
    };
    let a = tu("t-a", "a@x.jp", "g-a", true, false);

    // Gone from the directory: disabled and recorded (not deleted).
    let p = plan(&base(vec![
        a.clone(),
        tu("t-b", "b@x.jp", "g-b", true, false),
    ]));
    assert_eq!(
        lines(&p),
        vec!["- user b@x.jp (disabled; pending deletion kept by the agent)"]
    );

    // Pending for 31 days: deleted now.
    let mut old = tu("t-b", "b@x.jp", "g-b", false, true);
    old.pending_since = Some(now() - Duration::days(31));
    let p = plan(&base(vec![a.clone(), old]));
    assert_eq!(
        lines(&p),
        vec!["- user b@x.jp (deleted: pending since 2026-10-27)"]
    );

    // Pending for 5 days: kept.
    let mut recent = tu("t-b", "b@x.jp", "g-b", false, true);
    recent.pending_since = Some(now() - Duration::days(5));
    assert!(plan(&base(vec![a.clone(), recent])).operations.is_empty());

    // Back before the retention ends: restored by re-enabling.
    let mut back = tu("t-a", "a@x.jp", "g-a", false, true);
    back.pending_since = Some(now() - Duration::days(5));
    let p = plan(&base(vec![back]));
    match &p.operations[..] {
        [Operation::RestoreUser { id, patch, .. }] => {
            assert_eq!(id, "t-a");
            let v = serde_json::to_value(patch).unwrap();
            assert_eq!(
                v,
                json!([{"op": "replace", "path": "active", "value": true}])
            );
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn restore_is_a_post_on_keeping_targets_and_a_patch_on_plain_ones() {
    // idservice refuses a PATCH of a pending user (404): the restore must be the POST, even
    // when the pending user's attributes differ from the directory's (e2e regression).
    let mut pending = tu_with("t-a", "a@x.jp", "g-a", false, true, Some("Old"));
    pending.pending_since = Some(now() - Duration::days(5));
    let desired = du_with("a@x.jp", "g-a", true, Some("New"));
    let p = plan(&input(vec![desired.clone()], vec![pending.clone()]));
    match &p.operations[..] {
        [Operation::RestoreUser { patch, .. }] => assert!(patch.is_empty(), "{patch:?}"),
        other => panic!("{other:?}"),
    }
    // Plain target, user disabled in the directory and already as wanted: the patch is
    // still not empty (an empty one would mean POST).
    let mut i = input(vec![du("a@x.jp", "g-a", false)], vec![pending]);
    i.target.keeps_pending = false;
    if let Some(t) = i.target_users.first_mut() {
        let mut r = t.resource.value();
        r.as_object_mut().map(|r| r.remove("title"));
        t.resource = r.into();
    }
    match &plan(&i).operations[..] {
        [Operation::RestoreUser { patch, .. }] => assert_eq!(
            serde_json::to_value(patch).unwrap(),
            json!([{"op": "replace", "path": "active", "value": false}])
        ),
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_user_back_under_a_new_user_name_is_restored_under_the_old_one_then_renamed() {
    // Issue 22 (differential harness): left the scope, got a new userName, came back. A
    // keeping target restores only on a POST with the pending user's own userName (with the
    // new one it answers 409 "externalId has already been taken").
    let pending = tu("t-a", "a@x.jp", "g-a", true, true);
    let p = plan(&input(vec![du("a2@x.jp", "g-a", true)], vec![pending]));
    match &p.operations[..] {
        [
            Operation::RestoreUser {
                id,
                resource,
                patch,
                ..
            },
            Operation::UpdateUser {
                id: renamed,
                patch: rename,
                ..
            },
        ] => {
            assert_eq!((id.as_str(), renamed.as_str()), ("t-a", "t-a"));
            assert!(patch.is_empty(), "{patch:?}");
            assert_eq!(resource.value()["userName"], json!("a@x.jp"));
            assert_eq!(
                serde_json::to_value(rename).unwrap(),
                json!([{"op": "replace", "path": "userName", "value": "a2@x.jp"}])
            );
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn ownership_rules() {
    // Not created by this instance: reported, not touched, not deleted.
    let mut i = input(
        vec![du("a@x.jp", "g-a", true)],
        vec![
            tu_with("t-a", "a@x.jp", "g-a", true, false, Some("X")),
            tu("t-o", "o@x.jp", "g-o", true, false),
        ],
    );
    i.ownership.users.clear();
    let p = plan(&i);
    assert!(p.operations.is_empty(), "{p}");
    assert_eq!(p.errors[0].kind, ErrorKind::NotOwned);
    assert!(p.errors[0].message.contains("--adopt"));

    // With --adopt: adopted and brought up to date; the unmatched foreign user stays.
    i.ownership.adopt = true;
    let p = plan(&i);
    assert_eq!(
        lines(&p),
        vec![
            "= user a@x.jp: adopted (target id t-a)",
            "~ user a@x.jp: title removed (was \"X\")"
        ]
    );

    // userName used by an active user somebody else manages.
    let mut i = input(
        vec![du("a@x.jp", "g-a-other", true)],
        vec![tu("t-a", "a@x.jp", "g-a", true, false)],
    );
    i.ownership.users.clear();
    let p = plan(&i);
    assert_eq!(p.errors[0].kind, ErrorKind::NameTaken);
    assert!(p.operations.is_empty());
}

#[test]
fn unmanaged_attributes_on_the_target_are_kept() {
    let mut t = tu("t-a", "a@x.jp", "g-a", true, false);
    let mut r = t.resource.value();
    r["nickName"] = json!("set in the cloud");
    t.resource = r.into();
    let p = plan(&input(vec![du("a@x.jp", "g-a", true)], vec![t]));
    assert!(p.operations.is_empty(), "{p}");
}

#[test]
fn operations_are_ordered() {
    let mut i = with_groups(
        input(
            vec![
                du("new@x.jp", "g-new", true),
                du("off@x.jp", "g-off", false),
                du("on@x.jp", "g-on", true),
            ],
            vec![
                tu("t-off", "off@x.jp", "g-off", true, false),
                tu("t-on", "on@x.jp", "g-on", false, false),
                tu("t-gone", "gone@x.jp", "g-gone", true, false),
            ],
        ),
        vec![dg("New", "gn", &["g-new"]), dg("Kept", "gk", &["g-on"])],
        vec![
            tg("tg-k", "Kept", "gk", &["t-off"]),
            tg("tg-old", "Old", "go", &[]),
        ],
    );
    i.thresholds.allow_deletions = Some(10);
    let p = plan(&i);
    insta::assert_snapshot!(p.to_string(), @r"
    + user new@x.jp
    ~ user on@x.jp: enabled
    + group New
    ~ group New: + 1 member(s): new@x.jp
    ~ group Kept: + 1 member(s): on@x.jp
    ~ group Kept: - 1 member(s): off@x.jp
    ~ user off@x.jp: disabled
    - group Old
    - user gone@x.jp (pending deletion)
    1 user(s) to create, 1 to update, 0 to restore, 1 to disable, 1 to delete or pend; 1 group(s) to create, 1 to delete, 3 membership change(s); 0 error(s); 0 user(s) and 0 group(s) unchanged
    ");
    let v = serde_json::to_value(&p).unwrap();
    assert_eq!(v["operations"][0]["op"], "create_user");
    assert_eq!(v["operations"][3]["group"], json!({"new": "gn"}));
}

/// The incremental form of `whole` (issue #5) after the directory users with these anchors
/// changed or were deleted: only they are planned; target users they cannot match lose their
/// resource, as when an incremental run loads them from the cache.
fn changed_only(whole: &PlanInput, changed: &[&str], deleted: &[&str]) -> PlanInput {
    let touched: HashSet<&str> = changed.iter().chain(deleted).copied().collect();
    let names: HashSet<String> = whole
        .users
        .iter()
        .filter(|u| touched.contains(u.anchor.as_str()))
        .map(|u| u.user_name.to_lowercase())
        .collect();
    let mut i = whole.clone();
    i.users.retain(|u| changed.contains(&u.anchor.as_str()));
    let mut removable = HashSet::new();
    for t in &mut i.target_users {
        let hit = t
            .external_id
            .as_deref()
            .is_some_and(|e| touched.contains(e))
            || names.contains(&t.user_name.to_lowercase());
        if hit {
            removable.insert(t.id.clone());
        } else {
            t.resource = Value::Null.into();
        }
    }
    i.changed_users_only = Some(ChangedUsers {
        removable,
        unchanged_anchors: whole
            .users
            .iter()
            .map(|u| u.anchor.clone())
            .filter(|a| !touched.contains(a.as_str()))
            .collect(),
    });
    i
}

#[test]
fn a_plan_over_the_changed_users_equals_the_whole_plan() {
    // The target as the last run left it: a, b, c, f, z; Staff = {a, c}, Ops = {b}.
    let whole = |users: Vec<MappedUser>, staff: &[&str], ops: &[&str]| {
        with_groups(
            input(
                users,
                vec![
                    tu("t-a", "a@x.jp", "g-a", true, false),
                    tu("t-b", "b@x.jp", "g-b", true, false),
                    tu("t-c", "c@x.jp", "g-c", true, false),
                    tu("t-f", "f@x.jp", "g-f", true, false),
                    tu("t-z", "z@x.jp", "g-z", true, false),
                ],
            ),
            vec![dg("Staff", "gg-1", staff), dg("Ops", "gg-2", ops)],
            vec![
                tg("tg-1", "Staff", "gg-1", &["t-a", "t-c"]),
                tg("tg-2", "Ops", "gg-2", &["t-b"]),
            ],
        )
    };
    let a = || du("a@x.jp", "g-a", true);
    let b = || du("b@x.jp", "g-b", true);
    let c = || du("c@x.jp", "g-c", true);
    let f = || du("f@x.jp", "g-f", true);
    let z = || du("z@x.jp", "g-z", true);
    let rows: Vec<(&str, PlanInput, Vec<&str>, Vec<&str>)> = vec![
        (
            "b's title, d new, f disabled, c and z deleted; Staff gains d, Ops gains a",
            whole(
                vec![
                    a(),
                    du_with("b@x.jp", "g-b", true, Some("Boss")),
                    du("d@x.jp", "g-d", true),
                    du("f@x.jp", "g-f", false),
                ],
                &["g-a", "g-d"],
                &["g-b", "g-a"],
            ),
            vec!["g-b", "g-d", "g-f"],
            vec!["g-c", "g-z"],
        ),
        (
            "no user changed: only the groups' own changes",
            whole(vec![a(), b(), c(), f(), z()], &["g-a"], &["g-b", "g-a"]),
            vec![],
            vec![],
        ),
        (
            "one deletion: the user and its memberships go",
            whole(vec![a(), b(), f(), z()], &["g-a"], &["g-b"]),
            vec![],
            vec!["g-c"],
        ),
        (
            "a changed user renamed onto nothing: updated in place",
            whole(
                vec![a(), du("b2@x.jp", "g-b", true), c(), f(), z()],
                &["g-a", "g-c"],
                &["g-b"],
            ),
            vec!["g-b"],
            vec![],
        ),
    ];
    for (row, w, changed, deleted) in rows {
        let want = plan(&w);
        let got = plan(&changed_only(&w, &changed, &deleted));
        assert_eq!(
            lines(&got),
            lines(&want),
            "{row}\nwhole:\n{want}\nchanged only:\n{got}"
        );
        assert_eq!(got.refused, want.refused, "{row}");
        assert_eq!(got.errors.len(), want.errors.len(), "{row}");
        assert!(
            !want.operations.is_empty(),
            "{row}: the row must plan something"
        );
    }
}

#[test]
fn a_plan_over_the_changed_users_deletes_only_on_evidence_and_counts_the_whole_population() {
    // 10 managed users, none changed: nothing is deleted although `users` is empty.
    let whole = population(10, 10);
    let p = plan(&changed_only(&whole, &[], &[]));
    assert!(
        p.operations.is_empty() && p.refused.is_none() && p.notes.is_empty(),
        "{p}"
    );
    // 2 of 10 deleted: the ratio is taken of the whole population (20 % > 10 %: refused;
    // the ratio applies from the first removal here).
    let mut w = population_without_floor(10, 10);
    w.users.retain(|u| u.anchor != "g1" && u.anchor != "g2");
    let p = plan(&changed_only(&w, &[], &["g1", "g2"]));
    let reason = p.refused.clone().unwrap_or_default();
    assert!(reason.contains("2 of 10 managed users"), "{p}");
}

#[test]
fn key_index_finds_every_index_of_a_key_and_the_repeated_keys_in_order() {
    let index = super::KeyIndex::new(vec![("b", 0), ("a", 1), ("b", 2), ("c", 3), ("a", 4)]);
    assert_eq!(index.get("b"), &[("b", 0), ("b", 2)]);
    assert_eq!(index.get("c"), &[("c", 3)]);
    assert!(index.get("d").is_empty());
    assert!(index.get("").is_empty());
    assert_eq!(index.repeated(), vec![("a", vec![1, 4]), ("b", vec![0, 2])]);
}
