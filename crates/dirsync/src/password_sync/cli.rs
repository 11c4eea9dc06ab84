//! `dirsync password-sync …`: the command-line side of capture and push. Lives here rather
//! than in main.rs so the binary only routes to it.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use super::{PushOptions, Pusher, Queue, capture, reply, run_forever};
use crate::config::{Config, values::parse_duration};
use crate::report::{EXIT_OK, EXIT_REFUSED, EXIT_UNREACHABLE};

#[derive(clap::Subcommand)]
pub enum PasswordSyncCommand {
    /// The `samba-tool user syncpasswords --script` hook: reads one account's LDIF on stdin,
    /// queues its cleartext password (encrypted), answers `DONE-EXIT: …`.
    Capture {
        /// Queue directory (created 0700 if missing).
        #[arg(long)]
        queue: PathBuf,
        /// 32-byte key file (created 0600 if missing; default: queue.key in the queue).
        #[arg(long)]
        key_file: Option<PathBuf>,
    },
    /// Deliver queued password changes to the SCIM target.
    Push {
        /// config.yml (target, token file, attribute mapping for externalId).
        #[arg(long, short)]
        config: PathBuf,
        /// secret.yml (default: secret.yml beside config.yml).
        #[arg(long)]
        secret: Option<PathBuf>,
        #[arg(long)]
        queue: PathBuf,
        #[arg(long)]
        key_file: Option<PathBuf>,
        /// One pass over what can be done now, then exit (default: keep running).
        #[arg(long)]
        once: bool,
        /// Give a change up (and report it) when it is older than this (e.g. 7d, 12h).
        #[arg(long, default_value = "7d", value_parser = duration)]
        max_age: std::time::Duration,
        /// First retry delay when the user is not in the target yet or it is unreachable.
        #[arg(long, default_value = "5s", value_parser = duration)]
        backoff_min: std::time::Duration,
        /// Longest retry delay.
        #[arg(long, default_value = "10m", value_parser = duration)]
        backoff_max: std::time::Duration,
        /// Report format on stdout (--once).
        #[arg(long, default_value = "text", value_parser = ["text", "json"])]
        report: String,
    },
}

fn duration(text: &str) -> Result<std::time::Duration, crate::config::values::ValueError> {
    parse_duration(text)
}

/// Runs the command; `init_logging(level)` sets up stderr logging (the binary owns the
/// format). Returns the exit code.
pub async fn run(
    command: PasswordSyncCommand,
    log_level: Option<&str>,
    init_logging: &dyn Fn(&str),
) -> i32 {
    match command {
        PasswordSyncCommand::Capture { queue, key_file } => {
            let result = capture(&queue, key_file.as_deref(), &mut std::io::stdin().lock());
            // The reply first: samba-tool reads stdout+stderr as one stream and checks that
            // it starts with DONE-EXIT.
            let mut stdout = std::io::stdout().lock();
            let _ = writeln!(stdout, "{}", reply(&result)).and_then(|()| stdout.flush());
            drop(stdout);
            init_logging(log_level.unwrap_or("info"));
            match result {
                Ok(outcome) => {
                    tracing::debug!(?outcome, "password-sync capture");
                    EXIT_OK
                }
                Err(e) => {
                    tracing::error!("{e}");
                    1
                }
            }
        }
        PasswordSyncCommand::Push {
            config,
            secret,
            queue,
            key_file,
            once,
            max_age,
            backoff_min,
            backoff_max,
            report,
        } => {
            let config = match Config::load(&config, secret.as_deref()) {
                Ok((c, _)) => c,
                Err(e) => {
                    eprintln!("dirsync: {e}");
                    return EXIT_REFUSED;
                }
            };
            init_logging(log_level.unwrap_or(config.log.loglevel.as_str()));
            let options = PushOptions {
                max_age,
                backoff_min,
                backoff_max,
                ..PushOptions::default()
            };
            push(&config, &queue, key_file.as_deref(), once, options, &report).await
        }
    }
}

async fn push(
    config: &Config,
    queue_dir: &Path,
    key_file: Option<&Path>,
    once: bool,
    options: PushOptions,
    format: &str,
) -> i32 {
    // The pusher creates the queue too, so it can start before the first capture.
    let queue = match Queue::open(queue_dir, key_file, true) {
        Ok(q) => q,
        Err(e) => {
            eprintln!("dirsync: {e}");
            return EXIT_REFUSED;
        }
    };
    let _lock = match queue.lock_pusher() {
        Ok(l) => l,
        Err(e) => {
            eprintln!("dirsync: {e}");
            return EXIT_REFUSED;
        }
    };
    if !once {
        return match run_forever(config, &queue, options, shutdown()).await {
            Ok(()) => EXIT_OK,
            Err(e) => {
                tracing::error!("{e}");
                EXIT_UNREACHABLE
            }
        };
    }
    let result = match Pusher::new(config, &queue, options) {
        Ok(mut p) => p.pass().await,
        Err(e) => Err(e),
    };
    let report = match result {
        Ok(r) => r,
        Err(e) => {
            eprintln!("dirsync: {e}");
            return EXIT_UNREACHABLE;
        }
    };
    let mut out = String::new();
    if format == "json" {
        // default: serialising the report cannot fail.
        out = serde_json::to_string_pretty(&report).unwrap_or_default();
        out.push('\n');
    } else {
        for line in &report.lines {
            out += &format!("{line}\n");
        }
        out += &format!("remaining in queue: {}\n", report.remaining);
    }
    let mut stdout = std::io::stdout().lock();
    let _ = stdout
        .write_all(out.as_bytes())
        .and_then(|()| stdout.flush());
    let failed = report.count(&super::Outcome::Expired)
        + report.count(&super::Outcome::Rejected)
        + report.count(&super::Outcome::Unreadable);
    if report.target_unavailable {
        EXIT_UNREACHABLE
    } else if failed > 0 {
        1
    } else {
        EXIT_OK
    }
}

async fn shutdown() {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
