//! Shared setup of the end-to-end tests: a real slapd, a SCIM target (our `idservice` or the
//! independent `scim2-server`), `dirsync` run as a subprocess with a config written into a
//! temporary directory, and reads of the target over SCIM (curl).
//!
//! Configs are written as JSON (a YAML subset), built with `serde_json::json!` and merged, so
//! a test states only the keys it cares about.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde_json::{Value, json};
use testenv::{IdCluster, IdService, Scim2Server, Slapd};

/// Which SCIM service the agent writes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TargetKind {
    /// Our idservice: keeps pending users itself (DELETE → pending deletion).
    IdService,
    /// scim2-server (PyPI): plain SCIM, the agent keeps the pending lifecycle.
    Scim2,
}

pub enum Target {
    Id(IdService),
    /// `DIRSYNC_TEST_IDSERVICE=cluster`: idservice as two nodes on PostgreSQL behind HAProxy.
    Cluster(IdCluster),
    Scim2(Scim2Server),
}

impl Target {
    pub fn start(kind: TargetKind) -> Target {
        match kind {
            TargetKind::IdService
                if std::env::var("DIRSYNC_TEST_IDSERVICE").as_deref() == Ok("cluster") =>
            {
                Target::Cluster(IdCluster::start(2, &[]).expect("start the idservice cluster"))
            }
            TargetKind::IdService => Target::Id(IdService::start().expect("start idservice")),
            TargetKind::Scim2 => Target::Scim2(
                Scim2Server::start("e2e-test-token-0123456789").expect("start scim2-server"),
            ),
        }
    }

    pub fn kind(&self) -> TargetKind {
        match self {
            Target::Id(_) | Target::Cluster(_) => TargetKind::IdService,
            Target::Scim2(_) => TargetKind::Scim2,
        }
    }

    pub fn url(&self) -> &str {
        match self {
            Target::Id(s) => &s.url,
            Target::Cluster(c) => &c.url,
            Target::Scim2(s) => &s.url,
        }
    }

    pub fn token(&self) -> &str {
        match self {
            Target::Id(s) => &s.token,
            Target::Cluster(c) => &c.token,
            Target::Scim2(s) => &s.token,
        }
    }

    pub fn idservice(&self) -> &IdService {
        match self {
            Target::Id(s) => s,
            // Admin commands of any node work on the shared database.
            Target::Cluster(c) => &c.nodes[0],
            Target::Scim2(_) => panic!("this step needs idservice"),
        }
    }

    /// `GET {url}{path}` with the bearer token; the parsed body.
    pub fn get(&self, path_and_query: &str) -> Value {
        let url = format!("{}{path_and_query}", self.url());
        let output = Command::new("curl")
            .args(["-sS", "--fail-with-body", "-H"])
            .arg(format!("Authorization: Bearer {}", self.token()))
            .args(["-H", "Accept: application/scim+json", &url])
            .output()
            .expect("run curl");
        assert!(
            output.status.success(),
            "GET {url}: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        serde_json::from_slice(&output.stdout).expect("JSON body")
    }

    /// Every resource of `/Users` or `/Groups` the plain list shows (idservice hides users
    /// pending deletion from it), following pagination.
    pub fn list(&self, endpoint: &str) -> Vec<Value> {
        let mut all = Vec::new();
        loop {
            let page = self.get(&format!(
                "/{endpoint}?startIndex={}&count=500",
                all.len() + 1
            ));
            let total = page["totalResults"].as_u64().unwrap_or(0) as usize;
            let items = page["Resources"].as_array().cloned().unwrap_or_default();
            let got = items.len();
            all.extend(items);
            if got == 0 || all.len() >= total {
                return all;
            }
        }
    }

    pub fn users(&self) -> Vec<Value> {
        self.list("Users")
    }

    pub fn groups(&self) -> Vec<Value> {
        self.list("Groups")
    }

    /// The listed user with this userName.
    pub fn user(&self, user_name: &str) -> Option<Value> {
        self.users()
            .into_iter()
            .find(|u| u["userName"].as_str() == Some(user_name))
    }

    pub fn group(&self, display_name: &str) -> Option<Value> {
        self.groups()
            .into_iter()
            .find(|g| g["displayName"].as_str() == Some(display_name))
    }

    /// The userNames of the group's members, sorted.
    pub fn member_names(&self, display_name: &str) -> Vec<String> {
        let group = self.group(display_name).expect("group exists");
        let users = self.users();
        let mut names: Vec<String> = group["members"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .iter()
            .filter_map(|m| m["value"].as_str().map(str::to_string))
            .map(|id| {
                users
                    .iter()
                    .find(|u| u["id"].as_str() == Some(&id))
                    .and_then(|u| u["userName"].as_str())
                    .map(str::to_string)
                    .unwrap_or(id)
            })
            .collect();
        names.sort();
        names
    }

    /// idservice: the userNames listed by `idservice users list-pending`.
    pub fn pending_list(&self) -> String {
        self.idservice()
            .admin_command(&["users", "list-pending"])
            .expect("idservice users list-pending")
    }

    /// The user is pending deletion: on idservice hidden from lists and shown by
    /// `users list-pending`; on a plain target still listed but disabled by the agent.
    pub fn assert_pending(&self, user_name: &str) {
        match self {
            Target::Id(_) | Target::Cluster(_) => {
                assert!(
                    self.user(user_name).is_none(),
                    "{user_name} is still listed"
                );
                let pending = self.pending_list();
                assert!(
                    pending.contains(user_name),
                    "{user_name} not in list-pending: {pending}"
                );
            }
            Target::Scim2(_) => {
                let u = self
                    .user(user_name)
                    .expect("agent-pended user still exists");
                assert_eq!(u["active"], json!(false), "{user_name}: {u}");
            }
        }
    }
}

/// The result of one `dirsync` run.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    /// `report` of `--report json`.
    pub report: Value,
    /// `plan` of `--report json`.
    pub plan: Value,
    pub stderr: String,
}

impl Run {
    pub fn count(&self, key: &str) -> u64 {
        self.report["counts"][key]
            .as_u64()
            .unwrap_or_else(|| panic!("no count {key} in {}", self.report))
    }

    /// Asserts the named counts; every other count must be zero.
    pub fn assert_counts(&self, expected: &[(&str, u64)]) {
        let counts = self.report["counts"].as_object().expect("counts");
        for (key, value) in counts {
            let want = expected
                .iter()
                .find(|(k, _)| k == key)
                .map(|(_, v)| *v)
                .unwrap_or(0);
            assert_eq!(
                value.as_u64(),
                Some(want),
                "count {key}; report: {:#}",
                self.report
            );
        }
    }

    pub fn notes(&self) -> String {
        self.report["notes"].to_string()
    }

    /// The `skipped` entries of the given kind.
    pub fn skipped(&self, kind: &str) -> Vec<Value> {
        self.report["skipped"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .filter(|s| s["kind"].as_str() == Some(kind))
            .collect()
    }
}

/// One test's world: slapd, a target, and a temporary directory for configs and state.
pub struct Env {
    pub slapd: Slapd,
    pub target: Target,
    pub dir: tempfile::TempDir,
}

pub const USER_OC: &str = "inetOrgPerson";

impl Env {
    pub fn start(kind: TargetKind) -> Env {
        Env::start_with(kind, testenv::SlapdOptions::default())
    }

    /// As [`Env::start`], with slapd started with these options (e.g. the refint overlay).
    pub fn start_with(kind: TargetKind, options: testenv::SlapdOptions) -> Env {
        let started = std::time::Instant::now();
        let slapd = Slapd::start_with(options).expect("start slapd");
        let target = Target::start(kind);
        eprintln!("peers ({kind:?}) started in {:.2?}", started.elapsed());
        Env::assemble(slapd, target)
    }

    /// A fresh slapd syncing into a target the test started itself (e.g. an idservice with a
    /// configuration file).
    #[allow(dead_code)]
    pub fn start_on(target: Target) -> Env {
        Env::assemble(Slapd::start().expect("start slapd"), target)
    }

    fn assemble(slapd: Slapd, target: Target) -> Env {
        let dir = tempfile::Builder::new()
            .prefix("dirsync-e2e-")
            .tempdir()
            .expect("tempdir");
        let env = Env { slapd, target, dir };
        env.write_secret();
        env
    }

    fn write_secret(&self) {
        let secret = json!({
            "ad": {"ldap": {"server": {"password": self.slapd.sync_pw}}},
            "iid": {"scim": {"token": self.target.token()}},
        });
        let path = self.dir.path().join("secret.yml");
        std::fs::write(&path, secret.to_string()).expect("write secret.yml");
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
            .expect("chmod secret.yml");
    }

    /// The base config (slapd → target, state in `state-{name}`), with `overrides` merged
    /// in (objects merge key by key; other values replace).
    pub fn config(&self, name: &str, overrides: Value) -> PathBuf {
        let mut config = json!({
            "ad": {"ldap": {
                "server": {
                    "addresses": ["127.0.0.1"],
                    "port": self.slapd.port,
                    "user": self.slapd.sync_dn,
                },
                "base_dn": self.slapd.base,
                "flavor": "openldap",
            }},
            "iid": {"scim": {"base_url": self.target.url()}},
            "sync": {"state_dir": format!("state-{name}")},
        });
        merge(&mut config, overrides);
        let path = self.dir.path().join(format!("{name}.yml"));
        std::fs::write(&path, config.to_string()).expect("write config");
        path
    }

    /// `dirsync sync --config … --secret … --report json [args]`.
    pub fn sync(&self, config: &Path, args: &[&str]) -> Run {
        let started = std::time::Instant::now();
        let output = self
            .dirsync_command(config, args)
            .output()
            .expect("run dirsync");
        let run = parse_run(&output);
        eprintln!(
            "dirsync {} {args:?}: exit {} in {:.2?}",
            config.display(),
            run.code,
            started.elapsed()
        );
        run
    }

    pub fn dirsync_command(&self, config: &Path, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_dirsync"));
        cmd.arg("sync")
            .arg("--config")
            .arg(config)
            .arg("--secret")
            .arg(self.dir.path().join("secret.yml"))
            .args(["--report", "json"])
            .args(args)
            .current_dir(self.dir.path())
            .stdin(Stdio::null());
        cmd
    }

    /// Adds one inetOrgPerson `uid=<uid>,<ou>` with mail `<uid>@<domain>` and extra
    /// attribute lines (`"title: X"`).
    pub fn add_user(&self, uid: &str, ou: &str, domain: &str, extra: &[&str]) {
        let mut ldif = format!(
            "dn: uid={uid},{ou},{base}\nobjectClass: inetOrgPerson\nuid: {uid}\ncn: {uid}\nsn: Test\n\
             givenName: {uid}\nmail: {uid}@{domain}\n",
            base = self.slapd.base
        );
        for line in extra {
            ldif.push_str(line);
            ldif.push('\n');
        }
        self.slapd.add(&ldif).expect("ldapadd user");
    }

    /// Adds a groupOfNames `cn=<cn>,<ou>` whose members are the given uids under ou=people.
    pub fn add_group(&self, cn: &str, ou: &str, member_uids: &[&str]) {
        let mut ldif = format!(
            "dn: cn={cn},{ou},{base}\nobjectClass: groupOfNames\ncn: {cn}\n",
            base = self.slapd.base
        );
        for uid in member_uids {
            ldif.push_str(&format!("member: {}\n", self.user_dn(uid)));
        }
        self.slapd.add(&ldif).expect("ldapadd group");
    }

    pub fn add_ou(&self, ou: &str) {
        self.slapd
            .add(&format!(
                "dn: ou={ou},{base}\nobjectClass: organizationalUnit\nou: {ou}\n",
                base = self.slapd.base
            ))
            .expect("ldapadd ou");
    }

    /// `uid=<uid>,ou=people,<base>`.
    pub fn user_dn(&self, uid: &str) -> String {
        format!("uid={uid},ou=people,{}", self.slapd.base)
    }

    pub fn group_dn(&self, cn: &str) -> String {
        format!("cn={cn},ou=groups,{}", self.slapd.base)
    }

    /// One `changetype: modify` on `dn`: `op` is add / replace / delete, `attr: value`.
    pub fn modify(&self, dn: &str, op: &str, attr: &str, value: Option<&str>) {
        let mut ldif = format!("dn: {dn}\nchangetype: modify\n{op}: {attr}\n");
        if let Some(v) = value {
            ldif.push_str(&format!("{attr}: {v}\n"));
        }
        ldif.push_str("-\n");
        self.slapd.modify(&ldif).expect("ldapmodify");
    }
}

/// Merges `patch` into `base`: objects key by key, anything else replaces.
pub fn merge(base: &mut Value, patch: Value) {
    match (base, patch) {
        (Value::Object(b), Value::Object(p)) => {
            for (k, v) in p {
                merge(b.entry(k).or_insert(Value::Null), v);
            }
        }
        (b, p) => *b = p,
    }
}

pub fn parse_run(output: &Output) -> Run {
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    let body: Value = serde_json::from_str(&stdout).unwrap_or_else(|e| {
        panic!("dirsync printed no JSON report ({e}):\n{stdout}\nstderr:\n{stderr}")
    });
    Run {
        code: output.status.code().unwrap_or(-1),
        report: body["report"].clone(),
        plan: body["plan"].clone(),
        stderr,
    }
}

/// The generated userName of user `i` (gen_ldap_data.py: mail userNNNNNN@example.test).
pub fn gen_user(i: usize) -> String {
    format!("user{i:06}@example.test")
}

/// The generated uid of user `i`.
pub fn gen_uid(i: usize) -> String {
    format!("user{i:06}")
}
