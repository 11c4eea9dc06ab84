//! The HTTP surface (axum): routes under `/scim/v2`, bearer-token authentication, request
//! logging, body-size limit and timeout, and the guarantee that every error is a SCIM error.

pub mod handlers;
pub mod wire;

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use scim::ScimError;
use tower_http::timeout::TimeoutLayer;

use crate::domain::Service;
use crate::domain::tokens::{self, AuthError};
use handlers as h;
use wire::{ApiError, SCIM_JSON};

/// Shared state of the handlers.
#[derive(Clone, Debug)]
pub struct AppState {
    pub svc: Arc<Service>,
}

/// Where the API is mounted.
pub const BASE_PATH: &str = "/scim/v2";

/// Builds the application.
pub fn router(svc: Arc<Service>, request_timeout: Duration) -> Router {
    router_with(svc, request_timeout, Router::new())
}

/// Builds the application with `extra` routes (the web pages, state applied) served at the
/// root next to the API, under the same logging, body limit and timeout.
pub fn router_with(svc: Arc<Service>, request_timeout: Duration, extra: Router) -> Router {
    let max_body = svc.max_body_bytes;
    let state = AppState { svc };
    let api = Router::new()
        .route("/Users", get(h::list_users).post(h::create_user))
        .route("/Users/.search", post(h::search_users))
        .route(
            "/Users/{id}",
            get(h::get_user)
                .put(h::put_user)
                .patch(h::patch_user)
                .delete(h::delete_user),
        )
        .route("/Groups", get(h::list_groups).post(h::create_group))
        .route("/Groups/.search", post(h::search_groups))
        .route(
            "/Groups/{id}",
            get(h::get_group)
                .put(h::put_group)
                .patch(h::patch_group)
                .delete(h::delete_group),
        )
        .route("/.search", post(h::search_root))
        .route("/Bulk", post(h::bulk))
        .route(scim::run_report::ENDPOINT, post(h::report_run))
        .route("/ServiceProviderConfig", get(h::service_provider_config))
        .route("/Schemas", get(h::schemas))
        .route("/Schemas/{id}", get(h::schema))
        .route("/ResourceTypes", get(h::resource_types))
        .route("/ResourceTypes/{name}", get(h::resource_type))
        .route_layer(middleware::from_fn_with_state(state.clone(), authenticate));
    Router::new()
        .nest(BASE_PATH, api)
        .fallback(not_found)
        .with_state(state)
        .merge(extra)
        .layer(DefaultBodyLimit::max(max_body))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::SERVICE_UNAVAILABLE,
            request_timeout,
        ))
        .layer(middleware::from_fn(scim_errors))
        .layer(middleware::from_fn(base_url))
        .layer(middleware::from_fn(log_request))
}

async fn not_found() -> ApiError {
    ApiError(ScimError::not_found("no such endpoint"))
}

/// Resolves the bearer token into the token's scopes (request extension) or answers 401.
async fn authenticate(State(st): State<AppState>, mut req: Request, next: Next) -> Response {
    let presented = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            let (scheme, token) = v.trim().split_once(' ')?;
            scheme
                .eq_ignore_ascii_case("bearer")
                .then(|| token.trim().to_string())
        });
    let result = match presented {
        None => Err(AuthError::Missing),
        Some(t) => tokens::authenticate(&st.svc.store, &t).await,
    };
    match result {
        Ok(scopes) => {
            req.extensions_mut().insert(scopes);
            next.run(req).await
        }
        Err(AuthError::Internal) => {
            ApiError(ScimError::new(500, None, "token check failed")).into_response()
        }
        Err(e) => ApiError(ScimError::new(401, None, format!("{e}"))).into_response(),
    }
}

/// Records the API base URL the client used (`meta.location`, `Location`).
async fn base_url(mut req: Request, next: Next) -> Response {
    let headers = req.headers();
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .or_else(|| req.uri().authority().map(|a| a.to_string()))
        .unwrap_or_else(|| "localhost".to_string());
    let proto = headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .filter(|p| *p == "https" || *p == "http")
        .unwrap_or("http")
        .to_string();
    req.extensions_mut()
        .insert(h::Base(format!("{proto}://{host}{BASE_PATH}")));
    next.run(req).await
}

/// Turns any error response that is not already SCIM (405 from routing, 503 from the
/// timeout, 413 from the body limit) into an RFC 7644 §3.12 body.
async fn scim_errors(req: Request, next: Next) -> Response {
    let resp = next.run(req).await;
    if resp.extensions().get::<crate::web::WebPage>().is_some() {
        // The sign-in pages answer in HTML, errors included.
        return resp;
    }
    let status = resp.status();
    let is_scim = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with(SCIM_JSON));
    if status.is_client_error() || status.is_server_error() {
        if is_scim {
            return resp;
        }
        let detail = match status {
            StatusCode::METHOD_NOT_ALLOWED => "method not allowed on this endpoint".to_string(),
            StatusCode::SERVICE_UNAVAILABLE => "request timed out".to_string(),
            StatusCode::PAYLOAD_TOO_LARGE => {
                "request body is larger than the service accepts".to_string()
            }
            s => s.canonical_reason().unwrap_or("error").to_string(),
        };
        let mut out = ApiError(ScimError::new(status.as_u16(), None, detail)).into_response();
        if let Some(allow) = resp.headers().get(header::ALLOW) {
            out.headers_mut().insert(header::ALLOW, allow.clone());
        }
        return out;
    }
    resp
}

/// One structured log line per request: method, path, status, latency. Never headers
/// (the bearer token) nor bodies (personal data).
async fn log_request(req: Request, next: Next) -> Response {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let started = Instant::now();
    let resp = next.run(req).await;
    let status = resp.status().as_u16();
    let latency_ms = started.elapsed().as_secs_f64() * 1000.0;
    if status >= 500 {
        tracing::warn!(%method, %path, status, latency_ms, "request");
    } else {
        tracing::info!(%method, %path, status, latency_ms, "request");
    }
    resp
}
