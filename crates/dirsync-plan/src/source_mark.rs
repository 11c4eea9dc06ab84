//! The ownership mark (behaviour §4.3 [better]): on a target that advertises dirsync's source
//! extension (`idservice` does), every group this agent writes carries the directory of the
//! instance that manages it and the DN it comes from. Another instance that meets the group
//! (two domains, one displayName) can then name the other object exactly instead of only its
//! target id. The mark is data on the target; it does not decide ownership on its own
//! (ownership stays: the instance's state plus externalId = a directory anchor it reads).

use scim::urn::DIRSYNC_SOURCE;
use serde_json::{Value, json};

/// Where a target object says it comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceMark {
    /// The base DN of the instance that wrote the mark (empty when it had none).
    pub directory: String,
    pub dn: String,
}

/// Adds the mark to a resource about to be written (and its URN to `schemas`).
pub fn stamp(resource: &mut Value, directory: &str, dn: &str) {
    let Some(obj) = resource.as_object_mut() else {
        return;
    };
    let mut mark = serde_json::Map::new();
    if !directory.is_empty() {
        mark.insert("directory".into(), json!(directory));
    }
    mark.insert("dn".into(), json!(dn));
    obj.insert(DIRSYNC_SOURCE.into(), Value::Object(mark));
    match obj.get_mut("schemas").and_then(Value::as_array_mut) {
        Some(schemas) => {
            if !schemas.iter().any(|s| s.as_str() == Some(DIRSYNC_SOURCE)) {
                schemas.push(json!(DIRSYNC_SOURCE));
            }
        }
        None => {
            obj.insert("schemas".into(), json!([DIRSYNC_SOURCE]));
        }
    }
}

/// The mark a target resource carries, if any (keys are matched case-insensitively, as SCIM
/// attribute names are).
pub fn read(resource: &Value) -> Option<SourceMark> {
    let mark = scim::resource::member(resource, DIRSYNC_SOURCE)?;
    let field = |name: &str| {
        scim::resource::member(mark, name)
            .and_then(Value::as_str)
            .map(str::to_string)
    };
    Some(SourceMark {
        // default: a mark without `directory` names only the DN.
        directory: field("directory").unwrap_or_default(),
        dn: field("dn").filter(|dn| !dn.is_empty())?,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    #[test]
    fn stamp_then_read_round_trips_and_keeps_schemas_unique() {
        let mut g = json!({"schemas": [scim::urn::GROUP], "displayName": "Staff"});
        stamp(&mut g, "DC=a,DC=test", "CN=Staff,DC=a,DC=test");
        stamp(&mut g, "DC=a,DC=test", "CN=Staff,OU=x,DC=a,DC=test");
        assert_eq!(g["schemas"], json!([scim::urn::GROUP, DIRSYNC_SOURCE]));
        assert_eq!(
            read(&g),
            Some(SourceMark {
                directory: "DC=a,DC=test".into(),
                dn: "CN=Staff,OU=x,DC=a,DC=test".into()
            })
        );
    }

    #[test]
    fn no_mark_or_empty_dn_reads_as_none() {
        assert_eq!(read(&json!({"displayName": "x"})), None);
        assert_eq!(read(&json!({DIRSYNC_SOURCE: {"dn": ""}})), None);
        let upper = DIRSYNC_SOURCE.to_uppercase();
        let m = read(&json!({upper: {"DN": "cn=a"}})).unwrap();
        assert_eq!(m.dn, "cn=a");
        assert_eq!(m.directory, "");
    }
}
