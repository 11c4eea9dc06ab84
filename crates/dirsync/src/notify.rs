//! Notifications (`notify.email`; docs/dirsync.md, "Notifications"): one e-mail when an
//! incident opens, one when it clears.
//!
//! After each run (`dirsync sync`, and each run of `dirsync run`), [`after_run`] looks at the
//! exit code: 2 (refused: a deletion threshold, a duplicate, a lost cursor, the lock, …) or 1
//! (objects failed) is an incident of that kind; 0 is a good run; anything else (3: the
//! directory or target unreachable, 5: the local state unreadable) and dry runs change
//! nothing. A new incident (none open, or one of the other kind) sends one mail; further runs
//! with the same kind send none. The first good run after an incident that was announced
//! sends one "cleared" mail. The state is `notify.json` in the state directory, replaced
//! atomically (write, sync, rename), so one-shot runs from a timer behave as the daemon does.
//!
//! A mail that cannot be sent is logged (without secrets: the relay's answer, never the
//! password) and leaves the incident "not yet notified", so the next run tries again; it does
//! not change the run's exit code. The mail holds the run's report as text (counts, refusal,
//! failed and skipped objects with their messages), which never holds secrets.

use std::path::{Path, PathBuf};

use lettre::message::Mailbox;
use lettre::message::header::ContentType;
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, CertificateStore, Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

use crate::config::{Config, EmailConfig};
use crate::report::{EXIT_OK, EXIT_REFUSED, EXIT_SOME_FAILED, Report};

/// The state file in the state directory.
pub const STATE_FILE: &str = "notify.json";

/// What kind of incident a run is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IncidentKind {
    /// Exit 2: the run refused to write.
    Refused,
    /// Exit 1: some objects failed or were skipped.
    Failed,
}

impl IncidentKind {
    fn of(report: &Report) -> Option<IncidentKind> {
        match report.exit_code {
            EXIT_REFUSED => Some(IncidentKind::Refused),
            EXIT_SOME_FAILED => Some(IncidentKind::Failed),
            _ => None,
        }
    }

    fn title(self) -> &'static str {
        match self {
            IncidentKind::Refused => "run refused",
            IncidentKind::Failed => "objects failed",
        }
    }
}

/// `notify.json`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum State {
    /// No incident.
    #[default]
    Clear,
    /// An incident is open; `notified` once its mail was accepted by the relay.
    Open {
        kind: IncidentKind,
        since: String,
        run_id: String,
        notified: bool,
    },
    /// The incident ended but its "cleared" mail has not been sent yet.
    Clearing { kind: IncidentKind, since: String },
}

/// What a run's outcome calls for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mail {
    None,
    Incident(IncidentKind),
    Cleared(IncidentKind),
}

/// The transition of `state` for a run that ended with `report`: the mail to send, and the
/// next state as long as that mail has not been sent ("not yet notified"); [`after_sent`]
/// turns it into the state once the relay took the mail.
pub fn decide(state: &State, report: &Report) -> (Mail, State) {
    // A dry run changes nothing; a run that found another one holding the lock did not run
    // (and must not write notify.json beside the one that holds it).
    if report.dry_run || report.lock_busy {
        return (Mail::None, state.clone());
    }
    match (IncidentKind::of(report), state) {
        (
            Some(kind),
            State::Open {
                kind: open,
                notified: true,
                ..
            },
        ) if *open == kind => (Mail::None, state.clone()),
        (
            Some(kind),
            State::Open {
                kind: open,
                since,
                run_id,
                notified: false,
            },
        ) if *open == kind => (
            Mail::Incident(kind),
            State::Open {
                kind,
                since: since.clone(),
                run_id: run_id.clone(),
                notified: false,
            },
        ),
        (Some(kind), _) => (
            Mail::Incident(kind),
            State::Open {
                kind,
                since: report.started_at.clone(),
                run_id: report.run_id.clone(),
                notified: false,
            },
        ),
        (
            None,
            State::Open {
                kind,
                since,
                notified: true,
                ..
            },
        ) if report.exit_code == EXIT_OK => (
            Mail::Cleared(*kind),
            State::Clearing {
                kind: *kind,
                since: since.clone(),
            },
        ),
        // Never announced: it ends as quietly as it began (the relay was down throughout).
        (
            None,
            State::Open {
                notified: false, ..
            },
        ) if report.exit_code == EXIT_OK => (Mail::None, State::Clear),
        (None, State::Clearing { kind, since }) if report.exit_code == EXIT_OK => (
            Mail::Cleared(*kind),
            State::Clearing {
                kind: *kind,
                since: since.clone(),
            },
        ),
        _ => (Mail::None, state.clone()),
    }
}

/// The state once `mail` was accepted by the relay.
pub fn after_sent(next: State, mail: Mail) -> State {
    match (mail, next) {
        (
            Mail::Incident(_),
            State::Open {
                kind,
                since,
                run_id,
                ..
            },
        ) => State::Open {
            kind,
            since,
            run_id,
            notified: true,
        },
        (Mail::Cleared(_), _) => State::Clear,
        (_, next) => next,
    }
}

/// Why a notification could not be sent or its state kept.
#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    #[error("notify.email.from {0:?}: {1}")]
    From(String, #[source] lettre::address::AddressError),
    #[error("notify.email.to {0:?}: {1}")]
    To(String, #[source] lettre::address::AddressError),
    #[error("notify.email.ca_file {}: {source}", path.display())]
    CaFileRead {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("notify.email.ca_file {}: {source}", path.display())]
    CaFile {
        path: PathBuf,
        #[source]
        source: lettre::transport::smtp::Error,
    },
    #[error("TLS set-up for the SMTP relay: {0}")]
    Tls(#[source] lettre::transport::smtp::Error),
    #[error("cannot build the message: {0}")]
    Message(#[source] lettre::error::Error),
    #[error("the SMTP relay {host}:{port} did not take the message: {source}")]
    Send {
        host: String,
        port: u16,
        #[source]
        source: lettre::transport::smtp::Error,
    },
    #[error("the SMTP relay {host}:{port} did not answer within {secs} s")]
    Timeout { host: String, port: u16, secs: u64 },
    #[error("{}: {source}", path.display())]
    State {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// After a run: the incident rule above. Does nothing without `notify.email`. Never fails:
/// what goes wrong is logged.
pub async fn after_run(config: &Config, report: &Report) {
    let Some(email) = &config.notify.email else {
        return;
    };
    let path = config.state_dir.join(STATE_FILE);
    let state = match read_state(&path) {
        Ok(state) => state,
        Err(e) => {
            tracing::warn!(error = %e, "notify: the incident state is unreadable; starting afresh");
            State::Clear
        }
    };
    let (mail, next) = decide(&state, report);
    let next = match mail {
        Mail::None => next,
        Mail::Incident(_) | Mail::Cleared(_) => {
            let password = config.secrets.notify_smtp_password.as_ref();
            match send(email, password, &compose(email, mail, &next, report)).await {
                Ok(()) => {
                    tracing::info!(to = %recipients(email), "notify: {} mail sent", mail_name(mail));
                    after_sent(next, mail)
                }
                Err(e) => {
                    tracing::warn!(
                        error = %e,
                        "notify: the {} mail could not be sent; the next run tries again",
                        mail_name(mail)
                    );
                    // Kept as "not yet notified" (an Open not notified, or Clearing).
                    next
                }
            }
        }
    };
    if next != state
        && let Err(e) = write_state(&path, &next)
    {
        tracing::warn!(error = %e, "notify: could not keep the incident state");
    }
}

fn mail_name(mail: Mail) -> &'static str {
    match mail {
        Mail::Incident(_) => "incident",
        Mail::Cleared(_) => "cleared",
        Mail::None => "no",
    }
}

fn recipients(email: &EmailConfig) -> String {
    email
        .to
        .0
        .iter()
        .map(|a| a.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// The state in `path`; an absent file is [`State::Clear`].
pub fn read_state(path: &Path) -> Result<State, NotifyError> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(State::Clear),
        Err(source) => {
            return Err(NotifyError::State {
                path: path.to_path_buf(),
                source,
            });
        }
    };
    serde_json::from_slice(&bytes).map_err(|e| NotifyError::State {
        path: path.to_path_buf(),
        source: std::io::Error::other(e),
    })
}

/// Replaces `path` atomically: a temporary file beside it, synced, renamed over it.
pub fn write_state(path: &Path, state: &State) -> Result<(), NotifyError> {
    use std::io::Write;
    let err = |source| NotifyError::State {
        path: path.to_path_buf(),
        source,
    };
    let json = serde_json::to_vec_pretty(state).map_err(|e| err(std::io::Error::other(e)))?;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(err)?;
    }
    let tmp = path.with_extension("json.tmp");
    let mut file = std::fs::File::create(&tmp).map_err(err)?;
    file.write_all(&json)
        .and_then(|()| file.write_all(b"\n"))
        .and_then(|()| file.sync_all())
        .map_err(err)?;
    std::fs::rename(&tmp, path).map_err(err)
}

/// Subject and body of the mail.
pub struct Composed {
    pub subject: String,
    pub body: String,
}

/// The instance name of the subject: `notify.email.instance`, else the host name.
fn instance(email: &EmailConfig) -> String {
    email.instance.clone().unwrap_or_else(|| {
        hostname::get()
            .ok()
            .and_then(|n| n.into_string().ok())
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| "dirsync".into())
    })
}

/// The mail for `mail`, from the run's report (which holds no secret).
pub fn compose(email: &EmailConfig, mail: Mail, state: &State, report: &Report) -> Composed {
    let instance = instance(email);
    let since = match state {
        State::Open { since, .. } | State::Clearing { since, .. } => since.as_str(),
        State::Clear => report.started_at.as_str(),
    };
    match mail {
        Mail::Incident(kind) => {
            let what = match kind {
                IncidentKind::Refused => report
                    .refused
                    .clone()
                    .unwrap_or_else(|| "the run was refused".into()),
                IncidentKind::Failed => format!(
                    "{} failed, {} skipped",
                    report.failures.len(),
                    report.skipped.len()
                ),
            };
            let mut short = what.lines().next().unwrap_or_default().to_string();
            if short.chars().count() > 120 {
                short = short.chars().take(117).collect::<String>() + "...";
            }
            Composed {
                subject: format!("[dirsync {instance}] incident: {}: {short}", kind.title()),
                body: format!(
                    "dirsync on {instance}: {} (exit code {}).\n\n\
                     No further mail is sent while runs keep ending this way; one is sent when \
                     a run succeeds again.\n\n{}",
                    kind.title(),
                    report.exit_code,
                    report.to_text()
                ),
            }
        }
        Mail::Cleared(_) | Mail::None => {
            let title = match mail {
                Mail::Cleared(kind) | Mail::Incident(kind) => kind.title(),
                Mail::None => "incident",
            };
            Composed {
                subject: format!("[dirsync {instance}] cleared: {title}"),
                body: format!(
                    "dirsync on {instance}: the incident \"{title}\" open since {since} has \
                     cleared: this run succeeded (exit code {}).\n\n{}",
                    report.exit_code,
                    report.to_text()
                ),
            }
        }
    }
}

/// Sends one message to every recipient of `notify.email.to`.
async fn send(
    email: &EmailConfig,
    password: Option<&SecretString>,
    composed: &Composed,
) -> Result<(), NotifyError> {
    let from: Mailbox = email
        .from
        .as_str()
        .parse()
        .map_err(|e| NotifyError::From(email.from.to_string(), e))?;
    let mut builder = Message::builder()
        .from(from)
        .subject(composed.subject.clone());
    for to in &email.to.0 {
        let mailbox: Mailbox = to
            .as_str()
            .parse()
            .map_err(|e| NotifyError::To(to.to_string(), e))?;
        builder = builder.to(mailbox);
    }
    let message = builder
        .header(ContentType::TEXT_PLAIN)
        .body(composed.body.clone())
        .map_err(NotifyError::Message)?;
    let transport = transport(email, password)?;
    let secs = email.timeout().as_secs().max(1);
    // The relay's own timeout covers each command; this bounds the whole exchange.
    match tokio::time::timeout(email.timeout() * 4, transport.send(message)).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(source)) => Err(NotifyError::Send {
            host: email.host.clone(),
            port: email.port,
            source,
        }),
        Err(_) => Err(NotifyError::Timeout {
            host: email.host.clone(),
            port: email.port,
            secs: secs * 4,
        }),
    }
}

/// The SMTP transport, as idservice's mail sender builds it.
fn transport(
    email: &EmailConfig,
    password: Option<&SecretString>,
) -> Result<AsyncSmtpTransport<Tokio1Executor>, NotifyError> {
    let mut b = if email.starttls {
        let mut tls = TlsParameters::builder(email.host.clone());
        if let Some(ca) = &email.ca_file {
            let pem = std::fs::read(ca).map_err(|source| NotifyError::CaFileRead {
                path: ca.clone(),
                source,
            })?;
            let cert = Certificate::from_pem(&pem).map_err(|source| NotifyError::CaFile {
                path: ca.clone(),
                source,
            })?;
            // Only the private CA is trusted for this relay.
            tls = tls
                .certificate_store(CertificateStore::None)
                .add_root_certificate(cert);
        }
        let tls = tls.build_rustls().map_err(NotifyError::Tls)?;
        AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&email.host).tls(Tls::Required(tls))
    } else {
        // Plain SMTP: a relay on the same host or network (and the test sink).
        AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&email.host)
    };
    b = b.port(email.port).timeout(Some(email.timeout()));
    if let Some(user) = &email.username {
        let pw = password
            .map(|p| p.expose_secret().to_string())
            .unwrap_or_default();
        b = b.credentials(Credentials::new(user.clone(), pw));
    }
    Ok(b.build())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    fn report(code: i32) -> Report {
        Report {
            exit_code: code,
            run_id: format!("run-{code}"),
            started_at: "2026-12-07T00:00:00Z".into(),
            refused: (code == 2).then(|| "deletion threshold".into()),
            ..Report::default()
        }
    }

    /// Runs the rule over exit codes with every mail accepted (`sent`) or refused.
    fn mails(codes: &[i32], sent: bool) -> Vec<Mail> {
        let mut state = State::Clear;
        let mut out = Vec::new();
        for &code in codes {
            let (mail, next) = decide(&state, &report(code));
            state = if sent { after_sent(next, mail) } else { next };
            out.push(mail);
        }
        out
    }

    #[test]
    fn one_mail_per_incident_and_one_when_cleared() {
        use IncidentKind::*;
        assert_eq!(
            mails(&[0, 2, 2, 2, 0, 0], true),
            [
                Mail::None,
                Mail::Incident(Refused),
                Mail::None,
                Mail::None,
                Mail::Cleared(Refused),
                Mail::None
            ]
        );
        // A new kind is a new incident; 3 and 5 change nothing.
        assert_eq!(
            mails(&[1, 3, 1, 2, 5, 0], true),
            [
                Mail::Incident(Failed),
                Mail::None,
                Mail::None,
                Mail::Incident(Refused),
                Mail::None,
                Mail::Cleared(Refused)
            ]
        );
    }

    #[test]
    fn unsent_mails_are_tried_again() {
        use IncidentKind::*;
        // Every send fails: each bad run tries again; the good run ends it without a mail.
        assert_eq!(
            mails(&[2, 2, 0, 0], false),
            [
                Mail::Incident(Refused),
                Mail::Incident(Refused),
                Mail::None,
                Mail::None
            ]
        );
        // A "cleared" mail that failed is tried on the next good run.
        let open = State::Open {
            kind: Refused,
            since: "t".into(),
            run_id: "r".into(),
            notified: true,
        };
        let (mail, next) = decide(&open, &report(0));
        assert_eq!(mail, Mail::Cleared(Refused));
        let (again, _) = decide(&next, &report(0));
        assert_eq!(again, Mail::Cleared(Refused));
        assert_eq!(after_sent(next, again), State::Clear);
    }

    #[test]
    fn a_run_locked_out_changes_nothing() {
        let mut r = report(2);
        r.lock_busy = true;
        let open = State::Open {
            kind: IncidentKind::Failed,
            since: "t".into(),
            run_id: "r".into(),
            notified: true,
        };
        for state in [State::Clear, open] {
            assert_eq!(decide(&state, &r), (Mail::None, state.clone()));
        }
    }

    #[test]
    fn dry_runs_change_nothing() {
        let mut r = report(2);
        r.dry_run = true;
        assert_eq!(decide(&State::Clear, &r), (Mail::None, State::Clear));
    }

    #[test]
    fn state_file_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state").join(STATE_FILE);
        assert_eq!(read_state(&path).unwrap(), State::Clear);
        let open = State::Open {
            kind: IncidentKind::Failed,
            since: "t".into(),
            run_id: "r".into(),
            notified: false,
        };
        write_state(&path, &open).unwrap();
        assert_eq!(read_state(&path).unwrap(), open);
        assert!(!path.with_extension("json.tmp").exists());
    }
}
