//! Discovery documents (RFC 7644 §4): `/ServiceProviderConfig`, `/Schemas`, `/ResourceTypes`.
//!
//! `/ServiceProviderConfig` carries the RFC 7643 §5 attributes only, so that clients built on
//! strict models accept it. That this service keeps deleted users pending, and for how long,
//! is said where such clients expect extension data: the IIJ User extension schema in
//! `/Schemas`, whose `state` attribute lists `pendingDeletion` among its canonical values and
//! whose description names the retention period (docs/conformance.md).

use scim::schema::{ResourceSchema, SchemaDef, resource_types};
use serde_json::{Value, json};

use super::{BULK_MAX_OPERATIONS, MAX_RESULTS, Service};

/// Makes a relative `meta.location` absolute.
fn absolute(mut v: Value, base: &str) -> Value {
    if let Some(Value::String(loc)) = v.pointer_mut("/meta/location")
        && loc.starts_with('/')
    {
        *loc = format!("{base}{loc}");
    }
    v
}

pub fn service_provider_config(svc: &Service, base: &str) -> Value {
    json!({
        "schemas": [scim::urn::SERVICE_PROVIDER_CONFIG],
        "patch": {"supported": true},
        "bulk": {
            "supported": true,
            "maxOperations": BULK_MAX_OPERATIONS,
            "maxPayloadSize": svc.max_body_bytes,
        },
        "filter": {"supported": true, "maxResults": MAX_RESULTS},
        "changePassword": {"supported": false},
        "sort": {"supported": true},
        "etag": {"supported": true},
        // RFC 9865: `cursor` pages in id order without offsets (keyset); `startIndex` still works.
        "pagination": {
            "cursor": true,
            "index": true,
            "defaultPaginationMethod": "index",
            "defaultPageSize": 100,
            "maxPageSize": MAX_RESULTS,
        },
        "authenticationSchemes": [{
            "type": "oauthbearertoken",
            "name": "Bearer token",
            "description": "Tokens created with `idservice token create`, sent as Authorization: Bearer <token>.",
            "primary": true,
        }],
        "meta": {
            "resourceType": "ServiceProviderConfig",
            "location": format!("{base}/ServiceProviderConfig"),
        },
    })
}

fn all_schemas() -> Vec<&'static SchemaDef> {
    let mut out: Vec<&'static SchemaDef> = Vec::new();
    for rt in resource_types() {
        for s in rt.schemas() {
            if !out.iter().any(|x| x.id == s.id) {
                out.push(s);
            }
        }
    }
    out
}

pub fn schemas(svc: &Service, base: &str) -> Vec<Value> {
    all_schemas()
        .into_iter()
        .map(|s| described(svc, absolute(s.to_json(), base)))
        .collect()
}

pub fn schema(svc: &Service, base: &str, id: &str) -> Option<Value> {
    all_schemas()
        .into_iter()
        .find(|s| s.id.eq_ignore_ascii_case(id))
        .map(|s| described(svc, absolute(s.to_json(), base)))
}

/// The IIJ User extension's `state` attribute says how long a user stays pending deletion.
fn described(svc: &Service, mut schema: Value) -> Value {
    if schema["id"] != json!(scim::urn::IIJ_USER) {
        return schema;
    }
    let Some(attributes) = schema["attributes"].as_array_mut() else {
        return schema;
    };
    for a in attributes
        .iter_mut()
        .filter(|a| a["name"] == json!("state"))
    {
        a["description"] = json!(format!(
            "The user's lifecycle state. A deleted user is pendingDeletion: it keeps its userName \
             and externalId, is hidden from lists, can be restored by creating it again with both, \
             and is purged after {} days.",
            svc.retention_days
        ));
    }
    schema
}

pub fn resource_type_list(base: &str) -> Vec<Value> {
    resource_types()
        .iter()
        .map(|rt| absolute(scim::schema::resource_type_json(rt), base))
        .collect()
}

pub fn resource_type(base: &str, name: &str) -> Option<Value> {
    resource_types()
        .iter()
        .find(|rt: &&&ResourceSchema| rt.name.eq_ignore_ascii_case(name))
        .map(|rt| absolute(scim::schema::resource_type_json(rt), base))
}
