//! The PostgreSQL side of the benchmarks: which database (`--database URL` or a private
//! server started for the run), and `--nodes` idservice nodes on it behind HAProxy.

use std::path::PathBuf;

use testenv::{Haproxy, PgDurability, PgServer};

use crate::Result;
use crate::common::{Endpoint, IdService, start_idservice_on};

/// The command-line options that put a benchmark's target on PostgreSQL.
#[derive(clap::Args, Debug, Clone)]
pub struct PgArgs {
    /// Also run on this PostgreSQL database (it must be empty); `postgres://USER@HOST:PORT/DB`.
    #[arg(long)]
    pub database: Option<String>,
    /// The PostgreSQL password file (first line), for `--database` (else PGPASSWORD).
    #[arg(long, requires = "database")]
    pub database_password_file: Option<PathBuf>,
    /// Also run on a private PostgreSQL started for the run (Debian's packages, fsync on,
    /// `synchronous_commit=off`: the durability of SQLite's WAL with `synchronous=NORMAL`).
    #[arg(long, conflicts_with = "database")]
    pub private_postgres: bool,
    /// idservice nodes on PostgreSQL; more than one are reached through HAProxy (round robin).
    #[arg(long, default_value_t = 2)]
    pub nodes: usize,
}

/// A PostgreSQL database the benchmark may use.
pub struct PgDatabase {
    args: Vec<String>,
    /// The private server, stopped on drop.
    _server: Option<PgServer>,
}

impl PgArgs {
    /// The database these options name; `None` when they name none.
    pub fn database(&self) -> Result<Option<PgDatabase>> {
        if self.private_postgres {
            let server = PgServer::start_with(PgDurability::LikeSqliteNormal)?;
            let args = server
                .db_args()
                .into_iter()
                .map(|a| a.to_string_lossy().into_owned())
                .collect();
            return Ok(Some(PgDatabase {
                args,
                _server: Some(server),
            }));
        }
        let Some(url) = &self.database else {
            return Ok(None);
        };
        let mut args = vec!["--database".to_string(), url.clone()];
        if let Some(f) = &self.database_password_file {
            args.extend(["--database-password-file".into(), f.display().to_string()]);
        }
        Ok(Some(PgDatabase {
            args,
            _server: None,
        }))
    }
}

impl PgDatabase {
    /// The idservice options naming this database.
    pub fn args(&self) -> &[String] {
        &self.args
    }
}

/// Several idservice nodes on one database, behind HAProxy when more than one.
pub struct Nodes {
    pub endpoint: Endpoint,
    // Dropped in this order: the proxy, then the nodes.
    _proxy: Option<Haproxy>,
    _nodes: Vec<IdService>,
}

impl Nodes {
    /// Starts `count` nodes on `db` (`serve_args` given to each); the first creates the token.
    pub fn start(
        bin: &std::path::Path,
        db: &PgDatabase,
        count: usize,
        token_args: &[&str],
        serve_args: &[&str],
    ) -> Result<Nodes> {
        let node = start_idservice_on(bin, db.args(), token_args, serve_args)?;
        let first = node.endpoint();
        let mut nodes = vec![node];
        for _ in 1..count {
            nodes.push(start_idservice_on(bin, db.args(), token_args, serve_args)?);
        }
        let token = first.token.clone();
        if nodes.len() == 1 {
            return Ok(Nodes {
                endpoint: first,
                _proxy: None,
                _nodes: nodes,
            });
        }
        let backends: Vec<String> = nodes.iter().map(|n| authority(&n.url)).collect();
        let proxy = Haproxy::start(&backends)?;
        Ok(Nodes {
            endpoint: Endpoint {
                url: format!("http://127.0.0.1:{}/scim/v2", proxy.port),
                token,
            },
            _proxy: Some(proxy),
            _nodes: nodes,
        })
    }
}

/// `127.0.0.1:PORT` of `http://127.0.0.1:PORT/…`.
fn authority(url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    rest.split('/').next().unwrap_or(rest).to_string()
}
