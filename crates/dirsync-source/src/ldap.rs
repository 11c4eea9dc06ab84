//! The LDAP network source (ldap3 over rustls/ring): address failover, LDAPS/StartTLS with
//! certificate verification, simple or Kerberos ([`crate::kerberos`]) bind, paged searches,
//! and range retrieval of large multi-valued attributes. It returns raw entries; it knows
//! nothing of SCIM or mapping.
//!
//! A search that ends with anything but success (size or time limit, a lost page) yields a
//! read marked incomplete, which the planner never deletes on. A connection that drops
//! mid-read is an error ([`LdapSourceError::Lost`]): the caller reads again from the start
//! ([`crate::reconnect`]).

use std::sync::Arc;
use std::time::Duration;

use ldap3::adapters::{Adapter, EntriesOnly, PagedResults};
use ldap3::{Ldap, LdapConnAsync, LdapConnSettings, Scope, SearchEntry};
use secrecy::{ExposeSecret, SecretString};

use super::{Entry, EntryBuilder, normalize_dn};
use crate::kerberos::{self, KerberosSettings};

/// How to reach and authenticate to the directory.
pub struct LdapSettings {
    /// Host names or addresses, tried in order; the first that answers is used.
    pub addresses: Vec<String>,
    pub port: u16,
    pub encryption: Encryption,
    /// Verify the server certificate (behaviour §2.2: on unless explicitly switched off).
    pub verify: bool,
    /// PEM file with the CA certificates to trust instead of the system roots.
    pub ca_file: Option<std::path::PathBuf>,
    pub bind_dn: String,
    pub password: SecretString,
    /// A Kerberos (SASL GSSAPI) bind instead of the simple bind with `bind_dn`/`password`.
    pub kerberos: Option<KerberosSettings>,
    /// Operation timeout.
    pub timeout: Duration,
    pub page_size: i32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encryption {
    None,
    StartTls,
    Ldaps,
}

/// One search: base, the effective filter, the attributes to fetch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SearchSpec {
    pub base: String,
    pub filter: String,
    pub attributes: Vec<String>,
}

/// The entries of one search and whether the directory said it was complete.
#[derive(Debug)]
pub struct SearchOutcome {
    pub entries: Vec<Entry>,
    pub complete: bool,
    pub notes: Vec<String>,
}

/// The DN an LDAP URL names (`ldap://host:port/DN?attrs…`, RFC 4516), percent-decoded;
/// `None` when the URL names none.
fn referral_dn(url: &str) -> Option<String> {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let (_, path) = rest.split_once('/')?;
    let dn = path.split('?').next().unwrap_or_default();
    let dn = percent_encoding::percent_decode_str(dn)
        .decode_utf8()
        .ok()?;
    (!dn.trim().is_empty()).then(|| dn.into_owned())
}

/// The referrals of a search that hide entries it should have read. A referral to another
/// naming context of the same directory (Active Directory answers every subtree search from
/// a domain's root with references to its DNS and configuration partitions, all listed in the
/// rootDSE's `namingContexts`) holds no part of the searched tree; any other referral — a
/// subtree moved to another server, a referral to nowhere — does, since referrals are never
/// followed.
fn hiding_referrals<'r>(referrals: &'r [String], naming_contexts: &[&str]) -> Vec<&'r str> {
    let contexts: Vec<String> = naming_contexts.iter().map(|c| normalize_dn(c)).collect();
    referrals
        .iter()
        .filter(|url| referral_dn(url).is_none_or(|dn| !contexts.contains(&normalize_dn(&dn))))
        .map(String::as_str)
        .collect()
}

#[derive(Debug, thiserror::Error)]
pub enum LdapSourceError {
    #[error("cannot reach any LDAP server ({tried}): {last}")]
    Unreachable { tried: String, last: String },
    #[error("LDAP bind as {dn} on {server} failed: {reason}")]
    Bind {
        dn: String,
        server: String,
        reason: String,
    },
    #[error("Kerberos (GSSAPI) bind as {principal} on {server} failed: {reason}")]
    KerberosBind {
        principal: String,
        server: String,
        reason: Box<kerberos::KerberosError>,
    },
    #[error("LDAP TLS setting: {0}")]
    Tls(String),
    #[error("LDAP search under {base} failed: {reason}")]
    Search { base: String, reason: String },
    /// The connection dropped (reset, closed, timed out) before the server answered in full.
    #[error("the LDAP connection was lost while reading {base}: {reason}")]
    Lost { base: String, reason: String },
    #[error("the LDAP client failed while decoding a response (malformed data from the server)")]
    Crashed,
}

impl crate::reconnect::Transient for LdapSourceError {
    /// No server answered, or the connection dropped: a new connection may do better.
    fn is_transient(&self) -> bool {
        matches!(
            self,
            LdapSourceError::Unreachable { .. } | LdapSourceError::Lost { .. }
        )
    }
}

/// Whether an ldap3 error means the connection is gone (reset, closed, timed out) rather
/// than an answer from the server.
pub(crate) fn connection_lost(e: &ldap3::LdapError) -> bool {
    use ldap3::LdapError as E;
    matches!(
        e,
        E::Io { .. }
            | E::OpSend { .. }
            | E::ResultRecv { .. }
            | E::IdScrubSend { .. }
            | E::MiscSend { .. }
            | E::Timeout { .. }
            | E::EndOfStream
    )
}

/// `Lost` when the connection is gone, else `answered` (the server's answer).
pub(crate) fn lost_or(
    e: ldap3::LdapError,
    base: &str,
    answered: impl FnOnce(String) -> LdapSourceError,
) -> LdapSourceError {
    if connection_lost(&e) {
        LdapSourceError::Lost {
            base: base.to_string(),
            reason: e.to_string(),
        }
    } else {
        answered(e.to_string())
    }
}

/// A bound connection to the first server that answered.
pub struct LdapSource {
    ldap: Ldap,
    server: String,
    /// How it is bound, for `dirsync check` (mechanism, identity, protection).
    bound: String,
    timeout: Duration,
    page_size: i32,
}

impl LdapSource {
    /// Connects to the first address that answers and binds.
    pub async fn connect(settings: &LdapSettings) -> Result<LdapSource, LdapSourceError> {
        let tls = tls_config(settings)?;
        let mut last = String::from("no address configured");
        for address in &settings.addresses {
            let scheme = if settings.encryption == Encryption::Ldaps {
                "ldaps"
            } else {
                "ldap"
            };
            let url = format!("{scheme}://{}:{}", host_for_url(address), settings.port);
            let mut conn_settings = LdapConnSettings::new()
                .set_conn_timeout(settings.timeout.min(Duration::from_secs(30)))
                .set_starttls(settings.encryption == Encryption::StartTls);
            if settings.encryption != Encryption::None {
                if !settings.verify {
                    // ldap3 ignores set_no_tls_verify when a ClientConfig is given: with
                    // `verify_mode: false` it must build its own (non-verifying) config, even
                    // when a ca_file is also configured.
                    conn_settings = conn_settings.set_no_tls_verify(true);
                } else if let Some(config) = &tls {
                    conn_settings = conn_settings.set_config(config.clone());
                }
            }
            let (conn, mut ldap) = match LdapConnAsync::with_settings(conn_settings, &url).await {
                Ok(pair) => pair,
                Err(e) => {
                    last = explain_connect_error(&url, &e.to_string(), settings);
                    tracing::warn!(server = %url, error = %last, "LDAP server did not answer; trying the next one");
                    continue;
                }
            };
            ldap3::drive!(conn);
            let bound = match &settings.kerberos {
                Some(k) => kerberos_bind(&mut ldap, settings, k, address, &url).await?,
                None => simple_bind(&mut ldap, settings, &url).await?,
            };
            return Ok(LdapSource {
                ldap,
                server: url,
                bound,
                timeout: settings.timeout,
                page_size: settings.page_size.max(1),
            });
        }
        Err(LdapSourceError::Unreachable {
            tried: settings.addresses.join(", "),
            last,
        })
    }

    /// The server this source is bound to.
    pub fn server(&self) -> &str {
        &self.server
    }

    /// How the connection is bound: the mechanism, who the server says we are, and (for
    /// Kerberos) how the connection is protected.
    pub fn bound(&self) -> &str {
        &self.bound
    }

    /// A handle on the bound connection and the operation timeout, for readers that send
    /// their own controls (syncrepl); ldap3 multiplexes clones over the one connection.
    pub(crate) fn handle(&self) -> (Ldap, Duration) {
        (self.ldap.clone(), self.timeout)
    }

    /// Reads the rootDSE (flavor detection, highestCommittedUSN, supported controls).
    pub async fn root_dse(&self, attributes: &[&str]) -> Result<Entry, LdapSourceError> {
        let result = self
            .ldap
            .clone()
            .with_timeout(self.timeout)
            .search("", Scope::Base, "(objectClass=*)", attributes.to_vec())
            .await
            .map_err(|e| {
                lost_or(e, "the rootDSE", |reason| LdapSourceError::Search {
                    base: "rootDSE".into(),
                    reason,
                })
            })?;
        let (entries, _) = result.success().map_err(|e| LdapSourceError::Search {
            base: "rootDSE".into(),
            reason: e.to_string(),
        })?;
        let entry = entries.into_iter().next().map(SearchEntry::construct);
        // default: no rootDSE entry is an empty one (nothing advertised).
        Ok(entry.map(to_entry).unwrap_or_default())
    }

    /// A paged subtree search, with ranged attributes completed. Guarded ([`guarded`]):
    /// ldap3 panics on some malformed responses, and that must fail this read, not the agent.
    ///
    /// A referral in the answer that may hide part of the searched tree (see
    /// [`hiding_referrals`]) makes the read incomplete: what lies behind it was not read, and
    /// must never pass for deleted.
    pub async fn search(&self, spec: SearchSpec) -> Result<SearchOutcome, LdapSourceError> {
        let ldap = self.ldap.clone();
        let base = spec.base.clone();
        let (mut outcome, referrals) =
            guarded(paged_search(ldap, spec, self.timeout, self.page_size))
                .await
                .map_err(|_| LdapSourceError::Crashed)??;
        if referrals.is_empty() {
            return Ok(outcome);
        }
        let contexts = self.root_dse(&["namingContexts"]).await?;
        let hiding = hiding_referrals(&referrals, &contexts.strs("namingContexts"));
        tracing::debug!(
            base = %base,
            referrals = ?referrals,
            "referrals in the answer, not followed"
        );
        if !hiding.is_empty() {
            outcome.complete = false;
            outcome.notes.push(format!(
                "search under {base} answered with {} referral(s) to entries elsewhere ({}); \
                 referrals are not followed, so the read is incomplete",
                hiding.len(),
                hiding.join(", ")
            ));
        }
        Ok(outcome)
    }

    pub async fn close(mut self) {
        let _ = self.ldap.unbind().await;
    }
}

/// A simple bind with the DN and password; a server that demands signing or encryption gets
/// an error that says so and how to comply.
async fn simple_bind(
    ldap: &mut Ldap,
    settings: &LdapSettings,
    url: &str,
) -> Result<String, LdapSourceError> {
    let bound = ldap
        .with_timeout(settings.timeout)
        .simple_bind(&settings.bind_dn, settings.password.expose_secret())
        .await
        .and_then(|r| r.success());
    match bound {
        Ok(_) if settings.bind_dn.is_empty() => Ok("anonymous (simple bind)".into()),
        Ok(_) => Ok(format!("simple bind as {}", settings.bind_dn)),
        Err(e) if connection_lost(&e) => Err(LdapSourceError::Unreachable {
            tried: url.to_string(),
            last: format!("the connection was lost during the bind: {e}"),
        }),
        Err(e) => {
            let mut reason = e.to_string();
            if let ldap3::LdapError::LdapResult { result } = &e
                && result.rc == STRONGER_AUTH_REQUIRED
            {
                reason = format!(
                    "the server requires signed or encrypted LDAP and refuses a simple bind in \
                     the clear ({reason}); use encryption: ldaps or start_tls, or \
                     auth: {{ mechanism: gssapi, ... }}"
                );
            }
            Err(LdapSourceError::Bind {
                dn: settings.bind_dn.clone(),
                server: url.to_string(),
                reason,
            })
        }
    }
}

/// LDAP result `strongerAuthRequired` (RFC 4511): the server wants signing or TLS.
pub(crate) const STRONGER_AUTH_REQUIRED: u32 = 8;

/// A Kerberos bind to the service `ldap/<address as configured>`.
async fn kerberos_bind(
    ldap: &mut Ldap,
    settings: &LdapSettings,
    kerberos: &KerberosSettings,
    address: &str,
    url: &str,
) -> Result<String, LdapSourceError> {
    let tls = settings.encryption != Encryption::None;
    let bound = kerberos::bind(ldap, kerberos, address, tls, settings.timeout)
        .await
        .map_err(|reason| LdapSourceError::KerberosBind {
            principal: kerberos.principal.clone(),
            server: url.to_string(),
            reason: Box::new(reason),
        })?;
    let seen = bound
        .authzid
        .map(|a| format!(" (the server sees {a})"))
        .unwrap_or_default();
    Ok(format!(
        "GSSAPI (Kerberos) as {}{seen}, {}",
        bound.principal, bound.protection
    ))
}

/// Runs a read so that a panic inside it (ldap3 on malformed BER) fails that read only.
/// In the calling task rather than a task of its own: the entries it builds are then
/// allocated by the thread that maps and frees them, and the allocator reuses that memory
/// instead of holding it for another thread (issue #5: 100,000 entries).
pub(crate) async fn guarded<T>(work: impl std::future::Future<Output = T>) -> Result<T, ()> {
    use futures::FutureExt as _;
    std::panic::AssertUnwindSafe(work)
        .catch_unwind()
        .await
        .map_err(|_| ())
}

async fn paged_search(
    mut ldap: Ldap,
    spec: SearchSpec,
    timeout: Duration,
    page_size: i32,
) -> Result<(SearchOutcome, Vec<String>), LdapSourceError> {
    let search_err = |e: ldap3::LdapError| {
        lost_or(e, &spec.base, |reason| LdapSourceError::Search {
            base: spec.base.clone(),
            reason,
        })
    };
    let adapters: Vec<Box<dyn Adapter<_, _>>> = vec![
        Box::new(EntriesOnly::new()),
        Box::new(PagedResults::new(page_size)),
    ];
    let mut stream = ldap
        .with_timeout(timeout)
        .streaming_search_with(
            adapters,
            &spec.base,
            Scope::Subtree,
            &spec.filter,
            spec.attributes.clone(),
        )
        .await
        .map_err(search_err)?;
    // Entries are converted as they arrive, so that a large read is never held in ldap3's
    // form and ours at once; only the rare entry with a ranged attribute waits for the
    // search to end (its next ranges are separate searches).
    let mut out = Vec::new();
    let mut ranged = Vec::new();
    let mut notes = Vec::new();
    let mut complete = true;
    loop {
        match stream.next().await {
            Ok(Some(raw)) => {
                let entry = SearchEntry::construct(raw);
                if entry.attrs.keys().any(|k| parse_range(k).is_some()) {
                    ranged.push(entry);
                } else {
                    out.push(to_entry(entry));
                }
            }
            Ok(None) => break,
            // A cut read is thrown away, never used as part of the directory.
            Err(e) if connection_lost(&e) => return Err(search_err(e)),
            Err(e) => {
                complete = false;
                notes.push(format!("search under {} stopped early: {e}", spec.base));
                break;
            }
        }
    }
    let mut result = stream.finish().await;
    let referrals = std::mem::take(&mut result.refs);
    if result.rc != 0 {
        complete = false;
        notes.push(format!(
            "search under {} ended with LDAP result {} ({}) after {} entries",
            spec.base,
            result.rc,
            result.text,
            out.len() + ranged.len()
        ));
    }
    for entry in ranged {
        let entry = complete_ranges(&mut ldap, entry, timeout, &mut complete, &mut notes).await;
        out.push(to_entry(entry));
    }
    Ok((
        SearchOutcome {
            entries: out,
            complete,
            notes,
        },
        referrals,
    ))
}

/// Range retrieval (`member;range=0-1499`): ask for the next range from `high + 1` until the
/// server answers a range ending in `*`, then store all values under the plain name. The
/// step size is the server's choice; never assume it.
async fn complete_ranges(
    ldap: &mut Ldap,
    mut entry: SearchEntry,
    timeout: Duration,
    complete: &mut bool,
    notes: &mut Vec<String>,
) -> SearchEntry {
    let ranged: Vec<String> = entry
        .attrs
        .keys()
        .filter(|k| parse_range(k).is_some())
        .cloned()
        .collect();
    for key in ranged {
        let Some((name, _, mut high)) = parse_range(&key) else {
            continue;
        };
        // default: a ranged attribute that is gone has no values yet.
        let mut values = entry.attrs.remove(&key).unwrap_or_default();
        let mut guard = 0usize;
        while let Some(h) = high {
            guard += 1;
            if guard > 100_000 {
                *complete = false;
                notes.push(format!(
                    "{}: range retrieval of {name} did not end",
                    entry.dn
                ));
                break;
            }
            let wanted = format!("{name};range={}-*", h + 1);
            let result = ldap
                .with_timeout(timeout)
                .search(
                    &entry.dn,
                    Scope::Base,
                    "(objectClass=*)",
                    vec![wanted.as_str()],
                )
                .await
                .and_then(|r| r.success());
            let Ok((mut found, _)) = result else {
                *complete = false;
                notes.push(format!("{}: range retrieval of {name} failed", entry.dn));
                break;
            };
            let Some(next) = found.pop().map(SearchEntry::construct) else {
                *complete = false;
                notes.push(format!(
                    "{}: range retrieval of {name} returned nothing",
                    entry.dn
                ));
                break;
            };
            let mut advanced = false;
            for (k, v) in next.attrs {
                if let Some((n, _, next_high)) = parse_range(&k)
                    && n.eq_ignore_ascii_case(&name)
                {
                    values.extend(v);
                    high = next_high;
                    advanced = true;
                }
            }
            if !advanced {
                *complete = false;
                notes.push(format!(
                    "{}: range retrieval of {name} lost its range",
                    entry.dn
                ));
                break;
            }
        }
        entry.attrs.entry(name).or_default().extend(values);
    }
    entry
}

/// `member;range=0-1499` → ("member", 0, Some(1499)); `member;range=1500-*` → (.., None).
pub(crate) fn parse_range(key: &str) -> Option<(String, u64, Option<u64>)> {
    let (name, options) = key.split_once(';')?;
    let range = options.split(';').find_map(|o| {
        let lower = o.to_ascii_lowercase();
        lower.strip_prefix("range=").map(str::to_string)
    })?;
    let (low, high) = range.split_once('-')?;
    let low = low.parse().ok()?;
    let high = if high == "*" {
        None
    } else {
        Some(high.parse().ok()?)
    };
    Some((name.to_string(), low, high))
}

pub(crate) fn to_entry(e: SearchEntry) -> Entry {
    to_builder(e).build()
}

/// The entry before packing, for a reader that still adds to it.
pub(crate) fn to_builder(e: SearchEntry) -> EntryBuilder {
    let mut entry = EntryBuilder::new(e.dn);
    for (k, v) in e.attrs {
        entry.extend(&k, v.into_iter().map(String::into_bytes));
    }
    for (k, v) in e.bin_attrs {
        entry.extend(&k, v);
    }
    entry
}

fn tls_config(
    settings: &LdapSettings,
) -> Result<Option<Arc<rustls::ClientConfig>>, LdapSourceError> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let Some(ca_file) = &settings.ca_file else {
        return Ok(None);
    };
    use rustls::pki_types::{CertificateDer, pem::PemObject};
    let mut roots = rustls::RootCertStore::empty();
    let certs = CertificateDer::pem_file_iter(ca_file).map_err(|e| {
        LdapSourceError::Tls(format!("cannot read ca_file {}: {e}", ca_file.display()))
    })?;
    for cert in certs {
        let cert =
            cert.map_err(|e| LdapSourceError::Tls(format!("ca_file {}: {e}", ca_file.display())))?;
        roots
            .add(cert)
            .map_err(|e| LdapSourceError::Tls(format!("ca_file {}: {e}", ca_file.display())))?;
    }
    if roots.is_empty() {
        return Err(LdapSourceError::Tls(format!(
            "ca_file {} holds no certificate",
            ca_file.display()
        )));
    }
    let config = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Some(Arc::new(config)))
}

/// A certificate failure says how to fix it (behaviour §2.2).
fn explain_connect_error(url: &str, error: &str, settings: &LdapSettings) -> String {
    let lower = error.to_ascii_lowercase();
    if settings.encryption != Encryption::None
        && (lower.contains("certificate")
            || lower.contains("invalidcertificate")
            || lower.contains("unknownissuer"))
    {
        format!(
            "{url}: the server certificate was not accepted ({error}). Set ad.ldap.server.ca_file to \
             the CA that issued it (the certificate must name the host in its subjectAltName), or \
             write verify_mode: false to skip verification explicitly"
        )
    } else {
        format!("{url}: {error}")
    }
}

fn host_for_url(address: &str) -> String {
    if address.contains(':') && !address.starts_with('[') {
        format!("[{address}]")
    } else {
        address.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn referral_dns_are_read_from_urls() {
        let cases = [
            (
                "ldap://dc1.example.com/DC=DomainDnsZones,DC=example,DC=com",
                Some("DC=DomainDnsZones,DC=example,DC=com"),
            ),
            (
                "ldap://127.0.0.1:9/ou=moved%20away,dc=elsewhere??sub",
                Some("ou=moved away,dc=elsewhere"),
            ),
            ("ldaps://h/", None),
            ("ldap://h", None),
            ("ldap://h/%ff", None),
        ];
        for (url, dn) in cases {
            assert_eq!(referral_dn(url).as_deref(), dn, "{url}");
        }
    }

    #[test]
    fn only_referrals_outside_the_naming_contexts_hide_entries() {
        let contexts = [
            "DC=example,DC=com",
            "DC=DomainDnsZones,DC=example,DC=com",
            "CN=Configuration,DC=example,DC=com",
        ];
        let refs: Vec<String> = [
            "ldap://example.com/DC=DomainDnsZones,DC=example,DC=com",
            "ldap://example.com/cn=configuration, dc=example, dc=com",
            "ldap://127.0.0.1:9/ou=branch,dc=elsewhere",
            "ldap://127.0.0.1:9/",
        ]
        .map(String::from)
        .to_vec();
        assert_eq!(
            hiding_referrals(&refs, &contexts),
            vec![
                "ldap://127.0.0.1:9/ou=branch,dc=elsewhere",
                "ldap://127.0.0.1:9/"
            ]
        );
        assert!(hiding_referrals(&refs[..2], &contexts).is_empty());
    }

    #[test]
    fn range_options_parse() {
        assert_eq!(
            parse_range("member;range=0-1499"),
            Some(("member".into(), 0, Some(1499)))
        );
        assert_eq!(
            parse_range("member;range=1500-*"),
            Some(("member".into(), 1500, None))
        );
        assert_eq!(
            parse_range("Member;Range=3-4"),
            Some(("Member".into(), 3, Some(4)))
        );
        assert_eq!(parse_range("member"), None);
        assert_eq!(parse_range("cn;lang-en"), None);
        assert_eq!(parse_range("member;range=x-1"), None);
    }
}
