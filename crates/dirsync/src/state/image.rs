//! The compact text form of a cached directory entry: JSON with UTF-8 values as strings and
//! binary values (objectGUID, objectSid) as `{"b": base64}`. Text keeps the database
//! inspectable with `sqlite3`, and most values are text, so this is about as small as the
//! entry itself.

use std::collections::BTreeMap;
use std::hash::{Hash, Hasher};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use serde_json::{Map, Value, json};

use crate::source::Entry;

/// A hash of the whole entry (DN and every value), stored with its image row: a full run
/// tells an unchanged entry by it without decoding the row. Stable across runs (fixed keys);
/// a change of hasher between versions only makes one full run rewrite every row.
pub fn entry_hash(e: &Entry) -> u64 {
    let mut h = std::hash::DefaultHasher::new();
    e.dn.hash(&mut h);
    e.attrs.hash(&mut h);
    h.finish()
}

pub(super) fn encode(entry: &Entry) -> String {
    let attrs: Map<String, Value> = entry
        .attrs
        .iter()
        .map(|(name, values)| {
            let values = values
                .iter()
                .map(|v| match std::str::from_utf8(v) {
                    Ok(text) => Value::String(text.to_string()),
                    Err(_) => json!({ "b": B64.encode(v) }),
                })
                .collect();
            (name.clone(), Value::Array(values))
        })
        .collect();
    json!({ "dn": entry.dn, "a": attrs }).to_string()
}

pub(super) fn decode(text: &str) -> Option<Entry> {
    let value: Value = serde_json::from_str(text).ok()?;
    let dn = value.get("dn")?.as_str()?.to_string();
    let mut attrs = BTreeMap::new();
    for (name, values) in value.get("a")?.as_object()? {
        let mut out = Vec::new();
        for v in values.as_array()? {
            out.push(match v {
                Value::String(s) => s.clone().into_bytes(),
                other => B64.decode(other.get("b")?.as_str()?).ok()?,
            });
        }
        attrs.insert(name.clone(), out);
    }
    Some(Entry { dn, attrs })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    #[test]
    fn binary_and_text_values_round_trip() {
        let e = Entry::new("cn=Ä,dc=x")
            .with("cn", "Ä")
            .with("objectGUID", [0xffu8, 0xfe, 0x00])
            .with("member", "cn=a")
            .with("member", "cn=b");
        let text = encode(&e);
        assert!(text.contains("\"cn\":[\"Ä\"]"), "{text}");
        assert_eq!(decode(&text), Some(e));
        assert_eq!(decode("{\"dn\":1}"), None);
    }
}
