//! Tenant rules of behaviour §7.2 that depend only on the request body: email and phone formats,
//! the issuer rule, and the limits on emails, phone numbers and IMs. Uniqueness and the
//! registered-domain rule need the database and live in `users`.

use scim::ScimError;
use serde_json::Value;

/// At most 5 emails, of which at most one is primary (behaviour §7.1: 1 primary + 4 others).
pub const MAX_EMAILS: usize = 5;
pub const MAX_PHONES: usize = 10;
pub const MAX_IMS: usize = 10;

/// Longest identifier (userName, externalId, displayName, downstreamId), in characters.
pub const MAX_NAME_CHARS: usize = 256;
/// Longest other string attribute, in characters.
pub const MAX_STRING_CHARS: usize = 2048;

/// The exact messages of behaviour §7.2.
pub const MSG_EXTERNAL_ID_TAKEN: &str = "externalId has already been taken";
/// A write that would give a user another user's immutable id (the downstream account key).
pub const MSG_IMMUTABLE_ID_TAKEN: &str =
    "downstreamId (the immutable id of linked accounts) belongs to another user";
pub const MSG_USER_NAME_TAKEN: &str = "userName has already been taken";
pub const MSG_DISPLAY_NAME_TAKEN: &str = "displayName has already been taken";
pub const MSG_ORGANIZATION_NOT_FOUND: &str = "organization is not found.";

/// A pragmatic email address check: `local@domain` with a dotted domain of DNS labels and a
/// local part without spaces, quotes or a second `@`.
pub fn is_email(s: &str) -> bool {
    let Some((local, domain)) = s.split_once('@') else {
        return false;
    };
    if local.is_empty() || local.len() > 64 || domain.len() > 253 {
        return false;
    }
    let local_ok = local
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "!#$%&'*+/=?^_`{|}~.-".contains(c) || !c.is_ascii())
        && !local.starts_with('.')
        && !local.ends_with('.')
        && !local.contains("..");
    let labels: Vec<&str> = domain.split('.').collect();
    let domain_ok = labels.len() >= 2
        && labels.iter().all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || !c.is_ascii())
        });
    local_ok && domain_ok
}

/// RFC 3966 telephone number check. Accepted: a global number `tel:+81-3-1234-5678` (the
/// `tel:` prefix may be left out: `+81312345678`), or a local number with a `phone-context`
/// parameter (`tel:03-1234-5678;phone-context=+81`). Rejected: a local number without
/// context (`03-1234-5678`), since it does not say which country it belongs to.
pub fn is_rfc3966(s: &str) -> bool {
    let body = match s.get(..4) {
        Some(p) if p.eq_ignore_ascii_case("tel:") => &s[4..],
        _ => s,
    };
    let mut parts = body.split(';');
    let number = parts.next().unwrap_or_default();
    let params: Vec<&str> = parts.collect();
    let param_ok = |p: &&str| {
        let (name, value) = p.split_once('=').unwrap_or((p, ""));
        !name.is_empty()
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
            && value.chars().all(|c| !c.is_whitespace() && c != ';')
    };
    if !params.iter().all(param_ok) {
        return false;
    }
    let visual = |c: char| matches!(c, '-' | '.' | '(' | ')');
    if let Some(digits) = number.strip_prefix('+') {
        digits.chars().any(|c| c.is_ascii_digit())
            && digits.chars().all(|c| c.is_ascii_digit() || visual(c))
    } else {
        let has_context = params.iter().any(|p| {
            p.split_once('=')
                .is_some_and(|(n, v)| n.eq_ignore_ascii_case("phone-context") && !v.is_empty())
        });
        has_context
            && number
                .chars()
                .any(|c| c.is_ascii_hexdigit() || c == '*' || c == '#')
            && number
                .chars()
                .all(|c| c.is_ascii_hexdigit() || c == '*' || c == '#' || visual(c))
    }
}

fn array<'a>(user: &'a Value, name: &str) -> Result<&'a [Value], ScimError> {
    match user.get(name) {
        None | Some(Value::Null) => Ok(&[]),
        Some(Value::Array(a)) => Ok(a),
        Some(_) => Err(ScimError::invalid_value(format!("{name} must be an array"))),
    }
}

/// Bounds every string of a resource (at any depth): identifiers to [`MAX_NAME_CHARS`], the
/// rest to [`MAX_STRING_CHARS`]. A client cannot store (and make every reader of the list
/// fetch) megabytes in one attribute; the body size limit alone would allow that.
pub fn check_lengths(resource: &Value) -> Result<(), ScimError> {
    fn walk(v: &Value, path: &str) -> Result<(), ScimError> {
        match v {
            Value::String(s) => {
                let leaf = path.rsplit(['.', ':']).next().unwrap_or(path);
                let max = if ["userName", "externalId", "displayName", "downstreamId"]
                    .iter()
                    .any(|n| n.eq_ignore_ascii_case(leaf))
                {
                    MAX_NAME_CHARS
                } else {
                    MAX_STRING_CHARS
                };
                if s.chars().count() > max {
                    return Err(ScimError::invalid_value(format!(
                        "{path} is longer than {max} characters"
                    )));
                }
                Ok(())
            }
            Value::Array(a) => a.iter().try_for_each(|x| walk(x, path)),
            Value::Object(m) => m.iter().try_for_each(|(k, x)| {
                let sub = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                walk(x, &sub)
            }),
            _ => Ok(()),
        }
    }
    walk(resource, "")
}

/// Checks the body-only rules on a canonicalised User resource.
pub fn check_user(user: &Value) -> Result<(), ScimError> {
    let emails = array(user, "emails")?;
    if emails.len() > MAX_EMAILS {
        return Err(ScimError::invalid_value(format!(
            "at most {MAX_EMAILS} emails are allowed (1 primary and 4 others), got {}",
            emails.len()
        )));
    }
    let primaries = emails
        .iter()
        .filter(|e| e.get("primary") == Some(&Value::Bool(true)))
        .count();
    if primaries > 1 {
        return Err(ScimError::invalid_value("at most one email can be primary"));
    }
    for e in emails {
        match e.get("value") {
            Some(Value::String(v)) if is_email(v) => {}
            Some(Value::String(v)) => {
                return Err(ScimError::invalid_value(format!(
                    "\"{v}\" is not an email address"
                )));
            }
            _ => return Err(ScimError::invalid_value("every email needs a string value")),
        }
    }
    let phones = array(user, "phoneNumbers")?;
    if phones.len() > MAX_PHONES {
        return Err(ScimError::invalid_value(format!(
            "at most {MAX_PHONES} phoneNumbers are allowed, got {}",
            phones.len()
        )));
    }
    for p in phones {
        match p.get("value") {
            Some(Value::String(v)) if is_rfc3966(v) => {}
            Some(Value::String(v)) => {
                return Err(ScimError::invalid_value(format!(
                    "\"{v}\" is not an RFC 3966 telephone number (e.g. tel:+81-3-1234-5678)"
                )));
            }
            _ => {
                return Err(ScimError::invalid_value(
                    "every phone number needs a string value",
                ));
            }
        }
    }
    let ims = array(user, "ims")?;
    if ims.len() > MAX_IMS {
        return Err(ScimError::invalid_value(format!(
            "at most {MAX_IMS} ims are allowed, got {}",
            ims.len()
        )));
    }
    if let Some(ext) = user.get(scim::urn::IIJ_USER) {
        let non_empty = |v: Option<&Value>| matches!(v, Some(Value::String(s)) if !s.is_empty());
        let claims = ext.get("idTokenClaims");
        let has_issuer = non_empty(claims.and_then(|c| c.get("issuer")));
        let has_subject = non_empty(claims.and_then(|c| c.get("subject")));
        let has_external_user_name = non_empty(ext.get("externalUserName"));
        if (has_subject || has_external_user_name) && !has_issuer {
            return Err(ScimError::invalid_value(
                "idTokenClaims.issuer is required when externalUserName or idTokenClaims.subject is set",
            ));
        }
    }
    Ok(())
}

/// The domain part of a userName (lower-cased), if it has the `local@domain` form.
pub fn user_name_domain(user_name: &str) -> Option<String> {
    let (local, domain) = user_name.rsplit_once('@')?;
    if local.is_empty() || domain.is_empty() {
        return None;
    }
    Some(domain.to_lowercase())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn every_string_attribute_is_bounded() {
        let ok = serde_json::json!({"userName": "a".repeat(256), "title": "t".repeat(2048),
            "emails": [{"value": "a@b.example", "display": "d".repeat(2048)}]});
        assert!(check_lengths(&ok).is_ok());
        let long_name = serde_json::json!({"userName": "a".repeat(257)});
        let e = check_lengths(&long_name).unwrap_err();
        assert!(
            e.detail.contains("userName is longer than 256"),
            "{}",
            e.detail
        );
        let long_nested = serde_json::json!({"emails": [{"display": "d".repeat(2049)}]});
        let e = check_lengths(&long_nested).unwrap_err();
        assert!(e.detail.contains("emails.display"), "{}", e.detail);
        let ext = serde_json::json!({scim::urn::IIJ_USER: {"downstreamId": "x".repeat(300)}});
        assert!(
            check_lengths(&ext)
                .unwrap_err()
                .detail
                .contains("downstreamId")
        );
    }

    #[test]
    fn emails() {
        assert!(is_email("taro@example.jp"));
        assert!(is_email("a.b+c@sub.example.co.jp"));
        assert!(!is_email("taro"));
        assert!(!is_email("taro@localhost"));
        assert!(!is_email("ta ro@example.jp"));
        assert!(!is_email("a@b@example.jp"));
        assert!(!is_email("@example.jp"));
    }

    #[test]
    fn phones() {
        assert!(is_rfc3966("tel:+81-3-1234-5678"));
        assert!(is_rfc3966("+81312345678"));
        assert!(is_rfc3966("tel:+1-201-555-0123;ext=42"));
        assert!(is_rfc3966("tel:03-1234-5678;phone-context=+81"));
        assert!(!is_rfc3966("03-1234-5678"));
        assert!(!is_rfc3966("tel:+"));
        assert!(!is_rfc3966("+81 3 1234 5678"));
        assert!(!is_rfc3966("phone"));
    }
}
