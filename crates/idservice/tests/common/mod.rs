//! Test harness: starts the real `idservice` binary on a free loopback port in a temporary
//! data directory, creates tokens through the CLI, and sends SCIM requests with reqwest.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, dead_code)]

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};

use reqwest::header::HeaderMap;
use reqwest::{Method, StatusCode};
use serde_json::Value;

pub const BIN: &str = env!("CARGO_BIN_EXE_idservice");
pub const ALL_SCOPES: &str =
    "escim_read_users,escim_write_users,escim_read_groups,escim_write_groups";
pub const IIJ: &str = "urn:iij:params:scim:schemas:extension:enterprisejp:2.0:User";

/// A running idservice.
pub struct Server {
    child: Child,
    pub dir: tempfile::TempDir,
    pub base: String,
    pub addr: String,
    pub token: String,
    pub client: reqwest::Client,
}

/// A response: status, JSON body (Null when empty), headers.
#[derive(Debug)]
pub struct Resp {
    pub status: StatusCode,
    pub body: Value,
    pub headers: HeaderMap,
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .map(|v| v.to_str().unwrap().to_string())
    }
    pub fn id(&self) -> String {
        self.body["id"].as_str().expect("id").to_string()
    }
    /// Asserts an RFC 7644 §3.12 error with this status, scimType and detail (if given).
    pub fn assert_error(&self, status: u16, scim_type: Option<&str>, detail: Option<&str>) {
        assert_eq!(self.status.as_u16(), status, "body: {}", self.body);
        assert_eq!(
            self.body["schemas"][0], "urn:ietf:params:scim:api:messages:2.0:Error",
            "{}",
            self.body
        );
        assert_eq!(self.body["status"], status.to_string());
        match scim_type {
            Some(t) => assert_eq!(self.body["scimType"], t, "{}", self.body),
            None => assert!(self.body.get("scimType").is_none(), "{}", self.body),
        }
        if let Some(d) = detail {
            assert_eq!(self.body["detail"], d, "{}", self.body);
        }
    }
}

pub fn install_crypto() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// Runs the CLI with `args` and `--data DIR` appended.
pub fn cli(dir: &Path, args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .arg("--data")
        .arg(dir)
        .env("NO_COLOR", "1")
        .output()
        .expect("run idservice")
}

/// Creates a token through the CLI.
pub fn create_token(dir: &Path, scopes: &str, expires: &str) -> String {
    let out = cli(
        dir,
        &["token", "create", "--scope", scopes, "--expires", expires],
    );
    assert!(
        out.status.success(),
        "token create failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// Spawns `idservice serve` and waits for its `listening on` line.
pub fn spawn_serve(dir: &Path, extra: &[&str]) -> (Child, String) {
    let mut child = Command::new(BIN)
        .args(["serve", "--listen", "127.0.0.1:0", "--data"])
        .arg(dir)
        .args(extra)
        .env("IDSERVICE_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn idservice");
    let stdout = child.stdout.take().unwrap();
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line).unwrap();
    let addr = line
        .trim()
        .strip_prefix("listening on http://")
        .unwrap_or_else(|| panic!("unexpected: {line:?}"))
        .to_string();
    (child, addr)
}

impl Server {
    pub fn start() -> Server {
        Server::start_with(&[])
    }

    pub fn start_with(extra: &[&str]) -> Server {
        install_crypto();
        let dir = tempfile::tempdir().unwrap();
        let token = create_token(dir.path(), ALL_SCOPES, "90d");
        let (child, addr) = spawn_serve(dir.path(), extra);
        Server {
            child,
            base: format!("http://{addr}/scim/v2"),
            addr,
            dir,
            token,
            client: reqwest::Client::builder().no_proxy().build().unwrap(),
        }
    }

    pub fn cli(&self, args: &[&str]) -> Output {
        cli(self.dir.path(), args)
    }

    pub fn new_token(&self, scopes: &str, expires: &str) -> String {
        create_token(self.dir.path(), scopes, expires)
    }

    /// A request with full control.
    pub async fn send(
        &self,
        token: Option<&str>,
        method: Method,
        path: &str,
        body: Option<Value>,
        headers: &[(&str, &str)],
    ) -> Resp {
        let url = if path.starts_with("http") {
            path.to_string()
        } else {
            format!("{}{}", self.base, path)
        };
        let mut rb = self.client.request(method, url);
        if let Some(t) = token {
            rb = rb.bearer_auth(t);
        }
        for (k, v) in headers {
            rb = rb.header(*k, *v);
        }
        if let Some(b) = body {
            rb = rb
                .header("content-type", "application/scim+json")
                .body(b.to_string());
        }
        let resp = rb.send().await.expect("request");
        let status = resp.status();
        let headers = resp.headers().clone();
        let text = resp.text().await.unwrap();
        let body = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        Resp {
            status,
            body,
            headers,
        }
    }

    pub async fn get(&self, path: &str) -> Resp {
        self.send(Some(&self.token), Method::GET, path, None, &[])
            .await
    }
    pub async fn post(&self, path: &str, body: Value) -> Resp {
        self.send(Some(&self.token), Method::POST, path, Some(body), &[])
            .await
    }
    pub async fn put(&self, path: &str, body: Value) -> Resp {
        self.send(Some(&self.token), Method::PUT, path, Some(body), &[])
            .await
    }
    pub async fn patch(&self, path: &str, body: Value) -> Resp {
        self.send(Some(&self.token), Method::PATCH, path, Some(body), &[])
            .await
    }
    pub async fn delete(&self, path: &str) -> Resp {
        self.send(Some(&self.token), Method::DELETE, path, None, &[])
            .await
    }

    /// Lists with a filter (URL-encoded here), returning the ListResponse.
    pub async fn filter(&self, endpoint: &str, filter: &str) -> Resp {
        let url = reqwest::Url::parse_with_params(
            &format!("{}{}", self.base, endpoint),
            [("filter", filter)],
        )
        .unwrap();
        self.get(url.as_str()).await
    }

    /// The sorted userNames a user filter returns.
    pub async fn user_names(&self, filter: &str) -> Vec<String> {
        let r = self.filter("/Users", filter).await;
        assert_eq!(r.status, 200, "filter {filter}: {}", r.body);
        let mut names: Vec<String> = r.body["Resources"]
            .as_array()
            .unwrap()
            .iter()
            .map(|u| u["userName"].as_str().unwrap().to_string())
            .collect();
        names.sort();
        names
    }

    /// Creates a user with the given body, asserting 201.
    pub async fn create_user(&self, body: Value) -> Value {
        let r = self.post("/Users", body).await;
        assert_eq!(r.status, 201, "create user: {}", r.body);
        r.body
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A minimal user body.
pub fn user(user_name: &str, external_id: &str) -> Value {
    serde_json::json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
        "userName": user_name,
        "externalId": external_id,
    })
}
pub mod console;
