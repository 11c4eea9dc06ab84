//! The SCIM wire format over HTTP: `application/scim+json` responses, RFC 7644 §3.12 error
//! bodies, the JSON body extractor (size limit → 413, bad JSON → 400 invalidSyntax), and the
//! list/search query parameters.

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use scim::{AttrExp, AttrPath, Filter, ScimError};
use serde_json::{Value, json};

use crate::domain::{ListPage, ListQuery};

pub const SCIM_JSON: &str = "application/scim+json";

/// A SCIM error as an HTTP response.
#[derive(Debug)]
pub struct ApiError(pub ScimError);

impl From<ScimError> for ApiError {
    fn from(e: ScimError) -> Self {
        ApiError(e)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status =
            StatusCode::from_u16(self.0.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut resp = (status, self.0.to_json().to_string()).into_response();
        resp.headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static(SCIM_JSON));
        if status == StatusCode::UNAUTHORIZED {
            resp.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        resp
    }
}

pub type ApiResult = Result<Response, ApiError>;

/// A SCIM JSON response with optional `ETag` (from `meta.version`) and `Location`.
pub fn scim(status: StatusCode, body: &Value) -> Response {
    let mut resp = (status, body.to_string()).into_response();
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(SCIM_JSON));
    if let Some(v) = body
        .pointer("/meta/version")
        .and_then(Value::as_str)
        .and_then(|v| HeaderValue::from_str(v).ok())
    {
        h.insert(header::ETAG, v);
    }
    resp
}

/// [`scim`] plus a `Location` header taken from `meta.location`.
pub fn created(body: &Value) -> Response {
    let mut resp = scim(StatusCode::CREATED, body);
    if let Some(v) = body
        .pointer("/meta/location")
        .and_then(Value::as_str)
        .and_then(|v| HeaderValue::from_str(v).ok())
    {
        resp.headers_mut().insert(header::LOCATION, v);
    }
    resp
}

/// A JSON request body. Accepts `application/scim+json`, `application/json` (and any
/// `+json` type) or no content type; anything else is 415.
pub struct ScimBody(pub Value);

impl<S: Send + Sync> FromRequest<S> for ScimBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        if let Some(ct) = req.headers().get(header::CONTENT_TYPE) {
            let ct = ct.to_str().unwrap_or_default().to_ascii_lowercase();
            let essence = ct.split(';').next().unwrap_or_default().trim();
            if !(essence == "application/json" || essence.ends_with("+json")) {
                return Err(ApiError(ScimError::new(
                    415,
                    None,
                    "Content-Type must be application/scim+json or application/json",
                )));
            }
        }
        let bytes = Bytes::from_request(req, state).await.map_err(|rej| {
            let status = rej.status();
            if status == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError(ScimError::new(
                    413,
                    None,
                    "request body is larger than the service accepts",
                ))
            } else {
                ApiError(ScimError::new(status.as_u16(), None, rej.body_text()))
            }
        })?;
        let v: Value = serde_json::from_slice(&bytes).map_err(|e| {
            ApiError(ScimError::invalid_syntax(format!(
                "request body is not valid JSON: {e}"
            )))
        })?;
        Ok(ScimBody(v))
    }
}

/// The `If-Match` header.
pub fn if_match(h: &HeaderMap) -> Option<String> {
    h.get(header::IF_MATCH)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

/// Whether `If-None-Match` matches the resource's current ETag (→ 304).
pub fn not_modified(h: &HeaderMap, body: &Value) -> bool {
    let Some(inm) = h.get(header::IF_NONE_MATCH).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let Some(current) = body.pointer("/meta/version").and_then(Value::as_str) else {
        return false;
    };
    let opaque = |t: &str| {
        t.trim()
            .trim_start_matches("W/")
            .trim_matches('"')
            .to_string()
    };
    inm.split(',')
        .any(|t| t.trim() == "*" || opaque(t) == opaque(current))
}

/// `attributes` / `excludedAttributes`, as given.
#[derive(Debug, Clone, Default)]
pub struct Shape {
    pub attributes: Option<String>,
    pub excluded: Option<String>,
}

impl Shape {
    /// Whether the projection may include `members` (so they must be loaded).
    pub fn wants_members(&self) -> bool {
        self.wants("members")
    }

    /// Whether the projection may include a user's `groups` (so they must be loaded).
    pub fn wants_groups(&self) -> bool {
        self.wants("groups")
    }

    /// Whether the projection may include the core attribute `attr` (lower case).
    fn wants(&self, attr: &str) -> bool {
        let names = |s: &str| {
            s.split(',').any(|a| {
                let a = a.trim().to_ascii_lowercase();
                a == attr
                    || a.strip_prefix(attr).is_some_and(|r| r.starts_with('.'))
                    || a.ends_with(&format!(":{attr}"))
                    || a.contains(&format!(":{attr}."))
            })
        };
        if self.excluded.as_deref().is_some_and(names) {
            return false;
        }
        self.attributes.as_deref().is_none_or(names)
    }

    pub fn projection(&self) -> Result<scim::projection::Projection, ScimError> {
        scim::projection::Projection::parse(self.attributes.as_deref(), self.excluded.as_deref())
    }
}

/// Applies the projection to one resource.
pub fn shape(
    v: Value,
    shape: &Shape,
    schema: &scim::schema::ResourceSchema,
) -> Result<Value, ScimError> {
    Ok(shape_with(v, shape.parsed()?.as_ref(), schema))
}

impl Shape {
    /// The projection, parsed once for a whole page; `None` when the request asks for none.
    pub fn parsed(&self) -> Result<Option<scim::projection::Projection>, ScimError> {
        if self.attributes.is_none() && self.excluded.is_none() {
            return Ok(None);
        }
        self.projection().map(Some)
    }
}

/// Applies a parsed projection (`None`: the resource as it is) to one resource.
pub fn shape_with(
    v: Value,
    projection: Option<&scim::projection::Projection>,
    schema: &scim::schema::ResourceSchema,
) -> Value {
    match projection {
        Some(p) => p.apply(&v, schema),
        None => v,
    }
}

/// Parses an attribute path (for `sortBy`).
pub fn attr_path(s: &str) -> Result<AttrPath, ScimError> {
    match scim::filter::parse(&format!("{s} pr")) {
        Ok(Filter::Attr(AttrExp::Present(p))) => Ok(p),
        _ => Err(ScimError::invalid_value(format!(
            "{s:?} is not an attribute path"
        ))),
    }
}

/// Query parameters of a list or search, parsed.
pub fn list_query(params: &[(String, String)]) -> Result<(ListQuery, Shape), ScimError> {
    let get = |name: &str| {
        params
            .iter()
            .rev()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
    };
    let mut q = ListQuery {
        start_index: 1,
        ..ListQuery::default()
    };
    if let Some(f) = get("filter")
        && !f.trim().is_empty()
    {
        q.filter = Some(scim::filter::parse(&f)?);
    }
    if let Some(s) = get("sortBy")
        && !s.trim().is_empty()
    {
        q.sort_by = Some(attr_path(s.trim())?);
    }
    if let Some(o) = get("sortOrder") {
        q.descending = parse_order(&o)?;
    }
    if let Some(s) = get("startIndex") {
        let n: i64 = s
            .trim()
            .parse()
            .map_err(|_| ScimError::invalid_value(format!("startIndex {s:?} is not an integer")))?;
        q.start_index = u64::try_from(n.max(1)).unwrap_or(1);
    }
    if let Some(c) = get("count") {
        let n: i64 = c
            .trim()
            .parse()
            .map_err(|_| ScimError::invalid_value(format!("count {c:?} is not an integer")))?;
        q.count = Some(u64::try_from(n.max(0)).unwrap_or(0));
    }
    if let Some(c) = get("cursor") {
        if q.sort_by.is_some() {
            return Err(ScimError::invalid_value(
                "cursor paging walks the resources in id order; it does not combine with sortBy",
            ));
        }
        q.cursor = Some(c.trim().to_string());
    }
    Ok((
        q,
        Shape {
            attributes: get("attributes"),
            excluded: get("excludedAttributes"),
        },
    ))
}

fn parse_order(o: &str) -> Result<bool, ScimError> {
    match o.trim().to_ascii_lowercase().as_str() {
        "ascending" | "" => Ok(false),
        "descending" => Ok(true),
        _ => Err(ScimError::invalid_value(format!(
            "sortOrder must be ascending or descending, got {o:?}"
        ))),
    }
}

/// A SearchRequest body (RFC 7644 §3.4.3) turned into the same form as query parameters.
pub fn search_body(body: &Value) -> Result<(ListQuery, Shape), ScimError> {
    if !body.is_object() {
        return Err(ScimError::invalid_syntax(
            "a SearchRequest must be a JSON object",
        ));
    }
    let mut params = Vec::new();
    let mut push = |k: &str, v: &Value| -> Result<(), ScimError> {
        let s = match v {
            Value::String(s) => s.clone(),
            Value::Number(n) => n.to_string(),
            Value::Array(a) => a
                .iter()
                .filter_map(Value::as_str)
                .collect::<Vec<_>>()
                .join(","),
            Value::Null => return Ok(()),
            _ => return Err(ScimError::invalid_value(format!("{k} has an invalid type"))),
        };
        params.push((k.to_string(), s));
        Ok(())
    };
    for k in [
        "filter",
        "sortBy",
        "sortOrder",
        "startIndex",
        "count",
        "attributes",
        "excludedAttributes",
    ] {
        if let Some(v) = scim::resource::member(body, k) {
            push(k, v)?;
        }
    }
    list_query(&params)
}

/// The ListResponse body.
pub fn list_response(page: &ListPage, resources: Vec<Value>) -> Value {
    let mut v = json!({
        "schemas": [scim::urn::LIST_RESPONSE],
        "totalResults": page.total,
        "startIndex": page.start_index,
        "itemsPerPage": resources.len(),
        "Resources": resources,
    });
    if let Some(c) = &page.next_cursor {
        v["nextCursor"] = json!(c);
    }
    v
}
