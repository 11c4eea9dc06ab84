//! OpenLDAP syncrepl (RFC 4533) refresh messages and the stored cursor, through the agent's
//! refresh handling (`dirsync_source::syncrepl::fuzzing`: `take_message` and `finish` of
//! `syncrepl.rs`) and `stored_cookies`. The first byte picks what the rest is:
//! 0 a Sync State control value on an entry, 1 a Sync Info intermediate response value,
//! 2 a whole BER message, 3 a Sync Done control value, 4 a stored cursor value.
//! ldap3's own parsers panic on malformed BER; the agent runs a refresh guarded, so a panic
//! inside ldap3 counts as a refused message here too ([`crate::guarded`]); a panic
//! anywhere else is a crash. Beyond that: a change set never carries an empty cookie, every
//! upserted entry has its entryUUID, and a cursor written by the agent reads back.

use dirsync_source::syncrepl::fuzzing;
use dirsync_source::{DirectorySearches, ldap::SearchSpec};
use ldap3::ResultEntry;
use ldap3::asn1::{PL, StructureTag, TagClass};
use ldap3::controls::{Control, ControlParser, ControlType, RawControl, SyncDone};

const SYNC_STATE_OID: &str = "1.3.6.1.4.1.4203.1.9.1.2";
const SYNC_INFO_OID: &str = "1.3.6.1.4.1.4203.1.9.1.4";

fn prim(class: TagClass, id: u64, bytes: &[u8]) -> StructureTag {
    StructureTag {
        class,
        id,
        payload: PL::P(bytes.to_vec()),
    }
}

fn cons(class: TagClass, id: u64, inner: Vec<StructureTag>) -> StructureTag {
    StructureTag {
        class,
        id,
        payload: PL::C(inner),
    }
}

/// A SearchResultEntry `uid=x,dc=example,dc=test` (cn: x) with a Sync State control `value`.
fn entry(value: &[u8]) -> ResultEntry {
    let u = TagClass::Universal;
    let attr = cons(
        u,
        16,
        vec![prim(u, 4, b"cn"), cons(u, 17, vec![prim(u, 4, b"x")])],
    );
    let tag = cons(
        TagClass::Application,
        4,
        vec![
            prim(u, 4, b"uid=x,dc=example,dc=test"),
            cons(u, 16, vec![attr]),
        ],
    );
    let mut e = ResultEntry::new(tag);
    e.1.push(Control(
        Some(ControlType::SyncState),
        RawControl {
            ctype: SYNC_STATE_OID.into(),
            crit: false,
            val: Some(value.to_vec()),
        },
    ));
    e
}

/// An IntermediateResponse carrying a Sync Info `value`.
fn intermediate(value: &[u8]) -> ResultEntry {
    let c = TagClass::Context;
    ResultEntry::new(cons(
        TagClass::Application,
        25,
        vec![prim(c, 0, SYNC_INFO_OID.as_bytes()), prim(c, 1, value)],
    ))
}

fn searches() -> DirectorySearches {
    let spec = |f: &str| SearchSpec {
        base: "ou=corp,dc=example,dc=test".into(),
        filter: f.into(),
        attributes: vec!["cn".into(), "member".into()],
    };
    DirectorySearches {
        users: spec("(objectClass=inetOrgPerson)"),
        groups: spec("(objectClass=groupOfNames)"),
    }
}

fn refresh(messages: Vec<ResultEntry>, done: SyncDone) {
    let sent = Some(b"rid=001,csn=20261127100233.676363Z#000000#000#000000".to_vec());
    let Some(Some((changes, cookie))) = crate::guarded(|| fuzzing::refresh(messages, done, sent))
    else {
        return;
    };
    assert!(cookie.is_none_or(|c| !c.is_empty()));
    for e in &changes.upserts {
        assert!(e.has("entryuuid"), "an upsert without entryUUID");
    }
}

fn stored(text: &[u8]) {
    let searches = searches();
    if let Ok(value) = std::str::from_utf8(text) {
        let _ = fuzzing::stored_cookies(value, &searches);
    }
    let (users, groups) = crate::split_nul(text);
    let value = fuzzing::encode_cookies(&searches, users, groups);
    let back = fuzzing::stored_cookies(&value, &searches);
    if fuzzing::plausible_openldap_cookie(users) && fuzzing::plausible_openldap_cookie(groups) {
        assert_eq!(back, Some((users.to_vec(), groups.to_vec())));
    } else {
        assert_eq!(back, None);
    }
}

/// Once before the first input: ldap3's control parsers panic on some malformed input, which
/// counts as a refused message here ([`crate::guarded`]); their panic messages are silenced.
pub fn init() {
    crate::quiet_ldap3_panics();
}

/// One input.
pub fn run(data: &[u8]) {
    let Some((mode, rest)) = data.split_first() else {
        return;
    };
    let plain = SyncDone {
        cookie: None,
        refresh_deletes: false,
    };
    match mode % 5 {
        0 => refresh(vec![entry(rest)], plain),
        1 => refresh(vec![intermediate(rest)], plain),
        2 => {
            if let Ok((_, tag)) = ldap3::asn1::parse_tag(rest) {
                refresh(vec![ResultEntry::new(tag)], plain);
            }
        }
        3 => {
            if let Some(done) = crate::guarded(|| SyncDone::parse(rest)) {
                refresh(Vec::new(), done);
            }
        }
        _ => stored(rest),
    }
}
