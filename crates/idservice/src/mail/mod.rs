//! Email (behaviour §7.5): which messages exist, who receives each, the templates, the durable
//! outbox and the SMTP sender.
//!
//! The recipient rule lives in one place, [`Kind::audience`]: "Password reset requested",
//! "Password has been reset" and "Your password has expired" go to every address of the user;
//! every other message to the primary address only. Nothing is sent when a user is created,
//! replaced or patched through SCIM: SCIM handlers never call this module.
//!
//! Mail is queued in the same transaction as the change that causes it ([`Mail::queue`]), one
//! outbox row per recipient; the sender ([`sender`]) delivers due rows in the background.

pub mod checks;
pub use crate::store::outbox;
pub mod sealed;
pub mod sender;
pub mod templates;

use std::path::PathBuf;
use std::sync::Arc;

use serde_json::Value;

use crate::config::Config;
use crate::store::Conn;
use templates::Templates;

/// Why email cannot be set up: a template file or an SMTP setting of the configuration.
/// Messages name the file or setting, never the relay's password.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{}: cannot read: {source}", path.display())]
    TemplateRead {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{origin}: a template starts with a `Subject: …` line and a blank line")]
    TemplateFormat { origin: String },
    #[error("smtp.from {from:?}: {source}")]
    From {
        from: String,
        source: lettre::address::AddressError,
    },
    #[error("smtp.ca_file {}: {source}", path.display())]
    CaFileRead {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("smtp.ca_file {}: {source}", path.display())]
    CaFile {
        path: PathBuf,
        source: lettre::transport::smtp::Error,
    },
    #[error("smtp TLS: {0}")]
    Tls(#[source] lettre::transport::smtp::Error),
    #[error(transparent)]
    Key(#[from] sealed::KeyError),
}

/// The messages the service sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    ResetRequested,
    PasswordReset,
    PasswordExpired,
    AccountLocked,
    TokenExpiring,
}

/// Who receives a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Audience {
    EveryAddress,
    PrimaryOnly,
}

impl Kind {
    pub const ALL: [Kind; 5] = [
        Kind::ResetRequested,
        Kind::PasswordReset,
        Kind::PasswordExpired,
        Kind::AccountLocked,
        Kind::TokenExpiring,
    ];

    /// behaviour §7.5: the three password messages reach every address, anything else the primary.
    pub fn audience(self) -> Audience {
        match self {
            Kind::ResetRequested | Kind::PasswordReset | Kind::PasswordExpired => {
                Audience::EveryAddress
            }
            Kind::AccountLocked | Kind::TokenExpiring => Audience::PrimaryOnly,
        }
    }

    /// The template file name (without `.txt`) and the outbox `kind` column.
    pub fn name(self) -> &'static str {
        match self {
            Kind::ResetRequested => "reset_requested",
            Kind::PasswordReset => "password_reset",
            Kind::PasswordExpired => "password_expired",
            Kind::AccountLocked => "account_locked",
            Kind::TokenExpiring => "token_expiring",
        }
    }
}

/// A user's email addresses from the stored SCIM resource: the primary one (the entry marked
/// `primary`, else the first) and every distinct address, primary first.
pub fn user_addresses(resource: &Value) -> (Option<String>, Vec<String>) {
    let mut all: Vec<String> = Vec::new();
    let mut primary = None;
    if let Some(Value::Array(emails)) = resource.get("emails") {
        for e in emails {
            let Some(v) = e.get("value").and_then(Value::as_str).map(str::trim) else {
                continue;
            };
            if v.is_empty() || all.iter().any(|a| a.eq_ignore_ascii_case(v)) {
                continue;
            }
            if primary.is_none() && e.get("primary").and_then(Value::as_bool) == Some(true) {
                primary = Some(v.to_string());
            }
            all.push(v.to_string());
        }
    }
    let primary = primary.or_else(|| all.first().cloned());
    if let Some(p) = &primary {
        all.retain(|a| a != p);
        all.insert(0, p.clone());
    }
    (primary, all)
}

/// The recipients of `kind` for a user with this stored resource.
pub fn recipients(kind: Kind, resource: &Value) -> Vec<String> {
    let (primary, all) = user_addresses(resource);
    match kind.audience() {
        Audience::EveryAddress => all,
        Audience::PrimaryOnly => primary.into_iter().collect(),
    }
}

/// Email as the running service (or an admin command) sees it: templates, the service name
/// and whether sending is on, plus a wake-up for the sender.
#[derive(Debug)]
pub struct Mail {
    pub cfg: Arc<Config>,
    pub templates: Templates,
    /// Seals queued bodies ([`sealed`]); present whenever a relay is configured.
    key: Option<Arc<sealed::OutboxKey>>,
    wake: tokio::sync::Notify,
}

impl Mail {
    /// Loads the templates (built-in, or overridden from `templates_dir`) and, when a relay
    /// is configured, the outbox key (`outbox.key_file`, else `data_dir/outbox.key`).
    pub fn new(cfg: Arc<Config>, data_dir: Option<&std::path::Path>) -> Result<Mail, Error> {
        let templates = Templates::load(cfg.templates_dir.as_deref())?;
        let key = match cfg.smtp {
            Some(_) => Some(Arc::new(sealed::OutboxKey::load(
                cfg.outbox.key_file.as_deref(),
                data_dir,
            )?)),
            None => None,
        };
        Ok(Mail {
            cfg,
            templates,
            key,
            wake: tokio::sync::Notify::new(),
        })
    }

    /// The outbox key (when a relay is configured).
    pub fn key(&self) -> Option<Arc<sealed::OutboxKey>> {
        self.key.clone()
    }

    /// Whether a relay is configured; without one nothing is queued.
    pub fn enabled(&self) -> bool {
        self.cfg.smtp.is_some()
    }

    /// Renders `kind` in `lang` with `vars` and queues one row per recipient inside the caller's
    /// transaction. Returns how many rows were queued. The caller calls [`Mail::wake`] after
    /// committing.
    pub async fn queue(
        &self,
        conn: &mut Conn,
        kind: Kind,
        recipients: &[String],
        lang: crate::i18n::Lang,
        vars: &[(&str, &str)],
    ) -> Result<usize, sqlx::Error> {
        // The key is loaded exactly when a relay is configured.
        let Some(key) = self.key.as_deref() else {
            tracing::info!(
                kind = kind.name(),
                "email is not configured (no smtp section); message not sent"
            );
            return Ok(0);
        };
        if recipients.is_empty() {
            tracing::info!(kind = kind.name(), "no email address; message not sent");
            return Ok(0);
        }
        let mut all_vars = vec![("service_name", self.cfg.service_name.as_str())];
        all_vars.extend_from_slice(vars);
        let (subject, body) = self.templates.render(kind, lang, &all_vars);
        let subject = format!("[{}] {subject}", self.cfg.service_name);
        let body = zeroize::Zeroizing::new(body);
        for r in recipients {
            // Sealed per row: each gets its own nonce.
            let sealed = key
                .seal(&body)
                .map_err(|e| sqlx::Error::Encode(Box::new(e)))?;
            outbox::insert(conn, kind.name(), r, &subject, &sealed).await?;
        }
        tracing::info!(
            kind = kind.name(),
            recipients = recipients.len(),
            "email queued"
        );
        Ok(recipients.len())
    }

    /// Tells the sender that mail is waiting (after the queuing transaction committed).
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// Resolves when [`Mail::wake`] is called.
    pub async fn woken(&self) {
        self.wake.notified().await;
    }
}

/// Starts the background work of `serve`: the outbox sender (when a relay is configured)
/// and the periodic expiry checks.
pub fn spawn(
    store: crate::store::Store,
    mail: Arc<Mail>,
    sender: Option<sender::Sender>,
    public_url: &str,
) -> Vec<tokio::task::JoinHandle<()>> {
    let Some(sender) = sender else {
        tracing::info!("email is off (no smtp section in the configuration)");
        return Vec::new();
    };
    let signin_url = format!("{public_url}/signin");
    let every = std::time::Duration::from_secs(u64::from(mail.cfg.checks_interval_minutes) * 60);
    let checks = {
        let (store, mail) = (store.clone(), mail.clone());
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            loop {
                tick.tick().await;
                if let Err(e) = checks::run(&store, &mail, &signin_url).await {
                    tracing::warn!(error = %e, "mail checks failed");
                }
            }
        })
    };
    vec![tokio::spawn(sender::run(sender, mail, store)), checks]
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reset_mail_reaches_every_address_others_the_primary() {
        let r = json!({"emails": [
            {"value": "b@x.test", "type": "other"},
            {"value": "a@x.test", "primary": true},
            {"value": "B@x.test"},
            {"value": "c@x.test"}
        ]});
        assert_eq!(
            recipients(Kind::ResetRequested, &r),
            ["a@x.test", "b@x.test", "c@x.test"]
        );
        assert_eq!(recipients(Kind::PasswordExpired, &r).len(), 3);
        assert_eq!(recipients(Kind::AccountLocked, &r), ["a@x.test"]);
        assert_eq!(recipients(Kind::TokenExpiring, &r), ["a@x.test"]);
        let no_primary = json!({"emails": [{"value": "z@x.test"}, {"value": "y@x.test"}]});
        assert_eq!(recipients(Kind::AccountLocked, &no_primary), ["z@x.test"]);
        assert!(recipients(Kind::PasswordReset, &json!({})).is_empty());
    }
}
