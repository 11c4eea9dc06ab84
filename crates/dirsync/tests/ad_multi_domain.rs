#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Two Active Directory domains (two Samba forests, EXAMPLE.TEST and OTHER.TEST) into one
//! idservice, one dirsync instance per domain (behaviour §4.2, 4.3).
//!
//! How the instances are kept apart: each reads its own DC, and each owns only target users
//! whose userName is in its domain — `iid.scim.filter.user: 'userName ew "@example.test"'`
//! and `'userName ew "@other.test"'` (UPN suffixes are per domain, so the filters are
//! disjoint). Both may sync groups (`displayName pr`); a group is then touched only by the
//! instance that created it (ownership, behaviour §4.3). The instance that must not sync groups
//! uses the vendor's idiom: LDAP group filter `'!(cn=*)'`, SCIM group filter
//! `'displayName eq ""'`.

mod ad_common;

use std::collections::BTreeMap;

use ad_common::*;
use dirsync::plan::ErrorKind;
use serde_json::Value;
use testenv::SambaDc;

fn config(dc: &SambaDc, base_url: &str, suffix: &str, groups: bool) -> String {
    let (ldap_group, scim_group) = if groups {
        ("'cn=*'", "'displayName pr'")
    } else {
        ("'!(cn=*)'", "'displayName eq \"\"'")
    };
    format!(
        "ad:\n  ldap:\n    server:\n      addresses: ['{ip}']\n      port: {port}\n      user: '{user}'\n    base_dn: 'OU=corp,{base}'\n    filter:\n      group: {ldap_group}\niid:\n  scim:\n    base_url: '{base_url}'\n    filter:\n      user: 'userName ew \"{suffix}\"'\n      group: {scim_group}\nsync:\n  max_deletion_ratio: 1.0\n",
        ip = dc.ip,
        port = dc.ldap_port,
        user = dc.svc_dn,
        base = dc.base_dn,
    )
}

/// displayName → (id, sorted member ids) of every target group.
fn group_view(groups: &[Value]) -> BTreeMap<String, (String, Vec<String>)> {
    groups
        .iter()
        .map(|g| {
            let mut members: Vec<String> = g["members"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .iter()
                .filter_map(|m| m["value"].as_str().map(str::to_string))
                .collect();
            members.sort();
            (
                g["displayName"].as_str().unwrap_or_default().to_string(),
                (g["id"].as_str().unwrap_or_default().to_string(), members),
            )
        })
        .collect()
}

fn no_group_writes(report: &dirsync::report::Report) -> bool {
    let c = &report.counts;
    c.groups_created == 0
        && c.groups_updated == 0
        && c.groups_deleted == 0
        && c.members_added == 0
        && c.members_removed == 0
}

#[test]
fn two_domains_one_idservice() {
    if testenv::skip_samba("two_domains_one_idservice") {
        return;
    }
    let t0 = std::time::Instant::now();
    let dc_a = start_dc("EXAMPLE.TEST", "EXAMPLE");
    let dc_b = start_dc("OTHER.TEST", "OTHER");
    // Runs after the first are incremental (issue 5): the service accounts must see
    // tombstones for a deleted group to be noticed before the full reconcile.
    for dc in [&dc_a, &dc_b] {
        dc.grant_deleted_objects_read("svc-dirsync").unwrap();
    }
    let ids = start_idservice();
    for dc in [&dc_a, &dc_b] {
        dc.add_ou("corp").unwrap();
    }
    let user = |dc: &SambaDc, name: &str| {
        dc.add_user(
            name,
            name,
            "Test",
            Some(&format!("{name}@mail.test")),
            None,
            Some("corp"),
        )
        .unwrap()
    };
    let a1 = user(&dc_a, "a1");
    let a2 = user(&dc_a, "a2");
    let b1 = user(&dc_b, "b1");
    let b2 = user(&dc_b, "b2");
    let staff_a = dc_a.add_group_in("Staff", Some("corp")).unwrap();
    dc_a.add_members(&staff_a, &[&a1.dn, &a2.dn]).unwrap();
    let only_a = dc_a.add_group_in("OnlyA", Some("corp")).unwrap();
    dc_a.add_members(&only_a, &[&a1.dn]).unwrap();
    let staff_b = dc_b.add_group_in("Staff", Some("corp")).unwrap();
    dc_b.add_members(&staff_b, &[&b1.dn]).unwrap();

    let inst_a = Instance::new(
        &config(&dc_a, &ids.url, "@example.test", true),
        &dc_a.svc_pw,
        &ids.token,
    );
    let inst_b = Instance::new(
        &config(&dc_b, &ids.url, "@other.test", true),
        &dc_b.svc_pw,
        &ids.token,
    );
    let cfg = inst_a.load();

    let report = inst_a.sync();
    assert_clean(&report, "A first run");
    assert_eq!(report.counts.groups_created, 2);

    // --- Same group name in both domains: detected and refused --------------------------
    let report = inst_b.sync();
    assert_eq!(report.counts.created, 2, "{}", report.to_text());
    assert_eq!(report.counts.groups_created, 0, "{}", report.to_text());
    let before = group_view(&target_groups(&cfg));
    let (staff_id, staff_members) = before["Staff"].clone();
    assert_eq!(report.skipped.len(), 1, "{}", report.to_text());
    let refusal = &report.skipped[0];
    assert_eq!(refusal.kind, ErrorKind::NameTaken, "{}", report.to_text());
    // Both DNs: this domain's as the object, the other domain's from the ownership mark
    // instance A wrote on the target group (behaviour §4.3), with the target id that holds the name.
    assert_eq!(refusal.object, staff_b);
    assert!(refusal.message.contains(&staff_a), "{}", refusal.message);
    // The externalId in the message is the other domain's objectGUID of its Staff group:
    // that names the other object in its own directory (`<GUID=…>`).
    let staff_a_guid = dc_a.object_guid(&staff_a).unwrap();
    assert!(
        refusal.message.contains(&staff_id)
            && refusal.message.contains("Staff")
            && refusal.message.contains(&staff_a_guid),
        "{}",
        refusal.message
    );
    eprintln!(
        "same-name group refusal: {}: {}",
        refusal.object, refusal.message
    );
    assert_eq!(report.exit_code, 1);
    // A's group was not touched.
    assert_eq!(staff_members.len(), 2);
    // A still sees nothing to do.
    let report = inst_a.sync();
    assert_clean(&report, "A after B");
    assert!(report.no_changes(), "{}", report.to_text());

    // --- B stops syncing groups: it never writes a group while A's come and go ----------
    inst_b.rewrite(&config(&dc_b, &ids.url, "@other.test", false));
    let report = inst_b.sync();
    assert_clean(&report, "B without groups");
    assert!(no_group_writes(&report), "{}", report.to_text());
    assert_eq!(report.read_groups, 0);
    assert_eq!(group_view(&target_groups(&cfg)), before);

    let new_a = dc_a.add_group_in("NewA", Some("corp")).unwrap();
    dc_a.add_members(&new_a, &[&a2.dn]).unwrap();
    dc_a.delete_group(&only_a).unwrap();
    dc_a.remove_members(&staff_a, &[&a2.dn]).unwrap();
    let report = inst_a.sync();
    assert_clean(&report, "A groups change");
    assert_eq!(report.counts.groups_created, 1, "{}", report.to_text());
    assert_eq!(report.counts.groups_deleted, 1, "{}", report.to_text());
    assert_eq!(report.counts.members_removed, 1, "{}", report.to_text());
    let after_a = group_view(&target_groups(&cfg));
    assert_eq!(
        after_a.keys().cloned().collect::<Vec<_>>(),
        vec!["NewA", "Staff"]
    );
    let report = inst_b.sync();
    assert_clean(&report, "B after A's group changes");
    assert!(no_group_writes(&report), "{}", report.to_text());
    assert!(report.no_changes(), "{}", report.to_text());
    assert_eq!(group_view(&target_groups(&cfg)), after_a);

    // --- Users of both domains coexist; one leaves B's scope ----------------------------
    let users = target_users(&cfg);
    assert_eq!(
        names(&users),
        vec![
            "a1@example.test",
            "a2@example.test",
            "b1@other.test",
            "b2@other.test"
        ]
    );
    assert!(
        users
            .iter()
            .all(|u| !is_pending(u) && u["active"] == Value::Bool(true))
    );
    dc_b.move_to(&b2.dn, &format!("CN=Users,{}", dc_b.base_dn))
        .unwrap();
    let report = inst_b.sync();
    assert_clean(&report, "B after b2 left");
    assert_eq!(report.counts.pending_deletion, 1, "{}", report.to_text());
    let users = target_users(&cfg);
    assert!(is_pending(user_named(&users, &b2.upn).unwrap()));
    for u in [&a1, &a2, &b1] {
        let t = user_named(&users, &u.upn).unwrap();
        assert!(!is_pending(t) && t["active"] == Value::Bool(true), "{t:#}");
    }
    // A does not see B's pending user as anything to do.
    let report = inst_a.sync();
    assert_clean(&report, "A at the end");
    assert!(report.no_changes(), "{}", report.to_text());
    // The other domain's group membership is intact (NewA: a2; Staff: a1).
    assert_eq!(group_view(&target_groups(&cfg)), after_a);
    eprintln!("TIMING ad_multi_domain {:.1} s", t0.elapsed().as_secs_f64());
}
