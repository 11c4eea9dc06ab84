//! The SCIM client: one `reqwest::Client` per service, the request/retry loop, and the
//! resource operations built on it.
//!
//! Redirects are never followed (`redirect::Policy::none()`): every request carries a bearer
//! token, and some a password (a password PATCH) or the OAuth2 client secret; reqwest would
//! resend the body of a 307/308 to wherever `Location` points, and the `Authorization`
//! header too when it points to the same host. A 3xx is a [`ClientError::Redirected`] naming
//! the status and the location.

use std::time::{Duration, Instant, SystemTime};

use reqwest::{Method, header};
use scim::{AttrExp, AttrPath, CompValue, CompareOp, Filter, PatchOperation, ScimError};
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};

use crate::adaptive::{AdaptiveLimit, ConcurrencyStats};
use crate::auth::{Auth, Authenticator};
use crate::discovery::ServiceProviderInfo;
use crate::error::ClientError;
use crate::retry;

const SCIM_JSON: &str = "application/scim+json";

/// The two resource types the agent manages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
pub enum ResourceKind {
    Users,
    Groups,
}

impl ResourceKind {
    pub fn endpoint(self) -> &'static str {
        match self {
            ResourceKind::Users => "Users",
            ResourceKind::Groups => "Groups",
        }
    }
}

pub struct ProxyOptions {
    /// `http://host:port`
    pub url: String,
    pub user: Option<String>,
    pub password: Option<SecretString>,
}

pub struct ClientOptions {
    /// The SCIM base URL, e.g. `http://127.0.0.1:8443/scim/v2`.
    pub base_url: String,
    pub auth: Auth,
    pub proxy: Option<ProxyOptions>,
    /// Per-request timeout.
    pub timeout: Duration,
    /// Retries after the first attempt for retryable failures.
    pub max_retries: usize,
    /// For a connection that fails (refused, reset, timed out) on a request safe to repeat:
    /// keep retrying (backoff from 200 ms to 5 s) until this long after the first failure,
    /// instead of `max_retries` times. `None`: `max_retries` decides.
    pub unreachable_after: Option<Duration>,
    /// `count` asked for when listing.
    pub page_size: usize,
    /// Requests in flight at once, at most (0: no limit). The client starts below it and
    /// adapts: more while the service keeps up, half as many after a 429/503 (`adaptive`).
    pub max_concurrency: usize,
}

impl ClientOptions {
    pub fn new(base_url: impl Into<String>, auth: Auth) -> Self {
        ClientOptions {
            base_url: base_url.into(),
            auth,
            proxy: None,
            timeout: Duration::from_secs(60),
            max_retries: 5,
            unreachable_after: None,
            page_size: 500,
            max_concurrency: 0,
        }
    }
}

/// One operation of a Bulk request (RFC 7644 §3.7).
#[derive(Debug, Clone)]
pub struct BulkOperation {
    pub method: Method,
    /// Relative to the base URL: `/Users`, `/Groups/{id}`.
    pub path: String,
    pub bulk_id: Option<String>,
    pub data: Option<Value>,
}

/// The outcome of one Bulk operation.
#[derive(Debug, Clone)]
pub struct BulkResult {
    pub bulk_id: Option<String>,
    pub status: u16,
    /// The id of the created or changed resource, from `location`.
    pub id: Option<String>,
    /// The operation's `response` (the SCIM error body on failure).
    pub response: Option<Value>,
}

impl BulkResult {
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }
    /// The SCIM error of a failed operation.
    pub fn error(&self) -> Option<ScimError> {
        if self.is_success() {
            return None;
        }
        Some(ScimError::from_json(
            self.status,
            self.response.as_ref().unwrap_or(&Value::Null),
        ))
    }
}

pub struct ScimClient {
    http: reqwest::Client,
    base_url: String,
    auth: Authenticator,
    max_retries: usize,
    unreachable_after: Option<Duration>,
    page_size: usize,
    limit: AdaptiveLimit,
    /// Whether the service pages lists by cursor (RFC 9865), asked once.
    cursor_paging: tokio::sync::OnceCell<bool>,
}

/// Where the adaptive limit starts: low enough for a small service, and it doubles within a
/// few dozen requests when the service keeps up.
const INITIAL_CONCURRENCY: usize = 4;

struct Response {
    body: Option<Value>,
}

impl ScimClient {
    pub fn new(options: ClientOptions) -> Result<Self, ClientError> {
        // reqwest is built without a default crypto provider so that one (ring) is used
        // everywhere; installing it twice is harmless.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let base = url::Url::parse(&options.base_url)
            .map_err(|e| ClientError::Config(format!("base URL {:?}: {e}", options.base_url)))?;
        if !matches!(base.scheme(), "http" | "https") {
            return Err(ClientError::Config(format!(
                "base URL {:?} must start with http:// or https://",
                options.base_url
            )));
        }
        let mut builder = reqwest::Client::builder()
            .timeout(options.timeout)
            .connect_timeout(options.timeout.min(Duration::from_secs(15)))
            .user_agent(concat!("dirsync-scim-client/", env!("CARGO_PKG_VERSION")))
            .redirect(reqwest::redirect::Policy::none());
        match &options.proxy {
            Some(p) => {
                let mut proxy = reqwest::Proxy::all(&p.url)
                    .map_err(|e| ClientError::Config(format!("proxy {:?}: {e}", p.url)))?;
                if let Some(user) = &p.user {
                    let password = p.password.as_ref().map(|s| s.expose_secret()).unwrap_or("");
                    proxy = proxy.basic_auth(user, password);
                }
                builder = builder.proxy(proxy);
            }
            // An explicit configuration decides; the environment's proxy does not sneak in.
            None => builder = builder.no_proxy(),
        }
        let http = builder
            .build()
            .map_err(|e| ClientError::Config(e.to_string()))?;
        Ok(ScimClient {
            http,
            base_url: options.base_url.trim_end_matches('/').to_string(),
            auth: Authenticator::new(options.auth),
            max_retries: options.max_retries,
            unreachable_after: options.unreachable_after,
            page_size: options.page_size.max(1),
            limit: AdaptiveLimit::new(INITIAL_CONCURRENCY, options.max_concurrency),
            cursor_paging: tokio::sync::OnceCell::new(),
        })
    }

    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// What the adaptive concurrency limit has seen so far.
    pub fn concurrency(&self) -> ConcurrencyStats {
        self.limit.stats()
    }

    /// `/ServiceProviderConfig`, reduced to what the agent acts on.
    pub async fn service_provider_config(&self) -> Result<ServiceProviderInfo, ClientError> {
        let r = self
            .send(Method::GET, "/ServiceProviderConfig", None, &[], true)
            .await?;
        let body = r
            .body
            .ok_or_else(|| protocol("empty /ServiceProviderConfig"))?;
        let cursor = body.pointer("/pagination/cursor").and_then(Value::as_bool);
        // Already known, the flag is the same answer; the error says only that.
        let _ = self.cursor_paging.set(cursor.unwrap_or(false));
        let mut info = ServiceProviderInfo::from_json(&body);
        if !info.keeps_pending_users {
            info.keeps_pending_users = self.schema_says_pending().await?;
        }
        Ok(info)
    }

    /// Whether the service's IIJ User extension schema lists a `pendingDeletion` state (how
    /// `idservice` says it keeps deleted users pending; older versions said it in an extension
    /// of `/ServiceProviderConfig`). A service without that schema keeps nothing pending.
    async fn schema_says_pending(&self) -> Result<bool, ClientError> {
        let path = format!("/Schemas/{}", scim::urn::IIJ_USER);
        match self.send(Method::GET, &path, None, &[], true).await {
            Ok(r) => Ok(r
                .body
                .as_ref()
                .is_some_and(ServiceProviderInfo::schema_keeps_pending_users)),
            Err(ClientError::Rejected(e)) if matches!(e.status, 400 | 404 | 405 | 501) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// POSTs a message that is not a resource (a dirsync run report) to `path` under the base
    /// URL; the answer's body, if any. Not retried past the transport's own retries of a
    /// request that never reached the service (a report is sent once).
    pub async fn post_message(
        &self,
        path: &str,
        body: &Value,
    ) -> Result<Option<Value>, ClientError> {
        Ok(self
            .send(Method::POST, path, Some(body), &[], false)
            .await?
            .body)
    }

    /// The schema extensions the service lists for `kind` in `/ResourceTypes` (RFC 7644 §4).
    /// Empty when the service does not publish resource types: an extension it does not
    /// advertise is one the agent does not send.
    pub async fn schema_extensions(&self, kind: ResourceKind) -> Result<Vec<String>, ClientError> {
        let r = match self
            .send(Method::GET, "/ResourceTypes", None, &[], true)
            .await
        {
            Ok(r) => r,
            Err(ClientError::Rejected(e)) if matches!(e.status, 400 | 404 | 501) => {
                return Ok(Vec::new());
            }
            Err(e) => return Err(e),
        };
        let body = r.body.unwrap_or(Value::Null);
        // A ListResponse (RFC 7644) or, from some services, a bare array.
        let types = body
            .get("Resources")
            .and_then(Value::as_array)
            .or_else(|| body.as_array())
            .cloned()
            .unwrap_or_default();
        let endpoint = format!("/{}", kind.endpoint());
        Ok(types
            .iter()
            .filter(|t| t.get("endpoint").and_then(Value::as_str) == Some(endpoint.as_str()))
            .flat_map(|t| {
                t.get("schemaExtensions")
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default()
            })
            .filter_map(|e| e.get("schema").and_then(Value::as_str).map(str::to_string))
            .collect())
    }

    /// Resources asked for per list page from now on (at least 1). A service that returns
    /// fewer per page is followed all the same; fewer, larger pages cost a service that
    /// counts and skips rows per page much less.
    pub fn set_page_size(&mut self, size: usize) {
        self.page_size = size.max(1);
    }

    /// Every resource of `kind` that matches `filter`, following pagination to the end.
    pub async fn list(
        &self,
        kind: ResourceKind,
        filter: Option<&Filter>,
        attributes: Option<&str>,
    ) -> Result<Vec<Value>, ClientError> {
        let mut all = Vec::new();
        let params: Vec<(&str, &str)> = attributes.map(|a| ("attributes", a)).into_iter().collect();
        self.list_each(kind, filter, &params, |r| all.push(r))
            .await?;
        Ok(all)
    }

    /// Every resource of a list, page by page: `each` takes the resources of a page as it
    /// arrives, so a caller that reduces them never holds the whole list as JSON (100,000
    /// users are gigabytes that way). `params`: further query parameters, e.g.
    /// `("excludedAttributes", "groups")`. Returns how many resources there were.
    pub async fn list_each(
        &self,
        kind: ResourceKind,
        filter: Option<&Filter>,
        params: &[(&str, &str)],
        mut each: impl FnMut(Value),
    ) -> Result<usize, ClientError> {
        if self.pages_by_cursor().await {
            return self.list_by_cursor(kind, filter, params, each).await;
        }
        let mut seen = 0usize;
        let mut start = 1usize;
        loop {
            let position = ("startIndex", start.to_string());
            let (body, page) = self.list_page(kind, position, filter, params).await?;
            let total = body
                .get("totalResults")
                .and_then(Value::as_u64)
                .unwrap_or(0);
            let got = page.len();
            page.into_iter().for_each(&mut each);
            seen += got;
            // Don't trust itemsPerPage; stop at totalResults or on an empty page.
            if got == 0 || seen as u64 >= total {
                return Ok(seen);
            }
            start += got;
        }
    }

    /// One page of `GET /{kind}` at `position` (`startIndex` or `cursor` and its value): the
    /// response body (without its resources) and the resources.
    async fn list_page(
        &self,
        kind: ResourceKind,
        (key, value): (&str, String),
        filter: Option<&Filter>,
        params: &[(&str, &str)],
    ) -> Result<(Value, Vec<Value>), ClientError> {
        let mut query = vec![
            (key.to_string(), value),
            ("count".to_string(), self.page_size.to_string()),
        ];
        if let Some(f) = filter {
            query.push(("filter".into(), f.to_string()));
        }
        query.extend(params.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        let path = format!("/{}", kind.endpoint());
        let r = self.send(Method::GET, &path, None, &query, true).await?;
        let mut body = r.body.ok_or_else(|| protocol("empty list response"))?;
        let page = match body.get_mut("Resources").map(Value::take) {
            Some(Value::Array(items)) => items,
            None | Some(Value::Null) => Vec::new(),
            Some(_) => return Err(protocol("list response: Resources is not an array")),
        };
        Ok((body, page))
    }

    /// Whether the service says it pages by cursor (`pagination.cursor` in
    /// `/ServiceProviderConfig`, RFC 9865); asked once, and a service that cannot say is
    /// paged by index.
    async fn pages_by_cursor(&self) -> bool {
        *self
            .cursor_paging
            .get_or_init(|| async {
                match self
                    .send(Method::GET, "/ServiceProviderConfig", None, &[], true)
                    .await
                {
                    Ok(r) => r
                        .body
                        .as_ref()
                        .and_then(|b| b.pointer("/pagination/cursor"))
                        .and_then(Value::as_bool)
                        .unwrap_or(false),
                    Err(_) => false,
                }
            })
            .await
    }

    /// [`ScimClient::list_each`] by cursor: each page continues after the last one, so a deep
    /// page costs the service what the first one does (no skipping of rows).
    async fn list_by_cursor(
        &self,
        kind: ResourceKind,
        filter: Option<&Filter>,
        params: &[(&str, &str)],
        mut each: impl FnMut(Value),
    ) -> Result<usize, ClientError> {
        let mut seen = 0usize;
        let mut cursor = String::new();
        loop {
            let position = ("cursor", cursor.clone());
            let (body, page) = self.list_page(kind, position, filter, params).await?;
            let got = page.len();
            page.into_iter().for_each(&mut each);
            seen += got;
            match body.get("nextCursor").and_then(Value::as_str) {
                Some(next) if got > 0 && next != cursor => cursor = next.to_string(),
                _ => return Ok(seen),
            }
        }
    }

    /// The resource whose externalId is `external_id`, if any (exact match).
    pub async fn find_by_external_id(
        &self,
        kind: ResourceKind,
        external_id: &str,
    ) -> Result<Option<Value>, ClientError> {
        let filter = eq_filter("externalId", external_id);
        let mut found = self.list(kind, Some(&filter), None).await?;
        Ok(if found.is_empty() {
            None
        } else {
            Some(found.swap_remove(0))
        })
    }

    /// `POST /{kind}/.search` (RFC 7644 §3.4.3).
    pub async fn search(
        &self,
        kind: ResourceKind,
        filter: &Filter,
    ) -> Result<Vec<Value>, ClientError> {
        let body = json!({
            "schemas": [scim::urn::SEARCH_REQUEST],
            "filter": filter.to_string(),
            "startIndex": 1,
            "count": self.page_size,
        });
        let path = format!("/{}/.search", kind.endpoint());
        let r = self
            .send(Method::POST, &path, Some(&body), &[], true)
            .await?;
        let body = r.body.ok_or_else(|| protocol("empty search response"))?;
        Ok(match body.get("Resources") {
            Some(Value::Array(items)) => items.clone(),
            _ => Vec::new(),
        })
    }

    /// `GET /{kind}/{id}`; `None` when the service says 404.
    pub async fn get(&self, kind: ResourceKind, id: &str) -> Result<Option<Value>, ClientError> {
        let path = format!("/{}/{}", kind.endpoint(), encode_segment(id));
        match self.send(Method::GET, &path, None, &[], true).await {
            Ok(r) => Ok(r.body),
            Err(ClientError::Rejected(e)) if e.status == 404 => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// `POST /{kind}`: the created resource as the service returned it.
    pub async fn create(&self, kind: ResourceKind, resource: &Value) -> Result<Value, ClientError> {
        let path = format!("/{}", kind.endpoint());
        // Not idempotent: a 5xx, a reset or a timeout after sending is not retried here (a
        // reset or timeout is `Interrupted`); the caller looks the object up by externalId
        // before it sends it again.
        let r = self
            .send(Method::POST, &path, Some(resource), &[], false)
            .await?;
        r.body
            .ok_or_else(|| protocol("POST answered without the created resource"))
    }

    /// `PATCH /{kind}/{id}`: the resource when the service answers 200, `None` for 204.
    pub async fn patch(
        &self,
        kind: ResourceKind,
        id: &str,
        operations: &[PatchOperation],
    ) -> Result<Option<Value>, ClientError> {
        let ops = serde_json::to_value(operations)
            .map_err(|e| protocol(&format!("cannot encode PATCH operations: {e}")))?;
        let body = json!({ "schemas": [scim::urn::PATCH_OP], "Operations": ops });
        let path = format!("/{}/{}", kind.endpoint(), encode_segment(id));
        // PATCH with add/remove of set members and replace of values is safe to repeat.
        let r = self
            .send(Method::PATCH, &path, Some(&body), &[], true)
            .await?;
        Ok(r.body)
    }

    /// `PUT /{kind}/{id}`.
    pub async fn replace(
        &self,
        kind: ResourceKind,
        id: &str,
        resource: &Value,
    ) -> Result<Value, ClientError> {
        let path = format!("/{}/{}", kind.endpoint(), encode_segment(id));
        let r = self
            .send(Method::PUT, &path, Some(resource), &[], true)
            .await?;
        r.body
            .ok_or_else(|| protocol("PUT answered without the resource"))
    }

    /// `DELETE /{kind}/{id}`. Returns false when it was already gone (404), which is the
    /// state the caller wanted.
    pub async fn delete(&self, kind: ResourceKind, id: &str) -> Result<bool, ClientError> {
        let path = format!("/{}/{}", kind.endpoint(), encode_segment(id));
        match self.send(Method::DELETE, &path, None, &[], true).await {
            Ok(_) => Ok(true),
            Err(ClientError::Rejected(e)) if e.status == 404 => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// `POST /Bulk` (RFC 7644 §3.7). Per-operation failures are in the results; only a
    /// failure of the whole request is an `Err`.
    pub async fn bulk(
        &self,
        operations: &[BulkOperation],
        fail_on_errors: Option<usize>,
    ) -> Result<Vec<BulkResult>, ClientError> {
        let ops: Vec<Value> = operations
            .iter()
            .map(|op| {
                let mut o = json!({ "method": op.method.as_str(), "path": op.path });
                if let Some(map) = o.as_object_mut() {
                    if let Some(b) = &op.bulk_id {
                        map.insert("bulkId".into(), Value::String(b.clone()));
                    }
                    if let Some(d) = &op.data {
                        map.insert("data".into(), d.clone());
                    }
                }
                o
            })
            .collect();
        let mut body = json!({ "schemas": [scim::urn::BULK_REQUEST], "Operations": ops });
        if let (Some(n), Some(map)) = (fail_on_errors, body.as_object_mut()) {
            map.insert("failOnErrors".into(), json!(n));
        }
        // A Bulk request mixes creates; never repeat it blindly.
        let r = self
            .send(Method::POST, "/Bulk", Some(&body), &[], false)
            .await?;
        let body = r.body.ok_or_else(|| protocol("empty Bulk response"))?;
        let results = body
            .get("Operations")
            .and_then(Value::as_array)
            .ok_or_else(|| protocol("Bulk response without Operations"))?;
        Ok(results.iter().map(bulk_result).collect())
    }

    /// Sends one request, retrying transport failures, refused tokens and retryable statuses.
    async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
        query: &[(String, String)],
        idempotent: bool,
    ) -> Result<Response, ClientError> {
        let url = format!("{}{}", self.base_url, path);
        let call = Call {
            method: &method,
            path,
            idempotent,
        };
        let mut retries = Retries {
            delays: retry::schedule(self.max_retries),
            transport: None,
            refreshed_token: false,
        };
        loop {
            let request = self.build_request(&method, &url, body, query).await?;
            let permit = self.limit.acquire().await;
            let response = match request.send().await {
                Ok(r) => r,
                Err(e) => {
                    let delay = self.transport_retry(&call, &mut retries, e)?;
                    tokio::time::sleep(delay).await;
                    continue;
                }
            };
            let status = response.status();
            if status.is_redirection() {
                return Err(redirected(&url, &response));
            }
            if let Some(p) = permit {
                if matches!(status.as_u16(), 429 | 503) {
                    p.throttled();
                } else {
                    p.succeeded();
                }
            }
            let reply = match self.read_reply(response).await {
                Ok(reply) => reply,
                Err(e) => {
                    let delay = self.transport_retry(&call, &mut retries, e)?;
                    tokio::time::sleep(delay).await;
                    continue;
                }
            };
            match self.judge(&call, &mut retries, reply).await? {
                Next::Done(r) => return Ok(r),
                Next::RetryNow => continue,
                Next::RetryAfter(delay) => {
                    tokio::time::sleep(delay).await;
                    continue;
                }
            }
        }
    }

    /// Builds one attempt's request: accept header, query, JSON body and authorization.
    async fn build_request(
        &self,
        method: &Method,
        url: &str,
        body: Option<&Value>,
        query: &[(String, String)],
    ) -> Result<reqwest::RequestBuilder, ClientError> {
        let mut request = self
            .http
            .request(method.clone(), url)
            .header(header::ACCEPT, format!("{SCIM_JSON}, application/json"));
        if !query.is_empty() {
            request = request.query(query);
        }
        if let Some(b) = body {
            let bytes = serde_json::to_vec(b)
                .map_err(|e| protocol(&format!("cannot encode request: {e}")))?;
            request = request.header(header::CONTENT_TYPE, SCIM_JSON).body(bytes);
        }
        if let Some(auth) = self.auth.header(&self.http).await? {
            let mut value = header::HeaderValue::from_str(auth.expose_secret())
                .map_err(|_| ClientError::Config("the token is not a valid header".into()))?;
            value.set_sensitive(true);
            request = request.header(header::AUTHORIZATION, value);
        }
        Ok(request)
    }

    /// The delay before retrying a request that failed in transport, or the error to return.
    fn transport_retry(
        &self,
        call: &Call<'_>,
        retries: &mut Retries<impl Iterator<Item = Duration>>,
        e: reqwest::Error,
    ) -> Result<Duration, ClientError> {
        // Connect failures were never sent; timeouts and resets may have been applied.
        let safe = e.is_connect() || call.idempotent;
        if !safe {
            return Err(ClientError::Interrupted {
                url: self.base_url.clone(),
                reason: error_chain(&e),
            });
        }
        let delay = match self.unreachable_after {
            Some(budget) => {
                let (since, delays) = retries
                    .transport
                    .get_or_insert_with(|| (Instant::now(), retry::transport_schedule()));
                let left = budget.saturating_sub(since.elapsed());
                (!left.is_zero()).then(|| delays.next().unwrap_or(left).min(left))
            }
            None => retries.delays.next(),
        };
        if let Some(delay) = delay {
            tracing::debug!(method = %call.method, path = call.path, error = %e.without_url(), ?delay, "retrying");
            return Ok(delay);
        }
        Err(ClientError::Unreachable {
            url: self.base_url.clone(),
            reason: error_chain(&e),
        })
    }

    /// Reads a response's status, `Retry-After` and body (parsed as JSON when it is).
    /// The error is the connection's, cut while the body came (see [`Self::transport_retry`]).
    async fn read_reply(&self, response: reqwest::Response) -> Result<Reply, reqwest::Error> {
        let status = response.status();
        let retry_after = response
            .headers()
            .get(header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let bytes = response.bytes().await?;
        let parsed: Option<Value> = if bytes.is_empty() {
            None
        } else {
            serde_json::from_slice(&bytes).ok()
        };
        Ok(Reply {
            status,
            retry_after,
            bytes: Vec::from(bytes),
            parsed,
        })
    }

    /// Decides what a reply means: the result, a retry, or the error it stands for.
    async fn judge(
        &self,
        call: &Call<'_>,
        retries: &mut Retries<impl Iterator<Item = Duration>>,
        reply: Reply,
    ) -> Result<Next, ClientError> {
        let Reply {
            status,
            retry_after,
            bytes,
            parsed,
        } = reply;
        let (method, path) = (call.method, call.path);
        if status.is_success() {
            if parsed.is_none() && !bytes.is_empty() {
                return Err(protocol(&format!("{method} {path}: response is not JSON")));
            }
            return Ok(Next::Done(Response { body: parsed }));
        }
        let code = status.as_u16();
        if code == 401 || code == 403 {
            if code == 401 && !retries.refreshed_token && self.auth.invalidate().await {
                retries.refreshed_token = true;
                return Ok(Next::RetryNow);
            }
            return Err(ClientError::Unauthorized {
                status: code,
                credential: self.auth.credential().to_string(),
                detail: detail_of(parsed.as_ref(), &bytes),
            });
        }
        if retry::retryable_status(code, call.idempotent)
            && let Some(backoff) = retries.delays.next()
        {
            let asked = retry::retry_after(retry_after.as_deref(), SystemTime::now());
            let delay = asked.map_or(backoff, |a| a.max(backoff));
            tracing::debug!(%method, path, status = code, ?delay, "retrying");
            return Ok(Next::RetryAfter(delay));
        }
        if status.is_server_error() || code == 429 {
            return Err(ClientError::Server {
                status: code,
                detail: detail_of(parsed.as_ref(), &bytes),
            });
        }
        let error = match &parsed {
            Some(v) if v.is_object() => ScimError::from_json(code, v),
            _ => ScimError::new(code, None, detail_of(None, &bytes)),
        };
        Err(ClientError::Rejected(error))
    }
}

/// The request being sent, as far as retries and messages need it.
struct Call<'a> {
    method: &'a Method,
    path: &'a str,
    idempotent: bool,
}

/// What a request may still spend on retries.
struct Retries<D> {
    /// The backoff delays left.
    delays: D,
    /// With `unreachable_after`: when the connection first failed, and the delays since.
    transport: Option<(Instant, backon::ExponentialBackoff)>,
    /// Whether the token was already refreshed once after a 401.
    refreshed_token: bool,
}

/// A response read in full.
struct Reply {
    status: reqwest::StatusCode,
    retry_after: Option<String>,
    bytes: Vec<u8>,
    parsed: Option<Value>,
}

/// What to do after a reply.
enum Next {
    Done(Response),
    RetryNow,
    RetryAfter(Duration),
}

/// `attr eq "value"`, built through the AST so that quoting is always right.
pub(crate) fn eq_filter(attr: &str, value: &str) -> Filter {
    Filter::Attr(AttrExp::Comparison(
        AttrPath::with_name(attr),
        CompareOp::Eq,
        CompValue::Str(value.to_string()),
    ))
}

fn bulk_result(op: &Value) -> BulkResult {
    let status = match op.get("status") {
        Some(Value::String(s)) => s.parse().unwrap_or(0),
        Some(Value::Number(n)) => n.as_u64().and_then(|n| u16::try_from(n).ok()).unwrap_or(0),
        _ => 0,
    };
    let id = op
        .get("location")
        .and_then(Value::as_str)
        .and_then(|l| l.trim_end_matches('/').rsplit('/').next())
        .map(str::to_string);
    BulkResult {
        bulk_id: op.get("bulkId").and_then(Value::as_str).map(str::to_string),
        status,
        id,
        response: op.get("response").cloned(),
    }
}

/// The error for a 3xx answer to `url` (the query, which may hold a filter, is left out).
pub(crate) fn redirected(url: &str, response: &reqwest::Response) -> ClientError {
    let location = response
        .headers()
        .get(header::LOCATION)
        .map(|v| {
            String::from_utf8_lossy(v.as_bytes())
                .chars()
                .filter(|c| !c.is_control())
                .take(300)
                .collect::<String>()
        })
        .unwrap_or_else(|| "(no Location header)".into());
    ClientError::Redirected {
        status: response.status().as_u16(),
        url: url.split('?').next().unwrap_or(url).to_string(),
        location,
    }
}

fn detail_of(parsed: Option<&Value>, bytes: &[u8]) -> String {
    if let Some(d) = parsed.and_then(|v| v.get("detail")).and_then(Value::as_str) {
        return d.to_string();
    }
    let text = String::from_utf8_lossy(bytes);
    text.chars().take(300).collect()
}

fn error_chain(e: &reqwest::Error) -> String {
    use std::error::Error as _;
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

fn encode_segment(id: &str) -> String {
    url::form_urlencoded::byte_serialize(id.as_bytes())
        .collect::<String>()
        .replace('+', "%20")
}

fn protocol(what: &str) -> ClientError {
    ClientError::Protocol(what.to_string())
}
