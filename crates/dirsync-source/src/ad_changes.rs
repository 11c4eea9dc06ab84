//! Incremental reads of Active Directory (behaviour §3 "Incremental reads"): what changed since a
//! stored [`Cursor`], as a [`ChangeSet`] the caller applies to its cached image of the
//! directory (stable id = objectGUID text as [`guid_text`] renders it).
//!
//! Two mechanisms, chosen by [`AdMechanism`] and by the kind of the stored cursor:
//!
//! * **DirSync** (control 1.2.840.113556.1.4.841) with `OBJECT_SECURITY | INCREMENTAL_VALUES`,
//!   so the service account needs no replication right (it only sees what its ACLs let it
//!   read). DirSync watches a whole naming context: the search base is the NC root, the
//!   configured base DN and filters are applied afterwards. DirSync only reports an object
//!   when a requested attribute changed, so it is asked for what must count as a change
//!   ([`dirsync_attributes`]: the mapped attributes, the filters' attributes, `name`,
//!   `member`). The cursor is the base64 cookie,
//!   tied to `<dnsHostName>|<NC>`; the cookie also names the DC invocation that issued it
//!   (MS-ADTS 3.1.1.3.4.1.3 `uuidSourceDsaInvocationID`), which is checked before it is sent:
//!   Samba answers a cookie from another invocation with *success and no changes*, which would
//!   silently lose every change.
//! * **uSNChanged** high-water marks, when DirSync is not wanted or refused: the cursor is the
//!   DC's `highestCommittedUSN` (read before the changes, so nothing committed during the read
//!   is skipped), tied to `<dnsHostName>|<invocationId>` (USNs are per DC and restart after a
//!   restore). Changes are `(uSNChanged>=N+1)` under the NC root (not only under the configured
//!   base: an object moved out of the base must still be seen to leave); deletions are
//!   tombstones under `CN=Deleted Objects` with the Show Deleted control.
//!
//! Both mechanisms only yield *which objects changed*. Each changed object is then re-read
//! completely with the very searches a full read makes ([`DirectorySearches`]: base, effective
//! filter, attributes, range retrieval), restricted to the changed objectGUIDs. The server
//! therefore decides scope exactly as in a full read (extensible matches, `objectCategory`,
//! `memberOf` filters included); nothing is evaluated locally. A changed object that the
//! re-read does not return has left the scope (moved out of the base, filter no longer
//! matches) and is reported in `deleted`; tombstones (`isDeleted=TRUE`) are `deleted` too.
//! Positive evidence only: an object is never reported deleted because it was not seen.
//!
//! Group membership is kept right from both sides: a group whose `member` changed is itself a
//! changed object (re-read whole); its members whose `memberOf` (and so a `memberOf` filter)
//! changed are re-read too: with DirSync those it reports added or removed
//! (`member;range=1-1` / `member;range=0-0`), with uSNChanged (which does not say) the group's
//! current members; and the groups listed in the `memberOf` of every changed object are
//! re-read because their `member` values name the object by DN, which a rename or move
//! changes without the group being reported.
//!
//! What this module deliberately does not know or do:
//! * the cached image: `deleted` may name objects the caller never cached (a changed computer
//!   or OU-level object outside the scope); removing those is a no-op;
//! * **links the server changes without reporting the other side**: deleting an object removes
//!   it from its groups (and a deleted group from its members' `memberOf`) without the group
//!   or the members being reported, by Samba's DirSync and by uSNChanged alike (link changes
//!   do not bump the other side's uSNChanged); likewise, in uSNChanged mode, a removed
//!   member's `memberOf`. The caller fixes those values in its image with [`update_links`]
//!   before applying the change set; it needs the old image, which this reader does not have;
//! * tombstone visibility: a non-admin account sees tombstones (DirSync or Show Deleted) only
//!   with List Contents + Read Property on `CN=Deleted Objects` (Windows: `dsacls
//!   "CN=Deleted Objects,<NC>" /takeownership` then `/g <account>:LCRP`). Without that grant
//!   deletions are invisible and only the periodic full reconcile removes them;
//! * in uSNChanged mode, which members a group *lost*: the group is re-read, a removed
//!   member is not (only DirSync's incremental values name it); [`update_links`] fixes its
//!   cached `memberOf`, but with a `memberOf`-based user filter its leaving the scope waits
//!   for the full reconcile;
//! * storing the cursor (the caller stores `next` with the applied changes) and deciding
//!   when to run a full reconcile (`full_reload_required` says when it must).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use ldap3::adapters::{Adapter, EntriesOnly, PagedResults};
use ldap3::controls::{Control, RawControl};
use ldap3::{Ldap, Scope, SearchEntry};

use super::DirectorySearches;
use super::changes::{ChangeSet, Cursor, CursorKind};
use super::ldap::{LdapSource, LdapSourceError, SearchSpec, connection_lost, lost_or, to_entry};
use super::{Entry, dn_within, normalize_dn};
use dirsync_model::anchor::guid_text;

/// The DirSync control (MS-ADTS 3.1.1.3.4.1.3).
pub const DIRSYNC_OID: &str = "1.2.840.113556.1.4.841";
/// Show Deleted: tombstones are returned by searches.
pub const SHOW_DELETED_OID: &str = "1.2.840.113556.1.4.417";
/// No "Replicating Directory Changes" right needed; results are ACL-filtered.
const DIRSYNC_OBJECT_SECURITY: u32 = 0x1;
/// Linked attributes (member) arrive as added/removed values, not as the whole list.
const DIRSYNC_INCREMENTAL_VALUES: u32 = 0x8000_0000;
/// What one DirSync round may return; the server says `moreResults` when there is more.
const DIRSYNC_MAX_BYTES: i32 = 1 << 20;
/// A server that keeps saying "more" forever must not hang the agent.
const DIRSYNC_MAX_ROUNDS: usize = 100_000;
/// objectGUIDs (or DNs) per OR filter when re-reading changed objects: about 2.5 KB of filter.
const CHUNK: usize = 40;
const PAGE_SIZE: i32 = 500;

/// Which mechanism to use when there is no cursor yet (with a cursor, its kind decides; a
/// cursor of the other kind than an explicit choice means a full reconcile).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdMechanism {
    /// DirSync when the DC offers it and lets the account use it, else uSNChanged.
    Auto,
    DirSync,
    Usn,
}

#[derive(Debug, thiserror::Error)]
pub enum AdChangesError {
    #[error(transparent)]
    Ldap(#[from] LdapSourceError),
    /// The read did not finish cleanly; nothing of it may be applied (the cursor would skip
    /// what was not read). Retry, or fall back to a full read.
    #[error("the incremental read did not finish: {0}")]
    Incomplete(String),
    /// DirSync was asked for explicitly and the DC refused it.
    #[error("the DC refused DirSync: {0}")]
    DirSyncRefused(String),
    #[error("the DC's rootDSE lacks {0}")]
    RootDse(&'static str),
}

impl crate::reconnect::Transient for AdChangesError {
    /// A lost connection; the server's answers (refusals, limits) are not retried here.
    fn is_transient(&self) -> bool {
        match self {
            AdChangesError::Ldap(e) => e.is_transient(),
            AdChangesError::Incomplete(_)
            | AdChangesError::DirSyncRefused(_)
            | AdChangesError::RootDse(_) => false,
        }
    }
}

/// Changes since `cursor` (or, with no cursor, a full read plus a fresh cursor: every object
/// in `upserts` and `present` listing them all, so applying it to any stale image is right).
///
/// `searches` are the full read's searches (`source::ldap_searches`); their base must lie in a
/// naming context of the DC `source` is bound to. With `full_reload_required` set nothing else
/// is: the caller calls again without a cursor.
pub async fn read_changes(
    source: &mut LdapSource,
    searches: &DirectorySearches,
    mechanism: AdMechanism,
    cursor: Option<&Cursor>,
) -> Result<ChangeSet, AdChangesError> {
    let dc = DcInfo::read(source, &searches.users.base).await?;
    let Some(cursor) = cursor else {
        return full_read(source, searches, &dc, mechanism).await;
    };
    let wanted = match cursor.kind {
        CursorKind::DirSync => AdMechanism::DirSync,
        CursorKind::Usn => AdMechanism::Usn,
        CursorKind::Syncrepl => {
            return Ok(reload("the stored cursor is an OpenLDAP syncrepl cookie"));
        }
    };
    if mechanism != AdMechanism::Auto && mechanism != wanted {
        return Ok(reload(&format!(
            "the stored cursor is for {wanted:?}, the reader is set to {mechanism:?}"
        )));
    }
    match cursor.kind {
        CursorKind::DirSync => {
            if cursor.origin != dc.dirsync_origin() {
                return Ok(reload(&format!(
                    "the DirSync cookie belongs to {}, this DC is {}",
                    cursor.origin,
                    dc.dirsync_origin()
                )));
            }
            let Ok(cookie) = B64.decode(cursor.value.trim()) else {
                return Ok(reload("the stored DirSync cookie is not base64"));
            };
            let Some(issued_by) = cookie_invocation(&cookie) else {
                return Ok(reload(
                    "the stored DirSync cookie is not a DirSync cookie (no MSDS header)",
                ));
            };
            if issued_by != dc.invocation_raw.as_slice() {
                return Ok(reload(
                    "the DirSync cookie was issued by another DC invocation (restore, or \
                     another DC); its changes cannot be trusted",
                ));
            }
            dirsync_changes(source, searches, &dc, cookie).await
        }
        // Usn; a syncrepl cursor was turned away above.
        _ => {
            if cursor.origin != dc.usn_origin() {
                return Ok(reload(&format!(
                    "the uSNChanged cursor belongs to {}, this DC is {}",
                    cursor.origin,
                    dc.usn_origin()
                )));
            }
            let Ok(usn) = cursor.value.trim().parse::<u64>() else {
                return Ok(reload("the stored uSNChanged cursor is not a number"));
            };
            if usn > dc.highest_usn {
                return Ok(reload(&format!(
                    "the stored USN {usn} is ahead of the DC's highestCommittedUSN {}",
                    dc.highest_usn
                )));
            }
            usn_changes(source, searches, &dc, usn).await
        }
    }
}

/// Keeps the links between cached objects (`member` and its back link `memberOf`) true for
/// the cached entries that `changes` does not re-read. Call it before
/// [`super::changes::apply`], while the image still holds the old versions:
///
/// * values naming an object that `changes` deletes are dropped: AD removes those links when
///   an object is deleted without reporting the other side as changed (Samba's DirSync and
///   uSNChanged alike);
/// * a re-read group that no longer lists a cached member loses its DN from that member's
///   `memberOf` (a link removal does not change the member's uSNChanged either);
/// * values naming a re-read object under its old DN (rename, move) are rewritten to the new
///   DN.
///
/// Everything it changes is derived from what the server returned in `changes`, never from
/// absence. Returns how many values were dropped or rewritten.
pub fn update_links(
    image: &mut BTreeMap<String, Entry>,
    changes: &ChangeSet,
    stable_id: impl Fn(&Entry) -> Option<String>,
) -> usize {
    let fresh: BTreeMap<String, &Entry> = changes
        .upserts
        .iter()
        .filter_map(|e| stable_id(e).map(|id| (id, e)))
        .collect();
    let links = LinkChanges::new(image, changes, &fresh);
    if links.is_empty() {
        return 0;
    }
    let mut count = 0;
    for (id, entry) in image.iter_mut() {
        if fresh.contains_key(id) {
            continue;
        }
        count += links.rewrite(entry);
    }
    count
}

/// What a change set does to the links of the cached entries it does not re-read.
struct LinkChanges {
    /// The (normalized) DNs of the cached objects the change set deletes.
    gone: BTreeSet<String>,
    /// Old group DN -> the member DNs it no longer lists.
    lost: BTreeMap<String, BTreeSet<String>>,
    /// Old DN -> new DN.
    renamed: BTreeMap<String, String>,
}

impl LinkChanges {
    /// Compares the re-read objects (`fresh`, by stable id) with their cached versions.
    fn new(
        image: &BTreeMap<String, Entry>,
        changes: &ChangeSet,
        fresh: &BTreeMap<String, &Entry>,
    ) -> LinkChanges {
        let gone: BTreeSet<String> = changes
            .deleted
            .iter()
            .filter_map(|id| image.get(id))
            .map(|e| normalize_dn(&e.dn))
            .collect();
        let mut lost: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        let mut renamed: BTreeMap<String, String> = BTreeMap::new();
        for (id, new) in fresh {
            let Some(old) = image.get(id) else {
                continue;
            };
            let old_dn = normalize_dn(&old.dn);
            let now = link_dns(new, "member");
            let dropped: BTreeSet<String> =
                link_dns(old, "member").difference(&now).cloned().collect();
            if !dropped.is_empty() {
                lost.insert(old_dn.clone(), dropped);
            }
            if old_dn != normalize_dn(&new.dn) {
                renamed.insert(old_dn, new.dn.clone());
            }
        }
        LinkChanges {
            gone,
            lost,
            renamed,
        }
    }

    /// Nothing to drop or rewrite.
    fn is_empty(&self) -> bool {
        self.gone.is_empty() && self.lost.is_empty() && self.renamed.is_empty()
    }

    /// What becomes of one member/memberOf value of a cached entry whose own DN is `own`:
    /// `None` drops it, `Some(Some(dn))` rewrites it, `Some(None)` keeps it.
    fn fate(&self, attr: &str, own: &str, v: &[u8]) -> Option<Option<&String>> {
        let Ok(text) = std::str::from_utf8(v) else {
            return Some(None);
        };
        let dn = normalize_dn(text);
        let lost_me = attr == "memberof" && self.lost.get(&dn).is_some_and(|m| m.contains(own));
        if self.gone.contains(&dn) || lost_me {
            return None;
        }
        Some(self.renamed.get(&dn))
    }

    /// Drops or rewrites the member/memberOf values of one cached entry; returns how many.
    fn rewrite(&self, entry: &mut Entry) -> usize {
        let own_dn = normalize_dn(&entry.dn);
        let mut count = 0;
        // The entry's buffer is rebuilt only when a value changes, which is rare.
        let mut edits: Vec<(&str, Vec<Vec<u8>>)> = Vec::new();
        for attr in ["member", "memberof"] {
            if let Some(kept) = self.edited_values(entry, attr, &own_dn, &mut count) {
                edits.push((attr, kept));
            }
        }
        if !edits.is_empty() {
            let mut edited = std::mem::take(entry).into_builder();
            for (attr, values) in edits {
                edited.set(attr, values);
            }
            *entry = edited.build();
        }
        count
    }

    /// The new values of one link attribute, `None` when none changes; adds the dropped and
    /// rewritten values to `count`.
    fn edited_values(
        &self,
        entry: &Entry,
        attr: &str,
        own_dn: &str,
        count: &mut usize,
    ) -> Option<Vec<Vec<u8>>> {
        let values = entry.values(attr);
        if !values
            .clone()
            .any(|v| !matches!(self.fate(attr, own_dn, v), Some(None)))
        {
            return None;
        }
        let mut kept = Vec::new();
        for v in values {
            match self.fate(attr, own_dn, v) {
                None => *count += 1,
                Some(Some(new_dn)) => {
                    kept.push(new_dn.as_bytes().to_vec());
                    *count += 1;
                }
                Some(None) => kept.push(v.to_vec()),
            }
        }
        Some(kept)
    }
}

/// The (normalized) DNs an entry's attribute lists.
fn link_dns(e: &Entry, attr: &str) -> BTreeSet<String> {
    e.strs(attr).into_iter().map(normalize_dn).collect()
}

/// A change set that asks for a full reload, saying why.
fn reload(why: &str) -> ChangeSet {
    ChangeSet {
        full_reload_required: Some(why.to_string()),
        ..ChangeSet::default()
    }
}

/// What identifies the DC and its position: read from the rootDSE and its NTDS Settings.
struct DcInfo {
    host: String,
    /// The naming context holding the configured base (DirSync's search base).
    nc: String,
    invocation_raw: Vec<u8>,
    invocation_text: String,
    highest_usn: u64,
    dirsync_offered: bool,
}

impl DcInfo {
    async fn read(source: &mut LdapSource, base: &str) -> Result<DcInfo, AdChangesError> {
        let root = source
            .root_dse(&[
                "defaultNamingContext",
                "namingContexts",
                "dnsHostName",
                "dsServiceName",
                "highestCommittedUSN",
                "supportedControl",
            ])
            .await?;
        let highest_usn = root
            .first_str("highestcommittedusn")
            .and_then(|v| v.trim().parse().ok())
            .ok_or(AdChangesError::RootDse("highestCommittedUSN"))?;
        let service = root
            .first_str("dsservicename")
            .ok_or(AdChangesError::RootDse("dsServiceName"))?
            .to_string();
        // dnsHostName names the DC itself, whichever address reached it; the URL is the
        // fallback for a DC that does not say.
        let host = root
            .first_str("dnshostname")
            .map(str::to_ascii_lowercase)
            .unwrap_or_else(|| source.server().to_string());
        let nc = root
            .strs("namingcontexts")
            .into_iter()
            .filter(|nc| !base.trim().is_empty() && dn_within(base, nc))
            .max_by_key(|nc| nc.len())
            .or_else(|| root.first_str("defaultnamingcontext"))
            .ok_or(AdChangesError::RootDse("defaultNamingContext"))?
            .to_string();
        let dirsync_offered = root.strs("supportedcontrol").contains(&DIRSYNC_OID);
        let (ldap, timeout) = source.handle();
        let settings = run_guarded(base_read(ldap, timeout, service.clone(), "invocationId"))
            .await?
            .map_err(|e| {
                lost_or(e, &service, |reason| LdapSourceError::Search {
                    base: service.clone(),
                    reason,
                })
            })?;
        let invocation_raw = settings
            .and_then(|e| e.values("invocationid").next().map(<[u8]>::to_vec))
            .ok_or(AdChangesError::RootDse(
                "an invocationId on its NTDS Settings",
            ))?;
        let invocation_text =
            guid_text(&invocation_raw).ok_or(AdChangesError::RootDse("a 16-byte invocationId"))?;
        Ok(DcInfo {
            host,
            nc,
            invocation_raw,
            invocation_text,
            highest_usn,
            dirsync_offered,
        })
    }

    fn dirsync_origin(&self) -> String {
        format!("{}|{}", self.host, normalize_dn(&self.nc))
    }

    fn usn_origin(&self) -> String {
        format!("{}|{}", self.host, self.invocation_text)
    }

    fn dirsync_cursor(&self, cookie: &[u8]) -> Cursor {
        Cursor {
            kind: CursorKind::DirSync,
            origin: self.dirsync_origin(),
            value: B64.encode(cookie),
        }
    }

    fn usn_cursor(&self) -> Cursor {
        Cursor {
            kind: CursorKind::Usn,
            origin: self.usn_origin(),
            value: self.highest_usn.to_string(),
        }
    }
}

/// No cursor: take a fresh position first, then read everything, so a change made during the
/// read is seen again next time rather than lost.
async fn full_read(
    source: &mut LdapSource,
    searches: &DirectorySearches,
    dc: &DcInfo,
    mechanism: AdMechanism,
) -> Result<ChangeSet, AdChangesError> {
    let next = match mechanism {
        AdMechanism::Usn => dc.usn_cursor(),
        AdMechanism::DirSync | AdMechanism::Auto => {
            let filter = class_filter(searches);
            let attrs = vec!["objectGUID".to_string()];
            match dirsync_rounds(source, &dc.nc, &filter, &attrs, Vec::new()).await? {
                Ok((_, cookie)) => dc.dirsync_cursor(&cookie),
                Err(refusal) if mechanism == AdMechanism::Auto => {
                    tracing::info!(
                        dc = %dc.host,
                        offered = dc.dirsync_offered,
                        reason = %refusal,
                        "DirSync not usable; incremental reads use uSNChanged"
                    );
                    dc.usn_cursor()
                }
                Err(refusal) => return Err(AdChangesError::DirSyncRefused(refusal.to_string())),
            }
        }
    };
    let mut all = BTreeMap::new();
    for spec in [&searches.users, &searches.groups] {
        let outcome = source.search(spec.clone()).await?;
        if !outcome.complete {
            return Err(AdChangesError::Incomplete(outcome.notes.join("; ")));
        }
        for e in outcome.entries {
            if let Some(id) = stable_id(&e) {
                all.insert(id, e);
            }
        }
    }
    Ok(ChangeSet {
        present: Some(all.keys().cloned().collect()),
        upserts: all.into_values().collect(),
        next: Some(next),
        ..ChangeSet::default()
    })
}

async fn dirsync_changes(
    source: &mut LdapSource,
    searches: &DirectorySearches,
    dc: &DcInfo,
    cookie: Vec<u8>,
) -> Result<ChangeSet, AdChangesError> {
    let filter = class_filter(searches);
    let attrs = dirsync_attributes(searches);
    let (entries, cookie) = match dirsync_rounds(source, &dc.nc, &filter, &attrs, cookie).await? {
        Ok(found) => found,
        Err(refusal) => {
            return Ok(reload(&format!(
                "the DC refused the DirSync cookie: {refusal}"
            )));
        }
    };
    let mut changed = BTreeMap::new();
    let mut deleted = BTreeSet::new();
    let mut touched = BTreeSet::new();
    for e in entries {
        let Some((id, raw)) = guid_of(&e) else {
            continue;
        };
        if is_deleted(&e) {
            changed.remove(&id);
            deleted.insert(id);
            continue;
        }
        // Incremental values: `member;range=1-1` added, `member;range=0-0` removed. Either
        // way the member's memberOf changed, and the group itself is re-read whole.
        for (name, values) in e.attributes() {
            if name.starts_with("member;") {
                touched.extend(values.filter_map(|v| String::from_utf8(v.to_vec()).ok()));
            }
        }
        deleted.remove(&id);
        changed.insert(id, raw);
    }
    let mut set = resolve(source, searches, &dc.nc, changed, touched, false).await?;
    set.deleted.extend(deleted);
    set.next = Some(dc.dirsync_cursor(&cookie));
    Ok(set)
}

async fn usn_changes(
    source: &mut LdapSource,
    searches: &DirectorySearches,
    dc: &DcInfo,
    usn: u64,
) -> Result<ChangeSet, AdChangesError> {
    let since = usn.saturating_add(1);
    let classes = class_filter(searches);
    let outcome = source
        .search(SearchSpec {
            base: dc.nc.clone(),
            filter: format!("(&(uSNChanged>={since}){classes})"),
            attributes: vec!["objectGUID".into()],
        })
        .await?;
    if !outcome.complete {
        return Err(AdChangesError::Incomplete(outcome.notes.join("; ")));
    }
    let changed: BTreeMap<String, Vec<u8>> = outcome.entries.iter().filter_map(guid_of).collect();
    let (ldap, timeout) = source.handle();
    let tombstones = run_guarded(show_deleted_search(
        ldap,
        timeout,
        format!("CN=Deleted Objects,{}", dc.nc),
        format!("(&(isDeleted=TRUE)(uSNChanged>={since}){classes})"),
    ))
    .await??;
    let mut set = resolve(source, searches, &dc.nc, changed, BTreeSet::new(), true).await?;
    set.deleted
        .extend(tombstones.iter().filter_map(guid_of).map(|(id, _)| id));
    set.next = Some(dc.usn_cursor());
    Ok(set)
}

/// What a DirSync round asks for. DirSync reports an object only when one of the requested
/// attributes changed (Samba's dirsync module drops an object whose changed attributes are
/// all unrequested; Windows does the same), so the list is what must make an object count
/// as changed, not what is kept (each changed object is re-read whole with the full read's
/// searches):
/// * the searches' attributes, the mapped ones (a change elsewhere cannot change a mapped
///   resource);
/// * every attribute the effective filters test: a change there can move the object in or
///   out of scope (`(!(description=excluded))`) without changing a mapped value;
/// * `name`: a rename or a move (in or out of the base) updates it; the DN alone is not an
///   attribute DirSync watches;
/// * `member`: its incremental values name the members whose `memberOf` changed (see the
///   module notes), whatever the configured member attribute is;
/// * `objectGUID` and `isDeleted`, so that tombstones are recognisable.
fn dirsync_attributes(searches: &DirectorySearches) -> Vec<String> {
    let mut attrs: Vec<String> = Vec::new();
    let mut add = |a: &str| {
        if !attrs.iter().any(|x| x.eq_ignore_ascii_case(a)) {
            attrs.push(a.to_string());
        }
    };
    for spec in [&searches.users, &searches.groups] {
        spec.attributes.iter().for_each(|a| add(a));
        // The filters were built by `ldap_searches` from validated parts; one that does not
        // parse here adds nothing, and the attributes above still cover the mapping.
        if let Ok(filter) = dirsync_ldap_filter::parse(&spec.filter) {
            filter_attributes(&filter, &mut add);
        }
    }
    for a in ["name", "member", "objectGUID", "isDeleted"] {
        add(a);
    }
    attrs
}

/// Calls `add` with every attribute a filter tests.
fn filter_attributes(filter: &dirsync_ldap_filter::LdapFilter, add: &mut impl FnMut(&str)) {
    use dirsync_ldap_filter::LdapFilter as F;
    match filter {
        F::And(items) | F::Or(items) => {
            for f in items {
                filter_attributes(f, add);
            }
        }
        F::Not(f) => filter_attributes(f, add),
        F::Equal(a, _)
        | F::Approx(a, _)
        | F::GreaterOrEqual(a, _)
        | F::LessOrEqual(a, _)
        | F::Present(a)
        | F::Substrings { attr: a, .. } => add(a),
        F::Extensible { attr, .. } => {
            if let Some(a) = attr {
                add(a);
            }
        }
    }
}

/// Re-reads changed objects with the full read's searches: what comes back is an upsert,
/// what does not has left the scope. Then the related objects (see the module notes) the
/// same way.
async fn resolve(
    source: &mut LdapSource,
    searches: &DirectorySearches,
    nc: &str,
    changed: BTreeMap<String, Vec<u8>>,
    touched_dns: BTreeSet<String>,
    expand_members: bool,
) -> Result<ChangeSet, AdChangesError> {
    let mut set = ChangeSet::default();
    if changed.is_empty() && touched_dns.is_empty() {
        return Ok(set);
    }
    // memberOf of every changed object, in scope or not: a member that was renamed, moved or
    // moved out is named by its old DN in the cached groups.
    let mut related_dns = touched_dns;
    for e in lookup(source, nc, guid_clauses(changed.values()), &["memberOf"]).await? {
        related_dns.extend(e.strs("memberof").into_iter().map(str::to_string));
    }
    let mut found = reread(source, searches, changed.values()).await?;
    if expand_members {
        // uSNChanged does not say which members a group gained: re-read its current ones
        // (their memberOf changed, and a memberOf filter may now select them).
        for e in found.values() {
            related_dns.extend(e.strs("member").into_iter().map(str::to_string));
        }
    }
    let mut related: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    let dn_clauses: Vec<String> = related_dns
        .iter()
        .map(|dn| format!("(distinguishedName={})", ldap3::ldap_escape(dn)))
        .collect();
    for e in lookup(source, nc, dn_clauses, &["objectGUID"]).await? {
        if let Some((id, raw)) = guid_of(&e)
            && !changed.contains_key(&id)
        {
            related.insert(id, raw);
        }
    }
    let found_related = reread(source, searches, related.values()).await?;
    for (id, _) in changed.iter().chain(related.iter()) {
        if !found.contains_key(id) && !found_related.contains_key(id) {
            set.deleted.insert(id.clone());
        }
    }
    found.extend(found_related);
    set.upserts = found.into_values().collect();
    Ok(set)
}

/// The full read's user and group searches, each narrowed to a chunk of objectGUIDs.
async fn reread<'a>(
    source: &mut LdapSource,
    searches: &DirectorySearches,
    guids: impl Iterator<Item = &'a Vec<u8>>,
) -> Result<BTreeMap<String, Entry>, AdChangesError> {
    let clauses = guid_clauses(guids);
    let mut found = BTreeMap::new();
    for chunk in clauses.chunks(CHUNK) {
        let ids = format!("(|{})", chunk.concat());
        for spec in [&searches.users, &searches.groups] {
            let outcome = source
                .search(SearchSpec {
                    base: spec.base.clone(),
                    filter: format!("(&{}{ids})", spec.filter),
                    attributes: spec.attributes.clone(),
                })
                .await?;
            if !outcome.complete {
                return Err(AdChangesError::Incomplete(outcome.notes.join("; ")));
            }
            for e in outcome.entries {
                if let Some(id) = stable_id(&e) {
                    found.insert(id, e);
                }
            }
        }
    }
    Ok(found)
}

/// Objects anywhere in the NC matching any of `clauses` (unfiltered by scope).
async fn lookup(
    source: &mut LdapSource,
    nc: &str,
    clauses: Vec<String>,
    attributes: &[&str],
) -> Result<Vec<Entry>, AdChangesError> {
    let mut out = Vec::new();
    for chunk in clauses.chunks(CHUNK) {
        let outcome = source
            .search(SearchSpec {
                base: nc.to_string(),
                filter: format!("(|{})", chunk.concat()),
                attributes: attributes.iter().map(|a| a.to_string()).collect(),
            })
            .await?;
        if !outcome.complete {
            return Err(AdChangesError::Incomplete(outcome.notes.join("; ")));
        }
        out.extend(outcome.entries);
    }
    Ok(out)
}

fn guid_clauses<'a>(guids: impl Iterator<Item = &'a Vec<u8>>) -> Vec<String> {
    guids
        .map(|raw| {
            let escaped: String = raw.iter().map(|b| format!("\\{b:02x}")).collect();
            format!("(objectGUID={escaped})")
        })
        .collect()
}

/// `(|(objectClass=user)(objectClass=group))` from the full read's effective filters
/// (`(&(objectClass=X)…)`): the change searches watch the object classes the read selects,
/// tombstones included (they keep objectClass). Falls back to every object.
fn class_filter(searches: &DirectorySearches) -> String {
    let mut classes: Vec<String> = Vec::new();
    for spec in [&searches.users, &searches.groups] {
        let class = match dirsync_ldap_filter::parse(&spec.filter) {
            Ok(dirsync_ldap_filter::LdapFilter::And(items)) => {
                items.into_iter().find_map(|f| match f {
                    dirsync_ldap_filter::LdapFilter::Equal(a, v)
                        if a.eq_ignore_ascii_case("objectclass") =>
                    {
                        String::from_utf8(v).ok()
                    }
                    _ => None,
                })
            }
            _ => None,
        };
        match class {
            Some(c) if !classes.iter().any(|x| x.eq_ignore_ascii_case(&c)) => classes.push(c),
            Some(_) => {}
            None => return "(objectClass=*)".to_string(),
        }
    }
    let parts: String = classes
        .iter()
        .map(|c| format!("(objectClass={})", ldap3::ldap_escape(c)))
        .collect();
    format!("(|{parts})")
}

fn stable_id(e: &Entry) -> Option<String> {
    e.values("objectguid").next().and_then(guid_text)
}

fn guid_of(e: &Entry) -> Option<(String, Vec<u8>)> {
    let raw = e.values("objectguid").next()?;
    Some((guid_text(raw)?, raw.to_vec()))
}

fn is_deleted(e: &Entry) -> bool {
    e.strs("isdeleted")
        .iter()
        .any(|v| v.eq_ignore_ascii_case("true"))
}

/// The invocationId a DirSync cookie was issued under: MS-ADTS 3.1.1.3.4.1.3 `Cookie`
/// (signature "MSDS", version, creationTime, reserved, utdVectorSize, a 24-byte USN vector,
/// then `uuidSourceDsaInvocationID`). Public for the fuzz targets (`fuzz/`).
pub fn cookie_invocation(cookie: &[u8]) -> Option<&[u8]> {
    if !cookie.starts_with(b"MSDS") {
        return None;
    }
    cookie.get(52..68)
}

/// The DC's refusal of a DirSync search: its result code and text.
#[derive(Debug, thiserror::Error)]
#[error("LDAP result {rc} ({text})")]
struct DirSyncRefusal {
    rc: u32,
    text: String,
}

/// Runs DirSync rounds from `cookie` until the DC says there is no more. The outer error is
/// a transport failure; the inner `Err` is the DC's refusal (its result code and text), which
/// the callers turn into a fallback or a full reload.
async fn dirsync_rounds(
    source: &LdapSource,
    nc: &str,
    filter: &str,
    attrs: &[String],
    cookie: Vec<u8>,
) -> Result<Result<(Vec<Entry>, Vec<u8>), DirSyncRefusal>, AdChangesError> {
    let (ldap, timeout) = source.handle();
    let nc = nc.to_string();
    let filter = filter.to_string();
    let attrs = attrs.to_vec();
    run_guarded(async move {
        let mut ldap = ldap;
        let mut cookie = cookie;
        let mut entries = Vec::new();
        for _ in 0..DIRSYNC_MAX_ROUNDS {
            let control = RawControl {
                ctype: DIRSYNC_OID.to_string(),
                crit: true,
                val: Some(dirsync_request(
                    DIRSYNC_OBJECT_SECURITY | DIRSYNC_INCREMENTAL_VALUES,
                    DIRSYNC_MAX_BYTES,
                    &cookie,
                )),
            };
            let result = ldap
                .with_controls(vec![control])
                .with_timeout(timeout)
                .search(&nc, Scope::Subtree, &filter, attrs.clone())
                .await
                .map_err(|e| {
                    lost_or(e, &nc, |reason| LdapSourceError::Search {
                        base: nc.clone(),
                        reason: format!("DirSync: {reason}"),
                    })
                })?;
            let ldap3::SearchResult(found, res) = result;
            if res.rc != 0 {
                // Transient conditions are errors to retry, not reasons for a full reload.
                if matches!(res.rc, 3 | 11 | 51 | 52 | 80) {
                    return Err(AdChangesError::Incomplete(format!(
                        "DirSync ended with LDAP result {} ({})",
                        res.rc, res.text
                    )));
                }
                return Ok(Err(DirSyncRefusal {
                    rc: res.rc,
                    text: res.text.trim().to_string(),
                }));
            }
            entries.extend(
                found
                    .into_iter()
                    .map(|r| to_entry(SearchEntry::construct(r))),
            );
            let response = res.ctrls.iter().find_map(|Control(_, raw)| {
                (raw.ctype == DIRSYNC_OID)
                    .then(|| raw.val.as_deref().and_then(parse_dirsync_response))
                    .flatten()
            });
            let Some((more, next)) = response else {
                return Err(AdChangesError::Incomplete(
                    "the DC answered DirSync without a (readable) DirSync response control".into(),
                ));
            };
            cookie = next;
            if !more {
                return Ok(Ok((entries, cookie)));
            }
        }
        Err(AdChangesError::Incomplete(format!(
            "DirSync still had more results after {DIRSYNC_MAX_ROUNDS} rounds"
        )))
    })
    .await?
}

/// Paged subtree search with Show Deleted (tombstones), without range completion (tombstones
/// keep no linked values).
async fn show_deleted_search(
    mut ldap: Ldap,
    timeout: Duration,
    base: String,
    filter: String,
) -> Result<Vec<Entry>, AdChangesError> {
    let show_deleted = RawControl {
        ctype: SHOW_DELETED_OID.to_string(),
        crit: true,
        val: None,
    };
    let adapters: Vec<Box<dyn Adapter<_, _>>> = vec![
        Box::new(EntriesOnly::new()),
        Box::new(PagedResults::new(PAGE_SIZE)),
    ];
    let err = |e: ldap3::LdapError| {
        lost_or(e, &base, |reason| LdapSourceError::Search {
            base: base.clone(),
            reason,
        })
    };
    let mut stream = ldap
        .with_controls(vec![show_deleted])
        .with_timeout(timeout)
        .streaming_search_with(
            adapters,
            &base,
            Scope::Subtree,
            &filter,
            vec!["objectGUID", "isDeleted"],
        )
        .await
        .map_err(err)?;
    let mut out = Vec::new();
    loop {
        match stream.next().await {
            Ok(Some(raw)) => out.push(to_entry(SearchEntry::construct(raw))),
            Ok(None) => break,
            Err(e) if connection_lost(&e) => return Err(err(e).into()),
            Err(e) => {
                return Err(AdChangesError::Incomplete(format!(
                    "tombstone search under {base} stopped early: {e}"
                )));
            }
        }
    }
    let res = stream.finish().await;
    if res.rc != 0 {
        return Err(AdChangesError::Incomplete(format!(
            "tombstone search under {base} ended with LDAP result {} ({})",
            res.rc, res.text
        )));
    }
    Ok(out)
}

/// One entry by DN (None when it does not exist or is not visible).
async fn base_read(
    mut ldap: Ldap,
    timeout: Duration,
    dn: String,
    attr: &'static str,
) -> Result<Option<Entry>, ldap3::LdapError> {
    let (found, _) = ldap
        .with_timeout(timeout)
        .search(&dn, Scope::Base, "(objectClass=*)", vec![attr])
        .await
        .and_then(|r| r.success())?;
    Ok(found
        .into_iter()
        .next()
        .map(|r| to_entry(SearchEntry::construct(r))))
}

/// ldap3 can panic on malformed BER from the server; guarded ([`super::ldap::guarded`]),
/// that fails this read, not the agent.
async fn run_guarded<T>(work: impl std::future::Future<Output = T>) -> Result<T, LdapSourceError> {
    super::ldap::guarded(work)
        .await
        .map_err(|_| LdapSourceError::Crashed)
}

/// BER of the DirSync request value: `SEQUENCE { flags INTEGER, maxBytes INTEGER, cookie
/// OCTET STRING }`. The flags go out as a signed 32-bit integer (0x80000000 is `80 00 00 00`,
/// as Windows and Samba expect), not as an unsigned 5-byte one.
fn dirsync_request(flags: u32, max_bytes: i32, cookie: &[u8]) -> Vec<u8> {
    let mut body = Vec::new();
    ber_integer(&mut body, i64::from(flags as i32));
    ber_integer(&mut body, i64::from(max_bytes));
    ber_tlv(&mut body, 0x04, cookie);
    let mut out = Vec::new();
    ber_tlv(&mut out, 0x30, &body);
    out
}

fn ber_integer(out: &mut Vec<u8>, value: i64) {
    let bytes = value.to_be_bytes();
    // Minimal two's complement: drop leading bytes that only repeat the sign.
    let mut start = 0;
    while start < 7 {
        let (b, next) = (bytes[start], bytes[start + 1]);
        if (b == 0x00 && next & 0x80 == 0) || (b == 0xff && next & 0x80 != 0) {
            start += 1;
        } else {
            break;
        }
    }
    ber_tlv(out, 0x02, &bytes[start..]);
}

fn ber_tlv(out: &mut Vec<u8>, tag: u8, value: &[u8]) {
    out.push(tag);
    let len = value.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let be = len.to_be_bytes();
        let skip = be.iter().take_while(|b| **b == 0).count();
        out.push(0x80 | (be.len() - skip) as u8);
        out.extend_from_slice(&be[skip..]);
    }
    out.extend_from_slice(value);
}

/// `SEQUENCE { moreResults INTEGER, unused INTEGER, cookie OCTET STRING }` → (more, cookie);
/// None for anything else (never panics on bad input). Public for the fuzz targets (`fuzz/`).
pub fn parse_dirsync_response(val: &[u8]) -> Option<(bool, Vec<u8>)> {
    let (_, tag) = ldap3::asn1::parse_tag(val).ok()?;
    let mut parts = tag.expect_constructed()?.into_iter();
    let more = parts.next()?.expect_primitive()?;
    let _unused = parts.next()?;
    let cookie = parts.next()?.expect_primitive()?;
    Some((more.iter().any(|b| *b != 0), cookie))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    #[test]
    fn dirsync_request_encoding() {
        // Checked against Samba (CRATES.md 2.2): INCREMENTAL_VALUES|OBJECT_SECURITY, 1 MiB.
        assert_eq!(
            dirsync_request(0x8000_0001, 1 << 20, &[]),
            [
                0x30, 0x0d, 0x02, 0x04, 0x80, 0x00, 0x00, 0x01, 0x02, 0x03, 0x10, 0x00, 0x00, 0x04,
                0x00
            ]
        );
        let long = vec![7u8; 300];
        let enc = dirsync_request(1, 0, &long);
        assert_eq!(&enc[..4], [0x30, 0x82, 0x01, 0x36]);
        assert_eq!(&enc[4..10], [0x02, 0x01, 0x01, 0x02, 0x01, 0x00]);
        assert_eq!(&enc[10..14], [0x04, 0x82, 0x01, 0x2c]);
        let mut b = Vec::new();
        ber_integer(&mut b, 128);
        assert_eq!(b, [0x02, 0x02, 0x00, 0x80]);
    }

    #[test]
    fn dirsync_response_parsing() {
        // 30 0a 02 01 01 02 01 00 04 02 ab cd: more=1, cookie abcd.
        let ok = [
            0x30, 0x0a, 0x02, 0x01, 0x01, 0x02, 0x01, 0x00, 0x04, 0x02, 0xab, 0xcd,
        ];
        assert_eq!(parse_dirsync_response(&ok), Some((true, vec![0xab, 0xcd])));
        for bad in [
            &[][..],
            &[0x30][..],
            &[0x30, 0x03, 0x02, 0x01, 0x00][..],
            &[0x04, 0x01, 0x00][..],
            &[0x30, 0x84, 0xff, 0xff, 0xff, 0xff][..],
        ] {
            assert_eq!(parse_dirsync_response(bad), None, "{bad:02x?}");
        }
    }

    #[test]
    fn cookie_names_its_invocation() {
        // A cookie Samba 4.17 issued (invocationId 8c4ec2da-2780-8541-...).
        let cookie = B64
            .decode("TVNEUwMAAACAkNdyVn7dAQAAAAAAAAAAKAAAAJoPAAAAAAAAAAAAAAAAAACaDwAAAAAAAIxOwtongIVBgFdS+NSzRNwBAAAAAAAAAAEAAAAAAAAAjE7C2ieAhUGAV1L41LNE3JoPAAAAAAAA")
            .unwrap();
        assert_eq!(
            guid_text(cookie_invocation(&cookie).unwrap()).unwrap(),
            "dac24e8c-8027-4185-8057-52f8d4b344dc"
        );
        assert_eq!(cookie_invocation(b"garbage"), None);
        assert_eq!(cookie_invocation(b"MSDS"), None);
    }

    #[test]
    fn links_follow_deletions_removals_and_renames() {
        let id = |e: &Entry| e.first_str("id").map(str::to_string);
        let mut image: BTreeMap<String, Entry> = BTreeMap::new();
        let mut put = |e: Entry| {
            image.insert(id(&e).unwrap(), e);
        };
        put(Entry::new("CN=U,OU=P,DC=x")
            .with("id", "u")
            .with("memberOf", "CN=G,OU=P,DC=x"));
        put(Entry::new("CN=V,OU=P,DC=x")
            .with("id", "v")
            .with("memberOf", "cn=g, ou=p, dc=x"));
        put(Entry::new("CN=G,OU=P,DC=x")
            .with("id", "g")
            .with("member", "CN=U,OU=P,DC=x")
            .with("member", "CN=V,OU=P,DC=x"));
        put(Entry::new("CN=H,OU=P,DC=x")
            .with("id", "h")
            .with("member", "cn=u,ou=p,dc=x"));
        // U and G deleted; V re-read in the same change set keeps what the server said.
        let changes = ChangeSet {
            deleted: BTreeSet::from(["u".to_string(), "g".to_string()]),
            upserts: vec![image["v"].clone()],
            ..ChangeSet::default()
        };
        assert_eq!(update_links(&mut image, &changes, id), 3);
        assert!(image["h"].bytes("member").is_empty());
        assert!(!image["h"].has("member"));
        assert_eq!(image["v"].strs("memberof"), ["cn=g, ou=p, dc=x"]);
        assert_eq!(update_links(&mut image, &ChangeSet::default(), id), 0);

        // K lists W and X; re-read, it lost W and was renamed to L.
        let mut image: BTreeMap<String, Entry> = BTreeMap::new();
        let mut put = |e: Entry| {
            image.insert(id(&e).unwrap(), e);
        };
        put(Entry::new("CN=W,DC=x")
            .with("id", "w")
            .with("memberOf", "CN=K,DC=x"));
        put(Entry::new("CN=X,DC=x")
            .with("id", "x")
            .with("memberOf", "CN=K,DC=x")
            .with("memberOf", "CN=Z,DC=x"));
        put(Entry::new("CN=K,DC=x")
            .with("id", "k")
            .with("member", "CN=W,DC=x")
            .with("member", "CN=X,DC=x"));
        let changes = ChangeSet {
            upserts: vec![
                Entry::new("CN=L,DC=x")
                    .with("id", "k")
                    .with("member", "cn=x,dc=x"),
            ],
            ..ChangeSet::default()
        };
        assert_eq!(update_links(&mut image, &changes, id), 2);
        assert!(image["w"].strs("memberof").is_empty());
        assert_eq!(image["x"].strs("memberof"), ["CN=L,DC=x", "CN=Z,DC=x"]);
    }

    #[test]
    fn dirsync_watches_mapped_and_filtered_attributes() {
        let spec = |f: &str, attrs: &[&str]| SearchSpec {
            base: "DC=x".into(),
            filter: f.into(),
            attributes: attrs.iter().map(|a| a.to_string()).collect(),
        };
        let s = DirectorySearches {
            users: spec(
                "(&(objectClass=user)(objectCategory=person)(!(description=excluded))(|(memberOf=CN=A,DC=x)(ou:dn:=Sales)(department=*)))",
                &["objectClass", "objectGUID", "mail", "member"],
            ),
            groups: spec(
                "(&(objectClass=group)(cn=Team*))",
                &["objectClass", "objectGUID", "mail", "member"],
            ),
        };
        assert_eq!(
            dirsync_attributes(&s),
            [
                "objectClass",
                "objectGUID",
                "mail",
                "member",
                "objectCategory",
                "description",
                "memberOf",
                "ou",
                "department",
                "cn",
                "name",
                "isDeleted",
            ]
        );
    }

    #[test]
    fn class_filter_from_effective_filters() {
        let spec = |f: &str| SearchSpec {
            base: "DC=x".into(),
            filter: f.into(),
            attributes: vec!["*".into()],
        };
        let s = DirectorySearches {
            users: spec("(&(objectClass=user)(objectCategory=person)(memberOf=CN=A,DC=x))"),
            groups: spec("(&(objectClass=group)(cn=Team*))"),
        };
        assert_eq!(class_filter(&s), "(|(objectClass=user)(objectClass=group))");
        let s = DirectorySearches {
            users: spec("(&(objectClass=user))"),
            groups: spec("(cn=*)"),
        };
        assert_eq!(class_filter(&s), "(objectClass=*)");
    }
}
