//! Delivers the outbox over SMTP (lettre, tokio, rustls). One message per row, so each
//! recipient succeeds or fails on its own: a 5xx is permanent (row failed, the others go
//! on), anything else (4xx, connection refused, timeout) is retried with a doubling delay up
//! to `outbox.max_attempts`.

use std::sync::Arc;
use std::time::Duration;

use lettre::message::Mailbox;
use lettre::message::header::ContentType;
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, CertificateStore, Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use secrecy::ExposeSecret;

use super::outbox::{self, Pending};
use super::sealed::OutboxKey;
use super::{Error, Mail};
use crate::config::{OutboxConfig, SmtpConfig};
use crate::domain::fmt_time;
use crate::store::Store;

/// Longest delay between two attempts of one message.
const MAX_DELAY: Duration = Duration::from_secs(3600);
/// Rows taken per pass.
const BATCH: i64 = 100;
/// How long a claimed batch is this sender's: long enough to send it, short enough that the
/// rows of a sender that died are sent by another soon.
const LEASE: chrono::TimeDelta = chrono::TimeDelta::minutes(5);

/// The SMTP side: a transport to the relay and the sender address.
pub struct Sender {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
    retry: OutboxConfig,
    /// Opens the sealed bodies.
    key: Arc<OutboxKey>,
}

/// What one delivery pass did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct PassReport {
    pub sent: usize,
    pub retried: usize,
    pub failed: usize,
}

impl Sender {
    pub fn new(
        smtp: &SmtpConfig,
        retry: OutboxConfig,
        key: Arc<OutboxKey>,
    ) -> Result<Sender, Error> {
        let from: Mailbox = smtp.from.parse().map_err(|source| Error::From {
            from: smtp.from.clone(),
            source,
        })?;
        let mut b = if smtp.starttls {
            let mut tls = TlsParameters::builder(smtp.host.clone());
            if let Some(ca) = &smtp.ca_file {
                let pem = std::fs::read(ca).map_err(|source| Error::CaFileRead {
                    path: ca.clone(),
                    source,
                })?;
                let cert = Certificate::from_pem(&pem).map_err(|source| Error::CaFile {
                    path: ca.clone(),
                    source,
                })?;
                // Only the private CA is trusted for this relay.
                tls = tls
                    .certificate_store(CertificateStore::None)
                    .add_root_certificate(cert);
            }
            let tls = tls.build_rustls().map_err(Error::Tls)?;
            AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&smtp.host)
                .tls(Tls::Required(tls))
        } else {
            // Plain SMTP: meant for a relay on the same host or network (and the test sink).
            AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&smtp.host)
        };
        b = b
            .port(smtp.port)
            .timeout(Some(Duration::from_secs(smtp.timeout_seconds)));
        if let Some(user) = &smtp.username {
            let pw = smtp
                .password
                .as_ref()
                .map(|p| p.expose_secret().to_string())
                .unwrap_or_default();
            b = b.credentials(Credentials::new(user.clone(), pw));
        }
        Ok(Sender {
            transport: b.build(),
            from,
            retry,
            key,
        })
    }

    fn delay(&self, attempts_before: i64) -> Duration {
        let exp = u32::try_from(attempts_before.clamp(0, 20)).unwrap_or(20);
        Duration::from_secs(self.retry.retry_base_seconds)
            .saturating_mul(2u32.saturating_pow(exp))
            .min(MAX_DELAY)
    }

    /// Sends one row; Ok(()) when accepted, Err((permanent, reason)) otherwise.
    async fn send_one(&self, row: &Pending) -> Result<(), (bool, String)> {
        let body = self
            .key
            .open(&row.body)
            .map_err(|e| (true, e.to_string()))?;
        let to: Mailbox = row
            .recipient
            .parse()
            .map_err(|e| (true, format!("invalid recipient address: {e}")))?;
        let msg = Message::builder()
            .from(self.from.clone())
            .to(to)
            .message_id(None)
            .subject(row.subject.clone())
            .header(ContentType::TEXT_PLAIN)
            .body(body.to_string())
            .map_err(|e| (true, format!("cannot build the message: {e}")))?;
        match self.transport.send(msg).await {
            Ok(_) => Ok(()),
            Err(e) => Err((e.is_permanent(), e.to_string())),
        }
    }

    /// Delivers every row due now; returns what happened.
    pub async fn pass(&self, store: &Store) -> Result<PassReport, sqlx::Error> {
        let rows = {
            let now_t = chrono::Utc::now();
            let mut conn = store.autocommit().await?;
            outbox::claim(&mut conn, &fmt_time(now_t), &fmt_time(now_t + LEASE), BATCH).await?
        };
        let mut report = PassReport::default();
        for row in rows {
            let outcome = self.send_one(&row).await;
            let mut tx = store.begin().await?;
            match outcome {
                Ok(()) => {
                    outbox::mark_sent(&mut tx, row.id).await?;
                    report.sent += 1;
                    tracing::info!(id = row.id, kind = %row.kind, "email sent");
                }
                Err((permanent, reason))
                    if permanent || row.attempts + 1 >= i64::from(self.retry.max_attempts) =>
                {
                    outbox::mark_failed(&mut tx, row.id, &reason).await?;
                    report.failed += 1;
                    tracing::warn!(id = row.id, kind = %row.kind, attempts = row.attempts + 1, error = %reason, "email given up");
                }
                Err((_, reason)) => {
                    let delay = chrono::Duration::from_std(self.delay(row.attempts))
                        .unwrap_or_else(|_| chrono::Duration::hours(1));
                    let next = fmt_time(chrono::Utc::now() + delay);
                    outbox::reschedule(&mut tx, row.id, &next, &reason).await?;
                    report.retried += 1;
                    tracing::info!(id = row.id, kind = %row.kind, attempts = row.attempts + 1, retry_at = %next, error = %reason, "email delivery failed; will retry");
                }
            }
            tx.commit().await?;
        }
        Ok(report)
    }
}

/// The sender for the configured relay; `None` when email is off (no `smtp` section).
pub fn from_config(cfg: &crate::config::Config, mail: &Mail) -> Result<Option<Sender>, Error> {
    match (&cfg.smtp, mail.key()) {
        (Some(s), Some(key)) => Sender::new(s, cfg.outbox.clone(), key).map(Some),
        _ => Ok(None),
    }
}

/// The background sender of `serve`: a pass at start, then whenever mail is queued or every
/// `outbox.poll_seconds` (retries come due by time).
pub async fn run(sender: Sender, mail: Arc<Mail>, store: Store) {
    let poll = Duration::from_secs(mail.cfg.outbox.poll_seconds);
    loop {
        match sender.pass(&store).await {
            Ok(r) if r.sent + r.failed + r.retried > 0 => {
                tracing::debug!(
                    sent = r.sent,
                    retried = r.retried,
                    failed = r.failed,
                    "outbox pass"
                );
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "outbox pass failed"),
        }
        tokio::select! {
            _ = mail.woken() => {},
            _ = tokio::time::sleep(poll) => {},
        }
    }
}
