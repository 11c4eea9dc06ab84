//! Filter parsing (delegated to `scim_v2`) and evaluation against a resource.

use std::cmp::Ordering;

use scim_v2::filter::{AttrExp, CompValue, CompareOp, Filter, ValFilter, ValuePath};
use serde_json::Value;

use crate::error::ScimError;
use crate::resource::{attribute_value, elements, member};
use crate::schema::{AttrType, AttributeDef, ResourceSchema};

/// Parses a filter; a syntax error becomes 400 `invalidFilter` naming what was wrong.
pub fn parse(s: &str) -> Result<Filter, ScimError> {
    s.parse::<Filter>()
        .map_err(|e| ScimError::invalid_filter(format!("invalid filter {s:?}: {e}")))
}

/// The size of a filter: how deep its operators nest (an attribute expression is 1; each
/// `and`/`or`/`not`/`[...]` around it adds 1) and how many attribute expressions it has.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Cost {
    pub depth: usize,
    pub terms: usize,
}

impl Cost {
    fn wrap(self) -> Cost {
        Cost {
            depth: self.depth + 1,
            terms: self.terms,
        }
    }

    fn join(costs: impl Iterator<Item = Cost>) -> Cost {
        let all = costs.fold(Cost::default(), |a, c| Cost {
            depth: a.depth.max(c.depth),
            terms: a.terms + c.terms,
        });
        all.wrap()
    }
}

const TERM: Cost = Cost { depth: 1, terms: 1 };

/// The [`Cost`] of a filter.
pub fn cost(filter: &Filter) -> Cost {
    match filter {
        Filter::Attr(_) => TERM,
        Filter::ValuePath(vp) => val_cost(&vp.filter).wrap(),
        Filter::Not(inner) => cost(inner).wrap(),
        Filter::And(items) | Filter::Or(items) => Cost::join(items.iter().map(cost)),
    }
}

fn val_cost(filter: &ValFilter) -> Cost {
    match filter {
        ValFilter::Attr(_) => TERM,
        ValFilter::Not(inner) => val_cost(inner).wrap(),
        ValFilter::And(items) | ValFilter::Or(items) => Cost::join(items.iter().map(val_cost)),
    }
}

/// Refuses a filter deeper than `max_depth` or with more than `max_terms` attribute
/// expressions: 400 `tooMany` (RFC 7644 §3.12: more than the server is willing to process).
/// A server bounds what one search may cost, so that a few costly searches cannot starve
/// everyone else.
pub fn check_cost(filter: &Filter, max_depth: usize, max_terms: usize) -> Result<(), ScimError> {
    let c = cost(filter);
    if c.depth > max_depth {
        return Err(ScimError::too_many(format!(
            "the filter nests {} levels deep; at most {max_depth} are accepted",
            c.depth
        )));
    }
    if c.terms > max_terms {
        return Err(ScimError::too_many(format!(
            "the filter has {} attribute expressions; at most {max_terms} are accepted",
            c.terms
        )));
    }
    Ok(())
}

/// Whether `resource` matches `filter` (RFC 7644 §3.4.2.2). Attributes the schema does not
/// know never match, so an unknown attribute narrows a search rather than failing it.
pub fn matches(filter: &Filter, resource: &Value, schema: &ResourceSchema) -> bool {
    match filter {
        Filter::Attr(exp) => matches_attr_exp(exp, resource, schema),
        Filter::ValuePath(vp) => matches_value_path(vp, resource, schema),
        Filter::Not(inner) => !matches(inner, resource, schema),
        Filter::And(items) => items.iter().all(|f| matches(f, resource, schema)),
        Filter::Or(items) => items.iter().any(|f| matches(f, resource, schema)),
    }
}

/// Whether one element of a multi-valued (or complex) attribute matches a value filter — the
/// part inside `emails[...]`. `parent` defines the element's sub-attributes. PATCH uses this
/// to select the elements a value path targets.
pub fn matches_element(filter: &ValFilter, element: &Value, parent: Option<&AttributeDef>) -> bool {
    match filter {
        ValFilter::Attr(exp) => {
            let (path, _) = exp_parts(exp);
            if path.sub_attr.is_some() {
                // An element's sub-attributes are simple; `a.b` inside brackets names nothing.
                return false;
            }
            let def = match parent {
                Some(p) => match p.sub_attribute(&path.name) {
                    Some(d) => Some(d),
                    None => return false,
                },
                None => None,
            };
            let leaves: Vec<&Value> = member(element, &path.name).into_iter().collect();
            evaluate(exp, &leaves, def)
        }
        ValFilter::Not(inner) => !matches_element(inner, element, parent),
        ValFilter::And(items) => items.iter().all(|f| matches_element(f, element, parent)),
        ValFilter::Or(items) => items.iter().any(|f| matches_element(f, element, parent)),
    }
}

fn exp_parts(exp: &AttrExp) -> (&scim_v2::filter::AttrPath, Option<(&CompareOp, &CompValue)>) {
    match exp {
        AttrExp::Present(path) => (path, None),
        AttrExp::Comparison(path, op, value) => (path, Some((op, value))),
    }
}

fn matches_attr_exp(exp: &AttrExp, resource: &Value, schema: &ResourceSchema) -> bool {
    let (path, _) = exp_parts(exp);
    let Some(loc) = schema.locate(path) else {
        return false;
    };
    let Some(value) = attribute_value(resource, &loc) else {
        return evaluate(exp, &[], loc.leaf_def());
    };
    let mut leaves: Vec<&Value> = Vec::new();
    let mut leaf_def = loc.leaf_def();
    match &loc.sub {
        Some(sub) => leaves.extend(elements(value).iter().filter_map(|e| member(e, sub))),
        None if matches!(exp, AttrExp::Present(_)) => leaves.push(value),
        None => {
            // RFC 7644 §3.4.2.2: a multi-valued complex attribute without a sub-attribute is
            // compared by its elements' `value`.
            let multi_complex = loc.def.is_none_or(AttributeDef::is_multi_complex);
            if let Some(value_def) = loc
                .def
                .filter(|d| d.is_multi_complex())
                .and_then(|d| d.sub_attribute("value"))
            {
                leaf_def = Some(value_def);
            }
            for element in elements(value) {
                match element {
                    Value::Object(_) if multi_complex => leaves.extend(member(element, "value")),
                    other => leaves.push(other),
                }
            }
        }
    }
    evaluate(exp, &leaves, leaf_def)
}

fn matches_value_path(vp: &ValuePath, resource: &Value, schema: &ResourceSchema) -> bool {
    let Some(loc) = schema.locate(&vp.attr) else {
        return false;
    };
    if loc.sub.is_some() {
        return false;
    }
    let Some(value) = attribute_value(resource, &loc) else {
        return false;
    };
    elements(value)
        .iter()
        .any(|e| matches_element(&vp.filter, e, loc.def))
}

/// Applies one attribute expression to the values found at its path (empty when absent).
fn evaluate(exp: &AttrExp, leaves: &[&Value], def: Option<&AttributeDef>) -> bool {
    let present = leaves.iter().any(|v| is_present(v));
    match exp_parts(exp) {
        (_, None) => present,
        // `eq null` asks for absence (RFC 7643 §2.5 makes null and absent the same).
        (_, Some((CompareOp::Eq, CompValue::Null))) => !present,
        (_, Some((CompareOp::Ne, CompValue::Null))) => present,
        // `ne` is the negation of `eq`, so it holds for a missing attribute and, on a
        // multi-valued one, when no value is equal.
        (_, Some((CompareOp::Ne, value))) => !leaves
            .iter()
            .any(|leaf| compare(leaf, &CompareOp::Eq, value, def)),
        (_, Some((op, value))) => leaves.iter().any(|leaf| compare(leaf, op, value, def)),
    }
}

/// RFC 7644 §3.4.2.2 `pr`: present and not null, not an empty string, array or object.
pub(crate) fn is_present(value: &Value) -> bool {
    match value {
        Value::Null => false,
        Value::String(s) => !s.is_empty(),
        Value::Array(items) => items.iter().any(is_present),
        Value::Object(map) => map.values().any(is_present),
        Value::Bool(_) | Value::Number(_) => true,
    }
}

/// One stored value against one comparison value, typed by the attribute definition.
fn compare(stored: &Value, op: &CompareOp, value: &CompValue, def: Option<&AttributeDef>) -> bool {
    match (stored, value) {
        (Value::Bool(b), CompValue::True) => *op == CompareOp::Eq && *b,
        (Value::Bool(b), CompValue::False) => *op == CompareOp::Eq && !*b,
        (Value::Number(n), CompValue::Number(m)) => {
            compare_numbers(n, m).is_some_and(|ord| ordering_satisfies(op, ord))
        }
        (Value::String(s), CompValue::Str(v)) => compare_strings(s, op, v, def),
        _ => false,
    }
}

fn compare_numbers(a: &serde_json::Number, b: &serde_json::Number) -> Option<Ordering> {
    match (a.as_i64(), b.as_i64()) {
        (Some(x), Some(y)) => Some(x.cmp(&y)),
        _ => a.as_f64()?.partial_cmp(&b.as_f64()?),
    }
}

fn ordering_satisfies(op: &CompareOp, ord: Ordering) -> bool {
    match op {
        CompareOp::Eq => ord == Ordering::Equal,
        CompareOp::Ne => ord != Ordering::Equal,
        CompareOp::Gt => ord == Ordering::Greater,
        CompareOp::Ge => ord != Ordering::Less,
        CompareOp::Lt => ord == Ordering::Less,
        CompareOp::Le => ord != Ordering::Greater,
        CompareOp::Co | CompareOp::Sw | CompareOp::Ew => false,
    }
}

fn compare_strings(stored: &str, op: &CompareOp, value: &str, def: Option<&AttributeDef>) -> bool {
    let ty = def.map(|d| d.ty);
    if ty == Some(AttrType::DateTime)
        && !matches!(op, CompareOp::Co | CompareOp::Sw | CompareOp::Ew)
        && let (Ok(a), Ok(b)) = (parse_instant(stored), parse_instant(value))
    {
        return ordering_satisfies(op, a.cmp(&b));
    }
    // Strings in a non-string attribute (a boolean sent as "true", say) still compare as
    // text, which is what a client writing `"true"` would expect.
    let case_exact = def.is_some_and(|d| d.case_exact);
    let (stored, value) = if case_exact {
        (stored.to_string(), value.to_string())
    } else {
        (stored.to_lowercase(), value.to_lowercase())
    };
    match op {
        CompareOp::Co => stored.contains(&value),
        CompareOp::Sw => stored.starts_with(&value),
        CompareOp::Ew => stored.ends_with(&value),
        other => ordering_satisfies(other, stored.cmp(&value)),
    }
}

/// RFC 3339 instant (the xsd:dateTime profile RFC 7643 §2.3.5 uses).
fn parse_instant(s: &str) -> Result<chrono::DateTime<chrono::Utc>, chrono::ParseError> {
    chrono::DateTime::parse_from_rfc3339(s).map(|t| t.with_timezone(&chrono::Utc))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;
    use crate::error::ScimType;

    #[test]
    fn cost_counts_nesting_and_terms() {
        let c = |f: &str| cost(&parse(f).unwrap());
        assert_eq!(c(r#"userName eq "a""#), Cost { depth: 1, terms: 1 });
        assert_eq!(c(r#"a pr and b pr and c pr"#), Cost { depth: 2, terms: 3 });
        assert_eq!(
            c(r#"not (emails[type eq "work" and value co "x"]) or title pr"#),
            Cost { depth: 5, terms: 3 }
        );
        let deep = (0..9).fold("title pr".to_string(), |f, _| format!("not ({f})"));
        assert_eq!(c(&deep).depth, 10);
        assert!(check_cost(&parse(&deep).unwrap(), 10, 64).is_ok());
        let e = check_cost(&parse(&format!("not ({deep})")).unwrap(), 10, 64).unwrap_err();
        assert_eq!((e.status, e.scim_type), (400, Some(ScimType::TooMany)));
        let wide = vec!["title pr"; 65].join(" or ");
        let e = check_cost(&parse(&wide).unwrap(), 10, 64).unwrap_err();
        assert!(
            e.detail.contains("65 attribute expressions"),
            "{}",
            e.detail
        );
    }
    use crate::schema::{group, user};
    use serde_json::json;

    fn sample_user() -> Value {
        json!({
            "schemas": [crate::urn::USER, crate::urn::ENTERPRISE_USER, crate::urn::OIDFJ_USER],
            "id": "2819c223-7f76-453a-919d-413861904646",
            "externalId": "AbC-1",
            "userName": "bjensen@example.com",
            "name": {"familyName": "Jensen", "givenName": "Barbara"},
            "title": "Tour Guide",
            "userType": "Employee",
            "active": true,
            "emails": [
                {"value": "bjensen@example.com", "type": "work", "primary": true},
                {"value": "babs@jensen.org", "type": "home"}
            ],
            "phoneNumbers": [],
            "nickName": "",
            "meta": {"lastModified": "2011-05-13T04:42:34Z", "created": "2010-01-23T04:56:22+09:00"},
            crate::urn::ENTERPRISE_USER: {"department": "Tour Operations", "manager": {"value": "26118915"}},
            crate::urn::OIDFJ_USER: {"undefinedThing": "Kept"}
        })
    }

    fn check(filter: &str) -> bool {
        matches(&parse(filter).unwrap(), &sample_user(), user())
    }

    #[test]
    fn string_comparisons_follow_case_exactness() {
        assert!(check(r#"userName eq "BJENSEN@example.com""#));
        assert!(check(r#"USERNAME Eq "bjensen@example.com""#));
        assert!(
            !check(r#"externalId eq "abc-1""#),
            "externalId is caseExact"
        );
        assert!(check(r#"externalId eq "AbC-1""#));
        assert!(!check(r#"id eq "2819C223-7F76-453A-919D-413861904646""#));
        assert!(check(r#"title co "our g""#));
        assert!(check(r#"title sw "tour""#));
        assert!(check(r#"title ew "GUIDE""#));
        assert!(check(r#"userName gt "a" and userName lt "c""#));
    }

    #[test]
    fn presence() {
        assert!(check("title pr"));
        assert!(!check("nickName pr"), "empty string is not present");
        assert!(!check("phoneNumbers pr"), "empty array is not present");
        assert!(!check("displayName pr"));
        assert!(check("name pr"));
        assert!(check("emails pr"));
        assert!(check("emails.type pr"));
    }

    #[test]
    fn multi_valued_and_value_paths() {
        assert!(
            check(r#"emails eq "babs@jensen.org""#),
            "uses the elements' value"
        );
        assert!(check(r#"emails.value eq "babs@jensen.org""#));
        assert!(check(
            r#"emails[type eq "work" and value co "@example.com"]"#
        ));
        assert!(!check(
            r#"emails[type eq "home" and value co "@example.com"]"#
        ));
        assert!(check(r#"emails[not (primary eq true)]"#));
        assert!(check(r#"emails.primary eq true"#));
        assert!(!check(r#"emails[nope eq "x"]"#));
    }

    #[test]
    fn ne_and_missing() {
        assert!(
            check(r#"displayName ne "x""#),
            "ne on a missing attribute is true"
        );
        assert!(check(r#"displayName eq null"#));
        assert!(!check(r#"title eq null"#));
        assert!(check(r#"title ne null"#));
        assert!(!check(r#"emails.value ne "babs@jensen.org""#));
        assert!(
            !check(r#"unknownAttr ne "x""#),
            "unknown attributes never match"
        );
        assert!(!check(r#"unknownAttr pr"#));
    }

    #[test]
    fn typed_comparisons() {
        assert!(check("active eq true"));
        assert!(!check("active eq false"));
        assert!(!check(r#"active eq "true" and active eq 1"#));
        assert!(check(r#"meta.lastModified gt "2011-05-13T04:42:33Z""#));
        assert!(
            check(r#"meta.lastModified eq "2011-05-13T13:42:34+09:00""#),
            "same instant"
        );
        assert!(check(r#"meta.created lt "2010-01-22T20:00:00Z""#));
        assert!(check(r#"meta.created ge "2010-01-22T19:56:22Z""#));
        assert!(!check(r#"meta.created gt "2010-01-22T19:56:22Z""#));
    }

    #[test]
    fn extensions_by_urn() {
        assert!(check(
            r#"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department eq "tour operations""#
        ));
        assert!(check(
            r#"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager.value eq "26118915""#
        ));
        assert!(check(
            r#"urn:oidfj:params:scim:schemas:extention:enterprisejp:2.0:User:undefinedThing eq "kept""#
        ));
        assert!(
            !check(r#"department eq "Tour Operations""#),
            "extension attrs need the URN"
        );
    }

    #[test]
    fn groups_members() {
        let g =
            json!({"displayName": "Tour Guides", "members": [{"value": "a1", "display": "Babs"}]});
        assert!(matches(
            &parse(r#"members[value eq "a1"]"#).unwrap(),
            &g,
            group()
        ));
        assert!(matches(&parse(r#"members eq "a1""#).unwrap(), &g, group()));
        assert!(
            !matches(&parse(r#"members eq "A1""#).unwrap(), &g, group()),
            "member value is caseExact"
        );
        assert!(matches(
            &parse(r#"displayName eq "tour guides""#).unwrap(),
            &g,
            group()
        ));
    }

    #[test]
    fn parse_errors_are_invalid_filter() {
        let err = parse("userName eq").unwrap_err();
        assert_eq!(err.status, 400);
        assert_eq!(err.scim_type, Some(crate::ScimType::InvalidFilter));
        assert!(err.detail.contains("userName eq"));
    }
}
