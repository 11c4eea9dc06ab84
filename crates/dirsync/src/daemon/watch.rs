//! The daemon's side of `sync.watch`: starts the directory watcher
//! ([`dirsync_source::watch`]) as a task, keeps `dirsync_watch_connected` current, logs its
//! disconnections, and remembers that a run is due (one pending run, however many changes
//! arrived meanwhile: the run reads all of them).
//!
//! A (re)connection makes a run due as well as a change does: what changed while the watcher
//! was away (or, on the first connection, between the daemon's first read and the watcher's
//! start) is then read by that run. It knows the configuration and the metrics; what a run
//! does is the run's business.

use std::time::Duration;

use dirsync_source::watch::{WatchEvent, WatchSpec, watch};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::metrics::Metrics;
use crate::config::Config;

/// Events buffered between the watcher and the daemon; the watcher waits when it is full.
const EVENT_BUFFER: usize = 64;

/// A running watcher, or none (`sync.watch` off, or an LDIF source).
pub(super) struct Watch {
    task: Option<JoinHandle<()>>,
    events: Option<mpsc::Receiver<WatchEvent>>,
    /// A change (or a reconnection) was seen since the last run started.
    due: bool,
}

impl Watch {
    /// Starts the watcher the configuration asks for.
    pub(super) fn start(config: &Config, metrics: &Metrics) -> Watch {
        metrics.set_watch_connected(false);
        let none = Watch {
            task: None,
            events: None,
            due: false,
        };
        if !config.sync.watch {
            return none;
        }
        if config.ad.ldif_file.is_some() {
            tracing::warn!("sync.watch has no effect with an LDIF source (ad.ldif_file)");
            return none;
        }
        let spec = WatchSpec {
            ldap: config.ad.ldap.clone(),
            poll_every: config.sync.watch_interval.0,
        };
        let (sender, events) = mpsc::channel(EVENT_BUFFER);
        let settings = dirsync_source::ldap_settings(config);
        let task = tokio::spawn(watch(settings, spec, sender));
        tracing::info!("watching the directory for changes (sync.watch)");
        Watch {
            task: Some(task),
            events: Some(events),
            due: false,
        }
    }

    /// The next event of the watcher; never resolves when there is none.
    pub(super) async fn next(&mut self) -> WatchEvent {
        match self.events.as_mut() {
            Some(events) => match events.recv().await {
                Some(event) => event,
                None => {
                    // The task ended (it only does when the receiver goes): stop polling it.
                    self.events = None;
                    std::future::pending().await
                }
            },
            None => std::future::pending().await,
        }
    }

    /// Takes in one event: the gauge, the log, and whether a run is due.
    pub(super) fn on(&mut self, event: WatchEvent, metrics: &Metrics) {
        match event {
            WatchEvent::Connected => {
                metrics.set_watch_connected(true);
                tracing::info!("watcher connected: following the directory's changes");
                self.due = true;
            }
            WatchEvent::Changed => {
                tracing::debug!("the directory changed");
                self.due = true;
            }
            WatchEvent::Disconnected(reason) => {
                metrics.set_watch_connected(false);
                tracing::warn!("watcher disconnected, reconnecting: {reason}");
            }
        }
    }

    /// Whether a run is due; clears it (the run about to start reads every change so far).
    pub(super) fn take_due(&mut self) -> bool {
        std::mem::take(&mut self.due)
    }

    /// How long to let a burst of changes settle before the run they make due.
    pub(super) const SETTLE: Duration = Duration::from_millis(100);
}

impl Drop for Watch {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}
