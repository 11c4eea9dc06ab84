//! List queries: a filter condition, sort order and page, built with sea-query and run with
//! bound parameters.

use sea_query::{
    Condition, Expr, Order, PostgresQueryBuilder, Query, SelectStatement, SqliteQueryBuilder,
};
use sea_query_sqlx::SqlxBinder;

use super::filter_sql::{self, Frag, Kind};
use super::groups::{GROUP_COLUMNS, GroupRow};
use super::users::{USER_COLUMNS, UserRow};
use super::{Conn, Engine, engine_of};

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
    q.expr(Expr::cust(columns)).from(table).cond_where(cond);
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

/// Total matches and one page of users.
pub async fn users(conn: &mut Conn, spec: &SearchSpec) -> Result<(i64, Vec<UserRow>), sqlx::Error> {
    let cond = base_condition(spec);
    let total = count(conn, spec, cond.clone()).await?;
    if spec.limit == 0 || total == 0 {
        return Ok((total, Vec::new()));
    }
    let cols: &'static str = USER_COLUMNS;
    let (sql, values) = page_query(engine_of(conn), spec, cond, cols);
    let rows = sqlx::query_as_with::<_, UserRow, _>(sqlx::AssertSqlSafe(sql), values)
        .fetch_all(conn)
        .await?;
    Ok((total, rows))
}

/// Total matches and one page of groups.
pub async fn groups(
    conn: &mut Conn,
    spec: &SearchSpec,
) -> Result<(i64, Vec<GroupRow>), sqlx::Error> {
    let cond = base_condition(spec);
    let total = count(conn, spec, cond.clone()).await?;
    if spec.limit == 0 || total == 0 {
        return Ok((total, Vec::new()));
    }
    let (sql, values) = page_query(engine_of(conn), spec, cond, GROUP_COLUMNS);
    let rows = sqlx::query_as_with::<_, GroupRow, _>(sqlx::AssertSqlSafe(sql), values)
        .fetch_all(conn)
        .await?;
    Ok((total, rows))
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
}
