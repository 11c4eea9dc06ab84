#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Issue 7: linked downstream applications (behaviour §7.6). The real `idservice` binary provisions
//! its users into a real `scim2-server` (PyPI, in memory) standing in for Microsoft 365:
//! - each row of the behaviour §7.6 relink table is its own test (including the failing row and its
//!   fix with `idservice apps purge-account`);
//! - disable / enable block and unblock the downstream account and remove / give back the
//!   licence;
//! - the application down for a while (a fault proxy refusing connections): changes made
//!   meanwhile arrive after it returns, in order, and the service stays responsive;
//! - group scope: only members of the chosen groups are linked.

mod common;

use std::collections::HashMap;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{ALL_SCOPES, BIN, IIJ, create_token, install_crypto};
use serde_json::{Value, json};
use testenv::{FaultMode, FaultProxy, Scim2Server};

const APP: &str = "m365";
const LICENCE: &str = "SPE_E3";
const DS_TOKEN: &str = "downstream-token-7f3a9c";
/// Long enough for a debug build on a busy 2-core machine; polls end as soon as it holds.
const WAIT: Duration = Duration::from_secs(40);

/// idservice (logs captured to a file) + the downstream scim2-server + one linked application.
struct World {
    child: Child,
    dir: tempfile::TempDir,
    base: String,
    token: String,
    http: reqwest::Client,
    ds: Scim2Server,
    proxy: Option<FaultProxy>,
}

impl World {
    /// `purge_policy`: delete | block. `via_proxy`: the application is reached through a
    /// fault proxy. `extra`: more `apps add` options.
    fn start(purge_policy: &str, via_proxy: bool, extra: &[&str]) -> World {
        install_crypto();
        let ds = Scim2Server::start(DS_TOKEN).expect("start scim2-server");
        let dir = tempfile::tempdir().unwrap();
        let token = create_token(dir.path(), ALL_SCOPES, "1d");
        let proxy = via_proxy.then(|| {
            let upstream = ds
                .url
                .split_once("://")
                .unwrap()
                .1
                .split('/')
                .next()
                .unwrap()
                .to_string();
            FaultProxy::start(&upstream).expect("start fault proxy")
        });
        let app_url = proxy
            .as_ref()
            .map_or(ds.url.clone(), |p| p.proxied_url(&ds.url));
        let token_file = dir.path().join("m365.token");
        std::fs::write(&token_file, format!("{DS_TOKEN}\n")).unwrap();
        std::fs::set_permissions(
            &token_file,
            std::os::unix::fs::PermissionsExt::from_mode(0o600),
        )
        .unwrap();
        let mut args = vec![
            "apps",
            "add",
            "--allow-insecure-http",
            APP,
            "--url",
            &app_url,
            "--token-file",
            token_file.to_str().unwrap(),
            "--licence",
            LICENCE,
            "--purge-policy",
            purge_policy,
        ];
        args.extend_from_slice(extra);
        let out = cli(dir.path(), &args);
        assert!(out.0, "apps add: {}", out.2);
        let (child, addr) = serve(dir.path());
        World {
            child,
            base: format!("http://{addr}/scim/v2"),
            dir,
            token,
            http: reqwest::Client::builder().no_proxy().build().unwrap(),
            ds,
            proxy,
        }
    }

    /// Kills the service (no graceful shutdown) and starts it again on the same data.
    fn restart(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let (child, addr) = serve(self.dir.path());
        self.child = child;
        self.base = format!("http://{addr}/scim/v2");
    }

    fn data(&self) -> &Path {
        self.dir.path()
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.data().join("serve.log")).unwrap_or_default()
    }

    /// Runs an admin command (`--data` added); (success, stdout, stderr).
    fn admin(&self, args: &[&str]) -> (bool, String, String) {
        cli(self.data(), args)
    }

    async fn send(
        &self,
        method: reqwest::Method,
        url: &str,
        token: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut rb = self.http.request(method, url).bearer_auth(token);
        if let Some(b) = body {
            rb = rb
                .header("content-type", "application/scim+json")
                .body(b.to_string());
        }
        let resp = rb.send().await.expect("request");
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    /// A request to idservice.
    async fn id(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> (u16, Value) {
        self.send(method, &format!("{}{path}", self.base), &self.token, body)
            .await
    }

    async fn create(&self, body: Value) -> String {
        let (status, v) = self.id(reqwest::Method::POST, "/Users", Some(body)).await;
        assert_eq!(status, 201, "{v}");
        v["id"].as_str().unwrap().to_string()
    }

    async fn set_active(&self, id: &str, active: bool) {
        let (status, v) = self
            .id(
                reqwest::Method::PATCH,
                &format!("/Users/{id}"),
                Some(json!({
                    "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
                    "Operations": [{"op": "replace", "path": "active", "value": active}],
                })),
            )
            .await;
        assert!(status == 200 || status == 204, "{status} {v}");
    }

    /// Every account of the downstream application (asked directly, never through the proxy).
    async fn downstream(&self) -> Vec<Value> {
        let (status, v) = self
            .send(
                reqwest::Method::GET,
                &format!("{}/Users?count=1000", self.ds.url),
                DS_TOKEN,
                None,
            )
            .await;
        assert_eq!(status, 200, "{v}");
        v["Resources"].as_array().cloned().unwrap_or_default()
    }

    async fn downstream_by_name(&self, user_name: &str) -> Vec<Value> {
        self.downstream()
            .await
            .into_iter()
            .filter(|u| {
                u["userName"]
                    .as_str()
                    .is_some_and(|n| n.eq_ignore_ascii_case(user_name))
            })
            .collect()
    }

    /// The link records of the application, by userName (last row wins).
    fn links(&self) -> Vec<HashMap<String, String>> {
        let (ok, out, err) = self.admin(&["apps", "links", APP]);
        assert!(ok, "apps links: {err}");
        table(&out)
    }

    fn link(&self, user_name: &str) -> Option<HashMap<String, String>> {
        self.links()
            .into_iter()
            .rfind(|l| l["USERNAME"] == user_name)
    }

    /// Polls until `check` returns Some, or fails with `what` and the service log.
    async fn until<T, F, Fut>(&self, what: &str, mut check: F) -> T
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Option<T>>,
    {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(v) = check().await {
                return v;
            }
            if Instant::now() > deadline {
                panic!(
                    "timed out waiting for {what}\nlinks: {:?}\ndownstream: {:#?}\nlog:\n{}",
                    self.links(),
                    self.downstream().await,
                    self.log()
                );
            }
            tokio::time::sleep(Duration::from_millis(150)).await;
        }
    }

    /// Waits until the user's link has `state` and returns the link.
    async fn until_link(&self, user_name: &str, state: &str) -> HashMap<String, String> {
        self.until(&format!("{user_name} {state}"), || async {
            self.link(user_name).filter(|l| l["STATE"] == state)
        })
        .await
    }
}

impl Drop for World {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `idservice serve` on `data` (log appended to `serve.log`); (child, address).
fn serve(data: &Path) -> (Child, String) {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(data.join("serve.log"))
        .unwrap();
    let mut child = Command::new(BIN)
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--outbound-interval",
            "200ms",
            "--data",
        ])
        .arg(data)
        .env("IDSERVICE_LOG", "info,sqlx=warn")
        .stdout(Stdio::piped())
        .stderr(log)
        .spawn()
        .expect("spawn idservice");
    let stdout = child.stdout.take().unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(stdout), &mut line).unwrap();
    let addr = line
        .trim()
        .strip_prefix("listening on http://")
        .unwrap_or_else(|| panic!("unexpected: {line:?}"))
        .to_string();
    (child, addr)
}

fn cli(data: &Path, args: &[&str]) -> (bool, String, String) {
    let split = args.len().min(2);
    let out = Command::new(BIN)
        .args(&args[..split])
        .arg("--data")
        .arg(data)
        .args(&args[split..])
        .output()
        .expect("run idservice");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Tab-separated output with a header line → rows keyed by column name.
fn table(text: &str) -> Vec<HashMap<String, String>> {
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap_or("").split('\t').collect();
    lines
        .map(|l| {
            header
                .iter()
                .zip(l.split('\t'))
                .map(|(h, v)| (h.to_string(), v.to_string()))
                .collect()
        })
        .collect()
}

fn user(user_name: &str, external_id: &str) -> Value {
    json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
        "userName": user_name,
        "externalId": external_id,
        "displayName": user_name,
    })
}

fn licences(account: &Value) -> Vec<String> {
    account["entitlements"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|e| e["value"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// The account is linked: active and licensed, with the immutable id as externalId.
fn assert_unblocked(account: &Value, immutable_id: &str) {
    assert_eq!(account["externalId"], json!(immutable_id), "{account}");
    assert_eq!(account["active"], json!(true), "{account}");
    assert_eq!(licences(account), [LICENCE], "{account}");
}

fn assert_blocked(account: &Value) {
    assert_eq!(account["active"], json!(false), "{account}");
    assert!(licences(account).is_empty(), "licence kept: {account}");
}

/// Creates the user, waits for its link, and returns (idservice id, downstream account).
async fn linked_user(w: &World, user_name: &str, external_id: &str) -> (String, Value) {
    let id = w.create(user(user_name, external_id)).await;
    let link = w.until_link(user_name, "linked").await;
    assert_eq!(link["IMMUTABLE_ID"], external_id);
    let accounts = w.downstream_by_name(user_name).await;
    assert_eq!(accounts.len(), 1, "{accounts:#?}");
    assert_eq!(
        accounts[0]["id"].as_str(),
        Some(link["DOWNSTREAM_ID"].as_str())
    );
    assert_unblocked(&accounts[0], external_id);
    (id, accounts[0].clone())
}

/// Pending deletion, then purge: the downstream account is blocked, licence removed (kept
/// blocked by policy `block`).
async fn blocked_then_purged(w: &World, id: &str, user_name: &str) {
    let (status, _) = w
        .id(reqwest::Method::DELETE, &format!("/Users/{id}"), None)
        .await;
    assert_eq!(status, 204);
    w.until_link(user_name, "blocked").await;
    let accounts = w.downstream_by_name(user_name).await;
    assert_eq!(accounts.len(), 1);
    assert_blocked(&accounts[0]);
    let out = w.admin(&["users", "purge-pending", "--user", user_name]);
    assert!(out.0, "purge: {}", out.2);
}

#[tokio::test]
async fn disable_blocks_and_removes_licence_enable_restores() {
    let w = World::start("block", false, &[]);
    let (id, account) = linked_user(&w, "dora@example.test", "ext-dora").await;

    w.set_active(&id, false).await;
    w.until_link("dora@example.test", "blocked").await;
    let now = w.downstream_by_name("dora@example.test").await;
    assert_eq!(now.len(), 1);
    assert_eq!(now[0]["id"], account["id"], "same account, not a new one");
    assert_blocked(&now[0]);

    w.set_active(&id, true).await;
    w.until_link("dora@example.test", "linked").await;
    let now = w.downstream_by_name("dora@example.test").await;
    assert_eq!(now[0]["id"], account["id"]);
    assert_unblocked(&now[0], "ext-dora");

    // An attribute change is pushed too.
    let (status, _) = w
        .id(
            reqwest::Method::PATCH,
            &format!("/Users/{id}"),
            Some(json!({
                "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
                "Operations": [{"op": "replace", "path": "displayName", "value": "Dora D."}],
            })),
        )
        .await;
    assert_eq!(status, 200);
    w.until("displayName pushed", || async {
        let a = w.downstream_by_name("dora@example.test").await;
        (a.first()?["displayName"] == json!("Dora D.")).then_some(())
    })
    .await;
    // The downstream token never reaches the log.
    assert!(!w.log().contains(DS_TOKEN));
}

/// Relink row 1: same immutable id, downstream account exists and is blocked → unblocked and
/// reused.
#[tokio::test]
async fn relink_same_id_blocked_account_is_unblocked_and_reused() {
    let w = World::start("block", false, &[]);
    let (id, before) = linked_user(&w, "alice@example.test", "ext-alice").await;
    blocked_then_purged(&w, &id, "alice@example.test").await;
    // Purge with policy `block`: the account stays, blocked.
    tokio::time::sleep(Duration::from_millis(800)).await;
    let kept = w.downstream_by_name("alice@example.test").await;
    assert_eq!(kept.len(), 1);
    assert_blocked(&kept[0]);

    // Re-created in the directory with the same immutable id: a new idservice user.
    let new_id = w.create(user("alice@example.test", "ext-alice")).await;
    assert_ne!(new_id, id);
    let link = w
        .until("the re-created user linked", || async {
            w.links()
                .into_iter()
                .find(|l| l["USERNAME"] == "alice@example.test" && l["STATE"] == "linked")
        })
        .await;
    assert_eq!(
        link["DOWNSTREAM_ID"],
        before["id"].as_str().unwrap(),
        "reused"
    );
    let after = w.downstream_by_name("alice@example.test").await;
    assert_eq!(after.len(), 1, "no duplicate: {after:#?}");
    assert_eq!(after[0]["id"], before["id"]);
    assert_unblocked(&after[0], "ext-alice");
}

/// Relink row 2: same immutable id, downstream account absent → created.
#[tokio::test]
async fn relink_same_id_absent_account_is_created() {
    let w = World::start("delete", false, &[]);
    let (id, before) = linked_user(&w, "bea@example.test", "ext-bea").await;
    blocked_then_purged(&w, &id, "bea@example.test").await;
    // Purge with policy `delete`: the account is deleted downstream and the link dropped.
    w.until("the downstream account deleted", || async {
        w.downstream_by_name("bea@example.test")
            .await
            .is_empty()
            .then_some(())
    })
    .await;
    w.until("the link dropped", || async {
        w.link("bea@example.test").is_none().then_some(())
    })
    .await;

    w.create(user("bea@example.test", "ext-bea")).await;
    let link = w.until_link("bea@example.test", "linked").await;
    let after = w.downstream_by_name("bea@example.test").await;
    assert_eq!(after.len(), 1);
    assert_ne!(after[0]["id"], before["id"], "a new account");
    assert_eq!(
        after[0]["id"].as_str(),
        Some(link["DOWNSTREAM_ID"].as_str())
    );
    assert_unblocked(&after[0], "ext-bea");
}

/// Relink row 3: a different immutable id while a blocked account with the userName exists →
/// the link fails with a message naming the blocked account and the fix; after
/// `apps purge-account` the link succeeds.
#[tokio::test]
async fn relink_different_id_blocked_account_fails_until_purged() {
    let w = World::start("block", false, &[]);
    let (id, old) = linked_user(&w, "carl@example.test", "ext-carl-1").await;
    let old_id = old["id"].as_str().unwrap().to_string();
    blocked_then_purged(&w, &id, "carl@example.test").await;

    w.create(user("carl@example.test", "ext-carl-2")).await;
    let link = w
        .until("the link to fail", || async {
            w.links()
                .into_iter()
                .find(|l| l["USERNAME"] == "carl@example.test" && l["STATE"] == "failed")
        })
        .await;
    let error = &link["LAST_ERROR"];
    assert_eq!(link["IMMUTABLE_ID"], "ext-carl-2");
    assert_eq!(link["DOWNSTREAM_ID"], "-");
    for part in [
        "blocked downstream account",
        old_id.as_str(),
        "ext-carl-1",
        "carl@example.test",
        &format!(
            "idservice apps purge-account --data {} {APP} {old_id}",
            w.data().display()
        ),
    ] {
        assert!(error.contains(part), "{part:?} not in {error:?}");
    }
    assert!(
        w.log().contains(&old_id),
        "the failure is logged:\n{}",
        w.log()
    );
    // Nothing was duplicated; the old account is untouched (still blocked).
    let accounts = w.downstream_by_name("carl@example.test").await;
    assert_eq!(accounts.len(), 1, "{accounts:#?}");
    assert_blocked(&accounts[0]);
    assert_eq!(accounts[0]["externalId"], json!("ext-carl-1"));

    // The fix named in the message.
    let (ok, out, err) = w.admin(&["apps", "purge-account", APP, &old_id]);
    assert!(ok, "purge-account: {out}{err}");
    let link = w
        .until("the link to succeed", || async {
            w.links()
                .into_iter()
                .find(|l| l["USERNAME"] == "carl@example.test" && l["STATE"] == "linked")
        })
        .await;
    let accounts = w.downstream_by_name("carl@example.test").await;
    assert_eq!(accounts.len(), 1, "{accounts:#?}");
    assert_ne!(accounts[0]["id"].as_str(), Some(old_id.as_str()));
    assert_eq!(
        accounts[0]["id"].as_str(),
        Some(link["DOWNSTREAM_ID"].as_str())
    );
    assert_unblocked(&accounts[0], "ext-carl-2");
    // The record of the purged user's old account went with it.
    assert_eq!(
        w.links()
            .iter()
            .filter(|l| l["USERNAME"] == "carl@example.test")
            .count(),
        1
    );
}

/// The same failing row fixed from the console: the linked applications page shows the
/// application, its queue and the failed link with a "Delete account …" button for the
/// account the message names; confirming it deletes that account and the link succeeds.
#[tokio::test]
async fn the_console_offers_the_fix_of_a_failed_link() {
    let w = World::start("block", false, &[]);
    let (id, old) = linked_user(&w, "cora@example.test", "ext-cora-1").await;
    let old_id = old["id"].as_str().unwrap().to_string();
    blocked_then_purged(&w, &id, "cora@example.test").await;
    w.create(user("cora@example.test", "ext-cora-2")).await;
    w.until("the link to fail", || async {
        w.links()
            .into_iter()
            .find(|l| l["USERNAME"] == "cora@example.test" && l["STATE"] == "failed")
    })
    .await;

    let pw = w.data().join("admin.pw");
    std::fs::write(&pw, "console password for apps\n").unwrap();
    std::fs::set_permissions(&pw, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let (ok, _, err) = w.admin(&[
        "admins",
        "add",
        "alice",
        "--password-file",
        pw.to_str().unwrap(),
    ]);
    assert!(ok, "{err}");
    let mut c = common::console::Console::new(w.base.trim_end_matches("/scim/v2"));
    c.signin("alice", "console password for apps").await;
    let page = c.get("/admin/apps").await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(
        page.body.contains(APP) && page.body.contains(LICENCE),
        "{}",
        page.body
    );
    let fix = format!("/admin/apps/{APP}/accounts/{old_id}/purge");
    assert!(
        page.body.contains(&format!("href=\"{fix}\"")),
        "{}",
        page.body
    );

    let confirm = c.get(&fix).await;
    assert_eq!(confirm.status, 200);
    assert_eq!(
        w.downstream_by_name("cora@example.test").await.len(),
        1,
        "nothing deleted yet"
    );
    let r = c.post(&fix, &[("csrf_token", &confirm.csrf())]).await;
    assert_eq!(
        r.location.as_deref(),
        Some("/admin/apps?done=purged"),
        "{}",
        r.body
    );
    w.until("the link to succeed", || async {
        w.links()
            .into_iter()
            .find(|l| l["USERNAME"] == "cora@example.test" && l["STATE"] == "linked")
    })
    .await;
    let accounts = w.downstream_by_name("cora@example.test").await;
    assert_eq!(accounts.len(), 1, "{accounts:#?}");
    assert_ne!(accounts[0]["id"].as_str(), Some(old_id.as_str()));
    assert!(
        c.get("/admin/audit")
            .await
            .body
            .contains("app-purge-account")
    );
}

/// Relink row 4: a different immutable id, no downstream account → created. The re-created
/// user also carries a `downstreamId`, which takes precedence over its externalId.
#[tokio::test]
async fn relink_different_id_absent_account_is_created() {
    let w = World::start("delete", false, &[]);
    let (id, before) = linked_user(&w, "dan@example.test", "ext-dan-1").await;
    blocked_then_purged(&w, &id, "dan@example.test").await;
    w.until("the downstream account deleted", || async {
        w.downstream_by_name("dan@example.test")
            .await
            .is_empty()
            .then_some(())
    })
    .await;

    let mut body = user("dan@example.test", "ext-dan-2");
    body["schemas"].as_array_mut().unwrap().push(json!(IIJ));
    body[IIJ] = json!({"downstreamId": "anchor-dan-2"});
    w.create(body).await;
    let link = w.until_link("dan@example.test", "linked").await;
    assert_eq!(link["IMMUTABLE_ID"], "anchor-dan-2");
    let after = w.downstream_by_name("dan@example.test").await;
    assert_eq!(after.len(), 1);
    assert_ne!(after[0]["id"], before["id"]);
    assert_unblocked(&after[0], "anchor-dan-2");
}

/// The application down for a while: the changes made meanwhile wait in the queue (the
/// service answers as usual), and arrive after it returns, in order.
#[tokio::test]
async fn outage_delays_changes_which_arrive_in_order() {
    let w = World::start("block", true, &[]);
    let proxy = w.proxy.as_ref().unwrap();
    linked_user(&w, "first@example.test", "ext-first").await;

    proxy.set_mode(FaultMode::Refuse).unwrap();
    let mut slowest = Duration::ZERO;
    let mut ids = Vec::new();
    for n in 1..=3 {
        let t = Instant::now();
        ids.push(
            w.create(user(
                &format!("late{n}@example.test"),
                &format!("ext-late{n}"),
            ))
            .await,
        );
        slowest = slowest.max(t.elapsed());
    }
    // Later changes of the same users, while still down.
    let t = Instant::now();
    let (status, _) = w
        .id(
            reqwest::Method::PATCH,
            &format!("/Users/{}", ids[0]),
            Some(json!({
                "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
                "Operations": [{"op": "replace", "path": "displayName", "value": "Late One v2"}],
            })),
        )
        .await;
    assert_eq!(status, 200);
    slowest = slowest.max(t.elapsed());
    let t = Instant::now();
    w.set_active(&ids[1], false).await;
    slowest = slowest.max(t.elapsed());

    // The worker has tried and failed meanwhile: the error is visible, the queue is held.
    let listed = w
        .until("the held queue to show in apps list", || async {
            let (ok, out, _) = w.admin(&["apps", "list"]);
            assert!(ok);
            table(&out)
                .into_iter()
                .find(|a| a["NAME"] == APP && a["LAST_ERROR"] != "-")
        })
        .await;
    assert!(listed["BACKLOG"].parse::<u64>().unwrap() >= 3, "{listed:?}");
    let t = Instant::now();
    let (status, _) = w.id(reqwest::Method::GET, "/Users?count=10", None).await;
    assert_eq!(status, 200);
    slowest = slowest.max(t.elapsed());
    assert!(
        slowest < Duration::from_secs(2),
        "the service was slow during the outage: {slowest:?}"
    );
    assert_eq!(w.downstream().await.len(), 1, "nothing arrived while down");
    assert!(
        w.log().contains("queue is held"),
        "outage not logged:\n{}",
        w.log()
    );

    proxy.set_mode(FaultMode::Pass).unwrap();
    let accounts = w
        .until("the delayed changes to arrive", || async {
            let all = w.downstream().await;
            let late: Vec<Value> = (1..=3)
                .filter_map(|n| {
                    all.iter()
                        .find(|a| a["userName"] == json!(format!("late{n}@example.test")))
                        .cloned()
                })
                .collect();
            let done = late.len() == 3
                && late[0]["displayName"] == json!("Late One v2")
                && late[1]["active"] == json!(false);
            done.then_some(late)
        })
        .await;
    // In order: created downstream in the order they were created here.
    let created: Vec<&str> = accounts
        .iter()
        .map(|a| a["meta"]["created"].as_str().unwrap())
        .collect();
    assert!(
        created[0] < created[1] && created[1] < created[2],
        "out of order: {created:?}"
    );
    assert_unblocked(&accounts[0], "ext-late1");
    assert_blocked(&accounts[1]);
    assert_unblocked(&accounts[2], "ext-late3");
    w.until("the error to clear", || async {
        let (_, out, _) = w.admin(&["apps", "list"]);
        table(&out)
            .into_iter()
            .find(|a| a["NAME"] == APP && a["LAST_ERROR"] == "-" && a["BACKLOG"] == "0")
    })
    .await;
    assert!(w.log().contains("reachable again"), "{}", w.log());
}

/// `--groups`: only direct members of the chosen groups are linked; leaving the group blocks
/// the account.
#[tokio::test]
async fn group_scope_links_only_members() {
    let w = World::start("block", false, &["--groups", "Licensed Staff"]);
    let inside = w.create(user("in@example.test", "ext-in")).await;
    w.create(user("out@example.test", "ext-out")).await;
    let (status, group) = w
        .id(
            reqwest::Method::POST,
            "/Groups",
            Some(json!({
                "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
                "displayName": "licensed staff",
                "members": [{"value": inside}],
            })),
        )
        .await;
    assert_eq!(status, 201, "{group}");
    w.until_link("in@example.test", "linked").await;
    // Give the worker time to (wrongly) link the other one as well.
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert!(w.link("out@example.test").is_none());
    assert!(w.downstream_by_name("out@example.test").await.is_empty());

    let gid = group["id"].as_str().unwrap();
    let (status, v) = w
        .id(
            reqwest::Method::PATCH,
            &format!("/Groups/{gid}"),
            Some(json!({
                "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
                "Operations": [{"op": "remove", "path": format!("members[value eq \"{inside}\"]")}],
            })),
        )
        .await;
    assert!(status == 200 || status == 204, "{status} {v}");
    w.until_link("in@example.test", "blocked").await;
    assert_blocked(&w.downstream_by_name("in@example.test").await[0]);
}

#[test]
fn apps_commands_validate_and_never_print_the_token() {
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("t");
    std::fs::write(&token_file, "very-secret-token-123\n").unwrap();
    std::fs::set_permissions(
        &token_file,
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .unwrap();
    let tf = token_file.to_str().unwrap();
    let bad = cli(
        dir.path(),
        &["apps", "add", "x", "--url", "ftp://h", "--token-file", tf],
    );
    assert!(!bad.0 && bad.2.contains("http://"), "{bad:?}");
    // issue 15: plain http only when asked for (the token would travel in clear) ...
    let bad = cli(
        dir.path(),
        &[
            "apps",
            "add",
            "x",
            "--url",
            "http://127.0.0.1:1/v2",
            "--token-file",
            tf,
        ],
    );
    assert!(!bad.0 && bad.2.contains("--allow-insecure-http"), "{bad:?}");
    // ... and a token file others can read is refused
    let open_file = dir.path().join("open");
    std::fs::write(&open_file, "very-secret-token-123\n").unwrap();
    std::fs::set_permissions(
        &open_file,
        std::os::unix::fs::PermissionsExt::from_mode(0o644),
    )
    .unwrap();
    let bad = cli(
        dir.path(),
        &[
            "apps",
            "add",
            "--allow-insecure-http",
            "x",
            "--url",
            "http://127.0.0.1:1/v2",
            "--token-file",
            open_file.to_str().unwrap(),
        ],
    );
    assert!(!bad.0 && bad.2.contains("chmod 600"), "{bad:?}");
    assert!(!bad.2.contains("very-secret"), "{bad:?}");
    let bad = cli(
        dir.path(),
        &[
            "apps",
            "add",
            "--allow-insecure-http",
            "x",
            "--url",
            "http://127.0.0.1:1/v2",
            "--token-file",
            "/nonexistent/t",
        ],
    );
    assert!(!bad.0 && bad.2.contains("/nonexistent/t"), "{bad:?}");
    let bad = cli(
        dir.path(),
        &[
            "apps",
            "add",
            "--allow-insecure-http",
            "x",
            "--url",
            "http://127.0.0.1:1/v2",
            "--token-file",
            tf,
            "--purge-policy",
            "keep",
        ],
    );
    assert!(!bad.0 && bad.2.contains("purge-policy"), "{bad:?}");
    let ok = cli(
        dir.path(),
        &[
            "apps",
            "add",
            "--allow-insecure-http",
            "x",
            "--url",
            "http://127.0.0.1:1/v2",
            "--token-file",
            tf,
            "--groups",
            "A,B",
        ],
    );
    assert!(ok.0, "{ok:?}");
    let dup = cli(
        dir.path(),
        &[
            "apps",
            "add",
            "--allow-insecure-http",
            "x",
            "--url",
            "http://127.0.0.1:1/v2",
            "--token-file",
            tf,
        ],
    );
    assert!(!dup.0 && dup.2.contains("already exists"), "{dup:?}");
    let list = cli(dir.path(), &["apps", "list"]);
    assert!(list.0);
    let rows = table(&list.1);
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0]["GROUPS"], "a,b");
    assert_eq!(rows[0]["PURGE_POLICY"], "block");
    let db = std::fs::read(dir.path().join("idservice.db")).unwrap();
    let all = format!("{}{}{}", list.1, list.2, String::from_utf8_lossy(&db));
    assert!(!all.contains("very-secret-token-123"), "the token leaked");
    assert!(cli(dir.path(), &["apps", "remove", "x"]).0);
    assert!(!cli(dir.path(), &["apps", "remove", "x"]).0);
}

/// What the fake application saw: (when, method, status answered).
type Seen = std::sync::Arc<std::sync::Mutex<Vec<(Instant, String, u16)>>>;

/// A minimal SCIM application on loopback that answers its first POST with 429 and
/// `Retry-After: 1`, to see the worker honour it and the configured rate.
async fn fake_application(seen: Seen) -> String {
    use axum::extract::{Path as UrlPath, State};
    use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
    use axum::routing::{get, put};

    async fn list(State(seen): State<Seen>) -> (StatusCode, axum::Json<Value>) {
        seen.lock()
            .unwrap()
            .push((Instant::now(), "GET".into(), 200));
        let body = json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:ListResponse"],
            "totalResults": 0, "Resources": []});
        (StatusCode::OK, axum::Json(body))
    }
    async fn create(
        State(seen): State<Seen>,
        axum::Json(mut body): axum::Json<Value>,
    ) -> (StatusCode, HeaderMap, axum::Json<Value>) {
        let mut seen = seen.lock().unwrap();
        let first = !seen.iter().any(|(_, m, _)| m == "POST");
        let mut headers = HeaderMap::new();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/scim+json"),
        );
        if first {
            seen.push((Instant::now(), "POST".into(), 429));
            headers.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            let error = json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:Error"],
                "status": "429", "detail": "slow down"});
            return (StatusCode::TOO_MANY_REQUESTS, headers, axum::Json(error));
        }
        seen.push((Instant::now(), "POST".into(), 201));
        body["id"] = json!(format!("acc-{}", seen.len()));
        (StatusCode::CREATED, headers, axum::Json(body))
    }
    async fn replace(
        State(seen): State<Seen>,
        UrlPath(id): UrlPath<String>,
        axum::Json(mut body): axum::Json<Value>,
    ) -> (StatusCode, axum::Json<Value>) {
        seen.lock()
            .unwrap()
            .push((Instant::now(), "PUT".into(), 200));
        body["id"] = json!(id);
        (StatusCode::OK, axum::Json(body))
    }
    let app = axum::Router::new()
        .route("/v2/Users", get(list).post(create))
        .route("/v2/Users/{id}", put(replace))
        .with_state(seen);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}/v2")
}

/// 429 with `Retry-After` is honoured (the create is repeated no sooner than asked), and
/// `--rate` spaces the requests to the application.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_after_and_rate_limit_are_honoured() {
    install_crypto();
    let seen: Seen = Default::default();
    let url = fake_application(seen.clone()).await;
    let dir = tempfile::tempdir().unwrap();
    let token = create_token(dir.path(), ALL_SCOPES, "1d");
    let token_file = dir.path().join("t");
    std::fs::write(&token_file, "fake-app-token").unwrap();
    std::fs::set_permissions(
        &token_file,
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .unwrap();
    let (ok, out, err) = cli(
        dir.path(),
        &[
            "apps",
            "add",
            "--allow-insecure-http",
            APP,
            "--url",
            &url,
            "--token-file",
            token_file.to_str().unwrap(),
            "--rate",
            "4",
        ],
    );
    assert!(ok, "{out}{err}");
    let (mut child, addr) = common::spawn_serve(dir.path(), &["--outbound-interval", "100ms"]);
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    for n in 1..=2 {
        let r = http
            .post(format!("http://{addr}/scim/v2/Users"))
            .bearer_auth(&token)
            .header("content-type", "application/scim+json")
            .body(user(&format!("r{n}@example.test"), &format!("ext-r{n}")).to_string())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
    }
    let deadline = Instant::now() + WAIT;
    loop {
        let (_, out, _) = cli(dir.path(), &["apps", "links", APP]);
        let rows = table(&out);
        if rows.len() == 2 && rows.iter().all(|l| l["STATE"] == "linked") {
            break;
        }
        assert!(Instant::now() < deadline, "not linked: {out}");
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    let _ = child.kill();
    let _ = child.wait();
    let seen = seen.lock().unwrap().clone();
    let refused = seen
        .iter()
        .position(|(_, m, s)| m == "POST" && *s == 429)
        .unwrap();
    let retried = seen[refused + 1..]
        .iter()
        .find(|(_, m, _)| m == "POST")
        .expect("the create was retried");
    assert!(
        retried.0 - seen[refused].0 >= Duration::from_millis(990),
        "retried after {:?}, before Retry-After",
        retried.0 - seen[refused].0
    );
    // --rate 4: a request every 250 ms at most (a little slack for timer granularity).
    for pair in seen.windows(2) {
        let gap = pair[1].0 - pair[0].0;
        assert!(gap >= Duration::from_millis(240), "gap {gap:?} in {seen:?}");
    }
}

/// The queue is durable: changes made while the application is down survive a crash of the
/// service (killed, not stopped) and arrive after both are back.
#[tokio::test]
async fn queued_changes_survive_a_restart() {
    let mut w = World::start("block", true, &[]);
    linked_user(&w, "early@example.test", "ext-early").await;
    w.proxy
        .as_ref()
        .unwrap()
        .set_mode(FaultMode::Refuse)
        .unwrap();
    w.create(user("kept@example.test", "ext-kept")).await;
    w.until("the held queue", || async {
        let (_, out, _) = w.admin(&["apps", "list"]);
        table(&out)
            .into_iter()
            .find(|a| a["NAME"] == APP && a["LAST_ERROR"] != "-" && a["BACKLOG"] != "0")
    })
    .await;
    w.restart();
    assert!(w.downstream_by_name("kept@example.test").await.is_empty());
    w.proxy.as_ref().unwrap().set_mode(FaultMode::Pass).unwrap();
    let link = w.until_link("kept@example.test", "linked").await;
    let accounts = w.downstream_by_name("kept@example.test").await;
    assert_eq!(accounts.len(), 1);
    assert_eq!(
        accounts[0]["id"].as_str(),
        Some(link["DOWNSTREAM_ID"].as_str())
    );
    assert_unblocked(&accounts[0], "ext-kept");
    // Rows every application has passed are deleted: the queue does not grow for ever.
    let db = format!(
        "sqlite://{}?mode=ro",
        w.data().join("idservice.db").display()
    );
    let pool = sqlx::SqlitePool::connect(&db).await.unwrap();
    w.until("the queue to be trimmed", || async {
        let left: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM outbound_events")
            .fetch_one(&pool)
            .await
            .unwrap();
        (left == 0).then_some(())
    })
    .await;
}

/// Issue 15: a client with a write token cannot give its user another user's immutable id
/// and so take over (receive or push) that user's downstream account.
/// - At the SCIM boundary: a `downstreamId` that another user's link holds, or that is another
///   user's externalId, is a 409 (create and PATCH).
/// - In the worker: two users created in one Bulk with the same immutable id (one by
///   `downstreamId`, one by `externalId`) never share an account: one is linked, the other's
///   link fails and an audit event is logged.
#[tokio::test]
async fn downstream_account_of_another_user_cannot_be_taken_over() {
    let w = World::start("block", false, &[]);
    let (_, victim) = linked_user(&w, "vera@example.test", "ext-vera").await;
    let with_downstream = |name: &str, downstream: &str| {
        let mut body = user(name, &format!("ext-{name}"));
        body["schemas"].as_array_mut().unwrap().push(json!(IIJ));
        body[IIJ] = json!({ "downstreamId": downstream });
        body
    };

    // create with the victim's immutable id
    let (status, v) = w
        .id(
            reqwest::Method::POST,
            "/Users",
            Some(with_downstream("mallory@example.test", "ext-vera")),
        )
        .await;
    assert_eq!(status, 409, "{v}");
    assert_eq!(v["scimType"], "uniqueness", "{v}");
    // PATCH an existing user to it
    let other = w.create(user("oscar@example.test", "ext-oscar")).await;
    let (status, v) = w
        .id(
            reqwest::Method::PATCH,
            &format!("/Users/{other}"),
            Some(json!({
                "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
                "Operations": [{"op": "add", "path": format!("{IIJ}:downstreamId"),
                                "value": "ext-vera"}],
            })),
        )
        .await;
    assert_eq!(status, 409, "{v}");

    // the worker's guard: both users exist before either is linked
    let bulk = json!({
    "schemas": ["urn:ietf:params:scim:api:messages:2.0:BulkRequest"],
    "Operations": [
        {"method": "POST", "path": "/Users", "bulkId": "d",
         "data": with_downstream("dora@example.test", "shared-x")},
        {"method": "POST", "path": "/Users", "bulkId": "e",
         "data": user("eve@example.test", "shared-x")},
    ]});
    let (status, v) = w.id(reqwest::Method::POST, "/Bulk", Some(bulk)).await;
    assert_eq!(status, 200, "{v}");
    let statuses: Vec<&str> = v["Operations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, ["201", "201"], "{v}");
    let (linked, failed) = w
        .until("one link made and one refused", || async {
            let links = w.links();
            let find = |state: &str| {
                links
                    .iter()
                    .find(|l| {
                        ["dora@example.test", "eve@example.test"].contains(&l["USERNAME"].as_str())
                            && l["STATE"] == state
                    })
                    .cloned()
            };
            Some((find("linked")?, find("failed")?))
        })
        .await;
    assert_eq!(linked["IMMUTABLE_ID"], "shared-x");
    assert!(
        failed["LAST_ERROR"].contains("is linked to user"),
        "{failed:?}"
    );
    let holders: Vec<Value> = w
        .downstream()
        .await
        .into_iter()
        .filter(|a| a["externalId"] == "shared-x")
        .collect();
    assert_eq!(holders.len(), 1, "{holders:#?}");
    assert_eq!(
        holders[0]["userName"].as_str(),
        Some(linked["USERNAME"].as_str())
    );
    // the victim's account is untouched
    let now = w.downstream_by_name("vera@example.test").await;
    assert_eq!(now.len(), 1);
    assert_eq!(now[0]["id"], victim["id"]);
    assert!(
        w.log().contains("downstream_account_conflict"),
        "{}",
        w.log()
    );
    assert!(w.log().contains("immutable_id_conflict"));
}
