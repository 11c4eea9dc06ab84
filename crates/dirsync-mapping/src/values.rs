//! Conversions of single directory values into SCIM values: binary GUIDs and SIDs to text,
//! Active Directory account state, RFC 3966 phone numbers, email address checks.
//!
//! Pure functions of their inputs (the clock is a parameter). They do not know bindings or
//! which SCIM attribute a value ends up in.

use base64::Engine;
use chrono::{DateTime, TimeZone, Utc};

pub use dirsync_model::anchor::guid_text;

/// A directory value that cannot become the SCIM value asked for.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ValueError {
    #[error("{attr} is not a GUID ({len} bytes, expected 16)")]
    NotAGuid { attr: String, len: usize },
    #[error("{0} is not a valid SID")]
    NotASid(String),
    #[error(
        "{0:?} is not an RFC 3966 global number (write it as +<country code>-<number>, e.g. +81-3-1234-5678)"
    )]
    NotAGlobalNumber(String),
}

/// Renders one raw value of attribute `attr` as text. objectGUID and mS-DS-ConsistencyGuid
/// (16 bytes) become GUID text with the first three groups little-endian, as Windows shows
/// them; a value that already is 36-character GUID text is kept. objectSid becomes
/// `S-1-5-…`. Other values must be UTF-8; binary values of other attributes are rendered as
/// base64 so that they still compare stably.
pub fn render(attr: &str, raw: &[u8]) -> Result<String, ValueError> {
    let a = attr.to_ascii_lowercase();
    if a == "objectguid" || a == "ms-ds-consistencyguid" {
        if let Ok(text) = std::str::from_utf8(raw)
            && text.len() == 36
            && text.chars().filter(|c| *c == '-').count() == 4
        {
            return Ok(text.to_string());
        }
        return guid_text(raw).ok_or_else(|| ValueError::NotAGuid {
            attr: attr.to_string(),
            len: raw.len(),
        });
    }
    if a == "objectsid" {
        if let Ok(text) = std::str::from_utf8(raw)
            && text.starts_with("S-")
        {
            return Ok(text.to_string());
        }
        return sid_text(raw).ok_or_else(|| ValueError::NotASid(attr.to_string()));
    }
    match std::str::from_utf8(raw) {
        Ok(s) => Ok(s.to_string()),
        Err(_) => Ok(base64::engine::general_purpose::STANDARD.encode(raw)),
    }
}

/// A binary SID (revision, count, 48-bit big-endian authority, little-endian sub-authorities)
/// → `S-1-5-21-…`.
pub fn sid_text(b: &[u8]) -> Option<String> {
    let revision = *b.first()?;
    let count = usize::from(*b.get(1)?);
    if b.len() != 8 + 4 * count {
        return None;
    }
    let authority = b[2..8]
        .iter()
        .fold(0u64, |acc, x| (acc << 8) | u64::from(*x));
    let mut s = format!("S-{revision}-{authority}");
    for i in 0..count {
        let at = 8 + 4 * i;
        let sub = u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]]);
        s.push_str(&format!("-{sub}"));
    }
    Some(s)
}

/// What one `active` source attribute says. `None`: no opinion (absent or empty).
pub fn account_disabled(attr: &str, values: &[&[u8]], now: DateTime<Utc>) -> Option<bool> {
    let text = values
        .iter()
        .filter_map(|v| std::str::from_utf8(v).ok())
        .map(str::trim)
        .find(|s| !s.is_empty())?;
    match attr.to_ascii_lowercase().as_str() {
        // ACCOUNTDISABLE.
        "useraccountcontrol" => text.parse::<i64>().ok().map(|uac| uac & 0x2 != 0),
        "accountexpires" => text.parse::<i64>().ok().map(|v| filetime_expired(v, now)),
        // OpenLDAP ppolicy: any lock time means locked (a permanent lock is 000001010000Z).
        "pwdaccountlockedtime" => Some(true),
        // 389-DS / Red Hat DS.
        "nsaccountlock" => Some(text.eq_ignore_ascii_case("true")),
        _ => match text.to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" => Some(false),
            "false" | "0" | "no" => Some(true),
            _ => None,
        },
    }
}

/// AD `accountExpires`: 0 and 0x7FFFFFFFFFFFFFFF mean never; otherwise a FILETIME (100 ns
/// units since 1601-01-01 UTC). Expired when that moment is not after `now`.
pub fn filetime_expired(value: i64, now: DateTime<Utc>) -> bool {
    if value <= 0 || value == i64::MAX {
        return false;
    }
    // Seconds between 1601-01-01 and 1970-01-01.
    const EPOCH_DIFF: i64 = 11_644_473_600;
    let secs = value / 10_000_000 - EPOCH_DIFF;
    let nanos = (value % 10_000_000) * 100;
    match Utc.timestamp_opt(secs, nanos as u32).single() {
        Some(at) => at <= now,
        None => false,
    }
}

/// Normalises a phone number to an RFC 3966 global number URI.
///
/// Accepted: an optional `tel:` prefix, then `+`, then digits with the visual separators
/// `-`, `.`, `(`, `)` or spaces (spaces become `-`), 1..15 digits in all (E.164).
/// Local numbers (`03-1234-5678`), letters and parameters (`;ext=`) are rejected: the agent
/// cannot guess a country code, and the target would reject them anyway (behaviour §7.2).
/// `+81-3-1234-5678` → `tel:+81-3-1234-5678`.
pub fn phone_uri(value: &str) -> Result<String, ValueError> {
    let v = value.trim();
    let body = v
        .strip_prefix("tel:")
        .or_else(|| v.strip_prefix("TEL:"))
        .unwrap_or(v);
    let bad = || ValueError::NotAGlobalNumber(value.to_string());
    let Some(rest) = body.strip_prefix('+') else {
        return Err(bad());
    };
    let mut out = String::from("tel:+");
    let mut digits = 0;
    for c in rest.chars() {
        match c {
            '0'..='9' => {
                digits += 1;
                out.push(c);
            }
            '-' | '.' | '(' | ')' => out.push(c),
            ' ' => {
                if !out.ends_with('-') {
                    out.push('-');
                }
            }
            _ => return Err(bad()),
        }
    }
    if !(1..=15).contains(&digits) || !rest.starts_with(|c: char| c.is_ascii_digit()) {
        return Err(bad());
    }
    Ok(out)
}

/// A practical email address check: one `@`, a non-empty local part, a domain with a dot
/// and no empty labels, no whitespace or control characters, at most 254 characters.
pub fn is_email(value: &str) -> bool {
    if value.len() > 254 || value.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return false;
    }
    let Some((local, domain)) = value.split_once('@') else {
        return false;
    };
    !local.is_empty()
        && !domain.contains('@')
        && domain.contains('.')
        && domain.split('.').all(|l| !l.is_empty())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    #[test]
    fn guid_and_sid() {
        let raw = [
            0x33, 0x22, 0x11, 0x00, 0x55, 0x44, 0x77, 0x66, 0x88, 0x99, 0xaa, 0xbb, 0xcc, 0xdd,
            0xee, 0xff,
        ];
        assert_eq!(
            render("objectGUID", &raw).unwrap(),
            "00112233-4455-6677-8899-aabbccddeeff"
        );
        let text = "00112233-4455-6677-8899-AABBCCDDEEFF";
        assert_eq!(
            render("mS-DS-ConsistencyGuid", text.as_bytes()).unwrap(),
            text
        );
        assert!(render("objectGUID", b"short").is_err());
        // S-1-5-21-1-2-3-500
        let mut sid = vec![1u8, 5, 0, 0, 0, 0, 0, 5];
        for sub in [21u32, 1, 2, 3, 500] {
            sid.extend_from_slice(&sub.to_le_bytes());
        }
        assert_eq!(render("objectSid", &sid).unwrap(), "S-1-5-21-1-2-3-500");
        assert_eq!(render("cn", &[0xff, 0x00]).unwrap(), "/wA=");
    }

    #[test]
    fn account_state() {
        let now = Utc.with_ymd_and_hms(2026, 11, 27, 0, 0, 0).unwrap();
        fn v(s: &str) -> [&[u8]; 1] {
            [s.as_bytes()]
        }
        let table: &[(&str, &str, Option<bool>)] = &[
            ("userAccountControl", "512", Some(false)),
            ("userAccountControl", "514", Some(true)),
            ("userAccountControl", "66050", Some(true)),
            ("accountExpires", "0", Some(false)),
            ("accountExpires", "9223372036854775807", Some(false)),
            // 2020-01-01 → expired.
            ("accountExpires", "132223104000000000", Some(true)),
            // 2030-01-01 → not yet.
            ("accountExpires", "135379296000000000", Some(false)),
            ("pwdAccountLockedTime", "000001010000Z", Some(true)),
            ("nsAccountLock", "TRUE", Some(true)),
            ("someFlag", "FALSE", Some(true)),
            ("someFlag", "TRUE", Some(false)),
            ("userAccountControl", "", None),
        ];
        for (attr, value, want) in table {
            assert_eq!(
                account_disabled(attr, &v(value), now),
                *want,
                "{attr}={value}"
            );
        }
        assert_eq!(account_disabled("userAccountControl", &[], now), None);
    }

    #[test]
    fn phones() {
        let ok = [
            ("+81-3-1234-5678", "tel:+81-3-1234-5678"),
            ("tel:+81-3-1234-5678", "tel:+81-3-1234-5678"),
            ("+81 3 1234 5678", "tel:+81-3-1234-5678"),
            ("+1 (555) 010.9999", "tel:+1-(555)-010.9999"),
        ];
        for (input, want) in ok {
            assert_eq!(phone_uri(input).unwrap(), want);
        }
        for bad in [
            "03-1234-5678",
            "+",
            "+81-3-1234-5678;ext=1",
            "+81-ABC",
            "+1234567890123456",
            "+-1",
        ] {
            assert!(phone_uri(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn emails() {
        for ok in ["a@b.jp", "taro.yamada+x@mail.example.jp"] {
            assert!(is_email(ok), "{ok}");
        }
        for bad in ["taro", "a@b", "a@@b.jp", "@b.jp", "a b@c.jp", "a@b..jp"] {
            assert!(!is_email(bad), "{bad}");
        }
    }
}
