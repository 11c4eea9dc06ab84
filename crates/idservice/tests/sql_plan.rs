//! The filter → SQL translation uses the indexes for the hot lookups (no table scan).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use idservice::store::Engine;
use idservice::store::Store;
use idservice::store::filter_sql::{Kind, condition};
use sea_query::{Expr, Query, SqliteQueryBuilder};
use sea_query_sqlx::SqlxBinder;
use sqlx::Row;

async fn plan(store: &Store, kind: Kind, filter: &str) -> String {
    let f = scim::filter::parse(filter).unwrap();
    let (sql, values) = Query::select()
        .expr(Expr::cust("id"))
        .from(kind.table())
        .cond_where(condition(kind, &f, Engine::Sqlite).unwrap())
        .build_sqlx(SqliteQueryBuilder);
    let mut conn = store.read().await.unwrap();
    let rows = sqlx::query_with(
        sqlx::AssertSqlSafe(format!("EXPLAIN QUERY PLAN {sql}")),
        values,
    )
    .fetch_all(&mut *conn)
    .await
    .unwrap();
    rows.iter()
        .map(|r| r.get::<String, _>("detail"))
        .collect::<Vec<_>>()
        .join("; ")
}

#[tokio::test]
async fn hot_filters_use_indexes() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).await.unwrap();
    let p = plan(&store, Kind::User, "userName eq \"A@example.jp\"").await;
    assert!(p.contains("users_user_name_lc"), "{p}");
    let p = plan(&store, Kind::User, "externalId eq \"guid\"").await;
    assert!(p.contains("users_external_id"), "{p}");
    let p = plan(
        &store,
        Kind::User,
        "userName eq \"a@x.jp\" or externalId eq \"g\"",
    )
    .await;
    assert!(
        p.contains("users_user_name_lc") && p.contains("users_external_id"),
        "{p}"
    );
    let p = plan(&store, Kind::Group, "displayName eq \"Sales\"").await;
    assert!(p.contains("groups_display_name_lc"), "{p}");
    let p = plan(
        &store,
        Kind::User,
        "meta.lastModified gt \"2026-01-01T00:00:00Z\"",
    )
    .await;
    assert!(p.contains("users_last_modified"), "{p}");
}
