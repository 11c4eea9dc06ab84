//! Schema and message URNs, spelled exactly as clients send them.

pub const USER: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
pub const GROUP: &str = "urn:ietf:params:scim:schemas:core:2.0:Group";
pub const ENTERPRISE_USER: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";
/// The OpenID Foundation Japan extension. "extention" is the published spelling.
pub const OIDFJ_USER: &str = "urn:oidfj:params:scim:schemas:extention:enterprisejp:2.0:User";
/// IIJ extension: `downstreamId`, `externalUserName`, `localNames`, `idTokenClaims`, state.
pub const IIJ_USER: &str = "urn:iij:params:scim:schemas:extension:enterprisejp:2.0:User";
/// Group extension: `description`, `email`, `groupType`.
pub const IIJ_GROUP: &str = "urn:iij:params:scim:schemas:extension:enterprisejp:2.0:Group";
/// dirsync's ownership mark (behaviour §4.3): the directory object a target object was synced
/// from. Offered by `idservice`; the agent writes it only where a service advertises it.
pub const DIRSYNC_SOURCE: &str = "urn:dirsync:params:scim:schemas:extension:1.0:Source";
/// ServiceProviderConfig extension saying how the service treats deleted users.
pub const IIJ_SERVICE_PROVIDER_CONFIG: &str =
    "urn:iij:params:scim:schemas:extension:enterprisejp:2.0:ServiceProviderConfig";

pub const LIST_RESPONSE: &str = "urn:ietf:params:scim:api:messages:2.0:ListResponse";
pub const SEARCH_REQUEST: &str = "urn:ietf:params:scim:api:messages:2.0:SearchRequest";
pub const PATCH_OP: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";
pub const BULK_REQUEST: &str = "urn:ietf:params:scim:api:messages:2.0:BulkRequest";
pub const BULK_RESPONSE: &str = "urn:ietf:params:scim:api:messages:2.0:BulkResponse";
pub const ERROR: &str = "urn:ietf:params:scim:api:messages:2.0:Error";
pub const SERVICE_PROVIDER_CONFIG: &str =
    "urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig";
pub const RESOURCE_TYPE: &str = "urn:ietf:params:scim:schemas:core:2.0:ResourceType";
pub const SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:Schema";
