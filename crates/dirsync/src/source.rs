//! The directory read as the agent makes it: [`dirsync_source`] asking for the attributes the
//! mapping reads. This is the one place where the source and the mapping meet; neither crate
//! knows the other.

pub use dirsync_source::*;

use crate::config::{AttributeConfig, Config, LdapConfig};
use crate::mapping;

/// Reads the configured directory once (LDIF file or LDAP server), asking for what the
/// mapping reads.
pub async fn read(config: &Config) -> Result<SourceRead, SourceError> {
    let ldap = &config.ad.ldap;
    let mapped = &config.iid.scim.attribute;
    dirsync_source::read(config, &|kind| attributes(ldap, mapped, kind)).await
}

/// The user and group searches of a full LDAP read for `ad.ldap.*`, the attribute mapping
/// and the directory kind (see [`dirsync_source::ldap_searches`]).
pub fn ldap_searches(
    ldap: &LdapConfig,
    mapping: &AttributeConfig,
    kind: DirectoryKind,
) -> DirectorySearches {
    dirsync_source::ldap_searches(ldap, attributes(ldap, mapping, kind), kind)
}

/// The attributes a read asks for: the ones the mapping reads ([`mapping::source_attributes`]),
/// with the configured or the kind's membership attributes.
pub fn attributes(
    ldap: &LdapConfig,
    mapping: &AttributeConfig,
    kind: DirectoryKind,
) -> Vec<String> {
    let defaults = kind.defaults();
    let group = &ldap.search.group;
    mapping::source_attributes(
        &mapping.user,
        &mapping.group,
        kind,
        group
            .member_attribute
            .as_deref()
            .unwrap_or(defaults.member_attribute),
        group
            .member_user_attribute
            .as_deref()
            .unwrap_or(defaults.member_user_attribute),
    )
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    #[test]
    fn searches_ask_for_the_mapped_attributes() {
        let mut ldap = crate::config::LdapConfig::default();
        let mapping = crate::config::AttributeConfig {
            // default: a constant that parses (covered by tests).
            user: serde_saphyr::from_str("ad_bind: { title: employeeType }").unwrap_or_default(),
            ..Default::default()
        };
        ldap.search.group.member_attribute = Some("memberUid".into());
        ldap.search.group.member_user_attribute = Some("uid".into());
        let s = ldap_searches(&ldap, &mapping, DirectoryKind::OpenLdap);
        let want = [
            "cn",
            "employeeType",
            "entryUUID",
            "givenName",
            "mail",
            "memberUid",
            "objectClass",
            "sn",
            "uid",
        ];
        assert_eq!(s.users.attributes, want);
        assert_eq!(s.groups.attributes, want);
        let ad = ldap_searches(
            &crate::config::LdapConfig::default(),
            &crate::config::AttributeConfig::default(),
            DirectoryKind::ActiveDirectory,
        );
        assert!(!ad.users.attributes.iter().any(|a| a == "*" || a == "+"));
        assert!(ad.users.attributes.contains(&"objectGUID".to_string()));
    }
}
