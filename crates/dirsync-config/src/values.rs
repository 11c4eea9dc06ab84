//! Configuration value types that validate themselves while being deserialised, so that a
//! bad value is reported with the line, column and key path of the value itself: LDAP and
//! SCIM filters, regex rewrites with Ruby-style anchors, durations, bounded numbers, URLs,
//! and "one attribute name or a list of them".
//!
//! These types know their own syntax only; they do not know which key they sit under.

use std::fmt;
use std::marker::PhantomData;
use std::time::Duration;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};

use dirsync_ldap_filter::{self as ldap_filter, LdapFilter};

/// An LDAP filter as written (with or without outer parentheses), checked at load time.
#[derive(Clone, PartialEq)]
pub struct LdapFilterText {
    /// The text exactly as configured.
    pub text: String,
    pub parsed: LdapFilter,
}

impl LdapFilterText {
    /// The filter with outer parentheses, as sent to a server.
    pub fn normalized(&self) -> String {
        ldap_filter::normalize(&self.text)
    }
}

impl fmt::Debug for LdapFilterText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.text)
    }
}

impl<'de> Deserialize<'de> for LdapFilterText {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        let parsed = ldap_filter::validate(&text)
            .map_err(|e| de::Error::custom(format!("invalid LDAP filter {text:?}: {e}")))?;
        Ok(LdapFilterText { text, parsed })
    }
}

/// A SCIM filter (RFC 7644 §3.4.2.2), parsed at load time by `crates/scim`.
#[derive(Clone)]
pub struct ScimFilterText {
    pub text: String,
    pub parsed: scim::Filter,
}

impl fmt::Debug for ScimFilterText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.text)
    }
}

impl<'de> Deserialize<'de> for ScimFilterText {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        let parsed = scim::filter::parse(&text).map_err(|e| {
            // The parser's detail repeats the text and spans lines; keep one line.
            let detail = e.detail.replace('\n', "; ");
            let prefix = format!("invalid filter {text:?}: ");
            let detail = detail.strip_prefix(&prefix).unwrap_or(&detail).to_string();
            de::Error::custom(format!("invalid SCIM filter {text:?}: {detail}"))
        })?;
        Ok(ScimFilterText { text, parsed })
    }
}

/// A regular expression written for Ruby (the existing tool), compiled for Rust's `regex`.
#[derive(Clone)]
pub struct RubyRegex {
    /// The pattern as configured.
    pub text: String,
    pub regex: regex::Regex,
}

impl fmt::Debug for RubyRegex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.text)
    }
}

impl<'de> Deserialize<'de> for RubyRegex {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        let translated = translate_ruby_pattern(&text);
        let regex = regex::Regex::new(&translated).map_err(|e| {
            de::Error::custom(format!(
                "invalid regular expression {text:?}: {}",
                one_line_regex_error(&e)
            ))
        })?;
        Ok(RubyRegex { text, regex })
    }
}

/// `regex::Error` renders a multi-line caret diagram; configuration errors are one line.
fn one_line_regex_error(e: &regex::Error) -> String {
    let text = e.to_string();
    text.lines()
        .rev()
        .find_map(|l| l.trim().strip_prefix("error: ").map(str::to_string))
        .unwrap_or_else(|| text.lines().last().unwrap_or("").trim().to_string())
}

/// Translates a Ruby (Onigmo) pattern to the Rust `regex` dialect.
///
/// Rust already has `\A` and `\z` with Ruby's meaning. What differs:
/// - Ruby's `^` and `$` are always line anchors; Rust's only with the `m` flag, so the
///   pattern is prefixed with `(?m)`.
/// - Ruby's `\Z` (end of text, or before a final newline) does not exist in Rust and Rust has
///   no look-ahead: it becomes `(?:\n?\z)`, which also consumes that final newline. Directory
///   values practically never end in a newline, so the difference does not matter in use.
/// - Ruby's inline `m` flag means "dot matches newline", which is Rust's `s`.
/// - Ruby's `\h` (hex digit) becomes `[0-9a-fA-F]`.
pub fn translate_ruby_pattern(pattern: &str) -> String {
    let mut out = String::with_capacity(pattern.len() + 8);
    out.push_str("(?m)");
    let chars: Vec<char> = pattern.chars().collect();
    let mut i = 0;
    let mut in_class = false;
    while i < chars.len() {
        let c = chars[i];
        if c == '\\' {
            match chars.get(i + 1) {
                Some('Z') if !in_class => out.push_str(r"(?:\n?\z)"),
                Some('h') if !in_class => out.push_str("[0-9a-fA-F]"),
                Some('h') => out.push_str("0-9a-fA-F"),
                Some(n) => {
                    out.push('\\');
                    out.push(*n);
                }
                None => out.push('\\'),
            }
            i += 2;
            continue;
        }
        if in_class {
            if c == ']' {
                in_class = false;
            }
            out.push(c);
            i += 1;
            continue;
        }
        match c {
            '[' => {
                in_class = true;
                out.push(c);
                // A ']' right after '[' or '[^' is literal.
                if chars.get(i + 1) == Some(&'^') {
                    out.push('^');
                    i += 1;
                }
                if chars.get(i + 1) == Some(&']') {
                    out.push(']');
                    i += 1;
                }
            }
            '(' if chars.get(i + 1) == Some(&'?') => {
                // Inline flags `(?imx-imx)` or `(?imx-imx:`: Ruby's m is Rust's s.
                let mut j = i + 2;
                let mut flags = String::new();
                while let Some(f) = chars.get(j) {
                    if matches!(f, 'i' | 'm' | 'x' | '-') {
                        flags.push(if *f == 'm' { 's' } else { *f });
                        j += 1;
                    } else {
                        break;
                    }
                }
                if !flags.is_empty() && matches!(chars.get(j), Some(')') | Some(':')) {
                    out.push_str("(?");
                    out.push_str(&flags);
                    i = j;
                } else {
                    out.push_str("(?");
                    i += 2;
                }
                continue;
            }
            _ => out.push(c),
        }
        i += 1;
    }
    out
}

/// A replacement written for Ruby's `gsub`, in Rust `regex` syntax: `\1`..`\9` → `${1}`,
/// `\0` and `\&` → `${0}`, `\k<name>` → `${name}`, `\\` → `\`, and a literal `$` escaped as
/// `$$` (Rust would otherwise read it as a group reference). Other `\x` stay literal, as in
/// Ruby.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RubyReplacement {
    pub text: String,
    pub rust: String,
}

impl<'de> Deserialize<'de> for RubyReplacement {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        let rust = translate_ruby_replacement(&text).map_err(de::Error::custom)?;
        Ok(RubyReplacement { text, rust })
    }
}

/// What a configuration value can be wrong about (the loader adds file, line and key).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ValueError {
    #[error(
        "invalid duration {0:?}: expected a number with a unit s, m, h, d or w (e.g. \"30d\", \"1h30m\")"
    )]
    Duration(String),
    #[error("unterminated \\k<name> in replacement {0:?}")]
    Replacement(String),
    #[error("{0:?} is not a directory attribute name")]
    AttributeName(String),
    #[error("token_url, client_id and scope belong to `type: oauth2`")]
    OAuth2FieldsOnBearer,
    #[error("`type: oauth2` needs token_url and client_id")]
    OAuth2Incomplete,
    #[error(
        "{0} is set but default.idTokenClaims.issuer is not; the target rejects {0} without an \
         issuer (add `default: {{idTokenClaims: {{issuer: 'https://...'}}}}`)"
    )]
    NoIssuer(&'static str),
    #[error("keytab and principal belong to `mechanism: gssapi`")]
    KerberosFieldsOnSimple,
    #[error(
        "`mechanism: gssapi` needs keytab (the file with the service account's key) and \
         principal (`name@REALM`)"
    )]
    GssapiIncomplete,
    #[error(
        "schedule {0:?} is neither an interval (\"15m\") nor a five-field cron expression \
         (\"*/15 * * * *\"): {1}"
    )]
    CronSchedule(String, String),
    #[error("schedule {0:?} is shorter than one second")]
    ScheduleTooShort(String),
    #[error("interval {0:?} is shorter than one second")]
    IntervalTooShort(String),
    #[error("invalid mail address {0:?}: {1}")]
    MailAddress(String, String),
    #[error(
        "invalid size {0:?}: expected a number with an optional unit B, KiB, MiB, GiB, kB, MB \
         or GB (e.g. \"10MiB\")"
    )]
    Size(String),
    #[error("size {0:?} is smaller than 1KiB")]
    SizeTooSmall(String),
}

/// A Kerberos principal `name@REALM` (`sync@EXAMPLE.JP`, `svc/host@EXAMPLE.JP`). The realm
/// goes into a krb5.conf the agent writes, so it may hold only letters, digits, `.`, `-` and
/// `_`; the name no white space, `@`, quotes, braces or backslashes.
#[derive(Clone, PartialEq, Eq)]
pub struct KerberosPrincipal {
    text: String,
    at: usize,
}

impl KerberosPrincipal {
    /// Checks `name@REALM` (see the type).
    pub fn parse(text: &str) -> Result<KerberosPrincipal, String> {
        let bad = |why: &str| format!("invalid Kerberos principal {text:?}: {why}");
        let Some(at) = text.rfind('@') else {
            return Err(bad("expected name@REALM (e.g. 'sync@EXAMPLE.JP')"));
        };
        let (name, realm) = (&text[..at], &text[at + 1..]);
        if name.is_empty() || realm.is_empty() {
            return Err(bad("expected name@REALM (e.g. 'sync@EXAMPLE.JP')"));
        }
        if name
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || "@\"'{}\\".contains(c))
        {
            return Err(bad(
                "the name may not hold white space, '@', quotes, braces or '\\'",
            ));
        }
        if !realm
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || ".-_".contains(c))
        {
            return Err(bad(
                "the realm may hold only letters, digits, '.', '-' and '_'",
            ));
        }
        Ok(KerberosPrincipal {
            text: text.to_string(),
            at,
        })
    }

    /// The principal as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The realm (after the last `@`).
    pub fn realm(&self) -> &str {
        &self.text[self.at + 1..]
    }
}

impl fmt::Debug for KerberosPrincipal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.text)
    }
}

impl fmt::Display for KerberosPrincipal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl<'de> Deserialize<'de> for KerberosPrincipal {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        KerberosPrincipal::parse(&text).map_err(de::Error::custom)
    }
}

/// A KDC address for a krb5.conf `kdc =` line: a host name, an IPv4 address or a bracketed
/// IPv6 address, optionally `:port`. Nothing else (it is written into a krb5.conf).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KdcAddress(pub String);

impl KdcAddress {
    /// Checks `host[:port]` (see the type).
    pub fn parse(text: &str) -> Result<KdcAddress, String> {
        let bad = || {
            format!(
                "invalid KDC address {text:?}: expected host, host:port or [IPv6]:port \
                 (e.g. 'dc1.example.jp' or '192.0.2.10:88')"
            )
        };
        let (host, port) = match text.strip_prefix('[') {
            Some(rest) => {
                let (inner, after) = rest.split_once(']').ok_or_else(bad)?;
                if inner.is_empty() || !inner.chars().all(|c| c.is_ascii_hexdigit() || c == ':') {
                    return Err(bad());
                }
                match after {
                    "" => (inner, None),
                    _ => (inner, Some(after.strip_prefix(':').ok_or_else(bad)?)),
                }
            }
            None => match text.split_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (text, None),
            },
        };
        let host_ok = !host.is_empty()
            && host
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || ".-_:".contains(c));
        let port_ok = port.is_none_or(|p| p.parse::<u16>().is_ok_and(|n| n > 0));
        if host_ok && port_ok {
            Ok(KdcAddress(text.to_string()))
        } else {
            Err(bad())
        }
    }
}

impl<'de> Deserialize<'de> for KdcAddress {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        KdcAddress::parse(&text).map_err(de::Error::custom)
    }
}

pub fn translate_ruby_replacement(text: &str) -> Result<String, ValueError> {
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len() + 4);
    let mut i = 0;
    while i < chars.len() {
        match (chars[i], chars.get(i + 1)) {
            ('\\', Some(d)) if d.is_ascii_digit() => {
                out.push_str(&format!("${{{d}}}"));
                i += 2;
            }
            ('\\', Some('&')) => {
                out.push_str("${0}");
                i += 2;
            }
            ('\\', Some('\\')) => {
                out.push('\\');
                i += 2;
            }
            ('\\', Some('k')) if chars.get(i + 2) == Some(&'<') => {
                let rest: String = chars[i + 3..].iter().collect();
                let Some(end) = rest.find('>') else {
                    return Err(ValueError::Replacement(text.to_string()));
                };
                out.push_str(&format!("${{{}}}", &rest[..end]));
                i += 3 + rest[..end].chars().count() + 1;
            }
            ('$', _) => {
                out.push_str("$$");
                i += 1;
            }
            (c, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    Ok(out)
}

/// A duration written as `30d`, `24h`, `90m`, `45s`, `2w`, or a combination such as `1h30m`.
/// A unit is required: a bare number is ambiguous between seconds and days.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DurationText(pub Duration);

impl<'de> Deserialize<'de> for DurationText {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        parse_duration(&text)
            .map(DurationText)
            .map_err(de::Error::custom)
    }
}

pub fn parse_duration(text: &str) -> Result<Duration, ValueError> {
    let bad = || ValueError::Duration(text.to_string());
    let t = text.trim();
    // humantime reads more (`ms`, `M`, `y`, spaces, a bare `0`); the configuration keeps
    // its own units, each after a number.
    let ours = t
        .chars()
        .all(|c| c.is_ascii_digit() || matches!(c, 's' | 'm' | 'h' | 'd' | 'w'));
    let unit_after_unit = t
        .as_bytes()
        .windows(2)
        .any(|w| w.iter().all(u8::is_ascii_alphabetic));
    if !ours || unit_after_unit || !t.ends_with(|c: char| c.is_ascii_alphabetic()) {
        return Err(bad());
    }
    humantime::parse_duration(t).map_err(|_| bad())
}

/// A [`DurationText`] of at least one second: how often something is polled
/// (`sync.watch_interval`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PollInterval(pub Duration);

impl<'de> Deserialize<'de> for PollInterval {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        let every = parse_duration(&text).map_err(de::Error::custom)?;
        if every < Duration::from_secs(1) {
            return Err(de::Error::custom(ValueError::IntervalTooShort(text)));
        }
        Ok(PollInterval(every))
    }
}

/// `sync.schedule`: when `dirsync run` starts a run: an interval in the grammar of
/// [`DurationText`] of at least one second (`15m`, measured from the start of the previous
/// run), or a five-field cron expression in local time (`*/15 * * * *`, `0 2 * * MON-FRI`,
/// parsed by the `croner` crate).
#[derive(Debug, Clone)]
pub enum Schedule {
    Every(Duration),
    Cron(Box<CronSchedule>),
}

/// A parsed cron expression and its text.
#[derive(Debug, Clone)]
pub struct CronSchedule {
    pub text: String,
    cron: croner::Cron,
}

impl Schedule {
    /// When the run after one that started at `started` is due; `None`: never (a cron
    /// expression with no further occurrence, such as `0 0 30 2 *`).
    pub fn next_after(
        &self,
        started: chrono::DateTime<chrono::Local>,
    ) -> Option<chrono::DateTime<chrono::Local>> {
        match self {
            Schedule::Every(every) => {
                started.checked_add_signed(chrono::TimeDelta::from_std(*every).ok()?)
            }
            Schedule::Cron(c) => c.cron.find_next_occurrence(&started, false).ok(),
        }
    }

    /// The usual time between two runs: the interval, or for a cron expression the gap
    /// between its next two occurrences (what `/healthz` multiplies by 3).
    pub fn period(&self) -> Duration {
        match self {
            Schedule::Every(every) => *every,
            Schedule::Cron(_) => self
                .next_after(chrono::Local::now())
                .and_then(|first| (self.next_after(first)? - first).to_std().ok())
                .unwrap_or(Duration::MAX),
        }
    }
}

impl<'de> Deserialize<'de> for Schedule {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        parse_schedule(&text).map_err(de::Error::custom)
    }
}

pub fn parse_schedule(text: &str) -> Result<Schedule, ValueError> {
    let t = text.trim();
    if t.contains(|c: char| c.is_whitespace() || c == '*' || c == '@') {
        let cron = croner::parser::CronParser::builder()
            .build()
            .parse(t)
            .map_err(|e| ValueError::CronSchedule(text.to_string(), e.to_string()))?;
        return Ok(Schedule::Cron(Box::new(CronSchedule {
            text: t.to_string(),
            cron,
        })));
    }
    let every = parse_duration(t)?;
    if every < Duration::from_secs(1) {
        return Err(ValueError::ScheduleTooShort(text.to_string()));
    }
    Ok(Schedule::Every(every))
}

/// The LDAP timeout in seconds, 1..=36000 as the existing tool documents.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeoutSecs(pub u32);

impl Default for TimeoutSecs {
    fn default() -> Self {
        TimeoutSecs(3600)
    }
}

impl<'de> Deserialize<'de> for TimeoutSecs {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let n = u64::deserialize(d)?;
        if (1..=36_000).contains(&n) {
            Ok(TimeoutSecs(n as u32))
        } else {
            Err(de::Error::custom(format!(
                "timeout {n} is out of range: seconds, 1..36000"
            )))
        }
    }
}

/// A fraction 0.0..=1.0 (deletion ratios).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Ratio(pub f64);

impl<'de> Deserialize<'de> for Ratio {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let n = f64::deserialize(d)?;
        if (0.0..=1.0).contains(&n) {
            Ok(Ratio(n))
        } else {
            Err(de::Error::custom(format!(
                "{n} is out of range: a fraction between 0 and 1 (0.10 = 10%)"
            )))
        }
    }
}

/// A positive count with an upper bound (chunk sizes, concurrency).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bounded<const MAX: u32>(pub u32);

impl<'de, const MAX: u32> Deserialize<'de> for Bounded<MAX> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let n = u64::deserialize(d)?;
        if (1..=u64::from(MAX)).contains(&n) {
            Ok(Bounded(n as u32))
        } else {
            Err(de::Error::custom(format!("{n} is out of range: 1..{MAX}")))
        }
    }
}

/// An http(s) URL. The SCIM base URL is joined with `/Users` etc., so a trailing `/` is
/// dropped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpUrl(pub String);

impl<'de> Deserialize<'de> for HttpUrl {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        let t = text.trim();
        let rest = t
            .strip_prefix("https://")
            .or_else(|| t.strip_prefix("http://"));
        match rest {
            Some(r) if !r.is_empty() && !r.starts_with('/') && !t.contains(char::is_whitespace) => {
                Ok(HttpUrl(t.trim_end_matches('/').to_string()))
            }
            _ => Err(de::Error::custom(format!(
                "invalid URL {text:?}: expected http://host/... or https://host/..."
            ))),
        }
    }
}

/// A list of directory attribute names; the first one with a non-empty value wins. Written as
/// one name or a list. An empty list is allowed and means "explicitly not bound" (it turns
/// off a flavor default).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AttrList(pub Vec<String>);

impl<'de> Deserialize<'de> for AttrList {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = AttrList;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a directory attribute name or a list of names")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<AttrList, E> {
                check_attr_name(v).map_err(E::custom)?;
                Ok(AttrList(vec![v.to_string()]))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<AttrList, A::Error> {
                let mut out = Vec::new();
                while let Some(name) = seq.next_element::<String>()? {
                    check_attr_name(&name).map_err(de::Error::custom)?;
                    out.push(name);
                }
                Ok(AttrList(out))
            }
        }
        d.deserialize_any(V)
    }
}

fn check_attr_name(name: &str) -> Result<(), ValueError> {
    let ok = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.' || c == ';');
    if ok {
        Ok(())
    } else {
        Err(ValueError::AttributeName(name.to_string()))
    }
}

/// A size in bytes: a number with an optional unit, `B`, `KiB`, `MiB`, `GiB` (powers of
/// 1024) or `kB`, `MB`, `GB` (powers of 1000): `10MiB`, `512KiB`, `1000000`. At least 1 KiB.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteSize(pub u64);

impl ByteSize {
    pub fn parse(text: &str) -> Result<ByteSize, ValueError> {
        let t = text.trim();
        let bad = || ValueError::Size(text.to_string());
        let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
        let (number, unit) = t.split_at(split);
        let n: u64 = number.parse().map_err(|_| bad())?;
        let factor: u64 = match unit.trim() {
            "" | "B" => 1,
            "KiB" => 1 << 10,
            "MiB" => 1 << 20,
            "GiB" => 1 << 30,
            "kB" | "KB" => 1_000,
            "MB" => 1_000_000,
            "GB" => 1_000_000_000,
            _ => return Err(bad()),
        };
        let bytes = n.checked_mul(factor).ok_or_else(bad)?;
        if bytes < 1024 {
            return Err(ValueError::SizeTooSmall(text.to_string()));
        }
        Ok(ByteSize(bytes))
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = ByteSize;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a size such as \"10MiB\"")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<ByteSize, E> {
                ByteSize::parse(&v.to_string()).map_err(E::custom)
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<ByteSize, E> {
                ByteSize::parse(&v.to_string()).map_err(E::custom)
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<ByteSize, E> {
                ByteSize::parse(v).map_err(E::custom)
            }
        }
        d.deserialize_any(V)
    }
}

/// One element or a list of elements (`phoneNumbers: {value: telephoneNumber}` or
/// `phoneNumbers: [{value: telephoneNumber}, {value: mobile}]`). Written by hand because an
/// untagged enum would lose error positions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OneOrMany<T>(pub Vec<T>);

impl<T> Default for OneOrMany<T> {
    fn default() -> Self {
        OneOrMany(Vec::new())
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for OneOrMany<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<T>(PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for V<T> {
            type Value = OneOrMany<T>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a mapping or a list of mappings")
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<OneOrMany<T>, A::Error> {
                let one = T::deserialize(de::value::MapAccessDeserializer::new(map))?;
                Ok(OneOrMany(vec![one]))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<OneOrMany<T>, A::Error> {
                let mut out = Vec::new();
                while let Some(item) = seq.next_element::<T>()? {
                    out.push(item);
                }
                Ok(OneOrMany(out))
            }
        }
        d.deserialize_any(V(PhantomData))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    fn rewrite(pattern: &str, replacement: &str, input: &str) -> String {
        let re = regex::Regex::new(&translate_ruby_pattern(pattern)).unwrap();
        let rep = translate_ruby_replacement(replacement).unwrap();
        re.replace_all(input, rep.as_str()).into_owned()
    }

    #[test]
    fn byte_sizes() {
        assert_eq!(ByteSize::parse("10MiB").unwrap(), ByteSize(10 << 20));
        assert_eq!(ByteSize::parse("512KiB").unwrap(), ByteSize(512 << 10));
        assert_eq!(ByteSize::parse("2 MB").unwrap(), ByteSize(2_000_000));
        assert_eq!(ByteSize::parse("4096").unwrap(), ByteSize(4096));
        for bad in [
            "",
            "MiB",
            "10 mebibytes",
            "-1KiB",
            "100",
            "99999999999999GiB",
        ] {
            assert!(ByteSize::parse(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn kerberos_principal_and_kdc() {
        let p = KerberosPrincipal::parse("sync@EXAMPLE.JP").unwrap();
        assert_eq!((p.as_str(), p.realm()), ("sync@EXAMPLE.JP", "EXAMPLE.JP"));
        assert_eq!(
            KerberosPrincipal::parse("ldap/dc1.example.jp@EXAMPLE.JP")
                .unwrap()
                .realm(),
            "EXAMPLE.JP"
        );
        for bad in [
            "sync",
            "@EXAMPLE.JP",
            "sync@",
            "a b@X",
            "s@EX}AMPLE",
            "s@EX\nA",
        ] {
            assert!(KerberosPrincipal::parse(bad).is_err(), "{bad}");
        }
        for good in [
            "dc1.example.jp",
            "192.0.2.10:88",
            "[2001:db8::1]:88",
            "[::1]",
        ] {
            assert!(KdcAddress::parse(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "dc1:x",
            "dc1:0",
            "dc1 }",
            "[::1",
            "[::1]x",
            "a\nkdc = evil",
        ] {
            assert!(KdcAddress::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn ruby_anchors_and_replacements() {
        // \z: end of text only.
        assert_eq!(
            rewrite(r"@EXAMPLE\.JP\z", "@example.jp", "a@EXAMPLE.JP"),
            "a@example.jp"
        );
        assert_eq!(
            rewrite(r"@EXAMPLE\.JP\z", "@example.jp", "a@EXAMPLE.JP\n"),
            "a@EXAMPLE.JP\n"
        );
        // \Z: also before a final newline.
        assert_eq!(rewrite(r"JP\Z", "jp", "a.JP\n"), "a.jp");
        assert_eq!(rewrite(r"JP\Z", "jp", "a.JP"), "a.jp");
        // \A: start of text only; ^ is a line anchor as in Ruby.
        assert_eq!(rewrite(r"\Ax", "y", "x\nx"), "y\nx");
        assert_eq!(rewrite(r"^x", "y", "x\nx"), "y\ny");
        // Back-references.
        assert_eq!(
            rewrite(r"\A(\w+)@(\w+)\z", r"\2+\1", "taro@corp"),
            "corp+taro"
        );
        assert_eq!(rewrite(r"(?<u>\w+)@", r"\k<u>.", "taro@corp"), "taro.corp");
        assert_eq!(rewrite(r"a", r"[\&]", "a"), "[a]");
        assert_eq!(rewrite(r"a", r"$1", "a"), "$1");
        // Ruby (?m) = dot-all.
        assert_eq!(rewrite(r"(?m)a.b", "x", "a\nb"), "x");
        assert_eq!(rewrite(r"\h+", "#", "ff-zz"), "#-zz");
        assert_eq!(rewrite(r"[\]a]", "#", "]a"), "##");
    }

    #[test]
    fn schedules() {
        use chrono::{Local, TimeZone, Timelike};
        let every = |t: &str| match parse_schedule(t).unwrap() {
            Schedule::Every(d) => d,
            Schedule::Cron(c) => panic!("{t} parsed as cron {}", c.text),
        };
        assert_eq!(every("15m"), Duration::from_secs(900));
        assert_eq!(every("1s"), Duration::from_secs(1));
        let quarter = parse_schedule("*/15 * * * *").unwrap();
        assert_eq!(quarter.period(), Duration::from_secs(900));
        let at = Local.with_ymd_and_hms(2026, 12, 7, 10, 7, 30).unwrap();
        let next = quarter.next_after(at).unwrap();
        assert_eq!((next.hour(), next.minute(), next.second()), (10, 15, 0));
        let nightly = parse_schedule("0 2 * * *").unwrap();
        assert_eq!(nightly.period(), Duration::from_secs(86_400));
        assert!(parse_schedule("@hourly").is_ok());
        assert!(matches!(
            parse_schedule("*/15 * * *"),
            Err(ValueError::CronSchedule(..))
        ));
        assert!(matches!(
            parse_schedule("61 * * * *"),
            Err(ValueError::CronSchedule(..))
        ));
        assert!(matches!(
            parse_schedule("0s"),
            Err(ValueError::ScheduleTooShort(_))
        ));
        assert!(matches!(parse_schedule("15"), Err(ValueError::Duration(_))));
    }

    #[test]
    fn durations() {
        assert_eq!(
            parse_duration("30d").unwrap(),
            Duration::from_secs(30 * 86400)
        );
        assert_eq!(parse_duration("1h30m").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse_duration("15m").unwrap(), Duration::from_secs(900));
        assert_eq!(parse_duration("24h").unwrap(), Duration::from_secs(86400));
        assert_eq!(
            parse_duration("2w").unwrap(),
            Duration::from_secs(14 * 86400)
        );
        assert_eq!(parse_duration("45s").unwrap(), Duration::from_secs(45));
        for bad in ["", "30", "d", "30x", "-1d", "1.5h", "0", "1ms", "1M", "1 h"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }
}
