//! Persistence on SQLite (sqlx): opening the database, migrations, and row-level reads and
//! writes. The store executes what the domain decides; it never applies tenant rules.
//!
//! Two pools share one database file: a single-connection *writer* pool (SQLite has one
//! writer; queueing in the pool is cheaper than `SQLITE_BUSY` retries) and a *reader* pool
//! whose connections see committed data through WAL.

pub mod admin;
pub mod apps;
pub mod filter_sql;
pub mod groups;
pub mod search;
pub mod users;

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};

/// A connection or transaction the store functions run on.
pub type Conn = sqlx::SqliteConnection;
/// A write transaction.
pub type Tx = sqlx::Transaction<'static, sqlx::Sqlite>;

/// The database file name inside the data directory.
pub const DB_FILE: &str = "idservice.db";

/// Why the store could not be opened or used.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot create data directory {dir}: {source}")]
    CreateDir {
        dir: PathBuf,
        source: std::io::Error,
    },
    #[error("data directory {dir} is not writable: {source}")]
    NotWritable {
        dir: PathBuf,
        source: std::io::Error,
    },
    #[error("{file} is not a SQLite database (or it is corrupt): {detail}")]
    NotADatabase { file: PathBuf, detail: String },
    #[error("cannot open database {file}: {detail}")]
    Open { file: PathBuf, detail: String },
    #[error("database migration failed for {file}: {detail}")]
    Migrate { file: PathBuf, detail: String },
    #[error("database error: {0}")]
    Sql(#[from] sqlx::Error),
}

/// Handle on the database: a writer pool and a reader pool.
#[derive(Clone, Debug)]
pub struct Store {
    writer: SqlitePool,
    reader: SqlitePool,
    file: PathBuf,
}

impl Store {
    /// Opens (creating if needed) `DIR/idservice.db`, checks it is a SQLite database and runs
    /// the embedded migrations.
    pub async fn open(data_dir: &Path) -> Result<Store, StoreError> {
        std::fs::create_dir_all(data_dir).map_err(|source| StoreError::CreateDir {
            dir: data_dir.to_path_buf(),
            source,
        })?;
        // Probe writability up front: SQLite would otherwise fail later with a vaguer message.
        let probe = data_dir.join(".idservice-write-probe");
        std::fs::write(&probe, b"probe").map_err(|source| StoreError::NotWritable {
            dir: data_dir.to_path_buf(),
            source,
        })?;
        let _ = std::fs::remove_file(&probe);

        let file = data_dir.join(DB_FILE);
        let url = format!("sqlite://{}", file.display());
        let base = SqliteConnectOptions::from_str(&url)
            .map_err(|e| StoreError::Open {
                file: file.clone(),
                detail: e.to_string(),
            })?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(10))
            .foreign_keys(true)
            // LIKE must honour caseExact attributes; case-insensitive matches lower() both sides.
            .pragma("case_sensitive_like", "ON");

        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .min_connections(1)
            .connect_with(base.clone())
            .await
            .map_err(|e| classify_open_error(&file, e))?;
        sqlx::migrate!("./migrations")
            .run(&writer)
            .await
            .map_err(|e| classify_migrate_error(&file, e))?;
        let reader = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(base.read_only(true))
            .await
            .map_err(|e| classify_open_error(&file, e))?;
        Ok(Store {
            writer,
            reader,
            file,
        })
    }

    /// The database file.
    pub fn file(&self) -> &Path {
        &self.file
    }

    /// Starts a write transaction (`BEGIN IMMEDIATE`: take the write lock now, not on the
    /// first write, so a transaction never fails half-way on lock upgrade).
    pub async fn begin(&self) -> Result<Tx, sqlx::Error> {
        self.writer.begin_with("BEGIN IMMEDIATE").await
    }

    /// A pooled read connection.
    pub async fn read(&self) -> Result<sqlx::pool::PoolConnection<sqlx::Sqlite>, sqlx::Error> {
        self.reader.acquire().await
    }

    /// Closes both pools (checkpointing the WAL).
    pub async fn close(&self) {
        self.reader.close().await;
        self.writer.close().await;
    }
}

fn is_not_a_database(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Database(db) => {
            db.code().as_deref() == Some("26") || db.message().contains("not a database")
        }
        other => other.to_string().contains("not a database"),
    }
}

fn classify_open_error(file: &Path, e: sqlx::Error) -> StoreError {
    if is_not_a_database(&e) {
        StoreError::NotADatabase {
            file: file.to_path_buf(),
            detail: e.to_string(),
        }
    } else {
        StoreError::Open {
            file: file.to_path_buf(),
            detail: e.to_string(),
        }
    }
}

fn classify_migrate_error(file: &Path, e: sqlx::migrate::MigrateError) -> StoreError {
    let detail = e.to_string();
    if detail.contains("not a database") || detail.contains("malformed") {
        StoreError::NotADatabase {
            file: file.to_path_buf(),
            detail,
        }
    } else {
        StoreError::Migrate {
            file: file.to_path_buf(),
            detail,
        }
    }
}

/// True when `e` is a UNIQUE constraint violation (the domain turns it into a 409).
pub fn is_unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(db) if db.is_unique_violation())
}
