//! [`Error`]: what can go wrong while starting, driving or stopping a peer. The messages name
//! what failed and carry the peer's own output or log, so a test that cannot start its peer
//! fails with the reason; passwords printed by a start script are redacted first.

use std::fmt;
use std::num::ParseIntError;
use std::path::PathBuf;
use std::process::ExitStatus;
use std::time::Duration;

use crate::samba::SKIP_ENV;

/// An error of the test harness.
#[derive(thiserror::Error)]
pub enum Error {
    /// An I/O operation (a file, a socket, a thread) failed; `context` names it.
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
    /// A program ran and failed; `output` is what it printed (stdout and/or stderr).
    #[error("{what} failed ({status}):\n{output}")]
    Command {
        what: String,
        status: ExitStatus,
        output: String,
    },
    /// A start script succeeded but did not print one of the variables it should
    /// (`output` is its output, passwords redacted).
    #[error("{script} did not print {key}:\n{output}")]
    MissingOutput {
        script: String,
        key: String,
        output: String,
    },
    /// A program printed something this harness cannot use.
    #[error("{what}: {detail}")]
    UnexpectedOutput { what: String, detail: String },
    /// A number a program printed does not parse.
    #[error("{what}: {value:?}: {source}")]
    Parse {
        what: String,
        value: String,
        source: ParseIntError,
    },
    /// A JSON record a peer wrote does not parse.
    #[error("{context}: {source}")]
    Json {
        context: String,
        source: serde_json::Error,
    },
    /// A peer's software is missing on this machine.
    #[error("{what} is not installed: {hint}")]
    NotInstalled { what: String, hint: String },
    /// The Samba AD DC needs root.
    #[error(
        "SambaDc needs root (samba as a DC, `unshare --net`, setns for the forwarder); CI runs \
         as root. To skip these tests on purpose set {SKIP_ENV}=1."
    )]
    SambaNeedsRoot,
    /// The workspace's `idservice` binary is not there and could not be built.
    #[error("idservice binary not available at {}", path.display())]
    MissingBinary { path: PathBuf },
    /// A server did not become ready in time; `log` is what it logged.
    #[error("{what}:\n{log}")]
    NotReady { what: String, log: String },
    /// A server's start command failed; `log` is the server's own log.
    #[error("{source}\n{log}")]
    StartFailed { source: Box<Error>, log: String },
    /// The SMTP sink did not receive the messages a test waits for.
    #[error("expected {expected} message(s) within {timeout:?}, got {count}: {received}")]
    MailNotReceived {
        expected: usize,
        timeout: Duration,
        count: usize,
        /// (recipients, subject) of the messages received, in Debug form.
        received: String,
    },
    /// The fault proxy's control API answered a request with an error.
    #[error("faultproxy control {request}: {response}")]
    FaultProxyControl { request: String, response: String },
    /// No directory object has this sAMAccountName.
    #[error("no object with sAMAccountName={name}")]
    NoSuchObject { name: String },
    /// An entry lacks an attribute it must have.
    #[error("{dn} has no {attr}")]
    MissingAttribute { dn: String, attr: String },
    /// An attribute value has the wrong form.
    #[error("{attr} of {dn} is malformed: {detail}")]
    Malformed {
        dn: String,
        attr: String,
        detail: String,
    },
    /// A DN that cannot be split into its first RDN and the rest.
    #[error("cannot split RDN of {dn}")]
    InvalidDn { dn: String },
    /// [`crate::SambaDc::load_users`] was called a second time on a DC.
    #[error("{people_dn} exists: load_users works once per DC")]
    AlreadyLoaded { people_dn: String },
}

/// Debug is the message: the tests `unwrap()` harness results, and a panic should read as the
/// failure it reports (with its output on separate lines), not as a struct dump.
impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// The result of the harness's operations.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// `map_err` adapter: an I/O error with what was being done.
pub(crate) fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> Error {
    let context = context.into();
    move |source| Error::Io { context, source }
}

/// `map_err` adapter: a program that could not be started.
pub(crate) fn spawn(program: impl Into<String>) -> impl FnOnce(std::io::Error) -> Error {
    let program = program.into();
    move |source| Error::Spawn { program, source }
}

/// `KEY=value` output with the values of password and token variables replaced, for error
/// messages.
pub(crate) fn redact(output: &str) -> String {
    output
        .lines()
        .map(|line| match line.split_once('=') {
            Some((key, _)) if is_secret_key(key) => format!("{key}=<redacted>"),
            _ => line.to_string(),
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn is_secret_key(key: &str) -> bool {
    let key = key.trim().to_ascii_uppercase();
    ["PASS", "TOKEN", "SECRET", "PW_"]
        .iter()
        .any(|s| key.contains(s))
        || key.ends_with("PW")
        || key.ends_with("PWD")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_redacted() {
        let out = "LDAP_URI=ldap://x\nLDAP_ADMIN_PW=secret\nSCIM_TOKEN=t\nstarted\n";
        assert_eq!(
            redact(out),
            "LDAP_URI=ldap://x\nLDAP_ADMIN_PW=<redacted>\nSCIM_TOKEN=<redacted>\nstarted"
        );
    }

    #[test]
    fn debug_is_the_message() {
        let e = Error::NoSuchObject { name: "bob".into() };
        assert_eq!(format!("{e:?}"), "no object with sAMAccountName=bob");
    }
}
