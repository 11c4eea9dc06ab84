//! What a service says it can do (`/ServiceProviderConfig`, RFC 7643 §5), reduced to the
//! facts the agent acts on. Tolerant: a field a service leaves out means "not supported".

use serde_json::Value;

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ServiceProviderInfo {
    pub patch: bool,
    pub bulk: bool,
    pub bulk_max_operations: usize,
    pub bulk_max_payload_size: usize,
    pub filter: bool,
    pub filter_max_results: usize,
    pub etag: bool,
    /// The service keeps deleted users in a pending-deletion state (behaviour §4.1):
    /// `idservice` says so in the IIJ User extension schema (its `state` attribute lists
    /// `pendingDeletion`), older versions and the vendor's service in an extension of
    /// `/ServiceProviderConfig`; a plain SCIM server says nothing.
    pub keeps_pending_users: bool,
}

impl ServiceProviderInfo {
    pub fn from_json(spc: &Value) -> Self {
        let supported = |key: &str| {
            spc.get(key)
                .and_then(|v| v.get("supported"))
                .and_then(Value::as_bool)
                .unwrap_or(false)
        };
        let number = |key: &str, field: &str| {
            spc.get(key)
                .and_then(|v| v.get(field))
                .and_then(Value::as_u64)
                .and_then(|n| usize::try_from(n).ok())
                .unwrap_or(0)
        };
        let keeps_pending_users = spc
            .get(scim::urn::IIJ_SERVICE_PROVIDER_CONFIG)
            .and_then(|ext| ext.get("pendingDeletion"))
            .and_then(|p| p.get("supported"))
            .and_then(Value::as_bool)
            .unwrap_or(false);
        ServiceProviderInfo {
            patch: supported("patch"),
            bulk: supported("bulk"),
            bulk_max_operations: number("bulk", "maxOperations"),
            bulk_max_payload_size: number("bulk", "maxPayloadSize"),
            filter: supported("filter"),
            filter_max_results: number("filter", "maxResults"),
            etag: supported("etag"),
            keeps_pending_users,
        }
    }

    /// Whether an IIJ User extension schema (a `/Schemas/{id}` resource) lists the
    /// `pendingDeletion` state among the canonical values of its `state` attribute.
    pub fn schema_keeps_pending_users(schema: &Value) -> bool {
        schema["attributes"].as_array().is_some_and(|attributes| {
            attributes.iter().any(|a| {
                a["name"].as_str() == Some("state")
                    && a["canonicalValues"]
                        .as_array()
                        .is_some_and(|v| v.iter().any(|c| c == "pendingDeletion"))
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn plain_server_keeps_nothing_pending() {
        let info = ServiceProviderInfo::from_json(&json!({
            "patch": {"supported": true},
            "bulk": {"supported": true, "maxOperations": 1000, "maxPayloadSize": 1048576},
            "filter": {"supported": true, "maxResults": 1000},
            "etag": {"supported": true}
        }));
        assert!(info.patch && info.bulk && info.filter && info.etag);
        assert_eq!(info.bulk_max_operations, 1000);
        assert!(!info.keeps_pending_users);
    }

    #[test]
    fn extension_advertises_pending_deletion() {
        let info = ServiceProviderInfo::from_json(&json!({
            scim::urn::IIJ_SERVICE_PROVIDER_CONFIG: {"pendingDeletion": {"supported": true}}
        }));
        assert!(info.keeps_pending_users);
        assert!(!info.bulk);
    }

    #[test]
    fn schema_state_advertises_pending_deletion() {
        let schema = json!({"id": scim::urn::IIJ_USER, "attributes": [
            {"name": "downstreamId"},
            {"name": "state", "canonicalValues": ["active", "disabled", "pendingDeletion"]},
        ]});
        assert!(ServiceProviderInfo::schema_keeps_pending_users(&schema));
        let without = json!({"attributes": [{"name": "state", "canonicalValues": ["active"]}]});
        assert!(!ServiceProviderInfo::schema_keeps_pending_users(&without));
        assert!(!ServiceProviderInfo::schema_keeps_pending_users(&json!({})));
    }
}
