//! One sync run (behaviour §4.4): lock → state → target discovery → directory read → mapping →
//! target snapshot → plan → (dry run: stop) → apply → state → report.
//!
//! A run is **full** (whole directory, live target) or **incremental** (the directory's changes
//! since the stored cursor applied to the cached directory image, planned against the cached
//! target state). The planner is the same pure function either way: with an unchanged image
//! and cache its plan is empty by construction. Image, target cache and cursor are written in
//! one transaction after apply, so a crash before it leaves the old cursor and the next run
//! re-reads the same changes (every write is idempotent or converges through externalId).
//!
//! It wires the other modules together and owns the run-level decisions: which target kind
//! this is, what this instance owns, recovery mode, and the exit code. It makes no
//! per-object decision itself; those are the planner's.
//!
//! This module holds the orchestration (lock, target discovery, full or incremental, the
//! stop and exit codes). The rest, one job each: [`full`] and [`incremental`] (the two kinds of
//! run), [`directory`] (the directory's changes since a cursor), [`image`] (the directory
//! image), [`desired`] and [`changed`] (the planner's input), [`execute`] (plan and apply),
//! [`drift`], [`cache`] (the target cache and the final commit), [`progress`] and [`memory`].
//! The SCIM client set-up is [`crate::client`].

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Mutex;
use std::time::Instant;

use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};

use crate::apply::{self, ApplyContext};
use crate::config::{ChangeTracking, Config, KeptBy};
use crate::journal::Journal;
use crate::json_text::JsonText;
use crate::mapping::{self, DirectoryKind};
use crate::plan::{self, Plan, PlanInput};
use crate::report::{Outcome, Report};
use crate::source::changes::{ChangeSet, Cursor};
use crate::source::ldap::LdapSource;
use crate::source::{self, DirectoryRead, Entry, ad_changes, syncrepl};
use crate::state::{
    CachedObject, ImageKeys, ImageRow, IncrementalWrite, ObjectKey, ObjectKind, ObjectRecord,
    RunLock, STAGE_BATCH, StateStore, entry_hash,
};
use crate::target;

mod cache;
mod changed;
mod desired;
mod directory;
mod drift;
mod execute;
mod full;
mod image;
mod incremental;
mod links;
mod memory;
mod progress;

use cache::*;
use directory::*;
use drift::*;
use execute::*;
use full::*;
use image::*;
use incremental::*;
use memory::*;
use progress::*;

pub use crate::client::{run_scim_client, scim_client};

/// What the command line asked for.
#[derive(Debug, Clone, Default)]
pub struct SyncOptions {
    pub dry_run: bool,
    pub recovery: bool,
    pub allow_deletions: Option<u64>,
    pub adopt: bool,
    /// `--full`: a full reconcile even when an incremental run is possible.
    pub full: bool,
    /// `dirsync apply`: the saved plan this run applies (a full run whose plan must make the
    /// same operations on the saved plan's objects, and is restricted to them).
    pub saved_plan: Option<std::sync::Arc<crate::saved_plan::SavedPlan>>,
}

/// The outcome of a run: the report, and the plan (for `--dry-run` output).
pub struct RunResult {
    pub report: Report,
    pub plan: Option<Plan>,
}

/// A fingerprint of the effective configuration file (behaviour §4.4): when it changes, the run
/// says so and reconciles fully (and a saved plan made with another one is refused).
pub fn config_fingerprint(config: &Config) -> String {
    // default: an unreadable config file (just loaded) fingerprints as changed: a full run.
    let bytes = std::fs::read(&config.config_path).unwrap_or_default();
    hex::encode(Sha256::digest(bytes))
}

pub async fn sync(config: &Config, warnings: Vec<String>, options: &SyncOptions) -> RunResult {
    let started = Instant::now();
    let now = Utc::now();
    let run_id = format!(
        "{}-{}",
        now.format("%Y%m%dT%H%M%SZ"),
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    );
    let mut report = Report {
        run_id: run_id.clone(),
        // Decided once the state is open; a run that stops before says "full".
        mode: "full".into(),
        recovery: options.recovery,
        dry_run: options.dry_run,
        started_at: now.to_rfc3339(),
        target: config.iid.scim.base_url.0.clone(),
        warnings,
        read_complete: true,
        ..Report::default()
    };
    tracing::info!(run_id = %run_id, dry_run = options.dry_run, "run started");
    let plan = run(config, options, &mut report, &run_id, now, started).await;
    log_end(&report);
    RunResult { report, plan }
}

/// The run's end as one line: the counts, and why it refused or stopped (warn unless exit 0).
fn log_end(r: &Report) {
    let c = &r.counts;
    let why = r.refused.as_deref().or(r.stopped.as_deref()).unwrap_or("");
    macro_rules! end {
        ($level:ident) => {
            tracing::$level!(
                run_id = %r.run_id, mode = %r.mode, exit_code = r.exit_code,
                duration_ms = r.duration_ms as u64, created = c.created, updated = c.updated,
                enabled = c.enabled, disabled = c.disabled, pending_deletion = c.pending_deletion,
                restored = c.restored, deleted = c.deleted, adopted = c.adopted,
                groups_created = c.groups_created, groups_updated = c.groups_updated,
                groups_deleted = c.groups_deleted, members_added = c.members_added,
                members_removed = c.members_removed, failed = r.failures.len(),
                skipped = r.skipped.len(), reason = why, "run ended"
            )
        };
    }
    if r.exit_code == crate::report::EXIT_OK {
        end!(info);
    } else {
        end!(warn);
    }
}

/// The final exit code and duration, once the run is over.
fn conclude(report: &mut Report, started: Instant) {
    report.duration_ms = started.elapsed().as_millis();
    if report.outcome == Outcome::Synced {
        report.outcome = report.settled_outcome();
    }
    report.exit_code = report.outcome.exit_code();
}

/// The body of a run; fills `report` and returns the plan when one was made.
async fn run(
    config: &Config,
    options: &SyncOptions,
    report: &mut Report,
    run_id: &str,
    now: DateTime<Utc>,
    started: Instant,
) -> Option<Plan> {
    let _lock = match RunLock::acquire(&config.state_dir) {
        Ok(lock) => lock,
        Err(e) => {
            report.refused = Some(e.to_string());
            report.outcome = Outcome::Refused;
            report.lock_busy = true;
            conclude(report, started);
            return None;
        }
    };
    let state = match StateStore::open(&config.state_dir).await {
        Ok(state) => state,
        Err(e) => {
            state_unreadable(report, "state.db", e);
            conclude(report, started);
            return None;
        }
    };
    // Recorded at the start, so that a killed run leaves a row without `finished_at` (and
    // the next run reconciles fully).
    let result = match begin(&state, options, report, run_id).await {
        Ok(interrupted) => {
            run_locked(config, options, report, run_id, now, &state, interrupted).await
        }
        Err(e) => state_unreadable(report, "the run history", e),
    };
    conclude(report, started);
    if !options.dry_run {
        // default: serialising the report cannot fail.
        let json = serde_json::to_value(&*report).unwrap_or_default();
        if let Err(e) = state.finish_run(run_id, report.exit_code, &json).await {
            // The run is over; the next one sees it unfinished and reconciles fully.
            tracing::warn!(error = %e, "could not record the end of the run");
        }
    }
    state.close().await;
    result
}

/// Whether the previous run was interrupted, and (unless dry) the start of this one recorded
/// so that a killed run leaves a row without `finished_at` and the next run reconciles fully.
async fn begin(
    state: &StateStore,
    options: &SyncOptions,
    report: &Report,
    run_id: &str,
) -> Result<bool, crate::state::StateError> {
    let interrupted = state.last_run_unfinished().await?;
    if !options.dry_run {
        state.begin_run(run_id, &report.mode, false).await?;
    }
    Ok(interrupted)
}

/// Stops the run because the local state could not be read (exit 5): nothing is deleted or
/// created on a guess of what this instance owns.
fn state_unreadable(report: &mut Report, what: &str, e: impl std::fmt::Display) -> Option<Plan> {
    stop(
        report,
        format!("cannot read the local state ({what}): {e}"),
        Outcome::StateUnreadable,
    )
}

#[allow(clippy::too_many_arguments)]
async fn run_locked(
    config: &Config,
    options: &SyncOptions,
    report: &mut Report,
    run_id: &str,
    now: DateTime<Utc>,
    state: &StateStore,
    interrupted: bool,
) -> Option<Plan> {
    let fingerprint = config_fingerprint(config);
    let config_changed = prepare_state(options, state, report, &fingerprint).await?;
    // Target first: a refused token or an unreachable service stops before the directory
    // is read.
    let (client, spc) = connect_target(config, report).await?;
    let keeps_pending = match config.sync.pending_deletion.kept_by {
        KeptBy::Target => true,
        KeptBy::Agent => false,
        KeptBy::Auto => spc.keeps_pending_users,
    };
    let state_format = match state.meta(META_STATE_FORMAT).await {
        Ok(f) => f,
        Err(e) => return state_unreadable(report, "the state format", e),
    };
    let run = RunCtx {
        config,
        options,
        run_id,
        now,
        state,
        client: &client,
        spc: &spc,
        keeps_pending,
        fingerprint,
        rewrite_state: config_changed
            || options.recovery
            || state_format.as_deref() != Some(STATE_FORMAT),
    };
    incremental_or_full(&run, report, config_changed, interrupted).await
}

/// `--recovery`'s reset and the staging a killed run left, cleared; then whether the
/// configuration changed since the last run. `None`: the run stopped (the report says why).
async fn prepare_state(
    options: &SyncOptions,
    state: &StateStore,
    report: &mut Report,
    fingerprint: &str,
) -> Option<bool> {
    if options.recovery && !options.dry_run {
        if let Err(e) = state.reset().await {
            report.stopped = Some(e.to_string());
            report.outcome = Outcome::Refused;
            return None;
        }
        report
            .notes
            .push("recovery: local state discarded and rebuilt from the target".into());
    }
    // Rows a killed run staged are not part of any image.
    if !options.dry_run
        && let Err(e) = state.clear_staging().await
    {
        report.stopped = Some(e.to_string());
        report.outcome = Outcome::Refused;
        return None;
    }
    match state.meta("config_fingerprint").await {
        Ok(Some(old)) if old != fingerprint => {
            report
                .notes
                .push("the configuration changed since the last run: full reconcile".into());
            Some(true)
        }
        Ok(_) => Some(false),
        Err(e) => {
            state_unreadable(report, "the configuration fingerprint", e);
            None
        }
    }
}

/// The SCIM client and what the service provides, with pages as large as it allows.
/// `None`: the run stopped (the report says why).
async fn connect_target(
    config: &Config,
    report: &mut Report,
) -> Option<(scim_client::ScimClient, scim_client::ServiceProviderInfo)> {
    let mut client = match run_scim_client(config) {
        Ok(c) => c,
        Err(e) => {
            stop(report, e.to_string(), Outcome::ConfigError);
            return None;
        }
    };
    let spc = match client.service_provider_config().await {
        Ok(spc) => spc,
        Err(e) => {
            stop(report, e.to_string(), Outcome::Unreachable);
            return None;
        }
    };
    if spc.filter_max_results > 0 {
        // Pages as large as the service allows (a full run lists every user).
        client.set_page_size(spc.filter_max_results.min(MAX_PAGE));
    }
    Some((client, spc))
}

/// Incremental when nothing calls for a full reconcile (behaviour §3, issue #5); otherwise, or
/// when the incremental reader asks for a reload, full.
async fn incremental_or_full(
    run: &RunCtx<'_>,
    report: &mut Report,
    config_changed: bool,
    interrupted: bool,
) -> Option<Plan> {
    let stored = match run.state.cursor().await {
        Ok(c) => c,
        Err(e) => return state_unreadable(report, "the directory cursor", e),
    };
    let mut full_reason =
        match full_reason(run, stored.is_some(), config_changed, interrupted).await {
            Ok(r) => r,
            Err(e) => return state_unreadable(report, "the run metadata", e),
        };
    if full_reason.is_none() {
        let cursor = stored
            .as_deref()
            .map(serde_json::from_str::<Cursor>)
            .transpose();
        match cursor {
            Ok(Some(cursor)) => match incremental(run, report, &cursor).await {
                Incremental::Done(plan) => return plan,
                Incremental::Reload(reason) => {
                    full_reason = Some(format!("cursor invalid: {reason}"))
                }
            },
            Ok(None) => full_reason = Some("first run".into()),
            Err(e) => {
                full_reason = Some(format!(
                    "cursor invalid: the stored cursor is unreadable ({e})"
                ))
            }
        }
    }
    report.mode = "full".into();
    report.full_reason = full_reason;
    full(run, report).await
}

/// The largest list page asked for, whatever the service allows: one page's JSON is held whole.
const MAX_PAGE: usize = 1000;

/// What every stage of a run needs.
struct RunCtx<'a> {
    config: &'a Config,
    options: &'a SyncOptions,
    run_id: &'a str,
    now: DateTime<Utc>,
    state: &'a StateStore,
    client: &'a scim_client::ScimClient,
    spc: &'a scim_client::ServiceProviderInfo,
    keeps_pending: bool,
    fingerprint: String,
    /// A full run rewrites every image and cache row (not only those that differ): the rows
    /// may hold what another configuration or version made of the entries.
    rewrite_state: bool,
}

/// Meta keys (the `meta` table).
const META_LAST_FULL: &str = "last_full_run";
/// The version whose mapping wrote the image and cache rows.
const META_STATE_FORMAT: &str = "state_format";
const STATE_FORMAT: &str = env!("CARGO_PKG_VERSION");
/// "1" when the last run had per-object failures: the next run must plan even if the
/// directory did not change, so that they are retried.
const META_RETRY: &str = "retry_failed";
/// "1" when the last run skipped objects because of the target's state (see `Executed`).
const META_TARGET_CONFLICTS: &str = "target_conflicts";
/// "1" when the last run applied a saved plan and left other operations out.
const META_PLAN_LEFT_OUT: &str = "saved_plan_left_out";

/// Whether the target advertises the ownership mark (behaviour §4.3): only then is it written.
async fn marks_groups(client: &scim_client::ScimClient) -> bool {
    client
        .schema_extensions(scim_client::ResourceKind::Groups)
        .await
        .map(|exts| exts.iter().any(|e| e == scim::urn::DIRSYNC_SOURCE))
        .unwrap_or(false)
}

/// Why this run must be a full one, or `None` when an incremental run may be tried.
async fn full_reason(
    run: &RunCtx<'_>,
    has_cursor: bool,
    config_changed: bool,
    interrupted: bool,
) -> Result<Option<String>, crate::state::StateError> {
    let config = run.config;
    let reason = if config.ad.ldif_file.is_some() {
        "LDIF source"
    } else if run.options.recovery {
        "--recovery"
    } else if run.options.full {
        "--full"
    } else if !has_cursor {
        "first run"
    } else if config_changed {
        "configuration changed"
    } else if run.state.meta(META_STATE_FORMAT).await?.as_deref() != Some(STATE_FORMAT) {
        // Image rows keep what the mapping made of the entries; another version may map
        // differently.
        "the state was written by another version"
    } else if run.state.meta(META_TARGET_CONFLICTS).await?.as_deref() == Some("1") {
        "the last run skipped objects because of the target's state"
    } else if run.state.meta(META_PLAN_LEFT_OUT).await?.as_deref() == Some("1") {
        "the last run applied a saved plan and left other operations out"
    } else if interrupted {
        // Its writes may be missing from the target cache: plan against the live target.
        "the previous run did not finish"
    } else {
        return full_every_elapsed(run).await;
    };
    Ok(Some(reason.into()))
}

/// "sync.full_every elapsed" when the last full run is older than `sync.full_every` (or
/// unrecorded, or its time unreadable: a full run is the safe answer).
async fn full_every_elapsed(run: &RunCtx<'_>) -> Result<Option<String>, crate::state::StateError> {
    let last_full = run
        .state
        .meta(META_LAST_FULL)
        .await?
        .and_then(|t| DateTime::parse_from_rfc3339(&t).ok())
        .map(|t| t.with_timezone(&Utc));
    let every = chrono::Duration::from_std(run.config.sync.full_every.0)
        .unwrap_or_else(|_| chrono::Duration::hours(24));
    Ok(match last_full {
        Some(t) if run.now - t < every => None,
        _ => Some("sync.full_every elapsed".into()),
    })
}

fn stop(report: &mut Report, reason: String, outcome: Outcome) -> Option<Plan> {
    report.stopped = Some(reason);
    report.outcome = outcome;
    None
}

/// The directory kind names used in reports.
pub fn kind_name(kind: DirectoryKind) -> &'static str {
    match kind {
        DirectoryKind::ActiveDirectory => "Active Directory",
        DirectoryKind::OpenLdap => "OpenLDAP",
    }
}
