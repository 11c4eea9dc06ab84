#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use chrono::TimeZone;
use serde_json::json;

use super::*;

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 27, 0, 0, 0).unwrap()
}

fn mapping(yaml: &str) -> UserMapping {
    serde_saphyr::from_str(yaml).unwrap()
}

const GUID: [u8; 16] = [
    0x33, 0x22, 0x11, 0x00, 0x55, 0x44, 0x77, 0x66, 0x88, 0x99, 0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff,
];
const GUID_TEXT: &str = "00112233-4455-6677-8899-aabbccddeeff";

fn ad_user() -> Entry {
    Entry::new("CN=Taro,OU=People,DC=example,DC=jp")
        .with("objectGUID", GUID)
        .with("userPrincipalName", "taro@EXAMPLE.JP")
        .with("sn", "Yamada")
        .with("givenName", "Taro")
        .with("userAccountControl", "512")
        .with("accountExpires", "0")
        .with("mail", "taro@example.jp")
}

const REFERENCE_MAPPING: &str = r#"
default:
  emails: [ { primary: true } ]
  preferredLanguage: ja-JP
  idTokenClaims: { issuer: 'https://idp.example.jp/op' }
  phoneNumbers: { type: work }
ad_bind:
  externalId: objectGUID
  downstreamId: [mS-DS-ConsistencyGuid, objectGUID]
  userName: userPrincipalName
  name: { familyName: sn, givenName: givenName }
  localNames: { familyName: msDS-PhoneticLastName, givenName: msDS-PhoneticFirstName }
  active: [userAccountControl, accountExpires]
  externalUserName: userPrincipalName
  emails: [ { value: proxyAddresses }, { value: mail } ]
  title: title
  department: department
  preferredLanguage: preferredLanguage
  phoneNumbers: { value: telephoneNumber }
convert:
  externalUserName:
    - pattern: '@EXAMPLE\.JP\z'
      replacement: '@example.jp'
"#;

#[test]
fn spec_sample_mapping_produces_full_resource() {
    let entry = ad_user()
        .with("proxyAddresses", "SMTP:Taro.Yamada@example.jp")
        .with("proxyAddresses", "smtp:taro@example.jp")
        .with("proxyAddresses", "X500:/o=Example/cn=taro")
        .with("title", "Engineer")
        .with("department", "R&D")
        .with("telephoneNumber", "+81-3-1234-5678")
        .with("msDS-PhoneticLastName", "ヤマダ")
        .with("msDS-PhoneticFirstName", "タロウ");
    let user = map_user(
        &entry,
        &mapping(REFERENCE_MAPPING),
        DirectoryKind::ActiveDirectory,
        now(),
    )
    .unwrap();
    assert_eq!(user.anchor, GUID_TEXT);
    assert!(user.active);
    assert_eq!(
        user.resource.value(),
        json!({
            "externalId": GUID_TEXT,
            "userName": "taro@EXAMPLE.JP",
            "active": true,
            "title": "Engineer",
            "preferredLanguage": "ja-JP",
            "name": {"familyName": "Yamada", "givenName": "Taro"},
            "emails": [
                {"value": "Taro.Yamada@example.jp", "primary": true},
                {"value": "taro@example.jp"}
            ],
            "phoneNumbers": [{"value": "tel:+81-3-1234-5678", "type": "work"}],
            (scim::urn::ENTERPRISE_USER): {"department": "R&D"},
            (scim::urn::IIJ_USER): {
                "downstreamId": GUID_TEXT,
                "externalUserName": "taro@example.jp",
                "localNames": {"familyName": "ヤマダ", "givenName": "タロウ"},
                "idTokenClaims": {"issuer": "https://idp.example.jp/op"}
            },
            "schemas": [scim::urn::USER, scim::urn::ENTERPRISE_USER, scim::urn::IIJ_USER]
        })
    );
}

#[test]
fn active_from_account_control_and_expiry() {
    // 2020-01-01 as FILETIME.
    let expired = "132223104000000000";
    let table: &[(&str, &str, bool)] = &[
        ("512", "0", true),
        ("514", "0", false),
        ("512", expired, false),
        ("512", "9223372036854775807", true),
    ];
    for (uac, exp, want) in table {
        let mut e = ad_user().into_builder();
        e.set("useraccountcontrol", [uac.as_bytes()]);
        e.set("accountexpires", [exp.as_bytes()]);
        let e = e.build();
        let u = map_user(
            &e,
            &UserMapping::default(),
            DirectoryKind::ActiveDirectory,
            now(),
        )
        .unwrap();
        assert_eq!(u.active, *want, "uac={uac} expires={exp}");
        assert_eq!(u.resource.value()["active"], json!(*want));
    }
}

#[test]
fn openldap_defaults() {
    let e = Entry::new("uid=hanako,ou=People,dc=example,dc=jp")
        .with("objectClass", "inetOrgPerson")
        .with("entryUUID", "0b7e1f9a-1111-2222-3333-444455556666")
        .with("uid", "hanako")
        .with("sn", "Suzuki")
        .with("givenName", "Hanako");
    let u = map_user(&e, &UserMapping::default(), DirectoryKind::OpenLdap, now()).unwrap();
    // No mail: userName falls back to uid, and no emails (default binding, not an error).
    assert_eq!(u.user_name, "hanako");
    assert_eq!(u.anchor, "0b7e1f9a-1111-2222-3333-444455556666");
    assert!(u.active);
    assert!(u.resource.value().get("emails").is_none());
    let e = e
        .with("mail", "hanako@example.jp")
        .with("pwdAccountLockedTime", "000001010000Z");
    let m = mapping("ad_bind: { active: pwdAccountLockedTime }");
    let u = map_user(&e, &m, DirectoryKind::OpenLdap, now()).unwrap();
    assert_eq!(u.user_name, "hanako@example.jp");
    assert_eq!(
        u.resource.value()["emails"],
        json!([{"value": "hanako@example.jp"}])
    );
    assert!(!u.active);
}

#[test]
fn email_rules_table() {
    // (proxyAddresses values, mail, mailNickname, expected emails, warnings contain)
    type Row = (
        &'static [&'static str],
        Option<&'static str>,
        Option<&'static str>,
        Value,
        &'static [&'static str],
    );
    let rows: Vec<Row> = vec![
        // Upper-case SMTP: is primary even when listed last; smtp: others; X500 ignored.
        (
            &["smtp:b@x.jp", "X500:/o=x", "SMTP:a@x.jp"],
            None,
            None,
            json!([{"value": "a@x.jp", "primary": true}, {"value": "b@x.jp"}]),
            &[],
        ),
        // Case-insensitive de-duplication across bindings.
        (
            &["SMTP:A@x.jp"],
            Some("a@X.jp"),
            None,
            json!([{"value": "A@x.jp", "primary": true}]),
            &[],
        ),
        // Cap: 1 primary + 4 others sorted; the rest dropped with a warning.
        (
            &[
                "SMTP:p@x.jp",
                "smtp:f@x.jp",
                "smtp:e@x.jp",
                "smtp:d@x.jp",
                "smtp:c@x.jp",
                "smtp:b@x.jp",
            ],
            None,
            None,
            json!([
                {"value": "p@x.jp", "primary": true},
                {"value": "b@x.jp"}, {"value": "c@x.jp"}, {"value": "d@x.jp"}, {"value": "e@x.jp"}
            ]),
            &["dropped f@x.jp"],
        ),
        // A bare nickname is skipped with a warning.
        (
            &[],
            Some("m@x.jp"),
            Some("taro"),
            json!([{"value": "m@x.jp", "primary": true}]),
            &["skipped \"taro\""],
        ),
    ];
    let m = mapping(
        "default: {emails: [{primary: true}, {primary: true}, {primary: false}]}\n\
         ad_bind: {emails: [{value: proxyAddresses}, {value: mail}, {value: mailNickname}]}",
    );
    for (i, (proxies, mail, nick, want, warns)) in rows.into_iter().enumerate() {
        let mut e = ad_user().into_builder();
        e.remove("mail");
        for p in proxies {
            e.push("proxyAddresses", p.as_bytes().to_vec());
        }
        if let Some(v) = mail {
            e.push("mail", v.as_bytes().to_vec());
        }
        if let Some(v) = nick {
            e.push("mailNickname", v.as_bytes().to_vec());
        }
        let e = e.build();
        let u = map_user(&e, &m, DirectoryKind::ActiveDirectory, now()).unwrap();
        assert_eq!(u.resource.value()["emails"], want, "row {i}");
        for w in warns {
            assert!(
                u.warnings.iter().any(|x| x.contains(w)),
                "row {i}: {:?}",
                u.warnings
            );
        }
    }
}

#[test]
fn per_user_errors() {
    let m = mapping(REFERENCE_MAPPING);
    let table: &[(&str, Entry, &str)] = &[
        (
            "no address at all with explicit email binding",
            {
                let mut e = ad_user().into_builder();
                e.remove("mail");
                e.build().with("proxyAddresses", "X500:/o=x")
            },
            "emails",
        ),
        (
            "local phone number",
            ad_user().with("telephoneNumber", "03-1234-5678"),
            "phoneNumbers",
        ),
        (
            "missing userName",
            {
                let mut e = ad_user().into_builder();
                e.remove("userprincipalname");
                e.build()
            },
            "userName",
        ),
        (
            "bad GUID",
            {
                let mut e = ad_user().into_builder();
                e.set("objectguid", [b"xyz"]);
                e.build()
            },
            "externalId",
        ),
    ];
    for (why, entry, attr) in table {
        let err = map_user(entry, &m, DirectoryKind::ActiveDirectory, now()).unwrap_err();
        assert_eq!(err.attribute, *attr, "{why}: {err}");
        assert_eq!(err.dn, entry.dn);
    }
    let err = map_user(
        &ad_user().with("telephoneNumber", "03-1234-5678"),
        &m,
        DirectoryKind::ActiveDirectory,
        now(),
    )
    .unwrap_err();
    // The anchor is known, so the planner can leave the target user alone.
    assert_eq!(err.anchor.as_deref(), Some(GUID_TEXT));
    assert!(err.message.contains("RFC 3966"));
}

#[test]
fn convert_rules_apply_in_order() {
    let m = mapping(
        "ad_bind: {userName: sAMAccountName}\n\
         convert:\n  userName:\n    - {pattern: '\\A(.*)\\z', replacement: '\\1@corp'}\n    - {pattern: 'corp\\z', replacement: 'corp.example.jp'}",
    );
    let e = ad_user().with("sAMAccountName", "taro");
    let u = map_user(&e, &m, DirectoryKind::ActiveDirectory, now()).unwrap();
    assert_eq!(u.user_name, "taro@corp.example.jp");
}

#[test]
fn empty_binding_turns_off_default() {
    let m = mapping("ad_bind: {emails: []}");
    let u = map_user(&ad_user(), &m, DirectoryKind::ActiveDirectory, now());
    // Explicitly bound to nothing: no address is then an error by the emails rule.
    assert_eq!(u.unwrap_err().attribute, "emails");
}

#[test]
fn groups_and_members() {
    let gm: GroupMapping = serde_saphyr::from_str(
        "ad_bind: { externalId: objectGUID, displayName: name, email: mail }",
    )
    .unwrap();
    let g = Entry::new("CN=Staff,OU=Groups,DC=example,DC=jp")
        .with("objectGUID", GUID)
        .with("name", "Staff")
        .with("mail", "staff@example.jp")
        .with("member", "CN=Taro,OU=People,DC=example,DC=jp")
        .with("member", "CN=Sub,OU=Groups,DC=example,DC=jp")
        .with("member", "CN=Outsider,OU=Other,DC=example,DC=jp");
    let sub = Entry::new("CN=Sub,OU=Groups,DC=example,DC=jp")
        .with("objectGUID", [1u8; 16])
        .with("name", "Sub")
        .with("member", "cn=hanako, ou=People, dc=example, dc=jp")
        .with("member", "CN=Staff,OU=Groups,DC=example,DC=jp");
    let staff = map_group(&g, &gm, DirectoryKind::ActiveDirectory, "member").unwrap();
    assert_eq!(
        staff.resource,
        json!({
            "schemas": [scim::urn::GROUP, scim::urn::IIJ_GROUP],
            "externalId": GUID_TEXT,
            "displayName": "Staff",
            (scim::urn::IIJ_GROUP): {"email": "staff@example.jp"}
        })
    );
    let subg = map_group(&sub, &gm, DirectoryKind::ActiveDirectory, "member").unwrap();
    let taro_e = ad_user();
    let hanako_e = Entry::new("CN=Hanako,OU=People,DC=example,DC=jp")
        .with("objectGUID", [2u8; 16])
        .with("userPrincipalName", "hanako@example.jp");
    let taro = map_user(
        &taro_e,
        &UserMapping::default(),
        DirectoryKind::ActiveDirectory,
        now(),
    )
    .unwrap();
    let hanako = map_user(
        &hanako_e,
        &UserMapping::default(),
        DirectoryKind::ActiveDirectory,
        now(),
    )
    .unwrap();
    let users = [(&taro_e, &taro), (&hanako_e, &hanako)];
    let groups = [staff, subg];
    let direct = resolve_members(
        &MemberSpec {
            member_user_attribute: "dn".into(),
            flatten_nested_groups: false,
        },
        &users,
        &groups,
    );
    assert_eq!(
        direct,
        vec![vec![taro.anchor.clone()], vec![hanako.anchor.clone()]]
    );
    let flat = resolve_members(
        &MemberSpec {
            member_user_attribute: "dn".into(),
            flatten_nested_groups: true,
        },
        &users,
        &groups,
    );
    let mut both = vec![taro.anchor.clone(), hanako.anchor.clone()];
    both.sort();
    assert_eq!(flat, vec![both.clone(), both]);
}

#[test]
fn member_uid_groups() {
    let taro_e = Entry::new("uid=taro,ou=People,dc=example,dc=jp")
        .with("entryUUID", "u-1")
        .with("uid", "taro")
        .with("mail", "taro@example.jp");
    let taro = map_user(
        &taro_e,
        &UserMapping::default(),
        DirectoryKind::OpenLdap,
        now(),
    )
    .unwrap();
    let g = Entry::new("cn=dev,ou=Groups,dc=example,dc=jp")
        .with("entryUUID", "g-1")
        .with("cn", "dev")
        .with("memberUid", "TARO")
        .with("memberUid", "nobody");
    let dev = map_group(
        &g,
        &GroupMapping::default(),
        DirectoryKind::OpenLdap,
        "memberUid",
    )
    .unwrap();
    assert_eq!(dev.display_name, "dev");
    let m = resolve_members(
        &MemberSpec {
            member_user_attribute: "uid".into(),
            flatten_nested_groups: false,
        },
        &[(&taro_e, &taro)],
        &[dev],
    );
    assert_eq!(m, vec![vec!["u-1".to_string()]]);
}
