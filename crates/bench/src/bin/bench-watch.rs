//! `bench-watch`: how fast the daemon's watcher (`sync.watch`, issue 17) carries a directory
//! change to the target, and what the daemon costs while nothing happens.
//!
//! A private slapd (testenv) is loaded offline with `--users` users and `--groups` groups
//! (`bench::gen_ldif`), a fresh release idservice is the target, and one `dirsync sync` makes
//! the initial copy. Then `dirsync run` starts with `sync.watch: true` and a schedule of an
//! hour (so only the watcher starts runs). Measured:
//! 1. `--changes` times: a user's `title` replaced in slapd (ldapmodify), then the target polled
//!    every 10 ms until the user shows it: the latency from the end of ldapmodify to the
//!    first read that sees the change; p50, p95 and max.
//! 2. The idle daemon: CPU time (user + system, from /proc) over `--idle-seconds`, as a share
//!    of one core, and its resident memory (VmRSS) at the end.
//!
//! Prints the figures and the goals (p95 ≤ 2 s, idle CPU < 1 %, idle RSS ≤ 50 MiB); a goal
//! missed does not make the command fail.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use bench::common::{binaries, run_dirsync, start_idservice, write_dirsync_config};
use bench::error::io;
use bench::gen_ldif::{Shape, user_dn};
use bench::{Error, Result};
use clap::Parser;
use serde_json::{Value, json};

#[derive(Parser, Debug)]
#[command(
    about = "Watch benchmark: change latency through `dirsync run` with sync.watch, idle cost"
)]
struct Args {
    /// The idservice binary (default: next to this binary, i.e. target/release).
    #[arg(long)]
    idservice: Option<PathBuf>,
    /// The dirsync binary (default: next to this binary).
    #[arg(long)]
    dirsync: Option<PathBuf>,
    #[arg(long, default_value_t = 100_000)]
    users: usize,
    #[arg(long, default_value_t = 1_000)]
    groups: usize,
    /// Changes to time.
    #[arg(long, default_value_t = 20)]
    changes: usize,
    /// How long the idle daemon is watched.
    #[arg(long, default_value_t = 60)]
    idle_seconds: u64,
}

fn main() -> ExitCode {
    let _ = rustls::crypto::ring::default_provider().install_default();
    match bench(&Args::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bench-watch: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The daemon, killed on drop.
struct Daemon {
    child: Child,
    log: PathBuf,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Daemon {
    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until the log has `n` lines containing `what`.
    fn wait_for_lines(&self, what: &str, n: usize, limit: Duration) -> Result<()> {
        let start = Instant::now();
        while self.log().matches(what).count() < n {
            if start.elapsed() > limit {
                return Err(Error::Incomplete(format!(
                    "the daemon did not log {what:?} {n} time(s) within {limit:?}:\n{}",
                    self.log()
                )));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(())
    }

    /// User + system CPU time of the process so far, from /proc/PID/stat (clock ticks).
    fn cpu_ticks(&self) -> Result<u64> {
        let path = format!("/proc/{}/stat", self.child.id());
        let stat = std::fs::read_to_string(&path).map_err(io(path))?;
        // Fields after the command name (which may hold spaces) in parentheses.
        let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
        let fields: Vec<&str> = after.split_whitespace().collect();
        // utime and stime are fields 14 and 15 of stat; `after` starts at field 3.
        let tick = |i: usize| fields.get(i).and_then(|f| f.parse::<u64>().ok());
        match (tick(11), tick(12)) {
            (Some(u), Some(s)) => Ok(u + s),
            _ => Err(Error::Incomplete(format!(
                "cannot read CPU times from {stat:?}"
            ))),
        }
    }

    /// Resident memory (VmRSS) in KiB.
    fn rss_kib(&self) -> Result<u64> {
        let path = format!("/proc/{}/status", self.child.id());
        let status = std::fs::read_to_string(&path).map_err(io(path))?;
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .ok_or_else(|| Error::Incomplete(format!("no VmRSS in {status:?}")))
    }
}

fn bench(args: &Args) -> Result<()> {
    let (idservice_bin, dirsync_bin) =
        binaries(args.idservice.as_deref(), args.dirsync.as_deref())?;
    let work = tempfile::tempdir().map_err(io("temporary directory"))?;
    let t = Instant::now();
    let slapd = testenv::Slapd::start()?;
    let shape = Shape {
        users: args.users,
        groups: args.groups,
        avg_members: 30,
        big_groups: 0,
        big_group_members: 0,
    };
    let ldif = work.path().join("directory.ldif");
    shape.write_ldif(&ldif, &slapd.base)?;
    slapd.load_ldif_offline(&ldif)?;
    let _ = std::fs::remove_file(&ldif);
    eprintln!(
        "slapd: {} users, {} groups loaded in {:.1?}",
        args.users,
        args.groups,
        t.elapsed()
    );
    let ids = start_idservice(&idservice_bin, &[], &[])?;
    let dir = work.path().join("dirsync");
    std::fs::create_dir(&dir).map_err(io(dir.display().to_string()))?;
    let config = json!({
        "ad": {"ldap": {
            "server": {"addresses": ["127.0.0.1"], "port": slapd.port, "user": slapd.sync_dn},
            "base_dn": slapd.base,
        }},
        "iid": {"scim": {"base_url": ids.url, "attribute": {"user": {"ad_bind": {"title": "title"}}}}},
        "sync": {"state_dir": "state", "schedule": "1h", "watch": true},
    });
    let secret = json!({
        "ad": {"ldap": {"server": {"password": slapd.sync_pw}}},
        "iid": {"scim": {"token": ids.token}},
    });
    write_dirsync_config(&dir, &config, &secret)?;
    let initial = run_dirsync(&dirsync_bin, &dir, &[])?;
    eprintln!("initial sync: {:.1?}", initial.wall);

    let daemon = start_daemon(&dirsync_bin, &dir)?;
    // The start's run, then the run the watcher's connection makes due.
    daemon.wait_for_lines("watcher connected", 1, Duration::from_secs(120))?;
    daemon.wait_for_lines("run finished", 2, Duration::from_secs(120))?;
    std::thread::sleep(Duration::from_secs(2));

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(io("tokio runtime"))?;
    let client = reqwest::Client::new();
    let mut latencies = Vec::new();
    for k in 0..args.changes {
        let i = 1 + k * (args.users / args.changes.max(1)).max(1);
        let title = format!("Watched {k}");
        slapd.modify(&format!(
            "dn: {}\nchangetype: modify\nreplace: title\ntitle: {title}\n-\n",
            user_dn(i, &slapd.base)
        ))?;
        let changed = Instant::now();
        let user_name = format!("user{i:06}@example.test");
        loop {
            let seen = rt.block_on(title_of(&client, &ids.url, &ids.token, &user_name))?;
            if seen.as_deref() == Some(&title) {
                break;
            }
            if changed.elapsed() > Duration::from_secs(60) {
                return Err(Error::Incomplete(format!(
                    "change {k} did not reach the target within 60 s:\n{}",
                    daemon.log()
                )));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        latencies.push(changed.elapsed());
        std::thread::sleep(Duration::from_millis(300));
    }

    std::thread::sleep(Duration::from_secs(3));
    let ticks_before = daemon.cpu_ticks()?;
    let idle_start = Instant::now();
    std::thread::sleep(Duration::from_secs(args.idle_seconds));
    let ticks = daemon.cpu_ticks()? - ticks_before;
    let idle = idle_start.elapsed();
    let rss_kib = daemon.rss_kib()?;
    if std::env::var("DIRSYNC_LOG_LEVEL").is_ok() {
        eprintln!("--- the daemon's log\n{}", daemon.log());
    }
    report(args, &mut latencies, ticks, idle, rss_kib);
    Ok(())
}

fn start_daemon(dirsync: &Path, dir: &Path) -> Result<Daemon> {
    let log = dir.join("daemon.log");
    let stderr = std::fs::File::create(&log).map_err(io(log.display().to_string()))?;
    // DIRSYNC_LOG_LEVEL=debug: the daemon logs each run's phases, printed at the end.
    let level = std::env::var("DIRSYNC_LOG_LEVEL").unwrap_or_else(|_| "info".into());
    let child = Command::new(dirsync)
        .args(["--log-level", &level, "run", "--config", "config.yml"])
        .args(["--secret", "secret.yml"])
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(stderr)
        .spawn()
        .map_err(|source| Error::Spawn {
            program: dirsync.display().to_string(),
            source,
        })?;
    Ok(Daemon { child, log })
}

/// The title of the user named `user_name` in the target, if it has one.
async fn title_of(
    client: &reqwest::Client,
    url: &str,
    token: &str,
    user_name: &str,
) -> Result<Option<String>> {
    let body: Value = client
        .get(format!("{url}/Users"))
        .query(&[("filter", format!("userName eq \"{user_name}\""))])
        .bearer_auth(token)
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    Ok(body["Resources"][0]["title"].as_str().map(str::to_string))
}

fn report(args: &Args, latencies: &mut [Duration], ticks: u64, idle: Duration, rss_kib: u64) {
    latencies.sort();
    let at = |q: f64| {
        let i = ((latencies.len() as f64 * q).ceil() as usize).clamp(1, latencies.len()) - 1;
        latencies[i]
    };
    // Linux reports CPU times in clock ticks of 1/100 s (USER_HZ).
    let cpu_share = ticks as f64 / 100.0 / idle.as_secs_f64() * 100.0;
    let rss_mib = rss_kib as f64 / 1024.0;
    let (p50, p95, max) = (at(0.50), at(0.95), at(1.0));
    println!();
    println!(
        "bench-watch: {} users, {} groups; {} changes through `dirsync run` (sync.watch)",
        args.users,
        args.groups,
        latencies.len()
    );
    println!("| figure | value | goal |");
    println!("|---|---|---|");
    let goal = |ok: bool| if ok { "met" } else { "MISSED" };
    println!("| change → target, p50 | {:.2} s | |", p50.as_secs_f64());
    println!(
        "| change → target, p95 | {:.2} s | ≤ 2 s: {} |",
        p95.as_secs_f64(),
        goal(p95 <= Duration::from_secs(2))
    );
    println!("| change → target, max | {:.2} s | |", max.as_secs_f64());
    println!(
        "| idle CPU over {:.0} s | {:.2} % of one core | < 1 %: {} |",
        idle.as_secs_f64(),
        cpu_share,
        goal(cpu_share < 1.0)
    );
    println!(
        "| idle resident memory | {:.1} MiB | ≤ 50 MiB: {} |",
        rss_mib,
        goal(rss_mib <= 50.0)
    );
}
