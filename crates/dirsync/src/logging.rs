//! Logging as configured (`log:` of config.yml; docs/dirsync.md, "Logging"): where the lines
//! go (`log.logger`: stderr as text, JSON lines on stderr, the local syslog socket in RFC 5424
//! form, or the systemd journal natively), plus an optional file rotated by size
//! (`log.file`). `--log-format` on the command line puts the lines on stderr in that format
//! whatever the logger says; `--log-level` overrides `log.loglevel`.
//!
//! The syslog output is a small `tracing` layer of our own ([`syslog`]): it formats the RFC
//! 5424 line (APP-NAME `dirsync`) and sends it over a Unix datagram socket, or a stream socket
//! when the configured one is of that kind. The rotating file is [`rotate::RotatingFile`].
//! Nothing here sees a secret: the lines are what the rest of the agent logs, and it never
//! logs one.

use std::path::PathBuf;

use tracing_subscriber::Layer;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

use crate::config::{LogConfig, Logger};

pub mod rotate;
pub mod syslog;

/// Where the systemd journal listens for native messages.
const JOURNALD_SOCKET: &str = "/run/systemd/journal/socket";

/// The format of the lines on stderr (`--log-format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Text,
    Json,
}

/// Why logging could not be set up as configured.
#[derive(Debug, thiserror::Error)]
pub enum LoggingError {
    #[error("log.file {}: cannot open: {source}", path.display())]
    File {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot install the logger: {0}")]
    Install(String),
}

type BoxedLayer = Box<dyn Layer<tracing_subscriber::Registry> + Send + Sync>;

/// Installs the global logger: `level` (a level name, or a filter) for every output, lines to
/// the configured logger (or to stderr in `stderr_format` when the command line gave one), and
/// to `log.file` when set. Returns the warnings worth logging once the logger is up (a
/// journal or syslog socket that could not be used: the lines then go to stderr).
pub fn init(
    level: &str,
    stderr_format: Option<Format>,
    log: &LogConfig,
) -> Result<Vec<String>, LoggingError> {
    let filter = tracing_subscriber::EnvFilter::try_new(format!(
        "{level},sqlx=warn,hyper=warn,reqwest=warn,rustls=warn,lettre=warn"
    ))
    .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let mut warnings = Vec::new();
    let mut layers: Vec<BoxedLayer> = Vec::new();
    let file_format = match (stderr_format, log.logger) {
        (Some(f), _) => f,
        (None, Logger::Json) => Format::Json,
        (None, _) => Format::Text,
    };
    match stderr_format {
        Some(format) => layers.push(stderr_layer(format)),
        None => layers.push(logger_layer(log, &mut warnings)),
    }
    if let Some(path) = &log.file {
        let file = rotate::RotatingFile::open(path, log.file_max_size.0, log.file_keep).map_err(
            |source| LoggingError::File {
                path: path.clone(),
                source,
            },
        )?;
        let layer = tracing_subscriber::fmt::layer()
            .with_writer(file)
            .with_ansi(false);
        layers.push(match file_format {
            Format::Text => layer.boxed(),
            Format::Json => layer.json().boxed(),
        });
    }
    tracing_subscriber::registry()
        .with(layers)
        .with(filter)
        .try_init()
        .map_err(|e| LoggingError::Install(e.to_string()))?;
    Ok(warnings)
}

/// Lines on stderr (colours only on a terminal).
fn stderr_layer(format: Format) -> BoxedLayer {
    let layer = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    match format {
        Format::Text => layer.boxed(),
        Format::Json => layer.json().boxed(),
    }
}

/// The layer of `log.logger`; a socket that cannot be used falls back to stderr (text) with a
/// warning in `warnings`.
fn logger_layer(log: &LogConfig, warnings: &mut Vec<String>) -> BoxedLayer {
    match log.logger {
        Logger::Stderr | Logger::Eventlog => stderr_layer(Format::Text),
        Logger::Json => stderr_layer(Format::Json),
        Logger::Syslog => match syslog::SyslogLayer::connect(&log.syslog_socket) {
            Ok(layer) => layer.boxed(),
            Err(e) => {
                warnings.push(format!(
                    "log.logger: syslog: cannot use {}: {e}; logging to stderr instead",
                    log.syslog_socket.display()
                ));
                stderr_layer(Format::Text)
            }
        },
        Logger::Journald => {
            if !std::path::Path::new(JOURNALD_SOCKET).exists() {
                warnings.push(format!(
                    "log.logger: journald: {JOURNALD_SOCKET} does not exist (not under \
                     systemd?); logging to stderr instead"
                ));
                return stderr_layer(Format::Text);
            }
            match tracing_journald::layer() {
                Ok(layer) => layer.with_syslog_identifier("dirsync".into()).boxed(),
                Err(e) => {
                    warnings.push(format!(
                        "log.logger: journald: cannot use {JOURNALD_SOCKET}: {e}; logging to \
                         stderr instead"
                    ));
                    stderr_layer(Format::Text)
                }
            }
        }
    }
}
