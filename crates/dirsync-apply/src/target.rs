//! What the target holds now: every user (including those pending deletion, on a target that
//! keeps them) and every group with its members, read through the SCIM client and reduced to
//! the planner's input types. It does not decide anything about those objects.

use chrono::{DateTime, Utc};
use scim::{AttrExp, AttrPath, CompValue, CompareOp, Filter};
use scim_client::{ClientError, ResourceKind, ScimClient};
use serde_json::Value;

use futures::StreamExt as _;

use dirsync_model::json_text::JsonText;
use dirsync_plan::{TargetGroup, TargetUser};
use dirsync_state::{CachedObject, ObjectKind};

/// The user state attribute of `idservice` (and the vendor's service): pending users are
/// hidden from plain lists and appear when a filter names this attribute.
const STATE_ATTR: &str = "state";
const PENDING: &str = "pendingDeletion";

pub struct TargetSnapshot {
    pub users: Vec<TargetUser>,
    pub groups: Vec<TargetGroup>,
}

impl TargetSnapshot {
    /// The snapshot an incremental run plans against: what the last run left on the target.
    /// A row loaded without its resource becomes a target user with a `null` resource: the
    /// planner matches it, counts it and refers to it as a member, but has no attributes of
    /// it to compare (its caller loads the resource of every user its changes can touch).
    /// `whole_resources` false (no scope filter needs them): as in [`read`], what the planner
    /// never compares is dropped — a group's members once kept as ids (150,000 member objects
    /// were a third of a 1 % churn run's memory) and `meta`.
    pub fn from_cache(cache: Vec<CachedObject>, whole_resources: bool) -> TargetSnapshot {
        let mut users = Vec::new();
        let mut groups = Vec::new();
        for o in cache {
            match o.kind {
                ObjectKind::User => users.push(user_from_cache(o, whole_resources)),
                ObjectKind::Group => {
                    let resource = serde_json::from_str(&o.resource).unwrap_or(Value::Null);
                    if let Some(mut group) = to_group(resource) {
                        if !whole_resources {
                            strip(&mut group.resource, GROUP_UNCOMPARED);
                        }
                        groups.push(group);
                    }
                }
            }
        }
        TargetSnapshot { users, groups }
    }
}

/// A target user as a cache row.
pub fn cached_user(u: &TargetUser) -> CachedObject {
    CachedObject {
        kind: ObjectKind::User,
        id: u.id.clone(),
        external_id: u.external_id.clone(),
        name: u.user_name.clone(),
        active: u.active,
        pending: u.pending,
        pending_since: u.pending_since,
        resource: u.resource.shared(),
    }
}

/// A target group as a cache row.
pub fn cached_group(g: &TargetGroup) -> CachedObject {
    // The resource may have lost its members to [`read`]: they are written back from the ids.
    let mut resource = g.resource.clone();
    if let Some(map) = resource.as_object_mut() {
        map.retain(|k, _| !k.eq_ignore_ascii_case("members"));
        let members: Vec<Value> = g
            .members
            .iter()
            .map(|id| serde_json::json!({ "value": id }))
            .collect();
        map.insert("members".into(), Value::Array(members));
    }
    CachedObject {
        kind: ObjectKind::Group,
        id: g.id.clone(),
        external_id: g.external_id.clone(),
        name: g.display_name.clone(),
        active: true,
        pending: false,
        pending_since: None,
        resource: resource.to_string().into(),
    }
}

fn user_from_cache(o: CachedObject, whole_resources: bool) -> TargetUser {
    let resource = if o.resource.is_empty() {
        JsonText::default()
    } else if whole_resources {
        JsonText::from_shared(o.resource)
    } else {
        let mut value: Value = serde_json::from_str(&o.resource).unwrap_or(Value::Null);
        strip(&mut value, USER_UNCOMPARED);
        JsonText::new(&value)
    };
    TargetUser {
        id: o.id,
        external_id: o.external_id,
        user_name: o.name,
        active: o.active,
        pending: o.pending,
        pending_since: o.pending_since,
        resource,
    }
}

/// Re-reads single objects after a run wrote them (GET by id, `concurrency` at a time), to
/// bring the target cache up to date. `None` = the object is gone. On a target that keeps
/// pending users a deleted user is pending and hidden from GET: those are found in the list of
/// pending users (read once, and only when some user was not found).
pub async fn read_objects(
    client: &ScimClient,
    objects: &[(ObjectKind, String)],
    keeps_pending: bool,
    concurrency: usize,
) -> Result<Vec<(ObjectKind, String, Option<CachedObject>)>, ClientError> {
    type Got = Result<(ObjectKind, String, Option<Value>), ClientError>;
    let results: Vec<Got> = futures::stream::iter(objects.iter().cloned())
        .map(|(kind, id)| async move {
            let rk = match kind {
                ObjectKind::User => ResourceKind::Users,
                ObjectKind::Group => ResourceKind::Groups,
            };
            client.get(rk, &id).await.map(|r| (kind, id, r))
        })
        .buffer_unordered(concurrency.max(1))
        .collect()
        .await;
    let mut out = Vec::with_capacity(results.len());
    let mut pending: Option<std::collections::HashMap<String, Value>> = None;
    for result in results {
        let (kind, id, resource) = result?;
        let found = match resource {
            Some(resource) => cached(kind, resource, false),
            None if keeps_pending && kind == ObjectKind::User => {
                if pending.is_none() {
                    let listed = client
                        .list(ResourceKind::Users, Some(&pending_filter()), None)
                        .await?;
                    pending = Some(
                        listed
                            .into_iter()
                            .filter_map(|r| str_field(&r, "id").map(|id| (id, r)))
                            .collect(),
                    );
                }
                pending
                    .as_ref()
                    .and_then(|p| p.get(&id))
                    .and_then(|resource| cached(kind, resource.clone(), true))
            }
            None => None,
        };
        out.push((kind, id, found));
    }
    Ok(out)
}

/// A cache row for an object this run created, from the body it sent (plus its id).
pub fn cache_row(kind: ObjectKind, resource: Value) -> Option<CachedObject> {
    cached(kind, resource, false)
}

/// A resource read from the target as a cache row (`pending`: found among pending users).
fn cached(kind: ObjectKind, resource: Value, pending: bool) -> Option<CachedObject> {
    match kind {
        ObjectKind::User => to_user(&resource, false).map(|mut u| {
            u.pending |= pending;
            cached_user(&u)
        }),
        ObjectKind::Group => to_group(resource).map(|g| cached_group(&g)),
    }
}

fn pending_filter() -> Filter {
    Filter::Attr(AttrExp::Comparison(
        AttrPath {
            uri: Some(scim::urn::IIJ_USER.to_string()),
            name: STATE_ATTR.to_string(),
            sub_attr: None,
        },
        CompareOp::Eq,
        CompValue::Str(PENDING.to_string()),
    ))
}

/// Reads every user and group. `whole_resources` false (no scope filter needs them): what
/// the planner never compares is dropped as each page arrives — a user's `groups` (not even
/// asked for, where the target honours `excludedAttributes`) and `meta`, a group's `meta` and
/// its `members` once they are kept as ids — which is most of a resource's size.
///
/// `each_user` sees every user as it arrives, with the resource as read (before anything is
/// dropped from it), and may change the user before it is kept: a full run stores cache rows
/// and shares resources there, so that 100,000 users are never held in two forms.
pub async fn read(
    client: &ScimClient,
    keeps_pending: bool,
    whole_resources: bool,
    each_user: &mut dyn FnMut(&Value, &mut TargetUser),
) -> Result<TargetSnapshot, ClientError> {
    let mut users: Vec<TargetUser> = Vec::new();
    let excluded: &[(&str, &str)] = if whole_resources {
        &[]
    } else {
        &[("excludedAttributes", "groups")]
    };
    let mut keep_user = |resource: Value| {
        if let Some(mut user) = to_user(&resource, !whole_resources) {
            each_user(&resource, &mut user);
            users.push(user);
        }
    };
    match client
        .list_each(ResourceKind::Users, None, excluded, &mut keep_user)
        .await
    {
        // A target that does not take `excludedAttributes`: the plain list.
        Err(ClientError::Rejected(e)) if e.status == 400 && !excluded.is_empty() => {
            client
                .list_each(ResourceKind::Users, None, &[], &mut keep_user)
                .await?;
        }
        other => {
            other?;
        }
    }
    if keeps_pending {
        let pending_filter = pending_filter();
        let known: std::collections::HashSet<String> = users.iter().map(|u| u.id.clone()).collect();
        let pending = client
            .list(ResourceKind::Users, Some(&pending_filter), None)
            .await?;
        for resource in pending {
            if let Some(mut user) = to_user(&resource, !whole_resources)
                && !known.contains(&user.id)
            {
                user.pending = true;
                each_user(&resource, &mut user);
                users.push(user);
            }
        }
    }
    let mut groups = Vec::new();
    client
        .list_each(ResourceKind::Groups, None, &[], |resource| {
            if let Some(mut group) = to_group(resource) {
                if !whole_resources {
                    strip(&mut group.resource, GROUP_UNCOMPARED);
                }
                groups.push(group);
            }
        })
        .await?;
    Ok(TargetSnapshot { users, groups })
}

/// What the planner never compares, dropped from target resources when no scope filter
/// needs them: a user's `groups` and `meta`, a group's `meta` and its `members` (kept as ids
/// in `TargetGroup::members`).
const USER_UNCOMPARED: &[&str] = &["groups", "meta"];
const GROUP_UNCOMPARED: &[&str] = &["members", "meta"];

/// Removes top-level attributes (case-insensitively).
fn strip(resource: &mut Value, names: &[&str]) {
    if let Some(map) = resource.as_object_mut() {
        map.retain(|k, _| !names.iter().any(|n| n.eq_ignore_ascii_case(k)));
    }
}

/// A string attribute of a resource, found case-insensitively.
pub fn str_field(resource: &Value, key: &str) -> Option<String> {
    scim::resource::member(resource, key)
        .and_then(Value::as_str)
        .map(str::to_string)
}

/// A target user, its resource kept as text; `uncompared_dropped`: without what the planner
/// never compares ([`USER_UNCOMPARED`]).
fn to_user(resource: &Value, uncompared_dropped: bool) -> Option<TargetUser> {
    let id = str_field(resource, "id")?;
    // default: a user without userName is kept with an empty one (the planner reports it).
    let user_name = str_field(resource, "userName").unwrap_or_default();
    let active = scim::resource::member(resource, "active")
        .and_then(Value::as_bool)
        .unwrap_or(true);
    let extension = scim::resource::member(resource, scim::urn::IIJ_USER);
    let pending = extension
        .and_then(|e| scim::resource::member(e, STATE_ATTR))
        .and_then(Value::as_str)
        .is_some_and(|s| s == PENDING);
    let pending_since = extension
        .and_then(|e| scim::resource::member(e, "pendingDeletionSince"))
        .and_then(Value::as_str)
        .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
        .map(|d| d.with_timezone(&Utc));
    let text = if uncompared_dropped {
        let mut kept = resource.clone();
        strip(&mut kept, USER_UNCOMPARED);
        JsonText::new(&kept)
    } else {
        JsonText::new(resource)
    };
    Some(TargetUser {
        id,
        external_id: str_field(resource, "externalId"),
        user_name,
        active,
        pending,
        pending_since,
        resource: text,
    })
}

fn to_group(resource: Value) -> Option<TargetGroup> {
    let id = str_field(&resource, "id")?;
    let members = scim::resource::member(&resource, "members")
        .and_then(Value::as_array)
        .map(|items| {
            items
                .iter()
                .filter_map(|m| scim::resource::member(m, "value").and_then(Value::as_str))
                .map(str::to_string)
                .collect()
        })
        // default: a group without `members` has none.
        .unwrap_or_default();
    Some(TargetGroup {
        id,
        // default: a group without displayName is kept with an empty one.
        display_name: str_field(&resource, "displayName").unwrap_or_default(),
        external_id: str_field(&resource, "externalId"),
        members,
        resource,
    })
}
