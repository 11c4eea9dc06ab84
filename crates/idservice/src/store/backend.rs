//! Which database the store opens: a SQLite file in a data directory, or a PostgreSQL URL.
//!
//! A PostgreSQL password never comes from the command line: a URL that carries one is
//! refused; it comes from a password file, or from libpq's environment (`PGPASSWORD`,
//! `~/.pgpass`), which the driver reads itself. Messages name the database without it.

use std::path::{Path, PathBuf};

use secrecy::{ExposeSecret, SecretString};
use sqlx::any::AnyConnectOptions;

/// The database engine of a store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    Sqlite,
    Postgres,
}

/// Where the database is.
#[derive(Debug, Clone)]
pub enum Backend {
    /// `--data DIR`: `DIR/idservice.db`.
    Sqlite(PathBuf),
    /// `--database postgres://USER@HOST:PORT/DB`.
    Postgres {
        /// The URL as given (it holds no password).
        url: String,
        /// From `--database-password-file`; `None`: the libpq environment.
        password: Option<SecretString>,
    },
}

/// Why a database location is not usable.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    #[error("--database must be a postgres:// or postgresql:// URL (use --data DIR for SQLite)")]
    NotPostgres,
    #[error(
        "the --database URL must not contain a password; use --database-password-file or PGPASSWORD"
    )]
    PasswordInUrl,
    #[error("--database is not a valid URL: {0}")]
    BadUrl(String),
    #[error("cannot read the database password file {file}: {source}")]
    PasswordFile {
        file: PathBuf,
        source: std::io::Error,
    },
    #[error("the database password file {0} is empty")]
    EmptyPasswordFile(PathBuf),
    #[error(transparent)]
    NotPrivate(#[from] crate::secret_file::NotPrivate),
}

impl Backend {
    /// A PostgreSQL backend from a URL without password and an optional password file (its
    /// first line is the password).
    pub fn postgres(url: &str, password_file: Option<&Path>) -> Result<Backend, BackendError> {
        let lower = url.to_ascii_lowercase();
        if !(lower.starts_with("postgres://") || lower.starts_with("postgresql://")) {
            return Err(BackendError::NotPostgres);
        }
        let parsed = url
            .parse::<AnyConnectOptions>()
            .map_err(|_| BackendError::BadUrl(redact(url)))?;
        if parsed.database_url.password().is_some() {
            return Err(BackendError::PasswordInUrl);
        }
        let password = match password_file {
            Some(file) => Some(read_password(file)?),
            None => None,
        };
        Ok(Backend::Postgres {
            url: url.to_string(),
            password,
        })
    }

    /// The engine of this backend.
    pub fn engine(&self) -> Engine {
        match self {
            Backend::Sqlite(_) => Engine::Sqlite,
            Backend::Postgres { .. } => Engine::Postgres,
        }
    }

    /// The database for messages and logs (never with a password).
    pub fn display_name(&self) -> String {
        match self {
            Backend::Sqlite(dir) => dir.join(super::DB_FILE).display().to_string(),
            Backend::Postgres { url, .. } => redact(url),
        }
    }

    /// Connection options for the `Any` driver (PostgreSQL), the password filled in.
    pub(super) fn connect_options(&self) -> Result<AnyConnectOptions, BackendError> {
        let url = match self {
            Backend::Postgres { url, .. } => url.as_str(),
            Backend::Sqlite(_) => return Err(BackendError::NotPostgres),
        };
        let mut opts = url
            .parse::<AnyConnectOptions>()
            .map_err(|_| BackendError::BadUrl(redact(url)))?;
        if let Backend::Postgres {
            password: Some(p), ..
        } = self
        {
            opts.database_url
                .set_password(Some(p.expose_secret()))
                .map_err(|()| BackendError::BadUrl(redact(url)))?;
        }
        Ok(opts)
    }
}

fn read_password(file: &Path) -> Result<SecretString, BackendError> {
    crate::secret_file::check_private(file)?;
    let text = zeroize::Zeroizing::new(std::fs::read_to_string(file).map_err(|source| {
        BackendError::PasswordFile {
            file: file.to_path_buf(),
            source,
        }
    })?);
    let line = text.lines().next().unwrap_or("").trim_end_matches('\r');
    if line.is_empty() {
        return Err(BackendError::EmptyPasswordFile(file.to_path_buf()));
    }
    Ok(SecretString::from(line.to_string()))
}

/// `url` with any password and query removed, for messages.
fn redact(url: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
    let rest = rest.split(['?', '#']).next().unwrap_or("");
    let (auth, host) = match rest.rsplit_once('@') {
        Some((a, h)) => (Some(a), h),
        None => (None, rest),
    };
    let user = auth.map(|a| a.split(':').next().unwrap_or(""));
    match user {
        Some(u) => format!("{scheme}://{u}@{host}"),
        None => format!("{scheme}://{host}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redact_drops_password_and_query() {
        assert_eq!(
            redact("postgres://u:secret@h:5/db?sslmode=disable"),
            "postgres://u@h:5/db"
        );
        assert_eq!(redact("postgres://h/db"), "postgres://h/db");
    }

    #[test]
    fn password_in_url_is_refused() {
        let e = Backend::postgres("postgres://u:pw@127.0.0.1:5432/db", None)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(e.contains("must not contain a password"), "{e}");
        assert!(!e.contains("pw@"), "{e}");
        assert!(Backend::postgres("sqlite://x", None).is_err());
    }
}
