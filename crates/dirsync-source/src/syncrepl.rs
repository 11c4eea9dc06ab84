//! OpenLDAP incremental reads: RFC 4533 content synchronisation (syncrepl) in refreshOnly mode,
//! with the cookie from the previous read (behaviour §3 "Incremental reads").
//!
//! [`read_changes`] makes the same two searches as a full read ([`super::ldap_searches`]: users
//! and groups, same base, effective filters and attributes, plus `entryUUID`), each with the
//! Sync Request control and its own cookie, and turns what slapd answers into one
//! [`ChangeSet`] per search:
//!
//! - `Add`/`Modify` entries → `upserts` (complete entries: every requested attribute);
//! - the delete phase (`syncIdSet` with refreshDeletes=TRUE, `Delete` states) → `deleted`;
//! - the present phase (`syncIdSet` with refreshDeletes=FALSE, `Present` states, or a Sync Done
//!   with refreshDeletes=FALSE) → `present`, the complete set of ids still matching;
//! - no cursor (initial content) → every entry as an upsert and `present` = exactly those, so
//!   applying it to any image yields the directory as it is;
//! - e-syncRefreshRequired (4096), a cookie the server calls newer than itself (53), a cookie
//!   the server did not recognise, or a cursor made for another server, base, filter or
//!   attribute list → `full_reload_required` (the caller then calls again without a cursor).
//!
//! The cursor ([`Cursor`] of kind `Syncrepl`) holds both cookies (base64) with the searches
//! they belong to, as JSON: a cookie only describes the search it was issued for, and sending
//! it with another filter would silently miss the entries the new filter brings into scope.
//!
//! Stable ids are entryUUID text, lower-case hyphenated ([`stable_id`]); the Sync State control
//! carries the 16 raw bytes, which are rendered the same way.
//!
//! This module deliberately does not know the cached image (the caller keeps it and applies
//! each set with [`super::changes::apply`]), the mapping, SCIM, or the state database. It does
//! not use refreshAndPersist: a run reads what changed and ends (the daemon's watcher,
//! [`super::watch`], uses refreshAndPersist only to learn *that* something changed).

use std::collections::BTreeSet;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use ldap3::controls::{
    Control, ControlParser, ControlType, EntryState, MakeCritical, RefreshMode, SyncDone, SyncInfo,
    SyncRequest, SyncState, parse_syncinfo,
};
use ldap3::{Ldap, LdapResult, Scope, SearchEntry, SearchStream};

use super::changes::{ChangeSet, Cursor, CursorKind};
use super::ldap::{LdapSource, LdapSourceError, SearchSpec, to_builder};
use super::{DirectorySearches, Entry};

/// LDAP result code of e-syncRefreshRequired (RFC 4533 §2.6).
const SYNC_REFRESH_REQUIRED: u32 = 4096;
/// unwillingToPerform: slapd's answer to a cookie newer than its own state.
const UNWILLING_TO_PERFORM: u32 = 53;

#[derive(Debug, thiserror::Error)]
pub enum SyncreplError {
    #[error("syncrepl refresh under {base} failed: {reason}")]
    Search { base: String, reason: String },
    /// The connection dropped before the refresh ended; nothing of it is used.
    #[error("the LDAP connection was lost during the syncrepl refresh under {base}: {reason}")]
    Lost { base: String, reason: String },
    #[error(transparent)]
    Ldap(#[from] LdapSourceError),
    #[error(
        "the LDAP client failed while decoding a syncrepl response (malformed data from the server)"
    )]
    Crashed,
}

impl crate::reconnect::Transient for SyncreplError {
    fn is_transient(&self) -> bool {
        match self {
            SyncreplError::Lost { .. } => true,
            SyncreplError::Ldap(e) => e.is_transient(),
            SyncreplError::Search { .. } | SyncreplError::Crashed => false,
        }
    }
}

/// What changed among users and groups since the cursor.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DirectoryChanges {
    /// Changes of the user search. Its `next` is always `None`: the cursor covers both
    /// searches and is [`DirectoryChanges::next`].
    pub users: ChangeSet,
    /// Changes of the group search (`next` is `None` likewise).
    pub groups: ChangeSet,
    /// The cursor to store once both sets are applied. `None` when the server gave no cookie
    /// (then the next read must be a full one again) or a full reload is required.
    pub next: Option<Cursor>,
}

impl DirectoryChanges {
    /// True when neither users nor groups changed.
    pub fn is_empty(&self) -> bool {
        self.users.is_empty() && self.groups.is_empty()
    }

    /// Why the cursor cannot be used (set on both sets alike); the caller reads everything
    /// again with `read_changes(.., None)`.
    pub fn full_reload_required(&self) -> Option<&str> {
        self.users
            .full_reload_required
            .as_deref()
            .or(self.groups.full_reload_required.as_deref())
    }

    fn reload(reason: String) -> DirectoryChanges {
        let set = ChangeSet {
            full_reload_required: Some(reason),
            ..ChangeSet::default()
        };
        DirectoryChanges {
            users: set.clone(),
            groups: set,
            next: None,
        }
    }
}

/// The stable id of an OpenLDAP entry as the change sets use it: its entryUUID, lower-case.
pub fn stable_id(entry: &Entry) -> Option<String> {
    entry.first_str("entryuuid").map(str::to_ascii_lowercase)
}

/// Reads what changed since `cursor` (or everything, without one). See the module doc.
pub async fn read_changes(
    source: &LdapSource,
    searches: &DirectorySearches,
    cursor: Option<&Cursor>,
) -> Result<DirectoryChanges, SyncreplError> {
    let origin = origin(source.server(), searches);
    let (user_cookie, group_cookie) = match cursor {
        None => (None, None),
        Some(c) => match stored_cookies(c, &origin, searches) {
            Ok((u, g)) => (Some(u), Some(g)),
            Err(reason) => return Ok(DirectoryChanges::reload(reason.to_string())),
        },
    };
    let users = match refresh(source, &searches.users, user_cookie).await? {
        Refreshed::Changes(r) => r,
        Refreshed::Reload(reason) => return Ok(DirectoryChanges::reload(reason)),
    };
    let groups = match refresh(source, &searches.groups, group_cookie).await? {
        Refreshed::Changes(r) => r,
        Refreshed::Reload(reason) => return Ok(DirectoryChanges::reload(reason)),
    };
    let next = match (&users.cookie, &groups.cookie) {
        (Some(u), Some(g)) => Some(Cursor {
            kind: CursorKind::Syncrepl,
            origin,
            value: encode_cookies(searches, u, g),
        }),
        _ => None,
    };
    Ok(DirectoryChanges {
        users: users.changes,
        groups: groups.changes,
        next,
    })
}

/// How many values one re-read search names.
const REREAD_CHUNK: usize = 40;

/// Reads the groups with these entryUUIDs again through the full read's group search (the
/// same base, filter and attributes). A group the search no longer returns is left out.
/// Used for groups a server rewrote without reporting them ([`super::changes::linked_groups`]).
pub async fn reread_groups(
    source: &LdapSource,
    searches: &DirectorySearches,
    ids: &BTreeSet<String>,
) -> Result<Vec<Entry>, SyncreplError> {
    // Stable ids are entryUUID text: hex digits and hyphens, nothing a filter must escape.
    let clauses = ids
        .iter()
        .filter(|id| id.chars().all(|c| c.is_ascii_hexdigit() || c == '-'))
        .map(|id| format!("(entryUUID={id})"))
        .collect();
    search_groups(source, searches, clauses).await
}

/// The groups (full read's group search) whose `member_attribute` lists one of `dns` now.
pub async fn groups_listing(
    source: &LdapSource,
    searches: &DirectorySearches,
    member_attribute: &str,
    dns: &BTreeSet<String>,
) -> Result<Vec<Entry>, SyncreplError> {
    let clauses = dns
        .iter()
        .map(|dn| format!("({member_attribute}={})", ldap3::ldap_escape(dn)))
        .collect();
    search_groups(source, searches, clauses).await
}

/// The group search narrowed by `(|clauses)`, 40 clauses a search.
async fn search_groups(
    source: &LdapSource,
    searches: &DirectorySearches,
    clauses: Vec<String>,
) -> Result<Vec<Entry>, SyncreplError> {
    let spec = &searches.groups;
    let failed = |reason: String| SyncreplError::Search {
        base: spec.base.clone(),
        reason,
    };
    let mut attributes = spec.attributes.clone();
    attributes.push("entryUUID".to_string());
    let mut out = Vec::new();
    for chunk in clauses.chunks(REREAD_CHUNK) {
        let outcome = source
            .search(SearchSpec {
                base: spec.base.clone(),
                filter: format!("(&{}(|{}))", spec.filter, chunk.concat()),
                attributes: attributes.clone(),
            })
            .await?;
        if !outcome.complete {
            return Err(failed(outcome.notes.join("; ")));
        }
        out.extend(outcome.entries);
    }
    Ok(out)
}

/// The server URL and the base: a cookie is only meaningful to the server that issued it.
fn origin(server: &str, searches: &DirectorySearches) -> String {
    format!("{server}/{}", searches.users.base)
}

/// What the cursor value holds, per search: the search it was issued for and the cookie.
#[derive(serde::Serialize, serde::Deserialize)]
struct StoredCookies {
    users: StoredCookie,
    groups: StoredCookie,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct StoredCookie {
    base: String,
    filter: String,
    attributes: Vec<String>,
    /// The cookie octets, base64 (RFC 4533 cookies are opaque octet strings).
    cookie: String,
}

fn encode_cookies(searches: &DirectorySearches, users: &[u8], groups: &[u8]) -> String {
    let one = |spec: &SearchSpec, cookie: &[u8]| StoredCookie {
        base: spec.base.clone(),
        filter: spec.filter.clone(),
        attributes: spec.attributes.clone(),
        cookie: B64.encode(cookie),
    };
    let stored = StoredCookies {
        users: one(&searches.users, users),
        groups: one(&searches.groups, groups),
    };
    // default: serialising plain strings cannot fail; an empty value would only force a reload.
    serde_json::to_string(&stored).unwrap_or_default()
}

/// Why a stored cursor cannot be used here (the run reads the directory again).
#[derive(Debug, thiserror::Error)]
enum CookieError {
    #[error("the stored cursor is a {0:?} cursor, not a syncrepl cookie")]
    NotSyncrepl(CursorKind),
    #[error("the stored cookie was issued by {issuer}, not {origin}")]
    OtherOrigin { issuer: String, origin: String },
    #[error("the stored syncrepl cursor is unreadable ({0})")]
    Unreadable(serde_json::Error),
    #[error(
        "the {what} search changed since the cookie was issued (was {was_base} {was_filter}, now {base} {filter})"
    )]
    SearchChanged {
        what: &'static str,
        was_base: String,
        was_filter: String,
        base: String,
        filter: String,
    },
    #[error("the stored {0} cookie is not base64 ({1})")]
    NotBase64(&'static str, base64::DecodeError),
    #[error("the stored {0} cookie is not a syncrepl cookie")]
    NotACookie(&'static str),
}

/// What makes a refresh message unusable.
#[derive(Debug, thiserror::Error)]
enum MessageError {
    #[error("the server sent a referral; a syncrepl refresh cannot follow it")]
    Referral,
    #[error("an entry came without a Sync State control")]
    NoSyncState,
    #[error("a syncrepl UUID has {0} bytes, not 16")]
    UuidLength(usize),
}

/// The two cookies of a cursor, or why the cursor cannot be used here.
fn stored_cookies(
    cursor: &Cursor,
    origin: &str,
    searches: &DirectorySearches,
) -> Result<(Vec<u8>, Vec<u8>), CookieError> {
    if cursor.kind != CursorKind::Syncrepl {
        return Err(CookieError::NotSyncrepl(cursor.kind));
    }
    if cursor.origin != origin {
        return Err(CookieError::OtherOrigin {
            issuer: cursor.origin.clone(),
            origin: origin.to_string(),
        });
    }
    let stored: StoredCookies =
        serde_json::from_str(&cursor.value).map_err(CookieError::Unreadable)?;
    let one = |what: &'static str, s: &StoredCookie, spec: &SearchSpec| {
        if s.base != spec.base || s.filter != spec.filter || s.attributes != spec.attributes {
            return Err(CookieError::SearchChanged {
                what,
                was_base: s.base.clone(),
                was_filter: s.filter.clone(),
                base: spec.base.clone(),
                filter: spec.filter.clone(),
            });
        }
        let cookie = B64
            .decode(&s.cookie)
            .map_err(|e| CookieError::NotBase64(what, e))?;
        if !plausible_openldap_cookie(&cookie) {
            return Err(CookieError::NotACookie(what));
        }
        Ok(cookie)
    };
    Ok((
        one("user", &stored.users, &searches.users)?,
        one("group", &stored.groups, &searches.groups)?,
    ))
}

/// slapd answers a cookie it cannot parse (`garbage`, `rid=000,csn=garbage`, `rid=99999,…`,
/// `sid=fff1,…`) as if none had been sent: the whole content with refreshDeletes=TRUE, which a
/// client holding an image would take for "nothing was deleted". So the cookie is checked
/// against slapd's own syntax before it is sent: `rid=<1-3 decimal digits>[,sid=<1-3 hex
/// digits>],csn=<CSN>[;<CSN>…][,delcsn=<CSN>]`.
fn plausible_openldap_cookie(cookie: &[u8]) -> bool {
    let Ok(text) = std::str::from_utf8(cookie) else {
        return false;
    };
    let mut csns = 0;
    for field in text.split(',') {
        let Some((key, value)) = field.split_once('=') else {
            return false;
        };
        match key {
            "csn" | "delcsn" => {
                if !value.split(';').all(plausible_csn) {
                    return false;
                }
                if key == "csn" {
                    csns += 1;
                }
            }
            "rid"
                if (1..=3).contains(&value.len()) && value.bytes().all(|b| b.is_ascii_digit()) => {}
            "sid"
                if (1..=3).contains(&value.len())
                    && value.bytes().all(|b| b.is_ascii_hexdigit()) => {}
            _ => return false,
        }
    }
    csns > 0
}

/// `20261127100233.676363Z#000000#000#000000`: a time, then count, server id, modifier (hex).
fn plausible_csn(csn: &str) -> bool {
    let parts: Vec<&str> = csn.split('#').collect();
    let [time, count, sid, modifier] = parts.as_slice() else {
        return false;
    };
    let time_ok = time.len() == 22
        && time.bytes().enumerate().all(|(i, b)| match i {
            14 => b == b'.',
            21 => b == b'Z',
            _ => b.is_ascii_digit(),
        });
    let hex = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_hexdigit());
    time_ok && hex(count, 6) && hex(sid, 3) && hex(modifier, 6)
}

enum Refreshed {
    Changes(SearchRefresh),
    Reload(String),
}

struct SearchRefresh {
    changes: ChangeSet,
    /// The cookie to send next time for this search.
    cookie: Option<Vec<u8>>,
}

/// One refreshOnly search, guarded ([`super::ldap::guarded`]): ldap3's syncrepl parsers panic
/// on malformed BER, and that must fail this read, not the agent.
async fn refresh(
    source: &LdapSource,
    spec: &SearchSpec,
    cookie: Option<Vec<u8>>,
) -> Result<Refreshed, SyncreplError> {
    let (ldap, timeout) = source.handle();
    let spec = spec.clone();
    super::ldap::guarded(run_refresh(ldap, spec, timeout, cookie))
        .await
        .map_err(|_| SyncreplError::Crashed)?
}

/// What the server said during one refresh, before it is turned into a change set.
#[derive(Default)]
struct Collected {
    upserts: Vec<Entry>,
    deleted: BTreeSet<String>,
    present: BTreeSet<String>,
    /// Any sign of a present phase: then `present` is complete when the refresh ends.
    present_phase: bool,
    /// The latest cookie seen in an intermediate message or a Sync State control.
    cookie: Option<Vec<u8>>,
}

/// Runs one refreshOnly search with the Sync Request control and turns the answer into the
/// changes, a reload, or an error.
async fn run_refresh(
    mut ldap: Ldap,
    spec: SearchSpec,
    timeout: Duration,
    cookie: Option<Vec<u8>>,
) -> Result<Refreshed, SyncreplError> {
    let sent_cookie = cookie.clone();
    let request = SyncRequest {
        mode: RefreshMode::RefreshOnly,
        cookie,
        reload_hint: false,
    };
    // No EntriesOnly adapter: the intermediate Sync Info messages are the point.
    let mut stream = ldap
        .with_controls(request.critical())
        .with_timeout(timeout)
        .streaming_search(
            &spec.base,
            Scope::Subtree,
            &spec.filter,
            with_entry_uuid(&spec.attributes),
        )
        .await
        .map_err(|e| search_failed(&spec, e))?;
    let (got, broken) = drain(&mut stream).await;
    let result = stream.finish().await;
    match broken {
        Some(Broken::Message(reason)) => return Err(answered(&spec, reason)),
        Some(Broken::Stream(e)) => return Err(search_failed(&spec, e)),
        None => {}
    }
    outcome(&spec, result, got, sent_cookie)
}

/// A failed refresh under the search's base: `Lost` when the connection is gone.
fn search_failed(spec: &SearchSpec, e: ldap3::LdapError) -> SyncreplError {
    let base = spec.base.clone();
    let reason = e.to_string();
    if super::ldap::connection_lost(&e) {
        SyncreplError::Lost { base, reason }
    } else {
        SyncreplError::Search { base, reason }
    }
}

/// A refresh the server answered with something unusable.
fn answered(spec: &SearchSpec, reason: String) -> SyncreplError {
    SyncreplError::Search {
        base: spec.base.clone(),
        reason,
    }
}

/// Why a refresh stopped before its end.
enum Broken {
    /// A message that cannot be used.
    Message(String),
    /// The stream failed (the connection, or the client).
    Stream(ldap3::LdapError),
}

/// The requested attributes, with `entryUUID` added when absent.
fn with_entry_uuid(attributes: &[String]) -> Vec<String> {
    let mut attributes = attributes.to_vec();
    if !attributes
        .iter()
        .any(|a| a.eq_ignore_ascii_case("entryUUID"))
    {
        attributes.push("entryUUID".to_string());
    }
    attributes
}

/// Reads every message of the stream into a [`Collected`], stopping at the first one that
/// cannot be used or the first stream error (returned as the reason).
async fn drain(stream: &mut SearchStream<'_, String, Vec<String>>) -> (Collected, Option<Broken>) {
    let mut got = Collected::default();
    let mut broken = None;
    loop {
        match stream.next().await {
            Ok(Some(message)) => {
                if let Err(reason) = take_message(message, &mut got) {
                    broken = Some(Broken::Message(reason.to_string()));
                    break;
                }
            }
            Ok(None) => break,
            Err(e) => {
                broken = Some(Broken::Stream(e));
                break;
            }
        }
    }
    (got, broken)
}

/// What the final result of a complete refresh means: a reload when the server asks for one
/// or refused or ignored the cookie, an error for another result code or a missing Sync
/// Done, else the changes.
fn outcome(
    spec: &SearchSpec,
    result: LdapResult,
    got: Collected,
    sent_cookie: Option<Vec<u8>>,
) -> Result<Refreshed, SyncreplError> {
    match result.rc {
        0 => {}
        SYNC_REFRESH_REQUIRED => {
            return Ok(Refreshed::Reload(format!(
                "the directory requires a full reload (e-syncRefreshRequired: {})",
                result.text
            )));
        }
        UNWILLING_TO_PERFORM if sent_cookie.is_some() => {
            return Ok(Refreshed::Reload(format!(
                "the directory refused the stored cookie ({})",
                result.text
            )));
        }
        rc => {
            return Err(answered(
                spec,
                format!("LDAP result {rc} ({})", result.text),
            ));
        }
    }
    let done = result
        .ctrls
        .iter()
        .find_map(|c| match c {
            Control(Some(ControlType::SyncDone), raw) => raw.val.as_deref().map(SyncDone::parse),
            _ => None,
        })
        .ok_or_else(|| {
            answered(
                spec,
                "the refresh ended without a Sync Done control".to_string(),
            )
        })?;
    if sent_cookie.is_some() && done.cookie.as_ref().is_some_and(Vec::is_empty) {
        // slapd's answer to a cookie it could not use: the content as if none had been sent.
        return Ok(Refreshed::Reload(
            "the directory did not recognise the stored cookie".to_string(),
        ));
    }
    Ok(Refreshed::Changes(finish(got, done, sent_cookie)))
}

/// Turns what one refresh collected into a change set and the cookie to keep.
fn finish(mut got: Collected, done: SyncDone, sent_cookie: Option<Vec<u8>>) -> SearchRefresh {
    let initial = sent_cookie.is_none();
    let present_phase = got.present_phase || !done.refresh_deletes;
    let present = if initial || present_phase {
        // Upserted entries count as present although they are not listed (RFC 4533 §3.3.1).
        got.present.extend(got.upserts.iter().filter_map(stable_id));
        Some(got.present)
    } else {
        None
    };
    let cookie = done
        .cookie
        .filter(|c| !c.is_empty())
        .or(got.cookie)
        // "Nothing changed" comes without a cookie: the old one stays valid.
        .or(sent_cookie);
    SearchRefresh {
        changes: ChangeSet {
            upserts: got.upserts,
            deleted: got.deleted,
            present,
            next: None,
            full_reload_required: None,
        },
        cookie,
    }
}

/// One message of the refresh: an intermediate Sync Info, a referral, or an entry with its
/// Sync State.
fn take_message(message: ldap3::ResultEntry, got: &mut Collected) -> Result<(), MessageError> {
    if message.is_intermediate() {
        match parse_syncinfo(message) {
            SyncInfo::NewCookie(c) => keep_cookie(got, Some(c)),
            SyncInfo::RefreshDelete { cookie, .. } => keep_cookie(got, cookie),
            SyncInfo::RefreshPresent { cookie, .. } => {
                got.present_phase = true;
                keep_cookie(got, cookie);
            }
            SyncInfo::SyncIdSet {
                cookie,
                refresh_deletes,
                sync_uuids,
            } => {
                keep_cookie(got, cookie);
                let ids = sync_uuids
                    .iter()
                    .map(|u| uuid_text(u))
                    .collect::<Result<Vec<_>, _>>()?;
                if refresh_deletes {
                    got.deleted.extend(ids);
                } else {
                    got.present_phase = true;
                    got.present.extend(ids);
                }
            }
        }
        return Ok(());
    }
    if message.is_ref() {
        return Err(MessageError::Referral);
    }
    let state = message
        .1
        .iter()
        .find_map(|c| match c {
            Control(Some(ControlType::SyncState), raw) => raw.val.as_deref().map(SyncState::parse),
            _ => None,
        })
        .ok_or(MessageError::NoSyncState)?;
    let id = uuid_text(&state.entry_uuid)?;
    keep_cookie(got, state.cookie);
    match state.state {
        EntryState::Present => {
            got.present_phase = true;
            got.present.insert(id);
        }
        EntryState::Add | EntryState::Modify => {
            let mut entry = to_builder(SearchEntry::construct(message));
            if entry.get("entryuuid").is_empty() {
                entry.push("entryUUID", id.into_bytes());
            }
            got.upserts.push(entry.build());
        }
        EntryState::Delete => {
            got.deleted.insert(id);
        }
    }
    Ok(())
}

fn keep_cookie(got: &mut Collected, cookie: Option<Vec<u8>>) {
    if let Some(c) = cookie.filter(|c| !c.is_empty()) {
        got.cookie = Some(c);
    }
}

/// The 16 raw bytes of a Sync State / syncIdSet UUID as entryUUID shows them.
fn uuid_text(raw: &[u8]) -> Result<String, MessageError> {
    uuid::Uuid::from_slice(raw)
        .map(|u| u.hyphenated().to_string())
        .map_err(|_| MessageError::UuidLength(raw.len()))
}

/// Entry points for the fuzz targets (`fuzz/`): the message handling of a refresh and the
/// stored cursor, which are otherwise private. Not an API.
#[doc(hidden)]
pub mod fuzzing {
    use ldap3::ResultEntry;
    use ldap3::controls::SyncDone;

    use super::{ChangeSet, Collected, Cursor, CursorKind, DirectorySearches};

    /// What [`super::drain`] and [`super::finish`] make of one refresh's messages and its
    /// Sync Done: the change set and the cookie to keep, or `None` when a message is refused.
    /// ldap3's control parsers may panic on malformed BER; the refresh runs guarded
    /// ([`super::super::ldap::guarded`]), and so must a caller of this.
    pub fn refresh(
        messages: Vec<ResultEntry>,
        done: SyncDone,
        sent_cookie: Option<Vec<u8>>,
    ) -> Option<(ChangeSet, Option<Vec<u8>>)> {
        let mut got = Collected::default();
        for message in messages {
            super::take_message(message, &mut got).ok()?;
        }
        let refresh = super::finish(got, done, sent_cookie);
        Some((refresh.changes, refresh.cookie))
    }

    /// The two cookies a stored syncrepl cursor value holds for `searches`, if usable.
    pub fn stored_cookies(value: &str, searches: &DirectorySearches) -> Option<(Vec<u8>, Vec<u8>)> {
        let cursor = Cursor {
            kind: CursorKind::Syncrepl,
            origin: String::new(),
            value: value.to_string(),
        };
        super::stored_cookies(&cursor, "", searches).ok()
    }

    /// The cursor value stored for two cookies.
    pub fn encode_cookies(searches: &DirectorySearches, users: &[u8], groups: &[u8]) -> String {
        super::encode_cookies(searches, users, groups)
    }

    /// Whether slapd would take `cookie` for one of its own.
    pub fn plausible_openldap_cookie(cookie: &[u8]) -> bool {
        super::plausible_openldap_cookie(cookie)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    fn searches() -> DirectorySearches {
        let spec = |f: &str| SearchSpec {
            base: "ou=corp,dc=example,dc=test".into(),
            filter: f.into(),
            attributes: vec!["*".into(), "+".into()],
        };
        DirectorySearches {
            users: spec("(objectClass=inetOrgPerson)"),
            groups: spec("(objectClass=groupOfNames)"),
        }
    }

    const COOKIE: &[u8] = b"rid=000,csn=20261127100233.676363Z#000000#000#000000";

    #[test]
    fn cookie_shapes() {
        assert!(plausible_openldap_cookie(COOKIE));
        assert!(plausible_openldap_cookie(
            b"rid=000,sid=001,csn=20261127100233.676363Z#000000#001#000000;20261127100233.676363Z#000000#002#000000,delcsn=20261127100235.996204Z#000000#000#000000"
        ));
        assert!(!plausible_openldap_cookie(b"garbage"));
        assert!(!plausible_openldap_cookie(b"rid=000,csn=garbage"));
        assert!(!plausible_openldap_cookie(b"rid=000"));
        // Out of slapd's ranges: it would silently ignore them.
        assert!(!plausible_openldap_cookie(
            b"rid=99999,csn=20261127100233.676363Z#000000#000#000000"
        ));
        assert!(!plausible_openldap_cookie(
            b"rid=000,sid=fff1,csn=20261127100233.676363Z#000000#000#000000"
        ));
        assert!(!plausible_openldap_cookie(b""));
        assert!(!plausible_openldap_cookie(&[0xff, 0xfe]));
    }

    #[test]
    fn cursor_round_trip_and_refusals() {
        let s = searches();
        let origin = origin("ldap://127.0.0.1:3890", &s);
        let cursor = Cursor {
            kind: CursorKind::Syncrepl,
            origin: origin.clone(),
            value: encode_cookies(
                &s,
                COOKIE,
                b"rid=000,csn=20261127100233.676363Z#000001#000#000000",
            ),
        };
        let (u, g) = stored_cookies(&cursor, &origin, &s).unwrap();
        assert_eq!(u, COOKIE);
        assert_ne!(u, g);

        let other_server = stored_cookies(&cursor, "ldap://127.0.0.2:3890/ou=corp", &s);
        assert!(other_server.unwrap_err().to_string().contains("issued by"));

        let mut changed = s.clone();
        changed.users.filter = "(&(objectClass=inetOrgPerson)(ou=Sales))".into();
        let err = stored_cookies(&cursor, &origin, &changed)
            .unwrap_err()
            .to_string();
        assert!(err.contains("user search changed"), "{err}");

        let usn = Cursor {
            kind: CursorKind::Usn,
            ..cursor.clone()
        };
        assert!(stored_cookies(&usn, &origin, &s).is_err());
        let garbage = Cursor {
            value: "not json".into(),
            ..cursor.clone()
        };
        assert!(
            stored_cookies(&garbage, &origin, &s)
                .unwrap_err()
                .to_string()
                .contains("unreadable")
        );
        let bad_cookie = Cursor {
            value: encode_cookies(&s, b"rid=000,csn=garbage", COOKIE),
            ..cursor
        };
        assert!(
            stored_cookies(&bad_cookie, &origin, &s)
                .unwrap_err()
                .to_string()
                .contains("not a syncrepl cookie")
        );
    }

    #[test]
    fn uuids_render_like_entry_uuid() {
        let raw = [
            0x68, 0xec, 0x96, 0x78, 0x7e, 0x95, 0x10, 0x41, 0x88, 0x67, 0x5b, 0x8d, 0xc3, 0xa7,
            0x3d, 0x75,
        ];
        assert_eq!(
            uuid_text(&raw).unwrap(),
            "68ec9678-7e95-1041-8867-5b8dc3a73d75"
        );
        assert!(uuid_text(&raw[..15]).is_err());
    }

    fn entry(id: &str) -> Entry {
        Entry::new(format!("uid={id},ou=corp")).with("entryUUID", id)
    }

    #[test]
    fn phases_become_present_or_deleted() {
        let done = |refresh_deletes, cookie: Option<&[u8]>| SyncDone {
            cookie: cookie.map(<[u8]>::to_vec),
            refresh_deletes,
        };
        // Delete phase: deletions listed, nothing said about the rest.
        let got = Collected {
            upserts: vec![entry("a")],
            deleted: BTreeSet::from(["b".to_string()]),
            ..Collected::default()
        };
        let r = finish(got, done(true, Some(b"new")), Some(COOKIE.to_vec()));
        assert_eq!(r.changes.present, None);
        assert_eq!(r.cookie.as_deref(), Some(&b"new"[..]));
        // Present phase: the listed ids plus the upserted ones are all that remain.
        let got = Collected {
            upserts: vec![entry("a")],
            present: BTreeSet::from(["c".to_string()]),
            present_phase: true,
            ..Collected::default()
        };
        let r = finish(got, done(false, None), Some(COOKIE.to_vec()));
        assert_eq!(
            r.changes.present,
            Some(BTreeSet::from(["a".to_string(), "c".to_string()]))
        );
        // Nothing changed: no cookie from the server, the old one stays.
        let r = finish(
            Collected::default(),
            done(true, None),
            Some(COOKIE.to_vec()),
        );
        assert!(r.changes.is_empty());
        assert_eq!(r.cookie.as_deref(), Some(COOKIE));
        // Initial content: exactly what was sent.
        let got = Collected {
            upserts: vec![entry("a")],
            ..Collected::default()
        };
        let r = finish(got, done(true, Some(COOKIE)), None);
        assert_eq!(r.changes.present, Some(BTreeSet::from(["a".to_string()])));
    }
}
