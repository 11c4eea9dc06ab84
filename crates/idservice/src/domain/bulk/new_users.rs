//! Bulk's fast path for what an initial sync sends most: runs of `POST /Users` that reference
//! no bulkId. A run is checked with a few queries (the registered-domain rule, userNames and
//! externalIds already taken, immutable ids that linked accounts hold) and the users that pass
//! are inserted with one statement per [`su::INSERT_CHUNK`] rows, in one savepoint, instead of
//! a savepoint and five statements each.
//!
//! The answers are the one-by-one path's: an operation that does not pass a check (or has a
//! password to store, a downstreamId to check, a key an earlier operation of the run uses) runs
//! through it at its place in the request, after the users before it are inserted; if a
//! multi-row insert fails all the same (a UNIQUE index the checks did not foresee), its
//! savepoint is rolled back and its operations run one by one. So the database's UNIQUE indexes,
//! not the checks, keep userNames and externalIds unique; the checks only keep the fast path
//! fast.

use std::collections::hash_map::Entry;
use std::collections::{HashMap, HashSet};

use scim::ScimError;

use super::{Progress, Request, Waiting, run_one, target};
use crate::domain::users::{self, NewUser};
use crate::domain::{db, now, rules};
use crate::store::users as su;
use crate::store::{Tx, admin, apps};

/// Runs shorter than this take the one-by-one path (the checks cost four queries).
const MIN_RUN: usize = 4;

/// Whether `w` is a create of a user with no bulkId reference, which the token may make.
pub(super) fn is_plain_create(w: &Waiting, req: Request<'_>) -> bool {
    w.refs.is_empty()
        && w.op.method == "POST"
        && w.op.data.is_some()
        && matches!(target(&w.op.path, req.scopes), Ok((true, None)))
}

/// What becomes of one operation of the run.
enum Plan {
    /// Inserted with the others.
    Batch(Box<NewUser>),
    /// Through the one-by-one path.
    One,
    /// Refused by validation, with the error the one-by-one path gives.
    Failed(ScimError),
}

/// Runs `run` (plain creates, in request order, see [`is_plain_create`]). Returns `false` when
/// `failOnErrors` stopped the request.
pub(super) async fn run(
    tx: &mut Tx,
    run: Vec<Waiting>,
    progress: &mut Progress,
    req: Request<'_>,
) -> Result<bool, ScimError> {
    if run.len() < MIN_RUN {
        for w in &run {
            if progress.stopped() {
                return Ok(false);
            }
            run_one(tx, w, progress, req).await?;
        }
        return Ok(true);
    }
    let mut plans = prepare(&run, req).await;
    screen(tx, &mut plans).await?;
    let mut pending: Vec<(&Waiting, NewUser)> = Vec::new();
    for (w, plan) in run.iter().zip(plans) {
        // Only a failed operation stops the request, and the users before it are flushed
        // first: when this holds, nothing is pending.
        if progress.stopped() {
            return Ok(false);
        }
        match plan {
            Plan::Batch(u) => pending.push((w, *u)),
            Plan::One | Plan::Failed(_) => {
                if !flush(tx, std::mem::take(&mut pending), progress, req).await? {
                    return Ok(false);
                }
                if progress.stopped() {
                    return Ok(false);
                }
                match plan {
                    Plan::Failed(e) => progress.fail(w.index, &w.op, &e),
                    _ => run_one(tx, w, progress, req).await?,
                }
            }
        }
    }
    flush(tx, pending, progress, req).await
}

/// Validates every operation of the run (as the one-by-one path would, one timestamp for all).
async fn prepare(run: &[Waiting], req: Request<'_>) -> Vec<Plan> {
    let at = now();
    let mut plans = Vec::with_capacity(run.len());
    for w in run {
        let Some(data) = w.op.data.clone() else {
            plans.push(Plan::One);
            continue;
        };
        let plan = match users::prepare(data, req.pre).await {
            Ok(p) => match NewUser::of(p, &at) {
                Ok(Some(u)) => Plan::Batch(Box::new(u)),
                Ok(None) => Plan::One,
                Err(e) => Plan::Failed(e),
            },
            Err(e) => Plan::Failed(e),
        };
        plans.push(plan);
    }
    plans
}

/// Sends to the one-by-one path every batched user that a check would stop or that another
/// path must decide: a userName or externalId already stored (a 409, or a restore of a pending
/// user) or used by an earlier operation of the run, a domain the registered-domain rule does
/// not allow, an immutable id a linked account holds.
async fn screen(tx: &mut Tx, plans: &mut [Plan]) -> Result<(), ScimError> {
    let batch = || {
        plans.iter().filter_map(|p| match p {
            Plan::Batch(u) => Some(u),
            _ => None,
        })
    };
    let names: Vec<&str> = batch().map(|u| u.row.user_name_lc.as_str()).collect();
    let exts: Vec<&str> = batch()
        .filter_map(|u| u.row.external_id.as_deref())
        .collect();
    let immutables: Vec<&str> = batch().map(|u| u.immutable_id()).collect();
    let (taken_names, taken_exts) = su::taken_keys(tx, &names, &exts).await.map_err(db)?;
    let held = apps::held_immutable_ids(tx, &immutables)
        .await
        .map_err(db)?;
    let mut domains: HashMap<String, bool> = HashMap::new();
    for u in batch() {
        let domain = rules::user_name_domain(&u.row.user_name).unwrap_or_default();
        if let Entry::Vacant(slot) = domains.entry(domain) {
            let ok = admin::domain_allowed(tx, slot.key()).await.map_err(db)?;
            slot.insert(ok);
        }
    }
    let (mut seen_names, mut seen_exts) = (HashSet::new(), HashSet::new());
    for plan in plans.iter_mut() {
        let Plan::Batch(u) = plan else { continue };
        let name = u.row.user_name_lc.clone();
        let ext = u.row.external_id.clone();
        let domain = rules::user_name_domain(&u.row.user_name).unwrap_or_default();
        let passes = !taken_names.contains(&name)
            && ext.as_ref().is_none_or(|e| !taken_exts.contains(e))
            && !held.contains(u.immutable_id())
            && domains.get(&domain).copied().unwrap_or(false)
            && !seen_names.contains(&name)
            && ext.as_ref().is_none_or(|e| !seen_exts.contains(e));
        seen_names.insert(name);
        seen_exts.extend(ext);
        if !passes {
            *plan = Plan::One;
        }
    }
    Ok(())
}

/// Inserts `pending` in one savepoint and records their answers; if the insert fails, rolls it
/// back and runs them one by one. Returns `false` when `failOnErrors` stopped the request.
async fn flush(
    tx: &mut Tx,
    pending: Vec<(&Waiting, NewUser)>,
    progress: &mut Progress,
    req: Request<'_>,
) -> Result<bool, ScimError> {
    if pending.is_empty() {
        return Ok(true);
    }
    let rows: Vec<&su::UserRow> = pending.iter().map(|(_, u)| &u.row).collect();
    let mut sp = sqlx::Acquire::begin(&mut **tx).await.map_err(db)?;
    match su::insert_many(&mut sp, &rows).await {
        Ok(()) => {
            sp.commit().await.map_err(db)?;
            for (w, u) in pending {
                let resource = u.render(req.base);
                progress.succeed(w.index, &w.op, &w.op.path, req.base, 201, Some(resource));
            }
            Ok(true)
        }
        Err(e) => {
            sp.rollback().await.map_err(db)?;
            tracing::debug!(error = %e, users = rows.len(), "bulk insert fell back to one by one");
            for (w, _) in pending {
                if progress.stopped() {
                    return Ok(false);
                }
                run_one(tx, w, progress, req).await?;
            }
            Ok(true)
        }
    }
}
