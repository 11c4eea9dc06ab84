#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! The fault proxy's HTTP faults, against a real HTTP/1.1 server on loopback (the stdlib
//! Python server `faultproxy_http_upstream.py`, which records what reached it): the share of
//! faults, the three statuses, intact answers otherwise, keep-alive, counters, a replayable
//! schedule; a 500 is applied upstream, a 429 or 503 is not; chunked requests and answers,
//! HEAD, 204 and close-delimited answers cross the proxy intact.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use testenv::FaultProxy;

const FAULTS: [u16; 3] = [429, 500, 503];

/// The Python upstream server, killed on drop.
struct Upstream {
    child: Child,
    addr: String,
    _dir: tempfile::TempDir,
}

impl Upstream {
    fn start() -> Upstream {
        let dir = tempfile::tempdir().unwrap();
        let port_file = dir.path().join("port");
        let script =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/faultproxy_http_upstream.py");
        let mut child = Command::new("python3")
            .arg(script)
            .arg(&port_file)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        let port = loop {
            if let Ok(port) = std::fs::read_to_string(&port_file) {
                break port;
            }
            if Instant::now() > deadline || child.try_wait().unwrap().is_some() {
                let _ = child.kill();
                panic!("the upstream server did not start");
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        Upstream {
            child,
            addr: format!("127.0.0.1:{}", port.trim()),
            _dir: dir,
        }
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn runtime() -> tokio::runtime::Runtime {
    let _ = rustls::crypto::ring::default_provider().install_default();
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// A fresh client (its own pool: connections are opened after the latest proxy setting).
fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap()
}

/// Request `i` of the mix: Content-Length, chunked, 204, HEAD and (now and then)
/// close-delimited answers.
fn request(i: usize) -> (reqwest::Method, String) {
    match i % 5 {
        0 => (reqwest::Method::GET, format!("/cl/{i}")),
        1 => (reqwest::Method::GET, format!("/chunked/{i}")),
        2 => (reqwest::Method::GET, format!("/empty/{i}")),
        3 => (reqwest::Method::HEAD, format!("/cl/{i}")),
        _ if i % 20 == 4 => (reqwest::Method::GET, format!("/close/{i}")),
        _ => (reqwest::Method::GET, format!("/cl/{i}")),
    }
}

/// What a client sees of an answer: status, Content-Type, Retry-After, Content-Length, body.
#[derive(Debug, PartialEq)]
struct Answer {
    status: u16,
    content_type: String,
    retry_after: Option<String>,
    content_length: Option<String>,
    body: Vec<u8>,
}

async fn send(client: &reqwest::Client, base: &str, i: usize) -> Answer {
    let (method, path) = request(i);
    let response = client
        .request(method, format!("http://{base}{path}"))
        .send()
        .await
        .unwrap();
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .map(|v| v.to_str().unwrap().to_string())
    };
    let (content_type, retry_after, content_length) = (
        header("content-type").unwrap_or_default(),
        header("retry-after"),
        header("content-length"),
    );
    let status = response.status().as_u16();
    let body = response.bytes().await.unwrap().to_vec();
    Answer {
        status,
        content_type,
        retry_after,
        content_length,
        body,
    }
}

/// Asserts `answer` is the proxy's fault answer to request `i`.
fn assert_fault(answer: &Answer, i: usize) {
    assert_eq!(answer.content_type, "application/scim+json", "request {i}");
    let expect_retry = (answer.status != 500).then(|| "0".to_string());
    assert_eq!(answer.retry_after, expect_retry, "request {i}");
    if request(i).0 == reqwest::Method::HEAD {
        assert!(answer.body.is_empty(), "request {i}: a body after HEAD");
        return;
    }
    let body: Value = serde_json::from_slice(&answer.body).unwrap();
    assert_eq!(
        body["schemas"][0], "urn:ietf:params:scim:api:messages:2.0:Error",
        "request {i}"
    );
    assert_eq!(body["status"], answer.status.to_string(), "request {i}");
    assert_eq!(body["detail"], "injected by faultproxy", "request {i}");
    assert_eq!(
        answer.content_length.as_deref(),
        Some(answer.body.len().to_string().as_str()),
        "request {i}"
    );
}

fn stats(proxy: &FaultProxy) -> Value {
    let status: Value = serde_json::from_str(&proxy.status().unwrap()).unwrap();
    status["stats"].clone()
}

fn delta(before: &Value, after: &Value, key: &str) -> u64 {
    after[key].as_u64().unwrap() - before[key].as_u64().unwrap()
}

const REQUESTS: usize = 200;

/// Sends the mix through the proxy with faults at `share`/`seed`; every answer is a fault or
/// equal to the direct one. The statuses, in order.
fn run_through(
    rt: &tokio::runtime::Runtime,
    proxy: &FaultProxy,
    expected: &[Answer],
    seed: u64,
) -> Vec<u16> {
    proxy.set_http_faults(0.5, seed).unwrap();
    let client = client();
    let mut statuses = Vec::new();
    for (i, want) in expected.iter().enumerate() {
        let got = rt.block_on(send(&client, &proxy.listen, i));
        if FAULTS.contains(&got.status) {
            assert_fault(&got, i);
        } else {
            assert_eq!(&got, want, "request {i}: not the real answer");
        }
        statuses.push(got.status);
    }
    statuses
}

#[test]
fn http_faults_take_their_share_and_replay() {
    let rt = runtime();
    let upstream = Upstream::start();
    let proxy = FaultProxy::start(&upstream.addr).unwrap();
    let direct = client();
    let expected: Vec<Answer> = (0..REQUESTS)
        .map(|i| rt.block_on(send(&direct, &upstream.addr, i)))
        .collect();
    assert!(expected.iter().all(|a| !FAULTS.contains(&a.status)));

    let before = stats(&proxy);
    let first = run_through(&rt, &proxy, &expected, 42);
    let after = stats(&proxy);
    let count = |status: u16| first.iter().filter(|s| **s == status).count() as u64;
    let faults: u64 = FAULTS.iter().map(|s| count(*s)).sum();
    eprintln!(
        "{faults} faults in {REQUESTS} requests (429: {}, 500: {}, 503: {}), {} connections",
        count(429),
        count(500),
        count(503),
        delta(&before, &after, "accepted")
    );
    let share = faults as f64 / REQUESTS as f64;
    assert!((0.35..=0.65).contains(&share), "fault share {share}");
    for status in FAULTS {
        assert!(count(status) > 0, "no {status} among {first:?}");
        assert_eq!(
            delta(&before, &after, &format!("http_{status}")),
            count(status),
            "{after}"
        );
    }
    assert_eq!(delta(&before, &after, "http_faults"), faults, "{after}");
    assert_eq!(
        delta(&before, &after, "http_requests"),
        REQUESTS as u64,
        "{after}"
    );
    // keep-alive: a new connection only after each close-delimited answer (10), plus a few
    let closes = (0..REQUESTS).filter(|i| i % 20 == 4).count() as u64;
    assert!(
        delta(&before, &after, "accepted") <= closes + 3,
        "connections not kept alive: {after}"
    );

    let again = run_through(&rt, &proxy, &expected, 42);
    assert_eq!(first, again, "the same seed gave another schedule");
    let other = run_through(&rt, &proxy, &expected, 43);
    assert_ne!(first, other, "another seed gave the same schedule");

    // share 0: new connections are plain TCP again, every answer the real one
    proxy.set_http_faults(0.0, 0).unwrap();
    let before = stats(&proxy);
    let plain = client();
    for (i, want) in expected.iter().enumerate().take(40) {
        assert_eq!(&rt.block_on(send(&plain, &proxy.listen, i)), want);
    }
    assert_eq!(delta(&before, &stats(&proxy), "http_requests"), 0);
}

#[test]
fn a_500_was_applied_a_429_or_503_was_not() {
    let rt = runtime();
    let upstream = Upstream::start();
    let proxy = FaultProxy::start(&upstream.addr).unwrap();
    proxy.set_http_faults(1.0, 7).unwrap();
    let client = client();
    let mut applied = Vec::new();
    let mut statuses = Vec::new();
    for i in 0..60 {
        let body = format!("item-{i}");
        let request = client
            .post(format!("http://{}/items", proxy.listen))
            .body(body.clone());
        let response = rt.block_on(async { request.send().await }).unwrap();
        let status = response.status().as_u16();
        assert!(FAULTS.contains(&status), "share 1 let {status} through");
        if status == 500 {
            applied.push(body);
        }
        statuses.push(status);
    }
    for status in FAULTS {
        assert!(statuses.contains(&status), "no {status} among {statuses:?}");
    }
    let listed: Value = rt
        .block_on(async {
            client
                .get(format!("http://{}/items", upstream.addr))
                .send()
                .await
                .unwrap()
                .json()
                .await
        })
        .unwrap();
    let stored: Vec<&str> = listed["bodies"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b.as_str().unwrap())
        .collect();
    assert_eq!(
        stored, applied,
        "the upstream must hold exactly the requests answered 500"
    );
}

/// One answer read off a raw connection: status, headers (lower-case names), decoded body.
fn read_answer(reader: &mut BufReader<TcpStream>, head_only: bool) -> (u16, Vec<String>, Vec<u8>) {
    let mut line = String::new();
    reader.read_line(&mut line).unwrap();
    let status: u16 = line.split(' ').nth(1).unwrap().parse().unwrap();
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        reader.read_line(&mut h).unwrap();
        if h == "\r\n" {
            break;
        }
        headers.push(h.trim_end().to_ascii_lowercase());
    }
    let value = |name: &str| {
        headers
            .iter()
            .find_map(|h| h.strip_prefix(&format!("{name}: ")).map(str::to_string))
    };
    let mut body = Vec::new();
    if head_only || status == 204 {
    } else if value("transfer-encoding").as_deref() == Some("chunked") {
        loop {
            let mut size = String::new();
            reader.read_line(&mut size).unwrap();
            let size = usize::from_str_radix(size.trim(), 16).unwrap();
            let mut chunk = vec![0; size + 2];
            reader.read_exact(&mut chunk).unwrap();
            if size == 0 {
                break;
            }
            body.extend_from_slice(&chunk[..size]);
        }
    } else if let Some(length) = value("content-length") {
        body.resize(length.parse().unwrap(), 0);
        reader.read_exact(&mut body).unwrap();
    } else {
        reader.read_to_end(&mut body).unwrap();
    }
    (status, headers, body)
}

#[test]
fn raw_http_crosses_intact_on_one_connection() {
    let upstream = Upstream::start();
    let proxy = FaultProxy::start(&upstream.addr).unwrap();
    // HTTP mode, with a share so small that this seed draws no fault in a few requests
    proxy.set_http_faults(1e-9, 1).unwrap();
    let before = stats(&proxy);
    let stream = TcpStream::connect(&proxy.listen).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let mut writer = stream.try_clone().unwrap();
    let mut reader = BufReader::new(stream);
    let host = &proxy.listen;

    // a chunked request body, with a chunk extension and a trailer, forwarded as sent
    write!(
        writer,
        "POST /items HTTP/1.1\r\nHost: {host}\r\nTransfer-Encoding: chunked\r\n\r\n\
         3\r\nabc\r\n4;ext=1\r\ndefg\r\n0\r\nX-Trailer: t\r\n\r\n"
    )
    .unwrap();
    let (status, _, body) = read_answer(&mut reader, false);
    assert_eq!(status, 201);
    assert_eq!(
        serde_json::from_slice::<Value>(&body).unwrap()["stored"],
        "abcdefg"
    );

    write!(writer, "HEAD /cl/7 HTTP/1.1\r\nHost: {host}\r\n\r\n").unwrap();
    let (status, headers, body) = read_answer(&mut reader, true);
    assert_eq!(status, 200);
    assert!(headers.iter().any(|h| h.starts_with("content-length: ")));
    assert!(body.is_empty());

    write!(writer, "GET /chunked/9 HTTP/1.1\r\nHost: {host}\r\n\r\n").unwrap();
    let (status, _, chunked) = read_answer(&mut reader, false);
    assert_eq!(status, 200);

    write!(writer, "GET /empty/1 HTTP/1.1\r\nHost: {host}\r\n\r\n").unwrap();
    assert_eq!(read_answer(&mut reader, false).0, 204);

    write!(
        writer,
        "GET /cl/9 HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let (status, _, plain) = read_answer(&mut reader, false);
    assert_eq!(status, 200);
    assert_eq!(chunked, plain, "the chunked answer, decoded, differs");
    let mut rest = Vec::new();
    assert_eq!(reader.read_to_end(&mut rest).unwrap(), 0, "not closed");

    let after = stats(&proxy);
    assert_eq!(delta(&before, &after, "accepted"), 1, "{after}");
    assert_eq!(delta(&before, &after, "http_requests"), 5, "{after}");
    assert_eq!(delta(&before, &after, "http_faults"), 0, "{after}");
}
