//! Following the directory's changes as they happen, for `dirsync run` with `sync.watch: true`.
//!
//! A watcher does not read what changed: it only says *that* something under the base DN
//! changed ([`WatchEvent::Changed`]), and the caller then makes a normal incremental run
//! (syncrepl refreshOnly with the stored cookie, or DirSync / uSNChanged), which reads the
//! changes through the same planner and safety gates as any run. So a lost or duplicated
//! notification costs at most one extra or one later run, never a wrong write.
//!
//! - **OpenLDAP**: one RFC 4533 refreshAndPersist search over the base DN for the entries a
//!   run reads (the user filter or the group filter), no attributes. The first connection's refresh phase lists every entry (ids only); a
//!   reconnection sends the last cookie seen, so its refresh lists only what changed while the
//!   watcher was away. Every entry of the persist phase is a change.
//! - **Active Directory**: the change-notification control (a subtree search over the base DN
//!   that returns each object as it changes) where the directory grants it, and always
//!   `highestCommittedUSN` of the rootDSE, read every `poll_every`: a new value is a change.
//!   (The domain controller raises it on every write, so a change outside the scope also
//!   wakes the agent: the incremental run then finds nothing to do.)
//!
//! After every (re)connection the watcher reports [`WatchEvent::Connected`]: the caller runs
//! once then, so that what changed while it was disconnected is not missed. A connection that
//! fails or goes silent is reported as [`WatchEvent::Disconnected`] and retried with backoff
//! (1 s doubling to 60 s). The watcher runs until its receiver is dropped.
//!
//! It knows LDAP and the directory kind; not the mapping, the planner, the state or the target.

use std::time::Duration;

use ldap3::controls::{
    Control, ControlParser, ControlType, MakeCritical, RawControl, RefreshMode, SyncInfo,
    SyncRequest, SyncState, parse_syncinfo,
};
use ldap3::{Ldap, Scope, SearchStream};
use tokio::sync::mpsc;

use crate::ldap::{LdapSettings, LdapSource, LdapSourceError};
use dirsync_config::{Flavor, LdapConfig};
use dirsync_model::kind::DirectoryKind;

/// Active Directory's change-notification control (LDAP_SERVER_NOTIFICATION_OID).
const NOTIFICATION_OID: &str = "1.2.840.113556.1.4.528";
/// LDAP result code of e-syncRefreshRequired (RFC 4533 §2.6): the cookie is too old.
const SYNC_REFRESH_REQUIRED: u32 = 4096;
/// How long a persist search may stay silent before the connection is checked.
const LIVENESS_CHECK: Duration = Duration::from_secs(30);
/// Backoff between reconnection attempts: from the first to the last, doubling.
const BACKOFF_FIRST: Duration = Duration::from_secs(1);
const BACKOFF_LAST: Duration = Duration::from_secs(60);

/// What a watcher reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WatchEvent {
    /// Connected (again) and following changes from now on.
    Connected,
    /// Something under the base DN changed.
    Changed,
    /// The connection failed or was lost; the watcher reconnects by itself.
    Disconnected(String),
}

/// What to watch and how.
#[derive(Debug, Clone)]
pub struct WatchSpec {
    /// `ad.ldap.*`: the flavor (with `auto`, the kind is read from the rootDSE on each
    /// connection), the base DN and the user and group filters.
    pub ldap: LdapConfig,
    /// Active Directory: how often `highestCommittedUSN` is read.
    pub poll_every: Duration,
}

/// Why one connection of the watcher ended.
#[derive(Debug, thiserror::Error)]
enum Lost {
    #[error(transparent)]
    Connect(#[from] LdapSourceError),
    #[error("the watch search under {base} failed: {reason}")]
    Search { base: String, reason: String },
    #[error("the directory stopped answering")]
    Silent,
    #[error("the LDAP client failed while decoding a notification (malformed data)")]
    Crashed,
    #[error("the rootDSE shows no highestCommittedUSN")]
    NoUsn,
    /// The receiver is gone: the watcher ends.
    #[error("nobody listens")]
    Closed,
}

/// Watches until `events` is closed, reconnecting with backoff. `settings` is how a normal
/// run reaches the directory.
pub async fn watch(settings: LdapSettings, spec: WatchSpec, events: mpsc::Sender<WatchEvent>) {
    let mut cookie: Option<Vec<u8>> = None;
    let mut backoff = BACKOFF_FIRST;
    loop {
        // Set once this connection follows changes: a session that got that far starts the
        // backoff afresh.
        let mut followed = false;
        let lost = match connect(&settings, spec.ldap.flavor).await {
            Ok((source, DirectoryKind::OpenLdap)) => {
                follow_syncrepl(&source, &spec, &mut cookie, &mut followed, &events).await
            }
            Ok((source, DirectoryKind::ActiveDirectory)) => {
                poll_usn(source, &spec, &mut followed, &events).await
            }
            Err(e) => Lost::Connect(e),
        };
        if matches!(lost, Lost::Closed)
            || events
                .send(WatchEvent::Disconnected(lost.to_string()))
                .await
                .is_err()
        {
            return;
        }
        if followed {
            backoff = BACKOFF_FIRST;
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(BACKOFF_LAST);
    }
}

/// A bound connection and the kind of directory behind it.
async fn connect(
    settings: &LdapSettings,
    flavor: Flavor,
) -> Result<(LdapSource, DirectoryKind), LdapSourceError> {
    let mut source = LdapSource::connect(settings).await?;
    let kind = crate::read::directory_kind(&mut source, flavor).await?;
    Ok((source, kind))
}

/// One refreshAndPersist search, until it ends; returns why. Keeps the latest cookie in
/// `cookie` for the next connection (cleared when the server says it is too old).
async fn follow_syncrepl(
    source: &LdapSource,
    spec: &WatchSpec,
    cookie: &mut Option<Vec<u8>>,
    followed: &mut bool,
    events: &mpsc::Sender<WatchEvent>,
) -> Lost {
    let (ldap, timeout) = source.handle();
    let mut probe = ldap.clone();
    let persist = crate::ldap::guarded(persist(ldap, spec, cookie, followed, events));
    tokio::pin!(persist);
    loop {
        tokio::select! {
            ended = &mut persist => return ended.unwrap_or(Lost::Crashed),
            () = tokio::time::sleep(LIVENESS_CHECK) => {
                if !alive(&mut probe, timeout).await {
                    return Lost::Silent;
                }
            }
        }
    }
}

/// The search itself: refresh (reported as `Connected` when done), then persist.
async fn persist(
    mut ldap: Ldap,
    spec: &WatchSpec,
    cookie: &mut Option<Vec<u8>>,
    followed: &mut bool,
    events: &mpsc::Sender<WatchEvent>,
) -> Lost {
    let base = &spec.ldap.base_dn;
    let failed = |reason: String| Lost::Search {
        base: base.clone(),
        reason,
    };
    // The entries a run reads (users or groups, by the effective filters), so that a write
    // elsewhere under the base (the agent's own account, say) wakes nothing.
    let searches = crate::read::ldap_searches(&spec.ldap, Vec::new(), DirectoryKind::OpenLdap);
    let filter = format!("(|{}{})", searches.users.filter, searches.groups.filter);
    let request = SyncRequest {
        mode: RefreshMode::RefreshAndPersist,
        cookie: cookie.clone(),
        reload_hint: false,
    };
    // No timeout: the persist phase is silent for as long as nothing changes.
    let started = ldap
        .with_controls(request.critical())
        .streaming_search(base, Scope::Subtree, &filter, vec!["1.1"])
        .await;
    let mut stream: SearchStream<'_, &str, Vec<&str>> = match started {
        Ok(stream) => stream,
        Err(e) => return failed(e.to_string()),
    };
    loop {
        let message = match stream.next().await {
            Ok(Some(message)) => message,
            Ok(None) => break,
            Err(e) => return failed(e.to_string()),
        };
        let event = match take(message, cookie) {
            Message::RefreshDone if !*followed => {
                *followed = true;
                WatchEvent::Connected
            }
            Message::Entry if *followed => WatchEvent::Changed,
            Message::RefreshDone | Message::Entry | Message::Other => continue,
        };
        if events.send(event).await.is_err() {
            return Lost::Closed;
        }
    }
    let result = stream.finish().await;
    if result.rc == SYNC_REFRESH_REQUIRED {
        // The next connection starts from the whole content again.
        *cookie = None;
    }
    failed(format!(
        "the server ended the search (code {}: {})",
        result.rc, result.text
    ))
}

/// What one message of a refreshAndPersist search means to the watcher.
enum Message {
    /// The refresh phase is over: from now on every entry is a change.
    RefreshDone,
    /// An entry (with its Sync State).
    Entry,
    Other,
}

/// Classifies a message and keeps the cookie it carries.
fn take(message: ldap3::ResultEntry, cookie: &mut Option<Vec<u8>>) -> Message {
    let mut keep = |c: Option<Vec<u8>>| {
        if let Some(c) = c.filter(|c| !c.is_empty()) {
            *cookie = Some(c);
        }
    };
    if message.is_intermediate() {
        return match parse_syncinfo(message) {
            SyncInfo::NewCookie(c) => {
                keep(Some(c));
                Message::Other
            }
            SyncInfo::RefreshDelete {
                cookie,
                refresh_done,
            }
            | SyncInfo::RefreshPresent {
                cookie,
                refresh_done,
            } => {
                keep(cookie);
                if refresh_done {
                    Message::RefreshDone
                } else {
                    Message::Other
                }
            }
            SyncInfo::SyncIdSet { cookie, .. } => {
                keep(cookie);
                Message::Other
            }
        };
    }
    if message.is_ref() {
        return Message::Other;
    }
    let state = message.1.iter().find_map(|c| match c {
        Control(Some(ControlType::SyncState), raw) => raw.val.as_deref().map(SyncState::parse),
        _ => None,
    });
    if let Some(state) = state {
        keep(state.cookie);
    }
    Message::Entry
}

/// Whether the connection still answers a rootDSE read within `timeout`.
async fn alive(ldap: &mut Ldap, timeout: Duration) -> bool {
    let read = ldap
        .with_timeout(timeout)
        .search("", Scope::Base, "(objectClass=*)", vec!["1.1"])
        .await;
    read.is_ok_and(|result| result.success().is_ok())
}

/// Active Directory: reads `highestCommittedUSN` every `poll_every` until a read fails; the
/// first read is reported as `Connected`. Beside the poll, a change-notification search
/// ([`notifications`]) reports changes at once where the directory grants it; where it does
/// not (or it ends), the poll goes on alone.
async fn poll_usn(
    mut source: LdapSource,
    spec: &WatchSpec,
    followed: &mut bool,
    events: &mpsc::Sender<WatchEvent>,
) -> Lost {
    let mut last = match highest_usn(&mut source).await {
        Ok(usn) => usn,
        Err(lost) => return lost,
    };
    *followed = true;
    if events.send(WatchEvent::Connected).await.is_err() {
        return Lost::Closed;
    }
    let (ldap, _) = source.handle();
    let notified = crate::ldap::guarded(notifications(ldap, &spec.ldap.base_dn, events));
    tokio::pin!(notified);
    let mut notifying = true;
    loop {
        tokio::select! {
            ended = &mut notified, if notifying => {
                notifying = false;
                match ended {
                    Ok(Some(lost @ Lost::Closed)) => return lost,
                    Ok(Some(why)) => tracing::info!(
                        "Active Directory change notification not available ({why}); polling \
                         highestCommittedUSN every {:?}",
                        spec.poll_every
                    ),
                    Ok(None) | Err(()) => tracing::info!(
                        "Active Directory change notification ended; polling highestCommittedUSN \
                         every {:?}",
                        spec.poll_every
                    ),
                }
            }
            () = tokio::time::sleep(spec.poll_every) => match highest_usn(&mut source).await {
                Ok(now) if now == last => {}
                Ok(now) => {
                    last = now;
                    if events.send(WatchEvent::Changed).await.is_err() {
                        return Lost::Closed;
                    }
                }
                Err(lost) => return lost,
            },
        }
    }
}

/// The Active Directory change-notification control (LDAP_SERVER_NOTIFICATION_OID): a search
/// that stays open and returns each object under the base as it changes. Every entry is
/// reported as `Changed`; returns why the search ended (`None`: it ended without an error).
async fn notifications(
    mut ldap: Ldap,
    base: &str,
    events: &mpsc::Sender<WatchEvent>,
) -> Option<Lost> {
    let failed = |reason: String| {
        Some(Lost::Search {
            base: base.to_string(),
            reason,
        })
    };
    let control = RawControl {
        ctype: NOTIFICATION_OID.to_string(),
        crit: true,
        val: None,
    };
    let started = ldap
        .with_controls(vec![control])
        .streaming_search(base, Scope::Subtree, "(objectClass=*)", vec!["1.1"])
        .await;
    let mut stream: SearchStream<'_, &str, Vec<&str>> = match started {
        Ok(stream) => stream,
        Err(e) => return failed(e.to_string()),
    };
    loop {
        match stream.next().await {
            Ok(Some(message)) if message.is_intermediate() || message.is_ref() => {}
            Ok(Some(_)) => {
                tracing::debug!("Active Directory change notification: an object changed");
                if events.send(WatchEvent::Changed).await.is_err() {
                    return Some(Lost::Closed);
                }
            }
            Ok(None) => break,
            Err(e) => return failed(e.to_string()),
        }
    }
    let result = stream.finish().await;
    if result.rc == 0 {
        None
    } else {
        failed(format!("code {}: {}", result.rc, result.text))
    }
}

/// The rootDSE's `highestCommittedUSN`; a directory that does not show it cannot be watched
/// this way (an error, not a watcher that never fires).
async fn highest_usn(source: &mut LdapSource) -> Result<String, Lost> {
    let root = source.root_dse(&["highestCommittedUSN"]).await?;
    root.first_str("highestCommittedUSN")
        .map(str::to_string)
        .ok_or(Lost::NoUsn)
}
