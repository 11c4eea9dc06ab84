//! `attributes` / `excludedAttributes` projection (RFC 7644 §3.4.2.5, §3.9).

use scim_v2::filter::{AttrPath, PatchPath};
use serde_json::{Map, Value};

use crate::error::ScimError;
use crate::schema::{AttributeDef, ResourceSchema, Returned, common_attribute};

/// Which attributes a response carries. Built once per request, applied to every resource.
#[derive(Debug, Clone, PartialEq)]
pub struct Projection {
    mode: Mode,
}

#[derive(Debug, Clone, PartialEq)]
enum Mode {
    /// Neither parameter: the `returned: default` (and `always`) attributes.
    Default,
    /// `attributes=`: only these, plus `returned: always`.
    Include(Vec<AttrPath>),
    /// `excludedAttributes=`: the default set minus these (never the `always` ones).
    Exclude(Vec<AttrPath>),
}

/// One name of the list, resolved against a resource type. `name: None` selects a whole
/// extension (`attributes=urn:...:enterprise:2.0:User`).
struct Selector {
    extension: Option<String>,
    name: Option<String>,
    sub: Option<String>,
}

impl Selector {
    fn selects(&self, extension: Option<&str>, name: &str) -> bool {
        let same_container = match (&self.extension, extension) {
            (None, None) => true,
            (Some(a), Some(b)) => a.eq_ignore_ascii_case(b),
            _ => false,
        };
        same_container
            && self
                .name
                .as_deref()
                .is_none_or(|n| n.eq_ignore_ascii_case(name))
    }
}

impl Projection {
    /// Reads the two query parameters (or SearchRequest members). Both at once is an error
    /// (RFC 7644 §3.9 makes them mutually exclusive); so is a name that is not an attribute
    /// path. Names the schema does not know are accepted and select nothing.
    pub fn parse(
        attributes: Option<&str>,
        excluded: Option<&str>,
    ) -> Result<Projection, ScimError> {
        let attributes = parse_names(attributes, "attributes")?;
        let excluded = parse_names(excluded, "excludedAttributes")?;
        let mode = match (attributes, excluded) {
            (Some(_), Some(_)) => {
                return Err(ScimError::invalid_value(
                    "attributes and excludedAttributes are mutually exclusive",
                ));
            }
            (Some(names), None) => Mode::Include(names),
            (None, Some(names)) => Mode::Exclude(names),
            (None, None) => Mode::Default,
        };
        Ok(Projection { mode })
    }

    /// The default projection (no parameters).
    pub fn all() -> Projection {
        Projection {
            mode: Mode::Default,
        }
    }

    /// The projected copy of `resource`.
    pub fn apply(&self, resource: &Value, schema: &ResourceSchema) -> Value {
        let Some(map) = resource.as_object() else {
            return resource.clone();
        };
        let selectors = self.selectors(schema);
        let mut out = Map::new();
        for (key, value) in map {
            if let Some(ext) = schema.extension(key) {
                let Some(members) = value.as_object() else {
                    continue;
                };
                let mut projected = Map::new();
                for (name, member) in members {
                    let def = ext.attribute(name);
                    if let Some(v) = self.project(Some(ext.id), name, def, member, &selectors) {
                        projected.insert(name.clone(), v);
                    }
                }
                if !projected.is_empty() {
                    out.insert(key.clone(), Value::Object(projected));
                }
            } else {
                let def = schema.core.attribute(key).or_else(|| common_attribute(key));
                if let Some(v) = self.project(None, key, def, value, &selectors) {
                    out.insert(key.clone(), v);
                }
            }
        }
        Value::Object(out)
    }

    fn selectors(&self, schema: &ResourceSchema) -> Vec<Selector> {
        let paths = match &self.mode {
            Mode::Default => return Vec::new(),
            Mode::Include(paths) | Mode::Exclude(paths) => paths,
        };
        paths
            .iter()
            .filter_map(|path| selector(path, schema))
            .collect()
    }

    /// One attribute (`extension` names its container) after projection, or `None` to omit.
    fn project(
        &self,
        extension: Option<&str>,
        name: &str,
        def: Option<&AttributeDef>,
        value: &Value,
        selectors: &[Selector],
    ) -> Option<Value> {
        let returned = def.map_or(Returned::Default, |d| d.returned);
        match returned {
            Returned::Never => return None,
            Returned::Always => return Some(value.clone()),
            Returned::Default | Returned::Request => {}
        }
        let mine: Vec<&Selector> = selectors
            .iter()
            .filter(|s| s.selects(extension, name))
            .collect();
        let whole = mine.iter().any(|s| s.sub.is_none());
        let subs: Vec<&str> = mine.iter().filter_map(|s| s.sub.as_deref()).collect();
        let returnable = |sub: Option<&AttributeDef>| {
            sub.is_none_or(|d| !matches!(d.returned, Returned::Never | Returned::Request))
        };
        let projected = match &self.mode {
            Mode::Default if returned == Returned::Default => {
                filter_sub_attributes(value, def, |_, d| returnable(d))
            }
            Mode::Default => return None,
            Mode::Include(_) if whole => filter_sub_attributes(value, def, |_, d| {
                d.is_none_or(|d| d.returned != Returned::Never)
            }),
            Mode::Include(_) if !subs.is_empty() => filter_sub_attributes(value, def, |k, d| {
                d.is_some_and(|d| d.returned == Returned::Always)
                    || subs.iter().any(|s| s.eq_ignore_ascii_case(k))
            }),
            Mode::Include(_) => return None,
            Mode::Exclude(_) if whole || returned == Returned::Request => return None,
            Mode::Exclude(_) => filter_sub_attributes(value, def, |k, d| {
                returnable(d)
                    && (d.is_some_and(|d| d.returned == Returned::Always)
                        || !subs.iter().any(|s| s.eq_ignore_ascii_case(k)))
            }),
        };
        crate::filter::is_present(&projected).then_some(projected)
    }
}

fn parse_names(raw: Option<&str>, parameter: &str) -> Result<Option<Vec<AttrPath>>, ScimError> {
    let Some(raw) = raw.map(str::trim).filter(|s| !s.is_empty()) else {
        return Ok(None);
    };
    let names = raw
        .split(',')
        .map(|name| match name.trim().parse::<PatchPath>() {
            Ok(PatchPath::Attr(path)) => Ok(path),
            _ => Err(ScimError::invalid_value(format!(
                "{parameter}: {name:?} is not an attribute name"
            ))),
        })
        .collect::<Result<_, _>>()?;
    Ok(Some(names))
}

/// Resolves a name to where it points. A bare extension URN parses as `uri` + last segment,
/// so it is recognised by joining them again.
fn selector(path: &AttrPath, schema: &ResourceSchema) -> Option<Selector> {
    if let (Some(uri), None) = (&path.uri, &path.sub_attr)
        && let Some(ext) = schema.extension(&format!("{uri}:{}", path.name))
    {
        return Some(Selector {
            extension: Some(ext.id.to_string()),
            name: None,
            sub: None,
        });
    }
    match schema.locate(path) {
        Some(loc) => Some(Selector {
            extension: loc.extension.map(str::to_string),
            name: Some(loc.name),
            sub: loc.sub,
        }),
        // Unknown top-level keys can still be asked for by name.
        None if path.uri.is_none() => Some(Selector {
            extension: None,
            name: Some(path.name.clone()),
            sub: path.sub_attr.clone(),
        }),
        None => None,
    }
}

/// The value with only the sub-attributes `keep(name, definition)` accepts; values without
/// sub-attributes pass through.
fn filter_sub_attributes(
    value: &Value,
    def: Option<&AttributeDef>,
    keep: impl Fn(&str, Option<&AttributeDef>) -> bool,
) -> Value {
    let filter_object = |obj: &Map<String, Value>| -> Value {
        let kept = obj
            .iter()
            .filter(|(k, _)| keep(k, def.and_then(|d| d.sub_attribute(k))))
            .map(|(k, v)| (k.clone(), v.clone()));
        Value::Object(kept.collect())
    };
    match value {
        Value::Object(obj) => filter_object(obj),
        Value::Array(items) => Value::Array(
            items
                .iter()
                .map(|item| match item {
                    Value::Object(obj) => filter_object(obj),
                    other => other.clone(),
                })
                .filter(crate::filter::is_present)
                .collect(),
        ),
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;
    use crate::schema::user;
    use crate::urn;
    use serde_json::json;

    fn sample() -> Value {
        json!({
            "schemas": [urn::USER, urn::ENTERPRISE_USER],
            "id": "u1",
            "userName": "alice",
            "password": "secret",
            "name": {"givenName": "A", "familyName": "L"},
            "emails": [{"value": "a@x", "type": "work"}],
            "meta": {"resourceType": "User"},
            urn::ENTERPRISE_USER: {"department": "Ops", "costCenter": "1"},
            "custom": 1
        })
    }

    fn project(attributes: Option<&str>, excluded: Option<&str>) -> Value {
        Projection::parse(attributes, excluded)
            .unwrap()
            .apply(&sample(), user())
    }

    #[test]
    fn default_drops_never() {
        let out = project(None, None);
        assert!(out.get("password").is_none());
        assert_eq!(out["userName"], "alice");
        assert_eq!(out["custom"], 1);
        assert_eq!(Projection::all().apply(&sample(), user()), out);
    }

    #[test]
    fn attributes_selects_plus_always() {
        let out = project(Some("USERNAME, name.givenName"), None);
        assert_eq!(
            out,
            json!({
                "schemas": [urn::USER, urn::ENTERPRISE_USER],
                "id": "u1",
                "userName": "alice",
                "name": {"givenName": "A"}
            })
        );
        let out = project(
            Some("urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department"),
            None,
        );
        assert_eq!(out[urn::ENTERPRISE_USER], json!({"department": "Ops"}));
        let out = project(Some(urn::ENTERPRISE_USER), None);
        assert_eq!(
            out[urn::ENTERPRISE_USER],
            json!({"department": "Ops", "costCenter": "1"})
        );
        assert!(project(Some("password"), None).get("password").is_none());
        assert_eq!(
            project(Some("emails.value"), None)["emails"],
            json!([{"value": "a@x"}])
        );
    }

    #[test]
    fn excluded_attributes() {
        let out = project(
            None,
            Some(
                "emails,name.familyName,id,urn:ietf:params:scim:schemas:extension:enterprise:2.0:User",
            ),
        );
        assert!(out.get("emails").is_none());
        assert_eq!(out["name"], json!({"givenName": "A"}));
        assert_eq!(out["id"], "u1", "returned always cannot be excluded");
        assert!(out.get(urn::ENTERPRISE_USER).is_none());
        assert_eq!(out["userName"], "alice");
    }

    #[test]
    fn parse_errors() {
        assert!(Projection::parse(Some("a"), Some("b")).is_err());
        assert!(Projection::parse(Some("a[b eq 1]"), None).is_err());
        assert!(Projection::parse(Some("1abc"), None).is_err());
        assert_eq!(
            Projection::parse(Some(""), Some(" ")).unwrap(),
            Projection::all()
        );
    }
}
