//! RFC 4515 LDAP search filters: a position-tracking parser, and evaluation of a parsed
//! filter against a directory [`Entry`].
//!
//! The parser exists for two reasons: configuration errors must say *where* a filter is
//! wrong (`ldap3::parse_filter`, the encoder that actually goes on the wire, only says
//! "invalid"), and the LDIF source must evaluate filters locally. [`validate`] runs both
//! parsers so that a filter accepted here is also one the LDAP client can send.
//!
//! This crate does not know the configuration, the network (ldap3 is used only as the
//! reference encoder), or matching rules: extensible
//! matches (`attr:1.2.840.113556.1.4.803:=2`) parse (and go to a real server as written) but
//! cannot be evaluated locally.

use std::cmp::Ordering;
use std::fmt;

use dirsync_model::entry::Entry;

/// A parsed filter. Attribute names keep their spelling; values are unescaped bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LdapFilter {
    And(Vec<LdapFilter>),
    Or(Vec<LdapFilter>),
    Not(Box<LdapFilter>),
    Equal(String, Vec<u8>),
    Approx(String, Vec<u8>),
    GreaterOrEqual(String, Vec<u8>),
    LessOrEqual(String, Vec<u8>),
    Present(String),
    Substrings {
        attr: String,
        initial: Option<Vec<u8>>,
        any: Vec<Vec<u8>>,
        last: Option<Vec<u8>>,
    },
    Extensible {
        attr: Option<String>,
        rule: Option<String>,
        dn: bool,
        value: Vec<u8>,
    },
}

/// Where and why a filter text is invalid. `position` is a 1-based character offset into the
/// text as the administrator wrote it (outer parentheses added by us are not counted).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilterError {
    pub position: usize,
    pub message: String,
}

impl fmt::Display for FilterError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "at character {}: {}", self.position, self.message)
    }
}

/// The filter with outer parentheses, as sent on the wire. Existing configuration files write
/// filters without them (`'CN=IIJ Taro'`, `'!(cn=*)'`); both spellings are accepted.
pub fn normalize(text: &str) -> String {
    let t = text.trim();
    if t.starts_with('(') {
        t.to_string()
    } else {
        format!("({t})")
    }
}

/// Parses a filter written with or without outer parentheses.
pub fn parse(text: &str) -> Result<LdapFilter, FilterError> {
    let trimmed = text.trim();
    let leading_ws = text.chars().count() - text.trim_start().chars().count();
    let wrapped = !trimmed.starts_with('(');
    let full = normalize(text);
    // Character offsets of the normalised text map back to the original: minus the opening
    // parenthesis we added, plus the leading whitespace we trimmed.
    let back = |pos: usize| -> usize {
        let p = if wrapped {
            pos.saturating_sub(1).max(1)
        } else {
            pos
        };
        p + leading_ws
    };
    if trimmed.is_empty() {
        return Err(FilterError {
            position: 1,
            message: "empty filter".into(),
        });
    }
    let chars: Vec<char> = full.chars().collect();
    let mut p = Parser { chars, pos: 0 };
    let text_len = text.trim_end().chars().count();
    let filter = p.filter().map_err(|e| {
        if wrapped && e.position == 1 {
            // Our own added '(' was left open: some '(' in the text lacks its ')'.
            FilterError {
                position: text_len.max(1),
                message: "unbalanced parentheses: a '(' is never closed".into(),
            }
        } else {
            FilterError {
                position: back(e.position),
                message: e.message,
            }
        }
    })?;
    if p.pos < p.chars.len() {
        return Err(FilterError {
            position: back(p.pos + 1),
            message: "unexpected text after the end of the filter (unbalanced parentheses?)".into(),
        });
    }
    Ok(filter)
}

/// Parses with [`parse`] and checks that the LDAP client's own encoder accepts the filter too,
/// so a filter that passes configuration checks cannot fail at search time.
pub fn validate(text: &str) -> Result<LdapFilter, FilterError> {
    let filter = parse(text)?;
    if ldap3::parse_filter(normalize(text)).is_err() {
        return Err(FilterError {
            position: 1,
            message: "the LDAP client cannot encode this filter".into(),
        });
    }
    Ok(filter)
}

struct Parser {
    chars: Vec<char>,
    pos: usize,
}

impl Parser {
    fn err<T>(&self, at: usize, message: impl Into<String>) -> Result<T, FilterError> {
        Err(FilterError {
            position: at + 1,
            message: message.into(),
        })
    }

    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }

    fn filter(&mut self) -> Result<LdapFilter, FilterError> {
        match self.peek() {
            Some('(') => self.pos += 1,
            Some(c) => return self.err(self.pos, format!("expected '(' but found '{c}'")),
            None => return self.err(self.pos, "expected '(' but the filter ended"),
        }
        let open = self.pos - 1;
        let result = match self.peek() {
            Some('&') => {
                self.pos += 1;
                LdapFilter::And(self.filter_list()?)
            }
            Some('|') => {
                self.pos += 1;
                LdapFilter::Or(self.filter_list()?)
            }
            Some('!') => {
                self.pos += 1;
                if self.peek() != Some('(') {
                    return self.err(self.pos, "'!' must be followed by a parenthesised filter");
                }
                LdapFilter::Not(Box::new(self.filter()?))
            }
            None => return self.err(open, "unbalanced '(' : the filter ended"),
            Some(_) => self.item()?,
        };
        match self.peek() {
            Some(')') => {
                self.pos += 1;
                Ok(result)
            }
            Some(c) => self.err(self.pos, format!("expected ')' but found '{c}'")),
            None => self.err(open, "this '(' is never closed"),
        }
    }

    fn filter_list(&mut self) -> Result<Vec<LdapFilter>, FilterError> {
        // RFC 4526 absolute true/false `(&)` and `(|)` are allowed: an empty list.
        let mut items = Vec::new();
        while self.peek() == Some('(') {
            items.push(self.filter()?);
        }
        Ok(items)
    }

    /// `attr`, or for extensible matches `[attr][:dn][:rule]`.
    fn attribute_description(&mut self) -> Result<String, FilterError> {
        let start = self.pos;
        while let Some(c) = self.peek() {
            if c.is_ascii_alphanumeric() || c == '-' || c == '.' || c == ';' || c == '_' {
                self.pos += 1;
            } else {
                break;
            }
        }
        let name: String = self.chars[start..self.pos].iter().collect();
        if let Some(first) = name.chars().next()
            && first.is_ascii_digit()
            && !dirsync_model::entry::attribute_base(&name)
                .split('.')
                .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
        {
            return self.err(
                start,
                format!("'{name}' is neither an attribute name nor a numeric OID"),
            );
        }
        Ok(name)
    }

    fn item(&mut self) -> Result<LdapFilter, FilterError> {
        let start = self.pos;
        let attr = self.attribute_description()?;
        match self.peek() {
            Some(':') => return self.extensible(start, attr),
            Some('=') | Some('~') | Some('>') | Some('<') => {}
            Some(')') | None if attr.is_empty() => {
                return self.err(start, "empty filter item: expected 'attribute=value'");
            }
            Some(c) => {
                if attr.is_empty() {
                    return self.err(start, format!("expected an attribute name, found '{c}'"));
                }
                return self.err(
                    self.pos,
                    format!("expected '=', '~=', '>=' or '<=' after '{attr}', found '{c}'"),
                );
            }
            None => return self.err(self.pos, "the filter ended inside an item"),
        }
        if attr.is_empty() {
            return self.err(start, "missing attribute name before the operator");
        }
        let op = self.peek();
        self.pos += 1;
        if op != Some('=') {
            if self.peek() != Some('=') {
                return self.err(self.pos - 1, "expected '=' after '~', '>' or '<'");
            }
            self.pos += 1;
            let value = self.value(false)?;
            return Ok(match op {
                Some('~') => LdapFilter::Approx(attr, value.concat()),
                Some('>') => LdapFilter::GreaterOrEqual(attr, value.concat()),
                _ => LdapFilter::LessOrEqual(attr, value.concat()),
            });
        }
        let parts = self.value(true)?;
        if parts.len() == 1 {
            return Ok(LdapFilter::Equal(attr, parts.concat()));
        }
        if parts.len() == 2 && parts.iter().all(Vec::is_empty) {
            return Ok(LdapFilter::Present(attr));
        }
        let n = parts.len();
        let mut initial = None;
        let mut last = None;
        let mut any = Vec::new();
        for (i, part) in parts.into_iter().enumerate() {
            if i == 0 {
                initial = (!part.is_empty()).then_some(part);
            } else if i == n - 1 {
                last = (!part.is_empty()).then_some(part);
            } else if part.is_empty() {
                return self.err(self.pos, "'**' is not allowed in a substring filter");
            } else {
                any.push(part);
            }
        }
        Ok(LdapFilter::Substrings {
            attr,
            initial,
            any,
            last,
        })
    }

    fn extensible(&mut self, start: usize, attr: String) -> Result<LdapFilter, FilterError> {
        let mut dn = false;
        let mut rule = None;
        while self.peek() == Some(':') {
            self.pos += 1;
            if self.peek() == Some('=') {
                self.pos += 1;
                let value = self.value(false)?;
                if attr.is_empty() && rule.is_none() {
                    return self.err(
                        start,
                        "an extensible match needs an attribute or a matching rule",
                    );
                }
                return Ok(LdapFilter::Extensible {
                    attr: (!attr.is_empty()).then_some(attr),
                    rule,
                    dn,
                    value: value.concat(),
                });
            }
            let part_start = self.pos;
            let part = self.attribute_description()?;
            if part.eq_ignore_ascii_case("dn") && rule.is_none() && !dn {
                dn = true;
            } else if rule.is_none() && !part.is_empty() {
                rule = Some(part);
            } else {
                return self.err(part_start, "malformed extensible match (expected ':=')");
            }
        }
        self.err(self.pos, "malformed extensible match (expected ':=')")
    }

    /// Reads an assertion value up to the closing ')'. With `split_stars`, unescaped `*`
    /// separate substring parts; otherwise a `*` is an error.
    fn value(&mut self, split_stars: bool) -> Result<Vec<Vec<u8>>, FilterError> {
        let mut parts = vec![Vec::new()];
        let mut buf = [0u8; 4];
        while let Some(c) = self.peek() {
            match c {
                ')' => return Ok(parts),
                '(' => {
                    return self.err(
                        self.pos,
                        "unescaped '(' in a value (write it as \\28, or a missing ')' before it?)",
                    );
                }
                '*' if split_stars => {
                    parts.push(Vec::new());
                    self.pos += 1;
                }
                '*' => {
                    return self.err(self.pos, "'*' is not allowed here (escape it as \\2a)");
                }
                '\\' => {
                    let hex: String = self.chars.iter().skip(self.pos + 1).take(2).collect();
                    let byte = (hex.len() == 2)
                        .then(|| u8::from_str_radix(&hex, 16).ok())
                        .flatten();
                    let Some(byte) = byte else {
                        return self.err(
                            self.pos,
                            "'\\' must be followed by two hex digits (e.g. \\2a for '*')",
                        );
                    };
                    if let Some(last) = parts.last_mut() {
                        last.push(byte);
                    }
                    self.pos += 3;
                }
                '\0' => return self.err(self.pos, "NUL is not allowed in a filter"),
                _ => {
                    if let Some(last) = parts.last_mut() {
                        last.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
                    }
                    self.pos += 1;
                }
            }
        }
        self.err(self.pos, "the filter ended inside a value (missing ')')")
    }
}

/// Evaluation failed because the filter uses something only a server can evaluate.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct EvalError(pub String);

impl LdapFilter {
    /// Evaluates the filter against an entry (for sources without a server, such as LDIF).
    /// Comparison is case-insensitive (the usual caseIgnoreMatch); `>=`/`<=` compare as
    /// integers when both sides are integers (uSNChanged, timestamps as numbers) and
    /// otherwise lexicographically. Attribute options (`cn;lang-ja`) are ignored.
    pub fn matches(&self, entry: &Entry) -> Result<bool, EvalError> {
        Ok(match self {
            LdapFilter::And(items) => {
                for f in items {
                    if !f.matches(entry)? {
                        return Ok(false);
                    }
                }
                true
            }
            LdapFilter::Or(items) => {
                for f in items {
                    if f.matches(entry)? {
                        return Ok(true);
                    }
                }
                false
            }
            LdapFilter::Not(inner) => !inner.matches(entry)?,
            LdapFilter::Present(attr) => is_objectclass(attr) || !values(entry, attr).is_empty(),
            LdapFilter::Equal(attr, v) | LdapFilter::Approx(attr, v) => {
                let want = fold(v);
                values(entry, attr).iter().any(|x| fold(x) == want)
            }
            LdapFilter::GreaterOrEqual(attr, v) => values(entry, attr)
                .iter()
                .any(|x| compare(x, v) != Ordering::Less),
            LdapFilter::LessOrEqual(attr, v) => values(entry, attr)
                .iter()
                .any(|x| compare(x, v) != Ordering::Greater),
            LdapFilter::Substrings {
                attr,
                initial,
                any,
                last,
            } => values(entry, attr)
                .iter()
                .any(|x| substring_match(&fold(x), initial, any, last)),
            LdapFilter::Extensible { attr, rule, .. } => {
                return Err(EvalError(format!(
                    "extensible match ({}:{}:=...) cannot be evaluated without an LDAP server",
                    attr.as_deref().unwrap_or(""),
                    rule.as_deref().unwrap_or("")
                )));
            }
        })
    }
}

fn is_objectclass(attr: &str) -> bool {
    attr.eq_ignore_ascii_case("objectclass")
}

fn values<'a>(entry: &'a Entry, attr: &str) -> Vec<&'a [u8]> {
    entry.bytes(dirsync_model::entry::attribute_base(attr))
}

fn fold(v: &[u8]) -> Vec<u8> {
    match std::str::from_utf8(v) {
        Ok(s) => s.trim().to_lowercase().into_bytes(),
        Err(_) => v.to_vec(),
    }
}

fn compare(x: &[u8], v: &[u8]) -> Ordering {
    let as_int = |b: &[u8]| std::str::from_utf8(b).ok()?.trim().parse::<i128>().ok();
    match (as_int(x), as_int(v)) {
        (Some(a), Some(b)) => a.cmp(&b),
        _ => fold(x).cmp(&fold(v)),
    }
}

fn substring_match(
    value: &[u8],
    initial: &Option<Vec<u8>>,
    any: &[Vec<u8>],
    last: &Option<Vec<u8>>,
) -> bool {
    let mut rest = value;
    if let Some(i) = initial {
        let i = fold(i);
        if !rest.starts_with(&i) {
            return false;
        }
        rest = &rest[i.len()..];
    }
    for a in any {
        let a = fold(a);
        match find(rest, &a) {
            Some(at) => rest = &rest[at + a.len()..],
            None => return false,
        }
    }
    match last {
        Some(l) => rest.ends_with(&fold(l)),
        None => true,
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() {
        return Some(0);
    }
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    fn entry(pairs: &[(&str, &str)]) -> Entry {
        let mut e = dirsync_model::entry::EntryBuilder::new("cn=x,dc=example,dc=jp");
        for (k, v) in pairs {
            e.push(k, v.as_bytes());
        }
        e.build()
    }

    #[test]
    fn accepts_with_and_without_parentheses() {
        for f in [
            "CN=IIJ Taro",
            "!(cn=*)",
            "(cn=*)",
            "&(a=b)(c=d)",
            "memberOf:1.2.840.113556.1.4.1941:=CN=IDaaS users,OU=Groups,DC=example,DC=jp",
            "(&(objectClass=user)(!(userAccountControl:1.2.840.113556.1.4.803:=2)))",
            "(cn;lang-ja=x)",
            "(1.2.840.113556.1.4.1=x)",
            "(&)",
            "(cn=a\\2ab*c*)",
        ] {
            validate(f).unwrap_or_else(|e| panic!("{f}: {e}"));
        }
    }

    #[test]
    fn errors_carry_positions() {
        let cases = [
            ("(&(objectClass=user)(cn=foo)", 1, "never closed"),
            ("cn=a(b", 5, "unescaped '('"),
            ("(cn=a\\zz)", 6, "two hex digits"),
            ("(=x)", 2, "missing attribute"),
            ("(cn=x))", 7, "unexpected text"),
            ("(cn x)", 4, "expected '='"),
            ("  (cn~x)", 6, "expected '='"),
        ];
        for (text, pos, msg) in cases {
            let e = parse(text).unwrap_err();
            assert_eq!(e.position, pos, "{text}: {e}");
            assert!(e.message.contains(msg), "{text}: {e}");
        }
    }

    #[test]
    fn evaluates() {
        let e = entry(&[
            ("objectClass", "inetOrgPerson"),
            ("cn", "IIJ Taro"),
            ("uid", "taro"),
            ("uSNChanged", "120"),
        ]);
        let t = |f: &str| parse(f).unwrap().matches(&e).unwrap();
        assert!(t("cn=iij taro"));
        assert!(t("(cn=IIJ*)"));
        assert!(t("(cn=*taro)"));
        assert!(t("(cn=I*J*ro)"));
        assert!(!t("(cn=*x*)"));
        assert!(t("(&(uid=taro)(!(mail=*)))"));
        assert!(t("(|(uid=nobody)(objectclass=INETORGPERSON))"));
        assert!(t("(uSNChanged>=99)"));
        assert!(!t("(uSNChanged<=99)"));
        assert!(!t("!(cn=*)"));
        let err = parse("(uid:caseExactMatch:=taro)").unwrap().matches(&e);
        assert!(err.unwrap_err().0.contains("extensible"));
    }

    proptest::proptest! {
        #[test]
        fn agrees_with_ldap3_on_generated_filters(
            attr in "[a-zA-Z][a-zA-Z0-9-]{0,6}",
            value in "[a-zA-Z0-9 =,*]{0,8}",
            op in proptest::sample::select(vec!["=", ">=", "<=", "~="]),
            wrap in proptest::sample::select(vec!["", "!", "&", "|"]),
        ) {
            let inner = format!("({attr}{op}{value})");
            let text = if wrap.is_empty() { inner } else { format!("({wrap}{inner})") };
            let ours = parse(&text).is_ok();
            let theirs = ldap3::parse_filter(&text).is_ok();
            proptest::prop_assert_eq!(ours, theirs, "{}", text);
        }
    }
}
