#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Password Sync end to end (behaviour §6): a real Samba AD DC hands changed passwords to
//! `dirsync password-sync capture` through `samba-tool user syncpasswords`; `dirsync
//! password-sync push` (the binary) delivers them to a real idservice, where the user then
//! signs in with the new password (`POST /signin`).
//!
//! Scenarios: an administrator reset and a user's own change over LDAPS (non-ASCII password),
//! with capture and push at debug level and every output, report and queue file searched for
//! the passwords; a target that is down while a change is captured; a SIGKILL of the pusher
//! halfway through the queue; a user given a password before the directory sync created it;
//! a user pending deletion; a change older than the maximum age.

mod ad_common;

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ad_common::*;
use base64::Engine as _;
use scim_client::ResourceKind;
use testenv::{IdService, SambaDc};

/// What syncpasswords asks for: the anchors and names the mapping may use, plus the cleartext.
const SYNC_ATTRS: &[&str] = &[
    "objectGUID",
    "objectSid",
    "sAMAccountName",
    "userPrincipalName",
    "mS-DS-ConsistencyGuid",
    "mail",
    "givenName",
    "sn",
    "displayName",
    "userAccountControl",
    "pwdLastSet",
    "msDS-KeyVersionNumber",
    "virtualClearTextUTF8",
];

fn dirsync_bin() -> &'static str {
    env!("CARGO_BIN_EXE_dirsync")
}

/// A DC with syncpasswords wired to the capture hook, an idservice (optionally behind a TCP
/// relay that can be switched off), and a dirsync instance whose queue lives in its dir.
struct World {
    dc: SambaDc,
    ids: IdService,
    relay: Option<Relay>,
    inst: Instance,
    queue: PathBuf,
    /// Everything samba-tool (and through it, the capture hook) printed.
    samba_output: String,
}

impl World {
    fn start(users: &[&str], relayed: bool) -> World {
        let mut dc = start_dc("EXAMPLE.TEST", "EXAMPLE");
        let ids = start_idservice();
        let relay = relayed.then(|| Relay::start(&ids.url));
        let url = match &relay {
            Some(r) => r.url(&ids.url),
            None => ids.url.clone(),
        };
        dc.add_ou("corp").unwrap();
        for u in users {
            dc.add_user(u, u, "Test", None, None, Some("corp")).unwrap();
        }
        // Users of OU=corp only (no built-in accounts), no groups; the anchor rule of the
        // AD samples, so the pusher must derive externalId exactly as the sync does.
        let config = format!(
            "ad:\n  ldap:\n    server:\n      addresses: ['{}']\n      port: {}\n      user: '{}'\n    base_dn: 'OU=corp,{}'\n    filter:\n      group: '!(cn=*)'\niid:\n  scim:\n    base_url: '{}'\n    filter:\n      group: 'displayName eq \"\"'\n    attribute:\n      user:\n        ad_bind:\n          externalId: [mS-DS-ConsistencyGuid, objectGUID]\nsync:\n  max_deletion_ratio: 1.0\n",
            dc.ip, dc.ldap_port, dc.svc_dn, dc.base_dn, url
        );
        let inst = Instance::new(&config, &dc.svc_pw, &ids.token);
        let queue = inst.dir.path().join("pwqueue");
        let hook = inst.dir.path().join("capture-hook.sh");
        std::fs::write(
            &hook,
            format!(
                "#!/bin/sh\nexec '{}' --log-level debug password-sync capture --queue '{}'\n",
                dirsync_bin(),
                queue.display()
            ),
        )
        .unwrap();
        std::fs::set_permissions(&hook, std::fs::Permissions::from_mode(0o700)).unwrap();
        let t0 = Instant::now();
        dc.enable_syncpasswords(&hook, SYNC_ATTRS).unwrap();
        eprintln!(
            "TIMING syncpasswords enabled in {:.1} s",
            t0.elapsed().as_secs_f64()
        );
        World {
            dc,
            ids,
            relay,
            inst,
            queue,
            samba_output: String::new(),
        }
    }

    fn sync(&self) {
        let report = self.inst.sync();
        assert_clean(&report, "directory sync");
    }

    /// One syncpasswords pass; the hook runs once per changed account.
    fn capture(&mut self) -> String {
        let out = self.dc.syncpasswords_once().unwrap();
        self.samba_output += &out;
        out
    }

    fn push_command(&self, extra: &[&str]) -> Command {
        let mut cmd = Command::new(dirsync_bin());
        cmd.args(["--log-level", "debug", "password-sync", "push", "--config"])
            .arg(&self.inst.config)
            .arg("--queue")
            .arg(&self.queue)
            .args(extra);
        cmd
    }

    fn push_once(&self, extra: &[&str]) -> Output {
        let mut args = vec!["--once"];
        args.extend_from_slice(extra);
        self.push_command(&args).output().unwrap()
    }

    fn queued(&self) -> usize {
        std::fs::read_dir(&self.queue)
            .map(|d| {
                d.filter(|e| {
                    e.as_ref()
                        .is_ok_and(|e| e.file_name().to_string_lossy().ends_with(".item"))
                })
                .count()
            })
            .unwrap_or(0)
    }

    fn user_name(&self, sam: &str) -> String {
        let users = target_users(&self.inst.load());
        users
            .iter()
            .find(|u| {
                u["userName"]
                    .as_str()
                    .is_some_and(|n| n.to_lowercase().starts_with(&format!("{sam}@")))
            })
            .and_then(|u| u["userName"].as_str())
            .unwrap_or_else(|| panic!("{sam} is not in the target"))
            .to_string()
    }

    /// `POST /signin` on the idservice (not through the relay): the HTTP status.
    fn sign_in(&self, user_name: &str, password: &str) -> u16 {
        let root = self.ids.url.trim_end_matches("/scim/v2").to_string();
        let rt = runtime();
        rt.block_on(async {
            let client = reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap();
            client
                .post(format!("{root}/signin"))
                .form(&[("username", user_name), ("password", password)])
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        })
    }
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Every encoding of `pw` that a careless log or queue could hold.
fn forms(pw: &str) -> Vec<Vec<u8>> {
    let b64 = base64::engine::general_purpose::STANDARD;
    let utf16: Vec<u8> = pw.encode_utf16().flat_map(|u| u.to_le_bytes()).collect();
    vec![
        pw.as_bytes().to_vec(),
        b64.encode(pw.as_bytes()).into_bytes(),
        utf16.clone(),
        b64.encode(&utf16).into_bytes(),
        serde_json::to_string(pw).unwrap().into_bytes(),
    ]
}

fn contains_secret(haystack: &[u8], passwords: &[&str]) -> bool {
    passwords.iter().any(|pw| {
        forms(pw)
            .iter()
            .any(|form| haystack.windows(form.len()).any(|w| w == form.as_slice()))
    })
}

fn assert_no_secret(haystack: &[u8], what: &str, passwords: &[&str]) {
    assert!(
        !contains_secret(haystack, passwords),
        "a password (or an encoding of it) appears in {what}"
    );
}

#[test]
fn the_secret_search_finds_every_encoding() {
    let pw = "Pässwörd-日本語";
    for form in forms(pw) {
        let mut hay = b"log line: ".to_vec();
        hay.extend_from_slice(&form);
        assert!(contains_secret(&hay, &[pw]));
    }
    assert!(!contains_secret(b"user alice: password delivered", &[pw]));
}

/// Every file under `dir` (the queue: items, key, seen markers, lock).
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(files_under(&p));
        } else {
            out.push(p);
        }
    }
    out
}

#[test]
fn admin_reset_and_own_change_reach_the_target_and_nothing_secret_is_logged() {
    if testenv::samba::skip_samba("password_sync::admin_reset_and_own_change") {
        return;
    }
    let mut w = World::start(&["alice", "bob"], false);
    w.sync();
    let alice = w.user_name("alice");
    let bob = w.user_name("bob");

    let reset_pw = "Reset#Admin-42";
    let own_pw = "Pässwörd-日本語-ñ#1";
    w.dc.set_password("alice", reset_pw).unwrap();
    w.dc.change_own_password("bob", testenv::samba::DEFAULT_USER_PW, own_pw)
        .unwrap();
    let captured = w.capture();
    assert!(
        captured
            .matches("DONE-EXIT: queued password change")
            .count()
            >= 2,
        "both changes captured:\n{captured}"
    );
    assert_eq!(w.queued(), 2);

    // At rest: ciphertext only (no password, no user name), private modes.
    let mode = std::fs::metadata(&w.queue).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o700);
    for f in files_under(&w.queue) {
        let raw = std::fs::read(&f).unwrap();
        assert_no_secret(&raw, &f.display().to_string(), &[reset_pw, own_pw]);
        if f.extension().is_some_and(|e| e == "item") {
            assert!(!raw.windows(5).any(|x| x == b"alice"), "user name in clear");
            let m = std::fs::metadata(&f).unwrap().permissions().mode() & 0o777;
            assert_eq!(m, 0o600, "{}", f.display());
        }
    }

    // Before the push the old passwords still work, the new ones don't.
    assert_eq!(w.sign_in(&alice, reset_pw), 401);

    let out = w.push_once(&[]);
    let out_text = text(&out);
    eprintln!(
        "--- syncpasswords:\n{}\n--- push:\n{out_text}",
        w.samba_output
    );
    assert!(out.status.success(), "push failed:\n{out_text}");
    assert!(
        out_text.contains(&format!("{alice}: password delivered"))
            && out_text.contains(&format!("{bob}: password delivered")),
        "{out_text}"
    );
    assert_eq!(w.queued(), 0);

    assert_eq!(w.sign_in(&alice, reset_pw), 303, "admin reset signs in");
    assert_eq!(
        w.sign_in(&bob, own_pw),
        303,
        "own non-ASCII change signs in"
    );
    assert_eq!(w.sign_in(&bob, testenv::samba::DEFAULT_USER_PW), 401);

    // A second pass with nothing changed calls no hook and queues nothing.
    let again = w.capture();
    assert!(!again.contains("queued password change"), "{again}");
    assert_eq!(w.queued(), 0);

    // Nothing but user and outcome: every output at debug level, the JSON report, the
    // journal-free queue directory.
    let json = w.push_once(&["--report", "json"]);
    let all = format!("{}{}{}", w.samba_output, out_text, text(&json));
    assert_no_secret(all.as_bytes(), "capture/push output", &[reset_pw, own_pw]);
    for f in files_under(&w.queue) {
        assert_no_secret(
            &std::fs::read(&f).unwrap(),
            &f.display().to_string(),
            &[reset_pw, own_pw],
        );
    }
    assert!(
        w.samba_output.contains("DEBUG") || w.samba_output.contains("password-sync capture"),
        "the capture hook ran at debug level:\n{}",
        w.samba_output
    );
}

#[test]
fn waits_for_a_user_not_yet_synced_skips_pending_deletion_and_expires_old_changes() {
    if testenv::samba::skip_samba("password_sync::waits_skips_expires") {
        return;
    }
    let mut w = World::start(&["carol", "dave"], false);
    w.sync();
    let carol = w.user_name("carol");

    // erin is created in the directory and given a password before the next directory sync.
    w.dc.add_user("erin", "erin", "Test", None, None, Some("corp"))
        .unwrap();
    let erin_pw = "Erin#New-Passw0rd";
    w.dc.set_password("erin", erin_pw).unwrap();
    // carol's password changes, but she is moved to pending deletion in the target.
    let carol_pw = "Carol#Pending-1";
    w.dc.set_password("carol", carol_pw).unwrap();
    w.capture();
    assert_eq!(w.queued(), 2);
    let config = w.inst.load();
    let client = dirsync::run::scim_client(&config).unwrap();
    let carol_id = user_named(&target_users(&config), &carol).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    runtime()
        .block_on(client.delete(ResourceKind::Users, &carol_id))
        .unwrap();

    let out = w.push_once(&[]);
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    assert!(
        t.contains(&format!("{carol}: skipped: the user is pending deletion")),
        "{t}"
    );
    assert!(t.contains("waiting: no such user in the target yet"), "{t}");
    assert!(t.contains("remaining in queue: 1"), "{t}");
    assert_eq!(w.queued(), 1, "erin's change waits in the queue");

    // The next directory sync creates erin; the waiting change is then delivered.
    w.sync();
    let erin = w.user_name("erin");
    let out = w.push_once(&[]);
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    assert!(t.contains(&format!("{erin}: password delivered")), "{t}");
    assert_eq!(w.queued(), 0);
    assert_eq!(w.sign_in(&erin, erin_pw), 303);

    // A change older than --max-age is given up and reported (exit 1), not delivered.
    let dave = w.user_name("dave");
    let dave_pw = "Dave#Too-Late-1";
    w.dc.set_password("dave", dave_pw).unwrap();
    w.capture();
    assert_eq!(w.queued(), 1);
    std::thread::sleep(Duration::from_millis(2100));
    let out = w.push_once(&["--max-age", "1s"]);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(1), "{t}");
    assert!(
        t.contains(&format!(
            "{dave}: given up: the change is older than the maximum age"
        )),
        "{t}"
    );
    assert_eq!(w.queued(), 0);
    assert_eq!(w.sign_in(&dave, dave_pw), 401);
    assert_no_secret(
        format!("{}{}", w.samba_output, t).as_bytes(),
        "output",
        &[erin_pw, carol_pw, dave_pw],
    );
}

#[test]
fn target_down_then_back_and_pusher_killed_mid_queue_lose_nothing() {
    if testenv::samba::skip_samba("password_sync::target_down_and_sigkill") {
        return;
    }
    let users = ["u1", "u2", "u3", "u4"];
    let mut w = World::start(&users, true);
    w.sync();
    let names: Vec<String> = users.iter().map(|u| w.user_name(u)).collect();
    let pws: Vec<String> = users.iter().map(|u| format!("{u}#Näw-Pw-1")).collect();

    // The target goes down; a change is captured meanwhile.
    let relay = w.relay.take().unwrap();
    relay.down();
    w.dc.set_password("u1", &pws[0]).unwrap();
    w.capture();
    assert_eq!(w.queued(), 1);
    let out = w.push_once(&["--backoff-min", "1s", "--backoff-max", "1s"]);
    let t = text(&out);
    assert_eq!(
        out.status.code(),
        Some(3),
        "unreachable target: exit 3\n{t}"
    );
    assert!(t.contains("waiting: the target cannot be reached"), "{t}");
    assert_eq!(w.queued(), 1, "the change stays queued");

    // The long-running pusher retries with backoff and delivers once the target is back.
    let mut daemon = w
        .push_command(&["--backoff-min", "1s", "--backoff-max", "2s"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let lines = LineWatcher::new(daemon.stderr.take().unwrap());
    lines.wait_for("the target cannot be reached", Duration::from_secs(30));
    relay.up();
    lines.wait_for("password delivered", Duration::from_secs(30));
    assert_eq!(w.queued(), 0);
    assert_eq!(w.sign_in(&names[0], &pws[0]), 303);

    // Three more changes; the relay slows every exchange so the pusher is killed halfway.
    relay.set_delay(Duration::from_millis(400));
    for (u, pw) in users[1..].iter().zip(&pws[1..]) {
        w.dc.set_password(u, pw).unwrap();
    }
    // (No count here: the running pusher may already be working on the first of them.)
    w.capture();
    lines.wait_for("password delivered", Duration::from_secs(60));
    daemon.kill().unwrap(); // SIGKILL
    daemon.wait().unwrap();
    let left = w.queued();
    assert!(
        left > 0 && left < 3,
        "killed mid-queue: {left} of 3 changes left"
    );

    relay.set_delay(Duration::ZERO);
    let out = w.push_once(&[]);
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    assert_eq!(w.queued(), 0);
    for (name, pw) in names.iter().zip(&pws) {
        assert_eq!(
            w.sign_in(name, pw),
            303,
            "{name} signs in with the synced password"
        );
    }
    let all = format!("{}{}{}", w.samba_output, t, lines.all());
    let pw_refs: Vec<&str> = pws.iter().map(String::as_str).collect();
    assert_no_secret(all.as_bytes(), "output", &pw_refs);
}

/// Collects a child's stderr lines in the background.
struct LineWatcher {
    lines: Arc<Mutex<Vec<String>>>,
    seen: Mutex<usize>,
}

impl LineWatcher {
    fn new(stream: impl std::io::Read + Send + 'static) -> LineWatcher {
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stream).lines().map_while(Result::ok) {
                sink.lock().unwrap().push(line);
            }
        });
        LineWatcher {
            lines,
            seen: Mutex::new(0),
        }
    }

    /// Waits for a line containing `needle` after the last one matched before.
    fn wait_for(&self, needle: &str, timeout: Duration) {
        let t0 = Instant::now();
        loop {
            {
                let lines = self.lines.lock().unwrap();
                let mut seen = self.seen.lock().unwrap();
                if let Some(i) = lines[*seen..].iter().position(|l| l.contains(needle)) {
                    *seen += i + 1;
                    return;
                }
            }
            assert!(
                t0.elapsed() < timeout,
                "no line with {needle:?} within {timeout:?}:\n{}",
                self.all()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn all(&self) -> String {
        self.lines.lock().unwrap().join("\n")
    }
}

type Listening = (Arc<AtomicBool>, Arc<Mutex<Vec<TcpStream>>>);

/// A TCP relay on a fixed loopback port in front of the idservice: `down()` closes the port
/// (connection refused) and cuts open connections; `up()` listens again on the same port;
/// `set_delay` slows each forwarded chunk.
struct Relay {
    port: u16,
    target: SocketAddr,
    delay_ms: Arc<AtomicU64>,
    /// While up: the accept loop's stop flag and the open connections (to cut them).
    state: Mutex<Option<Listening>>,
}

impl Relay {
    fn start(ids_url: &str) -> Relay {
        let authority = ids_url
            .trim_start_matches("http://")
            .split('/')
            .next()
            .unwrap();
        let target: SocketAddr = authority.parse().unwrap();
        let port = testenv::free_port().unwrap();
        let relay = Relay {
            port,
            target,
            delay_ms: Arc::new(AtomicU64::new(0)),
            state: Mutex::new(None),
        };
        relay.up();
        relay
    }

    fn url(&self, ids_url: &str) -> String {
        ids_url.replace(
            &self.target.to_string(),
            &format!("127.0.0.1:{}", self.port),
        )
    }

    fn set_delay(&self, d: Duration) {
        self.delay_ms.store(d.as_millis() as u64, Ordering::SeqCst);
    }

    fn up(&self) {
        let t0 = Instant::now();
        let listener = loop {
            match TcpListener::bind(("127.0.0.1", self.port)) {
                Ok(l) => break l,
                Err(e) if t0.elapsed() < Duration::from_secs(10) => {
                    eprintln!("relay bind: {e}; retrying");
                    std::thread::sleep(Duration::from_millis(100));
                }
                Err(e) => panic!("relay cannot listen again on {}: {e}", self.port),
            }
        };
        let stop = Arc::new(AtomicBool::new(false));
        let conns = Arc::new(Mutex::new(Vec::new()));
        *self.state.lock().unwrap() = Some((stop.clone(), conns.clone()));
        let target = self.target;
        let delay = self.delay_ms.clone();
        std::thread::spawn(move || {
            for client in listener.incoming() {
                if stop.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(client) = client else { continue };
                let Ok(server) = TcpStream::connect(target) else {
                    continue;
                };
                {
                    let mut c = conns.lock().unwrap();
                    c.push(client.try_clone().unwrap());
                    c.push(server.try_clone().unwrap());
                }
                for (mut from, mut to) in [
                    (client.try_clone().unwrap(), server.try_clone().unwrap()),
                    (server, client),
                ] {
                    let delay = delay.clone();
                    std::thread::spawn(move || {
                        let mut buf = [0u8; 16384];
                        loop {
                            let n = match from.read(&mut buf) {
                                Ok(0) | Err(_) => break,
                                Ok(n) => n,
                            };
                            let d = delay.load(Ordering::SeqCst);
                            if d > 0 {
                                std::thread::sleep(Duration::from_millis(d));
                            }
                            if to.write_all(&buf[..n]).is_err() {
                                break;
                            }
                        }
                        let _ = to.shutdown(Shutdown::Write);
                    });
                }
            }
        });
    }

    fn down(&self) {
        if let Some((stop, conns)) = self.state.lock().unwrap().take() {
            stop.store(true, Ordering::SeqCst);
            // Wake the accept loop so it drops the listener.
            let _ = TcpStream::connect(("127.0.0.1", self.port));
            for c in conns.lock().unwrap().drain(..) {
                let _ = c.shutdown(Shutdown::Both);
            }
        }
        // Wait until the port refuses connections.
        let t0 = Instant::now();
        while TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
            assert!(
                t0.elapsed() < Duration::from_secs(5),
                "relay still accepting"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}
