//! Our own `idservice`, started as a separate process (the binary built from this workspace)
//! on a free loopback port with a temporary data directory and a full-scope token.
//! Tests use it as the default SCIM target; it is stopped when the handle is dropped.

use std::ffi::OsString;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::error::{io, spawn};
use crate::{Error, Result, temp_dir};

/// The workspace's `target/debug/idservice`. `scripts/test` (nextest over the workspace)
/// builds it with the tests; when it is missing — a single crate's tests run by hand — it is
/// built here. Building unconditionally would relink it with another feature set than the
/// workspace build and make every test run recompile shared dependencies.
pub fn idservice_binary() -> Result<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"));
    let binary = target.join("debug").join("idservice");
    if binary.exists() {
        return Ok(binary);
    }
    let status = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args(["build", "-q", "-p", "idservice"])
        .current_dir(&root)
        .status()
        .map_err(spawn("cargo build -p idservice"))?;
    if !status.success() || !binary.exists() {
        return Err(Error::MissingBinary { path: binary });
    }
    Ok(binary)
}

/// The server's stderr, kept in its data directory.
const SERVER_LOG: &str = "serve.log";

pub struct IdService {
    /// `http://127.0.0.1:PORT/scim/v2`
    pub url: String,
    pub token: String,
    pub binary: PathBuf,
    /// The temporary directory: the SQLite database (unless `db` names another) and the log.
    data: tempfile::TempDir,
    /// The database options given to `serve` and the admin commands.
    db: Vec<OsString>,
    child: Child,
}

impl IdService {
    pub fn start() -> Result<IdService> {
        Self::start_with(&[])
    }

    /// Starts with extra `serve` arguments (e.g. `--retention-days 0`).
    pub fn start_with(extra: &[&str]) -> Result<IdService> {
        Self::start_with_env(extra, &[])
    }

    /// Starts with extra `serve` arguments and environment (e.g. `IDSERVICE_LOG=debug`). The
    /// server's log (stderr) is kept in the data directory: see [`IdService::server_log`].
    pub fn start_with_env(extra: &[&str], env: &[(&str, &str)]) -> Result<IdService> {
        Self::start_with_db(None, extra, env, None)
    }

    /// Starts on the database `db` names (`["--database", URL, …]`; `None`: a SQLite database
    /// in the temporary directory). With `token`, that token is used instead of creating one.
    pub fn start_with_db(
        db: Option<Vec<OsString>>,
        extra: &[&str],
        env: &[(&str, &str)],
        token: Option<&str>,
    ) -> Result<IdService> {
        let binary = idservice_binary()?;
        let data = temp_dir("dirsync-idservice-")?;
        let db = db.unwrap_or_else(|| vec!["--data".into(), data.path().as_os_str().to_owned()]);
        let token = match token {
            Some(t) => t.to_string(),
            None => {
                let out = Self::admin(
                    &binary,
                    &db,
                    &[
                        "token",
                        "create",
                        "--expires",
                        "1d",
                        "--scope",
                        "escim_read_users,escim_write_users,escim_read_groups,escim_write_groups",
                    ],
                )?;
                out.lines().last().unwrap_or_default().trim().to_string()
            }
        };
        let log_file = data.path().join(SERVER_LOG);
        let log = std::fs::File::create(&log_file).map_err(io("idservice log file"))?;
        let mut child = Command::new(&binary)
            .args(["serve", "--listen", "127.0.0.1:0"])
            .args(&db)
            .args(extra)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .map_err(spawn("idservice serve"))?;
        let base = wait_for_address(&mut child, &log_file)?;
        Ok(IdService {
            url: format!("{base}/scim/v2"),
            token,
            binary,
            data,
            db,
            child,
        })
    }

    /// The process id of the server (to signal it).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    fn admin(binary: &Path, db: &[OsString], args: &[&str]) -> Result<String> {
        let output = Command::new(binary)
            .args(&args[..args.len().min(2)])
            .args(db)
            .args(&args[args.len().min(2)..])
            .output()
            .map_err(spawn(format!("idservice {}", args.join(" "))))?;
        if !output.status.success() {
            // stderr only: stdout is where a created token would be.
            return Err(Error::Command {
                what: format!("idservice {}", args.join(" ")),
                status: output.status,
                output: String::from_utf8_lossy(&output.stderr).into_owned(),
            });
        }
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }

    /// Runs an admin command against this instance's database, e.g.
    /// `["users", "purge-pending", "--user", "alice@example.test"]`.
    pub fn admin_command(&self, args: &[&str]) -> Result<String> {
        Self::admin(&self.binary, &self.db, args)
    }

    pub fn data_dir(&self) -> &Path {
        self.data.path()
    }

    /// Everything the server logged so far (its stderr).
    pub fn server_log(&self) -> String {
        std::fs::read_to_string(self.data.path().join(SERVER_LOG)).unwrap_or_default()
    }
}

impl Drop for IdService {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Reads the child's stdout until it prints `listening on URL`; returns the URL. On a timeout,
/// the error carries the server's log (`log`).
fn wait_for_address(child: &mut Child, log: &Path) -> Result<String> {
    let not_ready = |what: &str| Error::NotReady {
        what: what.to_string(),
        log: std::fs::read_to_string(log).unwrap_or_default(),
    };
    let stdout = child
        .stdout
        .take()
        .ok_or_else(|| not_ready("idservice has no stdout to print its address on"))?;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut lines = BufReader::new(stdout).lines();
        while let Some(Ok(line)) = lines.next() {
            if let Some(url) = line.strip_prefix("listening on ") {
                let _ = tx.send(url.trim().to_string());
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(url) = rx.recv_timeout(Duration::from_millis(100)) {
            return Ok(url);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(not_ready("idservice did not print its address within 30 s"));
        }
    }
}
