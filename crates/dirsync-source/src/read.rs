//! Reads the configured directory once — an LDIF file or an LDAP server — and decides the
//! directory kind (`flavor: auto`: rootDSE for LDAP, the entries for LDIF). The effective
//! search filter is the object class AND the configured filter (behaviour §2.1).

use std::path::Path;

use secrecy::SecretString;

use super::ldap::{
    Encryption as LdapEncryption, LdapSettings, LdapSource, LdapSourceError, SearchSpec,
};
use super::{DirectoryRead, Selection, ldif};
use crate::kerberos::KerberosSettings;
use dirsync_config::{Config, Encryption, Flavor, KdcAddress, LdapAuth};
use dirsync_model::kind::DirectoryKind;

#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error(transparent)]
    Ldap(#[from] LdapSourceError),
    #[error("{0}")]
    Ldif(String),
}

impl crate::reconnect::Transient for SourceError {
    fn is_transient(&self) -> bool {
        match self {
            SourceError::Ldap(e) => e.is_transient(),
            SourceError::Ldif(_) => false,
        }
    }
}

/// One read of the directory.
pub struct SourceRead {
    pub read: DirectoryRead,
    pub kind: DirectoryKind,
    /// What was read, for the report (`ldap://dc1:389`, `file sample.ldif`).
    pub description: String,
    /// How the agent authenticated (`simple bind as CN=…`, `GSSAPI (Kerberos) as …`); empty
    /// for a file.
    pub bind: String,
}

/// The attributes a read asks for once the directory kind is known. The caller decides them
/// (the agent: what the mapping reads); this crate only sends them.
pub type AttributesFor<'a> = &'a (dyn Fn(DirectoryKind) -> Vec<String> + Sync);

pub async fn read(
    config: &Config,
    attributes: AttributesFor<'_>,
) -> Result<SourceRead, SourceError> {
    if let Some(file) = &config.ad.ldif_file {
        return read_ldif(config, file);
    }
    read_ldap(config, attributes).await
}

/// The directory kind: as configured (`flavor`), or detected from the rootDSE — an AD DC
/// publishes `forestFunctionality` and the AD capability OID.
pub async fn directory_kind(
    source: &mut LdapSource,
    flavor: Flavor,
) -> Result<DirectoryKind, LdapSourceError> {
    if let Some(k) = flavor.kind() {
        return Ok(k);
    }
    let root = source
        .root_dse(&[
            "objectClass",
            "supportedCapabilities",
            "forestFunctionality",
        ])
        .await?;
    let ad = !root.bytes("forestFunctionality").is_empty()
        || root
            .strs("supportedCapabilities")
            .contains(&"1.2.840.113556.1.4.800");
    Ok(if ad {
        DirectoryKind::ActiveDirectory
    } else {
        DirectoryKind::OpenLdap
    })
}

fn read_ldif(config: &Config, file: &Path) -> Result<SourceRead, SourceError> {
    let text = std::fs::read_to_string(file)
        .map_err(|e| SourceError::Ldif(format!("cannot read {}: {e}", file.display())))?;
    let entries = ldif::parse(&text, &file.display().to_string())
        .map_err(|e| SourceError::Ldif(e.to_string()))?;
    let kind = config
        .ad
        .ldap
        .flavor
        .kind()
        .unwrap_or_else(|| DirectoryKind::guess(&entries));
    let selection = Selection::from_config(&config.ad.ldap, kind);
    let read = ldif::select(entries, &selection);
    Ok(SourceRead {
        read,
        kind,
        description: format!("LDIF file {}", file.display()),
        bind: String::new(),
    })
}

/// How to reach the configured LDAP server (`ad.ldap.server.*` and the bind password).
pub fn ldap_settings(config: &Config) -> LdapSettings {
    let server = &config.ad.ldap.server;
    let config_dir = config.config_path.parent().unwrap_or(Path::new("."));
    LdapSettings {
        addresses: server.addresses.clone(),
        port: server.effective_port(),
        encryption: match server.effective_encryption() {
            Encryption::None => LdapEncryption::None,
            Encryption::StartTls => LdapEncryption::StartTls,
            Encryption::Ldaps => LdapEncryption::Ldaps,
        },
        verify: server.verify_mode,
        ca_file: server.ca_file.as_ref().map(|f| config_dir.join(f)),
        // default: no `user` configured is an anonymous bind.
        bind_dn: server.user.clone().unwrap_or_default(),
        password: config
            .secrets
            .ldap_password
            .clone()
            .unwrap_or_else(|| SecretString::from(String::new())),
        kerberos: kerberos_settings(&server.auth, server.kdc.as_ref()),
        timeout: server.timeout(),
        page_size: 500,
    }
}

/// The Kerberos side of `ad.ldap.server.auth` (`None` for a simple bind). The loader has
/// already resolved a relative keytab against the config file's directory.
pub fn kerberos_settings(auth: &LdapAuth, kdc: Option<&KdcAddress>) -> Option<KerberosSettings> {
    match auth {
        LdapAuth::Simple => None,
        LdapAuth::Gssapi { keytab, principal } => Some(KerberosSettings {
            principal: principal.as_str().to_string(),
            realm: principal.realm().to_string(),
            keytab: keytab.clone(),
            kdc: kdc.map(|k| k.0.clone()),
        }),
    }
}

/// The user and group searches of a full LDAP read. Incremental readers make the same
/// searches, so the two can never disagree on what is in scope.
#[derive(Debug, Clone)]
pub struct DirectorySearches {
    pub users: SearchSpec,
    pub groups: SearchSpec,
}

/// Base, effective filters and attributes for `ad.ldap.*` and the directory kind.
///
/// The attributes are the ones the caller names (the agent: the ones the mapping reads),
/// one by one for both kinds rather than `*` (and `+` for OpenLDAP): a user entry then
/// carries a handful of values instead of every user and operational attribute
/// (creatorsName, entryCSN, modifyTimestamp, …), which a 100,000-user read holds in memory,
/// stores in the image and hashes. Operational attributes the mapping needs (entryUUID,
/// pwdAccountLockedTime) are returned because they are named. Users and groups share one
/// list; an attribute a kind of entry does not have costs nothing.
pub fn ldap_searches(
    ldap: &dirsync_config::LdapConfig,
    attributes: Vec<String>,
    kind: DirectoryKind,
) -> DirectorySearches {
    let selection = Selection::from_config(ldap, kind);
    let user_filter = effective_filter(
        &selection.user_object_class,
        ldap.filter.user.as_ref().map(|f| f.normalized()),
        kind == DirectoryKind::ActiveDirectory,
    );
    let group_filter = effective_filter(
        &selection.group_object_class,
        ldap.filter.group.as_ref().map(|f| f.normalized()),
        false,
    );
    DirectorySearches {
        users: SearchSpec {
            base: selection.base_dn.clone(),
            filter: user_filter,
            attributes: attributes.clone(),
        },
        groups: SearchSpec {
            base: selection.base_dn,
            filter: group_filter,
            attributes,
        },
    }
}

async fn read_ldap(
    config: &Config,
    attributes: AttributesFor<'_>,
) -> Result<SourceRead, SourceError> {
    let ldap = &config.ad.ldap;
    let settings = ldap_settings(config);
    let mut source = LdapSource::connect(&settings).await?;
    let kind = directory_kind(&mut source, ldap.flavor).await?;
    let searches = ldap_searches(ldap, attributes(kind), kind);
    let users = source.search(searches.users).await?;
    let groups = source.search(searches.groups).await?;
    let description = source.server().to_string();
    let bind = source.bound().to_string();
    source.close().await;
    let mut notes = users.notes;
    notes.extend(groups.notes);
    let read = DirectoryRead {
        users: users.entries,
        groups: groups.entries,
        complete: users.complete && groups.complete,
        notes,
    };
    Ok(SourceRead {
        read,
        kind,
        description,
        bind,
    })
}

/// `(&(objectClass=X)[(objectCategory=person)](configured))`. Computers are
/// `objectClass=user` in AD too, so AD users also need `objectCategory=person`.
fn effective_filter(object_class: &str, configured: Option<String>, ad_person: bool) -> String {
    let mut parts = vec![format!(
        "(objectClass={})",
        ldap3::ldap_escape(object_class)
    )];
    if ad_person {
        parts.push("(objectCategory=person)".to_string());
    }
    parts.extend(configured);
    format!("(&{})", parts.concat())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn effective_filter_combines_class_and_configured() {
        assert_eq!(
            effective_filter("inetOrgPerson", Some("(ou=Sales)".into()), false),
            "(&(objectClass=inetOrgPerson)(ou=Sales))"
        );
        assert_eq!(
            effective_filter("user", None, true),
            "(&(objectClass=user)(objectCategory=person))"
        );
    }
}
