//! Resources as JSON objects with schema-aware, case-insensitive attribute access, plus
//! typed views for User and Group that keep unknown extension attributes.

use scim_v2::filter::AttrPath;
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
    let mut canonical = Map::with_capacity(map.len());
    for (key, mut value) in std::mem::take(map) {
        let name = if let Some(ext) = schema.extension(&key) {
            canonicalize_members(&mut value, ext.attributes);
            ext.id.to_string()
        } else if let Some(def) = schema
            .core
            .attribute(&key)
            .or_else(|| common_attribute(&key))
        {
            canonicalize_sub_attributes(&mut value, def);
            def.name.to_string()
        } else {
            key
        };
        // Two spellings of one attribute: the one already under the canonical key wins.
        if !canonical.contains_key(&name) {
            canonical.insert(name, value);
        }
    }
    *map = canonical;
    ensure_schemas(map, schema);
}

/// Canonical keys for the members of an extension object.
fn canonicalize_members(value: &mut Value, attributes: &'static [AttributeDef]) {
    let Some(map) = value.as_object_mut() else {
        return;
    };
    let mut canonical = Map::with_capacity(map.len());
    for (key, mut member) in std::mem::take(map) {
        let name = match attributes
            .iter()
            .find(|a| a.name.eq_ignore_ascii_case(&key))
        {
            Some(def) => {
                canonicalize_sub_attributes(&mut member, def);
                def.name.to_string()
            }
            None => key,
        };
        if !canonical.contains_key(&name) {
            canonical.insert(name, member);
        }
    }
    *map = canonical;
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
