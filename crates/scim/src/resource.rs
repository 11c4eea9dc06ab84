//! Resources as JSON objects with schema-aware, case-insensitive attribute access, plus
//! typed views for User and Group that keep unknown extension attributes.

use scim_v2::filter::AttrPath;
use serde_json::{Map, Value};

use crate::schema::{AttrLocation, ResourceSchema};

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
