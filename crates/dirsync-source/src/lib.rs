//! Reads the directory: LDAP (failover, TLS, paged search, range retrieval), an LDIF file,
//! the changes since a cursor (OpenLDAP syncrepl, Active Directory DirSync / USN), and a
//! watcher that says when the directory changed (`sync.watch`), and reading again after a
//! lost connection ([`reconnect`]).
//!
//! It returns raw entries ([`Entry`]: a DN and bytes per attribute) and decides the directory
//! kind. It takes the list of attributes to read from its caller and does not know the
//! mapping, SCIM, the planner, the local state or the target.

pub mod ad_changes;
pub mod changes;
pub mod kerberos;
pub mod ldap;
pub mod ldif;
mod read;
pub mod reconnect;
pub mod syncrepl;
pub mod watch;

pub use dirsync_model::entry::{Attributes, Entry, EntryBuilder, Values, dn_within, normalize_dn};
pub use dirsync_model::kind::DirectoryKind;
pub use read::{
    AttributesFor, DirectorySearches, SourceError, SourceRead, directory_kind, kerberos_settings,
    ldap_searches, ldap_settings, read,
};

/// The outcome of reading the directory once.
///
/// `complete` is false when the read did not finish cleanly (timeout, size limit, a page or a
/// member range missing, a filter the source could not evaluate): the planner then never
/// deletes, pends or removes members on the strength of it (behaviour §3, 5). `notes` say why, for
/// the report.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DirectoryRead {
    pub users: Vec<Entry>,
    pub groups: Vec<Entry>,
    pub complete: bool,
    pub notes: Vec<String>,
}

/// Which entries are users and which are groups, as configured (`ad.ldap.search.*`,
/// `ad.ldap.filter.*`, `ad.ldap.base_dn`). A network source composes the same parts into a
/// server-side filter `(&(objectClass=X)(filter))`; the LDIF source evaluates them locally.
#[derive(Debug, Clone)]
pub struct Selection {
    pub base_dn: String,
    pub user_object_class: String,
    pub user_filter: Option<dirsync_ldap_filter::LdapFilter>,
    pub group_object_class: String,
    pub group_filter: Option<dirsync_ldap_filter::LdapFilter>,
}

impl Selection {
    /// From `ad.ldap.*`, with the flavor's object classes where none is configured.
    pub fn from_config(ldap: &dirsync_config::LdapConfig, kind: DirectoryKind) -> Self {
        let d = kind.defaults();
        Selection {
            base_dn: ldap.base_dn.clone(),
            user_object_class: ldap
                .search
                .user
                .object_class
                .clone()
                .unwrap_or_else(|| d.user_object_class.to_string()),
            user_filter: ldap.filter.user.as_ref().map(|f| f.parsed.clone()),
            group_object_class: ldap
                .search
                .group
                .object_class
                .clone()
                .unwrap_or_else(|| d.group_object_class.to_string()),
            group_filter: ldap.filter.group.as_ref().map(|f| f.parsed.clone()),
        }
    }
}
