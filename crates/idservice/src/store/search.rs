//! List queries: a filter condition, sort order and page, built with sea-query and run with
//! bound parameters.

use sea_query::{Condition, Expr, Order, Query, SqliteQueryBuilder};
use sea_query_sqlx::SqlxBinder;

use super::Conn;
use super::filter_sql::{Frag, Kind};
use super::groups::{GROUP_COLUMNS, GroupRow};
use super::users::{USER_COLUMNS, UserRow};

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

async fn count(conn: &mut Conn, spec: &SearchSpec, cond: Condition) -> Result<i64, sqlx::Error> {
    let (sql, values) = Query::select()
        .expr(Expr::cust("COUNT(*)"))
        .from(spec.kind.table())
        .cond_where(cond)
        .build_sqlx(SqliteQueryBuilder);
    sqlx::query_scalar_with::<_, i64, _>(sqlx::AssertSqlSafe(sql), values)
        .fetch_one(conn)
        .await
}

fn page_query(
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
            Expr::cust_with_values(format!("({}) IS NULL", frag.sql), frag.values.clone()),
            if *desc { Order::Desc } else { Order::Asc },
        );
        q.order_by_expr(frag.clone().into_expr(), order);
    }
    q.order_by_expr(Expr::cust(format!("{table}.rowid")), Order::Asc);
    q.limit(spec.limit).offset(spec.offset);
    q.build_sqlx(SqliteQueryBuilder)
}

/// Total matches and one page of users.
pub async fn users(conn: &mut Conn, spec: &SearchSpec) -> Result<(i64, Vec<UserRow>), sqlx::Error> {
    let cond = base_condition(spec);
    let total = count(conn, spec, cond.clone()).await?;
    if spec.limit == 0 || total == 0 {
        return Ok((total, Vec::new()));
    }
    let cols: &'static str = USER_COLUMNS;
    let (sql, values) = page_query(spec, cond, cols);
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
    let (sql, values) = page_query(spec, cond, GROUP_COLUMNS);
    let rows = sqlx::query_as_with::<_, GroupRow, _>(sqlx::AssertSqlSafe(sql), values)
        .fetch_all(conn)
        .await?;
    Ok((total, rows))
}
