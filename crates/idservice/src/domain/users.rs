//! Users: create (and restore), read, replace, patch, delete into pending deletion, list,
//! and purge. Applies the behaviour §7.2 rules and the behaviour §7.3 states.
//!
//! States: `active` / `disabled` follow the `active` attribute; DELETE moves a user to
//! `pendingDeletion` (it keeps userName and externalId, it is hidden from reads, lists and
//! `members`, and its memberships are kept but hidden). A POST with the same userName *and*
//! externalId as a pending user restores it (same id; attributes overwritten from the request).

use scim::ScimError;
use scim::schema::{Mutability, ResourceSchema};
use serde_json::{Map, Value, json};
use std::collections::HashMap;

use super::password::{Prehashed, hash_blocking};
use super::rules::{
    self, MSG_EXTERNAL_ID_TAKEN, MSG_IMMUTABLE_ID_TAKEN, MSG_ORGANIZATION_NOT_FOUND,
    MSG_USER_NAME_TAKEN,
};
use super::{ListPage, ListQuery, Service, check_if_match, db, meta, now, resource_text};
use crate::store::filter_sql::{self, Kind};
use crate::store::search;
use crate::store::users::{self as su, UserRow};
use crate::store::{Conn, admin};

pub const STATE_ACTIVE: &str = "active";
pub const STATE_DISABLED: &str = "disabled";
pub const STATE_PENDING: &str = "pendingDeletion";

fn schema() -> &'static ResourceSchema {
    scim::schema::user()
}

/// A validated request body, ready to store.
#[derive(Debug, Clone)]
pub struct PreparedUser {
    /// Canonical resource without read-only attributes and without `password`.
    pub resource: Value,
    /// Hash of the `password` the body carried ([`super::password::hash`]); `None` keeps the
    /// stored one (a client cannot read a writeOnly password back to resend it in a PUT).
    pub password_hash: Option<String>,
    pub user_name: String,
    pub user_name_lc: String,
    pub external_id: Option<String>,
    pub active: bool,
}

/// Removes what clients may not set (RFC 7643 readOnly): id, meta, groups, the IIJ state.
fn strip_read_only(map: &mut Map<String, Value>) {
    for key in ["id", "meta", "groups"] {
        map.remove(key);
    }
    if let Some(Value::Object(ext)) = map.get_mut(scim::urn::IIJ_USER) {
        ext.remove("state");
        ext.remove("pendingDeletionSince");
    }
    // An extension object left empty by the stripping is dropped with its schema URN.
    if matches!(map.get(scim::urn::IIJ_USER), Some(Value::Object(o)) if o.is_empty()) {
        map.remove(scim::urn::IIJ_USER);
        if let Some(Value::Array(s)) = map.get_mut("schemas") {
            s.retain(|v| v.as_str() != Some(scim::urn::IIJ_USER));
        }
    }
}

/// Validates and normalises a User body (POST, PUT, or the result of a PATCH). A password is
/// hashed by [`Prehashed`] before the transaction; one it missed is hashed here.
pub async fn prepare(body: Value, pre: &Prehashed) -> Result<PreparedUser, ScimError> {
    let mut body = body;
    if !body.is_object() {
        return Err(ScimError::invalid_syntax("a User must be a JSON object"));
    }
    scim::resource::canonicalize(&mut body, schema());
    let Some(map) = body.as_object_mut() else {
        return Err(ScimError::invalid_syntax("a User must be a JSON object"));
    };
    strip_read_only(map);
    let user_name = match map.get("userName") {
        Some(Value::String(s)) if !s.trim().is_empty() => s.clone(),
        Some(Value::String(_)) | None | Some(Value::Null) => {
            return Err(ScimError::invalid_value("userName is required"));
        }
        Some(_) => return Err(ScimError::invalid_value("userName must be a string")),
    };
    let external_id = match map.get("externalId") {
        Some(Value::String(s)) if !s.is_empty() => Some(s.clone()),
        None | Some(Value::Null) => None,
        Some(Value::String(_)) => {
            map.remove("externalId");
            None
        }
        Some(_) => return Err(ScimError::invalid_value("externalId must be a string")),
    };
    let active = match map.get("active") {
        Some(Value::Bool(b)) => *b,
        None | Some(Value::Null) => true,
        Some(_) => return Err(ScimError::invalid_value("active must be a boolean")),
    };
    map.insert("active".into(), Value::Bool(active));
    // RFC 7643 §4.1.1: writeOnly, returned never. Only its hash is kept, outside the resource.
    let password_hash = match map.remove("password") {
        Some(Value::String(s)) => {
            let mut s = zeroize::Zeroizing::new(s);
            super::password::check_policy(&s)
                .map_err(|e| ScimError::invalid_value(e.to_string()))?;
            match pre.take(&s) {
                Some(h) => Some(h),
                None => {
                    Some(hash_blocking(zeroize::Zeroizing::new(std::mem::take(&mut *s))).await?)
                }
            }
        }
        None | Some(Value::Null) => None,
        Some(_) => return Err(ScimError::invalid_value("password must be a string")),
    };
    rules::check_user(&body)?;
    rules::check_lengths(&body)?;
    Ok(PreparedUser {
        password_hash,
        user_name_lc: user_name.to_lowercase(),
        user_name,
        external_id,
        active,
        resource: body,
    })
}

/// The registered-domain rule. With no domain registered the rule is off (a fresh install
/// works); once one is, every userName must be `local@registered-domain`.
async fn check_domain(conn: &mut Conn, user_name: &str) -> Result<(), ScimError> {
    let domain = rules::user_name_domain(user_name).unwrap_or_default();
    let ok = crate::store::admin::domain_allowed(conn, &domain)
        .await
        .map_err(db)?;
    if ok {
        Ok(())
    } else {
        Err(ScimError::not_found(MSG_ORGANIZATION_NOT_FOUND))
    }
}

/// The IIJ `downstreamId` a resource carries (trimmed, not blank).
fn downstream_id_of(resource: &Value) -> Option<&str> {
    resource
        .get(scim::urn::IIJ_USER)
        .and_then(|e| e.get("downstreamId"))
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|s| !s.is_empty())
}

/// The immutable id of a user (behaviour §7.6): the first available of the IIJ
/// `downstreamId`, the `externalId`, the service's own `id`. Linked applications know the
/// user's downstream account by it.
pub fn immutable_id(user: &UserRow) -> String {
    let resource: Value = serde_json::from_str(&user.resource).unwrap_or(Value::Null);
    immutable_of(&resource, user.external_id.as_deref(), &user.id).to_string()
}

fn immutable_of<'a>(resource: &'a Value, external_id: Option<&'a str>, id: &'a str) -> &'a str {
    downstream_id_of(resource)
        .or(external_id.filter(|s| !s.is_empty()))
        .unwrap_or(id)
}

/// A downstream account follows its immutable id, so a write may not give user `id` the
/// immutable id of another user: a `downstreamId` equal to another user's externalId or id,
/// or an immutable id another user's link already holds, is a 409 (and an audit event).
/// Otherwise a client with a write token could take over another user's downstream account.
async fn check_immutable_id(conn: &mut Conn, p: &PreparedUser, id: &str) -> Result<(), ScimError> {
    let downstream = downstream_id_of(&p.resource);
    if let Some(d) = downstream
        && su::holds_key(conn, d, id).await.map_err(db)?
    {
        return Err(immutable_conflict(p, id, "another user's externalId or id"));
    }
    let immutable = immutable_of(&p.resource, p.external_id.as_deref(), id);
    if let Some(other) = crate::store::apps::immutable_holder(conn, immutable, id)
        .await
        .map_err(db)?
    {
        let what = format!(
            "the immutable id of {}'s account in {}",
            other.user_name, other.app
        );
        return Err(immutable_conflict(p, id, &what));
    }
    Ok(())
}

fn immutable_conflict(p: &PreparedUser, id: &str, what: &str) -> ScimError {
    tracing::warn!(target: "audit", event = "immutable_id_conflict", user_name = %p.user_name,
        id = %id, holder = %what, "write refused: its downstreamId/externalId belongs to another user");
    ScimError::uniqueness(MSG_IMMUTABLE_ID_TAKEN)
}

/// What the uniqueness check found for a create.
enum Collision {
    None,
    /// A pending user with the same userName and externalId: restore it.
    Restore(Box<UserRow>),
}

/// Uniqueness of userName (case-insensitive) and externalId, pending users included.
/// `own_id` excludes the user being updated.
async fn check_unique(
    conn: &mut Conn,
    p: &PreparedUser,
    own_id: Option<&str>,
) -> Result<Collision, ScimError> {
    let found = su::find_by_keys(conn, &p.user_name_lc, p.external_id.as_deref())
        .await
        .map_err(db)?;
    let others: Vec<UserRow> = found
        .into_iter()
        .filter(|u| Some(u.id.as_str()) != own_id)
        .collect();
    if others.is_empty() {
        return Ok(Collision::None);
    }
    if own_id.is_none()
        && let [only] = others.as_slice()
        && only.state == STATE_PENDING
        && only.user_name_lc == p.user_name_lc
        && p.external_id.is_some()
        && only.external_id == p.external_id
    {
        return Ok(Collision::Restore(Box::new(only.clone())));
    }
    if p.external_id.is_some() && others.iter().any(|u| u.external_id == p.external_id) {
        return Err(ScimError::uniqueness(MSG_EXTERNAL_ID_TAKEN));
    }
    Err(ScimError::uniqueness(MSG_USER_NAME_TAKEN))
}

fn state_of(active: bool) -> &'static str {
    if active { STATE_ACTIVE } else { STATE_DISABLED }
}

/// The user's location.
pub fn location(base: &str, id: &str) -> String {
    format!("{base}/Users/{id}")
}

/// The full SCIM representation: stored attributes plus id, computed `groups`, the IIJ
/// state, and meta.
pub async fn render(conn: &mut Conn, row: &UserRow, base: &str) -> Result<Value, ScimError> {
    let pending = row.state == STATE_PENDING;
    let groups = if pending {
        Vec::new()
    } else {
        su::groups_of(conn, &row.id).await.map_err(db)?
    };
    Ok(render_with_groups(row, &groups, base))
}

/// [`render`] with the groups already known (none for a new user).
pub fn render_with_groups(row: &UserRow, groups: &[(String, String)], base: &str) -> Value {
    let stored: Map<String, Value> = match serde_json::from_str(&row.resource) {
        Ok(Value::Object(m)) => m,
        _ => Map::new(),
    };
    render_stored(row, stored, groups, base)
}

/// [`render_with_groups`] from the stored attributes as a map (not read back from the row).
fn render_stored(
    row: &UserRow,
    stored: Map<String, Value>,
    groups: &[(String, String)],
    base: &str,
) -> Value {
    let mut out = Map::with_capacity(stored.len() + 5);
    let mut schemas = match stored.get("schemas") {
        Some(Value::Array(s)) => s.clone(),
        _ => vec![json!(scim::urn::USER)],
    };
    if !schemas
        .iter()
        .any(|s| s.as_str() == Some(scim::urn::IIJ_USER))
    {
        schemas.push(json!(scim::urn::IIJ_USER));
    }
    out.insert("schemas".into(), Value::Array(schemas));
    out.insert("id".into(), Value::String(row.id.clone()));
    let mut ext = Map::new();
    for (k, v) in stored {
        match k.as_str() {
            "schemas" => {}
            "active" => {
                out.insert(k, Value::Bool(row.active));
            }
            scim::urn::IIJ_USER => {
                if let Value::Object(m) = v {
                    ext = m;
                }
            }
            _ => {
                out.insert(k, v);
            }
        }
    }
    if !groups.is_empty() {
        let g: Vec<Value> = groups
            .iter()
            .map(|(id, name)| {
                json!({"value": id, "$ref": format!("{base}/Groups/{id}"), "display": name, "type": "direct"})
            })
            .collect();
        out.insert("groups".into(), Value::Array(g));
    }
    ext.insert("state".into(), Value::String(row.state.clone()));
    if let Some(since) = &row.pending_since {
        ext.insert("pendingDeletionSince".into(), Value::String(since.clone()));
    }
    out.insert(scim::urn::IIJ_USER.into(), Value::Object(ext));
    out.insert(
        "meta".into(),
        meta(
            "User",
            &row.created,
            &row.last_modified,
            location(base, &row.id),
            row.version,
        ),
    );
    Value::Object(out)
}

/// The row storing `p` (active or disabled, not pending) under `id`.
fn row_of(
    p: &PreparedUser,
    id: String,
    created: String,
    last_modified: String,
    version: i64,
) -> Result<UserRow, ScimError> {
    Ok(UserRow {
        id,
        user_name: p.user_name.clone(),
        user_name_lc: p.user_name_lc.clone(),
        external_id: p.external_id.clone(),
        active: p.active,
        state: state_of(p.active).to_string(),
        pending_since: None,
        created,
        last_modified,
        version,
        resource: resource_text(&p.resource)?,
    })
}

/// A new user that Bulk inserts together with others (one statement for many rows): its row
/// and its resource, kept to answer with (encoded once for the row, never parsed back).
pub struct NewUser {
    pub row: UserRow,
    resource: Value,
}

impl NewUser {
    /// The row for `p` under a fresh id, created at `at`; `None` when `p` needs the one-by-one
    /// path of [`create_in`]: a password to store, or a `downstreamId` to check against other
    /// users' externalIds and ids.
    pub fn of(p: PreparedUser, at: &str) -> Result<Option<NewUser>, ScimError> {
        if p.password_hash.is_some() || downstream_id_of(&p.resource).is_some() {
            return Ok(None);
        }
        let row = row_of(
            &p,
            uuid::Uuid::new_v4().to_string(),
            at.into(),
            at.into(),
            1,
        )?;
        Ok(Some(NewUser {
            row,
            resource: p.resource,
        }))
    }

    /// The immutable id of the new user (behaviour §7.6): its externalId, else its id.
    pub fn immutable_id(&self) -> &str {
        immutable_of(
            &self.resource,
            self.row.external_id.as_deref(),
            &self.row.id,
        )
    }

    /// The SCIM representation, as [`create_in`] answers it.
    pub fn render(self, base: &str) -> Value {
        let stored = match self.resource {
            Value::Object(m) => m,
            _ => Map::new(),
        };
        render_stored(&self.row, stored, &[], base)
    }
}

/// POST /Users inside a transaction. Returns the resource and whether a pending user was
/// restored (both answer 201).
pub async fn create_in(
    conn: &mut Conn,
    body: Value,
    pre: &Prehashed,
    base: &str,
) -> Result<(Value, bool), ScimError> {
    let p = prepare(body, pre).await?;
    check_domain(conn, &p.user_name).await?;
    let at = now();
    match check_unique(conn, &p, None).await? {
        Collision::None => {
            let row = row_of(&p, uuid::Uuid::new_v4().to_string(), at.clone(), at, 1)?;
            check_immutable_id(conn, &p, &row.id).await?;
            su::insert(conn, &row).await.map_err(map_unique)?;
            store_password(conn, &row.id, &p).await?;
            Ok((render_with_groups(&row, &[], base), false))
        }
        Collision::Restore(old) => {
            let row = row_of(&p, old.id.clone(), old.created.clone(), at, old.version + 1)?;
            check_immutable_id(conn, &p, &row.id).await?;
            su::update(conn, &row).await.map_err(map_unique)?;
            store_password(conn, &row.id, &p).await?;
            tracing::info!(id = %row.id, "user restored from pending deletion");
            Ok((render(conn, &row, base).await?, true))
        }
    }
}

/// A UNIQUE violation that slipped past the explicit check (a race) is still a 409.
fn map_unique(e: sqlx::Error) -> ScimError {
    if crate::store::is_unique_violation(&e) {
        let msg = e.to_string();
        if msg.contains("external_id") {
            ScimError::uniqueness(MSG_EXTERNAL_ID_TAKEN)
        } else {
            ScimError::uniqueness(MSG_USER_NAME_TAKEN)
        }
    } else {
        db(e)
    }
}

fn not_found(id: &str) -> ScimError {
    ScimError::not_found(format!("User {id} not found"))
}

/// A visible (not pending) user, or 404.
async fn visible(conn: &mut Conn, id: &str) -> Result<UserRow, ScimError> {
    match su::get(conn, id).await.map_err(db)? {
        Some(row) if row.state != STATE_PENDING => Ok(row),
        _ => Err(not_found(id)),
    }
}

/// GET /Users/{id}.
pub async fn get(svc: &Service, id: &str, base: &str) -> Result<Value, ScimError> {
    let mut conn = svc.store.read().await.map_err(db)?;
    let row = visible(&mut conn, id).await?;
    render(&mut conn, &row, base).await
}

/// Immutable attributes (RFC 7643 §2.2) may be set once but not changed.
fn check_immutable(old: &Value, new: &Value) -> Result<(), ScimError> {
    for sch in schema().schemas() {
        let (old_c, new_c) = if sch.id == schema().core.id {
            (Some(old), Some(new))
        } else {
            (old.get(sch.id), new.get(sch.id))
        };
        for a in sch
            .attributes
            .iter()
            .filter(|a| a.mutability == Mutability::Immutable)
        {
            let before = old_c.and_then(|o| o.get(a.name));
            let after = new_c.and_then(|o| o.get(a.name));
            if before.is_some_and(|b| !b.is_null()) && before != after {
                return Err(ScimError::mutability(format!("{} is immutable", a.name)));
            }
        }
    }
    Ok(())
}

/// Writes a replacement of an existing user (PUT, or the result of a PATCH).
async fn store_replacement(
    conn: &mut Conn,
    old: UserRow,
    p: PreparedUser,
    base: &str,
) -> Result<Value, ScimError> {
    let old_resource: Value = serde_json::from_str(&old.resource).unwrap_or(Value::Null);
    check_immutable(&old_resource, &p.resource)?;
    if p.user_name_lc != old.user_name_lc {
        check_domain(conn, &p.user_name).await?;
    }
    if p.user_name_lc != old.user_name_lc || p.external_id != old.external_id {
        check_unique(conn, &p, Some(&old.id)).await?;
    }
    // An unchanged immutable id is this user's own: nothing to check.
    let old_immutable = immutable_of(&old_resource, old.external_id.as_deref(), &old.id);
    if immutable_of(&p.resource, p.external_id.as_deref(), &old.id) != old_immutable {
        check_immutable_id(conn, &p, &old.id).await?;
    }
    let row = row_of(
        &p,
        old.id.clone(),
        old.created.clone(),
        now(),
        old.version + 1,
    )?;
    su::update(conn, &row).await.map_err(map_unique)?;
    store_password(conn, &row.id, &p).await?;
    if p.password_hash.is_some() || (old.active && !row.active) {
        end_sign_ins(conn, &row.id).await?;
    }
    render(conn, &row, base).await
}

/// Ends what lets the user in without the current password: the sessions signed in on the
/// web pages and the open reset links (after a password change, a disable or a deletion).
async fn end_sign_ins(conn: &mut Conn, id: &str) -> Result<(), ScimError> {
    crate::store::account::remove_user_sessions(conn, id)
        .await
        .map_err(db)?;
    crate::store::account::revoke_resets(conn, id, &now())
        .await
        .map_err(db)
}

/// Saves the hash of the password the request carried, if it carried one.
async fn store_password(conn: &mut Conn, id: &str, p: &PreparedUser) -> Result<(), ScimError> {
    match &p.password_hash {
        Some(h) => {
            su::set_password_hash(conn, id, h).await.map_err(db)?;
            // The password's age (expiry) is sign-in state, kept outside the users row.
            crate::web::account::password_set(conn, id, &now())
                .await
                .map_err(db)
        }
        None => Ok(()),
    }
}

/// PUT /Users/{id}.
pub async fn replace_in(
    conn: &mut Conn,
    id: &str,
    body: Value,
    pre: &Prehashed,
    if_match: Option<&str>,
    base: &str,
) -> Result<Value, ScimError> {
    let old = visible(conn, id).await?;
    check_if_match(if_match, old.version)?;
    let p = prepare(body, pre).await?;
    store_replacement(conn, old, p, base).await
}

/// PATCH /Users/{id}: applies the operations to the stored resource, then stores it as a
/// replacement (so every rule is checked on the result).
pub async fn patch_in(
    conn: &mut Conn,
    id: &str,
    body: &Value,
    pre: &Prehashed,
    if_match: Option<&str>,
    base: &str,
) -> Result<Value, ScimError> {
    let req = scim::patch::parse_request(body)?;
    let old = visible(conn, id).await?;
    check_if_match(if_match, old.version)?;
    let mut resource: Value = serde_json::from_str(&old.resource).unwrap_or_else(|_| json!({}));
    if let Value::Object(m) = &mut resource {
        m.insert("id".into(), Value::String(old.id.clone()));
    }
    scim::patch::apply(&mut resource, &req.operations, schema())?;
    let p = prepare(resource, pre).await?;
    store_replacement(conn, old, p, base).await
}

/// DELETE /Users/{id}: moves the user to pending deletion.
pub async fn delete_in(conn: &mut Conn, id: &str, if_match: Option<&str>) -> Result<(), ScimError> {
    let mut row = visible(conn, id).await?;
    check_if_match(if_match, row.version)?;
    let at = now();
    row.state = STATE_PENDING.to_string();
    row.pending_since = Some(at.clone());
    row.active = false;
    row.last_modified = at;
    row.version += 1;
    su::update(conn, &row).await.map_err(db)?;
    end_sign_ins(conn, &row.id).await?;
    tracing::info!(id = %row.id, "user moved to pending deletion");
    Ok(())
}

/// GET /Users with filter, sort and page. Pending users are listed only when the filter
/// names the IIJ `state` (or `pendingDeletionSince`) attribute.
pub async fn list(svc: &Service, q: &ListQuery, base: &str) -> Result<ListPage, ScimError> {
    list_with(svc, q, base, true).await
}

/// [`list`], reading the users' `groups` only when `with_groups` (a projection that leaves
/// them out, as `dirsync --full`'s read does, spares the page's membership query).
pub async fn list_with(
    svc: &Service,
    q: &ListQuery,
    base: &str,
    with_groups: bool,
) -> Result<ListPage, ScimError> {
    let include_pending = q.filter.as_ref().is_some_and(filter_sql::mentions_state);
    let spec = q.search_spec(Kind::User, include_pending, svc)?;
    let (found, rows) = search::users(&svc.store, &spec)
        .await
        .map_err(super::search_error)?;
    let groups = if with_groups {
        page_groups(svc, &rows).await?
    } else {
        HashMap::new()
    };
    let resources = render_page(rows, groups, base).await?;
    Ok(ListPage::new(&found, &spec, resources))
}

/// The memberships of a page's users (pending users have none), in one query.
async fn page_groups(
    svc: &Service,
    rows: &[UserRow],
) -> Result<HashMap<String, Vec<(String, String)>>, ScimError> {
    let mut conn = svc.store.read().await.map_err(db)?;
    let visible: Vec<String> = rows
        .iter()
        .filter(|r| r.state != STATE_PENDING)
        .map(|r| r.id.clone())
        .collect();
    su::groups_of_many(&mut conn, &visible).await.map_err(db)
}

/// Pages at least this long are rendered on two threads.
const PARALLEL_RENDER: usize = 200;

/// Renders a list page. A long page is cut in two and the second half rendered on a
/// blocking-pool thread meanwhile: rendering (parsing each stored resource and building its
/// representation) is most of a 1,000-user page's time, and one request otherwise uses one core.
async fn render_page(
    mut rows: Vec<UserRow>,
    groups: HashMap<String, Vec<(String, String)>>,
    base: &str,
) -> Result<Vec<Value>, ScimError> {
    fn render_all(
        rows: &[UserRow],
        groups: &HashMap<String, Vec<(String, String)>>,
        base: &str,
    ) -> Vec<Value> {
        rows.iter()
            .map(|row| {
                let g = match groups.get(&row.id) {
                    Some(g) if row.state != STATE_PENDING => g.as_slice(),
                    _ => &[],
                };
                render_with_groups(row, g, base)
            })
            .collect()
    }
    if rows.len() < PARALLEL_RENDER {
        return Ok(render_all(&rows, &groups, base));
    }
    let groups = std::sync::Arc::new(groups);
    let second = rows.split_off(rows.len() / 2);
    let (g2, base2) = (groups.clone(), base.to_string());
    let other = tokio::task::spawn_blocking(move || render_all(&second, &g2, &base2));
    let mut out = render_all(&rows, &groups, base);
    let rest = other
        .await
        .map_err(|e| ScimError::new(500, None, format!("rendering a list page failed: {e}")))?;
    out.extend(rest);
    Ok(out)
}

/// Which pending users a purge removes.
#[derive(Debug, Clone)]
pub enum Purge {
    /// Those pending for longer than the retention period.
    Expired { retention_days: i64 },
    /// Every pending user.
    All,
    /// One pending user, by userName.
    User(String),
}

/// Lists users pending deletion (oldest first).
pub async fn list_pending(svc: &Service) -> Result<Vec<UserRow>, ScimError> {
    let mut conn = svc.store.read().await.map_err(db)?;
    su::pending(&mut conn, None).await.map_err(db)
}

/// Every change of a user's state the service recorded (all users, or the one named), in
/// the order they happened.
pub async fn state_history(
    svc: &Service,
    user_name: Option<&str>,
) -> Result<Vec<su::StateChange>, ScimError> {
    let mut conn = svc.store.read().await.map_err(db)?;
    let lower = user_name.map(str::to_lowercase);
    su::state_history(&mut conn, lower.as_deref())
        .await
        .map_err(db)
}

/// Purges pending users for good; returns the userNames purged.
pub async fn purge(svc: &Service, what: Purge) -> Result<Vec<String>, ScimError> {
    let mut tx = svc.store.begin().await.map_err(db)?;
    let victims = match &what {
        Purge::Expired { retention_days } => {
            let cutoff =
                super::fmt_time(chrono::Utc::now() - chrono::Duration::days(*retention_days));
            su::pending(&mut tx, Some(&cutoff)).await.map_err(db)?
        }
        Purge::All => su::pending(&mut tx, None).await.map_err(db)?,
        Purge::User(name) => match su::by_user_name(&mut tx, &name.to_lowercase())
            .await
            .map_err(db)?
        {
            Some(u) if u.state == STATE_PENDING => vec![u],
            Some(_) => {
                return Err(ScimError::invalid_value(format!(
                    "user {name} is not pending deletion; only pending users can be purged"
                )));
            }
            None => return Err(ScimError::not_found(format!("no user named {name}"))),
        },
    };
    for u in &victims {
        su::purge(&mut tx, &u.id).await.map_err(db)?;
    }
    tx.commit().await.map_err(db)?;
    for u in &victims {
        tracing::info!(id = %u.id, user_name = %u.user_name, "pending user purged");
    }
    Ok(victims.into_iter().map(|u| u.user_name).collect())
}

/// Registered domains (lower-case).
pub async fn domains(svc: &Service) -> Result<Vec<String>, ScimError> {
    let mut conn = svc.store.read().await.map_err(db)?;
    admin::list_domains(&mut conn).await.map_err(db)
}

/// What the console may do to one user (behaviour of the console: docs/console.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConsoleAction {
    Disable,
    Enable,
    /// Back from pending deletion, active.
    Restore,
    /// A pending user removed for good now.
    Purge,
}

impl ConsoleAction {
    pub fn as_str(self) -> &'static str {
        match self {
            ConsoleAction::Disable => "disable",
            ConsoleAction::Enable => "enable",
            ConsoleAction::Restore => "restore",
            ConsoleAction::Purge => "purge",
        }
    }
}

/// Applies a console action to user `id` in one transaction; the state history and the
/// linked applications' queue follow from the row's change (database triggers), as for a SCIM
/// write. An action that does not fit the user's state (disable a pending user, purge an
/// active one) is a 409 naming the state.
pub async fn console_action(
    svc: &Service,
    id: &str,
    action: ConsoleAction,
) -> Result<(), ScimError> {
    super::with_retry(|| async {
        let mut tx = svc.store.begin().await.map_err(db)?;
        let Some(mut row) = su::get(&mut tx, id).await.map_err(db)? else {
            return Err(ScimError::not_found(format!("no user with id {id}")));
        };
        let wrong_state = || {
            ScimError::new(
                409,
                None,
                format!("cannot {} a user who is {}", action.as_str(), row.state),
            )
        };
        let at = now();
        match action {
            ConsoleAction::Disable | ConsoleAction::Enable => {
                if row.state == STATE_PENDING {
                    return Err(wrong_state());
                }
                let active = action == ConsoleAction::Enable;
                row.active = active;
                row.state = state_of(active).to_string();
            }
            ConsoleAction::Restore => {
                if row.state != STATE_PENDING {
                    return Err(wrong_state());
                }
                row.active = true;
                row.state = STATE_ACTIVE.to_string();
                row.pending_since = None;
            }
            ConsoleAction::Purge => {
                if row.state != STATE_PENDING {
                    return Err(wrong_state());
                }
                su::purge(&mut tx, &row.id).await.map_err(db)?;
                tx.commit().await.map_err(db)?;
                return Ok(());
            }
        }
        row.last_modified = at;
        row.version += 1;
        su::update(&mut tx, &row).await.map_err(db)?;
        if !row.active {
            end_sign_ins(&mut tx, &row.id).await?;
        }
        tx.commit().await.map_err(db)
    })
    .await
}
