//! Persistence (sqlx `Any`): opening the database on one of two engines, migrations, and
//! row-level reads and writes. The store executes what the domain decides; it never applies
//! tenant rules.
//!
//! - **SQLite** (`--data DIR`, the embedded default): two pools share one database file, a
//!   single-connection *writer* pool (SQLite has one writer; queueing in the pool is cheaper
//!   than `SQLITE_BUSY` retries) and a *reader* pool whose connections see committed data
//!   through WAL.
//! - **PostgreSQL** (`--database postgres://…`): one pool serves both; write transactions run
//!   at `REPEATABLE READ`, so a concurrent change of the same row fails with a serialization
//!   error that [`retry`] turns into a fresh attempt, and several nodes can share the database.
//!
//! Statements are written once for both engines with `$n` placeholders (SQLite accepts them
//! too); where the SQL differs the store asks [`Store::engine`].

pub mod account;
pub mod admin;
pub mod apps;
pub mod backend;
pub mod console;
pub mod filter_sql;
pub mod groups;
pub mod outbox;
pub mod search;
pub mod users;

use std::path::{Path, PathBuf};
use std::time::Duration;

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::{AnyConnection, AnyPool, Connection, Executor};

pub use backend::{Backend, Engine};

/// A connection or transaction the store functions run on.
pub type Conn = sqlx::AnyConnection;
/// A write transaction.
pub type Tx = sqlx::Transaction<'static, sqlx::Any>;

/// The database file name inside the data directory.
pub const DB_FILE: &str = "idservice.db";

/// Why the store could not be opened or used. Messages name the database without its
/// password.
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
    #[error("cannot open database {db}: {detail}")]
    Open { db: String, detail: String },
    #[error("database migration failed for {db}: {detail}")]
    Migrate { db: String, detail: String },
    #[error(transparent)]
    Backend(#[from] backend::BackendError),
    #[error("database error: {0}")]
    Sql(#[from] sqlx::Error),
}

/// How long one search (a list page: its count and its rows) may take by default before it
/// is answered 503 (`search.timeout_seconds` in the service configuration).
pub const DEFAULT_SEARCH_TIMEOUT: Duration = Duration::from_secs(10);

/// Handle on the database: a writer pool, a reader pool (the same pool on PostgreSQL), and a
/// pool of its own for searches. Filtered list pages are the one read a client can make
/// expensive; on their own pool, a few costly searches wait for each other and never for (or
/// in front of) token checks and reads by id.
#[derive(Clone, Debug)]
pub struct Store {
    writer: AnyPool,
    reader: AnyPool,
    searcher: AnyPool,
    search_timeout: Duration,
    engine: Engine,
    /// The data directory (SQLite); `None` on PostgreSQL.
    dir: Option<PathBuf>,
    /// The database for messages: a file, or a URL without password.
    name: String,
}

/// SQLite settings every connection gets (the `Any` driver takes only a URL). `temp_store =
/// MEMORY` keeps statement journals in memory: every Bulk operation runs in a savepoint, whose
/// journal SQLite otherwise writes to a temporary file page by page (the profile of a 100,000-user
/// Bulk ingest spent 14 % of the service's CPU in those writes; docs/performance.md).
const SQLITE_PRAGMAS: &str = "PRAGMA synchronous = NORMAL; PRAGMA busy_timeout = 10000; \
    PRAGMA foreign_keys = ON; PRAGMA case_sensitive_like = ON; PRAGMA temp_store = MEMORY;";

/// What reader connections add: list pages walk the table in id order, which is not the
/// order rows are stored in, so reads go through a memory map of the file (no system call
/// per page) and a 64 MiB page cache instead of the default 2 MiB.
const SQLITE_READER_PRAGMAS: &str = "PRAGMA mmap_size = 1073741824; PRAGMA cache_size = -65536;";

/// PostgreSQL settings every connection gets. Statements are prepared once per connection;
/// a generic plan PostgreSQL settles on while a table is nearly empty (a sequential scan) would
/// stay in use as the table grows to 100,000 rows, so every execution is planned with its
/// values and the statistics of the moment (planning these statements costs microseconds).
const POSTGRES_SETTINGS: &str = "SET plan_cache_mode = force_custom_plan";

impl Store {
    /// Opens the database `backend` names and applies the migrations of its engine.
    pub async fn connect(backend: &Backend) -> Result<Store, StoreError> {
        Store::connect_with(backend, DEFAULT_SEARCH_TIMEOUT).await
    }

    /// [`Store::connect`] with the time one search may take.
    pub async fn connect_with(
        backend: &Backend,
        search_timeout: Duration,
    ) -> Result<Store, StoreError> {
        sqlx::any::install_default_drivers();
        match backend {
            Backend::Sqlite(dir) => Ok(Store {
                search_timeout,
                ..Store::open(dir).await?
            }),
            Backend::Postgres { .. } => Store::open_postgres(backend, search_timeout).await,
        }
    }

    /// Opens (creating if needed) `DIR/idservice.db`, checks it is a SQLite database and runs
    /// the embedded migrations.
    pub async fn open(data_dir: &Path) -> Result<Store, StoreError> {
        sqlx::any::install_default_drivers();
        let existed = data_dir.exists();
        std::fs::create_dir_all(data_dir).map_err(|source| StoreError::CreateDir {
            dir: data_dir.to_path_buf(),
            source,
        })?;
        // The database holds password hashes, token hashes and queued emails: a directory
        // the service creates is its owner's alone (an existing one is left as it is).
        #[cfg(unix)]
        if !existed {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(data_dir, std::fs::Permissions::from_mode(0o700)).map_err(
                |source| StoreError::CreateDir {
                    dir: data_dir.to_path_buf(),
                    source,
                },
            )?;
        }
        // Probe writability up front: SQLite would otherwise fail later with a vaguer message.
        let probe = data_dir.join(".idservice-write-probe");
        std::fs::write(&probe, b"probe").map_err(|source| StoreError::NotWritable {
            dir: data_dir.to_path_buf(),
            source,
        })?;
        let _ = std::fs::remove_file(&probe);

        let file = data_dir.join(DB_FILE);
        let url = format!("sqlite://{}", file.display());
        let opts = |mode: &str| {
            format!("{url}?mode={mode}")
                .parse::<AnyConnectOptions>()
                .map_err(|e| classify_open_error(&file, e))
        };
        // One connection first: a file that is not a database fails here, once, with a
        // clear error (a pool would retry its connection hook until it timed out). WAL mode is
        // a property of the file, set once.
        let mut probe = AnyConnection::connect_with(&opts("rwc")?)
            .await
            .map_err(|e| classify_open_error(&file, e))?;
        probe
            .execute("PRAGMA journal_mode = WAL;")
            .await
            .map_err(|e| classify_open_error(&file, e))?;
        let _ = probe.close().await;
        let writer = AnyPoolOptions::new()
            .max_connections(1)
            .min_connections(1)
            .after_connect(|conn, _| {
                Box::pin(async move {
                    conn.execute(SQLITE_PRAGMAS).await?;
                    Ok(())
                })
            })
            .connect_with(opts("rwc")?)
            .await
            .map_err(|e| classify_open_error(&file, e))?;
        sqlx::migrate!("./migrations/sqlite")
            .run(&writer)
            .await
            .map_err(|e| classify_migrate_error(&file, e))?;
        let ro = opts("ro")?;
        let read_pool = |size: u32| {
            AnyPoolOptions::new()
                .max_connections(size)
                .after_connect(|conn, _| {
                    Box::pin(async move {
                        conn.execute(SQLITE_PRAGMAS).await?;
                        conn.execute(SQLITE_READER_PRAGMAS).await?;
                        Ok(())
                    })
                })
                .connect_lazy_with(ro.clone())
        };
        let (reader, searcher) = (read_pool(4), read_pool(4));
        Ok(Store {
            writer,
            reader,
            searcher,
            search_timeout: DEFAULT_SEARCH_TIMEOUT,
            engine: Engine::Sqlite,
            dir: Some(data_dir.to_path_buf()),
            name: file.display().to_string(),
        })
    }

    /// Connects to PostgreSQL and applies its migrations (under an advisory lock, so nodes
    /// starting together do not race).
    async fn open_postgres(
        backend: &Backend,
        search_timeout: Duration,
    ) -> Result<Store, StoreError> {
        let name = backend.display_name();
        let opts = backend.connect_options()?;
        // One connection first: its error (refused, authentication failed, no such database)
        // says more than a pool that timed out retrying.
        let probe = AnyConnection::connect_with(&opts)
            .await
            .map_err(|e| StoreError::Open {
                db: name.clone(),
                detail: e.to_string(),
            })?;
        let _ = probe.close().await;
        // Searches on their own connections, which PostgreSQL cancels once they run longer
        // than the search timeout (the client gets a 503, the server stops working on it).
        let search_settings = format!(
            "{POSTGRES_SETTINGS}; SET statement_timeout = {}",
            search_timeout.as_millis().max(1)
        );
        let searcher = AnyPoolOptions::new()
            .max_connections(8)
            .acquire_timeout(Duration::from_secs(30))
            .after_connect(move |conn, _| {
                let settings = search_settings.clone();
                Box::pin(async move {
                    sqlx::raw_sql(sqlx::AssertSqlSafe(settings))
                        .execute(&mut *conn)
                        .await?;
                    Ok(())
                })
            })
            .connect_lazy_with(opts.clone());
        let pool = AnyPoolOptions::new()
            .max_connections(16)
            .acquire_timeout(Duration::from_secs(30))
            .after_connect(|conn, _| {
                Box::pin(async move {
                    conn.execute(POSTGRES_SETTINGS).await?;
                    Ok(())
                })
            })
            .connect_with(opts)
            .await
            .map_err(|e| StoreError::Open {
                db: name.clone(),
                detail: e.to_string(),
            })?;
        sqlx::migrate!("./migrations/postgres")
            .run(&pool)
            .await
            .map_err(|e| StoreError::Migrate {
                db: name.clone(),
                detail: e.to_string(),
            })?;
        Ok(Store {
            writer: pool.clone(),
            reader: pool,
            searcher,
            search_timeout,
            engine: Engine::Postgres,
            dir: None,
            name,
        })
    }

    /// The engine this store runs on.
    pub fn engine(&self) -> Engine {
        self.engine
    }

    /// The data directory (SQLite only).
    pub fn data_dir(&self) -> Option<&Path> {
        self.dir.as_deref()
    }

    /// The database for messages (a file, or a URL without password).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Starts a write transaction. SQLite: `BEGIN IMMEDIATE` (take the write lock now, not
    /// on the first write, so a transaction never fails half-way on lock upgrade).
    /// PostgreSQL: `REPEATABLE READ`, so that a read-check-write (If-Match, uniqueness) of a
    /// row another node changed meanwhile fails with a serialization error and is retried.
    pub async fn begin(&self) -> Result<Tx, sqlx::Error> {
        match self.engine {
            Engine::Sqlite => self.writer.begin_with("BEGIN IMMEDIATE").await,
            Engine::Postgres => {
                self.writer
                    .begin_with("BEGIN ISOLATION LEVEL REPEATABLE READ")
                    .await
            }
        }
    }

    /// A pooled connection that may write, outside a transaction (each statement commits on
    /// its own; on PostgreSQL at `READ COMMITTED`, the level queue claims need).
    pub async fn autocommit(&self) -> Result<sqlx::pool::PoolConnection<sqlx::Any>, sqlx::Error> {
        self.writer.acquire().await
    }

    /// A pooled read connection.
    pub async fn read(&self) -> Result<sqlx::pool::PoolConnection<sqlx::Any>, sqlx::Error> {
        self.reader.acquire().await
    }

    /// Makes every later commit of this process wait until it is on disk (SQLite
    /// `synchronous = FULL`; PostgreSQL commits are durable already). The service itself
    /// writes with `NORMAL` in WAL mode: a commit survives a crash of the process, and only
    /// an operating-system crash or a power cut may undo the last ones (the file stays
    /// consistent); the administrator's commands (token revocation among them) use this.
    pub async fn durable_commits(&self) -> Result<(), sqlx::Error> {
        if self.engine == Engine::Sqlite {
            // The writer pool holds one connection for the life of the process.
            let mut conn = self.writer.acquire().await?;
            conn.execute("PRAGMA synchronous = FULL").await?;
        }
        Ok(())
    }

    /// A pooled read connection for a search (see [`Store`]).
    pub async fn search_read(&self) -> Result<sqlx::pool::PoolConnection<sqlx::Any>, sqlx::Error> {
        self.searcher.acquire().await
    }

    /// How long one search may take.
    pub fn search_timeout(&self) -> Duration {
        self.search_timeout
    }

    /// Closes the pools (checkpointing the WAL on SQLite).
    pub async fn close(&self) {
        self.searcher.close().await;
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
            db: file.display().to_string(),
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
            db: file.display().to_string(),
            detail,
        }
    }
}

/// The engine a connection talks to.
pub fn engine_of(conn: &Conn) -> Engine {
    if conn.backend_name().eq_ignore_ascii_case("PostgreSQL") {
        Engine::Postgres
    } else {
        Engine::Sqlite
    }
}

/// `($first, …)`: `n` numbered placeholders, for an `IN` list or one row of a multi-row
/// `VALUES`.
pub(crate) fn in_list(first: usize, n: usize) -> String {
    let items: Vec<String> = (first..first + n).map(|i| format!("${i}")).collect();
    format!("({})", items.join(", "))
}

/// Which of `keys` a query finds, asked [`groups::MEMBER_CHUNK`] keys at a time: `select`
/// writes the query (one text column) for an `IN` list of placeholders such as
/// `SELECT external_id FROM users WHERE external_id IN {list}`.
pub(crate) async fn found_among(
    conn: &mut Conn,
    select: impl Fn(&str) -> String,
    keys: &[&str],
) -> Result<std::collections::HashSet<String>, sqlx::Error> {
    let mut found = std::collections::HashSet::new();
    for chunk in keys.chunks(groups::MEMBER_CHUNK) {
        let sql = select(&in_list(1, chunk.len()));
        let mut q = sqlx::query_scalar::<_, String>(sqlx::AssertSqlSafe(sql));
        for key in chunk {
            q = q.bind(*key);
        }
        found.extend(q.fetch_all(&mut *conn).await?);
    }
    Ok(found)
}

/// True when `e` is a UNIQUE constraint violation (the domain turns it into a 409).
pub fn is_unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(db) if db.is_unique_violation())
}

/// True when PostgreSQL cancelled a statement that ran past its `statement_timeout` (57014).
pub fn is_statement_timeout(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(db) if db.code().as_deref() == Some("57014"))
}

/// True when `e` says the transaction lost a race and may simply be run again: a
/// PostgreSQL serialization failure (40001) or deadlock (40P01).
pub fn is_retryable(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(db)
        if matches!(db.code().as_deref(), Some("40001") | Some("40P01")))
}

/// How many times [`retry`] runs a transaction that keeps losing races.
pub const MAX_ATTEMPTS: u32 = 20;

/// Runs `attempt` until it does not fail with a retryable database error (at most
/// [`MAX_ATTEMPTS`] times, with a short growing pause). `is_retry` tells whether an error of
/// the caller's type is such a failure.
pub async fn retry<T, E, F, Fut>(is_retry: fn(&E) -> bool, mut attempt: F) -> Result<T, E>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, E>>,
{
    let mut n = 0;
    loop {
        match attempt().await {
            Err(e) if is_retry(&e) && n + 1 < MAX_ATTEMPTS => {
                n += 1;
                let jitter = u64::from(rand::random::<u8>() % 10);
                tokio::time::sleep(Duration::from_millis(u64::from(n) * 5 + jitter)).await;
            }
            other => return other,
        }
    }
}
