//! `bench-console`: how fast the administrator's console answers with many users.
//!
//! A release idservice on SQLite gets `--users` users through `/Bulk` and one group of
//! `--group-members` of them; an administrator signs in through the form, then each page is
//! fetched `--requests` times in a row (after a warm-up) and its latency percentiles printed:
//! the users page, a prefix search that finds a handful of users, a prefix search that finds
//! thousands (its first page), a user's page, and the big group's page.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use bench::common::{Endpoint, bulk_load, start_idservice};
use bench::error::io;
use bench::{Error, Result};
use clap::Parser;
use serde_json::{Value, json};

#[derive(Parser, Debug)]
#[command(about = "Benchmark the idservice console's pages with many users")]
struct Args {
    /// The idservice binary (default: `idservice` next to this binary, i.e. target/release).
    #[arg(long)]
    idservice: Option<PathBuf>,
    #[arg(long, default_value_t = 100_000)]
    users: usize,
    #[arg(long, default_value_t = 5_000)]
    group_members: usize,
    /// Requests per page (sequential).
    #[arg(long, default_value_t = 200)]
    requests: usize,
}

const ADMIN_PASSWORD: &str = "bench console password";

/// The value after `name="csrf_token" value="` in a page.
fn csrf(body: &str) -> Option<String> {
    let marker = "name=\"csrf_token\" value=\"";
    let start = body.find(marker)? + marker.len();
    Some(body[start..].split('"').next()?.to_string())
}

/// `name=value` of the Set-Cookie header for `name`.
fn cookie(resp: &reqwest::Response, name: &str) -> Option<String> {
    resp.headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|c| c.starts_with(&format!("{name}=")))
        .and_then(|c| c.split(';').next())
        .map(str::to_string)
}

/// Signs in as the bench administrator; the session cookie.
async fn sign_in(http: &reqwest::Client, root: &str) -> Result<String> {
    let form = http.get(format!("{root}/admin/signin")).send().await?;
    let pre = cookie(&form, "idservice_admin_csrf")
        .ok_or_else(|| Error::Incomplete("no sign-in form cookie".into()))?;
    let token = csrf(&form.text().await?)
        .ok_or_else(|| Error::Incomplete("no sign-in form token".into()))?;
    let resp = http
        .post(format!("{root}/admin/signin"))
        .header("cookie", pre)
        .form(&[
            ("username", "bench"),
            ("password", ADMIN_PASSWORD),
            ("csrf_token", token.as_str()),
        ])
        .send()
        .await?;
    cookie(&resp, "idservice_admin")
        .ok_or_else(|| Error::Incomplete(format!("sign-in answered {}", resp.status())))
}

/// The ids of the first `n` users (pages of 1,000 by startIndex, ids only).
async fn first_ids(http: &reqwest::Client, t: &Endpoint, n: usize) -> Result<Vec<String>> {
    let mut ids = Vec::with_capacity(n);
    while ids.len() < n {
        let page: Value = http
            .get(format!(
                "{}/Users?attributes=id&count=1000&startIndex={}",
                t.url,
                ids.len() + 1
            ))
            .bearer_auth(&t.token)
            .send()
            .await?
            .json()
            .await?;
        let got: Vec<String> = page["Resources"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|r| r["id"].as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default();
        if got.is_empty() {
            break;
        }
        ids.extend(got);
    }
    ids.truncate(n);
    Ok(ids)
}

/// Milliseconds of `n` sequential GETs of `path` (after 5 warm-up requests); each must be 200.
async fn timed(
    http: &reqwest::Client,
    root: &str,
    session: &str,
    path: &str,
    n: usize,
) -> Result<Vec<f64>> {
    let get = || {
        http.get(format!("{root}{path}"))
            .header("cookie", session)
            .send()
    };
    for _ in 0..5 {
        get().await?.bytes().await?;
    }
    let mut ms = Vec::with_capacity(n);
    for _ in 0..n {
        let started = Instant::now();
        let resp = get().await?;
        let status = resp.status();
        resp.bytes().await?;
        ms.push(started.elapsed().as_secs_f64() * 1000.0);
        if status != 200 {
            return Err(Error::Incomplete(format!("{path} answered {status}")));
        }
    }
    ms.sort_by(f64::total_cmp);
    Ok(ms)
}

fn pct(sorted: &[f64], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted.get(i).copied().unwrap_or(f64::NAN)
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
    let http = reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .build()?;
    let node = start_idservice(&bin, &[], &["--max-body-bytes", "67108864"])?;
    let t = node.endpoint();
    eprintln!("loading {} users through /Bulk...", args.users);
    let (took, created) = bulk_load(&http, &t, 0, args.users, 1000, 3).await?;
    if created != args.users {
        return Err(Error::Incomplete(format!(
            "{created} of {} users created",
            args.users
        )));
    }
    eprintln!("  {:.1} s", took.as_secs_f64());
    let members: Vec<Value> = first_ids(&http, &t, args.group_members)
        .await?
        .into_iter()
        .map(|id| json!({"value": id}))
        .collect();
    let group: Value = http
        .post(format!("{}/Groups", t.url))
        .bearer_auth(&t.token)
        .header("content-type", "application/scim+json")
        .body(
            json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
                     "displayName": "Bench big group", "members": members})
            .to_string(),
        )
        .send()
        .await?
        .json()
        .await?;
    let group_id = group["id"]
        .as_str()
        .ok_or_else(|| Error::Incomplete(format!("group not created: {group}")))?
        .to_string();
    let pw = node.data_dir().join("bench-admin.pw");
    std::fs::write(&pw, format!("{ADMIN_PASSWORD}\n")).map_err(io("password file"))?;
    std::fs::set_permissions(&pw, std::os::unix::fs::PermissionsExt::from_mode(0o600))
        .map_err(io("password file"))?;
    let out = std::process::Command::new(&bin)
        .args(["admins", "add", "bench", "--password-file"])
        .arg(&pw)
        .arg("--data")
        .arg(node.data_dir())
        .output()
        .map_err(|source| Error::Spawn {
            program: bin.display().to_string(),
            source,
        })?;
    if !out.status.success() {
        return Err(Error::Command {
            what: "admins add".into(),
            output: String::from_utf8_lossy(&out.stderr).into_owned(),
        });
    }
    let root = t.url.trim_end_matches("/scim/v2").to_string();
    let session = sign_in(&http, &root).await?;
    let some_user = first_ids(&http, &t, 1).await?.pop().unwrap_or_default();
    let pages: Vec<(String, String)> = vec![
        ("users page (first 50)".into(), "/admin/users".into()),
        (
            "prefix search, 11 matches (q=user4242)".into(),
            "/admin/users?q=user4242".into(),
        ),
        (
            "prefix search, ~11,000 matches (q=user1)".into(),
            "/admin/users?q=user1".into(),
        ),
        (
            "email prefix, other case (q=USER77777@)".into(),
            "/admin/users?q=USER77777%40".into(),
        ),
        ("a user's page".into(), format!("/admin/users/{some_user}")),
        (
            format!("group of {} members", args.group_members),
            format!("/admin/groups/{group_id}"),
        ),
    ];
    println!(
        "\n{} users, {} requests per page, sequential (ms)",
        args.users, args.requests
    );
    println!("{:<44} {:>8} {:>8} {:>8}", "page", "p50", "p95", "max");
    for (name, path) in pages {
        let ms = timed(&http, &root, &session, &path, args.requests).await?;
        println!(
            "{name:<44} {:>8.1} {:>8.1} {:>8.1}",
            pct(&ms, 0.5),
            pct(&ms, 0.95),
            pct(&ms, 1.0)
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
