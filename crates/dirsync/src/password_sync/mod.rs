//! Password Sync (behaviour §6): `dirsync password-sync capture` is the hook Samba's
//! `samba-tool user syncpasswords --script` calls for each changed account; it seals the
//! cleartext into a durable, encrypted queue. `dirsync password-sync push` delivers the queue
//! to the SCIM target (find by externalId, PATCH `password`), retrying with backoff.
//!
//! `capture` (LDIF → queue item), `queue` (sealed files, key file, ordering, locking), `push`
//! (lookup, delivery, outcomes). Nothing here logs a password or the target's error detail;
//! see docs/password-sync.md for the DC-side setup and the key-handling trade-offs.

pub mod capture;
pub mod cli;
pub mod push;
pub mod queue;

use std::time::Duration;

pub use capture::{CaptureOutcome, capture, reply};
pub use push::{Outcome, OutcomeLine, PassReport, PushError, PushOptions, Pusher};
pub use queue::{Item, ItemId, Queue, QueueError};

use crate::config::Config;

/// Loop mode: passes until `stop` resolves, sleeping until the next retry is due or the poll
/// interval has passed (new items appear as files; polling a local directory is cheap).
pub async fn run_forever(
    config: &Config,
    queue: &Queue,
    options: PushOptions,
    stop: impl std::future::Future<Output = ()>,
) -> Result<(), PushError> {
    let poll = options.poll;
    let mut pusher = Pusher::new(config, queue, options)?;
    tokio::pin!(stop);
    loop {
        let report = pusher.pass().await?;
        tracing::debug!(remaining = report.remaining, "password-sync pass done");
        let wait = pusher
            .next_due()
            .map_or(poll, |d| d.min(poll))
            .max(Duration::from_millis(100));
        tokio::select! {
            () = &mut stop => return Ok(()),
            () = tokio::time::sleep(wait) => {}
        }
    }
}
