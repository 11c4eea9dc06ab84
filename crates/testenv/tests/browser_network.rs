//! Chromium, started with the switches the browser tests use (`testenv::LOOPBACK_ONLY`), sends
//! no packet off loopback: no DNS query, no update check, no request for a page's external
//! image, nothing for the page it then leads to (a name that does not resolve). Checked where nothing can leave the machine: Chromium and a small page server run
//! in a network namespace of their own (`unshare`), whose only way out is one end of a veth
//! pair with a default route; every packet the kernel sends that way, even an ARP request for
//! the gateway, counts. The same run without the switches must send some, or the check proves
//! nothing.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::Command;

/// The script run as root of a fresh user and network namespace: sets up the way out, serves
/// `site/` on 127.0.0.1:8000, lets Chromium load it for eight seconds and prints the packets
/// that left through `out0`.
const SCRIPT: &str = r#"set -eu
ip link set lo up
sysctl -qw net.ipv6.conf.all.disable_ipv6=1
sysctl -qw net.ipv6.conf.default.disable_ipv6=1
ip link add out0 type veth peer name out1
ip addr add 192.0.2.10/24 dev out0
ip link set out0 up
ip link set out1 up
ip route add default via 192.0.2.1 dev out0
tx() { awk '$1 == "out0:" { print $11 }' /proc/net/dev; }
python3 -m http.server --bind 127.0.0.1 8000 --directory "$SITE" >/dev/null 2>&1 &
server=$!
sleep 1
before=$(tx)
timeout -k 2 8 "$CHROMIUM" "$@" http://127.0.0.1:8000/ >/dev/null 2>&1 || true
after=$(tx)
kill "$server"
echo $((after - before))
"#;

const PAGE: &str = r#"<!doctype html><html lang="en"><head><title>page</title>
<link rel="dns-prefetch" href="//prefetch.example.com">
<meta http-equiv="refresh" content="2;url=http://gone.example.com/">
</head><body><h1>A page on loopback</h1>
<img src="http://images.example.com/a.png" alt="an image elsewhere">
<a href="http://www.example.org/">a link elsewhere</a>
<form action="https://forms.example.net/post" method="post"><input name="q"></form>
</body></html>"#;

fn packets_sent(dir: &Path, switches: &[&str]) -> u64 {
    let chromium = testenv::chromium().unwrap();
    let site = dir.join("site");
    std::fs::create_dir_all(&site).unwrap();
    std::fs::write(site.join("index.html"), PAGE).unwrap();
    let profile = dir.join(format!("profile-{}", switches.len()));
    // what chromedriver writes from the session's "prefs", written here by hand
    std::fs::create_dir_all(profile.join("Default")).unwrap();
    std::fs::write(
        profile.join("Default/Preferences"),
        testenv::preferences("en").to_string(),
    )
    .unwrap();
    let mut unshare = Command::new("unshare");
    // root needs no user namespace to own a network namespace (and CI runs as root)
    let as_root = std::fs::metadata("/proc/self")
        .map(|m| m.uid() == 0)
        .unwrap();
    if !as_root {
        unshare.args(["--user", "--map-root-user"]);
    }
    let out = unshare
        .args(["--net", "--fork", "--kill-child"])
        .args(["sh", "-c", SCRIPT, "sh"])
        .args([
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--remote-debugging-port=0",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(switches)
        .env("CHROMIUM", chromium)
        .env("SITE", &site)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "the namespace script failed ({}): {stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout.trim().parse().unwrap_or_else(|_| {
        panic!(
            "no packet count: {stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

#[test]
fn chromium_with_the_harness_switches_stays_on_loopback() {
    let dir = tempfile::tempdir().unwrap();
    let without = packets_sent(dir.path(), &[]);
    assert!(
        without > 0,
        "Chromium without the switches sent nothing either: the check cannot tell"
    );
    let with = packets_sent(dir.path(), testenv::LOOPBACK_ONLY);
    assert_eq!(
        with, 0,
        "Chromium with testenv::LOOPBACK_ONLY sent {with} packets off loopback \
         (without the switches: {without})"
    );
}

/// Whether process `pid` still runs (a zombie counts as gone).
fn running(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|stat| {
            let state = stat.rsplit(')').next().unwrap_or("").trim_start();
            !state.starts_with('Z') && !state.starts_with('X')
        })
        .unwrap_or(false)
}

/// Dropping a `Browser` stops chromedriver and every browser process it started (its process
/// group), and nothing else: a process of the test's, started before, still runs.
#[tokio::test(flavor = "multi_thread")]
async fn stopping_the_browser_stops_its_group_and_nothing_else() {
    let mut bystander = Command::new("sleep").arg("60").spawn().unwrap();
    let browser = testenv::Browser::start().unwrap();
    let driver = browser.pid();
    let caps = browser.capabilities("en");
    let client =
        fantoccini::ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(caps)
            .connect(&browser.webdriver_url)
            .await
            .unwrap();
    client.goto("about:blank").await.unwrap();
    let group: Vec<u32> = std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|s| {
                    s.rsplit(')')
                        .next()?
                        .split_whitespace()
                        .nth(2)?
                        .parse::<u32>()
                        .ok()
                })
                == Some(driver)
        })
        .collect();
    assert!(
        group.len() > 1,
        "no browser started in the group: {group:?}"
    );
    drop(browser);
    std::thread::sleep(std::time::Duration::from_millis(500));
    let left: Vec<u32> = group.into_iter().filter(|p| running(*p)).collect();
    assert!(left.is_empty(), "still running after the drop: {left:?}");
    assert!(
        running(bystander.id()),
        "the drop killed a process outside its group"
    );
    bystander.kill().unwrap();
    let _ = bystander.wait();
}
