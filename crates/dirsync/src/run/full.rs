//! The full run: the whole directory, mapped entry by entry, against the live target.

use super::*;
use crate::source::reconnect::Transient as _;

/// The full run: the whole directory (with a fresh cursor where the reader gives one), the
/// live target, and drift: plan operations on objects whose directory entry is as the last
/// run's image has it.
pub(super) async fn full(run: &RunCtx<'_>, report: &mut Report) -> Option<Plan> {
    let config = run.config;
    let mut t = Instant::now();
    let spinner = progress_spinner("reading the directory");
    let (source, mut next) = read_directory(config, report).await;
    spinner.finish_and_clear();
    let mut source = match source {
        Ok(s) => s,
        Err(e) => return stop(report, format!("directory: {e}"), Outcome::Unreachable),
    };
    record_read(report, &source);
    phase("read the directory", &mut t);

    let previous = match PreviousImage::load(run).await {
        Ok(p) => p,
        Err(e) => return state_unreadable(report, "the directory image", e),
    };
    phase("previous image hashes", &mut t);
    if !source.read.complete || config.ad.ldif_file.is_some() {
        // An incomplete read is no image to build on; LDIF sources have no cursor.
        next = None;
    }
    let image = previous.image_choice(next.is_some());
    let read = std::mem::take(&mut source.read);
    let MappedDirectory {
        mut desired,
        rows,
        image_removals,
    } = map_directory(run, report, source.kind, read, previous, image).await;
    phase("map", &mut t);

    let (snapshot, live_cache) =
        read_target(run, report, source.kind, &mut desired, image.replace).await?;
    phase("read the target", &mut t);
    let ownership = ownership_records(run.state, report).await?;
    phase("ownership records", &mut t);
    if let Some(reason) = implausible_target(&snapshot, &ownership) {
        return stop(report, reason, Outcome::SafetyStop);
    }
    let executed = execute(
        run,
        report,
        source.kind,
        &mut desired,
        (snapshot, ownership),
        image.has_previous,
    )
    .await?;
    report_drift(report);
    let mut write = state_write(run, &executed, next.as_ref(), image, rows, image_removals);
    match finish_state(run, report, executed, &mut write, Some(live_cache)).await {
        Incremental::Done(plan) => plan,
        Incremental::Reload(_) => None,
    }
}

/// The whole directory, and a fresh cursor when the incremental reader could take one (an
/// LDIF file, or a reader that cannot take a position, reads the plain paged way).
async fn read_directory(
    config: &Config,
    report: &mut Report,
) -> (Result<source::SourceRead, DirectoryError>, Option<Cursor>) {
    if config.ad.ldif_file.is_some() {
        return (read_whole(config, report).await, None);
    }
    match read_changes(config, None, report).await {
        Ok(DirRead {
            changes,
            kind,
            description,
            bind,
        }) => {
            let next = changes.next().cloned();
            let read = whole_read(config, kind, changes);
            let source = source::SourceRead {
                read,
                kind,
                description,
                bind,
            };
            (Ok(source), next)
        }
        // The directory stayed unreachable past `sync.unreachable_after`: the run stops.
        Err(e) if e.is_transient() => (Err(e), None),
        // The incremental reader could not take a position (a size limit, a refused
        // control): the plain paged read, with its completeness rules, and no cursor.
        Err(e) => {
            report
                .notes
                .push(format!("no incremental position this run: {e}"));
            (read_whole(config, report).await, None)
        }
    }
}

/// A change set read from no cursor (every entry an upsert) as a complete directory read.
fn whole_read(config: &Config, kind: DirectoryKind, changes: DirChanges) -> DirectoryRead {
    match changes {
        DirChanges::OpenLdap(c) => DirectoryRead {
            users: c.users.upserts,
            groups: c.groups.upserts,
            complete: true,
            notes: Vec::new(),
        },
        DirChanges::Ad(c) => {
            let group_class =
                source::Selection::from_config(&config.ad.ldap, kind).group_object_class;
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
    }
}

/// The report's account of the directory read: source, counts, completeness and notes.
fn record_read(report: &mut Report, source: &source::SourceRead) {
    report.source = source.description.clone();
    report.read_users = source.read.users.len();
    report.read_groups = source.read.groups.len();
    report.read_complete = source.read.complete;
    report.notes.extend(source.read.notes.iter().cloned());
}

/// The previous image as a full run needs it: only its entry hashes (the entries would double
/// the memory of a full run), enough to tell an unchanged entry (drift).
struct PreviousImage {
    hashes: HashMap<ImageKey, u64>,
    /// Whether the state held rows: drift needs them.
    has_previous: bool,
    /// Everything is rewritten when the rows may hold what an older mapping made of the
    /// entries (configuration or version changed, no previous image); otherwise only rows
    /// that differ: a full reconcile that finds nothing new writes almost nothing.
    replace: bool,
}

/// How a full run writes the image: whether there was one, whether every row is rewritten,
/// and whether the run keeps an image at all (only with a cursor to build on).
#[derive(Clone, Copy)]
struct ImageChoice {
    has_previous: bool,
    replace: bool,
    keeps_image: bool,
}

impl PreviousImage {
    /// The previous image's entry hashes, from the state.
    async fn load(run: &RunCtx<'_>) -> Result<PreviousImage, crate::state::StateError> {
        let hashes = run.state.image_hashes().await?;
        let has_previous = !hashes.is_empty();
        Ok(PreviousImage {
            hashes,
            has_previous,
            replace: run.rewrite_state || !has_previous,
        })
    }

    /// The image choice of this run; `keeps_image` when it has a cursor to store.
    fn image_choice(&self, keeps_image: bool) -> ImageChoice {
        ImageChoice {
            has_previous: self.has_previous,
            replace: self.replace,
            keeps_image,
        }
    }
}

/// The directory mapped: the desired state, the image rows not staged, and the image keys
/// this run's read no longer holds.
struct MappedDirectory {
    desired: desired::Desired,
    rows: Vec<ImageRow>,
    image_removals: Vec<ImageKey>,
}

/// Maps the whole read, staging the image rows that change as they accumulate (a dry run
/// stages none); what the image loses is known now, so that the hashes go before the plan.
async fn map_directory(
    run: &RunCtx<'_>,
    report: &mut Report,
    kind: DirectoryKind,
    read: DirectoryRead,
    previous: PreviousImage,
    image: ImageChoice,
) -> MappedDirectory {
    let old_hashes = previous.hashes;
    let write_row = |kind: ObjectKind, id: &str, hash: u64| {
        image.keeps_image
            && (image.replace || old_hashes.get(&(kind, id.to_string())) != Some(&hash))
    };
    let unchanged = |kind: ObjectKind, id: &str, hash: u64| {
        old_hashes.get(&(kind, id.to_string())) == Some(&hash)
    };
    // Rows are staged as they accumulate (until the commit); a dry run stages none.
    let choice = desired::RowChoice {
        write: &write_row,
        stage: (!run.options.dry_run).then_some(run.state),
        unchanged: image
            .has_previous
            .then_some(&unchanged as desired::EntryTest<'_>),
    };
    let marks_groups = marks_groups(run.client).await;
    let desired::MappedRead {
        desired,
        rows,
        present,
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
    let image_removals: Vec<ImageKey> = if image.keeps_image && !image.replace {
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
    MappedDirectory {
        desired,
        rows,
        image_removals,
    }
}

/// The live target read against the desired state, with the stored cache hashes.
/// `None`: the run stopped (the report says why).
async fn read_target(
    run: &RunCtx<'_>,
    report: &mut Report,
    kind: DirectoryKind,
    desired: &mut desired::Desired,
    replace: bool,
) -> Option<(target::TargetSnapshot, LiveCache)> {
    let cached_hashes = match run.state.cache_hashes().await {
        Ok(h) => h,
        Err(e) => {
            state_unreadable(report, "the target cache", e);
            return None;
        }
    };
    let spinner = progress_spinner("reading the target");
    let live = read_live_target(run, kind, desired, cached_hashes, replace).await;
    spinner.finish_and_clear();
    match live {
        Ok(read) => Some(read),
        Err(e) => {
            stop(report, e.to_string(), Outcome::Unreachable);
            None
        }
    }
}

/// A target listing that holds none of the users (or none of the groups) this instance
/// manages, while its records say it manages some: an empty answer from the target or from
/// something in front of it, a scope filter that matches nothing. Planning against it would
/// create everyone again (a duplicate of each user on a target that does not refuse a second
/// externalId), so the run stops before it writes anything. Users really removed from the
/// target are taken up again by `--recovery`, which starts over from the target as it is.
fn implausible_target(snapshot: &target::TargetSnapshot, ownership: &Ownership) -> Option<String> {
    let (what, listed, owned) =
        if let Some(owned) = none_listed(&ownership.users, snapshot.users.iter().map(|u| &u.id)) {
            ("users", snapshot.users.len(), owned)
        } else {
            let owned = none_listed(&ownership.groups, snapshot.groups.iter().map(|g| &g.id))?;
            ("groups", snapshot.groups.len(), owned)
        };
    Some(format!(
        "the target listed {listed} {what}, none of the {owned} this instance manages: \
         treated as a failed read of the target (an empty answer, a scope filter that matches \
         nothing), nothing was changed; if they were really removed from the target, \
         `dirsync sync --recovery` starts over from the target as it is"
    ))
}

/// How many objects the `records` say this instance owns, when there are some and none of
/// them is among the `listed` target ids; `None` otherwise. The ids are gathered only when
/// there is something owned to look for.
fn none_listed<'a>(
    records: &[crate::state::ObjectKey],
    listed: impl Iterator<Item = &'a String>,
) -> Option<usize> {
    let owned = records.iter().filter(|r| r.owned).count();
    if owned == 0 {
        return None;
    }
    let listed: HashSet<&str> = listed.map(String::as_str).collect();
    let seen = records
        .iter()
        .any(|r| r.owned && listed.contains(r.target_id.as_str()));
    (!seen).then_some(owned)
}

/// Drift found by the plan, counted and (above zero) warned about.
fn report_drift(report: &mut Report) {
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
}

/// What a full run commits: the cursor, the image rows (when it keeps an image) and, once
/// applied, the time of this full run and the state format.
fn state_write(
    run: &RunCtx<'_>,
    executed: &Executed,
    next: Option<&Cursor>,
    image: ImageChoice,
    rows: Vec<ImageRow>,
    image_removals: Vec<ImageKey>,
) -> IncrementalWrite {
    let mut write = IncrementalWrite {
        replace: image.replace,
        cursor: next.and_then(|c| serde_json::to_string(c).ok()),
        ..IncrementalWrite::default()
    };
    if image.keeps_image {
        write.image_upserts = rows;
        write.image_removals = image_removals;
    }
    if executed.applied {
        write.meta.push((META_LAST_FULL, run.now.to_rfc3339()));
        write
            .meta
            .push((META_STATE_FORMAT, STATE_FORMAT.to_string()));
    }
    write
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
    let mut comparison = Comparison::new(run, kind, &desired.users, whole_resources);
    let (rows_tx, rows_rx) = tokio::sync::mpsc::unbounded_channel::<CachedObject>();
    let stager = stage_cache_rows(run, rows_rx);
    let reading = read_comparing(run, &mut live_cache, &mut comparison, rows_tx);
    let (snapshot, unstaged) = tokio::join!(reading, stager);
    let mut snapshot = snapshot?;
    for row in unstaged {
        live_cache.changed.insert((row.kind, row.id.clone()), row);
    }
    live_cache.finish();
    let empty = JsonText::new(&serde_json::json!({}));
    let emptied = comparison.empty_unchanged(&mut snapshot.users, &empty);
    for i in emptied {
        desired.users[i].resource = empty.clone();
    }
    Ok((snapshot, live_cache))
}

/// Stages the cache rows sent while the target is read, in batches (a dry run stages none);
/// returns the rows that could not be staged, kept for the commit.
async fn stage_cache_rows(
    run: &RunCtx<'_>,
    mut rows_rx: tokio::sync::mpsc::UnboundedReceiver<CachedObject>,
) -> Vec<CachedObject> {
    let stage = !run.options.dry_run;
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
}

/// Reads the target, sending each object's cache row that differs from the stored one and
/// comparing each user with the desired one as it arrives.
async fn read_comparing(
    run: &RunCtx<'_>,
    live_cache: &mut LiveCache,
    comparison: &mut Comparison<'_>,
    rows_tx: tokio::sync::mpsc::UnboundedSender<CachedObject>,
) -> Result<target::TargetSnapshot, scim_client::ClientError> {
    let whole_resources = comparison.whole_resources;
    let mut each_user = |read: &serde_json::Value, user: &mut plan::TargetUser| {
        let row = target::cached_user(user);
        if live_cache.differs(&row) {
            let _ = rows_tx.send(row);
        }
        comparison.see(read, user);
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
}

/// Target users compared with the desired ones as they are read: per desired user, how many
/// target users carry its anchor, and whether one needs no update.
struct Comparison<'a> {
    users: &'a [mapping::MappedUser],
    /// Desired user index by anchor.
    wanted: HashMap<&'a str, usize>,
    managed: Vec<String>,
    whole_resources: bool,
    holders: Vec<u8>,
    same: Vec<bool>,
}

impl<'a> Comparison<'a> {
    /// Nothing seen yet, for the desired `users`.
    fn new(
        run: &RunCtx<'_>,
        kind: DirectoryKind,
        users: &'a [mapping::MappedUser],
        whole_resources: bool,
    ) -> Comparison<'a> {
        let wanted: HashMap<&str, usize> = users
            .iter()
            .enumerate()
            .map(|(i, u)| (u.anchor.as_str(), i))
            .collect();
        let managed = mapping::managed_user_attributes(&run.config.iid.scim.attribute.user, kind);
        Comparison {
            users,
            wanted,
            managed,
            whole_resources,
            holders: vec![0u8; users.len()],
            same: vec![false; users.len()],
        }
    }

    /// One target user as read: counted for its anchor, and sharing the desired resource's
    /// text when the plan will not update it.
    fn see(&mut self, read: &serde_json::Value, user: &mut plan::TargetUser) {
        let Some(&i) = user.external_id.as_deref().and_then(|e| self.wanted.get(e)) else {
            return;
        };
        self.holders[i] = self.holders[i].saturating_add(1);
        if self.whole_resources || user.pending {
            return;
        }
        if plan::same_attributes(read, &self.users[i].resource.value(), &self.managed) {
            user.resource = self.users[i].resource.clone();
            self.same[i] = true;
        }
    }

    /// Whether desired user `i` has one target user, which needs no update.
    fn only_same(&self, i: usize) -> bool {
        self.same[i] && self.holders[i] == 1
    }

    /// Empties the resource of each target user that is the only, unchanged holder of its
    /// anchor; returns the desired users' indices to empty the same way.
    fn empty_unchanged(self, users: &mut [plan::TargetUser], empty: &JsonText) -> Vec<usize> {
        for user in users {
            if let Some(&i) = user.external_id.as_deref().and_then(|e| self.wanted.get(e))
                && self.only_same(i)
            {
                user.resource = empty.clone();
            }
        }
        (0..self.same.len())
            .filter(|i| self.only_same(*i))
            .collect()
    }
}
