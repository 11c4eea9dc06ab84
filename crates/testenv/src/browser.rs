//! [`Browser`]: Debian's `chromedriver` (package chromium-driver) on a private loopback port,
//! driving Debian's `chromium` headless with a profile in a temporary directory; and
//! [`axe_source`], the axe-core page script (`scripts/install-test-deps` installs it from the
//! npm registry) that the accessibility checks run inside a page.
//!
//! The harness only starts the WebDriver server and says which capabilities open a headless
//! session; the tests speak WebDriver themselves (with a client crate of their choice).

use std::net::TcpStream;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::error::{io, spawn};
use crate::{Error, Result, free_port};

/// Chromium's switches that keep every byte it sends on loopback. Left to itself, a fresh
/// profile looks up Google's update and sync hosts and the default search engine at start
/// (DNS queries to the machine's resolver, which is not on loopback). The background services
/// are switched off, every host name resolves to "not found" without asking DNS (the tests
/// open `http://127.0.0.1:PORT` only) and any request not for loopback goes to a proxy on
/// the discard port, where nothing listens. `tests/browser_network.rs` checks it. The
/// profile's [`preferences`] also turn off the DNS probe of Chromium's error page, which asks
/// public resolvers directly (seen once a loopback page failed to load).
pub const LOOPBACK_ONLY: &[&str] = &[
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-default-apps",
    "--disable-domain-reliability",
    "--disable-client-side-phishing-detection",
    "--disable-breakpad",
    "--disable-quic",
    "--dns-prefetch-disable",
    "--no-default-browser-check",
    "--no-pings",
    "--metrics-recording-only",
    "--disable-features=OptimizationHints,MediaRouter,Translate,AutofillServerCommunication,\
     InterestFeedContentSuggestions,CertificateTransparencyComponentUpdater,DnsOverHttps",
    "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE localhost , EXCLUDE 127.0.0.1",
    "--proxy-server=http://127.0.0.1:9",
];

/// A running chromedriver; stopped (with the browsers it started) on drop.
pub struct Browser {
    child: Child,
    /// The WebDriver endpoint, `http://127.0.0.1:PORT`.
    pub webdriver_url: String,
    profile: tempfile::TempDir,
    log: PathBuf,
}

fn find(names: &[&str]) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([
            PathBuf::from("/usr/bin"),
            PathBuf::from("/usr/lib/chromium"),
        ])
        .flat_map(|dir| names.iter().map(move |n| dir.join(n)))
        .find(|p| p.is_file())
}

/// The profile preferences of a test browser: the given `Accept-Language`, and no DNS probe
/// on an error page (Chromium would query Google's public resolvers to explain a failed name).
pub fn preferences(accept_language: &str) -> serde_json::Value {
    serde_json::json!({
        "intl": { "accept_languages": accept_language },
        "alternate_error_pages": { "enabled": false },
    })
}

/// Where Debian's Chromium is (`chromium` or `chromium-browser` on `PATH`).
pub fn chromium() -> Result<PathBuf> {
    find(&["chromium", "chromium-browser"]).ok_or_else(|| Error::NotInstalled {
        what: "chromium".into(),
        hint: "apt-get install chromium (scripts/install-test-deps)".into(),
    })
}

impl Browser {
    /// Starts chromedriver and waits until it accepts connections.
    pub fn start() -> Result<Browser> {
        Browser::start_in_zone(None)
    }

    /// As [`Browser::start`], with the browsers it starts in the time zone `tz` (`TZ`, e.g.
    /// `Asia/Tokyo`) when given.
    pub fn start_in_zone(tz: Option<&str>) -> Result<Browser> {
        let driver = find(&["chromedriver"]).ok_or_else(|| Error::NotInstalled {
            what: "chromedriver".into(),
            hint: "apt-get install chromium-driver (scripts/install-test-deps)".into(),
        })?;
        chromium()?;
        let profile = tempfile::tempdir().map_err(io("chromium profile directory"))?;
        let log = profile.path().join("chromedriver.log");
        let port = free_port()?;
        let mut cmd = Command::new(&driver);
        if let Some(tz) = tz {
            cmd.env("TZ", tz);
        }
        let child = cmd
            // its own process group: stopping it stops the browsers it started too
            .process_group(0)
            .arg(format!("--port={port}"))
            .arg(format!("--log-path={}", log.display()))
            .arg("--allowed-ips=127.0.0.1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(spawn(driver.display().to_string()))?;
        let mut browser = Browser {
            child,
            webdriver_url: format!("http://127.0.0.1:{port}"),
            profile,
            log,
        };
        browser.wait_ready(port)?;
        Ok(browser)
    }

    /// chromedriver's process id (the id of its process group too).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    fn wait_ready(&mut self, port: u16) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return Ok(());
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(Error::NotReady {
                    what: format!("chromedriver exited ({status})"),
                    log: std::fs::read_to_string(&self.log).unwrap_or_default(),
                });
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Err(Error::NotReady {
            what: "chromedriver did not listen within 20 s".into(),
            log: std::fs::read_to_string(&self.log).unwrap_or_default(),
        })
    }

    /// The W3C capabilities of a headless Chromium session with its own profile, a fixed
    /// window size (screenshots are comparable) and the given `Accept-Language`.
    pub fn capabilities(
        &self,
        accept_language: &str,
    ) -> serde_json::Map<String, serde_json::Value> {
        let profile = self
            .profile
            .path()
            .join(format!("profile-{}", rand::random::<u32>()));
        let caps = serde_json::json!({
            "browserName": "chrome",
            "goog:chromeOptions": {
                "args": LOOPBACK_ONLY
                    .iter()
                    .map(|a| a.to_string())
                    .chain([
                        "--headless=new".to_string(),
                        "--no-sandbox".to_string(),
                        "--disable-gpu".to_string(),
                        "--disable-dev-shm-usage".to_string(),
                        "--no-first-run".to_string(),
                        "--disable-extensions".to_string(),
                        "--window-size=1280,900".to_string(),
                        format!("--lang={accept_language}"),
                        format!("--user-data-dir={}", profile.display()),
                    ])
                    .collect::<Vec<_>>(),
                "prefs": preferences(accept_language),
            }
        });
        match caps {
            serde_json::Value::Object(m) => m,
            _ => serde_json::Map::new(),
        }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        stop_group(&self.child);
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Kills the process group `child` leads (chromedriver and the browsers it started), by the
/// system call. Not by the `kill` command: Debian 12's procps-ng 4.0.2 reads `kill -KILL -1234`
/// as `kill(-1, SIGKILL)` — every process the caller may signal — whenever the id starts with
/// a 1 (seen: it stopped a whole CI run and this machine's shell).
fn stop_group(child: &Child) {
    let Some(pid) = i32::try_from(child.id())
        .ok()
        .and_then(rustix::process::Pid::from_raw)
    else {
        return;
    };
    let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL);
}

/// The axe-core script (`axe.min.js`): `DIRSYNC_AXE_JS`, else where
/// `scripts/install-test-deps` puts it (`DIRSYNC_AXE_DIR`, default
/// `$TMPDIR/dirsync-peers/axe`).
pub fn axe_source() -> Result<String> {
    let path = match std::env::var_os("DIRSYNC_AXE_JS") {
        Some(p) => PathBuf::from(p),
        None => std::env::var_os("DIRSYNC_AXE_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| std::env::temp_dir().join("dirsync-peers/axe"))
            .join("node_modules/axe-core/axe.min.js"),
    };
    std::fs::read_to_string(&path).map_err(|_| Error::NotInstalled {
        what: format!("axe-core ({})", path.display()),
        hint: "scripts/install-test-deps installs it with npm".into(),
    })
}
