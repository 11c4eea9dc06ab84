//! The service's behaviour, independent of HTTP: user states and pending deletion, tenant
//! rules, groups and memberships, bulk, tokens and scopes, and the discovery documents.

pub mod admins;
pub mod bulk;
pub mod discovery;
pub mod groups;
pub mod password;
pub mod rules;
pub mod runs;
pub mod tokens;
pub mod users;

use scim::{Filter, ScimError};

use crate::store::filter_sql::{self, Kind};
use crate::store::search::{Found, SearchSpec};
use crate::store::{Store, admin};

pub use tokens::{Scope, Scopes};

/// Settings key holding the retention period (days) of users pending deletion.
pub const RETENTION_KEY: &str = "retention_days";
pub const DEFAULT_RETENTION_DAYS: i64 = 30;
/// RFC 7644 §3.7: advertised and enforced.
pub const BULK_MAX_OPERATIONS: usize = 1000;
/// The most resources one list page returns (`filter.maxResults`).
pub const MAX_RESULTS: u64 = 1000;

/// The service: the store plus the settings the rules need.
#[derive(Clone, Debug)]
pub struct Service {
    pub store: Store,
    pub retention_days: i64,
    /// Largest request body accepted (advertised as bulk `maxPayloadSize`).
    pub max_body_bytes: usize,
    /// How complex a search filter may be.
    pub filter_limits: FilterLimits,
}

/// Bounds on a search filter (`search.filter_max_depth` and `search.filter_max_terms` in
/// the service configuration): a filter beyond them is a 400 `tooMany`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FilterLimits {
    pub max_depth: usize,
    pub max_terms: usize,
}

impl Default for FilterLimits {
    fn default() -> Self {
        FilterLimits {
            max_depth: 10,
            max_terms: 64,
        }
    }
}

/// Maps a failed search: past its time limit a 503 (the client may try again later, or a
/// narrower filter), else as [`db`].
pub fn search_error(e: crate::store::search::SearchError) -> ScimError {
    match e {
        crate::store::search::SearchError::Timeout(limit) => {
            tracing::warn!(limit = ?limit, "a search ran past its time limit");
            ScimError::new(
                503,
                None,
                format!(
                    "the search took longer than {} s; narrow the filter or try again later",
                    limit.as_secs_f32()
                ),
            )
        }
        crate::store::search::SearchError::Db(e) => db(e),
    }
}

/// The current instant in the stored form: UTC, millisecond precision, `Z`. Fixed width, so
/// string order is time order.
pub fn now() -> String {
    fmt_time(chrono::Utc::now())
}

pub fn fmt_time(t: chrono::DateTime<chrono::Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
}

/// The detail of the error a transaction that lost a race with another writer (PostgreSQL
/// serialization failure or deadlock) becomes; [`with_retry`] runs such a request again.
pub const LOST_RACE: &str = "the resource was changed concurrently; try again";

/// Maps a database failure to a 500 without leaking SQL to the client (it is logged). A lost
/// race becomes a 503 [`LOST_RACE`], which [`with_retry`] retries.
pub fn db(e: sqlx::Error) -> ScimError {
    if crate::store::is_retryable(&e) {
        tracing::debug!(error = %e, "transaction lost a race");
        return ScimError::new(503, None, LOST_RACE);
    }
    tracing::error!(error = %e, "database error");
    ScimError::new(500, None, "internal database error")
}

/// Whether `e` is a lost race ([`db`] of a serialization failure).
pub fn is_lost_race(e: &ScimError) -> bool {
    e.status == 503 && e.detail == LOST_RACE
}

/// Runs a write request (its own transaction) again while it loses races with concurrent
/// writers; what it finally returns, success or error, is the request's answer.
pub async fn with_retry<T, F, Fut>(attempt: F) -> Result<T, ScimError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, ScimError>>,
{
    crate::store::retry(is_lost_race, attempt).await
}

/// The JSON text a resource is stored as.
pub fn resource_text(resource: &serde_json::Value) -> Result<String, ScimError> {
    serde_json::to_string(resource)
        .map_err(|e| ScimError::new(500, None, format!("cannot serialise resource: {e}")))
}

/// `meta` of a stored resource (RFC 7643 §3.1).
pub fn meta(
    resource_type: &str,
    created: &str,
    last_modified: &str,
    location: String,
    version: i64,
) -> serde_json::Value {
    serde_json::json!({
        "resourceType": resource_type,
        "created": created,
        "lastModified": last_modified,
        "location": location,
        "version": etag(version),
    })
}

/// The weak ETag of a version counter.
pub fn etag(version: i64) -> String {
    format!("W/\"{version}\"")
}

/// Checks an `If-Match` header value against the current version: `*` or any listed tag
/// (weak or strong form of the same opaque value) matches; otherwise 412.
pub fn check_if_match(if_match: Option<&str>, version: i64) -> Result<(), ScimError> {
    let Some(header) = if_match else {
        return Ok(());
    };
    let current = version.to_string();
    let ok = header
        .split(',')
        .map(str::trim)
        .any(|tag| tag == "*" || tag.trim_start_matches("W/").trim_matches('"') == current);
    if ok {
        Ok(())
    } else {
        Err(ScimError::new(
            412,
            None,
            format!(
                "resource version {} does not match If-Match {header}",
                etag(version)
            ),
        ))
    }
}

/// A list request after parsing (RFC 7644 §3.4.2).
#[derive(Debug, Clone, Default)]
pub struct ListQuery {
    pub filter: Option<Filter>,
    pub sort_by: Option<scim::AttrPath>,
    pub descending: bool,
    /// 1-based.
    pub start_index: u64,
    /// `None`: the default page size.
    pub count: Option<u64>,
    /// Keyset paging (`cursor`, RFC 9865): `Some("")` asks for the first page, `Some(c)` for
    /// the page after the `nextCursor` `c`; `None`: index paging (`startIndex`).
    pub cursor: Option<String>,
}

/// One page of a list.
#[derive(Debug, Clone)]
pub struct ListPage {
    pub total: u64,
    pub start_index: u64,
    pub resources: Vec<serde_json::Value>,
    /// Keyset paging: the cursor of the next page, when there is one.
    pub next_cursor: Option<String>,
}

impl ListQuery {
    /// (offset, limit) for the store.
    pub fn window(&self) -> (u64, u64) {
        let offset = self.start_index.max(1) - 1;
        let limit = self.count.unwrap_or(100).min(MAX_RESULTS);
        (offset, limit)
    }

    /// The store search for this query over `kind`: filter and sort translated to SQL, and
    /// the page window.
    pub fn search_spec(
        &self,
        kind: Kind,
        include_pending: bool,
        svc: &Service,
    ) -> Result<SearchSpec, ScimError> {
        let condition = match &self.filter {
            Some(f) => {
                let FilterLimits {
                    max_depth,
                    max_terms,
                } = svc.filter_limits;
                scim::filter::check_cost(f, max_depth, max_terms)?;
                Some(filter_sql::condition(kind, f, svc.store.engine())?)
            }
            None => None,
        };
        let sort = match &self.sort_by {
            Some(p) => Some((filter_sql::sort_expr(kind, p)?, self.descending)),
            None => None,
        };
        let (offset, limit) = self.window();
        let cursor = self.cursor.as_deref().map(Cursor::parse);
        Ok(SearchSpec {
            after: cursor.map(|c| c.after.to_string()),
            known_total: cursor.and_then(|c| c.total),
            kind,
            condition,
            include_pending,
            sort,
            offset,
            limit,
        })
    }
}

impl ListPage {
    /// The page of `resources` found by `spec`.
    pub fn new(found: &Found, spec: &SearchSpec, resources: Vec<serde_json::Value>) -> ListPage {
        ListPage {
            total: u64::try_from(found.total).unwrap_or(0),
            start_index: spec.offset + 1,
            resources,
            next_cursor: found
                .next
                .as_deref()
                .map(|after| Cursor::format(after, found.total)),
        }
    }
}

/// A `nextCursor` as idservice writes it: the id the next page continues after and the
/// walk's `totalResults`, counted on its first page (`<id>~<total>`). Later pages repeat that
/// total instead of counting every match again, which on PostgreSQL costs more than reading
/// the page; a walk's total is the number of matches when it began. A cursor without `~`
/// (an id alone) is also taken: that page counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Cursor<'a> {
    after: &'a str,
    total: Option<i64>,
}

impl<'a> Cursor<'a> {
    fn parse(wire: &'a str) -> Cursor<'a> {
        let carried = wire.rsplit_once('~').and_then(|(after, total)| {
            let total = total.parse::<i64>().ok().filter(|t| *t >= 0)?;
            Some((after, total))
        });
        match carried {
            Some((after, total)) => Cursor {
                after,
                total: Some(total),
            },
            None => Cursor {
                after: wire,
                total: None,
            },
        }
    }

    fn format(after: &str, total: i64) -> String {
        format!("{after}~{total}")
    }
}

impl Service {
    /// Opens the store and loads the retention setting (an explicit value is saved).
    pub fn new(store: Store, retention_days: i64, max_body_bytes: usize) -> Service {
        Service {
            store,
            retention_days,
            max_body_bytes,
            filter_limits: FilterLimits::default(),
        }
    }

    /// Reads the retention period saved in the settings table (default 30 days).
    pub async fn stored_retention_days(store: &Store) -> Result<i64, sqlx::Error> {
        let mut conn = store.read().await?;
        Ok(admin::get_setting(&mut conn, RETENTION_KEY)
            .await?
            .and_then(|v| v.parse().ok())
            .unwrap_or(DEFAULT_RETENTION_DAYS))
    }

    /// Saves the retention period.
    pub async fn save_retention_days(store: &Store, days: i64) -> Result<(), sqlx::Error> {
        let mut tx = store.begin().await?;
        admin::set_setting(&mut tx, RETENTION_KEY, &days.to_string()).await?;
        tx.commit().await
    }

    /// Lists users or groups.
    pub async fn list(&self, kind: Kind, q: &ListQuery, base: &str) -> Result<ListPage, ScimError> {
        match kind {
            Kind::User => users::list(self, q, base).await,
            Kind::Group => groups::list(self, q, base).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Cursor;

    #[test]
    fn a_cursor_carries_the_walk_total_and_an_id_alone_still_reads() {
        let written = Cursor::format("7f3c-uuid", 100_100);
        assert_eq!(
            Cursor::parse(&written),
            Cursor {
                after: "7f3c-uuid",
                total: Some(100_100)
            }
        );
        for wire in ["", "7f3c-uuid", "7f3c~x", "7f3c~-4"] {
            assert_eq!(
                Cursor::parse(wire),
                Cursor {
                    after: wire,
                    total: None
                },
                "{wire}"
            );
        }
    }
}
