//! The directory entry model shared by every source (LDAP, LDIF): entries as a DN plus raw
//! attribute values, and the result of one read of the directory.
//!
//! Values stay raw bytes here because some attributes are binary (objectGUID, objectSid) and
//! only mapping knows how to render them. This module does not know LDAP connections, SCIM,
//! or the configuration; the selection of users and groups lives with each source.

pub mod ad_changes;
pub mod changes;
pub mod ldap;
pub mod ldif;
mod read;
pub mod syncrepl;

pub use read::{
    DirectorySearches, SourceError, SourceRead, directory_kind, ldap_searches, ldap_settings, read,
};

use std::collections::BTreeMap;

/// One directory object. Attribute names are stored lower-case (LDAP names are
/// case-insensitive); options such as `;binary` or `;range=0-1499` are already resolved by
/// the source, so `member` holds every value.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Entry {
    pub dn: String,
    pub attrs: BTreeMap<String, Vec<Vec<u8>>>,
}

impl Entry {
    pub fn new(dn: impl Into<String>) -> Self {
        Entry {
            dn: dn.into(),
            attrs: BTreeMap::new(),
        }
    }

    /// Adds one value (builder style, for sources and tests).
    pub fn with(mut self, name: &str, value: impl AsRef<[u8]>) -> Self {
        self.push(name, value.as_ref().to_vec());
        self
    }

    /// Appends a value under the lower-cased attribute name.
    pub fn push(&mut self, name: &str, value: Vec<u8>) {
        self.attrs
            .entry(name.to_ascii_lowercase())
            .or_default()
            .push(value);
    }

    /// All raw values of an attribute (empty when absent). The name is case-insensitive.
    pub fn bytes(&self, name: &str) -> &[Vec<u8>] {
        self.attrs
            .get(&name.to_ascii_lowercase())
            .map(Vec::as_slice)
            .unwrap_or(&[])
    }

    /// The values that are valid UTF-8 text; binary values are skipped.
    pub fn strs(&self, name: &str) -> Vec<&str> {
        self.bytes(name)
            .iter()
            .filter_map(|v| std::str::from_utf8(v).ok())
            .collect()
    }

    /// The first non-empty text value.
    pub fn first_str(&self, name: &str) -> Option<&str> {
        self.strs(name).into_iter().find(|s| !s.is_empty())
    }

    /// Whether the entry has this object class (case-insensitive).
    pub fn has_object_class(&self, class: &str) -> bool {
        self.strs("objectclass")
            .iter()
            .any(|c| c.eq_ignore_ascii_case(class))
    }
}

/// The outcome of reading the directory once.
///
/// `complete` is false when the read did not finish cleanly (timeout, size limit, a page or a
/// member range missing, a filter the source could not evaluate): the planner then never
/// deletes, pends or removes members on the strength of it (SPEC 3, 5). `notes` say why, for
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
    pub user_filter: Option<crate::ldap_filter::LdapFilter>,
    pub group_object_class: String,
    pub group_filter: Option<crate::ldap_filter::LdapFilter>,
}

impl Selection {
    /// From `ad.ldap.*`, with the flavor's object classes where none is configured.
    pub fn from_config(
        ldap: &crate::config::LdapConfig,
        kind: crate::mapping::DirectoryKind,
    ) -> Self {
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

/// Whether `dn` is `base` or below it. DNs compare case-insensitively with spaces around
/// RDN separators ignored; an empty base contains everything.
pub fn dn_within(dn: &str, base: &str) -> bool {
    let base = normalize_dn(base);
    if base.is_empty() {
        return true;
    }
    let dn = normalize_dn(dn);
    dn == base || dn.ends_with(&format!(",{base}"))
}

/// A comparable form of a DN: lower-case, no blanks around `,` `=` and `+`. Escaped
/// separators (`\,`) are left alone, which is enough for comparison (not an RFC 4514 parser).
pub fn normalize_dn(dn: &str) -> String {
    let mut out = String::with_capacity(dn.len());
    let mut escaped = false;
    for c in dn.trim().chars() {
        if escaped {
            out.extend(c.to_lowercase());
            escaped = false;
            continue;
        }
        match c {
            '\\' => {
                escaped = true;
                out.push(c);
            }
            ',' | '=' | '+' => {
                while out.ends_with(' ') {
                    out.pop();
                }
                out.push(c);
            }
            ' ' if out.ends_with([',', '=', '+']) => {}
            _ => out.extend(c.to_lowercase()),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    #[test]
    fn helpers() {
        let e = Entry::new("cn=a,dc=x")
            .with("CN", "a")
            .with("mail", "")
            .with("mail", "a@x.jp")
            .with("objectGUID", [0xffu8, 0xfe]);
        assert_eq!(e.first_str("cn"), Some("a"));
        assert_eq!(e.first_str("MAIL"), Some("a@x.jp"));
        assert_eq!(e.strs("mail").len(), 2);
        assert!(e.strs("objectguid").is_empty());
        assert_eq!(e.bytes("objectguid").len(), 1);
    }

    #[test]
    fn dn_scope() {
        assert!(dn_within(
            "CN=Taro, OU=People,DC=Example,DC=jp",
            "dc=example, dc=jp"
        ));
        assert!(dn_within("dc=example,dc=jp", "DC=example,DC=jp"));
        assert!(!dn_within("cn=x,dc=badexample,dc=jp", "dc=example,dc=jp"));
        assert!(dn_within("cn=x", ""));
    }
}
