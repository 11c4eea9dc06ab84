//! The service configuration file (`idservice serve --config FILE`, YAML): the service name
//! used in email subjects, the public URL reset links point to, the SMTP relay, email
//! templates, the password policy, sign-in limits and the mail outbox timing.
//!
//! Every key is optional; without a file the defaults apply and email is off (no `smtp`).
//! Errors name the file, the line and the key.

use std::path::{Path, PathBuf};

use secrecy::SecretString;
use serde::Deserialize;

use crate::domain::password::Policy;

/// The whole file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Prefixes every email subject: `[service_name] …`.
    pub service_name: String,
    /// Base of the links in emails, e.g. `https://id.example.com`. Default: the address the
    /// service listens on (never the request's Host header, which a client controls).
    pub public_url: Option<String>,
    /// The relay; no `smtp` section: email is off (nothing is queued).
    pub smtp: Option<SmtpConfig>,
    /// A directory whose `NAME.txt` files replace the built-in templates of the same name.
    pub templates_dir: Option<PathBuf>,
    pub password_policy: Policy,
    pub signin: SigninConfig,
    /// How long a password reset link stays valid.
    pub reset_link_ttl_minutes: u32,
    pub outbox: OutboxConfig,
    /// How often the password-expiry and token-expiry checks run inside `serve`.
    pub checks_interval_minutes: u32,
    pub search: SearchConfig,
    pub console: ConsoleConfig,
    /// The language (`en` or `ja`) of pages whose viewer's browser asks for neither, and of
    /// emails to users with neither `preferredLanguage` nor `locale` in one of them.
    pub default_language: crate::i18n::Lang,
}

/// The administrator's console (`/admin/`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ConsoleConfig {
    /// A console session ends after this many minutes without a request.
    pub idle_minutes: u32,
}

impl Default for ConsoleConfig {
    fn default() -> Self {
        ConsoleConfig { idle_minutes: 30 }
    }
}

/// What one search may cost: filters beyond the bounds are refused (400 `tooMany`), and a
/// search running longer than `timeout_seconds` is answered 503.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SearchConfig {
    /// How deep `and`/`or`/`not`/`[...]` may nest (an attribute expression alone is 1).
    pub filter_max_depth: usize,
    /// How many attribute expressions one filter may have.
    pub filter_max_terms: usize,
    pub timeout_seconds: u64,
}

impl Default for SearchConfig {
    fn default() -> Self {
        let limits = crate::domain::FilterLimits::default();
        SearchConfig {
            filter_max_depth: limits.max_depth,
            filter_max_terms: limits.max_terms,
            timeout_seconds: crate::store::DEFAULT_SEARCH_TIMEOUT.as_secs(),
        }
    }
}

impl SearchConfig {
    pub fn filter_limits(&self) -> crate::domain::FilterLimits {
        crate::domain::FilterLimits {
            max_depth: self.filter_max_depth.max(1),
            max_terms: self.filter_max_terms.max(1),
        }
    }

    pub fn timeout(&self) -> std::time::Duration {
        std::time::Duration::from_secs(self.timeout_seconds.max(1))
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            service_name: "idservice".into(),
            public_url: None,
            smtp: None,
            templates_dir: None,
            password_policy: Policy::default(),
            signin: SigninConfig::default(),
            reset_link_ttl_minutes: 30,
            outbox: OutboxConfig::default(),
            checks_interval_minutes: 60,
            search: SearchConfig::default(),
            console: ConsoleConfig::default(),
            default_language: crate::i18n::Lang::En,
        }
    }
}

/// The SMTP relay.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmtpConfig {
    pub host: String,
    #[serde(default = "default_smtp_port")]
    pub port: u16,
    /// Require STARTTLS (certificate checked against the system roots).
    #[serde(default = "default_true")]
    pub starttls: bool,
    pub username: Option<String>,
    /// File holding the relay password (first line); kept out of the configuration file.
    pub password_file: Option<PathBuf>,
    /// The sender, e.g. `ID Service <noreply@example.com>`.
    pub from: String,
    #[serde(default = "default_smtp_timeout")]
    pub timeout_seconds: u64,
    /// PEM file of a private CA: with it, the relay's certificate must chain to this CA
    /// (instead of the system roots).
    pub ca_file: Option<PathBuf>,
    /// Filled from `password_file` by [`load`]; never in the YAML.
    #[serde(skip)]
    pub password: Option<SecretString>,
}

fn default_smtp_port() -> u16 {
    587
}
fn default_true() -> bool {
    true
}
fn default_smtp_timeout() -> u64 {
    30
}

/// Sign-in limits.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SigninConfig {
    /// Consecutive failed sign-ins that lock the account.
    pub max_failures: u32,
    pub lockout_minutes: u32,
    /// Sign-in and reset requests allowed per minute for one account (userName).
    pub per_account_per_minute: u32,
    /// Sign-in and reset requests allowed per minute from one client address.
    pub per_address_per_minute: u32,
    pub session_hours: u32,
}

impl Default for SigninConfig {
    fn default() -> Self {
        SigninConfig {
            max_failures: 5,
            lockout_minutes: 15,
            per_account_per_minute: 10,
            per_address_per_minute: 60,
            session_hours: 8,
        }
    }
}

/// Retries of the durable outbox.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OutboxConfig {
    /// How often the sender looks for due mail (it is also woken when mail is queued).
    pub poll_seconds: u64,
    /// First retry delay after a temporary failure; doubled each time, at most one hour.
    pub retry_base_seconds: u64,
    /// Attempts before a message is given up.
    pub max_attempts: u32,
    /// The key that seals queued bodies (32 bytes, base64, first line; private file). Default
    /// on SQLite: `DATA_DIR/outbox.key`, created at the first start; required on PostgreSQL
    /// (the same file on every node).
    pub key_file: Option<PathBuf>,
}

impl Default for OutboxConfig {
    fn default() -> Self {
        OutboxConfig {
            poll_seconds: 10,
            retry_base_seconds: 30,
            max_attempts: 10,
            key_file: None,
        }
    }
}

/// A configuration error, located.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{}: cannot read: {source}", file.display())]
    Read {
        file: PathBuf,
        source: std::io::Error,
    },
    #[error("{}{}: {}{message}", file.display(), line.map(|l| format!(":{l}")).unwrap_or_default(), if key.is_empty() { String::new() } else { format!("{key}: ") })]
    Invalid {
        file: PathBuf,
        line: Option<usize>,
        key: String,
        message: String,
    },
}

fn invalid(file: &Path, key: &str, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        file: file.to_path_buf(),
        line: None,
        key: key.to_string(),
        message: message.into(),
    }
}

/// Reads and checks the configuration file (and the SMTP password file it names).
pub fn load(file: &Path) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(file).map_err(|source| ConfigError::Read {
        file: file.to_path_buf(),
        source,
    })?;
    let mut cfg = parse(&text, file)?;
    let base = file.parent().unwrap_or(Path::new("."));
    if let Some(k) = &cfg.outbox.key_file {
        cfg.outbox.key_file = Some(base.join(k));
    }
    if let Some(smtp) = cfg.smtp.as_mut()
        && let Some(ca) = &smtp.ca_file
    {
        let ca = base.join(ca);
        if !ca.is_file() {
            return Err(invalid(
                file,
                "smtp.ca_file",
                format!("{} is not a readable file", ca.display()),
            ));
        }
        smtp.ca_file = Some(ca);
    }
    if let Some(smtp) = cfg.smtp.as_mut()
        && let Some(pf) = &smtp.password_file
    {
        let pf = base.join(pf);
        crate::secret_file::check_private(&pf)
            .map_err(|e| invalid(file, "smtp.password_file", e.to_string()))?;
        let raw = zeroize::Zeroizing::new(std::fs::read_to_string(&pf).map_err(|e| {
            invalid(
                file,
                "smtp.password_file",
                format!("cannot read {}: {e}", pf.display()),
            )
        })?);
        let first = raw.lines().next().unwrap_or_default();
        smtp.password = Some(SecretString::from(first.to_string()));
    }
    Ok(cfg)
}

/// Parses the YAML text and checks the values; `file` is only used in messages.
pub fn parse(text: &str, file: &Path) -> Result<Config, ConfigError> {
    let mut options = serde_saphyr::Options::default();
    options.with_snippet = false;
    let mut key_path: Option<String> = None;
    // An empty file is an empty mapping: every default.
    let text = if text.trim().is_empty() { "{}" } else { text };
    let result: Result<Config, _> =
        serde_saphyr::with_deserializer_from_str_with_options(text, options, |de| {
            serde_path_to_error::deserialize(de).map_err(|e| {
                key_path = Some(e.path().to_string());
                e.into_inner()
            })
        });
    let cfg = result.map_err(|e| {
        use serde_saphyr::MessageFormatter;
        let location = e.location();
        let message = serde_saphyr::DefaultMessageFormatter
            .format_message(e.without_snippet())
            .into_owned();
        let key = match key_path.as_deref() {
            None | Some(".") | Some("?") => String::new(),
            Some(p) => p.trim_end_matches(".?").to_string(),
        };
        ConfigError::Invalid {
            file: file.to_path_buf(),
            line: location.map(|l| l.line() as usize),
            key,
            message,
        }
    })?;
    check(&cfg, file)?;
    Ok(cfg)
}

fn check(cfg: &Config, file: &Path) -> Result<(), ConfigError> {
    if cfg.service_name.trim().is_empty() {
        return Err(invalid(file, "service_name", "must not be empty"));
    }
    if let Some(u) = &cfg.public_url
        && !(u.starts_with("http://") || u.starts_with("https://"))
    {
        return Err(invalid(
            file,
            "public_url",
            "must start with http:// or https://",
        ));
    }
    if let Some(smtp) = &cfg.smtp {
        if smtp.host.trim().is_empty() {
            return Err(invalid(file, "smtp.host", "must not be empty"));
        }
        if smtp.from.parse::<lettre::message::Mailbox>().is_err() {
            return Err(invalid(
                file,
                "smtp.from",
                format!("{:?} is not an email address", smtp.from),
            ));
        }
        if smtp.password_file.is_some() && smtp.username.is_none() {
            return Err(invalid(
                file,
                "smtp.username",
                "required when smtp.password_file is set",
            ));
        }
    }
    if cfg.password_policy.min_length == 0 {
        return Err(invalid(
            file,
            "password_policy.min_length",
            "must be at least 1",
        ));
    }
    let s = &cfg.signin;
    for (key, v) in [
        ("signin.max_failures", s.max_failures),
        ("signin.lockout_minutes", s.lockout_minutes),
        ("signin.per_account_per_minute", s.per_account_per_minute),
        ("signin.per_address_per_minute", s.per_address_per_minute),
        ("signin.session_hours", s.session_hours),
        ("console.idle_minutes", cfg.console.idle_minutes),
        ("reset_link_ttl_minutes", cfg.reset_link_ttl_minutes),
        ("outbox.max_attempts", cfg.outbox.max_attempts),
        ("checks_interval_minutes", cfg.checks_interval_minutes),
    ] {
        if v == 0 {
            return Err(invalid(file, key, "must be at least 1"));
        }
    }
    if cfg.outbox.poll_seconds == 0 || cfg.outbox.retry_base_seconds == 0 {
        return Err(invalid(
            file,
            "outbox",
            "poll_seconds and retry_base_seconds must be at least 1",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_errors_name_line_and_key() {
        let f = Path::new("idservice.yml");
        let c = parse("", f).unwrap();
        assert_eq!(c.service_name, "idservice");
        assert!(c.smtp.is_none());
        assert_eq!(c.password_policy.min_length, 8);

        let c = parse(
            "service_name: Acme ID\nsmtp:\n  host: 127.0.0.1\n  port: 2525\n  starttls: false\n  from: id@acme.test\n",
            f,
        )
        .unwrap();
        let smtp = c.smtp.unwrap();
        assert_eq!((smtp.port, smtp.starttls), (2525, false));

        let e = parse("signin:\n  max_failures: 3\n  lockout: 5\n", f)
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("idservice.yml:3:"), "{e}");
        assert!(e.contains("signin") && e.contains("lockout"), "{e}");

        let e = parse("password_policy:\n  min_length: many\n", f)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains(":2:") && e.contains("password_policy.min_length"),
            "{e}"
        );

        let e = parse("smtp: {host: h, from: 'not an address'}\n", f)
            .unwrap_err()
            .to_string();
        assert!(e.contains("smtp.from"), "{e}");
    }
}
