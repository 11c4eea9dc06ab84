#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Re-created accounts (behaviour §4.1, 7.6) against a real Samba AD DC: a user deleted and
//! re-created in AD gets a new objectGUID.
//!
//! One instance anchors users on `externalId: [mS-DS-ConsistencyGuid, objectGUID]` (the
//! Microsoft sync tool's anchor, falling back to objectGUID where it is not set):
//! - carl has no mS-DS-ConsistencyGuid: his re-created account is refused while the old one
//!   is pending deletion, with the explanation; after `idservice users purge-pending` it
//!   syncs as a new user;
//! - dora's mS-DS-ConsistencyGuid is copied to her new account (as an administrator or the
//!   Microsoft tool does): the pending user is restored instead.

mod ad_common;

use ad_common::*;
use dirsync::plan::ErrorKind;
use serde_json::json;
use testenv::ad_guid_text;

#[test]
fn recreated_accounts() {
    if testenv::skip_samba("recreated_accounts") {
        return;
    }
    let t0 = std::time::Instant::now();
    let dc = start_dc("EXAMPLE.TEST", "EXAMPLE");
    // Runs after the first are incremental (issue 5): the service account must see tombstones
    // for a deletion to be noticed before the periodic full reconcile (docs/dirsync.md).
    dc.grant_deleted_objects_read("svc-dirsync").unwrap();
    let ids = start_idservice();
    dc.add_ou("corp").unwrap();
    let add = |name: &str| add_corp_user(&dc, name);
    let carl = add("carl");
    let dora = add("dora");
    let eve = add("eve"); // stays: keeps the deletion ratio sane and shows nobody else moves
    // dora carries mS-DS-ConsistencyGuid = her objectGUID bytes (what the Microsoft tool sets).
    let dora_guid = dc.values(&dora.dn, "objectGUID").unwrap().remove(0);
    dc.set_attr_bytes(&dora.dn, "mS-DS-ConsistencyGuid", &[&dora_guid])
        .unwrap();
    let config = format!(
        "ad:\n  ldap:\n    server:\n      addresses: ['{}']\n      port: {}\n      user: '{}'\n    base_dn: 'OU=corp,{}'\n    filter:\n      group: '!(cn=*)'\niid:\n  scim:\n    base_url: '{}'\n    filter:\n      group: 'displayName eq \"\"'\n    attribute:\n      user:\n        ad_bind:\n          externalId: [mS-DS-ConsistencyGuid, objectGUID]\nsync:\n  max_deletion_ratio: 1.0\n",
        dc.ip, dc.ldap_port, dc.svc_dn, dc.base_dn, ids.url
    );
    let inst = Instance::new(&config, &dc.svc_pw, &ids.token);
    let cfg = inst.load();
    let report = inst.sync();
    assert_clean(&report, "first run");
    assert_eq!(report.counts.created, 3);
    let users = target_users(&cfg);
    let old_carl = user_named(&users, &carl.upn).unwrap().clone();
    let old_dora = user_named(&users, &dora.upn).unwrap().clone();
    assert_eq!(old_carl["externalId"], json!(carl.object_guid));
    assert_eq!(
        old_dora["externalId"],
        json!(ad_guid_text(&dora_guid).unwrap())
    );

    // Both deleted in AD → pending deletion in the target.
    dc.delete_user(&carl.dn).unwrap();
    dc.delete_user(&dora.dn).unwrap();
    let report = inst.sync();
    assert_clean(&report, "after deletes");
    assert_eq!(report.counts.pending_deletion, 2, "{}", report.to_text());

    // Re-created with the same names: new objectGUIDs.
    let carl2 = add("carl");
    let dora2 = add("dora");
    assert_ne!(carl2.object_guid, carl.object_guid);
    dc.set_attr_bytes(&dora2.dn, "mS-DS-ConsistencyGuid", &[&dora_guid])
        .unwrap();

    let report = inst.sync();
    // dora: the same anchor (mS-DS-ConsistencyGuid) → restored.
    assert_eq!(report.counts.restored, 1, "{}", report.to_text());
    assert_eq!(report.counts.created, 0, "{}", report.to_text());
    // carl: refused, with the cause and both fixes.
    assert_eq!(report.skipped.len(), 1, "{}", report.to_text());
    let refusal = &report.skipped[0];
    assert_eq!(refusal.kind, ErrorKind::RecreatedUser);
    assert!(refusal.object.contains("CN=carl"), "{}", refusal.object);
    for needle in [
        "pending deletion",
        "re-created",
        "purge-pending --user carl@example.test",
        "mS-DS-ConsistencyGuid",
        &carl2.object_guid,
    ] {
        assert!(
            refusal.message.contains(needle),
            "{needle}: {}",
            refusal.message
        );
    }
    assert_eq!(report.exit_code, 1);
    let users = target_users(&cfg);
    let c = user_named(&users, &carl.upn).unwrap();
    assert!(is_pending(c), "carl's old user untouched: {c:#}");
    assert_eq!(c["externalId"], json!(carl.object_guid));
    let d = user_named(&users, &dora.upn).unwrap();
    assert!(!is_pending(d) && d["active"] == json!(true), "{d:#}");
    assert_eq!(d["id"], old_dora["id"], "restored, not a new user");
    assert_eq!(d["externalId"], old_dora["externalId"]);
    assert!(!is_pending(user_named(&users, &eve.upn).unwrap()));

    // The administrator purges the old carl; the next run creates the new one.
    ids.admin_command(&["users", "purge-pending", "--user", &carl.upn])
        .unwrap();
    let report = inst.sync();
    assert_clean(&report, "after purge");
    assert_eq!(report.counts.created, 1, "{}", report.to_text());
    let users = target_users(&cfg);
    let c = user_named(&users, &carl.upn).unwrap();
    assert!(!is_pending(c));
    assert_eq!(c["externalId"], json!(carl2.object_guid));
    assert_ne!(c["id"], old_carl["id"]);
    let report = inst.sync();
    assert_clean(&report, "steady state");
    assert!(report.no_changes(), "{}", report.to_text());
    eprintln!("TIMING ad_recreate {:.1} s", t0.elapsed().as_secs_f64());
}
