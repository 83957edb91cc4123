//! `/ServiceProviderConfig`, `/ResourceTypes`, `/Schemas` (RFC 7643 §5–7).

use serde_json::{json, Value};

use crate::config::ScimConfig;
use crate::directory::schema::ResourceSchema;
use crate::directory::{Capabilities, ENTERPRISE_SCHEMA, GROUP_SCHEMA, USER_SCHEMA};

/// The `ServiceProviderConfig` document, describing what this server really does.
pub fn service_provider_config(base: &str, caps: &Capabilities, cfg: &ScimConfig) -> Value {
    json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig"],
        "documentationUri": "https://datatracker.ietf.org/doc/html/rfc7644",
        "patch": {"supported": true},
        "bulk": {"supported": false, "maxOperations": 0, "maxPayloadSize": 0},
        "filter": {"supported": true, "maxResults": cfg.max_results},
        "changePassword": {"supported": caps.change_password},
        "sort": {"supported": true},
        "etag": {"supported": caps.versions},
        "authenticationSchemes": [{
            "type": "oauthbearertoken",
            "name": "OAuth Bearer Token",
            "description": "Authentication with a bearer token in the Authorization header",
            "specUri": "https://www.rfc-editor.org/info/rfc6750",
            "primary": true
        }],
        "meta": {
            "resourceType": "ServiceProviderConfig",
            "location": format!("{base}/ServiceProviderConfig")
        }
    })
}

/// The `User` resource type.
pub fn user_resource_type(base: &str) -> Value {
    json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:ResourceType"],
        "id": "User",
        "name": "User",
        "endpoint": "/Users",
        "description": "User Account",
        "schema": USER_SCHEMA,
        "schemaExtensions": [{"schema": ENTERPRISE_SCHEMA, "required": false}],
        "meta": {"resourceType": "ResourceType", "location": format!("{base}/ResourceTypes/User")}
    })
}

/// The `Group` resource type (advertised only when the backend has groups).
pub fn group_resource_type(base: &str) -> Value {
    json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:ResourceType"],
        "id": "Group",
        "name": "Group",
        "endpoint": "/Groups",
        "description": "Group",
        "schema": GROUP_SCHEMA,
        "schemaExtensions": [],
        "meta": {"resourceType": "ResourceType", "location": format!("{base}/ResourceTypes/Group")}
    })
}

/// The resource types: User, and Group when the backend has groups.
pub fn resource_types(base: &str, groups: bool) -> Vec<Value> {
    let mut types = vec![user_resource_type(base)];
    if groups {
        types.push(group_resource_type(base));
    }
    types
}

/// The schema documents, core first; the Group schema when the backend has groups.
pub fn schemas(base: &str, schema: &ResourceSchema, groups: bool) -> Vec<Value> {
    let mut docs = vec![
        schema.user_schema_json(base),
        schema.enterprise_schema_json(base),
    ];
    if groups {
        docs.push(ResourceSchema::group().core_schema_json(base));
    }
    docs
}

/// A ListResponse of `resources` (discovery lists are never paged).
pub fn list_of(resources: Vec<Value>) -> Value {
    json!({
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:ListResponse"],
        "totalResults": resources.len(),
        "startIndex": 1,
        "itemsPerPage": resources.len(),
        "Resources": resources,
    })
}
