//! Helpers for the Active Directory tests (`tests/ad_*.rs`): a Samba AD DC and an idservice
//! per scenario, a dirsync instance as a pair of files (config.yml + secret.yml) in a temp
//! directory, runs through the library (`dirsync::run::sync`), and reads of the target.
//!
//! Kept separate from `tests/common` (the OpenLDAP e2e helpers) on purpose; the few lines
//! both need (write the two files, run a sync) are duplicated rather than shared.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::time::Instant;

use dirsync::config::Config;
use dirsync::report::Report;
use dirsync::run::{SyncOptions, sync};
use scim_client::ResourceKind;
use serde_json::Value;
use testenv::{AdUser, IdService, SambaDc};

/// The IIJ extension URN (state, downstreamId, externalUserName).
pub const IIJ: &str = "urn:iij:params:scim:schemas:extension:enterprisejp:2.0:User";

/// Starts a DC, printing how long it took (the closing note of issue 4 quotes it).
pub fn start_dc(realm: &str, netbios: &str) -> SambaDc {
    let t0 = Instant::now();
    let dc = SambaDc::start(realm, netbios).unwrap_or_else(|e| panic!("Samba DC {realm}: {e}"));
    eprintln!(
        "TIMING samba dc {realm} started in {:.1} s",
        t0.elapsed().as_secs_f64()
    );
    dc
}

pub fn start_idservice() -> IdService {
    IdService::start().unwrap_or_else(|e| panic!("idservice: {e}"))
}

/// One dirsync instance: a temp directory holding config.yml and secret.yml (state beside).
pub struct Instance {
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
}

impl Instance {
    /// Writes `config_yaml` as config.yml and a secret.yml with the DC's service-account
    /// password and the idservice token.
    pub fn new(config_yaml: &str, ldap_password: &str, token: &str) -> Instance {
        let dir = tempfile::Builder::new()
            .prefix("dirsync-ad-")
            .tempdir()
            .unwrap();
        let config = dir.path().join("config.yml");
        std::fs::write(&config, config_yaml).unwrap();
        let secret = format!(
            "ad: {{ ldap: {{ server: {{ password: '{ldap_password}' }} }} }}\niid: {{ scim: {{ token: '{token}' }} }}\n"
        );
        let secret_path = dir.path().join("secret.yml");
        std::fs::write(&secret_path, secret).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            std::fs::set_permissions(&secret_path, std::fs::Permissions::from_mode(0o600)).unwrap();
        }
        Instance { dir, config }
    }

    /// Replaces config.yml (the state stays).
    pub fn rewrite(&self, config_yaml: &str) {
        std::fs::write(&self.config, config_yaml).unwrap();
    }

    pub fn load(&self) -> Config {
        load(&self.config)
    }

    /// A sync run (dry or not) through the library.
    pub fn sync_with(&self, options: SyncOptions) -> Report {
        let config = self.load();
        let rt = runtime();
        let result = rt.block_on(sync(&config, Vec::new(), &options));
        result.report
    }

    pub fn sync(&self) -> Report {
        self.sync_with(SyncOptions::default())
    }

    /// The directory read alone (flavor, entries, completeness).
    pub fn read(&self) -> Result<dirsync::source::SourceRead, dirsync::source::SourceError> {
        let config = self.load();
        runtime().block_on(dirsync::source::read(&config))
    }
}

pub fn load(path: &Path) -> Config {
    Config::load(path, None)
        .unwrap_or_else(|e| panic!("{} does not load: {e}", path.display()))
        .0
}

pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// A report that wrote what it planned without any per-object failure.
pub fn assert_clean(report: &Report, what: &str) {
    assert!(
        report.failures.is_empty()
            && report.skipped.is_empty()
            && report.stopped.is_none()
            && report.refused.is_none()
            && report.read_complete,
        "{what}: {}",
        report.to_text()
    );
}

/// A minimal AD instance config: the DC over ldap:// as svc-dirsync, into `base_url`.
/// `extra_ldap` goes under `ad.ldap` (filters), `extra_scim` under `iid.scim`.
pub fn basic_config(dc: &SambaDc, base_url: &str, extra_ldap: &str, extra_scim: &str) -> String {
    format!(
        "ad:\n  ldap:\n    server:\n      addresses: ['{ip}']\n      port: {port}\n      user: '{user}'\n    base_dn: '{base}'\n{extra_ldap}iid:\n  scim:\n    base_url: '{base_url}'\n{extra_scim}sync:\n  max_deletion_ratio: 1.0\n",
        ip = dc.ip,
        port = dc.ldap_port,
        user = dc.svc_dn,
        base = dc.base_dn,
    )
}

/// Every user in the target, pending deletion included (idservice hides those from plain
/// listings; they are asked for by state).
pub fn target_users(config: &Config) -> Vec<Value> {
    let client = dirsync::run::scim_client(config).unwrap();
    runtime().block_on(async {
        let mut all = client.list(ResourceKind::Users, None, None).await.unwrap();
        let pending = scim::filter::parse(&format!("{IIJ}:state eq \"pendingDeletion\"")).unwrap();
        for u in client
            .list(ResourceKind::Users, Some(&pending), None)
            .await
            .unwrap()
        {
            if !all.iter().any(|a| a["id"] == u["id"]) {
                all.push(u);
            }
        }
        all
    })
}

pub fn target_groups(config: &Config) -> Vec<Value> {
    let client = dirsync::run::scim_client(config).unwrap();
    runtime().block_on(async { client.list(ResourceKind::Groups, None, None).await.unwrap() })
}

/// The target user with this userName (case-insensitive).
pub fn user_named<'a>(users: &'a [Value], user_name: &str) -> Option<&'a Value> {
    users.iter().find(|u| {
        u["userName"]
            .as_str()
            .is_some_and(|n| n.eq_ignore_ascii_case(user_name))
    })
}

pub fn is_pending(user: &Value) -> bool {
    user[IIJ]["state"].as_str() == Some("pendingDeletion")
}

/// Sorted userNames of `users`.
pub fn names(users: &[Value]) -> Vec<String> {
    let mut v: Vec<String> = users
        .iter()
        .filter_map(|u| u["userName"].as_str().map(str::to_string))
        .collect();
    v.sort();
    v
}

/// Points a sample at the test DC and idservice: the five settings the brief allows, by
/// text substitution (everything else stays as published).
pub fn adapt_sample(sample: &str, dc: &SambaDc, base_url: &str) -> String {
    let mut out = String::new();
    for line in sample.lines() {
        let trimmed = line.trim_start();
        let indent = &line[..line.len() - trimmed.len()];
        let line = if trimmed.starts_with("addresses:") {
            format!("{indent}addresses: ['{}']", dc.ip)
        } else if trimmed == "port: 389" {
            format!("{indent}port: {}", dc.ldap_port)
        } else if trimmed.starts_with("user: 'CN=dirsync,") {
            format!("{indent}user: '{}'", dc.svc_dn)
        } else if trimmed.starts_with("base_url:") {
            format!("{indent}base_url: '{base_url}'")
        } else {
            line.replace("DC=example,DC=jp", &dc.base_dn)
        };
        out.push_str(&line);
        out.push('\n');
    }
    out
}

/// Adds user `name` (mail `name@example.test`) to the OU `corp`.
pub fn add_corp_user(dc: &SambaDc, name: &str) -> AdUser {
    dc.add_user(
        name,
        name,
        "Test",
        Some(&format!("{name}@example.test")),
        None,
        Some("corp"),
    )
    .unwrap()
}
