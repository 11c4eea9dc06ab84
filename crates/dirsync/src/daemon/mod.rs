//! `dirsync run`: the long-running agent. It starts a run every `sync.schedule` (measured
//! from the start of the previous run; a run that takes longer is followed at once by the
//! next, never overlapped), reloads the configuration on SIGHUP (a configuration that does not
//! load is refused with its file:line error and the previous one stays in force), and on
//! SIGTERM or SIGINT lets a run in progress finish and returns.
//!
//! Each run is [`crate::run::sync`] with the default options, so whether it is full or
//! incremental (first run, `sync.full_every`, a changed configuration, …) is decided there,
//! as for `dirsync sync`. It knows the configuration loader, the run and the metrics
//! ([`metrics`]) with their HTTP listener ([`http`]); it makes no decision about objects.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::signal::unix::{Signal, SignalKind, signal};
use tokio::time::Instant;

use crate::config::Config;
use crate::run::{SyncOptions, sync};

mod http;
pub mod metrics;

use metrics::Metrics;

/// What `dirsync run` was given on the command line.
#[derive(Debug, Clone)]
pub struct DaemonOptions {
    pub config_path: PathBuf,
    pub secret_path: Option<PathBuf>,
    pub metrics_listen: Option<SocketAddr>,
}

/// Why the daemon could not start.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error("cannot listen for signals: {0}")]
    Signals(#[source] std::io::Error),
    #[error("cannot listen on {addr} for metrics: {source}")]
    Listen {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

/// A signal the daemon acts on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Event {
    Reload,
    Stop,
}

/// SIGHUP, SIGTERM and SIGINT, registered once (from then on they no longer end the process).
struct Signals {
    hup: Signal,
    term: Signal,
    int: Signal,
}

impl Signals {
    fn install() -> Result<Signals, DaemonError> {
        let on = |kind| signal(kind).map_err(DaemonError::Signals);
        Ok(Signals {
            hup: on(SignalKind::hangup())?,
            term: on(SignalKind::terminate())?,
            int: on(SignalKind::interrupt())?,
        })
    }

    async fn next(&mut self) -> Event {
        tokio::select! {
            _ = self.hup.recv() => Event::Reload,
            _ = self.term.recv() => Event::Stop,
            _ = self.int.recv() => Event::Stop,
        }
    }
}

/// The configuration in force and its warnings.
struct Current {
    config: Config,
    warnings: Vec<String>,
}

/// Runs until SIGTERM or SIGINT; `config` is the configuration already loaded from
/// `options.config_path`. `announce` is told the address the metrics listener bound (the
/// binary prints it, so that a port chosen by the system can be found).
pub async fn run(
    config: Config,
    warnings: Vec<String>,
    options: &DaemonOptions,
    announce: &dyn Fn(SocketAddr),
) -> Result<(), DaemonError> {
    let mut signals = Signals::install()?;
    let metrics = Arc::new(Metrics::new(config.sync.schedule.0));
    if let Some(addr) = options.metrics_listen {
        let bound = http::serve(addr, Arc::clone(&metrics))
            .await
            .map_err(|source| DaemonError::Listen { addr, source })?;
        tracing::info!("metrics listening on http://{bound}");
        announce(bound);
    }
    let mut current = Current { config, warnings };
    tracing::info!(
        schedule_secs = current.config.sync.schedule.0.as_secs(),
        "dirsync run started"
    );
    loop {
        let started = Instant::now();
        let (stop, reload) = run_once(&current, &metrics, &mut signals).await;
        if reload {
            reload_config(&mut current, options, &metrics);
        }
        if stop {
            break;
        }
        if wait_for_next(started, &mut current, options, &metrics, &mut signals).await {
            break;
        }
    }
    tracing::info!("dirsync run stopped");
    Ok(())
}

/// One run, to its end; the signals that arrived meanwhile are returned as (stop, reload).
async fn run_once(current: &Current, metrics: &Metrics, signals: &mut Signals) -> (bool, bool) {
    let options = SyncOptions::default();
    let run = sync(&current.config, current.warnings.clone(), &options);
    tokio::pin!(run);
    let (mut stop, mut reload) = (false, false);
    let result = loop {
        tokio::select! {
            result = &mut run => break result,
            event = signals.next() => match event {
                Event::Stop => {
                    tracing::info!("stop requested: the run in progress finishes first");
                    stop = true;
                }
                Event::Reload => {
                    tracing::info!("reload requested: the configuration is read after this run");
                    reload = true;
                }
            },
        }
    };
    metrics.record(&result.report);
    crate::notify::after_run(&current.config, &result.report).await;
    (stop, reload)
}

/// Waits until `sync.schedule` after `started`, reloading on SIGHUP; true on a stop signal.
async fn wait_for_next(
    started: Instant,
    current: &mut Current,
    options: &DaemonOptions,
    metrics: &Metrics,
    signals: &mut Signals,
) -> bool {
    loop {
        let next = started + schedule(current);
        tokio::select! {
            () = tokio::time::sleep_until(next) => return false,
            event = signals.next() => match event {
                Event::Stop => return true,
                Event::Reload => reload_config(current, options, metrics),
            },
        }
    }
}

fn schedule(current: &Current) -> Duration {
    current.config.sync.schedule.0
}

/// Loads the configuration again; one that does not load is logged and left aside.
fn reload_config(current: &mut Current, options: &DaemonOptions, metrics: &Metrics) {
    match Config::load(&options.config_path, options.secret_path.as_deref()) {
        Ok((config, warnings)) => {
            let warnings: Vec<String> = warnings.into_iter().map(|w| w.to_string()).collect();
            for w in &warnings {
                tracing::warn!("{w}");
            }
            metrics.set_schedule(config.sync.schedule.0);
            *current = Current { config, warnings };
            tracing::info!("configuration reloaded");
        }
        Err(e) => {
            tracing::error!("configuration reload refused, the previous one stays in force: {e}");
        }
    }
}
