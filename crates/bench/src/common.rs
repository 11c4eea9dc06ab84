//! Helpers shared by the bench binaries: a release idservice, the minimal `/Bulk` client, and a
//! measured `dirsync sync` run.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::error::io;
use crate::{Error, Result};

/// A release idservice in a temporary directory; killed on drop.
pub struct IdService {
    child: Child,
    /// The SCIM base URL (`http://ADDR/scim/v2`).
    pub url: String,
    /// A bearer token with the read and write scopes for users and groups.
    pub token: String,
    _dir: tempfile::TempDir,
}

/// Where a benchmark sends its requests: one idservice, or a load balancer in front of
/// several.
#[derive(Debug, Clone)]
pub struct Endpoint {
    /// The SCIM base URL (`http://ADDR/scim/v2`).
    pub url: String,
    /// A bearer token with the read and write scopes for users and groups.
    pub token: String,
}

impl IdService {
    /// The data directory (`--data`) of an instance on SQLite.
    pub fn data_dir(&self) -> &Path {
        self._dir.path()
    }

    /// Starts a new peak of the service's resident memory (Linux `clear_refs` 5), so that
    /// [`IdService::peak_rss_kib`] measures from here.
    pub fn reset_peak_rss(&self) -> Result<()> {
        let path = format!("/proc/{}/clear_refs", self.child.id());
        std::fs::write(&path, "5").map_err(io(path))
    }

    /// The service's peak resident memory since it started or since
    /// [`IdService::reset_peak_rss`] (`VmHWM`).
    pub fn peak_rss_kib(&self) -> Result<u64> {
        let path = format!("/proc/{}/status", self.child.id());
        let status = std::fs::read_to_string(&path).map_err(io(path.clone()))?;
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .ok_or(Error::NoPeakRss(path))
    }

    /// This instance's URL and token.
    pub fn endpoint(&self) -> Endpoint {
        Endpoint {
            url: self.url.clone(),
            token: self.token.clone(),
        }
    }
}

impl Drop for IdService {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `bin` on a fresh data directory: creates a users+groups read/write token (with
/// `token_args` added to `token create`), then `serve`s on a free loopback port (with
/// `serve_args` added before `--data`).
pub fn start_idservice(bin: &Path, token_args: &[&str], serve_args: &[&str]) -> Result<IdService> {
    start_idservice_on(bin, &[], token_args, serve_args)
}

/// [`start_idservice`] on the database `db` names (`--database URL …`); empty: a SQLite
/// database in a fresh temporary directory.
pub fn start_idservice_on(
    bin: &Path,
    db: &[String],
    token_args: &[&str],
    serve_args: &[&str],
) -> Result<IdService> {
    let dir = tempfile::tempdir().map_err(io("temporary directory"))?;
    let db: Vec<String> = if db.is_empty() {
        vec!["--data".into(), dir.path().display().to_string()]
    } else {
        db.to_vec()
    };
    let out = Command::new(bin)
        .args(["token", "create"])
        .args(token_args)
        .arg("--scope")
        .arg("escim_read_users,escim_write_users,escim_read_groups,escim_write_groups")
        .args(&db)
        .output()
        .map_err(|source| Error::Spawn {
            program: bin.display().to_string(),
            source,
        })?;
    if !out.status.success() {
        return Err(Error::Command {
            what: "token create".into(),
            output: String::from_utf8_lossy(&out.stderr).into_owned(),
        });
    }
    let token = String::from_utf8_lossy(&out.stdout)
        .lines()
        .last()
        .unwrap_or_default()
        .trim()
        .to_string();
    let mut child = Command::new(bin)
        .args(["serve", "--listen", "127.0.0.1:0"])
        .args(serve_args)
        .args(&db)
        .env("IDSERVICE_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|source| Error::Spawn {
            program: format!("{} serve", bin.display()),
            source,
        })?;
    let mut line = String::new();
    if let Some(stdout) = child.stdout.take() {
        BufReader::new(stdout)
            .read_line(&mut line)
            .map_err(io("idservice stdout"))?;
    }
    let base = line
        .trim()
        .strip_prefix("listening on ")
        .ok_or_else(|| Error::IdserviceOutput(line.clone()))?
        .to_string();
    Ok(IdService {
        child,
        url: format!("{base}/scim/v2"),
        token,
        _dir: dir,
    })
}

/// The user the minimal Bulk client creates (the same shape as dirsync's: userName,
/// externalId, displayName, name, one primary work email, active).
pub fn user(i: usize) -> Value {
    json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
        "userName": format!("user{i}@bench.example"),
        "externalId": format!("ext-{i:08}"),
        "displayName": format!("Bench User {i}"),
        "name": {"familyName": "User", "givenName": format!("Bench{i}")},
        "emails": [{"value": format!("user{i}@bench.example"), "type": "work", "primary": true}],
        "active": true,
    })
}

/// Creates users `first..first + n` in `inst` through `/Bulk`, `batch` operations a request and `conc`
/// requests in flight; returns the wall time and how many operations answered 201.
pub async fn bulk_load(
    client: &reqwest::Client,
    inst: &Endpoint,
    first: usize,
    n: usize,
    batch: usize,
    conc: usize,
) -> Result<(Duration, usize)> {
    let sem = Arc::new(Semaphore::new(conc));
    let mut set = JoinSet::new();
    let started = Instant::now();
    for chunk_start in (first..first + n).step_by(batch.max(1)) {
        let permit = sem.clone().acquire_owned().await?;
        let ops: Vec<Value> = (chunk_start..(chunk_start + batch).min(first + n))
            .map(|i| json!({"method": "POST", "path": "/Users", "bulkId": format!("b{i}"), "data": user(i)}))
            .collect();
        let body = json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:BulkRequest"], "Operations": ops});
        let req = client
            .post(format!("{}/Bulk", inst.url))
            .bearer_auth(&inst.token)
            .header("content-type", "application/scim+json")
            .body(body.to_string());
        set.spawn(async move {
            let _permit = permit;
            let resp = req.send().await?;
            let v: Value = resp.json().await?;
            let ok = v["Operations"]
                .as_array()
                .map(|a| a.iter().filter(|o| o["status"] == "201").count())
                .unwrap_or(0);
            Ok::<usize, Error>(ok)
        });
    }
    let mut created = 0;
    while let Some(r) = set.join_next().await {
        created += r??;
    }
    Ok((started.elapsed(), created))
}

/// One measured dirsync run.
pub struct Measured {
    pub wall: Duration,
    pub peak_rss_kib: u64,
    /// The `report` object of `--report json`.
    pub report: Value,
}

/// Runs `dirsync sync --config config.yml --secret secret.yml --report json [extra]` in `dir`
/// under `/usr/bin/time` (peak RSS of the dirsync process itself); fails unless exit code 0.
/// dirsync's log is appended to `dir/dirsync.log`; `DIRSYNC_LOG_LEVEL=debug` in the
/// environment gives it the phase lines (duration and resident memory of each run phase).
pub fn run_dirsync(dirsync: &Path, dir: &Path, extra: &[&str]) -> Result<Measured> {
    let time_file = dir.join("time.txt");
    let level = std::env::var("DIRSYNC_LOG_LEVEL").unwrap_or_else(|_| "warn".into());
    let started = Instant::now();
    let out = Command::new("/usr/bin/time")
        .args(["-f", "%M"])
        .arg("-o")
        .arg(&time_file)
        .arg(dirsync)
        .args(["--log-level", &level])
        .args(["sync", "--config", "config.yml", "--secret", "secret.yml"])
        .args(["--report", "json"])
        .args(extra)
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .map_err(|source| Error::Spawn {
            program: "/usr/bin/time (apt-get install time)".into(),
            source,
        })?;
    let wall = started.elapsed();
    {
        use std::io::Write as _;
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("dirsync.log"));
        if let Ok(mut log) = log {
            let _ = writeln!(log, "--- dirsync sync {}", extra.join(" "));
            let _ = log.write_all(&out.stderr);
        }
    }
    let body: Value = serde_json::from_slice(&out.stdout).map_err(|source| Error::NoReport {
        source,
        output: format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    })?;
    let report = body["report"].clone();
    if report["exit_code"] != json!(0) {
        return Err(Error::DirsyncFailed { report });
    }
    let time_text =
        std::fs::read_to_string(&time_file).map_err(io(time_file.display().to_string()))?;
    let peak_rss_kib = time_text
        .lines()
        .filter_map(|l| l.trim().parse::<u64>().ok())
        .next_back()
        .ok_or_else(|| Error::NoPeakRss(time_text.clone()))?;
    Ok(Measured {
        wall,
        peak_rss_kib,
        report,
    })
}

/// Users and groups created, updated, enabled/disabled or deleted by a run (memberships apart).
pub fn writes(report: &Value) -> u64 {
    let c = &report["counts"];
    [
        "created",
        "updated",
        "enabled",
        "disabled",
        "pending_deletion",
        "restored",
        "deleted",
        "groups_created",
        "groups_updated",
        "groups_deleted",
    ]
    .iter()
    .map(|k| c[k].as_u64().unwrap_or(0))
    .sum()
}

/// The idservice and dirsync binaries: as given, else next to the running binary
/// (target/release when run through the scripts). dirsync runs in a temporary directory, so
/// its path is made absolute.
pub fn binaries(idservice: Option<&Path>, dirsync: Option<&Path>) -> Result<(PathBuf, PathBuf)> {
    let exe = std::env::current_exe().map_err(io("current executable"))?;
    let pick = |given: Option<&Path>, name: &str| {
        given.map_or_else(|| exe.with_file_name(name), Path::to_path_buf)
    };
    let idservice = pick(idservice, "idservice");
    let dirsync = pick(dirsync, "dirsync");
    let dirsync = std::fs::canonicalize(&dirsync).map_err(io(dirsync.display().to_string()))?;
    Ok((idservice, dirsync))
}

/// Writes `config.yml` and `secret.yml` (mode 0600) into `dir`; JSON is YAML, so the values are
/// written as JSON.
pub fn write_dirsync_config(dir: &Path, config: &Value, secret: &Value) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let config_path = dir.join("config.yml");
    std::fs::write(&config_path, config.to_string())
        .map_err(io(config_path.display().to_string()))?;
    let secret_path = dir.join("secret.yml");
    std::fs::write(&secret_path, secret.to_string())
        .map_err(io(secret_path.display().to_string()))?;
    std::fs::set_permissions(&secret_path, std::fs::Permissions::from_mode(0o600))
        .map_err(io(secret_path.display().to_string()))
}
