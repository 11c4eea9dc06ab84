//! The directory's changes since a cursor: connecting, the reader for the directory kind
//! (syncrepl or Active Directory), and the stable id the image is keyed by.

use super::*;

/// Why the directory could not be read (the run stops with exit 3, or a full run reads it
/// the plain way).
#[derive(Debug, thiserror::Error)]
pub(super) enum DirectoryError {
    #[error(transparent)]
    Ldap(#[from] source::ldap::LdapSourceError),
    #[error(transparent)]
    Syncrepl(#[from] syncrepl::SyncreplError),
    #[error(transparent)]
    Ad(#[from] ad_changes::AdChangesError),
    #[error(transparent)]
    Read(#[from] source::SourceError),
}

impl source::reconnect::Transient for DirectoryError {
    fn is_transient(&self) -> bool {
        match self {
            DirectoryError::Ldap(e) => e.is_transient(),
            DirectoryError::Syncrepl(e) => e.is_transient(),
            DirectoryError::Ad(e) => e.is_transient(),
            DirectoryError::Read(e) => e.is_transient(),
        }
    }
}

/// The directory's changes since a cursor, by reader.
pub(super) enum DirChanges {
    OpenLdap(Box<syncrepl::DirectoryChanges>),
    Ad(ChangeSet),
}

impl DirChanges {
    pub(super) fn is_empty(&self) -> bool {
        match self {
            DirChanges::OpenLdap(c) => c.is_empty(),
            DirChanges::Ad(c) => c.is_empty(),
        }
    }

    pub(super) fn reload(&self) -> Option<String> {
        match self {
            DirChanges::OpenLdap(c) => c.full_reload_required().map(str::to_string),
            DirChanges::Ad(c) => c.full_reload_required.clone(),
        }
    }

    pub(super) fn next(&self) -> Option<&Cursor> {
        match self {
            DirChanges::OpenLdap(c) => c.next.as_ref(),
            DirChanges::Ad(c) => c.next.as_ref(),
        }
    }
}

/// The stable id the image is keyed by: entryUUID (OpenLDAP) or objectGUID text (AD).
pub(super) fn stable_id(kind: DirectoryKind) -> fn(&Entry) -> Option<String> {
    fn ad(e: &Entry) -> Option<String> {
        e.bytes("objectguid")
            .first()
            .and_then(|g| crate::mapping::values::guid_text(g))
    }
    match kind {
        DirectoryKind::OpenLdap => syncrepl::stable_id,
        DirectoryKind::ActiveDirectory => ad,
    }
}

/// Connects to the configured LDAP server and decides the directory kind (`flavor`).
pub(super) async fn connect(
    config: &Config,
) -> Result<(LdapSource, DirectoryKind), DirectoryError> {
    let settings = source::ldap_settings(config);
    let mut ldap = LdapSource::connect(&settings).await?;
    let kind = source::directory_kind(&mut ldap, config.ad.ldap.flavor).await?;
    Ok((ldap, kind))
}

/// Reads changes since `cursor` (or, without one, everything plus a fresh cursor). A read cut
/// by a lost connection is made again from the start until the directory has stayed
/// unreachable for `sync.unreachable_after`; the report notes the losses.
pub(super) async fn read_changes(
    config: &Config,
    cursor: Option<&Cursor>,
    report: &mut Report,
) -> Result<DirRead, DirectoryError> {
    let read = source::reconnect::reconnecting(config.sync.unreachable_after.0, || {
        read_changes_once(config, cursor)
    })
    .await?;
    report.notes.extend(read.note());
    Ok(read.value)
}

/// The whole directory the plain paged way (an LDIF file, or a directory whose incremental
/// reader could not take a position), read again from the start after a lost connection as
/// [`read_changes`] does.
pub(super) async fn read_whole(
    config: &Config,
    report: &mut Report,
) -> Result<source::SourceRead, DirectoryError> {
    let read =
        source::reconnect::reconnecting(config.sync.unreachable_after.0, || source::read(config))
            .await?;
    report.notes.extend(read.note());
    Ok(read.value)
}

/// One attempt of [`read_changes`].
async fn read_changes_once(
    config: &Config,
    cursor: Option<&Cursor>,
) -> Result<DirRead, DirectoryError> {
    let (mut ldap, kind) = connect(config).await?;
    let searches = source::ldap_searches(&config.ad.ldap, &config.iid.scim.attribute, kind);
    let description = ldap.server().to_string();
    let bind = ldap.bound().to_string();
    let changes = match kind {
        DirectoryKind::OpenLdap => syncrepl::read_changes(&ldap, &searches, cursor)
            .await
            .map(|c| DirChanges::OpenLdap(Box::new(c)))
            .map_err(DirectoryError::from),
        DirectoryKind::ActiveDirectory => {
            let mechanism = match config.ad.ldap.change_tracking {
                ChangeTracking::Auto => ad_changes::AdMechanism::Auto,
                ChangeTracking::DirSync => ad_changes::AdMechanism::DirSync,
                ChangeTracking::UsnChanged => ad_changes::AdMechanism::Usn,
            };
            ad_changes::read_changes(&mut ldap, &searches, mechanism, cursor)
                .await
                .map(DirChanges::Ad)
                .map_err(DirectoryError::from)
        }
    };
    ldap.close().await;
    Ok(DirRead {
        changes: changes?,
        kind,
        description,
        bind,
    })
}

/// One read through an incremental reader.
pub(super) struct DirRead {
    pub(super) changes: DirChanges,
    pub(super) kind: DirectoryKind,
    pub(super) description: String,
    /// How the source was bound (see `LdapSource::bound`).
    pub(super) bind: String,
}
