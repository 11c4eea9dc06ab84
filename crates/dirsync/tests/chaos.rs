#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Chaos: a seeded schedule of SIGKILLs of `dirsync` at random points of initial, churn and
//! full runs, with a share of the target's answers replaced by 429/500/503 (the fault proxy
//! in HTTP mode: a 500 after the target applied the request) and the directory connection
//! reset once in every run. After a last run without faults the target must equal the target
//! of a clean twin run exactly: users and their attributes, who is pending deletion, group
//! memberships; no duplicates, nobody missing. On idservice its own state history (kept by
//! database triggers, not by the agent) must show that nobody but the users deleted in the
//! directory was ever disabled or pending deletion.
//!
//! The schedule is replayable: the seed is printed at the start and on failure; rerun with
//! `DIRSYNC_CHAOS_SEED=<seed>`. `DIRSYNC_CHAOS_USERS`, `DIRSYNC_CHAOS_GROUPS` and
//! `DIRSYNC_CHAOS_KILLS` change the size (defaults 10,000 users, 500 groups, 20 kills; 3,000
//! users and 150 groups against scim2-server); `scripts/chaos --runs N` runs it with N fresh
//! seeds, at 10,000 users against both.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{Env, Run, Target, TargetKind};
use rand::rngs::StdRng;
use rand::seq::IteratorRandom as _;
use rand::{Rng as _, SeedableRng as _};
use serde_json::{Value, json};
use testenv::FaultProxy;

/// The share of SCIM requests answered with a fault.
const HTTP_FAULT_SHARE: f64 = 0.05;

struct Settings {
    seed: u64,
    users: usize,
    groups: usize,
    kills: usize,
}

impl Settings {
    /// From the environment; without it, 10,000 users and 500 groups against idservice
    /// (about 2 minutes here) and 3,000 and 150 against scim2-server, which writes about four
    /// times slower (`scripts/chaos` runs both at 10,000).
    fn from_env(kind: TargetKind) -> Settings {
        let (users, groups) = match kind {
            TargetKind::IdService => (10_000, 500),
            TargetKind::Scim2 => (3_000, 150),
        };
        let var = |name: &str, default: u64| {
            std::env::var(name)
                .ok()
                .map(|v| v.parse::<u64>().unwrap_or_else(|_| panic!("{name}={v}")))
                .unwrap_or(default)
        };
        let clock = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64;
        Settings {
            seed: var("DIRSYNC_CHAOS_SEED", clock % 1_000_000_007),
            users: var("DIRSYNC_CHAOS_USERS", users) as usize,
            groups: var("DIRSYNC_CHAOS_GROUPS", groups) as usize,
            kills: var("DIRSYNC_CHAOS_KILLS", 20) as usize,
        }
    }
}

/// Prints the seed again if the test fails, so the failure can be replayed.
struct SeedOnFailure(u64, TargetKind);

impl Drop for SeedOnFailure {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "chaos against {:?} failed; replay with DIRSYNC_CHAOS_SEED={}",
                self.1, self.0
            );
        }
    }
}

/// The directory, the target under faults, and a clean twin target synced without faults.
struct World {
    env: Env,
    twin: Target,
    scim: FaultProxy,
    ldap: FaultProxy,
    /// `chaos.yml`: through both proxies.
    chaos: PathBuf,
    /// `twin.yml` and its secret: straight to the twin.
    twin_config: PathBuf,
    twin_secret: PathBuf,
}

impl World {
    fn start(kind: TargetKind, s: &Settings) -> World {
        let env = Env::start(kind);
        env.slapd
            .load_generated(s.users, s.groups, &[])
            .expect("load generated data");
        let twin = Target::start(kind);
        let authority = |url: &str| {
            url.split_once("://")
                .unwrap()
                .1
                .split('/')
                .next()
                .unwrap()
                .to_string()
        };
        let scim = FaultProxy::start(&authority(env.target.url())).expect("scim proxy");
        let ldap = FaultProxy::start(&format!("127.0.0.1:{}", env.slapd.port)).expect("ldap proxy");
        let ldap_port: u16 = ldap.listen.rsplit_once(':').unwrap().1.parse().unwrap();
        let chaos = env.config(
            "chaos",
            json!({
                "ad": {"ldap": {"server": {"port": ldap_port}}},
                "iid": {"scim": {"base_url": scim.proxied_url(env.target.url())}},
                "sync": {"unreachable_after": "60s"},
            }),
        );
        let twin_config = env.config("twin", json!({"iid": {"scim": {"base_url": twin.url()}}}));
        let twin_secret = env.dir.path().join("twin-secret.yml");
        let secret = json!({
            "ad": {"ldap": {"server": {"password": env.slapd.sync_pw}}},
            "iid": {"scim": {"token": twin.token()}},
        });
        std::fs::write(&twin_secret, secret.to_string()).unwrap();
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&twin_secret, std::fs::Permissions::from_mode(0o600)).unwrap();
        World {
            env,
            twin,
            scim,
            ldap,
            chaos,
            twin_config,
            twin_secret,
        }
    }

    /// One clean run into the twin; how long it took.
    fn twin_run(&self) -> Duration {
        let started = Instant::now();
        let output = Command::new(env!("CARGO_BIN_EXE_dirsync"))
            .arg("sync")
            .arg("--config")
            .arg(&self.twin_config)
            .arg("--secret")
            .arg(&self.twin_secret)
            .args(["--report", "json"])
            .current_dir(self.env.dir.path())
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let run = common::parse_run(&output);
        assert_eq!(run.code, 0, "twin: {:#}\n{}", run.report, run.stderr);
        started.elapsed()
    }

    /// Faults for the next run: the SCIM share, and the directory connection reset once
    /// somewhere in the first `ldap_bytes` bytes of the run's reads.
    fn faults_on(&self, rng: &mut StdRng) {
        self.scim
            .set_http_faults(HTTP_FAULT_SHARE, rng.random())
            .unwrap();
        self.ldap
            .set_resets(rng.random_range(2_000..400_000), 1)
            .unwrap();
    }

    fn faults_off(&self) {
        self.scim.set_http_faults(0.0, 0).unwrap();
        self.ldap.set_resets(0, 0).unwrap();
    }

    /// Runs `dirsync sync [args]` under faults and SIGKILLs it after a random pause in
    /// `window`, until it has been killed `kills` times; returns how many kills it made. A
    /// run that ends before its kill point shows how much work was left: the window shrinks
    /// to that run's length, and once the remaining work is too short to hit (the initial
    /// sync is done) the phase gives up its other kills to the next. Then it runs under
    /// faults until a run ends with exit 0 or 1.
    fn killed_runs(
        &self,
        rng: &mut StdRng,
        args: &[&str],
        kills: usize,
        mut window: (Duration, Duration),
    ) -> usize {
        let mut done = 0;
        while done < kills && window.1 > window.0 + Duration::from_millis(20) {
            self.faults_on(rng);
            let pause = rng.random_range(window.0..window.1);
            let started = Instant::now();
            match self.run_until(args, pause) {
                None => {
                    done += 1;
                    eprintln!("  SIGKILL {done}/{kills} after {pause:?} ({args:?})");
                }
                Some(code) => {
                    let took = started.elapsed();
                    eprintln!("  ended with exit {code} in {took:?}, before its kill at {pause:?}");
                    window.1 = window.1.min(took.mul_f64(0.9));
                }
            }
        }
        self.complete_run(rng, args);
        done
    }

    /// Starts a run and SIGKILLs it after `pause`; `Some(exit code)` if it ended before.
    fn run_until(&self, args: &[&str], pause: Duration) -> Option<i32> {
        let out = self.env.dir.path().join("killed.out");
        let err = self.env.dir.path().join("killed.err");
        let mut child = self
            .env
            .dirsync_command(&self.chaos, args)
            .stdout(std::fs::File::create(&out).unwrap())
            .stderr(std::fs::File::create(&err).unwrap())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + pause;
        while Instant::now() < deadline && child.try_wait().unwrap().is_none() {
            std::thread::sleep(Duration::from_millis(2));
        }
        if child.try_wait().unwrap().is_none() {
            child.kill().unwrap();
            child.wait().unwrap();
            return None;
        }
        let code = child.wait().unwrap().code().unwrap_or(-1);
        if code != 0 {
            let report: Value =
                serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap_or_default();
            eprintln!(
                "  exit {code}: stopped: {}, refused: {}, failures: {}",
                report["report"]["stopped"],
                report["report"]["refused"],
                report["report"]["failures"]
            );
        }
        // Faults that pass are no reason to give up a run (exit 3): a cut request is sent
        // again, a cut read made again; an object the target failed fails alone (exit 1).
        assert!(
            code <= 1,
            "a run under faults ended with exit {code}:\n{}\n{}",
            std::fs::read_to_string(&out).unwrap(),
            std::fs::read_to_string(&err).unwrap()
        );
        Some(code)
    }

    /// One run under faults to its end: exit 0, or 1 when the target failed an object.
    fn complete_run(&self, rng: &mut StdRng, args: &[&str]) {
        self.faults_on(rng);
        let run = self.env.sync(&self.chaos, args);
        assert!(
            run.code <= 1,
            "a run under faults ended with exit {}: {:#}\n{}",
            run.code,
            run.report,
            run.stderr
        );
    }
}

/// What the directory loses and gains between the initial and the churn runs (applied by
/// one ldapmodify): 1% of users deleted, 3% changed, 1% added, 5% of groups gain a member.
/// Returns the userNames deleted.
fn churn(env: &Env, rng: &mut StdRng, s: &Settings) -> BTreeSet<String> {
    let mut ldif = String::new();
    let picked: Vec<usize> = (1..=s.users).choose_multiple(rng, s.users / 25);
    let (deleted, changed) = picked.split_at(s.users / 100);
    for &i in deleted {
        ldif.push_str(&format!(
            "dn: {}\nchangetype: delete\n\n",
            env.user_dn(&common::gen_uid(i))
        ));
    }
    for &i in changed {
        ldif.push_str(&format!(
            "dn: {}\nchangetype: modify\nreplace: title\ntitle: Chaos {}\n-\n\n",
            env.user_dn(&common::gen_uid(i)),
            rng.random_range(0..1000)
        ));
    }
    for n in 0..s.users / 100 {
        let uid = format!("chaos{n:05}");
        ldif.push_str(&format!(
            "dn: {}\nchangetype: add\nobjectClass: inetOrgPerson\nuid: {uid}\ncn: {uid}\n\
             sn: Chaos\ngivenName: {uid}\nmail: {uid}@example.test\n\n",
            env.user_dn(&uid)
        ));
    }
    let survivors: Vec<usize> = (1..=s.users).filter(|i| !deleted.contains(i)).collect();
    for g in (1..=s.groups).choose_multiple(rng, (s.groups / 20).max(1)) {
        // Generated user i is a member of group (i mod groups) + 1 (gen_ldap_data.py): draw
        // someone who is not yet, or slapd refuses the whole change ("value exists"). With
        // one group everyone is a member already.
        let Some(member) = (0..100)
            .map(|_| survivors[rng.random_range(0..survivors.len())])
            .find(|m| m % s.groups + 1 != g)
        else {
            continue;
        };
        ldif.push_str(&format!(
            "dn: cn=group{g:05},ou=groups,{}\nchangetype: modify\nadd: member\nmember: {}\n-\n\n",
            env.slapd.base,
            env.user_dn(&common::gen_uid(member))
        ));
    }
    env.slapd.modify(&ldif).expect("churn");
    deleted.iter().map(|&i| common::gen_user(i)).collect()
}

/// What a target holds for the comparison: users by userName without what differs between
/// two targets for the same directory (ids, meta, timestamps), who is pending deletion, and
/// each group's member userNames. One listing of each endpoint.
struct Contents {
    users: BTreeMap<String, Value>,
    pending: BTreeSet<String>,
    groups: BTreeMap<String, Vec<String>>,
}

fn contents_of(target: &Target) -> Contents {
    let listed = target.users();
    let names: BTreeMap<String, String> = listed
        .iter()
        .map(|u| {
            let id = u["id"].as_str().unwrap().to_string();
            (id, u["userName"].as_str().unwrap().to_string())
        })
        .collect();
    let mut users = BTreeMap::new();
    for mut u in listed {
        let name = u["userName"].as_str().unwrap().to_string();
        strip(&mut u);
        assert!(
            users.insert(name.clone(), u).is_none(),
            "{name} listed twice"
        );
    }
    let pending = match target {
        Target::Scim2(_) => BTreeSet::new(),
        _ => target
            .pending_list()
            .lines()
            .skip(1)
            .map(|l| l.split('\t').nth(1).unwrap().to_string())
            .collect(),
    };
    let mut groups = BTreeMap::new();
    for g in target.groups() {
        let name = g["displayName"].as_str().unwrap().to_string();
        let mut members: Vec<String> = g["members"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|m| {
                let id = m["value"].as_str().unwrap();
                names
                    .get(id)
                    .cloned()
                    .unwrap_or_else(|| format!("unlisted user {id}"))
            })
            .collect();
        members.sort();
        assert!(
            groups.insert(name.clone(), members).is_none(),
            "group {name} listed twice"
        );
    }
    Contents {
        users,
        pending,
        groups,
    }
}

/// Removes the id, meta, groups and timestamps a target assigns.
fn strip(v: &mut Value) {
    if let Some(o) = v.as_object_mut() {
        o.retain(|k, _| {
            !matches!(k.as_str(), "id" | "meta" | "groups")
                && !k.ends_with("Since")
                && !k.ends_with("At")
        });
        for value in o.values_mut() {
            strip(value);
        }
    }
}

/// On idservice: every state change the database recorded is of a user deleted in the
/// directory.
fn assert_history_only_of(target: &Target, deleted: &BTreeSet<String>) {
    let history = target
        .idservice()
        .admin_command(&["users", "history"])
        .expect("idservice users history");
    let mut moved = BTreeSet::new();
    for line in history.lines().skip(1) {
        let fields: Vec<&str> = line.split('\t').collect();
        let name = fields[2];
        assert!(
            deleted.contains(name),
            "{name} changed state ({line}) but was never deleted in the directory"
        );
        moved.insert(name.to_string());
    }
    assert_eq!(&moved, deleted, "the deleted users' state history");
}

fn chaos(kind: TargetKind) {
    let s = Settings::from_env(kind);
    let _guard = SeedOnFailure(s.seed, kind);
    eprintln!(
        "chaos against {kind:?}: DIRSYNC_CHAOS_SEED={} users {} groups {} kills {}",
        s.seed, s.users, s.groups, s.kills
    );
    let started = Instant::now();
    let mut rng = StdRng::seed_from_u64(s.seed);
    let w = World::start(kind, &s);
    let clean = w.twin_run();
    eprintln!("clean initial run into the twin: {clean:?}");
    let at = |share: f64| clean.mul_f64(share).max(Duration::from_millis(50));
    let (initial, incremental) = (s.kills / 2, s.kills / 4);

    let mut kills = w.killed_runs(&mut rng, &[], initial, (at(0.02), at(0.6)));
    let deleted = churn(&w.env, &mut rng, &s);
    w.twin_run();
    kills += w.killed_runs(&mut rng, &[], incremental, (at(0.01), at(0.3)));
    kills += w.killed_runs(&mut rng, &["--full"], s.kills - kills, (at(0.02), at(0.9)));
    assert_eq!(kills, s.kills, "SIGKILLs made");

    w.faults_off();
    let last = w.env.sync(&w.chaos, &[]);
    assert_eq!(last.code, 0, "{:#}\n{}", last.report, last.stderr);
    assert_converged(&w, &last, &deleted, &s);
    let stats = |p: &FaultProxy| -> Value {
        serde_json::from_str::<Value>(&p.status().unwrap()).unwrap()["stats"].clone()
    };
    let (scim, ldap) = (stats(&w.scim), stats(&w.ldap));
    eprintln!(
        "chaos against {kind:?} converged in {:?}: {kills} SIGKILLs, {} of {} SCIM requests \
         answered 429/500/503 ({}/{}/{}), {} LDAP connections reset",
        started.elapsed(),
        scim["http_faults"],
        scim["http_requests"],
        scim["http_429"],
        scim["http_500"],
        scim["http_503"],
        ldap["resets"]
    );
    assert!(
        scim["http_faults"].as_u64().unwrap() > 0,
        "no SCIM fault: {scim}"
    );
}

fn assert_converged(w: &World, last: &Run, deleted: &BTreeSet<String>, s: &Settings) {
    let got = contents_of(&w.env.target);
    let want = contents_of(&w.twin);
    assert_eq!(
        got.users.len() + got.pending.len(),
        s.users + s.users / 100,
        "users on the target (listed + pending); last run {:#}",
        last.report
    );
    let differing: Vec<&String> = want
        .users
        .iter()
        .filter(|(name, u)| got.users.get(*name) != Some(u))
        .map(|(name, _)| name)
        .chain(got.users.keys().filter(|n| !want.users.contains_key(*n)))
        .take(5)
        .collect();
    if let Some(first) = differing.first() {
        panic!(
            "users differ from the clean twin: {differing:?}, e.g. {:#} vs {:#}",
            got.users.get(*first).unwrap_or(&Value::Null),
            want.users.get(*first).unwrap_or(&Value::Null)
        );
    }
    assert_eq!(got.pending, want.pending, "pending deletion");
    if let Target::Scim2(_) = w.twin {
        let inactive: BTreeSet<String> = got
            .users
            .iter()
            .filter(|(_, u)| u["active"] == json!(false))
            .map(|(n, _)| n.clone())
            .collect();
        assert_eq!(&inactive, deleted, "disabled by the agent");
    } else {
        assert_eq!(&got.pending, deleted, "pending deletion");
        assert_history_only_of(&w.env.target, deleted);
    }
    assert!(
        got.groups == want.groups,
        "groups and members differ from the clean twin"
    );
}

#[test]
fn chaos_into_idservice_converges_to_the_clean_target() {
    chaos(TargetKind::IdService);
}

#[test]
fn chaos_into_scim2_server_converges_to_the_clean_target() {
    chaos(TargetKind::Scim2);
}
