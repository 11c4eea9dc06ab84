//! Issue 15 (security hardening), against the real `idservice` binary: what one client holding
//! a valid token can do to everyone else must stay bounded.
//! - a Bulk of 1,000 users with passwords hashes them before its transaction, so other writes
//!   are not blocked for the seconds argon2 takes;
//! - costly filters are bounded (depth, terms; 400 `tooMany`), run on their own connections
//!   and within a time limit (503), so reads with a valid token keep answering.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::{Duration, Instant};

use common::{Server, user};
use serde_json::{Value, json};

fn patch_display_name(name: &str) -> Value {
    json!({
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
        "Operations": [{"op": "replace", "path": "displayName", "value": name}],
    })
}

fn bulk_of(users: Vec<Value>) -> Value {
    let ops: Vec<Value> = users
        .into_iter()
        .enumerate()
        .map(|(i, data)| json!({"method": "POST", "path": "/Users", "bulkId": format!("u{i}"), "data": data}))
        .collect();
    json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:BulkRequest"], "Operations": ops})
}

fn assert_all_created(r: &common::Resp, n: usize) {
    assert_eq!(r.status, 200, "{}", r.body);
    let ops = r.body["Operations"].as_array().unwrap();
    assert_eq!(ops.len(), n);
    let failed: Vec<&Value> = ops.iter().filter(|o| o["status"] != "201").collect();
    assert!(failed.is_empty(), "{failed:?}");
}

/// While a Bulk of 1,000 users with passwords runs, a PATCH of another user answers within
/// 200 ms: the hashes (seconds of CPU) are computed before the Bulk's transaction takes the
/// single writer. Before: they were computed inside it, and the PATCH waited for all of them.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_patch_is_not_blocked_by_a_bulk_hashing_passwords() {
    // 1,000 argon2 hashes take a while on a small machine running a debug build
    let s = Server::start_with(&["--request-timeout", "10m"]);
    let target = s.create_user(user("pat@example.jp", "pat")).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let users: Vec<Value> = (0..1000)
        .map(|i| {
            let mut u = user(&format!("bulk{i}@example.jp"), &format!("bulk-{i}"));
            u["password"] = json!(format!("correct horse battery {i}"));
            u
        })
        .collect();
    let started = Instant::now();
    let bulk = s.post("/Bulk", bulk_of(users));
    let probes = async {
        // the Bulk is under way: hashing 1,000 passwords takes seconds
        tokio::time::sleep(Duration::from_millis(400)).await;
        let mut times = Vec::new();
        for i in 0..5 {
            let t = Instant::now();
            let r = s
                .patch(
                    &format!("/Users/{target}"),
                    patch_display_name(&format!("Pat {i}")),
                )
                .await;
            assert_eq!(r.status, 200, "{}", r.body);
            times.push(t.elapsed());
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        (times, started.elapsed())
    };
    let (r, (times, probes_done)) = tokio::join!(bulk, probes);
    let bulk_took = started.elapsed();
    assert_all_created(&r, 1000);
    // the probes ran while the Bulk did (else this test proves nothing)
    assert!(
        probes_done < bulk_took,
        "the Bulk ({bulk_took:?}) ended before the probes ({probes_done:?})"
    );
    let worst = times.iter().max().unwrap();
    assert!(
        *worst < Duration::from_millis(200),
        "PATCH took {times:?} during a Bulk of {bulk_took:?}"
    );
    // the passwords were stored: a sign-in with one works
    let no_redirects = reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let signin = no_redirects
        .post(format!("http://{}/signin", s.addr))
        .form(&[
            ("username", "bulk7@example.jp"),
            ("password", "correct horse battery 7"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(signin.status(), 303);
}

/// A filter at the default bounds: 32 value paths of 2 terms (64 terms, depth 4), each term
/// an `EXISTS` over the user's emails, the costliest shape a client can send.
fn worst_filter() -> String {
    (0..32)
        .map(|i| format!(r#"emails[value co "zz{i}" or display co "zz{i}"]"#))
        .collect::<Vec<_>>()
        .join(" or ")
}

/// Filters beyond the bounds are a 400 `tooMany`; twenty costly searches at once do not stop
/// a plain GET with a valid token from answering within 500 ms; a search past the time
/// limit is answered (503), it does not hang. Before: no bounds, and searches shared the
/// four read connections that bearer-token checks also need.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn costly_searches_do_not_lock_out_other_clients() {
    let cfg = tempfile::tempdir().unwrap();
    let cfg_file = cfg.path().join("idservice.yml");
    std::fs::write(&cfg_file, "search:\n  timeout_seconds: 4\n").unwrap();
    let s = Server::start_with(&["--config", cfg_file.to_str().unwrap()]);
    for chunk in 0..3 {
        let users: Vec<Value> = (0..1000)
            .map(|i| {
                let n = chunk * 1000 + i;
                let mut u = user(&format!("u{n}@example.jp"), &format!("ext-{n}"));
                u["emails"] = json!([
                    {"value": format!("u{n}@example.jp"), "type": "work", "primary": true},
                    {"value": format!("u{n}@home.example"), "type": "home"},
                    {"value": format!("u{n}@other.example"), "type": "other"},
                ]);
                u
            })
            .collect();
        assert_all_created(&s.post("/Bulk", bulk_of(users)).await, 1000);
    }
    let probe_id = s.create_user(user("probe@example.jp", "probe")).await["id"]
        .as_str()
        .unwrap()
        .to_string();

    // the bounds
    let wide = vec![r#"title eq "x""#; 65].join(" or ");
    let r = s.filter("/Users", &wide).await;
    r.assert_error(400, Some("tooMany"), None);
    assert!(
        r.body["detail"]
            .as_str()
            .unwrap()
            .contains("65 attribute expressions")
    );
    let deep = (0..10).fold(r#"title eq "x""#.to_string(), |f, _| format!("not ({f})"));
    s.filter("/Users", &deep)
        .await
        .assert_error(400, Some("tooMany"), None);
    let r = s.filter("/Users", &worst_filter()).await;
    assert!(
        r.status == 200 || r.status == 503,
        "a filter at the bounds: {} {}",
        r.status,
        r.body
    );

    // twenty at once, while a plain GET keeps answering
    let searches: Vec<_> = (0..20)
        .map(|_| {
            let (client, url, token) = (
                s.client.clone(),
                format!("{}/Users", s.base),
                s.token.clone(),
            );
            tokio::spawn(async move {
                let t = Instant::now();
                let r = client
                    .get(&url)
                    .query(&[("filter", worst_filter())])
                    .bearer_auth(token)
                    .send()
                    .await
                    .unwrap();
                (r.status().as_u16(), t.elapsed())
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut gets = Vec::new();
    while !searches.iter().all(tokio::task::JoinHandle::is_finished) {
        let t = Instant::now();
        let r = s.get(&format!("/Users/{probe_id}")).await;
        assert_eq!(r.status, 200, "{}", r.body);
        gets.push(t.elapsed());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut outcomes = Vec::new();
    for h in searches {
        outcomes.push(h.await.unwrap());
    }
    assert!(gets.len() >= 5, "the searches ended too soon: {outcomes:?}");
    let worst = gets.iter().max().unwrap();
    assert!(
        *worst < Duration::from_millis(500),
        "GET by id took up to {worst:?} during costly searches ({gets:?})"
    );
    for (status, took) in &outcomes {
        assert!(*status == 200 || *status == 503, "{outcomes:?}");
        // answered within the time limit (4 s) and some slack, never left hanging
        assert!(*took < Duration::from_secs(12), "{outcomes:?}");
    }
}

/// A data directory the service creates is private to its owner (it holds password and token
/// hashes and queued emails).
#[test]
fn a_new_data_directory_is_private() {
    use std::os::unix::fs::PermissionsExt;
    let parent = tempfile::tempdir().unwrap();
    let data = parent.path().join("data");
    common::create_token(&data, common::ALL_SCOPES, "1d");
    let mode = std::fs::metadata(&data).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o700, "{mode:o}");
}
