//! Linked downstream applications (behaviour §7.6): the service provisions its users into any SCIM
//! 2.0 application the way the existing service links its users to Microsoft 365.
//!
//! - [`apps`]: the administrator's operations (register, list, remove, links, purge an
//!   account downstream).
//! - [`worker`]: the background worker that drains the durable queue (`outbound_events`,
//!   filled by SQLite triggers on `users` and `group_members`) per application, in order.
//! - [`relink`]: what to do for one user and one application — push its current state, block,
//!   unblock, and link creation by the behaviour §7.6 relink table.
//!
//! The worker is level-triggered: a queued row only says "this user changed"; the current row
//! is read and its whole desired state is pushed (PUT), so replaying a row is harmless and a
//! crash between the push and the cursor update loses nothing.

pub mod apps;
pub mod cli;
pub mod relink;
pub mod worker;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use scim_client::{Auth, ClientError, ClientOptions, ResourceKind, ScimClient};
use secrecy::SecretString;
use serde_json::{Map, Value, json};
use tokio::sync::Mutex;

use crate::store::apps::AppRow;
use crate::store::users::UserRow;

/// Link states shown by `idservice apps links`.
pub const LINKED: &str = "linked";
pub const BLOCKED: &str = "blocked";
pub const FAILED: &str = "failed";

/// Purge policies: what purging a user does to its downstream account.
pub const PURGE_DELETE: &str = "delete";
pub const PURGE_BLOCK: &str = "block";

/// Per-request timeout towards a downstream application: an application that hangs holds
/// its own queue, never the service.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);
/// Retries inside one push (429/503 honour `Retry-After`); beyond them the worker holds the
/// application's queue and tries again with its own backoff.
pub const MAX_RETRIES: usize = 3;

/// What goes wrong in the administrator's operations on linked applications and in the
/// worker. Messages name token files, never their content.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid interval {0:?} (e.g. 200ms, 1s, 2m)")]
    InvalidInterval(String),
    #[error("interval {0:?} must be between 10ms and 1h")]
    IntervalOutOfRange(String),
    #[error("cannot read the token file {}: {source}", path.display())]
    TokenFileRead {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the token file {} is empty", .0.display())]
    TokenFileEmpty(PathBuf),
    #[error(transparent)]
    TokenFileNotPrivate(#[from] crate::secret_file::NotPrivate),
    #[error("{}: {source}", path.display())]
    TokenFilePath {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0:?} is not a valid application name")]
    InvalidName(String),
    #[error("--url {0:?} must start with http:// or https://")]
    InvalidUrl(String),
    #[error(
        "--url {0:?} is plain http: the application's token would cross the network in clear; \
         use https:// (--allow-insecure-http exists for tests on loopback)"
    )]
    InsecureUrl(String),
    #[error(
        "--purge-policy must be {} or {}, not {given:?}",
        PURGE_DELETE,
        PURGE_BLOCK
    )]
    InvalidPurgePolicy { given: String },
    #[error("--rate must be a positive number of requests a second")]
    InvalidRate,
    #[error("an application named {0} already exists")]
    AppExists(String),
    #[error("no application named {0}")]
    NoSuchApp(String),
    #[error(
        "application {app} has no account {account_id} (nothing deleted; {requeued} failed link(s) queued again)"
    )]
    NoSuchAccount {
        app: String,
        account_id: String,
        requeued: u64,
    },
    /// The SCIM client for an application cannot be built.
    #[error(transparent)]
    Client(ClientError),
    /// A request to the application failed.
    #[error("application {app}: {source}")]
    Downstream { app: String, source: ClientError },
    /// The application as a whole is unavailable; its queue is held.
    #[error(transparent)]
    Unavailable(ClientError),
    #[error("drain task ended: {0}")]
    DrainTask(#[from] tokio::task::JoinError),
    #[error(transparent)]
    Db(#[from] sqlx::Error),
}

/// Parses `--outbound-interval`: `200ms`, `1s`, `2m` (at least 10 ms, at most an hour).
pub fn parse_interval(s: &str) -> Result<Duration, Error> {
    let s = s.trim();
    let (num, unit) = s
        .find(|c: char| !c.is_ascii_digit())
        .map_or((s, "s"), |i| s.split_at(i));
    let n: u64 = num
        .parse()
        .map_err(|_| Error::InvalidInterval(s.to_string()))?;
    let d = match unit {
        "ms" => Duration::from_millis(n),
        "s" => Duration::from_secs(n),
        "m" => Duration::from_secs(n.saturating_mul(60)),
        _ => return Err(Error::InvalidInterval(s.to_string())),
    };
    if d < Duration::from_millis(10) || d > Duration::from_secs(3600) {
        return Err(Error::IntervalOutOfRange(s.to_string()));
    }
    Ok(d)
}

/// Reads a downstream token from its secret file (first line, trimmed). The error names the
/// file, never its content.
pub fn read_token(path: &Path) -> Result<SecretString, Error> {
    crate::secret_file::check_private(path)?;
    let text = zeroize::Zeroizing::new(std::fs::read_to_string(path).map_err(|source| {
        Error::TokenFileRead {
            path: path.to_path_buf(),
            source,
        }
    })?);
    let token = text.lines().next().unwrap_or("").trim();
    if token.is_empty() {
        return Err(Error::TokenFileEmpty(path.to_path_buf()));
    }
    Ok(SecretString::from(token.to_string()))
}

/// A downstream application as the worker talks to it: the SCIM client and its pacing. Every
/// request goes through the methods here, so every one is paced.
pub struct Downstream {
    client: ScimClient,
    /// Smallest gap between two requests (`--rate`); zero: unlimited.
    gap: Duration,
    next: Mutex<Instant>,
}

impl Downstream {
    pub fn connect(app: &AppRow) -> Result<Downstream, Error> {
        let token = read_token(Path::new(&app.token_file))?;
        let mut options = ClientOptions::new(
            app.url.clone(),
            Auth::Bearer {
                token,
                credential: format!(
                    "the token file {} of application {}",
                    app.token_file, app.name
                ),
            },
        );
        options.timeout = REQUEST_TIMEOUT;
        options.max_retries = MAX_RETRIES;
        options.page_size = 50;
        let client = ScimClient::new(options).map_err(Error::Client)?;
        let gap = app
            .rate_per_sec
            .filter(|r| r.is_finite() && *r > 0.0)
            .map(|r| Duration::from_secs_f64(1.0 / r))
            .unwrap_or(Duration::ZERO);
        Ok(Downstream {
            client,
            gap,
            next: Mutex::new(Instant::now()),
        })
    }

    /// Runs one request in this application's next slot (the configured rate limit).
    async fn paced<T>(&self, request: impl std::future::Future<Output = T>) -> T {
        self.pace().await;
        let r = request.await;
        self.settle().await;
        r
    }

    /// Waits for this application's next request slot (the configured rate limit).
    async fn pace(&self) {
        if self.gap.is_zero() {
            return;
        }
        let wait = {
            let mut next = self.next.lock().await;
            let now = Instant::now();
            let at = (*next).max(now);
            *next = at + self.gap;
            at - now
        };
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
    }

    /// After a request: the next one starts no sooner than a gap after this one ended, so
    /// that a request held up by the client's own retries (`Retry-After`) does not let the
    /// following ones bunch up.
    async fn settle(&self) {
        if !self.gap.is_zero() {
            let mut next = self.next.lock().await;
            *next = (*next).max(Instant::now() + self.gap);
        }
    }

    pub async fn get(&self, kind: ResourceKind, id: &str) -> Result<Option<Value>, ClientError> {
        self.paced(self.client.get(kind, id)).await
    }

    pub async fn create(&self, kind: ResourceKind, resource: &Value) -> Result<Value, ClientError> {
        self.paced(self.client.create(kind, resource)).await
    }

    pub async fn replace(
        &self,
        kind: ResourceKind,
        id: &str,
        resource: &Value,
    ) -> Result<Value, ClientError> {
        self.paced(self.client.replace(kind, id, resource)).await
    }

    pub async fn delete(&self, kind: ResourceKind, id: &str) -> Result<bool, ClientError> {
        self.paced(self.client.delete(kind, id)).await
    }

    pub async fn find_by_external_id(
        &self,
        kind: ResourceKind,
        external_id: &str,
    ) -> Result<Option<Value>, ClientError> {
        self.paced(self.client.find_by_external_id(kind, external_id))
            .await
    }

    pub async fn list(
        &self,
        kind: ResourceKind,
        filter: Option<&scim::Filter>,
        attributes: Option<&str>,
    ) -> Result<Vec<Value>, ClientError> {
        self.paced(self.client.list(kind, filter, attributes)).await
    }
}

/// Whether a failure concerns the application as a whole (hold its queue and retry later)
/// rather than this one user (record it on the link and go on).
pub fn holds_queue(e: &ClientError) -> bool {
    !matches!(e, ClientError::Rejected(_) | ClientError::Protocol(_))
}

pub use crate::domain::users::immutable_id;

/// The downstream User for `user`: userName, the immutable id as `externalId`, a few profile
/// attributes, `active`, and the licence entitlement only while unblocked.
pub fn desired_resource(
    user: &UserRow,
    immutable_id: &str,
    unblocked: bool,
    licence: Option<&str>,
) -> Value {
    let resource: Value = serde_json::from_str(&user.resource).unwrap_or(Value::Null);
    let mut out = Map::new();
    out.insert("schemas".into(), json!([scim::urn::USER]));
    out.insert("userName".into(), json!(user.user_name));
    out.insert("externalId".into(), json!(immutable_id));
    for key in [
        "displayName",
        "name",
        "title",
        "preferredLanguage",
        "locale",
    ] {
        if let Some(v) = resource.get(key).filter(|v| !v.is_null()) {
            out.insert(key.into(), v.clone());
        }
    }
    // Only the parts of an email every SCIM service knows.
    if let Some(Value::Array(emails)) = resource.get("emails") {
        let emails: Vec<Value> = emails
            .iter()
            .filter_map(|e| {
                let value = e.get("value")?.as_str()?;
                let mut m = Map::new();
                m.insert("value".into(), json!(value));
                for k in ["type", "primary"] {
                    if let Some(v) = e.get(k).filter(|v| !v.is_null()) {
                        m.insert(k.into(), v.clone());
                    }
                }
                Some(Value::Object(m))
            })
            .collect();
        if !emails.is_empty() {
            out.insert("emails".into(), Value::Array(emails));
        }
    }
    out.insert("active".into(), json!(unblocked));
    if unblocked && let Some(l) = licence.filter(|l| !l.is_empty()) {
        out.insert("entitlements".into(), json!([{ "value": l }]));
    }
    Value::Object(out)
}

/// A downstream resource with the licence removed and `active` false (blocking an account
/// whose user is gone, from what the application holds).
pub fn blocked_copy(current: &Value) -> Value {
    let mut v = current.clone();
    if let Some(m) = v.as_object_mut() {
        m.remove("meta");
        m.remove("entitlements");
        m.insert("active".into(), json!(false));
    }
    v
}

/// Whether a downstream account is blocked (`active` false).
pub fn is_blocked(account: &Value) -> bool {
    account.get("active").and_then(Value::as_bool) == Some(false)
}

/// `attr eq "value"` for a downstream search.
pub fn eq_filter(attr: &str, value: &str) -> scim::Filter {
    scim::Filter::Attr(scim::AttrExp::Comparison(
        scim::AttrPath::with_name(attr),
        scim::CompareOp::Eq,
        scim::CompValue::Str(value.to_string()),
    ))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn user(external_id: Option<&str>, resource: Value) -> UserRow {
        UserRow {
            id: "u-1".into(),
            user_name: "a@example.test".into(),
            user_name_lc: "a@example.test".into(),
            external_id: external_id.map(str::to_string),
            active: true,
            state: "active".into(),
            pending_since: None,
            created: String::new(),
            last_modified: String::new(),
            version: 1,
            resource: resource.to_string(),
        }
    }

    #[test]
    fn immutable_id_prefers_downstream_id_then_external_id_then_id() {
        let with_ds = json!({ scim::urn::IIJ_USER: { "downstreamId": "ds-9" } });
        assert_eq!(immutable_id(&user(Some("ext-1"), with_ds)), "ds-9");
        assert_eq!(immutable_id(&user(Some("ext-1"), json!({}))), "ext-1");
        assert_eq!(immutable_id(&user(None, json!({}))), "u-1");
        let blank = json!({ scim::urn::IIJ_USER: { "downstreamId": " " } });
        assert_eq!(immutable_id(&user(None, blank)), "u-1");
    }

    #[test]
    fn licence_only_while_unblocked() {
        let u = user(
            Some("e"),
            json!({"displayName": "A", "emails": [{"value": "a@x", "primary": true, "display": "x"}]}),
        );
        let on = desired_resource(&u, "imm", true, Some("E3"));
        assert_eq!(on["entitlements"], json!([{"value": "E3"}]));
        assert_eq!(on["externalId"], json!("imm"));
        assert_eq!(on["emails"], json!([{"value": "a@x", "primary": true}]));
        let off = desired_resource(&u, "imm", false, Some("E3"));
        assert!(off.get("entitlements").is_none());
        assert_eq!(off["active"], json!(false));
    }
}
