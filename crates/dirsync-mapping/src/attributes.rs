//! Which directory attributes the mapping can read, so that an LDAP read asks the server for
//! those and nothing else (`*` and `+` would bring every operational attribute of every
//! entry: memory, read time, image size and hashing for values nobody maps).
//!
//! The list must cover every attribute any reader of a directory entry looks at: the
//! bindings (explicit, or the flavor default when a binding is absent), the stable id the
//! image is keyed by, `objectClass`, and the membership attributes. The bindings are taken
//! apart exhaustively, so a binding added to the configuration without being listed here
//! does not compile.

use super::{DirectoryKind, GroupMapping, UserMapping, effective, group_defaults};
use dirsync_config::{AttrList, GroupBindings, IdTokenClaimsBinding, NameBindings, UserBindings};

/// Every directory attribute the user and group mappings, the member resolution and the
/// incremental readers read from an entry, de-duplicated case-insensitively and sorted (a
/// stable list: the syncrepl cursor records it, and a different list means a full reload).
///
/// `member_attribute` is the group attribute listing members; `member_user_attribute` the
/// user attribute member values name (`dn`: the DN, which is no attribute).
pub fn source_attributes(
    user: &UserMapping,
    group: &GroupMapping,
    kind: DirectoryKind,
    member_attribute: &str,
    member_user_attribute: &str,
) -> Vec<String> {
    let mut out = Names::default();
    out.keys(kind);
    out.effective_user(user, kind);
    out.other_user(user);
    out.group(group, kind);
    out.membership(member_attribute, member_user_attribute);
    out.finish()
}

/// Attribute names, first spelling kept, case-insensitively unique.
#[derive(Default)]
struct Names(Vec<String>);

impl Names {
    /// The stable id and `objectClass`, read whatever the bindings say.
    fn keys(&mut self, kind: DirectoryKind) {
        // The stable id keys the image and the change sets whatever externalId is bound to;
        // objectClass splits AD change sets into users and groups.
        self.add(match kind {
            DirectoryKind::ActiveDirectory => "objectGUID",
            DirectoryKind::OpenLdap => "entryUUID",
        });
        self.add("objectClass");
    }

    /// The user bindings with a flavor default: what `map_user` actually reads.
    fn effective_user(&mut self, user: &UserMapping, kind: DirectoryKind) {
        let eff = effective(user, kind);
        self.list(&eff.external_id);
        self.list(&eff.user_name);
        self.list(&eff.active);
        if let Some(name) = &eff.name {
            self.name(name);
        }
        for binding in &eff.emails {
            self.list(&binding.value);
        }
    }

    /// The user bindings without a flavor default, taken apart exhaustively.
    fn other_user(&mut self, user: &UserMapping) {
        let UserBindings {
            // Read through `effective` (`effective_user`).
            external_id: _,
            user_name: _,
            name: _,
            active: _,
            emails: _,
            display_name,
            nick_name,
            title,
            user_type,
            preferred_language,
            locale,
            timezone,
            phone_numbers,
            employee_number,
            cost_center,
            organization,
            division,
            department,
            downstream_id,
            external_user_name,
            local_names,
            id_token_claims,
        } = &user.ad_bind;
        for binding in [
            display_name,
            nick_name,
            title,
            user_type,
            preferred_language,
            locale,
            timezone,
            employee_number,
            cost_center,
            organization,
            division,
            department,
            downstream_id,
            external_user_name,
        ]
        .into_iter()
        .flatten()
        {
            self.list(binding);
        }
        for binding in phone_numbers.iter().flat_map(|p| &p.0) {
            self.list(&binding.value);
        }
        if let Some(local) = local_names {
            self.name(local);
        }
        if let Some(IdTokenClaimsBinding {
            subject: Some(subject),
        }) = id_token_claims
        {
            self.list(subject);
        }
    }

    /// The group bindings, with the flavor defaults for externalId and displayName.
    fn group(&mut self, group: &GroupMapping, kind: DirectoryKind) {
        let GroupBindings {
            external_id,
            display_name,
            email,
            description,
        } = &group.ad_bind;
        let (default_external_id, default_display_name) = group_defaults(kind);
        self.list(external_id.as_ref().unwrap_or(&default_external_id));
        self.list(display_name.as_ref().unwrap_or(&default_display_name));
        for binding in [email, description].into_iter().flatten() {
            self.list(binding);
        }
    }

    /// The group's member attribute, and the user attribute member values name unless it is
    /// the DN.
    fn membership(&mut self, member_attribute: &str, member_user_attribute: &str) {
        self.add(member_attribute);
        let by_dn = member_user_attribute.trim().is_empty()
            || member_user_attribute.eq_ignore_ascii_case("dn");
        if !by_dn {
            self.add(member_user_attribute);
        }
    }

    /// Adds one name unless it is blank or already listed.
    fn add(&mut self, name: &str) {
        let name = name.trim();
        if !name.is_empty() && !self.0.iter().any(|n| n.eq_ignore_ascii_case(name)) {
            self.0.push(name.to_string());
        }
    }

    /// Adds the attributes of one binding.
    fn list(&mut self, attrs: &AttrList) {
        for a in &attrs.0 {
            self.add(a);
        }
    }

    /// Adds the attributes of every part of a name binding.
    fn name(&mut self, n: &NameBindings) {
        let NameBindings {
            formatted,
            family_name,
            given_name,
            middle_name,
            honorific_prefix,
            honorific_suffix,
        } = n;
        for part in [
            formatted,
            family_name,
            given_name,
            middle_name,
            honorific_prefix,
            honorific_suffix,
        ]
        .into_iter()
        .flatten()
        {
            self.list(part);
        }
    }

    /// The names, sorted case-insensitively.
    fn finish(mut self) -> Vec<String> {
        self.0.sort_by_key(|n| n.to_ascii_lowercase());
        self.0
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    fn attrs(user: &str, group: &str, kind: DirectoryKind, member: &str, by: &str) -> Vec<String> {
        let user: UserMapping = serde_saphyr::from_str(user).unwrap();
        let group: GroupMapping = serde_saphyr::from_str(group).unwrap();
        source_attributes(&user, &group, kind, member, by)
    }

    fn sorted(names: &[&str]) -> Vec<String> {
        let mut v: Vec<String> = names.iter().map(|s| s.to_string()).collect();
        v.sort_by_key(|n| n.to_ascii_lowercase());
        v
    }

    /// What, user mapping, group mapping, kind, member attribute, member-user attribute,
    /// the expected list.
    type Case = (
        &'static str,
        &'static str,
        &'static str,
        DirectoryKind,
        &'static str,
        &'static str,
        Vec<String>,
    );

    #[test]
    fn flavor_defaults_and_bindings() {
        use DirectoryKind::{ActiveDirectory as Ad, OpenLdap as Ol};
        let openldap_defaults = [
            "entryUUID",
            "objectClass",
            "mail",
            "uid",
            "sn",
            "givenName",
            "cn",
            "member",
        ];
        let ad_defaults = [
            "objectGUID",
            "objectClass",
            "userPrincipalName",
            "userAccountControl",
            "accountExpires",
            "sn",
            "givenName",
            "mail",
            "name",
            "cn",
            "member",
        ];
        let with = |base: &[&str], more: &[&str]| {
            let mut v = base.to_vec();
            v.extend_from_slice(more);
            sorted(&v)
        };
        let table: Vec<Case> = vec![
            (
                "openldap defaults",
                "{}",
                "{}",
                Ol,
                "member",
                "dn",
                sorted(&openldap_defaults),
            ),
            (
                "ad defaults",
                "{}",
                "{}",
                Ad,
                "member",
                "dn",
                sorted(&ad_defaults),
            ),
            (
                "a bound title adds its attribute",
                "ad_bind: { title: employeeType }",
                "{}",
                Ol,
                "member",
                "dn",
                with(&openldap_defaults, &["employeeType"]),
            ),
            (
                "memberUid names users by uid; OpenLDAP lock state is named explicitly",
                "ad_bind: { active: pwdAccountLockedTime }",
                "{}",
                Ol,
                "memberUid",
                "uid",
                sorted(&[
                    "entryUUID",
                    "objectClass",
                    "mail",
                    "uid",
                    "sn",
                    "givenName",
                    "cn",
                    "memberUid",
                    "pwdAccountLockedTime",
                ]),
            ),
            (
                "a written binding replaces the default; the stable id stays",
                "ad_bind: { externalId: employeeNumber, userName: sAMAccountName, name: { formatted: displayName }, emails: [ { value: proxyAddresses } ] }",
                "ad_bind: { externalId: sAMAccountName, displayName: displayName, email: mail, description: description }",
                Ad,
                "member",
                "DN",
                sorted(&[
                    "objectGUID",
                    "objectClass",
                    "employeeNumber",
                    "sAMAccountName",
                    "displayName",
                    "proxyAddresses",
                    "userAccountControl",
                    "accountExpires",
                    "mail",
                    "description",
                    "member",
                ]),
            ),
        ];
        for (what, user, group, kind, member, by, want) in table {
            assert_eq!(attrs(user, group, kind, member, by), want, "{what}");
        }
    }

    #[test]
    fn every_binding_is_listed_once() {
        let user = r#"
default:
  idTokenClaims: { issuer: 'https://idp.example.jp/op' }
ad_bind:
  externalId: objectGUID
  downstreamId: [mS-DS-ConsistencyGuid, objectGUID]
  userName: userPrincipalName
  displayName: displayName
  nickName: nickName
  name: { formatted: cn, familyName: sn, givenName: givenName, middleName: middleName, honorificPrefix: personalTitle, honorificSuffix: generationQualifier }
  localNames: { familyName: msDS-PhoneticLastName, givenName: msDS-PhoneticFirstName }
  active: [userAccountControl, accountExpires]
  externalUserName: userPrincipalName
  idTokenClaims: { subject: extensionAttribute1 }
  emails: [ { value: proxyAddresses }, { value: MAIL } ]
  phoneNumbers: [ { value: telephoneNumber }, { value: mobile } ]
  title: title
  userType: employeeType
  preferredLanguage: preferredLanguage
  locale: c
  timezone: extensionAttribute2
  employeeNumber: employeeNumber
  costCenter: extensionAttribute3
  organization: company
  division: division
  department: department
"#;
        let got = attrs(user, "{}", DirectoryKind::ActiveDirectory, "member", "dn");
        let want = sorted(&[
            "objectGUID",
            "objectClass",
            "mS-DS-ConsistencyGuid",
            "userPrincipalName",
            "displayName",
            "nickName",
            "cn",
            "sn",
            "givenName",
            "middleName",
            "personalTitle",
            "generationQualifier",
            "msDS-PhoneticLastName",
            "msDS-PhoneticFirstName",
            "userAccountControl",
            "accountExpires",
            "extensionAttribute1",
            "proxyAddresses",
            "MAIL",
            "telephoneNumber",
            "mobile",
            "title",
            "employeeType",
            "preferredLanguage",
            "c",
            "extensionAttribute2",
            "employeeNumber",
            "extensionAttribute3",
            "company",
            "division",
            "department",
            "name",
            "member",
        ]);
        assert_eq!(got, want);
    }
}
