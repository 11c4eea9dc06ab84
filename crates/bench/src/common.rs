//! Helpers shared by the two bench binaries (`bench-idservice`, `bench-dirsync`), included in
//! each with `mod common` (`#[path]` from `src/bin`).

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

/// A release idservice in a temporary directory; killed on drop.
pub struct IdService {
    child: Child,
    /// The SCIM base URL (`http://ADDR/scim/v2`).
    pub url: String,
    /// A bearer token with the read and write scopes for users and groups.
    pub token: String,
    _dir: tempfile::TempDir,
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
pub fn start_idservice(
    bin: &Path,
    token_args: &[&str],
    serve_args: &[&str],
) -> Result<IdService, String> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let out = Command::new(bin)
        .args(["token", "create"])
        .args(token_args)
        .arg("--scope")
        .arg("escim_read_users,escim_write_users,escim_read_groups,escim_write_groups")
        .arg("--data")
        .arg(dir.path())
        .output()
        .map_err(|e| format!("cannot run {}: {e}", bin.display()))?;
    if !out.status.success() {
        return Err(format!(
            "token create failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
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
        .arg("--data")
        .arg(dir.path())
        .env("IDSERVICE_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| e.to_string())?;
    let stdout = child.stdout.take().ok_or("no stdout")?;
    let mut line = String::new();
    BufReader::new(stdout)
        .read_line(&mut line)
        .map_err(|e| e.to_string())?;
    let base = line
        .trim()
        .strip_prefix("listening on ")
        .ok_or_else(|| format!("unexpected idservice output {line:?}"))?
        .to_string();
    Ok(IdService {
        child,
        url: format!("{base}/scim/v2"),
        token,
        _dir: dir,
    })
}
