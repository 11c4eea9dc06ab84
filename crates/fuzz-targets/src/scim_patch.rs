//! A PATCH request body (RFC 7644 §3.5.2) through `scim::patch::parse_request` and
//! `scim::patch::apply` on a User and a Group, as both idservice and the agent's plan use them.
//! Beyond not panicking: a failed PATCH leaves the resource unchanged (all or nothing); a
//! successful one leaves a JSON object that lists its schemas, is still JSON once written out, and
//! has no difference from itself (`scim::patch::diff`).

use std::sync::OnceLock;

use scim::schema::ResourceSchema;
use serde_json::{Value, json};

fn resources() -> &'static [(Value, &'static ResourceSchema); 2] {
    static R: OnceLock<[(Value, &'static ResourceSchema); 2]> = OnceLock::new();
    R.get_or_init(|| {
        let user = json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User",
                        "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"],
            "id": "2819c223-7f76-453a-919d-413861904646",
            "externalId": "guid-1",
            "userName": "taro@example.jp",
            "name": {"familyName": "Yamada", "givenName": "Taro"},
            "displayName": "Taro Yamada",
            "title": "Engineer",
            "active": true,
            "emails": [{"value": "taro@example.jp", "type": "work", "primary": true},
                       {"value": "taro@home.example", "type": "home"}],
            "phoneNumbers": [{"value": "+81-3-0000-0000", "type": "work"}],
            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User":
                {"employeeNumber": "701984", "department": "Dev",
                 "manager": {"value": "26118915-6090-4610-87e4-49d8ca9f808d"}},
            "meta": {"resourceType": "User", "version": "W/\"1\""}
        });
        let group = json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
            "id": "e9e30dba-f08f-4109-8486-d5c6a331660a",
            "displayName": "Tour Guides",
            "members": [{"value": "2819c223-7f76-453a-919d-413861904646", "type": "User"},
                        {"value": "902c246b-6245-4190-8e05-00816be7344a"}]
        });
        [(user, scim::schema::user()), (group, scim::schema::group())]
    })
}

/// One input.
pub fn run(data: &[u8]) {
    let Ok(body) = serde_json::from_slice::<Value>(data) else {
        return;
    };
    let Ok(patch) = scim::patch::parse_request(&body) else {
        return;
    };
    for (original, schema) in resources() {
        let mut resource = original.clone();
        match scim::patch::apply(&mut resource, &patch.operations, schema) {
            Err(_) => assert_eq!(&resource, original, "a failed PATCH changed the resource"),
            Ok(()) => {
                assert!(resource.is_object(), "{resource}");
                assert!(resource["schemas"].is_array(), "{resource}");
                let text = serde_json::to_string(&resource).unwrap();
                let back: Value = serde_json::from_str(&text).unwrap();
                assert!(back.is_object());
                let ops = scim::patch::diff(&resource, &resource, schema);
                assert!(ops.is_empty(), "{resource} differs from itself: {ops:?}");
            }
        }
    }
}
