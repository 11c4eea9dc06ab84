//! [`FaultProxy`]: the fault-injecting TCP proxy `testenv/peers/faultproxy.py` (stdlib
//! Python) between a client and a real peer on loopback, to make the peer unreachable
//! (`refuse`), silent (`blackhole`) or slow, to cut connections after so many bytes, and to
//! bring it back, without restarting it (scim2-server keeps its data in memory).
//!
//! With [`FaultProxy::set_http_faults`] it also speaks HTTP/1.1 (keep-alive, one upstream
//! connection per client connection) and answers a share of the requests with a fault: 429 or
//! 503 (`Retry-After: 0`) without forwarding them, or 500 after forwarding them, so the
//! request was applied although the client sees an error. The faults are drawn from a seeded
//! generator: the same seed and the same sequence of requests give the same faults.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::time::Duration;

use crate::error::{io, redact};
use crate::{Error, Result, free_port, parse_env, run_script, temp_dir};

/// What the proxy does with new connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultMode {
    /// Forward normally.
    Pass,
    /// Accept, then reset at once (the peer looks down).
    Refuse,
    /// Accept, read and discard, never answer (client timeouts).
    Blackhole,
}

impl FaultMode {
    fn as_str(self) -> &'static str {
        match self {
            FaultMode::Pass => "pass",
            FaultMode::Refuse => "refuse",
            FaultMode::Blackhole => "blackhole",
        }
    }
}

pub struct FaultProxy {
    /// `127.0.0.1:PORT` clients connect to.
    pub listen: String,
    /// `127.0.0.1:PORT` of the control API.
    pub control: String,
    dir: tempfile::TempDir,
}

impl FaultProxy {
    /// Starts a proxy in front of `upstream` (`127.0.0.1:PORT`), in `pass` mode.
    pub fn start(upstream: &str) -> Result<FaultProxy> {
        let dir = temp_dir("dirsync-faultproxy-")?;
        let mut attempt = 1;
        loop {
            let listen = format!("127.0.0.1:{}", free_port()?);
            let control = format!("127.0.0.1:{}", free_port()?);
            let envs = [
                ("FP_LISTEN", listen.clone()),
                ("FP_UPSTREAM", upstream.to_string()),
                ("FP_CONTROL", control.clone()),
                ("FP_DIR", dir.path().display().to_string()),
            ];
            match run_script("faultproxy_start.sh", &envs, &[]) {
                Ok(out) => {
                    if !parse_env(&out).contains_key("FP_PID") {
                        return Err(Error::MissingOutput {
                            script: "faultproxy_start.sh".into(),
                            key: "FP_PID".into(),
                            output: redact(&out),
                        });
                    }
                    return Ok(FaultProxy {
                        listen,
                        control,
                        dir,
                    });
                }
                Err(e) if attempt >= 5 => return Err(e),
                Err(_) => attempt += 1,
            }
        }
    }

    /// Rewrites the authority of `url` (`http://host:port/path`) to go through the proxy.
    pub fn proxied_url(&self, url: &str) -> String {
        let (scheme, rest) = url.split_once("://").unwrap_or(("http", url));
        let path = rest.find('/').map_or("", |i| &rest[i..]);
        format!("{scheme}://{}{path}", self.listen)
    }

    /// Changes what the proxy does with new connections; open connections are reset too, so
    /// a pooled keep-alive connection cannot slip past the fault.
    pub fn set_mode(&self, mode: FaultMode) -> Result<()> {
        self.control_request("/", &format!("{{\"mode\":\"{}\"}}", mode.as_str()))?;
        self.control_request("/reset", "")?;
        Ok(())
    }

    /// Resets every connection opened from now on once `bytes` went downstream on it (in
    /// the middle of whatever response crosses that count); 0 turns it off.
    pub fn set_reset_after_bytes(&self, bytes: u64) -> Result<()> {
        self.control_request("/", &format!("{{\"reset_after_bytes\":{bytes}}}"))?;
        Ok(())
    }

    /// Like [`Self::set_reset_after_bytes`], for the next `limit` connections that carry that
    /// much only; later ones pass (a directory that drops a read twice, then answers).
    pub fn set_resets(&self, bytes: u64, limit: u32) -> Result<()> {
        self.control_request(
            "/",
            &format!("{{\"reset_after_bytes\":{bytes},\"reset_limit\":{limit}}}"),
        )?;
        Ok(())
    }

    /// Answers about `share` (0..=1) of the HTTP requests on connections opened from now on
    /// with a fault, equally often each of: 429 or 503 with `Retry-After: 0`, answered by the
    /// proxy without forwarding the request; 500 after the request was forwarded and the
    /// real answer discarded (applied, but the client cannot know). The other requests pass.
    /// Fault answers carry a SCIM error body and keep the connection open. `seed` seeds the
    /// draws (re-seeded on every call, so a schedule replays); `share` 0 turns it off for new
    /// connections (HTTP connections already open stay HTTP, without faults). Latency,
    /// bandwidth, modes and resets keep working on HTTP connections. Counted in the status's
    /// `http_requests`, `http_faults`, `http_429`, `http_500` and `http_503`.
    pub fn set_http_faults(&self, share: f64, seed: u64) -> Result<()> {
        if !(0.0..=1.0).contains(&share) {
            return Err(Error::FaultProxyControl {
                request: "set_http_faults".into(),
                response: format!("share {share} is not within 0..=1"),
            });
        }
        self.control_request(
            "/",
            &format!("{{\"http_fault_share\":{share},\"http_fault_seed\":{seed}}}"),
        )?;
        Ok(())
    }

    /// With `on`, connections opened from now on are proxied as HTTP and a `200` answer to a
    /// `GET` of a SCIM collection (`…/Users`, `…/Groups`, any query) is replaced by an empty
    /// `ListResponse`: a target (or a proxy in front of it) that answers "nothing here" while
    /// it holds everything. Counted in the status's `http_emptied`.
    pub fn set_empty_lists(&self, on: bool) -> Result<()> {
        self.control_request("/", &format!("{{\"http_empty_lists\":{on}}}"))?;
        Ok(())
    }

    /// The proxy's config and counters (JSON text).
    pub fn status(&self) -> Result<String> {
        self.http("GET", "/", "")
    }

    fn control_request(&self, path: &str, body: &str) -> Result<String> {
        self.http("POST", path, body)
    }

    fn http(&self, method: &str, path: &str, body: &str) -> Result<String> {
        let mut stream = TcpStream::connect(&self.control).map_err(io("faultproxy control"))?;
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .map_err(io("faultproxy control"))?;
        let request = format!(
            "{method} {path} HTTP/1.0\r\nHost: {}\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\n\r\n{body}",
            self.control,
            body.len()
        );
        stream
            .write_all(request.as_bytes())
            .map_err(io("faultproxy control"))?;
        let mut response = String::new();
        stream
            .read_to_string(&mut response)
            .map_err(io("faultproxy control"))?;
        let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
        if !head.starts_with("HTTP/1.0 200") {
            return Err(Error::FaultProxyControl {
                request: format!("{method} {path}"),
                response: format!("{head} {body}"),
            });
        }
        Ok(body.to_string())
    }

    fn envs(&self) -> Vec<(&'static str, String)> {
        vec![
            ("FP_LISTEN", self.listen.clone()),
            ("FP_DIR", self.dir.path().display().to_string()),
        ]
    }

    /// The proxy's log file.
    pub fn log_file(&self) -> PathBuf {
        self.dir.path().join("log")
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        let _ = run_script("faultproxy_stop.sh", &self.envs(), &[]);
    }
}
