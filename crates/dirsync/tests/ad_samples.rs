#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! The vendor's three sample configurations (behaviour §A, `examples/*/config.yml`) load
//! unchanged and behave as documented against a real Samba AD domain controller, each into
//! its own idservice. The test changes only where the directory and the target are (base DN,
//! addresses, port, bind user, base_url) by a text substitution of the file — the mapping
//! sections are exactly what the examples say.

mod ad_common;

use std::path::Path;
use std::time::Instant;

use ad_common::*;
use serde_json::{Value, json};
use testenv::ad_guid_text;

fn example(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../examples")
        .join(name)
        .join("config.yml");
    // It loads as published (nothing to reach at load time), with the secret.yml its header
    // describes. It writes `encryption: none` to a remote DC, which is warned about.
    let secrets = tempfile::tempdir().unwrap();
    let secret = secrets.path().join("secret.yml");
    std::fs::write(&secret, "ad: {ldap: {server: {password: 'pw'}}}\n").unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    let (_config, warnings) = dirsync::config::Config::load(&path, Some(&secret))
        .unwrap_or_else(|e| panic!("examples/{name}/config.yml does not load: {e}"));
    assert_eq!(warnings.len(), 1, "{name}: {warnings:?}");
    assert!(
        warnings[0]
            .message
            .contains("travel in clear to dc1.example.jp"),
        "{name}: {warnings:?}"
    );
    std::fs::read_to_string(&path).unwrap()
}

fn emails(user: &Value) -> Vec<(String, bool)> {
    user["emails"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|e| {
            (
                e["value"].as_str().unwrap_or_default().to_string(),
                e["primary"].as_bool().unwrap_or(false),
            )
        })
        .collect()
}

#[test]
fn vendor_samples_behave_as_documented() {
    if testenv::skip_samba("vendor_samples_behave_as_documented") {
        return;
    }
    let t0 = Instant::now();
    let dc = start_dc("EXAMPLE.TEST", "EXAMPLE");

    // Scope groups in OU=Groups; Sales is nested in "IDaaS users".
    dc.add_ou("Groups").unwrap();
    let idaas = dc.add_group_in("IDaaS users", Some("Groups")).unwrap();
    let sales = dc.add_group_in("Sales", Some("Groups")).unwrap();
    let _other = dc.add_group_in("Other", Some("Groups")).unwrap();
    let m365 = dc
        .add_group_in("Microsoft 365 users", Some("Groups"))
        .unwrap();
    let user = |name: &str, upn: &str| {
        dc.add_user(
            name,
            name,
            "Test",
            Some(&format!("{name}@example.test")),
            Some(upn),
            None,
        )
        .unwrap()
    };
    let alice = user("alice", "Alice.Ando@EXAMPLE.JP"); // direct member
    let bob = user("bob", "bob@example.test"); // member through Sales
    let carol = user("carol", "carol@example.test"); // not in scope
    let dave = user("dave", "dave@example.test"); // member, disabled
    let erin = user("erin", "erin@example.test"); // member, expired
    dc.add_members(&idaas, &[&alice.dn, &dave.dn, &erin.dn, &sales])
        .unwrap();
    dc.add_members(&sales, &[&bob.dn]).unwrap();
    dc.add_members(&m365, &[&alice.dn, &bob.dn]).unwrap();
    dc.disable_user(&dave.dn).unwrap();
    // 2009-10-16: a FILETIME in the past.
    dc.set_attr(&erin.dn, "accountExpires", &["129000000000000000"])
        .unwrap();

    // --- A.1 integrated Windows authentication ------------------------------------------
    {
        let ids = start_idservice();
        let inst = Instance::new(
            &adapt_sample(&example("ad-integrated-windows-auth"), &dc, &ids.url),
            &dc.svc_pw,
            &ids.token,
        );
        let report = inst.sync();
        assert_clean(&report, "A.1 first run");
        let config = inst.load();
        let users = target_users(&config);
        // Exactly the (nested) members of the scope group.
        assert_eq!(
            names(&users),
            vec![
                "Alice.Ando@EXAMPLE.JP",
                "bob@example.test",
                "dave@example.test",
                "erin@example.test"
            ],
            "{}",
            report.to_text()
        );
        assert!(user_named(&users, &carol.upn).is_none());
        let a = user_named(&users, &alice.upn).unwrap();
        assert_eq!(a["externalId"], json!(alice.object_guid));
        // The convert rule lower-cases the domain part of externalUserName only.
        assert_eq!(a[IIJ]["externalUserName"], json!("Alice.Ando@example.jp"));
        assert_eq!(
            a[IIJ]["idTokenClaims"]["issuer"],
            json!("https://idp.example.jp/op")
        );
        assert_eq!(a["active"], json!(true));
        assert_eq!(a["name"]["givenName"], json!("alice"));
        assert_eq!(emails(a), vec![("alice@example.test".to_string(), true)]);
        assert_eq!(
            user_named(&users, &dave.upn).unwrap()["active"],
            json!(false),
            "disabled (userAccountControl 0x2)"
        );
        assert_eq!(
            user_named(&users, &erin.upn).unwrap()["active"],
            json!(false),
            "accountExpires in the past"
        );
        // Groups: the transitive filter selects Sales (nested in the scope group); its
        // members are its direct in-scope members.
        let groups = target_groups(&config);
        let group_names: Vec<&str> = groups
            .iter()
            .filter_map(|g| g["displayName"].as_str())
            .collect();
        assert_eq!(group_names, vec!["Sales"]);
        let sales_members: Vec<&str> = groups[0]["members"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|m| m["value"].as_str())
            .collect();
        let bob_id = user_named(&users, &bob.upn).unwrap()["id"]
            .as_str()
            .unwrap();
        assert_eq!(sales_members, vec![bob_id]);
        assert_eq!(
            groups[0]["externalId"],
            json!(dc.object_guid(&sales).unwrap())
        );

        // Enabling dave and taking erin's expiry away makes both active on the next run.
        dc.enable_user(&dave.dn).unwrap();
        dc.set_attr(&erin.dn, "accountExpires", &["9223372036854775807"])
            .unwrap();
        let report = inst.sync();
        assert_clean(&report, "A.1 second run");
        assert_eq!(report.counts.enabled, 2, "{}", report.to_text());
        let users = target_users(&config);
        assert!(
            users.iter().all(|u| u["active"] == json!(true)),
            "{users:#?}"
        );
        dc.disable_user(&dave.dn).unwrap();
        dc.set_attr(&erin.dn, "accountExpires", &["129000000000000000"])
            .unwrap();
    }

    // --- A.2 Microsoft 365 federation ---------------------------------------------------
    {
        let consistency: Vec<u8> = (0x10u8..0x20).collect();
        dc.set_attr_bytes(&alice.dn, "mS-DS-ConsistencyGuid", &[&consistency])
            .unwrap();
        let ids = start_idservice();
        let inst = Instance::new(
            &adapt_sample(&example("m365-federation"), &dc, &ids.url),
            &dc.svc_pw,
            &ids.token,
        );
        let report = inst.sync();
        assert_clean(&report, "A.2");
        let config = inst.load();
        let users = target_users(&config);
        assert_eq!(
            names(&users),
            vec!["Alice.Ando@EXAMPLE.JP", "bob@example.test"]
        );
        let a = user_named(&users, &alice.upn).unwrap();
        let b = user_named(&users, &bob.upn).unwrap();
        // externalId = UPN; downstreamId = mS-DS-ConsistencyGuid when set, else objectGUID.
        assert_eq!(a["externalId"], json!(alice.upn));
        assert_eq!(b["externalId"], json!(bob.upn));
        assert_eq!(
            a[IIJ]["downstreamId"],
            json!(ad_guid_text(&consistency).unwrap())
        );
        assert_eq!(
            a[IIJ]["downstreamId"],
            json!("13121110-1514-1716-1819-1a1b1c1d1e1f")
        );
        assert_eq!(b[IIJ]["downstreamId"], json!(bob.object_guid));
        assert!(target_groups(&config).is_empty(), "A.2 syncs no groups");
        dc.set_attr_bytes(&alice.dn, "mS-DS-ConsistencyGuid", &[])
            .unwrap();
    }

    // --- A.3 several email addresses ----------------------------------------------------
    {
        dc.set_attr(
            &alice.dn,
            "proxyAddresses",
            &[
                "SMTP:Alice.Primary@example.test",
                "smtp:f@example.test",
                "smtp:b@example.test",
                "X500:/o=Example/ou=Exchange/cn=Recipients/cn=alice",
                "smtp:e@example.test",
                "smtp:c@example.test",
                "sip:alice@example.test",
                "smtp:d@example.test",
            ],
        )
        .unwrap();
        dc.set_attr(&alice.dn, "mail", &["C@EXAMPLE.TEST"]).unwrap(); // a duplicate of smtp:c
        // Samba has no Exchange schema, so no mailNickname attribute: a bare nickname is put
        // in `mail` instead (same rule: a bound value that is not an address is skipped with
        // a warning). frank keeps his proxy address; gina is left with none: her error.
        let frank = user("frank", "frank@example.test");
        dc.set_attr(&frank.dn, "mail", &["frank"]).unwrap();
        dc.set_attr(&frank.dn, "proxyAddresses", &["SMTP:Frank.F@example.test"])
            .unwrap();
        let gina = user("gina", "gina@example.test");
        dc.set_attr(&gina.dn, "mail", &["gina"]).unwrap();
        dc.add_members(&idaas, &[&frank.dn, &gina.dn]).unwrap();
        let ids = start_idservice();
        let inst = Instance::new(
            &adapt_sample(&example("multiple-emails"), &dc, &ids.url),
            &dc.svc_pw,
            &ids.token,
        );
        let report = inst.sync();
        assert!(report.failures.is_empty(), "{}", report.to_text());
        assert_eq!(report.skipped.len(), 1, "{}", report.to_text());
        assert_eq!(report.skipped[0].object, gina.dn);
        assert!(
            report.skipped[0].message.contains("emails"),
            "{}",
            report.to_text()
        );
        let users = target_users(&inst.load());
        assert!(user_named(&users, &gina.upn).is_none());
        let a = user_named(&users, &alice.upn).unwrap();
        assert_eq!(
            emails(a),
            vec![
                ("Alice.Primary@example.test".to_string(), true),
                ("b@example.test".to_string(), false),
                ("c@example.test".to_string(), false),
                ("d@example.test".to_string(), false),
                ("e@example.test".to_string(), false),
            ],
            "SMTP: primary, then the others sorted, deduplicated, at most 5"
        );
        let warned = |needle: &str| {
            report
                .warnings
                .iter()
                .any(|w| w.contains(&alice.dn) && w.contains(needle))
        };
        assert!(
            warned("dropped f@example.test"),
            "cap warning: {:?}",
            report.warnings
        );
        let f = user_named(&users, &frank.upn).unwrap();
        assert_eq!(emails(f), vec![("Frank.F@example.test".to_string(), true)]);
        assert!(
            report
                .warnings
                .iter()
                .any(|w| w.contains(&frank.dn) && w.contains("skipped \"frank\"")),
            "bare value warning: {:?}",
            report.warnings
        );
        // bob has only mail (the second binding, flagged `primary: false`): his one
        // address is sent, not marked primary (only the SMTP: proxy address is).
        let b = user_named(&users, &bob.upn).unwrap();
        let values: Vec<String> = emails(b).into_iter().map(|(v, _)| v).collect();
        assert_eq!(values, vec!["bob@example.test"]);
    }
    eprintln!(
        "TIMING ad_samples total {:.1} s",
        t0.elapsed().as_secs_f64()
    );
}
