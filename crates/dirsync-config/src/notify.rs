//! [better] `notify:`: where the agent reports incidents (a refused run, a run with failed
//! objects) and their end. Only e-mail for now (`notify.email`), through an SMTP relay
//! configured like idservice's (`host`, `port`, `starttls`, `username`, `ca_file`, `from`,
//! `timeout`) plus the recipients (`to`). The relay password is a secret: it is read from
//! secret.yml (`notify.email.password`), never from config.yml.
//!
//! Addresses are checked here with the `email_address` crate (a parser without network code;
//! this crate names no network crate): an `addr-spec` (`local@domain`) or
//! `Display Name <local@domain>`, no domain literals. The agent parses them again with its
//! SMTP library before sending.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use serde::de::{self, Deserializer, SeqAccess, Visitor};

use crate::values::{DurationText, ValueError};

/// `notify:` (absent: no notifications).
#[derive(Debug, Clone, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NotifyConfig {
    #[serde(default)]
    pub email: Option<EmailConfig>,
}

/// `notify.email`: the relay, the sender and the recipients.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EmailConfig {
    /// The SMTP relay's host name or address.
    pub host: String,
    /// Default 587.
    #[serde(default = "default_port")]
    pub port: u16,
    /// Require STARTTLS (default true; the certificate is checked against the system roots,
    /// or against `ca_file` alone when it is given).
    #[serde(default = "yes")]
    pub starttls: bool,
    /// The relay account; its password is `notify.email.password` in secret.yml.
    #[serde(default)]
    pub username: Option<String>,
    /// PEM file of a private CA the relay's certificate must chain to. Relative to the
    /// config file.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// The sender, e.g. `dirsync <dirsync@example.jp>`.
    pub from: MailAddress,
    /// One address or a list of them (at least one).
    pub to: Recipients,
    /// How long one SMTP exchange may take (default 30s).
    #[serde(default = "default_timeout")]
    pub timeout: DurationText,
    /// The name of this agent in the subject (default: the host name).
    #[serde(default)]
    pub instance: Option<String>,
}

fn default_port() -> u16 {
    587
}

fn yes() -> bool {
    true
}

fn default_timeout() -> DurationText {
    DurationText(Duration::from_secs(30))
}

impl EmailConfig {
    pub fn timeout(&self) -> Duration {
        self.timeout.0
    }
}

/// A mail address as written: `local@domain` or `Display Name <local@domain>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MailAddress(String);

impl MailAddress {
    /// Checks the text with the `email_address` crate (RFC 5322 addresses; a display name
    /// before `<…>` allowed; no domain literals).
    pub fn parse(text: &str) -> Result<MailAddress, ValueError> {
        let t = text.trim();
        let options = email_address::Options::default().without_domain_literal();
        email_address::EmailAddress::parse_with_options(t, options)
            .map(|_| MailAddress(t.to_string()))
            .map_err(|e| ValueError::MailAddress(t.to_string(), e.to_string()))
    }

    /// The address as written (display name included).
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for MailAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for MailAddress {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        MailAddress::parse(&text).map_err(de::Error::custom)
    }
}

/// `to:`: one address or a non-empty list of them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recipients(pub Vec<MailAddress>);

impl<'de> Deserialize<'de> for Recipients {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Recipients;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a mail address or a list of mail addresses")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Recipients, E> {
                MailAddress::parse(v)
                    .map(|a| Recipients(vec![a]))
                    .map_err(E::custom)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Recipients, A::Error> {
                let mut out = Vec::new();
                while let Some(item) = seq.next_element::<MailAddress>()? {
                    out.push(item);
                }
                if out.is_empty() {
                    return Err(de::Error::custom("at least one recipient is needed"));
                }
                Ok(Recipients(out))
            }
        }
        d.deserialize_any(V)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    #[test]
    fn addresses() {
        for ok in [
            "ops@example.jp",
            "dirsync <dirsync@example.jp>",
            "Ops Team <ops+dirsync@mail.example.jp>",
            "a.b@localhost",
        ] {
            assert_eq!(MailAddress::parse(ok).unwrap().as_str(), ok);
        }
        for bad in [
            "",
            "ops",
            "@example.jp",
            "ops@",
            "ops@exa mple.jp",
            "ops@example..jp",
            "o ps@example.jp",
            "ops@example.jp>",
            "<ops@example.jp",
            "ops@-example.jp",
            "a,b@example.jp",
            ".ops@example.jp",
        ] {
            assert!(MailAddress::parse(bad).is_err(), "{bad:?} accepted");
        }
    }
}
