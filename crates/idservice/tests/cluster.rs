//! Two `idservice` nodes on one PostgreSQL database behind HAProxy (`testenv::IdCluster`: real
//! PostgreSQL from Debian's packages, real HAProxy, real SMTP sink): sessions, reset links and
//! lockout hold across nodes; concurrent writers on different nodes get the database's
//! uniqueness and If-Match guarantees; the outbox sends every message exactly once.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashSet;
use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use testenv::{IdCluster, IdService, ReceivedMail, Scim2Server, SmtpSink};

#[path = "common/console.rs"]
mod console_client;

const USER: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
const GROUP: &str = "urn:ietf:params:scim:schemas:core:2.0:Group";
const PATCH: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";

fn client() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .pool_max_idle_per_host(0)
        .build()
        .unwrap()
}

/// A cluster whose nodes send email to `sink` (and allow many sign-in requests a minute).
fn cluster_with_mail(sink: &SmtpSink, extra_yaml: &str) -> (IdCluster, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("idservice.yml");
    // every node seals and opens the queued mail with this key (32 bytes, base64)
    let key = dir.path().join("outbox.key");
    std::fs::write(&key, "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=\n").unwrap();
    std::fs::set_permissions(&key, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    std::fs::write(
        &file,
        format!(
            "service_name: Acme ID\nsmtp:\n  host: 127.0.0.1\n  port: {}\n  starttls: false\n  \
             from: 'Acme ID <noreply@acme.test>'\noutbox:\n  poll_seconds: 1\n  \
             retry_base_seconds: 1\n  key_file: outbox.key\n{extra_yaml}",
            sink.port
        ),
    )
    .unwrap();
    let cluster = IdCluster::start(2, &["--config", file.to_str().unwrap()])
        .unwrap_or_else(|e| panic!("cluster: {e}"));
    (cluster, dir)
}

/// Every node's log, for failure messages.
fn logs(c: &IdCluster) -> String {
    c.nodes
        .iter()
        .enumerate()
        .map(|(i, n)| format!("--- node {i}\n{}", n.server_log()))
        .collect()
}

/// `http://127.0.0.1:PORT` of a node (its SCIM URL without `/scim/v2`).
fn root(node: &IdService) -> String {
    node.url.trim_end_matches("/scim/v2").to_string()
}

async fn scim(
    http: &reqwest::Client,
    base: &str,
    token: &str,
    method: Method,
    path: &str,
    body: Option<Value>,
    if_match: Option<&str>,
) -> (u16, Value, Option<String>) {
    let mut rb = http
        .request(method, format!("{base}{path}"))
        .bearer_auth(token);
    if let Some(b) = body {
        rb = rb
            .header("content-type", "application/scim+json")
            .body(b.to_string());
    }
    if let Some(m) = if_match {
        rb = rb.header("if-match", m);
    }
    let r = rb.send().await.unwrap();
    let status = r.status().as_u16();
    let etag = r
        .headers()
        .get("etag")
        .map(|v| v.to_str().unwrap().to_string());
    let text = r.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::Null),
        etag,
    )
}

async fn create_user(c: &IdCluster, http: &reqwest::Client, name: &str, pw: &str) -> String {
    let body = json!({"schemas": [USER], "userName": name, "password": pw,
        "emails": [{"value": name, "primary": true}]});
    let (st, b, _) = scim(
        http,
        &c.url,
        &c.token,
        Method::POST,
        "/Users",
        Some(body),
        None,
    )
    .await;
    assert_eq!(st, 201, "{b}");
    b["id"].as_str().unwrap().to_string()
}

async fn form(
    http: &reqwest::Client,
    url: String,
    fields: &[(&str, &str)],
) -> (StatusCode, reqwest::header::HeaderMap, String) {
    let r = http.post(url).form(fields).send().await.unwrap();
    let (st, h) = (r.status(), r.headers().clone());
    (st, h, r.text().await.unwrap())
}

async fn wait_mail(sink: &SmtpSink, n: usize, within: Duration) -> Vec<ReceivedMail> {
    let deadline = Instant::now() + within;
    loop {
        let m = sink.messages().unwrap();
        if m.len() >= n {
            // Anything sent twice would arrive within the next poll.
            tokio::time::sleep(Duration::from_secs(2)).await;
            return sink.messages().unwrap();
        }
        assert!(
            Instant::now() < deadline,
            "expected {n} mails, got {}",
            m.len()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The reset secret in a "reset requested" mail.
fn reset_token(m: &ReceivedMail) -> String {
    let at = m.body.find("/reset?token=").expect("reset link") + "/reset?token=".len();
    m.body[at..]
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn session_reset_link_and_lockout_hold_across_nodes() {
    let sink = SmtpSink::start().unwrap();
    let (c, _cfg) = cluster_with_mail(&sink, "signin:\n  max_failures: 4\n");
    let http = client();
    let (a, b) = (root(&c.nodes[0]), root(&c.nodes[1]));
    let pw = "correct horse battery";
    create_user(&c, &http, "ann@acme.test", pw).await;

    // Signed in through A, the session opens /account through B; signed out through B, it
    // is gone on A as well.
    let (st, h, _) = form(
        &http,
        format!("{a}/signin"),
        &[("username", "ann@acme.test"), ("password", pw)],
    )
    .await;
    assert_eq!(st, StatusCode::SEE_OTHER);
    let cookie = h["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_string();
    let account = |base: String| {
        let (http, cookie) = (http.clone(), cookie.clone());
        async move {
            let r = http
                .get(format!("{base}/account"))
                .header("cookie", cookie)
                .send()
                .await
                .unwrap();
            (r.status(), r.text().await.unwrap())
        }
    };
    let (st, page) = account(b.clone()).await;
    assert_eq!(st, StatusCode::OK);
    assert!(page.contains("ann@acme.test"), "{page}");
    let r = http
        .post(format!("{b}/signout"))
        .header("cookie", cookie.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(account(a.clone()).await.0, StatusCode::SEE_OTHER);

    // A reset link sent by node A works once on node B and never again on A.
    let (st, _, _) = form(
        &http,
        format!("{a}/forgot"),
        &[("username", "ann@acme.test")],
    )
    .await;
    assert_eq!(st, StatusCode::OK);
    let mails = wait_mail(&sink, 1, Duration::from_secs(30)).await;
    assert_eq!(mails.len(), 1);
    let token = reset_token(&mails[0]);
    let new_pw = "a brand new passphrase";
    let reset = [
        ("token", token.as_str()),
        ("password", new_pw),
        ("confirm", new_pw),
    ];
    let (st, _, body) = form(&http, format!("{b}/reset"), &reset).await;
    assert_eq!(st, StatusCode::OK, "{body}");
    assert!(body.contains("Password set"), "{body}");
    let (st, _, body) = form(&http, format!("{a}/reset"), &reset).await;
    assert_ne!(st, StatusCode::OK, "{body}");
    assert!(!body.contains("Password set"), "{body}");

    // Lockout counts failures from both nodes: 2 on A + 2 on B lock the account, and then
    // even the right password is refused on either node.
    for base in [&a, &b, &a, &b] {
        let (st, _, _) = form(
            &http,
            format!("{base}/signin"),
            &[
                ("username", "ann@acme.test"),
                ("password", "wrong password"),
            ],
        )
        .await;
        assert_eq!(st, StatusCode::UNAUTHORIZED);
    }
    for base in [&a, &b] {
        let (st, _, _) = form(
            &http,
            format!("{base}/signin"),
            &[("username", "ann@acme.test"), ("password", new_pw)],
        )
        .await;
        assert_eq!(
            st,
            StatusCode::UNAUTHORIZED,
            "locked account signed in on {base}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_creates_of_one_user_name_give_one_201() {
    let c = IdCluster::start(2, &[]).unwrap_or_else(|e| panic!("cluster: {e}"));
    // `migrate` on the running cluster's database: nothing left to apply, and neither its
    // output nor a node's log shows the password.
    let out = c.nodes[0].admin_command(&["migrate"]).unwrap();
    assert!(
        out.contains("migrations applied to postgres://idservice@127.0.0.1:"),
        "{out}"
    );
    let password = std::fs::read_to_string(c.pg.password_file()).unwrap();
    let password = password.trim();
    assert!(!password.is_empty());
    assert!(!out.contains(password) && !logs(&c).contains(password));
    let http = client();
    let mut tasks = Vec::new();
    for i in 0..200 {
        let (http, url, token) = (http.clone(), c.url.clone(), c.token.clone());
        tasks.push(tokio::spawn(async move {
            let body = json!({"schemas": [USER], "userName": "race@acme.test",
                "externalId": format!("ext-{i}")});
            scim(
                &http,
                &url,
                &token,
                Method::POST,
                "/Users",
                Some(body),
                None,
            )
            .await
        }));
    }
    let mut created = 0;
    let mut conflicts = 0;
    for t in tasks {
        let (st, b, _) = t.await.unwrap();
        match st {
            201 => created += 1,
            409 => {
                assert_eq!(b["scimType"], "uniqueness", "{b}");
                conflicts += 1;
            }
            other => panic!("unexpected {other}: {b}"),
        }
    }
    assert_eq!((created, conflicts), (1, 199));
    let (st, b, _) = scim(
        &http,
        &c.url,
        &c.token,
        Method::GET,
        "/Users?filter=userName%20eq%20%22race@acme.test%22",
        None,
        None,
    )
    .await;
    assert_eq!(st, 200, "{b}\n{}", logs(&c));
    assert_eq!(b["totalResults"], 1, "{b}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_if_match_patches_lose_no_update() {
    let c = IdCluster::start(2, &[]).unwrap_or_else(|e| panic!("cluster: {e}"));
    let http = client();
    let mut ids = Vec::new();
    for i in 0..50 {
        let body = json!({"schemas": [USER], "userName": format!("m{i}@acme.test")});
        let (st, b, _) = scim(
            &http,
            &c.url,
            &c.token,
            Method::POST,
            "/Users",
            Some(body),
            None,
        )
        .await;
        assert_eq!(st, 201, "{b}");
        ids.push(b["id"].as_str().unwrap().to_string());
    }
    // Keyset paging through the load balancer (pages served by either node): every user once.
    let mut seen = HashSet::new();
    let mut cursor = String::new();
    for _ in 0..20 {
        let path = format!("/Users?count=7&cursor={cursor}");
        let (st, page, _) = scim(&http, &c.url, &c.token, Method::GET, &path, None, None).await;
        assert_eq!(st, 200, "{page}");
        for u in page["Resources"].as_array().unwrap() {
            assert!(
                seen.insert(u["id"].as_str().unwrap().to_string()),
                "twice: {u}"
            );
        }
        match page["nextCursor"].as_str() {
            Some(next) => cursor = next.to_string(),
            None => break,
        }
    }
    assert_eq!(seen, ids.iter().cloned().collect::<HashSet<_>>());

    let body = json!({"schemas": [GROUP], "displayName": "crowd"});
    let (st, g, _) = scim(
        &http,
        &c.url,
        &c.token,
        Method::POST,
        "/Groups",
        Some(body),
        None,
    )
    .await;
    assert_eq!(st, 201, "{g}");
    let gid = g["id"].as_str().unwrap().to_string();

    // Each writer reads the group's version, then adds its member with If-Match; on 412 it
    // reads again. Without If-Match holding across nodes some additions would be lost.
    let mut tasks = Vec::new();
    for id in ids.clone() {
        let (http, url, token, gid) = (http.clone(), c.url.clone(), c.token.clone(), gid.clone());
        tasks.push(tokio::spawn(async move {
            let path = format!("/Groups/{gid}");
            let mut stale = 0;
            loop {
                let (st, g, _) = scim(&http, &url, &token, Method::GET, &path, None, None).await;
                assert_eq!(st, 200, "{g}");
                let version = g["meta"]["version"].as_str().unwrap().to_string();
                let patch = json!({"schemas": [PATCH], "Operations": [
                    {"op": "add", "path": "members", "value": [{"value": id}]}]});
                let (st, b, _) = scim(
                    &http,
                    &url,
                    &token,
                    Method::PATCH,
                    &path,
                    Some(patch),
                    Some(&version),
                )
                .await;
                match st {
                    200 => return stale,
                    412 => stale += 1,
                    other => panic!("PATCH answered {other}: {b}"),
                }
            }
        }));
    }
    let mut stale = 0;
    for t in tasks {
        stale += t.await.unwrap();
    }
    let (st, g, _) = scim(
        &http,
        &c.url,
        &c.token,
        Method::GET,
        &format!("/Groups/{gid}"),
        None,
        None,
    )
    .await;
    assert_eq!(st, 200);
    let members: HashSet<String> = g["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["value"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(members, ids.into_iter().collect::<HashSet<_>>());
    // 1 create + 50 successful PATCHes, each one version step.
    assert_eq!(
        g["meta"]["version"], "W/\"51\"",
        "{g} ({stale} stale PATCHes)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn outbox_of_1000_emails_sends_each_once_from_two_nodes() {
    let sink = SmtpSink::start().unwrap();
    let (c, _cfg) = cluster_with_mail(
        &sink,
        "signin:\n  per_account_per_minute: 100000\n  per_address_per_minute: 100000\n",
    );
    let http = client();
    create_user(&c, &http, "bob@acme.test", "correct horse battery").await;
    let lb = c.url.trim_end_matches("/scim/v2").to_string();
    // 1,000 reset requests through the load balancer, 20 at a time: 1,000 queued messages,
    // each with its own link, sent by whichever node's sender claims it.
    for chunk in 0..50 {
        let mut tasks = Vec::new();
        for _ in 0..20 {
            let (http, url) = (http.clone(), format!("{lb}/forgot"));
            tasks.push(tokio::spawn(async move {
                form(&http, url, &[("username", "bob@acme.test")]).await.0
            }));
        }
        for t in tasks {
            assert_eq!(t.await.unwrap(), StatusCode::OK, "chunk {chunk}");
        }
    }
    let mails = wait_mail(&sink, 1000, Duration::from_secs(240)).await;
    let links: HashSet<String> = mails.iter().map(reset_token).collect();
    assert_eq!(mails.len(), 1000, "messages at the sink");
    assert_eq!(links.len(), 1000, "distinct links");
    // Both nodes sent some of them.
    for (i, n) in c.nodes.iter().enumerate() {
        assert!(
            n.server_log().contains("email sent"),
            "node {i} sent nothing"
        );
    }
}

/// How many accounts a node's log says it created downstream.
fn creations(node: &IdService) -> usize {
    node.server_log()
        .matches("downstream account created")
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn linked_app_changes_arrive_once_in_order_when_the_draining_node_is_killed() {
    const N: usize = 40;
    let ds = Scim2Server::start("downstream-token-cluster").expect("start scim2-server");
    let c = IdCluster::start(2, &["--outbound-interval", "200ms"])
        .unwrap_or_else(|e| panic!("cluster: {e}"));
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("app.token");
    std::fs::write(&token_file, "downstream-token-cluster\n").unwrap();
    std::fs::set_permissions(
        &token_file,
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .unwrap();
    // At most 10 requests a second downstream: the drain is still running when a node dies.
    c.nodes[0]
        .admin_command(&[
            "apps",
            "add",
            "--allow-insecure-http",
            "m365",
            "--url",
            &ds.url,
            "--token-file",
            token_file.to_str().unwrap(),
            "--rate",
            "10",
        ])
        .unwrap();
    let http = client();
    let mut names = Vec::new();
    for i in 0..N {
        // Names whose alphabetical order is not the order of creation.
        let name = format!("order{:03}@acme.test", (i * 7) % N);
        let body = json!({"schemas": [USER], "userName": name, "externalId": format!("x{i}")});
        let (st, b, _) = scim(
            &http,
            &c.url,
            &c.token,
            Method::POST,
            "/Users",
            Some(body),
            None,
        )
        .await;
        assert_eq!(st, 201, "{b}");
        names.push(name);
    }
    // SIGKILL the node that is draining, once it has pushed a few changes.
    let deadline = Instant::now() + Duration::from_secs(60);
    let victim = loop {
        if let Some(i) = (0..2).find(|&i| creations(&c.nodes[i]) >= 5) {
            break i;
        }
        assert!(
            Instant::now() < deadline,
            "nothing was pushed\n{}",
            logs(&c)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let killed = std::process::Command::new("kill")
        .args(["-KILL", &c.nodes[victim].pid().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let before = creations(&c.nodes[victim]);
    assert!(before < N, "the drain finished before the kill");

    // The other node takes the application over once the lease has run out.
    let survivor = 1 - victim;
    let deadline = Instant::now() + Duration::from_secs(120);
    let accounts = loop {
        let r = http
            .get(format!("{}/Users?count=1000", ds.url))
            .bearer_auth("downstream-token-cluster")
            .send()
            .await
            .unwrap();
        let body: Value = r.json().await.unwrap();
        let accounts = body["Resources"].as_array().cloned().unwrap_or_default();
        if accounts.len() >= N {
            // Anything pushed twice would be created within the next rounds.
            tokio::time::sleep(Duration::from_secs(2)).await;
            let r = http
                .get(format!("{}/Users?count=1000", ds.url))
                .bearer_auth("downstream-token-cluster")
                .send()
                .await
                .unwrap();
            let body: Value = r.json().await.unwrap();
            break body["Resources"].as_array().cloned().unwrap_or_default();
        }
        assert!(
            Instant::now() < deadline,
            "{} of {N} accounts downstream\n{}",
            accounts.len(),
            logs(&c)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    // Exactly once: one account per user, no duplicate.
    let mut got: Vec<(String, String)> = accounts
        .iter()
        .map(|a| {
            (
                a["meta"]["created"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
                a["userName"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(got.len(), N, "{got:?}");
    assert!(
        got.iter().all(|(created, _)| !created.is_empty()),
        "{got:?}"
    );
    // In order: downstream creation times follow the order of the changes.
    got.sort();
    let order: Vec<String> = got.into_iter().map(|(_, n)| n).collect();
    assert_eq!(order, names);
    assert!(
        creations(&c.nodes[survivor]) > 0,
        "the surviving node pushed nothing\n{}",
        logs(&c)
    );
}

/// The console on PostgreSQL (its own SQL: byte-order prefix ranges under `COLLATE "C"`):
/// an administrator added on one node signs in through HAProxy, the session holds on both
/// nodes, and the prefix search finds users by each field.
#[tokio::test(flavor = "multi_thread")]
async fn console_search_and_sessions_on_postgresql() {
    let (c, dir) = cluster_with_mail(&SmtpSink::start().unwrap(), "");
    let pw = dir.path().join("admin.pw");
    std::fs::write(&pw, "a console password on pg\n").unwrap();
    std::fs::set_permissions(&pw, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    c.nodes[0]
        .admin_command(&[
            "admins",
            "add",
            "Alice",
            "--password-file",
            pw.to_str().unwrap(),
        ])
        .unwrap();
    let http = client();
    for i in 0..60 {
        let body = json!({"schemas": [USER], "userName": format!("pg{i:02}@example.com"),
            "externalId": format!("PG-{i:02}"), "displayName": format!("Pat {i:02}"),
            "emails": [{"value": format!("inbox{i:02}@corp.example"), "primary": true}]});
        let (st, b, _) = scim(
            &http,
            &c.url,
            &c.token,
            Method::POST,
            "/Users",
            Some(body),
            None,
        )
        .await;
        assert_eq!(st, 201, "{b}");
    }
    let proxy = c.url.trim_end_matches("/scim/v2");
    let mut console = console_client::Console::new(proxy);
    let r = console.signin("alice", "a console password on pg").await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}\n{}", r.body, logs(&c));
    // The session (in the database) opens the console on each node directly too.
    for node in &c.nodes {
        let mut direct = console_client::Console::new(&root(node));
        direct.cookie = console.cookie.clone();
        let page = direct.get("/admin/users").await;
        assert_eq!(page.status, 200, "{}", page.body);
    }
    for (q, expect) in [
        ("PG1", 10),
        ("pat 0", 10),
        ("inbox5", 10),
        ("PG-", 50),
        ("pg-", 0),
    ] {
        let page = console
            .get(&format!("/admin/users?q={}", q.replace(' ', "+")))
            .await;
        assert_eq!(page.status, 200, "{}", page.body);
        let found = console_client::listed_users(&page.body);
        assert_eq!(found.len(), expect, "q={q}: {found:?}");
    }
    let next = console_client::hidden_link(&console.get("/admin/users").await.body, "rel=\"next\"")
        .unwrap();
    let second = console.get(&next.replace("&amp;", "&")).await.body;
    assert_eq!(console_client::listed_users(&second).len(), 10, "{second}");
}
