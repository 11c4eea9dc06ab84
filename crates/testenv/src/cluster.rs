//! A PostgreSQL server ([`PgServer`]: Debian's `initdb` + `pg_ctl` in a temporary directory on
//! a free loopback port), HAProxy ([`Haproxy`], Debian's package) in front of HTTP servers,
//! and the two together with several `idservice` nodes ([`IdCluster`]). Everything listens on
//! 127.0.0.1 only and is stopped when the handle is dropped.
//!
//! PostgreSQL refuses to run as root: when the tests run as root, the server runs as the
//! `postgres` account the Debian package creates.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::error::{io, spawn};
use crate::{Error, IdService, Result, free_port, temp_dir};

/// The database user and password of a [`PgServer`] (a throw-away cluster).
pub const PG_USER: &str = "idservice";
const PG_PASSWORD: &str = "test-only-password";

/// The newest `/usr/lib/postgresql/*/bin` holding `initdb`.
pub fn pg_bin_dir() -> Result<PathBuf> {
    let mut dirs: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .map_err(|e| Error::NotInstalled {
            what: "PostgreSQL".into(),
            hint: format!("/usr/lib/postgresql: {e} (scripts/install-test-deps)"),
        })?
        .filter_map(Result::ok)
        .filter_map(|d| {
            let v = d.file_name().to_string_lossy().parse::<u32>().ok()?;
            let bin = d.path().join("bin");
            bin.join("initdb").exists().then_some((v, bin))
        })
        .collect();
    dirs.sort();
    dirs.pop()
        .map(|(_, b)| b)
        .ok_or_else(|| Error::NotInstalled {
            what: "PostgreSQL".into(),
            hint: "no /usr/lib/postgresql/*/bin/initdb (scripts/install-test-deps)".into(),
        })
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// A private PostgreSQL cluster. The password is in a file ([`PgServer::password_file`]),
/// never on a command line.
pub struct PgServer {
    pub port: u16,
    dir: tempfile::TempDir,
    bin: PathBuf,
    as_postgres: bool,
}

/// How a [`PgServer`] trades durability for speed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PgDurability {
    /// Tests: no fsync at all (a crash of the machine may corrupt the throw-away cluster).
    None,
    /// Benchmarks: fsync on, commits acknowledged before their WAL is flushed
    /// (`synchronous_commit=off`): a crash may lose the last commits but never corrupts, as
    /// SQLite's WAL with `synchronous=NORMAL`, which idservice uses.
    LikeSqliteNormal,
}

impl PgServer {
    /// A cluster for tests ([`PgDurability::None`]).
    pub fn start() -> Result<PgServer> {
        PgServer::start_with(PgDurability::None)
    }

    /// A cluster with the given durability settings.
    pub fn start_with(durability: PgDurability) -> Result<PgServer> {
        let bin = pg_bin_dir()?;
        let dir = temp_dir("dirsync-pg-")?;
        let as_postgres = is_root();
        std::fs::write(dir.path().join("pwfile"), format!("{PG_PASSWORD}\n"))
            .map_err(io("PostgreSQL password file"))?;
        // private, as idservice requires of a password file
        std::fs::set_permissions(
            dir.path().join("pwfile"),
            std::os::unix::fs::PermissionsExt::from_mode(0o600),
        )
        .map_err(io("PostgreSQL password file"))?;
        if as_postgres {
            run(Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(dir.path()))?;
        }
        let port = free_port()?;
        let pg = PgServer {
            port,
            dir,
            bin,
            as_postgres,
        };
        let data = pg.data_dir();
        let pwfile = pg.password_file();
        let mut initdb = pg.command("initdb");
        initdb
            .arg("-D")
            .arg(&data)
            .args(["-U", PG_USER, "--auth=scram-sha-256", "-E", "UTF8"])
            .arg(format!("--pwfile={}", pwfile.display()));
        run(&mut initdb)?;
        let settings = match durability {
            PgDurability::None => "-c fsync=off -c synchronous_commit=off -c full_page_writes=off",
            PgDurability::LikeSqliteNormal => "-c synchronous_commit=off -c shared_buffers=256MB",
        };
        let opts = format!(
            "-h 127.0.0.1 -p {port} -k {} {settings} -c max_connections=200",
            pg.dir.path().display()
        );
        let log = pg.dir.path().join("postgres.log");
        let mut start = pg.command("pg_ctl");
        start
            .arg("-D")
            .arg(&data)
            .arg("-l")
            .arg(&log)
            .args(["-w", "-t", "60", "-o", &opts, "start"]);
        run(&mut start).map_err(|e| Error::StartFailed {
            source: Box::new(e),
            log: std::fs::read_to_string(&log).unwrap_or_default(),
        })?;
        Ok(pg)
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// A file holding the password (first line), for `--database-password-file`.
    pub fn password_file(&self) -> PathBuf {
        self.dir.path().join("pwfile")
    }

    /// `postgres://idservice@127.0.0.1:PORT/postgres` (no password).
    pub fn url(&self) -> String {
        format!("postgres://{PG_USER}@127.0.0.1:{}/postgres", self.port)
    }

    /// The `idservice` database options for this server.
    pub fn db_args(&self) -> Vec<OsString> {
        vec![
            "--database".into(),
            self.url().into(),
            "--database-password-file".into(),
            self.password_file().into_os_string(),
        ]
    }

    fn command(&self, tool: &str) -> Command {
        let program = self.bin.join(tool);
        if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(program);
            c
        } else {
            Command::new(program)
        }
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        let data = self.data_dir();
        let mut stop = self.command("pg_ctl");
        stop.arg("-D")
            .arg(&data)
            .args(["-m", "immediate", "-w", "stop"]);
        let _ = run(&mut stop);
    }
}

fn run(cmd: &mut Command) -> Result<String> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(spawn(format!("{cmd:?}")))?;
    if !out.status.success() {
        return Err(Error::Command {
            what: format!("{cmd:?}"),
            status: out.status,
            output: format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// HAProxy in HTTP mode on a free loopback port, balancing requests round-robin over
/// `backends` (`host:port`).
pub struct Haproxy {
    pub port: u16,
    dir: tempfile::TempDir,
    child: Child,
}

impl Haproxy {
    pub fn start(backends: &[String]) -> Result<Haproxy> {
        let binary = ["/usr/sbin/haproxy", "/usr/bin/haproxy"]
            .into_iter()
            .find(|p| Path::new(p).exists())
            .ok_or_else(|| Error::NotInstalled {
                what: "haproxy".into(),
                hint: "scripts/install-test-deps".into(),
            })?;
        let dir = temp_dir("dirsync-haproxy-")?;
        let port = free_port()?;
        let servers: String = backends
            .iter()
            .enumerate()
            .map(|(i, b)| format!("    server node{i} {b}\n"))
            .collect();
        let cfg = format!(
            "global\n    maxconn 4096\n\ndefaults\n    mode http\n    timeout connect 5s\n    \
             timeout client 120s\n    timeout server 120s\n\nfrontend fe\n    bind 127.0.0.1:{port}\n    \
             default_backend nodes\n\nbackend nodes\n    balance roundrobin\n{servers}"
        );
        let file = dir.path().join("haproxy.cfg");
        std::fs::write(&file, cfg).map_err(io(file.display().to_string()))?;
        run(Command::new(binary).arg("-c").arg("-f").arg(&file))?;
        let log_file = dir.path().join("haproxy.log");
        let log = std::fs::File::create(&log_file).map_err(io(log_file.display().to_string()))?;
        let child = Command::new(binary)
            .arg("-db")
            .arg("-f")
            .arg(&file)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(spawn("haproxy"))?;
        let proxy = Haproxy { port, dir, child };
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if Instant::now() > deadline {
                return Err(Error::NotReady {
                    what: format!("haproxy did not listen on {port} within 10 s"),
                    log: std::fs::read_to_string(proxy.dir.path().join("haproxy.log"))
                        .unwrap_or_default(),
                });
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(proxy)
    }
}

impl Drop for Haproxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// PostgreSQL, `nodes` idservice nodes on it (one token valid on all), and HAProxy in front.
pub struct IdCluster {
    /// `http://127.0.0.1:PORT/scim/v2` through the load balancer.
    pub url: String,
    pub token: String,
    pub nodes: Vec<IdService>,
    // Dropped in field order: the proxy, then the nodes above, then the database.
    _proxy: Haproxy,
    pub pg: PgServer,
}

impl IdCluster {
    /// Starts the cluster; `extra` are `serve` arguments given to every node.
    pub fn start(nodes: usize, extra: &[&str]) -> Result<IdCluster> {
        let pg = PgServer::start()?;
        let first = IdService::start_with_db(Some(pg.db_args()), extra, &[], None)?;
        let token = first.token.clone();
        let mut all = vec![first];
        for _ in 1..nodes {
            all.push(IdService::start_with_db(
                Some(pg.db_args()),
                extra,
                &[],
                Some(&token),
            )?);
        }
        let backends: Vec<String> = all.iter().map(|n| authority(&n.url)).collect();
        let proxy = Haproxy::start(&backends)?;
        Ok(IdCluster {
            url: format!("http://127.0.0.1:{}/scim/v2", proxy.port),
            token,
            nodes: all,
            _proxy: proxy,
            pg,
        })
    }
}

/// `127.0.0.1:PORT` of `http://127.0.0.1:PORT/…`.
fn authority(url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    rest.split('/').next().unwrap_or(rest).to_string()
}
