//! Discovery documents (RFC 7644 §4): `/ServiceProviderConfig`, `/Schemas`, `/ResourceTypes`,
//! including the IIJ extension that tells agents this service keeps deleted users pending.

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
        "schemas": [scim::urn::SERVICE_PROVIDER_CONFIG, scim::urn::IIJ_SERVICE_PROVIDER_CONFIG],
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
        scim::urn::IIJ_SERVICE_PROVIDER_CONFIG: {
            "pendingDeletion": {"supported": true, "retentionDays": svc.retention_days},
        },
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

pub fn schemas(base: &str) -> Vec<Value> {
    all_schemas()
        .into_iter()
        .map(|s| absolute(s.to_json(), base))
        .collect()
}

pub fn schema(base: &str, id: &str) -> Option<Value> {
    all_schemas()
        .into_iter()
        .find(|s| s.id.eq_ignore_ascii_case(id))
        .map(|s| absolute(s.to_json(), base))
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
