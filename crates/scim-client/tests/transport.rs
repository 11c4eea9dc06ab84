//! Transport behaviour that no real SCIM server produces on demand: a service that answers
//! 429 with `Retry-After`, 503 twice, or refuses the token. A minimal axum server plays it.
//! (End-to-end behaviour against real servers is tested in the dirsync crate.)
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use scim_client::{Auth, ClientError, ClientOptions, ResourceKind, ScimClient};
use serde_json::json;

async fn serve(app: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}/scim/v2")
}

fn client(url: String, token: &str) -> ScimClient {
    let auth = Auth::Bearer {
        token: token.to_string().into(),
        credential: "iid.scim.token in secret.yml".into(),
    };
    let mut options = ClientOptions::new(url, auth);
    options.max_retries = 3;
    ScimClient::new(options).unwrap()
}

#[tokio::test]
async fn honours_retry_after_on_429_then_succeeds() {
    let hits = Arc::new(AtomicUsize::new(0));
    let h = hits.clone();
    let app = Router::new().route(
        "/scim/v2/Users/{id}",
        get(move || {
            let h = h.clone();
            async move {
                if h.fetch_add(1, Ordering::SeqCst) == 0 {
                    let mut headers = HeaderMap::new();
                    headers.insert("retry-after", "1".parse().unwrap());
                    (StatusCode::TOO_MANY_REQUESTS, headers, "slow down").into_response()
                } else {
                    axum::Json(json!({"id": "u1", "userName": "alice"})).into_response()
                }
            }
        }),
    );
    let c = client(serve(app).await, "tok");
    let started = Instant::now();
    let user = c.get(ResourceKind::Users, "u1").await.unwrap().unwrap();
    assert_eq!(user["userName"], "alice");
    assert_eq!(hits.load(Ordering::SeqCst), 2);
    assert!(
        started.elapsed() >= Duration::from_millis(950),
        "Retry-After was not honoured"
    );
}

#[tokio::test]
async fn post_is_not_repeated_after_a_500() {
    let hits = Arc::new(AtomicUsize::new(0));
    let h = hits.clone();
    let app = Router::new().route(
        "/scim/v2/Users",
        post(move || {
            let h = h.clone();
            async move {
                h.fetch_add(1, Ordering::SeqCst);
                (StatusCode::INTERNAL_SERVER_ERROR, "boom")
            }
        }),
    );
    let c = client(serve(app).await, "tok");
    let err = c
        .create(ResourceKind::Users, &json!({"userName": "a"}))
        .await
        .unwrap_err();
    assert!(
        matches!(err, ClientError::Server { status: 500, .. }),
        "{err:?}"
    );
    assert_eq!(hits.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn refused_token_stops_the_run_and_names_the_credential_not_the_secret() {
    let app = Router::new().route(
        "/scim/v2/Users",
        get(|| async {
            (
                StatusCode::UNAUTHORIZED,
                axum::Json(json!({"status": "401", "detail": "token expired"})),
            )
        }),
    );
    let c = client(serve(app).await, "super-secret-token-value");
    let err = c.list(ResourceKind::Users, None, None).await.unwrap_err();
    assert!(err.stops_run());
    let text = err.to_string();
    assert!(text.contains("iid.scim.token in secret.yml"), "{text}");
    assert!(text.contains("token expired"), "{text}");
    assert!(!text.contains("super-secret-token-value"), "{text}");
    assert!(!format!("{err:?}").contains("super-secret-token-value"));
}

#[tokio::test]
async fn rejected_object_carries_the_scim_error() {
    let app = Router::new().route(
        "/scim/v2/Users",
        post(|| async {
            (
                StatusCode::CONFLICT,
                axum::Json(json!({
                    "schemas": ["urn:ietf:params:scim:api:messages:2.0:Error"],
                    "status": "409", "scimType": "uniqueness",
                    "detail": "externalId has already been taken"
                })),
            )
        }),
    );
    let c = client(serve(app).await, "tok");
    let err = c
        .create(ResourceKind::Users, &json!({"userName": "a"}))
        .await
        .unwrap_err();
    assert!(!err.stops_run());
    let scim = err.scim().unwrap();
    assert_eq!(scim.status, 409);
    assert_eq!(scim.scim_type, Some(scim::ScimType::Uniqueness));
    assert_eq!(scim.detail, "externalId has already been taken");
}

#[tokio::test]
async fn unreachable_service_is_reported_once_with_its_url() {
    // Bind then drop to get a port with nothing listening.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let mut options = ClientOptions::new(format!("http://127.0.0.1:{port}/scim/v2"), Auth::None);
    options.max_retries = 1;
    let c = ScimClient::new(options).unwrap();
    let err = c.service_provider_config().await.unwrap_err();
    assert!(err.stops_run());
    assert!(
        err.to_string().contains(&format!("127.0.0.1:{port}")),
        "{err}"
    );
}

#[tokio::test]
async fn schema_extensions_come_from_resource_types_and_none_without_them() {
    let app = Router::new().route(
        "/scim/v2/ResourceTypes",
        get(|| async {
            axum::Json(json!({
                "schemas": ["urn:ietf:params:scim:api:messages:2.0:ListResponse"],
                "totalResults": 2,
                "Resources": [
                    {"name": "User", "endpoint": "/Users", "schemaExtensions": [{"schema": "urn:x:user", "required": false}]},
                    {"name": "Group", "endpoint": "/Groups", "schemaExtensions": [{"schema": "urn:x:group", "required": false}]}
                ]
            }))
        }),
    );
    let c = client(serve(app).await, "tok");
    assert_eq!(
        c.schema_extensions(ResourceKind::Groups).await.unwrap(),
        vec!["urn:x:group".to_string()]
    );
    assert_eq!(
        c.schema_extensions(ResourceKind::Users).await.unwrap(),
        vec!["urn:x:user".to_string()]
    );
    // A service without /ResourceTypes (404) advertises no extension.
    let c = client(serve(Router::new()).await, "tok");
    assert!(
        c.schema_extensions(ResourceKind::Groups)
            .await
            .unwrap()
            .is_empty()
    );
}

/// A service that takes 5 ms per request and, when `overload_above` requests are in flight,
/// answers 429 with `Retry-After: 0`. Returns its URL and (max in flight seen, 429s sent).
async fn busy_service(overload_above: usize) -> (String, Arc<AtomicUsize>, Arc<AtomicUsize>) {
    let in_flight = Arc::new(AtomicUsize::new(0));
    let peak = Arc::new(AtomicUsize::new(0));
    let refused = Arc::new(AtomicUsize::new(0));
    let (f, p, r) = (in_flight.clone(), peak.clone(), refused.clone());
    let app = Router::new().route(
        "/scim/v2/Users/{id}",
        get(move || {
            let (f, p, r) = (f.clone(), p.clone(), r.clone());
            async move {
                let now = f.fetch_add(1, Ordering::SeqCst) + 1;
                p.fetch_max(now, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(5)).await;
                f.fetch_sub(1, Ordering::SeqCst);
                if now > overload_above {
                    r.fetch_add(1, Ordering::SeqCst);
                    let mut headers = HeaderMap::new();
                    headers.insert("retry-after", "0".parse().unwrap());
                    (StatusCode::TOO_MANY_REQUESTS, headers, "busy").into_response()
                } else {
                    axum::Json(json!({"id": "u1", "userName": "alice"})).into_response()
                }
            }
        }),
    );
    (serve(app).await, peak, refused)
}

fn adaptive_client(url: String, max: usize) -> ScimClient {
    let mut options = ClientOptions::new(url, Auth::None);
    options.max_retries = 20;
    options.max_concurrency = max;
    ScimClient::new(options).unwrap()
}

async fn hammer(c: &ScimClient, n: usize) {
    let results = futures::future::join_all((0..n).map(|_| c.get(ResourceKind::Users, "u1"))).await;
    assert!(
        results.iter().all(|r| matches!(r, Ok(Some(_)))),
        "a request failed"
    );
}

#[tokio::test]
async fn concurrency_grows_while_the_service_keeps_up() {
    let (url, peak, refused) = busy_service(usize::MAX).await;
    let c = adaptive_client(url, 16);
    hammer(&c, 300).await;
    let stats = c.concurrency();
    assert_eq!(stats.peak, 16, "{stats:?}");
    assert!(
        peak.load(Ordering::SeqCst) > 4,
        "never more than the initial 4 in flight"
    );
    assert!(
        peak.load(Ordering::SeqCst) <= 16,
        "more in flight than allowed"
    );
    assert_eq!(refused.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn concurrency_backs_off_when_the_service_answers_429() {
    // Control: without the gate, 100 simultaneous requests against a service that takes 3 at
    // a time draw most of the wave as refusals.
    let (url, _, refused_ungated) = busy_service(3).await;
    hammer(&adaptive_client(url, 0), 100).await;
    let ungated = refused_ungated.load(Ordering::SeqCst);
    assert!(ungated > 60, "control drew only {ungated} refusals");

    let (url, peak, refused) = busy_service(3).await;
    let c = adaptive_client(url, 16);
    hammer(&c, 100).await;
    let stats = c.concurrency();
    assert!(stats.throttled > 0, "{stats:?}");
    let gated = refused.load(Ordering::SeqCst);
    assert!(
        gated < 40,
        "{gated} refusals (ungated: {ungated}): no back-off; {stats:?}"
    );
    assert!(peak.load(Ordering::SeqCst) <= 16);
}

/// What a listener that must never be called received: method, path, whether an
/// `Authorization` header came with it, and the body.
type Seen = Arc<std::sync::Mutex<Vec<(String, String, bool, String)>>>;

/// A listener on another port that records every request and answers like a service that
/// accepted it (so that a client which followed a redirect to it would see success).
async fn recorder() -> (String, Seen) {
    let seen: Seen = Arc::default();
    let s = seen.clone();
    let app = Router::new().fallback(
        move |method: axum::http::Method,
              uri: axum::http::Uri,
              headers: HeaderMap,
              body: String| {
            let s = s.clone();
            async move {
                let auth = headers.contains_key("authorization");
                s.lock()
                    .unwrap()
                    .push((method.to_string(), uri.path().to_string(), auth, body));
                (
                    StatusCode::OK,
                    axum::Json(json!({"id": "u1", "userName": "a", "access_token": "t"})),
                )
            }
        },
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}"), seen)
}

fn redirect(status: StatusCode, location: String) -> axum::response::Response {
    let mut headers = HeaderMap::new();
    headers.insert("location", location.parse().unwrap());
    (status, headers).into_response()
}

/// A redirect is an error naming the status and the location; neither the token nor a
/// password PATCH reaches the redirect target, on another port or on the same one.
#[tokio::test]
async fn redirects_are_not_followed_with_credentials() {
    let (elsewhere, seen) = recorder().await;
    // The same service, another path: reqwest would keep the Authorization header there.
    let seen_here: Seen = Arc::default();
    let to_other = format!("{elsewhere}/scim/v2/Users");
    let here = seen_here.clone();
    let app = Router::new()
        .route(
            "/scim/v2/Users",
            post({
                let to = to_other.clone();
                move || async move { redirect(StatusCode::TEMPORARY_REDIRECT, to) }
            }),
        )
        .route(
            "/scim/v2/Users/{id}",
            get({
                let to = format!("{elsewhere}/scim/v2/Users/u1");
                move || async move { redirect(StatusCode::FOUND, to) }
            })
            .patch(|| async { redirect(StatusCode::PERMANENT_REDIRECT, "/captured/u1".into()) }),
        )
        .route(
            "/captured/{id}",
            axum::routing::any(move |headers: HeaderMap, body: String| {
                let here = here.clone();
                async move {
                    let auth = headers.contains_key("authorization");
                    here.lock()
                        .unwrap()
                        .push(("?".into(), "/captured".into(), auth, body));
                    axum::Json(json!({"id": "u1"}))
                }
            }),
        );
    let c = client(serve(app).await, "bearer-token-value");

    let err = c
        .create(ResourceKind::Users, &json!({"userName": "a"}))
        .await
        .expect_err("a 307 must not be followed");
    let text = err.to_string();
    assert!(text.contains("307"), "{text}");
    assert!(text.contains(&to_other), "{text}");
    assert!(err.stops_run(), "{err:?}");

    let err = c
        .get(ResourceKind::Users, "u2")
        .await
        .expect_err("a 302 must not be followed");
    assert!(err.to_string().contains("302"), "{err}");

    let password: scim::PatchOperation = serde_json::from_value(
        json!({"op": "replace", "path": "password", "value": "N3w-Passw0rd!"}),
    )
    .unwrap();
    let err = c
        .patch(ResourceKind::Users, "u1", &[password])
        .await
        .expect_err("a 308 must not be followed");
    let text = err.to_string();
    assert!(
        text.contains("308") && text.contains("/captured/u1"),
        "{text}"
    );
    assert!(!text.contains("bearer-token-value") && !text.contains("N3w-Passw0rd!"));

    assert!(
        seen.lock().unwrap().is_empty(),
        "{:?}",
        seen.lock().unwrap()
    );
    assert!(
        seen_here.lock().unwrap().is_empty(),
        "{:?}",
        seen_here.lock().unwrap()
    );
}

/// The OAuth2 client secret is not posted again to where a token endpoint redirects.
#[tokio::test]
async fn oauth2_client_secret_is_not_sent_to_a_redirect() {
    let (elsewhere, seen) = recorder().await;
    let to = format!("{elsewhere}/token");
    let app = Router::new().route(
        "/oauth/token",
        post({
            let to = to.clone();
            move || async move { redirect(StatusCode::TEMPORARY_REDIRECT, to) }
        }),
    );
    let base = serve(app).await;
    let token_url = base.replace("/scim/v2", "/oauth/token");
    let auth = Auth::OAuth2(scim_client::OAuth2ClientCredentials {
        token_url: token_url.clone(),
        client_id: "dirsync".into(),
        client_secret: "client-secret-value".to_string().into(),
        scope: None,
        credential: "client_secret in secret.yml".into(),
    });
    let c = ScimClient::new(ClientOptions::new(base, auth)).unwrap();
    let err = c
        .service_provider_config()
        .await
        .expect_err("the token endpoint's 307 must not be followed");
    let text = err.to_string();
    assert!(text.contains("307") && text.contains(&to), "{text}");
    assert!(text.contains(&token_url), "{text}");
    assert!(!text.contains("client-secret-value"), "{text}");
    assert!(
        seen.lock().unwrap().is_empty(),
        "{:?}",
        seen.lock().unwrap()
    );
}
