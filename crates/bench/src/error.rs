//! [`Error`]: why a benchmark could not run or measure. The binaries print it and exit with a
//! failure code.

use std::path::PathBuf;

use serde_json::Value;

/// An error of the benchmark library and binaries.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A test peer (slapd, Samba, PostgreSQL, HAProxy) failed.
    #[error(transparent)]
    Testenv(#[from] testenv::Error),
    /// An I/O operation failed; `context` names it.
    #[error("{context}: {source}")]
    Io {
        context: String,
        source: std::io::Error,
    },
    /// A program could not be started.
    #[error("cannot run {program}: {source}")]
    Spawn {
        program: String,
        source: std::io::Error,
    },
    /// A program ran and failed; `output` is what it printed on stderr.
    #[error("{what} failed: {output}")]
    Command { what: String, output: String },
    /// An HTTP request to idservice failed.
    #[error(transparent)]
    Http(#[from] reqwest::Error),
    /// An answer of idservice is not the JSON expected.
    #[error(transparent)]
    Json(#[from] serde_json::Error),
    /// A request task panicked or was cancelled.
    #[error(transparent)]
    Task(#[from] tokio::task::JoinError),
    /// The limit on requests in flight was closed.
    #[error(transparent)]
    Semaphore(#[from] tokio::sync::AcquireError),
    /// idservice did not print its address.
    #[error("unexpected idservice output {0:?}")]
    IdserviceOutput(String),
    /// The idservice binary to benchmark is missing.
    #[error(
        "{} not found; build it with `cargo build --release -p idservice` or pass --idservice",
        .0.display()
    )]
    MissingIdservice(PathBuf),
    /// `dirsync --report json` printed no report; `output` is its stdout and stderr.
    #[error("dirsync printed no JSON report ({source}): {output}")]
    NoReport {
        source: serde_json::Error,
        output: String,
    },
    /// A dirsync run exited with a non-zero code; its report.
    #[error("dirsync run failed: {report:#}")]
    DirsyncFailed { report: Value },
    /// `/usr/bin/time` wrote no peak RSS.
    #[error("no peak RSS in /usr/bin/time output {0:?}")]
    NoPeakRss(String),
    /// A step did not do all its work, so its figures would flatter: what happened, with the
    /// numbers.
    #[error("{0}")]
    Incomplete(String),
}

/// The result of the benchmark steps.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// `map_err` adapter: an I/O error with what was being done.
pub fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> Error {
    let context = context.into();
    move |source| Error::Io { context, source }
}
