//! A protocol-level fake Active Directory LDAP server for what Samba cannot produce.
//!
//! Samba does not auto-range large multi-valued attributes; Windows AD does. [`FakeAd`] is a
//! small tokio server on `ldap3_proto` that serves a fixed set of entries and behaves like AD
//! where it matters for a sync client:
//!
//! * an attribute with more values than `max_val_range` (AD's MaxValRange, 1500) is returned
//!   as `member;range=0-1499` (the plain `member` absent); follow-up reads of
//!   `member;range=1500-*` return `member;range=1500-2999`, …, and the last slice is
//!   `member;range=3000-*`. Explicit `;range=L-H` requests are honoured the same way;
//! * simple bind (DN or UPN of the configured account; anonymous too);
//! * the paged-results control: everything in one page, then an empty cookie;
//! * a rootDSE that says "Active Directory" (`supportedCapabilities` 1.2.840.113556.1.4.800);
//! * continuation references for subtree searches from the naming context (like AD's
//!   `ForestDnsZones`/`DomainDnsZones`/`Configuration` referrals);
//! * optionally a malformed BER response to every search ([`FakeFault`]).
//!
//! Filters are evaluated loosely (equality/presence/substring/and/or/not, case-insensitive;
//! extensible matches such as the transitive-membership rule are treated as equality). It
//! runs on its own thread and runtime, so sync and async tests can use it; stopped on drop.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use futures::{SinkExt as _, StreamExt as _};
use ldap3_proto::LdapCodec;
use ldap3_proto::control::LdapControl;
use ldap3_proto::proto::{
    LdapBindCred, LdapBindResponse, LdapExtendedResponse, LdapFilter, LdapMsg, LdapOp,
    LdapPartialAttribute, LdapResult, LdapResultCode, LdapSearchRequest, LdapSearchResultEntry,
    LdapSearchResultReference, LdapSearchScope,
};
use tokio::io::AsyncWriteExt as _;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::codec::{FramedRead, FramedWrite};

use crate::error::io;

/// One directory entry: DN and attributes (name, values).
#[derive(Debug, Clone)]
pub struct FakeEntry {
    pub dn: String,
    pub attrs: Vec<(String, Vec<Vec<u8>>)>,
}

impl FakeEntry {
    pub fn new(dn: &str) -> FakeEntry {
        FakeEntry {
            dn: dn.to_string(),
            attrs: Vec::new(),
        }
    }

    /// Adds a text attribute.
    pub fn attr(mut self, name: &str, values: &[&str]) -> FakeEntry {
        self.attrs.push((
            name.to_string(),
            values.iter().map(|v| v.as_bytes().to_vec()).collect(),
        ));
        self
    }

    /// Adds a binary attribute (e.g. objectGUID).
    pub fn attr_bytes(mut self, name: &str, values: Vec<Vec<u8>>) -> FakeEntry {
        self.attrs.push((name.to_string(), values));
        self
    }

    fn get(&self, name: &str) -> Option<&Vec<Vec<u8>>> {
        self.attrs
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    }
}

/// Misbehaviour to inject.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FakeFault {
    #[default]
    None,
    /// Every search (except the rootDSE) is answered with a BER message whose inner length
    /// overruns the outer one, then the connection is closed.
    MalformedSearchResponse,
}

/// What the fake serves.
#[derive(Debug, Clone)]
pub struct FakeAdSpec {
    /// Naming context, e.g. `DC=fake,DC=test`.
    pub base_dn: String,
    pub bind_dn: String,
    /// Also accepted as bind name.
    pub bind_upn: String,
    pub bind_pw: String,
    pub entries: Vec<FakeEntry>,
    /// AD's MaxValRange: attributes with more values are auto-ranged (default 1500).
    pub max_val_range: usize,
    /// Continuation references returned by subtree searches based at the naming context.
    pub references: Vec<String>,
    pub fault: FakeFault,
}

/// objectGUID bytes derived from a number (stable across runs).
pub fn fake_guid(n: u32) -> Vec<u8> {
    let mut g = vec![0u8; 16];
    g[..4].copy_from_slice(&n.to_le_bytes());
    g[4..8].copy_from_slice(&0xfa4e_u32.to_le_bytes());
    g[8..12].copy_from_slice(&n.wrapping_mul(2_654_435_761).to_be_bytes());
    g[12..].copy_from_slice(&[0xad, 0x00, 0x0f, 0xa4]);
    g
}

impl FakeAdSpec {
    /// `DC=fake,DC=test` with `OU=people` holding `members` users (`CN=userNNNNN`,
    /// objectGUID from [`fake_guid`], `memberOf` the big group) and `OU=groups` holding
    /// `CN=big` whose `member` has all of them — 3,500 gives ranges 0-1499, 1500-2999,
    /// 3000-*. Bind as `CN=svc-dirsync,CN=Users,DC=fake,DC=test` / `Svc#Passw0rd1`.
    pub fn big_group(members: usize) -> FakeAdSpec {
        let base = "DC=fake,DC=test";
        let group_dn = format!("CN=big,OU=groups,{base}");
        let bind_dn = format!("CN=svc-dirsync,CN=Users,{base}");
        let mut entries = vec![
            FakeEntry::new(base)
                .attr("objectClass", &["top", "domain", "domainDNS"])
                .attr("dc", &["fake"]),
            FakeEntry::new(&format!("CN=Users,{base}"))
                .attr("objectClass", &["top", "container"])
                .attr("cn", &["Users"]),
            FakeEntry::new(&bind_dn)
                .attr(
                    "objectClass",
                    &["top", "person", "organizationalPerson", "user"],
                )
                .attr("cn", &["svc-dirsync"])
                .attr("sAMAccountName", &["svc-dirsync"])
                .attr("userAccountControl", &["66048"])
                .attr_bytes("objectGUID", vec![fake_guid(0)]),
            FakeEntry::new(&format!("OU=people,{base}"))
                .attr("objectClass", &["top", "organizationalUnit"])
                .attr("ou", &["people"]),
            FakeEntry::new(&format!("OU=groups,{base}"))
                .attr("objectClass", &["top", "organizationalUnit"])
                .attr("ou", &["groups"]),
        ];
        let mut member_dns = Vec::with_capacity(members);
        for i in 1..=members {
            let name = format!("user{i:05}");
            let dn = format!("CN={name},OU=people,{base}");
            let n = u32::try_from(i).unwrap_or(u32::MAX);
            entries.push(
                FakeEntry::new(&dn)
                    .attr(
                        "objectClass",
                        &["top", "person", "organizationalPerson", "user"],
                    )
                    .attr("cn", &[&name])
                    .attr("sAMAccountName", &[&name])
                    .attr("userPrincipalName", &[&format!("{name}@fake.test")])
                    .attr("mail", &[&format!("{name}@fake.test")])
                    .attr("givenName", &["User"])
                    .attr("sn", &[&format!("{i:05}")])
                    .attr("displayName", &[&format!("User {i:05}")])
                    .attr("userAccountControl", &["512"])
                    .attr("memberOf", &[&group_dn])
                    .attr_bytes("objectGUID", vec![fake_guid(n)]),
            );
            member_dns.push(dn);
        }
        let member_refs: Vec<&str> = member_dns.iter().map(String::as_str).collect();
        entries.push(
            FakeEntry::new(&group_dn)
                .attr("objectClass", &["top", "group"])
                .attr("cn", &["big"])
                .attr("sAMAccountName", &["big"])
                .attr("groupType", &["-2147483646"])
                .attr_bytes("objectGUID", vec![fake_guid(0x00ff_ffff)])
                .attr("member", &member_refs),
        );
        FakeAdSpec {
            base_dn: base.to_string(),
            bind_dn,
            bind_upn: "svc-dirsync@fake.test".to_string(),
            bind_pw: "Svc#Passw0rd1".to_string(),
            entries,
            max_val_range: 1500,
            references: vec![
                "ldap://ForestDnsZones.fake.test/DC=ForestDnsZones,DC=fake,DC=test".to_string(),
                "ldap://DomainDnsZones.fake.test/DC=DomainDnsZones,DC=fake,DC=test".to_string(),
                "ldap://fake.test/CN=Configuration,DC=fake,DC=test".to_string(),
            ],
            fault: FakeFault::None,
        }
    }
}

/// A running fake AD; stopped on drop.
pub struct FakeAd {
    /// `ldap://127.0.0.1:PORT`.
    pub url: String,
    pub port: u16,
    pub base_dn: String,
    pub bind_dn: String,
    pub bind_pw: String,
    /// Every search received, as `base|scope|filter|attrs` (for assertions on the client's
    /// follow-up range reads).
    pub searches: Arc<Mutex<Vec<String>>>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl FakeAd {
    /// Binds 127.0.0.1 on a free port and serves `spec` on a background thread.
    pub fn start(spec: FakeAdSpec) -> crate::Result<FakeAd> {
        let std_listener = std::net::TcpListener::bind("127.0.0.1:0").map_err(io("bind"))?;
        std_listener
            .set_nonblocking(true)
            .map_err(io("nonblocking"))?;
        let port = std_listener.local_addr().map_err(io("local_addr"))?.port();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(io("tokio runtime"))?;
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let searches = Arc::new(Mutex::new(Vec::new()));
        let state = Arc::new(Server {
            spec: spec.clone(),
            searches: searches.clone(),
        });
        let thread = std::thread::Builder::new()
            .name(format!("fake-ad-{port}"))
            .spawn(move || {
                runtime.block_on(async move {
                    let Ok(listener) = TcpListener::from_std(std_listener) else {
                        return;
                    };
                    tokio::select! {
                        _ = rx => {}
                        _ = accept_loop(listener, state) => {}
                    }
                });
            })
            .map_err(io("spawn"))?;
        Ok(FakeAd {
            url: format!("ldap://127.0.0.1:{port}"),
            port,
            base_dn: spec.base_dn,
            bind_dn: spec.bind_dn,
            bind_pw: spec.bind_pw,
            searches,
            shutdown: Some(tx),
            thread: Some(thread),
        })
    }

    /// The searches received so far.
    pub fn searches(&self) -> Vec<String> {
        self.searches.lock().map(|v| v.clone()).unwrap_or_default()
    }
}

impl Drop for FakeAd {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

struct Server {
    spec: FakeAdSpec,
    searches: Arc<Mutex<Vec<String>>>,
}

async fn accept_loop(listener: TcpListener, state: Arc<Server>) {
    loop {
        if let Ok((socket, peer)) = listener.accept().await {
            tokio::spawn(serve(socket, peer, state.clone()));
        }
    }
}

fn result(code: LdapResultCode, message: &str) -> LdapResult {
    LdapResult {
        code,
        matcheddn: String::new(),
        message: message.to_string(),
        referral: Vec::new(),
    }
}

fn msg(msgid: i32, op: LdapOp, ctrl: Vec<LdapControl>) -> LdapMsg {
    LdapMsg { msgid, op, ctrl }
}

async fn serve(socket: TcpStream, _peer: SocketAddr, state: Arc<Server>) {
    let (r, w) = tokio::io::split(socket);
    // Requests are small; responses may be large (the encoder has no limit).
    let mut reqs = FramedRead::new(r, LdapCodec::default());
    let mut resp = FramedWrite::new(w, LdapCodec::default());
    while let Some(Ok(req)) = reqs.next().await {
        let id = req.msgid;
        let out: Vec<LdapMsg> = match req.op {
            LdapOp::UnbindRequest => return,
            LdapOp::AbandonRequest(_) => continue,
            LdapOp::BindRequest(bind) => {
                let ok = match &bind.cred {
                    LdapBindCred::Simple(pw) => {
                        (bind.dn.is_empty() && pw.is_empty())
                            || ((bind.dn.eq_ignore_ascii_case(&state.spec.bind_dn)
                                || bind.dn.eq_ignore_ascii_case(&state.spec.bind_upn))
                                && *pw == state.spec.bind_pw)
                    }
                    _ => false,
                };
                let code = if ok {
                    LdapResultCode::Success
                } else {
                    LdapResultCode::InvalidCredentials
                };
                vec![msg(
                    id,
                    LdapOp::BindResponse(LdapBindResponse {
                        res: result(
                            code,
                            if ok {
                                ""
                            } else {
                                "80090308: invalid credentials"
                            },
                        ),
                        saslcreds: None,
                    }),
                    Vec::new(),
                )]
            }
            LdapOp::SearchRequest(sr) => {
                if let Ok(mut log) = state.searches.lock() {
                    log.push(format!(
                        "{}|{:?}|{:?}|{}",
                        sr.base,
                        sr.scope,
                        sr.filter,
                        sr.attrs.join(",")
                    ));
                }
                let root_dse = sr.base.is_empty() && sr.scope == LdapSearchScope::Base;
                if state.spec.fault == FakeFault::MalformedSearchResponse && !root_dse {
                    let _ = resp.flush().await;
                    let w = resp.get_mut();
                    // SEQUENCE(len 8){ INTEGER id, [APPLICATION 4] len 0x10 (overruns) … }
                    let id_byte = u8::try_from(id & 0x7f).unwrap_or(1);
                    let _ = w
                        .write_all(&[
                            0x30, 0x08, 0x02, 0x01, id_byte, 0x64, 0x10, 0x04, 0x00, 0x30, 0x00,
                        ])
                        .await;
                    let _ = w.flush().await;
                    return;
                }
                let paged = req
                    .ctrl
                    .iter()
                    .any(|c| matches!(c, LdapControl::SimplePagedResults { .. }));
                search(&state.spec, id, &sr, paged)
            }
            LdapOp::ExtendedRequest(er) => vec![msg(
                id,
                LdapOp::ExtendedResponse(LdapExtendedResponse {
                    res: result(
                        LdapResultCode::ProtocolError,
                        "unsupported extended operation",
                    ),
                    name: Some(er.name),
                    value: None,
                }),
                Vec::new(),
            )],
            LdapOp::ModifyRequest(_) => vec![msg(
                id,
                LdapOp::ModifyResponse(result(LdapResultCode::UnwillingToPerform, "read-only")),
                Vec::new(),
            )],
            LdapOp::AddRequest(_) => vec![msg(
                id,
                LdapOp::AddResponse(result(LdapResultCode::UnwillingToPerform, "read-only")),
                Vec::new(),
            )],
            LdapOp::DelRequest(_) => vec![msg(
                id,
                LdapOp::DelResponse(result(LdapResultCode::UnwillingToPerform, "read-only")),
                Vec::new(),
            )],
            _ => return,
        };
        for m in out {
            if resp.feed(m).await.is_err() {
                return;
            }
        }
        if resp.flush().await.is_err() {
            return;
        }
    }
}

fn root_dse(spec: &FakeAdSpec) -> FakeEntry {
    // As a domain controller of a single-domain forest publishes them: the domain, the
    // configuration and schema partitions and the two DNS application partitions (the
    // targets of the continuation references a subtree search from the domain's root gets).
    let base = &spec.base_dn;
    let contexts = [
        base.clone(),
        format!("CN=Configuration,{base}"),
        format!("CN=Schema,CN=Configuration,{base}"),
        format!("DC=DomainDnsZones,{base}"),
        format!("DC=ForestDnsZones,{base}"),
    ];
    let contexts: Vec<&str> = contexts.iter().map(String::as_str).collect();
    FakeEntry::new("")
        .attr("objectClass", &["top"])
        .attr("namingContexts", &contexts)
        .attr("defaultNamingContext", &[&spec.base_dn])
        .attr("rootDomainNamingContext", &[&spec.base_dn])
        .attr("dnsHostName", &["dc1.fake.test"])
        .attr("supportedLDAPVersion", &["3"])
        .attr(
            "supportedControl",
            &[
                "1.2.840.113556.1.4.319",
                "1.2.840.113556.1.4.417",
                "1.2.840.113556.1.4.841",
            ],
        )
        .attr(
            "supportedCapabilities",
            &["1.2.840.113556.1.4.800", "1.2.840.113556.1.4.1670"],
        )
        .attr("highestCommittedUSN", &["4242"])
}

fn parent_of(dn: &str) -> &str {
    dn.split_once(',').map(|(_, p)| p).unwrap_or("")
}

fn in_scope(dn: &str, base: &str, scope: &LdapSearchScope) -> bool {
    let dn_l = dn.to_ascii_lowercase();
    let base_l = base.to_ascii_lowercase();
    match scope {
        LdapSearchScope::Base => dn_l == base_l,
        LdapSearchScope::OneLevel => parent_of(&dn_l) == base_l,
        LdapSearchScope::Subtree => {
            base_l.is_empty() || dn_l == base_l || dn_l.ends_with(&format!(",{base_l}"))
        }
        LdapSearchScope::Children => {
            dn_l != base_l && (base_l.is_empty() || dn_l.ends_with(&format!(",{base_l}")))
        }
    }
}

fn search(spec: &FakeAdSpec, id: i32, sr: &LdapSearchRequest, paged: bool) -> Vec<LdapMsg> {
    let done_ctrl = if paged {
        vec![LdapControl::SimplePagedResults {
            size: 0,
            cookie: Vec::new(),
        }]
    } else {
        Vec::new()
    };
    let mut out = Vec::new();
    if sr.base.is_empty() && sr.scope == LdapSearchScope::Base {
        let dse = root_dse(spec);
        out.push(entry_msg(id, &dse, &sr.attrs, spec.max_val_range));
        out.push(msg(
            id,
            LdapOp::SearchResultDone(result(LdapResultCode::Success, "")),
            done_ctrl,
        ));
        return out;
    }
    let base_exists = spec
        .entries
        .iter()
        .any(|e| e.dn.eq_ignore_ascii_case(&sr.base));
    if !base_exists {
        let mut res = result(LdapResultCode::NoSuchObject, "0000208D: no such object");
        res.matcheddn = spec.base_dn.clone();
        out.push(msg(id, LdapOp::SearchResultDone(res), done_ctrl));
        return out;
    }
    for e in &spec.entries {
        if in_scope(&e.dn, &sr.base, &sr.scope) && matches(e, &sr.filter) {
            out.push(entry_msg(id, e, &sr.attrs, spec.max_val_range));
        }
    }
    if sr.scope == LdapSearchScope::Subtree && sr.base.eq_ignore_ascii_case(&spec.base_dn) {
        for r in &spec.references {
            out.push(msg(
                id,
                LdapOp::SearchResultReference(LdapSearchResultReference {
                    uris: vec![r.clone()],
                }),
                Vec::new(),
            ));
        }
    }
    out.push(msg(
        id,
        LdapOp::SearchResultDone(result(LdapResultCode::Success, "")),
        done_ctrl,
    ));
    out
}

fn entry_msg(id: i32, e: &FakeEntry, attrs: &[String], max: usize) -> LdapMsg {
    msg(
        id,
        LdapOp::SearchResultEntry(LdapSearchResultEntry {
            dn: e.dn.clone(),
            attributes: project(e, attrs, max),
        }),
        Vec::new(),
    )
}

/// `name;range=L-H` / `name;range=L-*` → (name, L, Some(H) / None). Other options are kept
/// in the name.
pub fn parse_range(attr: &str) -> Option<(String, usize, Option<usize>)> {
    let mut parts = attr.split(';');
    let name = parts.next()?.to_string();
    for opt in parts {
        if opt.len() > 6 && opt[..6].eq_ignore_ascii_case("range=") {
            let (lo, hi) = opt[6..].split_once('-')?;
            let lo = lo.parse().ok()?;
            let hi = if hi == "*" {
                None
            } else {
                Some(hi.parse().ok()?)
            };
            return Some((name, lo, hi));
        }
    }
    None
}

/// One slice of a multi-valued attribute, as AD names it.
fn ranged(
    name: &str,
    vals: &[Vec<u8>],
    lo: usize,
    hi: Option<usize>,
    max: usize,
) -> Option<LdapPartialAttribute> {
    if lo >= vals.len() {
        return None;
    }
    let mut end = vals.len().min(lo.saturating_add(max.max(1)));
    if let Some(h) = hi {
        end = end.min(h.saturating_add(1));
    }
    let label = if end >= vals.len() {
        format!("{name};range={lo}-*")
    } else {
        format!("{name};range={lo}-{}", end - 1)
    };
    Some(LdapPartialAttribute {
        atype: label,
        vals: vals.get(lo..end)?.to_vec(),
    })
}

fn whole(name: &str, vals: &[Vec<u8>], max: usize) -> Option<LdapPartialAttribute> {
    if vals.is_empty() {
        None
    } else if vals.len() > max {
        ranged(name, vals, 0, None, max)
    } else {
        Some(LdapPartialAttribute {
            atype: name.to_string(),
            vals: vals.to_vec(),
        })
    }
}

fn project(e: &FakeEntry, attrs: &[String], max: usize) -> Vec<LdapPartialAttribute> {
    let all = attrs.is_empty() || attrs.iter().any(|a| a == "*");
    let mut out: Vec<LdapPartialAttribute> = Vec::new();
    if all {
        out.extend(e.attrs.iter().filter_map(|(n, v)| whole(n, v, max)));
    }
    for want in attrs {
        if want == "*" || want == "1.1" || want == "+" {
            continue;
        }
        let item = match parse_range(want) {
            Some((name, lo, hi)) => e.attrs.iter().find_map(|(n, v)| {
                n.eq_ignore_ascii_case(&name)
                    .then(|| ranged(n, v, lo, hi, max))
                    .flatten()
            }),
            None if all => None,
            None => e
                .attrs
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(want))
                .and_then(|(n, v)| whole(n, v, max)),
        };
        if let Some(a) = item
            && !out.iter().any(|o| o.atype.eq_ignore_ascii_case(&a.atype))
        {
            out.push(a);
        }
    }
    out
}

fn text_eq(v: &[u8], want: &str) -> bool {
    String::from_utf8_lossy(v).eq_ignore_ascii_case(want)
}

fn matches(e: &FakeEntry, f: &LdapFilter) -> bool {
    match f {
        LdapFilter::And(fs) => fs.iter().all(|f| matches(e, f)),
        LdapFilter::Or(fs) => fs.iter().any(|f| matches(e, f)),
        LdapFilter::Not(f) => !matches(e, f),
        LdapFilter::Present(a) => a.eq_ignore_ascii_case("objectClass") || e.get(a).is_some(),
        LdapFilter::Equality(a, v) | LdapFilter::Approx(a, v) => e
            .get(a)
            .is_some_and(|vals| vals.iter().any(|x| text_eq(x, v))),
        LdapFilter::Substring(a, sub) => e.get(a).is_some_and(|vals| {
            vals.iter().any(|x| {
                let s = String::from_utf8_lossy(x).to_lowercase();
                let mut rest = s.as_str();
                if let Some(init) = &sub.initial {
                    match rest.strip_prefix(init.to_lowercase().as_str()) {
                        Some(r) => rest = r,
                        None => return false,
                    }
                }
                for any in &sub.any {
                    let any = any.to_lowercase();
                    match rest.find(any.as_str()) {
                        Some(i) => rest = &rest[i + any.len()..],
                        None => return false,
                    }
                }
                sub.final_
                    .as_ref()
                    .is_none_or(|fin| rest.ends_with(fin.to_lowercase().as_str()))
            })
        }),
        LdapFilter::GreaterOrEqual(a, v) => e.get(a).is_some_and(|vals| {
            vals.iter()
                .any(|x| cmp_value(x, v) != std::cmp::Ordering::Less)
        }),
        LdapFilter::LessOrEqual(a, v) => e.get(a).is_some_and(|vals| {
            vals.iter()
                .any(|x| cmp_value(x, v) != std::cmp::Ordering::Greater)
        }),
        LdapFilter::Extensible(m) => match &m.type_ {
            Some(a) => e
                .get(a)
                .is_some_and(|vals| vals.iter().any(|x| text_eq(x, &m.match_value))),
            None => true,
        },
    }
}

fn cmp_value(x: &[u8], v: &str) -> std::cmp::Ordering {
    let s = String::from_utf8_lossy(x);
    match (s.parse::<i64>(), v.parse::<i64>()) {
        (Ok(a), Ok(b)) => a.cmp(&b),
        _ => s.to_lowercase().cmp(&v.to_lowercase()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vals(n: usize) -> Vec<Vec<u8>> {
        (0..n).map(|i| i.to_string().into_bytes()).collect()
    }

    #[test]
    fn range_labels_like_ad() {
        let v = vals(3500);
        let a = whole("member", &v, 1500).unwrap();
        assert_eq!(a.atype, "member;range=0-1499");
        assert_eq!(a.vals.len(), 1500);
        let b = ranged("member", &v, 1500, None, 1500).unwrap();
        assert_eq!(b.atype, "member;range=1500-2999");
        let c = ranged("member", &v, 3000, None, 1500).unwrap();
        assert_eq!(c.atype, "member;range=3000-*");
        assert_eq!(c.vals.len(), 500);
        let d = ranged("member", &v, 0, Some(9), 1500).unwrap();
        assert_eq!(d.atype, "member;range=0-9");
        assert!(ranged("member", &v, 3500, None, 1500).is_none());
        assert_eq!(whole("member", &vals(3), 1500).unwrap().atype, "member");
    }

    #[test]
    fn parse_range_options() {
        assert_eq!(
            parse_range("member;range=1500-*"),
            Some(("member".to_string(), 1500, None))
        );
        assert_eq!(
            parse_range("Member;Range=0-999"),
            Some(("Member".to_string(), 0, Some(999)))
        );
        assert_eq!(parse_range("member"), None);
    }

    #[test]
    fn scope_checks() {
        let base = "DC=fake,DC=test";
        assert!(in_scope(
            "CN=a,OU=p,DC=fake,DC=test",
            base,
            &LdapSearchScope::Subtree
        ));
        assert!(!in_scope(
            "CN=a,OU=p,DC=fake,DC=test",
            base,
            &LdapSearchScope::OneLevel
        ));
        assert!(in_scope(
            "OU=p,DC=fake,DC=test",
            base,
            &LdapSearchScope::OneLevel
        ));
        assert!(in_scope("dc=fake,dc=test", base, &LdapSearchScope::Base));
    }
}
