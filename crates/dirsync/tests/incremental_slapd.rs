#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Issue 5, OpenLDAP: the syncrepl reader (`source::syncrepl`) against a real slapd, once with
//! `syncprov-sessionlog` (the server answers with the delete phase) and once without (present
//! phase). After every directory change, the change set applied to the cached image must give
//! exactly what a fresh full read gives (same stable ids, same entries attribute by attribute),
//! and each step must really have changed the directory, so an unchanged image cannot pass.
//!
//! Disabling: OpenLDAP has no standard "disabled" flag without the ppolicy overlay; as in
//! `e2e_slapd.rs`, `active` is bound to `employeeType` (`false` = disabled).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use dirsync::config::Config;
use dirsync::mapping::{DirectoryKind, map_user};
use dirsync::source::changes::{ChangeSet, Cursor, apply};
use dirsync::source::ldap::LdapSource;
use dirsync::source::syncrepl::{DirectoryChanges, read_changes, stable_id};
use dirsync::source::{DirectorySearches, Entry, ldap_searches, ldap_settings};
use serde_json::json;
use testenv::{Slapd, SlapdOptions};

type Image = BTreeMap<String, Entry>;

/// Which syncprov configuration the scenario runs against.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Variant {
    /// `syncprov-sessionlog` and `syncprov-reloadhint`: deletions come as a delete phase, a
    /// stale cookie as e-syncRefreshRequired.
    SessionLog,
    /// Neither: every refresh with a cookie is a present phase, a stale cookie a full
    /// present-phase refresh.
    NoSessionLog,
}

#[tokio::test]
async fn incremental_with_sessionlog() {
    scenario(Variant::SessionLog).await;
}

#[tokio::test]
async fn incremental_without_sessionlog() {
    scenario(Variant::NoSessionLog).await;
}

struct Harness {
    slapd: Slapd,
    config: Config,
    searches: DirectorySearches,
    users: Image,
    groups: Image,
    cursor: Option<Cursor>,
    _dir: tempfile::TempDir,
}

impl Harness {
    async fn connect(&self) -> LdapSource {
        LdapSource::connect(&ldap_settings(&self.config))
            .await
            .expect("connect")
    }

    /// A full read, as `dirsync sync` does it, keyed by stable id.
    async fn full_read(&self) -> (Image, Image) {
        let read = dirsync::source::read(&self.config)
            .await
            .expect("full read");
        assert!(read.read.complete, "{:?}", read.read.notes);
        let key = |entries: Vec<Entry>| -> Image {
            entries
                .into_iter()
                .map(|e| (stable_id(&e).expect("entryUUID"), e))
                .collect()
        };
        (key(read.read.users), key(read.read.groups))
    }

    async fn changes(&self, cursor: Option<&Cursor>) -> DirectoryChanges {
        let source = self.connect().await;
        let changes = read_changes(&source, &self.searches, cursor)
            .await
            .expect("read_changes");
        source.close().await;
        changes
    }

    /// Reads the changes since the stored cursor, applies them, and checks the image against
    /// a full read. `changed` says whether this step changed the directory: then the image
    /// must have moved, otherwise not.
    async fn step(&mut self, name: &str, changed: bool) -> DirectoryChanges {
        let before = (self.users.clone(), self.groups.clone());
        let changes = self.changes(self.cursor.as_ref()).await;
        assert_eq!(
            changes.full_reload_required(),
            None,
            "{name}: unexpected full reload"
        );
        assert!(changes.users.next.is_none() && changes.groups.next.is_none());
        apply(&mut self.users, &changes.users, stable_id);
        apply(&mut self.groups, &changes.groups, stable_id);
        let (users, groups) = self.full_read().await;
        assert_same(name, "users", &self.users, &users);
        assert_same(name, "groups", &self.groups, &groups);
        assert_eq!(
            before != (users, groups),
            changed,
            "{name}: the step did {}change the directory",
            if changed { "not " } else { "" }
        );
        assert_eq!(changes.is_empty(), !changed, "{name}: {changes:#?}");
        self.cursor = Some(changes.next.clone().expect("a cursor after a refresh"));
        changes
    }
}

/// Same stable ids, and the same entries attribute by attribute (operational ones included:
/// both reads request `*` and `+`).
fn assert_same(step: &str, what: &str, image: &Image, full: &Image) {
    let ids = |m: &Image| m.keys().cloned().collect::<Vec<_>>();
    assert_eq!(ids(image), ids(full), "{step}: {what}: stable ids differ");
    for (id, entry) in full {
        assert_eq!(&image[id], entry, "{step}: {what}: {id} differs");
    }
}

/// Which phase a change set came from: the present phase lists what remains.
fn phase(set: &ChangeSet) -> &'static str {
    if set.present.is_some() {
        "present"
    } else {
        "delete"
    }
}

fn user(uid: &str, ou: &str, base: &str) -> String {
    format!(
        "dn: uid={uid},ou={ou},ou=corp,{base}\nobjectClass: inetOrgPerson\nuid: {uid}\ncn: {uid}\n\
         sn: {uid}\nmail: {uid}@example.test\nemployeeType: true\n\n"
    )
}

async fn start(variant: Variant) -> Harness {
    let slapd = Slapd::start_with(SlapdOptions {
        sessionlog: if variant == Variant::SessionLog {
            100_000
        } else {
            0
        },
        reload_hint: variant == Variant::SessionLog,
        ..SlapdOptions::default()
    })
    .expect("start slapd");
    let base = slapd.base.clone();
    let mut ldif = format!(
        "dn: ou=corp,{base}\nobjectClass: organizationalUnit\nou: corp\n\n\
         dn: ou=outside,{base}\nobjectClass: organizationalUnit\nou: outside\n\n"
    );
    for ou in ["people", "staff", "groups"] {
        ldif.push_str(&format!(
            "dn: ou={ou},ou=corp,{base}\nobjectClass: organizationalUnit\nou: {ou}\n\n"
        ));
    }
    for uid in ["u1", "u2", "u3", "u4"] {
        ldif.push_str(&user(uid, "people", &base));
    }
    ldif.push_str(&format!(
        "dn: cn=g1,ou=groups,ou=corp,{base}\nobjectClass: groupOfNames\ncn: g1\n\
         member: uid=u1,ou=people,ou=corp,{base}\nmember: uid=u2,ou=people,ou=corp,{base}\n\n\
         dn: cn=g2,ou=groups,ou=corp,{base}\nobjectClass: groupOfNames\ncn: g2\n\
         member: uid=u3,ou=people,ou=corp,{base}\n\n"
    ));
    slapd.add(&ldif).expect("add the tree");

    let base_dn = format!("ou=corp,{base}");
    Harness::new(slapd, &base_dn, Some("(!(description=excluded))"))
}

impl Harness {
    /// The agent's configuration for this slapd (the target is never contacted: only the
    /// directory side is used), loaded as `dirsync` loads it.
    fn new(slapd: Slapd, base_dn: &str, user_filter: Option<&str>) -> Harness {
        let dir = tempfile::tempdir().expect("tempdir");
        let config_path: PathBuf = dir.path().join("config.yml");
        let mut ldap = json!({
            "server": {"addresses": ["127.0.0.1"], "port": slapd.port, "user": slapd.sync_dn},
            "base_dn": base_dn,
            "flavor": "openldap",
        });
        if let Some(filter) = user_filter {
            ldap["filter"] = json!({ "user": filter });
        }
        // JSON is YAML.
        let config = json!({
            "ad": {"ldap": ldap},
            "iid": {"scim": {
                "base_url": "http://127.0.0.1:9/scim/v2",
                "attribute": {"user": {"ad_bind": {"active": "employeeType"}}},
            }},
        });
        std::fs::write(&config_path, config.to_string()).unwrap();
        let secret = json!({
            "ad": {"ldap": {"server": {"password": slapd.sync_pw}}},
            "iid": {"scim": {"token": "unused"}},
        });
        let secret_path = dir.path().join("secret.yml");
        std::fs::write(&secret_path, secret.to_string()).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&secret_path, std::fs::Permissions::from_mode(0o600)).unwrap();
        let (config, _) = Config::load(&config_path, Some(&secret_path)).expect("load config");
        let searches = ldap_searches(
            &config.ad.ldap,
            &config.iid.scim.attribute,
            DirectoryKind::OpenLdap,
        );
        Harness {
            slapd,
            config,
            searches,
            users: Image::new(),
            groups: Image::new(),
            cursor: None,
            _dir: dir,
        }
    }
}

/// Present phase at a size where slapd splits the id list over several `syncIdSet`
/// messages (measured with ldapsearch: 4 messages for 1,000 ids): one modify and one delete
/// among 3,000 users.
#[tokio::test]
async fn present_phase_at_scale() {
    let slapd = Slapd::start_with(SlapdOptions {
        sessionlog: 0,
        ..SlapdOptions::default()
    })
    .expect("start slapd");
    slapd
        .load_generated(3000, 20, &[])
        .expect("load generated data");
    let base = slapd.base.clone();
    let mut h = Harness::new(slapd, &base, None);
    let t = Instant::now();
    h.step("initial", true).await;
    eprintln!(
        "initial syncrepl read of {} users: {:.2?}",
        h.users.len(),
        t.elapsed()
    );
    assert_eq!(h.users.len(), 3000);
    let t = Instant::now();
    h.step("no change", false).await;
    eprintln!(
        "no-change step (incremental + full read to compare): {:.2?}",
        t.elapsed()
    );

    let gone = format!("uid=user000007,ou=people,{base}");
    let gone_id = h
        .users
        .iter()
        .find(|(_, e)| e.dn == gone)
        .map(|(id, _)| id.clone())
        .unwrap();
    h.slapd.delete(&[&gone]).unwrap();
    h.slapd
        .modify(&format!(
            "dn: uid=user002500,ou=people,{base}\nchangetype: modify\nreplace: title\ntitle: Changed\n"
        ))
        .unwrap();
    let t = Instant::now();
    let source = h.connect().await;
    let c = read_changes(&source, &h.searches, h.cursor.as_ref())
        .await
        .unwrap();
    source.close().await;
    eprintln!("present-phase refresh of 3,000 users: {:.2?}", t.elapsed());
    assert_eq!(c.users.upserts.len(), 1);
    assert_eq!(c.users.present.as_ref().map(|p| p.len()), Some(2999));
    assert_gone(&c.users, &gone_id, "present", "delete among 3000");
    h.step("delete among 3000", true).await;
}

async fn scenario(variant: Variant) {
    let started = Instant::now();
    let mut h = start(variant).await;
    let base = h.slapd.base.clone();
    let people = |uid: &str| format!("uid={uid},ou=people,ou=corp,{base}");
    let id_of = |h: &Harness, uid: &str| -> String {
        h.users
            .iter()
            .find(|(_, e)| e.first_str("uid") == Some(uid))
            .map(|(id, _)| id.clone())
            .unwrap_or_else(|| panic!("{uid} not in the image"))
    };

    // Initial content: no cursor, everything as upserts, `present` = exactly those.
    let initial = h.step("initial", true).await;
    assert_eq!(h.users.len(), 4);
    assert_eq!(h.groups.len(), 2);
    assert_eq!(initial.users.present.as_ref().map(|p| p.len()), Some(4));

    // Nothing changed: an empty change set, and it is cheap.
    let t = Instant::now();
    let nothing = h.changes(h.cursor.as_ref()).await;
    let elapsed = t.elapsed();
    eprintln!("{variant:?}: no-change incremental read (connect + 2 refreshes) took {elapsed:.2?}");
    assert!(nothing.is_empty(), "{nothing:#?}");
    assert_eq!(
        nothing.next, h.cursor,
        "an unchanged directory keeps the cookie"
    );
    assert!(elapsed < Duration::from_secs(2), "{elapsed:?}");
    h.step("no change", false).await;

    // Add a user.
    h.slapd.add(&user("u5", "people", &base)).unwrap();
    let c = h.step("add user", true).await;
    assert_eq!(c.users.upserts.len(), 1);
    unchanged(variant, &c.groups, &h.groups, "add user");

    // Modify a user.
    h.slapd
        .modify(&format!(
            "dn: {}\nchangetype: modify\nreplace: sn\nsn: Second\n-\nreplace: mail\nmail: second@example.test\n",
            people("u2")
        ))
        .unwrap();
    let c = h.step("modify user", true).await;
    assert_eq!(c.users.upserts.len(), 1);
    assert_eq!(c.users.upserts[0].first_str("sn"), Some("Second"));

    // Rename one user, move another to another OU inside the base: same stable ids.
    let u3 = id_of(&h, "u3");
    let u4 = id_of(&h, "u4");
    h.slapd.modrdn(&people("u3"), "uid=u3r", None).unwrap();
    h.slapd
        .modrdn(
            &people("u4"),
            "uid=u4",
            Some(&format!("ou=staff,ou=corp,{base}")),
        )
        .unwrap();
    h.step("rename and move inside", true).await;
    assert_eq!(h.users[&u3].dn, format!("uid=u3r,ou=people,ou=corp,{base}"));
    assert_eq!(h.users[&u4].dn, format!("uid=u4,ou=staff,ou=corp,{base}"));

    // Disable.
    let u1 = id_of(&h, "u1");
    h.slapd
        .modify(&format!(
            "dn: {}\nchangetype: modify\nreplace: employeeType\nemployeeType: false\n",
            people("u1")
        ))
        .unwrap();
    h.step("disable", true).await;
    let mapped = map_user(
        &h.users[&u1],
        &h.config.iid.scim.attribute.user,
        DirectoryKind::OpenLdap,
        chrono::Utc::now(),
    )
    .unwrap();
    assert!(!mapped.active, "u1 must map as disabled");

    // Delete a user: the delete phase lists it, the present phase leaves it out.
    let u5 = id_of(&h, "u5");
    h.slapd.delete(&[&people("u5")]).unwrap();
    let c = h.step("delete user", true).await;
    assert_gone(&c.users, &u5, usual_phase(variant), "delete user");

    // Leave scope through the filter (the entry still exists, unchanged DN).
    let u2 = id_of(&h, "u2");
    h.slapd
        .modify(&format!(
            "dn: {}\nchangetype: modify\nadd: description\ndescription: excluded\n",
            people("u2")
        ))
        .unwrap();
    let c = h.step("leave scope (filter)", true).await;
    assert_gone(&c.users, &u2, usual_phase(variant), "leave scope (filter)");

    // Leave scope by moving out of the base.
    h.slapd
        .modrdn(
            &format!("uid=u4,ou=staff,ou=corp,{base}"),
            "uid=u4",
            Some(&format!("ou=outside,{base}")),
        )
        .unwrap();
    let c = h.step("move out of the base", true).await;
    assert_gone(&c.users, &u4, usual_phase(variant), "move out of the base");

    // Group members added and removed.
    h.slapd
        .modify(&format!(
            "dn: cn=g1,ou=groups,ou=corp,{base}\nchangetype: modify\n\
             add: member\nmember: uid=u3r,ou=people,ou=corp,{base}\n-\n\
             delete: member\nmember: {}\n",
            people("u2")
        ))
        .unwrap();
    let c = h.step("group members", true).await;
    assert_eq!(c.groups.upserts.len(), 1);
    unchanged(variant, &c.users, &h.users, "group members");

    // Delete a group.
    let g2 = h
        .groups
        .iter()
        .find(|(_, e)| e.first_str("cn") == Some("g2"))
        .map(|(id, _)| id.clone())
        .unwrap();
    h.slapd
        .delete(&[&format!("cn=g2,ou=groups,ou=corp,{base}")])
        .unwrap();
    let c = h.step("delete group", true).await;
    assert_gone(&c.groups, &g2, usual_phase(variant), "delete group");
    assert_eq!(h.groups.len(), 1);

    invalid_cursors(&mut h, variant).await;

    if variant == Variant::SessionLog {
        // The session log lives in memory. A deletion logged before a restart is forgotten;
        // slapd must then not answer "nothing deleted" but fall back to the present phase.
        let u3r = format!("uid=u3r,ou=people,ou=corp,{base}");
        h.slapd.delete(&[&people("u1")]).unwrap();
        h.slapd.stop().expect("stop slapd");
        h.slapd.restart().expect("restart slapd");
        h.slapd
            .modify(&format!(
                "dn: {u3r}\nchangetype: modify\nreplace: sn\nsn: Restarted\n"
            ))
            .unwrap();
        let c = h.step("delete before a restart", true).await;
        assert_gone(&c.users, &u1, "present", "delete before a restart");
    }
    eprintln!("{variant:?}: scenario took {:.2?}", started.elapsed());
}

/// A search whose entries did not change must not change its image. In the present phase
/// (sent whenever anything in the database changed) every cached id is listed. In the delete
/// phase slapd may list ids this search never held: its session log reports every entry
/// modified since the cookie that does not match the filter, such as a group's id to the user
/// search after a group changed. Removing an unknown id is harmless.
fn unchanged(variant: Variant, set: &ChangeSet, image: &Image, step: &str) {
    assert!(set.upserts.is_empty(), "{step}: {set:#?}");
    let mut copy = image.clone();
    assert_eq!(apply(&mut copy, set, stable_id), 0, "{step}: {set:#?}");
    match variant {
        Variant::SessionLog => {
            assert!(set.present.is_none(), "{step}: {set:#?}");
            if !set.deleted.is_empty() {
                eprintln!(
                    "{step}: the delete phase listed ids out of scope: {:?}",
                    set.deleted
                );
            }
        }
        Variant::NoSessionLog => assert_eq!(
            set.present.as_ref().map(|p| p.len()),
            Some(image.len()),
            "{step}: {set:#?}"
        ),
    }
}

/// The id is gone: listed as deleted (delete phase) or left out of `present` (present phase),
/// and the phase is the one expected.
fn assert_gone(set: &ChangeSet, id: &str, expected_phase: &str, step: &str) {
    match &set.present {
        Some(present) => assert!(!present.contains(id), "{step}: {id} still present"),
        None => assert!(
            set.deleted.contains(id),
            "{step}: {id} not deleted: {set:#?}"
        ),
    }
    assert_eq!(phase(set), expected_phase, "{step}: {set:#?}");
}

/// The phase this slapd configuration answers a refresh with a recent cookie with.
fn usual_phase(variant: Variant) -> &'static str {
    match variant {
        Variant::SessionLog => "delete",
        Variant::NoSessionLog => "present",
    }
}

/// Cursors that must not be used as they are: each gives `full_reload_required` (or, where the
/// server itself recovers, a correct full refresh), and a read without a cursor then rebuilds
/// an image equal to a full read.
async fn invalid_cursors(h: &mut Harness, variant: Variant) {
    let good = h.cursor.clone().expect("cursor");
    let stored: serde_json::Value = serde_json::from_str(&good.value).unwrap();
    let with_cookie = |cookie: &[u8]| {
        use base64::Engine;
        let b64 = base64::engine::general_purpose::STANDARD.encode(cookie);
        let mut v = stored.clone();
        v["users"]["cookie"] = json!(b64);
        v["groups"]["cookie"] = json!(b64);
        Cursor {
            value: v.to_string(),
            ..good.clone()
        }
    };
    let refused = [
        (
            "not our JSON",
            Cursor {
                value: "garbage".into(),
                ..good.clone()
            },
        ),
        // slapd would take these for no cookie at all (full content, refreshDeletes=TRUE).
        ("garbage cookie", with_cookie(b"rid=000,csn=garbage")),
        (
            "rid out of range",
            with_cookie(b"rid=99999,csn=20261127100233.676363Z#000000#000#000000"),
        ),
        (
            "another server",
            Cursor {
                origin: "ldap://127.0.0.2:389/ou=corp".into(),
                ..good.clone()
            },
        ),
        (
            "cookie from the future",
            with_cookie(b"rid=000,csn=20991231000000.000000Z#000000#000#000000"),
        ),
    ];
    for (what, cursor) in refused {
        let c = h.changes(Some(&cursor)).await;
        let reason = c
            .full_reload_required()
            .unwrap_or_else(|| panic!("{what}: no full reload: {c:#?}"));
        eprintln!("{what}: full reload: {reason}");
        assert!(c.next.is_none() && c.users.upserts.is_empty(), "{what}");
    }

    // A cookie older than anything in the database.
    let stale = with_cookie(b"rid=000,csn=19700101000000.000000Z#000000#000#000000");
    let c = h.changes(Some(&stale)).await;
    match variant {
        Variant::SessionLog => {
            // syncprov-reloadhint: slapd answers e-syncRefreshRequired.
            let reason = c.full_reload_required().expect("stale cookie: full reload");
            assert!(reason.contains("e-syncRefreshRequired"), "{reason}");
            eprintln!("stale cookie: full reload: {reason}");
        }
        Variant::NoSessionLog => {
            // Without the hint slapd sends the whole content as a present phase, which
            // rebuilds any image correctly.
            assert_eq!(c.full_reload_required(), None);
            assert_eq!(phase(&c.users), "present");
            let mut users = h.users.clone();
            users.insert("stale-entry".into(), Entry::new("uid=stale"));
            apply(&mut users, &c.users, stable_id);
            let (full, _) = h.full_read().await;
            assert_same("stale cookie", "users", &users, &full);
        }
    }

    // The caller's fallback: read without a cursor into a fresh image.
    let c = h.changes(None).await;
    let (mut users, mut groups) = (Image::new(), Image::new());
    apply(&mut users, &c.users, stable_id);
    apply(&mut groups, &c.groups, stable_id);
    let (full_users, full_groups) = h.full_read().await;
    assert_same("reload", "users", &users, &full_users);
    assert_same("reload", "groups", &groups, &full_groups);
    // The cursor from the reload works like the old one.
    h.cursor = c.next.clone();
    h.step("after reload", false).await;
}
