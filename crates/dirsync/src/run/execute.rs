//! Planning and applying, for either kind of run: the plan, a dry run's stop, apply with its
//! Bulk size, and the records the state gains.

use super::*;

/// What planning and applying left for the state write.
pub(super) struct Executed {
    pub(super) plan: Plan,
    /// Applied without stopping (not a dry run, not refused).
    pub(super) applied: bool,
    /// Target objects the plan wrote (to re-read into the cache).
    pub(super) touched: Vec<(ObjectKind, String)>,
    /// Objects created as sent (their cache rows need no re-read).
    pub(super) created: Vec<apply::Created>,
    pub(super) failures: bool,
    /// Objects were skipped because of what the target holds (a pending user in the way, a
    /// name taken, not owned): an operator fixes those on the target, where an incremental
    /// run does not look, so the next run is full.
    pub(super) target_conflicts: bool,
    /// `dirsync apply` left operations out (objects the saved plan does not touch): they
    /// are still to do, and the image now shows their objects as read, so the next run is
    /// full.
    pub(super) left_out: bool,
}

/// What this instance owns (its records of users and groups, see [`ownership_records`]).
pub(super) struct Ownership {
    pub(super) users: Vec<ObjectKey>,
    pub(super) groups: Vec<ObjectKey>,
}

/// Plans and (unless a dry run) applies; fills the report. `drift`, in a full run with a
/// previous image: plan operations on objects whose directory entry the last run saw as it
/// is now (`desired.unchanged_anchors`) go to `report.drift_objects`.
pub(super) async fn execute(
    run: &RunCtx<'_>,
    report: &mut Report,
    kind: DirectoryKind,
    desired: &mut desired::Desired,
    (snapshot, ownership): (target::TargetSnapshot, Ownership),
    drift: bool,
) -> Option<Executed> {
    let mut t = Instant::now();
    let Ownership {
        users: records,
        groups: group_records,
    } = ownership;
    let settings = desired::PlanSettings {
        config: run.config,
        options: run.options,
        kind,
        keeps_pending: run.keeps_pending,
        now: run.now,
    };
    let input = desired::plan_input(&settings, desired, snapshot, &records, &group_records);
    phase("planner input", &mut t);
    let (plan, left_out) = restrict_to_saved(run, report, plan::plan(&input));
    phase("plan", &mut t);
    let anchors = acted_on_anchors(&plan, &input, &records, &group_records);
    // The plan holds what it sends; the planner's input goes before the writes (the records
    // to add afterwards are made now).
    let matched = matched_records(&input, &records);
    drop(input);
    drop(records);
    drop(group_records);
    report_plan(report, &plan);
    if drift {
        report.drift_objects = plan_drift(&plan, &anchors, &desired.unchanged_anchors);
    }
    if run.options.dry_run || plan.refused.is_some() {
        return Some(unapplied(plan, false));
    }
    let mut executed = apply_and_record(run, report, plan, &anchors, &matched, &mut t).await?;
    executed.left_out = left_out;
    Some(executed)
}

/// `dirsync apply`: the fresh plan restricted to the saved plan's objects (and whether
/// operations were left out), or refused (no operations) naming the objects whose operations
/// are no longer the saved ones.
fn restrict_to_saved(run: &RunCtx<'_>, report: &mut Report, fresh: Plan) -> (Plan, bool) {
    let Some(saved) = &run.options.saved_plan else {
        return (fresh, false);
    };
    if fresh.refused.is_some() {
        return (fresh, false);
    }
    match saved.restrict(fresh) {
        Ok((plan, left_out)) => {
            if left_out > 0 {
                report.notes.push(format!(
                    "{left_out} operation(s) on objects the saved plan {} does not touch were \
                     left for the next run (a full one)",
                    saved.id
                ));
            }
            (plan, left_out > 0)
        }
        Err(changed) => (
            Plan {
                refused: Some(format!(
                    "the directory or the target changed under the saved plan {}: {} object(s) would \
                 now be written differently: {}; nothing was written. Make a new plan.",
                    saved.id,
                    changed.len(),
                    changed.join(", ")
                )),
                ..Plan::default()
            },
            false,
        ),
    }
}

/// What this instance owns, users and groups: it decides deletions, so when unreadable
/// nothing is planned on a guess. `None`: the run stopped (exit 5).
pub(super) async fn ownership_records(
    state: &StateStore,
    report: &mut Report,
) -> Option<Ownership> {
    match load_ownership(state).await {
        Ok(ownership) => Some(ownership),
        Err((what, e)) => {
            state_unreadable(report, what, e);
            None
        }
    }
}

/// [`ownership_records`], the failure named.
pub(super) async fn load_ownership(
    state: &StateStore,
) -> Result<Ownership, (&'static str, crate::state::StateError)> {
    let users = state
        .object_keys(ObjectKind::User)
        .await
        .map_err(|e| ("the user ownership records", e))?;
    let groups = state
        .object_keys(ObjectKind::Group)
        .await
        .map_err(|e| ("the group ownership records", e))?;
    Ok(Ownership { users, groups })
}

/// The plan's account in the report: skipped objects, notes, a refusal, unchanged counts.
fn report_plan(report: &mut Report, plan: &Plan) {
    report.skipped = plan.errors.clone();
    report.notes.extend(plan.notes.iter().cloned());
    report.refused = plan.refused.clone();
    report.unchanged_users = plan.unchanged_users;
    report.unchanged_groups = plan.unchanged_groups;
}

/// Applies the plan, then (unless apply stopped) stores the records of what it wrote.
async fn apply_and_record(
    run: &RunCtx<'_>,
    report: &mut Report,
    plan: Plan,
    anchors: &HashMap<String, String>,
    matched: &[ObjectRecord],
    t: &mut Instant,
) -> Option<Executed> {
    let outcome = apply_plan(run, report, &plan, anchors).await?;
    phase("apply", t);
    report.counts = outcome.counts;
    report.failures = outcome.failures;
    let created = outcome.created;
    if let Some(reason) = outcome.stopped {
        // Some writes may be missing from the cache: no state write, so the cursor stays and
        // the next run reads the same changes again.
        report.stopped = Some(reason);
        report.outcome = Outcome::Unreachable;
        return Some(unapplied(plan, true));
    }
    let touched = record_applied(run, report, &plan, matched, &created).await?;
    phase("bookkeeping", t);
    Some(Executed {
        target_conflicts: target_conflicts(&plan),
        left_out: false,
        // Held-back work (failed writes, deletions a safety rule kept back) is planned again
        // next run even when the directory does not change.
        failures: !report.failures.is_empty() || !plan.notes.is_empty(),
        plan,
        applied: true,
        touched,
        created,
    })
}

/// Apply with the audit journal, a progress bar and the target's Bulk size. `None`: the
/// journal could not be opened (the run stops, exit 2).
async fn apply_plan(
    run: &RunCtx<'_>,
    report: &mut Report,
    plan: &Plan,
    anchors: &HashMap<String, String>,
) -> Option<apply::ApplyOutcome> {
    let journal = match Journal::open(&run.config.state_dir) {
        Ok(j) => Mutex::new(j),
        Err(e) => {
            let reason = format!("cannot open the audit journal: {e}");
            stop(report, reason, Outcome::Refused);
            return None;
        }
    };
    let ctx = ApplyContext {
        client: run.client,
        state: run.state,
        journal: &journal,
        run_id: run.run_id,
        concurrency: run.config.sync.concurrency.0 as usize,
        now: run.now,
        anchors,
        progress: &progress_bar(plan.operations.len() as u64),
        bulk_size: bulk_size(run.spc),
    };
    let outcome = apply::apply(plan, &ctx).await;
    ctx.progress.finish_and_clear();
    Some(outcome)
}

/// Target id → anchor, for apply's state records and drift: only for the objects the plan
/// acts on (a full reconcile that changes nothing needs none of 100,000).
fn acted_on_anchors(
    plan: &Plan,
    input: &PlanInput,
    records: &[ObjectKey],
    group_records: &[ObjectKey],
) -> HashMap<String, String> {
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
    anchors
}

/// After apply: the ownership records and fingerprint stored, and the target objects the plan
/// wrote. The writes are made; without their records the next run would not know what it
/// owns, so a failure stops the run (exit 5) and no state commit follows: the cursor stays
/// and the next run reads the same changes.
async fn record_applied(
    run: &RunCtx<'_>,
    report: &mut Report,
    plan: &Plan,
    matched: &[ObjectRecord],
    created: &[apply::Created],
) -> Option<Vec<(ObjectKind, String)>> {
    let state = run.state;
    if let Err(e) = state.upsert_objects(matched).await {
        state_unreadable(report, "writing the ownership records", e);
        return None;
    }
    if let Err(e) = state.set_meta("config_fingerprint", &run.fingerprint).await {
        state_unreadable(report, "writing the configuration fingerprint", e);
        return None;
    }
    match touched(plan, state, created).await {
        Ok(t) => Some(t),
        Err(e) => {
            state_unreadable(report, "the ownership records", e);
            None
        }
    }
}

/// Whether objects were skipped because of what the target holds (see [`Executed`]).
fn target_conflicts(plan: &Plan) -> bool {
    plan.errors.iter().any(|e| {
        matches!(
            e.kind,
            plan::ErrorKind::RecreatedUser
                | plan::ErrorKind::NameTaken
                | plan::ErrorKind::NotOwned
                | plan::ErrorKind::OutOfScope
        )
    })
}

/// Operations per Bulk request: the target's limit, capped so that one request stays well
/// under its payload limit (a user is well under 2 KiB) and one failure costs little.
pub(super) fn bulk_size(spc: &scim_client::ServiceProviderInfo) -> Option<usize> {
    if !spc.bulk || spc.bulk_max_operations == 0 {
        return None;
    }
    let mut size = spc.bulk_max_operations.min(200);
    if spc.bulk_max_payload_size > 0 {
        size = size.min((spc.bulk_max_payload_size / 4096).max(1));
    }
    Some(size)
}

/// The records to add after a successful run, so that the state knows every matched object
/// (and a later run can tell its own objects from others even if their externalId changes).
/// Made before the writes, so that the planner's input can go while they run.
pub(super) fn matched_records(input: &PlanInput, records: &[ObjectKey]) -> Vec<ObjectRecord> {
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

/// A plan that was not applied (a dry run, a refusal, or apply stopped: `failures`).
fn unapplied(plan: Plan, failures: bool) -> Executed {
    Executed {
        plan,
        applied: false,
        touched: Vec::new(),
        created: Vec::new(),
        failures,
        target_conflicts: false,
        left_out: false,
    }
}
