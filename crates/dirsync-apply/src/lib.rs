//! The SCIM target side of the agent: what the target holds ([`target`]: read live, or from
//! the cached rows), executing a plan against it (this module), and the audit [`journal`] of
//! every confirmed write. It does not know the directory (no LDAP, no source, no mapping) or
//! the configuration file; it takes the plan, the state store and a SCIM client.
//!
//! Executes a plan against the target through the SCIM client: operations in plan order,
//! independent operations of one kind concurrently (bounded), each write journaled and, when
//! it changes what this instance owns or keeps pending, recorded in the state right after the
//! target confirmed it.
//!
//! It decides nothing the plan did not say, with two exceptions that keep runs convergent
//! after a crash: a create answered "already exists" adopts the existing object found by
//! externalId, and a member removal that finds nothing to remove counts as done.
//! A refused token or an unreachable target stops the run once (no error per object).
//!
//! A group the plan creates is sent with its members (the plan's `AddMembers` on that new
//! group): one request instead of a create and one PATCH per member chunk. Those
//! `AddMembers` are then journaled and counted as done without a request of their own.

pub mod journal;
pub mod target;

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use chrono::{DateTime, Utc};
use futures::StreamExt;
use scim::{AttrExp, AttrPath, CompValue, CompareOp, PatchOperation, ValFilter};
use scim_client::{ClientError, ResourceKind, ScimClient};
use serde::Serialize;
use serde_json::{Value, json};

use crate::journal::{Journal, JournalEntry};
use dirsync_model::json_text::JsonText;
use dirsync_plan::{Change, GroupRef, MemberRef, Operation, Plan};
use dirsync_state::{CachedObject, ObjectKind, ObjectRecord, StateStore, fingerprint};

/// What apply needs besides the plan.
pub struct ApplyContext<'a> {
    pub client: &'a ScimClient,
    pub state: &'a StateStore,
    pub journal: &'a Mutex<Journal>,
    pub run_id: &'a str,
    pub concurrency: usize,
    pub now: DateTime<Utc>,
    /// Target id → source anchor, for every target object whose anchor is known.
    pub anchors: &'a HashMap<String, String>,
    /// Advanced once per operation (hidden when stderr is not a terminal).
    pub progress: &'a indicatif::ProgressBar,
    /// Operations per `/Bulk` request when the target offers Bulk (user and group creates
    /// are sent that way); `None` sends one request per operation. A request of group
    /// creates also stays under `bulk_size` × [`BULK_BYTES_PER_OPERATION`] bytes.
    pub bulk_size: Option<usize>,
}

/// Counts for the report (behaviour §5).
#[derive(Debug, Default, Clone, Serialize, PartialEq, Eq)]
pub struct Counts {
    pub created: usize,
    pub updated: usize,
    pub enabled: usize,
    pub disabled: usize,
    pub pending_deletion: usize,
    pub restored: usize,
    pub deleted: usize,
    pub adopted: usize,
    pub groups_created: usize,
    pub groups_updated: usize,
    pub groups_deleted: usize,
    pub members_added: usize,
    pub members_removed: usize,
    pub failed: usize,
}

/// One object that failed, with the target's message.
#[derive(Debug, Clone, Serialize)]
pub struct Failure {
    pub operation: String,
    pub object: String,
    pub message: String,
}

/// One object this run created (not adopted) and whose full content is known without
/// reading it back: what was sent, and the id the target gave it (in the cache row; the id
/// is not kept apart, 100,000 of these are held while the run goes on).
#[derive(Debug, Clone, PartialEq)]
pub struct Created {
    pub kind: ObjectKind,
    pub anchor: String,
    /// The target cache row of the body that was sent, plus `"id"` (made here, so that 100,000
    /// creates are not held as text and then again as rows); for a group always with `members`
    /// (`[{"value": id}]`, empty when it has none): exactly the members sent with the create,
    /// which are all the members the plan gave the new group that could be resolved (a member
    /// whose own create failed is neither sent nor listed, as on the target). A group whose
    /// members were not all sent with the create (it was adopted) is not listed at all.
    /// Not in it: what the target adds by itself (`meta`, defaults).
    ///
    /// `None` once the row is staged in the state ([`StateStore::stage_cache`], with the
    /// object's record), so an initial run does not hold 100,000 rows until its commit; boxed,
    /// since nearly all are `None`.
    pub cache_row: Option<Box<CachedObject>>,
}

#[derive(Debug, Default)]
pub struct ApplyOutcome {
    pub counts: Counts,
    pub failures: Vec<Failure>,
    /// Set when the run had to stop (credentials refused, target unreachable).
    pub stopped: Option<String>,
    /// Every user and group this run created, in no particular order.
    pub created: Vec<Created>,
}

/// The request size each Bulk operation is assumed to stay under (`run::bulk_size` divides
/// the target's maxPayloadSize by the same figure). User bodies are small; a group body
/// carries its members, so group creates are cut by size as well as by count.
pub const BULK_BYTES_PER_OPERATION: usize = 4096;

/// At most this many bytes of group bodies go in one Bulk request. With `sync.concurrency`
/// requests in flight (16 by default), each held as parsed JSON, copied for the journal and
/// the cache row, 5,000 groups' members in requests of 200 × 4 KiB added some 115 MiB to an
/// initial run's peak, 128 KiB requests still 30–45 MiB (issue #5); the smaller requests cost
/// a few more round trips.
const GROUP_BULK_BYTES: usize = 32 * 1024;

/// How many times a create cut off by a lost connection is looked up and sent again before
/// the object fails for this run (the next run finds or creates it).
const INTERRUPTED_RETRIES: u32 = 5;

/// The pause before the n-th such attempt is n times this.
const INTERRUPTED_PAUSE: std::time::Duration = std::time::Duration::from_millis(200);

/// The anchor (externalId) of a create operation.
fn create_anchor(op: &Operation) -> Option<String> {
    match op {
        Operation::CreateUser { anchor, .. } | Operation::CreateGroup { anchor, .. } => {
            Some(anchor.clone())
        }
        _ => None,
    }
}

/// A lock that a panic elsewhere poisoned still guards data that is whole: every holder
/// only pushes, counts or writes a line.
fn locked<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Applies `plan` in order. Consecutive operations of the same kind run concurrently.
pub async fn apply(plan: &Plan, ctx: &ApplyContext<'_>) -> ApplyOutcome {
    let mut new_group_members: HashMap<&str, Vec<&MemberRef>> = HashMap::new();
    for op in &plan.operations {
        if let Operation::AddMembers {
            group: GroupRef::New(anchor),
            members,
            ..
        } = op
        {
            new_group_members
                .entry(anchor.as_str())
                .or_default()
                .extend(members);
        }
    }
    let run = Run {
        ctx,
        new_users: Mutex::new(HashMap::new()),
        new_groups: Mutex::new(HashMap::new()),
        new_group_members,
        members_sent: Mutex::new(HashSet::new()),
        to_stage: Mutex::new(Vec::new()),
        outcome: Mutex::new(ApplyOutcome::default()),
        stop: AtomicBool::new(false),
        interrupted: Mutex::new(HashSet::new()),
    };
    let mut start = 0;
    while start < plan.operations.len() {
        let kind = std::mem::discriminant(&plan.operations[start]);
        let mut end = start;
        while end < plan.operations.len() && std::mem::discriminant(&plan.operations[end]) == kind {
            end += 1;
        }
        let batch = &plan.operations[start..end];
        tracing::debug!(
            operation = describe(&batch[0]).0,
            count = batch.len(),
            "apply batch"
        );
        match ctx.bulk_size {
            Some(size)
                if matches!(
                    batch[0],
                    Operation::CreateUser { .. } | Operation::CreateGroup { .. }
                ) =>
            {
                futures::stream::iter(run.bulk_chunks(batch, size.max(1)))
                    .map(|chunk| run.create_in_bulk(chunk))
                    .buffer_unordered(ctx.concurrency.max(1))
                    .collect::<Vec<()>>()
                    .await;
            }
            _ => {
                futures::stream::iter(batch)
                    .map(|op| run.execute(op))
                    .buffer_unordered(ctx.concurrency.max(1))
                    .collect::<Vec<()>>()
                    .await;
            }
        }
        if run.stop.load(Ordering::SeqCst) {
            break;
        }
        start = end;
    }
    // A task that panicked holding the lock leaves the outcome as it was: keep it.
    run.outcome
        .into_inner()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

struct Run<'a, 'b> {
    ctx: &'b ApplyContext<'a>,
    /// Anchor → id of objects created in this run (for member references).
    new_users: Mutex<HashMap<String, String>>,
    new_groups: Mutex<HashMap<String, String>>,
    /// Anchor of a group the plan creates → the members of its `AddMembers`, in plan order.
    new_group_members: HashMap<&'b str, Vec<&'b MemberRef>>,
    /// Anchors of the groups created with those members in the create request: their
    /// `AddMembers` send nothing more. A group adopted after "already exists" is not here.
    members_sent: Mutex<HashSet<String>>,
    /// Created objects whose cache rows are not staged yet (see [`Run::store`]).
    to_stage: Mutex<Vec<Created>>,
    outcome: Mutex<ApplyOutcome>,
    stop: AtomicBool,
    /// Anchors whose create may have been applied without an answer (a Bulk request or a
    /// POST cut off): the target is asked for them by externalId before they are sent again.
    interrupted: Mutex<HashSet<String>>,
}

/// A create operation and the size of what it sends. The body itself is made only when its
/// chunk is sent: a whole batch is cut into chunks at once, and bodies made up front held
/// 100,000 parsed users, or 5,000 groups with all their members, at once.
struct ToCreate<'p> {
    op: &'p Operation,
    /// Bytes of a group's body (with its members); 0 for a user.
    len: usize,
}

/// The result of one operation, before it is counted.
enum Done {
    Ok,
    /// Member operations count members, not requests.
    Members(usize),
}

impl Run<'_, '_> {
    /// Cuts a run of creates into Bulk requests: at most `size` operations, and for group
    /// creates (whose bodies carry their members) at most `size` × the assumed bytes per
    /// operation and [`GROUP_BULK_BYTES`]. A group too big for a request of its own is sent alone (see
    /// [`Run::create_in_bulk`]).
    fn bulk_chunks<'p>(&self, batch: &'p [Operation], size: usize) -> Vec<Vec<ToCreate<'p>>> {
        let budget = size
            .saturating_mul(BULK_BYTES_PER_OPERATION)
            .min(GROUP_BULK_BYTES);
        let mut chunks = Vec::new();
        let mut chunk: Vec<ToCreate<'p>> = Vec::new();
        let mut bytes = 0;
        for op in batch {
            let len = match op {
                Operation::CreateUser { .. } => 0,
                Operation::CreateGroup {
                    anchor, resource, ..
                } => serde_json::to_vec(&self.group_body(anchor, resource))
                    .map_or(budget, |b| b.len()),
                _ => continue,
            };
            if !chunk.is_empty() && (chunk.len() >= size || bytes + len > budget) {
                chunks.push(std::mem::take(&mut chunk));
                bytes = 0;
            }
            bytes += len;
            chunk.push(ToCreate { op, len });
        }
        if !chunk.is_empty() {
            chunks.push(chunk);
        }
        chunks
    }

    /// Creates through one `/Bulk` request. Operations the target rejected with 409 go the
    /// single-request way (which adopts an object that already exists by externalId); other
    /// per-operation errors fail that object alone. If the Bulk request itself is rejected,
    /// each object is sent on its own; a stop (credentials, reachability) stops. A lone
    /// operation over the size budget goes as a plain POST: a Bulk request would only wrap
    /// it in a bigger body.
    async fn create_in_bulk(&self, chunk: Vec<ToCreate<'_>>) {
        if self.stop.load(Ordering::SeqCst) {
            return;
        }
        if let [single] = chunk.as_slice()
            && self
                .ctx
                .bulk_size
                .is_some_and(|size| single.len > size.saturating_mul(BULK_BYTES_PER_OPERATION))
        {
            self.execute(single.op).await;
            return;
        }
        let requests: Vec<scim_client::BulkOperation> = chunk
            .iter()
            .enumerate()
            .map(|(i, p)| scim_client::BulkOperation {
                method: reqwest::Method::POST,
                path: match p.op {
                    Operation::CreateGroup { .. } => "/Groups".into(),
                    _ => "/Users".into(),
                },
                bulk_id: Some(format!("c{i}")),
                data: Some(self.create_body(p.op)),
            })
            .collect();
        let results = match self.ctx.client.bulk(&requests, None).await {
            Ok(results) if results.len() == chunk.len() => results,
            Err(e) if e.stops_run() => {
                self.settle(chunk.first().map(|p| p.op), Err(e));
                return;
            }
            Err(e @ ClientError::Interrupted { .. }) => {
                // Some of the chunk may exist now: each object is looked up before its own
                // create.
                tracing::debug!(error = %e, objects = chunk.len(), "Bulk request cut off");
                locked(&self.interrupted).extend(chunk.iter().filter_map(|p| create_anchor(p.op)));
                for p in &chunk {
                    self.execute(p.op).await;
                }
                return;
            }
            _ => {
                for p in &chunk {
                    self.execute(p.op).await;
                }
                return;
            }
        };
        let mut records = Vec::new();
        for ((p, result), request) in chunk.iter().zip(results).zip(&requests) {
            let op = p.op;
            let sent = request.data.as_ref().unwrap_or(&Value::Null);
            let (kind, anchor, name, dn, resource) = match op {
                Operation::CreateUser {
                    anchor,
                    user_name,
                    dn,
                    ..
                } => (ObjectKind::User, anchor, user_name, dn, sent),
                Operation::CreateGroup {
                    anchor,
                    display_name,
                    dn,
                    resource,
                } => (ObjectKind::Group, anchor, display_name, dn, resource),
                _ => continue,
            };
            match (result.id.clone(), result.error()) {
                (Some(id), None) => {
                    records.push(self.created(kind, anchor, &id, dn, name, resource, sent, false));
                    self.ctx.progress.inc(1);
                    self.settle(Some(op), Ok(Done::Ok));
                }
                (_, Some(e)) if e.status == 409 => self.execute(op).await,
                (_, error) => {
                    self.ctx.progress.inc(1);
                    let e = error.unwrap_or_else(|| {
                        scim::ScimError::new(result.status, None, "Bulk result without a location")
                    });
                    self.failed(op, &ClientError::Rejected(e.clone()));
                    self.settle(Some(op), Err(ClientError::Rejected(e)));
                }
            }
        }
        // One transaction for the chunk: one commit instead of one per object.
        self.store(&records).await;
    }

    /// What a create operation sends.
    fn create_body(&self, op: &Operation) -> Value {
        match op {
            Operation::CreateUser { resource, .. } => resource.value(),
            Operation::CreateGroup {
                anchor, resource, ..
            } => self.group_body(anchor, resource),
            _ => Value::Null,
        }
    }

    /// The body of a group create: the plan's resource with the members of the plan's
    /// `AddMembers` on this new group, each once. A member without an id (its create failed)
    /// is left out, as the `AddMembers` would leave it out.
    fn group_body(&self, anchor: &str, resource: &Value) -> Value {
        let mut seen = HashSet::new();
        let values: Vec<Value> = self
            .new_group_members
            .get(anchor)
            .into_iter()
            .flatten()
            .filter_map(|m| self.member_id(m))
            .filter(|id| seen.insert(id.clone()))
            .map(|id| json!({ "value": id }))
            .collect();
        let mut body = resource.clone();
        // No members: the body stays the plan's resource, as before members went with it.
        if !values.is_empty()
            && let Some(map) = body.as_object_mut()
        {
            map.insert("members".into(), Value::Array(values));
        }
        body
    }

    async fn execute(&self, op: &Operation) {
        if self.stop.load(Ordering::SeqCst) {
            return;
        }
        let result = self.perform(op).await;
        self.ctx.progress.inc(1);
        if let Err(e) = &result {
            self.failed(op, e);
        }
        self.settle(Some(op), result);
    }

    fn failed(&self, op: &Operation, e: &ClientError) {
        let (name, object) = describe(op);
        self.journal(
            name,
            &object,
            None,
            None,
            &format!("failed: {e}"),
            None,
            None,
        );
    }

    /// Counts an operation's outcome, or stops the run.
    fn settle(&self, op: Option<&Operation>, result: Result<Done, ClientError>) {
        let mut outcome = locked(&self.outcome);
        match (op, result) {
            (Some(op), Ok(done)) => count(&mut outcome.counts, op, &done),
            (None, Ok(_)) => {}
            (_, Err(e)) if e.stops_run() => {
                self.stop.store(true, Ordering::SeqCst);
                if outcome.stopped.is_none() {
                    outcome.stopped = Some(e.to_string());
                }
            }
            (op, Err(e)) => {
                let (name, object) = op.map(describe).unwrap_or(("bulk", String::new()));
                // behaviour §8: event 12808 "SCIM response error", level warn; overview + detail.
                if let Some(scim) = e.scim() {
                    tracing::warn!(
                        event_id = 12808,
                        operation = name,
                        object = %object,
                        detail = %scim.to_json(),
                        "SCIM response error"
                    );
                } else {
                    // Every failed operation is one line, SCIM error body or not.
                    tracing::warn!(operation = name, object = %object, error = %e, "operation failed");
                }
                outcome.counts.failed += 1;
                outcome.failures.push(Failure {
                    operation: name.to_string(),
                    object,
                    message: e.to_string(),
                });
            }
        }
    }

    async fn perform(&self, op: &Operation) -> Result<Done, ClientError> {
        let (name, _) = describe(op);
        match op {
            Operation::CreateUser {
                anchor,
                user_name,
                dn,
                resource,
            } => self.create_user(anchor, user_name, dn, resource).await,
            Operation::AdoptUser { id, user_name } => {
                self.adopt(ObjectKind::User, name, id, user_name).await
            }
            Operation::AdoptGroup { id, display_name } => {
                self.adopt(ObjectKind::Group, name, id, display_name).await
            }
            Operation::UpdateUser {
                id,
                user_name,
                changes,
                patch,
            } => {
                self.update(ResourceKind::Users, name, id, user_name, changes, patch)
                    .await
            }
            Operation::UpdateGroup {
                id,
                display_name,
                changes,
                patch,
            } => {
                self.update(ResourceKind::Groups, name, id, display_name, changes, patch)
                    .await
            }
            Operation::EnableUser { id, user_name } => {
                self.set_active(true, name, id, user_name).await
            }
            Operation::DisableUser { id, user_name } => {
                self.set_active(false, name, id, user_name).await
            }
            Operation::RestoreUser {
                id,
                user_name,
                anchor,
                resource,
                patch,
            } => {
                self.restore_user(name, id, user_name, anchor, resource, patch)
                    .await
            }
            Operation::DeleteUser { id, user_name } => self.delete_user(name, id, user_name).await,
            Operation::AgentPendUser { id, user_name } => {
                self.agent_pend_user(name, id, user_name).await
            }
            Operation::CreateGroup {
                anchor,
                display_name,
                dn,
                resource,
            } => self.create_group(anchor, display_name, dn, resource).await,
            Operation::PurgeUser { id, user_name, .. } => {
                self.purge(ResourceKind::Users, ObjectKind::User, name, id, user_name)
                    .await
            }
            Operation::DeleteGroup { id, display_name } => {
                self.purge(
                    ResourceKind::Groups,
                    ObjectKind::Group,
                    name,
                    id,
                    display_name,
                )
                .await
            }
            Operation::AddMembers {
                group,
                display_name,
                members,
            } => self.members(true, name, group, display_name, members).await,
            Operation::RemoveMembers {
                group,
                display_name,
                members,
            } => {
                self.members(false, name, group, display_name, members)
                    .await
            }
        }
    }

    /// POST a user (or find the one a killed run created) and record it.
    async fn create_user(
        &self,
        anchor: &str,
        user_name: &str,
        dn: &str,
        resource: &JsonText,
    ) -> Result<Done, ClientError> {
        let body = resource.value();
        let object = NewObject {
            kind: ObjectKind::User,
            anchor,
            dn,
            name: user_name,
        };
        self.create_recorded(object, &body, &body).await
    }

    /// POST `body` (or find the object a killed run created) and record it; `desired` is
    /// the mapped resource the record keeps.
    async fn create_recorded(
        &self,
        object: NewObject<'_>,
        desired: &Value,
        body: &Value,
    ) -> Result<Done, ClientError> {
        let resource_kind = match object.kind {
            ObjectKind::User => ResourceKind::Users,
            ObjectKind::Group => ResourceKind::Groups,
        };
        let (id, existed) = self.create(resource_kind, object.anchor, body).await?;
        let record = self.created(
            object.kind,
            object.anchor,
            &id,
            object.dn,
            object.name,
            desired,
            body,
            existed,
        );
        self.store(&[record]).await;
        Ok(Done::Ok)
    }

    /// Take over an existing target object: no target write, only the ownership record.
    async fn adopt(
        &self,
        kind: ObjectKind,
        name: &str,
        id: &str,
        object_name: &str,
    ) -> Result<Done, ClientError> {
        if let Some(anchor) = self.ctx.anchors.get(id) {
            self.record(kind, anchor, id, None, object_name, None, None)
                .await;
        }
        self.journal(name, object_name, None, Some(id), "ok", None, None);
        Ok(Done::Ok)
    }

    /// PATCH a user's or group's attributes; the journal gets the changed values.
    async fn update(
        &self,
        kind: ResourceKind,
        name: &str,
        id: &str,
        object_name: &str,
        changes: &[Change],
        patch: &[scim::PatchOperation],
    ) -> Result<Done, ClientError> {
        self.ctx.client.patch(kind, id, patch).await?;
        let side = |value: fn(&Change) -> &Option<Value>| -> Value {
            let map: serde_json::Map<String, Value> = changes
                .iter()
                .map(|c| (c.path.clone(), value(c).clone().unwrap_or(Value::Null)))
                .collect();
            map.into()
        };
        self.journal(
            name,
            object_name,
            None,
            Some(id),
            "ok",
            Some(side(|c| &c.old)),
            Some(side(|c| &c.new)),
        );
        Ok(Done::Ok)
    }

    /// PATCH `active`.
    async fn set_active(
        &self,
        active: bool,
        name: &str,
        id: &str,
        user_name: &str,
    ) -> Result<Done, ClientError> {
        self.ctx
            .client
            .patch(
                ResourceKind::Users,
                id,
                &[replace("active", json!(active))?],
            )
            .await?;
        self.journal(
            name,
            user_name,
            None,
            Some(id),
            "ok",
            Some(json!({"active": !active})),
            Some(json!({"active": active})),
        );
        Ok(Done::Ok)
    }

    /// Back from pending deletion: POST on a target that keeps pending users (`patch`
    /// empty), else the PATCH; the record loses its pending date.
    async fn restore_user(
        &self,
        name: &str,
        id: &str,
        user_name: &str,
        anchor: &str,
        resource: &JsonText,
        patch: &[scim::PatchOperation],
    ) -> Result<Done, ClientError> {
        let client = self.ctx.client;
        let resource = &resource.value();
        let restored_id = if patch.is_empty() {
            // A target that keeps pending users restores on POST with the same
            // userName and externalId.
            let restored = client.create(ResourceKind::Users, resource).await?;
            id_of(&restored).unwrap_or_else(|| id.to_string())
        } else {
            client.patch(ResourceKind::Users, id, patch).await?;
            id.to_string()
        };
        self.record(
            ObjectKind::User,
            anchor,
            &restored_id,
            None,
            user_name,
            Some(resource),
            None,
        )
        .await;
        self.journal(
            name,
            user_name,
            Some(anchor),
            Some(id),
            "ok",
            None,
            Some(resource.clone()),
        );
        Ok(Done::Ok)
    }

    /// DELETE on a target that keeps pending users: the user becomes pending deletion.
    async fn delete_user(
        &self,
        name: &str,
        id: &str,
        user_name: &str,
    ) -> Result<Done, ClientError> {
        self.ctx.client.delete(ResourceKind::Users, id).await?;
        self.journal(
            name,
            user_name,
            None,
            Some(id),
            "ok (pending deletion)",
            None,
            None,
        );
        Ok(Done::Ok)
    }

    /// Plain target: disable the user and record the pending date (the agent's lifecycle).
    async fn agent_pend_user(
        &self,
        name: &str,
        id: &str,
        user_name: &str,
    ) -> Result<Done, ClientError> {
        self.ctx
            .client
            .patch(ResourceKind::Users, id, &[replace("active", json!(false))?])
            .await?;
        if let Some(anchor) = self.ctx.anchors.get(id) {
            self.record(
                ObjectKind::User,
                anchor,
                id,
                None,
                user_name,
                None,
                Some(self.ctx.now),
            )
            .await;
        }
        self.journal(
            name,
            user_name,
            None,
            Some(id),
            "ok (disabled, pending deletion kept by the agent)",
            None,
            None,
        );
        Ok(Done::Ok)
    }

    /// POST a group (or find the one a killed run created) and record it.
    async fn create_group(
        &self,
        anchor: &str,
        display_name: &str,
        dn: &str,
        resource: &Value,
    ) -> Result<Done, ClientError> {
        let body = self.group_body(anchor, resource);
        let object = NewObject {
            kind: ObjectKind::Group,
            anchor,
            dn,
            name: display_name,
        };
        self.create_recorded(object, resource, &body).await
    }

    /// Gone for good: the target deletes, the state forgets the object.
    async fn purge(
        &self,
        resource_kind: ResourceKind,
        kind: ObjectKind,
        name: &str,
        id: &str,
        object_name: &str,
    ) -> Result<Done, ClientError> {
        self.ctx.client.delete(resource_kind, id).await?;
        if let Some(anchor) = self.ctx.anchors.get(id) {
            self.forget(kind, anchor).await;
        }
        self.journal(name, object_name, None, Some(id), "ok", None, None);
        Ok(Done::Ok)
    }

    /// Adds (`adding`) or removes members of a group.
    async fn members(
        &self,
        adding: bool,
        name: &str,
        group: &GroupRef,
        display_name: &str,
        members: &[MemberRef],
    ) -> Result<Done, ClientError> {
        let Some(group_id) = self.group_id(group) else {
            return Err(ClientError::Rejected(scim::ScimError::no_target(format!(
                "group {display_name} was not created in this run"
            ))));
        };
        let ids: Vec<String> = members.iter().filter_map(|m| self.member_id(m)).collect();
        if ids.is_empty() {
            return Ok(Done::Members(0));
        }
        let names: Vec<&str> = members.iter().map(|m| m.user_name.as_str()).collect();
        let change = json!({ "members": names });
        if adding
            && let GroupRef::New(anchor) = group
            && self
                .members_sent
                .lock()
                .is_ok_and(|sent| sent.contains(anchor))
        {
            // The same ids went with the group create (users are created before
            // groups, so they resolve the same now as then).
            let outcome = "ok (sent with the group create)";
            self.journal(
                name,
                display_name,
                None,
                Some(&group_id),
                outcome,
                None,
                Some(change),
            );
            return Ok(Done::Members(ids.len()));
        }
        let patch = if adding {
            add_members(&ids)?
        } else {
            remove_members(&ids)?
        };
        match self
            .ctx
            .client
            .patch(ResourceKind::Groups, &group_id, &[patch])
            .await
        {
            Ok(_) => {}
            // Nothing left to remove: the state the plan wanted.
            Err(ClientError::Rejected(e))
                if !adding && e.scim_type == Some(scim::ScimType::NoTarget) => {}
            Err(e) => return Err(e),
        }
        let (before, after) = if adding {
            (None, Some(change))
        } else {
            (Some(change), None)
        };
        self.journal(
            name,
            display_name,
            None,
            Some(&group_id),
            "ok",
            before,
            after,
        );
        Ok(Done::Members(ids.len()))
    }

    /// POST, or — when the target says the object already exists — the existing one found
    /// by externalId (a previous run may have created it and been killed before recording).
    async fn create(
        &self,
        kind: ResourceKind,
        anchor: &str,
        resource: &Value,
    ) -> Result<(String, bool), ClientError> {
        let mut look_first = locked(&self.interrupted).contains(anchor);
        let mut attempt = 0;
        loop {
            if look_first && let Some(existing) = self.existing(kind, anchor).await? {
                return Ok((existing, true));
            }
            match self.ctx.client.create(kind, resource).await {
                Ok(created) => {
                    return id_of(&created)
                        .map(|id| (id, false))
                        .ok_or_else(|| ClientError::Protocol("created resource has no id".into()));
                }
                Err(ClientError::Rejected(e)) if e.status == 409 => {
                    return match self.existing(kind, anchor).await? {
                        Some(existing) => Ok((existing, true)),
                        None => Err(ClientError::Rejected(e)),
                    };
                }
                Err(e @ ClientError::Interrupted { .. }) if attempt < INTERRUPTED_RETRIES => {
                    attempt += 1;
                    tracing::debug!(anchor, error = %e, attempt, "create cut off; looking the object up");
                    look_first = true;
                    tokio::time::sleep(INTERRUPTED_PAUSE * attempt).await;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// The id of the target object whose externalId is `anchor`, if there is one.
    async fn existing(
        &self,
        kind: ResourceKind,
        anchor: &str,
    ) -> Result<Option<String>, ClientError> {
        match self.ctx.client.find_by_external_id(kind, anchor).await? {
            Some(existing) => id_of(&existing)
                .map(Some)
                .ok_or_else(|| ClientError::Protocol("resource has no id".into())),
            None => Ok(None),
        }
    }

    /// Bookkeeping after the target confirmed a create: the anchor → id map for member
    /// references, the members-sent mark and the [`Created`] entry of a group or user
    /// created (not adopted), and the journal line. Returns the state record, for the caller
    /// to store (alone, or with the rest of its Bulk request). `resource` is the plan's (the
    /// fingerprint is of it, as for every other record); `sent` is the body sent.
    #[allow(clippy::too_many_arguments)]
    fn created(
        &self,
        kind: ObjectKind,
        anchor: &str,
        id: &str,
        dn: &str,
        name: &str,
        resource: &Value,
        sent: &Value,
        existed: bool,
    ) -> ObjectRecord {
        let (map, operation) = match kind {
            ObjectKind::User => (&self.new_users, "create_user"),
            ObjectKind::Group => (&self.new_groups, "create_group"),
        };
        if let Ok(mut map) = map.lock() {
            map.insert(anchor.to_string(), id.to_string());
        }
        if !existed {
            let mut full = sent.clone();
            if let Some(map) = full.as_object_mut() {
                map.insert("id".into(), Value::String(id.to_string()));
                if kind == ObjectKind::Group && !map.contains_key("members") {
                    map.insert("members".into(), Value::Array(Vec::new()));
                }
            }
            // An adopted group gets its members by PATCH: only a created one is marked.
            if kind == ObjectKind::Group
                && let Ok(mut sent) = self.members_sent.lock()
            {
                sent.insert(anchor.to_string());
            }
            locked(&self.to_stage).push(Created {
                kind,
                anchor: anchor.to_string(),
                cache_row: crate::target::cache_row(kind, full).map(Box::new),
            });
        }
        let outcome = if existed {
            "ok (already existed; adopted by externalId)"
        } else {
            "ok"
        };
        self.journal(
            operation,
            name,
            Some(anchor),
            Some(id),
            outcome,
            None,
            Some(sent.clone()),
        );
        ObjectRecord {
            kind,
            anchor: anchor.to_string(),
            target_id: id.to_string(),
            dn: Some(dn.to_string()),
            name: Some(name.to_string()),
            fingerprint: Some(fingerprint(resource)),
            owned: true,
            pending_since: None,
        }
    }

    /// Records confirmed creates in the state, in one transaction.
    /// Also stages the cache rows of the objects created so far, so that they are not held
    /// until the run's commit.
    async fn store(&self, records: &[ObjectRecord]) {
        if !records.is_empty()
            && let Err(e) = self.ctx.state.upsert_objects(records).await
        {
            // The target is the truth; lost state rows are rebuilt next run.
            tracing::warn!(error = %e, objects = records.len(), "could not record objects in the local state");
        }
        let mut created = std::mem::take(&mut *locked(&self.to_stage));
        if created.is_empty() {
            return;
        }
        let rows: Vec<CachedObject> = created
            .iter()
            .filter_map(|c| c.cache_row.as_deref().cloned())
            .collect();
        match self.ctx.state.stage_cache(&rows).await {
            Ok(()) => created.iter_mut().for_each(|c| c.cache_row = None),
            // Kept for the commit instead.
            Err(e) => {
                tracing::warn!(error = %e, "could not stage cache rows of created objects")
            }
        }
        locked(&self.outcome).created.append(&mut created);
    }

    fn group_id(&self, group: &GroupRef) -> Option<String> {
        match group {
            GroupRef::Id(id) => Some(id.clone()),
            GroupRef::New(anchor) => self.new_groups.lock().ok()?.get(anchor).cloned(),
        }
    }

    fn member_id(&self, member: &MemberRef) -> Option<String> {
        if let Some(id) = &member.id {
            return Some(id.clone());
        }
        let anchor = member.anchor.as_ref()?;
        self.new_users.lock().ok()?.get(anchor).cloned()
    }

    #[allow(clippy::too_many_arguments)]
    async fn record(
        &self,
        kind: ObjectKind,
        anchor: &str,
        id: &str,
        dn: Option<&String>,
        name: &str,
        resource: Option<&Value>,
        pending_since: Option<DateTime<Utc>>,
    ) {
        let record = ObjectRecord {
            kind,
            anchor: anchor.to_string(),
            target_id: id.to_string(),
            dn: dn.cloned(),
            name: Some(name.to_string()),
            fingerprint: resource.map(fingerprint),
            owned: true,
            pending_since,
        };
        if let Err(e) = self.ctx.state.upsert_object(&record).await {
            // The target is the truth; a lost state row is rebuilt next run.
            tracing::warn!(error = %e, object = name, "could not record the object in the local state");
        }
    }

    async fn forget(&self, kind: ObjectKind, anchor: &str) {
        if let Err(e) = self.ctx.state.remove_object(kind, anchor).await {
            tracing::warn!(error = %e, "could not update the local state");
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn journal(
        &self,
        operation: &str,
        object: &str,
        anchor: Option<&str>,
        target_id: Option<&str>,
        outcome: &str,
        before: Option<Value>,
        after: Option<Value>,
    ) {
        let entry = JournalEntry {
            time: Utc::now(),
            run_id: self.ctx.run_id,
            operation,
            object,
            anchor,
            target_id,
            outcome,
            before,
            after,
        };
        let written = locked(self.ctx.journal).record(&entry);
        if let Err(e) = written {
            tracing::warn!(error = %e, "could not write the audit journal");
        }
    }
}

fn count(counts: &mut Counts, op: &Operation, done: &Done) {
    match (op, done) {
        (Operation::AddMembers { .. }, Done::Members(n)) => counts.members_added += n,
        (Operation::RemoveMembers { .. }, Done::Members(n)) => counts.members_removed += n,
        (Operation::CreateUser { .. }, _) => counts.created += 1,
        (Operation::AdoptUser { .. } | Operation::AdoptGroup { .. }, _) => counts.adopted += 1,
        (Operation::UpdateUser { .. }, _) => counts.updated += 1,
        (Operation::EnableUser { .. }, _) => counts.enabled += 1,
        (Operation::DisableUser { .. }, _) => counts.disabled += 1,
        (Operation::RestoreUser { .. }, _) => counts.restored += 1,
        (Operation::DeleteUser { .. } | Operation::AgentPendUser { .. }, _) => {
            counts.pending_deletion += 1
        }
        (Operation::PurgeUser { .. }, _) => counts.deleted += 1,
        (Operation::CreateGroup { .. }, _) => counts.groups_created += 1,
        (Operation::UpdateGroup { .. }, _) => counts.groups_updated += 1,
        (Operation::DeleteGroup { .. }, _) => counts.groups_deleted += 1,
        (Operation::AddMembers { .. } | Operation::RemoveMembers { .. }, Done::Ok) => {}
    }
}

/// The operation's name (as in the journal) and the object it concerns.
pub fn describe(op: &Operation) -> (&'static str, String) {
    match op {
        Operation::CreateUser { user_name, .. } => ("create_user", user_name.clone()),
        Operation::AdoptUser { user_name, .. } => ("adopt_user", user_name.clone()),
        Operation::UpdateUser { user_name, .. } => ("update_user", user_name.clone()),
        Operation::EnableUser { user_name, .. } => ("enable_user", user_name.clone()),
        Operation::DisableUser { user_name, .. } => ("disable_user", user_name.clone()),
        Operation::RestoreUser { user_name, .. } => ("restore_user", user_name.clone()),
        Operation::DeleteUser { user_name, .. } => ("delete_user", user_name.clone()),
        Operation::AgentPendUser { user_name, .. } => ("pend_user", user_name.clone()),
        Operation::PurgeUser { user_name, .. } => ("purge_user", user_name.clone()),
        Operation::CreateGroup { display_name, .. } => ("create_group", display_name.clone()),
        Operation::AdoptGroup { display_name, .. } => ("adopt_group", display_name.clone()),
        Operation::UpdateGroup { display_name, .. } => ("update_group", display_name.clone()),
        Operation::DeleteGroup { display_name, .. } => ("delete_group", display_name.clone()),
        Operation::AddMembers { display_name, .. } => ("add_members", display_name.clone()),
        Operation::RemoveMembers { display_name, .. } => ("remove_members", display_name.clone()),
    }
}

fn id_of(resource: &Value) -> Option<String> {
    crate::target::str_field(resource, "id")
}

fn patch_op(value: Value) -> Result<PatchOperation, ClientError> {
    serde_json::from_value(value)
        .map_err(|e| ClientError::Protocol(format!("cannot build a PATCH operation: {e}")))
}

fn replace(path: &str, value: Value) -> Result<PatchOperation, ClientError> {
    patch_op(json!({ "op": "replace", "path": path, "value": value }))
}

fn add_members(ids: &[String]) -> Result<PatchOperation, ClientError> {
    let values: Vec<Value> = ids.iter().map(|id| json!({ "value": id })).collect();
    patch_op(json!({ "op": "add", "path": "members", "value": values }))
}

/// One `remove` with `members[value eq "a" or value eq "b"]`: matches whatever is still
/// there, so a partly done removal can be repeated. The path is built through the AST so
/// that quoting is always right.
fn remove_members(ids: &[String]) -> Result<PatchOperation, ClientError> {
    let terms = ids.iter().map(|id| {
        ValFilter::Attr(AttrExp::Comparison(
            AttrPath::with_name("value"),
            CompareOp::Eq,
            CompValue::Str(id.clone()),
        ))
    });
    let filter =
        ValFilter::any(terms).ok_or_else(|| ClientError::Protocol("no member to remove".into()))?;
    let path = scim::PatchPath::Value(scim::PatchValuePath {
        attr: AttrPath::with_name("members"),
        filter,
        sub_attr: None,
    });
    patch_op(json!({ "op": "remove", "path": path.to_string() }))
}

/// The object a create makes: its kind, anchor, DN and name (userName or displayName).
struct NewObject<'a> {
    kind: ObjectKind,
    anchor: &'a str,
    dn: &'a str,
    name: &'a str,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn member_removal_path_quotes_ids_and_parses_back() {
        let op = remove_members(&["a\"b".to_string(), "c".to_string()]).unwrap();
        let text = serde_json::to_value(&op).unwrap();
        let path = text["path"].as_str().unwrap();
        assert_eq!(path, r#"members[value eq "a\"b" or value eq "c"]"#);
        let mut group = json!({"schemas": [scim::urn::GROUP], "displayName": "g",
            "members": [{"value": "a\"b"}, {"value": "c"}, {"value": "d"}]});
        scim::patch::apply(&mut group, &[op], scim::schema::group()).unwrap();
        assert_eq!(group["members"], json!([{"value": "d"}]));
    }
}
