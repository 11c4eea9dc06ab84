#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Issue 3 acceptance: a real slapd synchronised by the `dirsync` binary into our `idservice`
//! (keeps pending users itself) and into the independent `scim2-server` (plain SCIM: the agent
//! keeps the pending lifecycle), behaviour §4.1–4.3 and 5. Each scenario starts its own peers, so the
//! tests run in parallel; scenarios that apply to both targets run once per target.
//!
//! Disabling: OpenLDAP has no standard "disabled" flag without the ppolicy overlay. These tests
//! bind `active` to `employeeType` (`iid.scim.attribute.user.ad_bind.active: employeeType`);
//! the mapping reads a generic attribute as a boolean (`true`/`1`/`yes` enabled,
//! `false`/`0`/`no` disabled, absent: enabled).

mod common;

use common::{Env, TargetKind, gen_uid, gen_user};
use serde_json::{Value, json};

/// Runs the scenario `$name(kind)` once per target.
macro_rules! both_targets {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[test]
            fn idservice() {
                super::$name(super::TargetKind::IdService)
            }
            #[test]
            fn scim2_server() {
                super::$name(super::TargetKind::Scim2)
            }
        }
    )*};
}

both_targets!(
    users_lifecycle,
    leave_and_return_to_scope,
    groups_lifecycle,
    duplicate_group_names_refused,
    recreated_user_refused,
    deletion_threshold,
    leavers_under_the_ratio_floor,
    empty_read_never_deletes,
);

/// The config every scenario uses: `active` bound to employeeType, and title and displayName
/// bound (the OpenLDAP defaults bind only externalId, userName, name, emails).
fn base_overrides() -> Value {
    json!({"iid": {"scim": {"attribute": {"user": {"ad_bind": {
        "active": "employeeType",
        "title": "title",
        "displayName": "displayName",
    }}}}}})
}

fn started(kind: TargetKind, users: usize, groups: usize) -> Env {
    let env = Env::start(kind);
    env.slapd
        .load_generated(users, groups, &[])
        .expect("load generated data");
    env
}

/// The resource without `meta` and the given attributes, for "nothing else changed".
fn without(resource: &Value, keys: &[&str]) -> Value {
    let mut r = resource.clone();
    let map = r.as_object_mut().unwrap();
    map.remove("meta");
    for k in keys {
        map.remove(*k);
    }
    r
}

/// Initial sync (users, groups, members), a no-change rerun, an attribute change (only that
/// attribute is sent), disable / enable, and delete → pending deletion.
fn users_lifecycle(kind: TargetKind) {
    let env = started(kind, 20, 2);
    let config = env.config("main", base_overrides());

    let run = env.sync(&config, &[]);
    assert_eq!(run.code, 0, "{:#}", run.report);
    run.assert_counts(&[
        ("created", 20),
        ("groups_created", 2),
        ("members_added", 20),
    ]);
    let users = env.target.users();
    assert_eq!(users.len(), 20);
    for u in &users {
        assert_eq!(u["active"], json!(true), "{u}");
        assert!(
            u["externalId"].as_str().is_some_and(|e| e.len() == 36),
            "{u}"
        );
    }
    let u5 = env.target.user(&gen_user(5)).expect("user 5");
    assert_eq!(u5["emails"][0]["value"], json!(gen_user(5)));
    // gen_ldap_data.py: user i is a member of group (i mod 2).
    let odd: Vec<String> = (1..=20).step_by(2).map(gen_user).collect();
    let even: Vec<String> = (2..=20).step_by(2).map(gen_user).collect();
    let (g1, g2) = (
        env.target.member_names("group00001"),
        env.target.member_names("group00002"),
    );
    assert!(
        (g1 == odd && g2 == even) || (g1 == even && g2 == odd),
        "{g1:?} {g2:?}"
    );
    // Issue 5: the new groups were created with their members, not given them by PATCH
    // afterwards: every add_members line of the journal says so.
    let journal = std::fs::read_to_string(env.dir.path().join("state-main/journal.jsonl")).unwrap();
    let adds: Vec<Value> = journal
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|l| l["operation"] == "add_members")
        .collect();
    assert_eq!(
        adds.len(),
        2,
        "one per group (default member_chunk 100): {adds:#?}"
    );
    for l in &adds {
        assert_eq!(l["outcome"], "ok (sent with the group create)", "{l}");
    }

    let run = env.sync(&config, &[]);
    assert_eq!(run.code, 0);
    run.assert_counts(&[]);
    assert_eq!(run.report["unchanged_users"], json!(20));
    assert_eq!(run.report["unchanged_groups"], json!(2));

    // Attribute change: one PATCH of that attribute only.
    env.modify(
        &env.user_dn(&gen_uid(5)),
        "replace",
        "title",
        Some("Chief Tester"),
    );
    let run = env.sync(&config, &[]);
    assert_eq!(run.code, 0, "{:#}", run.report);
    run.assert_counts(&[("updated", 1)]);
    let ops = run.plan["operations"].as_array().unwrap();
    assert_eq!(ops.len(), 1, "{ops:#?}");
    assert_eq!(ops[0]["op"], json!("update_user"));
    let paths: Vec<&str> = ops[0]["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["path"].as_str().unwrap())
        .collect();
    assert_eq!(paths, ["title"], "{ops:#?}");
    let after = env.target.user(&gen_user(5)).unwrap();
    assert_eq!(after["title"], json!("Chief Tester"));
    assert_eq!(without(&after, &["title"]), without(&u5, &["title"]));

    // Disable, then enable again.
    let dn6 = env.user_dn(&gen_uid(6));
    env.modify(&dn6, "add", "employeeType", Some("false"));
    let run = env.sync(&config, &[]);
    assert_eq!(run.code, 0, "{:#}", run.report);
    run.assert_counts(&[("disabled", 1)]);
    assert_eq!(
        env.target.user(&gen_user(6)).unwrap()["active"],
        json!(false)
    );
    env.modify(&dn6, "replace", "employeeType", Some("true"));
    let run = env.sync(&config, &[]);
    run.assert_counts(&[("enabled", 1)]);
    assert_eq!(
        env.target.user(&gen_user(6)).unwrap()["active"],
        json!(true)
    );

    // Deleted in the directory → pending deletion (1 of 20: under the 10% ratio). Its
    // membership is removed as well.
    env.slapd.delete(&[&env.user_dn(&gen_uid(7))]).unwrap();
    let run = env.sync(&config, &[]);
    assert_eq!(run.code, 0, "{:#}", run.report);
    assert_eq!(run.count("pending_deletion"), 1, "{:#}", run.report);
    assert_eq!(run.count("created") + run.count("deleted"), 0);
    env.target.assert_pending(&gen_user(7));
    assert_eq!(
        env.sync(&config, &[]).report["counts"]["pending_deletion"],
        json!(0),
        "a pending user is not pended again"
    );
}

/// A user leaving the LDAP filter goes to pending deletion; back in scope it is restored with
/// the same target id.
fn leave_and_return_to_scope(kind: TargetKind) {
    let env = started(kind, 20, 1);
    let mut overrides = base_overrides();
    common::merge(
        &mut overrides,
        json!({"ad": {"ldap": {"filter": {"user": "(!(businessCategory=offboarded))"}}}}),
    );
    let config = env.config("main", overrides);
    let run = env.sync(&config, &[]);
    assert_eq!(run.code, 0, "{:#}", run.report);
    assert_eq!(run.count("created"), 20);
    let before = env.target.user(&gen_user(3)).unwrap();

    let dn = env.user_dn(&gen_uid(3));
    env.modify(&dn, "add", "businessCategory", Some("offboarded"));
    let run = env.sync(&config, &[]);
    assert_eq!(run.code, 0, "{:#}", run.report);
    assert_eq!(run.report["read_users"], json!(19));
    assert_eq!(run.count("pending_deletion"), 1, "{:#}", run.report);
    env.target.assert_pending(&gen_user(3));

    env.modify(&dn, "delete", "businessCategory", None);
    let run = env.sync(&config, &[]);
    assert_eq!(run.code, 0, "{:#}", run.report);
    assert_eq!(run.count("restored"), 1, "{:#}", run.report);
    assert_eq!(run.count("created"), 0);
    let after = env.target.user(&gen_user(3)).expect("restored and listed");
    assert_eq!(after["id"], before["id"], "restored under the same id");
    assert_eq!(after["active"], json!(true));
    assert_eq!(after["externalId"], before["externalId"]);
    assert_eq!(env.target.users().len(), 20);
    // Converged: the next run changes nothing.
    env.sync(&config, &[]).assert_counts(&[]);
}

/// Group created, member added, member removed, group deleted: differences only.
fn groups_lifecycle(kind: TargetKind) {
    let env = started(kind, 20, 2);
    let config = env.config("main", base_overrides());
    assert_eq!(env.sync(&config, &[]).code, 0);

    env.add_group("team", "ou=groups", &[&gen_uid(1), &gen_uid(2)]);
    let run = env.sync(&config, &[]);
    assert_eq!(run.code, 0, "{:#}", run.report);
    run.assert_counts(&[("groups_created", 1), ("members_added", 2)]);
    assert_eq!(env.target.member_names("team"), [gen_user(1), gen_user(2)]);

    let dn = env.group_dn("team");
    env.modify(&dn, "add", "member", Some(&env.user_dn(&gen_uid(3))));
    let run = env.sync(&config, &[]);
    run.assert_counts(&[("members_added", 1)]);
    assert_eq!(
        env.target.member_names("team"),
        [gen_user(1), gen_user(2), gen_user(3)]
    );
    let ops = run.plan["operations"].as_array().unwrap();
    assert_eq!(ops.len(), 1, "one add of the difference: {ops:#?}");
    assert_eq!(ops[0]["op"], json!("add_members"));

    env.modify(&dn, "delete", "member", Some(&env.user_dn(&gen_uid(1))));
    let run = env.sync(&config, &[]);
    assert_eq!(run.code, 0, "{:#}", run.report);
    run.assert_counts(&[("members_removed", 1)]);
    assert_eq!(env.target.member_names("team"), [gen_user(2), gen_user(3)]);
    // The users themselves are untouched.
    assert_eq!(env.target.users().len(), 20);

    env.slapd.delete(&[&dn]).unwrap();
    let run = env.sync(&config, &[]);
    assert_eq!(run.code, 0, "{:#}", run.report);
    assert_eq!(run.count("groups_deleted"), 1, "{:#}", run.report);
    assert!(env.target.group("team").is_none());
    assert_eq!(env.target.groups().len(), 2);
    assert_eq!(env.target.users().len(), 20);
}

/// Two directory groups with the same displayName (same cn in two OUs): both reported with
/// their DNs, neither created; the rest of the run goes on.
fn duplicate_group_names_refused(kind: TargetKind) {
    let env = started(kind, 10, 1);
    env.add_ou("teams");
    env.add_group("dup", "ou=groups", &[&gen_uid(1)]);
    env.add_group("dup", "ou=teams", &[&gen_uid(2)]);
    let config = env.config("main", base_overrides());
    let run = env.sync(&config, &[]);
    assert_eq!(run.code, 1, "{:#}", run.report);
    let dups = run.skipped("duplicate_group_name");
    assert_eq!(dups.len(), 1, "{:#}", run.report);
    let object = dups[0]["object"].as_str().unwrap();
    let base = &env.slapd.base;
    assert!(
        object.contains(&format!("cn=dup,ou=groups,{base}"))
            && object.contains(&format!("cn=dup,ou=teams,{base}")),
        "{object}"
    );
    assert!(env.target.group("dup").is_none());
    assert_eq!(run.count("created"), 10);
    assert_eq!(run.count("groups_created"), 1);
    assert_eq!(env.target.groups().len(), 1);
}

/// A user deleted and re-created in the directory (new entryUUID) while the old one is
/// pending deletion: refused with the explanation; on idservice, after
/// `idservice users purge-pending --user …`, the next run creates it.
fn recreated_user_refused(kind: TargetKind) {
    let env = started(kind, 20, 1);
    let config = env.config("main", base_overrides());
    assert_eq!(env.sync(&config, &[]).code, 0);
    let old = env.target.user(&gen_user(4)).unwrap();

    env.slapd.delete(&[&env.user_dn(&gen_uid(4))]).unwrap();
    assert_eq!(env.sync(&config, &[]).count("pending_deletion"), 1);
    env.add_user(&gen_uid(4), "ou=people", "example.test", &[]);

    let run = env.sync(&config, &[]);
    assert_eq!(run.code, 1, "{:#}", run.report);
    run.assert_counts(&[]);
    let refused = run.skipped("recreated_user");
    assert_eq!(refused.len(), 1, "{:#}", run.report);
    assert_eq!(refused[0]["object"], json!(env.user_dn(&gen_uid(4))));
    let message = refused[0]["message"].as_str().unwrap();
    assert!(
        message.contains("re-created")
            && message.contains(old["id"].as_str().unwrap())
            && message.contains(&format!("purge-pending --user {}", gen_user(4))),
        "{message}"
    );
    env.target.assert_pending(&gen_user(4));

    if kind == TargetKind::IdService {
        let out = env
            .target
            .idservice()
            .admin_command(&["users", "purge-pending", "--user", &gen_user(4)])
            .expect("purge-pending");
        assert!(!env.target.pending_list().contains(&gen_user(4)), "{out}");
        let run = env.sync(&config, &[]);
        assert_eq!(run.code, 0, "{:#}", run.report);
        assert_eq!(run.count("created"), 1, "{:#}", run.report);
        let new = env.target.user(&gen_user(4)).unwrap();
        assert_ne!(new["id"], old["id"]);
        assert_ne!(new["externalId"], old["externalId"]);
    }
}

/// behaviour §5: a run that would remove 20% of the users is refused (exit 2, nothing written);
/// `--allow-deletions N` lets exactly that run through; 1 of 8 (12.5%) is refused too. The
/// ratio gate applies here from the first removal (`deletion_ratio_floor: 0`).
fn deletion_threshold(kind: TargetKind) {
    let env = started(kind, 10, 1);
    let mut overrides = base_overrides();
    overrides["sync"] = json!({"deletion_ratio_floor": 0});
    let config = env.config("main", overrides);
    assert_eq!(env.sync(&config, &[]).count("created"), 10);
    let before = env.target.users();

    env.slapd
        .delete(&[&env.user_dn(&gen_uid(1)), &env.user_dn(&gen_uid(2))])
        .unwrap();
    let run = env.sync(&config, &[]);
    assert_eq!(run.code, 2, "{:#}", run.report);
    run.assert_counts(&[]);
    let refused = run.report["refused"].as_str().unwrap();
    assert!(
        refused.contains("2 of 10") && refused.contains("--allow-deletions 2"),
        "{refused}"
    );
    assert_eq!(env.target.users(), before, "nothing written");

    let run = env.sync(&config, &["--allow-deletions", "1"]);
    assert_eq!(run.code, 2, "1 is fewer than needed: {:#}", run.report);
    assert_eq!(env.target.users(), before);

    let run = env.sync(&config, &["--allow-deletions", "2"]);
    assert_eq!(run.code, 0, "{:#}", run.report);
    assert_eq!(run.count("pending_deletion"), 2, "{:#}", run.report);
    env.target.assert_pending(&gen_user(1));
    env.target.assert_pending(&gen_user(2));

    // The allowance was for one run: 1 of the 8 remaining (12.5% > 10%) is refused again.
    env.slapd.delete(&[&env.user_dn(&gen_uid(3))]).unwrap();
    let run = env.sync(&config, &[]);
    assert_eq!(run.code, 2, "{:#}", run.report);
    assert!(
        run.report["refused"].as_str().unwrap().contains("1 of 8"),
        "{:#}",
        run.report
    );
    assert_eq!(
        env.target.user(&gen_user(3)).unwrap()["active"],
        json!(true)
    );
}

/// With the default thresholds (`max_deletion_ratio` 10 %, `deletion_ratio_floor` 10), a
/// directory of 40 users that loses 5 of them (12.5 %) lets all 5 reach pending deletion; one
/// that then loses 12 of the 35 left is refused as before, and nothing is written.
fn leavers_under_the_ratio_floor(kind: TargetKind) {
    let env = started(kind, 40, 1);
    let config = env.config("main", base_overrides());
    assert_eq!(env.sync(&config, &[]).count("created"), 40);

    let leavers: Vec<String> = (1..=5).map(|k| env.user_dn(&gen_uid(k))).collect();
    env.slapd
        .delete(&leavers.iter().map(String::as_str).collect::<Vec<_>>())
        .unwrap();
    let run = env.sync(&config, &[]);
    assert_eq!(run.code, 0, "{:#}", run.report);
    assert_eq!(run.count("pending_deletion"), 5, "{:#}", run.report);
    for k in 1..=5 {
        env.target.assert_pending(&gen_user(k));
    }

    let before = env.target.users();
    let many: Vec<String> = (6..=17).map(|k| env.user_dn(&gen_uid(k))).collect();
    env.slapd
        .delete(&many.iter().map(String::as_str).collect::<Vec<_>>())
        .unwrap();
    let run = env.sync(&config, &[]);
    assert_eq!(run.code, 2, "{:#}", run.report);
    let refused = run.report["refused"].as_str().unwrap();
    assert!(refused.contains("12 of 35"), "{refused}");
    assert_eq!(env.target.users(), before, "nothing written");
}

/// An empty LDAP result (a filter matching nothing; every user deleted) never deletes, and the
/// report says why.
fn empty_read_never_deletes(kind: TargetKind) {
    let env = started(kind, 10, 1);
    let config = env.config("main", base_overrides());
    assert_eq!(env.sync(&config, &[]).count("created"), 10);
    let before = env.target.users();
    let members_before = env.target.member_names("group00001");

    let mut overrides = base_overrides();
    common::merge(
        &mut overrides,
        json!({
            "ad": {"ldap": {"filter": {"user": "(uid=nobody-matches-this)"}}},
            "sync": {"state_dir": "state-main"},
        }),
    );
    let nothing = env.config("nothing", overrides);
    let check = |label: &str, run: common::Run| {
        assert_eq!(run.report["read_users"], json!(0), "{label}");
        run.assert_counts(&[]);
        assert!(
            run.notes().contains("returned no users"),
            "{label}: {:#}",
            run.report
        );
        assert_eq!(env.target.users(), before, "{label}");
        assert_eq!(env.target.member_names("group00001"), members_before);
    };
    check("filter matching nothing", env.sync(&nothing, &[]));

    let dns: Vec<String> = (1..=10).map(|i| env.user_dn(&gen_uid(i))).collect();
    let dns: Vec<&str> = dns.iter().map(String::as_str).collect();
    env.slapd.delete(&dns).unwrap();
    check("every user deleted", env.sync(&config, &[]));
    // Even when the operator allows deletions.
    check(
        "every user deleted, --allow-deletions",
        env.sync(&config, &["--allow-deletions", "100"]),
    );
}

/// behaviour §4.3: two instances with disjoint `iid.scim.filter.user/group` on one idservice never
/// touch each other's objects, whatever their directories say.
#[test]
fn disjoint_instances_share_one_idservice() {
    let env = Env::start(TargetKind::IdService);
    for i in 0..10 {
        env.add_user(&format!("a{i}"), "ou=people", "a.test", &[]);
        env.add_user(&format!("b{i}"), "ou=people", "b.test", &[]);
    }
    env.add_group("a-staff", "ou=groups", &["a0", "a1", "a2"]);
    env.add_group("b-staff", "ou=groups", &["b0", "b1", "b2"]);
    let instance = |side: &str| {
        let mut overrides = base_overrides();
        common::merge(
            &mut overrides,
            json!({
                "ad": {"ldap": {"filter": {
                    "user": format!("(mail=*@{side}.test)"),
                    "group": format!("(cn={side}-*)"),
                }}},
                "iid": {"scim": {"filter": {
                    "user": format!("userName ew \"@{side}.test\""),
                    "group": format!("displayName sw \"{side}-\""),
                }}},
            }),
        );
        env.config(side, overrides)
    };
    let (a, b) = (instance("a"), instance("b"));

    for config in [&a, &b] {
        let run = env.sync(config, &[]);
        assert_eq!(run.code, 0, "{:#}", run.report);
        run.assert_counts(&[("created", 10), ("groups_created", 1), ("members_added", 3)]);
    }
    assert_eq!(env.target.users().len(), 20);
    // Each sees the other's 10 users and 1 group and leaves them alone.
    for config in [&a, &b] {
        let run = env.sync(config, &[]);
        assert_eq!(run.code, 0, "{:#}", run.report);
        run.assert_counts(&[]);
    }

    // B's directory loses a user and a membership: A does nothing about it, B does.
    let b_users_before: Vec<Value> = env
        .target
        .users()
        .into_iter()
        .filter(|u| u["userName"].as_str().unwrap().ends_with("@b.test"))
        .collect();
    env.slapd.delete(&[&env.user_dn("b9")]).unwrap();
    env.modify(
        &env.group_dn("b-staff"),
        "delete",
        "member",
        Some(&env.user_dn("b0")),
    );
    let run = env.sync(&a, &[]);
    assert_eq!(run.code, 0, "{:#}", run.report);
    run.assert_counts(&[]);
    let b_users_after: Vec<Value> = env
        .target
        .users()
        .into_iter()
        .filter(|u| u["userName"].as_str().unwrap().ends_with("@b.test"))
        .collect();
    assert_eq!(b_users_after, b_users_before);
    assert_eq!(env.target.member_names("b-staff").len(), 3);

    // (1 membership of 3 is over the 10% ratio for group removals: allowed explicitly.)
    let run = env.sync(&b, &["--allow-deletions", "1"]);
    assert_eq!(run.code, 0, "{:#}", run.report);
    run.assert_counts(&[("pending_deletion", 1), ("members_removed", 1)]);
    env.target.assert_pending("b9@b.test");
    assert_eq!(
        env.target.member_names("b-staff"),
        ["b1@b.test", "b2@b.test"]
    );
    // A's objects were not touched by B either.
    assert_eq!(env.target.member_names("a-staff").len(), 3);
    assert_eq!(
        env.target
            .users()
            .iter()
            .filter(|u| u["userName"].as_str().unwrap().ends_with("@a.test"))
            .count(),
        10
    );

    // An instance whose LDAP filter reads nothing of the other's still deletes none of them,
    // even with deletions allowed.
    let run = env.sync(&a, &["--allow-deletions", "100"]);
    run.assert_counts(&[]);
}
