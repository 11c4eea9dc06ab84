//! Property tests: filter evaluation is a boolean algebra that survives printing and
//! re-parsing; `diff` + `apply` reproduce the target; `apply` is all-or-nothing.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use proptest::prelude::*;
use scim::schema::{ResourceSchema, group, user};
use scim::{AttrExp, AttrPath, CompValue, CompareOp, Filter, PatchOperation, ValFilter, ValuePath};
use scim::{filter, patch, urn};
use serde_json::{Map, Value, json};

const ENTERPRISE_DEPARTMENT: &str =
    "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department";

fn word() -> impl Strategy<Value = String> {
    prop::sample::select(vec![
        "alice", "Alice", "bob", "work", "home", "Ops", "a@x.jp", "", "ali",
    ])
    .prop_map(str::to_string)
}

fn email() -> impl Strategy<Value = Value> {
    (
        word(),
        prop::option::of(prop::sample::select(vec!["work", "home", "other"])),
    )
        .prop_map(|(value, ty)| match ty {
            Some(ty) => json!({"value": value, "type": ty}),
            None => json!({"value": value}),
        })
}

fn emails() -> impl Strategy<Value = Vec<Value>> {
    (
        prop::collection::vec(email(), 0..4),
        any::<prop::sample::Index>(),
    )
        .prop_map(|(mut items, i)| {
            // At most one primary value, as RFC 7643 §2.4 requires of valid resources.
            if !items.is_empty() {
                let n = items.len();
                items[i.index(n)]["primary"] = json!(true);
            }
            items
        })
}

fn sample_user() -> impl Strategy<Value = Value> {
    (
        word(),
        prop::option::of(word()),
        prop::option::of(any::<bool>()),
        emails(),
        prop::option::of(word()),
        prop::option::of(word()),
        prop::sample::select(vec![
            "2011-05-13T04:42:34Z",
            "2020-01-01T09:00:00+09:00",
            "1999-12-31T23:59:59Z",
        ]),
        prop::option::of(word()),
    )
        .prop_map(
            |(user_name, title, active, emails, given, family, modified, department)| {
                let mut u = Map::new();
                u.insert("schemas".into(), json!([urn::USER]));
                u.insert("id".into(), json!("id-1"));
                u.insert("userName".into(), json!(format!("u-{user_name}")));
                if let Some(t) = title {
                    u.insert("title".into(), json!(t));
                }
                if let Some(a) = active {
                    u.insert("active".into(), json!(a));
                }
                if !emails.is_empty() {
                    u.insert("emails".into(), Value::Array(emails));
                }
                let mut name = Map::new();
                if let Some(g) = given {
                    name.insert("givenName".into(), json!(g));
                }
                if let Some(f) = family {
                    name.insert("familyName".into(), json!(f));
                }
                if !name.is_empty() {
                    u.insert("name".into(), Value::Object(name));
                }
                u.insert(
                    "meta".into(),
                    json!({"resourceType": "User", "lastModified": modified}),
                );
                if let Some(d) = department {
                    u.insert(urn::ENTERPRISE_USER.into(), json!({"department": d}));
                    u.insert("schemas".into(), json!([urn::USER, urn::ENTERPRISE_USER]));
                }
                Value::Object(u)
            },
        )
}

fn sample_group() -> impl Strategy<Value = Value> {
    (
        word(),
        prop::collection::btree_set(
            prop::sample::select(vec!["u1", "u2", "u3", "U1", "g9"]),
            0..5,
        ),
        prop::option::of(word()),
    )
        .prop_map(|(name, members, description)| {
            let mut g =
                json!({"schemas": [urn::GROUP], "id": "g", "displayName": format!("g-{name}")});
            if !members.is_empty() {
                g["members"] = members.into_iter().map(|m| json!({"value": m})).collect();
            }
            if let Some(d) = description {
                g[urn::IIJ_GROUP] = json!({"description": d});
                g["schemas"] = json!([urn::GROUP, urn::IIJ_GROUP]);
            }
            g
        })
}

fn attr_path() -> impl Strategy<Value = AttrPath> {
    prop::sample::select(vec![
        "userName",
        "USERNAME",
        "title",
        "active",
        "emails",
        "emails.value",
        "emails.type",
        "emails.primary",
        "name.givenName",
        "name",
        "meta.lastModified",
        ENTERPRISE_DEPARTMENT,
        "nickName",
        "unknownAttr",
    ])
    .prop_map(|s| match format!("{s} pr").parse::<Filter>().unwrap() {
        Filter::Attr(AttrExp::Present(p)) => p,
        other => panic!("{other:?}"),
    })
}

fn comp_value() -> impl Strategy<Value = CompValue> {
    prop_oneof![
        word().prop_map(CompValue::Str),
        prop::sample::select(vec![
            "2011-05-13T04:42:34Z",
            "2019-12-31T23:00:00-01:00",
            "2020"
        ])
        .prop_map(|s| CompValue::Str(s.to_string())),
        Just(CompValue::True),
        Just(CompValue::False),
        Just(CompValue::Null),
        (0i64..3).prop_map(|n| CompValue::Number(n.into())),
    ]
}

fn compare_op() -> impl Strategy<Value = CompareOp> {
    prop::sample::select(vec![
        CompareOp::Eq,
        CompareOp::Ne,
        CompareOp::Co,
        CompareOp::Sw,
        CompareOp::Ew,
        CompareOp::Gt,
        CompareOp::Lt,
        CompareOp::Ge,
        CompareOp::Le,
    ])
}

fn attr_exp() -> impl Strategy<Value = AttrExp> {
    prop_oneof![
        attr_path().prop_map(AttrExp::Present),
        (attr_path(), compare_op(), comp_value())
            .prop_map(|(p, o, v)| AttrExp::Comparison(p, o, v)),
    ]
}

fn email_filter() -> impl Strategy<Value = ValFilter> {
    let sub = prop::sample::select(vec!["value", "type", "primary"]).prop_map(AttrPath::with_name);
    let leaf = (sub, compare_op(), comp_value())
        .prop_map(|(p, o, v)| ValFilter::Attr(AttrExp::Comparison(p, o, v)));
    leaf.prop_recursive(2, 6, 2, |inner| {
        prop_oneof![
            inner.clone().prop_map(|f| ValFilter::Not(Box::new(f))),
            (inner.clone(), inner.clone()).prop_map(|(a, b)| ValFilter::and(a, b)),
            (inner.clone(), inner).prop_map(|(a, b)| ValFilter::or(a, b)),
        ]
    })
}

fn any_filter() -> impl Strategy<Value = Filter> {
    let leaf = prop_oneof![
        3 => attr_exp().prop_map(Filter::Attr),
        1 => email_filter().prop_map(|f| Filter::ValuePath(ValuePath { attr: AttrPath::with_name("emails"), filter: Box::new(f) })),
    ];
    leaf.prop_recursive(3, 12, 2, |inner| {
        prop_oneof![
            inner.clone().prop_map(|f| Filter::Not(Box::new(f))),
            (inner.clone(), inner.clone()).prop_map(|(a, b)| Filter::and(a, b)),
            (inner.clone(), inner).prop_map(|(a, b)| Filter::or(a, b)),
        ]
    })
}

/// The attributes `diff` is responsible for, with "unassigned" forms (null, [], {}) dropped
/// and `members` order ignored (add appends).
fn diffed_view(resource: &Value, schema: &ResourceSchema) -> Value {
    let mut out = Map::new();
    let skip = ["id", "meta", "schemas", "password", "groups"];
    for (k, v) in resource.as_object().unwrap() {
        if skip.contains(&k.as_str()) || v.is_null() || v.as_array().is_some_and(Vec::is_empty) {
            continue;
        }
        let mut v = v.clone();
        if k == "members"
            && let Some(items) = v.as_array_mut()
        {
            items.sort_by_key(|m| m["value"].as_str().unwrap_or_default().to_string());
        }
        if schema.extension(k).is_some() && v.as_object().is_some_and(Map::is_empty) {
            continue;
        }
        out.insert(k.clone(), v);
    }
    Value::Object(out)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn not_negates(f in any_filter(), u in sample_user()) {
        let negated = Filter::Not(Box::new(f.clone()));
        prop_assert_eq!(filter::matches(&negated, &u, user()), !filter::matches(&f, &u, user()));
    }

    #[test]
    fn and_or_are_boolean(a in any_filter(), b in any_filter(), u in sample_user()) {
        let (ma, mb) = (filter::matches(&a, &u, user()), filter::matches(&b, &u, user()));
        prop_assert_eq!(filter::matches(&Filter::and(a.clone(), b.clone()), &u, user()), ma && mb);
        prop_assert_eq!(filter::matches(&Filter::or(a, b), &u, user()), ma || mb);
    }

    #[test]
    fn display_then_parse_evaluates_the_same(f in any_filter(), u in sample_user()) {
        let text = f.to_string();
        let reparsed = filter::parse(&text).unwrap();
        prop_assert_eq!(filter::matches(&reparsed, &u, user()), filter::matches(&f, &u, user()), "{}", text);
    }

    #[test]
    fn diff_then_apply_reaches_new_user(old in sample_user(), new in sample_user()) {
        let mut ops = patch::diff(&old, &new, user());
        if !ops.is_empty() {
            // What goes on the wire must come back the same.
            let wire = serde_json::to_value(&ops).unwrap();
            let body = json!({"schemas": [urn::PATCH_OP], "Operations": wire});
            ops = patch::parse_request(&body).unwrap().operations;
        }
        let mut patched = old.clone();
        patch::apply(&mut patched, &ops, user()).unwrap();
        prop_assert_eq!(diffed_view(&patched, user()), diffed_view(&new, user()));
        prop_assert!(patch::diff(&patched, &new, user()).is_empty());
    }

    #[test]
    fn diff_then_apply_reaches_new_group(old in sample_group(), new in sample_group()) {
        let ops = patch::diff(&old, &new, group());
        prop_assert!(!ops.iter().any(|op| matches!(op, PatchOperation::Replace(_)) && serde_json::to_value(op).unwrap()["path"] == "members"));
        let mut patched = old.clone();
        patch::apply(&mut patched, &ops, group()).unwrap();
        prop_assert_eq!(diffed_view(&patched, group()), diffed_view(&new, group()));
    }

    #[test]
    fn apply_is_all_or_nothing(u in sample_user(), picks in prop::collection::vec(0usize..10, 1..4)) {
        let candidates = [
            json!({"op": "replace", "path": "title", "value": "Boss"}),
            json!({"op": "add", "path": "emails", "value": [{"value": "n@x", "type": "home", "primary": true}]}),
            json!({"op": "remove", "path": "emails[type eq \"work\"]"}),
            json!({"op": "replace", "path": "id", "value": "other"}),
            json!({"op": "replace", "path": "active", "value": 7}),
            json!({"op": "add", "path": ENTERPRISE_DEPARTMENT, "value": "Sales"}),
            json!({"op": "remove", "path": "name.givenName"}),
            json!({"op": "replace", "path": "emails[type eq \"home\"].value", "value": "h@x"}),
            json!({"op": "remove", "path": "userName"}),
            json!({"op": "replace", "value": {"nickName": "N", "displayName": "D"}}),
        ];
        let operations: Vec<Value> = picks.iter().map(|&i| candidates[i].clone()).collect();
        let request = patch::parse_request(&json!({"schemas": [urn::PATCH_OP], "Operations": operations})).unwrap();
        let mut resource = u.clone();
        match patch::apply(&mut resource, &request.operations, user()) {
            Err(_) => prop_assert_eq!(resource, u),
            Ok(()) => {
                let schemas = resource["schemas"].as_array().unwrap();
                prop_assert_eq!(&schemas[0], &json!(urn::USER));
                let has_ext = resource.get(urn::ENTERPRISE_USER).is_some();
                prop_assert_eq!(schemas.contains(&json!(urn::ENTERPRISE_USER)), has_ext);
            }
        }
    }
}
