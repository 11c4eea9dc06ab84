//! The two real directories a history is applied to: a private slapd (syncrepl; with or
//! without the refint and memberof overlays, with or without a session log) and a Samba AD
//! DC (DirSync or uSNChanged). Each turns the model's [`Effect`]s into LDIF sent as an
//! administrator, reads `member` values back, and says how `dirsync` reaches it.

use serde_json::{Value, json};
use testenv::{SambaDc, Slapd, SlapdOptions};

use super::history::{Attr, Effect, Layout};

/// Which directory, and how it is set up.
#[derive(Clone, Copy, Debug)]
pub enum Backend {
    /// OpenLDAP: `refint` = the memberof and refint overlays; `sessionlog` = syncprov's
    /// session log (deletions as a delete phase; without it, present phases);
    /// `flatten` = `sync.flatten_nested_groups`.
    Slapd {
        refint: bool,
        sessionlog: bool,
        flatten: bool,
    },
    /// Samba AD with `ad.ldap.change_tracking` = `dir_sync` or `usn_changed`.
    Samba { usn: bool },
}

pub trait Directory {
    fn layout(&self) -> Layout;
    /// Sends one change; an error is the server's refusal.
    fn send(&self, effect: &Effect) -> testenv::Result<()>;
    /// The `member` values of a group as the server shows them.
    fn members(&self, group_dn: &str) -> testenv::Result<Vec<String>>;
    /// `ad.ldap` of the agent's configuration, and the keys of the rest it needs.
    fn config(&self) -> Value;
    /// The bind password of the agent's account.
    fn password(&self) -> String;
}

pub fn start(backend: Backend) -> Box<dyn Directory> {
    match backend {
        Backend::Slapd {
            refint,
            sessionlog,
            flatten,
        } => Box::new(LdapDir::start(refint, sessionlog, flatten)),
        Backend::Samba { usn } => Box::new(AdDir::start(usn)),
    }
}

/// `changetype: modify` replacing (or, without values, removing) attributes.
fn replace(dn: &str, attrs: &[(&str, Option<&str>)]) -> String {
    let mut ldif = format!("dn: {dn}\nchangetype: modify\n");
    for (attr, value) in attrs {
        ldif.push_str(&format!("replace: {attr}\n"));
        if let Some(v) = value {
            ldif.push_str(&format!("{attr}: {v}\n"));
        }
        ldif.push_str("-\n");
    }
    ldif
}

/// The LDIF of the effects both directories express alike; `None` for the others.
fn common_ldif(effect: &Effect) -> Option<String> {
    Some(match effect {
        Effect::ModRdn { dn, rdn, superior } => {
            let mut ldif =
                format!("dn: {dn}\nchangetype: modrdn\nnewrdn: {rdn}\ndeleteoldrdn: 1\n");
            if let Some(s) = superior {
                ldif.push_str(&format!("newsuperior: {s}\n"));
            }
            ldif
        }
        Effect::Member { dn, add, value } => format!(
            "dn: {dn}\nchangetype: modify\n{op}: member\nmember: {value}\n-\n",
            op = if *add { "add" } else { "delete" }
        ),
        Effect::Delete { dn } => format!("dn: {dn}\nchangetype: delete\n"),
        _ => return None,
    })
}

struct LdapDir {
    slapd: Slapd,
    refint: bool,
    flatten: bool,
}

impl LdapDir {
    fn start(refint: bool, sessionlog: bool, flatten: bool) -> LdapDir {
        let slapd = Slapd::start_with(SlapdOptions {
            sessionlog: if sessionlog { 100_000 } else { 0 },
            memberof: refint,
            ..SlapdOptions::default()
        })
        .expect("start slapd");
        let base = &slapd.base;
        slapd
            .add(&format!(
                "dn: ou=corp,{base}\nobjectClass: organizationalUnit\nou: corp\n\n\
                 dn: ou=people,ou=corp,{base}\nobjectClass: organizationalUnit\nou: people\n\n\
                 dn: ou=groups,ou=corp,{base}\nobjectClass: organizationalUnit\nou: groups\n\n\
                 dn: ou=outside,{base}\nobjectClass: organizationalUnit\nou: outside\n\n"
            ))
            .expect("add the OUs");
        LdapDir {
            slapd,
            refint,
            flatten,
        }
    }
}

impl Directory for LdapDir {
    fn layout(&self) -> Layout {
        let base = &self.slapd.base;
        Layout {
            people: format!("ou=people,ou=corp,{base}"),
            groups: format!("ou=groups,ou=corp,{base}"),
            outside: format!("ou=outside,{base}"),
            user_rdn_attr: "uid",
            group_rdn_attr: "cn",
            refint: self.refint,
            // groupOfNames must keep one member.
            placeholder: Some(format!("cn=nobody,ou=outside,{base}")),
        }
    }

    fn send(&self, effect: &Effect) -> testenv::Result<()> {
        if let Some(ldif) = common_ldif(effect) {
            return self.slapd.modify(&ldif);
        }
        match effect {
            Effect::AddUser { dn, state } => {
                let rdn = &state.rdn;
                let mut ldif = format!(
                    "dn: {dn}\nobjectClass: inetOrgPerson\nuid: {rdn}\ncn: {rdn}\nsn: Test\n\
                     mail: {}\nemployeeType: {}\n",
                    state.user_name, state.enabled
                );
                if state.offboarded {
                    ldif.push_str("businessCategory: offboarded\n");
                }
                self.slapd.add(&ldif)
            }
            Effect::AddGroup { dn, members } => {
                let cn = dn
                    .split(',')
                    .next()
                    .and_then(|rdn| rdn.split_once('='))
                    .map(|(_, v)| v)
                    .unwrap_or_default();
                let mut ldif = format!("dn: {dn}\nobjectClass: groupOfNames\ncn: {cn}\n");
                for m in members {
                    ldif.push_str(&format!("member: {m}\n"));
                }
                self.slapd.add(&ldif)
            }
            Effect::Replace { dn, attr, value } => {
                let name = match attr {
                    Attr::Title => "title",
                    Attr::Description => "description",
                    Attr::UserName => "mail",
                    Attr::Scope => "businessCategory",
                };
                self.slapd.modify(&replace(dn, &[(name, value.as_deref())]))
            }
            Effect::Enable { dn, enabled } => {
                let value = enabled.to_string();
                self.slapd
                    .modify(&replace(dn, &[("employeeType", Some(&value))]))
            }
            Effect::ModRdn { .. } | Effect::Member { .. } | Effect::Delete { .. } => {
                unreachable!("sent as common LDIF")
            }
        }
    }

    fn members(&self, group_dn: &str) -> testenv::Result<Vec<String>> {
        self.slapd.values(group_dn, "member")
    }

    fn config(&self) -> Value {
        json!({
            "ad": {"ldap": {
                "server": {
                    "addresses": ["127.0.0.1"],
                    "port": self.slapd.port,
                    "user": self.slapd.sync_dn,
                },
                "base_dn": format!("ou=corp,{}", self.slapd.base),
                "flavor": "openldap",
                "filter": {"user": "(!(businessCategory=offboarded))"},
            }},
            "iid": {"scim": {"attribute": {"user": {"ad_bind": {
                "active": "employeeType",
                "title": "title",
            }}}}},
            "sync": {"flatten_nested_groups": self.flatten},
        })
    }

    fn password(&self) -> String {
        self.slapd.sync_pw.clone()
    }
}

struct AdDir {
    dc: SambaDc,
    usn: bool,
}

impl AdDir {
    fn start(usn: bool) -> AdDir {
        let dc = SambaDc::start("EXAMPLE.TEST", "EXAMPLE").expect("start the Samba AD DC");
        // Tombstones are visible to the service account only with this grant.
        dc.grant_deleted_objects_read("svc-dirsync")
            .expect("grant Deleted Objects read");
        let corp = dc.add_ou("corp").expect("OU=corp");
        dc.add_ou(&format!("OU=people,{corp}")).expect("OU=people");
        dc.add_ou(&format!("OU=groups,{corp}")).expect("OU=groups");
        dc.add_ou("outside").expect("OU=outside");
        AdDir { dc, usn }
    }
}

impl Directory for AdDir {
    fn layout(&self) -> Layout {
        let base = &self.dc.base_dn;
        Layout {
            people: format!("OU=people,OU=corp,{base}"),
            groups: format!("OU=groups,OU=corp,{base}"),
            outside: format!("OU=outside,{base}"),
            user_rdn_attr: "CN",
            group_rdn_attr: "CN",
            refint: true,
            placeholder: None,
        }
    }

    fn send(&self, effect: &Effect) -> testenv::Result<()> {
        if let Some(ldif) = common_ldif(effect) {
            return self.dc.modify(&ldif);
        }
        match effect {
            Effect::AddUser { dn, state } => {
                let parent = dn.split_once(',').map(|(_, p)| p).unwrap_or_default();
                let name = &state.rdn;
                let upn = &state.user_name;
                self.dc
                    .add_user(name, name, "Test", Some(upn), Some(upn), Some(parent))?;
                let uac = if state.enabled { "512" } else { "514" };
                let scope = state.offboarded.then_some("offboarded");
                self.dc.modify(&replace(
                    dn,
                    &[("userAccountControl", Some(uac)), ("employeeType", scope)],
                ))
            }
            Effect::AddGroup { dn, .. } => {
                let (rdn, parent) = dn.split_once(',').unwrap_or_default();
                let cn = rdn.trim_start_matches("CN=");
                self.dc.add_group_in(cn, Some(parent)).map(|_| ())
            }
            Effect::Replace { dn, attr, value } => {
                let v = value.as_deref();
                let attrs: &[(&str, Option<&str>)] = match attr {
                    Attr::Title => &[("title", v)],
                    Attr::Description => &[("description", v)],
                    Attr::UserName => &[("userPrincipalName", v), ("mail", v)],
                    Attr::Scope => &[("employeeType", v)],
                };
                self.dc.modify(&replace(dn, attrs))
            }
            Effect::Enable { dn, enabled } => {
                let uac = if *enabled { "512" } else { "514" };
                self.dc
                    .modify(&replace(dn, &[("userAccountControl", Some(uac))]))
            }
            Effect::ModRdn { .. } | Effect::Member { .. } | Effect::Delete { .. } => {
                unreachable!("sent as common LDIF")
            }
        }
    }

    fn members(&self, group_dn: &str) -> testenv::Result<Vec<String>> {
        Ok(self
            .dc
            .values(group_dn, "member")?
            .into_iter()
            .map(|v| String::from_utf8_lossy(&v).into_owned())
            .collect())
    }

    fn config(&self) -> Value {
        json!({
            "ad": {"ldap": {
                "server": {
                    "addresses": [self.dc.ip],
                    "port": self.dc.ldap_port,
                    "user": self.dc.svc_dn,
                },
                "base_dn": format!("OU=corp,{}", self.dc.base_dn),
                "flavor": "active_directory",
                "change_tracking": if self.usn { "usn_changed" } else { "dir_sync" },
                "filter": {"user": "(!(employeeType=offboarded))"},
            }},
            "iid": {"scim": {"attribute": {"user": {"ad_bind": {"title": "title"}}}}},
        })
    }

    fn password(&self) -> String {
        self.dc.svc_pw.clone()
    }
}
