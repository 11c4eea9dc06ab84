//! One sync run (SPEC 4.4): lock → state → target discovery → directory read → mapping →
//! target snapshot → plan → (dry run: stop) → apply → state → report.
//!
//! It wires the other modules together and owns the run-level decisions: which target kind
//! this is, what this instance owns, recovery mode, and the exit code. It makes no
//! per-object decision itself; those are the planner's.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Mutex;
use std::time::Instant;

use chrono::{DateTime, Utc};
use secrecy::SecretString;
use sha2::{Digest, Sha256};

use crate::apply::{self, ApplyContext};
use crate::config::{AuthKind, Config, KeptBy};
use crate::journal::Journal;
use crate::mapping::{self, DirectoryKind, MappedUser, MemberSpec};
use crate::plan::{self, DesiredGroup, Ownership, Plan, PlanInput, Scope, TargetKind, Thresholds};
use crate::report::{EXIT_REFUSED, EXIT_UNREACHABLE, Report};
use crate::source::{self, Entry};
use crate::source_mark;
use crate::state::{ObjectKind, ObjectRecord, RunLock, StateStore};
use crate::target;

/// What the command line asked for.
#[derive(Debug, Clone, Default)]
pub struct SyncOptions {
    pub dry_run: bool,
    pub recovery: bool,
    pub allow_deletions: Option<u64>,
    pub adopt: bool,
}

/// The outcome of a run: the report, and the plan (for `--dry-run` output).
pub struct RunResult {
    pub report: Report,
    pub plan: Option<Plan>,
}

/// The SCIM client for the configured target.
pub fn scim_client(config: &Config) -> Result<scim_client::ScimClient, scim_client::ClientError> {
    let secret_file = config.secret_path.display();
    let auth = match config.iid.scim.auth.kind {
        AuthKind::Bearer => match &config.secrets.scim_token {
            Some(token) => scim_client::Auth::Bearer {
                token: token.clone(),
                credential: format!("iid.scim.token in {secret_file}"),
            },
            None => scim_client::Auth::None,
        },
        AuthKind::Oauth2 => {
            let o = config.iid.scim.auth.oauth2.as_ref();
            scim_client::Auth::OAuth2(scim_client::OAuth2ClientCredentials {
                token_url: o.map(|o| o.token_url.clone()).unwrap_or_default(),
                client_id: o.map(|o| o.client_id.clone()).unwrap_or_default(),
                client_secret: config
                    .secrets
                    .oauth2_client_secret
                    .clone()
                    .unwrap_or_else(|| SecretString::from(String::new())),
                scope: o.and_then(|o| o.scope.clone()),
                credential: format!(
                    "the OAuth2 client credentials (client_secret in {secret_file})"
                ),
            })
        }
    };
    let mut options = scim_client::ClientOptions::new(config.iid.scim.base_url.0.clone(), auth);
    if let Some(timeout) = &config.iid.scim.http.timeout {
        options.timeout = timeout.0;
    }
    if let Some(proxy) = &config.iid.scim.http.proxy
        && proxy.enabled
        && let Some(address) = &proxy.address
    {
        options.proxy = Some(scim_client::ProxyOptions {
            url: format!("http://{address}:{}", proxy.port.unwrap_or(8080)),
            user: proxy.user.clone(),
            password: config.secrets.proxy_password.clone(),
        });
    }
    scim_client::ScimClient::new(options)
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
        mode: if options.recovery {
            "recovery".into()
        } else {
            "normal".into()
        },
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
    // Recorded at the start, so that a killed run leaves a row without `finished_at`.
    if !options.dry_run {
        let _ = state.begin_run(run_id, &report.mode, false).await;
    }
    let result = run_locked(config, options, report, run_id, now, &state).await;
    conclude(report, started);
    if !options.dry_run {
        let json = serde_json::to_value(&*report).unwrap_or_default();
        let _ = state.finish_run(run_id, report.exit_code, &json).await;
    }
    state.close().await;
    result
}

async fn run_locked(
    config: &Config,
    options: &SyncOptions,
    report: &mut Report,
    run_id: &str,
    now: DateTime<Utc>,
    state: &StateStore,
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
    let fingerprint = config_fingerprint(config);
    match state.meta("config_fingerprint").await {
        Ok(Some(old)) if old != fingerprint => report
            .notes
            .push("the configuration changed since the last run: full reconcile".into()),
        _ => {}
    }

    // Target first: a refused token or an unreachable service stops before the directory
    // is read.
    let client = match scim_client(config) {
        Ok(c) => c,
        Err(e) => return stop(report, e.to_string(), EXIT_REFUSED),
    };
    let spc = match client.service_provider_config().await {
        Ok(spc) => spc,
        Err(e) => return stop(report, e.to_string(), EXIT_UNREACHABLE),
    };
    let keeps_pending = match config.sync.pending_deletion.kept_by {
        KeptBy::Target => true,
        KeptBy::Agent => false,
        KeptBy::Auto => spc.keeps_pending_users,
    };

    // The ownership mark goes only to a target that advertises it (SPEC 4.3).
    let marks_groups = client
        .schema_extensions(scim_client::ResourceKind::Groups)
        .await
        .map(|exts| exts.iter().any(|e| e == scim::urn::DIRSYNC_SOURCE))
        .unwrap_or(false);

    let spinner = progress_spinner("reading the directory");
    let source = source::read(config).await;
    spinner.finish_and_clear();
    let source = match source {
        Ok(s) => s,
        Err(e) => return stop(report, format!("directory: {e}"), EXIT_UNREACHABLE),
    };
    report.source = source.description.clone();
    report.read_users = source.read.users.len();
    report.read_groups = source.read.groups.len();
    report.read_complete = source.read.complete;
    report.notes.extend(source.read.notes.iter().cloned());

    let spinner = progress_spinner("reading the target");
    let snapshot = target::read(&client, keeps_pending).await;
    spinner.finish_and_clear();
    let snapshot = match snapshot {
        Ok(s) => s,
        Err(e) => return stop(report, e.to_string(), EXIT_UNREACHABLE),
    };
    let records = state.objects(ObjectKind::User).await.unwrap_or_default();
    let group_records = state.objects(ObjectKind::Group).await.unwrap_or_default();

    let input = plan_input(
        config,
        options,
        &source,
        snapshot,
        &records,
        &group_records,
        keeps_pending,
        marks_groups,
        now,
        report,
    );
    // Target id → anchor, for apply's state records.
    let mut anchors: HashMap<String, String> = HashMap::new();
    for u in &input.target_users {
        if let Some(ext) = &u.external_id {
            anchors.insert(u.id.clone(), ext.clone());
        }
    }
    for g in &input.target_groups {
        if let Some(ext) = &g.external_id {
            anchors.insert(g.id.clone(), ext.clone());
        }
    }
    for r in records.iter().chain(group_records.iter()) {
        anchors.insert(r.target_id.clone(), r.anchor.clone());
    }

    let plan = plan::plan(&input);
    report.skipped = plan.errors.clone();
    report.notes.extend(plan.notes.iter().cloned());
    report.refused = plan.refused.clone();
    report.unchanged_users = plan.unchanged_users;
    report.unchanged_groups = plan.unchanged_groups;
    if options.dry_run || plan.refused.is_some() {
        return Some(plan);
    }

    let journal = match Journal::open(&config.state_dir) {
        Ok(j) => Mutex::new(j),
        Err(e) => {
            return stop(
                report,
                format!("cannot open the audit journal: {e}"),
                EXIT_REFUSED,
            );
        }
    };
    let ctx = ApplyContext {
        client: &client,
        state,
        journal: &journal,
        run_id,
        concurrency: config.sync.concurrency.0 as usize,
        now,
        anchors: &anchors,
        progress: &progress_bar(plan.operations.len() as u64),
        bulk_size: bulk_size(&spc),
    };
    let outcome = apply::apply(&plan, &ctx).await;
    ctx.progress.finish_and_clear();
    report.counts = outcome.counts;
    report.failures = outcome.failures;
    if let Some(reason) = outcome.stopped {
        report.stopped = Some(reason);
        report.exit_code = EXIT_UNREACHABLE;
    } else {
        remember_matched(state, &input, &records).await;
        let _ = state.set_meta("config_fingerprint", &fingerprint).await;
    }
    Some(plan)
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

#[allow(clippy::too_many_arguments)]
fn plan_input(
    config: &Config,
    options: &SyncOptions,
    source: &source::SourceRead,
    snapshot: target::TargetSnapshot,
    records: &[ObjectRecord],
    group_records: &[ObjectRecord],
    keeps_pending: bool,
    marks_groups: bool,
    now: DateTime<Utc>,
    report: &mut Report,
) -> PlanInput {
    let kind = source.kind;
    let mut users: Vec<(&Entry, MappedUser)> = Vec::new();
    let mut unmapped_users = Vec::new();
    for entry in &source.read.users {
        match mapping::map_user(entry, &config.iid.scim.attribute.user, kind, now) {
            Ok(u) => {
                report
                    .warnings
                    .extend(u.warnings.iter().map(|w| format!("{}: {w}", u.dn)));
                users.push((entry, u));
            }
            Err(e) => unmapped_users.push(e),
        }
    }
    let defaults = kind.defaults();
    let group_search = &config.ad.ldap.search.group;
    let member_attribute = group_search
        .member_attribute
        .clone()
        .unwrap_or_else(|| defaults.member_attribute.to_string());
    let mut groups = Vec::new();
    let mut unmapped_groups = Vec::new();
    for entry in &source.read.groups {
        match mapping::map_group(
            entry,
            &config.iid.scim.attribute.group,
            kind,
            &member_attribute,
        ) {
            Ok(mut g) => {
                if marks_groups {
                    source_mark::stamp(&mut g.resource, &config.ad.ldap.base_dn, &g.dn);
                }
                groups.push(g)
            }
            Err(e) => unmapped_groups.push(e),
        }
    }
    let spec = MemberSpec {
        member_user_attribute: group_search
            .member_user_attribute
            .clone()
            .unwrap_or_else(|| defaults.member_user_attribute.to_string()),
        flatten_nested_groups: config.sync.flatten_nested_groups,
    };
    let pairs: Vec<(&Entry, &MappedUser)> = users.iter().map(|(e, u)| (*e, u)).collect();
    let members = mapping::resolve_members(&spec, &pairs, &groups);
    let groups: Vec<DesiredGroup> = groups
        .into_iter()
        .zip(members)
        .map(|(group, member_anchors)| DesiredGroup {
            group,
            member_anchors,
        })
        .collect();
    let users: Vec<MappedUser> = users.into_iter().map(|(_, u)| u).collect();

    // Ownership (SPEC 4.3): what this instance recorded as created or adopted, plus target
    // objects whose externalId is the anchor of a directory object this instance reads —
    // anchors are directory-unique ids, and this is what lets a run after a crash (or after
    // the cache was deleted) converge instead of refusing its own objects.
    let desired_user_anchors: HashSet<&str> = users.iter().map(|u| u.anchor.as_str()).collect();
    let desired_group_anchors: HashSet<&str> =
        groups.iter().map(|g| g.group.anchor.as_str()).collect();
    let mut owned_users: BTreeSet<String> = records
        .iter()
        .filter(|r| r.owned)
        .map(|r| r.target_id.clone())
        .collect();
    let mut owned_groups: BTreeSet<String> = group_records
        .iter()
        .filter(|r| r.owned)
        .map(|r| r.target_id.clone())
        .collect();
    let mut target_users = snapshot.users;
    for u in &target_users {
        if u.external_id
            .as_deref()
            .is_some_and(|e| desired_user_anchors.contains(e))
        {
            owned_users.insert(u.id.clone());
        }
    }
    for g in &snapshot.groups {
        if g.external_id
            .as_deref()
            .is_some_and(|e| desired_group_anchors.contains(e))
        {
            owned_groups.insert(g.id.clone());
        }
    }
    if !keeps_pending {
        // Plain target: the agent's own pending records.
        let pending: HashMap<&str, DateTime<Utc>> = records
            .iter()
            .filter_map(|r| r.pending_since.map(|p| (r.target_id.as_str(), p)))
            .collect();
        for u in &mut target_users {
            if let Some(since) = pending.get(u.id.as_str()) {
                u.pending = true;
                u.pending_since = Some(*since);
            }
        }
    }
    let managed_user_attributes =
        mapping::managed_user_attributes(&config.iid.scim.attribute.user, kind);
    PlanInput {
        now,
        users,
        groups,
        unmapped_users,
        unmapped_groups,
        read_complete: source.read.complete,
        target_users,
        target_groups: snapshot.groups,
        target: TargetKind { keeps_pending },
        scope: Scope::from_config(&config.iid.scim.filter),
        ownership: Ownership {
            users: owned_users,
            groups: owned_groups,
            adopt: options.adopt,
        },
        thresholds: Thresholds::from_config(&config.sync, options.allow_deletions),
        retention: chrono::Duration::from_std(config.sync.pending_deletion.retention.0)
            .unwrap_or_else(|_| chrono::Duration::days(30)),
        member_chunk: config.sync.member_chunk.0 as usize,
        managed_user_attributes,
    }
}

/// After a successful run, the state knows every matched object (so a later run can tell
/// its own objects from others even if their externalId changes).
async fn remember_matched(state: &StateStore, input: &PlanInput, records: &[ObjectRecord]) {
    let known: HashMap<&str, &ObjectRecord> =
        records.iter().map(|r| (r.anchor.as_str(), r)).collect();
    let by_ext: HashMap<&str, &plan::TargetUser> = input
        .target_users
        .iter()
        .filter_map(|u| u.external_id.as_deref().map(|e| (e, u)))
        .collect();
    let mut rows = Vec::new();
    for u in &input.users {
        if known.contains_key(u.anchor.as_str()) {
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
    if let Err(e) = state.upsert_objects(&rows).await {
        tracing::warn!(error = %e, "could not update the local state");
    }
}

/// The directory kind names used in reports.
pub fn kind_name(kind: DirectoryKind) -> &'static str {
    match kind {
        DirectoryKind::ActiveDirectory => "Active Directory",
        DirectoryKind::OpenLdap => "OpenLDAP",
    }
}
