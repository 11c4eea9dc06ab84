//! `dirsync run`: the long-running agent. It starts a run every `sync.schedule` (measured
//! from the start of the previous run; a run that takes longer is followed at once by the
//! next, never overlapped), reloads the configuration on SIGHUP (a configuration that does not
//! load is refused with its file:line error and the previous one stays in force), and on
//! SIGTERM or SIGINT lets a run in progress finish and returns (a second signal abandons the
//! run: the state it leaves is one the next run converges from). With `sync.watch` a run also
//! starts as soon as the directory changes ([`watch`]).
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
use dirsync_config::Schedule;

mod http;
pub mod metrics;
mod watch;

use metrics::Metrics;
use watch::Watch;

/// What `dirsync run` was given on the command line.
#[derive(Debug, Clone)]
pub struct DaemonOptions {
    pub config_path: PathBuf,
    pub secret_path: Option<PathBuf>,
    pub metrics_listen: Option<SocketAddr>,
    /// Called after each run, once its data is dropped: the binary returns the freed memory
    /// to the system (the library does not know the allocator).
    pub release_memory: Option<fn()>,
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
    let signals = Signals::install()?;
    let metrics = Arc::new(Metrics::new(config.sync.schedule.period()));
    if let Some(addr) = options.metrics_listen {
        let bound = http::serve(addr, Arc::clone(&metrics))
            .await
            .map_err(|source| DaemonError::Listen { addr, source })?;
        tracing::info!("metrics listening on http://{bound}");
        announce(bound);
    }
    let watch = Watch::start(&config, &metrics);
    let mut daemon = Daemon {
        current: Current { config, warnings },
        options,
        metrics,
        signals,
        watch,
    };
    tracing::info!(
        schedule = %schedule_text(&daemon.current.config.sync.schedule),
        watch = daemon.current.config.sync.watch,
        "dirsync run started"
    );
    loop {
        let started = chrono::Local::now();
        let ended = daemon.run_once().await;
        if let Some(release) = daemon.options.release_memory {
            release();
        }
        if ended.reload {
            daemon.reload_config();
        }
        if ended.stop || daemon.wait_for_next(started).await {
            break;
        }
    }
    tracing::info!("dirsync run stopped");
    Ok(())
}

/// The daemon's parts between runs.
struct Daemon<'a> {
    current: Current,
    options: &'a DaemonOptions,
    metrics: Arc<Metrics>,
    signals: Signals,
    watch: Watch,
}

/// The signals that arrived during a run.
struct Ended {
    stop: bool,
    reload: bool,
}

impl Daemon<'_> {
    /// One run, to its end, or until a second stop signal abandons it (the state it leaves is
    /// one the next run converges from, as after a crash).
    async fn run_once(&mut self) -> Ended {
        self.watch.take_due();
        let options = SyncOptions::default();
        let run = sync(
            &self.current.config,
            self.current.warnings.clone(),
            &options,
        );
        tokio::pin!(run);
        let mut ended = Ended {
            stop: false,
            reload: false,
        };
        let result = loop {
            tokio::select! {
                result = &mut run => break result,
                event = self.signals.next() => match event {
                    Event::Stop if ended.stop => {
                        tracing::warn!(
                            "second stop signal: the run in progress is abandoned; the next run \
                             converges from what it wrote"
                        );
                        return ended;
                    }
                    Event::Stop => {
                        tracing::info!(
                            "stop requested: the run in progress finishes first (send the signal \
                             again to abandon it)"
                        );
                        ended.stop = true;
                    }
                    Event::Reload => {
                        tracing::info!("reload requested: the configuration is read after this run");
                        ended.reload = true;
                    }
                },
                event = self.watch.next() => self.watch.on(event, &self.metrics),
            }
        };
        self.metrics.record(&result.report);
        crate::notify::after_run(&self.current.config, &result.report).await;
        let every = self.current.config.sync.schedule.period();
        crate::run_report::after_run(&self.current.config, &result.report, Some(every)).await;
        ended
    }

    /// Waits until `sync.schedule` after `started`, or until the watcher makes a run due;
    /// reloads on SIGHUP; true on a stop signal.
    async fn wait_for_next(&mut self, started: chrono::DateTime<chrono::Local>) -> bool {
        loop {
            if self.watch.take_due() {
                // Let a burst of changes settle into one run.
                tokio::time::sleep(Watch::SETTLE).await;
                return false;
            }
            let next = self.next_run(started);
            tokio::select! {
                () = sleep_until(next) => return false,
                event = self.signals.next() => match event {
                    Event::Stop => return true,
                    Event::Reload => self.reload_config(),
                },
                event = self.watch.next() => self.watch.on(event, &self.metrics),
            }
        }
    }

    /// When the schedule wants the next run (wall-clock time turned into the monotonic clock
    /// now, so a reload that changes the schedule takes effect); `None`: never.
    fn next_run(&self, started: chrono::DateTime<chrono::Local>) -> Option<Instant> {
        let due = self.current.config.sync.schedule.next_after(started)?;
        // A time already past is due at once.
        let wait = (due - chrono::Local::now())
            .to_std()
            .unwrap_or(Duration::ZERO);
        Instant::now().checked_add(wait)
    }

    /// Loads the configuration again; one that does not load is logged and left aside. The
    /// watcher restarts with the new configuration.
    fn reload_config(&mut self) {
        match Config::load(
            &self.options.config_path,
            self.options.secret_path.as_deref(),
        ) {
            Ok((config, warnings)) => {
                let warnings: Vec<String> = warnings.into_iter().map(|w| w.to_string()).collect();
                for w in &warnings {
                    tracing::warn!("{w}");
                }
                self.metrics.set_schedule(config.sync.schedule.period());
                self.watch = Watch::start(&config, &self.metrics);
                self.current = Current { config, warnings };
                tracing::info!("configuration reloaded");
            }
            Err(e) => {
                tracing::error!(
                    "configuration reload refused, the previous one stays in force: {e}"
                );
            }
        }
    }
}

/// The schedule as the start line shows it.
fn schedule_text(schedule: &Schedule) -> String {
    match schedule {
        Schedule::Every(every) => format!("every {}s", every.as_secs()),
        Schedule::Cron(cron) => format!("cron {:?}", cron.text),
    }
}

/// Sleeps until `at`, or forever.
async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
