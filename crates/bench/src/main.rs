//! `bench-idservice`: measures idservice throughput and lookup latency on this machine.
//!
//! 1. A fresh instance gets `--bulk-users` users through `/Bulk` (batches of `--batch`,
//!    `--bulk-concurrency` requests in flight).
//! 2. A second fresh instance gets `--single-users` users through single POSTs
//!    (`--single-concurrency` in flight).
//! 3. Against the first instance (holding all bulk users), `--lookups` sequential
//!    `userName eq` and as many `externalId eq` requests measure latency percentiles.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bench::common::{IdService, bulk_load, start_idservice, user};
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

async fn run(args: Args) -> Result<(), String> {
    let bin = match args.idservice {
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
    let a = start_idservice(&bin, &[], &["--max-body-bytes", "67108864"])?;
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
    let b = start_idservice(&bin, &[], &["--max-body-bytes", "67108864"])?;
    let (single_t, single_n) =
        single_load(&client, &b, args.single_users, args.single_concurrency).await?;
    drop(b);
    eprintln!(
        "lookups: {} userName eq and {} externalId eq against {} users...",
        args.lookups, args.lookups, bulk_n
    );
    // Warm up the connection and the page cache.
    let _ = lookups(&client, &a, args.bulk_users, 50, false).await?;
    let by_name = lookups(&client, &a, args.bulk_users, args.lookups, false).await?;
    let by_ext = lookups(&client, &a, args.bulk_users, args.lookups, true).await?;

    println!();
    println!("| measurement | result |");
    println!("|---|---|");
    println!(
        "| Bulk: {} users created in {:.1} s | {:.0} users/s |",
        bulk_n,
        bulk_t.as_secs_f64(),
        bulk_n as f64 / bulk_t.as_secs_f64()
    );
    println!(
        "| Single POST: {} users created in {:.1} s | {:.0} users/s |",
        single_n,
        single_t.as_secs_f64(),
        single_n as f64 / single_t.as_secs_f64()
    );
    for (name, l) in [("userName eq", &by_name), ("externalId eq", &by_ext)] {
        println!(
            "| {name} lookup ({} requests, {} users stored) | p50 {:.2} ms, p95 {:.2} ms, p99 {:.2} ms |",
            l.len(),
            bulk_n,
            pct(l, 50.0),
            pct(l, 95.0),
            pct(l, 99.0)
        );
    }
    if bulk_n != args.bulk_users || single_n != args.single_users {
        return Err(format!(
            "expected {} bulk and {} single users, stored {bulk_n} and {single_n}",
            args.bulk_users, args.single_users
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
