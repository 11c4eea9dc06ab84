//! The fuzz targets' bodies, one module each (`fuzz/fuzz_targets/NAME.rs` runs `NAME::run`
//! under libFuzzer; `tests/seeds.rs` runs every checked-in seed through them in the test
//! suite), and their shared parts: the in-process idservice (the real axum router over a
//! SQLite store in a temporary directory, called without sockets), the checks every SCIM
//! response must pass, and the panic guard for ldap3's control parsers.
//!
//! A test-harness crate: a failed check panics (that is what libFuzzer reports as a crash), so
//! the workspace's no-panic lints are allowed here.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

pub mod config_load;
pub mod dirsync_control;
pub mod idservice_bulk;
pub mod idservice_groups;
pub mod idservice_search;
pub mod idservice_users;
pub mod ldap_filter;
pub mod ldif;
pub mod password_capture;
pub mod scim_filter_sql;
pub mod scim_patch;
pub mod syncrepl_control;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use http_body_util::BodyExt as _;
use idservice::domain::Service;
use idservice::domain::tokens::{self, Scopes};
use idservice::store::Store;
use serde_json::Value;
use tower::ServiceExt as _;

/// The media type of SCIM requests.
pub const SCIM_JSON: &str = "application/scim+json";

/// idservice in process: the router the server runs, over a fresh SQLite database.
pub struct App {
    rt: tokio::runtime::Runtime,
    router: Router,
    svc: Arc<Service>,
    auth: String,
    _dir: tempfile::TempDir,
}

/// A response: status and body.
pub struct Reply {
    pub status: StatusCode,
    pub body: Vec<u8>,
}

impl Reply {
    /// The body as JSON (`Null` when empty).
    pub fn json(&self) -> Value {
        if self.body.is_empty() {
            return Value::Null;
        }
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "{}: the body is not JSON ({e}): {}",
                self.status,
                String::from_utf8_lossy(&self.body)
            )
        })
    }
}

impl App {
    /// A service with an empty database in a temporary directory (on /dev/shm when there is
    /// one: the database is written on every request) and a token with every scope.
    pub fn new() -> App {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let shm = std::path::Path::new("/dev/shm");
        let dir = if shm.is_dir() {
            tempfile::Builder::new()
                .prefix("dirsync-fuzz-")
                .tempdir_in(shm)
        } else {
            tempfile::tempdir()
        }
        .unwrap();
        let (svc, secret) = rt.block_on(async {
            let store = Store::open(&dir.path().join("data")).await.unwrap();
            let token = tokens::create(&store, Scopes::all(), None, None)
                .await
                .unwrap();
            let svc = Arc::new(Service::new(store, 30, 10 * 1024 * 1024));
            (svc, token.secret)
        });
        App {
            rt,
            router: idservice::http::router(svc.clone(), Duration::from_secs(30)),
            svc,
            auth: format!("Bearer {secret}"),
            _dir: dir,
        }
    }

    /// The service behind the router.
    pub fn service(&self) -> &Service {
        &self.svc
    }

    /// Runs `f` on the service's runtime.
    pub fn block_on<F: std::future::Future>(&self, f: F) -> F::Output {
        self.rt.block_on(f)
    }

    /// Sends one request with a SCIM JSON body (empty: none) and returns the response after
    /// [`check`]ing it.
    pub fn call(&self, method: Method, uri: &str, body: &[u8]) -> Reply {
        let req = Request::builder()
            .method(method)
            .uri(uri)
            .header(header::HOST, "fuzz.test")
            .header(header::AUTHORIZATION, &self.auth)
            .header(header::CONTENT_TYPE, SCIM_JSON)
            .body(Body::from(body.to_vec()))
            .unwrap();
        let reply = self.rt.block_on(async {
            let resp = self.router.clone().oneshot(req).await.unwrap();
            let status = resp.status();
            let body = resp
                .into_body()
                .collect()
                .await
                .unwrap()
                .to_bytes()
                .to_vec();
            Reply { status, body }
        });
        check(&reply);
        reply
    }
}

impl Default for App {
    fn default() -> Self {
        App::new()
    }
}

/// What every answer to a client's body must be: never a 500 (a body the service cannot
/// handle is the client's error, a 4xx), JSON when there is a body, and an RFC 7644 §3.12
/// error whose `status` matches the HTTP status for every 4xx.
pub fn check(reply: &Reply) {
    let body = reply.json();
    assert!(
        !reply.status.is_server_error(),
        "{}: {}",
        reply.status,
        body
    );
    if reply.status.is_client_error() {
        assert_eq!(
            body["schemas"][0], "urn:ietf:params:scim:api:messages:2.0:Error",
            "{body}"
        );
        assert_eq!(body["status"], reply.status.as_str(), "{body}");
    } else if !body.is_null() {
        assert!(body.is_object(), "{}: {body}", reply.status);
    }
}

/// Splits fuzz input at the first NUL byte: (before, after). No NUL: (all, empty).
pub fn split_nul(data: &[u8]) -> (&[u8], &[u8]) {
    match data.iter().position(|b| *b == 0) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[]),
    }
}

/// Makes panics raised inside ldap3's own source (its control and message parsers panic on
/// malformed BER by design) unwind quietly, to be caught with `catch_unwind` as the agent's
/// guarded reads catch them; any other panic still aborts, so libFuzzer reports it as a
/// crash. Install once, from the target's `init`.
pub fn quiet_ldap3_panics() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let in_ldap3 = info
            .location()
            .is_some_and(|l| l.file().contains("/ldap3-") || l.file().contains("/ldap3_"));
        if !in_ldap3 {
            default(info);
            std::process::abort();
        }
    }));
}

/// Runs `f`, answering `None` when ldap3 panicked inside it (see [`quiet_ldap3_panics`]).
pub fn guarded<T>(f: impl FnOnce() -> T) -> Option<T> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).ok()
}
