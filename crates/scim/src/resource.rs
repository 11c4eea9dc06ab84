//! Resources as JSON objects with schema-aware, case-insensitive attribute access, plus
//! typed views for User and Group that keep unknown extension attributes.

use scim_v2::filter::AttrPath;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::schema::{AttrLocation, AttributeDef, ResourceSchema, common_attribute};

/// The member `name` of a JSON object; exact spelling first, then case-insensitively, because
/// RFC 7643 §2.1 makes attribute names case-insensitive but stored keys are canonical.
pub fn member<'a>(obj: &'a Value, name: &str) -> Option<&'a Value> {
    let map = obj.as_object()?;
    map.get(name).or_else(|| {
        map.iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    })
}

/// The key under which `name` is stored in `map`, whatever its case.
pub(crate) fn stored_key(map: &Map<String, Value>, name: &str) -> Option<String> {
    if map.contains_key(name) {
        return Some(name.to_string());
    }
    map.keys().find(|k| k.eq_ignore_ascii_case(name)).cloned()
}

/// The object holding the located attribute: the resource itself, or its extension object.
fn container<'a>(resource: &'a Value, loc: &AttrLocation) -> Option<&'a Value> {
    match loc.extension {
        None => Some(resource),
        Some(urn) => member(resource, urn),
    }
}

/// The whole value of the located attribute (ignoring any sub-attribute).
pub(crate) fn attribute_value<'a>(resource: &'a Value, loc: &AttrLocation) -> Option<&'a Value> {
    member(container(resource, loc)?, &loc.name)
}

/// The values of a multi-valued attribute, or a single value seen as a one-element list, so
/// that callers treat both alike.
pub(crate) fn elements(value: &Value) -> &[Value] {
    match value {
        Value::Array(items) => items,
        single => std::slice::from_ref(single),
    }
}

/// The value a path names. For a sub-attribute of a multi-valued attribute
/// (`emails.value`) that is the one from the `primary` element, else the first element that has
/// it: the value a client means when it asks for "the" email.
pub fn get<'a>(resource: &'a Value, path: &AttrPath, schema: &ResourceSchema) -> Option<&'a Value> {
    let loc = schema.locate(path)?;
    let value = attribute_value(resource, &loc)?;
    let Some(sub) = &loc.sub else {
        return Some(value);
    };
    match value {
        Value::Array(items) => {
            let is_primary =
                |e: &&Value| member(e, "primary").and_then(Value::as_bool) == Some(true);
            let primary = items.iter().find(is_primary).and_then(|e| member(e, sub));
            primary.or_else(|| items.iter().find_map(|e| member(e, sub)))
        }
        single => member(single, sub),
    }
}

/// Renames attribute keys to their schema spelling (top level, sub-attributes, extension
/// objects and their members) and lists every extension object present in `schemas`, so that
/// stored resources compare and index consistently. Unknown keys and extensions are kept as
/// they are.
pub fn canonicalize(resource: &mut Value, schema: &ResourceSchema) {
    let Some(map) = resource.as_object_mut() else {
        return;
    };
    rename_keys(map, |key, value| {
        if let Some(ext) = schema.extension(&key) {
            canonicalize_members(value, ext.attributes);
            ext.id.to_string()
        } else if let Some(def) = schema
            .core
            .attribute(&key)
            .or_else(|| common_attribute(&key))
        {
            canonicalize_sub_attributes(value, def);
            def.name.to_string()
        } else {
            key
        }
    });
    ensure_schemas(map, schema);
}

/// Rebuilds `map` with each key replaced by what `rename` makes of it (which may also
/// canonicalize the value). Two spellings of one attribute: the first one wins.
fn rename_keys(map: &mut Map<String, Value>, mut rename: impl FnMut(String, &mut Value) -> String) {
    let mut canonical = Map::with_capacity(map.len());
    for (key, mut value) in std::mem::take(map) {
        let name = rename(key, &mut value);
        if !canonical.contains_key(&name) {
            canonical.insert(name, value);
        }
    }
    *map = canonical;
}

/// Canonical keys for the members of an extension object.
fn canonicalize_members(value: &mut Value, attributes: &'static [AttributeDef]) {
    let Some(map) = value.as_object_mut() else {
        return;
    };
    rename_keys(map, |key, member| {
        match attributes
            .iter()
            .find(|a| a.name.eq_ignore_ascii_case(&key))
        {
            Some(def) => {
                canonicalize_sub_attributes(member, def);
                def.name.to_string()
            }
            None => key,
        }
    });
}

/// Canonical keys for the sub-attributes of a complex value or of each element.
pub(crate) fn canonicalize_sub_attributes(value: &mut Value, def: &AttributeDef) {
    if def.sub_attributes.is_empty() {
        return;
    }
    match value {
        Value::Array(items) => {
            for item in items {
                canonicalize_members(item, def.sub_attributes);
            }
        }
        other => canonicalize_members(other, def.sub_attributes),
    }
}

/// Makes `schemas` list the core schema and every extension whose object is present.
pub(crate) fn ensure_schemas(map: &mut Map<String, Value>, schema: &ResourceSchema) {
    let present: Vec<&'static str> = schema
        .schemas()
        .filter(|s| s.id == schema.core.id || map.contains_key(s.id))
        .map(|s| s.id)
        .collect();
    let schemas = map
        .entry("schemas")
        .or_insert_with(|| Value::Array(Vec::new()));
    if !schemas.is_array() {
        *schemas = Value::Array(Vec::new());
    }
    let Value::Array(listed) = schemas else {
        return;
    };
    for id in present {
        let already = listed
            .iter()
            .any(|v| v.as_str().is_some_and(|s| s.eq_ignore_ascii_case(id)));
        if !already {
            if id == schema.core.id {
                listed.insert(0, Value::String(id.to_string()));
            } else {
                listed.push(Value::String(id.to_string()));
            }
        }
    }
}

/// `meta` (RFC 7643 §3.1). Times are kept as sent so that a round trip is byte-exact.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Meta {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resource_type: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_modified: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

/// `name` (RFC 7643 §4.1.1); also the shape of the IIJ `localNames`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Name {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub formatted: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub family_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub given_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub middle_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub honorific_prefix: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub honorific_suffix: Option<String>,
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

/// One value of a multi-valued attribute such as `emails` (RFC 7643 §2.4).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MultiValue {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub display: Option<String>,
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    pub type_: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub primary: Option<bool>,
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

/// A group member (RFC 7643 §4.2), also the shape of a user's `groups` entries.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Member {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub display: Option<String>,
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    pub type_: Option<String>,
    #[serde(rename = "$ref", skip_serializing_if = "Option::is_none")]
    pub ref_: Option<String>,
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

/// The enterprise extension's `manager` (RFC 7643 §4.3).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Manager {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    #[serde(rename = "$ref", skip_serializing_if = "Option::is_none")]
    pub ref_: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

/// `urn:ietf:params:scim:schemas:extension:enterprise:2.0:User` (RFC 7643 §4.3).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EnterpriseUser {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub employee_number: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cost_center: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub organization: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub division: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub department: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub manager: Option<Manager>,
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

/// The identity service's `idTokenClaims`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct IdTokenClaims {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub issuer: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

/// `urn:iij:params:scim:schemas:extension:enterprisejp:2.0:User`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IijUser {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub downstream_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub external_user_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub local_names: Option<Name>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id_token_claims: Option<IdTokenClaims>,
    /// `active`, `disabled` or `pendingDeletion`; set by the service.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pending_deletion_since: Option<String>,
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

/// A typed view of a User. Anything not modelled (addresses, the OIDF-J extension, unknown
/// extensions) stays in `other`, so JSON → `User` → JSON keeps it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct User {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub schemas: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub external_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<Name>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nick_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub profile_url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_type: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub preferred_language: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub locale: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timezone: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub active: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub emails: Option<Vec<MultiValue>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub phone_numbers: Option<Vec<MultiValue>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ims: Option<Vec<MultiValue>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub photos: Option<Vec<MultiValue>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub entitlements: Option<Vec<MultiValue>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub roles: Option<Vec<MultiValue>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub x509_certificates: Option<Vec<MultiValue>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub groups: Option<Vec<Member>>,
    #[serde(
        rename = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User",
        skip_serializing_if = "Option::is_none"
    )]
    pub enterprise: Option<EnterpriseUser>,
    #[serde(
        rename = "urn:iij:params:scim:schemas:extension:enterprisejp:2.0:User",
        skip_serializing_if = "Option::is_none"
    )]
    pub iij: Option<IijUser>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub meta: Option<Meta>,
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

/// `urn:iij:params:scim:schemas:extension:enterprisejp:2.0:Group`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IijGroup {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub group_type: Option<String>,
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

/// A typed view of a Group; unknown attributes stay in `other`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Group {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub schemas: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub external_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub members: Option<Vec<Member>>,
    #[serde(
        rename = "urn:iij:params:scim:schemas:extension:enterprisejp:2.0:Group",
        skip_serializing_if = "Option::is_none"
    )]
    pub iij: Option<IijGroup>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub meta: Option<Meta>,
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;
    use crate::schema::{group, user};
    use crate::urn;
    use serde_json::json;

    fn path(s: &str) -> AttrPath {
        match s.parse::<scim_v2::filter::PatchPath>().unwrap() {
            scim_v2::filter::PatchPath::Attr(p) => p,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn extension_keys_match_urns() {
        let u = User {
            enterprise: Some(EnterpriseUser::default()),
            iij: Some(IijUser::default()),
            ..User::default()
        };
        let v = serde_json::to_value(&u).unwrap();
        assert!(v.get(urn::ENTERPRISE_USER).is_some());
        assert!(v.get(urn::IIJ_USER).is_some());
        let g = serde_json::to_value(Group {
            iij: Some(IijGroup::default()),
            ..Group::default()
        })
        .unwrap();
        assert!(g.get(urn::IIJ_GROUP).is_some());
    }

    #[test]
    fn user_round_trip_keeps_unknown_attributes() {
        let original = json!({
            "schemas": [urn::USER, urn::ENTERPRISE_USER, urn::IIJ_USER, urn::OIDFJ_USER],
            "id": "u1",
            "externalId": "e1",
            "userName": "alice@example.jp",
            "name": {"familyName": "Yamada", "givenName": "Hanako", "x-extra": 1},
            "active": true,
            "emails": [{"value": "a@example.jp", "type": "work", "primary": true}],
            "addresses": [{"locality": "Tokyo"}],
            "groups": [{"value": "g1", "$ref": "../Groups/g1", "display": "G"}],
            urn::ENTERPRISE_USER: {"department": "Ops", "manager": {"value": "m1", "displayName": "Boss"}},
            urn::IIJ_USER: {
                "downstreamId": "d1",
                "localNames": {"familyName": "ヤマダ"},
                "idTokenClaims": {"issuer": "https://op", "subject": "s"},
                "state": "active"
            },
            urn::OIDFJ_USER: {"anything": "kept"},
            "urn:example:other:2.0:User": {"x": [1, 2]},
            "meta": {"resourceType": "User", "version": "W/\"1\""}
        });
        let typed: User = serde_json::from_value(original.clone()).unwrap();
        assert_eq!(
            typed.name.as_ref().unwrap().family_name.as_deref(),
            Some("Yamada")
        );
        assert_eq!(
            typed.iij.as_ref().unwrap().downstream_id.as_deref(),
            Some("d1")
        );
        assert_eq!(
            typed.groups.as_ref().unwrap()[0].ref_.as_deref(),
            Some("../Groups/g1")
        );
        assert!(typed.other.contains_key(urn::OIDFJ_USER));
        let back = serde_json::to_value(&typed).unwrap();
        let mut a = original.as_object().unwrap().clone();
        let mut b = back.as_object().unwrap().clone();
        a.sort_keys();
        b.sort_keys();
        assert_eq!(Value::Object(a), Value::Object(b));
    }

    #[test]
    fn group_round_trip() {
        let original = json!({
            "schemas": [urn::GROUP, urn::IIJ_GROUP],
            "id": "g1",
            "displayName": "Sales",
            "members": [{"value": "u1", "$ref": "../Users/u1", "type": "User", "display": "A"}],
            urn::IIJ_GROUP: {"description": "d", "email": "sales@example.jp", "groupType": "security"},
            "custom": true
        });
        let typed: Group = serde_json::from_value(original.clone()).unwrap();
        assert_eq!(
            typed.members.as_ref().unwrap()[0].type_.as_deref(),
            Some("User")
        );
        assert_eq!(
            typed.iij.as_ref().unwrap().group_type.as_deref(),
            Some("security")
        );
        let back = serde_json::to_value(&typed).unwrap();
        let mut a = original.as_object().unwrap().clone();
        let mut b = back.as_object().unwrap().clone();
        a.sort_keys();
        b.sort_keys();
        assert_eq!(Value::Object(a), Value::Object(b));
    }

    #[test]
    fn canonicalize_renames_and_lists_extensions() {
        let mut v = json!({
            "USERNAME": "a",
            "Name": {"GIVENNAME": "A"},
            "EMAILS": [{"VALUE": "a@x", "Type": "work"}],
            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:user": {"DEPARTMENT": "Ops"},
            "Custom": 1
        });
        canonicalize(&mut v, user());
        assert_eq!(
            v,
            json!({
                "userName": "a",
                "name": {"givenName": "A"},
                "emails": [{"value": "a@x", "type": "work"}],
                urn::ENTERPRISE_USER: {"department": "Ops"},
                "Custom": 1,
                "schemas": [urn::USER, urn::ENTERPRISE_USER]
            })
        );
        let mut g = json!({"schemas": [urn::GROUP], "DisplayName": "g"});
        canonicalize(&mut g, group());
        assert_eq!(g, json!({"schemas": [urn::GROUP], "displayName": "g"}));
    }

    #[test]
    fn get_by_path() {
        let v = json!({
            "userName": "a",
            "name": {"givenName": "A"},
            "emails": [{"value": "w@x", "type": "work"}, {"value": "h@x", "primary": true}],
            urn::ENTERPRISE_USER: {"department": "Ops"}
        });
        assert_eq!(get(&v, &path("username"), user()), Some(&json!("a")));
        assert_eq!(get(&v, &path("name.givenName"), user()), Some(&json!("A")));
        assert_eq!(
            get(&v, &path("emails.value"), user()),
            Some(&json!("h@x")),
            "primary wins"
        );
        assert_eq!(
            get(
                &v,
                &path("urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department"),
                user()
            ),
            Some(&json!("Ops"))
        );
        assert_eq!(get(&v, &path("title"), user()), None);
    }
}
