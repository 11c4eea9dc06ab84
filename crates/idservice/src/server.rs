//! Running the service: open the store, bind the listener, announce the address, purge
//! expired pending users in the background, and shut down gracefully on SIGTERM / Ctrl-C.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::domain::Service;
use crate::domain::users::{self, Purge};
use crate::store::{Store, StoreError};

/// How often expired pending users are purged (also once at start).
pub const PURGE_INTERVAL: Duration = Duration::from_secs(3600);

/// `idservice serve` options.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    pub listen: SocketAddr,
    pub data: PathBuf,
    /// `None`: keep the stored setting (default 30).
    pub retention_days: Option<i64>,
    pub max_body_bytes: usize,
    pub request_timeout: Duration,
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
}

/// Opens the store and builds the service with the effective retention period.
pub async fn open_service(
    data: &std::path::Path,
    retention_days: Option<i64>,
    max_body_bytes: usize,
) -> Result<Service, ServeError> {
    let store = Store::open(data).await?;
    let days = match retention_days {
        Some(d) => {
            Service::save_retention_days(&store, d).await?;
            d
        }
        None => Service::stored_retention_days(&store).await?,
    };
    Ok(Service::new(store, days, max_body_bytes))
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
    let svc = Arc::new(open_service(&opts.data, opts.retention_days, opts.max_body_bytes).await?);
    let listener = tokio::net::TcpListener::bind(opts.listen)
        .await
        .map_err(|e| {
            if e.kind() == std::io::ErrorKind::AddrInUse {
                ServeError::AddrInUse(opts.listen)
            } else {
                ServeError::Bind {
                    addr: opts.listen,
                    source: e,
                }
            }
        })?;
    let addr = listener.local_addr()?;
    let shutdown = shutdown_signal()?;
    {
        // Tests and scripts read this line to learn the port chosen for `:0`.
        let mut out = std::io::stdout().lock();
        writeln!(out, "listening on http://{addr}")?;
        out.flush()?;
    }
    tracing::info!(%addr, data = %opts.data.display(), retention_days = svc.retention_days, "idservice started");

    let purger = {
        let svc = svc.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(PURGE_INTERVAL);
            loop {
                tick.tick().await;
                match users::purge(
                    &svc,
                    Purge::Expired {
                        retention_days: svc.retention_days,
                    },
                )
                .await
                {
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
    };

    let app = crate::http::router(svc.clone(), opts.request_timeout);
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await?;
    purger.abort();
    svc.store.close().await;
    Ok(())
}
