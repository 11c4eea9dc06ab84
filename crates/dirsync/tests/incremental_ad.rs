#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Incremental reads of Active Directory (`source::ad_changes`) against a real Samba AD DC:
//! DirSync as the non-admin service account (OBJECT_SECURITY, no replication right) and the
//! uSNChanged fallback, side by side over the same sequence of directory changes. After every
//! step each reader's changes are applied to its cached image, and the image must equal a
//! fresh full read (stable id → DN and every attribute the full read returns).

mod ad_common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

use ad_common::*;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use dirsync::mapping::DirectoryKind;
use dirsync::mapping::values::guid_text;
use dirsync::source::ad_changes::{AdMechanism, read_changes, update_links};
use dirsync::source::changes::{ChangeSet, Cursor, CursorKind, apply};
use dirsync::source::ldap::{LdapSettings, LdapSource};
use dirsync::source::{DirectorySearches, Entry, ldap_searches, ldap_settings, normalize_dn};

fn id(e: &Entry) -> Option<String> {
    e.bytes("objectguid").first().and_then(|g| guid_text(g))
}

/// One reader as the agent will run it: its image and its cursor.
struct Track {
    name: &'static str,
    mechanism: AdMechanism,
    image: BTreeMap<String, Entry>,
    cursor: Option<Cursor>,
}

struct Ctx {
    rt: tokio::runtime::Runtime,
    settings: LdapSettings,
    searches: DirectorySearches,
    instance: Instance,
}

impl Ctx {
    fn changes(&self, mechanism: AdMechanism, cursor: Option<&Cursor>) -> (ChangeSet, f64) {
        let t0 = Instant::now();
        let cs = self
            .rt
            .block_on(async {
                let mut source = LdapSource::connect(&self.settings).await.unwrap();
                let cs = read_changes(&mut source, &self.searches, mechanism, cursor).await;
                source.close().await;
                cs
            })
            .unwrap_or_else(|e| panic!("read_changes: {e}"));
        (cs, t0.elapsed().as_secs_f64() * 1000.0)
    }

    /// What a full read returns now, keyed like the image.
    fn full(&self) -> BTreeMap<String, Entry> {
        let read = self.instance.read().unwrap().read;
        assert!(read.complete, "full read incomplete: {:?}", read.notes);
        read.users
            .into_iter()
            .chain(read.groups)
            .map(|e| (id(&e).unwrap(), e))
            .collect()
    }

    /// Reads the changes since the track's cursor, applies them as the caller will
    /// (links to deleted objects first), and checks the image against a full read.
    fn step(&self, track: &mut Track, what: &str) -> ChangeSet {
        let (cs, ms) = self.changes(track.mechanism, track.cursor.as_ref());
        eprintln!(
            "TIMING {} {what}: {ms:.1} ms ({} upserts, {} deleted)",
            track.name,
            cs.upserts.len(),
            cs.deleted.len()
        );
        assert_eq!(
            cs.full_reload_required, None,
            "{} {what}: unexpected reload",
            track.name
        );
        update_links(&mut track.image, &cs, id);
        apply(&mut track.image, &cs, id);
        let next = cs.next.clone().unwrap();
        let kind = match track.mechanism {
            AdMechanism::Usn => CursorKind::Usn,
            _ => CursorKind::DirSync,
        };
        assert_eq!(next.kind, kind, "{} {what}", track.name);
        track.cursor = Some(next);
        assert_same(
            &track.image,
            &self.full(),
            &format!("{} {what}", track.name),
        );
        cs
    }
}

/// Multi-valued attributes may come back in another order; DNs compare normalised.
fn canonical(e: &Entry) -> (String, BTreeMap<String, BTreeSet<Vec<u8>>>) {
    let attrs = e
        .attributes()
        .map(|(k, vs)| {
            let set = vs
                .map(|v| {
                    if k == "member" || k == "memberof" {
                        normalize_dn(&String::from_utf8_lossy(v)).into_bytes()
                    } else {
                        v.to_vec()
                    }
                })
                .collect();
            (k.to_string(), set)
        })
        .collect();
    (normalize_dn(&e.dn), attrs)
}

fn assert_same(image: &BTreeMap<String, Entry>, full: &BTreeMap<String, Entry>, what: &str) {
    let mut problems = Vec::new();
    for (k, e) in full {
        match image.get(k) {
            None => problems.push(format!("missing from the image: {}", e.dn)),
            Some(i) => {
                let (idn, ia) = canonical(i);
                let (fdn, fa) = canonical(e);
                if idn != fdn {
                    problems.push(format!("DN: image {} / full {}", i.dn, e.dn));
                }
                for name in ia.keys().chain(fa.keys()).collect::<BTreeSet<_>>() {
                    if ia.get(name) != fa.get(name) {
                        problems.push(format!(
                            "{}: {name}: image {:?} / full {:?}",
                            e.dn,
                            i.strs(name),
                            e.strs(name)
                        ));
                    }
                }
            }
        }
    }
    for (k, e) in image {
        if !full.contains_key(k) {
            problems.push(format!("in the image only: {}", e.dn));
        }
    }
    assert!(problems.is_empty(), "{what}:\n{}", problems.join("\n"));
}

fn names(image: &BTreeMap<String, Entry>) -> BTreeSet<String> {
    image
        .values()
        .filter_map(|e| e.first_str("samaccountname").map(str::to_string))
        .collect()
}

#[test]
fn ad_incremental_dirsync_and_usn_equal_full_reads() {
    if testenv::skip_samba("ad_incremental_dirsync_and_usn_equal_full_reads") {
        return;
    }
    let t0 = Instant::now();
    let dc = start_dc("INCR.TEST", "INCR");
    // The service account is a plain user; it only gets to see tombstones (see
    // grant_deleted_objects_read). No replication right: DirSync runs with OBJECT_SECURITY.
    dc.grant_deleted_objects_read("svc-dirsync").unwrap();
    let base = dc.add_ou("Sync").unwrap();
    let sub = dc.add_ou(&format!("OU=Sub,{base}")).unwrap();
    let outside = dc.add_ou("Outside").unwrap();
    let ou = Some(base.as_str());
    let alice = dc
        .add_user("alice", "Alice", "A", Some("alice@incr.test"), None, ou)
        .unwrap();
    let bob = dc.add_user("bob", "Bob", "B", None, None, ou).unwrap();
    let carol = dc.add_user("carol", "Carol", "C", None, None, ou).unwrap();
    let team = dc.add_group_in("Team", ou).unwrap();
    let other = dc.add_group_in("Other", ou).unwrap();
    dc.add_members(&team, &[&alice.dn, &bob.dn]).unwrap();
    dc.add_members(&other, &[&alice.dn, &bob.dn]).unwrap();

    // Reads ask only for what the mapping reads: sAMAccountName (which `names` looks at) and
    // title (changed below) are bound so that they are read and, with DirSync, watched.
    let yaml = format!(
        "ad:\n  ldap:\n    server:\n      addresses: ['{ip}']\n      port: {port}\n      user: '{user}'\n    base_dn: '{base}'\n    filter:\n      user: '!(description=excluded)'\niid:\n  scim:\n    base_url: 'http://127.0.0.1:9/scim/v2'\n    attribute:\n      user:\n        ad_bind: {{nickName: sAMAccountName, title: title}}\n      group:\n        ad_bind: {{description: sAMAccountName}}\nsync:\n  max_deletion_ratio: 1.0\n",
        ip = dc.ip,
        port = dc.ldap_port,
        user = dc.svc_dn,
    );
    let instance = Instance::new(&yaml, &dc.svc_pw, "unused");
    let config = instance.load();
    let ctx = Ctx {
        rt: runtime(),
        settings: ldap_settings(&config),
        searches: ldap_searches(
            &config.ad.ldap,
            &config.iid.scim.attribute,
            DirectoryKind::ActiveDirectory,
        ),
        instance,
    };
    let mut tracks = [
        Track {
            name: "dirsync",
            mechanism: AdMechanism::DirSync,
            image: BTreeMap::new(),
            cursor: None,
        },
        Track {
            name: "usn",
            mechanism: AdMechanism::Usn,
            image: BTreeMap::new(),
            cursor: None,
        },
    ];

    // Initial: no cursor → everything, with the present set, and a cursor.
    for t in &mut tracks {
        let cs = ctx.step(t, "initial read");
        assert!(cs.present.is_some());
        assert_eq!(
            names(&t.image),
            BTreeSet::from(["Other", "Team", "alice", "bob", "carol"].map(String::from)),
            "{}",
            t.name
        );
    }
    // Nothing changed: an empty change set, cheaply.
    for t in &mut tracks {
        let cs = ctx.step(t, "no change");
        assert!(cs.is_empty(), "{}: {cs:?}", t.name);
    }

    dc.add_user("dave", "Dave", "D", None, None, ou).unwrap();
    for t in &mut tracks {
        ctx.step(t, "add user");
        assert!(names(&t.image).contains("dave"), "{}", t.name);
    }

    dc.set_attr(&alice.dn, "title", &["Engineer"]).unwrap();
    for t in &mut tracks {
        let cs = ctx.step(t, "modify attribute");
        assert!(
            cs.upserts
                .iter()
                .any(|e| id(e) == Some(alice.object_guid.clone()))
        );
    }

    // Nothing maps telephoneNumber: DirSync, which watches the requested attributes, does
    // not report alice; uSNChanged re-reads her unchanged.
    dc.set_attr(&alice.dn, "telephoneNumber", &["+81-3-0000-0000"])
        .unwrap();
    for t in &mut tracks {
        let cs = ctx.step(t, "modify an unmapped attribute");
        if t.mechanism == AdMechanism::DirSync {
            assert!(cs.is_empty(), "{}: {cs:?}", t.name);
        }
    }

    // Bob is in Team and Other: both groups name him by DN and must follow the rename.
    let bob_dn = dc.rename(&bob.dn, "CN=Robert").unwrap();
    for t in &mut tracks {
        ctx.step(t, "rename");
        assert!(normalize_dn(&t.image[&bob.object_guid].dn).starts_with("cn=robert,"));
    }

    dc.move_to(&bob_dn, &sub).unwrap();
    for t in &mut tracks {
        ctx.step(t, "move inside the base");
    }

    dc.disable_user("carol").unwrap();
    for t in &mut tracks {
        ctx.step(t, "disable");
        assert_eq!(
            t.image[&carol.object_guid].first_str("useraccountcontrol"),
            Some("514")
        );
    }

    // The configured filter no longer matches: carol leaves the scope (server-side filter).
    dc.set_attr(&carol.dn, "description", &["excluded"])
        .unwrap();
    for t in &mut tracks {
        let cs = ctx.step(t, "filter no longer matches");
        assert!(cs.deleted.contains(&carol.object_guid), "{}", t.name);
    }

    dc.add_members(&team, &["dave"]).unwrap();
    for t in &mut tracks {
        ctx.step(t, "group member add");
    }
    dc.remove_members(&team, &[&alice.dn]).unwrap();
    for t in &mut tracks {
        ctx.step(t, "group member remove");
    }

    // Dave is in Team: AD drops the link without reporting Team (the caller forgets it).
    let dave_guid = dc.object_guid(&dc.dn_of("dave").unwrap()).unwrap();
    dc.delete_user("dave").unwrap();
    for t in &mut tracks {
        let cs = ctx.step(t, "delete user (tombstone)");
        assert!(cs.deleted.contains(&dave_guid), "{}: {cs:?}", t.name);
    }

    // Alice leaves the base; Other still holds her (under her new DN).
    dc.move_to(&alice.dn, &outside).unwrap();
    for t in &mut tracks {
        let cs = ctx.step(t, "leave scope (moved out of the base)");
        assert!(cs.deleted.contains(&alice.object_guid), "{}", t.name);
    }

    let other_guid = dc.object_guid(&other).unwrap();
    dc.delete_group(&other).unwrap();
    for t in &mut tracks {
        let cs = ctx.step(t, "delete group");
        assert!(cs.deleted.contains(&other_guid), "{}", t.name);
        assert!(!t.image.contains_key(&other_guid));
    }

    // Cursors that must not be trusted → full reload, then a full read reconciles.
    let [dirsync, usn] = &mut tracks;
    let good = dirsync.cursor.clone().unwrap();
    let raw = B64.decode(&good.value).unwrap();
    let mut garbage = good.clone();
    garbage.value = B64.encode(b"garbage");
    let mut foreign = good.clone();
    let mut bytes = raw.clone();
    for b in &mut bytes[52..68] {
        *b ^= 0x5a;
    }
    foreign.value = B64.encode(&bytes);
    // Right signature and invocation, broken structure: this one reaches Samba.
    let mut corrupt = good.clone();
    corrupt.value = B64.encode(&raw[..70]);
    for (cursor, expect) in [
        (&garbage, "not a DirSync cookie"),
        (&foreign, "another DC invocation"),
        (&corrupt, "refused the DirSync cookie"),
    ] {
        let (cs, _) = ctx.changes(AdMechanism::DirSync, Some(cursor));
        let why = cs.full_reload_required.clone().unwrap_or_default();
        eprintln!("DirSync cookie {}: {why}", cursor.value);
        assert!(why.contains(expect), "{why}");
        assert!(cs.upserts.is_empty() && cs.deleted.is_empty() && cs.next.is_none());
    }
    let mut moved = usn.cursor.clone().unwrap();
    let (host, _) = moved.origin.split_once('|').unwrap();
    moved.origin = format!("{host}|00000000-1111-2222-3333-444444444444");
    let (cs, _) = ctx.changes(AdMechanism::Usn, Some(&moved));
    assert!(
        cs.full_reload_required
            .as_deref()
            .is_some_and(|w| w.contains("uSNChanged cursor belongs to")),
        "{cs:?}"
    );
    // Changes made meanwhile are caught by the full reconcile the reload asks for; Auto
    // picks DirSync for an account that may use it.
    dc.set_attr(&carol.dn, "description", &[]).unwrap();
    for t in [dirsync, usn] {
        t.cursor = None;
        t.mechanism = AdMechanism::Auto;
        ctx.step_auto(t);
    }
    eprintln!(
        "TIMING incremental_ad total {:.1} s",
        t0.elapsed().as_secs_f64()
    );
}

impl Ctx {
    /// A full reconcile with `Auto`: every object comes back with the present set.
    fn step_auto(&self, track: &mut Track) {
        let (cs, ms) = self.changes(AdMechanism::Auto, None);
        eprintln!("TIMING {} full reconcile: {ms:.1} ms", track.name);
        assert!(cs.present.is_some());
        assert_eq!(cs.next.as_ref().map(|c| c.kind), Some(CursorKind::DirSync));
        apply(&mut track.image, &cs, id);
        assert_same(&track.image, &self.full(), track.name);
        assert!(names(&track.image).contains("carol"));
    }
}
