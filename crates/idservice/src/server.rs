//! Running the service: open the store, bind the listener, announce the address, purge
//! expired pending users in the background, and shut down gracefully on SIGTERM / Ctrl-C.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::domain::Service;
use crate::domain::users::{self, Purge};
use crate::store::{Backend, Store, StoreError, backend::BackendError};

/// How often expired pending users are purged (also once at start).
pub const PURGE_INTERVAL: Duration = Duration::from_secs(3600);

/// The database options every command takes: `--data DIR` (SQLite, the default engine) or
/// `--database URL` (PostgreSQL) with the password from `--database-password-file` or
/// libpq's environment (`PGPASSWORD`, `~/.pgpass`), never from the command line.
#[derive(Debug, Clone, clap::Args)]
pub struct DbArgs {
    /// Data directory (holds idservice.db): the embedded SQLite database.
    #[arg(
        long,
        required_unless_present = "database",
        conflicts_with = "database"
    )]
    pub data: Option<PathBuf>,
    /// PostgreSQL instead of SQLite: postgres://USER@HOST:PORT/DB (no password in it).
    #[arg(long)]
    pub database: Option<String>,
    /// File whose first line is the PostgreSQL password (default: PGPASSWORD, ~/.pgpass).
    #[arg(long, requires = "database")]
    pub database_password_file: Option<PathBuf>,
}

impl DbArgs {
    /// The database these options name.
    pub fn backend(&self) -> Result<Backend, BackendError> {
        match (&self.database, &self.data) {
            (Some(url), _) => Backend::postgres(url, self.database_password_file.as_deref()),
            (None, Some(dir)) => Ok(Backend::Sqlite(dir.clone())),
            (None, None) => Err(BackendError::NotPostgres),
        }
    }
}

/// `idservice serve` options.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    pub listen: SocketAddr,
    pub backend: Backend,
    /// `None`: keep the stored setting (default 30).
    pub retention_days: Option<i64>,
    pub max_body_bytes: usize,
    pub request_timeout: Duration,
    /// How often the outbound worker looks at the linked applications' queue.
    pub outbound_interval: Duration,
    /// `--config FILE` (defaults without one): sign-in, password policy, email.
    pub config: Arc<crate::config::Config>,
    /// `--trusted-proxy`: peers whose X-Forwarded-For names the client.
    pub trusted_proxies: Vec<std::net::IpAddr>,
}

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("address {0} is already in use")]
    AddrInUse(SocketAddr),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("server error: {0}")]
    Io(#[from] std::io::Error),
    #[error("database error: {0}")]
    Sql(#[from] sqlx::Error),
    #[error(transparent)]
    Mail(#[from] crate::mail::Error),
}

/// Opens the store and builds the service with the effective retention period.
pub async fn open_service(
    backend: &Backend,
    retention_days: Option<i64>,
    max_body_bytes: usize,
    search: &crate::config::SearchConfig,
) -> Result<Service, ServeError> {
    let store = Store::connect_with(backend, search.timeout()).await?;
    let days = match retention_days {
        Some(d) => {
            Service::save_retention_days(&store, d).await?;
            d
        }
        None => Service::stored_retention_days(&store).await?,
    };
    let mut svc = Service::new(store, days, max_body_bytes);
    svc.filter_limits = search.filter_limits();
    Ok(svc)
}

/// Registers the shutdown signals now (so a SIGTERM that arrives right after the
/// `listening on` line is not fatal) and returns a future that resolves on the first one.
fn shutdown_signal() -> std::io::Result<impl std::future::Future<Output = ()>> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate())?;
        let mut int = signal(SignalKind::interrupt())?;
        Ok(async move {
            tokio::select! {
                _ = term.recv() => {},
                _ = int.recv() => {},
            }
            tracing::info!("shutting down");
        })
    }
    #[cfg(not(unix))]
    {
        Ok(async {
            let _ = tokio::signal::ctrl_c().await;
            tracing::info!("shutting down");
        })
    }
}

/// Serves until a shutdown signal.
pub async fn serve(opts: ServeOptions) -> Result<(), ServeError> {
    let svc = Arc::new(
        open_service(
            &opts.backend,
            opts.retention_days,
            opts.max_body_bytes,
            &opts.config.search,
        )
        .await?,
    );
    // Email and the sign-in pages (behaviour §7.5): a bad template or relay setting stops the start.
    crate::domain::password::set_policy(opts.config.password_policy.clone());
    let mail = Arc::new(crate::mail::Mail::new(
        opts.config.clone(),
        svc.store.data_dir(),
    )?);
    let sender = crate::mail::sender::from_config(&opts.config, &mail)?;
    let listener = bind(opts.listen).await?;
    let addr = listener.local_addr()?;
    let shutdown = shutdown_signal()?;
    announce(addr)?;
    tracing::info!(%addr, database = %svc.store.name(), retention_days = svc.retention_days, "idservice started");

    let purger = spawn_purger(svc.clone());

    // Linked applications (behaviour §7.6): drains the outbound queue in the background.
    let outbound = crate::outbound::worker::spawn(
        svc.clone(),
        crate::outbound::worker::WorkerOptions {
            interval: opts.outbound_interval,
        },
    );

    let web = crate::web::WebState::new(svc.clone(), opts.config.clone(), mail.clone(), addr)
        .with_trusted_proxies(opts.trusted_proxies.clone());
    let mail_tasks = crate::mail::spawn(svc.store.clone(), mail, sender, &web.public_url);
    let app = crate::http::router_with(svc.clone(), opts.request_timeout, crate::web::router(web));
    // Connection info: the sign-in pages rate-limit per client address.
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown)
    .await?;
    for t in mail_tasks {
        t.abort();
    }
    purger.abort();
    outbound.abort();
    svc.store.close().await;
    Ok(())
}

/// Binds the listening socket, telling an address in use apart from other failures.
async fn bind(listen: SocketAddr) -> Result<tokio::net::TcpListener, ServeError> {
    tokio::net::TcpListener::bind(listen).await.map_err(|e| {
        if e.kind() == std::io::ErrorKind::AddrInUse {
            ServeError::AddrInUse(listen)
        } else {
            ServeError::Bind {
                addr: listen,
                source: e,
            }
        }
    })
}

/// Prints the address listened on to stdout.
fn announce(addr: SocketAddr) -> Result<(), ServeError> {
    // Tests and scripts read this line to learn the port chosen for `:0`.
    let mut out = std::io::stdout().lock();
    writeln!(out, "listening on http://{addr}")?;
    out.flush()?;
    Ok(())
}

/// Starts the background task that purges expired pending users every [`PURGE_INTERVAL`].
fn spawn_purger(svc: Arc<Service>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(PURGE_INTERVAL);
        loop {
            tick.tick().await;
            // Every node purges; on PostgreSQL the one that loses the race runs again
            // and finds nothing left to purge.
            let expired = || {
                users::purge(
                    &svc,
                    Purge::Expired {
                        retention_days: svc.retention_days,
                    },
                )
            };
            match crate::domain::with_retry(expired).await {
                Ok(names) if !names.is_empty() => {
                    tracing::info!(
                        count = names.len(),
                        "purged users past the retention period"
                    );
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "automatic purge failed"),
            }
        }
    })
}
