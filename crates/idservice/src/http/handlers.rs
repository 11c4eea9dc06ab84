//! Endpoint handlers: translate HTTP requests into domain calls and domain results into SCIM
//! responses. Scope checks happen here, per endpoint (per operation for `/Bulk`, in the domain).

use axum::Extension;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use scim::ScimError;
use scim::schema::ResourceSchema;
use serde_json::{Value, json};

use super::AppState;
use super::wire::{
    ApiError, ApiResult, ScimBody, Shape, created, if_match, list_query, list_response,
    not_modified, scim, search_body, shape, shape_with,
};
use crate::domain::password::Prehashed;
use crate::domain::{self, ListPage, ListQuery, Scope, Scopes, bulk, discovery, groups, users};
use crate::store::filter_sql::Kind;

/// The base URL of the SCIM API as the client addressed it (for `meta.location`).
#[derive(Clone, Debug)]
pub struct Base(pub String);

fn need(scopes: Scopes, s: Scope) -> Result<(), ApiError> {
    if scopes.has(s) {
        Ok(())
    } else {
        Err(ApiError(ScimError::new(
            403,
            None,
            format!("the token lacks the {} scope", s.as_str()),
        )))
    }
}

fn kind_schema(kind: Kind) -> &'static ResourceSchema {
    kind.schema()
}

fn read_scope(kind: Kind) -> Scope {
    match kind {
        Kind::User => Scope::ReadUsers,
        Kind::Group => Scope::ReadGroups,
    }
}

fn write_scope(kind: Kind) -> Scope {
    match kind {
        Kind::User => Scope::WriteUsers,
        Kind::Group => Scope::WriteGroups,
    }
}

async fn run_list(
    st: &AppState,
    kind: Kind,
    q: &ListQuery,
    sh: &Shape,
    base: &str,
) -> Result<Value, ScimError> {
    // Parsed once for the page, and before doing any work.
    let projection = sh.parsed()?;
    let mut page = match kind {
        Kind::User => users::list_with(&st.svc, q, base, sh.wants_groups()).await?,
        Kind::Group => groups::list_with(&st.svc, q, base, sh.wants_members()).await?,
    };
    let resources = std::mem::take(&mut page.resources)
        .into_iter()
        .map(|r| shape_with(r, projection.as_ref(), kind_schema(kind)))
        .collect();
    Ok(list_response(&page, resources))
}

async fn list(
    st: AppState,
    kind: Kind,
    scopes: Scopes,
    params: Vec<(String, String)>,
    base: Base,
) -> ApiResult {
    need(scopes, read_scope(kind))?;
    let (q, sh) = list_query(&params)?;
    Ok(scim(
        StatusCode::OK,
        &run_list(&st, kind, &q, &sh, &base.0).await?,
    ))
}

async fn search(st: AppState, kind: Kind, scopes: Scopes, body: Value, base: Base) -> ApiResult {
    need(scopes, read_scope(kind))?;
    let (q, sh) = search_body(&body)?;
    Ok(scim(
        StatusCode::OK,
        &run_list(&st, kind, &q, &sh, &base.0).await?,
    ))
}

/// The password hashes of a User write, computed before its transaction (see
/// [`Prehashed`]).
async fn prehash(kind: Kind, body: &Value) -> Result<Prehashed, ScimError> {
    match kind {
        Kind::User => Prehashed::of(body).await,
        Kind::Group => Ok(Prehashed::default()),
    }
}

async fn create(
    st: AppState,
    kind: Kind,
    scopes: Scopes,
    params: Vec<(String, String)>,
    body: Value,
    base: Base,
) -> ApiResult {
    need(scopes, write_scope(kind))?;
    let (_, sh) = list_query(&params)?;
    let (store, base) = (&st.svc.store, &base.0);
    let pre = &prehash(kind, &body).await?;
    let r = domain::with_retry(move || {
        let body = body.clone();
        async move {
            let mut tx = store.begin().await.map_err(domain::db)?;
            let r = match kind {
                Kind::User => users::create_in(&mut tx, body, pre, base).await?.0,
                Kind::Group => groups::create_in(&mut tx, body, base, true).await?,
            };
            tx.commit().await.map_err(domain::db)?;
            Ok(r)
        }
    })
    .await?;
    Ok(created(&shape(r, &sh, kind_schema(kind))?))
}

async fn get_one(
    st: AppState,
    kind: Kind,
    scopes: Scopes,
    id: String,
    params: Vec<(String, String)>,
    headers: HeaderMap,
    base: Base,
) -> ApiResult {
    need(scopes, read_scope(kind))?;
    let (_, sh) = list_query(&params)?;
    let r = match kind {
        Kind::User => users::get(&st.svc, &id, &base.0).await?,
        Kind::Group => groups::get(&st.svc, &id, &base.0, sh.wants_members()).await?,
    };
    if not_modified(&headers, &r) {
        let mut resp = StatusCode::NOT_MODIFIED.into_response();
        if let Some(v) = r
            .pointer("/meta/version")
            .and_then(Value::as_str)
            .and_then(|v| v.parse().ok())
        {
            resp.headers_mut().insert(axum::http::header::ETAG, v);
        }
        return Ok(resp);
    }
    Ok(scim(StatusCode::OK, &shape(r, &sh, kind_schema(kind))?))
}

#[derive(Clone, Copy)]
enum Write {
    Put,
    Patch,
}

/// The per-request context shared by the write handlers.
struct Ctx {
    st: AppState,
    kind: Kind,
    scopes: Scopes,
    base: Base,
}

async fn write(
    c: Ctx,
    how: Write,
    id: String,
    params: Vec<(String, String)>,
    headers: HeaderMap,
    body: Value,
) -> ApiResult {
    let Ctx {
        st,
        kind,
        scopes,
        base,
    } = c;
    need(scopes, write_scope(kind))?;
    let (_, sh) = list_query(&params)?;
    let im = if_match(&headers);
    let (store, base, id, im) = (&st.svc.store, &base.0, &id, im.as_deref());
    let pre = &prehash(kind, &body).await?;
    let r = domain::with_retry(move || {
        let body = body.clone();
        async move {
            let mut tx = store.begin().await.map_err(domain::db)?;
            let r = match (kind, how) {
                (Kind::User, Write::Put) => {
                    users::replace_in(&mut tx, id, body, pre, im, base).await?
                }
                (Kind::User, Write::Patch) => {
                    users::patch_in(&mut tx, id, &body, pre, im, base).await?
                }
                (Kind::Group, Write::Put) => {
                    groups::replace_in(&mut tx, id, body, im, base).await?
                }
                (Kind::Group, Write::Patch) => {
                    groups::patch_in(&mut tx, id, &body, im, base).await?
                }
            };
            tx.commit().await.map_err(domain::db)?;
            Ok(r)
        }
    })
    .await?;
    Ok(scim(StatusCode::OK, &shape(r, &sh, kind_schema(kind))?))
}

async fn delete(
    st: AppState,
    kind: Kind,
    scopes: Scopes,
    id: String,
    headers: HeaderMap,
) -> ApiResult {
    need(scopes, write_scope(kind))?;
    let im = if_match(&headers);
    let (store, id, im) = (&st.svc.store, &id, im.as_deref());
    domain::with_retry(move || async move {
        let mut tx = store.begin().await.map_err(domain::db)?;
        match kind {
            Kind::User => users::delete_in(&mut tx, id, im).await?,
            Kind::Group => groups::delete_in(&mut tx, id, im).await?,
        }
        tx.commit().await.map_err(domain::db)
    })
    .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

type Params = Query<Vec<(String, String)>>;

/// A PUT or PATCH handler (`$how`) for one resource kind.
macro_rules! write_handler {
    ($kind:expr, $how:expr, $name:ident) => {
        pub async fn $name(
            State(st): State<AppState>,
            Extension(s): Extension<Scopes>,
            Extension(b): Extension<Base>,
            Path(id): Path<String>,
            Query(p): Params,
            h: HeaderMap,
            ScimBody(body): ScimBody,
        ) -> ApiResult {
            let ctx = Ctx {
                st,
                kind: $kind,
                scopes: s,
                base: b,
            };
            write(ctx, $how, id, p, h, body).await
        }
    };
}

macro_rules! resource_handlers {
    ($kind:expr, $list:ident, $search:ident, $create:ident, $get:ident, $put:ident, $patch:ident, $delete:ident) => {
        pub async fn $list(
            State(st): State<AppState>,
            Extension(s): Extension<Scopes>,
            Extension(b): Extension<Base>,
            Query(p): Params,
        ) -> ApiResult {
            list(st, $kind, s, p, b).await
        }
        pub async fn $search(
            State(st): State<AppState>,
            Extension(s): Extension<Scopes>,
            Extension(b): Extension<Base>,
            ScimBody(body): ScimBody,
        ) -> ApiResult {
            search(st, $kind, s, body, b).await
        }
        pub async fn $create(
            State(st): State<AppState>,
            Extension(s): Extension<Scopes>,
            Extension(b): Extension<Base>,
            Query(p): Params,
            ScimBody(body): ScimBody,
        ) -> ApiResult {
            create(st, $kind, s, p, body, b).await
        }
        pub async fn $get(
            State(st): State<AppState>,
            Extension(s): Extension<Scopes>,
            Extension(b): Extension<Base>,
            Path(id): Path<String>,
            Query(p): Params,
            h: HeaderMap,
        ) -> ApiResult {
            get_one(st, $kind, s, id, p, h, b).await
        }
        write_handler!($kind, Write::Put, $put);
        write_handler!($kind, Write::Patch, $patch);
        pub async fn $delete(
            State(st): State<AppState>,
            Extension(s): Extension<Scopes>,
            Path(id): Path<String>,
            h: HeaderMap,
        ) -> ApiResult {
            delete(st, $kind, s, id, h).await
        }
    };
}

resource_handlers!(
    Kind::User,
    list_users,
    search_users,
    create_user,
    get_user,
    put_user,
    patch_user,
    delete_user
);
resource_handlers!(
    Kind::Group,
    list_groups,
    search_groups,
    create_group,
    get_group,
    put_group,
    patch_group,
    delete_group
);

/// `POST /.search`: Users then Groups (those the token may read), paged as one list.
pub async fn search_root(
    State(st): State<AppState>,
    Extension(s): Extension<Scopes>,
    Extension(b): Extension<Base>,
    ScimBody(body): ScimBody,
) -> ApiResult {
    let (q, sh) = search_body(&body)?;
    let kinds: Vec<Kind> = [Kind::User, Kind::Group]
        .into_iter()
        .filter(|k| s.has(read_scope(*k)))
        .collect();
    if kinds.is_empty() {
        return Err(ApiError(ScimError::new(
            403,
            None,
            "the token may read neither Users nor Groups",
        )));
    }
    // Parsed once for every kind, and before doing any work.
    let projection = sh.parsed()?;
    let (mut offset, mut remaining) = q.window();
    let start_index = offset + 1;
    let mut total = 0;
    let mut resources = Vec::new();
    for kind in kinds {
        let count_only = ListQuery {
            count: Some(0),
            ..q.clone()
        };
        let n = st.svc.list(kind, &count_only, &b.0).await?.total;
        total += n;
        if remaining > 0 && offset < n {
            let page_q = ListQuery {
                start_index: offset + 1,
                count: Some(remaining),
                ..q.clone()
            };
            let page = st.svc.list(kind, &page_q, &b.0).await?;
            remaining -= page.resources.len() as u64;
            resources.extend(
                page.resources
                    .into_iter()
                    .map(|r| shape_with(r, projection.as_ref(), kind_schema(kind))),
            );
            offset = 0;
        } else {
            offset = offset.saturating_sub(n);
        }
    }
    let page = ListPage {
        total,
        start_index,
        resources: Vec::new(),
        next_cursor: None,
    };
    Ok(scim(StatusCode::OK, &list_response(&page, resources)))
}

pub async fn bulk(
    State(st): State<AppState>,
    Extension(s): Extension<Scopes>,
    Extension(b): Extension<Base>,
    ScimBody(body): ScimBody,
) -> ApiResult {
    let r = bulk::run(&st.svc, &body, s, &b.0).await?;
    Ok(scim(StatusCode::OK, &r))
}

/// `POST /DirsyncRuns`: a dirsync agent's run report (a token that may write users).
pub async fn report_run(
    State(st): State<AppState>,
    Extension(s): Extension<Scopes>,
    ScimBody(body): ScimBody,
) -> ApiResult {
    need(s, Scope::WriteUsers)?;
    let seq = domain::runs::record(&st.svc, &body).await?;
    Ok(scim(
        StatusCode::CREATED,
        &serde_json::json!({"id": seq.to_string()}),
    ))
}

pub async fn service_provider_config(
    State(st): State<AppState>,
    Extension(b): Extension<Base>,
) -> Response {
    scim(
        StatusCode::OK,
        &discovery::service_provider_config(&st.svc, &b.0),
    )
}

fn discovery_list(items: Vec<Value>) -> Response {
    scim(
        StatusCode::OK,
        &json!({
            "schemas": [scim::urn::LIST_RESPONSE],
            "totalResults": items.len(),
            "startIndex": 1,
            "itemsPerPage": items.len(),
            "Resources": items,
        }),
    )
}

pub async fn schemas(State(st): State<AppState>, Extension(b): Extension<Base>) -> Response {
    discovery_list(discovery::schemas(&st.svc, &b.0))
}

pub async fn schema(
    State(st): State<AppState>,
    Extension(b): Extension<Base>,
    Path(id): Path<String>,
) -> ApiResult {
    discovery::schema(&st.svc, &b.0, &id)
        .map(|v| scim(StatusCode::OK, &v))
        .ok_or_else(|| ApiError(ScimError::not_found(format!("Schema {id} not found"))))
}

pub async fn resource_types(Extension(b): Extension<Base>) -> Response {
    discovery_list(discovery::resource_type_list(&b.0))
}

pub async fn resource_type(Extension(b): Extension<Base>, Path(name): Path<String>) -> ApiResult {
    discovery::resource_type(&b.0, &name)
        .map(|v| scim(StatusCode::OK, &v))
        .ok_or_else(|| {
            ApiError(ScimError::not_found(format!(
                "ResourceType {name} not found"
            )))
        })
}
