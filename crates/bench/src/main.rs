//! `bench-idservice`: measures idservice throughput and lookup latency on this machine.
//!
//! On each engine, a fresh, empty target:
//! 1. gets `--bulk-users` users through `/Bulk` (batches of `--batch`, `--bulk-concurrency`
//!    requests in flight);
//! 2. then `--single-users` more through single POSTs (`--single-concurrency` in flight);
//! 3. `--lookups` sequential `userName eq` and as many `externalId eq` requests measure
//!    latency percentiles;
//! 4. the full list, pages of 1,000, by `startIndex` and by `cursor`, as `dirsync --full`
//!    reads it (`excludedAttributes=groups`: the planner never compares a user's groups).
//!
//! The engines: SQLite (one node, unless `--skip-sqlite`), then, with `--database URL` (an
//! empty PostgreSQL database; password from `--database-password-file` or PGPASSWORD) or
//! `--private-postgres`, `--nodes` idservice nodes on PostgreSQL behind HAProxy. The figures
//! are printed side by side.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bench::common::{Endpoint, bulk_load, start_idservice, user};
use bench::error::io;
use bench::postgres::{Nodes, PgArgs};
use bench::{Error, Result};
use clap::Parser;
use rand::Rng;
use serde_json::Value;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

#[derive(Parser, Debug)]
#[command(about = "Benchmark idservice: bulk and single creation, indexed lookups")]
struct Args {
    /// The idservice binary (default: `idservice` next to this binary, i.e. target/release).
    #[arg(long)]
    idservice: Option<PathBuf>,
    #[arg(long, default_value_t = 100_000)]
    bulk_users: usize,
    #[arg(long, default_value_t = 1000)]
    batch: usize,
    #[arg(long, default_value_t = 3)]
    bulk_concurrency: usize,
    #[arg(long, default_value_t = 20_000)]
    single_users: usize,
    #[arg(long, default_value_t = 16)]
    single_concurrency: usize,
    #[arg(long, default_value_t = 2000)]
    lookups: usize,
    /// How many times the full list by cursor is read (right after the load, PostgreSQL's
    /// autovacuum of the new rows runs at the same time; later passes show the settled figure).
    #[arg(long, default_value_t = 2)]
    list_passes: usize,
    /// Measure PostgreSQL only.
    #[arg(long)]
    skip_sqlite: bool,
    #[command(flatten)]
    pg: PgArgs,
}

/// What the full list reads of a page: how many resources (not parsed further: the figure is
/// the service's, not a client's JSON tree building), the total and the next cursor.
#[derive(serde::Deserialize)]
struct PageSummary {
    #[serde(rename = "Resources", default)]
    resources: Vec<serde::de::IgnoredAny>,
    #[serde(rename = "totalResults", default)]
    total: u64,
    #[serde(rename = "nextCursor")]
    next_cursor: Option<String>,
}

/// Seconds to read every user as `dirsync --full` does (without `groups`), pages of 1,000: by
/// `startIndex`, or by `cursor` (keyset).
async fn full_list(
    client: &reqwest::Client,
    inst: &Endpoint,
    by_cursor: bool,
) -> Result<(f64, usize)> {
    let t = Instant::now();
    let (mut seen, mut start, mut cursor) = (0usize, 1usize, String::new());
    loop {
        let page = if by_cursor {
            ("cursor", cursor.clone())
        } else {
            ("startIndex", start.to_string())
        };
        let body = client
            .get(format!("{}/Users", inst.url))
            .query(&[
                ("count", "1000".to_string()),
                ("excludedAttributes", "groups".to_string()),
                page,
            ])
            .bearer_auth(&inst.token)
            .send()
            .await?
            .bytes()
            .await?;
        let v: PageSummary = serde_json::from_slice(&body)?;
        let got = v.resources.len();
        seen += got;
        start += got;
        match v.next_cursor {
            Some(c) if by_cursor && got > 0 => cursor = c,
            _ if by_cursor || got == 0 || seen as u64 >= v.total => break,
            _ => {}
        }
    }
    Ok((t.elapsed().as_secs_f64(), seen))
}

async fn single_load(
    client: &reqwest::Client,
    inst: &Endpoint,
    first: usize,
    n: usize,
    conc: usize,
) -> Result<(Duration, usize)> {
    let sem = Arc::new(Semaphore::new(conc));
    let mut set = JoinSet::new();
    let started = Instant::now();
    for i in first..first + n {
        let permit = sem.clone().acquire_owned().await?;
        let req = client
            .post(format!("{}/Users", inst.url))
            .bearer_auth(&inst.token)
            .header("content-type", "application/scim+json")
            .body(user(i).to_string());
        set.spawn(async move {
            let _permit = permit;
            let resp = req.send().await?;
            let ok = resp.status().as_u16() == 201;
            let _ = resp.bytes().await;
            Ok::<usize, Error>(usize::from(ok))
        });
        // Reap finished tasks as we go so the set stays small.
        while let Some(r) = set.try_join_next() {
            r??;
        }
    }
    while let Some(r) = set.join_next().await {
        r??;
    }
    let elapsed = started.elapsed();
    // Count via the API rather than trusting the reaped tasks.
    let total = client
        .get(format!("{}/Users?count=0", inst.url))
        .bearer_auth(&inst.token)
        .send()
        .await?;
    let v: Value = total.json().await?;
    let stored = v["totalResults"].as_u64().unwrap_or(0) as usize;
    Ok((elapsed, stored.saturating_sub(first)))
}

/// Sequential lookups; returns latencies in ms, sorted.
async fn lookups(
    client: &reqwest::Client,
    inst: &Endpoint,
    n_users: usize,
    count: usize,
    by_external_id: bool,
) -> Result<Vec<f64>> {
    let mut rng = rand::rng();
    let mut lat = Vec::with_capacity(count);
    for _ in 0..count {
        let i = rng.random_range(0..n_users.max(1));
        let filter = if by_external_id {
            format!("externalId eq \"ext-{i:08}\"")
        } else {
            format!("userName eq \"user{i}@bench.example\"")
        };
        let req = client
            .get(format!("{}/Users", inst.url))
            .query(&[("filter", filter.as_str())])
            .bearer_auth(&inst.token)
            .build()?;
        let t = Instant::now();
        let resp = client.execute(req).await?;
        let v: Value = resp.json().await?;
        lat.push(t.elapsed().as_secs_f64() * 1000.0);
        if v["totalResults"] != 1 {
            return Err(Error::Incomplete(format!(
                "lookup {filter} found {}",
                v["totalResults"]
            )));
        }
    }
    lat.sort_by(f64::total_cmp);
    Ok(lat)
}

fn pct(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let idx = ((p / 100.0) * (sorted.len() as f64 - 1.0)).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

/// What one engine measured.
struct Figures {
    engine: String,
    bulk: (Duration, usize),
    single: (Duration, usize),
    by_name: Vec<f64>,
    by_ext: Vec<f64>,
    by_index: (f64, usize),
    by_cursor: (f64, usize),
    /// The cursor list read again, `--list-passes` − 1 times (seconds each).
    again: Vec<f64>,
}

impl Figures {
    fn bulk_rate(&self) -> f64 {
        self.bulk.1 as f64 / self.bulk.0.as_secs_f64()
    }
}

fn rate((t, n): (Duration, usize)) -> String {
    if n == 0 {
        return "-".into();
    }
    format!(
        "{:.0} users/s ({n} in {:.1} s)",
        n as f64 / t.as_secs_f64(),
        t.as_secs_f64()
    )
}

fn latency(l: &[f64]) -> String {
    format!(
        "p50 {:.2} ms, p95 {:.2} ms, p99 {:.2} ms",
        pct(l, 50.0),
        pct(l, 95.0),
        pct(l, 99.0)
    )
}

/// Prints the figures of every engine side by side as a Markdown table.
fn print_table(all: &[Figures]) {
    let cols = |f: &dyn Fn(&Figures) -> String| all.iter().map(f).collect::<Vec<_>>().join(" | ");
    println!();
    println!("| measurement | {} |", cols(&|f| f.engine.clone()));
    println!("|---|{}", "---|".repeat(all.len()));
    println!("| Bulk ingest | {} |", cols(&|f| rate(f.bulk)));
    println!("| single POSTs | {} |", cols(&|f| rate(f.single)));
    println!(
        "| `userName eq` lookup | {} |",
        cols(&|f| latency(&f.by_name))
    );
    println!(
        "| `externalId eq` lookup | {} |",
        cols(&|f| latency(&f.by_ext))
    );
    println!(
        "| full list by `startIndex`, pages of 1,000, no `groups` | {} |",
        cols(&|f| format!("{:.2} s ({} users)", f.by_index.0, f.by_index.1))
    );
    println!(
        "| full list by `cursor` (the read `dirsync --full` makes) | {} |",
        cols(&|f| format!("{:.2} s ({} users)", f.by_cursor.0, f.by_cursor.1))
    );
    if all.iter().any(|f| !f.again.is_empty()) {
        println!(
            "| the same, read again | {} |",
            cols(&|f| f
                .again
                .iter()
                .map(|s| format!("{s:.2} s"))
                .collect::<Vec<_>>()
                .join(", "))
        );
    }
}

/// Runs every step against `target`, which holds no user yet.
async fn measure(
    client: &reqwest::Client,
    target: &Endpoint,
    engine: String,
    args: &Args,
) -> Result<Figures> {
    eprintln!(
        "{engine}: Bulk, {} users in batches of {} ({} requests in flight)...",
        args.bulk_users, args.batch, args.bulk_concurrency
    );
    let bulk = bulk_load(
        client,
        target,
        0,
        args.bulk_users,
        args.batch,
        args.bulk_concurrency,
    )
    .await?;
    eprintln!(
        "{engine}: {} single POSTs ({} in flight)...",
        args.single_users, args.single_concurrency
    );
    let single = single_load(
        client,
        target,
        args.bulk_users,
        args.single_users,
        args.single_concurrency,
    )
    .await?;
    eprintln!(
        "{engine}: {} userName eq and {} externalId eq lookups...",
        args.lookups, args.lookups
    );
    // Warm up the connections and the caches.
    let _ = lookups(client, target, args.bulk_users, 50, false).await?;
    let by_name = lookups(client, target, args.bulk_users, args.lookups, false).await?;
    let by_ext = lookups(client, target, args.bulk_users, args.lookups, true).await?;
    eprintln!("{engine}: the full list by startIndex, then by cursor...");
    let by_index = full_list(client, target, false).await?;
    let by_cursor = full_list(client, target, true).await?;
    let mut again = Vec::new();
    for _ in 1..args.list_passes {
        let (secs, n) = full_list(client, target, true).await?;
        if n != by_cursor.1 {
            return Err(Error::Incomplete(format!(
                "{engine}: a repeated full list saw {n} users"
            )));
        }
        again.push(secs);
    }
    let figures = Figures {
        engine,
        bulk,
        single,
        by_name,
        by_ext,
        by_index,
        by_cursor,
        again,
    };
    check(&figures, args)?;
    Ok(figures)
}

/// Fails when a step did not do all its work (the figures would flatter).
fn check(f: &Figures, args: &Args) -> Result<()> {
    if f.bulk.1 != args.bulk_users || f.single.1 != args.single_users {
        return Err(Error::Incomplete(format!(
            "{}: expected {} bulk and {} single users, stored {} and {}",
            f.engine, args.bulk_users, args.single_users, f.bulk.1, f.single.1
        )));
    }
    let all = args.bulk_users + args.single_users;
    if f.by_index.1 != all || f.by_cursor.1 != all {
        return Err(Error::Incomplete(format!(
            "{}: the full lists saw {} and {} of {all} users",
            f.engine, f.by_index.1, f.by_cursor.1
        )));
    }
    Ok(())
}

async fn run(args: Args) -> Result<()> {
    let bin = match args.idservice.clone() {
        Some(p) => p,
        None => std::env::current_exe()
            .map_err(io("current executable"))?
            .with_file_name("idservice"),
    };
    if !bin.exists() {
        return Err(Error::MissingIdservice(bin));
    }
    let client = reqwest::Client::builder()
        .no_proxy()
        .pool_max_idle_per_host(64)
        .build()?;
    let serve = ["--max-body-bytes", "67108864"];
    let mut all = Vec::new();
    if !args.skip_sqlite {
        let node = start_idservice(&bin, &[], &serve)?;
        all.push(measure(&client, &node.endpoint(), "SQLite".into(), &args).await?);
    }
    if let Some(db) = args.pg.database()? {
        let nodes = Nodes::start(&bin, &db, args.pg.nodes, &[], &serve)?;
        let engine = match args.pg.nodes {
            0 | 1 => "PostgreSQL, one node".to_string(),
            n => format!("PostgreSQL, {n} nodes behind HAProxy"),
        };
        all.push(measure(&client, &nodes.endpoint, engine, &args).await?);
    }
    print_table(&all);
    if let [sqlite, pg] = all.as_slice() {
        println!(
            "\nBulk ingest, PostgreSQL / SQLite: {:.2}",
            pg.bulk_rate() / sqlite.bulk_rate()
        );
    }
    Ok(())
}

fn main() -> ExitCode {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let args = Args::parse();
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
