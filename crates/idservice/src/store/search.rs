//! List queries: a filter condition, sort order and page, built with sea-query and run with
//! bound parameters.

use sea_query::{
    Condition, Expr, Order, PostgresQueryBuilder, Query, SelectStatement, SqliteQueryBuilder,
};
use sea_query_sqlx::SqlxBinder;

use super::filter_sql::{self, Frag, Kind};
use super::groups::{GROUP_COLUMNS, GroupRow};
use super::users::{USER_COLUMNS, UserRow};
use super::{Conn, Engine, Store, engine_of};

/// What to list.
#[derive(Debug, Clone)]
pub struct SearchSpec {
    pub kind: Kind,
    pub condition: Option<Condition>,
    /// Users pending deletion are left out unless this is set.
    pub include_pending: bool,
    /// Sort expression and whether descending.
    pub sort: Option<(Frag, bool)>,
    /// 0-based offset.
    pub offset: u64,
    /// Page size; 0 only counts.
    pub limit: u64,
    /// Keyset paging: `Some(id)` lists in id order from after `id` (`""`: from the start) and
    /// ignores `offset` and `sort`, so a deep page costs what the first one does.
    pub after: Option<String>,
    /// Keyset paging past the first page: the total counted on the walk's first page. The
    /// store does not count again (on PostgreSQL, counting 100,000 rows costs more than
    /// reading a page of them).
    pub known_total: Option<i64>,
}

/// What a list query found besides the page itself.
#[derive(Debug, Clone, Default)]
pub struct Found {
    /// Every match of the filter.
    pub total: i64,
    /// Keyset paging: the id to continue after, when more rows follow.
    pub next: Option<String>,
}

fn base_condition(spec: &SearchSpec) -> Condition {
    let mut c = Condition::all();
    if spec.kind == Kind::User && !spec.include_pending {
        c = c.add(Expr::cust("users.state <> 'pendingDeletion'"));
    }
    if let Some(f) = &spec.condition {
        c = c.add(f.clone());
    }
    c
}

/// The SQL text and values of `q` in the dialect of `engine`.
fn build(q: &SelectStatement, engine: Engine) -> (String, sea_query_sqlx::SqlxValues) {
    match engine {
        Engine::Sqlite => q.build_sqlx(SqliteQueryBuilder),
        Engine::Postgres => q.build_sqlx(PostgresQueryBuilder),
    }
}

async fn count(conn: &mut Conn, spec: &SearchSpec, cond: Condition) -> Result<i64, sqlx::Error> {
    let (sql, values) = build(
        Query::select()
            .expr(Expr::cust("COUNT(*)"))
            .from(spec.kind.table())
            .cond_where(cond),
        engine_of(conn),
    );
    sqlx::query_scalar_with::<_, i64, _>(sqlx::AssertSqlSafe(sql), values)
        .fetch_one(conn)
        .await
}

fn page_query(
    engine: Engine,
    spec: &SearchSpec,
    cond: Condition,
    columns: &'static str,
) -> (String, sea_query_sqlx::SqlxValues) {
    let table = spec.kind.table();
    let mut q = Query::select();
    q.expr(Expr::cust(columns)).from(table);
    if let Some(after) = &spec.after {
        let mut cond = cond;
        if !after.is_empty() {
            let gt = filter_sql::placeholders(&format!("{table}.id > ?"), engine);
            cond = cond.add(Expr::cust_with_values(gt, [after.clone()]));
        }
        q.cond_where(cond)
            .order_by_expr(Expr::cust(format!("{table}.id")), Order::Asc)
            // One row more than the page: whether another page follows.
            .limit(spec.limit.saturating_add(1));
        return build(&q, engine);
    }
    q.cond_where(cond);
    if let Some((frag, desc)) = &spec.sort {
        let order = if *desc { Order::Desc } else { Order::Asc };
        // Missing values sort last when ascending (RFC 7644 §3.4.2.3), first when descending.
        q.order_by_expr(
            Expr::cust_with_values(
                filter_sql::placeholders(&format!("({}) IS NULL", frag.sql), engine),
                frag.values.clone(),
            ),
            if *desc { Order::Desc } else { Order::Asc },
        );
        q.order_by_expr(frag.clone().into_expr(engine), order);
    }
    // The tie-breaker: insertion order on SQLite; the primary key on PostgreSQL (no rowid).
    let tie = match engine {
        Engine::Sqlite => "rowid",
        Engine::Postgres => "id",
    };
    q.order_by_expr(Expr::cust(format!("{table}.{tie}")), Order::Asc);
    q.limit(spec.limit).offset(spec.offset);
    build(&q, engine)
}

/// One page of `R` rows (`columns`) and, with keyset paging, the id to continue after;
/// `id_of` names a row.
async fn fetch<R>(
    conn: &mut Conn,
    spec: &SearchSpec,
    columns: &'static str,
    id_of: fn(&R) -> &str,
) -> Result<(Vec<R>, Option<String>), sqlx::Error>
where
    R: for<'r> sqlx::FromRow<'r, sqlx::any::AnyRow> + Send + Unpin,
{
    let (sql, values) = page_query(engine_of(conn), spec, base_condition(spec), columns);
    let mut rows = sqlx::query_as_with::<_, R, _>(sqlx::AssertSqlSafe(sql), values)
        .fetch_all(conn)
        .await?;
    let limit = usize::try_from(spec.limit).unwrap_or(usize::MAX);
    let mut next = None;
    if spec.after.is_some() && rows.len() > limit {
        rows.truncate(limit);
        next = rows.last().map(|r| id_of(r).to_string());
    }
    Ok((rows, next))
}

/// Why a search gave no page.
#[derive(Debug, thiserror::Error)]
pub enum SearchError {
    /// The search ran past the store's search timeout (on PostgreSQL the server cancelled
    /// it; on SQLite the statement finishes on its own connection, unread).
    #[error("the search took longer than {0:?}")]
    Timeout(std::time::Duration),
    #[error(transparent)]
    Db(#[from] sqlx::Error),
}

/// The matches and one page of `R` rows, on the search pool, within the search timeout.
async fn page<R>(
    store: &Store,
    spec: &SearchSpec,
    columns: &'static str,
    id_of: fn(&R) -> &str,
) -> Result<(Found, Vec<R>), SearchError>
where
    R: for<'r> sqlx::FromRow<'r, sqlx::any::AnyRow> + Send + Unpin,
{
    let limit = store.search_timeout();
    match tokio::time::timeout(limit, page_unbounded(store, spec, columns, id_of)).await {
        Ok(Ok(found)) => Ok(found),
        Ok(Err(e)) if crate::store::is_statement_timeout(&e) => Err(SearchError::Timeout(limit)),
        Ok(Err(e)) => Err(SearchError::Db(e)),
        Err(_) => Err(SearchError::Timeout(limit)),
    }
}

/// [`page`] without the time limit. The count and the page are read side by side, each on
/// its own connection (a list page of 1,000 users spends a tenth of its time counting), so
/// they may see the database a moment apart, as two requests would.
async fn page_unbounded<R>(
    store: &Store,
    spec: &SearchSpec,
    columns: &'static str,
    id_of: fn(&R) -> &str,
) -> Result<(Found, Vec<R>), sqlx::Error>
where
    R: for<'r> sqlx::FromRow<'r, sqlx::any::AnyRow> + Send + Unpin,
{
    let counting = async {
        let mut conn = store.search_read().await?;
        count(&mut conn, spec, base_condition(spec)).await
    };
    if let Some(total) = spec.known_total.filter(|_| spec.limit > 0) {
        let mut conn = store.search_read().await?;
        let (rows, next) = fetch(&mut conn, spec, columns, id_of).await?;
        return Ok((Found { total, next }, rows));
    }
    if spec.limit == 0 {
        let total = counting.await?;
        return Ok((Found { total, next: None }, Vec::new()));
    }
    let paging = async {
        let mut conn = store.search_read().await?;
        fetch(&mut conn, spec, columns, id_of).await
    };
    let (total, (rows, next)) = tokio::try_join!(counting, paging)?;
    Ok((Found { total, next }, rows))
}

/// Total matches and one page of users.
pub async fn users(store: &Store, spec: &SearchSpec) -> Result<(Found, Vec<UserRow>), SearchError> {
    page(store, spec, USER_COLUMNS, |r: &UserRow| r.id.as_str()).await
}

/// Total matches and one page of groups.
pub async fn groups(
    store: &Store,
    spec: &SearchSpec,
) -> Result<(Found, Vec<GroupRow>), SearchError> {
    page(store, spec, GROUP_COLUMNS, |r: &GroupRow| r.id.as_str()).await
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn spec(filter: &str) -> SearchSpec {
        let f = scim::filter::parse(filter).unwrap();
        SearchSpec {
            kind: Kind::User,
            condition: Some(filter_sql::condition(Kind::User, &f, Engine::Postgres).unwrap()),
            include_pending: false,
            sort: None,
            offset: 0,
            limit: 10,
            after: None,
            known_total: None,
        }
    }

    #[test]
    fn postgres_placeholders_are_numbered_in_order() {
        let s = spec("userName eq \"a?b\" and title sw \"x\"");
        let (sql, values) = page_query(Engine::Postgres, &s, base_condition(&s), USER_COLUMNS);
        assert!(!sql.contains('?'), "{sql}");
        let n = values.0.0.len();
        for i in 1..=n {
            assert!(sql.contains(&format!("${i}")), "{sql}");
        }
        assert!(!sql.contains(&format!("${}", n + 1)), "{sql}");
        assert!(sql.contains("'pendingDeletion'"), "{sql}");
    }

    #[test]
    fn keyset_pages_continue_after_an_id_without_offset() {
        for engine in [Engine::Sqlite, Engine::Postgres] {
            let mut s = spec("userName sw \"a\"");
            s.after = Some("some-id".into());
            s.offset = 5000;
            let (sql, _) = page_query(engine, &s, base_condition(&s), USER_COLUMNS);
            assert!(sql.contains("users.id >"), "{sql}");
            assert!(!sql.contains("OFFSET"), "{sql}");
            assert!(sql.contains("ORDER BY users.id ASC"), "{sql}");
        }
    }
}
