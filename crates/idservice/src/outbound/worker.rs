//! The outbound worker: every `interval` it looks at each application's queue and, for an
//! application with a backlog and no drain running, starts one. A drain processes the queued
//! changes in sequence order and moves the application's cursor past each one only after the
//! application answered; on a failure of the application as a whole (unreachable, 5xx, 429
//! after the client's own `Retry-After` waits, refused credentials) it stops, records the
//! error, and the application is left alone for a growing backoff. Request handlers never wait
//! for it: it shares only the database, in short transactions.
//!
//! With several nodes on one database, one node at a time drains an application: the drain
//! holds the application's lease (`apps.lease_owner`, `lease_until`) and renews it in the
//! transaction that moves the cursor, so the order of an application's changes holds across
//! nodes. A node that dies leaves its lease to run out ([`LEASE`]); another node then carries
//! on from the cursor, pushing again at most the one change the dead node had not recorded.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::task::JoinHandle;

use super::relink::{self, PushError};
use super::{Downstream, Error};
use crate::domain::{Service, fmt_time, now};
use crate::store::apps::{self as sa, AppRow};

/// The longest pause between two tries of an unavailable application.
pub const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// Queue rows read at a time.
const BATCH: i64 = 200;
/// How long a drain's lease on an application lasts without being renewed.
pub const LEASE: chrono::TimeDelta = chrono::TimeDelta::seconds(30);

/// This process's name as a lease owner.
fn node_id() -> &'static str {
    static ID: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    ID.get_or_init(|| uuid::Uuid::new_v4().to_string())
}

/// Takes or renews `app`'s lease for this node on `conn`.
async fn lease(conn: &mut crate::store::Conn, app: &str) -> Result<bool, sqlx::Error> {
    let t = chrono::Utc::now();
    sa::take_lease(conn, app, node_id(), &fmt_time(t), &fmt_time(t + LEASE)).await
}

/// Worker settings (`idservice serve --outbound-interval`).
#[derive(Debug, Clone)]
pub struct WorkerOptions {
    /// How often the queue is looked at; also the first backoff step.
    pub interval: Duration,
}

struct AppTask {
    handle: Option<JoinHandle<Result<(), Error>>>,
    /// Identity of the settings the client was built from (rebuilt when they change).
    key: String,
    client: Option<Arc<Downstream>>,
    failures: u32,
    not_before: Instant,
}

/// Starts the worker; it runs until the returned handle is aborted.
pub fn spawn(svc: Arc<Service>, opts: WorkerOptions) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut tasks: HashMap<String, AppTask> = HashMap::new();
        let mut tick = tokio::time::interval(opts.interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if let Err(e) = round(&svc, &opts, &mut tasks).await {
                tracing::warn!(error = %e, "outbound worker: database error");
            }
        }
    })
}

/// One look at every application: forgets removed ones, starts due drains, trims the queue.
async fn round(
    svc: &Arc<Service>,
    opts: &WorkerOptions,
    tasks: &mut HashMap<String, AppTask>,
) -> Result<(), sqlx::Error> {
    let apps = {
        let mut conn = svc.store.read().await?;
        sa::list_apps(&mut conn).await?
    };
    forget_removed(tasks, &apps);
    let now_i = Instant::now();
    for app in apps {
        let key = format!("{}\n{}\n{:?}", app.url, app.token_file, app.rate_per_sec);
        let task = tasks.entry(app.name.clone()).or_insert_with(|| AppTask {
            handle: None,
            key: key.clone(),
            client: None,
            failures: 0,
            not_before: now_i,
        });
        tend(svc, opts, task, app, key).await?;
    }
    trim_queue(svc).await
}

/// Drops the tasks of applications no longer configured, aborting their drains.
fn forget_removed(tasks: &mut HashMap<String, AppTask>, apps: &[AppRow]) {
    tasks.retain(|name, t| {
        let keep = apps.iter().any(|a| &a.name == name);
        if !keep && let Some(h) = &t.handle {
            h.abort();
        }
        keep
    });
}

/// Starts a drain of `app` when none runs, its backoff is over, it has a backlog, a client
/// and this node gets its lease.
async fn tend(
    svc: &Arc<Service>,
    opts: &WorkerOptions,
    task: &mut AppTask,
    app: AppRow,
    key: String,
) -> Result<(), sqlx::Error> {
    if !reap(task, opts).await {
        return Ok(());
    }
    if Instant::now() < task.not_before {
        return Ok(());
    }
    if !has_backlog(svc, &app).await? {
        return Ok(());
    }
    if task.key != key {
        task.key = key;
        task.client = None;
    }
    let Some(client) = client_for(svc, opts, task, &app).await else {
        return Ok(());
    };
    let leased = {
        let mut conn = svc.store.autocommit().await?;
        lease(&mut conn, &app.name).await?
    };
    if !leased {
        // Another node is draining this application.
        return Ok(());
    }
    let svc = svc.clone();
    task.handle = Some(tokio::spawn(drain_leased(svc, app, client)));
    Ok(())
}

/// Collects a finished drain's outcome into the backoff state; false while a drain still runs.
async fn reap(task: &mut AppTask, opts: &WorkerOptions) -> bool {
    if let Some(h) = &task.handle {
        if !h.is_finished() {
            return false;
        }
        let result = match task.handle.take() {
            Some(h) => h.await.unwrap_or_else(|e| Err(Error::DrainTask(e))),
            None => Ok(()),
        };
        match result {
            Ok(()) => task.failures = 0,
            Err(_) => {
                task.failures = task.failures.saturating_add(1);
                // Doubling from the poll interval, capped.
                let factor = 1u32 << task.failures.min(16);
                let wait = opts.interval.saturating_mul(factor).min(MAX_BACKOFF);
                task.not_before = Instant::now() + wait;
                // Credentials or the URL may have been fixed in the meantime.
                task.client = None;
            }
        }
    }
    true
}

/// Whether the application's queue holds a change past its cursor.
async fn has_backlog(svc: &Service, app: &AppRow) -> Result<bool, sqlx::Error> {
    let mut conn = svc.store.read().await?;
    Ok(!sa::next_events(&mut conn, &app.name, app.position(), 1)
        .await?
        .is_empty())
}

/// The task's client, built if needed; `None` (hold recorded, backoff set) if it cannot be.
async fn client_for(
    svc: &Service,
    opts: &WorkerOptions,
    task: &mut AppTask,
    app: &AppRow,
) -> Option<Arc<Downstream>> {
    if let Some(c) = &task.client {
        return Some(c.clone());
    }
    match Downstream::connect(app) {
        Ok(c) => {
            let c = Arc::new(c);
            task.client = Some(c.clone());
            Some(c)
        }
        Err(e) => {
            record_hold(svc, &app.name, &e.to_string()).await;
            task.failures = task.failures.saturating_add(1);
            task.not_before = Instant::now() + MAX_BACKOFF.min(opts.interval * 10);
            None
        }
    }
}

/// Deletes the queue rows every application has moved past, if there are any.
async fn trim_queue(svc: &Service) -> Result<(), sqlx::Error> {
    let trimmable = {
        let mut conn = svc.store.read().await?;
        sa::trimmable(&mut conn).await?
    };
    if trimmable {
        // Outside a REPEATABLE READ transaction: when two nodes trim at once, the second
        // one's DELETE passes over the rows the first removed instead of failing.
        let mut conn = svc.store.autocommit().await?;
        sa::trim_events(&mut conn).await?;
    }
    Ok(())
}

/// Runs [`drain`] under the lease this node took, and gives the lease up after it.
async fn drain_leased(svc: Arc<Service>, app: AppRow, ds: Arc<Downstream>) -> Result<(), Error> {
    // The cursor as it is now that the lease is ours (another node may have moved it).
    let fresh = {
        let mut conn = svc.store.read().await?;
        sa::get_app(&mut conn, &app.name).await?
    };
    let result = match fresh {
        Some(app) => drain(&svc, app, ds).await,
        None => Ok(()),
    };
    let released = async {
        let mut conn = svc.store.autocommit().await?;
        sa::release_lease(&mut conn, &app.name, node_id()).await
    }
    .await;
    if let Err(e) = released {
        tracing::warn!(app = %app.name, error = %e, "cannot give up the drain lease");
    }
    result
}

/// Moves the application's cursor to `to` if this node still holds its lease (renewed);
/// returns whether it did.
async fn advance(svc: &Service, app: &str, to: sa::QueuePos) -> Result<bool, sqlx::Error> {
    let mut tx = svc.store.begin().await?;
    if !lease(&mut tx, app).await? {
        return Ok(false);
    }
    sa::advance(&mut tx, app, to).await?;
    tx.commit().await?;
    Ok(true)
}

/// Processes the application's backlog until it is empty, the application fails, or the
/// lease is lost.
async fn drain(svc: &Arc<Service>, app: AppRow, ds: Arc<Downstream>) -> Result<(), Error> {
    let svc = svc.clone();
    let mut cursor = app.position();
    let mut had_error = app.last_error.is_some();
    loop {
        let events = {
            let mut conn = svc.store.read().await?;
            sa::next_events(&mut conn, &app.name, cursor, BATCH).await?
        };
        if events.is_empty() {
            return Ok(());
        }
        for (i, ev) in events.iter().enumerate() {
            // Level-triggered: of consecutive rows for one user, the last one covers the rest.
            // (Rows of other users in between keep their place, so order across users holds.)
            let superseded = events
                .get(i + 1)
                .is_some_and(|next| next.user_id == ev.user_id);
            if !superseded {
                match relink::process(&svc, &app, &ds, &ev.user_id).await {
                    Ok(()) => {}
                    Err(PushError::Hold(e)) => {
                        let msg = e.to_string();
                        tracing::warn!(app = %app.name, error = %msg,
                            "downstream application unavailable; its queue is held and retried");
                        record_hold(&svc, &app.name, &msg).await;
                        return Err(Error::Unavailable(e));
                    }
                    Err(PushError::Db(e)) => return Err(Error::Db(e)),
                }
            }
            if !advance(&svc, &app.name, ev.position()).await? {
                tracing::warn!(app = %app.name, "drain lease lost to another node; stopping");
                return Ok(());
            }
            cursor = ev.position();
            if had_error {
                had_error = false;
                tracing::info!(app = %app.name, "downstream application reachable again");
            }
        }
    }
}

async fn record_hold(svc: &Service, app: &str, error: &str) {
    let result = async {
        let mut tx = svc.store.begin().await?;
        sa::set_app_error(&mut tx, app, error, &now()).await?;
        tx.commit().await
    }
    .await;
    if let Err(e) = result {
        tracing::warn!(app, error = %e, "cannot record the application's error");
    }
}
