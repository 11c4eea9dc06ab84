#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Sign-in, password reset and email (behaviour §7.4, 7.5) against the real `idservice` binary and
//! a real SMTP sink (aiosmtpd, `testenv::SmtpSink`): the password policy on SCIM writes, the
//! generic sign-in failure, rate limits and lockout, single-use and expiring reset links,
//! who receives which email, no email from SCIM writes, the durable outbox (relay down, then
//! up; a rejected address), expiry checks — and, every server running at debug log level, no
//! password, token, session cookie or reset link in its output.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};
use testenv::{ReceivedMail, SmtpSink};

const BIN: &str = env!("CARGO_BIN_EXE_idservice");
const SCOPES: &str = "escim_read_users,escim_write_users,escim_read_groups,escim_write_groups";
const GENERIC: &str = "Incorrect user name or password.";

/// An idservice started with a configuration file, at debug log level, its stdout and
/// stderr kept in files for the secret grep.
struct Ids {
    child: Option<Child>,
    dir: tempfile::TempDir,
    addr: String,
    token: String,
    http: reqwest::Client,
    runs: usize,
    /// More `serve` options.
    extra: Vec<String>,
}

fn cli(data: &Path, args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .arg("--data")
        .arg(data)
        .env("IDSERVICE_LOG", "debug")
        .output()
        .unwrap()
}

impl Ids {
    fn start(config_yaml: &str) -> Ids {
        Self::start_with_files(config_yaml, &[])
    }

    /// With extra files beside the configuration (e.g. the relay password file).
    fn start_with_files(config_yaml: &str, files: &[(&str, &str)]) -> Ids {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let dir = tempfile::tempdir().unwrap();
        for (name, content) in files {
            // secret files (the relay password) must be private to be accepted
            std::fs::write(dir.path().join(name), content).unwrap();
            std::fs::set_permissions(
                dir.path().join(name),
                std::os::unix::fs::PermissionsExt::from_mode(0o600),
            )
            .unwrap();
        }
        std::fs::write(dir.path().join("idservice.yml"), config_yaml).unwrap();
        let out = cli(
            &dir.path().join("data"),
            &["token", "create", "--scope", SCOPES, "--expires", "1d"],
        );
        assert!(out.status.success(), "{out:?}");
        let token = String::from_utf8(out.stdout).unwrap().trim().to_string();
        let mut ids = Ids {
            child: None,
            dir,
            addr: String::new(),
            token,
            http: reqwest::Client::builder()
                .no_proxy()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            runs: 0,
            extra: Vec::new(),
        };
        ids.spawn();
        ids
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn config(&self) -> PathBuf {
        self.dir.path().join("idservice.yml")
    }

    /// (Re)starts the server on the same data directory; output goes to run-N.{out,err}.
    fn spawn(&mut self) {
        self.runs += 1;
        let out_path = self.dir.path().join(format!("run-{}.out", self.runs));
        let err_path = self.dir.path().join(format!("run-{}.err", self.runs));
        let child = Command::new(BIN)
            .args(["serve", "--listen", "127.0.0.1:0", "--data"])
            .arg(self.data())
            .arg("--config")
            .arg(self.config())
            .args(&self.extra)
            .env("IDSERVICE_LOG", "debug")
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&out_path).unwrap())
            .stderr(std::fs::File::create(&err_path).unwrap())
            .spawn()
            .unwrap();
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let text = std::fs::read_to_string(&out_path).unwrap_or_default();
            if let Some(a) = text
                .lines()
                .find_map(|l| l.strip_prefix("listening on http://"))
            {
                self.addr = a.trim().to_string();
                return;
            }
            if let Some(st) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!(
                    "idservice exited ({st}): {}",
                    std::fs::read_to_string(&err_path).unwrap_or_default()
                );
            }
            assert!(Instant::now() < deadline, "idservice did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    async fn scim(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut rb = self
            .http
            .request(method, self.url(&format!("/scim/v2{path}")))
            .bearer_auth(&self.token);
        if let Some(b) = body {
            rb = rb
                .header("content-type", "application/scim+json")
                .body(b.to_string());
        }
        let r = rb.send().await.unwrap();
        let status = r.status().as_u16();
        let text = r.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    async fn create_user(
        &self,
        user_name: &str,
        emails: &[&str],
        password: Option<&str>,
    ) -> String {
        let mut body = json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
            "userName": user_name,
            "externalId": format!("ext-{user_name}"),
            "emails": emails.iter().enumerate()
                .map(|(i, e)| json!({"value": e, "primary": i == 0}))
                .collect::<Vec<_>>(),
        });
        if let Some(p) = password {
            body["password"] = json!(p);
        }
        let (st, b) = self.scim(reqwest::Method::POST, "/Users", Some(body)).await;
        assert_eq!(st, 201, "{b}");
        b["id"].as_str().unwrap().to_string()
    }

    async fn form(
        &self,
        path: &str,
        fields: &[(&str, &str)],
    ) -> (StatusCode, reqwest::header::HeaderMap, String) {
        let r = self
            .http
            .post(self.url(path))
            .form(fields)
            .send()
            .await
            .unwrap();
        let (st, h) = (r.status(), r.headers().clone());
        (st, h, r.text().await.unwrap())
    }

    async fn signin(
        &self,
        user: &str,
        password: &str,
    ) -> (StatusCode, reqwest::header::HeaderMap, String) {
        self.form("/signin", &[("username", user), ("password", password)])
            .await
    }

    async fn get(&self, path: &str) -> (StatusCode, String) {
        let r = self.http.get(self.url(path)).send().await.unwrap();
        (r.status(), r.text().await.unwrap())
    }

    fn sql(&self, statement: &str) {
        let db = self.data().join("idservice.db");
        let rt = tokio::runtime::Handle::current();
        let statement = statement.to_string();
        tokio::task::block_in_place(|| {
            rt.block_on(async {
                use sqlx::ConnectOptions;
                let mut conn = sqlx::sqlite::SqliteConnectOptions::new()
                    .filename(&db)
                    .connect()
                    .await
                    .unwrap();
                sqlx::query(sqlx::AssertSqlSafe(statement))
                    .execute(&mut conn)
                    .await
                    .unwrap();
            })
        });
    }

    fn outbox_status(&self) -> String {
        let out = cli(&self.data(), &["mail", "status"]);
        assert!(out.status.success(), "{out:?}");
        String::from_utf8(out.stdout).unwrap()
    }

    /// Everything the server printed (all runs) and the given CLI outputs.
    fn output(&self) -> String {
        let mut all = String::new();
        for n in 1..=self.runs {
            for ext in ["out", "err"] {
                let mut f =
                    std::fs::File::open(self.dir.path().join(format!("run-{n}.{ext}"))).unwrap();
                f.read_to_string(&mut all).unwrap();
            }
        }
        all
    }

    /// No secret in the server's output: passwords, tokens, cookies, reset links.
    fn assert_no_secrets(&self, secrets: &[&str]) {
        let out = self.output();
        assert!(
            out.contains("DEBUG"),
            "the server ran at debug level, so the grep means something"
        );
        for pattern in ["reset?token=", "$argon2", "idservice_session="] {
            assert!(
                !out.contains(pattern),
                "{pattern} appears in the server output"
            );
        }
        for s in secrets.iter().filter(|s| !s.is_empty()) {
            assert!(
                !out.contains(s),
                "a secret ({} chars) appears in the server output",
                s.len()
            );
        }
    }
}

impl Drop for Ids {
    fn drop(&mut self) {
        self.stop();
    }
}

fn config(sink_port: u16, extra: &str) -> String {
    format!(
        "service_name: Acme ID\nsmtp:\n  host: 127.0.0.1\n  port: {sink_port}\n  starttls: false\n  from: 'Acme ID <noreply@acme.test>'\noutbox:\n  poll_seconds: 1\n  retry_base_seconds: 1\n{extra}"
    )
}

fn sink(args: &str) -> SmtpSink {
    SmtpSink::start_with(args).unwrap_or_else(|e| panic!("smtp sink: {e}"))
}

/// Waits until the sink holds `n` messages; fails if more arrive within a short grace.
async fn wait_mail(sink: &SmtpSink, n: usize) -> Vec<ReceivedMail> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let m = sink.messages().unwrap();
        if m.len() >= n {
            tokio::time::sleep(Duration::from_millis(300)).await;
            let m = sink.messages().unwrap();
            assert_eq!(
                m.len(),
                n,
                "{:?}",
                m.iter().map(|x| (&x.rcpts, &x.subject)).collect::<Vec<_>>()
            );
            return m;
        }
        assert!(
            Instant::now() < deadline,
            "expected {n} mails, got {:?}",
            m.iter().map(|x| (&x.rcpts, &x.subject)).collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn rcpts_of(mails: &[ReceivedMail], subject: &str) -> Vec<String> {
    let mut v: Vec<String> = mails
        .iter()
        .filter(|m| m.subject == subject)
        .flat_map(|m| m.rcpts.clone())
        .collect();
    v.sort();
    v
}

/// The reset link (`http://…/reset?token=…`) in a message body.
fn link_in(m: &ReceivedMail) -> String {
    m.body
        .split_whitespace()
        .find(|w| w.contains("/reset?token="))
        .unwrap_or_else(|| panic!("no link in {}", m.body))
        .to_string()
}

fn path_of(link: &str) -> String {
    let i = link.find("/reset?").unwrap();
    link[i..].to_string()
}

fn token_of(link: &str) -> String {
    link.split("token=").nth(1).unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn password_policy_and_no_mail_from_scim_writes() {
    let sink = sink("");
    let ids = Ids::start(&config(sink.port, "password_policy:\n  min_length: 12\n"));
    let body = |pw: Value| {
        json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
               "userName": "p@acme.test", "password": pw,
               "emails": [{"value": "p@acme.test", "primary": true}]})
    };
    for bad in [json!(""), json!("only-11-chr")] {
        let (st, b) = ids
            .scim(reqwest::Method::POST, "/Users", Some(body(bad)))
            .await;
        assert_eq!(
            (st, b["scimType"].as_str()),
            (400, Some("invalidValue")),
            "{b}"
        );
    }
    // Create (with and without a password), replace, patch: never any mail.
    let id = ids
        .create_user(
            "p@acme.test",
            &["p@acme.test", "p2@acme.test"],
            Some("twelve-chars"),
        )
        .await;
    ids.create_user("q@acme.test", &["q@acme.test"], None).await;
    let (st, b) = ids
        .scim(
            reqwest::Method::PATCH,
            &format!("/Users/{id}"),
            Some(
                json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
                        "Operations": [{"op": "replace", "path": "password", "value": "short"}]}),
            ),
        )
        .await;
    assert_eq!(
        (st, b["scimType"].as_str()),
        (400, Some("invalidValue")),
        "{b}"
    );
    let (st, b) = ids
        .scim(
            reqwest::Method::PATCH,
            &format!("/Users/{id}"),
            Some(json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
                        "Operations": [{"op": "replace", "path": "password", "value": "a-new-long-password"}]})),
        )
        .await;
    assert_eq!(st, 200, "{b}");
    assert!(b.get("password").is_none());
    let mut put = body(json!("replaced-password-1"));
    put["emails"] = json!([{"value": "p@acme.test", "primary": true}]);
    let (st, b) = ids
        .scim(reqwest::Method::PUT, &format!("/Users/{id}"), Some(put))
        .await;
    assert_eq!(st, 200, "{b}");
    // The patched-then-replaced password is the one that works.
    assert_eq!(
        ids.signin("p@acme.test", "a-new-long-password").await.0,
        401
    );
    assert_eq!(
        ids.signin("p@acme.test", "replaced-password-1").await.0,
        303
    );
    tokio::time::sleep(Duration::from_millis(2500)).await; // > two outbox polls
    assert!(sink.messages().unwrap().is_empty());
    assert_eq!(ids.outbox_status().trim(), "", "nothing queued");

    // The same server does send mail (so the silence above is not a broken relay).
    let (st, _, page) = ids.form("/forgot", &[("username", "q@acme.test")]).await;
    assert_eq!(st, 200, "{page}");
    let m = wait_mail(&sink, 1).await;
    assert_eq!(m[0].subject, "[Acme ID] Password reset requested");
    ids.assert_no_secrets(&[
        "twelve-chars",
        "only-11-chr",
        "a-new-long-password",
        "replaced-password-1",
        &ids.token,
        &token_of(&link_in(&m[0])),
    ]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signin_generic_failure_states_and_lockout() {
    let sink = sink("");
    let ids = Ids::start(&config(
        sink.port,
        "signin:\n  max_failures: 3\n  lockout_minutes: 10\n",
    ));
    let pw = "correct horse battery";
    let id = ids
        .create_user(
            "ann@acme.test",
            &["ann@acme.test", "ann.home@acme.test", "ann.alt@acme.test"],
            Some(pw),
        )
        .await;
    ids.create_user("nopw@acme.test", &["nopw@acme.test"], None)
        .await;
    let dis = ids
        .create_user("dis@acme.test", &["dis@acme.test"], Some(pw))
        .await;
    let pend = ids
        .create_user("pend@acme.test", &["pend@acme.test"], Some(pw))
        .await;
    let (st, _) = ids
        .scim(
            reqwest::Method::PATCH,
            &format!("/Users/{dis}"),
            Some(
                json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
                        "Operations": [{"op": "replace", "path": "active", "value": false}]}),
            ),
        )
        .await;
    assert_eq!(st, 200);
    assert_eq!(
        ids.scim(reqwest::Method::DELETE, &format!("/Users/{pend}"), None)
            .await
            .0,
        204
    );

    // Success: 303 to /account with a session cookie that opens the account page.
    let (st, h, _) = ids.signin("ANN@acme.test", pw).await;
    assert_eq!(st, StatusCode::SEE_OTHER);
    assert_eq!(h["location"], "/account");
    let cookie = h["set-cookie"].to_str().unwrap().to_string();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    let session = cookie.split(';').next().unwrap().to_string();
    let r = ids
        .http
        .get(ids.url("/account"))
        .header("cookie", &session)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.text().await.unwrap().contains("ann@acme.test"));
    assert_eq!(
        ids.get("/account").await.0,
        StatusCode::SEE_OTHER,
        "no cookie, no account"
    );

    // Every failure looks the same: unknown user, wrong password, no password, disabled, pending.
    let mut pages = Vec::new();
    for (u, p) in [
        ("nobody@acme.test", pw),
        ("nopw@acme.test", ""),
        ("nopw@acme.test", "anything at all"),
        ("dis@acme.test", pw),
        ("pend@acme.test", pw),
    ] {
        let (st, _, page) = ids.signin(u, p).await;
        assert_eq!(st, StatusCode::UNAUTHORIZED, "{u}");
        assert!(page.contains(GENERIC), "{u}: {page}");
        pages.push(page.replace(u, "USER"));
    }
    assert!(
        pages.windows(2).all(|w| w[0] == w[1]),
        "identical failure pages"
    );
    assert!(
        sink.messages().unwrap().is_empty(),
        "no mail for these failures"
    );

    // Three wrong passwords lock the account; then even the right one fails, generically.
    for _ in 0..3 {
        let (st, _, page) = ids.signin("ann@acme.test", "wrong password!").await;
        assert_eq!(st, StatusCode::UNAUTHORIZED);
        assert!(page.contains(GENERIC));
    }
    let (st, _, page) = ids.signin("ann@acme.test", pw).await;
    assert_eq!(st, StatusCode::UNAUTHORIZED, "locked");
    assert!(page.contains(GENERIC));
    let m = wait_mail(&sink, 1).await;
    assert_eq!(m[0].subject, "[Acme ID] Account locked");
    assert_eq!(
        m[0].rcpts,
        ["ann@acme.test"],
        "account locked: primary address only"
    );
    assert_eq!(m[0].mail_from, "noreply@acme.test");

    // A reset (which goes to every address) clears the lockout.
    ids.form("/forgot", &[("username", "ann@acme.test")]).await;
    let m = wait_mail(&sink, 4).await;
    assert_eq!(
        rcpts_of(&m, "[Acme ID] Password reset requested"),
        ["ann.alt@acme.test", "ann.home@acme.test", "ann@acme.test"]
    );
    let link = link_in(&m[1]);
    let new_pw = "a brand new passphrase";
    let (st, _, page) = ids
        .form(
            "/reset",
            &[
                ("token", &token_of(&link)),
                ("password", new_pw),
                ("confirm", new_pw),
            ],
        )
        .await;
    assert_eq!(st, 200, "{page}");
    assert_eq!(
        ids.signin("ann@acme.test", new_pw).await.0,
        StatusCode::SEE_OTHER
    );
    // The old session ended with the reset.
    let r = ids
        .http
        .get(ids.url("/account"))
        .header("cookie", &session)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let _ = id;
    ids.assert_no_secrets(&[
        pw,
        new_pw,
        "wrong password!",
        &token_of(&link),
        &session["idservice_session=".len()..],
        &ids.token,
    ]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limits_per_account_and_per_address() {
    let sink = sink("");
    let ids = Ids::start(&config(
        sink.port,
        "signin:\n  max_failures: 50\n  per_account_per_minute: 3\n  per_address_per_minute: 5\n",
    ));
    ids.create_user("rl@acme.test", &["rl@acme.test"], Some("rate-limited-pw"))
        .await;
    for _ in 0..3 {
        assert_eq!(ids.signin("rl@acme.test", "nope-nope").await.0, 401);
    }
    let (st, h, _) = ids.signin("rl@acme.test", "rate-limited-pw").await;
    assert_eq!(st, StatusCode::TOO_MANY_REQUESTS, "4th try on one account");
    assert_eq!(h["retry-after"], "60");
    // Another account from the same address: the address budget (5) still has one left.
    assert_eq!(ids.signin("other@acme.test", "x-x-x-x-x").await.0, 401);
    assert_eq!(
        ids.signin("third@acme.test", "x-x-x-x-x").await.0,
        StatusCode::TOO_MANY_REQUESTS,
        "6th request from one address"
    );
    assert_eq!(
        ids.form("/forgot", &[("username", "rl@acme.test")]).await.0,
        StatusCode::TOO_MANY_REQUESTS,
        "reset requests share the limits"
    );
    ids.assert_no_secrets(&["rate-limited-pw", "nope-nope"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reset_link_single_use_expiring_and_only_for_active_users() {
    let sink = sink("");
    let ids = Ids::start(&config(sink.port, "password_policy:\n  min_length: 10\n"));
    // Created without a password, as a directory sync does: the reset path gives one.
    ids.create_user(
        "syn@acme.test",
        &["syn@acme.test", "s.two@acme.test", "s.three@acme.test"],
        None,
    )
    .await;
    let dis = ids
        .create_user("dis@acme.test", &["dis@acme.test"], None)
        .await;
    let pend = ids
        .create_user("pend@acme.test", &["pend@acme.test"], None)
        .await;
    ids.scim(
        reqwest::Method::PATCH,
        &format!("/Users/{dis}"),
        Some(
            json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
                    "Operations": [{"op": "replace", "path": "active", "value": false}]}),
        ),
    )
    .await;
    ids.scim(reqwest::Method::DELETE, &format!("/Users/{pend}"), None)
        .await;

    // The same neutral answer for everyone; mail only for the active user.
    let mut answers = Vec::new();
    for u in [
        "nobody@acme.test",
        "dis@acme.test",
        "pend@acme.test",
        "syn@acme.test",
    ] {
        let (st, _, page) = ids.form("/forgot", &[("username", u)]).await;
        assert_eq!(st, 200);
        answers.push(page);
    }
    assert!(answers.windows(2).all(|w| w[0] == w[1]), "neutral answer");
    let m = wait_mail(&sink, 3).await;
    assert_eq!(
        rcpts_of(&m, "[Acme ID] Password reset requested"),
        ["s.three@acme.test", "s.two@acme.test", "syn@acme.test"]
    );
    let link = link_in(&m[0]);
    assert!(
        m.iter().all(|x| link_in(x) == link),
        "one link, every address"
    );
    assert!(
        link.starts_with(&format!("http://{}/reset?token=", ids.addr)),
        "{link}"
    );
    let token = token_of(&link);

    // Opening the link does not use it; wrong input keeps it usable.
    let (st, page) = ids.get(&path_of(&link)).await;
    assert_eq!(st, 200, "{page}");
    assert_eq!(ids.get(&path_of(&link)).await.0, 200);
    let (st, _, page) = ids
        .form(
            "/reset",
            &[
                ("token", &token),
                ("password", "first-choice-1"),
                ("confirm", "first-choice-2"),
            ],
        )
        .await;
    assert_eq!(st, 400);
    assert!(page.contains("differ"));
    let (st, _, page) = ids
        .form(
            "/reset",
            &[
                ("token", &token),
                ("password", "short"),
                ("confirm", "short"),
            ],
        )
        .await;
    assert_eq!(st, 400);
    assert!(page.contains("at least 10"), "{page}");
    let pw = "finally-a-password";
    let (st, _, page) = ids
        .form(
            "/reset",
            &[("token", &token), ("password", pw), ("confirm", pw)],
        )
        .await;
    assert_eq!(st, 200, "{page}");
    let m = wait_mail(&sink, 6).await;
    assert_eq!(
        rcpts_of(&m, "[Acme ID] Password has been reset"),
        ["s.three@acme.test", "s.two@acme.test", "syn@acme.test"]
    );
    assert_eq!(
        ids.signin("syn@acme.test", pw).await.0,
        StatusCode::SEE_OTHER
    );

    // Single use.
    assert_eq!(ids.get(&path_of(&link)).await.0, 400);
    let (st, _, _) = ids
        .form(
            "/reset",
            &[
                ("token", &token),
                ("password", "another-password"),
                ("confirm", "another-password"),
            ],
        )
        .await;
    assert_eq!(st, 400);
    assert_eq!(
        ids.signin("syn@acme.test", pw).await.0,
        StatusCode::SEE_OTHER
    );

    // Time-limited: a link past its expiry (moved into the past in the database) is refused.
    ids.form("/forgot", &[("username", "syn@acme.test")]).await;
    let m = wait_mail(&sink, 9).await;
    let late = link_in(&m[8]);
    ids.sql("UPDATE reset_tokens SET expires = '2000-01-01T00:00:00.000Z' WHERE used IS NULL");
    assert_eq!(ids.get(&path_of(&late)).await.0, 400);
    let (st, _, _) = ids
        .form(
            "/reset",
            &[
                ("token", &token_of(&late)),
                ("password", "expired-link-pw"),
                ("confirm", "expired-link-pw"),
            ],
        )
        .await;
    assert_eq!(st, 400);
    assert_eq!(ids.signin("syn@acme.test", "expired-link-pw").await.0, 401);

    // A link sent to a user who is disabled afterwards no longer works.
    ids.form("/forgot", &[("username", "syn@acme.test")]).await;
    let m = wait_mail(&sink, 12).await;
    let stale = link_in(&m[11]);
    let (st, b) = ids
        .scim(
            reqwest::Method::GET,
            "/Users?filter=userName%20eq%20%22syn%40acme.test%22",
            None,
        )
        .await;
    assert_eq!(st, 200);
    let syn = b["Resources"][0]["id"].as_str().unwrap().to_string();
    ids.scim(
        reqwest::Method::PATCH,
        &format!("/Users/{syn}"),
        Some(
            json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
                    "Operations": [{"op": "replace", "path": "active", "value": false}]}),
        ),
    )
    .await;
    assert_eq!(ids.get(&path_of(&stale)).await.0, 400);

    // Sent mail keeps no body (the links) in the database.
    let out = ids.outbox_status();
    assert!(out.contains("sent\t12"), "{out}");
    ids.assert_no_secrets(&[
        &token,
        &token_of(&late),
        &token_of(&stale),
        pw,
        "first-choice-1",
        &ids.token,
    ]);
    let db = std::fs::read(ids.data().join("idservice.db")).unwrap();
    let db = String::from_utf8_lossy(&db);
    assert!(
        !db.contains(&token),
        "the reset secret is stored hashed only"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outbox_survives_a_relay_outage_and_a_rejected_address_blocks_nothing() {
    // The relay is down at first: mail waits in the outbox, across a restart of the service.
    let port = testenv::free_port().unwrap();
    let mut ids = Ids::start(&config(port, ""));
    ids.create_user(
        "ob@acme.test",
        &["ob@acme.test", "bounce@acme.test", "ob.third@acme.test"],
        None,
    )
    .await;
    ids.form("/forgot", &[("username", "ob@acme.test")]).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        // Three rows still queued after failed attempts (connection refused is temporary).
        let out = ids.outbox_status();
        if out.contains("queued\t3") && ids.output().contains("will retry") {
            break;
        }
        assert!(Instant::now() < deadline, "outbox: {out}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    ids.stop();
    // Issue 15: queued, the messages are sealed with the outbox key: neither the database
    // nor its write-ahead log holds the reset link in clear.
    for f in ["idservice.db", "idservice.db-wal"] {
        let bytes = std::fs::read(ids.data().join(f)).unwrap_or_default();
        let text = String::from_utf8_lossy(&bytes);
        assert!(
            !text.contains("reset?token="),
            "{f} holds a queued reset link in clear"
        );
    }
    let sink = SmtpSink::start_on(port, "--reject-rcpt bounce@").unwrap();
    ids.spawn();
    // The two good addresses get it; the rejected one is marked failed, not retried forever.
    let m = wait_mail(&sink, 2).await;
    assert_eq!(
        rcpts_of(&m, "[Acme ID] Password reset requested"),
        ["ob.third@acme.test", "ob@acme.test"]
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let out = ids.outbox_status();
        if out.contains("failed\t1") && out.contains("sent\t2") {
            break;
        }
        assert!(Instant::now() < deadline, "outbox: {out}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    ids.assert_no_secrets(&[&token_of(&link_in(&m[0]))]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expiry_checks_password_and_token_warnings() {
    let sink = sink("");
    let ids = Ids::start(&config(sink.port, "password_policy:\n  max_age_days: 30\n"));
    let pw = "an-aging-password";
    let id = ids
        .create_user(
            "old@acme.test",
            &["old@acme.test", "old.b@acme.test"],
            Some(pw),
        )
        .await;
    ids.create_user("fresh@acme.test", &["fresh@acme.test"], Some(pw))
        .await;
    assert_eq!(
        ids.signin("old@acme.test", pw).await.0,
        StatusCode::SEE_OTHER
    );
    ids.sql(&format!(
        "UPDATE account_state SET password_set_at = '2000-01-01T00:00:00.000Z' WHERE user_id = '{id}'"
    ));
    let out = cli(
        &ids.data(),
        &[
            "token",
            "create",
            "--scope",
            "escim_read_users",
            "--expires",
            "5d",
            "--owner",
            "owner@acme.test",
        ],
    );
    let owned = String::from_utf8(out.stdout).unwrap().trim().to_string();
    cli(
        &ids.data(),
        &[
            "token",
            "create",
            "--scope",
            "escim_read_users",
            "--expires",
            "90d",
            "--owner",
            "later@acme.test",
        ],
    );

    let run_checks = || {
        let out = Command::new(BIN)
            .args(["mail", "run-checks", "--data"])
            .arg(ids.data())
            .arg("--config")
            .arg(ids.config())
            .env("IDSERVICE_LOG", "debug")
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(!text.contains(&owned) && !text.contains(pw));
        String::from_utf8(out.stdout).unwrap()
    };
    assert!(
        run_checks().contains("queued 1 password-expired notice(s) and 1 token expiry warning(s)")
    );
    let m = wait_mail(&sink, 3).await;
    assert_eq!(
        rcpts_of(&m, "[Acme ID] Your password has expired"),
        ["old.b@acme.test", "old@acme.test"],
        "expired: every address"
    );
    assert_eq!(
        rcpts_of(&m, "[Acme ID] API token expires in 7 days"),
        ["owner@acme.test"],
        "token warning: its owner"
    );
    // Once only.
    assert!(
        run_checks().contains("queued 0 password-expired notice(s) and 0 token expiry warning(s)")
    );
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(sink.messages().unwrap().len(), 3);
    // The expired password no longer signs in; the fresh one does.
    let (st, _, page) = ids.signin("old@acme.test", pw).await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    assert!(page.contains("expired"));
    assert_eq!(
        ids.signin("fresh@acme.test", pw).await.0,
        StatusCode::SEE_OTHER
    );
    ids.assert_no_secrets(&[pw, &owned, &ids.token]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relay_with_starttls_and_auth() {
    let sink = SmtpSink::start_tls_auth("mailer:relay-secret-1").unwrap();
    let ca = sink.ca_file.clone().unwrap();
    let ids = Ids::start_with_files(
        &format!(
            "service_name: Acme ID\nsmtp:\n  host: 127.0.0.1\n  port: {}\n  starttls: true\n  ca_file: '{}'\n  username: mailer\n  password_file: relay.pw\n  from: noreply@acme.test\noutbox:\n  poll_seconds: 1\n",
            sink.port,
            ca.display()
        ),
        &[("relay.pw", "relay-secret-1\n")],
    );
    ids.create_user("tls@acme.test", &["tls@acme.test"], None)
        .await;
    ids.form("/forgot", &[("username", "tls@acme.test")]).await;
    let m = wait_mail(&sink, 1).await;
    assert!(m[0].tls, "delivered over STARTTLS");
    assert_eq!(m[0].auth_user.as_deref(), Some("mailer"));
    ids.assert_no_secrets(&["relay-secret-1", &token_of(&link_in(&m[0]))]);
}

#[test]
fn config_errors_name_file_line_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("bad.yml");
    std::fs::write(&cfg, "service_name: X\nsignin:\n  max_failure: 3\n").unwrap();
    let out = Command::new(BIN)
        .args(["serve", "--listen", "127.0.0.1:0", "--data"])
        .arg(dir.path().join("data"))
        .arg("--config")
        .arg(&cfg)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("bad.yml:3") && err.contains("signin") && err.contains("max_failure"),
        "{err}"
    );
}

/// Holds the SQLite writer of `db` for `hold`, from `after` on (the connection is opened
/// first, so that `after` is when the lock is taken).
async fn hold_writer(db: PathBuf, after: Duration, hold: Duration) {
    use sqlx::ConnectOptions;
    let mut conn = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(&db)
        .busy_timeout(Duration::from_secs(10))
        .connect()
        .await
        .unwrap();
    tokio::time::sleep(after).await;
    sqlx::query("BEGIN IMMEDIATE")
        .execute(&mut conn)
        .await
        .unwrap();
    tokio::time::sleep(hold).await;
    sqlx::query("ROLLBACK").execute(&mut conn).await.unwrap();
}

/// Issue 15: a failed sign-in answers at the same time whether the account exists or not,
/// also while the database writer is busy: every failure makes one write after the password
/// check (an existing account's failure count, or a refusal counter for any other name).
/// Before, only an existing account's failure wrote, so with the writer busy its answer came
/// seconds after an unknown name's. The account's hash is made slow (argon2id with 12 passes)
/// and the writer is taken a third into each request, after its rate-limit charge.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_failed_signin_takes_as_long_for_unknown_names_when_the_writer_is_busy() {
    let ids = Ids::start("service_name: Timing\n");
    let id = ids
        .create_user(
            "tim@example.jp",
            &["tim@example.jp"],
            Some("the right password"),
        )
        .await;
    let slow = {
        use argon2::PasswordHasher;
        let params = argon2::Params::new(19456, 12, 1, None).unwrap();
        argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params)
            .hash_password(b"the right password")
            .unwrap()
            .to_string()
    };
    ids.sql(&format!(
        "UPDATE users SET password_hash = '{slow}' WHERE id = '{id}'"
    ));
    let timed = |user: &'static str| {
        let ids = &ids;
        async move {
            let t = Instant::now();
            let (st, _, _) = ids.signin(user, "a wrong password").await;
            assert_eq!(st, StatusCode::UNAUTHORIZED);
            t.elapsed()
        }
    };
    let median = |mut v: Vec<Duration>| {
        v.sort();
        v[v.len() / 2]
    };
    let mut existing_alone = Vec::new();
    let mut unknown_alone = Vec::new();
    for _ in 0..3 {
        existing_alone.push(timed("tim@example.jp").await);
        unknown_alone.push(timed("nobody@example.jp").await);
    }
    let (existing_alone, unknown_alone) = (median(existing_alone), median(unknown_alone));
    let hold = Duration::from_secs(2);
    let db = ids.data().join("idservice.db");
    let mut gaps = Vec::new();
    for _ in 0..2 {
        let (existing, ()) = tokio::join!(
            timed("tim@example.jp"),
            hold_writer(db.clone(), existing_alone / 3, hold)
        );
        let (unknown, ()) = tokio::join!(
            timed("nobody@example.jp"),
            hold_writer(db.clone(), unknown_alone / 3, hold)
        );
        gaps.push((existing, unknown));
    }
    assert!(
        gaps.iter().any(|(e, u)| e.abs_diff(*u) < hold / 2),
        "with the writer busy, existing vs unknown took {gaps:?} (alone: {existing_alone:?} vs \
         {unknown_alone:?})"
    );
    // the five failures were recorded before the answers: the account is locked now
    let (st, _, _) = ids.signin("tim@example.jp", "the right password").await;
    assert_eq!(st, StatusCode::UNAUTHORIZED, "the account should be locked");
}

/// Issue 15: a form a browser sends from another site (its `Origin` is not this service) is
/// refused; from this service, or from a client that sends no `Origin`, it is processed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forms_sent_from_another_site_are_refused() {
    let ids = Ids::start("service_name: Origin\n");
    let post = |origin: Option<String>| {
        let mut rb = ids
            .http
            .post(ids.url("/signin"))
            .form(&[("username", "x@example.jp"), ("password", "whatever-pw")]);
        if let Some(o) = origin {
            rb = rb.header("origin", o);
        }
        async move { rb.send().await.unwrap().status() }
    };
    assert_eq!(post(Some("https://evil.example".into())).await, 403);
    assert_eq!(post(Some("null".into())).await, 403);
    assert_eq!(post(Some(format!("http://{}", ids.addr))).await, 401);
    assert_eq!(post(None).await, 401);
    let forgot = ids
        .http
        .post(ids.url("/forgot"))
        .header("referer", "https://evil.example/page")
        .form(&[("username", "x@example.jp")])
        .send()
        .await
        .unwrap();
    assert_eq!(forgot.status(), 403);
}

/// Issue 15: behind a load balancer named by `--trusted-proxy`, the per-address limit
/// charges the client its `X-Forwarded-For` names; a client talking to the service directly
/// cannot dodge the limit by writing that header.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_client_address_comes_from_a_trusted_proxy_only() {
    let limits = "signin:\n  per_account_per_minute: 100\n  per_address_per_minute: 3\n";
    let attempt = |ids: &Ids, n: usize, from: &'static str| {
        let rb = ids
            .http
            .post(ids.url("/signin"))
            .header("x-forwarded-for", format!("203.0.113.{n}, {from}"))
            .form(&[
                ("username", format!("u{n}@example.jp")),
                ("password", "whatever-pw".into()),
            ]);
        async move { rb.send().await.unwrap().status() }
    };
    // direct: the header is ignored, the socket's address is charged
    let direct = Ids::start(limits);
    let mut codes = Vec::new();
    for n in 0..4 {
        codes.push(attempt(&direct, n, "198.51.100.1").await.as_u16());
    }
    assert_eq!(codes, [401, 401, 401, 429]);
    // through a trusted proxy (the test client on 127.0.0.1): the nearest forwarded address
    let mut ids = Ids::start(limits);
    ids.stop();
    ids.extra = vec!["--trusted-proxy".into(), "127.0.0.1".into()];
    ids.spawn();
    let mut codes = Vec::new();
    for n in 0..4 {
        codes.push(attempt(&ids, n, "198.51.100.1").await.as_u16());
    }
    assert_eq!(codes, [401, 401, 401, 429], "one client behind the proxy");
    assert_eq!(
        attempt(&ids, 9, "198.51.100.2").await,
        401,
        "another client"
    );
}

/// Issue 15: a new reset link revokes the older one; a password change ends the user's
/// sessions; a disable ends its sessions and its reset links.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_links_revoke_old_ones_and_credential_changes_end_sessions() {
    let sink = sink("");
    let ids = Ids::start(&config(sink.port, ""));
    let id = ids
        .create_user(
            "rev@acme.test",
            &["rev@acme.test"],
            Some("first password 1"),
        )
        .await;
    let patch = |ops: Value| {
        let path = format!("/Users/{id}");
        let body = json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
                          "Operations": ops});
        let ids = &ids;
        async move { ids.scim(reqwest::Method::PATCH, &path, Some(body)).await }
    };
    let session = || async {
        let (st, h, _) = ids.signin("rev@acme.test", "first password 1").await;
        assert_eq!(st, StatusCode::SEE_OTHER);
        let c = h[reqwest::header::SET_COOKIE].to_str().unwrap();
        c.split(';').next().unwrap().to_string()
    };
    let account = |cookie: String| {
        let ids = &ids;
        async move {
            let r = ids
                .http
                .get(ids.url("/account"))
                .header("cookie", cookie)
                .send()
                .await
                .unwrap();
            r.status()
        }
    };

    // two requests: only the newer link works
    ids.form("/forgot", &[("username", "rev@acme.test")]).await;
    let first = link_in(&wait_mail(&sink, 1).await[0]);
    ids.form("/forgot", &[("username", "rev@acme.test")]).await;
    let second = link_in(&wait_mail(&sink, 2).await[1]);
    assert_eq!(ids.get(&path_of(&first)).await.0, 400, "older link revoked");
    assert_eq!(ids.get(&path_of(&second)).await.0, 200);

    // a password change by SCIM ends the sessions (and the open link)
    let cookie = session().await;
    assert_eq!(account(cookie.clone()).await, StatusCode::OK);
    let (st, b) =
        patch(json!([{"op": "replace", "path": "password", "value": "second password 2"}])).await;
    assert_eq!(st, 200, "{b}");
    assert_eq!(account(cookie).await, StatusCode::SEE_OTHER);
    assert_eq!(ids.get(&path_of(&second)).await.0, 400);

    // a disable ends them too
    patch(json!([{"op": "replace", "path": "password", "value": "first password 1"}])).await;
    let cookie = session().await;
    let (st, _) = patch(json!([{"op": "replace", "path": "active", "value": false}])).await;
    assert_eq!(st, 200);
    assert_eq!(account(cookie).await, StatusCode::SEE_OTHER);
}
