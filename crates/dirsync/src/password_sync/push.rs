//! The pusher: delivers queued password changes to the SCIM target.
//!
//! For each account with queued changes (oldest first) only the newest change is sent; older
//! ones are superseded and removed with it. The target user is found by the externalId the
//! directory sync gives it — computed by `mapping::map_user` with the same configuration, so
//! both agree by construction — with `POST /Users/.search`, then `PATCH` replace `password`.
//!
//! Outcomes: delivered; skipped (the user is pending deletion); waiting (no such user yet,
//! e.g. created in the directory and given a password before the next directory sync; or the
//! target is unreachable) with a per-account exponential backoff; expired (older than
//! `max_age`, given up); rejected (the target refused the password for good, e.g. a policy
//! 400). An item leaves the queue only with a final outcome, after the PATCH was answered.
//!
//! Log lines and the report name the user (the userName the mapping gives, or the DN) and the
//! outcome — never the password, and never the target's error detail, which could echo it.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use backon::{BackoffBuilder as _, ExponentialBackoff, ExponentialBuilder};
use chrono::Utc;
use scim_client::{ClientError, ResourceKind, ScimClient};
use secrecy::ExposeSecret as _;
use serde::Serialize;
use serde_json::{Value, json};

use super::queue::{Item, ItemId, Queue, QueueError};
use crate::config::Config;
use crate::mapping::{self, DirectoryKind};

const STATE_ATTR: &str = "state";
const PENDING: &str = "pendingDeletion";

#[derive(Debug, Clone)]
pub struct PushOptions {
    /// A change older than this is given up and reported.
    pub max_age: Duration,
    /// First retry delay for an account that is not there yet / an unreachable target.
    pub backoff_min: Duration,
    /// Longest retry delay.
    pub backoff_max: Duration,
    /// How often the queue directory is looked at for new items (loop mode).
    pub poll: Duration,
}

impl Default for PushOptions {
    fn default() -> Self {
        PushOptions {
            max_age: Duration::from_secs(7 * 86400),
            backoff_min: Duration::from_secs(5),
            backoff_max: Duration::from_secs(600),
            poll: Duration::from_secs(2),
        }
    }
}

/// What happened to one account's queued change(s).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Delivered,
    SkippedPendingDeletion,
    WaitingForUser,
    WaitingForTarget,
    Expired,
    Rejected,
    Unreadable,
}

impl Outcome {
    fn text(&self) -> &'static str {
        match self {
            Outcome::Delivered => "password delivered",
            Outcome::SkippedPendingDeletion => "skipped: the user is pending deletion",
            Outcome::WaitingForUser => "waiting: no such user in the target yet",
            Outcome::WaitingForTarget => "waiting: the target cannot be reached",
            Outcome::Expired => "given up: the change is older than the maximum age",
            Outcome::Rejected => "given up: the target rejected the password",
            Outcome::Unreadable => "cannot read the queued change",
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct OutcomeLine {
    /// userName as the mapping gives it, else the DN.
    pub user: String,
    pub outcome: Outcome,
    /// HTTP status of a rejection, when that is the outcome.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// Older changes of the same account dropped because this one is newer.
    #[serde(skip_serializing_if = "is_zero")]
    pub superseded: usize,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

impl std::fmt::Display for OutcomeLine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.user, self.outcome.text())?;
        if let Some(s) = self.status {
            write!(f, " (HTTP {s})")?;
        }
        if self.superseded > 0 {
            write!(f, " ({} older change(s) superseded)", self.superseded)?;
        }
        Ok(())
    }
}

/// One pass over the queue.
#[derive(Debug, Default, Clone, Serialize)]
pub struct PassReport {
    pub lines: Vec<OutcomeLine>,
    /// Items still in the queue after the pass.
    pub remaining: usize,
    /// The target could not be reached (or refused the credentials) during the pass.
    pub target_unavailable: bool,
}

impl PassReport {
    pub fn count(&self, outcome: &Outcome) -> usize {
        self.lines.iter().filter(|l| &l.outcome == outcome).count()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PushError {
    #[error("{0}")]
    Queue(#[from] QueueError),
    #[error("{0}")]
    Client(String),
}

/// Per-account retry schedule.
struct Retry {
    backoff: ExponentialBackoff,
    due: Instant,
}

/// The pusher's memory between passes: retry schedules. Lost on restart, which only makes
/// the first pass after a restart try everything at once.
pub struct Pusher<'a> {
    config: &'a Config,
    queue: &'a Queue,
    client: ScimClient,
    options: PushOptions,
    retries: HashMap<String, Retry>,
    target_retry: Option<Retry>,
}

/// The queue by account: each account's items by its first (oldest) item, in capture order,
/// and the externalId of each account by that first item.
struct Accounts {
    by_first: BTreeMap<ItemId, Pending>,
    anchors: HashMap<ItemId, String>,
}

struct Pending {
    ids: Vec<ItemId>,
    newest: Item,
    user: String,
}

impl<'a> Pusher<'a> {
    pub fn new(
        config: &'a Config,
        queue: &'a Queue,
        options: PushOptions,
    ) -> Result<Pusher<'a>, PushError> {
        let client =
            crate::client::scim_client(config).map_err(|e| PushError::Client(e.to_string()))?;
        Ok(Pusher {
            config,
            queue,
            client,
            options,
            retries: HashMap::new(),
            target_retry: None,
        })
    }

    fn backoff(&self) -> ExponentialBackoff {
        ExponentialBuilder::default()
            .with_min_delay(self.options.backoff_min)
            .with_max_delay(self.options.backoff_max)
            .with_jitter()
            .without_max_times()
            .build()
    }

    fn schedule(&self, slot: Option<Retry>) -> Retry {
        let mut r = slot.unwrap_or_else(|| Retry {
            backoff: self.backoff(),
            due: Instant::now(),
        });
        let delay = r.backoff.next().unwrap_or(self.options.backoff_max);
        r.due = Instant::now() + delay;
        r
    }

    /// Time until the next retry is due (loop mode sleeps at most this long).
    pub fn next_due(&self) -> Option<Duration> {
        let now = Instant::now();
        self.retries
            .values()
            .chain(self.target_retry.iter())
            .map(|r| r.due.saturating_duration_since(now))
            .min()
    }

    fn kind(&self, item: &Item) -> DirectoryKind {
        self.config
            .ad
            .ldap
            .flavor
            .kind()
            .unwrap_or_else(|| DirectoryKind::guess(std::slice::from_ref(&item.entry)))
    }

    /// The externalId and a user label, exactly as a directory sync would compute them.
    fn identify(&self, item: &Item) -> (Option<String>, String) {
        let mapping = &self.config.iid.scim.attribute.user;
        match mapping::map_user(&item.entry, mapping, self.kind(item), Utc::now()) {
            Ok(m) => (Some(m.anchor), m.user_name),
            // Other attributes of the user may be absent from syncpasswords' LDIF; only the
            // anchor matters here, and the error carries it when it was computed.
            Err(e) => {
                let label = e.user_name.clone().unwrap_or_else(|| item.entry.dn.clone());
                (e.anchor, label)
            }
        }
    }

    /// One pass: every account whose retry is due is tried once.
    pub async fn pass(&mut self) -> Result<PassReport, PushError> {
        let mut report = PassReport::default();
        let Accounts { by_first, anchors } = self.accounts(&mut report)?;
        let now = Instant::now();
        let target_due = self.target_retry.as_ref().is_none_or(|r| r.due <= now);
        for (first, pending) in by_first {
            let Some(anchor) = anchors.get(&first).cloned() else {
                continue;
            };
            self.push_account(&mut report, &pending, &anchor, now, target_due)
                .await?;
        }
        Ok(report)
    }

    /// The queue grouped by externalId, keeping capture order; the newest item of each
    /// account wins. Unreadable items are reported and kept; items with no externalId are
    /// given up.
    fn accounts(&self, report: &mut PassReport) -> Result<Accounts, PushError> {
        let ids = self.queue.list()?;
        let mut accounts: BTreeMap<ItemId, Pending> = BTreeMap::new();
        let mut first_of: HashMap<String, ItemId> = HashMap::new();
        for id in ids {
            let Some(item) = self.read_item(report, &id) else {
                continue;
            };
            let (anchor, user) = self.identify(&item);
            let Some(anchor) = anchor else {
                tracing::warn!(user = %user, "given up: no externalId can be computed for it");
                report.lines.push(OutcomeLine {
                    user,
                    outcome: Outcome::Rejected,
                    status: None,
                    superseded: 0,
                });
                self.queue.remove(&id)?;
                continue;
            };
            match first_of.get(&anchor).and_then(|f| accounts.get_mut(f)) {
                Some(p) => {
                    p.ids.push(id);
                    p.newest = item;
                    p.user = user;
                }
                None => {
                    first_of.insert(anchor.clone(), id.clone());
                    let pending = Pending {
                        ids: vec![id.clone()],
                        newest: item,
                        user,
                    };
                    accounts.insert(id, pending);
                }
            }
        }
        let anchors = first_of.into_iter().map(|(a, id)| (id, a)).collect();
        Ok(Accounts {
            by_first: accounts,
            anchors,
        })
    }

    /// One queued item; `None` (reported, and kept: a wrong key file is an operator error,
    /// not a reason to lose data) when it cannot be read.
    fn read_item(&self, report: &mut PassReport, id: &ItemId) -> Option<Item> {
        match self.queue.read(id) {
            Ok(item) => Some(item),
            Err(e) => {
                tracing::error!(item = %id, "{e}");
                report.lines.push(OutcomeLine {
                    user: id.to_string(),
                    outcome: Outcome::Unreadable,
                    status: None,
                    superseded: 0,
                });
                None
            }
        }
    }

    /// One account's newest change: expired, left for a later pass (not due, or the target
    /// unavailable), or delivered and settled.
    async fn push_account(
        &mut self,
        report: &mut PassReport,
        pending: &Pending,
        anchor: &str,
        now: Instant,
        target_due: bool,
    ) -> Result<(), QueueError> {
        let age = Utc::now()
            .signed_duration_since(pending.newest.captured_at)
            .to_std()
            // default: a capture time in the future is age zero.
            .unwrap_or_default();
        if age > self.options.max_age {
            return self.finish(report, pending, anchor, Outcome::Expired, None);
        }
        let due = self.retries.get(anchor).is_none_or(|r| r.due <= now);
        if report.target_unavailable || !target_due || !due {
            report.remaining += pending.ids.len();
            return Ok(());
        }
        let delivery = self.deliver(anchor, &pending.newest).await;
        self.settle(report, pending, anchor, delivery)
    }

    /// What a delivery attempt's answer means for the account: a final outcome (the queue
    /// items removed) or a retry scheduled (for the account, or for the whole target).
    fn settle(
        &mut self,
        report: &mut PassReport,
        pending: &Pending,
        anchor: &str,
        delivery: Result<Delivery, ClientError>,
    ) -> Result<(), QueueError> {
        match delivery {
            Ok(Delivery::Done) => {
                self.target_retry = None;
                self.finish(report, pending, anchor, Outcome::Delivered, None)?;
            }
            Ok(Delivery::Pending) => {
                self.target_retry = None;
                let outcome = Outcome::SkippedPendingDeletion;
                self.finish(report, pending, anchor, outcome, None)?;
            }
            Ok(Delivery::NoSuchUser) => {
                self.target_retry = None;
                self.wait_for_user(report, pending, anchor);
            }
            Ok(Delivery::Rejected(status)) => {
                self.finish(report, pending, anchor, Outcome::Rejected, Some(status))?;
            }
            Err(e) => self.wait_for_target(report, pending, &e),
        }
        Ok(())
    }

    /// No such user in the target yet: the account's retry is scheduled, its items stay.
    fn wait_for_user(&mut self, report: &mut PassReport, pending: &Pending, anchor: &str) {
        let slot = self.retries.remove(anchor);
        let retry = self.schedule(slot);
        self.retries.insert(anchor.to_string(), retry);
        tracing::info!(user = %pending.user, "{}", Outcome::WaitingForUser.text());
        still_waiting(report, pending, Outcome::WaitingForUser);
    }

    /// Unreachable, refused credentials, 5xx after retries: nothing else in this pass can
    /// succeed either; the target's retry is scheduled, the account's items stay.
    fn wait_for_target(&mut self, report: &mut PassReport, pending: &Pending, e: &ClientError) {
        report.target_unavailable = true;
        let slot = self.target_retry.take();
        self.target_retry = Some(self.schedule(slot));
        tracing::warn!(user = %pending.user, reason = %failure_kind(e), "{}", Outcome::WaitingForTarget.text());
        still_waiting(report, pending, Outcome::WaitingForTarget);
    }

    fn finish(
        &mut self,
        report: &mut PassReport,
        pending: &Pending,
        anchor: &str,
        outcome: Outcome,
        status: Option<u16>,
    ) -> Result<(), QueueError> {
        // The newest last: if we are killed halfway, the newest is still there to redo.
        let (newest, older) = match pending.ids.split_last() {
            Some((newest, older)) => (Some(newest), older),
            None => (None, &[][..]),
        };
        for id in older {
            self.queue.remove(id)?;
        }
        if let Some(newest) = newest {
            self.queue.remove(newest)?;
        }
        self.retries.remove(anchor);
        let line = OutcomeLine {
            user: pending.user.clone(),
            outcome,
            status,
            superseded: older.len(),
        };
        match line.outcome {
            Outcome::Delivered => tracing::info!(user = %line.user, "{}", line.outcome.text()),
            _ => {
                tracing::warn!(user = %line.user, status = ?line.status, "{}", line.outcome.text())
            }
        }
        report.lines.push(line);
        Ok(())
    }

    async fn deliver(&self, anchor: &str, item: &Item) -> Result<Delivery, ClientError> {
        let user = match self.find(anchor).await? {
            Found::User(id) => id,
            Found::Pending => return Ok(Delivery::Pending),
            Found::None => return Ok(Delivery::NoSuchUser),
        };
        let op: scim::PatchOperation = serde_json::from_value(json!({
            "op": "replace",
            "path": "password",
            "value": item.password.expose_secret(),
        }))
        .map_err(|_| ClientError::Protocol("cannot build the password PATCH".into()))?;
        match self.client.patch(ResourceKind::Users, &user, &[op]).await {
            Ok(_) => Ok(Delivery::Done),
            Err(ClientError::Rejected(e)) if e.status == 404 => Ok(Delivery::NoSuchUser),
            Err(ClientError::Rejected(e)) => Ok(Delivery::Rejected(e.status)),
            Err(e) => Err(e),
        }
    }

    async fn find(&self, anchor: &str) -> Result<Found, ClientError> {
        let quoted = serde_json::to_string(anchor)
            .map_err(|e| ClientError::Protocol(format!("externalId: {e}")))?;
        let filter = parse_filter(&format!("externalId eq {quoted}"))?;
        let found = self.client.search(ResourceKind::Users, &filter).await?;
        if let Some(user) = found.first() {
            if is_pending(user) {
                return Ok(Found::Pending);
            }
            return Ok(match crate::target::str_field(user, "id") {
                Some(id) => Found::User(id),
                None => Found::None,
            });
        }
        // idservice hides users pending deletion unless a filter names their state.
        let filter = parse_filter(&format!(
            "externalId eq {quoted} and {}:{STATE_ATTR} eq \"{PENDING}\"",
            scim::urn::IIJ_USER
        ))?;
        match self.client.search(ResourceKind::Users, &filter).await {
            Ok(found) if !found.is_empty() => Ok(Found::Pending),
            Ok(_) => Ok(Found::None),
            // A target without the state attribute may reject the filter: nobody is pending.
            Err(ClientError::Rejected(_)) => Ok(Found::None),
            Err(e) => Err(e),
        }
    }
}

fn parse_filter(text: &str) -> Result<scim::Filter, ClientError> {
    scim::filter::parse(text).map_err(|e| ClientError::Protocol(format!("filter: {e}")))
}

fn is_pending(user: &Value) -> bool {
    scim::resource::member(user, scim::urn::IIJ_USER)
        .and_then(|e| scim::resource::member(e, STATE_ATTR))
        .and_then(Value::as_str)
        .is_some_and(|s| s == PENDING)
}

/// A short reason without the target's detail text.
fn failure_kind(e: &ClientError) -> String {
    match e {
        ClientError::Unreachable { .. } => "unreachable".into(),
        ClientError::Interrupted { .. } => "connection lost during the request".into(),
        ClientError::Unauthorized { status, .. } => format!("credentials refused (HTTP {status})"),
        ClientError::Server { status, .. } => format!("server error (HTTP {status})"),
        ClientError::Rejected(e) => format!("HTTP {}", e.status),
        ClientError::Redirected { status, .. } => format!("redirect refused (HTTP {status})"),
        ClientError::Protocol(_) => "protocol error".into(),
        ClientError::Config(_) => "client configuration".into(),
    }
}

enum Found {
    User(String),
    Pending,
    None,
}

enum Delivery {
    Done,
    Pending,
    NoSuchUser,
    Rejected(u16),
}

/// Reports an account whose items stay queued for a later pass, and counts them.
fn still_waiting(report: &mut PassReport, pending: &Pending, outcome: Outcome) {
    report.lines.push(OutcomeLine {
        user: pending.user.clone(),
        outcome,
        status: None,
        superseded: 0,
    });
    report.remaining += pending.ids.len();
}
