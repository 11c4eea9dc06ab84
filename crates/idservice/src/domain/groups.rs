//! Groups: create, read, replace, patch, delete, list, with `members` kept relationally.
//!
//! Rules: `displayName` is required and unique (case-insensitive), because two directory
//! groups with one name cannot both exist in the target (behaviour §4.2); `externalId` is unique.
//! Members must name existing users or groups (else 400 invalidValue). Users pending
//! deletion keep their memberships but are hidden from `members` until restored.

use std::collections::HashSet;

use scim::schema::ResourceSchema;
use scim::{
    AttrExp, CompValue, CompareOp, OperationTarget, PatchOperation, PatchPath, ScimError, ValFilter,
};
use serde_json::{Map, Value, json};

use super::rules::{MSG_DISPLAY_NAME_TAKEN, MSG_EXTERNAL_ID_TAKEN};
use super::{ListPage, ListQuery, Service, check_if_match, db, meta, now, resource_text};
use crate::store::Conn;
use crate::store::filter_sql::Kind;
use crate::store::groups::{self as sg, GroupRow, Member};
use crate::store::search;

fn schema() -> &'static ResourceSchema {
    scim::schema::group()
}

/// A validated Group body.
#[derive(Debug, Clone)]
pub struct PreparedGroup {
    /// Canonical resource without id, meta and members.
    pub resource: Value,
    pub display_name: String,
    pub display_name_lc: String,
    pub external_id: Option<String>,
    /// Member ids, in request order, without duplicates.
    pub members: Vec<String>,
}

fn member_ids(items: &[Value]) -> Result<Vec<String>, ScimError> {
    let mut seen = HashSet::new();
    let mut out = Vec::with_capacity(items.len());
    for m in items {
        let id = scim::resource::member(m, "value")
            .and_then(Value::as_str)
            .ok_or_else(|| ScimError::invalid_value("every member needs a string \"value\""))?;
        if seen.insert(id.to_string()) {
            out.push(id.to_string());
        }
    }
    Ok(out)
}

/// Validates and normalises a Group body.
pub fn prepare(body: Value) -> Result<PreparedGroup, ScimError> {
    let mut body = body;
    if !body.is_object() {
        return Err(ScimError::invalid_syntax("a Group must be a JSON object"));
    }
    scim::resource::canonicalize(&mut body, schema());
    let Some(map) = body.as_object_mut() else {
        return Err(ScimError::invalid_syntax("a Group must be a JSON object"));
    };
    map.remove("id");
    map.remove("meta");
    let members = match map.remove("members") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(items)) => member_ids(&items)?,
        Some(_) => return Err(ScimError::invalid_value("members must be an array")),
    };
    let display_name = match map.get("displayName") {
        Some(Value::String(s)) if !s.trim().is_empty() => s.clone(),
        Some(Value::String(_)) | None | Some(Value::Null) => {
            return Err(ScimError::invalid_value("displayName is required"));
        }
        Some(_) => return Err(ScimError::invalid_value("displayName must be a string")),
    };
    let external_id = match map.get("externalId") {
        Some(Value::String(s)) if !s.is_empty() => Some(s.clone()),
        None | Some(Value::Null) | Some(Value::String(_)) => {
            map.remove("externalId");
            None
        }
        Some(_) => return Err(ScimError::invalid_value("externalId must be a string")),
    };
    super::rules::check_lengths(&body)?;
    Ok(PreparedGroup {
        display_name_lc: display_name.to_lowercase(),
        display_name,
        external_id,
        members,
        resource: body,
    })
}

async fn check_unique(
    conn: &mut Conn,
    p: &PreparedGroup,
    own_id: Option<&str>,
) -> Result<(), ScimError> {
    let found = sg::find_by_keys(conn, &p.display_name_lc, p.external_id.as_deref())
        .await
        .map_err(db)?;
    let others: Vec<&GroupRow> = found
        .iter()
        .filter(|g| Some(g.id.as_str()) != own_id)
        .collect();
    if p.external_id.is_some() && others.iter().any(|g| g.external_id == p.external_id) {
        return Err(ScimError::uniqueness(MSG_EXTERNAL_ID_TAKEN));
    }
    if !others.is_empty() {
        return Err(ScimError::uniqueness(MSG_DISPLAY_NAME_TAKEN));
    }
    Ok(())
}

/// Resolves member ids to (id, type); an unknown id is a 400 invalidValue.
async fn resolve_members(
    conn: &mut Conn,
    ids: &[String],
    group_id: &str,
) -> Result<Vec<(String, String)>, ScimError> {
    let kinds = sg::member_kinds(conn, ids).await.map_err(db)?;
    let mut out = Vec::with_capacity(ids.len());
    for id in ids {
        if id == group_id {
            return Err(ScimError::invalid_value(
                "a group cannot be a member of itself",
            ));
        }
        match kinds.get(id) {
            Some(ty) => out.push((id.clone(), ty.clone())),
            None => {
                return Err(ScimError::invalid_value(format!(
                    "member {id} does not name an existing User or Group"
                )));
            }
        }
    }
    Ok(out)
}

pub fn location(base: &str, id: &str) -> String {
    format!("{base}/Groups/{id}")
}

fn member_json(m: &Member, base: &str) -> Value {
    let kind = if m.ty == "Group" { "Groups" } else { "Users" };
    let mut o = Map::new();
    o.insert("value".into(), Value::String(m.value.clone()));
    o.insert(
        "$ref".into(),
        Value::String(format!("{base}/{kind}/{}", m.value)),
    );
    o.insert("type".into(), Value::String(m.ty.clone()));
    if let Some(d) = &m.display {
        o.insert("display".into(), Value::String(d.clone()));
    }
    Value::Object(o)
}

/// The SCIM representation; `with_members = false` skips the membership query (when the
/// projection leaves `members` out).
pub async fn render(
    conn: &mut Conn,
    row: &GroupRow,
    base: &str,
    with_members: bool,
) -> Result<Value, ScimError> {
    let members = if with_members {
        sg::members(conn, &row.id, false).await.map_err(db)?
    } else {
        Vec::new()
    };
    Ok(render_with(row, &members, base))
}

fn render_with(row: &GroupRow, members: &[Member], base: &str) -> Value {
    let stored: Map<String, Value> = match serde_json::from_str(&row.resource) {
        Ok(Value::Object(m)) => m,
        _ => Map::new(),
    };
    let mut out = Map::with_capacity(stored.len() + 4);
    out.insert(
        "schemas".into(),
        stored
            .get("schemas")
            .cloned()
            .unwrap_or_else(|| json!([scim::urn::GROUP])),
    );
    out.insert("id".into(), Value::String(row.id.clone()));
    for (k, v) in stored {
        if k != "schemas" {
            out.insert(k, v);
        }
    }
    if !members.is_empty() {
        out.insert(
            "members".into(),
            Value::Array(members.iter().map(|m| member_json(m, base)).collect()),
        );
    }
    out.insert(
        "meta".into(),
        meta(
            "Group",
            &row.created,
            &row.last_modified,
            location(base, &row.id),
            row.version,
        ),
    );
    Value::Object(out)
}

/// The row storing `p` under `id`.
fn row_of(
    p: &PreparedGroup,
    id: String,
    created: String,
    last_modified: String,
    version: i64,
) -> Result<GroupRow, ScimError> {
    Ok(GroupRow {
        id,
        display_name: p.display_name.clone(),
        display_name_lc: p.display_name_lc.clone(),
        external_id: p.external_id.clone(),
        created,
        last_modified,
        version,
        resource: resource_text(&p.resource)?,
    })
}

fn map_unique(e: sqlx::Error) -> ScimError {
    if crate::store::is_unique_violation(&e) {
        if e.to_string().contains("external_id") {
            ScimError::uniqueness(MSG_EXTERNAL_ID_TAKEN)
        } else {
            ScimError::uniqueness(MSG_DISPLAY_NAME_TAKEN)
        }
    } else {
        db(e)
    }
}

/// POST /Groups inside a transaction. `with_members`: the returned resource lists the
/// members (a Bulk operation only answers location and version, and rendering a large
/// group's members joins every member's row).
pub async fn create_in(
    conn: &mut Conn,
    body: Value,
    base: &str,
    with_members: bool,
) -> Result<Value, ScimError> {
    let p = prepare(body)?;
    check_unique(conn, &p, None).await?;
    let id = uuid::Uuid::new_v4().to_string();
    let members = resolve_members(conn, &p.members, &id).await?;
    let at = now();
    let row = row_of(&p, id.clone(), at.clone(), at, 1)?;
    sg::insert(conn, &row).await.map_err(map_unique)?;
    sg::add_members(conn, &id, &members).await.map_err(db)?;
    render(conn, &row, base, with_members).await
}

fn not_found(id: &str) -> ScimError {
    ScimError::not_found(format!("Group {id} not found"))
}

async fn existing(conn: &mut Conn, id: &str) -> Result<GroupRow, ScimError> {
    sg::get(conn, id)
        .await
        .map_err(db)?
        .ok_or_else(|| not_found(id))
}

/// GET /Groups/{id}.
pub async fn get(
    svc: &Service,
    id: &str,
    base: &str,
    with_members: bool,
) -> Result<Value, ScimError> {
    let mut conn = svc.store.read().await.map_err(db)?;
    let row = existing(&mut conn, id).await?;
    render(&mut conn, &row, base, with_members).await
}

/// Stores a new version of a group: its attributes and the member set `new_members`
/// (compared with the visible members; hidden pending members are left alone).
async fn store_replacement(
    conn: &mut Conn,
    old: GroupRow,
    p: PreparedGroup,
    base: &str,
) -> Result<Value, ScimError> {
    if p.display_name_lc != old.display_name_lc || p.external_id != old.external_id {
        check_unique(conn, &p, Some(&old.id)).await?;
    }
    let before: HashSet<String> = sg::members(conn, &old.id, false)
        .await
        .map_err(db)?
        .into_iter()
        .map(|m| m.value)
        .collect();
    let after: HashSet<&String> = p.members.iter().collect();
    let removed: Vec<String> = before
        .iter()
        .filter(|id| !after.contains(id))
        .cloned()
        .collect();
    let added_ids: Vec<String> = p
        .members
        .iter()
        .filter(|id| !before.contains(*id))
        .cloned()
        .collect();
    let added = resolve_members(conn, &added_ids, &old.id).await?;
    let row = row_of(
        &p,
        old.id.clone(),
        old.created.clone(),
        now(),
        old.version + 1,
    )?;
    sg::update(conn, &row).await.map_err(map_unique)?;
    sg::remove_members(conn, &row.id, &removed)
        .await
        .map_err(db)?;
    sg::add_members(conn, &row.id, &added).await.map_err(db)?;
    render(conn, &row, base, true).await
}

/// PUT /Groups/{id}.
pub async fn replace_in(
    conn: &mut Conn,
    id: &str,
    body: Value,
    if_match: Option<&str>,
    base: &str,
) -> Result<Value, ScimError> {
    let old = existing(conn, id).await?;
    check_if_match(if_match, old.version)?;
    let p = prepare(body)?;
    store_replacement(conn, old, p, base).await
}

/// A membership change that can be applied row by row, without loading the group.
enum MemberDelta {
    Add(Vec<String>),
    Remove(Vec<String>),
}

fn is_members(p: &scim::AttrPath) -> bool {
    p.name.eq_ignore_ascii_case("members")
        && p.sub_attr.is_none()
        && p.uri
            .as_deref()
            .is_none_or(|u| u.eq_ignore_ascii_case(scim::urn::GROUP))
}

/// Recognises PATCHes that only add members or remove members by id (what sync agents
/// send for large groups), so they cost one row per member instead of a full rewrite.
fn member_fast_path(ops: &[PatchOperation]) -> Option<Vec<MemberDelta>> {
    let ids = |v: &Value| match v {
        Value::Array(items) => member_ids(items).ok(),
        _ => None,
    };
    let mut out = Vec::with_capacity(ops.len());
    for op in ops {
        match op {
            PatchOperation::Add(OperationTarget::WithPath {
                path: PatchPath::Attr(p),
                value: Some(v),
            }) if is_members(p) => {
                out.push(MemberDelta::Add(ids(v)?));
            }
            PatchOperation::Remove {
                path: PatchPath::Attr(p),
                value: Some(v),
            } if is_members(p) => {
                out.push(MemberDelta::Remove(ids(v)?));
            }
            PatchOperation::Remove {
                path: PatchPath::Value(vp),
                value: None,
            } if is_members(&vp.attr) && vp.sub_attr.is_none() => match &vp.filter {
                ValFilter::Attr(AttrExp::Comparison(p, CompareOp::Eq, CompValue::Str(id)))
                    if p.name.eq_ignore_ascii_case("value") && p.sub_attr.is_none() =>
                {
                    out.push(MemberDelta::Remove(vec![id.clone()]));
                }
                _ => return None,
            },
            _ => return None,
        }
    }
    Some(out)
}

/// PATCH /Groups/{id}.
pub async fn patch_in(
    conn: &mut Conn,
    id: &str,
    body: &Value,
    if_match: Option<&str>,
    base: &str,
) -> Result<Value, ScimError> {
    let req = scim::patch::parse_request(body)?;
    let old = existing(conn, id).await?;
    check_if_match(if_match, old.version)?;
    if let Some(deltas) = member_fast_path(&req.operations) {
        for d in deltas {
            match d {
                MemberDelta::Add(ids) => {
                    let resolved = resolve_members(conn, &ids, &old.id).await?;
                    sg::add_members(conn, &old.id, &resolved)
                        .await
                        .map_err(db)?;
                }
                MemberDelta::Remove(ids) => {
                    sg::remove_members(conn, &old.id, &ids).await.map_err(db)?
                }
            }
        }
        let mut row = old;
        row.last_modified = now();
        row.version += 1;
        sg::update(conn, &row).await.map_err(db)?;
        return render(conn, &row, base, true).await;
    }
    let members = sg::members(conn, &old.id, false).await.map_err(db)?;
    let mut resource = render_with(&old, &members, base);
    scim::patch::apply(&mut resource, &req.operations, schema())?;
    let p = prepare(resource)?;
    store_replacement(conn, old, p, base).await
}

/// DELETE /Groups/{id}: groups have no pending state (behaviour §4.2).
pub async fn delete_in(conn: &mut Conn, id: &str, if_match: Option<&str>) -> Result<(), ScimError> {
    let old = existing(conn, id).await?;
    check_if_match(if_match, old.version)?;
    sg::delete(conn, id).await.map_err(db)
}

/// GET /Groups with filter, sort and page.
pub async fn list(svc: &Service, q: &ListQuery, base: &str) -> Result<ListPage, ScimError> {
    list_with(svc, q, base, true).await
}

/// [`list`], optionally without loading members.
pub async fn list_with(
    svc: &Service,
    q: &ListQuery,
    base: &str,
    with_members: bool,
) -> Result<ListPage, ScimError> {
    let spec = q.search_spec(Kind::Group, true, svc)?;
    let (found, rows) = search::groups(&svc.store, &spec)
        .await
        .map_err(super::search_error)?;
    let mut conn = svc.store.read().await.map_err(db)?;
    let mut resources = Vec::with_capacity(rows.len());
    for row in &rows {
        resources.push(render(&mut conn, row, base, with_members).await?);
    }
    Ok(ListPage::new(&found, &spec, resources))
}
