//! The incremental run: the directory's changes applied to the image, planned over the changed
//! users or the whole image against the cached target state.

use super::*;

pub(super) enum Incremental {
    /// The run is over (successfully or not); this is its plan.
    Done(Option<Plan>),
    /// The cursor cannot be used: reconcile fully, for this reason.
    Reload(String),
}

/// The incremental run (see the module doc).
pub(super) async fn incremental(
    run: &RunCtx<'_>,
    report: &mut Report,
    cursor: &Cursor,
) -> Incremental {
    report.mode = "incremental".into();
    let mut t = Instant::now();
    let Some(DirRead {
        mut changes,
        kind,
        description,
        ..
    }) = read_since(run, report, cursor).await
    else {
        return Incremental::Done(None);
    };
    phase("read changes", &mut t);
    if let Some(reason) = changes.reload() {
        return Incremental::Reload(reason);
    }
    report.source = description.clone();
    let retry = match run.state.meta(META_RETRY).await {
        Ok(r) => r.as_deref() == Some("1"),
        Err(e) => return unreadable(report, "the run metadata", e),
    };
    if changes.is_empty() && !retry {
        return nothing_changed(run, report, &changes, cursor).await;
    }
    let groups = match run.state.image(ObjectKind::Group).await {
        Ok(groups) => groups,
        Err(e) => return unreadable(report, "the directory image", e),
    };
    if let DirChanges::OpenLdap(c) = &mut changes {
        if !refresh_links(run, report, kind, c, &groups).await {
            return Incremental::Done(None);
        }
        phase("read again the groups that list a changed entry", &mut t);
    }
    let marks_groups = marks_groups(run.client).await;
    let whole_reason = if retry {
        // Held-back work concerns objects the changes may not name.
        "the last run left work to retry".to_string()
    } else {
        let read = changed::ChangedRead {
            changes: &changes,
            groups,
            kind,
            marks_groups,
        };
        match changed::prepare(run.config, run.state, read, run.now, report).await {
            changed::Prepared::Ready(input) => {
                phase("prepare the changed users", &mut t);
                report.planned_over = Some("changed users".into());
                return changed_users_run(run, report, &changes, kind, *input).await;
            }
            changed::Prepared::Whole(reason) => reason,
            changed::Prepared::Failed(what, e) => return unreadable(report, what, e),
        }
    };
    report.planned_over = Some(format!("whole image: {whole_reason}"));
    whole_image_run(run, report, &changes, kind, marks_groups).await
}

/// The directory's changes since `cursor`. `None`: an incomplete read or a reader error, the
/// run stopped (the report says why); nothing is written, the cursor stays.
async fn read_since(run: &RunCtx<'_>, report: &mut Report, cursor: &Cursor) -> Option<DirRead> {
    match read_changes(run.config, Some(cursor), report).await {
        Ok(read) => Some(read),
        Err(e) => {
            stop(report, format!("directory: {e}"), Outcome::Unreachable);
            None
        }
    }
}

/// The cheap run: neither the image, the cache nor the target is read. Every object is
/// unchanged (counted, not loaded); a new cursor is stored (unless a dry run).
async fn nothing_changed(
    run: &RunCtx<'_>,
    report: &mut Report,
    changes: &DirChanges,
    cursor: &Cursor,
) -> Incremental {
    let counts = (
        run.state.image_len(ObjectKind::User).await,
        run.state.image_len(ObjectKind::Group).await,
    );
    (report.unchanged_users, report.unchanged_groups) = match counts {
        (Ok(users), Ok(groups)) => (users, groups),
        (Err(e), _) | (_, Err(e)) => return unreadable(report, "the directory image", e),
    };
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
    Incremental::Done(Some(Plan::default()))
}

/// Reads again the groups that list a changed entry (OpenLDAP). `false`: the run stopped
/// (the report says why).
async fn refresh_links(
    run: &RunCtx<'_>,
    report: &mut Report,
    kind: DirectoryKind,
    changes: &mut syncrepl::DirectoryChanges,
    groups: &BTreeMap<String, Entry>,
) -> bool {
    match links::refresh(run.config, run.state, kind, changes, groups).await {
        Ok(0) => {}
        Ok(n) => tracing::debug!(groups = n, "read again groups that list a changed entry"),
        Err(links::LinkError::State(e)) => {
            state_unreadable(report, "the directory image", e);
            return false;
        }
        Err(e @ links::LinkError::Directory(_)) => {
            let reason = format!("directory: {e}");
            stop(report, reason, Outcome::Unreachable);
            return false;
        }
    }
    true
}

/// An incremental run that plans the changed users only ([`changed`]).
pub(super) async fn changed_users_run(
    run: &RunCtx<'_>,
    report: &mut Report,
    changes: &DirChanges,
    kind: DirectoryKind,
    input: changed::ChangedInput,
) -> Incremental {
    let changed::ChangedInput {
        mut desired,
        snapshot,
        ownership,
        image,
        unchanged_users,
        read_users,
        read_groups,
    } = input;
    report.read_users = read_users;
    report.read_groups = read_groups;
    report.read_complete = true;
    let target = (snapshot, ownership);
    let Some(executed) = execute(run, report, kind, &mut desired, target, false).await else {
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
pub(super) async fn whole_image_run(
    run: &RunCtx<'_>,
    report: &mut Report,
    changes: &DirChanges,
    kind: DirectoryKind,
    marks_groups: bool,
) -> Incremental {
    let mut image = match Image::load(run.state).await {
        Ok(i) => i,
        Err(e) => return unreadable(report, "the directory image", e),
    };
    let cache = match run.state.target_cache().await {
        Ok(c) => c,
        Err(e) => return unreadable(report, "the target cache", e),
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
    let Some(ownership) = ownership_records(run.state, report).await else {
        return Incremental::Done(None);
    };
    let target = (snapshot, ownership);
    let Some(executed) = execute(run, report, kind, &mut desired, target, false).await else {
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

/// The run stops with exit 5: the local state could not be read.
fn unreadable(report: &mut Report, what: &str, e: impl std::fmt::Display) -> Incremental {
    Incremental::Done(state_unreadable(report, what, e))
}
