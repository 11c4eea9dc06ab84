//! A loopback SMTP sink (aiosmtpd, `testenv/peers/smtp_start.sh`) that stores every message
//! it accepts, so tests can check who received what. Options of the sink (`--reject-rcpt S`:
//! 550 for recipients containing S; `--fail-rate F`: 451 on DATA with probability F) are
//! passed through. Stopped (and its files removed) when the handle is dropped.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use base64::Engine;

use crate::error::io;
use crate::{Error, Result, free_port, parse_env, run_script, temp_dir};

/// One message as the sink stored it.
#[derive(Debug, Clone)]
pub struct ReceivedMail {
    /// Envelope recipients (RCPT TO), as accepted.
    pub rcpts: Vec<String>,
    pub mail_from: String,
    /// Decoded `Subject`.
    pub subject: String,
    /// The text body, transfer-decoded (quoted-printable or base64).
    pub body: String,
    /// The message as received.
    pub raw: String,
    /// Whether the session had switched to TLS (STARTTLS).
    pub tls: bool,
    /// The user the client authenticated as, if it did.
    pub auth_user: Option<String>,
}

pub struct SmtpSink {
    pub host: String,
    pub port: u16,
    /// The private CA that signed the sink's certificate (STARTTLS sinks only).
    pub ca_file: Option<PathBuf>,
    dir: tempfile::TempDir,
}

impl SmtpSink {
    pub fn start() -> Result<SmtpSink> {
        Self::start_with("")
    }

    /// Starts with extra sink arguments, e.g. `"--reject-rcpt bounce@ --fail-rate 0.5"`.
    pub fn start_with(args: &str) -> Result<SmtpSink> {
        Self::start_inner(None, args, &[])
    }

    /// Starts a sink that offers STARTTLS (certificate from a private CA, [`Self::ca_file`])
    /// and requires AUTH PLAIN/LOGIN as `user_pass` (`USER:PASS`).
    pub fn start_tls_auth(user_pass: &str) -> Result<SmtpSink> {
        Self::start_inner(
            None,
            "",
            &[("SMTP_TLS", "1".into()), ("SMTP_AUTH", user_pass.into())],
        )
    }

    /// Starts on a given port (a relay that comes up after the service queued mail).
    pub fn start_on(port: u16, args: &str) -> Result<SmtpSink> {
        Self::start_inner(Some(port), args, &[])
    }

    fn start_inner(
        fixed_port: Option<u16>,
        args: &str,
        extra_env: &[(&str, String)],
    ) -> Result<SmtpSink> {
        let dir = temp_dir("dirsync-smtp-")?;
        // A free port may be taken between the probe and the bind: try a few.
        let mut attempt = 1;
        loop {
            let port = match fixed_port {
                Some(p) => p,
                None => free_port()?,
            };
            let mut envs = vec![
                ("SMTP_PORT", port.to_string()),
                ("SMTP_DIR", dir.path().join("smtp").display().to_string()),
                ("SMTP_ARGS", args.to_string()),
            ];
            envs.extend(extra_env.iter().cloned());
            if let Ok(venv) = std::env::var("DIRSYNC_SMTP_VENV") {
                envs.push(("SMTP_VENV", venv));
            }
            match run_script("smtp_start.sh", &envs, &[]) {
                Ok(out) => {
                    let env = parse_env(&out);
                    let host = env
                        .get("SMTP_HOST")
                        .cloned()
                        .unwrap_or_else(|| "127.0.0.1".into());
                    let ca_file = env
                        .get("SMTP_CA")
                        .filter(|c| !c.is_empty())
                        .map(PathBuf::from);
                    return Ok(SmtpSink {
                        host,
                        port,
                        ca_file,
                        dir,
                    });
                }
                Err(e) if attempt >= 5 => return Err(e),
                Err(_) => attempt += 1,
            }
        }
    }

    /// Where the sink stores `NNNNNN.eml` and `index.jsonl`.
    pub fn mail_dir(&self) -> PathBuf {
        self.dir.path().join("smtp").join("mail")
    }

    /// Every message received so far, in arrival order.
    pub fn messages(&self) -> Result<Vec<ReceivedMail>> {
        let index = self.mail_dir().join("index.jsonl");
        let text = match std::fs::read_to_string(&index) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io(index.display().to_string())(e)),
        };
        let mut out = Vec::new();
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            let rec: serde_json::Value =
                serde_json::from_str(line).map_err(|source| Error::Json {
                    context: format!("index.jsonl line {line:?}"),
                    source,
                })?;
            let file = rec["file"]
                .as_str()
                .ok_or_else(|| Error::UnexpectedOutput {
                    what: "index.jsonl".into(),
                    detail: format!("no file in {line}"),
                })?;
            let path = self.mail_dir().join(file);
            let raw = std::fs::read(&path).map_err(io(path.display().to_string()))?;
            let raw = String::from_utf8_lossy(&raw).into_owned();
            out.push(ReceivedMail {
                rcpts: rec["rcpt_tos"]
                    .as_array()
                    .map(|a| {
                        a.iter()
                            .filter_map(|v| v.as_str().map(str::to_string))
                            .collect()
                    })
                    .unwrap_or_default(),
                mail_from: rec["mail_from"].as_str().unwrap_or_default().to_string(),
                subject: rec["subject"].as_str().unwrap_or_default().to_string(),
                body: decode_body(&raw),
                raw,
                tls: rec["tls"].as_bool().unwrap_or(false),
                auth_user: rec["auth_user"].as_str().map(str::to_string),
            });
        }
        Ok(out)
    }

    /// Waits until at least `n` messages have arrived; returns them all.
    pub fn wait_for(&self, n: usize, timeout: Duration) -> Result<Vec<ReceivedMail>> {
        let deadline = Instant::now() + timeout;
        loop {
            let msgs = self.messages()?;
            if msgs.len() >= n {
                return Ok(msgs);
            }
            if Instant::now() > deadline {
                return Err(Error::MailNotReceived {
                    expected: n,
                    timeout,
                    count: msgs.len(),
                    received: format!(
                        "{:?}",
                        msgs.iter()
                            .map(|m| (&m.rcpts, &m.subject))
                            .collect::<Vec<_>>()
                    ),
                });
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        let envs = [
            ("SMTP_PORT", self.port.to_string()),
            (
                "SMTP_DIR",
                self.dir.path().join("smtp").display().to_string(),
            ),
        ];
        let _ = run_script("smtp_stop.sh", &envs, &["--purge"]);
    }
}

/// The body of a single-part message, undoing its Content-Transfer-Encoding.
fn decode_body(raw: &str) -> String {
    let raw = raw.replace("\r\n", "\n");
    let (headers, body) = raw.split_once("\n\n").unwrap_or((raw.as_str(), ""));
    let cte = headers
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case("content-transfer-encoding")
                .then(|| v.trim().to_ascii_lowercase())
        })
        .unwrap_or_default();
    match cte.as_str() {
        "base64" => {
            let compact: String = body.chars().filter(|c| !c.is_whitespace()).collect();
            base64::engine::general_purpose::STANDARD
                .decode(compact)
                .map(|b| String::from_utf8_lossy(&b).into_owned())
                .unwrap_or_else(|_| body.to_string())
        }
        "quoted-printable" => decode_qp(body),
        _ => body.to_string(),
    }
}

fn decode_qp(s: &str) -> String {
    let mut out = Vec::with_capacity(s.len());
    let bytes = s.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'=' if bytes.get(i + 1) == Some(&b'\n') => i += 2,
            b'=' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("");
                match u8::from_str_radix(hex, 16) {
                    Ok(b) => {
                        out.push(b);
                        i += 3;
                    }
                    Err(_) => {
                        out.push(b'=');
                        i += 1;
                    }
                }
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_are_transfer_decoded() {
        assert_eq!(
            decode_body(
                "Subject: x\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\na=3Db=\r\nc\r\n"
            ),
            "a=bc\n"
        );
        assert_eq!(
            decode_body("Content-Transfer-Encoding: base64\n\naGVsbG8=\n"),
            "hello"
        );
        assert_eq!(decode_body("Subject: x\n\nplain\n"), "plain\n");
    }
}
