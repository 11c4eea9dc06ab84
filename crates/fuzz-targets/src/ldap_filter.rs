//! RFC 4515 filter text through `dirsync_ldap_filter::validate` (our parser, then ldap3's
//! encoder, as a configuration check runs them) and, when it parses, local evaluation against
//! an entry (the LDIF source). Beyond not panicking: a parsed filter written back out (every
//! value byte escaped as `\xx`) parses to the same filter, and an error's position lies within
//! the text.

use std::fmt::Write as _;
use std::sync::OnceLock;

use dirsync_ldap_filter::LdapFilter;
use dirsync_model::entry::{Entry, EntryBuilder};

fn entry() -> &'static Entry {
    static ENTRY: OnceLock<Entry> = OnceLock::new();
    ENTRY.get_or_init(|| {
        EntryBuilder::new("uid=taro,ou=people,dc=example,dc=test")
            .with("objectClass", "inetOrgPerson")
            .with("uid", "taro")
            .with("cn", "IIJ Taro")
            .with("mail", "taro@example.test")
            .with("uSNChanged", "12345")
            .with("memberOf", "cn=staff,ou=groups,dc=example,dc=test")
            .with("objectGUID", [0u8, 1, 2, 0xff, b'*', b'(', 0])
            .build()
    })
}

fn value(out: &mut String, bytes: &[u8]) {
    for b in bytes {
        let _ = write!(out, "\\{b:02x}");
    }
}

/// The filter as RFC 4515 text.
fn render(f: &LdapFilter, out: &mut String) {
    out.push('(');
    match f {
        LdapFilter::And(items) | LdapFilter::Or(items) => {
            out.push(if matches!(f, LdapFilter::And(_)) {
                '&'
            } else {
                '|'
            });
            for i in items {
                render(i, out);
            }
        }
        LdapFilter::Not(inner) => {
            out.push('!');
            render(inner, out);
        }
        LdapFilter::Equal(a, v) => {
            out.push_str(a);
            out.push('=');
            value(out, v);
        }
        LdapFilter::Approx(a, v) => {
            out.push_str(a);
            out.push_str("~=");
            value(out, v);
        }
        LdapFilter::GreaterOrEqual(a, v) => {
            out.push_str(a);
            out.push_str(">=");
            value(out, v);
        }
        LdapFilter::LessOrEqual(a, v) => {
            out.push_str(a);
            out.push_str("<=");
            value(out, v);
        }
        LdapFilter::Present(a) => {
            out.push_str(a);
            out.push_str("=*");
        }
        LdapFilter::Substrings {
            attr,
            initial,
            any,
            last,
        } => {
            out.push_str(attr);
            out.push('=');
            if let Some(i) = initial {
                value(out, i);
            }
            out.push('*');
            for a in any {
                value(out, a);
                out.push('*');
            }
            if let Some(l) = last {
                value(out, l);
            }
        }
        LdapFilter::Extensible {
            attr,
            rule,
            dn,
            value: v,
        } => {
            out.push_str(attr.as_deref().unwrap_or(""));
            if *dn {
                out.push_str(":dn");
            }
            if let Some(r) = rule {
                out.push(':');
                out.push_str(r);
            }
            out.push_str(":=");
            value(out, v);
        }
    }
    out.push(')');
}

/// One input.
pub fn run(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match dirsync_ldap_filter::parse(text) {
        Ok(filter) => {
            let mut again = String::new();
            render(&filter, &mut again);
            let reparsed = dirsync_ldap_filter::parse(&again)
                .unwrap_or_else(|e| panic!("{text:?} → {again:?} does not parse: {e}"));
            assert_eq!(reparsed, filter, "{text:?} → {again:?}");
            let _ = filter.matches(entry());
            let _ = dirsync_ldap_filter::validate(text);
        }
        Err(e) => {
            let chars = text.chars().count();
            assert!(
                e.position >= 1 && e.position <= chars + 1,
                "{text:?}: position {} outside 1..={}: {}",
                e.position,
                chars + 1,
                e.message
            );
        }
    }
}
