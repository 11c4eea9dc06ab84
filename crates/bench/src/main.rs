//! `bench-idservice`: measures idservice throughput and lookup latency on this machine.
//!
//! 1. A fresh instance gets `--bulk-users` users through `/Bulk` (batches of `--batch`,
//!    `--bulk-concurrency` requests in flight).
//! 2. A second fresh instance gets `--single-users` users through single POSTs
//!    (`--single-concurrency` in flight).
//! 3. Against the first instance (holding all bulk users), `--lookups` sequential
//!    `userName eq` and as many `externalId eq` requests measure latency percentiles.
//! 4. The full list of the first instance, pages of 1,000, by `startIndex` and by `cursor`.
//!
//! With `--database URL` (an empty PostgreSQL database; password from
//! `--database-password-file` or PGPASSWORD) the first instance runs on it and step 2 is
//! skipped (a second fresh instance would need a second database).

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bench::common::{IdService, bulk_load, start_idservice, start_idservice_on, user};
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
    /// Run the bulk instance on this PostgreSQL database (must be empty) instead of SQLite.
    #[arg(long)]
    database: Option<String>,
    /// The PostgreSQL password file (first line), for `--database`.
    #[arg(long, requires = "database")]
    database_password_file: Option<PathBuf>,
}

/// Seconds to read every user, pages of 1,000: by `startIndex`, or by `cursor` (keyset).
async fn full_list(
    client: &reqwest::Client,
    inst: &IdService,
    by_cursor: bool,
) -> Result<(f64, usize), String> {
    let t = Instant::now();
    let (mut seen, mut start, mut cursor) = (0usize, 1usize, String::new());
    loop {
        let page = if by_cursor {
            ("cursor", cursor.clone())
        } else {
            ("startIndex", start.to_string())
        };
        let url = reqwest::Url::parse_with_params(
            &format!("{}/Users", inst.url),
            [("count", "1000".to_string()), page],
        )
        .map_err(|e| e.to_string())?;
        let v: Value = client
            .get(url)
            .bearer_auth(&inst.token)
            .send()
            .await
            .map_err(|e| e.to_string())?
            .json()
            .await
            .map_err(|e| e.to_string())?;
        let got = v["Resources"].as_array().map_or(0, Vec::len);
        seen += got;
        start += got;
        let total = v["totalResults"].as_u64().unwrap_or(0);
        match v["nextCursor"].as_str() {
            Some(c) if by_cursor && got > 0 => cursor = c.to_string(),
            _ if by_cursor || got == 0 || seen as u64 >= total => break,
            _ => {}
        }
    }
    Ok((t.elapsed().as_secs_f64(), seen))
}

async fn single_load(
    client: &reqwest::Client,
    inst: &IdService,
    n: usize,
    conc: usize,
) -> Result<(Duration, usize), String> {
    let sem = Arc::new(Semaphore::new(conc));
    let mut set = JoinSet::new();
    let started = Instant::now();
    for i in 0..n {
        let permit = sem
            .clone()
            .acquire_owned()
            .await
            .map_err(|e| e.to_string())?;
        let req = client
            .post(format!("{}/Users", inst.url))
            .bearer_auth(&inst.token)
            .header("content-type", "application/scim+json")
            .body(user(i).to_string());
        set.spawn(async move {
            let _permit = permit;
            let resp = req.send().await.map_err(|e| e.to_string())?;
            let ok = resp.status().as_u16() == 201;
            let _ = resp.bytes().await;
            Ok::<usize, String>(usize::from(ok))
        });
        // Reap finished tasks as we go so the set stays small.
        while let Some(r) = set.try_join_next() {
            r.map_err(|e| e.to_string())??;
        }
    }
    let mut created = 0;
    while let Some(r) = set.join_next().await {
        created += r.map_err(|e| e.to_string())??;
    }
    // Count via the API rather than trusting the reaped tasks.
    let total = client
        .get(format!("{}/Users?count=0", inst.url))
        .bearer_auth(&inst.token)
        .send()
        .await
        .map_err(|e| e.to_string())?;
    let v: Value = total.json().await.map_err(|e| e.to_string())?;
    let _ = created;
    Ok((
        started.elapsed(),
        v["totalResults"].as_u64().unwrap_or(0) as usize,
    ))
}

/// Sequential lookups; returns latencies in ms, sorted.
async fn lookups(
    client: &reqwest::Client,
    inst: &IdService,
    n_users: usize,
    count: usize,
    by_external_id: bool,
) -> Result<Vec<f64>, String> {
    let mut rng = rand::rng();
    let mut lat = Vec::with_capacity(count);
    for _ in 0..count {
        let i = rng.random_range(0..n_users.max(1));
        let filter = if by_external_id {
            format!("externalId eq \"ext-{i:08}\"")
        } else {
            format!("userName eq \"user{i}@bench.example\"")
        };
        let url = reqwest::Url::parse_with_params(
            &format!("{}/Users", inst.url),
            [("filter", filter.as_str())],
        )
        .map_err(|e| e.to_string())?;
        let t = Instant::now();
        let resp = client
            .get(url)
            .bearer_auth(&inst.token)
            .send()
            .await
            .map_err(|e| e.to_string())?;
        let v: Value = resp.json().await.map_err(|e| e.to_string())?;
        lat.push(t.elapsed().as_secs_f64() * 1000.0);
        if v["totalResults"] != 1 {
            return Err(format!("lookup {filter} found {}", v["totalResults"]));
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

/// The idservice database options of `--database` (empty: SQLite in a temporary directory).
fn db_args(args: &Args) -> Vec<String> {
    let mut db = Vec::new();
    if let Some(url) = &args.database {
        db.extend(["--database".to_string(), url.clone()]);
        if let Some(f) = &args.database_password_file {
            db.extend([
                "--database-password-file".to_string(),
                f.display().to_string(),
            ]);
        }
    }
    db
}

/// What one run measured.
struct Figures {
    bulk: (Duration, usize),
    single: (Duration, usize),
    by_name: Vec<f64>,
    by_ext: Vec<f64>,
    by_index: (f64, usize),
    by_cursor: (f64, usize),
    engine: &'static str,
}

/// Prints the figures as a Markdown table.
fn print_table(f: &Figures) {
    println!();
    println!("| measurement ({}) | result |", f.engine);
    println!("|---|---|");
    for (name, (t, n)) in [("Bulk", f.bulk), ("Single POST", f.single)] {
        if n > 0 {
            println!(
                "| {name}: {n} users created in {:.1} s | {:.0} users/s |",
                t.as_secs_f64(),
                n as f64 / t.as_secs_f64()
            );
        }
    }
    for (name, l) in [("userName eq", &f.by_name), ("externalId eq", &f.by_ext)] {
        println!(
            "| {name} lookup ({} requests, {} users stored) | p50 {:.2} ms, p95 {:.2} ms, p99 {:.2} ms |",
            l.len(),
            f.bulk.1,
            pct(l, 50.0),
            pct(l, 95.0),
            pct(l, 99.0)
        );
    }
    for (name, (secs, n)) in [("startIndex", f.by_index), ("cursor", f.by_cursor)] {
        println!("| full list by {name}: {n} users, pages of 1,000 | {secs:.2} s |");
    }
}

async fn run(args: Args) -> Result<(), String> {
    let bin = match args.idservice.clone() {
        Some(p) => p,
        None => std::env::current_exe()
            .map_err(|e| e.to_string())?
            .with_file_name("idservice"),
    };
    if !bin.exists() {
        return Err(format!(
            "{} not found; build it with `cargo build --release -p idservice` or pass --idservice",
            bin.display()
        ));
    }
    let client = reqwest::Client::builder()
        .no_proxy()
        .pool_max_idle_per_host(64)
        .build()
        .map_err(|e| e.to_string())?;

    eprintln!(
        "bulk: creating {} users in batches of {} ({} concurrent)...",
        args.bulk_users, args.batch, args.bulk_concurrency
    );
    let db = db_args(&args);
    let a = start_idservice_on(&bin, &db, &[], &["--max-body-bytes", "67108864"])?;
    let (bulk_t, bulk_n) = bulk_load(
        &client,
        &a,
        args.bulk_users,
        args.batch,
        args.bulk_concurrency,
    )
    .await?;
    eprintln!(
        "single: creating {} users with single POSTs ({} concurrent)...",
        args.single_users, args.single_concurrency
    );
    let single_users = if db.is_empty() { args.single_users } else { 0 };
    let (single_t, single_n) = if single_users > 0 {
        let b = start_idservice(&bin, &[], &["--max-body-bytes", "67108864"])?;
        single_load(&client, &b, single_users, args.single_concurrency).await?
    } else {
        (Duration::from_secs(1), 0)
    };
    eprintln!(
        "lookups: {} userName eq and {} externalId eq against {} users...",
        args.lookups, args.lookups, bulk_n
    );
    // Warm up the connection and the page cache.
    let _ = lookups(&client, &a, args.bulk_users, 50, false).await?;
    let by_name = lookups(&client, &a, args.bulk_users, args.lookups, false).await?;
    let by_ext = lookups(&client, &a, args.bulk_users, args.lookups, true).await?;
    eprintln!("full list: every user by startIndex, then by cursor (pages of 1,000)...");
    let by_index = full_list(&client, &a, false).await?;
    let by_cursor = full_list(&client, &a, true).await?;

    print_table(&Figures {
        bulk: (bulk_t, bulk_n),
        single: (single_t, single_n),
        by_name,
        by_ext,
        by_index,
        by_cursor,
        engine: if db.is_empty() {
            "SQLite"
        } else {
            "PostgreSQL"
        },
    });
    if bulk_n != args.bulk_users || single_n != single_users {
        return Err(format!(
            "expected {} bulk and {single_users} single users, stored {bulk_n} and {single_n}",
            args.bulk_users
        ));
    }
    if by_index.1 != bulk_n || by_cursor.1 != bulk_n {
        return Err(format!(
            "the full lists saw {} and {} of {bulk_n} users",
            by_index.1, by_cursor.1
        ));
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
