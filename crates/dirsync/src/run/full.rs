//! The full run: the whole directory, mapped entry by entry, against the live target.

use super::*;

/// The full run: the whole directory (with a fresh cursor where the reader gives one), the
/// live target, and drift: plan operations on objects whose directory entry is as the last
/// run's image has it.
pub(super) async fn full(run: &RunCtx<'_>, report: &mut Report) -> Option<Plan> {
    let config = run.config;
    let mut t = Instant::now();
    let spinner = progress_spinner("reading the directory");
    let mut next: Option<Cursor> = None;
    let source = if config.ad.ldif_file.is_some() {
        source::read(config).await.map_err(DirectoryError::from)
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
                source::read(config).await.map_err(DirectoryError::from)
            }
        }
    };
    spinner.finish_and_clear();
    let mut source = match source {
        Ok(s) => s,
        Err(e) => return stop(report, format!("directory: {e}"), Outcome::Unreachable),
    };
    report.source = source.description.clone();
    report.read_users = source.read.users.len();
    report.read_groups = source.read.groups.len();
    report.read_complete = source.read.complete;
    report.notes.extend(source.read.notes.iter().cloned());
    phase("read the directory", &mut t);

    // Drift needs the previous image: only its entry hashes are loaded (the entries would
    // double the memory of a full run), enough to tell an unchanged entry.
    let old_hashes = match run.state.image_hashes().await {
        Ok(h) => h,
        Err(e) => return state_unreadable(report, "the directory image", e),
    };
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

    let cached_hashes = match run.state.cache_hashes().await {
        Ok(h) => h,
        Err(e) => return state_unreadable(report, "the target cache", e),
    };
    let spinner = progress_spinner("reading the target");
    let live = read_live_target(run, source.kind, &mut desired, cached_hashes, replace).await;
    spinner.finish_and_clear();
    let (snapshot, live_cache) = match live {
        Ok(read) => read,
        Err(e) => return stop(report, e.to_string(), Outcome::Unreachable),
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
pub(super) async fn read_live_target(
    run: &RunCtx<'_>,
    kind: DirectoryKind,
    desired: &mut desired::Desired,
    cached_hashes: HashMap<ImageKey, u64>,
    replace: bool,
) -> Result<(target::TargetSnapshot, LiveCache), scim_client::ClientError> {
    let whole_resources = changed::whole_plan_reason(run.config).is_some();
    let mut live_cache = LiveCache::new(cached_hashes, replace);
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
