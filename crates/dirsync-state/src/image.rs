//! The compact text form of a cached directory entry: JSON with UTF-8 values as strings and
//! binary values (objectGUID, objectSid) as `{"b": base64}`. Text keeps the database
//! inspectable with `sqlite3`, and most values are text, so this is about as small as the
//! entry itself.

use std::hash::{Hash, Hasher};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use serde_json::{Map, Value, json};

use dirsync_model::entry::{Entry, EntryBuilder};

/// A hash of the whole entry (DN and every value), stored with its image row: a full run
/// tells an unchanged entry by it without decoding the row. Stable across runs (fixed keys);
/// a change of hasher between versions only makes one full run rewrite every row.
pub fn entry_hash(e: &Entry) -> u64 {
    let mut h = std::hash::DefaultHasher::new();
    e.dn.hash(&mut h);
    // Fed exactly as the `BTreeMap<String, Vec<Vec<u8>>>` the entry used to be (issue #5)
    // hashed itself: map length, then each name and its value list, so the hashes stored by
    // earlier versions still match and the first run after an upgrade sees unchanged
    // entries as unchanged.
    h.write_usize(e.attributes().count());
    for (name, values) in e.attributes() {
        name.hash(&mut h);
        h.write_usize(values.len());
        for v in values {
            v.hash(&mut h);
        }
    }
    h.finish()
}

pub(super) fn encode(entry: &Entry) -> String {
    let attrs: Map<String, Value> = entry
        .attributes()
        .map(|(name, values)| {
            let values = values
                .map(|v| match std::str::from_utf8(v) {
                    Ok(text) => Value::String(text.to_string()),
                    Err(_) => json!({ "b": B64.encode(v) }),
                })
                .collect();
            (name.to_string(), Value::Array(values))
        })
        .collect();
    json!({ "dn": entry.dn, "a": attrs }).to_string()
}

pub(super) fn decode(text: &str) -> Option<Entry> {
    let value: Value = serde_json::from_str(text).ok()?;
    let dn = value.get("dn")?.as_str()?.to_string();
    let mut entry = EntryBuilder::new(dn);
    for (name, values) in value.get("a")?.as_object()? {
        let mut out = Vec::new();
        for v in values.as_array()? {
            out.push(match v {
                Value::String(s) => s.clone().into_bytes(),
                other => B64.decode(other.get("b")?.as_str()?).ok()?,
            });
        }
        entry.extend(name, out);
    }
    Some(entry.build())
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

    /// The hash is the one earlier versions stored (computed over the old map form).
    #[test]
    fn hash_matches_the_map_form() {
        let e = Entry::new("cn=Ä,dc=x")
            .with("cn", "Ä")
            .with("objectGUID", [0xffu8, 0xfe, 0x00])
            .with("member", "cn=a")
            .with("member", "cn=b");
        let mut map: std::collections::BTreeMap<String, Vec<Vec<u8>>> = Default::default();
        for (name, values) in e.attributes() {
            map.insert(name.to_string(), values.map(<[u8]>::to_vec).collect());
        }
        let mut h = std::hash::DefaultHasher::new();
        e.dn.hash(&mut h);
        map.hash(&mut h);
        assert_eq!(entry_hash(&e), h.finish());
        assert_ne!(
            entry_hash(&e),
            entry_hash(&e.clone().with("member", "cn=c"))
        );
    }

    /// Rows written before the entry became one buffer (issue #5) decode to the same entry,
    /// and it encodes back to the same text.
    #[test]
    fn stored_text_is_unchanged() {
        let stored = r#"{"dn":"cn=Ä,dc=x","a":{"cn":["Ä"],"member":["cn=a","cn=b"],"objectguid":[{"b":"//4A"}]}}"#;
        let e = decode(stored).unwrap();
        assert_eq!(e.dn, "cn=Ä,dc=x");
        assert_eq!(e.strs("member"), ["cn=a", "cn=b"]);
        assert_eq!(e.bytes("objectGUID"), [&[0xffu8, 0xfe, 0x00][..]]);
        assert_eq!(encode(&e), stored);
        // An empty value list (never written, but harmless) reads as absent.
        let e = decode(r#"{"dn":"cn=x","a":{"cn":["x"],"mail":[]}}"#).unwrap();
        assert!(!e.has("mail"));
        assert_eq!(e, Entry::new("cn=x").with("cn", "x"));
    }
}
