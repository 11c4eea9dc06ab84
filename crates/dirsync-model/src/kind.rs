//! The one directory kind (Active Directory or OpenLDAP) once `flavor: auto` has been decided,
//! and what each kind implies for the directory side (object classes, membership attributes).

use serde::Serialize;

use crate::entry::Entry;

/// The kind of directory, once `flavor: auto` has been decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum DirectoryKind {
    ActiveDirectory,
    OpenLdap,
}

/// Flavor defaults for the directory side (object classes, membership attributes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlavorDefaults {
    pub user_object_class: &'static str,
    pub group_object_class: &'static str,
    pub member_attribute: &'static str,
    pub member_user_attribute: &'static str,
}

impl DirectoryKind {
    pub fn defaults(self) -> FlavorDefaults {
        match self {
            // AD: computers are objectClass=user too; the LDAP source adds
            // (objectCategory=person) on the server side.
            DirectoryKind::ActiveDirectory => FlavorDefaults {
                user_object_class: "user",
                group_object_class: "group",
                member_attribute: "member",
                member_user_attribute: "dn",
            },
            DirectoryKind::OpenLdap => FlavorDefaults {
                user_object_class: "inetOrgPerson",
                group_object_class: "groupOfNames",
                member_attribute: "member",
                member_user_attribute: "dn",
            },
        }
    }

    /// `auto` for an LDIF file: entries with AD-only attributes mean Active Directory.
    pub fn guess(entries: &[Entry]) -> DirectoryKind {
        let ad = entries.iter().any(|e| {
            !e.bytes("objectguid").is_empty()
                || !e.bytes("samaccountname").is_empty()
                || !e.bytes("userprincipalname").is_empty()
        });
        if ad {
            DirectoryKind::ActiveDirectory
        } else {
            DirectoryKind::OpenLdap
        }
    }
}
