//! One sync run (SPEC 4.4): lock → state → target discovery → directory read → mapping →
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

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Mutex;
use std::time::Instant;

use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};

use crate::apply::{self, ApplyContext};
use crate::config::{Config, KeptBy};
use crate::journal::Journal;
use crate::json_text::JsonText;
use crate::mapping::{self, DirectoryKind};
use crate::plan::{self, Plan, PlanInput};
use crate::report::{EXIT_REFUSED, EXIT_UNREACHABLE, Report};
use crate::source::changes::{ChangeSet, Cursor};
use crate::source::ldap::LdapSource;
use crate::source::{self, DirectoryRead, Entry, ad_changes, syncrepl};
use crate::state::{
    CachedObject, ImageKeys, ImageRow, IncrementalWrite, ObjectKey, ObjectKind, ObjectRecord,
    RunLock, STAGE_BATCH, StateStore, entry_hash,
};
use crate::target;

mod changed;
mod desired;

pub use crate::client::scim_client;

/// What the command line asked for.
#[derive(Debug, Clone, Default)]
pub struct SyncOptions {
    pub dry_run: bool,
    pub recovery: bool,
    pub allow_deletions: Option<u64>,
    pub adopt: bool,
    /// `--full`: a full reconcile even when an incremental run is possible.
    pub full: bool,
}

/// The outcome of a run: the report, and the plan (for `--dry-run` output).
pub struct RunResult {
    pub report: Report,
    pub plan: Option<Plan>,
}

/// A fingerprint of the effective configuration file (SPEC 4.4): when it changes, the run
/// says so and reconciles fully.
fn config_fingerprint(config: &Config) -> String {
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
    let plan = run(config, options, &mut report, &run_id, now, started).await;
    RunResult { report, plan }
}

/// The final exit code and duration, once the run is over.
fn conclude(report: &mut Report, started: Instant) {
    report.duration_ms = started.elapsed().as_millis();
    if report.exit_code == 0 {
        report.exit_code = report.exit_code_from_outcome();
    }
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
    let opened = match RunLock::acquire(&config.state_dir) {
        Ok(lock) => StateStore::open(&config.state_dir)
            .await
            .map(|state| (lock, state)),
        Err(e) => Err(e),
    };
    let (_lock, state) = match opened {
        Ok(pair) => pair,
        Err(e) => {
            report.refused = Some(e.to_string());
            report.exit_code = EXIT_REFUSED;
            conclude(report, started);
            return None;
        }
    };
    // Recorded at the start, so that a killed run leaves a row without `finished_at` (and
    // the next run reconciles fully).
    let interrupted = state.last_run_unfinished().await.unwrap_or(false);
    if !options.dry_run {
        let _ = state.begin_run(run_id, &report.mode, false).await;
    }

    let result = run_locked(config, options, report, run_id, now, &state, interrupted).await;
    conclude(report, started);
    if !options.dry_run {
        let json = serde_json::to_value(&*report).unwrap_or_default();
        let _ = state.finish_run(run_id, report.exit_code, &json).await;
    }
    state.close().await;
    result
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
    if options.recovery && !options.dry_run {
        if let Err(e) = state.reset().await {
            report.stopped = Some(e.to_string());
            report.exit_code = EXIT_REFUSED;
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
        report.exit_code = EXIT_REFUSED;
        return None;
    }
    let fingerprint = config_fingerprint(config);
    let mut config_changed = false;
    match state.meta("config_fingerprint").await {
        Ok(Some(old)) if old != fingerprint => {
            config_changed = true;
            report
                .notes
                .push("the configuration changed since the last run: full reconcile".into())
        }
        _ => {}
    }

    // Target first: a refused token or an unreachable service stops before the directory
    // is read.
    let mut client = match scim_client(config) {
        Ok(c) => c,
        Err(e) => return stop(report, e.to_string(), EXIT_REFUSED),
    };
    let spc = match client.service_provider_config().await {
        Ok(spc) => spc,
        Err(e) => return stop(report, e.to_string(), EXIT_UNREACHABLE),
    };
    if spc.filter_max_results > 0 {
        // Pages as large as the service allows (a full run lists every user).
        client.set_page_size(spc.filter_max_results.min(MAX_PAGE));
    }
    let keeps_pending = match config.sync.pending_deletion.kept_by {
        KeptBy::Target => true,
        KeptBy::Agent => false,
        KeptBy::Auto => spc.keeps_pending_users,
    };

    let state_format = state.meta(META_STATE_FORMAT).await.ok().flatten();
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

    // Incremental when nothing calls for a full reconcile (SPEC 3, issue #5).
    let stored = state.cursor().await.ok().flatten();
    let mut full_reason = full_reason(&run, stored.is_some(), config_changed, interrupted).await;
    if full_reason.is_none() {
        let cursor = stored
            .as_deref()
            .map(serde_json::from_str::<Cursor>)
            .transpose();
        match cursor {
            Ok(Some(cursor)) => match incremental(&run, report, &cursor).await {
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
    full(&run, report).await
}

/// Logs how long a phase of the run took (`--log-level debug`), for finding where a slow run
/// spends its time; `since` restarts for the next phase.
fn phase(name: &str, since: &mut Instant) {
    tracing::debug!(
        phase = name,
        ms = since.elapsed().as_millis() as u64,
        rss_mib = resident_mib(),
        "run phase"
    );
    *since = Instant::now();
}

/// Resident memory of this process in MiB (Linux; 0 elsewhere), for the phase log.
fn resident_mib() -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map(|pages| pages * 4096 / (1024 * 1024))
        .unwrap_or(0)
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

/// Whether the target advertises the ownership mark (SPEC 4.3): only then is it written.
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
) -> Option<String> {
    let config = run.config;
    if config.ad.ldif_file.is_some() {
        return Some("LDIF source".into());
    }
    if run.options.recovery {
        return Some("--recovery".into());
    }
    if run.options.full {
        return Some("--full".into());
    }
    if !has_cursor {
        return Some("first run".into());
    }
    if config_changed {
        return Some("configuration changed".into());
    }
    if run
        .state
        .meta(META_STATE_FORMAT)
        .await
        .ok()
        .flatten()
        .as_deref()
        != Some(STATE_FORMAT)
    {
        // Image rows keep what the mapping made of the entries; another version may map
        // differently.
        return Some("the state was written by another version".into());
    }
    if run
        .state
        .meta(META_TARGET_CONFLICTS)
        .await
        .ok()
        .flatten()
        .as_deref()
        == Some("1")
    {
        return Some("the last run skipped objects because of the target's state".into());
    }
    if interrupted {
        // Its writes may be missing from the target cache: plan against the live target.
        return Some("the previous run did not finish".into());
    }
    let last_full = run
        .state
        .meta(META_LAST_FULL)
        .await
        .ok()
        .flatten()
        .and_then(|t| DateTime::parse_from_rfc3339(&t).ok())
        .map(|t| t.with_timezone(&Utc));
    let every = chrono::Duration::from_std(config.sync.full_every.0)
        .unwrap_or_else(|_| chrono::Duration::hours(24));
    match last_full {
        Some(t) if run.now - t < every => None,
        _ => Some("sync.full_every elapsed".into()),
    }
}

enum Incremental {
    /// The run is over (successfully or not); this is its plan.
    Done(Option<Plan>),
    /// The cursor cannot be used: reconcile fully, for this reason.
    Reload(String),
}

/// The directory's changes since a cursor, by reader.
enum DirChanges {
    OpenLdap(Box<syncrepl::DirectoryChanges>),
    Ad(ChangeSet),
}

impl DirChanges {
    fn is_empty(&self) -> bool {
        match self {
            DirChanges::OpenLdap(c) => c.is_empty(),
            DirChanges::Ad(c) => c.is_empty(),
        }
    }

    fn reload(&self) -> Option<String> {
        match self {
            DirChanges::OpenLdap(c) => c.full_reload_required().map(str::to_string),
            DirChanges::Ad(c) => c.full_reload_required.clone(),
        }
    }

    fn next(&self) -> Option<&Cursor> {
        match self {
            DirChanges::OpenLdap(c) => c.next.as_ref(),
            DirChanges::Ad(c) => c.next.as_ref(),
        }
    }
}

/// The stable id the image is keyed by: entryUUID (OpenLDAP) or objectGUID text (AD).
fn stable_id(kind: DirectoryKind) -> fn(&Entry) -> Option<String> {
    fn ad(e: &Entry) -> Option<String> {
        e.bytes("objectguid")
            .first()
            .and_then(|g| crate::mapping::values::guid_text(g))
    }
    match kind {
        DirectoryKind::OpenLdap => syncrepl::stable_id,
        DirectoryKind::ActiveDirectory => ad,
    }
}

/// Connects to the configured LDAP server and decides the directory kind (`flavor`).
async fn connect(config: &Config) -> Result<(LdapSource, DirectoryKind), String> {
    let settings = source::ldap_settings(config);
    let mut ldap = LdapSource::connect(&settings)
        .await
        .map_err(|e| e.to_string())?;
    let kind = source::directory_kind(&mut ldap, config.ad.ldap.flavor)
        .await
        .map_err(|e| e.to_string())?;
    Ok((ldap, kind))
}

/// Reads changes since `cursor` (or, without one, everything plus a fresh cursor).
async fn read_changes(config: &Config, cursor: Option<&Cursor>) -> Result<DirRead, String> {
    let (mut ldap, kind) = connect(config).await?;
    let searches = source::ldap_searches(&config.ad.ldap, &config.iid.scim.attribute, kind);
    let description = ldap.server().to_string();
    let changes = match kind {
        DirectoryKind::OpenLdap => syncrepl::read_changes(&ldap, &searches, cursor)
            .await
            .map(|c| DirChanges::OpenLdap(Box::new(c)))
            .map_err(|e| e.to_string()),
        DirectoryKind::ActiveDirectory => {
            ad_changes::read_changes(&mut ldap, &searches, ad_changes::AdMechanism::Auto, cursor)
                .await
                .map(DirChanges::Ad)
                .map_err(|e| e.to_string())
        }
    };
    ldap.close().await;
    Ok(DirRead {
        changes: changes?,
        kind,
        description,
    })
}

/// One read through an incremental reader.
struct DirRead {
    changes: DirChanges,
    kind: DirectoryKind,
    description: String,
}

/// An image row's key: kind and stable id.
type ImageKey = (ObjectKind, String);

/// The image rows a run writes: changed rows (a full run: all) and removed ids.
#[derive(Default)]
struct ImageWrite {
    upserts: Vec<ImageRow>,
    removals: Vec<(ObjectKind, String)>,
}

/// Image rows from entries (moved, not copied), users with what the mapping made of them;
/// `only`: just these rows.
fn image_rows(
    kind: DirectoryKind,
    users: Vec<Entry>,
    groups: Vec<Entry>,
    only: Option<&HashSet<(ObjectKind, String)>>,
    keys: &mut HashMap<String, ImageKeys>,
) -> Vec<ImageRow> {
    let id = stable_id(kind);
    let mut rows = Vec::new();
    for (object_kind, entries) in [(ObjectKind::User, users), (ObjectKind::Group, groups)] {
        for entry in entries {
            let Some(k) = id(&entry) else {
                continue;
            };
            if only.is_some_and(|o| !o.contains(&(object_kind, k.clone()))) {
                continue;
            }
            let keys = match object_kind {
                ObjectKind::User => keys.remove(&k).unwrap_or_default(),
                ObjectKind::Group => ImageKeys::default(),
            };
            rows.push(ImageRow::new(object_kind, k, &entry, keys));
        }
    }
    rows
}

/// The directory image: stable id → entry, users and groups apart.
#[derive(Default)]
struct Image {
    users: BTreeMap<String, Entry>,
    groups: BTreeMap<String, Entry>,
}

impl Image {
    async fn load(state: &StateStore) -> Result<Image, String> {
        Ok(Image {
            users: state
                .image(ObjectKind::User)
                .await
                .map_err(|e| e.to_string())?,
            groups: state
                .image(ObjectKind::Group)
                .await
                .map_err(|e| e.to_string())?,
        })
    }

    fn hashes(&self) -> HashMap<(ObjectKind, String), u64> {
        let users = self
            .users
            .iter()
            .map(|(id, e)| ((ObjectKind::User, id.clone()), entry_hash(e)));
        let groups = self
            .groups
            .iter()
            .map(|(id, e)| ((ObjectKind::Group, id.clone()), entry_hash(e)));
        users.chain(groups).collect()
    }

    /// Brings the image up to date with the changes (AD: links first, on the whole image,
    /// then split again by the group object class).
    fn apply(&mut self, changes: &DirChanges, kind: DirectoryKind, config: &Config) {
        let id = stable_id(kind);
        match changes {
            DirChanges::OpenLdap(c) => {
                source::changes::apply(&mut self.users, &c.users, id);
                source::changes::apply(&mut self.groups, &c.groups, id);
            }
            DirChanges::Ad(c) => {
                let mut all = std::mem::take(&mut self.users);
                all.append(&mut self.groups);
                ad_changes::update_links(&mut all, c, id);
                source::changes::apply(&mut all, c, id);
                let group_class =
                    source::Selection::from_config(&config.ad.ldap, kind).group_object_class;
                for (k, e) in all {
                    if e.has_object_class(&group_class) {
                        self.groups.insert(k, e);
                    } else {
                        self.users.insert(k, e);
                    }
                }
            }
        }
    }

    /// The rows that differ from `before` (hashes of the previous image), and the keys that
    /// are gone: what the state write must change.
    fn changes_since(
        &self,
        before: &HashMap<(ObjectKind, String), u64>,
    ) -> (HashSet<ImageKey>, Vec<ImageKey>) {
        let mut changed = HashSet::new();
        let mut now = HashSet::new();
        for (kind, map) in [
            (ObjectKind::User, &self.users),
            (ObjectKind::Group, &self.groups),
        ] {
            for (id, e) in map {
                let key = (kind, id.clone());
                if before.get(&key) != Some(&entry_hash(e)) {
                    changed.insert(key.clone());
                }
                now.insert(key);
            }
        }
        let removals = before
            .keys()
            .filter(|k| !now.contains(*k))
            .cloned()
            .collect();
        (changed, removals)
    }

    fn into_read(self) -> DirectoryRead {
        DirectoryRead {
            users: self.users.into_values().collect(),
            groups: self.groups.into_values().collect(),
            complete: true,
            notes: Vec::new(),
        }
    }
}

/// The incremental run (see the module doc).
async fn incremental(run: &RunCtx<'_>, report: &mut Report, cursor: &Cursor) -> Incremental {
    report.mode = "incremental".into();
    let mut t = Instant::now();
    let DirRead {
        changes,
        kind,
        description,
    } = match read_changes(run.config, Some(cursor)).await {
        Ok(read) => read,
        // An incomplete read or a reader error: nothing is written, the cursor stays.
        Err(e) => {
            return Incremental::Done(stop(report, format!("directory: {e}"), EXIT_UNREACHABLE));
        }
    };
    phase("read changes", &mut t);
    if let Some(reason) = changes.reload() {
        return Incremental::Reload(reason);
    }
    report.source = description.clone();
    let retry = run.state.meta(META_RETRY).await.ok().flatten().as_deref() == Some("1");
    if changes.is_empty() && !retry {
        // The cheap run: neither the image, the cache nor the target is read. Every object
        // is unchanged (counted, not loaded).
        report.unchanged_users = run.state.image_len(ObjectKind::User).await.unwrap_or(0);
        report.unchanged_groups = run.state.image_len(ObjectKind::Group).await.unwrap_or(0);
        if !run.options.dry_run
            && let Some(next) = changes.next()
            && next != cursor
        {
            let write = IncrementalWrite {
                cursor: serde_json::to_string(next).ok(),
                ..IncrementalWrite::default()
            };
            if let Err(e) = run.state.commit_incremental(&write).await {
                tracing::warn!(error = %e, "could not store the new cursor");
            }
        }
        return Incremental::Done(Some(Plan::default()));
    }
    let marks_groups = marks_groups(run.client).await;
    let whole_reason = if retry {
        // Held-back work concerns objects the changes may not name.
        "the last run left work to retry".to_string()
    } else {
        match changed::prepare(
            run.config,
            run.state,
            &changes,
            kind,
            marks_groups,
            run.now,
            report,
        )
        .await
        {
            changed::Prepared::Ready(input) => {
                phase("prepare the changed users", &mut t);
                report.planned_over = Some("changed users".into());
                return changed_users_run(run, report, &changes, kind, *input).await;
            }
            changed::Prepared::Whole(reason) => reason,
            changed::Prepared::Failed(reason) => return Incremental::Reload(reason),
        }
    };
    report.planned_over = Some(format!("whole image: {whole_reason}"));
    whole_image_run(run, report, &changes, kind, marks_groups).await
}

/// An incremental run that plans the changed users only ([`changed`]).
async fn changed_users_run(
    run: &RunCtx<'_>,
    report: &mut Report,
    changes: &DirChanges,
    kind: DirectoryKind,
    input: changed::ChangedInput,
) -> Incremental {
    let changed::ChangedInput {
        mut desired,
        snapshot,
        image,
        unchanged_users,
        read_users,
        read_groups,
    } = input;
    report.read_users = read_users;
    report.read_groups = read_groups;
    report.read_complete = true;
    let Some(executed) = execute(run, report, kind, &mut desired, snapshot, false).await else {
        return Incremental::Done(None);
    };
    report.unchanged_users += unchanged_users;
    let mut write = IncrementalWrite {
        cursor: changes.next().and_then(|c| serde_json::to_string(c).ok()),
        image_upserts: image.upserts,
        image_removals: image.removals,
        ..IncrementalWrite::default()
    };
    finish_state(run, report, executed, &mut write, None).await
}

/// An incremental run that plans the whole image against the whole target cache.
async fn whole_image_run(
    run: &RunCtx<'_>,
    report: &mut Report,
    changes: &DirChanges,
    kind: DirectoryKind,
    marks_groups: bool,
) -> Incremental {
    let mut image = match Image::load(run.state).await {
        Ok(i) => i,
        Err(e) => return Incremental::Reload(format!("the cached directory image: {e}")),
    };
    let cache = match run.state.target_cache().await {
        Ok(c) => c,
        Err(e) => return Incremental::Reload(format!("the target cache: {e}")),
    };
    let before = image.hashes();
    image.apply(changes, kind, run.config);
    let (changed_ids, removals) = image.changes_since(&before);
    drop(before);
    let read = image.into_read();
    report.read_users = read.users.len();
    report.read_groups = read.groups.len();
    report.read_complete = true;
    let changed_row = |k: ObjectKind, id: &str, _: u64| changed_ids.contains(&(k, id.to_string()));
    let choice = desired::RowChoice {
        write: &changed_row,
        stage: None,
        unchanged: None,
    };
    let desired::MappedRead {
        mut desired, rows, ..
    } = desired::from_read(
        run.config,
        kind,
        read,
        marks_groups,
        run.now,
        report,
        &choice,
    )
    .await;
    let whole_resources = changed::whole_plan_reason(run.config).is_some();
    let snapshot = target::TargetSnapshot::from_cache(cache, whole_resources);
    let Some(executed) = execute(run, report, kind, &mut desired, snapshot, false).await else {
        return Incremental::Done(None);
    };
    let mut write = IncrementalWrite {
        cursor: changes.next().and_then(|c| serde_json::to_string(c).ok()),
        image_upserts: rows,
        image_removals: removals,
        ..IncrementalWrite::default()
    };
    finish_state(run, report, executed, &mut write, None).await
}

/// What planning and applying left for the state write.
struct Executed {
    plan: Plan,
    /// Applied without stopping (not a dry run, not refused).
    applied: bool,
    /// Target objects the plan wrote (to re-read into the cache).
    touched: Vec<(ObjectKind, String)>,
    /// Objects created as sent (their cache rows need no re-read).
    created: Vec<apply::Created>,
    failures: bool,
    /// Objects were skipped because of what the target holds (a pending user in the way, a
    /// name taken, not owned): an operator fixes those on the target, where an incremental
    /// run does not look, so the next run is full.
    target_conflicts: bool,
}

/// A full run's target cache against the state's: which rows differ from the stored ones
/// (found as the target is read, from the stored hashes), which stored rows the target no
/// longer holds, and the rows of re-read objects. The differing rows themselves are staged in
/// the state, not held: the first full reconcile after an initial run rewrites every row.
struct LiveCache {
    /// Rows to write with the commit: re-read objects (and rows that could not be staged).
    changed: HashMap<ImageKey, CachedObject>,
    /// State rows the target no longer holds (known after [`LiveCache::finish`]).
    removed: HashSet<ImageKey>,
    /// While reading: what the target holds, and the state's row hashes.
    present: HashSet<ImageKey>,
    old: HashMap<ImageKey, u64>,
    replace: bool,
}

impl LiveCache {
    fn new(old: HashMap<ImageKey, u64>, replace: bool) -> LiveCache {
        LiveCache {
            changed: HashMap::new(),
            removed: HashSet::new(),
            present: HashSet::new(),
            old,
            replace,
        }
    }

    /// The target holds `row`: whether it differs from the stored one (is to be written).
    fn differs(&mut self, row: &CachedObject) -> bool {
        let key = (row.kind, row.id.clone());
        let differs = self.replace || self.old.get(&key) != Some(&row.content_hash());
        self.present.insert(key);
        differs
    }

    /// The read is over: what the state holds and the target does not is removed.
    fn finish(&mut self) {
        let old = std::mem::take(&mut self.old);
        self.removed = old
            .into_keys()
            .filter(|k| !self.present.contains(k))
            .collect();
        self.present = HashSet::new();
    }

    /// A re-read after the writes: the object as the target holds it now (`None`: gone).
    fn reread(&mut self, key: ImageKey, row: Option<CachedObject>) {
        match row {
            Some(row) => {
                self.removed.remove(&key);
                self.changed.insert(key, row);
            }
            None => {
                self.changed.remove(&key);
                self.removed.insert(key);
            }
        }
    }
}

/// Re-reads what the run wrote into the cache and commits image, cache and cursor together.
async fn finish_state(
    run: &RunCtx<'_>,
    report: &mut Report,
    mut executed: Executed,
    write: &mut IncrementalWrite,
    live: Option<LiveCache>,
) -> Incremental {
    if !executed.applied {
        return Incremental::Done(Some(executed.plan));
    }
    let mut t = Instant::now();
    // Created objects are cached as they were sent (with the id the target gave them): the
    // planner compares only what it sends, and re-reading 100,000 new users one by one would
    // cost more than creating them.
    let sent: Vec<(ObjectKind, String, Option<CachedObject>)> =
        std::mem::take(&mut executed.created)
            .into_iter()
            .filter_map(|c| c.cache_row.map(|row| (c.kind, row.id.clone(), Some(*row))))
            .collect();
    let reread = target::read_objects(
        run.client,
        &executed.touched,
        run.keeps_pending,
        run.config.sync.concurrency.0 as usize,
    )
    .await
    .map(|mut objects| {
        objects.extend(sent);
        objects
    });
    match reread {
        Ok(objects) => match live {
            None => {
                for (kind, id, found) in objects {
                    match found {
                        Some(o) => write.cache_upserts.push(o),
                        None => write.cache_removals.push((kind, id)),
                    }
                }
            }
            Some(mut live) => {
                for (kind, id, found) in objects {
                    live.reread((kind, id), found);
                }
                // Only rows that differ from what the state holds are written.
                write.cache_upserts = live.changed.into_values().collect();
                write.cache_removals = live.removed.into_iter().collect();
            }
        },
        Err(e) => {
            // Without the written objects the cache would be wrong: the next run is full.
            report.notes.push(format!(
                "could not re-read the written objects ({e}): the next run is a full reconcile"
            ));
            *write = IncrementalWrite::default();
        }
    }
    write
        .meta
        .push((META_RETRY, if executed.failures { "1" } else { "0" }.into()));
    write.meta.push((
        META_TARGET_CONFLICTS,
        if executed.target_conflicts { "1" } else { "0" }.into(),
    ));
    write
        .meta
        .push(("config_fingerprint", run.fingerprint.clone()));
    phase("re-read the written objects", &mut t);
    if let Err(e) = run.state.commit_incremental(write).await {
        report
            .warnings
            .push(format!("could not store the incremental state: {e}"));
    }
    phase("state commit", &mut t);
    Incremental::Done(Some(executed.plan))
}

/// The full run: the whole directory (with a fresh cursor where the reader gives one), the
/// live target, and drift: plan operations on objects whose directory entry is as the last
/// run's image has it.
async fn full(run: &RunCtx<'_>, report: &mut Report) -> Option<Plan> {
    let config = run.config;
    let mut t = Instant::now();
    let spinner = progress_spinner("reading the directory");
    let mut next: Option<Cursor> = None;
    let source = if config.ad.ldif_file.is_some() {
        source::read(config).await.map_err(|e| e.to_string())
    } else {
        match read_changes(config, None).await {
            Ok(DirRead {
                changes,
                kind,
                description,
            }) => {
                next = changes.next().cloned();
                let read = match changes {
                    DirChanges::OpenLdap(c) => DirectoryRead {
                        users: c.users.upserts,
                        groups: c.groups.upserts,
                        complete: true,
                        notes: Vec::new(),
                    },
                    DirChanges::Ad(c) => {
                        let group_class = source::Selection::from_config(&config.ad.ldap, kind)
                            .group_object_class;
                        let (groups, users) = c
                            .upserts
                            .into_iter()
                            .partition(|e| e.has_object_class(&group_class));
                        DirectoryRead {
                            users,
                            groups,
                            complete: true,
                            notes: Vec::new(),
                        }
                    }
                };
                Ok(source::SourceRead {
                    read,
                    kind,
                    description,
                })
            }
            // The incremental reader could not take a position (a size limit, a refused
            // control): the plain paged read, with its completeness rules, and no cursor.
            Err(e) => {
                report
                    .notes
                    .push(format!("no incremental position this run: {e}"));
                source::read(config).await.map_err(|e| e.to_string())
            }
        }
    };
    spinner.finish_and_clear();
    let mut source = match source {
        Ok(s) => s,
        Err(e) => return stop(report, format!("directory: {e}"), EXIT_UNREACHABLE),
    };
    report.source = source.description.clone();
    report.read_users = source.read.users.len();
    report.read_groups = source.read.groups.len();
    report.read_complete = source.read.complete;
    report.notes.extend(source.read.notes.iter().cloned());
    phase("read the directory", &mut t);

    // Drift needs the previous image: only its entry hashes are loaded (the entries would
    // double the memory of a full run), enough to tell an unchanged entry.
    let old_hashes = run.state.image_hashes().await.unwrap_or_default();
    let has_previous = !old_hashes.is_empty();
    // Everything is rewritten when the rows may hold what an older mapping made of the
    // entries (configuration or version changed, no previous image); otherwise only rows that
    // differ: a full reconcile that finds nothing new writes almost nothing.
    let replace = run.rewrite_state || !has_previous;
    phase("previous image hashes", &mut t);
    if !source.read.complete || config.ad.ldif_file.is_some() {
        // An incomplete read is no image to build on; LDIF sources have no cursor.
        next = None;
    }
    let keeps_image = next.is_some();
    let write_row = |kind: ObjectKind, id: &str, hash: u64| {
        keeps_image && (replace || old_hashes.get(&(kind, id.to_string())) != Some(&hash))
    };
    let unchanged = |kind: ObjectKind, id: &str, hash: u64| {
        old_hashes.get(&(kind, id.to_string())) == Some(&hash)
    };
    // Rows are staged as they accumulate (until the commit); a dry run stages none.
    let choice = desired::RowChoice {
        write: &write_row,
        stage: (!run.options.dry_run).then_some(run.state),
        unchanged: has_previous.then_some(&unchanged as desired::EntryTest<'_>),
    };
    let marks_groups = marks_groups(run.client).await;
    let read = std::mem::take(&mut source.read);
    let desired::MappedRead {
        mut desired,
        rows,
        present,
    } = desired::from_read(
        config,
        source.kind,
        read,
        marks_groups,
        run.now,
        report,
        &choice,
    )
    .await;
    // What the image loses: known now, so that the hashes go before the plan is made.
    let image_removals: Vec<ImageKey> = if keeps_image && !replace {
        old_hashes
            .keys()
            .filter(|k| !present.contains(*k))
            .cloned()
            .collect()
    } else {
        Vec::new()
    };
    drop(present);
    drop(old_hashes);
    phase("map", &mut t);

    let spinner = progress_spinner("reading the target");
    let live = read_live_target(run, source.kind, &mut desired, replace).await;
    spinner.finish_and_clear();
    let (snapshot, live_cache) = match live {
        Ok(read) => read,
        Err(e) => return stop(report, e.to_string(), EXIT_UNREACHABLE),
    };
    phase("read the target", &mut t);
    let executed = execute(
        run,
        report,
        source.kind,
        &mut desired,
        snapshot,
        has_previous,
    )
    .await?;
    let drift = std::mem::take(&mut report.drift_objects);
    report.drift = drift.len();
    report.drift_objects = drift;
    if report.drift > 0 {
        report.warnings.push(format!(
            "drift: {} object(s) on the target differed from what the directory, unchanged since the last run, wants \
             (missed changes or edits on the target), repaired by this full reconcile: {}",
            report.drift,
            report.drift_objects.join(", ")
        ));
    }
    let mut write = IncrementalWrite {
        replace,
        cursor: next.as_ref().and_then(|c| serde_json::to_string(c).ok()),
        ..IncrementalWrite::default()
    };
    if keeps_image {
        write.image_upserts = rows;
        write.image_removals = image_removals;
    }
    if executed.applied {
        write.meta.push((META_LAST_FULL, run.now.to_rfc3339()));
        write
            .meta
            .push((META_STATE_FORMAT, STATE_FORMAT.to_string()));
    }
    match finish_state(run, report, executed, &mut write, Some(live_cache)).await {
        Incremental::Done(plan) => plan,
        Incremental::Reload(_) => None,
    }
}

/// A full run's read of the target, after the mapping, so that each user is compared with
/// what the directory wants as it arrives (issue #5: 100,000 target users were held in full):
/// - its cache row is staged in the state while the read goes on, if it differs from the
///   stored one (a dry run stages nothing);
/// - a user the plan will not update shares the desired resource's text, and when it is the
///   only target user with that externalId, both then hold an empty resource: the planner
///   compares them the same way, and finds no update either way.
///
/// With a scope filter (evaluated on the target's own attributes) every user keeps its own.
async fn read_live_target(
    run: &RunCtx<'_>,
    kind: DirectoryKind,
    desired: &mut desired::Desired,
    replace: bool,
) -> Result<(target::TargetSnapshot, LiveCache), scim_client::ClientError> {
    let whole_resources = changed::whole_plan_reason(run.config).is_some();
    let mut live_cache =
        LiveCache::new(run.state.cache_hashes().await.unwrap_or_default(), replace);
    let wanted: HashMap<&str, usize> = desired
        .users
        .iter()
        .enumerate()
        .map(|(i, u)| (u.anchor.as_str(), i))
        .collect();
    let managed = mapping::managed_user_attributes(&run.config.iid.scim.attribute.user, kind);
    // Per desired user: how many target users carry its anchor, and whether one needs no update.
    let mut holders = vec![0u8; desired.users.len()];
    let mut same = vec![false; desired.users.len()];
    let (rows_tx, mut rows_rx) = tokio::sync::mpsc::unbounded_channel::<CachedObject>();
    let stage = !run.options.dry_run;
    let stager = async {
        let mut unstaged = Vec::new();
        let mut buf = Vec::with_capacity(STAGE_BATCH);
        while rows_rx.recv_many(&mut buf, STAGE_BATCH).await > 0 {
            if stage && let Err(e) = run.state.stage_cache(&buf).await {
                tracing::warn!(error = %e, "could not stage target cache rows; they are kept for the commit");
                unstaged.append(&mut buf);
            }
            buf.clear();
        }
        unstaged
    };
    let users = &desired.users;
    let reading = async {
        let rows_tx = rows_tx;
        let mut each_user = |read: &serde_json::Value, user: &mut plan::TargetUser| {
            let row = target::cached_user(user);
            if live_cache.differs(&row) {
                let _ = rows_tx.send(row);
            }
            let Some(&i) = user.external_id.as_deref().and_then(|e| wanted.get(e)) else {
                return;
            };
            holders[i] = holders[i].saturating_add(1);
            if whole_resources || user.pending {
                return;
            }
            if plan::same_attributes(read, &users[i].resource.value(), &managed) {
                user.resource = users[i].resource.clone();
                same[i] = true;
            }
        };
        let snapshot = target::read(
            run.client,
            run.keeps_pending,
            whole_resources,
            &mut each_user,
        )
        .await?;
        for group in &snapshot.groups {
            let row = target::cached_group(group);
            if live_cache.differs(&row) {
                let _ = rows_tx.send(row);
            }
        }
        Ok(snapshot)
    };
    let (snapshot, unstaged) = tokio::join!(reading, stager);
    let mut snapshot = snapshot?;
    for row in unstaged {
        live_cache.changed.insert((row.kind, row.id.clone()), row);
    }
    live_cache.finish();
    let only_same = |i: usize| same[i] && holders[i] == 1;
    let empty = JsonText::new(&serde_json::json!({}));
    for user in &mut snapshot.users {
        if let Some(&i) = user.external_id.as_deref().and_then(|e| wanted.get(e))
            && only_same(i)
        {
            user.resource = empty.clone();
        }
    }
    let emptied: Vec<usize> = (0..same.len()).filter(|i| only_same(*i)).collect();
    drop(wanted);
    for i in emptied {
        desired.users[i].resource = empty.clone();
    }
    Ok((snapshot, live_cache))
}

/// Plans and (unless a dry run) applies; fills the report. `drift`, in a full run with a
/// previous image: plan operations on objects whose directory entry the last run saw as it
/// is now (`desired.unchanged_anchors`) go to `report.drift_objects`.
async fn execute(
    run: &RunCtx<'_>,
    report: &mut Report,
    kind: DirectoryKind,
    desired: &mut desired::Desired,
    snapshot: target::TargetSnapshot,
    drift: bool,
) -> Option<Executed> {
    let (config, options, state, now) = (run.config, run.options, run.state, run.now);
    let mut t = Instant::now();
    let records = state
        .object_keys(ObjectKind::User)
        .await
        .unwrap_or_default();
    let group_records = state
        .object_keys(ObjectKind::Group)
        .await
        .unwrap_or_default();
    let input = desired::plan_input(
        config,
        options,
        kind,
        desired,
        snapshot,
        &records,
        &group_records,
        run.keeps_pending,
        now,
    );
    phase("ownership records", &mut t);
    let plan = plan::plan(&input);
    phase("plan", &mut t);
    // Target id → anchor, for apply's state records and drift: only for the objects the plan
    // acts on (a full reconcile that changes nothing needs none of 100,000).
    let acted_on: HashSet<&str> = plan
        .operations
        .iter()
        .filter_map(plan::Operation::target_id)
        .collect();
    let mut anchors: HashMap<String, String> = HashMap::new();
    let target_anchors = input
        .target_users
        .iter()
        .map(|u| (&u.id, &u.external_id))
        .chain(input.target_groups.iter().map(|g| (&g.id, &g.external_id)));
    for (id, ext) in target_anchors {
        if let Some(ext) = ext
            && acted_on.contains(id.as_str())
        {
            anchors.insert(id.clone(), ext.clone());
        }
    }
    for r in records.iter().chain(group_records.iter()) {
        if acted_on.contains(r.target_id.as_str()) {
            anchors.insert(r.target_id.clone(), r.anchor.clone());
        }
    }
    drop(acted_on);
    // The plan holds what it sends; the planner's input goes before the writes (the records
    // to add afterwards are made now).
    let matched = matched_records(&input, &records);
    drop(input);
    drop(records);
    drop(group_records);
    report.skipped = plan.errors.clone();
    report.notes.extend(plan.notes.iter().cloned());
    report.refused = plan.refused.clone();
    report.unchanged_users = plan.unchanged_users;
    report.unchanged_groups = plan.unchanged_groups;
    if drift {
        report.drift_objects = plan_drift(&plan, &anchors, &desired.unchanged_anchors);
    }
    if options.dry_run || plan.refused.is_some() {
        return Some(Executed {
            plan,
            applied: false,
            touched: Vec::new(),
            created: Vec::new(),
            failures: false,
            target_conflicts: false,
        });
    }

    let journal = match Journal::open(&config.state_dir) {
        Ok(j) => Mutex::new(j),
        Err(e) => {
            return stop(
                report,
                format!("cannot open the audit journal: {e}"),
                EXIT_REFUSED,
            )
            .map(|plan| Executed {
                plan,
                applied: false,
                touched: Vec::new(),
                created: Vec::new(),
                failures: false,
                target_conflicts: false,
            });
        }
    };
    let ctx = ApplyContext {
        client: run.client,
        state,
        journal: &journal,
        run_id: run.run_id,
        concurrency: config.sync.concurrency.0 as usize,
        now,
        anchors: &anchors,
        progress: &progress_bar(plan.operations.len() as u64),
        bulk_size: bulk_size(run.spc),
    };
    let outcome = apply::apply(&plan, &ctx).await;
    ctx.progress.finish_and_clear();
    phase("apply", &mut t);
    report.counts = outcome.counts;
    report.failures = outcome.failures;
    let created = outcome.created;
    if let Some(reason) = outcome.stopped {
        // Some writes may be missing from the cache: no state write, so the cursor stays and
        // the next run reads the same changes again.
        report.stopped = Some(reason);
        report.exit_code = EXIT_UNREACHABLE;
        return Some(Executed {
            plan,
            applied: false,
            touched: Vec::new(),
            created: Vec::new(),
            failures: true,
            target_conflicts: false,
        });
    }
    if let Err(e) = state.upsert_objects(&matched).await {
        tracing::warn!(error = %e, "could not update the local state");
    }
    let _ = state.set_meta("config_fingerprint", &run.fingerprint).await;
    let touched = touched(&plan, state, &created).await;
    phase("bookkeeping", &mut t);
    let target_conflicts = plan.errors.iter().any(|e| {
        matches!(
            e.kind,
            plan::ErrorKind::RecreatedUser
                | plan::ErrorKind::NameTaken
                | plan::ErrorKind::NotOwned
                | plan::ErrorKind::OutOfScope
        )
    });
    Some(Executed {
        target_conflicts,
        // Held-back work (failed writes, deletions a safety rule kept back) is planned again
        // next run even when the directory does not change.
        failures: !report.failures.is_empty() || !plan.notes.is_empty(),
        plan,
        applied: true,
        touched,
        created,
    })
}

/// Plan operations on objects whose directory entry did not change since the last run: the
/// target differs from what the last run left, or the incremental path missed a change.
fn plan_drift(
    plan: &Plan,
    anchors: &HashMap<String, String>,
    unchanged: &desired::AnchorSet,
) -> Vec<String> {
    use plan::Operation as Op;
    let mut out = BTreeSet::new();
    let by_id = |id: &str| anchors.get(id).is_some_and(|a| unchanged.contains(a));
    for op in &plan.operations {
        let (hit, name) = match op {
            Op::CreateUser {
                anchor, user_name, ..
            } => (unchanged.contains(anchor), format!("user {user_name}")),
            Op::CreateGroup {
                anchor,
                display_name,
                ..
            } => (unchanged.contains(anchor), format!("group {display_name}")),
            Op::UpdateUser { id, user_name, .. }
            | Op::EnableUser { id, user_name }
            | Op::DisableUser { id, user_name }
            | Op::RestoreUser { id, user_name, .. } => (by_id(id), format!("user {user_name}")),
            Op::UpdateGroup {
                id, display_name, ..
            } => (by_id(id), format!("group {display_name}")),
            Op::AddMembers {
                group: plan::GroupRef::Id(id),
                display_name,
                ..
            }
            | Op::RemoveMembers {
                group: plan::GroupRef::Id(id),
                display_name,
                ..
            } => (by_id(id), format!("group {display_name}")),
            _ => (false, String::new()),
        };
        if hit {
            out.insert(name);
        }
    }
    out.into_iter().collect()
}

/// The target objects a plan wrote (ids; objects created by it through the state records
/// apply wrote), to re-read into the target cache.
async fn touched(
    plan: &Plan,
    state: &StateStore,
    created: &[apply::Created],
) -> Vec<(ObjectKind, String)> {
    use plan::Operation as Op;
    let as_sent: HashSet<(ObjectKind, &str)> = created
        .iter()
        .map(|c| (c.kind, c.anchor.as_str()))
        .collect();
    let mut out: BTreeSet<(ObjectKind, String)> = BTreeSet::new();
    let mut new_users = Vec::new();
    let mut new_groups = Vec::new();
    for op in &plan.operations {
        match op {
            Op::CreateUser { anchor, .. } if as_sent.contains(&(ObjectKind::User, anchor)) => {}
            Op::CreateUser { anchor, .. } => new_users.push(anchor.clone()),
            Op::RestoreUser { id, anchor, .. } => {
                out.insert((ObjectKind::User, id.clone()));
                new_users.push(anchor.clone());
            }
            Op::UpdateUser { id, .. }
            | Op::EnableUser { id, .. }
            | Op::DisableUser { id, .. }
            | Op::DeleteUser { id, .. }
            | Op::AgentPendUser { id, .. }
            | Op::PurgeUser { id, .. } => {
                out.insert((ObjectKind::User, id.clone()));
            }
            Op::CreateGroup { anchor, .. } if as_sent.contains(&(ObjectKind::Group, anchor)) => {}
            Op::CreateGroup { anchor, .. } => new_groups.push(anchor.clone()),
            Op::UpdateGroup { id, .. } | Op::DeleteGroup { id, .. } => {
                out.insert((ObjectKind::Group, id.clone()));
            }
            Op::AddMembers { group, .. } | Op::RemoveMembers { group, .. } => match group {
                plan::GroupRef::Id(id) => {
                    out.insert((ObjectKind::Group, id.clone()));
                }
                plan::GroupRef::New(anchor) if as_sent.contains(&(ObjectKind::Group, anchor)) => {}
                plan::GroupRef::New(anchor) => new_groups.push(anchor.clone()),
            },
            Op::AdoptUser { .. } | Op::AdoptGroup { .. } => {}
        }
    }
    for (kind, anchors) in [
        (ObjectKind::User, new_users),
        (ObjectKind::Group, new_groups),
    ] {
        if anchors.is_empty() {
            continue;
        }
        let wanted: HashSet<String> = anchors.into_iter().collect();
        for r in state.objects(kind).await.unwrap_or_default() {
            if wanted.contains(&r.anchor) {
                out.insert((kind, r.target_id));
            }
        }
    }
    out.into_iter().collect()
}

/// Operations per Bulk request: the target's limit, capped so that one request stays well
/// under its payload limit (a user is well under 2 KiB) and one failure costs little.
fn bulk_size(spc: &scim_client::ServiceProviderInfo) -> Option<usize> {
    if !spc.bulk || spc.bulk_max_operations == 0 {
        return None;
    }
    let mut size = spc.bulk_max_operations.min(200);
    if spc.bulk_max_payload_size > 0 {
        size = size.min((spc.bulk_max_payload_size / 4096).max(1));
    }
    Some(size)
}

/// Progress is for people: shown only when stderr is a terminal, so logs and pipes stay clean.
fn progress_bar(total: u64) -> indicatif::ProgressBar {
    if !std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(total);
    if let Ok(style) = indicatif::ProgressStyle::with_template(
        "{spinner} applying {pos}/{len} [{bar:30}] {per_sec} eta {eta}",
    ) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar
}

fn progress_spinner(message: &'static str) -> indicatif::ProgressBar {
    if !std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        return indicatif::ProgressBar::hidden();
    }
    let spinner = indicatif::ProgressBar::new_spinner().with_message(message);
    spinner.enable_steady_tick(std::time::Duration::from_millis(120));
    spinner
}

fn stop(report: &mut Report, reason: String, code: i32) -> Option<Plan> {
    report.stopped = Some(reason);
    report.exit_code = code;
    None
}

/// The records to add after a successful run, so that the state knows every matched object
/// (and a later run can tell its own objects from others even if their externalId changes).
/// Made before the writes, so that the planner's input can go while they run.
fn matched_records(input: &PlanInput, records: &[ObjectKey]) -> Vec<ObjectRecord> {
    let known: HashSet<&str> = records.iter().map(|r| r.anchor.as_str()).collect();
    let by_ext: HashMap<&str, &plan::TargetUser> = input
        .target_users
        .iter()
        .filter_map(|u| u.external_id.as_deref().map(|e| (e, u)))
        .collect();
    let mut rows = Vec::new();
    for u in &input.users {
        if known.contains(u.anchor.as_str()) {
            continue;
        }
        if let Some(t) = by_ext.get(u.anchor.as_str()) {
            rows.push(ObjectRecord {
                kind: ObjectKind::User,
                anchor: u.anchor.clone(),
                target_id: t.id.clone(),
                dn: Some(u.dn.clone()),
                name: Some(u.user_name.clone()),
                fingerprint: None,
                owned: true,
                pending_since: None,
            });
        }
    }
    rows
}

/// The directory kind names used in reports.
pub fn kind_name(kind: DirectoryKind) -> &'static str {
    match kind {
        DirectoryKind::ActiveDirectory => "Active Directory",
        DirectoryKind::OpenLdap => "OpenLDAP",
    }
}
