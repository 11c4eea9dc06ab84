//! `log.logger: syslog`: each event as one RFC 5424 message on the local syslog socket.
//!
//! `<PRI>1 TIMESTAMP HOSTNAME dirsync PROCID - - MSG`: facility `daemon` (3), the severity
//! from the level (error 3, warn 4, info 6, debug and trace 7), the time in UTC with
//! microseconds, the host name (`-` when unknown), APP-NAME `dirsync`, the process id, no
//! MSGID and no structured data; MSG is the event's message followed by its fields as
//! `key=value`. A datagram socket (the usual `/dev/log`) gets one message per datagram; a
//! stream socket gets each message followed by a newline (the framing local syslog daemons
//! accept on stream sockets). The `syslog` crate was not used: it is built around the `log`
//! facade, so a `tracing` layer would be needed anyway, and the line is a few lines of
//! formatting over std's Unix sockets.

use std::fmt::Write as _;
use std::io::Write as _;
use std::os::unix::net::{UnixDatagram, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::Context;

/// RFC 5424 facility `daemon`.
const FACILITY_DAEMON: u8 = 3;
/// The APP-NAME of every message.
pub const APP_NAME: &str = "dirsync";
/// A longer MSG is cut (at a character boundary) so that a datagram always fits.
const MAX_MSG: usize = 8 * 1024;

/// The open socket.
enum Socket {
    Datagram(UnixDatagram),
    Stream(UnixStream),
}

impl Socket {
    fn connect(path: &Path) -> std::io::Result<Socket> {
        let datagram = UnixDatagram::unbound().and_then(|s| s.connect(path).map(|()| s));
        match datagram {
            Ok(s) => Ok(Socket::Datagram(s)),
            // A stream socket refuses a datagram connection (EPROTOTYPE); when the stream
            // connection fails too, the datagram error is the one that says why.
            Err(e) => UnixStream::connect(path).map(Socket::Stream).map_err(|_| e),
        }
    }

    fn send(&mut self, line: &str) -> std::io::Result<()> {
        match self {
            Socket::Datagram(s) => s.send(line.as_bytes()).map(|_| ()),
            Socket::Stream(s) => {
                let mut framed = String::with_capacity(line.len() + 1);
                framed.push_str(line);
                framed.push('\n');
                s.write_all(framed.as_bytes())
            }
        }
    }
}

/// The layer: formats and sends each event; a send that fails is retried once on a new
/// connection (the syslog daemon restarted), then the line is dropped.
pub struct SyslogLayer {
    path: PathBuf,
    hostname: String,
    pid: u32,
    socket: Mutex<Option<Socket>>,
}

impl SyslogLayer {
    /// Connects to `path` (a datagram socket, or a stream socket).
    pub fn connect(path: &Path) -> std::io::Result<SyslogLayer> {
        let socket = Socket::connect(path)?;
        Ok(SyslogLayer {
            path: path.to_path_buf(),
            hostname: hostname(),
            pid: std::process::id(),
            socket: Mutex::new(Some(socket)),
        })
    }

    fn send(&self, line: &str) {
        let mut guard = self.socket.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(socket) = guard.as_mut()
            && socket.send(line).is_ok()
        {
            return;
        }
        *guard = Socket::connect(&self.path).ok();
        if let Some(socket) = guard.as_mut() {
            let _ = socket.send(line);
        }
    }
}

/// The host name as RFC 5424 wants it (printable ASCII, at most 255), or `-`.
fn hostname() -> String {
    let name = ::hostname::get()
        .ok()
        .and_then(|n| n.into_string().ok())
        .unwrap_or_default();
    if name.is_empty() || name.len() > 255 || !name.bytes().all(|b| (33..=126).contains(&b)) {
        "-".into()
    } else {
        name
    }
}

/// The RFC 5424 severity of a level.
fn severity(level: &Level) -> u8 {
    match *level {
        Level::ERROR => 3,
        Level::WARN => 4,
        Level::INFO => 6,
        _ => 7,
    }
}

/// One message: `<PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID - - MSG`.
pub fn format_line(level: &Level, timestamp: &str, hostname: &str, pid: u32, msg: &str) -> String {
    let pri = u16::from(FACILITY_DAEMON) * 8 + u16::from(severity(level));
    let mut cut = msg.len().min(MAX_MSG);
    while !msg.is_char_boundary(cut) {
        cut -= 1;
    }
    format!(
        "<{pri}>1 {timestamp} {hostname} {APP_NAME} {pid} - - {}",
        &msg[..cut]
    )
}

/// The event's message, then its other fields as `key=value`.
#[derive(Default)]
struct Message {
    message: String,
    fields: String,
}

impl Visit for Message {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message.push_str(value);
        } else {
            let _ = write!(self.fields, " {}={value:?}", field.name());
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.message, "{value:?}");
        } else {
            let _ = write!(self.fields, " {}={value:?}", field.name());
        }
    }
}

impl<S: Subscriber> tracing_subscriber::Layer<S> for SyslogLayer {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let mut msg = Message::default();
        event.record(&mut msg);
        msg.message.push_str(&msg.fields);
        // Control characters (a multi-line error) would split the line for many readers.
        let text: String = msg
            .message
            .chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect();
        let timestamp = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
        let line = format_line(
            event.metadata().level(),
            &timestamp,
            &self.hostname,
            self.pid,
            &text,
        );
        self.send(&line);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    #[test]
    fn line_format() {
        let line = format_line(
            &Level::WARN,
            "2026-12-07T02:16:40.123456Z",
            "host1",
            42,
            "run ended exit_code=1",
        );
        assert_eq!(
            line,
            "<28>1 2026-12-07T02:16:40.123456Z host1 dirsync 42 - - run ended exit_code=1"
        );
        assert!(format_line(&Level::INFO, "t", "h", 1, "x").starts_with("<30>1 "));
        assert!(format_line(&Level::ERROR, "t", "h", 1, "x").starts_with("<27>1 "));
        let long = "é".repeat(MAX_MSG);
        assert!(format_line(&Level::DEBUG, "t", "h", 1, &long).len() < MAX_MSG + 40);
    }

    #[test]
    fn datagram_and_stream_sockets() {
        let dir = tempfile::tempdir().unwrap();
        let dgram_path = dir.path().join("dgram");
        let receiver = UnixDatagram::bind(&dgram_path).unwrap();
        let layer = SyslogLayer::connect(&dgram_path).unwrap();
        layer.send("<30>1 x");
        let mut buf = [0u8; 64];
        let n = receiver.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"<30>1 x");

        let stream_path = dir.path().join("stream");
        let listener = std::os::unix::net::UnixListener::bind(&stream_path).unwrap();
        let layer = SyslogLayer::connect(&stream_path).unwrap();
        layer.send("<30>1 y");
        let (mut conn, _) = listener.accept().unwrap();
        let mut got = [0u8; 8];
        std::io::Read::read_exact(&mut conn, &mut got).unwrap();
        assert_eq!(&got, b"<30>1 y\n");
    }
}
