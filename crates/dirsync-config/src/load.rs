//! Reading config.yml and secret.yml: YAML parsing with positions and key paths, secret
//! redaction, the refusal of a secret file others can read, and the checks that span several
//! keys (a bind DN needs its password; plain LDAP to another host is warned about).
//!
//! serde-saphyr gives line and column; `serde_path_to_error` around its deserializer gives the
//! key path. Both go into every [`ConfigError`]. For secret.yml the parser's own message is
//! never shown (it may quote the value, e.g. "invalid type: integer `12345`"); a fixed
//! description of the kind of error is shown instead.

use std::fmt;
use std::path::{Path, PathBuf};

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_saphyr::MessageFormatter;
use zeroize::Zeroizing;

use super::{Config, ConfigFile, Secrets};

/// A configuration file that cannot be used. `Display` is
/// `FILE:LINE:COLUMN: KEY.PATH: message` (line and key when known).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("{}: cannot read: {reason}", path.display())]
    Io { path: PathBuf, reason: String },
    /// A file holding secrets that accounts other than the owner may read or write.
    #[error(
        "{}: mode {mode:04o} lets other accounts read or change it; it holds passwords and \
         tokens, so dirsync refuses it: chmod 600 {}",
        path.display(),
        path.display()
    )]
    NotPrivate { path: PathBuf, mode: u32 },
    #[error("{}", render(file, *line, *column, key, message))]
    Invalid {
        file: PathBuf,
        line: Option<u64>,
        column: Option<u64>,
        /// Dotted key path (`ad.ldap.server.port`); empty for the whole file.
        key: String,
        message: String,
    },
}

fn render(file: &Path, line: Option<u64>, column: Option<u64>, key: &str, msg: &str) -> String {
    let mut s = file.display().to_string();
    if let Some(l) = line {
        s.push_str(&format!(":{l}"));
        if let Some(c) = column {
            s.push_str(&format!(":{c}"));
        }
    }
    s.push_str(": ");
    if !key.is_empty() {
        s.push_str(key);
        s.push_str(": ");
    }
    s.push_str(msg);
    s
}

/// Something worth telling the administrator that does not stop the run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warning {
    pub file: PathBuf,
    pub message: String,
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.file.display(), self.message)
    }
}

pub(super) fn load(
    config_path: &Path,
    secret_path: Option<&Path>,
) -> Result<(Config, Vec<Warning>), ConfigError> {
    let mut warnings = Vec::new();
    let text = read(config_path)?;
    let file: ConfigFile = parse_yaml(&text, config_path, false)?;
    let dir = match config_path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };

    let (secret_file, explicit) = match secret_path {
        Some(p) => (p.to_path_buf(), true),
        None => (dir.join("secret.yml"), false),
    };
    let secrets = if secret_file.exists() || explicit {
        check_private(&secret_file)?;
        let text = Zeroizing::new(read(&secret_file)?);
        let raw: SecretFile = parse_yaml(&text, &secret_file, true)?;
        raw.into_secrets()
    } else {
        Secrets::default()
    };

    if file.ad.ldif_file.is_none() && file.ad.ldap.server.addresses.is_empty() {
        return Err(ConfigError::Invalid {
            file: config_path.to_path_buf(),
            line: None,
            column: None,
            key: "ad.ldap.server.addresses".into(),
            message: "no directory server is configured (list at least one address, or set \
                      ad.ldif_file to read an LDIF file)"
                .into(),
        });
    }

    if file.ad.ldif_file.is_none() {
        check_bind_password(&file.ad.ldap.server, &secrets, &secret_file, config_path)?;
        warnings.extend(cleartext_warning(&file.ad.ldap.server, config_path));
    }

    let state_dir = match &file.sync.state_dir {
        Some(p) if p.is_absolute() => p.clone(),
        Some(p) => dir.join(p),
        None => dir.join("state"),
    };
    let mut ad = file.ad;
    if let Some(p) = ad.ldif_file.take() {
        ad.ldif_file = Some(if p.is_absolute() { p } else { dir.join(p) });
    }
    let mut log = file.log;
    if let Some(p) = log.file.take() {
        log.file = Some(if p.is_absolute() { p } else { dir.join(p) });
    }
    let mut notify = file.notify;
    if let Some(email) = &mut notify.email {
        check_relay_password(email, &secrets, &secret_file, config_path)?;
        if let Some(ca) = email.ca_file.take() {
            email.ca_file = Some(if ca.is_absolute() { ca } else { dir.join(ca) });
        }
    }
    if let super::LdapAuth::Gssapi { keytab, .. } = &mut ad.ldap.server.auth {
        if keytab.is_relative() {
            *keytab = dir.join(&*keytab);
        }
        keytab_must_be_private(keytab)?;
    }
    let config = Config {
        log,
        ad,
        iid: file.iid,
        sync: file.sync,
        notify,
        secrets,
        config_path: config_path.to_path_buf(),
        secret_path: secret_file,
        state_dir,
    };
    Ok((config, warnings))
}

fn read(path: &Path) -> Result<String, ConfigError> {
    std::fs::read_to_string(path).map_err(|e| ConfigError::Io {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })
}

/// Refuses a file holding secrets whose mode gives the group or others any access.
#[cfg(unix)]
fn check_private(path: &Path) -> Result<(), ConfigError> {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(path)
        .map_err(|e| ConfigError::Io {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?
        .permissions()
        .mode();
    if mode & 0o077 != 0 {
        return Err(ConfigError::NotPrivate {
            path: path.to_path_buf(),
            mode: mode & 0o7777,
        });
    }
    Ok(())
}

#[cfg(not(unix))]
fn check_private(_path: &Path) -> Result<(), ConfigError> {
    Ok(())
}

/// A bind DN without a password would be an anonymous bind (RFC 4513 §5.1.2): the run would
/// read what an anonymous client may see instead of failing. That is an error naming the key.
fn check_bind_password(
    server: &crate::ServerConfig,
    secrets: &Secrets,
    secret_file: &Path,
    config_path: &Path,
) -> Result<(), ConfigError> {
    if matches!(server.auth, crate::LdapAuth::Gssapi { .. }) {
        return Ok(()); // a Kerberos bind uses the keytab, not a password
    }
    let Some(dn) = server.user.as_deref().filter(|u| !u.is_empty()) else {
        return Ok(());
    };
    let given = secrets
        .ldap_password
        .as_ref()
        .is_some_and(|p| !p.expose_secret().is_empty());
    if given {
        return Ok(());
    }
    let absent = if secret_file.exists() {
        "absent or empty"
    } else {
        "the file does not exist"
    };
    Err(ConfigError::Invalid {
        file: secret_file.to_path_buf(),
        line: None,
        column: None,
        key: "ad.ldap.server.password".into(),
        message: format!(
            "no bind password ({absent}) for ad.ldap.server.user {dn:?} of {}; dirsync does not \
             fall back to an anonymous bind. Write the password here, or remove \
             ad.ldap.server.user to bind anonymously",
            config_path.display()
        ),
    })
}

/// `notify.email.username` without `notify.email.password` in secret.yml: the relay would be
/// offered an empty password; an error naming the key, as for the bind password.
fn check_relay_password(
    email: &crate::EmailConfig,
    secrets: &Secrets,
    secret_file: &Path,
    config_path: &Path,
) -> Result<(), ConfigError> {
    let Some(user) = email.username.as_deref().filter(|u| !u.is_empty()) else {
        return Ok(());
    };
    let given = secrets
        .notify_smtp_password
        .as_ref()
        .is_some_and(|p| !p.expose_secret().is_empty());
    if given {
        return Ok(());
    }
    Err(ConfigError::Invalid {
        file: secret_file.to_path_buf(),
        line: None,
        column: None,
        key: "notify.email.password".into(),
        message: format!(
            "no SMTP relay password for notify.email.username {user:?} of {}; write it here, \
             or remove notify.email.username for a relay that takes mail without signing in",
            config_path.display()
        ),
    })
}

/// The warning for `encryption: none` written for a server on another host.
fn cleartext_warning(server: &crate::ServerConfig, config_path: &Path) -> Option<Warning> {
    let hosts = server.cleartext_hosts();
    if hosts.is_empty() {
        return None;
    }
    let what = if server.user.as_deref().is_some_and(|u| !u.is_empty()) {
        "the bind password and every entry read travel"
    } else {
        "every entry read travels"
    };
    Some(Warning {
        file: config_path.to_path_buf(),
        message: format!(
            "ad.ldap.server.encryption: none: {what} in clear to {} (write start_tls or ldaps \
             to encrypt the connection)",
            hosts.join(", ")
        ),
    })
}

/// A keytab is as good as the account's password: readable by the dirsync user only, like
/// `secret.yml`. One that cannot be inspected is left to the bind, which names the problem.
fn keytab_must_be_private(path: &Path) -> Result<(), ConfigError> {
    if std::fs::metadata(path).is_ok() {
        check_private(path)?;
    }
    Ok(())
}

/// Parses one YAML document into `T` with file, line, column and key path on error.
/// `secret` hides the parser's message (see the module doc).
fn parse_yaml<T: DeserializeOwned>(
    text: &str,
    file: &Path,
    secret: bool,
) -> Result<T, ConfigError> {
    let mut options = serde_saphyr::Options::default();
    options.with_snippet = false;
    let mut key_path: Option<String> = None;
    let result = serde_saphyr::with_deserializer_from_str_with_options(text, options, |de| {
        serde_path_to_error::deserialize(de).map_err(|e| {
            key_path = Some(e.path().to_string());
            e.into_inner()
        })
    });
    result.map_err(|e| {
        let location = e.location();
        let raw = serde_saphyr::DefaultMessageFormatter
            .format_message(e.without_snippet())
            .into_owned();
        let mut key = clean_path(key_path.as_deref().unwrap_or(""));
        let message = if let Some(dup) = duplicate_key(&raw) {
            // Duplicates are reported at the parent mapping; name the key itself.
            key = if key.is_empty() {
                dup.clone()
            } else {
                format!("{key}.{dup}")
            };
            format!("duplicate key `{dup}` (each key may appear only once)")
        } else if secret {
            redacted_message(&raw)
        } else {
            raw
        };
        ConfigError::Invalid {
            file: file.to_path_buf(),
            line: location.map(|l| l.line()),
            column: location.map(|l| l.column()),
            key,
            message,
        }
    })
}

/// The key name of serde-saphyr's "duplicate mapping key: NAME, set DuplicateKeyPolicy…".
fn duplicate_key(raw: &str) -> Option<String> {
    let rest = raw.strip_prefix("duplicate mapping key: ")?;
    Some(
        rest.split(", set DuplicateKeyPolicy")
            .next()
            .unwrap_or(rest)
            .to_string(),
    )
}

/// `serde_path_to_error` writes the root as `.` and unknown segments as `?`.
fn clean_path(path: &str) -> String {
    if path == "." || path == "?" {
        return String::new();
    }
    path.trim_end_matches(".?").to_string()
}

/// A description of a secret.yml error that cannot contain the secret value.
fn redacted_message(raw: &str) -> String {
    if raw.contains("unknown field") {
        // The key name (between the first pair of backticks) is not secret; the value never
        // appears in this message.
        let key = raw.split('`').nth(1).unwrap_or("?");
        return format!(
            "unknown key `{key}` (secret.yml holds only ad.ldap.server.password, iid.scim.token, \
             iid.scim.http.proxy.password, iid.scim.auth.client_secret and \
             notify.email.password)"
        );
    }
    if raw.contains("duplicate") {
        return "duplicate key".into();
    }
    if raw.contains("invalid type") || raw.contains("expected") {
        return "invalid value: expected a string (the value is not shown)".into();
    }
    "invalid YAML (details are not shown for secret.yml)".into()
}

/// secret.yml: the same nesting as config.yml, holding only secrets.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct SecretFile {
    #[serde(default)]
    ad: Option<SecretAd>,
    #[serde(default)]
    iid: Option<SecretIid>,
    #[serde(default)]
    notify: Option<SecretNotify>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SecretNotify {
    #[serde(default)]
    email: Option<SecretEmail>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SecretEmail {
    #[serde(default)]
    password: Option<Secret>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SecretAd {
    #[serde(default)]
    ldap: Option<SecretLdap>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SecretLdap {
    #[serde(default)]
    server: Option<SecretServer>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SecretServer {
    #[serde(default)]
    password: Option<Secret>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SecretIid {
    #[serde(default)]
    scim: Option<SecretScim>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SecretScim {
    #[serde(default)]
    token: Option<Secret>,
    #[serde(default)]
    http: Option<SecretHttp>,
    #[serde(default)]
    auth: Option<SecretAuth>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SecretHttp {
    #[serde(default)]
    proxy: Option<SecretProxy>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SecretProxy {
    #[serde(default)]
    password: Option<Secret>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SecretAuth {
    #[serde(default)]
    client_secret: Option<Secret>,
}

/// A secret read through a zeroised buffer: `SecretString::from(String)` could leave the
/// original allocation behind when it shrinks it into a `Box<str>`.
struct Secret(SecretString);

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = Zeroizing::new(String::deserialize(d)?);
        Ok(Secret(SecretString::from(s.as_str())))
    }
}

impl SecretFile {
    fn into_secrets(self) -> Secrets {
        let ldap_password = self
            .ad
            .and_then(|a| a.ldap)
            .and_then(|l| l.server)
            .and_then(|s| s.password)
            .map(|s| s.0);
        let notify_smtp_password = self
            .notify
            .and_then(|n| n.email)
            .and_then(|e| e.password)
            .map(|p| p.0);
        let scim = self.iid.and_then(|i| i.scim);
        let (scim_token, proxy_password, oauth2_client_secret) = match scim {
            Some(s) => (
                s.token.map(|t| t.0),
                s.http
                    .and_then(|h| h.proxy)
                    .and_then(|p| p.password)
                    .map(|p| p.0),
                s.auth.and_then(|a| a.client_secret).map(|c| c.0),
            ),
            None => (None, None, None),
        };
        Secrets {
            ldap_password,
            scim_token,
            proxy_password,
            oauth2_client_secret,
            notify_smtp_password,
        }
    }
}
