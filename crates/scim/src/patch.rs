//! The PATCH engine: RFC 7644 §3.5.2 operations applied to a resource, and the diff that
//! produces the operations turning one resource into another.

use scim_v2::filter::{
    AttrExp, AttrPath, CompValue, CompareOp, PatchPath, PatchValuePath, ValFilter,
};
use scim_v2::models::others::{OperationTarget, PatchOp, PatchOperation};
use serde_json::{Map, Value};

use crate::error::ScimError;
use crate::filter::{is_present, matches_element};
use crate::resource::{canonicalize, ensure_schemas, member, stored_key};
use crate::schema::{AttrLocation, AttrType, AttributeDef, Mutability, ResourceSchema, SchemaDef};
use crate::urn;

/// Reads a PATCH request body (RFC 7644 §3.5.2). Errors: `invalidSyntax` for a malformed
/// body or operation, `invalidPath` for a path that does not parse, `noTarget` for a `remove`
/// without a path.
pub fn parse_request(body: &Value) -> Result<PatchOp, ScimError> {
    if !body.is_object() {
        return Err(ScimError::invalid_syntax(
            "the PATCH body must be a JSON object",
        ));
    }
    let schemas: Vec<String> = member(body, "schemas")
        .and_then(Value::as_array)
        .map(|items| {
            items
                .iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default();
    if !schemas
        .iter()
        .any(|s| s.eq_ignore_ascii_case(urn::PATCH_OP))
    {
        return Err(ScimError::invalid_syntax(format!(
            "\"schemas\" must contain {}",
            urn::PATCH_OP
        )));
    }
    let operations = match member(body, "Operations") {
        Some(Value::Array(items)) if !items.is_empty() => items,
        _ => {
            return Err(ScimError::invalid_syntax(
                "\"Operations\" must be an array of one or more operations",
            ));
        }
    };
    let operations = operations
        .iter()
        .enumerate()
        .map(|(i, op)| parse_operation(i, op))
        .collect::<Result<_, _>>()?;
    Ok(PatchOp {
        schemas,
        operations,
    })
}

fn parse_operation(index: usize, op: &Value) -> Result<PatchOperation, ScimError> {
    let at = |what: &str| format!("Operations[{index}]{what}");
    if !op.is_object() {
        return Err(ScimError::invalid_syntax(format!(
            "{} must be an object",
            at("")
        )));
    }
    let kind = member(op, "op")
        .and_then(Value::as_str)
        .ok_or_else(|| ScimError::invalid_syntax(format!("{} is missing", at(".op"))))?;
    let path = match member(op, "path") {
        None | Some(Value::Null) => None,
        // Some clients send an empty path for "the resource itself".
        Some(Value::String(s)) if s.trim().is_empty() => None,
        Some(Value::String(s)) => Some(s.parse::<PatchPath>().map_err(|e| {
            ScimError::invalid_path(format!("{} {s:?} is not a valid path: {e}", at(".path")))
        })?),
        Some(_) => {
            return Err(ScimError::invalid_path(format!(
                "{} must be a string",
                at(".path")
            )));
        }
    };
    let value = member(op, "value").cloned();
    // Operation names are case-insensitive in practice (Entra sends "Replace").
    match kind.to_ascii_lowercase().as_str() {
        "add" | "replace" => {
            let target = match (path, value) {
                (Some(path), Some(value)) => OperationTarget::WithPath {
                    path,
                    value: Some(value),
                },
                (None, Some(Value::Object(value))) => OperationTarget::WithoutPath { value },
                (Some(_), None) | (None, None) => {
                    return Err(ScimError::invalid_syntax(format!(
                        "{} is required",
                        at(".value")
                    )));
                }
                (None, Some(_)) => {
                    return Err(ScimError::invalid_syntax(format!(
                        "{} must be an object when there is no path",
                        at(".value")
                    )));
                }
            };
            Ok(if kind.eq_ignore_ascii_case("add") {
                PatchOperation::Add(target)
            } else {
                PatchOperation::Replace(target)
            })
        }
        "remove" => match path {
            Some(path) => Ok(PatchOperation::Remove { path, value }),
            None => Err(ScimError::no_target(format!(
                "{} remove requires a path",
                at("")
            ))),
        },
        other => Err(ScimError::invalid_syntax(format!(
            "{} {other:?} is not one of add, remove, replace",
            at(".op")
        ))),
    }
}

/// Applies `ops` in order (RFC 7644 §3.5.2). All or nothing: on error `resource` is unchanged.
/// Attribute keys end up in their canonical spelling and `schemas` lists every extension the
/// resource carries.
pub fn apply(
    resource: &mut Value,
    ops: &[PatchOperation],
    schema: &ResourceSchema,
) -> Result<(), ScimError> {
    if !resource.is_object() {
        return Err(ScimError::invalid_value(
            "the resource is not a JSON object",
        ));
    }
    let mut work = resource.clone();
    canonicalize(&mut work, schema);
    let before = work.clone();
    for op in ops {
        apply_operation(&mut work, op, schema)?;
    }
    finish(&before, &mut work, schema)?;
    *resource = work;
    Ok(())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Add,
    Replace,
}

/// What a path names once resolved against the schema.
enum Target<'p> {
    /// A whole extension object, addressed by its bare URN.
    Extension(&'static SchemaDef),
    /// An attribute or sub-attribute, optionally narrowed to the elements a filter selects.
    Attr {
        loc: AttrLocation,
        filter: Option<&'p ValFilter>,
    },
}

fn apply_operation(
    work: &mut Value,
    op: &PatchOperation,
    schema: &ResourceSchema,
) -> Result<(), ScimError> {
    match op {
        PatchOperation::Add(target) => apply_write(work, Kind::Add, target, schema),
        PatchOperation::Replace(target) => apply_write(work, Kind::Replace, target, schema),
        PatchOperation::Remove { path, value } => match target_of(path, schema)? {
            Target::Extension(ext) => remove_extension(work, ext),
            Target::Attr { loc, filter } => remove(work, &loc, filter, value.as_ref()),
        },
    }
}

fn apply_write(
    work: &mut Value,
    kind: Kind,
    target: &OperationTarget,
    schema: &ResourceSchema,
) -> Result<(), ScimError> {
    match target {
        OperationTarget::WithPath { path, value } => {
            let value = value
                .as_ref()
                .ok_or_else(|| ScimError::invalid_syntax(format!("{path}: value is required")))?;
            match target_of(path, schema)? {
                Target::Extension(ext) => write_extension(work, kind, ext, value, schema),
                Target::Attr { loc, filter } => {
                    check_writable(&loc)?;
                    write(work, kind, &loc, filter, value)
                }
            }
        }
        OperationTarget::WithoutPath { value } => {
            for (key, v) in value {
                write_pathless(work, kind, key, v, schema)?;
            }
            Ok(())
        }
    }
}

/// One member of a pathless add/replace value: an attribute, an extension object keyed by
/// its URN, or (as Entra sends) a path such as `name.givenName` or a URN-qualified name.
fn write_pathless(
    work: &mut Value,
    kind: Kind,
    key: &str,
    value: &Value,
    schema: &ResourceSchema,
) -> Result<(), ScimError> {
    if key.eq_ignore_ascii_case("schemas") {
        // `schemas` follows from the attributes present; see `finish`.
        return Ok(());
    }
    if let Some(ext) = schema.extension(key) {
        return write_extension(work, kind, ext, value, schema);
    }
    let path: AttrPath = match key.parse::<PatchPath>() {
        Ok(PatchPath::Attr(path)) => path,
        _ => {
            return Err(ScimError::invalid_path(format!(
                "{key:?} is not an attribute name"
            )));
        }
    };
    let loc = locate(&path, schema)?;
    if is_read_only(&loc) {
        // Clients echo read-only attributes (id, meta) back; accept them while unchanged.
        let current = crate::resource::get(work, &path, schema);
        if current.is_some_and(|c| c == value) {
            return Ok(());
        }
        return Err(ScimError::mutability(format!("{path} is readOnly")));
    }
    write(work, kind, &loc, None, value)
}

/// Add/replace of a whole extension object: each member is written on its own, so members the
/// value does not name are kept (as for any complex attribute, RFC 7644 §3.5.2.3).
fn write_extension(
    work: &mut Value,
    kind: Kind,
    ext: &'static SchemaDef,
    value: &Value,
    schema: &ResourceSchema,
) -> Result<(), ScimError> {
    let Value::Object(members) = value else {
        return Err(ScimError::invalid_value(format!(
            "{}: expected an object",
            ext.id
        )));
    };
    for (name, v) in members {
        if name.eq_ignore_ascii_case("schemas") && names_only(v, ext.id) {
            // Not an attribute of the extension, but clients built on generic resource models
            // (scim2-models) echo the extension's own URN there; it says nothing new.
            continue;
        }
        let path = AttrPath {
            uri: Some(ext.id.to_string()),
            name: name.clone(),
            sub_attr: None,
        };
        write_pathless(work, kind, &path.to_string(), v, schema)?;
    }
    Ok(())
}

/// Whether `v` is a `schemas` array naming only `urn`.
fn names_only(v: &Value, urn: &str) -> bool {
    matches!(v, Value::Array(items)
        if items.iter().all(|i| i.as_str().is_some_and(|s| s.eq_ignore_ascii_case(urn))))
}

fn target_of<'p>(path: &'p PatchPath, schema: &ResourceSchema) -> Result<Target<'p>, ScimError> {
    match path {
        PatchPath::Attr(p) => {
            if let (Some(uri), None) = (&p.uri, &p.sub_attr)
                && let Some(ext) = schema.extension(&format!("{uri}:{}", p.name))
            {
                return Ok(Target::Extension(ext));
            }
            Ok(Target::Attr {
                loc: locate(p, schema)?,
                filter: None,
            })
        }
        PatchPath::Value(PatchValuePath {
            attr,
            filter,
            sub_attr,
        }) => {
            let mut loc = locate(attr, schema)?;
            if loc.sub.is_some() || loc.def.is_some_and(|d| !d.is_multi_complex()) {
                return Err(ScimError::invalid_path(format!(
                    "{path}: a value filter needs a multi-valued complex attribute"
                )));
            }
            if let Some(sub) = sub_attr {
                match loc.def {
                    Some(def) => {
                        let sub_def = def.sub_attribute(sub).ok_or_else(|| {
                            ScimError::invalid_path(format!("{path}: {} has no {sub:?}", def.name))
                        })?;
                        loc.sub = Some(sub_def.name.to_string());
                        loc.sub_def = Some(sub_def);
                    }
                    None => loc.sub = Some(sub.clone()),
                }
            }
            Ok(Target::Attr {
                loc,
                filter: Some(filter),
            })
        }
    }
}

fn locate(path: &AttrPath, schema: &ResourceSchema) -> Result<AttrLocation, ScimError> {
    schema.locate(path).ok_or_else(|| {
        ScimError::invalid_path(format!("{path} is not an attribute of {}", schema.name))
    })
}

fn is_read_only(loc: &AttrLocation) -> bool {
    let ro = |d: Option<&AttributeDef>| d.is_some_and(|d| d.mutability == Mutability::ReadOnly);
    ro(loc.def) || (loc.sub.is_some() && ro(loc.sub_def))
}

/// Explicit paths may not name read-only attributes (RFC 7643 §2.2 `readOnly`).
fn check_writable(loc: &AttrLocation) -> Result<(), ScimError> {
    if is_read_only(loc) {
        return Err(ScimError::mutability(format!(
            "{} is readOnly",
            display_loc(loc)
        )));
    }
    Ok(())
}

fn display_loc(loc: &AttrLocation) -> String {
    match &loc.sub {
        Some(sub) => format!("{}.{sub}", loc.name),
        None => loc.name.clone(),
    }
}

/// The object holding the attribute: the resource or its extension object (created on
/// demand when `create`).
fn container_mut<'a>(
    work: &'a mut Value,
    loc: &AttrLocation,
    create: bool,
) -> Option<&'a mut Map<String, Value>> {
    let root = work.as_object_mut()?;
    let Some(urn) = loc.extension else {
        return Some(root);
    };
    let key = stored_key(root, urn).unwrap_or_else(|| urn.to_string());
    if create && !root.get(&key).is_some_and(Value::is_object) {
        root.insert(key.clone(), Value::Object(Map::new()));
    }
    root.get_mut(&key)?.as_object_mut()
}

/// The key the attribute is (or will be) stored under in its container.
fn attr_key(container: &Map<String, Value>, loc: &AttrLocation) -> String {
    stored_key(container, &loc.name).unwrap_or_else(|| loc.name.clone())
}

fn write(
    work: &mut Value,
    kind: Kind,
    loc: &AttrLocation,
    filter: Option<&ValFilter>,
    value: &Value,
) -> Result<(), ScimError> {
    if value.is_null() {
        // RFC 7643 §2.5: null is "unassigned". Adding nothing changes nothing; replacing with
        // nothing clears the target.
        return match kind {
            Kind::Add => Ok(()),
            Kind::Replace => remove(work, loc, filter, None).or_else(|e| {
                if e.scim_type == Some(crate::ScimType::NoTarget) {
                    Ok(())
                } else {
                    Err(e)
                }
            }),
        };
    }
    let Some(container) = container_mut(work, loc, true) else {
        return Err(ScimError::invalid_value(
            "the resource is not a JSON object",
        ));
    };
    let key = attr_key(container, loc);
    match (filter, &loc.sub) {
        (None, None) => write_attribute(container, &key, kind, loc.def, value),
        (None, Some(sub)) => {
            let sub_value = checked_element(value, loc.sub_def)?;
            write_sub_everywhere(container, &key, loc, sub, sub_value)
        }
        (Some(filter), _) => write_filtered(container, &key, kind, loc, filter, value),
    }
}

/// add/replace of a whole attribute.
fn write_attribute(
    container: &mut Map<String, Value>,
    key: &str,
    kind: Kind,
    def: Option<&AttributeDef>,
    value: &Value,
) -> Result<(), ScimError> {
    let value = checked_value(value, def)?;
    let current = container.get_mut(key).filter(|v| !v.is_null());
    match (def, current) {
        (Some(def), Some(Value::Array(items))) if def.multi_valued && kind == Kind::Add => {
            let Value::Array(new_items) = value else {
                return Ok(());
            };
            merge_elements(items, new_items, def)?;
            Ok(())
        }
        (Some(def), Some(Value::Object(current)))
            if def.ty == AttrType::Complex && !def.multi_valued =>
        {
            // Both add and replace of a complex attribute set the given sub-attributes and keep
            // the others (RFC 7644 §3.5.2.1, §3.5.2.3).
            if let Value::Object(new_members) = value {
                for (k, v) in new_members {
                    current.insert(k, v);
                }
            }
            Ok(())
        }
        (def, current) => {
            if let (Some(def), Some(current)) = (def, &current)
                && def.mutability == Mutability::Immutable
                && **current != value
            {
                return Err(ScimError::mutability(format!("{} is immutable", def.name)));
            }
            if value.as_array().is_some_and(Vec::is_empty) {
                container.shift_remove(key);
            } else {
                container.insert(key.to_string(), value);
            }
            Ok(())
        }
    }
}

/// A sub-attribute path without a filter: on a single complex attribute that one value; on a
/// multi-valued attribute every element.
fn write_sub_everywhere(
    container: &mut Map<String, Value>,
    key: &str,
    loc: &AttrLocation,
    sub: &str,
    sub_value: Value,
) -> Result<(), ScimError> {
    let multi = loc.def.is_some_and(|d| d.multi_valued);
    if !multi {
        let parent = container
            .entry(key.to_string())
            .or_insert_with(|| Value::Object(Map::new()));
        if !parent.is_object() {
            *parent = Value::Object(Map::new());
        }
        return set_sub(parent, sub, loc.sub_def, sub_value);
    }
    let Some(Value::Array(items)) = container.get_mut(key) else {
        return Err(ScimError::no_target(format!("{} has no values", loc.name)));
    };
    if items.is_empty() {
        return Err(ScimError::no_target(format!("{} has no values", loc.name)));
    }
    for item in items.iter_mut() {
        set_sub(item, sub, loc.sub_def, sub_value.clone())?;
    }
    if sub == "primary" && sub_value == Value::Bool(true) && items.len() > 1 {
        return Err(ScimError::invalid_value(format!(
            "{}: only one value may be primary",
            loc.name
        )));
    }
    Ok(())
}

/// Sets one sub-attribute of a complex value, honouring `immutable`.
fn set_sub(
    element: &mut Value,
    sub: &str,
    sub_def: Option<&AttributeDef>,
    value: Value,
) -> Result<(), ScimError> {
    let Some(obj) = element.as_object_mut() else {
        return Err(ScimError::invalid_value(format!(
            "cannot set {sub} on a non-complex value"
        )));
    };
    let key = stored_key(obj, sub).unwrap_or_else(|| sub.to_string());
    if let Some(def) = sub_def
        && def.mutability == Mutability::Immutable
        && obj.get(&key).is_some_and(|c| is_present(c) && *c != value)
    {
        return Err(ScimError::mutability(format!("{} is immutable", def.name)));
    }
    obj.insert(key, value);
    Ok(())
}

/// add/replace through a value filter (`emails[type eq "work"]`, optionally `.value`).
fn write_filtered(
    container: &mut Map<String, Value>,
    key: &str,
    kind: Kind,
    loc: &AttrLocation,
    filter: &ValFilter,
    value: &Value,
) -> Result<(), ScimError> {
    let new_part = match (&loc.sub, loc.def) {
        (Some(_), _) => checked_element(value, loc.sub_def)?,
        (None, Some(def)) => checked_element(value, Some(def))?,
        (None, None) => value.clone(),
    };
    let entry = container
        .entry(key.to_string())
        .or_insert_with(|| Value::Array(Vec::new()));
    if !entry.is_array() {
        // A single complex attribute (or a lone value) seen through a filter.
        *entry = Value::Array(vec![entry.take()]);
    }
    let Value::Array(items) = entry else {
        return Ok(());
    };
    let selected: Vec<usize> = (0..items.len())
        .filter(|&i| matches_element(filter, &items[i], loc.def))
        .collect();
    let mut touched = Vec::new();
    if selected.is_empty() {
        // RFC 7644 §3.5.2.3: a replace whose filter matches nothing fails. An add creates the
        // element the filter describes, which is how Entra adds e.g. a work phone number.
        let created = (kind == Kind::Add)
            .then(|| element_from_filter(filter, loc.def))
            .flatten()
            .ok_or_else(|| {
                ScimError::no_target(format!("no {} value matches [{filter}]", loc.name))
            })?;
        let mut element = Value::Object(created);
        merge_into_element(&mut element, loc, new_part)?;
        items.push(element);
        touched.push(items.len() - 1);
    } else {
        for &i in &selected {
            if kind == Kind::Replace && loc.sub.is_none() {
                items[i] = new_part.clone();
            } else {
                merge_into_element(&mut items[i], loc, new_part.clone())?;
            }
            touched.push(i);
        }
    }
    enforce_single_primary(items, &touched, &loc.name)?;
    if items.is_empty() {
        container.shift_remove(key);
    }
    Ok(())
}

/// Writes the new part into one selected element: the sub-attribute, or the given
/// sub-attributes of a whole element.
fn merge_into_element(
    element: &mut Value,
    loc: &AttrLocation,
    new_part: Value,
) -> Result<(), ScimError> {
    match &loc.sub {
        Some(sub) => set_sub(element, sub, loc.sub_def, new_part),
        None => {
            let Value::Object(members) = new_part else {
                return Err(ScimError::invalid_value(format!(
                    "{}: expected an object",
                    loc.name
                )));
            };
            for (k, v) in members {
                let sub_def = loc.def.and_then(|d| d.sub_attribute(&k));
                set_sub(element, &k, sub_def, v)?;
            }
            Ok(())
        }
    }
}

/// The element `a eq "x" and b eq "y"` describes, keyed by canonical sub-attribute names.
fn element_from_filter(
    filter: &ValFilter,
    parent: Option<&AttributeDef>,
) -> Option<Map<String, Value>> {
    match filter {
        ValFilter::Attr(AttrExp::Comparison(path, CompareOp::Eq, value))
            if path.sub_attr.is_none() =>
        {
            let name = match parent {
                Some(p) => p.sub_attribute(&path.name)?.name.to_string(),
                None => path.name.clone(),
            };
            let mut map = Map::new();
            map.insert(name, comp_value_to_json(value));
            Some(map)
        }
        ValFilter::And(items) => {
            let mut map = Map::new();
            for item in items {
                map.extend(element_from_filter(item, parent)?);
            }
            Some(map)
        }
        _ => None,
    }
}

fn comp_value_to_json(value: &CompValue) -> Value {
    match value {
        CompValue::False => Value::Bool(false),
        CompValue::True => Value::Bool(true),
        CompValue::Null => Value::Null,
        CompValue::Number(n) => Value::Number(n.clone()),
        CompValue::Str(s) => Value::String(s.clone()),
    }
}

fn json_to_comp_value(value: &Value) -> Option<CompValue> {
    Some(match value {
        Value::Bool(true) => CompValue::True,
        Value::Bool(false) => CompValue::False,
        Value::Null => CompValue::Null,
        Value::Number(n) => CompValue::Number(n.clone()),
        Value::String(s) => CompValue::Str(s.clone()),
        Value::Array(_) | Value::Object(_) => return None,
    })
}

/// Multi-valued add: new elements are appended, and one equal to an existing element (same
/// `value` and compatible `type`) updates that element instead of duplicating it.
fn merge_elements(
    items: &mut Vec<Value>,
    new_items: Vec<Value>,
    def: &AttributeDef,
) -> Result<(), ScimError> {
    let mut touched = Vec::new();
    for new_item in new_items {
        match items.iter().position(|e| same_element(e, &new_item, def)) {
            Some(i) => {
                if let (Value::Object(existing), Value::Object(members)) = (&mut items[i], new_item)
                {
                    existing.extend(members);
                }
                touched.push(i);
            }
            None => {
                items.push(new_item);
                touched.push(items.len() - 1);
            }
        }
    }
    enforce_single_primary(items, &touched, def.name)
}

/// Whether two elements of a multi-valued attribute denote the same value.
fn same_element(a: &Value, b: &Value, def: &AttributeDef) -> bool {
    let value_def = def.sub_attribute("value");
    match (member(a, "value"), member(b, "value")) {
        (Some(x), Some(y)) => {
            let case_exact = value_def.is_none_or(|d| d.case_exact);
            let same_value = match (x, y) {
                (Value::String(x), Value::String(y)) if !case_exact => {
                    x.to_lowercase() == y.to_lowercase()
                }
                _ => x == y,
            };
            let type_of = |e: &Value| {
                member(e, "type")
                    .and_then(Value::as_str)
                    .map(str::to_lowercase)
            };
            let compatible_type = match (type_of(a), type_of(b)) {
                (Some(x), Some(y)) => x == y,
                _ => true,
            };
            same_value && compatible_type
        }
        _ => a == b,
    }
}

/// RFC 7643 §2.4: at most one `primary: true`. A value just set primary wins; the others are
/// set to false.
fn enforce_single_primary(
    items: &mut [Value],
    touched: &[usize],
    name: &str,
) -> Result<(), ScimError> {
    let is_primary = |v: &Value| member(v, "primary").and_then(Value::as_bool) == Some(true);
    let winners: Vec<usize> = touched
        .iter()
        .copied()
        .filter(|&i| is_primary(&items[i]))
        .collect();
    match winners.as_slice() {
        [] => Ok(()),
        [winner] => {
            for (i, item) in items.iter_mut().enumerate() {
                if i != *winner && is_primary(item) {
                    set_member(item, "primary", Value::Bool(false));
                }
            }
            Ok(())
        }
        _ => Err(ScimError::invalid_value(format!(
            "{name}: only one value may be primary"
        ))),
    }
}

fn set_member(obj: &mut Value, name: &str, value: Value) {
    if let Some(map) = obj.as_object_mut() {
        let key = stored_key(map, name).unwrap_or_else(|| name.to_string());
        map.insert(key, value);
    }
}

/// The `remove` operation at `loc`, optionally narrowed by a value filter or listed values.
fn remove(
    work: &mut Value,
    loc: &AttrLocation,
    filter: Option<&ValFilter>,
    value: Option<&Value>,
) -> Result<(), ScimError> {
    check_writable(loc)?;
    if let Some(sub_def) = loc.sub_def.filter(|_| loc.sub.is_some())
        && sub_def.mutability == Mutability::Immutable
    {
        return Err(ScimError::mutability(format!(
            "{} is immutable",
            display_loc(loc)
        )));
    }
    let Some(container) = container_mut(work, loc, false) else {
        return match filter {
            Some(filter) => Err(ScimError::no_target(format!(
                "no {} value matches [{filter}]",
                loc.name
            ))),
            None => Ok(()),
        };
    };
    let key = attr_key(container, loc);
    match (filter, &loc.sub) {
        (None, None) => remove_attribute(container, &key, loc, value),
        (None, Some(sub)) => {
            remove_sub_attribute(container, &key, sub);
            Ok(())
        }
        (Some(filter), sub) => remove_matching(container, &key, loc, filter, sub.as_deref()),
    }
}

/// Removes a whole attribute, or (multi-valued, with a value) the elements listed.
fn remove_attribute(
    container: &mut Map<String, Value>,
    key: &str,
    loc: &AttrLocation,
    value: Option<&Value>,
) -> Result<(), ScimError> {
    let multi = loc.def.is_none_or(|d| d.multi_valued);
    match value.filter(|v| !v.is_null()) {
        // Entra's form: `remove` on `members` with the members to drop as the value.
        Some(value) if multi => remove_listed_elements(container, key, loc, value),
        _ => {
            if let Some(def) = loc.def
                && def.mutability == Mutability::Immutable
                && container.get(key).is_some_and(is_present)
            {
                return Err(ScimError::mutability(format!("{} is immutable", def.name)));
            }
            container.shift_remove(key);
            Ok(())
        }
    }
}

/// Removes sub-attribute `sub` from the attribute (from every element when multi-valued).
fn remove_sub_attribute(container: &mut Map<String, Value>, key: &str, sub: &str) {
    if let Some(current) = container.get_mut(key) {
        match &mut *current {
            Value::Array(items) => items.iter_mut().for_each(|item| remove_member(item, sub)),
            single => remove_member(single, sub),
        }
        if !is_assigned(current) {
            container.shift_remove(key);
        }
    }
}

/// Removes the elements matching `filter` (or their sub-attribute `sub`); no match is an error.
fn remove_matching(
    container: &mut Map<String, Value>,
    key: &str,
    loc: &AttrLocation,
    filter: &ValFilter,
    sub: Option<&str>,
) -> Result<(), ScimError> {
    let no_match = || ScimError::no_target(format!("no {} value matches [{filter}]", loc.name));
    let Some(current) = container.get_mut(key) else {
        return Err(no_match());
    };
    if !current.is_array() {
        *current = Value::Array(vec![current.take()]);
    }
    let Value::Array(items) = current else {
        return Err(no_match());
    };
    let before = items.len();
    let mut matched = false;
    match sub {
        None => {
            items.retain(|e| !matches_element(filter, e, loc.def));
            matched = items.len() != before;
        }
        Some(sub) => {
            for item in items
                .iter_mut()
                .filter(|e| matches_element(filter, e, loc.def))
            {
                remove_member(item, sub);
                matched = true;
            }
        }
    }
    if !matched {
        return Err(no_match());
    }
    if !is_assigned(current) {
        container.shift_remove(key);
    }
    Ok(())
}

/// Removes the elements equal to the listed ones (the Azure-style remove with a value).
fn remove_listed_elements(
    container: &mut Map<String, Value>,
    key: &str,
    loc: &AttrLocation,
    listed: &Value,
) -> Result<(), ScimError> {
    let Some(def) = loc.def else {
        container.shift_remove(key);
        return Ok(());
    };
    let Value::Array(listed) = checked_value(listed, Some(def))? else {
        return Ok(());
    };
    if let Some(Value::Array(items)) = container.get_mut(key) {
        items.retain(|e| !listed.iter().any(|l| same_element(e, l, def)));
        if items.is_empty() {
            container.shift_remove(key);
        }
    }
    Ok(())
}

fn remove_member(obj: &mut Value, name: &str) {
    if let Some(map) = obj.as_object_mut()
        && let Some(key) = stored_key(map, name)
    {
        map.shift_remove(&key);
    }
}

fn remove_extension(work: &mut Value, ext: &'static SchemaDef) -> Result<(), ScimError> {
    let Some(root) = work.as_object_mut() else {
        return Ok(());
    };
    let Some(key) = stored_key(root, ext.id) else {
        return Ok(());
    };
    let read_only_present = ext.attributes.iter().any(|a| {
        a.mutability == Mutability::ReadOnly
            && root
                .get(&key)
                .and_then(|o| member(o, a.name))
                .is_some_and(is_present)
    });
    if read_only_present {
        return Err(ScimError::mutability(format!(
            "{} holds readOnly attributes",
            ext.id
        )));
    }
    root.shift_remove(&key);
    Ok(())
}

/// Final consistency: empty extension objects dropped, `schemas` matching the extensions
/// present, required attributes still there.
fn finish(before: &Value, work: &mut Value, schema: &ResourceSchema) -> Result<(), ScimError> {
    let Some(map) = work.as_object_mut() else {
        return Ok(());
    };
    for ext in schema.extensions {
        // The resource is canonical, so the extension object sits under its exact URN.
        if map.get(ext.id).is_some_and(|v| !is_assigned(v)) {
            map.shift_remove(ext.id);
        }
        let removed = member(before, ext.id).is_some() && !map.contains_key(ext.id);
        if removed && let Some(Value::Array(schemas)) = map.get_mut("schemas") {
            schemas.retain(|s| !s.as_str().is_some_and(|s| s.eq_ignore_ascii_case(ext.id)));
        }
    }
    ensure_schemas(map, schema);
    for def in schema.core.attributes.iter().filter(|d| d.required) {
        let had = member(before, def.name).is_some_and(is_present);
        if had && !map.get(def.name).is_some_and(is_present) {
            return Err(ScimError::invalid_value(format!(
                "{} is required",
                def.name
            )));
        }
    }
    Ok(())
}

/// Checks a whole attribute value against its definition and returns it with canonical
/// sub-attribute keys. A single element given for a multi-valued attribute is taken as a
/// one-element list.
fn checked_value(value: &Value, def: Option<&AttributeDef>) -> Result<Value, ScimError> {
    let Some(def) = def else {
        return Ok(value.clone());
    };
    if !def.multi_valued {
        return checked_element(value, Some(def));
    }
    let items = match value {
        Value::Null => return Ok(Value::Null),
        Value::Array(items) => items
            .iter()
            .map(|v| checked_element(v, Some(def)))
            .collect::<Result<Vec<_>, _>>()?,
        single => vec![checked_element(single, Some(def))?],
    };
    let primaries = items
        .iter()
        .filter(|v| member(v, "primary").and_then(Value::as_bool) == Some(true))
        .count();
    if primaries > 1 {
        return Err(ScimError::invalid_value(format!(
            "{}: only one value may be primary",
            def.name
        )));
    }
    Ok(Value::Array(
        items.into_iter().filter(|v| !v.is_null()).collect(),
    ))
}

/// Checks one value (an element, for multi-valued attributes) against its type.
fn checked_element(value: &Value, def: Option<&AttributeDef>) -> Result<Value, ScimError> {
    let Some(def) = def else {
        return Ok(value.clone());
    };
    let mismatch = || {
        ScimError::invalid_value(format!(
            "{}: expected a {} value, got {value}",
            def.name,
            def.ty.as_str()
        ))
    };
    match (def.ty, value) {
        (_, Value::Null) => Ok(Value::Null),
        (AttrType::Complex, Value::Object(members)) => {
            let mut out = Map::with_capacity(members.len());
            for (k, v) in members {
                let sub = def.sub_attribute(k).ok_or_else(|| {
                    ScimError::invalid_value(format!("{} has no sub-attribute {k:?}", def.name))
                })?;
                let v = checked_element(v, Some(sub))?;
                if !v.is_null() {
                    out.insert(sub.name.to_string(), v);
                }
            }
            Ok(Value::Object(out))
        }
        // Entra sends a manager (and some clients a member) as its bare id.
        (AttrType::Complex, Value::String(s)) if def.sub_attribute("value").is_some() => {
            let mut out = Map::new();
            out.insert("value".into(), Value::String(s.clone()));
            Ok(Value::Object(out))
        }
        (AttrType::String | AttrType::Reference | AttrType::Binary, Value::String(_)) => {
            Ok(value.clone())
        }
        (AttrType::DateTime, Value::String(s)) => chrono::DateTime::parse_from_rfc3339(s)
            .map(|_| value.clone())
            .map_err(|_| {
                ScimError::invalid_value(format!("{}: {s:?} is not an RFC 3339 dateTime", def.name))
            }),
        (AttrType::Boolean, Value::Bool(_)) => Ok(value.clone()),
        // Entra sends booleans as "True"/"False".
        (AttrType::Boolean, Value::String(s)) if s.eq_ignore_ascii_case("true") => {
            Ok(Value::Bool(true))
        }
        (AttrType::Boolean, Value::String(s)) if s.eq_ignore_ascii_case("false") => {
            Ok(Value::Bool(false))
        }
        (AttrType::Integer, Value::Number(n)) if n.is_i64() || n.is_u64() => Ok(value.clone()),
        (AttrType::Decimal, Value::Number(_)) => Ok(value.clone()),
        _ => Err(mismatch()),
    }
}

/// Attributes `diff` never touches: assigned by the service, or never read back.
fn is_diffable(def: &AttributeDef) -> bool {
    def.mutability != Mutability::ReadOnly && def.mutability != Mutability::WriteOnly
}

/// The operations that turn `old` into `new` for every attribute `new` has, plus removal of
/// those it lacks (`id`, `meta`, `schemas`, `password` and read-only attributes aside).
/// `members` changes are per-member add/remove so that large groups are never rewritten.
/// Keys the schema does not define are not diffed (an open extension's members are).
pub fn diff(old: &Value, new: &Value, schema: &ResourceSchema) -> Vec<PatchOperation> {
    let (mut old, mut new) = (old.clone(), new.clone());
    canonicalize(&mut old, schema);
    canonicalize(&mut new, schema);
    let mut ops = Vec::new();
    for def in schema
        .core
        .attributes
        .iter()
        .chain(crate::schema::COMMON_ATTRIBUTES)
    {
        if is_diffable(def) {
            let path = AttrPath::with_name(def.name);
            diff_attribute(
                member(&old, def.name),
                member(&new, def.name),
                &path,
                Some(def),
                &mut ops,
            );
        }
    }
    for ext in schema.extensions {
        let (old_ext, new_ext) = (member(&old, ext.id), member(&new, ext.id));
        let mut names: Vec<String> = ext
            .attributes
            .iter()
            .filter(|d| is_diffable(d))
            .map(|d| d.name.to_string())
            .collect();
        if ext.accepts_undefined_attributes() {
            for obj in [old_ext, new_ext]
                .into_iter()
                .flatten()
                .filter_map(Value::as_object)
            {
                for k in obj.keys() {
                    if ext.attribute(k).is_none() && !names.contains(k) {
                        names.push(k.clone());
                    }
                }
            }
        }
        for name in names {
            let path = AttrPath {
                uri: Some(ext.id.to_string()),
                name: name.clone(),
                sub_attr: None,
            };
            diff_attribute(
                old_ext.and_then(|o| member(o, &name)),
                new_ext.and_then(|o| member(o, &name)),
                &path,
                ext.attribute(&name),
                &mut ops,
            );
        }
    }
    ops
}

fn diff_attribute(
    old: Option<&Value>,
    new: Option<&Value>,
    path: &AttrPath,
    def: Option<&AttributeDef>,
    ops: &mut Vec<PatchOperation>,
) {
    let old = old.filter(|v| is_assigned(v));
    let new = new.filter(|v| is_assigned(v));
    let attr_path = || PatchPath::Attr(path.clone());
    match (old, new) {
        (None, None) => {}
        (Some(_), None) => ops.push(PatchOperation::Remove {
            path: attr_path(),
            value: None,
        }),
        (old, Some(new)) if old == Some(new) => {}
        (old, Some(new)) => match def {
            Some(def) if is_member_list(def) => diff_members(old, new, path, ops),
            Some(def) if def.ty == AttrType::Complex && !def.multi_valued => {
                // Replace merges sub-attributes, so dropped ones need their own remove.
                if let (Some(Value::Object(old_obj)), Value::Object(new_obj)) = (old, new) {
                    for k in old_obj
                        .keys()
                        .filter(|k| !new_obj.get(*k).is_some_and(is_assigned))
                    {
                        if old_obj.get(k).is_some_and(is_assigned) {
                            let sub = AttrPath {
                                sub_attr: Some(k.clone()),
                                ..path.clone()
                            };
                            ops.push(PatchOperation::Remove {
                                path: PatchPath::Attr(sub),
                                value: None,
                            });
                        }
                    }
                }
                ops.push(replace(attr_path(), new.clone()));
            }
            _ => ops.push(replace(attr_path(), new.clone())),
        },
    }
}

fn replace(path: PatchPath, value: Value) -> PatchOperation {
    PatchOperation::Replace(OperationTarget::WithPath {
        path,
        value: Some(value),
    })
}

/// Null, `[]` and `{}` are all "unassigned" (RFC 7643 §2.5).
fn is_assigned(value: &Value) -> bool {
    match value {
        Value::Null => false,
        Value::Array(items) => !items.is_empty(),
        Value::Object(map) => !map.is_empty(),
        _ => true,
    }
}

/// Multi-valued attributes whose elements are references identified by an immutable `value`
/// (`members`): these are diffed element by element.
fn is_member_list(def: &AttributeDef) -> bool {
    def.is_multi_complex()
        && def
            .sub_attribute("value")
            .is_some_and(|v| v.mutability == Mutability::Immutable)
}

fn diff_members(old: Option<&Value>, new: &Value, path: &AttrPath, ops: &mut Vec<PatchOperation>) {
    let elements = |v: Option<&Value>| -> Vec<Value> {
        v.and_then(Value::as_array).cloned().unwrap_or_default()
    };
    let (old_items, new_items) = (elements(old), elements(Some(new)));
    let key_of = |e: &Value| member(e, "value").cloned();
    let value_path = |v: &Value| -> Option<PatchPath> {
        Some(PatchPath::Value(PatchValuePath {
            attr: path.clone(),
            filter: ValFilter::Attr(AttrExp::Comparison(
                AttrPath::with_name("value"),
                CompareOp::Eq,
                json_to_comp_value(v)?,
            )),
            sub_attr: None,
        }))
    };
    let mut added = Vec::new();
    for old_item in &old_items {
        let Some(v) = key_of(old_item) else { continue };
        if !new_items.iter().any(|n| key_of(n).as_ref() == Some(&v))
            && let Some(p) = value_path(&v)
        {
            ops.push(PatchOperation::Remove {
                path: p,
                value: None,
            });
        }
    }
    for new_item in &new_items {
        let Some(v) = key_of(new_item) else { continue };
        match old_items.iter().find(|o| key_of(o).as_ref() == Some(&v)) {
            None => added.push(new_item.clone()),
            Some(old_item) if old_item != new_item => {
                if let Some(p) = value_path(&v) {
                    ops.push(replace(p, new_item.clone()));
                }
            }
            Some(_) => {}
        }
    }
    if !added.is_empty() {
        ops.push(PatchOperation::Add(OperationTarget::WithPath {
            path: PatchPath::Attr(path.clone()),
            value: Some(Value::Array(added)),
        }));
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;
    use crate::ScimType;
    use crate::schema::{group, user};
    use serde_json::json;

    fn run(resource: &Value, operations: Value) -> Result<Value, ScimError> {
        let body = json!({"schemas": [urn::PATCH_OP], "Operations": operations});
        let request = parse_request(&body)?;
        let mut out = resource.clone();
        apply(&mut out, &request.operations, user())?;
        Ok(out)
    }

    fn base() -> Value {
        json!({
            "schemas": [urn::USER],
            "id": "u1",
            "userName": "alice",
            "emails": [{"value": "a@x", "type": "work", "primary": true}],
            "meta": {"resourceType": "User"}
        })
    }

    fn scim_type(r: Result<Value, ScimError>) -> Option<ScimType> {
        r.unwrap_err().scim_type
    }

    #[test]
    fn parse_request_errors() {
        let no_schema = json!({"Operations": [{"op": "add", "value": {}}]});
        assert_eq!(
            parse_request(&no_schema).unwrap_err().scim_type,
            Some(ScimType::InvalidSyntax)
        );
        let bad_op = json!({"schemas": [urn::PATCH_OP], "Operations": [{"op": "move"}]});
        assert_eq!(
            parse_request(&bad_op).unwrap_err().scim_type,
            Some(ScimType::InvalidSyntax)
        );
        let bad_path = json!({"schemas": [urn::PATCH_OP], "Operations": [{"op": "add", "path": "a..b", "value": 1}]});
        assert_eq!(
            parse_request(&bad_path).unwrap_err().scim_type,
            Some(ScimType::InvalidPath)
        );
        let remove_no_path = json!({"schemas": [urn::PATCH_OP], "Operations": [{"op": "remove"}]});
        assert_eq!(
            parse_request(&remove_no_path).unwrap_err().scim_type,
            Some(ScimType::NoTarget)
        );
        let empty = json!({"schemas": [urn::PATCH_OP], "Operations": []});
        assert_eq!(
            parse_request(&empty).unwrap_err().scim_type,
            Some(ScimType::InvalidSyntax)
        );
        let capitalised = json!({"schemas": [urn::PATCH_OP], "Operations": [{"op": "REPLACE", "path": "title", "value": "x"}]});
        assert!(matches!(
            parse_request(&capitalised).unwrap().operations[0],
            PatchOperation::Replace(_)
        ));
    }

    #[test]
    fn case_insensitive_names_stored_canonically() {
        let out = run(
            &base(),
            json!([{"op": "add", "path": "NAME.GIVENNAME", "value": "Alice"}]),
        )
        .unwrap();
        assert_eq!(out["name"], json!({"givenName": "Alice"}));
        let out = run(
            &out,
            json!([{"op": "replace", "value": {"DisplayName": "A", "name.familyName": "L"}}]),
        )
        .unwrap();
        assert_eq!(out["displayName"], "A");
        assert_eq!(
            out["name"],
            json!({"givenName": "Alice", "familyName": "L"})
        );
    }

    #[test]
    fn extension_paths_and_schemas() {
        let out = run(
            &base(),
            json!([{"op": "add", "path": "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department", "value": "Ops"}]),
        )
        .unwrap();
        assert_eq!(out[urn::ENTERPRISE_USER]["department"], "Ops");
        assert_eq!(out["schemas"], json!([urn::USER, urn::ENTERPRISE_USER]));
        let out = run(
            &out,
            json!([{"op": "remove", "path": urn::ENTERPRISE_USER}]),
        )
        .unwrap();
        assert!(out.get(urn::ENTERPRISE_USER).is_none());
        assert_eq!(out["schemas"], json!([urn::USER]));
        let out = run(
            &base(),
            json!([{"op": "add", "value": {urn::IIJ_USER: {"downstreamId": "d1"}}}]),
        )
        .unwrap();
        assert_eq!(out[urn::IIJ_USER]["downstreamId"], "d1");
        assert_eq!(out["schemas"], json!([urn::USER, urn::IIJ_USER]));
        // Removing the last member of an extension drops the object and its URN.
        let out = run(
            &out,
            json!([{"op": "remove", "path": format!("{}:downstreamId", urn::IIJ_USER)}]),
        )
        .unwrap();
        assert_eq!(out["schemas"], json!([urn::USER]));
    }

    #[test]
    fn extension_value_may_echo_its_own_schemas() {
        // scim2-tester (scim2-models) sends the extension object with its own `schemas`.
        let out = run(
            &base(),
            json!([{"op": "add", "path": urn::ENTERPRISE_USER,
                    "value": {"schemas": [urn::ENTERPRISE_USER], "department": "Ops"}}]),
        )
        .unwrap();
        assert_eq!(out[urn::ENTERPRISE_USER], json!({"department": "Ops"}));
        assert_eq!(out["schemas"], json!([urn::USER, urn::ENTERPRISE_USER]));
        // Any other `schemas` inside an extension is still not an attribute.
        let bad = run(
            &base(),
            json!([{"op": "add", "path": urn::ENTERPRISE_USER,
                    "value": {"schemas": [urn::USER], "department": "Ops"}}]),
        );
        assert_eq!(scim_type(bad), Some(ScimType::InvalidPath));
    }

    #[test]
    fn open_extension_accepts_undefined_members() {
        let path = format!("{}:anything", urn::OIDFJ_USER);
        let out = run(
            &base(),
            json!([{"op": "add", "path": path, "value": "kept"}]),
        )
        .unwrap();
        assert_eq!(out[urn::OIDFJ_USER]["anything"], "kept");
        assert_eq!(
            scim_type(run(
                &base(),
                json!([{"op": "add", "path": "nope", "value": 1}])
            )),
            Some(ScimType::InvalidPath)
        );
    }

    #[test]
    fn mutability() {
        for op in [
            json!({"op": "replace", "path": "id", "value": "u2"}),
            json!({"op": "remove", "path": "meta"}),
            json!({"op": "add", "path": "groups", "value": [{"value": "g"}]}),
            json!({"op": "replace", "value": {"id": "u2"}}),
            json!({"op": "add", "path": format!("{}:state", urn::IIJ_USER), "value": "disabled"}),
        ] {
            assert_eq!(
                scim_type(run(&base(), json!([op]))),
                Some(ScimType::Mutability)
            );
        }
        // Clients echo id/meta back unchanged; that is accepted.
        let out = run(
            &base(),
            json!([{"op": "replace", "value": {"id": "u1", "active": false}}]),
        )
        .unwrap();
        assert_eq!(out["active"], false);
        // Removing a required attribute is refused.
        assert_eq!(
            scim_type(run(&base(), json!([{"op": "remove", "path": "userName"}]))),
            Some(ScimType::InvalidValue)
        );
    }

    #[test]
    fn immutable_member_value() {
        let g = json!({"schemas": [urn::GROUP], "displayName": "g", "members": [{"value": "a"}]});
        let body = json!({"schemas": [urn::PATCH_OP], "Operations": [{"op": "replace", "path": "members[value eq \"a\"].value", "value": "b"}]});
        let request = parse_request(&body).unwrap();
        let mut out = g.clone();
        let err = apply(&mut out, &request.operations, group()).unwrap_err();
        assert_eq!(err.scim_type, Some(ScimType::Mutability));
        assert_eq!(out, g);
    }

    #[test]
    fn type_checks() {
        for op in [
            json!({"op": "replace", "path": "active", "value": 3}),
            json!({"op": "replace", "path": "userName", "value": {"a": 1}}),
            json!({"op": "add", "path": "emails", "value": [{"value": "b@x", "bogus": 1}]}),
            json!({"op": "add", "path": "meta.lastModified", "value": "x"}),
            json!({"op": "add", "path": "emails", "value": [{"value": "b@x", "primary": true}, {"value": "c@x", "primary": true}]}),
        ] {
            let r = run(&base(), json!([op.clone()]));
            assert!(
                matches!(
                    r.as_ref().map_err(|e| e.scim_type),
                    Err(Some(ScimType::InvalidValue | ScimType::Mutability))
                ),
                "{op}: {r:?}"
            );
        }
        // Entra's boolean strings.
        let out = run(
            &base(),
            json!([{"op": "Replace", "path": "active", "value": "False"}]),
        )
        .unwrap();
        assert_eq!(out["active"], false);
        // Entra's bare manager id.
        let path = format!("{}:manager", urn::ENTERPRISE_USER);
        let out = run(&base(), json!([{"op": "add", "path": path, "value": "m1"}])).unwrap();
        assert_eq!(out[urn::ENTERPRISE_USER]["manager"], json!({"value": "m1"}));
    }

    #[test]
    fn primary_is_unique() {
        let out = run(&base(), json!([{"op": "add", "path": "emails", "value": [{"value": "b@x", "type": "home", "primary": true}]}])).unwrap();
        assert_eq!(
            out["emails"],
            json!([
                {"value": "a@x", "type": "work", "primary": false},
                {"value": "b@x", "type": "home", "primary": true}
            ])
        );
        let out = run(
            &out,
            json!([{"op": "replace", "path": "emails[type eq \"work\"].primary", "value": true}]),
        )
        .unwrap();
        assert_eq!(out["emails"][0]["primary"], true);
        assert_eq!(out["emails"][1]["primary"], false);
    }

    #[test]
    fn add_through_unmatched_filter_creates_the_element() {
        let out = run(&base(), json!([{"op": "add", "path": "phoneNumbers[type eq \"work\"].value", "value": "tel:+81-3-1234-5678"}])).unwrap();
        assert_eq!(
            out["phoneNumbers"],
            json!([{"type": "work", "value": "tel:+81-3-1234-5678"}])
        );
        let out = run(&out, json!([{"op": "add", "path": "phoneNumbers[type eq \"work\"].value", "value": "tel:+81-3-0000-0000"}])).unwrap();
        assert_eq!(
            out["phoneNumbers"],
            json!([{"type": "work", "value": "tel:+81-3-0000-0000"}])
        );
    }

    #[test]
    fn remove_with_unmatched_filter_is_no_target() {
        let r = run(
            &base(),
            json!([{"op": "remove", "path": "emails[type eq \"home\"]"}]),
        );
        assert_eq!(scim_type(r), Some(ScimType::NoTarget));
    }

    #[test]
    fn replace_null_clears() {
        let out = run(
            &base(),
            json!([{"op": "replace", "path": "emails", "value": null}]),
        )
        .unwrap();
        assert!(out.get("emails").is_none());
        let out = run(
            &base(),
            json!([{"op": "replace", "path": "emails", "value": []}]),
        )
        .unwrap();
        assert!(out.get("emails").is_none());
    }

    #[test]
    fn apply_is_atomic() {
        let original = base();
        let mut resource = original.clone();
        let ops = parse_request(&json!({"schemas": [urn::PATCH_OP], "Operations": [
            {"op": "replace", "path": "title", "value": "Boss"},
            {"op": "replace", "path": "id", "value": "nope"}
        ]}))
        .unwrap();
        assert!(apply(&mut resource, &ops.operations, user()).is_err());
        assert_eq!(resource, original);
    }

    #[test]
    fn diff_members_per_member() {
        let old = json!({"displayName": "g", "members": [{"value": "a"}, {"value": "b"}]});
        let new = json!({"displayName": "g", "members": [{"value": "b"}, {"value": "c"}]});
        let ops = diff(&old, &new, group());
        let wire = serde_json::to_value(&ops).unwrap();
        assert_eq!(
            wire,
            json!([
                {"op": "remove", "path": "members[value eq \"a\"]"},
                {"op": "add", "path": "members", "value": [{"value": "c"}]}
            ])
        );
        let mut patched = old.clone();
        apply(&mut patched, &ops, group()).unwrap();
        assert_eq!(patched["members"], new["members"]);
    }

    #[test]
    fn diff_complex_drops_removed_sub_attributes() {
        let old = json!({"userName": "a", "name": {"givenName": "A", "familyName": "B"}});
        let new = json!({"userName": "a", "name": {"givenName": "C"}});
        let ops = diff(&old, &new, user());
        let mut patched = old.clone();
        apply(&mut patched, &ops, user()).unwrap();
        assert_eq!(patched["name"], new["name"]);
        assert!(diff(&new, &new, user()).is_empty());
    }
}
