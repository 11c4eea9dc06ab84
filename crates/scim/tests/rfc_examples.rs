//! The RFC 7644 §3.5.2 PATCH examples and §3.4.2.2 filter examples, run through this crate
//! and recorded as insta snapshots.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use scim::schema::{group, user};
use scim::{filter, patch};
use serde_json::{Value, json};

/// The full User of RFC 7643 §8.2 with the enterprise extension of §8.3.
fn bjensen() -> Value {
    json!({
      "schemas": [
        "urn:ietf:params:scim:schemas:core:2.0:User",
        "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
      ],
      "id": "2819c223-7f76-453a-919d-413861904646",
      "externalId": "701984",
      "userName": "bjensen@example.com",
      "name": {
        "formatted": "Ms. Barbara J Jensen, III",
        "familyName": "Jensen",
        "givenName": "Barbara",
        "middleName": "Jane",
        "honorificPrefix": "Ms.",
        "honorificSuffix": "III"
      },
      "displayName": "Babs Jensen",
      "nickName": "Babs",
      "profileUrl": "https://login.example.com/bjensen",
      "emails": [
        {"value": "bjensen@example.com", "type": "work", "primary": true},
        {"value": "babs@jensen.org", "type": "home"}
      ],
      "addresses": [
        {
          "streetAddress": "100 Universal City Plaza",
          "locality": "Hollywood",
          "region": "CA",
          "postalCode": "91608",
          "country": "USA",
          "formatted": "100 Universal City Plaza\nHollywood, CA 91608 USA",
          "type": "work",
          "primary": true
        },
        {
          "streetAddress": "456 Hollywood Blvd",
          "locality": "Hollywood",
          "region": "CA",
          "postalCode": "91608",
          "country": "USA",
          "formatted": "456 Hollywood Blvd\nHollywood, CA 91608 USA",
          "type": "home"
        }
      ],
      "phoneNumbers": [
        {"value": "555-555-5555", "type": "work"},
        {"value": "555-555-4444", "type": "mobile"}
      ],
      "ims": [{"value": "someaimhandle", "type": "aim"}],
      "photos": [
        {"value": "https://photos.example.com/profilephoto/72930000000Ccne/F", "type": "photo"},
        {"value": "https://photos.example.com/profilephoto/72930000000Ccne/T", "type": "thumbnail"}
      ],
      "userType": "Employee",
      "title": "Tour Guide",
      "preferredLanguage": "en-US",
      "locale": "en-US",
      "timezone": "America/Los_Angeles",
      "active": true,
      "groups": [
        {
          "value": "e9e30dba-f08f-4109-8486-d5c6a331660a",
          "$ref": "https://example.com/v2/Groups/e9e30dba-f08f-4109-8486-d5c6a331660a",
          "display": "Tour Guides"
        }
      ],
      "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {
        "employeeNumber": "701984",
        "costCenter": "4130",
        "organization": "Universal Studios",
        "division": "Theme Park",
        "department": "Tour Operations",
        "manager": {
          "value": "26118915-6090-4610-87e4-49d8ca9f808d",
          "$ref": "../Users/26118915-6090-4610-87e4-49d8ca9f808d",
          "displayName": "John Smith"
        }
      },
      "meta": {
        "resourceType": "User",
        "created": "2010-01-23T04:56:22Z",
        "lastModified": "2011-05-13T04:42:34Z",
        "version": "W/\"3694e05e9dff591\"",
        "location": "https://example.com/v2/Users/2819c223-7f76-453a-919d-413861904646"
      }
    })
}

/// The Group of RFC 7643 §8.4.
fn tour_guides() -> Value {
    json!({
      "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
      "id": "e9e30dba-f08f-4109-8486-d5c6a331660a",
      "displayName": "Tour Guides",
      "members": [
        {
          "value": "2819c223-7f76-453a-919d-413861904646",
          "$ref": "https://example.com/v2/Users/2819c223-7f76-453a-919d-413861904646",
          "display": "Babs Jensen"
        },
        {
          "value": "902c246b-6245-4190-8e05-00816be7344a",
          "$ref": "https://example.com/v2/Users/902c246b-6245-4190-8e05-00816be7344a",
          "display": "Mandy Pepperidge"
        }
      ],
      "meta": {
        "resourceType": "Group",
        "created": "2010-01-23T04:56:22Z",
        "lastModified": "2011-05-13T04:42:34Z",
        "version": "W/\"3694e05e9dff592\"",
        "location": "https://example.com/v2/Groups/e9e30dba-f08f-4109-8486-d5c6a331660a"
      }
    })
}

fn patched(mut resource: Value, body: Value, schema: &scim::schema::ResourceSchema) -> Value {
    let request = patch::parse_request(&body).unwrap();
    patch::apply(&mut resource, &request.operations, schema).unwrap();
    resource
}

fn ops(operations: Value) -> Value {
    json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"], "Operations": operations})
}

#[test]
fn s3_5_2_1_add_member() {
    // Starts without Babs so that the add is visible (the RFC group already holds her).
    let mut group_without_babs = tour_guides();
    group_without_babs["members"]
        .as_array_mut()
        .unwrap()
        .remove(0);
    let body = ops(json!([{
      "op": "add",
      "path": "members",
      "value": [{
        "display": "Babs Jensen",
        "$ref": "https://example.com/v2/Users/2819c223-7f76-453a-919d-413861904646",
        "value": "2819c223-7f76-453a-919d-413861904646"
      }]
    }]));
    insta::assert_json_snapshot!(patched(group_without_babs, body, group())["members"]);
}

#[test]
fn s3_5_2_1_add_member_already_present_changes_nothing() {
    let body = ops(json!([{
      "op": "add",
      "path": "members",
      "value": [{"value": "2819c223-7f76-453a-919d-413861904646"}]
    }]));
    assert_eq!(patched(tour_guides(), body, group()), tour_guides());
}

#[test]
fn s3_5_2_1_add_without_path() {
    let body = ops(json!([{
      "op": "add",
      "value": {
        "emails": [{"value": "babs@jensen.org", "type": "home"}, {"value": "babs@example.net", "type": "other"}],
        "nickname": "Babsy"
      }
    }]));
    let result = patched(bjensen(), body, user());
    insta::assert_json_snapshot!(
        json!({"emails": result["emails"], "nickName": result["nickName"]})
    );
}

#[test]
fn s3_5_2_2_remove_single_member() {
    let body = ops(json!([{
      "op": "remove",
      "path": "members[value eq \"2819c223-7f76-453a-919d-413861904646\"]"
    }]));
    insta::assert_json_snapshot!(patched(tour_guides(), body, group())["members"]);
}

#[test]
fn s3_5_2_2_remove_all_members() {
    let body = ops(json!([{"op": "remove", "path": "members"}]));
    let result = patched(tour_guides(), body, group());
    assert!(result.get("members").is_none());
    insta::assert_json_snapshot!(result);
}

#[test]
fn s3_5_2_2_remove_complex_value_by_filter() {
    let body = ops(json!([{
      "op": "remove",
      "path": "emails[type eq \"work\" and value ew \"example.com\"]"
    }]));
    insta::assert_json_snapshot!(patched(bjensen(), body, user())["emails"]);
}

#[test]
fn s3_5_2_2_remove_member_then_add_another() {
    let body = ops(json!([
      {"op": "remove", "path": "members[value eq \"2819c223-7f76-453a-919d-413861904646\"]"},
      {"op": "add", "path": "members", "value": [{
        "display": "James Smith",
        "$ref": "https://example.com/v2/Users/08e1d05d-121c-4561-8b96-473d93df9210",
        "value": "08e1d05d-121c-4561-8b96-473d93df9210"
      }]}
    ]));
    insta::assert_json_snapshot!(patched(tour_guides(), body, group())["members"]);
}

#[test]
fn s3_5_2_2_remove_members_azure_style_value() {
    let body = ops(json!([{
      "op": "Remove",
      "path": "members",
      "value": [{"value": "902c246b-6245-4190-8e05-00816be7344a"}]
    }]));
    insta::assert_json_snapshot!(patched(tour_guides(), body, group())["members"]);
}

#[test]
fn s3_5_2_3_replace_members() {
    let body = ops(json!([{
      "op": "replace",
      "path": "members",
      "value": [
        {"display": "Babs Jensen", "$ref": "https://example.com/v2/Users/2819c223-7f76-453a-919d-413861904646", "value": "2819c223-7f76-453a-919d-413861904646"},
        {"display": "James Smith", "$ref": "https://example.com/v2/Users/08e1d05d-121c-4561-8b96-473d93df9210", "value": "08e1d05d-121c-4561-8b96-473d93df9210"}
      ]
    }]));
    insta::assert_json_snapshot!(patched(tour_guides(), body, group())["members"]);
}

#[test]
fn s3_5_2_3_replace_work_address() {
    let body = ops(json!([{
      "op": "replace",
      "path": "addresses[type eq \"work\"]",
      "value": {
        "type": "work",
        "streetAddress": "911 Universal City Plaza",
        "locality": "Hollywood",
        "region": "CA",
        "postalCode": "91608",
        "country": "US",
        "formatted": "911 Universal City Plaza\nHollywood, CA 91608 US",
        "primary": true
      }
    }]));
    insta::assert_json_snapshot!(patched(bjensen(), body, user())["addresses"]);
}

#[test]
fn s3_5_2_3_replace_street_address_via_filter() {
    let body = ops(json!([{
      "op": "replace",
      "path": "addresses[type eq \"work\"].streetAddress",
      "value": "1010 Broadway Ave"
    }]));
    insta::assert_json_snapshot!(patched(bjensen(), body, user())["addresses"]);
}

#[test]
fn s3_5_2_3_replace_work_email_value() {
    let body = ops(json!([{
      "op": "replace",
      "path": "emails[type eq \"work\"].value",
      "value": "barbara@example.com"
    }]));
    insta::assert_json_snapshot!(patched(bjensen(), body, user())["emails"]);
}

#[test]
fn s3_5_2_3_replace_without_path() {
    let body = ops(json!([{
      "op": "replace",
      "value": {
        "emails": [
          {"value": "bjensen@example.com", "type": "work", "primary": true},
          {"value": "babs@jensen.org", "type": "home"}
        ],
        "nickname": "Babs",
        "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {"department": "Parks"}
      }
    }]));
    let result = patched(bjensen(), body, user());
    insta::assert_json_snapshot!(json!({
        "emails": result["emails"],
        "nickName": result["nickName"],
        "enterprise": result["urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"],
    }));
}

#[test]
fn s3_5_2_3_replace_with_unmatched_filter_is_no_target() {
    let body =
        ops(json!([{"op": "replace", "path": "emails[type eq \"pager\"].value", "value": "x@y"}]));
    let request = patch::parse_request(&body).unwrap();
    let mut resource = bjensen();
    let err = patch::apply(&mut resource, &request.operations, user()).unwrap_err();
    assert_eq!(err.scim_type, Some(scim::ScimType::NoTarget));
    assert_eq!(resource, bjensen());
}

/// RFC 7644 §3.4.2.2 example filters, evaluated against bjensen.
#[test]
fn s3_4_2_2_filter_examples() {
    let examples = [
        r#"userName eq "bjensen""#,
        r#"userName eq "BJensen@Example.com""#,
        r#"name.familyName co "O'Malley""#,
        r#"userName sw "J""#,
        r#"urn:ietf:params:scim:schemas:core:2.0:User:userName sw "J""#,
        r#"userName sw "b""#,
        "title pr",
        r#"meta.lastModified gt "2011-05-13T04:42:34Z""#,
        r#"meta.lastModified ge "2011-05-13T04:42:34Z""#,
        r#"meta.lastModified lt "2011-05-13T04:42:34Z""#,
        r#"meta.lastModified le "2011-05-13T04:42:34Z""#,
        r#"title pr and userType eq "Employee""#,
        r#"title pr or userType eq "Intern""#,
        r#"schemas eq "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User""#,
        r#"userType eq "Employee" and (emails co "example.com" or emails.value co "example.org")"#,
        r#"userType ne "Employee" and not (emails co "example.com" or emails.value co "example.org")"#,
        r#"userType eq "Employee" and (emails.type eq "work")"#,
        r#"userType eq "Employee" and emails[type eq "work" and value co "@example.com"]"#,
        r#"emails[type eq "work" and value co "@example.com"] or ims[type eq "xmpp" and value co "@foo.com"]"#,
        r#"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager.value eq "26118915-6090-4610-87e4-49d8ca9f808d""#,
    ];
    let user_json = bjensen();
    let results: Vec<Value> = examples
        .iter()
        .map(|f| {
            let parsed = filter::parse(f).unwrap();
            json!({"filter": f, "matches": filter::matches(&parsed, &user_json, user())})
        })
        .collect();
    insta::assert_json_snapshot!(results);
}
