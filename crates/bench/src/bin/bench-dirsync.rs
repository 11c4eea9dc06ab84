//! `bench-dirsync`: measures a full `dirsync` run on this machine (issue 3).
//!
//! A private slapd (testenv) gets `--users` inetOrgPerson users and `--groups` groupOfNames of
//! `--members-per-group` members (`gen_ldap_data.py`, loaded offline); a fresh release
//! `idservice` is the target. `dirsync sync` runs twice under `/usr/bin/time` (peak RSS of the
//! dirsync process itself): the initial run, then a run with no changes. Prints wall time,
//! objects/s (users + groups read, per second of wall time), writes and peak RSS of each.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use bench::common::{binaries, run_dirsync, start_idservice, write_dirsync_config, writes};
use bench::error::io;
use bench::{Error, Result};
use clap::Parser;
use serde_json::json;

#[derive(Parser, Debug)]
#[command(about = "Benchmark dirsync: slapd → idservice, initial run and no-change run")]
struct Args {
    /// The idservice binary (default: `idservice` next to this binary, i.e. target/release).
    #[arg(long)]
    idservice: Option<PathBuf>,
    /// The dirsync binary (default: `dirsync` next to this binary).
    #[arg(long)]
    dirsync: Option<PathBuf>,
    #[arg(long, default_value_t = 10_000)]
    users: usize,
    #[arg(long, default_value_t = 500)]
    groups: usize,
    #[arg(long, default_value_t = 20)]
    members_per_group: usize,
    /// `sync.concurrency` (default: dirsync's own default).
    #[arg(long)]
    concurrency: Option<u32>,
}

fn main() -> ExitCode {
    match bench(&Args::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bench-dirsync: {e}");
            ExitCode::FAILURE
        }
    }
}

fn bench(args: &Args) -> Result<()> {
    let (idservice_bin, dirsync_bin) =
        binaries(args.idservice.as_deref(), args.dirsync.as_deref())?;

    let t = Instant::now();
    let slapd = testenv::Slapd::start()?;
    let mpg = args.members_per_group.to_string();
    slapd.load_generated(args.users, args.groups, &["--members-per-group", &mpg])?;
    eprintln!(
        "slapd: {} users, {} groups of {} members loaded in {:.1?}",
        args.users,
        args.groups,
        args.members_per_group,
        t.elapsed()
    );
    let target = start_idservice(&idservice_bin, &["--expires", "1d"], &[])?;

    let dir = tempfile::tempdir().map_err(io("temporary directory"))?;
    let mut sync = json!({"state_dir": "state"});
    if let Some(c) = args.concurrency {
        sync["concurrency"] = json!(c);
    }
    // JSON is YAML: the config as dirsync reads it.
    let config = json!({
        "ad": {"ldap": {
            "server": {"addresses": ["127.0.0.1"], "port": slapd.port, "user": slapd.sync_dn},
            "base_dn": slapd.base,
        }},
        "iid": {"scim": {"base_url": target.url}},
        "sync": sync,
    });
    let secret = json!({
        "ad": {"ldap": {"server": {"password": slapd.sync_pw}}},
        "iid": {"scim": {"token": target.token}},
    });
    write_dirsync_config(dir.path(), &config, &secret)?;

    let initial = run_dirsync(&dirsync_bin, dir.path(), &[])?;
    let c = &initial.report["counts"];
    if c["created"] != json!(args.users) || c["groups_created"] != json!(args.groups) {
        return Err(Error::Incomplete(format!(
            "the initial run did not create everything: {:#}",
            initial.report
        )));
    }
    let second = run_dirsync(&dirsync_bin, dir.path(), &[])?;
    if writes(&second.report) != 0 {
        return Err(Error::Incomplete(format!(
            "the second run was expected to change nothing: {:#}",
            second.report
        )));
    }

    println!(
        "dirsync: slapd ({} users, {} groups × {} members) → idservice (release), {} cores",
        args.users,
        args.groups,
        args.members_per_group,
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    println!(
        "{:<10} {:>9} {:>8} {:>10} {:>8} {:>9} {:>14}",
        "run", "wall (s)", "objects", "objects/s", "writes", "members+", "peak RSS (MiB)"
    );
    for (name, m) in [("initial", &initial), ("no-change", &second)] {
        let objects = m.report["read_users"].as_u64().unwrap_or(0)
            + m.report["read_groups"].as_u64().unwrap_or(0);
        let secs = m.wall.as_secs_f64();
        println!(
            "{:<10} {:>9.2} {:>8} {:>10.0} {:>8} {:>9} {:>14.1}",
            name,
            secs,
            objects,
            objects as f64 / secs,
            writes(&m.report),
            m.report["counts"]["members_added"].as_u64().unwrap_or(0),
            m.peak_rss_kib as f64 / 1024.0
        );
    }
    println!(
        "objects = users + groups read from the directory; writes = users and groups created, \
         updated or deleted; members+ = memberships added; wall time includes process start."
    );
    Ok(())
}
