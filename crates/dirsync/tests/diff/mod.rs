//! The differential harness (issue 22): a seeded history of directory operations is applied
//! to a real directory, `dirsync` runs incrementally after every batch, and after every run
//! the harness asserts that
//! - a full dry run (`dirsync sync --full --dry-run`) plans nothing: the incremental run left
//!   the target exactly where a full run would, and
//! - the target equals what a fresh sync of the same directory into an empty `idservice`
//!   gives (users, attributes, states, groups and memberships, compared by externalId).
//!
//! On a failure it shrinks the history (dropping operations while the replay still fails)
//! and panics with the seed, the shortest history found and the difference.

pub mod directory;
pub mod history;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use testenv::IdService;

use crate::common::{Run, Target, merge, parse_run};
use directory::{Backend, Directory};
use history::{History, Model, Op, dn_key};

/// Operations per incremental run.
pub const PER_RUN: usize = 10;

/// Runs one seed: `runs` incremental runs of [`PER_RUN`] operations each. Panics with the
/// shrunken history on a difference.
pub fn check_seed(backend: Backend, seed: u64, runs: usize) {
    let started = Instant::now();
    let mut world = World::start(backend);
    let history = history::generate(seed, &world.layout(), runs, PER_RUN);
    let outcome = world.replay(&history);
    eprintln!(
        "differential {backend:?} seed {seed}: {} operations in {runs} runs ({} sent to the \
         directory; {} incremental and {} full runs planned {} writes), {:.1} s",
        history.op_count(),
        world.stats.sent,
        world.stats.incremental,
        world.stats.full,
        world.stats.writes,
        started.elapsed().as_secs_f64()
    );
    if let Err(failure) = outcome {
        drop(world);
        let failing = History {
            setup: history.setup.clone(),
            runs: history.runs[..=failure.run].to_vec(),
        };
        let (shrunk, last) = shrink(backend, failing, failure);
        panic!(
            "differential {backend:?}, seed {seed}: incremental and full runs differ.\n\
             Shortest history found ({} operations; replay it with diff::replay_history):\n{}\n\
             Failure at incremental run {}: {}",
            shrunk.op_count(),
            render(&shrunk),
            last.run + 1,
            last.message
        );
    }
}

/// Replays a literal history (a regression test of a shrunken one); panics on a difference.
pub fn replay_history(backend: Backend, runs: Vec<Vec<Op>>) {
    let history = History {
        setup: history::setup(),
        runs,
    };
    let mut world = World::start(backend);
    if let Err(f) = world.replay(&history) {
        panic!("run {}: {}", f.run + 1, f.message);
    }
}

/// The history as Rust, for a regression test.
fn render(history: &History) -> String {
    let mut out = String::from("vec![\n");
    for run in &history.runs {
        out.push_str("    vec![\n");
        for op in run {
            out.push_str(&format!("        Op::{op:?},\n"));
        }
        out.push_str("    ],\n");
    }
    out.push(']');
    out.replace("member: User(", "member: Member::User(")
        .replace("member: Group(", "member: Member::Group(")
}

/// Why a replay failed: a difference the harness found, or the directory or idservice
/// refusing what the harness asked.
#[derive(Debug, thiserror::Error)]
pub enum Mismatch {
    #[error("the directory refused {op} ({effect}): {source}")]
    Refused {
        op: String,
        effect: String,
        source: Box<testenv::Error>,
    },
    #[error(transparent)]
    Testenv(#[from] testenv::Error),
    #[error("the directory's members never matched the model: {0}")]
    MembersNeverSettled(String),
    #[error("no directory user at the refused DN {0}")]
    NoUserAtRefusedDn(String),
    #[error("{what}: exit {code}, report {report:#}\nstderr: {stderr}")]
    RunFailed {
        what: String,
        code: i32,
        report: Box<Value>,
        stderr: String,
    },
    #[error("the run was not incremental: {0}")]
    NotIncremental(Box<Value>),
    #[error(
        "a full run would still do {count} operations:\n{full:#}\n(the incremental run planned \
         {incremental:#})"
    )]
    FullRunWouldWrite {
        count: usize,
        full: Box<Value>,
        incremental: Box<Value>,
    },
    #[error("the full run skips {full:?} where the incremental run skipped {incremental:?}")]
    SkipsDiffer {
        full: Vec<Value>,
        incremental: Vec<Value>,
    },
    #[error("the target differs from a fresh sync:\n{0}")]
    DiffersFromFresh(String),
}

#[derive(Debug, Clone)]
pub struct Failure {
    /// Index of the incremental run after which a check failed.
    pub run: usize,
    pub message: String,
}

/// Drops operations (halves, quarters, … single ones) while the replay still fails, within
/// `DIRSYNC_DIFF_SHRINK_SECS` (default 300 s).
fn shrink(backend: Backend, mut history: History, mut failure: Failure) -> (History, Failure) {
    let budget = std::env::var("DIRSYNC_DIFF_SHRINK_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(300u64);
    let deadline = Instant::now() + Duration::from_secs(budget);
    let mut chunk = history.op_count().div_ceil(2).max(1);
    loop {
        let mut start = 0;
        while start < history.op_count() && Instant::now() < deadline {
            let candidate = without(&history, start, chunk);
            let mut world = World::start(backend);
            match world.replay(&candidate) {
                Err(f) => {
                    eprintln!(
                        "shrink: {} operations still fail ({})",
                        candidate.op_count(),
                        f.message.lines().next().unwrap_or_default()
                    );
                    history = History {
                        setup: candidate.setup,
                        runs: candidate.runs[..=f.run].to_vec(),
                    };
                    failure = f;
                }
                Ok(()) => start += chunk,
            }
        }
        if chunk == 1 || Instant::now() >= deadline {
            break;
        }
        chunk = chunk.div_ceil(2);
    }
    (history, failure)
}

/// The history without the operations `start..start + len` (counted across runs); empty
/// runs stay, so later operations keep their run.
fn without(history: &History, start: usize, len: usize) -> History {
    let mut i = 0;
    let runs = history
        .runs
        .iter()
        .map(|run| {
            run.iter()
                .filter(|_| {
                    let keep = i < start || i >= start + len;
                    i += 1;
                    keep
                })
                .cloned()
                .collect()
        })
        .collect();
    History {
        setup: history.setup.clone(),
        runs,
    }
}

/// A directory, the target the agent keeps in step, and the agent's files.
struct World {
    directory: Box<dyn Directory>,
    target: Target,
    model: Model,
    dir: tempfile::TempDir,
    fresh_runs: u32,
    stats: Stats,
}

/// What a replay did, printed so that a pass can be told from a history that did nothing.
#[derive(Default)]
struct Stats {
    /// Directory changes sent.
    sent: usize,
    incremental: usize,
    full: usize,
    /// Operations the runs after the initial one planned.
    writes: usize,
}

impl World {
    fn start(backend: Backend) -> World {
        let directory = directory::start(backend);
        let target = Target::Id(IdService::start().expect("start idservice"));
        let model = Model::new(directory.layout());
        let dir = tempfile::Builder::new()
            .prefix("dirsync-diff-")
            .tempdir()
            .expect("tempdir");
        World {
            directory,
            target,
            model,
            dir,
            fresh_runs: 0,
            stats: Stats::default(),
        }
    }

    fn layout(&self) -> history::Layout {
        self.directory.layout()
    }

    /// Applies the setup, syncs fully, then each run's operations followed by an
    /// incremental sync and the checks.
    fn replay(&mut self, history: &History) -> Result<(), Failure> {
        let fail = |run: usize| {
            move |m: Mismatch| Failure {
                run,
                message: m.to_string(),
            }
        };
        self.apply(&history.setup).map_err(fail(0))?;
        let config = self.config("main", &self.target);
        let first = self.sync(&config, &[]);
        self.assert_run(&first, "initial sync").map_err(fail(0))?;
        let mut purged = self.purge_refused(&first).map_err(fail(0))?;
        for (i, ops) in history.runs.iter().enumerate() {
            self.apply(ops).map_err(fail(i))?;
            let run = self.sync(&config, &[]);
            self.assert_run(&run, "incremental run").map_err(fail(i))?;
            // After a run that skipped objects because of the target's state, the agent
            // reconciles fully (the fix is made on the target); every other run is incremental.
            let full_after_purge = purged
                && run.report["full_reason"]
                    == json!("the last run skipped objects because of the target's state");
            if run.report["mode"] != json!("incremental") && !full_after_purge {
                return Err(fail(i)(Mismatch::NotIncremental(Box::new(
                    run.report["full_reason"].clone(),
                ))));
            }
            if full_after_purge {
                self.stats.full += 1;
            } else {
                self.stats.incremental += 1;
            }
            self.stats.writes += run.plan["operations"].as_array().map_or(0, Vec::len);
            self.check(&config, &run).map_err(fail(i))?;
            purged = self.purge_refused(&run).map_err(fail(i))?;
        }
        Ok(())
    }

    /// Does what the report tells the administrator for a user re-created in the directory
    /// while its old target user is pending deletion: purge the old one. True when it did.
    fn purge_refused(&self, run: &Run) -> Result<bool, Mismatch> {
        let mut purged = false;
        for s in skipped(run) {
            if s["kind"] != json!("recreated_user") {
                continue;
            }
            let dn = dn_key(s["object"].as_str().unwrap_or_default());
            let user = self
                .model
                .users
                .values()
                .find(|u| u.exists && dn_key(&self.model.user_dn(u)) == dn)
                .ok_or_else(|| Mismatch::NoUserAtRefusedDn(dn.clone()))?;
            self.target.idservice().admin_command(&[
                "users",
                "purge-pending",
                "--user",
                &user.user_name,
            ])?;
            purged = true;
        }
        Ok(purged)
    }

    /// Sends the operations that apply, then waits until the server shows every group's
    /// `member` values as the model does (refint rewrites them in a task of its own).
    fn apply(&mut self, ops: &[Op]) -> Result<(), Mismatch> {
        for op in ops {
            if let Some(effect) = self.model.apply(op) {
                self.stats.sent += 1;
                self.directory
                    .send(&effect)
                    .map_err(|source| Mismatch::Refused {
                        op: format!("{op:?}"),
                        effect: format!("{effect:?}"),
                        source: Box::new(source),
                    })?;
            }
        }
        self.settle()
    }

    fn settle(&self) -> Result<(), Mismatch> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let mut mismatch = None;
            for g in self.model.groups.values().filter(|g| g.exists) {
                let dn = self.model.group_dn(g);
                let want: BTreeSet<String> = g.members.iter().map(|m| dn_key(m)).collect();
                let got: BTreeSet<String> = self
                    .directory
                    .members(&dn)?
                    .iter()
                    .map(|m| dn_key(m))
                    .collect();
                if want != got {
                    mismatch = Some(format!("{dn}: model {want:?}, directory {got:?}"));
                    break;
                }
            }
            match mismatch {
                None => return Ok(()),
                Some(m) if Instant::now() >= deadline => {
                    return Err(Mismatch::MembersNeverSettled(m));
                }
                Some(_) => std::thread::sleep(Duration::from_millis(50)),
            }
        }
    }

    /// Writes `<name>.yml` (the directory's settings, the target, state in `state-<name>`)
    /// and `<name>-secret.yml`; returns the config path.
    fn config(&self, name: &str, target: &Target) -> PathBuf {
        let mut config = self.directory.config();
        merge(
            &mut config,
            json!({
                "iid": {"scim": {"base_url": target.url()}},
                "sync": {
                    "state_dir": format!("state-{name}"),
                    "max_deletions": 100_000,
                    "max_deletion_ratio": 1.0,
                    "full_every": "3650d",
                },
            }),
        );
        let path = self.dir.path().join(format!("{name}.yml"));
        std::fs::write(&path, config.to_string()).expect("write config");
        let secret = json!({
            "ad": {"ldap": {"server": {"password": self.directory.password()}}},
            "iid": {"scim": {"token": target.token()}},
        });
        let secret_path = secret_path(&path);
        std::fs::write(&secret_path, secret.to_string()).expect("write secret");
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&secret_path, std::fs::Permissions::from_mode(0o600))
            .expect("chmod secret");
        path
    }

    fn sync(&self, config: &Path, args: &[&str]) -> Run {
        let output = Command::new(env!("CARGO_BIN_EXE_dirsync"))
            .arg("sync")
            .arg("--config")
            .arg(config)
            .arg("--secret")
            .arg(secret_path(config))
            .args(["--report", "json"])
            .args(args)
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .output()
            .expect("run dirsync");
        parse_run(&output)
    }

    /// A run that wrote what it planned: no failure, and nothing skipped but users
    /// re-created while their old target user is pending deletion (refused by design).
    fn assert_run(&self, run: &Run, what: &str) -> Result<(), Mismatch> {
        let failures = run.report["failures"].as_array().map_or(0, Vec::len);
        let unexpected: Vec<Value> = skipped(run)
            .into_iter()
            .filter(|s| s["kind"] != json!("recreated_user"))
            .collect();
        if failures > 0 || !unexpected.is_empty() || !matches!(run.code, 0 | 1) {
            return Err(Mismatch::RunFailed {
                what: what.to_string(),
                code: run.code,
                report: Box::new(run.report.clone()),
                stderr: run.stderr.clone(),
            });
        }
        Ok(())
    }

    /// The two checks after an incremental run.
    fn check(&mut self, config: &Path, run: &Run) -> Result<(), Mismatch> {
        let full = self.sync(config, &["--full", "--dry-run"]);
        self.assert_run(&full, "full dry run")?;
        let ops = full.plan["operations"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        if !ops.is_empty() {
            return Err(Mismatch::FullRunWouldWrite {
                count: ops.len(),
                full: Box::new(Value::Array(ops)),
                incremental: Box::new(run.plan["operations"].clone()),
            });
        }
        if skipped(&full) != skipped(run) {
            return Err(Mismatch::SkipsDiffer {
                full: skipped(&full),
                incremental: skipped(run),
            });
        }
        self.compare_with_fresh()
    }

    /// The target against a fresh sync of the same directory into an empty idservice.
    fn compare_with_fresh(&mut self) -> Result<(), Mismatch> {
        self.fresh_runs += 1;
        let fresh = Target::Id(IdService::start().expect("start idservice"));
        let config = self.config(&format!("fresh{}", self.fresh_runs), &fresh);
        let run = self.sync(&config, &[]);
        self.assert_run(&run, "fresh sync")?;
        // Users refused because an old one with their userName is pending deletion exist
        // only in the fresh target.
        let pending: BTreeSet<String> = self
            .target
            .pending_list()
            .split_whitespace()
            .map(str::to_lowercase)
            .collect();
        let want = view(&fresh, &pending);
        let got = view(&self.target, &BTreeSet::new());
        let _ = std::fs::remove_dir_all(
            self.dir
                .path()
                .join(format!("state-fresh{}", self.fresh_runs)),
        );
        if want != got {
            return Err(Mismatch::DiffersFromFresh(diff(&want, &got)));
        }
        Ok(())
    }
}

fn secret_path(config: &Path) -> PathBuf {
    config.with_extension("secret.yml")
}

fn skipped(run: &Run) -> Vec<Value> {
    let mut out: Vec<Value> = run.report["skipped"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .map(|s| json!({"kind": s["kind"], "object": s["object"]}))
        .collect();
    out.sort_by_key(|v| v.to_string());
    out
}

/// The target as `user:<externalId>` / `group:<externalId>` → resource without ids and
/// timestamps; members as the externalIds of their users. Users whose userName is in
/// `exclude` (and their memberships) are left out.
fn view(target: &Target, exclude: &BTreeSet<String>) -> BTreeMap<String, Value> {
    let users = target.users();
    let mut external: BTreeMap<String, String> = BTreeMap::new();
    let mut out = BTreeMap::new();
    for u in &users {
        let name = u["userName"].as_str().unwrap_or_default().to_lowercase();
        if exclude.contains(&name) {
            continue;
        }
        let ext = u["externalId"].as_str().unwrap_or_default().to_string();
        external.insert(
            u["id"].as_str().unwrap_or_default().to_string(),
            ext.clone(),
        );
        out.insert(format!("user:{ext}"), strip(u, &["id", "meta", "groups"]));
    }
    for g in target.groups() {
        let mut members: Vec<String> = g["members"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .iter()
            .filter_map(|m| m["value"].as_str())
            .filter_map(|id| match external.get(id) {
                Some(ext) => Some(ext.clone()),
                // A member that is not a listed user: a user excluded above, or one the
                // list hides (pending deletion), which a group should not keep.
                None if users.iter().any(|u| u["id"] == json!(id)) => None,
                None => Some(format!("unlisted:{id}")),
            })
            .collect();
        members.sort();
        let mut g2 = strip(&g, &["id", "meta", "members"]);
        g2["members"] = json!(members);
        out.insert(
            format!("group:{}", g["externalId"].as_str().unwrap_or_default()),
            g2,
        );
    }
    out
}

fn strip(resource: &Value, keys: &[&str]) -> Value {
    let mut r = resource.clone();
    if let Some(map) = r.as_object_mut() {
        for k in keys {
            map.remove(*k);
        }
    }
    r
}

/// What differs between two views, key by key.
fn diff(want: &BTreeMap<String, Value>, got: &BTreeMap<String, Value>) -> String {
    let mut out = String::new();
    for (k, v) in want {
        match got.get(k) {
            None => out.push_str(&format!("- only in the fresh target: {k} {v}\n")),
            Some(g) if g != v => {
                out.push_str(&format!("- {k}\n    fresh:  {v}\n    target: {g}\n"))
            }
            Some(_) => {}
        }
    }
    for (k, v) in got {
        if !want.contains_key(k) {
            out.push_str(&format!("- only in the target: {k} {v}\n"));
        }
    }
    out
}
