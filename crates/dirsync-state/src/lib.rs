//! The agent's local state (behaviour §4.6) in SQLite (sqlx): which target object each source
//! object became, what was last confirmed on the target, the agent's own pending-deletion
//! dates for plain targets, incremental cursors, run history, and the run lock.
//!
//! It is a cache, never the truth: recovery mode (`reset`) or deleting the directory is
//! always safe. It does not know LDAP or SCIM; it stores anchors, ids and strings.

mod image;
mod lock;

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{Row, SqliteConnection};

pub use image::entry_hash;
pub use lock::RunLock;

use dirsync_model::entry::Entry;

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("another dirsync run holds the lock {0} (one run per instance at a time)")]
    Locked(std::path::PathBuf),
    #[error("state store: {0}")]
    Io(String),
    #[error("state database {path}: {reason}")]
    Database { path: String, reason: String },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
pub enum ObjectKind {
    User,
    Group,
}

impl ObjectKind {
    /// The `kind` column's value (`CHECK`ed to be 'user' or 'group').
    fn from_column(text: &str) -> ObjectKind {
        if text == "group" {
            ObjectKind::Group
        } else {
            ObjectKind::User
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            ObjectKind::User => "user",
            ObjectKind::Group => "group",
        }
    }
}

/// An RFC 3339 time as stored, if it reads.
fn parse_time(text: Option<String>) -> Option<DateTime<Utc>> {
    text.and_then(|p| DateTime::parse_from_rfc3339(&p).ok())
        .map(|d| d.with_timezone(&Utc))
}

/// Of one [`ObjectRecord`], what a run needs of every record: who owns which target object,
/// and the agent's pending dates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectKey {
    pub anchor: String,
    pub target_id: String,
    pub owned: bool,
    pub pending_since: Option<DateTime<Utc>>,
}

/// What the agent remembers of one synchronised object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectRecord {
    pub kind: ObjectKind,
    /// The source anchor, sent as externalId.
    pub anchor: String,
    pub target_id: String,
    pub dn: Option<String>,
    pub name: Option<String>,
    pub fingerprint: Option<String>,
    pub owned: bool,
    pub pending_since: Option<DateTime<Utc>>,
}

/// One target object as the last run left it (the target cache, behaviour §4.6): the fields the
/// planner matches on, and the resource.
#[derive(Debug, Clone, PartialEq)]
pub struct CachedObject {
    pub kind: ObjectKind,
    pub id: String,
    pub external_id: Option<String>,
    /// userName (users) or displayName (groups).
    pub name: String,
    pub active: bool,
    /// Pending deletion on a target that keeps pending users (plain targets: `objects`).
    pub pending: bool,
    pub pending_since: Option<DateTime<Utc>>,
    /// The resource as the target returned it (members included), as JSON text: a cached
    /// user is a few hundred bytes this way, several KiB as a parsed value. Empty when the row
    /// was loaded without it ([`StateStore::cached_users_light`]). Shared with the target user
    /// a full run plans with (the same text, held once).
    pub resource: std::sync::Arc<str>,
}

impl CachedObject {
    /// A hash of everything the row stores, so that a full run rewrites only rows that differ.
    pub fn content_hash(&self) -> u64 {
        use std::hash::{Hash, Hasher};
        let mut h = std::hash::DefaultHasher::new();
        (
            &self.external_id,
            &self.name,
            self.active,
            self.pending,
            self.pending_since.map(|d| d.timestamp_micros()),
            &self.resource,
        )
            .hash(&mut h);
        h.finish()
    }
}

/// What the mapping made of a user entry, kept with its image row so that an incremental run
/// can resolve group members and find name clashes without mapping unchanged users again.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImageKeys {
    /// The mapped externalId; `None` when the entry did not map (or for groups).
    pub anchor: Option<String>,
    /// The mapped userName, lower case.
    pub name_key: Option<String>,
    /// The keys group member values resolve to (normalised DN, or `memberUid`-style values).
    pub member_keys: Vec<String>,
}

/// One directory image row to write, the entry already in its stored text form (a full run
/// turns its entries into rows as soon as they are mapped, and the text is a fraction of the
/// parsed entry's size).
#[derive(Debug, Clone, PartialEq)]
pub struct ImageRow {
    pub kind: ObjectKind,
    /// Stable id (entryUUID / objectGUID text).
    pub id: String,
    pub dn: String,
    /// [`entry_hash`] of the entry.
    pub hash: u64,
    entry: String,
    pub keys: ImageKeys,
}

impl ImageRow {
    pub fn new(kind: ObjectKind, id: String, entry: &Entry, keys: ImageKeys) -> ImageRow {
        ImageRow {
            kind,
            id,
            dn: entry.dn.clone(),
            hash: entry_hash(entry),
            entry: image::encode(entry),
            keys,
        }
    }
}

/// What one run writes for incremental sync, in one transaction: the directory image, the
/// target cache and the cursor they belong to (behaviour §3: the cookie goes with the changes it
/// covers), plus meta facts that must not be ahead of or behind them.
#[derive(Debug, Default)]
pub struct IncrementalWrite {
    /// Full run: the image and the cache are replaced, not patched.
    pub replace: bool,
    /// `None`: no usable cursor (the next run is a full one).
    pub cursor: Option<String>,
    pub image_upserts: Vec<ImageRow>,
    pub image_removals: Vec<(ObjectKind, String)>,
    pub cache_upserts: Vec<CachedObject>,
    pub cache_removals: Vec<(ObjectKind, String)>,
    pub meta: Vec<(&'static str, String)>,
}

/// Rows per staging transaction ([`StateStore::stage_image`], [`StateStore::stage_cache`]) while
/// a full run produces them.
pub const STAGE_BATCH: usize = 5_000;

/// Rows per aggregated read (see [`StateStore::json_rows`]).
const JSON_CHUNK: i64 = 10_000;

/// What [`StateStore::json_rows`] reads: `columns` (constant SQL) of the rows of one kind
/// of `table`, in the table's storage order.
#[derive(Clone, Copy)]
struct TableRows {
    table: &'static str,
    columns: &'static str,
}

pub struct StateStore {
    pool: SqlitePool,
    path: String,
}

/// The target cache columns every load reads (`resource` apart: light loads skip it).
const CACHE_COLUMNS: &str = "kind, id, external_id, name, active, pending, pending_since";

/// Rows per multi-row INSERT (9 values each; SQLite allows 32,766 bound values).
const INSERT_CHUNK: usize = 500;

/// Values per `IN (…)` list (SQLite allows far more; this keeps statements small).
const IN_CHUNK: usize = 500;

fn placeholders(n: usize) -> String {
    vec!["?"; n].join(", ")
}

/// SHA-256 of a JSON value in its canonical (key-sorted) form: the same attributes give the
/// same fingerprint whatever order they were built in.
pub fn fingerprint(value: &serde_json::Value) -> String {
    fn canonical(v: &serde_json::Value) -> serde_json::Value {
        match v {
            serde_json::Value::Object(map) => {
                let mut keys: Vec<_> = map.keys().collect();
                keys.sort();
                let sorted: serde_json::Map<String, serde_json::Value> = keys
                    .into_iter()
                    .map(|k| (k.clone(), canonical(&map[k])))
                    .collect();
                serde_json::Value::Object(sorted)
            }
            serde_json::Value::Array(items) => {
                serde_json::Value::Array(items.iter().map(canonical).collect())
            }
            other => other.clone(),
        }
    }
    // default: serialising a JSON value cannot fail.
    let bytes = serde_json::to_vec(&canonical(value)).unwrap_or_default();
    hex::encode(Sha256::digest(bytes))
}

impl StateStore {
    /// Opens (creating if needed) `<dir>/state.db` and brings its schema up to date.
    pub async fn open(dir: &Path) -> Result<StateStore, StateError> {
        std::fs::create_dir_all(dir)
            .map_err(|e| StateError::Io(format!("cannot create {}: {e}", dir.display())))?;
        let file = dir.join("state.db");
        let path = file.display().to_string();
        let db_err = |e: sqlx::Error| StateError::Database {
            path: path.clone(),
            reason: e.to_string(),
        };
        let options = SqliteConnectOptions::from_str(&format!("sqlite://{path}"))
            .map_err(db_err)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // WAL + NORMAL: a commit survives the agent being killed at any point (the WAL is
            // written before the commit returns) but is not fsynced; after a power loss the
            // newest commits may be gone, and the state is a cache the next run rebuilds
            // (creates answered 409 are adopted). FULL cost one disk sync per recorded
            // object: ~40 % of an initial 20,000-user run (docs/performance.md).
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(std::time::Duration::from_secs(10));
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options)
            .await
            .map_err(db_err)?;
        sqlx::migrate!("./migrations")
            .run(&pool)
            .await
            .map_err(|e| StateError::Database {
                path: path.clone(),
                reason: format!("{e} (the state is a cache: delete {path} to rebuild it)"),
            })?;
        Ok(StateStore { pool, path })
    }

    /// The rows of one kind of a table, `columns` of each, decoded as tuples, in the table's
    /// storage (rowid) order: callers that need an order sort. sqlx hands SQLite rows over one
    /// by one through a channel (several µs each); one `json_group_array` row per
    /// [`JSON_CHUNK`] rows makes a 100,000-row read ten JSON parses, and keeps SQLite's own
    /// buffer for the aggregate small (one 100,000-row aggregate grew the process by tens of
    /// MiB that its allocator kept). Each chunk starts after the last rowid of the one before:
    /// a walk along the table itself. (By a key's index, SQLite seeks into the table for every
    /// row, and an `OFFSET` steps again over every row already read: at 100,000 users the
    /// walk is 2.5–4 times faster.)
    async fn json_rows<T: serde::de::DeserializeOwned>(
        &self,
        rows: TableRows,
        kind: ObjectKind,
    ) -> Result<Vec<T>, StateError> {
        self.json_rows_into(rows, kind, |row| row).await
    }

    /// [`StateStore::json_rows`], each chunk turned into the caller's type as it is read (so
    /// that two forms of 100,000 rows are never held at once).
    async fn json_rows_into<T: serde::de::DeserializeOwned, U>(
        &self,
        rows: TableRows,
        kind: ObjectKind,
        mut into: impl FnMut(T) -> U,
    ) -> Result<Vec<U>, StateError> {
        let TableRows { table, columns } = rows;
        // Constant text and placeholders only. `+kind`: not by the (kind, id) index.
        let sql = format!(
            "SELECT json_group_array(json_array({columns})), max(rowid) FROM \
             (SELECT rowid, {columns} FROM {table} WHERE +kind = ? AND rowid > ? \
             ORDER BY rowid LIMIT ?)"
        );
        let mut out = Vec::new();
        let mut last = 0i64;
        loop {
            let (text, max): (String, Option<i64>) =
                sqlx::query_as(sqlx::AssertSqlSafe(sql.as_str()))
                    .bind(kind.as_str())
                    .bind(last)
                    .bind(JSON_CHUNK)
                    .fetch_one(&self.pool)
                    .await
                    .map_err(|e| self.err(e))?;
            let rows: Vec<T> = serde_json::from_str(&text).map_err(|e| StateError::Database {
                path: self.path.clone(),
                reason: format!("unreadable rows: {e}"),
            })?;
            let full = rows.len() as i64 == JSON_CHUNK;
            out.extend(rows.into_iter().map(&mut into));
            match max {
                Some(max) if full => last = max,
                _ => return Ok(out),
            }
        }
    }

    fn err(&self, e: sqlx::Error) -> StateError {
        StateError::Database {
            path: self.path.clone(),
            reason: e.to_string(),
        }
    }

    /// Recovery mode: forget everything learned; the next steps rebuild it from the target.
    pub async fn reset(&self) -> Result<(), StateError> {
        let mut tx = self.pool.begin().await.map_err(|e| self.err(e))?;
        for statement in [
            "DELETE FROM objects",
            "DELETE FROM cursors",
            "DELETE FROM directory_image",
            "DELETE FROM target_cache",
            "DELETE FROM meta",
        ] {
            sqlx::query(statement)
                .execute(&mut *tx)
                .await
                .map_err(|e| self.err(e))?;
        }
        tx.commit().await.map_err(|e| self.err(e))
    }

    pub async fn meta(&self, key: &str) -> Result<Option<String>, StateError> {
        sqlx::query_scalar("SELECT value FROM meta WHERE key = ?")
            .bind(key)
            .fetch_optional(&self.pool)
            .await
            .map_err(|e| self.err(e))
    }

    pub async fn set_meta(&self, key: &str, value: &str) -> Result<(), StateError> {
        sqlx::query(
            "INSERT INTO meta (key, value) VALUES (?, ?) \
             ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        )
        .bind(key)
        .bind(value)
        .execute(&self.pool)
        .await
        .map_err(|e| self.err(e))?;
        Ok(())
    }

    /// What a run needs of every record (ownership, pending dates, anchors): half the memory
    /// of the records at 100,000 users.
    pub async fn object_keys(&self, kind: ObjectKind) -> Result<Vec<ObjectKey>, StateError> {
        let rows = TableRows {
            table: "objects",
            columns: "anchor, target_id, owned, pending_since",
        };
        self.json_rows_into(
            rows,
            kind,
            |(anchor, target_id, owned, pending): (String, String, i64, Option<String>)| {
                ObjectKey {
                    anchor,
                    target_id,
                    owned: owned != 0,
                    pending_since: parse_time(pending),
                }
            },
        )
        .await
    }

    pub async fn objects(&self, kind: ObjectKind) -> Result<Vec<ObjectRecord>, StateError> {
        type Row = (
            String,
            String,
            Option<String>,
            Option<String>,
            Option<String>,
            i64,
            Option<String>,
        );
        let rows = TableRows {
            table: "objects",
            columns: "anchor, target_id, dn, name, fingerprint, owned, pending_since",
        };
        self.json_rows_into(
            rows,
            kind,
            |(anchor, target_id, dn, name, fingerprint, owned, pending): Row| ObjectRecord {
                kind,
                anchor,
                target_id,
                dn,
                name,
                fingerprint,
                owned: owned != 0,
                pending_since: parse_time(pending),
            },
        )
        .await
    }
    /// Records one object right after the target confirmed a write, so that a crash after
    /// this point does not repeat the write.
    pub async fn upsert_object(&self, record: &ObjectRecord) -> Result<(), StateError> {
        let mut conn = self.pool.acquire().await.map_err(|e| self.err(e))?;
        upsert(&mut conn, record).await.map_err(|e| self.err(e))
    }

    /// Many records in one transaction (bulk writes, recovery).
    pub async fn upsert_objects(&self, records: &[ObjectRecord]) -> Result<(), StateError> {
        if records.is_empty() {
            return Ok(());
        }
        let mut tx = self.pool.begin().await.map_err(|e| self.err(e))?;
        let now = Utc::now().to_rfc3339();
        // One statement per slice: SQLite has one writer, and a Bulk chunk's records waited
        // for each other statement by statement.
        for chunk in records.chunks(INSERT_CHUNK) {
            let mut q = sqlx::QueryBuilder::<sqlx::Sqlite>::new(
                "INSERT INTO objects (kind, anchor, target_id, dn, name, fingerprint, owned, \
                 pending_since, updated_at) ",
            );
            q.push_values(chunk, |mut b, r| {
                b.push_bind(r.kind.as_str())
                    .push_bind(r.anchor.clone())
                    .push_bind(r.target_id.clone())
                    .push_bind(r.dn.clone())
                    .push_bind(r.name.clone())
                    .push_bind(r.fingerprint.clone())
                    .push_bind(r.owned)
                    .push_bind(r.pending_since.map(|d| d.to_rfc3339()))
                    .push_bind(now.clone());
            });
            q.push(UPSERT_OBJECT_TAIL);
            q.build().execute(&mut *tx).await.map_err(|e| self.err(e))?;
        }
        tx.commit().await.map_err(|e| self.err(e))
    }

    pub async fn remove_object(&self, kind: ObjectKind, anchor: &str) -> Result<(), StateError> {
        sqlx::query("DELETE FROM objects WHERE kind = ? AND anchor = ?")
            .bind(kind.as_str())
            .bind(anchor)
            .execute(&self.pool)
            .await
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    /// The stored cursor text (the reader's serialised cursor), if any.
    pub async fn cursor(&self) -> Result<Option<String>, StateError> {
        sqlx::query_scalar("SELECT cursor FROM cursors WHERE source = 'directory'")
            .fetch_optional(&self.pool)
            .await
            .map_err(|e| self.err(e))
    }

    /// The cached directory image of one kind: stable id → entry. A row that does not
    /// decode is an error (the caller then reads fully).
    pub async fn image(&self, kind: ObjectKind) -> Result<BTreeMap<String, Entry>, StateError> {
        let rows = sqlx::query("SELECT id, entry FROM directory_image WHERE kind = ?")
            .bind(kind.as_str())
            .fetch_all(&self.pool)
            .await
            .map_err(|e| self.err(e))?;
        let mut image = BTreeMap::new();
        for r in &rows {
            let (id, entry) = self.image_row(r)?;
            image.insert(id, entry);
        }
        Ok(image)
    }

    /// The stored [`entry_hash`] of every image row, by kind and stable id (no entry is
    /// decoded).
    pub async fn image_hashes(&self) -> Result<HashMap<(ObjectKind, String), u64>, StateError> {
        self.stored_hashes("directory_image").await
    }

    /// The stored [`CachedObject::content_hash`] of every target cache row.
    pub async fn cache_hashes(&self) -> Result<HashMap<(ObjectKind, String), u64>, StateError> {
        self.stored_hashes("target_cache").await
    }

    /// The `hash` column of every row of `table` (a constant), by kind and id.
    async fn stored_hashes(
        &self,
        table: &'static str,
    ) -> Result<HashMap<(ObjectKind, String), u64>, StateError> {
        let mut out = HashMap::new();
        for kind in [ObjectKind::User, ObjectKind::Group] {
            let rows = TableRows {
                table,
                columns: "id, hash",
            };
            let rows: Vec<(String, Option<i64>)> = self.json_rows(rows, kind).await?;
            out.extend(rows.into_iter().map(|(id, hash)| {
                (
                    (kind, id),
                    // default: a row without a hash differs from every entry, so it is rewritten.
                    hash.unwrap_or(0) as u64,
                )
            }));
        }
        Ok(out)
    }

    /// How many objects of a kind the image holds (for the report of a no-change run).
    pub async fn image_len(&self, kind: ObjectKind) -> Result<usize, StateError> {
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM directory_image WHERE kind = ?")
            .bind(kind.as_str())
            .fetch_one(&self.pool)
            .await
            .map_err(|e| self.err(e))?;
        // default: COUNT(*) is never negative.
        Ok(usize::try_from(n).unwrap_or(0))
    }

    /// The cached target objects, resources included.
    pub async fn target_cache(&self) -> Result<Vec<CachedObject>, StateError> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {CACHE_COLUMNS}, resource FROM target_cache"
        )))
        .fetch_all(&self.pool)
        .await
        .map_err(|e| self.err(e))?;
        rows.iter().map(|r| self.cached_row(r, true)).collect()
    }

    /// The cached objects of one kind, resources included.
    pub async fn cached_objects(&self, kind: ObjectKind) -> Result<Vec<CachedObject>, StateError> {
        // Constant text and placeholders only.
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {CACHE_COLUMNS}, resource FROM target_cache WHERE kind = ?"
        )))
        .bind(kind.as_str())
        .fetch_all(&self.pool)
        .await
        .map_err(|e| self.err(e))?;
        rows.iter().map(|r| self.cached_row(r, true)).collect()
    }

    /// Every cached user without its resource: what an incremental run needs of the users
    /// its changes do not touch (matching, member references, the deletion population).
    pub async fn cached_users_light(&self) -> Result<Vec<CachedObject>, StateError> {
        type Row = (
            String,
            Option<String>,
            Option<String>,
            i64,
            i64,
            Option<String>,
        );
        let rows: Vec<Row> = self
            .json_rows(
                TableRows {
                    table: "target_cache",
                    columns: "id, external_id, name, active, pending, pending_since",
                },
                ObjectKind::User,
            )
            .await?;
        Ok(rows
            .into_iter()
            .map(
                |(id, external_id, name, active, pending, pending_since)| CachedObject {
                    kind: ObjectKind::User,
                    id,
                    external_id,
                    // default: a cached user without a name has an empty one (as the target sent it).
                    name: name.unwrap_or_default(),
                    active: active != 0,
                    pending: pending != 0,
                    pending_since: parse_time(pending_since),
                    resource: std::sync::Arc::from(""),
                },
            )
            .collect())
    }

    /// Cached objects of one kind whose externalId is one of `external_ids` or whose lower-case
    /// name is one of `name_keys`, resources included.
    pub async fn cached_matching(
        &self,
        kind: ObjectKind,
        external_ids: &[String],
        name_keys: &[String],
    ) -> Result<Vec<CachedObject>, StateError> {
        let mut out: BTreeMap<String, CachedObject> = BTreeMap::new();
        for (column, values) in [("external_id", external_ids), ("name_key", name_keys)] {
            for chunk in values.chunks(IN_CHUNK) {
                let sql = format!(
                    "SELECT {CACHE_COLUMNS}, resource FROM target_cache WHERE kind = ? AND {column} IN ({})",
                    placeholders(chunk.len())
                );
                // `column` is one of two constants; values are bound.
                let mut query = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(kind.as_str());
                for v in chunk {
                    query = query.bind(v);
                }
                for r in query.fetch_all(&self.pool).await.map_err(|e| self.err(e))? {
                    let o = self.cached_row(&r, true)?;
                    out.insert(o.id.clone(), o);
                }
            }
        }
        Ok(out.into_values().collect())
    }

    fn cached_row(
        &self,
        r: &sqlx::sqlite::SqliteRow,
        with_resource: bool,
    ) -> Result<CachedObject, StateError> {
        let get = || -> Result<CachedObject, sqlx::Error> {
            let kind: String = r.try_get("kind")?;
            let pending_since: Option<String> = r.try_get("pending_since")?;
            Ok(CachedObject {
                kind: ObjectKind::from_column(&kind),
                id: r.try_get("id")?,
                external_id: r.try_get("external_id")?,
                // default: a cached object without a name has an empty one (as the target sent it).
                name: r.try_get::<Option<String>, _>("name")?.unwrap_or_default(),
                active: r.try_get::<i64, _>("active")? != 0,
                pending: r.try_get::<i64, _>("pending")? != 0,
                pending_since: parse_time(pending_since),
                resource: if with_resource {
                    std::sync::Arc::from(r.try_get::<String, _>("resource")?)
                } else {
                    std::sync::Arc::from("")
                },
            })
        };
        get().map_err(|e| self.err(e))
    }

    /// Every user image row without its entry: id and what the mapping made of it.
    pub async fn image_user_keys(&self) -> Result<Vec<(String, ImageKeys)>, StateError> {
        type Row = (String, Option<String>, Option<String>, Option<String>);
        let rows: Vec<Row> = self
            .json_rows(
                TableRows {
                    table: "directory_image",
                    columns: "id, anchor, name_key, member_keys",
                },
                ObjectKind::User,
            )
            .await?;
        Ok(rows
            .into_iter()
            .map(|(id, anchor, name_key, keys)| {
                (
                    id,
                    ImageKeys {
                        anchor,
                        name_key,
                        member_keys: keys
                            .map(|k| k.lines().map(str::to_string).collect())
                            // default: a row without member keys lists no members.
                            .unwrap_or_default(),
                    },
                )
            })
            .collect())
    }

    /// The image entries of one kind with these stable ids (those that exist).
    pub async fn image_entries(
        &self,
        kind: ObjectKind,
        ids: &[String],
    ) -> Result<BTreeMap<String, Entry>, StateError> {
        let mut image = BTreeMap::new();
        for chunk in ids.chunks(IN_CHUNK) {
            let sql = format!(
                "SELECT id, entry FROM directory_image WHERE kind = ? AND id IN ({})",
                placeholders(chunk.len())
            );
            let mut query = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(kind.as_str());
            for id in chunk {
                query = query.bind(id);
            }
            for r in query.fetch_all(&self.pool).await.map_err(|e| self.err(e))? {
                let (id, entry) = self.image_row(&r)?;
                image.insert(id, entry);
            }
        }
        Ok(image)
    }

    fn image_row(&self, r: &sqlx::sqlite::SqliteRow) -> Result<(String, Entry), StateError> {
        let id: String = r.try_get("id").map_err(|e| self.err(e))?;
        let text: String = r.try_get("entry").map_err(|e| self.err(e))?;
        let entry = image::decode(&text).ok_or_else(|| StateError::Database {
            path: self.path.clone(),
            reason: format!("the cached directory entry {id} is unreadable"),
        })?;
        Ok((id, entry))
    }

    /// Writes image, cache, cursor and meta in one transaction (see [`IncrementalWrite`]).
    /// Writes a full run's image rows ahead of its commit (see `0004_image_staging.sql`), so
    /// that they need not be held until then. [`StateStore::commit_incremental`] moves them
    /// into the image.
    pub async fn stage_image(&self, rows: &[ImageRow]) -> Result<(), StateError> {
        let mut tx = self.pool.begin().await.map_err(|e| self.err(e))?;
        insert_image_rows(&mut tx, Rows::Staged, rows)
            .await
            .map_err(|e| self.err(e))?;
        tx.commit().await.map_err(|e| self.err(e))
    }

    /// Writes target cache rows ahead of the commit, as [`StateStore::stage_image`].
    pub async fn stage_cache(&self, rows: &[CachedObject]) -> Result<(), StateError> {
        let mut tx = self.pool.begin().await.map_err(|e| self.err(e))?;
        insert_cache_rows(&mut tx, Rows::Staged, rows)
            .await
            .map_err(|e| self.err(e))?;
        tx.commit().await.map_err(|e| self.err(e))
    }

    /// Forgets staged rows of a run that never committed (killed).
    pub async fn clear_staging(&self) -> Result<(), StateError> {
        for sql in ["DELETE FROM image_staging", "DELETE FROM cache_staging"] {
            sqlx::query(sql)
                .execute(&self.pool)
                .await
                .map_err(|e| self.err(e))?;
        }
        Ok(())
    }

    pub async fn commit_incremental(&self, w: &IncrementalWrite) -> Result<(), StateError> {
        let mut tx = self.pool.begin().await.map_err(|e| self.err(e))?;
        commit(&mut tx, w).await.map_err(|e| self.err(e))?;
        tx.commit().await.map_err(|e| self.err(e))
    }

    /// Whether the latest run before this one started but never finished (killed).
    pub async fn last_run_unfinished(&self) -> Result<bool, StateError> {
        let row: Option<Option<String>> = sqlx::query_scalar(
            "SELECT finished_at FROM runs WHERE dry_run = 0 ORDER BY started_at DESC LIMIT 1",
        )
        .fetch_optional(&self.pool)
        .await
        .map_err(|e| self.err(e))?;
        Ok(matches!(row, Some(None)))
    }

    pub async fn begin_run(&self, id: &str, mode: &str, dry_run: bool) -> Result<(), StateError> {
        sqlx::query("INSERT INTO runs (id, started_at, mode, dry_run) VALUES (?, ?, ?, ?)")
            .bind(id)
            .bind(Utc::now().to_rfc3339())
            .bind(mode)
            .bind(dry_run)
            .execute(&self.pool)
            .await
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    pub async fn finish_run(
        &self,
        id: &str,
        exit_code: i32,
        report: &serde_json::Value,
    ) -> Result<(), StateError> {
        sqlx::query("UPDATE runs SET finished_at = ?, exit_code = ?, report = ? WHERE id = ?")
            .bind(Utc::now().to_rfc3339())
            .bind(exit_code)
            .bind(report.to_string())
            .bind(id)
            .execute(&self.pool)
            .await
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// Where rows go: the image or the target cache itself, or its staging table (rows of a run
/// not yet committed, `0004_staging.sql`).
#[derive(Clone, Copy)]
enum Rows {
    Committed,
    Staged,
}

/// Writes image rows (insert or update). Many rows per statement: a full run writes
/// 100,000s, and sqlx's cost is per statement. In primary-key order: B-tree pages then fill
/// one after another instead of being touched (and spilled to the WAL) again and again by
/// random ids.
async fn insert_image_rows(
    conn: &mut SqliteConnection,
    table: Rows,
    rows: &[ImageRow],
) -> Result<(), sqlx::Error> {
    let mut image_rows: Vec<&ImageRow> = rows.iter().collect();
    image_rows.sort_by(|a, b| (a.kind.as_str(), &a.id).cmp(&(b.kind.as_str(), &b.id)));
    for chunk in image_rows.chunks(INSERT_CHUNK) {
        let mut q = sqlx::QueryBuilder::<sqlx::Sqlite>::new(match table {
            Rows::Committed => {
                "INSERT INTO directory_image (kind, id, dn, entry, anchor, name_key, member_keys, hash) "
            }
            Rows::Staged => {
                "INSERT INTO image_staging (kind, id, dn, entry, anchor, name_key, member_keys, hash) "
            }
        });
        q.push_values(chunk, |mut b, row| {
            let member_keys =
                (!row.keys.member_keys.is_empty()).then(|| row.keys.member_keys.join("\n"));
            b.push_bind(row.kind.as_str())
                .push_bind(row.id.clone())
                .push_bind(row.dn.clone())
                .push_bind(row.entry.clone())
                .push_bind(row.keys.anchor.clone())
                .push_bind(row.keys.name_key.clone())
                .push_bind(member_keys)
                .push_bind(row.hash as i64);
        });
        q.push(
            " ON CONFLICT (kind, id) DO UPDATE SET dn = excluded.dn, entry = excluded.entry, \
             anchor = excluded.anchor, name_key = excluded.name_key, \
             member_keys = excluded.member_keys, hash = excluded.hash",
        );
        q.build().execute(&mut *conn).await?;
    }
    Ok(())
}

/// Writes target cache rows (insert or update), many per statement, in key order (as
/// [`insert_image_rows`]).
async fn insert_cache_rows(
    conn: &mut SqliteConnection,
    table: Rows,
    rows: &[CachedObject],
) -> Result<(), sqlx::Error> {
    let mut cache_rows: Vec<&CachedObject> = rows.iter().collect();
    cache_rows.sort_by(|a, b| (a.kind.as_str(), &a.id).cmp(&(b.kind.as_str(), &b.id)));
    for chunk in cache_rows.chunks(INSERT_CHUNK) {
        let mut q = sqlx::QueryBuilder::<sqlx::Sqlite>::new(match table {
            Rows::Committed => {
                "INSERT INTO target_cache (kind, id, pending, resource, external_id, name, \
                 name_key, active, pending_since, hash) "
            }
            Rows::Staged => {
                "INSERT INTO cache_staging (kind, id, pending, resource, external_id, name, \
                 name_key, active, pending_since, hash) "
            }
        });
        q.push_values(chunk, |mut b, o| {
            b.push_bind(o.kind.as_str())
                .push_bind(o.id.clone())
                .push_bind(o.pending)
                .push_bind(o.resource.to_string())
                .push_bind(o.external_id.clone())
                .push_bind(o.name.clone())
                .push_bind(o.name.to_lowercase())
                .push_bind(o.active)
                .push_bind(o.pending_since.map(|d| d.to_rfc3339()))
                .push_bind(o.content_hash() as i64);
        });
        q.push(
            " ON CONFLICT (kind, id) DO UPDATE SET pending = excluded.pending, \
             resource = excluded.resource, external_id = excluded.external_id, \
             name = excluded.name, name_key = excluded.name_key, active = excluded.active, \
             pending_since = excluded.pending_since, hash = excluded.hash",
        );
        q.build().execute(&mut *conn).await?;
    }
    Ok(())
}

async fn commit(conn: &mut SqliteConnection, w: &IncrementalWrite) -> Result<(), sqlx::Error> {
    if w.replace {
        sqlx::query("DELETE FROM directory_image")
            .execute(&mut *conn)
            .await?;
        sqlx::query("DELETE FROM target_cache")
            .execute(&mut *conn)
            .await?;
    }
    for (kind, id) in &w.image_removals {
        sqlx::query("DELETE FROM directory_image WHERE kind = ? AND id = ?")
            .bind(kind.as_str())
            .bind(id)
            .execute(&mut *conn)
            .await?;
    }
    insert_image_rows(conn, Rows::Committed, &w.image_upserts).await?;
    // Staged rows (0004_staging.sql) join the image and the cache here; the cache's before
    // this run's removals and re-read rows, which are newer.
    for sql in [
        "INSERT INTO directory_image (kind, id, dn, entry, anchor, name_key, member_keys, hash) \
         SELECT kind, id, dn, entry, anchor, name_key, member_keys, hash FROM image_staging \
         WHERE true ON CONFLICT (kind, id) DO UPDATE SET dn = excluded.dn, entry = excluded.entry, \
         anchor = excluded.anchor, name_key = excluded.name_key, \
         member_keys = excluded.member_keys, hash = excluded.hash",
        "INSERT INTO target_cache (kind, id, pending, resource, external_id, name, name_key, \
         active, pending_since, hash) SELECT kind, id, pending, resource, external_id, name, \
         name_key, active, pending_since, hash FROM cache_staging WHERE true \
         ON CONFLICT (kind, id) DO UPDATE SET pending = excluded.pending, \
         resource = excluded.resource, external_id = excluded.external_id, \
         name = excluded.name, name_key = excluded.name_key, active = excluded.active, \
         pending_since = excluded.pending_since, hash = excluded.hash",
        "DELETE FROM image_staging",
        "DELETE FROM cache_staging",
    ] {
        sqlx::query(sql).execute(&mut *conn).await?;
    }
    for (kind, id) in &w.cache_removals {
        sqlx::query("DELETE FROM target_cache WHERE kind = ? AND id = ?")
            .bind(kind.as_str())
            .bind(id)
            .execute(&mut *conn)
            .await?;
    }
    insert_cache_rows(conn, Rows::Committed, &w.cache_upserts).await?;
    match &w.cursor {
        Some(cursor) => {
            sqlx::query(
                "INSERT INTO cursors (source, cursor, updated_at) VALUES ('directory', ?, ?) \
                 ON CONFLICT (source) DO UPDATE SET cursor = excluded.cursor, \
                 updated_at = excluded.updated_at",
            )
            .bind(cursor)
            .bind(Utc::now().to_rfc3339())
            .execute(&mut *conn)
            .await?;
        }
        None => {
            sqlx::query("DELETE FROM cursors")
                .execute(&mut *conn)
                .await?;
        }
    }
    for (key, value) in &w.meta {
        sqlx::query(
            "INSERT INTO meta (key, value) VALUES (?, ?) \
             ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        )
        .bind(key)
        .bind(value)
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

/// What an object record write does when the row exists.
const UPSERT_OBJECT_TAIL: &str = " ON CONFLICT (kind, anchor) DO UPDATE SET \
     target_id = excluded.target_id, dn = excluded.dn, name = excluded.name, \
     fingerprint = excluded.fingerprint, owned = excluded.owned, \
     pending_since = excluded.pending_since, updated_at = excluded.updated_at";

async fn upsert(conn: &mut SqliteConnection, r: &ObjectRecord) -> Result<(), sqlx::Error> {
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "INSERT INTO objects (kind, anchor, target_id, dn, name, fingerprint, owned, \
         pending_since, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?){UPSERT_OBJECT_TAIL}"
    )))
    .bind(r.kind.as_str())
    .bind(&r.anchor)
    .bind(&r.target_id)
    .bind(&r.dn)
    .bind(&r.name)
    .bind(&r.fingerprint)
    .bind(r.owned)
    .bind(r.pending_since.map(|d| d.to_rfc3339()))
    .bind(Utc::now().to_rfc3339())
    .execute(&mut *conn)
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn record(anchor: &str, id: &str) -> ObjectRecord {
        ObjectRecord {
            kind: ObjectKind::User,
            anchor: anchor.into(),
            target_id: id.into(),
            dn: Some(format!("uid={anchor},ou=people,dc=example,dc=test")),
            name: Some(format!("{anchor}@example.test")),
            fingerprint: Some(fingerprint(&json!({"a": 1}))),
            owned: true,
            pending_since: None,
        }
    }

    #[tokio::test]
    async fn objects_round_trip_and_reset_forgets_them() {
        let dir = tempfile::tempdir().unwrap();
        let store = StateStore::open(dir.path()).await.unwrap();
        store.upsert_object(&record("a", "1")).await.unwrap();
        let mut b = record("b", "2");
        b.pending_since = Some(Utc::now());
        store
            .upsert_objects(&[b.clone(), record("c", "3")])
            .await
            .unwrap();
        store.upsert_object(&record("a", "9")).await.unwrap();
        let all = store.objects(ObjectKind::User).await.unwrap();
        assert_eq!(all.len(), 3);
        assert_eq!(all[0].target_id, "9");
        assert!(all[1].pending_since.is_some());
        assert!(store.objects(ObjectKind::Group).await.unwrap().is_empty());
        store.remove_object(ObjectKind::User, "c").await.unwrap();
        assert_eq!(store.objects(ObjectKind::User).await.unwrap().len(), 2);
        store.set_meta("config_fingerprint", "x").await.unwrap();
        store.reset().await.unwrap();
        assert!(store.objects(ObjectKind::User).await.unwrap().is_empty());
        assert_eq!(store.meta("config_fingerprint").await.unwrap(), None);
    }

    #[tokio::test]
    async fn state_survives_reopen_and_incremental_writes_are_atomic_units() {
        let dir = tempfile::tempdir().unwrap();
        let entry = Entry::new("uid=a,dc=x")
            .with("uid", "a")
            .with("objectGUID", [0xffu8, 0x00, 0x01]);
        {
            let store = StateStore::open(dir.path()).await.unwrap();
            store.upsert_object(&record("a", "1")).await.unwrap();
            let write = IncrementalWrite {
                replace: true,
                cursor: Some("c1".into()),
                image_upserts: vec![ImageRow::new(
                    ObjectKind::User,
                    "id-a".into(),
                    &entry,
                    ImageKeys {
                        anchor: Some("anchor-a".into()),
                        name_key: Some("a@x".into()),
                        member_keys: vec!["uid=a,dc=x".into(), "a".into()],
                    },
                )],
                cache_upserts: vec![
                    CachedObject {
                        kind: ObjectKind::Group,
                        id: "g1".into(),
                        external_id: Some("gx".into()),
                        name: "Staff".into(),
                        active: true,
                        pending: false,
                        pending_since: None,
                        resource: json!({"id": "g1", "members": [{"value": "1"}]})
                            .to_string()
                            .into(),
                    },
                    CachedObject {
                        kind: ObjectKind::User,
                        id: "1".into(),
                        external_id: Some("anchor-a".into()),
                        name: "A@x".into(),
                        active: false,
                        pending: true,
                        pending_since: Some(Utc::now()),
                        resource: json!({"id": "1", "userName": "A@x"}).to_string().into(),
                    },
                ],
                meta: vec![("last_full", "t".into())],
                ..IncrementalWrite::default()
            };
            store.commit_incremental(&write).await.unwrap();
            let patch = IncrementalWrite {
                cursor: Some("c2".into()),
                image_upserts: vec![ImageRow::new(
                    ObjectKind::Group,
                    "id-g".into(),
                    &Entry::new("cn=g"),
                    ImageKeys::default(),
                )],
                ..IncrementalWrite::default()
            };
            store.commit_incremental(&patch).await.unwrap();
            store.close().await;
        }
        let store = StateStore::open(dir.path()).await.unwrap();
        assert_eq!(store.objects(ObjectKind::User).await.unwrap().len(), 1);
        assert_eq!(store.cursor().await.unwrap().as_deref(), Some("c2"));
        assert_eq!(store.image(ObjectKind::User).await.unwrap()["id-a"], entry);
        assert_eq!(store.image(ObjectKind::Group).await.unwrap().len(), 1);
        assert_eq!(store.target_cache().await.unwrap().len(), 2);
        // What an incremental plan over the changed users loads.
        let keys = store.image_user_keys().await.unwrap();
        assert_eq!(keys.len(), 1);
        assert_eq!(keys[0].1.anchor.as_deref(), Some("anchor-a"));
        assert_eq!(keys[0].1.member_keys, vec!["uid=a,dc=x", "a"]);
        let some = store
            .image_entries(ObjectKind::User, &["id-a".into(), "nope".into()])
            .await
            .unwrap();
        assert_eq!(some.len(), 1);
        let light = store.cached_users_light().await.unwrap();
        assert_eq!(light.len(), 1);
        assert!(light[0].resource.is_empty() && light[0].pending && !light[0].active);
        assert_eq!(light[0].name, "A@x");
        let by_name = store
            .cached_matching(ObjectKind::User, &[], &["a@x".into()])
            .await
            .unwrap();
        assert_eq!(by_name.len(), 1);
        assert!(by_name[0].resource.contains("userName"));
        let by_anchor = store
            .cached_matching(ObjectKind::User, &["anchor-a".into()], &["a@x".into()])
            .await
            .unwrap();
        assert_eq!(by_anchor.len(), 1, "one row, found both ways");
        assert_eq!(
            store.cached_objects(ObjectKind::Group).await.unwrap()[0].name,
            "Staff"
        );
        assert_eq!(store.meta("last_full").await.unwrap().as_deref(), Some("t"));
        store.reset().await.unwrap();
        assert_eq!(store.cursor().await.unwrap(), None);
        assert!(store.image(ObjectKind::User).await.unwrap().is_empty());
        assert!(store.target_cache().await.unwrap().is_empty());
    }

    #[test]
    fn a_second_lock_is_refused_and_released_on_drop() {
        let dir = tempfile::tempdir().unwrap();
        let first = RunLock::acquire(dir.path()).unwrap();
        let second = RunLock::acquire(dir.path());
        assert!(matches!(second, Err(StateError::Locked(_))));
        drop(first);
        assert!(RunLock::acquire(dir.path()).is_ok());
    }

    #[test]
    fn fingerprint_ignores_key_order() {
        assert_eq!(
            fingerprint(&json!({"a": 1, "b": [1, 2]})),
            fingerprint(&json!({"b": [1, 2], "a": 1}))
        );
        assert_ne!(fingerprint(&json!({"a": 1})), fingerprint(&json!({"a": 2})));
    }

    /// Staged rows reach the image and the cache only with a commit; rows a killed run
    /// staged are cleared, never committed by the next run.
    #[tokio::test]
    async fn staged_rows_arrive_with_the_commit_and_a_killed_runs_are_cleared() {
        let dir = tempfile::tempdir().unwrap();
        let store = StateStore::open(dir.path()).await.unwrap();
        let row = |id: &str| {
            ImageRow::new(
                ObjectKind::User,
                id.into(),
                &Entry::new(format!("uid={id},dc=x")).with("uid", id),
                ImageKeys::default(),
            )
        };
        let cached = |id: &str| CachedObject {
            kind: ObjectKind::User,
            id: id.into(),
            external_id: Some(format!("ext-{id}")),
            name: id.into(),
            active: true,
            pending: false,
            pending_since: None,
            resource: json!({"id": id}).to_string().into(),
        };
        async fn image_ids(store: &StateStore) -> Vec<String> {
            let image = store.image(ObjectKind::User).await.unwrap();
            image.into_keys().collect()
        }

        // A killed run: staged, never committed; the next run clears them first.
        store.stage_image(&[row("killed")]).await.unwrap();
        store.stage_cache(&[cached("killed")]).await.unwrap();
        store.clear_staging().await.unwrap();
        store.stage_image(&[row("a")]).await.unwrap();
        store.stage_cache(&[cached("a")]).await.unwrap();
        assert!(
            image_ids(&store).await.is_empty(),
            "staged rows are not the image"
        );
        assert!(store.target_cache().await.unwrap().is_empty());

        let write = IncrementalWrite {
            replace: true,
            cursor: Some("c".into()),
            image_upserts: vec![row("b")],
            ..IncrementalWrite::default()
        };
        store.commit_incremental(&write).await.unwrap();
        assert_eq!(image_ids(&store).await, ["a", "b"]);
        let cache: Vec<String> = store
            .target_cache()
            .await
            .unwrap()
            .into_iter()
            .map(|o| o.id)
            .collect();
        assert_eq!(cache, ["a"]);

        // The staging tables are empty again: a second commit adds nothing.
        store
            .commit_incremental(&IncrementalWrite {
                replace: true,
                cursor: Some("c2".into()),
                ..IncrementalWrite::default()
            })
            .await
            .unwrap();
        assert!(image_ids(&store).await.is_empty());
    }
}
