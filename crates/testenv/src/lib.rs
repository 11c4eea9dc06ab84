//! Test harness: starts the real peers the tests talk to — a private OpenLDAP `slapd`, Samba
//! AD domain controllers ([`SambaDc`], each in its own network namespace) and the independent
//! `scim2-server` (PyPI), an SMTP sink ([`SmtpSink`]), PostgreSQL ([`PgServer`]) and HAProxy
//! ([`Haproxy`], with several idservice nodes: [`IdCluster`]), and headless Chromium behind
//! chromedriver ([`Browser`]) — on loopback in temporary directories, and stops them when the
//! handle is dropped. [`FakeAd`] is an in-process LDAP server for AD behaviour Samba lacks
//! (auto-ranged `member;range=0-1499`, malformed responses).
//!
//! It drives the recipes in `testenv/peers/` (shell scripts that install what is missing,
//! start, and stop by PID), so a person can run the same peers by hand. It links neither
//! dirsync nor idservice: [`IdService`] starts the workspace's built `idservice` binary as a
//! separate process. Errors are [`Error`]s whose messages carry the script's own output: a
//! test that cannot start its peer fails with it.

mod browser;
mod cluster;
mod error;
mod idservice;
pub use browser::{Browser, LOOPBACK_ONLY, axe_source, chromium, preferences};
pub use cluster::{Haproxy, IdCluster, PG_USER, PgDurability, PgServer, pg_bin_dir};
pub use error::{Error, Result};
pub use idservice::{IdService, idservice_binary};

use error::{io, redact, spawn};

use std::collections::HashMap;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

pub mod fake_ad;
mod faultproxy;
pub use faultproxy::{FaultMode, FaultProxy};
pub mod samba;
pub mod smtp;

pub use fake_ad::{FakeAd, FakeAdSpec, FakeEntry, FakeFault};
pub use samba::{AdUser, LoadStats, SambaDc, ad_guid_text, ad_sid_text, skip_samba};
pub use smtp::{ReceivedMail, SmtpSink};

/// The Python venv `scripts/install-test-deps` made for the peers (`DIRSYNC_PEERS_VENV`, else
/// its default under the temporary directory): scim2-server, the conformance tools, and
/// prometheus-client (whose OpenMetrics parser the daemon tests use).
pub fn peers_venv() -> PathBuf {
    match std::env::var_os("DIRSYNC_PEERS_VENV") {
        Some(venv) => PathBuf::from(venv),
        None => std::env::temp_dir().join("dirsync-peers/venv-scim"),
    }
}

/// `testenv/peers/` in this repository.
pub fn peers_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../testenv/peers")
}

/// A port that was free a moment ago on 127.0.0.1.
///
/// Chosen below the kernel's ephemeral range (`ip_local_port_range`), so the outgoing
/// connections of other tests cannot take it while a peer is stopped and started again on it
/// (a port the kernel handed out as `127.0.0.1:0` is one it hands out for outgoing connections
/// too). Falls back to a kernel-chosen port when no such range is usable.
pub fn free_port() -> Result<u16> {
    let low = ephemeral_low().unwrap_or(32768);
    if low > 12_000 {
        for _ in 0..64 {
            let port = rand::random_range(10_000..low);
            if TcpListener::bind(("127.0.0.1", port)).is_ok() {
                return Ok(port);
            }
        }
    }
    let listener = TcpListener::bind("127.0.0.1:0").map_err(io("bind"))?;
    listener
        .local_addr()
        .map(|a| a.port())
        .map_err(io("local_addr"))
}

/// The lowest port of the kernel's ephemeral range, if it can be read.
fn ephemeral_low() -> Option<u16> {
    let range = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range").ok()?;
    range.split_whitespace().next()?.parse().ok()
}

/// Waits (up to `limit`) until `port` on 127.0.0.1 can be bound again, e.g. after a peer
/// listening on it was stopped; `false` if it stayed taken.
fn wait_port_free(port: u16, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A new temporary directory named `prefix…`.
fn temp_dir(prefix: &str) -> Result<tempfile::TempDir> {
    tempfile::Builder::new()
        .prefix(prefix)
        .tempdir()
        .map_err(io(format!("temporary directory {prefix}*")))
}

fn run_script(script: &str, envs: &[(&str, String)], args: &[&str]) -> Result<String> {
    let path = peers_dir().join(script);
    let output = Command::new("bash")
        .arg(&path)
        .args(args)
        .envs(envs.iter().map(|(k, v)| (*k, v.as_str())))
        .stdin(Stdio::null())
        .output()
        .map_err(spawn(path.display().to_string()))?;
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    if !output.status.success() {
        return Err(Error::Command {
            what: script.to_string(),
            status: output.status,
            output: format!(
                "{}\n{}",
                redact(&stdout),
                String::from_utf8_lossy(&output.stderr)
            ),
        });
    }
    Ok(stdout)
}

/// The value of `key` in a start script's output `env` (parsed from `output`).
fn printed(script: &str, env: &HashMap<String, String>, output: &str, key: &str) -> Result<String> {
    env.get(key).cloned().ok_or_else(|| Error::MissingOutput {
        script: script.to_string(),
        key: key.to_string(),
        output: redact(output),
    })
}

fn parse_env(text: &str) -> HashMap<String, String> {
    text.lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect()
}

/// A private slapd with the example tree (`ou=people`, `ou=groups`, `ou=services` under
/// `dc=example,dc=test`), a read-only service account, and syncprov/accesslog overlays.
pub struct Slapd {
    pub uri: String,
    pub port: u16,
    pub base: String,
    pub admin_dn: String,
    pub admin_pw: String,
    pub sync_dn: String,
    pub sync_pw: String,
    dir: tempfile::TempDir,
}

/// How [`Slapd::start_with`] configures syncprov on the example tree.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SlapdOptions {
    /// `syncprov-sessionlog` size; 0 = none, so a syncrepl refresh with a cookie uses the
    /// present phase instead of the delete phase.
    pub sessionlog: u32,
    /// `syncprov-reloadhint`: a stale cookie is answered with e-syncRefreshRequired instead
    /// of a full present-phase refresh.
    pub reload_hint: bool,
    /// The `memberof` and `refint` overlays: a renamed, moved or deleted entry's DN is
    /// rewritten (or removed) in every group's `member` values by the server itself.
    pub memberof: bool,
}

impl Default for SlapdOptions {
    fn default() -> Self {
        SlapdOptions {
            sessionlog: 100_000,
            reload_hint: false,
            memberof: false,
        }
    }
}

impl Slapd {
    pub fn start() -> Result<Slapd> {
        Slapd::start_with(SlapdOptions::default())
    }

    pub fn start_with(options: SlapdOptions) -> Result<Slapd> {
        let dir = temp_dir("dirsync-slapd-")?;
        // A port can be taken between probing and binding: try a few.
        let mut attempt = 1;
        loop {
            let port = free_port()?;
            let envs = [
                ("LDAP_PORT", port.to_string()),
                ("LDAP_DIR", dir.path().join("slapd").display().to_string()),
                ("LDAP_NOSYNC", "1".to_string()),
                ("LDAP_SESSIONLOG", options.sessionlog.to_string()),
                (
                    "LDAP_RELOADHINT",
                    if options.reload_hint { "1" } else { "0" }.to_string(),
                ),
                (
                    "LDAP_MEMBEROF",
                    if options.memberof { "1" } else { "0" }.to_string(),
                ),
            ];
            match run_script("ldap_start.sh", &envs, &[]) {
                Ok(out) => {
                    let env = parse_env(&out);
                    let get = |k: &str| printed("ldap_start.sh", &env, &out, k);
                    return Ok(Slapd {
                        uri: get("LDAP_URI")?,
                        port,
                        base: get("LDAP_BASE")?,
                        admin_dn: get("LDAP_ADMIN_DN")?,
                        admin_pw: get("LDAP_ADMIN_PW")?,
                        sync_dn: get("LDAP_SYNC_DN")?,
                        sync_pw: get("LDAP_SYNC_PW")?,
                        dir,
                    });
                }
                Err(e) if attempt >= 5 => return Err(e),
                Err(_) => attempt += 1,
            }
        }
    }

    fn slapd_dir(&self) -> PathBuf {
        self.dir.path().join("slapd")
    }

    fn ldap_tool(&self, tool: &str, extra: &[&str], ldif: &str) -> Result<String> {
        self.ldap_tool_as(&self.admin_dn, tool, extra, ldif)
    }

    fn ldap_tool_as(
        &self,
        bind_dn: &str,
        tool: &str,
        extra: &[&str],
        ldif: &str,
    ) -> Result<String> {
        let file = self.dir.path().join(format!("{tool}-input.ldif"));
        std::fs::write(&file, ldif).map_err(io(file.display().to_string()))?;
        let file_arg = file.display().to_string();
        let mut args = vec!["-x", "-H", &self.uri, "-D", bind_dn, "-w", &self.admin_pw];
        args.extend_from_slice(extra);
        args.extend_from_slice(&["-f", &file_arg]);
        let output = Command::new(tool)
            .args(&args)
            .stdin(Stdio::null())
            .output()
            .map_err(spawn(tool))?;
        if !output.status.success() {
            return Err(Error::Command {
                what: tool.to_string(),
                status: output.status,
                output: format!(
                    "{}{}",
                    String::from_utf8_lossy(&output.stdout),
                    String::from_utf8_lossy(&output.stderr)
                ),
            });
        }
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }

    /// Adds entries over LDAP as the rootdn (overlays see the change).
    pub fn add(&self, ldif: &str) -> Result<()> {
        self.ldap_tool("ldapadd", &[], ldif).map(|_| ())
    }

    /// Applies an LDIF change file (changetype: modify / delete / modrdn) as the rootdn.
    pub fn modify(&self, ldif: &str) -> Result<()> {
        self.ldap_tool("ldapmodify", &[], ldif).map(|_| ())
    }

    /// Applies an LDIF change file to slapd's configuration (`cn=config`, as its admin): limits,
    /// overlays, anything the running server takes without a restart.
    pub fn modify_config(&self, ldif: &str) -> Result<()> {
        self.ldap_tool_as("cn=admin,cn=config", "ldapmodify", &[], ldif)
            .map(|_| ())
    }

    /// Applies an LDIF change file with the ManageDsaIT control: referral objects are then
    /// added, changed and deleted as entries instead of being followed.
    pub fn modify_managing(&self, ldif: &str) -> Result<()> {
        self.ldap_tool("ldapmodify", &["-M"], ldif).map(|_| ())
    }

    /// Renames and/or moves an entry (modrdn; the old RDN value is removed).
    pub fn modrdn(&self, dn: &str, new_rdn: &str, new_superior: Option<&str>) -> Result<()> {
        let mut ldif =
            format!("dn: {dn}\nchangetype: modrdn\nnewrdn: {new_rdn}\ndeleteoldrdn: 1\n");
        if let Some(parent) = new_superior {
            ldif.push_str(&format!("newsuperior: {parent}\n"));
        }
        self.modify(&ldif)
    }

    /// The values of `attr` on the entry `dn` (a base-scope `ldapsearch` as the rootdn); an
    /// entry that does not exist is an error. Values are returned as the server prints them
    /// (`ldif-wrap=no`; a base64 value keeps its `: ` prefix).
    pub fn values(&self, dn: &str, attr: &str) -> Result<Vec<String>> {
        let output = Command::new("ldapsearch")
            .args(["-x", "-LLL", "-o", "ldif-wrap=no", "-H", &self.uri, "-D"])
            .args([
                &self.admin_dn,
                "-w",
                &self.admin_pw,
                "-s",
                "base",
                "-b",
                dn,
                attr,
            ])
            .stdin(Stdio::null())
            .output()
            .map_err(spawn("ldapsearch"))?;
        if !output.status.success() {
            return Err(Error::Command {
                what: format!("ldapsearch {dn}"),
                status: output.status,
                output: String::from_utf8_lossy(&output.stderr).into_owned(),
            });
        }
        let prefix = format!("{}:", attr.to_ascii_lowercase());
        Ok(String::from_utf8_lossy(&output.stdout)
            .lines()
            .filter(|l| l.to_ascii_lowercase().starts_with(&prefix))
            .map(|l| l[prefix.len()..].trim_start_matches(' ').to_string())
            .collect())
    }

    /// Deletes entries by DN.
    pub fn delete(&self, dns: &[&str]) -> Result<()> {
        let ldif: String = dns
            .iter()
            .map(|dn| format!("dn: {dn}\nchangetype: delete\n\n"))
            .collect();
        self.modify(&ldif)
    }

    /// Loads generated data offline (`slapadd -q -w`, fast; overlays bypassed), restarting
    /// slapd around it: `gen_ldap_data.py users groups [extra args]`.
    pub fn load_generated(&self, users: usize, groups: usize, extra: &[&str]) -> Result<()> {
        let ldif = self.dir.path().join("generated.ldif");
        let output = Command::new("python3")
            .arg(peers_dir().join("gen_ldap_data.py"))
            .arg(users.to_string())
            .arg(groups.to_string())
            .args(["--base", &self.base])
            .args(extra)
            .output()
            .map_err(spawn("gen_ldap_data.py"))?;
        if !output.status.success() {
            return Err(Error::Command {
                what: "gen_ldap_data.py".into(),
                status: output.status,
                output: String::from_utf8_lossy(&output.stderr).into_owned(),
            });
        }
        std::fs::write(&ldif, &output.stdout).map_err(io(ldif.display().to_string()))?;
        self.load_ldif_offline(&ldif)
    }

    /// `slapadd -q -w` of an LDIF file while slapd is stopped, then restart.
    pub fn load_ldif_offline(&self, ldif: &Path) -> Result<()> {
        let envs = self.envs();
        run_script("ldap_stop.sh", &envs, &[])?;
        let output = Command::new("slapadd")
            .args(["-q", "-w", "-n2", "-F"])
            .arg(self.slapd_dir().join("slapd.d"))
            .arg("-l")
            .arg(ldif)
            .output()
            .map_err(spawn("slapadd"))?;
        let restart = self.restart();
        if !output.status.success() {
            return Err(Error::Command {
                what: "slapadd".into(),
                status: output.status,
                output: String::from_utf8_lossy(&output.stderr).into_owned(),
            });
        }
        restart
    }

    fn envs(&self) -> Vec<(&'static str, String)> {
        vec![
            ("LDAP_PORT", self.port.to_string()),
            ("LDAP_DIR", self.slapd_dir().display().to_string()),
            ("LDAP_NOSYNC", "1".to_string()),
        ]
    }

    /// Stops slapd (the data stays).
    pub fn stop(&self) -> Result<()> {
        run_script("ldap_stop.sh", &self.envs(), &[]).map(|_| ())
    }

    /// Starts slapd again on the same port with the same data. The port is waited for (a
    /// connection of the stopped slapd may hold it a moment) and the start is tried again
    /// when it fails.
    pub fn restart(&self) -> Result<()> {
        let mut envs = self.envs();
        envs.push(("LDAP_FRESH", "0".to_string()));
        let mut attempt = 1;
        loop {
            wait_port_free(self.port, Duration::from_secs(10));
            match run_script("ldap_start.sh", &envs, &[]) {
                Ok(_) => return Ok(()),
                Err(e) if attempt >= 3 => return Err(e),
                Err(_) => {
                    attempt += 1;
                    std::thread::sleep(Duration::from_millis(500));
                }
            }
        }
    }
}

impl Drop for Slapd {
    fn drop(&mut self) {
        let _ = run_script("ldap_stop.sh", &self.envs(), &["--purge"]);
    }
}

/// The independent SCIM 2.0 server `scim2-server` (PyPI, in memory), in the venv made by
/// `scripts/install-test-deps` (`DIRSYNC_PEERS_VENV`).
pub struct Scim2Server {
    /// Base URL, e.g. `http://127.0.0.1:PORT/v2`.
    pub url: String,
    pub token: String,
    port: u16,
    dir: tempfile::TempDir,
}

impl Scim2Server {
    pub fn start(token: &str) -> Result<Scim2Server> {
        let dir = temp_dir("dirsync-scim2-")?;
        let mut attempt = 1;
        loop {
            let port = free_port()?;
            let mut envs = vec![
                ("SCIM_PORT", port.to_string()),
                ("SCIM_DIR", dir.path().join("scim").display().to_string()),
                ("SCIM_TOKEN", token.to_string()),
            ];
            if let Ok(venv) = std::env::var("DIRSYNC_PEERS_VENV") {
                envs.push(("SCIM_VENV", venv));
            }
            match run_script("scim_start.sh", &envs, &[]) {
                Ok(out) => {
                    let env = parse_env(&out);
                    let url = printed("scim_start.sh", &env, &out, "SCIM_URL")?;
                    return Ok(Scim2Server {
                        url,
                        token: token.to_string(),
                        port,
                        dir,
                    });
                }
                Err(e) if attempt >= 5 => return Err(e),
                Err(_) => attempt += 1,
            }
        }
    }
}

impl Drop for Scim2Server {
    fn drop(&mut self) {
        let envs = [
            ("SCIM_PORT", self.port.to_string()),
            (
                "SCIM_DIR",
                self.dir.path().join("scim").display().to_string(),
            ),
        ];
        let _ = run_script("scim_stop.sh", &envs, &["--purge"]);
    }
}
