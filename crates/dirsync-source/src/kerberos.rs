//! Kerberos (SASL GSSAPI) binds to Active Directory (`ad.ldap.server.auth.mechanism: gssapi`):
//! the process environment that keeps the credential cache private, the bind itself through
//! ldap3's GSSAPI support (cross-krb5 over the system's MIT libgssapi), and Kerberos failures
//! in plain words.
//!
//! **Private credentials.** MIT Kerberos reads its configuration, its credential cache and the
//! client keytab from the environment (`KRB5_CONFIG`, `KRB5CCNAME`, `KRB5_CLIENT_KTNAME`), and
//! a process can only set those for itself before it starts (changing the environment of a
//! running multi-threaded process is not safe). So the `dirsync` binary re-executes itself
//! once with [`environment`]: a `MEMORY:` credential cache (tickets live only in this process's
//! memory and die with it), the configured keytab as the client keytab (MIT then gets the
//! initial ticket from it for the configured principal), and a private krb5.conf
//! ([`private_krb5_conf`]) read before the system one. This module only computes them; the
//! binary writes the file and re-executes.
//!
//! **Security layer.** ldap3 asks for the Kerberos *confidentiality* layer (sealing, which
//! includes integrity: every LDAP message is wrapped with `gss_wrap`) on plain `ldap://`, and
//! no layer over TLS (LDAPS or StartTLS), where it sends the `tls-server-end-point` channel
//! binding instead. It never asks for integrity alone, and its check that the server offers
//! the layer it wants is ineffective (`mask | wanted == 0`), so a server offering no
//! confidentiality would refuse the bind rather than ldap3 noticing. A server that requires
//! signing on plain LDAP (Samba's "require strong auth", Windows' LDAP signing requirement)
//! accepts the sealed connection; Samba before 4.20 also wants a layer inside TLS (see
//! `refused`).
//!
//! Nothing here reads the keytab's contents or sees a ticket; messages name files, principals
//! and causes only.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use cross_krb5::{Cred, InitiateFlags, K5Cred};
use ldap3::Ldap;
use ldap3::exop::WhoAmI;

/// Set (to the directory holding the private krb5.conf) in the environment of a process
/// prepared by [`environment`]: the re-executed `dirsync` sees it and does not prepare again.
pub const PREPARED_ENV: &str = "DIRSYNC_KRB5_DIR";

/// The file name of the private krb5.conf inside the [`PREPARED_ENV`] directory.
pub const CONF_FILE: &str = "krb5.conf";

/// The credential cache of a prepared process: MIT's per-process memory cache.
pub const CCACHE: &str = "MEMORY:dirsync";

/// What a GSSAPI bind uses (`ad.ldap.server.auth`, `ad.ldap.server.kdc`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KerberosSettings {
    /// `name@REALM`.
    pub principal: String,
    /// The realm part of the principal.
    pub realm: String,
    /// The keytab file (absolute, or relative to the working directory).
    pub keytab: PathBuf,
    /// `host[:port]` of the KDC, when configured.
    pub kdc: Option<String>,
}

/// The krb5.conf read before the system's (`KRB5_CONFIG=<this>:<system>`; the first file
/// that sets a value wins). Host names are used as written (no reverse DNS, no
/// canonicalisation: the service principal is `ldap/<address as configured>`), the clock is
/// not silently re-synchronised to the KDC's (a clock skew is reported, not hidden), the
/// principal's realm is the default realm, and a configured KDC is the realm's only KDC,
/// over TCP.
pub fn private_krb5_conf(settings: &KerberosSettings) -> String {
    let mut conf = format!(
        "# written by dirsync for this run only (ad.ldap.server.auth: gssapi)\n\
         [libdefaults]\n default_realm = {realm}\n rdns = false\n \
         dns_canonicalize_hostname = false\n kdc_timesync = 0\n",
        realm = settings.realm
    );
    if let Some(kdc) = &settings.kdc {
        conf.push_str(&format!(
            " dns_lookup_kdc = false\n udp_preference_limit = 1\n[realms]\n {realm} = {{\n  \
             kdc = {kdc}\n }}\n",
            realm = settings.realm
        ));
    }
    conf
}

/// The environment of a prepared process: private cache, client keytab, the private
/// krb5.conf in `dir` ahead of `system_config` (the inherited `KRB5_CONFIG`, else
/// `/etc/krb5.conf`), and [`PREPARED_ENV`].
pub fn environment(
    settings: &KerberosSettings,
    dir: &Path,
    system_config: Option<OsString>,
) -> Vec<(&'static str, OsString)> {
    let mut config = dir.join(CONF_FILE).into_os_string();
    config.push(":");
    config.push(system_config.unwrap_or_else(|| OsString::from("/etc/krb5.conf")));
    let mut keytab = OsString::from("FILE:");
    keytab.push(settings.keytab.as_os_str());
    vec![
        ("KRB5_CONFIG", config),
        ("KRB5CCNAME", OsString::from(CCACHE)),
        ("KRB5_CLIENT_KTNAME", keytab),
        (PREPARED_ENV, dir.as_os_str().to_owned()),
    ]
}

/// Why a Kerberos bind failed, in words for the administrator (never a GSS status number).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KerberosError {
    #[error(
        "cannot read the keytab {keytab} ({reason}); export the key of {principal} into it \
         (ktpass on Windows, samba-tool domain exportkeytab on Samba) and let the dirsync user \
         read it"
    )]
    Keytab {
        keytab: String,
        principal: String,
        reason: String,
    },
    #[error(
        "the Kerberos environment of this process is not prepared for {keytab} (the dirsync \
         command prepares it when it starts; a program using the library must run with \
         dirsync_source::kerberos::environment)"
    )]
    NotPrepared { keytab: String },
    /// A failure of the Kerberos library: `cause` in plain words with what to do, `detail`
    /// the library's own text (may be empty).
    #[error("{cause}{}", in_parentheses(detail))]
    Kerberos { cause: String, detail: String },
    /// The directory server answered the bind with an LDAP error; `hint` says what works
    /// instead when that is known (may be empty).
    #[error(
        "the directory server refused the Kerberos bind of {principal} to ldap/{host} (LDAP \
         result {rc}{}){hint}",
        colon_text(text)
    )]
    Refused {
        principal: String,
        host: String,
        rc: u32,
        text: String,
        hint: &'static str,
    },
}

fn in_parentheses(detail: &str) -> String {
    if detail.is_empty() {
        String::new()
    } else {
        format!(" (Kerberos: {detail})")
    }
}

fn colon_text(text: &str) -> String {
    if text.is_empty() {
        String::new()
    } else {
        format!(": {text}")
    }
}

/// Who the server says we are after a successful bind, and how the connection is protected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KerberosBind {
    pub principal: String,
    /// The server's answer to "Who am I?" (RFC 4532), e.g. `u:EXAMPLE\svc-dirsync`.
    pub authzid: Option<String>,
    /// "sealed (Kerberos confidentiality and integrity)" or "TLS with channel binding".
    pub protection: &'static str,
}

/// Binds `ldap` with GSSAPI as `settings.principal` to the service `ldap/<host>`. `tls`: the
/// connection is LDAPS or StartTLS.
pub async fn bind(
    ldap: &mut Ldap,
    settings: &KerberosSettings,
    host: &str,
    tls: bool,
    timeout: std::time::Duration,
) -> Result<KerberosBind, KerberosError> {
    check_environment(settings)?;
    let cred = Cred::client_acquire(InitiateFlags::empty(), Some(&settings.principal))
        .map_err(|e| explain(&format!("{e:#}"), settings, host))?;
    let result = ldap
        .with_timeout(timeout)
        .sasl_gssapi_cred_bind(cred, host)
        .await
        .map_err(|e| explain(&e.to_string(), settings, host))?;
    if result.rc != 0 {
        return Err(refused(result.rc, &result.text, settings, host, tls));
    }
    let authzid = ldap
        .with_timeout(timeout)
        .extended(WhoAmI)
        .await
        .and_then(|r| r.success())
        .ok()
        // The value read directly: ldap3's parser panics on an absent or non-UTF-8 one.
        .and_then(|(exop, _)| exop.val)
        .map(|v| String::from_utf8_lossy(&v).into_owned())
        .filter(|a| !a.is_empty());
    Ok(KerberosBind {
        principal: settings.principal.clone(),
        authzid,
        protection: if tls {
            "TLS with channel binding"
        } else {
            "sealed (Kerberos confidentiality and integrity)"
        },
    })
}

/// The keytab must be readable, and the process prepared for it (see the module doc):
/// otherwise MIT would quietly use another keytab or a shared ticket cache.
fn check_environment(settings: &KerberosSettings) -> Result<(), KerberosError> {
    let keytab = &settings.keytab;
    if let Err(e) = std::fs::File::open(keytab) {
        return Err(KerberosError::Keytab {
            keytab: keytab.display().to_string(),
            principal: settings.principal.clone(),
            reason: e.to_string(),
        });
    }
    let mut expected = OsString::from("FILE:");
    expected.push(keytab.as_os_str());
    let prepared = std::env::var_os("KRB5_CLIENT_KTNAME").is_some_and(|k| k == expected)
        && std::env::var_os("KRB5CCNAME").is_some_and(|c| c == CCACHE);
    if prepared {
        Ok(())
    } else {
        Err(KerberosError::NotPrepared {
            keytab: keytab.display().to_string(),
        })
    }
}

/// The server answered the bind with an LDAP error. `strongerAuthRequired` over TLS means a
/// server that wants a SASL signing layer even there (Samba before 4.20 with `ldap server
/// require strong auth = yes`); ldap3 negotiates none over TLS, so say what works instead.
fn refused(
    rc: u32,
    text: &str,
    settings: &KerberosSettings,
    host: &str,
    tls: bool,
) -> KerberosError {
    let text = text.trim_end_matches('\0').trim();
    let hint = if rc == crate::ldap::STRONGER_AUTH_REQUIRED && tls {
        "; this server wants Kerberos signing even inside TLS, which dirsync negotiates only \
         on plain LDAP: use encryption: none (the Kerberos bind then seals the connection), or \
         on a Samba DC set ldap server require strong auth = allow_sasl_over_tls"
    } else {
        ""
    };
    KerberosError::Refused {
        principal: settings.principal.clone(),
        host: host.to_string(),
        rc,
        text: text.to_string(),
        hint,
    }
}

/// A Kerberos failure in plain words: what went wrong and what to do, with the library's own
/// words (never a status number) as the last part.
pub fn explain(raw: &str, settings: &KerberosSettings, host: &str) -> KerberosError {
    let detail = kerberos_detail(raw);
    let lower = raw.to_ascii_lowercase();
    let principal = &settings.principal;
    let realm = &settings.realm;
    let keytab = settings.keytab.display();
    let cause = if lower.contains("clock skew") {
        "the clock of this machine and the KDC's differ by more than the allowed skew \
         (usually 5 minutes): synchronise this machine's clock (NTP) with the domain"
            .to_string()
    } else if lower.contains("client") && lower.contains("not found in kerberos database") {
        format!(
            "the principal {principal} is unknown to the KDC of {realm} (wrong name, or the \
             account was deleted): check ad.ldap.server.auth.principal"
        )
    } else if lower.contains("server") && lower.contains("not found in kerberos database") {
        format!(
            "the KDC knows no service principal ldap/{host}: write the domain controller's \
             host name in ad.ldap.server.addresses (not an address it has no SPN for)"
        )
    } else if lower.contains("preauthentication failed")
        || lower.contains("password incorrect")
        || lower.contains("integrity check failed")
        || lower.contains("key version")
        || lower.contains("kvno")
    {
        format!(
            "the key for {principal} in the keytab {keytab} does not match the domain's (a \
             wrong or outdated keytab: the account's password changed since it was exported); \
             export the keytab again"
        )
    } else if lower.contains("no key table entry")
        || lower.contains("key table entry not found")
        || lower.contains("can't find client principal")
        || lower.contains("no kerberos credentials available")
    {
        format!(
            "the keytab {keytab} holds no key for {principal}: export that principal's key \
             into it, or correct ad.ldap.server.auth.principal"
        )
    } else if lower.contains("cannot contact any kdc") || lower.contains("cannot find kdc") {
        format!(
            "no KDC of {realm} answered: set ad.ldap.server.kdc, or name the realm's KDC in \
             /etc/krb5.conf"
        )
    } else if lower.contains("revoked") || lower.contains("has expired") {
        format!("the account {principal} is disabled, locked or expired in the domain")
    } else {
        format!("Kerberos authentication as {principal} to ldap/{host} failed")
    };
    KerberosError::Kerberos { cause, detail }
}

/// The human part of a GSS-API error: the texts in parentheses after the major status, or
/// the text itself, without numbers of status codes.
fn kerberos_detail(raw: &str) -> String {
    let text = raw
        .trim_start_matches("GSSAPI operation error: ")
        .replace(['\n', '\r'], " ");
    let words: Vec<&str> = text
        .split_whitespace()
        .filter(|w| !w.starts_with("code(") && !w.starts_with("unknown"))
        .collect();
    words.join(" ")
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    fn settings(kdc: Option<&str>) -> KerberosSettings {
        KerberosSettings {
            principal: "sync@EXAMPLE.JP".into(),
            realm: "EXAMPLE.JP".into(),
            keytab: PathBuf::from("/etc/dirsync/dirsync.keytab"),
            kdc: kdc.map(str::to_string),
        }
    }

    #[test]
    fn private_conf_layers_over_the_system_one() {
        let conf = private_krb5_conf(&settings(None));
        assert!(conf.contains("default_realm = EXAMPLE.JP"));
        assert!(conf.contains("kdc_timesync = 0"));
        assert!(conf.contains("rdns = false"));
        assert!(!conf.contains("[realms]"));
        let conf = private_krb5_conf(&settings(Some("127.0.0.2:1088")));
        assert!(conf.contains("[realms]\n EXAMPLE.JP = {\n  kdc = 127.0.0.2:1088\n }\n"));
        let env = environment(
            &settings(None),
            Path::new("/tmp/dirsync-krb5-x"),
            Some(OsString::from("/srv/krb5.conf")),
        );
        let get = |k: &str| env.iter().find(|(n, _)| *n == k).map(|(_, v)| v.clone());
        assert_eq!(
            get("KRB5_CONFIG").unwrap(),
            "/tmp/dirsync-krb5-x/krb5.conf:/srv/krb5.conf"
        );
        assert_eq!(get("KRB5CCNAME").unwrap(), "MEMORY:dirsync");
        assert_eq!(
            get("KRB5_CLIENT_KTNAME").unwrap(),
            "FILE:/etc/dirsync/dirsync.keytab"
        );
    }

    #[test]
    fn failures_are_named_in_plain_words() {
        let s = settings(None);
        let skew = explain(
            "GSSAPI operation error: Unspecified GSS failure.  Minor code may provide more \
             information (Clock skew too great)",
            &s,
            "dc1",
        )
        .to_string();
        assert!(skew.starts_with("the clock of this machine"), "{skew}");
        let unknown = explain(
            "Miscellaneous failure (Client 'sync@EXAMPLE.JP' not found in Kerberos database)",
            &s,
            "dc1",
        )
        .to_string();
        assert!(unknown.contains("unknown to the KDC"), "{unknown}");
        let other = explain(
            "(Can't find client principal sync@EXAMPLE.JP in cache collection)",
            &s,
            "dc1",
        )
        .to_string();
        assert!(
            other.contains("holds no key for sync@EXAMPLE.JP"),
            "{other}"
        );
        let stale = explain("(Preauthentication failed)", &s, "dc1").to_string();
        assert!(stale.contains("does not match"), "{stale}");
        let spn = explain(
            "(Server 'ldap/dc1@EXAMPLE.JP' not found in Kerberos database)",
            &s,
            "dc1",
        )
        .to_string();
        assert!(spn.contains("service principal ldap/dc1"), "{spn}");
    }
}
