//! The target cache: which rows a full run's live read changes, what a run's writes re-read,
//! and the one transaction that commits image, cache and cursor.

use super::*;

/// A full run's target cache against the state's: which rows differ from the stored ones
/// (found as the target is read, from the stored hashes), which stored rows the target no
/// longer holds, and the rows of re-read objects. The differing rows themselves are staged in
/// the state, not held: the first full reconcile after an initial run rewrites every row.
pub(super) struct LiveCache {
    /// Rows to write with the commit: re-read objects (and rows that could not be staged).
    pub(super) changed: HashMap<ImageKey, CachedObject>,
    /// State rows the target no longer holds (known after [`LiveCache::finish`]).
    pub(super) removed: HashSet<ImageKey>,
    /// While reading: what the target holds, and the state's row hashes.
    pub(super) present: HashSet<ImageKey>,
    pub(super) old: HashMap<ImageKey, u64>,
    pub(super) replace: bool,
}

impl LiveCache {
    pub(super) fn new(old: HashMap<ImageKey, u64>, replace: bool) -> LiveCache {
        LiveCache {
            changed: HashMap::new(),
            removed: HashSet::new(),
            present: HashSet::new(),
            old,
            replace,
        }
    }

    /// The target holds `row`: whether it differs from the stored one (is to be written).
    pub(super) fn differs(&mut self, row: &CachedObject) -> bool {
        let key = (row.kind, row.id.clone());
        let differs = self.replace || self.old.get(&key) != Some(&row.content_hash());
        self.present.insert(key);
        differs
    }

    /// The read is over: what the state holds and the target does not is removed.
    pub(super) fn finish(&mut self) {
        let old = std::mem::take(&mut self.old);
        self.removed = old
            .into_keys()
            .filter(|k| !self.present.contains(k))
            .collect();
        self.present = HashSet::new();
    }

    /// A re-read after the writes: the object as the target holds it now (`None`: gone).
    pub(super) fn reread(&mut self, key: ImageKey, row: Option<CachedObject>) {
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
pub(super) async fn finish_state(
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
    write.meta.push((
        META_PLAN_LEFT_OUT,
        if executed.left_out { "1" } else { "0" }.into(),
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

/// The target objects a plan wrote (ids; objects created by it through the state records
/// apply wrote), to re-read into the target cache.
pub(super) async fn touched(
    plan: &Plan,
    state: &StateStore,
    created: &[apply::Created],
) -> Result<Vec<(ObjectKind, String)>, crate::state::StateError> {
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
        for r in state.objects(kind).await? {
            if wanted.contains(&r.anchor) {
                out.insert((kind, r.target_id));
            }
        }
    }
    Ok(out.into_iter().collect())
}
