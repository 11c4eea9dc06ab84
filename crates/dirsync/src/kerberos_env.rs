//! The process environment of a Kerberos bind (`ad.ldap.server.auth.mechanism: gssapi`).
//!
//! MIT Kerberos takes its configuration, credential cache and client keytab from environment
//! variables, which a multi-threaded process cannot safely change for itself. So `dirsync`,
//! configured for GSSAPI, writes a private krb5.conf into a fresh directory only it can read
//! (mode 0700, under the temporary directory) and re-executes itself once with the variables
//! of [`crate::source::kerberos::environment`] (a `MEMORY:` ticket cache private to the
//! process, the configured keytab, the private krb5.conf ahead of the system's). The
//! re-executed process finds the directory in `DIRSYNC_KRB5_DIR` and removes it when it ends
//! ([`PrivateDir`]). The directory holds no secret: the keytab is read in place and tickets
//! never leave memory.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use crate::config::Config;
use crate::source::kerberos::{self, CONF_FILE, PREPARED_ENV};

/// Prefix of the private directory's name; a `DIRSYNC_KRB5_DIR` not named so is refused.
const DIR_PREFIX: &str = "dirsync-krb5-";

/// Why the process could not be prepared for a Kerberos bind.
#[derive(Debug, thiserror::Error)]
pub enum KerberosEnvError {
    #[error("cannot write the private Kerberos configuration in {dir}: {reason}")]
    Write { dir: String, reason: String },
    #[error("cannot restart dirsync with its private Kerberos environment: {0}")]
    Exec(String),
    #[error("{PREPARED_ENV}={0} is not a directory dirsync prepared")]
    Foreign(String),
}

/// The private directory of a prepared process; removed (with its krb5.conf) on drop.
#[derive(Debug)]
pub struct PrivateDir(PathBuf);

impl Drop for PrivateDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(self.0.join(CONF_FILE));
        let _ = std::fs::remove_dir(&self.0);
    }
}

/// Nothing to do without a GSSAPI bind (`Ok(None)`); the directory of an already prepared
/// process; otherwise prepares one and re-executes this program (returns only on failure).
pub fn prepare(config: &Config) -> Result<Option<PrivateDir>, KerberosEnvError> {
    let server = &config.ad.ldap.server;
    let settings = match crate::source::kerberos_settings(&server.auth, server.kdc.as_ref()) {
        Some(s) if config.ad.ldif_file.is_none() => s,
        _ => return Ok(None),
    };
    if let Some(dir) = std::env::var_os(PREPARED_ENV) {
        return adopt(PathBuf::from(dir)).map(Some);
    }
    let dir = private_dir()?;
    let guard = PrivateDir(dir.clone());
    let conf = kerberos::private_krb5_conf(&settings);
    std::fs::write(dir.join(CONF_FILE), conf).map_err(|e| write_error(&dir, &e))?;
    let env = kerberos::environment(&settings, &dir, std::env::var_os("KRB5_CONFIG"));
    let err = reexec(&env);
    drop(guard);
    Err(KerberosEnvError::Exec(err.to_string()))
}

/// The directory named by `DIRSYNC_KRB5_DIR`, if it looks like one of ours.
fn adopt(dir: PathBuf) -> Result<PrivateDir, KerberosEnvError> {
    let ours = dir
        .file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.starts_with(DIR_PREFIX))
        && dir.join(CONF_FILE).is_file();
    if ours {
        Ok(PrivateDir(dir))
    } else {
        Err(KerberosEnvError::Foreign(dir.display().to_string()))
    }
}

/// A new directory `dirsync-krb5-<pid>-<random>` (0700) under the temporary directory.
fn private_dir() -> Result<PathBuf, KerberosEnvError> {
    let name = format!(
        "{DIR_PREFIX}{}-{:016x}",
        std::process::id(),
        rand::random::<u64>()
    );
    let dir = std::env::temp_dir().join(name);
    let mut builder = std::fs::DirBuilder::new();
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt as _;
        builder.mode(0o700);
    }
    builder.create(&dir).map_err(|e| write_error(&dir, &e))?;
    Ok(dir)
}

fn write_error(dir: &Path, e: &std::io::Error) -> KerberosEnvError {
    KerberosEnvError::Write {
        dir: dir.display().to_string(),
        reason: e.to_string(),
    }
}

/// Replaces this process with the same program and arguments plus `env`; returns the error
/// if that is impossible.
#[cfg(unix)]
fn reexec(env: &[(&'static str, OsString)]) -> std::io::Error {
    use std::os::unix::process::CommandExt as _;
    let exe = match std::env::current_exe() {
        Ok(exe) => exe,
        Err(e) => return e,
    };
    std::process::Command::new(exe)
        .args(std::env::args_os().skip(1))
        .envs(env.iter().map(|(k, v)| (k, v)))
        .exec()
}

#[cfg(not(unix))]
fn reexec(_env: &[(&'static str, OsString)]) -> std::io::Error {
    std::io::Error::other("Kerberos binds are supported on Unix only")
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    #[test]
    fn private_dir_is_ours_only_and_removed() {
        let dir = private_dir().unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(&dir).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o700);
        }
        std::fs::write(dir.join(CONF_FILE), "[libdefaults]\n").unwrap();
        let adopted = adopt(dir.clone()).unwrap();
        drop(adopted);
        assert!(!dir.exists(), "the private directory outlived the run");
    }

    #[test]
    fn a_foreign_directory_is_not_adopted() {
        let other = std::env::temp_dir();
        assert!(matches!(adopt(other), Err(KerberosEnvError::Foreign(_))));
        // Named like ours but without our krb5.conf: refused too (and left alone).
        let fake = std::env::temp_dir().join(format!("{DIR_PREFIX}test-{}", std::process::id()));
        std::fs::create_dir_all(&fake).unwrap();
        assert!(adopt(fake.clone()).is_err());
        assert!(fake.exists());
        std::fs::remove_dir(&fake).unwrap();
    }
}
